//! Declared TR-181 objects: a vendor object (`Device.X_000000_Example.`)
//! the agent is not built with, read at start from a Broadband Forum DM
//! instance document (the cwmp-datamodel schema of TR-106), and served
//! like a built-in one over CWMP. LwM2M does not see it.
//!
//! One object per document, with its parameters: names, access, and a
//! base type (`string`, `int`, `unsignedInt`, `long`, `unsignedLong`,
//! `boolean`, `dateTime`, `base64`, `hexBinary`) with its size, range and
//! enumeration facets. Its core schema numbers the parameters from 1 in
//! document order; [`Declared::bindings`] gives their TR-181 paths.

use std::sync::Mutex;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use dm_core::schema::Constraint;
use dm_core::{Access, ObjectId, ObjectSchema, ResourceId, ResourceSchema, ValueType};

use crate::mapping::{Binding, Syntax};

/// The largest document read.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// Core ids of declared TR-181 objects start here, in declaration order
/// (LwM2M-declared objects stay below 50000, the agent's own TR-181-only
/// objects are from 50000).
pub const FIRST_ID: u16 = 60000;

/// Why a document cannot be declared, with the line it is at (0: the
/// document as a whole).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DeclareError {
    pub line: usize,
    pub message: String,
}

/// A declared TR-181 object: its schema and its parameters' templates.
#[derive(Clone, Debug)]
pub struct Declared {
    pub schema: &'static ObjectSchema,
    /// `Device.X_000000_Example.` or `Device.X_000000_Table.{i}.`.
    pub path: String,
    syntaxes: Vec<Syntax>,
}

impl Declared {
    /// The TR-181 bindings of its parameters.
    pub fn bindings(&self) -> Vec<Binding> {
        self.schema
            .resources
            .iter()
            .zip(&self.syntaxes)
            .map(|(r, syntax)| Binding {
                path: format!("{}{}", self.path, r.name),
                object: self.schema.id,
                resource: r.id,
                syntax: *syntax,
                writable: r.access.writable(),
            })
            .collect()
    }
}

/// Whether `text` looks like a DM instance document (rather than an OMA
/// object definition).
pub fn is_document(text: &str) -> bool {
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(start) | Event::Empty(start)) => {
                return start.local_name().as_ref() == "document";
            }
            Ok(Event::Eof) | Err(_) => return false,
            _ => {}
        }
    }
}

/// Reads a document as object `id`. Schemas live as long as the process;
/// the same text and id give the same one.
pub fn object(text: &str, id: ObjectId) -> Result<Declared, DeclareError> {
    static READ: Mutex<Vec<(String, u16, Declared)>> = Mutex::new(Vec::new());
    if text.len() > MAX_DOCUMENT {
        return Err(DeclareError {
            line: 0,
            message: format!(
                "{} bytes; a document may have at most {MAX_DOCUMENT}",
                text.len()
            ),
        });
    }
    let parsed = parse(text)?;
    let mut read = READ
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, declared)) = read.iter().find(|(t, i, _)| t == text && *i == id.0) {
        return Ok(declared.clone());
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let resources: Vec<ResourceSchema> = (1u16..)
        .zip(&parsed.parameters)
        .map(|(n, p)| ResourceSchema {
            id: ResourceId(n),
            name: leak(&p.name),
            value_type: p.value_type,
            access: if p.writable {
                Access::ReadWrite
            } else {
                Access::Read
            },
            multiple: false,
            mandatory: true,
            units: "",
            constraint: match &p.facet {
                Facet::Other(c) => *c,
                Facet::Enumeration(values) => {
                    let values: Vec<&'static str> = values.iter().map(|v| leak(v)).collect();
                    Constraint::Enumeration(Box::leak(values.into_boxed_slice()))
                }
            },
        })
        .collect();
    let name = parsed
        .path
        .trim_end_matches('.')
        .trim_end_matches(".{i}")
        .rsplit('.')
        .next()
        .unwrap_or("");
    let schema: &'static ObjectSchema = Box::leak(Box::new(ObjectSchema {
        id,
        name: leak(name),
        version: "1.0",
        multiple: parsed.multiple,
        mandatory: false,
        resources: Box::leak(resources.into_boxed_slice()),
    }));
    let declared = Declared {
        schema,
        path: parsed.path,
        syntaxes: parsed.parameters.iter().map(|p| p.syntax).collect(),
    };
    read.push((text.to_owned(), id.0, declared.clone()));
    Ok(declared)
}

struct Parsed {
    path: String,
    multiple: bool,
    parameters: Vec<Parameter>,
}

struct Parameter {
    name: String,
    writable: bool,
    syntax: Syntax,
    value_type: ValueType,
    facet: Facet,
}

/// A parameter's constraint before it is made `'static` (only a document
/// that is declared is leaked).
enum Facet {
    Enumeration(Vec<String>),
    Other(Constraint),
}

/// Checks a document as [`object`] would, keeping nothing.
pub fn check(text: &str) -> Result<(), DeclareError> {
    if text.len() > MAX_DOCUMENT {
        return Err(DeclareError {
            line: 0,
            message: format!(
                "{} bytes; a document may have at most {MAX_DOCUMENT}",
                text.len()
            ),
        });
    }
    parse(text).map(|_| ())
}

fn parse(text: &str) -> Result<Parsed, DeclareError> {
    let line_at = |position: u64| {
        let end = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(text.len());
        text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut object: Option<(String, bool)> = None;
    let mut parameters: Vec<Parameter> = Vec::new();
    let mut current: Option<(String, bool)> = None;
    let mut base: Option<(Syntax, ValueType)> = None;
    let mut min_len: Option<u32> = None;
    let mut max_len: Option<u32> = None;
    let mut range: (Option<i64>, Option<i64>) = (None, None);
    let mut enumeration: Vec<String> = Vec::new();
    loop {
        let position = reader.buffer_position();
        let error = |message: String| DeclareError {
            line: line_at(position),
            message,
        };
        let event = reader
            .read_event()
            .map_err(|e| error(format!("not well-formed XML: {e}")))?;
        let (start, empty) = match &event {
            Event::Start(s) => (Some(s), false),
            Event::Empty(s) => (Some(s), true),
            _ => (None, false),
        };
        if let Some(start) = start {
            let name = start.local_name().as_ref().to_owned();
            let parent = stack.last().map(String::as_str);
            let attr = |key: &str| attribute(start, key).map_err(&error);
            match (parent, name.as_str()) {
                (Some("model"), "object") => {
                    if object.is_some() {
                        return Err(error("one object per document".into()));
                    }
                    let path = attr("name")?.unwrap_or_default();
                    let max = attr("maxEntries")?.unwrap_or_else(|| "1".into());
                    let multiple = max != "1";
                    check_path(&path, multiple).map_err(&error)?;
                    object = Some((path, multiple));
                }
                (Some("object"), "parameter") => {
                    let pname = attr("name")?.unwrap_or_default();
                    if pname.is_empty()
                        || !pname
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(error(format!("parameter name {pname:?}")));
                    }
                    if parameters.iter().any(|p| p.name == pname) {
                        return Err(error(format!("parameter {pname} is defined twice")));
                    }
                    let writable = match attr("access")?.as_deref() {
                        Some("readWrite") => true,
                        Some("readOnly") | None => false,
                        Some(other) => {
                            return Err(error(format!(
                                "access {other:?}; allowed: readOnly, readWrite"
                            )));
                        }
                    };
                    current = Some((pname, writable));
                    base = None;
                    (min_len, max_len, range) = (None, None, (None, None));
                    enumeration.clear();
                }
                (Some("syntax"), "dataType") => {
                    return Err(error(
                        "dataType references are not supported: use a base type".into(),
                    ));
                }
                (Some("syntax"), type_name) => {
                    if attr("list")?.is_some() {
                        return Err(error("list syntaxes are not supported".into()));
                    }
                    base = Some(match type_name {
                        "string" => (Syntax::String, ValueType::String),
                        "int" => (Syntax::Int, ValueType::Int),
                        "unsignedInt" => (Syntax::UnsignedInt, ValueType::UnsignedInt),
                        "long" => (Syntax::Long, ValueType::Long),
                        "unsignedLong" => (Syntax::UnsignedLong, ValueType::UnsignedLong),
                        "boolean" => (Syntax::Boolean, ValueType::Boolean),
                        "dateTime" => (Syntax::DateTime, ValueType::DateTime),
                        "base64" => (Syntax::Base64, ValueType::Opaque),
                        "hexBinary" => (Syntax::HexBinary, ValueType::Opaque),
                        other => return Err(error(format!("{other:?} is not a TR-106 base type"))),
                    });
                }
                (Some(_), "size") if base.is_some() => {
                    min_len = number(attr("minLength")?).map_err(&error)?;
                    max_len = number(attr("maxLength")?).map_err(&error)?;
                }
                (Some(_), "range") if base.is_some() => {
                    range = (
                        number(attr("minInclusive")?).map_err(&error)?,
                        number(attr("maxInclusive")?).map_err(&error)?,
                    );
                }
                (Some(_), "enumeration") if base.is_some() => {
                    enumeration.push(attr("value")?.unwrap_or_default());
                }
                _ => {}
            }
            if !empty {
                stack.push(name);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                if name == "parameter"
                    && let Some((pname, writable)) = current.take()
                {
                    let Some((syntax, value_type)) = base.take() else {
                        return Err(error(format!("parameter {pname} has no syntax")));
                    };
                    let facet = if !enumeration.is_empty() {
                        Facet::Enumeration(std::mem::take(&mut enumeration))
                    } else if let (Some(min), Some(max)) = range {
                        Facet::Other(Constraint::Range { min, max })
                    } else if min_len.is_some() || max_len.is_some() {
                        Facet::Other(Constraint::Length {
                            min: min_len.unwrap_or(0),
                            max: max_len.unwrap_or(u32::MAX),
                        })
                    } else {
                        Facet::Other(Constraint::None)
                    };
                    parameters.push(Parameter {
                        name: pname,
                        writable,
                        syntax,
                        value_type,
                        facet,
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let Some((path, multiple)) = object else {
        return Err(DeclareError {
            line: line_at(text.len() as u64),
            message: "no <object> in a <model>".into(),
        });
    };
    if parameters.is_empty() {
        return Err(DeclareError {
            line: line_at(text.len() as u64),
            message: format!("{path} has no parameter"),
        });
    }
    Ok(Parsed {
        path,
        multiple,
        parameters,
    })
}

/// `Device.X_<OUI>_Name.` (single) or `Device.X_<OUI>_Name.{i}.` (a table):
/// a vendor object, one level or more under Device.
fn check_path(path: &str, multiple: bool) -> Result<(), String> {
    let Some(inner) = path
        .strip_prefix("Device.")
        .and_then(|p| p.strip_suffix('.'))
    else {
        return Err(format!("object {path:?} is not a Device. object path"));
    };
    let inner = if multiple {
        inner
            .strip_suffix(".{i}")
            .ok_or_else(|| format!("object {path:?}: a table (maxEntries) ends in .{{i}}."))?
    } else {
        inner
    };
    if inner.is_empty()
        || inner.contains("{i}")
        || inner
            .split('.')
            .any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!("object {path:?} is not a TR-181 object path"));
    }
    Ok(())
}

fn number<T: std::str::FromStr>(text: Option<String>) -> Result<Option<T>, String> {
    text.map(|t| {
        t.trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a number"))
    })
    .transpose()
}

fn attribute(start: &BytesStart<'_>, key: &str) -> Result<Option<String>, String> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        if attr.key.local_name().as_ref() == key {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Explicit1_0)
                .map_err(|e| format!("bad attribute {key}: {e}"))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}
