//! A connection request's Authorization header (Digest or Basic): parsed
//! and checked, never a panic; an answer that is not over the issued
//! nonce and the right credentials is refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (uri, header) = text.split_once('\n').unwrap_or(("/cr", text));
    for credentials in [("acs", "secret"), ("", "")] {
        let accepted =
            dm_cwmp_tokio::fuzzing::connection_request_authorized(header, uri, credentials);
        // Only nonce "n0" was issued.
        if accepted && !header.trim_start().starts_with("Basic") {
            assert!(
                header.contains("n0"),
                "accepted without the nonce: {header:?}"
            );
        }
    }
});
