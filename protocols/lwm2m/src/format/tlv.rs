//! OMA-TLV (content format 11542, LwM2M Core §7.4.3).
//!
//! Each entry: a type byte (bits 7–6 identifier kind, bit 5 identifier
//! width, bits 4–3 length width, bits 2–0 a length of up to 7), the
//! identifier (8 or 16 bits), an optional 8/16/24-bit length, the value.

use super::FormatError;

/// What an entry identifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An object instance, whose value is resource entries.
    ObjectInstance,
    /// One value of a multiple resource.
    ResourceInstance,
    /// A multiple resource, whose value is resource-instance entries.
    MultipleResource,
    /// A single resource with its value.
    Resource,
}

impl Kind {
    fn bits(self) -> u8 {
        match self {
            Kind::ObjectInstance => 0b00,
            Kind::ResourceInstance => 0b01,
            Kind::MultipleResource => 0b10,
            Kind::Resource => 0b11,
        }
    }

    fn from_bits(bits: u8) -> Kind {
        match bits & 0b11 {
            0b00 => Kind::ObjectInstance,
            0b01 => Kind::ResourceInstance,
            0b10 => Kind::MultipleResource,
            _ => Kind::Resource,
        }
    }
}

/// One decoded entry; `value` holds nested entries for object instances
/// and multiple resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub kind: Kind,
    pub id: u16,
    pub value: &'a [u8],
}

/// Writes one entry's header and value.
pub fn write(out: &mut Vec<u8>, kind: Kind, id: u16, value: &[u8]) {
    let len = value.len();
    let mut type_byte = kind.bits() << 6;
    if id > 0xff {
        type_byte |= 1 << 5;
    }
    let length_bytes: usize = match len {
        0..=7 => {
            type_byte |= len as u8;
            0
        }
        8..=0xff => {
            type_byte |= 0b01 << 3;
            1
        }
        0x100..=0xffff => {
            type_byte |= 0b10 << 3;
            2
        }
        _ => {
            type_byte |= 0b11 << 3;
            3
        }
    };
    out.push(type_byte);
    if id > 0xff {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    let len_be = (len as u32).to_be_bytes();
    out.extend_from_slice(&len_be[4 - length_bytes..]);
    out.extend_from_slice(value);
}

/// Splits a buffer into its top-level entries.
pub fn read(mut bytes: &[u8]) -> Result<Vec<Entry<'_>>, FormatError> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let short = || FormatError::Malformed("truncated TLV".into());
        let type_byte = bytes[0];
        let kind = Kind::from_bits(type_byte >> 6);
        let wide_id = type_byte & (1 << 5) != 0;
        let length_kind = (type_byte >> 3) & 0b11;
        let mut at = 1;
        let id = if wide_id {
            let b = bytes.get(at..at + 2).ok_or_else(short)?;
            at += 2;
            u16::from_be_bytes([b[0], b[1]])
        } else {
            let b = *bytes.get(at).ok_or_else(short)?;
            at += 1;
            u16::from(b)
        };
        let len = match length_kind {
            0 => usize::from(type_byte & 0b111),
            n => {
                let n = usize::from(n);
                let b = bytes.get(at..at + n).ok_or_else(short)?;
                at += n;
                b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
            }
        };
        let value = bytes.get(at..at + len).ok_or_else(short)?;
        entries.push(Entry { kind, id, value });
        bytes = &bytes[at + len..];
    }
    Ok(entries)
}

/// An integer in the shortest of 1, 2, 4 or 8 bytes, two's complement.
pub fn integer(value: i64) -> Vec<u8> {
    if let Ok(v) = i8::try_from(value) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i16::try_from(value) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i32::try_from(value) {
        v.to_be_bytes().to_vec()
    } else {
        value.to_be_bytes().to_vec()
    }
}

/// An unsigned integer in the shortest of 1, 2, 4 or 8 bytes (LwM2M 1.1
/// Unsigned Integer: no sign bit).
pub fn unsigned(value: u64) -> Vec<u8> {
    if let Ok(v) = u8::try_from(value) {
        vec![v]
    } else if let Ok(v) = u16::try_from(value) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = u32::try_from(value) {
        v.to_be_bytes().to_vec()
    } else {
        value.to_be_bytes().to_vec()
    }
}

pub fn read_integer(bytes: &[u8]) -> Result<i64, FormatError> {
    Ok(match bytes.len() {
        1 => i64::from(i8::from_be_bytes([bytes[0]])),
        2 => i64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
        4 => i64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        8 => i64::from_be_bytes(bytes.try_into().map_err(|_| bad("integer"))?),
        _ => return Err(bad("integer")),
    })
}

pub fn read_unsigned(bytes: &[u8]) -> Result<u64, FormatError> {
    if !matches!(bytes.len(), 1 | 2 | 4 | 8) {
        return Err(bad("unsigned integer"));
    }
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

pub fn read_float(bytes: &[u8]) -> Result<f64, FormatError> {
    match bytes.len() {
        4 => Ok(f64::from(f32::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        8 => Ok(f64::from_be_bytes(
            bytes.try_into().map_err(|_| bad("float"))?,
        )),
        _ => Err(bad("float")),
    }
}

pub fn read_boolean(bytes: &[u8]) -> Result<bool, FormatError> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(bad("boolean")),
    }
}

fn bad(what: &str) -> FormatError {
    FormatError::Malformed(format!("not a TLV {what}"))
}
