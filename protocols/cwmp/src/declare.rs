//! Declared TR-181 objects: a vendor object (`Device.X_000000_Example.`)
//! the agent is not built with, read at start from a Broadband Forum DM
//! instance document (the cwmp-datamodel schema of TR-106), and served
//! like a built-in one over CWMP. LwM2M does not see it.
//!
//! One object per document, with its parameters: names, access, and a
//! base type (`string`, `int`, `unsignedInt`, `long`, `unsignedLong`,
//! `boolean`, `dateTime`, `base64`, `hexBinary`) with its size, range and
//! enumeration facets. Its core ids (object and parameters) come from
//! hashes of their names, so that saved state comes back to the same
//! parameter whatever the order of declarations; [`Declared::bindings`]
//! gives their TR-181 paths.

use std::sync::Mutex;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use dm_core::schema::Constraint;
use dm_core::{Access, ObjectId, ObjectSchema, ResourceId, ResourceSchema, ValueType};

use crate::mapping::{Binding, CommandBinding, Syntax};

/// The largest document read.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// The most commands a document declares, and input arguments a command
/// takes.
pub const MAX_COMMANDS: usize = 256;
pub const MAX_INPUTS: usize = 64;

/// Core ids of declared TR-181 objects are from here (LwM2M-declared
/// objects stay below 50000, the agent's own TR-181-only objects are from
/// 50000), each by a hash of its path.
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
    /// Its commands (`<command>`, USP's Operate), each an executable
    /// resource of the schema.
    commands: Vec<CommandBinding>,
}

impl Declared {
    /// The TR-181 bindings of its parameters.
    pub fn bindings(&self) -> Vec<Binding> {
        self.schema
            .resources
            .iter()
            .zip(&self.syntaxes)
            .filter(|(r, _)| r.access != Access::Execute)
            .map(|(r, syntax)| Binding {
                path: format!("{}{}", self.path, r.name),
                object: self.schema.id,
                resource: r.id,
                syntax: *syntax,
                writable: r.access.writable(),
            })
            .collect()
    }

    /// Its commands, which only USP sees.
    pub fn commands(&self) -> &[CommandBinding] {
        &self.commands
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

/// A number in `0..span` that depends on `name` only (FNV-1a): ids that
/// stay the same when declarations or parameters are reordered, added or
/// removed, so the saved state comes back where it belongs.
fn stable(name: &str, span: u32) -> u32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % span
}

/// The id a name hashes to in `first..=last`, or the next free one after
/// it (wrapping) when `taken` says it is taken.
fn stable_id(name: &str, first: u16, last: u16, taken: impl Fn(u16) -> bool) -> Option<u16> {
    let span = u32::from(last - first) + 1;
    let start = stable(name, span);
    (0..span)
        .map(|n| first + ((start + n) % span) as u16)
        .find(|id| !taken(*id))
}

/// Reads a document. Its core id comes from its object path (see
/// [`stable`]; `taken` are the ids other declarations hold), its
/// parameters' ids from their names. Schemas live as long as the process;
/// the same text and id give the same one.
pub fn object(text: &str, taken: &[ObjectId]) -> Result<Declared, DeclareError> {
    static READ: Mutex<Vec<(String, u16, Declared)>> = Mutex::new(Vec::new());
    let parsed = parse_bounded(text)?;
    let id = stable_id(&parsed.path, FIRST_ID, u16::MAX - 1, |id| {
        taken.contains(&ObjectId(id))
    })
    .map(ObjectId)
    .ok_or_else(|| DeclareError {
        line: 0,
        message: "no object id left".into(),
    })?;
    let mut read = READ
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, declared)) = read.iter().find(|(t, i, _)| t == text && *i == id.0) {
        return Ok(declared.clone());
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let mut resources: Vec<(ResourceSchema, Syntax)> = Vec::new();
    // 1..=65534 (0 is left out, 65535 is "no id"); fewer parameters and
    // commands than ids, so one is always free.
    let free_id = |name: &str, resources: &[(ResourceSchema, Syntax)]| {
        stable_id(name, 1, u16::MAX - 1, |id| {
            resources.iter().any(|(r, _)| r.id.0 == id)
        })
    };
    for p in &parsed.parameters {
        let Some(n) = free_id(&p.name, &resources) else {
            continue;
        };
        resources.push((
            ResourceSchema {
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
            },
            p.syntax,
        ));
    }
    // Commands are executable resources, by the same hash of their names
    // (`Reset()`); their inputs reach the provider with the Execute.
    let mut commands = Vec::new();
    for c in &parsed.commands {
        let Some(n) = free_id(&c.name, &resources) else {
            continue;
        };
        resources.push((
            ResourceSchema {
                id: ResourceId(n),
                name: leak(&c.name),
                value_type: ValueType::None,
                access: Access::Execute,
                multiple: false,
                mandatory: false,
                units: "",
                constraint: Constraint::None,
            },
            Syntax::String,
        ));
        commands.push(CommandBinding {
            path: format!("{}{}", parsed.path, c.name),
            object: id,
            resource: ResourceId(n),
            inputs: c.inputs.clone(),
        });
    }
    // The schema's resources are sorted by id.
    resources.sort_by_key(|(r, _)| r.id);
    let (resources, syntaxes): (Vec<ResourceSchema>, Vec<Syntax>) = resources.into_iter().unzip();
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
        syntaxes,
        commands,
    };
    read.push((text.to_owned(), id.0, declared.clone()));
    Ok(declared)
}

struct Parsed {
    path: String,
    multiple: bool,
    parameters: Vec<Parameter>,
    commands: Vec<Command>,
}

/// A `<command>`: synchronous, with inputs and no outputs, as a provider's
/// Execute carries it (handed over, answered with nothing).
struct Command {
    name: String,
    inputs: Vec<String>,
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
    parse_bounded(text).map(|_| ())
}

fn parse_bounded(text: &str) -> Result<Parsed, DeclareError> {
    if text.len() > MAX_DOCUMENT {
        return Err(DeclareError {
            line: 0,
            message: format!(
                "{} bytes; a document may have at most {MAX_DOCUMENT}",
                text.len()
            ),
        });
    }
    parse(text)
}

/// The facets read so far for the parameter being read.
#[derive(Default)]
struct Facets {
    size: Option<(Option<u32>, Option<u32>)>,
    range: Option<(Option<i128>, Option<i128>)>,
    enumeration: Vec<String>,
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
    // Path, whether a table, the line it opens on.
    let mut object: Option<(String, bool, usize)> = None;
    let mut parameters: Vec<Parameter> = Vec::new();
    let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut current: Option<(String, bool)> = None;
    let mut commands: Vec<Command> = Vec::new();
    let mut base: Option<(Syntax, ValueType)> = None;
    let mut facets = Facets::default();
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
            let path: Vec<&str> = stack.iter().map(String::as_str).collect();
            let attr = |key: &str| attribute(start, key).map_err(&error);
            match (path.as_slice(), name.as_str()) {
                (_, "component") => {
                    return Err(error("components are not supported".into()));
                }
                (["document", "model"], "object") => {
                    if object.is_some() {
                        return Err(error("one object per document".into()));
                    }
                    let path = attr("name")?.unwrap_or_default();
                    let max = attr("maxEntries")?.unwrap_or_else(|| "1".into());
                    let multiple = max != "1";
                    check_path(&path, multiple).map_err(&error)?;
                    object = Some((path, multiple, line_at(position)));
                }
                (_, "object") => {
                    return Err(error(
                        "an <object> belongs in the document's <model>".into(),
                    ));
                }
                (["document", "model", "object"], "parameter") => {
                    let pname = attr("name")?.unwrap_or_default();
                    if !is_name(&pname) {
                        return Err(error(format!(
                            "parameter name {pname:?}: a letter, then letters, digits, _ or -"
                        )));
                    }
                    if !names.insert(pname.clone()) {
                        return Err(error(format!("parameter {pname} is defined twice")));
                    }
                    if empty {
                        return Err(error(format!("parameter {pname} has no syntax")));
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
                    facets = Facets::default();
                }
                (["document", "model", "object"], "command") => {
                    let cname = attr("name")?.unwrap_or_default();
                    if !cname.strip_suffix("()").is_some_and(is_name) {
                        return Err(error(format!(
                            "command name {cname:?}: a letter, then letters, digits, _ or -, then ()"
                        )));
                    }
                    if !names.insert(cname.clone()) {
                        return Err(error(format!("command {cname} is defined twice")));
                    }
                    // A provider's Execute is handed over, not waited for:
                    // nothing would say when an asynchronous one ends.
                    if matches!(attr("async")?.as_deref(), Some("true" | "1")) {
                        return Err(error(format!(
                            "command {cname}: asynchronous commands are not supported \
                             (a provider's Execute has no end to report)"
                        )));
                    }
                    if commands.len() == MAX_COMMANDS {
                        return Err(error(format!(
                            "more than {MAX_COMMANDS} commands in one document"
                        )));
                    }
                    commands.push(Command {
                        name: cname,
                        inputs: Vec::new(),
                    });
                }
                ([.., "command"], "output") => {
                    return Err(error(
                        "command output arguments are not supported (a provider's Execute \
                         returns nothing)"
                            .into(),
                    ));
                }
                ([.., "command"], "input") => {}
                ([.., "command", "input"], "parameter") => {
                    let iname = attr("name")?.unwrap_or_default();
                    let Some(command) = commands.last_mut() else {
                        return Err(error("an <input> outside a <command>".into()));
                    };
                    if iname.is_empty() || command.inputs.contains(&iname) {
                        return Err(error(format!(
                            "command {}: input {iname:?} is empty or defined twice",
                            command.name
                        )));
                    }
                    if command.inputs.len() == MAX_INPUTS {
                        return Err(error(format!(
                            "command {}: more than {MAX_INPUTS} inputs",
                            command.name
                        )));
                    }
                    command.inputs.push(iname);
                    // Only names are kept: values reach the provider as
                    // the controller gave them, unchecked (the provider
                    // checks them, as it does written values).
                    base = None;
                    facets = Facets::default();
                }
                (_, "parameter") => {
                    return Err(error("a <parameter> belongs in the <object>".into()));
                }
                ([.., "parameter"], "syntax") => {
                    for key in ["hidden", "secured"] {
                        if matches!(attr(key)?.as_deref(), Some("true" | "1")) {
                            return Err(error(format!("{key} parameters are not supported yet")));
                        }
                    }
                }
                ([.., "syntax"], "default") => {}
                ([.., "syntax"], "list") => {
                    return Err(error("list syntaxes are not supported".into()));
                }
                ([.., "syntax"], "dataType") => {
                    return Err(error(
                        "dataType references are not supported: use a base type".into(),
                    ));
                }
                ([.., "syntax"], type_name) => {
                    if base.is_some() {
                        return Err(error("one base type per syntax".into()));
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
                        other => {
                            return Err(error(format!("{other:?} is not a TR-106 base type")));
                        }
                    });
                }
                ([.., "syntax", _], facet) => {
                    let Some((syntax, _)) = base else {
                        return Err(error(format!("<{facet}> outside a base type")));
                    };
                    let numeric = matches!(
                        syntax,
                        Syntax::Int | Syntax::UnsignedInt | Syntax::Long | Syntax::UnsignedLong
                    );
                    let text_like =
                        matches!(syntax, Syntax::String | Syntax::Base64 | Syntax::HexBinary);
                    match facet {
                        "size" if text_like && facets.size.is_none() => {
                            facets.size = Some((
                                number(attr("minLength")?).map_err(&error)?,
                                number(attr("maxLength")?).map_err(&error)?,
                            ));
                        }
                        "range" if numeric && facets.range.is_none() => {
                            facets.range = Some((
                                number(attr("minInclusive")?).map_err(&error)?,
                                number(attr("maxInclusive")?).map_err(&error)?,
                            ));
                        }
                        "enumeration" if syntax == Syntax::String => {
                            facets.enumeration.push(attr("value")?.unwrap_or_default());
                        }
                        "size" | "range" | "enumeration" => {
                            return Err(error(format!(
                                "<{facet}> on {} (or more than one): not supported",
                                syntax.xsd_type()
                            )));
                        }
                        // Descriptions, units, patterns and the like
                        // constrain nothing here.
                        _ => {}
                    }
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
                    let facet = constraint(syntax, std::mem::take(&mut facets))
                        .map_err(|m| error(format!("parameter {pname}: {m}")))?;
                    parameters.push(Parameter {
                        name: pname,
                        writable,
                        syntax,
                        value_type,
                        facet,
                    });
                }
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(error(format!("the document ends inside <{open}>")));
                }
                break;
            }
            _ => {}
        }
    }
    let Some((path, multiple, line)) = object else {
        return Err(DeclareError {
            line: text.lines().count().max(1),
            message: "no <object> in a <model>".into(),
        });
    };
    if parameters.is_empty() {
        return Err(DeclareError {
            line,
            message: format!("{path} has no parameter"),
        });
    }
    Ok(Parsed {
        path,
        multiple,
        parameters,
        commands,
    })
}

/// A parameter's constraint from its facets: a range's missing bound is
/// its type's, bounds beyond i64 are saturated, an empty range refused.
fn constraint(syntax: Syntax, facets: Facets) -> Result<Facet, String> {
    if !facets.enumeration.is_empty() {
        return Ok(Facet::Enumeration(facets.enumeration));
    }
    if let Some((min, max)) = facets.range {
        let (low, high): (i128, i128) = match syntax {
            Syntax::Int => (i32::MIN.into(), i32::MAX.into()),
            Syntax::UnsignedInt => (0, u32::MAX.into()),
            Syntax::UnsignedLong => (0, i64::MAX.into()),
            _ => (i64::MIN.into(), i64::MAX.into()),
        };
        let min = min.unwrap_or(low).clamp(low, high);
        let max = max.unwrap_or(high).clamp(low, high);
        if min > max {
            return Err(format!("range {min}..{max} is empty"));
        }
        // Clamped into i64 above.
        return Ok(Facet::Other(Constraint::Range {
            min: min as i64,
            max: max as i64,
        }));
    }
    if let Some((min, max)) = facets.size {
        let (min, max) = (min.unwrap_or(0), max.unwrap_or(u32::MAX));
        if min > max {
            return Err(format!("size {min}..{max} is empty"));
        }
        return Ok(Facet::Other(Constraint::Length { min, max }));
    }
    Ok(Facet::Other(Constraint::None))
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
    if inner.is_empty() || inner.contains("{i}") || !inner.split('.').all(is_name) {
        return Err(format!("object {path:?} is not a TR-181 object path"));
    }
    Ok(())
}

/// A name of a path segment, parameter or command: a letter, then
/// letters, digits, `_` or `-`.
fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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
