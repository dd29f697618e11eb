//! An OMA LwM2M object definition, as a declared object's file brings it
//! (`[[object]]`): read, never a panic; what reads keeps the rules the
//! reader promises.
#![no_main]
use libfuzzer_sys::fuzz_target;

use dm_lwm2m::object_xml::{self, Operations, ResourceType};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match object_xml::parse(text) {
        Ok(def) => {
            assert_ne!(def.id, u16::MAX);
            for (i, r) in def.resources.iter().enumerate() {
                assert_ne!(r.id, u16::MAX);
                assert!(def.resources[..i].iter().all(|o| o.id != r.id));
                assert_eq!(
                    r.operations == Operations::Execute,
                    r.value_type == ResourceType::None
                );
                let _ = object_xml::range(&r.range, r.value_type);
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1),
    }
});
