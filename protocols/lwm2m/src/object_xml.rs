//! OMA LwM2M object definitions (the registry's XML, `LWM2M-v1_1.xsd`),
//! read into plain data.
//!
//! The code generator (`xtask`) compiles this same file for the built-in
//! objects, and the agent reads declared objects with it at start: one
//! reader, so a declared object means what the same built-in one means.
//! It therefore depends on nothing but std and quick-xml.

use quick_xml::Reader;
use quick_xml::escape::unescape;
use quick_xml::events::{BytesStart, Event};

/// The registry's files declare XML 1.0.
pub const XML_1_0: quick_xml::XmlVersion = quick_xml::XmlVersion::Explicit1_0;

/// An object definition, as the file says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDef {
    pub id: u16,
    pub name: String,
    /// `ObjectVersion`, "1.0" when absent (LwM2M Core §7.2.2).
    pub version: String,
    pub multiple: bool,
    pub mandatory: bool,
    /// In file order.
    pub resources: Vec<ResourceDef>,
}

/// One `<Item>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    pub id: u16,
    /// Whitespace folded to single spaces.
    pub name: String,
    pub operations: Operations,
    pub multiple: bool,
    pub mandatory: bool,
    pub value_type: ResourceType,
    /// `RangeEnumeration` as written; see [`range`].
    pub range: String,
    pub units: String,
}

/// `Operations` (LWM2M-v1_1.xsd: "R", "W", "RW", "E" or empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operations {
    None,
    Read,
    Write,
    ReadWrite,
    Execute,
}

/// `Type` (LWM2M-v1_1.xsd), empty for an executable resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    None,
    String,
    Integer,
    UnsignedInteger,
    Float,
    Boolean,
    Opaque,
    Time,
    Objlnk,
    Corelnk,
}

/// Why a file is not an object definition, with the line it is at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for XmlError {}

/// A `RangeEnumeration`, as far as it constrains values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Range {
    /// Prose, or nothing: no constraint.
    None,
    /// `0..255`, `-110..-48`, `0..255 bytes`: inclusive.
    Values { min: i64, max: i64 },
    /// `6` or `16,32,48` on a string or opaque resource: allowed lengths.
    Lengths(Vec<u32>),
}

/// Reads an object definition. Every `<Item>` needs an ID, a Name and
/// known Operations and Type; IDs are unique and not 65535 ("no id",
/// Core §7.2).
pub fn parse(text: &str) -> Result<ObjectDef, XmlError> {
    let mut reader = Reader::from_str(text);
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
    let mut stack: Vec<String> = Vec::new();
    let mut item: Option<(u16, u64)> = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut object_fields: Vec<(String, String)> = Vec::new();
    let mut resources: Vec<ResourceDef> = Vec::new();
    let mut objects = 0;
    loop {
        let position = reader.buffer_position();
        let error = |message: String| XmlError {
            line: line_at(position),
            message,
        };
        let event = reader
            .read_event()
            .map_err(|e| error(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(start) => {
                let name = element_name(&start);
                match name.as_str() {
                    "Object" => objects += 1,
                    "Item" if item.is_some() => return Err(error("<Item> inside <Item>".into())),
                    "Item" => {
                        let id = attribute(&start, "ID")
                            .map_err(&error)?
                            .ok_or_else(|| error("<Item> without an ID".into()))?;
                        let id = match id.trim().parse::<u16>() {
                            Ok(id) if id != u16::MAX => id,
                            _ => return Err(error(format!("Item ID {id:?} is not 0 to 65534"))),
                        };
                        if resources.iter().any(|r| r.id == id) {
                            return Err(error(format!("Item ID {id} is defined twice")));
                        }
                        item = Some((id, position));
                        fields.clear();
                    }
                    _ => {}
                }
                stack.push(name);
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                if name == "Item"
                    && let Some((id, at)) = item.take()
                {
                    // The line is counted only for an error: counting it
                    // for every Item would scan the file once per Item.
                    resources.push(resource(id, &fields).map_err(|message| XmlError {
                        line: line_at(at),
                        message: format!("Item {id}: {message}"),
                    })?);
                }
            }
            Event::Text(content) => {
                let content = content.xml_content(XML_1_0);
                let value = unescape(&content)
                    .map_err(|e| error(format!("bad character reference: {e}")))?;
                store(
                    &stack,
                    &mut fields,
                    &mut object_fields,
                    item.is_some(),
                    value.trim(),
                );
            }
            Event::CData(data) => {
                let value = data.xml_content(XML_1_0);
                store(
                    &stack,
                    &mut fields,
                    &mut object_fields,
                    item.is_some(),
                    value.trim(),
                );
            }
            // A document cut short ends with elements open (quick-xml
            // reports Eof all the same).
            Event::Eof => match stack.last() {
                Some(open) => return Err(error(format!("the file ends inside <{open}>"))),
                None => break,
            },
            _ => {}
        }
    }
    let end = |message: String| XmlError {
        line: line_at(text.len() as u64),
        message,
    };
    if objects != 1 {
        return Err(end(format!("{objects} <Object> elements; one is needed")));
    }
    let get = |key: &str| field(&object_fields, key);
    let id = get("ObjectID");
    let id = match id.parse::<u16>() {
        Ok(id) if id != u16::MAX => id,
        _ => return Err(end(format!("ObjectID {id:?} is not 0 to 65534"))),
    };
    let name = folded(get("Name"));
    if name.is_empty() {
        return Err(end("the object has no Name".into()));
    }
    let multiple = instances(get("MultipleInstances")).map_err(&end)?;
    let mandatory = required(get("Mandatory")).map_err(&end)?;
    Ok(ObjectDef {
        id,
        name,
        version: match get("ObjectVersion") {
            "" => "1.0".to_owned(),
            v => v.to_owned(),
        },
        multiple,
        mandatory,
        resources,
    })
}

/// What a `RangeEnumeration` constrains; anything but a numeric range or
/// a length list is prose and constrains nothing.
pub fn range(text: &str, value_type: ResourceType) -> Range {
    let text = text.trim().trim_end_matches("bytes").trim();
    if let Some((min, max)) = text.split_once("..")
        && let (Ok(min), Ok(max)) = (min.trim().parse::<i64>(), max.trim().parse::<i64>())
    {
        return Range::Values { min, max };
    }
    let lengths: Result<Vec<u32>, _> = text.split(',').map(|s| s.trim().parse::<u32>()).collect();
    match lengths {
        Ok(lengths)
            if !text.is_empty()
                && matches!(value_type, ResourceType::String | ResourceType::Opaque) =>
        {
            Range::Lengths(lengths)
        }
        _ => Range::None,
    }
}

/// An element's name without its namespace prefix.
pub fn element_name(start: &BytesStart<'_>) -> String {
    start.local_name().as_ref().to_owned()
}

/// An attribute's normalised value, by local name.
pub fn attribute(start: &BytesStart<'_>, key: &str) -> Result<Option<String>, String> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        if attr.key.local_name().as_ref() == key {
            let value = attr
                .normalized_value(XML_1_0)
                .map_err(|e| format!("bad attribute {key}: {e}"))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn resource(id: u16, fields: &[(String, String)]) -> Result<ResourceDef, String> {
    let get = |key: &str| field(fields, key);
    let name = folded(get("Name"));
    if name.is_empty() {
        return Err("no Name".into());
    }
    let operations = match get("Operations") {
        "" => Operations::None,
        "R" => Operations::Read,
        "W" => Operations::Write,
        "RW" => Operations::ReadWrite,
        "E" => Operations::Execute,
        other => {
            return Err(format!(
                "Operations {other:?}; allowed: R, W, RW, E or empty"
            ));
        }
    };
    let value_type = match get("Type") {
        "" => ResourceType::None,
        "String" => ResourceType::String,
        "Integer" => ResourceType::Integer,
        "Unsigned Integer" => ResourceType::UnsignedInteger,
        "Float" => ResourceType::Float,
        "Boolean" => ResourceType::Boolean,
        "Opaque" => ResourceType::Opaque,
        "Time" => ResourceType::Time,
        "Objlnk" => ResourceType::Objlnk,
        "Corelnk" => ResourceType::Corelnk,
        other => return Err(format!("Type {other:?} is not an LwM2M data type")),
    };
    if (operations == Operations::Execute) != (value_type == ResourceType::None) {
        return Err(format!(
            "Operations {operations:?} with Type {value_type:?}: only an executable \
             resource has no type"
        ));
    }
    Ok(ResourceDef {
        id,
        name,
        operations,
        multiple: instances(get("MultipleInstances"))?,
        mandatory: required(get("Mandatory"))?,
        value_type,
        range: get("RangeEnumeration").to_owned(),
        units: get("Units").to_owned(),
    })
}

fn instances(text: &str) -> Result<bool, String> {
    match text {
        "Multiple" => Ok(true),
        "Single" => Ok(false),
        other => Err(format!(
            "MultipleInstances {other:?}; allowed: Single, Multiple"
        )),
    }
}

fn required(text: &str) -> Result<bool, String> {
    match text {
        "Mandatory" => Ok(true),
        "Optional" => Ok(false),
        other => Err(format!("Mandatory {other:?}; allowed: Mandatory, Optional")),
    }
}

fn folded(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn field<'f>(fields: &'f [(String, String)], key: &str) -> &'f str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Keeps the text of an `<Item>`'s fields, and of the `<Object>`'s own
/// (not those of nested elements such as `<Resources>`).
fn store(
    stack: &[String],
    fields: &mut Vec<(String, String)>,
    object_fields: &mut Vec<(String, String)>,
    in_item: bool,
    value: &str,
) {
    let Some(leaf) = stack.last() else { return };
    let target = if in_item {
        fields
    } else if stack.len() >= 2 && stack[stack.len() - 2] == "Object" {
        object_fields
    } else {
        return;
    };
    match target.iter_mut().find(|(k, _)| k == leaf) {
        Some((_, text)) => text.push_str(value),
        None => target.push((leaf.clone(), value.to_owned())),
    }
}
