//! LwM2M content formats (LwM2M Core §7.3 and §7.4): values of resources
//! to and from bytes.
//!
//! Every format works on [`Item`]s: one value at a full path (a resource,
//! or a resource instance of a multiple resource). Decoding needs the
//! resource's type for the binary formats (a TLV integer and a TLV float
//! are both just bytes), which the caller provides from the schema.

pub mod lwm2m_cbor;
pub mod lwm2m_json;
pub mod senml_cbor;
pub mod senml_json;
pub mod text;
pub mod tlv;

use std::fmt;

use dm_core::{Value, ValueType};

use crate::mapping::Lwm2mPath;

/// A CoAP Content-Format number LwM2M uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentFormat {
    Text,
    LinkFormat,
    Opaque,
    /// Plain CBOR (RFC 8949): one resource's value as one data item
    /// (LwM2M Core 1.1 §7.4, for single resources).
    Cbor,
    SenmlJson,
    SenmlCbor,
    Tlv,
    /// The LwM2M 1.0 JSON format.
    LwM2mJson,
    LwM2mCbor,
}

impl ContentFormat {
    pub fn number(self) -> u16 {
        match self {
            ContentFormat::Text => 0,
            ContentFormat::LinkFormat => 40,
            ContentFormat::Opaque => 42,
            ContentFormat::Cbor => 60,
            ContentFormat::SenmlJson => 110,
            ContentFormat::SenmlCbor => 112,
            ContentFormat::Tlv => 11542,
            ContentFormat::LwM2mJson => 11543,
            ContentFormat::LwM2mCbor => 11544,
        }
    }

    pub fn from_number(number: u16) -> Option<ContentFormat> {
        Some(match number {
            0 => ContentFormat::Text,
            40 => ContentFormat::LinkFormat,
            42 => ContentFormat::Opaque,
            60 => ContentFormat::Cbor,
            110 => ContentFormat::SenmlJson,
            112 => ContentFormat::SenmlCbor,
            11542 => ContentFormat::Tlv,
            11543 => ContentFormat::LwM2mJson,
            11544 => ContentFormat::LwM2mCbor,
            _ => return None,
        })
    }
}

/// Why bytes could not become values (or values bytes). Maps to CoAP 4.00
/// (malformed), 4.06 (not acceptable: a format that cannot carry the
/// request) or 4.15 (unsupported format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    Malformed(String),
    /// The format cannot carry what was asked (several values in
    /// text/plain).
    NotAcceptable(String),
    Unsupported(u16),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Malformed(m) => write!(f, "malformed payload: {m}"),
            FormatError::NotAcceptable(m) => write!(f, "not acceptable: {m}"),
            FormatError::Unsupported(n) => write!(f, "content format {n} is not supported"),
        }
    }
}

impl std::error::Error for FormatError {}

/// One value at a resource or resource-instance path.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub path: Lwm2mPath,
    pub value: Value,
}

/// The type of the resource a path names, from the schema.
pub type TypeOf<'a> = &'a dyn Fn(&Lwm2mPath) -> Option<ValueType>;

/// Encodes the items read at `base` (an object, instance, resource or
/// resource instance path).
pub fn encode(
    format: ContentFormat,
    base: &Lwm2mPath,
    items: &[Item],
) -> Result<Vec<u8>, FormatError> {
    match format {
        ContentFormat::Text => match items {
            [item] => Ok(text::encode(&item.value).into_bytes()),
            _ => Err(FormatError::NotAcceptable(
                "text/plain carries one value".into(),
            )),
        },
        ContentFormat::Opaque => match items {
            [
                Item {
                    value: Value::Opaque(bytes),
                    ..
                },
            ] => Ok(bytes.clone()),
            _ => Err(FormatError::NotAcceptable(
                "application/octet-stream carries one opaque value".into(),
            )),
        },
        ContentFormat::Cbor => match items {
            [item] if base.resource.is_some() => Ok(lwm2m_cbor::encode_single(&item.value)),
            _ => Err(FormatError::NotAcceptable(
                "plain CBOR carries one resource value".into(),
            )),
        },
        ContentFormat::Tlv => Ok(encode_tlv(base, items)),
        ContentFormat::LwM2mJson => Ok(lwm2m_json::encode(base, items).into_bytes()),
        ContentFormat::SenmlJson => Ok(senml_json::encode(base, items).into_bytes()),
        ContentFormat::SenmlCbor => Ok(senml_cbor::encode(base, items)),
        ContentFormat::LwM2mCbor => Ok(lwm2m_cbor::encode(items)),
        other => Err(FormatError::Unsupported(other.number())),
    }
}

/// Decodes a payload written to `base`.
pub fn decode(
    format: ContentFormat,
    base: &Lwm2mPath,
    bytes: &[u8],
    type_of: TypeOf<'_>,
) -> Result<Vec<Item>, FormatError> {
    let type_at = |path: &Lwm2mPath| {
        type_of(path)
            .ok_or_else(|| FormatError::Malformed(format!("{path} is not a known resource")))
    };
    match format {
        ContentFormat::Text => {
            if base.resource.is_none() {
                return Err(FormatError::NotAcceptable(
                    "text/plain writes one resource".into(),
                ));
            }
            let text = std::str::from_utf8(bytes)
                .map_err(|_| FormatError::Malformed("not UTF-8".into()))?;
            Ok(vec![Item {
                path: *base,
                value: text::decode(text, type_at(base)?)?,
            }])
        }
        ContentFormat::Opaque => {
            if type_at(base)? != ValueType::Opaque {
                return Err(FormatError::NotAcceptable(
                    "octet-stream writes an opaque resource".into(),
                ));
            }
            Ok(vec![Item {
                path: *base,
                value: Value::Opaque(bytes.to_vec()),
            }])
        }
        ContentFormat::Cbor => {
            if base.resource.is_none() {
                return Err(FormatError::NotAcceptable(
                    "plain CBOR writes one resource".into(),
                ));
            }
            Ok(vec![Item {
                path: *base,
                value: lwm2m_cbor::decode_single(
                    bytes,
                    type_at(&Lwm2mPath {
                        index: None,
                        ..*base
                    })?,
                )?,
            }])
        }
        ContentFormat::Tlv => decode_tlv(base, bytes, &type_at),
        ContentFormat::LwM2mJson => lwm2m_json::decode(base, bytes, &type_at),
        ContentFormat::SenmlJson => senml_json::decode(base, bytes, &type_at),
        ContentFormat::SenmlCbor => senml_cbor::decode(base, bytes, &type_at),
        ContentFormat::LwM2mCbor => lwm2m_cbor::decode(Some(base), bytes, &type_at),
        other => Err(FormatError::Unsupported(other.number())),
    }
}

/// The SenML records of a composite payload (only SenML carries paths of
/// several objects).
fn composite_records(
    format: ContentFormat,
    bytes: &[u8],
) -> Result<Vec<serde_json::Value>, FormatError> {
    match format {
        ContentFormat::SenmlJson => senml_json::records(bytes),
        ContentFormat::SenmlCbor => senml_cbor::json_records(bytes),
        other => Err(FormatError::Unsupported(other.number())),
    }
}

/// The paths a Read-Composite or Observe-Composite names (LwM2M Core
/// §6.3.8; Transport §6.4: a FETCH whose SenML records carry names only).
pub fn decode_names(format: ContentFormat, bytes: &[u8]) -> Result<Vec<Lwm2mPath>, FormatError> {
    senml_json::record_names(&composite_records(format, bytes)?)
}

/// The values of a Write-Composite (an iPATCH of SenML records with full
/// names, any objects).
pub fn decode_composite(
    format: ContentFormat,
    bytes: &[u8],
    type_of: TypeOf<'_>,
) -> Result<Vec<Item>, FormatError> {
    let type_at = |path: &Lwm2mPath| {
        type_of(path)
            .ok_or_else(|| FormatError::Malformed(format!("{path} is not a known resource")))
    };
    if format == ContentFormat::LwM2mCbor {
        return lwm2m_cbor::decode(None, bytes, &type_at);
    }
    senml_json::decode_records(None, &composite_records(format, bytes)?, &type_at)
}

/// Values named by their full paths: a composite read or notification, or
/// a Send.
pub fn encode_composite(format: ContentFormat, items: &[Item]) -> Result<Vec<u8>, FormatError> {
    match format {
        ContentFormat::SenmlJson => Ok(senml_json::encode_absolute(items).into_bytes()),
        ContentFormat::SenmlCbor => Ok(senml_cbor::encode_absolute(items)),
        ContentFormat::LwM2mCbor => Ok(lwm2m_cbor::encode(items)),
        other => Err(FormatError::NotAcceptable(format!(
            "content format {} cannot carry a composite",
            other.number()
        ))),
    }
}

/// TLV for a read at `base`: object instances for an object, resources for
/// an instance, the resource (multiple or not) for a resource.
fn encode_tlv(base: &Lwm2mPath, items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    match (base.instance, base.resource) {
        (None, _) => {
            let mut instances: Vec<u16> = items.iter().filter_map(|i| i.path.instance).collect();
            instances.dedup();
            for instance in instances {
                let inner: Vec<Item> = items
                    .iter()
                    .filter(|i| i.path.instance == Some(instance))
                    .cloned()
                    .collect();
                let body = resources_tlv(&inner);
                tlv::write(&mut out, tlv::Kind::ObjectInstance, instance, &body);
            }
        }
        (Some(_), _) => out = resources_tlv(items),
    }
    out
}

/// Resource entries: single resources, and multiple resources (those whose
/// items carry an index) with their instances.
fn resources_tlv(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let Some(resource) = items[i].path.resource else {
            i += 1;
            continue;
        };
        if items[i].path.index.is_some() {
            let mut body = Vec::new();
            while i < items.len() && items[i].path.resource == Some(resource) {
                if let Some(index) = items[i].path.index {
                    tlv::write(
                        &mut body,
                        tlv::Kind::ResourceInstance,
                        index,
                        &tlv_value(&items[i].value),
                    );
                }
                i += 1;
            }
            tlv::write(&mut out, tlv::Kind::MultipleResource, resource, &body);
        } else {
            tlv::write(
                &mut out,
                tlv::Kind::Resource,
                resource,
                &tlv_value(&items[i].value),
            );
            i += 1;
        }
    }
    out
}

fn tlv_value(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) | Value::DateTime(i) => tlv::integer(*i),
        Value::DateTimeMicros(us) => tlv::integer(us.div_euclid(1_000_000)),
        Value::Unsigned(u) => tlv::unsigned(*u),
        Value::Float(f) => f.to_be_bytes().to_vec(),
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::Opaque(bytes) => bytes.clone(),
        Value::ObjectLink(link) => {
            let mut out = link.object.0.to_be_bytes().to_vec();
            out.extend_from_slice(&link.instance.to_be_bytes());
            out
        }
    }
}

fn typed_tlv(bytes: &[u8], value_type: ValueType) -> Result<Value, FormatError> {
    Ok(match value_type {
        ValueType::String | ValueType::CoreLink => Value::String(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| FormatError::Malformed("string is not UTF-8".into()))?,
        ),
        ValueType::Int | ValueType::Long => Value::Integer(tlv::read_integer(bytes)?),
        ValueType::UnsignedInt | ValueType::UnsignedLong => {
            Value::Unsigned(tlv::read_unsigned(bytes)?)
        }
        ValueType::DateTime => Value::DateTime(tlv::read_integer(bytes)?),
        ValueType::Float => Value::Float(tlv::read_float(bytes)?),
        ValueType::Boolean => Value::Boolean(tlv::read_boolean(bytes)?),
        ValueType::Opaque => Value::Opaque(bytes.to_vec()),
        ValueType::ObjectLink => match bytes {
            [a, b, c, d] => Value::ObjectLink(dm_core::ObjectLink {
                object: dm_core::ObjectId(u16::from_be_bytes([*a, *b])),
                instance: u16::from_be_bytes([*c, *d]),
            }),
            _ => return Err(FormatError::Malformed("object link is not 4 bytes".into())),
        },
        ValueType::None => return Err(FormatError::Malformed("an executable has no value".into())),
    })
}

fn decode_tlv(
    base: &Lwm2mPath,
    bytes: &[u8],
    type_at: &dyn Fn(&Lwm2mPath) -> Result<ValueType, FormatError>,
) -> Result<Vec<Item>, FormatError> {
    let mut items = Vec::new();
    for entry in tlv::read(bytes)? {
        match entry.kind {
            tlv::Kind::ObjectInstance => {
                if base.instance.is_some() {
                    return Err(FormatError::Malformed(
                        "object instance inside an instance".into(),
                    ));
                }
                let instance = Lwm2mPath {
                    instance: Some(entry.id),
                    ..*base
                };
                items.extend(decode_tlv(&instance, entry.value, type_at)?);
            }
            tlv::Kind::Resource | tlv::Kind::MultipleResource => {
                let Some(instance) = base.instance else {
                    return Err(FormatError::Malformed(
                        "resource outside an object instance".into(),
                    ));
                };
                let path = Lwm2mPath {
                    object: base.object,
                    instance: Some(instance),
                    resource: Some(entry.id),
                    index: None,
                };
                if base.resource.is_some_and(|r| r != entry.id) {
                    return Err(FormatError::Malformed(format!(
                        "resource {} written to {base}",
                        entry.id
                    )));
                }
                let value_type = type_at(&path)?;
                if entry.kind == tlv::Kind::Resource {
                    items.push(Item {
                        path,
                        value: typed_tlv(entry.value, value_type)?,
                    });
                } else {
                    for inner in tlv::read(entry.value)? {
                        if inner.kind != tlv::Kind::ResourceInstance {
                            return Err(FormatError::Malformed(
                                "multiple resource holds a non-instance".into(),
                            ));
                        }
                        items.push(Item {
                            path: Lwm2mPath {
                                index: Some(inner.id),
                                ..path
                            },
                            value: typed_tlv(inner.value, value_type)?,
                        });
                    }
                }
            }
            tlv::Kind::ResourceInstance => {
                let Some(_) = base.resource else {
                    return Err(FormatError::Malformed(
                        "resource instance outside a resource".into(),
                    ));
                };
                let path = Lwm2mPath {
                    index: Some(entry.id),
                    ..*base
                };
                let value_type = type_at(&Lwm2mPath {
                    index: None,
                    ..path
                })?;
                items.push(Item {
                    path,
                    value: typed_tlv(entry.value, value_type)?,
                });
            }
        }
    }
    Ok(items)
}
