//! Typed values.
//!
//! A [`Value`] is what the core stores and publishes. It has no lexical form
//! of its own: the CWMP adapter renders `xsd:` types, the LwM2M adapter TLV,
//! SenML or CBOR. Only [`Value::check`] lives here, so that every origin is
//! held to the same schema.

use std::fmt;

use crate::schema::{Constraint, ObjectId, ResourceSchema, ValueType};

/// A typed value.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "t", content = "v"))]
pub enum Value {
    String(String),
    /// Any signed integer type (`int`, `long`).
    Integer(i64),
    /// Any unsigned integer type (`unsignedInt`, `unsignedLong`).
    Unsigned(u64),
    Boolean(bool),
    /// Seconds since the Unix epoch; negative before 1970 (TR-106 allows
    /// `0001-01-01T00:00:00Z`, "unknown time").
    DateTime(i64),
    /// A `dateTime` to the microsecond (TR-143's ROMTime, BOMTime and
    /// EOMTime: "with microsecond precision"): microseconds since the Unix
    /// epoch. A resource of type dateTime takes either form.
    DateTimeMicros(i64),
    Opaque(Vec<u8>),
    Float(f64),
    ObjectLink(ObjectLink),
}

/// An LwM2M-style object link: an object type and an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ObjectLink {
    pub object: ObjectId,
    /// 65535 means "no instance" (a null link is 65535:65535).
    pub instance: u16,
}

impl ObjectLink {
    /// The null link (LwM2M's 65535:65535; an empty TR-181 reference).
    pub const NULL: ObjectLink = ObjectLink {
        object: ObjectId(u16::MAX),
        instance: u16::MAX,
    };
}

/// Why a value does not fit a resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected a value of type {expected}, got {got}")]
    Type {
        expected: &'static str,
        got: &'static str,
    },
    #[error("{value} is outside the allowed range {min}..={max}")]
    Range { value: String, min: i64, max: i64 },
    #[error("length {len} is outside the allowed range {min}..={max}")]
    Length { len: usize, min: u32, max: u32 },
    #[error("length {len} is not one of {allowed:?}")]
    Lengths { len: usize, allowed: &'static [u32] },
    #[error("{value:?} is not one of {allowed:?}")]
    Enumeration {
        value: String,
        allowed: &'static [&'static str],
    },
    /// A string holds a character XML 1.0 cannot carry (a NUL, another C0
    /// control, U+FFFE or U+FFFF): no CWMP message could report it.
    #[error("character U+{code:04X} at position {position} is not allowed in a string")]
    Character { code: u32, position: usize },
}

/// Whether XML 1.0 can carry `c` (§2.2 `Char`): tab, LF, CR and everything
/// from U+0020 except U+FFFE and U+FFFF (a Rust `char` is never a
/// surrogate).
pub fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Refuses a string that holds a character no CWMP message could carry
/// (see [`xml_char`]): what one protocol stores, the others must be able
/// to report. Other values pass.
pub fn check_characters(value: &Value) -> Result<(), ValueError> {
    let Value::String(s) = value else {
        return Ok(());
    };
    match s.chars().enumerate().find(|(_, c)| !xml_char(*c)) {
        Some((position, c)) => Err(ValueError::Character {
            code: u32::from(c),
            position,
        }),
        None => Ok(()),
    }
}

impl Value {
    /// The name of the value's variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Integer(_) => "integer",
            Value::Unsigned(_) => "unsigned",
            Value::Boolean(_) => "boolean",
            Value::DateTime(_) | Value::DateTimeMicros(_) => "dateTime",
            Value::Opaque(_) => "opaque",
            Value::Float(_) => "float",
            Value::ObjectLink(_) => "objectLink",
        }
    }

    /// The zero value of a type: what a freshly created instance holds for
    /// a resource nobody has set yet.
    pub fn default_for(value_type: ValueType) -> Option<Value> {
        Some(match value_type {
            ValueType::String | ValueType::CoreLink => Value::String(String::new()),
            ValueType::Int | ValueType::Long => Value::Integer(0),
            ValueType::UnsignedInt | ValueType::UnsignedLong => Value::Unsigned(0),
            ValueType::Boolean => Value::Boolean(false),
            ValueType::DateTime => Value::DateTime(0),
            ValueType::Opaque => Value::Opaque(Vec::new()),
            ValueType::Float => Value::Float(0.0),
            ValueType::ObjectLink => Value::ObjectLink(ObjectLink {
                object: ObjectId(65535),
                instance: 65535,
            }),
            ValueType::None => return None,
        })
    }

    /// Converts `self` to the representation of `value_type` when that
    /// loses nothing (an unsigned 5 written to a signed resource), so that
    /// adapters need not know which integer variant the core chose.
    pub fn coerce(self, value_type: ValueType) -> Result<Value, ValueError> {
        let mismatch = |v: &Value| ValueError::Type {
            expected: value_type.name(),
            got: v.kind(),
        };
        match (value_type, self) {
            (ValueType::String | ValueType::CoreLink, v @ Value::String(_)) => Ok(v),
            (ValueType::Int | ValueType::Long, v @ Value::Integer(_)) => Ok(v),
            (ValueType::Int | ValueType::Long, Value::Unsigned(u)) => i64::try_from(u)
                .map(Value::Integer)
                .map_err(|_| ValueError::Range {
                    value: u.to_string(),
                    min: i64::MIN,
                    max: i64::MAX,
                }),
            (ValueType::UnsignedInt | ValueType::UnsignedLong, v @ Value::Unsigned(_)) => Ok(v),
            (ValueType::UnsignedInt | ValueType::UnsignedLong, Value::Integer(i)) => {
                u64::try_from(i)
                    .map(Value::Unsigned)
                    .map_err(|_| ValueError::Range {
                        value: i.to_string(),
                        min: 0,
                        max: i64::MAX,
                    })
            }
            (ValueType::Boolean, v @ Value::Boolean(_)) => Ok(v),
            (ValueType::DateTime, v @ (Value::DateTime(_) | Value::DateTimeMicros(_))) => Ok(v),
            (ValueType::Opaque, v @ Value::Opaque(_)) => Ok(v),
            (ValueType::Float, v @ Value::Float(_)) => Ok(v),
            (ValueType::Float, Value::Integer(i)) => Ok(Value::Float(i as f64)),
            (ValueType::Float, Value::Unsigned(u)) => Ok(Value::Float(u as f64)),
            (ValueType::ObjectLink, v @ Value::ObjectLink(_)) => Ok(v),
            (_, v) => Err(mismatch(&v)),
        }
    }

    /// Checks that the value fits `schema`: its type's own range, then the
    /// standard's constraint. Returns the value in the schema's canonical
    /// representation.
    pub fn check(self, schema: &ResourceSchema) -> Result<Value, ValueError> {
        let value = self.check_type(schema)?;
        check_constraint(&value, schema.constraint)?;
        Ok(value)
    }

    /// Checks the type only, not the standard's constraint: for values the
    /// agent itself stored (a restored snapshot may hold the zero value a
    /// new instance starts with, such as an empty SSID).
    pub fn check_type(self, schema: &ResourceSchema) -> Result<Value, ValueError> {
        let value = self.coerce(schema.value_type)?;
        check_width(&value, schema.value_type)?;
        Ok(value)
    }
}

fn check_width(value: &Value, value_type: ValueType) -> Result<(), ValueError> {
    match (value_type, value) {
        (ValueType::Int, Value::Integer(i)) if i32::try_from(*i).is_err() => {
            Err(ValueError::Range {
                value: i.to_string(),
                min: i32::MIN.into(),
                max: i32::MAX.into(),
            })
        }
        (ValueType::UnsignedInt, Value::Unsigned(u)) if u32::try_from(*u).is_err() => {
            Err(ValueError::Range {
                value: u.to_string(),
                min: 0,
                max: u32::MAX.into(),
            })
        }
        _ => Ok(()),
    }
}

fn check_constraint(value: &Value, constraint: Constraint) -> Result<(), ValueError> {
    let length = match value {
        Value::String(s) => Some(s.chars().count()),
        Value::Opaque(b) => Some(b.len()),
        _ => None,
    };
    match constraint {
        Constraint::None => Ok(()),
        Constraint::Range { min, max } => {
            let in_range = match value {
                Value::Integer(i) => (min..=max).contains(i),
                Value::Unsigned(u) => i64::try_from(*u).is_ok_and(|i| (min..=max).contains(&i)),
                Value::Float(f) => *f >= min as f64 && *f <= max as f64,
                // A range on a string or opaque resource bounds its length
                // (LwM2M writes "0..255" for both).
                _ => match length {
                    Some(len) => {
                        return check_length(len, min.max(0) as u32, max.max(0) as u32);
                    }
                    None => true,
                },
            };
            if in_range {
                Ok(())
            } else {
                Err(ValueError::Range {
                    value: value.to_string(),
                    min,
                    max,
                })
            }
        }
        Constraint::Length { min, max } => match length {
            Some(len) => check_length(len, min, max),
            None => Ok(()),
        },
        Constraint::Lengths(allowed) => match length {
            Some(len) if !allowed.iter().any(|&a| a as usize == len) => {
                Err(ValueError::Lengths { len, allowed })
            }
            _ => Ok(()),
        },
        Constraint::Enumeration(allowed) => match value {
            Value::String(s) if !allowed.contains(&s.as_str()) => Err(ValueError::Enumeration {
                value: s.clone(),
                allowed,
            }),
            _ => Ok(()),
        },
    }
}

fn check_length(len: usize, min: u32, max: u32) -> Result<(), ValueError> {
    if len < min as usize || len > max as usize {
        Err(ValueError::Length { len, min, max })
    } else {
        Ok(())
    }
}

/// A human rendering for logs, the CLI and `dump`; not any protocol's
/// lexical form.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Unsigned(u) => write!(f, "{u}"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::DateTime(t) => write!(f, "@{t}"),
            Value::DateTimeMicros(t) => write!(
                f,
                "@{}.{:06}",
                t.div_euclid(1_000_000),
                t.rem_euclid(1_000_000)
            ),
            Value::Opaque(bytes) => f.write_str(&crate::support::hex::encode(bytes)),
            Value::Float(x) => write!(f, "{x}"),
            Value::ObjectLink(link) => write!(f, "{}:{}", link.object, link.instance),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Access, ResourceId};

    fn schema(value_type: ValueType, constraint: Constraint) -> ResourceSchema {
        ResourceSchema {
            id: ResourceId(0),
            name: "test",
            value_type,
            access: Access::ReadWrite,
            multiple: false,
            mandatory: false,
            units: "",
            constraint,
        }
    }

    fn check(value: Value, value_type: ValueType, constraint: Constraint) -> Result<Value, String> {
        value
            .check(&schema(value_type, constraint))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_coerce_between_signed_and_unsigned() {
        assert_eq!(
            check(Value::Unsigned(5), ValueType::Long, Constraint::None),
            Ok(Value::Integer(5))
        );
        assert_eq!(
            check(Value::Integer(5), ValueType::UnsignedInt, Constraint::None),
            Ok(Value::Unsigned(5))
        );
        assert!(check(Value::Integer(-1), ValueType::UnsignedInt, Constraint::None).is_err());
        assert!(check(Value::Unsigned(u64::MAX), ValueType::Long, Constraint::None).is_err());
    }

    #[test]
    fn widths_are_enforced() {
        assert!(check(Value::Integer(1 << 31), ValueType::Int, Constraint::None).is_err());
        assert!(check(Value::Integer(1 << 31), ValueType::Long, Constraint::None).is_ok());
        assert!(
            check(
                Value::Unsigned(1 << 32),
                ValueType::UnsignedInt,
                Constraint::None
            )
            .is_err()
        );
    }

    #[test]
    fn constraints_are_enforced() {
        let range = Constraint::Range {
            min: -110,
            max: -48,
        };
        assert!(check(Value::Integer(-60), ValueType::Long, range).is_ok());
        assert!(check(Value::Integer(-40), ValueType::Long, range).is_err());
        let ssid = Constraint::Range { min: 1, max: 32 };
        assert!(check(Value::String(String::new()), ValueType::String, ssid).is_err());
        assert!(check(Value::String("home".into()), ValueType::String, ssid).is_ok());
        let wep = Constraint::Lengths(&[10, 26]);
        assert!(check(Value::String("0123456789".into()), ValueType::String, wep).is_ok());
        assert!(check(Value::String("012345678".into()), ValueType::String, wep).is_err());
        let modes = Constraint::Enumeration(&["None", "WPA2-Personal"]);
        assert!(check(Value::String("None".into()), ValueType::String, modes).is_ok());
        assert!(check(Value::String("WEP".into()), ValueType::String, modes).is_err());
    }

    #[test]
    fn type_mismatch_names_both_types() {
        let err = check(Value::Boolean(true), ValueType::String, Constraint::None).unwrap_err();
        assert_eq!(err, "expected a value of type string, got boolean");
    }
}
