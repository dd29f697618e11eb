//! The reader of the Broadband Forum's flattened TR-181 data model (OMA
//! LwM2M object definitions are read by `object_xml`, the agent's own
//! reader).

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::object_xml::{attribute, element_name};

/// The syntax of a TR-181 parameter, reduced to what the agent uses.
#[derive(Debug, Clone, Default)]
pub struct Syntax {
    /// The TR-106 base type: string, int, unsignedInt, long, unsignedLong,
    /// boolean, dateTime, base64, hexBinary.
    pub base: String,
    pub list: bool,
    /// `hidden` or `secured`: the value reads back as an empty string.
    pub secured: bool,
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub enumeration: Vec<String>,
    /// A `pathRef` to a table row: the value names a row (or, a list, rows)
    /// of another table.
    pub reference: bool,
}

#[derive(Debug, Clone)]
pub struct Tr181Parameter {
    pub writable: bool,
    pub forced_inform: bool,
    /// normal, forceEnabled, forceDefaultEnabled, canDeny
    pub active_notify: String,
    pub syntax: Syntax,
}

/// The parameters of a TR-181 model, keyed by full path template
/// (`Device.WiFi.SSID.{i}.SSID`), and each table's unique keys (its
/// `uniqueKey` elements, each a set of parameter names).
pub struct Tr181Model {
    pub parameters: HashMap<String, Tr181Parameter>,
    pub unique_keys: HashMap<String, Vec<Vec<String>>>,
}

const BASE_TYPES: &[&str] = &[
    "string",
    "int",
    "unsignedInt",
    "long",
    "unsignedLong",
    "boolean",
    "dateTime",
    "base64",
    "hexBinary",
];

#[derive(Default)]
struct DataType {
    base_type: Option<String>,
    base: Option<String>,
    syntax: Syntax,
}

/// Parses a flattened TR-181 CWMP model (cwmp-datamodel-1-x.xsd).
pub fn parse_tr181(text: &str) -> Result<Tr181Model, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut data_types: HashMap<String, DataType> = HashMap::new();
    let mut current_type: Option<(String, DataType)> = None;
    let mut object: Option<String> = None;
    let mut parameter: Option<(String, Tr181Parameter)> = None;
    let mut type_ref: Option<String> = None;
    let mut parameters = HashMap::new();
    let mut unique_keys: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let mut unique: Option<Vec<String>> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        let (start, empty) = match &event {
            Event::Start(s) => (Some(s), false),
            Event::Empty(s) => (Some(s), true),
            _ => (None, false),
        };
        if let Some(start) = start {
            let name = element_name(start);
            let parent = stack.last().map(String::as_str).unwrap_or("");
            match name.as_str() {
                "dataType" if parent == "document" => {
                    let type_name = attribute(start, "name")?.unwrap_or_default();
                    let data_type = DataType {
                        base: attribute(start, "base")?,
                        ..Default::default()
                    };
                    current_type = Some((type_name, data_type));
                }
                "object" if parent == "model" => object = attribute(start, "name")?,
                "uniqueKey" if parent == "object" => unique = Some(Vec::new()),
                "parameter" if parent == "uniqueKey" => {
                    if let (Some(keys), Some(name)) = (unique.as_mut(), attribute(start, "ref")?) {
                        keys.push(name);
                    }
                }
                // An object's own parameters (not a command's or an
                // event's arguments).
                "parameter" if object.is_some() && parent == "object" => {
                    let name = attribute(start, "name")?.unwrap_or_default();
                    let access = attribute(start, "access")?.unwrap_or_default();
                    parameter = Some((
                        name,
                        Tr181Parameter {
                            writable: access == "readWrite",
                            forced_inform: attribute(start, "forcedInform")?.as_deref()
                                == Some("true"),
                            active_notify: attribute(start, "activeNotify")?
                                .unwrap_or_else(|| "normal".into()),
                            syntax: Syntax::default(),
                        },
                    ));
                    type_ref = None;
                }
                "syntax" => {
                    if let Some((_, p)) = parameter.as_mut() {
                        p.syntax.secured = attribute(start, "hidden")?.as_deref() == Some("true")
                            || attribute(start, "secured")?.as_deref() == Some("true");
                    }
                }
                _ => {
                    let syntax = if let Some((_, p)) = parameter.as_mut() {
                        Some(&mut p.syntax)
                    } else {
                        current_type.as_mut().map(|(_, t)| &mut t.syntax)
                    };
                    let in_syntax = parent == "syntax" || parent == "dataType";
                    if let Some(syntax) = syntax {
                        if in_syntax && name == "list" {
                            syntax.list = true;
                        } else if in_syntax && BASE_TYPES.contains(&name.as_str()) {
                            syntax.base = name.clone();
                            if let Some((_, t)) = current_type.as_mut()
                                && parameter.is_none()
                            {
                                t.base_type = Some(name.clone());
                            }
                        } else if in_syntax && name == "dataType" {
                            type_ref = attribute(start, "ref")?;
                        } else if BASE_TYPES.contains(&parent) || parent == "dataType" {
                            read_facet(syntax, &name, start)?;
                        }
                    }
                }
            }
            if !empty {
                stack.push(name);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                match name.as_str() {
                    "dataType" if stack.last().map(String::as_str) == Some("document") => {
                        if let Some((n, t)) = current_type.take() {
                            data_types.insert(n, t);
                        }
                    }
                    "object" if stack.last().map(String::as_str) == Some("model") => {
                        object = None;
                    }
                    "uniqueKey" => {
                        if let (Some(o), Some(keys)) = (object.as_ref(), unique.take()) {
                            unique_keys.entry(o.clone()).or_default().push(keys);
                        }
                    }
                    "parameter" => {
                        if let (Some(o), Some((n, mut p))) = (object.as_ref(), parameter.take()) {
                            if let Some(r) = type_ref.take() {
                                resolve_type(&data_types, &r, &mut p.syntax)?;
                            }
                            parameters.insert(format!("{o}{n}"), p);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(Tr181Model {
        parameters,
        unique_keys,
    })
}

fn read_facet(syntax: &mut Syntax, name: &str, start: &BytesStart<'_>) -> Result<(), String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        attribute(start, key)?
            .map(|v| v.parse().map_err(|_| format!("bad {key} {v:?}")))
            .transpose()
    };
    match name {
        "size" => {
            syntax.min_length = number("minLength")?.map(|v| v as u32);
            syntax.max_length = number("maxLength")?.map(|v| v as u32);
        }
        "range" => {
            syntax.min = number("minInclusive")?;
            syntax.max = number("maxInclusive")?;
        }
        "enumeration" => {
            if let Some(v) = attribute(start, "value")? {
                syntax.enumeration.push(v);
            }
        }
        "pathRef" => {
            syntax.reference = attribute(start, "targetType")?.as_deref() == Some("row");
        }
        _ => {}
    }
    Ok(())
}

/// Fills the base type of a `dataType ref` (following `base` chains), and
/// its facets where the parameter sets none of its own.
fn resolve_type(
    types: &HashMap<String, DataType>,
    name: &str,
    syntax: &mut Syntax,
) -> Result<(), String> {
    let mut current = name;
    for _ in 0..16 {
        let t = types
            .get(current)
            .ok_or_else(|| format!("unknown dataType {current:?}"))?;
        if syntax.max_length.is_none() {
            syntax.max_length = t.syntax.max_length;
            syntax.min_length = syntax.min_length.or(t.syntax.min_length);
        }
        if let Some(base) = &t.base_type {
            syntax.base = base.clone();
            return Ok(());
        }
        current = t
            .base
            .as_deref()
            .ok_or_else(|| format!("dataType {current:?} has no base type"))?;
    }
    Err(format!("dataType {name:?}: base chain too long"))
}
