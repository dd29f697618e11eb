//! text/plain (content format 0, LwM2M Core §7.4.1): one value.

use base64::Engine as _;
use dm_core::{ObjectId, ObjectLink, Value, ValueType};

use super::FormatError;

pub fn encode(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) | Value::DateTime(i) => i.to_string(),
        Value::DateTimeMicros(us) => us.div_euclid(1_000_000).to_string(),
        Value::Unsigned(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        // LwM2M writes booleans as "1" and "0".
        Value::Boolean(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Opaque(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Value::ObjectLink(link) => format!("{}:{}", link.object, link.instance),
    }
}

pub fn decode(text: &str, value_type: ValueType) -> Result<Value, FormatError> {
    let bad = || FormatError::Malformed(format!("{text:?} is not a valid {}", value_type.name()));
    let t = text.trim();
    Ok(match value_type {
        ValueType::String | ValueType::CoreLink => Value::String(text.to_owned()),
        ValueType::Int | ValueType::Long => Value::Integer(t.parse().map_err(|_| bad())?),
        ValueType::UnsignedInt | ValueType::UnsignedLong => {
            Value::Unsigned(t.parse().map_err(|_| bad())?)
        }
        ValueType::DateTime => Value::DateTime(t.parse().map_err(|_| bad())?),
        ValueType::Float => {
            let f: f64 = t.parse().map_err(|_| bad())?;
            if !f.is_finite() {
                return Err(bad());
            }
            Value::Float(f)
        }
        ValueType::Boolean => Value::Boolean(match t {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(bad()),
        }),
        ValueType::Opaque => Value::Opaque(
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| bad())?,
        ),
        ValueType::ObjectLink => {
            let (object, instance) = t.split_once(':').ok_or_else(bad)?;
            Value::ObjectLink(ObjectLink {
                object: ObjectId(object.parse().map_err(|_| bad())?),
                instance: instance.parse().map_err(|_| bad())?,
            })
        }
        ValueType::None => return Err(bad()),
    })
}
