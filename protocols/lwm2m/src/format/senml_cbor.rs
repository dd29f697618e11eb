//! SenML CBOR (content format 112, RFC 8428 §6): the SenML records with
//! integer labels (bn −2, n 0, v 2, vs 3, vb 4, vd 8) and LwM2M's text
//! label `vlo` for object links.

use dm_core::{Value, ValueType};
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Value as Json, json};

use super::{FormatError, Item};
use crate::mapping::Lwm2mPath;

const BASE_NAME: i64 = -2;
const NAME: i64 = 0;
const VALUE: i64 = 2;
const STRING: i64 = 3;
const BOOLEAN: i64 = 4;
const DATA: i64 = 8;
const OBJECT_LINK: &str = "vlo";

pub fn encode(base: &Lwm2mPath, items: &[Item]) -> Vec<u8> {
    let single = matches!(items, [item] if item.path == *base);
    let base_name = if single {
        base.to_string()
    } else {
        format!("{base}/")
    };
    encode_named(Some(&base_name), single, items)
}

/// Records named by their full paths, no base name (composite operations
/// and Send).
pub fn encode_absolute(items: &[Item]) -> Vec<u8> {
    encode_named(None, false, items)
}

fn encode_named(base_name: Option<&str>, single: bool, items: &[Item]) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = encoder.array(items.len() as u64);
    for (n, item) in items.iter().enumerate() {
        let with_base = n == 0 && base_name.is_some();
        let fields = 1 + u64::from(with_base) + u64::from(!single);
        let _ = encoder.map(fields);
        if with_base && let Some(base_name) = base_name {
            let _ = encoder.i64(BASE_NAME).and_then(|e| e.str(base_name));
        }
        if !single {
            let full = item.path.to_string();
            let relative = base_name
                .and_then(|b| full.strip_prefix(b))
                .unwrap_or(&full)
                .to_owned();
            let _ = encoder.i64(NAME).and_then(|e| e.str(&relative));
        }
        let _ = match &item.value {
            Value::String(s) => encoder.i64(STRING).and_then(|e| e.str(s)),
            Value::Integer(i) | Value::DateTime(i) => encoder.i64(VALUE).and_then(|e| e.i64(*i)),
            Value::DateTimeMicros(us) => encoder
                .i64(VALUE)
                .and_then(|e| e.i64(us.div_euclid(1_000_000))),
            Value::Unsigned(u) => encoder.i64(VALUE).and_then(|e| e.u64(*u)),
            Value::Float(f) => encoder.i64(VALUE).and_then(|e| e.f64(*f)),
            Value::Boolean(b) => encoder.i64(BOOLEAN).and_then(|e| e.bool(*b)),
            Value::Opaque(bytes) => encoder.i64(DATA).and_then(|e| e.bytes(bytes)),
            Value::ObjectLink(link) => encoder
                .str(OBJECT_LINK)
                .and_then(|e| e.str(&format!("{}:{}", link.object, link.instance))),
        };
    }
    encoder.into_writer()
}

pub fn decode(
    base: &Lwm2mPath,
    bytes: &[u8],
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
) -> Result<Vec<Item>, FormatError> {
    super::senml_json::decode_records(Some(base), &json_records(bytes)?, type_at)
}

/// The records, as the JSON records the shared decoder reads.
pub(crate) fn json_records(bytes: &[u8]) -> Result<Vec<Json>, FormatError> {
    records(bytes).map_err(|e| FormatError::Malformed(format!("SenML CBOR: {e}")))
}

/// The CBOR records as the JSON records the shared decoder reads; opaque
/// values become base64url text, which it accepts.
fn records(bytes: &[u8]) -> Result<Vec<Json>, String> {
    use base64::Engine as _;
    let mut d = Decoder::new(bytes);
    let count = d
        .array()
        .map_err(|e| e.to_string())?
        .ok_or("indefinite arrays are not read")?;
    // Each record takes at least two bytes: refuse counts the input cannot hold.
    if count > bytes.len() as u64 {
        return Err("record count beyond the payload".into());
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let fields = d
            .map()
            .map_err(|e| e.to_string())?
            .ok_or("indefinite maps are not read")?;
        if fields > bytes.len() as u64 {
            return Err("field count beyond the payload".into());
        }
        let mut record = Map::new();
        for _ in 0..fields {
            let key = match d.datatype().map_err(|e| e.to_string())? {
                Type::String => d.str().map_err(|e| e.to_string())?.to_owned(),
                _ => match d.i64().map_err(|e| e.to_string())? {
                    BASE_NAME => "bn".into(),
                    NAME => "n".into(),
                    VALUE => "v".into(),
                    STRING => "vs".into(),
                    BOOLEAN => "vb".into(),
                    DATA => "vd".into(),
                    other => format!("#{other}"),
                },
            };
            let value = match d.datatype().map_err(|e| e.to_string())? {
                Type::String => json!(d.str().map_err(|e| e.to_string())?),
                Type::Bytes => json!(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(d.bytes().map_err(|e| e.to_string())?)
                ),
                Type::Bool => json!(d.bool().map_err(|e| e.to_string())?),
                Type::F16 | Type::F32 | Type::F64 => json!(d.f64().map_err(|e| e.to_string())?),
                Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                    json!(d.u64().map_err(|e| e.to_string())?)
                }
                Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
                    json!(d.i64().map_err(|e| e.to_string())?)
                }
                _ => {
                    d.skip().map_err(|e| e.to_string())?;
                    Json::Null
                }
            };
            record.insert(key, value);
        }
        out.push(Json::Object(record));
    }
    Ok(out)
}
