//! The LwM2M client engine, registered, fed a server's requests (valid
//! CoAP headers, every method, Observe, Block1/Block2, attributes),
//! answers, resets, raw datagrams, tree changes and time.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|steps: Vec<dmagent_fuzz::lwm2m::Step>| {
    dmagent_fuzz::lwm2m::run(false, &steps);
});
