//! TR-069 lexical forms of values (TR-069 Amendment 6 Table 4: the XML
//! Schema datatypes) in both directions.

use base64::Engine as _;
use dm_core::{Value, ValueType};

use crate::mapping::Syntax;

/// TR-106 §3.2.1 "unknown time", in Unix seconds.
pub const UNKNOWN_TIME: i64 = -62_135_596_800;

/// Renders a core value as the parameter's wire text.
pub fn render(value: &Value, syntax: Syntax) -> String {
    match (value, syntax) {
        (Value::DateTime(t), _) => format_datetime(*t),
        (Value::DateTimeMicros(us), _) => format_datetime_micros(*us),
        (Value::Opaque(bytes), Syntax::HexBinary) => dm_core::support::hex::encode(bytes),
        (Value::Opaque(bytes), _) => base64::engine::general_purpose::STANDARD.encode(bytes),
        (Value::Boolean(b), _) => if *b { "true" } else { "false" }.to_owned(),
        // A core integer wider than the parameter's type (an LwM2M
        // Integer is 64-bit, a TR-181 int 32-bit) is reported at the
        // type's nearest bound: the message stays valid against its
        // xsi:type, and the bound says "at least this far out".
        (Value::Integer(i), Syntax::Int) => {
            (*i).clamp(i32::MIN.into(), i32::MAX.into()).to_string()
        }
        (Value::Integer(i), Syntax::UnsignedInt) => (*i).clamp(0, u32::MAX.into()).to_string(),
        (Value::Integer(i), Syntax::UnsignedLong) => (*i).max(0).to_string(),
        (Value::Unsigned(u), Syntax::Int) => (*u).min(i32::MAX as u64).to_string(),
        (Value::Unsigned(u), Syntax::UnsignedInt) => (*u).min(u32::MAX.into()).to_string(),
        (Value::Unsigned(u), Syntax::Long) => (*u).min(i64::MAX as u64).to_string(),
        // A decimal (an LwM2M Float) bound to an integer parameter (a
        // declared IPSO sensor as TR-181's TemperatureSensor.Value, an
        // int): the nearest integer in the type's range.
        (Value::Float(f), Syntax::Int) => render(&Value::Integer(f.round() as i64), Syntax::Int),
        (Value::Float(f), Syntax::UnsignedInt) => {
            render(&Value::Integer(f.round() as i64), Syntax::UnsignedInt)
        }
        (Value::Float(f), Syntax::Long) => (f.round() as i64).to_string(),
        (Value::Float(f), Syntax::UnsignedLong) => (f.round().max(0.0) as u64).to_string(),
        (Value::ObjectLink(link), _) => crate::mapping::reference(*link),
        (other, _) => other.to_string(),
    }
}

/// `dateTime` in UTC, `Z`-suffixed; the unknown time as TR-106 spells it.
pub fn format_datetime(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(t) if seconds > UNKNOWN_TIME => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => "0001-01-01T00:00:00Z".to_owned(),
    }
}

/// `dateTime` to the microsecond (TR-143's times:
/// `2008-04-09T15:01:05.123456Z`).
pub fn format_datetime_micros(micros: i64) -> String {
    match jiff::Timestamp::from_microsecond(micros) {
        Ok(t) if micros.div_euclid(1_000_000) > UNKNOWN_TIME => {
            t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        }
        _ => "0001-01-01T00:00:00Z".to_owned(),
    }
}

/// Why wire text is not a value of the parameter's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Parses wire text for a parameter into the core value type it maps to.
/// The core then checks range and constraints.
pub fn parse(text: &str, syntax: Syntax, core: ValueType) -> Result<Value, ParseError> {
    let bad = || ParseError(format!("{text:?} is not a valid {}", syntax.xsd_type()));
    let trimmed = text.trim();
    let value = match syntax {
        // A reference: the row its path names.
        Syntax::String if core == ValueType::ObjectLink => {
            Value::ObjectLink(crate::mapping::dereference(text).ok_or_else(|| {
                ParseError(format!("{text:?} is not the path of a row this agent has"))
            })?)
        }
        Syntax::String => Value::String(text.to_owned()),
        Syntax::Int | Syntax::Long => Value::Integer(trimmed.parse().map_err(|_| bad())?),
        Syntax::UnsignedInt | Syntax::UnsignedLong => {
            Value::Unsigned(trimmed.parse().map_err(|_| bad())?)
        }
        Syntax::Boolean => Value::Boolean(match trimmed {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad()),
        }),
        Syntax::DateTime => Value::DateTime(parse_datetime(trimmed).ok_or_else(bad)?),
        Syntax::Base64 => Value::Opaque(
            base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .map_err(|_| bad())?,
        ),
        Syntax::HexBinary => {
            Value::Opaque(dm_core::support::hex::decode(trimmed).map_err(|_| bad())?)
        }
    };
    // A TR-181 unsignedInt bound to an LwM2M Integer resource, and so on.
    value.coerce(core).map_err(|e| ParseError(e.to_string()))
}

/// xsd:dateTime with a zone (`Z` or `±hh:mm`), or without one, read as
/// UTC; the unknown time maps to [`UNKNOWN_TIME`].
fn parse_datetime(text: &str) -> Option<i64> {
    if text.starts_with("0001-01-01T00:00:00") {
        return Some(UNKNOWN_TIME);
    }
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Some(t.as_second());
    }
    // TR-069 allows a dateTime without a time zone (local time); without
    // one the CPE reads it as UTC, as GenieACS sends UTC anyway.
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cases = [
            (
                "300",
                Syntax::UnsignedInt,
                ValueType::UnsignedInt,
                Value::Unsigned(300),
            ),
            ("-5", Syntax::Int, ValueType::Long, Value::Integer(-5)),
            (
                "true",
                Syntax::Boolean,
                ValueType::Boolean,
                Value::Boolean(true),
            ),
            (
                "AAEC",
                Syntax::Base64,
                ValueType::Opaque,
                Value::Opaque(vec![0, 1, 2]),
            ),
            (
                "00ff",
                Syntax::HexBinary,
                ValueType::Opaque,
                Value::Opaque(vec![0, 255]),
            ),
            (
                "2023-11-14T22:13:20Z",
                Syntax::DateTime,
                ValueType::DateTime,
                Value::DateTime(1_700_000_000),
            ),
            (
                "0001-01-01T00:00:00Z",
                Syntax::DateTime,
                ValueType::DateTime,
                Value::DateTime(UNKNOWN_TIME),
            ),
        ];
        // TR-143's times, to the microsecond (read-only: written, a
        // fraction is dropped).
        assert_eq!(
            render(
                &Value::DateTimeMicros(1_700_000_000_000_042),
                Syntax::DateTime
            ),
            "2023-11-14T22:13:20.000042Z"
        );
        for (text, syntax, core, value) in cases {
            assert_eq!(parse(text, syntax, core), Ok(value.clone()), "{text}");
            assert_eq!(render(&value, syntax), text);
        }
        // An unsignedInt TR-181 parameter bound to a signed core resource.
        assert_eq!(
            parse("7", Syntax::UnsignedInt, ValueType::Long),
            Ok(Value::Integer(7))
        );
        assert_eq!(
            parse(
                "2023-11-14T23:13:20+01:00",
                Syntax::DateTime,
                ValueType::DateTime
            ),
            Ok(Value::DateTime(1_700_000_000))
        );
        assert_eq!(
            parse("1", Syntax::Boolean, ValueType::Boolean),
            Ok(Value::Boolean(true))
        );
    }

    #[test]
    fn bad_text_is_an_error() {
        for (text, syntax) in [
            ("x", Syntax::Int),
            ("-1", Syntax::UnsignedInt),
            ("yes", Syntax::Boolean),
            ("0f0", Syntax::HexBinary),
            ("zz", Syntax::HexBinary),
            ("!!", Syntax::Base64),
            ("yesterday", Syntax::DateTime),
            ("99999999999999999999", Syntax::Long),
        ] {
            assert!(
                parse(text, syntax, ValueType::Long).is_err()
                    || parse(text, syntax, ValueType::Opaque).is_err(),
                "{text}"
            );
        }
    }
}
