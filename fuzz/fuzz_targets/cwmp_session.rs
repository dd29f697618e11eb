//! The CWMP session engine fed sequences of ACS messages, statuses,
//! timers, connection requests and transfer results (structure-aware):
//! no panic, and every POST well-formed with its announced length.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|steps: Vec<dmagent_fuzz::cwmp::Step>| {
    dmagent_fuzz::cwmp::run(&steps);
});
