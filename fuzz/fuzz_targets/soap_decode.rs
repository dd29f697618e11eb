//! SOAP envelopes from an ACS: decoded or refused with the fault to
//! answer, never a panic; what decodes answers a valid fault.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match dm_cwmp::soap::decode(text) {
            Ok(envelope) => {
                let _ = dm_cwmp::soap::Encoder::new(envelope.version);
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
});
