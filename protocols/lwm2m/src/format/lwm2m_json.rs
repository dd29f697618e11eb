//! The LwM2M 1.0 JSON format (content format 11543, LwM2M TS 1.0 §6.4.4):
//! `{"bn":"/3/0/","e":[{"n":"0","sv":"Acme"},{"n":"7/0","v":3800}]}`.
//! Superseded by SenML JSON in 1.1, but Leshan and servers built for 1.0
//! still ask for it.
//!
//! Values: numbers and Time in `v`, booleans in `bv`, strings in `sv`,
//! Opaque as base64 in `sv`, Objlnk as `"object:instance"` in `ov`. Names
//! are relative to `bn`; decoding goes through the SenML records it maps
//! onto, so both formats resolve names and type values alike.

use base64::Engine as _;
use dm_core::{Value, ValueType};
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
    let entries: Vec<Json> = items
        .iter()
        .map(|item| {
            let mut entry = Map::new();
            if !single {
                let full = item.path.to_string();
                let relative = full.strip_prefix(&base_name).unwrap_or(&full);
                entry.insert("n".into(), json!(relative));
            }
            let (key, value) = match &item.value {
                Value::String(s) => ("sv", json!(s)),
                Value::Integer(i) | Value::DateTime(i) => ("v", json!(i)),
                Value::DateTimeMicros(us) => ("v", json!(us.div_euclid(1_000_000))),
                Value::Unsigned(u) => ("v", json!(u)),
                Value::Float(f) => ("v", json!(f)),
                Value::Boolean(b) => ("bv", json!(b)),
                Value::Opaque(bytes) => (
                    "sv",
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
                ),
                Value::ObjectLink(link) => {
                    ("ov", json!(format!("{}:{}", link.object, link.instance)))
                }
            };
            entry.insert(key.into(), value);
            Json::Object(entry)
        })
        .collect();
    json!({ "bn": base_name, "e": entries }).to_string()
}

pub fn decode(
    base: &Lwm2mPath,
    bytes: &[u8],
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
) -> Result<Vec<Item>, FormatError> {
    let malformed = |m: &str| FormatError::Malformed(format!("LwM2M JSON: {m}"));
    let json: Json =
        serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let object = json
        .as_object()
        .ok_or_else(|| malformed("the payload is an object"))?;
    let base_name = match object.get("bn") {
        Some(bn) => bn.as_str().ok_or_else(|| malformed("bn is not a string"))?,
        None => "",
    };
    let entries = object
        .get("e")
        .and_then(Json::as_array)
        .ok_or_else(|| malformed("e is not an array"))?;
    // Each entry as the SenML record it stands for.
    let mut records = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let entry = entry
            .as_object()
            .ok_or_else(|| malformed("an entry is an object"))?;
        let mut record = Map::new();
        if n == 0 {
            record.insert("bn".into(), json!(base_name));
        }
        if let Some(name) = entry.get("n") {
            record.insert("n".into(), name.clone());
        }
        for (from, to) in [("v", "v"), ("bv", "vb"), ("ov", "vlo")] {
            if let Some(value) = entry.get(from) {
                record.insert(to.into(), value.clone());
            }
        }
        // A string or base64 opaque: which one, the resource's type says.
        if let Some(value) = entry.get("sv") {
            record.insert("vs".into(), value.clone());
            record.insert("vd".into(), value.clone());
        }
        records.push(Json::Object(record));
    }
    super::senml_json::decode_records(Some(base), &records, type_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Lwm2mPath {
        text.parse().unwrap()
    }

    fn types(p: &Lwm2mPath) -> Result<ValueType, FormatError> {
        Ok(match (p.object, p.resource) {
            (3, Some(0)) => ValueType::String,
            (3, Some(7)) => ValueType::Long,
            (3, Some(13)) => ValueType::DateTime,
            (3, Some(19)) => ValueType::Opaque,
            (1, Some(6)) => ValueType::Boolean,
            (2, Some(0)) => ValueType::ObjectLink,
            _ => return Err(FormatError::Malformed(format!("{p}"))),
        })
    }

    #[test]
    fn an_instance_round_trips_with_names_relative_to_bn() {
        let items = vec![
            Item {
                path: path("/3/0/0"),
                value: Value::String("Acme".into()),
            },
            Item {
                path: path("/3/0/7/0"),
                value: Value::Integer(3800),
            },
            Item {
                path: path("/3/0/13"),
                value: Value::DateTime(1_700_000_000),
            },
            Item {
                path: path("/3/0/19"),
                value: Value::Opaque(vec![0, 1, 0xfe]),
            },
        ];
        let text = encode(&path("/3/0"), &items);
        assert_eq!(
            text,
            r#"{"bn":"/3/0/","e":[{"n":"0","sv":"Acme"},{"n":"7/0","v":3800},{"n":"13","v":1700000000},{"n":"19","sv":"AAH+"}]}"#
        );
        assert_eq!(
            decode(&path("/3/0"), text.as_bytes(), &types).unwrap(),
            items
        );
    }

    #[test]
    fn one_value_has_no_name_and_leshans_shapes_decode() {
        let one = vec![Item {
            path: path("/1/0/6"),
            value: Value::Boolean(true),
        }];
        let text = encode(&path("/1/0/6"), &one);
        assert_eq!(text, r#"{"bn":"/1/0/6","e":[{"bv":true}]}"#);
        assert_eq!(
            decode(&path("/1/0/6"), text.as_bytes(), &types).unwrap(),
            one
        );
        // Names with the full path and no bn; an object link.
        let text = br#"{"e":[{"n":"/2/0/0","ov":"3:0"}]}"#;
        let items = decode(&path("/2/0"), text, &types).unwrap();
        assert_eq!(
            items[0].value,
            Value::ObjectLink(dm_core::ObjectLink {
                object: dm_core::ObjectId(3),
                instance: 0
            })
        );
    }

    #[test]
    fn bad_payloads_are_malformed_not_panics() {
        for bad in [
            &b"[]"[..],
            b"{}",
            br#"{"e":{}}"#,
            br#"{"bn":3,"e":[]}"#,
            br#"{"bn":"/3/0/","e":[7]}"#,
            br#"{"bn":"/3/0/","e":[{"n":"0","v":1}]}"#,
            br#"{"bn":"/3/0/","e":[{"n":"9/9/9/9","sv":"x"}]}"#,
            b"\xff",
        ] {
            assert!(decode(&path("/3/0"), bad, &types).is_err(), "{bad:?}");
        }
    }
}
