//! The bootstrap interface: a bootstrap server's Write, Delete, Discover,
//! Read and Finish, in any order and shape, with rollback on failure.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|steps: Vec<dmagent_fuzz::lwm2m::Step>| {
    dmagent_fuzz::lwm2m::run(true, &steps);
});
