//! SenML JSON (content format 110, RFC 8428 as LwM2M Core §7.4.4 uses it):
//! one record per value, names relative to a base name, LwM2M's `vlo`
//! for object links.

use base64::Engine as _;
use dm_core::{ObjectId, ObjectLink, Value, ValueType};
use serde_json::{Map, Value as Json, json};

use super::{FormatError, Item};
use crate::mapping::Lwm2mPath;

pub fn encode(base: &Lwm2mPath, items: &[Item]) -> String {
    let single = matches!(items, [item] if item.path == *base);
    let base_name = if single {
        base.to_string()
    } else {
        format!("{base}/")
    };
    encode_named(Some(&base_name), single, items)
}

/// Records named by their full paths, no base name: a composite read, a
/// notification of a composite observation, a Send (LwM2M Core §6.3.8).
pub fn encode_absolute(items: &[Item]) -> String {
    encode_named(None, false, items)
}

fn encode_named(base_name: Option<&str>, single: bool, items: &[Item]) -> String {
    let records: Vec<Json> = items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let mut record = Map::new();
            if n == 0
                && let Some(base_name) = base_name
            {
                record.insert("bn".into(), json!(base_name));
            }
            if !single {
                let full = item.path.to_string();
                let relative = base_name
                    .and_then(|b| full.strip_prefix(b))
                    .unwrap_or(&full);
                record.insert("n".into(), json!(relative));
            }
            let (key, value) = match &item.value {
                Value::String(s) => ("vs", json!(s)),
                Value::Integer(i) | Value::DateTime(i) => ("v", json!(i)),
                Value::DateTimeMicros(us) => ("v", json!(us.div_euclid(1_000_000))),
                Value::Unsigned(u) => ("v", json!(u)),
                Value::Float(f) => ("v", json!(f)),
                Value::Boolean(b) => ("vb", json!(b)),
                // RFC 8428 §4.3: base64url without padding.
                Value::Opaque(bytes) => (
                    "vd",
                    json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
                ),
                Value::ObjectLink(link) => {
                    ("vlo", json!(format!("{}:{}", link.object, link.instance)))
                }
            };
            record.insert(key.into(), value);
            Json::Object(record)
        })
        .collect();
    Json::Array(records).to_string()
}

pub fn decode(
    base: &Lwm2mPath,
    bytes: &[u8],
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
) -> Result<Vec<Item>, FormatError> {
    let malformed = |m: &str| FormatError::Malformed(m.to_owned());
    let json: Json =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let records = json
        .as_array()
        .ok_or_else(|| malformed("SenML is an array of records"))?;
    decode_records(Some(base), records, type_at)
}

/// The SenML JSON array of records.
pub(crate) fn records(bytes: &[u8]) -> Result<Vec<Json>, FormatError> {
    let json: Json =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    match json {
        Json::Array(records) => Ok(records),
        _ => Err(FormatError::Malformed(
            "SenML is an array of records".into(),
        )),
    }
}

/// The paths the records name (bn + n), at any depth: the request of a
/// Read-Composite or Observe-Composite (LwM2M Core §6.3.8).
pub(crate) fn record_names(records: &[Json]) -> Result<Vec<Lwm2mPath>, FormatError> {
    let malformed = |m: &str| FormatError::Malformed(m.to_owned());
    let mut base_name = String::new();
    let mut names = Vec::new();
    for record in records {
        let record = record
            .as_object()
            .ok_or_else(|| malformed("a SenML record is an object"))?;
        if let Some(bn) = record.get("bn") {
            base_name = bn
                .as_str()
                .ok_or_else(|| malformed("bn is not a string"))?
                .to_owned();
        }
        let name = match record.get("n") {
            Some(n) => format!(
                "{base_name}{}",
                n.as_str().ok_or_else(|| malformed("n is not a string"))?
            ),
            None => base_name.clone(),
        };
        let path: Lwm2mPath = name
            .parse()
            .map_err(|_| FormatError::Malformed(format!("{name:?} is not an LwM2M path")))?;
        names.push(path);
    }
    Ok(names)
}

/// Resolves names and types the values of SenML records (shared with the
/// CBOR representation, which is read into the same records).
pub(crate) fn decode_records(
    base: Option<&Lwm2mPath>,
    records: &[Json],
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
) -> Result<Vec<Item>, FormatError> {
    let malformed = |m: &str| FormatError::Malformed(m.to_owned());
    let mut base_name = String::new();
    let mut items = Vec::new();
    for record in records {
        let record = record
            .as_object()
            .ok_or_else(|| malformed("a SenML record is an object"))?;
        if let Some(bn) = record.get("bn") {
            base_name = bn
                .as_str()
                .ok_or_else(|| malformed("bn is not a string"))?
                .to_owned();
        }
        let name = match record.get("n") {
            Some(n) => format!(
                "{base_name}{}",
                n.as_str().ok_or_else(|| malformed("n is not a string"))?
            ),
            None => base_name.clone(),
        };
        let path: Lwm2mPath = name
            .parse()
            .map_err(|_| FormatError::Malformed(format!("{name:?} is not an LwM2M path")))?;
        if path.resource.is_none() || base.is_some_and(|base| !prefix_of(base, &path)) {
            return Err(FormatError::Malformed(match base {
                Some(base) => format!("{name} is not a resource under {base}"),
                None => format!("{name} is not a resource"),
            }));
        }
        let value_type = type_at(&Lwm2mPath {
            index: None,
            ..path
        })?;
        items.push(Item {
            path,
            value: value(record, value_type)?,
        });
    }
    Ok(items)
}

fn prefix_of(base: &Lwm2mPath, path: &Lwm2mPath) -> bool {
    base.object == path.object
        && (base.instance.is_none() || base.instance == path.instance)
        && (base.resource.is_none() || base.resource == path.resource)
        && (base.index.is_none() || base.index == path.index)
}

fn value(record: &Map<String, Json>, value_type: ValueType) -> Result<Value, FormatError> {
    let bad = |what: &str| {
        FormatError::Malformed(format!("a {} resource needs {what}", value_type.name()))
    };
    let number = || record.get("v").and_then(Json::as_number);
    Ok(match value_type {
        ValueType::String | ValueType::CoreLink => Value::String(
            record
                .get("vs")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("vs"))?
                .to_owned(),
        ),
        ValueType::Int | ValueType::Long | ValueType::DateTime => {
            let n = number().ok_or_else(|| bad("an integer v"))?;
            let i = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| bad("an integer v"))?;
            if value_type == ValueType::DateTime {
                Value::DateTime(i)
            } else {
                Value::Integer(i)
            }
        }
        ValueType::UnsignedInt | ValueType::UnsignedLong => Value::Unsigned(
            number()
                .and_then(|n| n.as_u64())
                .ok_or_else(|| bad("an unsigned v"))?,
        ),
        ValueType::Float => {
            Value::Float(number().and_then(|n| n.as_f64()).ok_or_else(|| bad("v"))?)
        }
        ValueType::Boolean => Value::Boolean(
            record
                .get("vb")
                .and_then(Json::as_bool)
                .ok_or_else(|| bad("vb"))?,
        ),
        ValueType::Opaque => {
            let text = record
                .get("vd")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("vd"))?;
            // Accept padded and standard-alphabet base64 too: servers differ.
            let engines = [
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
            ];
            Value::Opaque(
                engines
                    .iter()
                    .find_map(|e| e.decode(text).ok())
                    .ok_or_else(|| bad("base64 vd"))?,
            )
        }
        ValueType::ObjectLink => {
            let text = record
                .get("vlo")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("vlo"))?;
            let (o, i) = text
                .split_once(':')
                .ok_or_else(|| bad("vlo object:instance"))?;
            Value::ObjectLink(ObjectLink {
                object: ObjectId(o.parse().map_err(|_| bad("vlo object:instance"))?),
                instance: i.parse().map_err(|_| bad("vlo object:instance"))?,
            })
        }
        ValueType::None => return Err(bad("no value (executable)")),
    })
}
