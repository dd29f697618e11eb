//! LwM2M CBOR (content format 11544, LwM2M Core 1.2 §7.4.6): values in
//! nested CBOR maps keyed by path segments from the root, e.g.
//! `{3: {0: {0: "Acme", 1: "Gw"}}}`. A key may also be an array of
//! segments (`{[3, 0]: {0: "Acme"}}`); the encoder nests one segment per
//! level, the decoder reads both.
//!
//! Leaves: integers and unsigned as CBOR integers, floats as floats,
//! booleans, strings and Corelnk as text, Opaque as a byte string, Time as
//! an integer (tag 1 accepted), Objlnk as the text "object:instance".

use dm_core::{ObjectId, ObjectLink, Value, ValueType};
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

use super::{FormatError, Item};
use crate::mapping::Lwm2mPath;

/// Nesting accepted when decoding: object, instance, resource, resource
/// instance, plus one for a stray level. Bounds recursion on hostile input.
const MAX_DEPTH: usize = 5;

pub fn encode(items: &[Item]) -> Vec<u8> {
    // Grouping needs items in path order (a composite read may list its
    // paths in any order); a map key must not repeat.
    let mut sorted: Vec<Item> = items.to_vec();
    sorted.sort_by_key(|i| segments(&i.path));
    let mut encoder = Encoder::new(Vec::new());
    let paths: Vec<Vec<u16>> = sorted.iter().map(|i| segments(&i.path)).collect();
    encode_level(&mut encoder, &sorted, &paths, 0, 0, sorted.len());
    encoder.into_writer()
}

/// Encodes the map of items[from..to], which share their first `depth`
/// segments.
fn encode_level(
    encoder: &mut Encoder<Vec<u8>>,
    items: &[Item],
    paths: &[Vec<u16>],
    depth: usize,
    from: usize,
    to: usize,
) {
    // Groups of consecutive items with the same segment at `depth`.
    let mut groups = Vec::new();
    let mut start = from;
    while start < to {
        let key = paths[start][depth];
        let mut end = start + 1;
        while end < to && paths[end][depth] == key {
            end += 1;
        }
        groups.push((key, start, end));
        start = end;
    }
    // Writing into a Vec cannot fail.
    let _ = encoder.map(groups.len() as u64);
    for (key, start, end) in groups {
        let _ = encoder.u16(key);
        if paths[start].len() == depth + 1 {
            leaf(encoder, &items[start].value);
        } else {
            encode_level(encoder, items, paths, depth + 1, start, end);
        }
    }
}

fn leaf(encoder: &mut Encoder<Vec<u8>>, value: &Value) {
    let _ = match value {
        Value::String(s) => encoder.str(s),
        Value::Integer(i) | Value::DateTime(i) => encoder.i64(*i),
        // LwM2M Time is whole seconds.
        Value::DateTimeMicros(us) => encoder.i64(us.div_euclid(1_000_000)),
        Value::Unsigned(u) => encoder.u64(*u),
        Value::Float(f) => encoder.f64(*f),
        Value::Boolean(b) => encoder.bool(*b),
        Value::Opaque(bytes) => encoder.bytes(bytes),
        Value::ObjectLink(link) => encoder.str(&format!("{}:{}", link.object, link.instance)),
    };
}

/// One resource value as a plain CBOR data item (content format 60).
pub fn encode_single(value: &Value) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new());
    leaf(&mut encoder, value);
    encoder.into_writer()
}

/// A plain CBOR data item (content format 60) as a value of `value_type`;
/// nothing may follow it.
pub fn decode_single(bytes: &[u8], value_type: ValueType) -> Result<Value, FormatError> {
    let mut decoder = Decoder::new(bytes);
    let value = value(&mut decoder, value_type).map_err(|e| match e {
        Failure::Format(e) => e,
        Failure::Cbor(e) => FormatError::Malformed(format!("CBOR: {e}")),
    })?;
    if decoder.position() != bytes.len() {
        return Err(FormatError::Malformed("CBOR: bytes after the value".into()));
    }
    Ok(value)
}

fn segments(path: &Lwm2mPath) -> Vec<u16> {
    [Some(path.object), path.instance, path.resource, path.index]
        .into_iter()
        .map_while(|s| s)
        .collect()
}

/// Decodes a payload; every value must be at a resource or resource
/// instance at or under `base` (`None`: anywhere, for a composite).
pub fn decode(
    base: Option<&Lwm2mPath>,
    bytes: &[u8],
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
) -> Result<Vec<Item>, FormatError> {
    let mut decoder = Decoder::new(bytes);
    let mut items = Vec::new();
    let mut prefix = Vec::new();
    decode_map(&mut decoder, &mut prefix, &mut items, type_at, bytes.len()).map_err(
        |e| match e {
            Failure::Format(e) => e,
            Failure::Cbor(e) => FormatError::Malformed(format!("LwM2M CBOR: {e}")),
        },
    )?;
    if decoder.position() != bytes.len() {
        return Err(FormatError::Malformed(
            "LwM2M CBOR: bytes after the map".into(),
        ));
    }
    if let Some(base) = base {
        let base = segments(base);
        if let Some(item) = items.iter().find(|i| !segments(&i.path).starts_with(&base)) {
            return Err(FormatError::Malformed(format!(
                "{} is not under the request path",
                item.path
            )));
        }
    }
    Ok(items)
}

enum Failure {
    Format(FormatError),
    Cbor(String),
}

impl From<minicbor::decode::Error> for Failure {
    fn from(e: minicbor::decode::Error) -> Failure {
        Failure::Cbor(e.to_string())
    }
}

fn decode_map(
    d: &mut Decoder<'_>,
    prefix: &mut Vec<u16>,
    items: &mut Vec<Item>,
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
    limit: usize,
) -> Result<(), Failure> {
    let entries = d
        .map()?
        .ok_or_else(|| Failure::Cbor("indefinite maps are not read".into()))?;
    // Each entry takes at least two bytes: refuse counts the input cannot hold.
    if entries > limit as u64 {
        return Err(Failure::Cbor("entry count beyond the payload".into()));
    }
    for _ in 0..entries {
        let depth = prefix.len();
        match d.datatype()? {
            Type::Array => {
                let n = d
                    .array()?
                    .ok_or_else(|| Failure::Cbor("indefinite arrays are not read".into()))?;
                // Checked: `n` is the peer's (up to u64::MAX).
                if n == 0 || (depth as u64).saturating_add(n) > 4 {
                    return Err(Failure::Cbor("a path key of the wrong length".into()));
                }
                for _ in 0..n {
                    prefix.push(d.u16()?);
                }
            }
            _ => prefix.push(d.u16()?),
        }
        if prefix.len() > MAX_DEPTH {
            return Err(Failure::Cbor("nested too deep".into()));
        }
        if d.datatype()? == Type::Map {
            decode_map(d, prefix, items, type_at, limit)?;
        } else {
            let path = path_of(prefix).ok_or_else(|| {
                Failure::Format(FormatError::Malformed(format!(
                    "a value at {prefix:?}, not at a resource"
                )))
            })?;
            let value_type = type_at(&Lwm2mPath {
                index: None,
                ..path
            })
            .map_err(Failure::Format)?;
            let value = value(d, value_type)?;
            items.push(Item { path, value });
        }
        prefix.truncate(depth);
    }
    Ok(())
}

fn path_of(segments: &[u16]) -> Option<Lwm2mPath> {
    match *segments {
        [object, instance, resource] => Some(Lwm2mPath {
            object,
            instance: Some(instance),
            resource: Some(resource),
            index: None,
        }),
        [object, instance, resource, index] => Some(Lwm2mPath {
            object,
            instance: Some(instance),
            resource: Some(resource),
            index: Some(index),
        }),
        _ => None,
    }
}

fn value(d: &mut Decoder<'_>, value_type: ValueType) -> Result<Value, Failure> {
    let bad = |what: &str| {
        Failure::Format(FormatError::Malformed(format!(
            "a {} resource needs {what}",
            value_type.name()
        )))
    };
    if d.datatype()? == Type::Tag {
        // Time may come as tag 1 (epoch seconds); other tags are refused.
        if d.tag()? != Tag::new(1) || value_type != ValueType::DateTime {
            return Err(bad("no CBOR tag"));
        }
    }
    let integer = |d: &mut Decoder<'_>| -> Result<i64, Failure> {
        match d.datatype()? {
            Type::F16 | Type::F32 | Type::F64 => {
                let f = d.f64()?;
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(f as i64)
                } else {
                    Err(bad("an integer"))
                }
            }
            _ => Ok(d.i64()?),
        }
    };
    Ok(match value_type {
        ValueType::String | ValueType::CoreLink => Value::String(d.str()?.to_owned()),
        ValueType::Int | ValueType::Long => Value::Integer(integer(d)?),
        ValueType::DateTime => Value::DateTime(integer(d)?),
        ValueType::UnsignedInt | ValueType::UnsignedLong => Value::Unsigned(d.u64()?),
        ValueType::Float => Value::Float(match d.datatype()? {
            Type::F16 | Type::F32 | Type::F64 => d.f64()?,
            Type::I8 | Type::I16 | Type::I32 | Type::I64 => d.i64()? as f64,
            _ => d.u64()? as f64,
        }),
        ValueType::Boolean => Value::Boolean(d.bool()?),
        ValueType::Opaque => Value::Opaque(d.bytes()?.to_vec()),
        ValueType::ObjectLink => {
            let text = d.str()?;
            let (o, i) = text.split_once(':').ok_or_else(|| bad("object:instance"))?;
            Value::ObjectLink(ObjectLink {
                object: ObjectId(o.parse().map_err(|_| bad("object:instance"))?),
                instance: i.parse().map_err(|_| bad("object:instance"))?,
            })
        }
        ValueType::None => return Err(bad("no value (executable)")),
    })
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
            (1, Some(1)) => ValueType::Long,
            _ => return Err(FormatError::Malformed(format!("{p}"))),
        })
    }

    #[test]
    fn nested_maps_from_the_root() {
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
                path: path("/3/0/7/1"),
                value: Value::Integer(5000),
            },
        ];
        let bytes = encode(&items);
        // {3: {0: {0: "Acme", 7: {0: 3800, 1: 5000}}}}
        assert_eq!(
            bytes,
            [
                0xA1, 0x03, 0xA1, 0x00, 0xA2, 0x00, 0x64, b'A', b'c', b'm', b'e', 0x07, 0xA2, 0x00,
                0x19, 0x0E, 0xD8, 0x01, 0x19, 0x13, 0x88
            ]
        );
        assert_eq!(decode(Some(&path("/3/0")), &bytes, &types).unwrap(), items);
    }

    #[test]
    fn array_keys_and_tagged_time_are_read() {
        // {[3, 0]: {0: "Acme", 13: 1(1700000000)}, [1, 0, 1]: 300}
        let mut e = Encoder::new(Vec::new());
        e.map(2).unwrap();
        e.array(2).unwrap().u16(3).unwrap().u16(0).unwrap();
        e.map(2).unwrap();
        e.u16(0).unwrap().str("Acme").unwrap();
        e.u16(13)
            .unwrap()
            .tag(Tag::new(1))
            .unwrap()
            .i64(1_700_000_000)
            .unwrap();
        e.array(3)
            .unwrap()
            .u16(1)
            .unwrap()
            .u16(0)
            .unwrap()
            .u16(1)
            .unwrap();
        e.i64(300).unwrap();
        let items = decode(None, &e.into_writer(), &types).unwrap();
        assert_eq!(
            items,
            [
                Item {
                    path: path("/3/0/0"),
                    value: Value::String("Acme".into())
                },
                Item {
                    path: path("/3/0/13"),
                    value: Value::DateTime(1_700_000_000)
                },
                Item {
                    path: path("/1/0/1"),
                    value: Value::Integer(300)
                },
            ]
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        for bytes in [
            &[][..],
            &[0xA1, 0x03][..],
            // A value at an object: not a resource.
            &[0xA1, 0x03, 0x01][..],
            // Deeper than any path.
            &[
                0xA1, 0x03, 0xA1, 0x00, 0xA1, 0x00, 0xA1, 0x00, 0xA1, 0x00, 0xA1, 0x00, 0x01,
            ][..],
            // A huge entry count.
            &[0xBA, 0xFF, 0xFF, 0xFF, 0xFF][..],
            // Trailing bytes.
            &[0xA1, 0x03, 0xA1, 0x00, 0xA1, 0x00, 0x61, b'x', 0x00][..],
        ] {
            assert!(decode(None, bytes, &types).is_err(), "{bytes:?}");
        }
        // Outside the request path.
        let bytes = encode(&[Item {
            path: path("/1/0/1"),
            value: Value::Integer(1),
        }]);
        assert!(decode(Some(&path("/3/0")), &bytes, &types).is_err());
    }
}
