//! TR-069 Annex G UDP connection requests: each datagram judged, never a
//! panic, across a sequence (the replay state carries over).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut validator = dm_cwmp_tokio::udpcr::Validator::starting_after(Some(1_700_000_000));
    for datagram in data.split(|b| *b == 0xff) {
        let _ = validator.check(datagram, "acs", "secret");
        let _ = validator.check(datagram, "", "");
    }
});
