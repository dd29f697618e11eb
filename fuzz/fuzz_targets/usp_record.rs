//! USP records to the agent's engine: raw bytes as a record, or as the
//! message inside a well-formed record (so that the message decoder and
//! the request handlers are reached); each request answered on the
//! whole tree, host writes made. No panic, and every answer a record
//! that decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, Vec<u8>)| {
    dmagent_fuzz::usp::run(input.0, &input.1);
});
