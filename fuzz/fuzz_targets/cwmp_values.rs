//! TR-069 lexical forms (dateTime, numbers, booleans, base64, hexBinary):
//! parsed into the core's types or refused; what parses renders again.
#![no_main]
use dm_core::ValueType;
use dm_cwmp::mapping::Syntax;
use libfuzzer_sys::fuzz_target;

const SYNTAXES: [(Syntax, ValueType); 9] = [
    (Syntax::String, ValueType::String),
    (Syntax::Int, ValueType::Long),
    (Syntax::UnsignedInt, ValueType::UnsignedInt),
    (Syntax::Long, ValueType::Long),
    (Syntax::UnsignedLong, ValueType::UnsignedLong),
    (Syntax::Boolean, ValueType::Boolean),
    (Syntax::DateTime, ValueType::DateTime),
    (Syntax::Base64, ValueType::Opaque),
    (Syntax::HexBinary, ValueType::Opaque),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (syntax, core) = SYNTAXES[usize::from(pick) % SYNTAXES.len()];
    if let Ok(value) = dm_cwmp::values::parse(text, syntax, core) {
        let rendered = dm_cwmp::values::render(&value, syntax);
        assert!(
            rendered.chars().all(dm_core::value::xml_char) || syntax == Syntax::String,
            "{rendered:?}"
        );
    }
});
