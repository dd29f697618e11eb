//! A Broadband Forum DM instance document, as a declared TR-181 vendor
//! object's file brings it (`[[object]]`): read, never a panic, an error
//! within the text's lines.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dm_cwmp::declare::is_document(text);
    // check() keeps nothing; object() would leak each accepted document
    // (schemas live as long as the process).
    if let Err(e) = dm_cwmp::declare::check(text) {
        assert!(e.line <= text.lines().count() + 1, "{e}");
    }
});
