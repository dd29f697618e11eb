//! Lower-case hexadecimal, both ways.

use std::fmt::Write as _;

/// `bytes` as lower-case hex digits, two per byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// Why a text is not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("an odd number of hex digits ({0})")]
    OddLength(usize),
    #[error("{0:?} is not a hex digit")]
    NotADigit(char),
}

/// The bytes of a hex text (either case). Strict: digits only, an even
/// number of them, no sign or separator (`u8::from_str_radix` would take
/// "+f").
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text.as_bytes();
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(HexError::NotADigit(bad));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddLength(digits.len()));
    }
    Ok(digits
        .chunks_exact(2)
        .map(|pair| (value(pair[0]) << 4) | value(pair[1]))
        .collect())
}

/// One checked digit's value.
fn value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        assert_eq!(decode("00FFaB").unwrap(), vec![0, 255, 0xab]);
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn what_is_not_hex_is_refused_without_a_panic() {
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("+f"), Err(HexError::NotADigit('+')));
        assert_eq!(decode("0x"), Err(HexError::NotADigit('x')));
        // Multi-byte characters never split a pair.
        assert_eq!(decode("aé"), Err(HexError::NotADigit('é')));
    }
}
