//! A vendor configuration file restored by a Download ("3 Vendor
//! Configuration File"): applied all or nothing, or refused with nothing
//! changed.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tree = dmagent_fuzz::tree();
    let before = tree.snapshot();
    if dm_cwmp::rpc::apply_configuration_file(&mut tree, text).is_err() {
        assert_eq!(
            tree.snapshot(),
            before,
            "a refused restore changed the tree"
        );
    }
});
