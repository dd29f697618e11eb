//! STUN Binding Responses (TR-111): decoded into an address or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dm_cwmp_tokio::stun::is_stun(data);
    let txid = [7u8; 12];
    let _ = dm_cwmp_tokio::stun::binding_response(data, txid);
    if data.len() >= 20 {
        let mut echoed = data.to_vec();
        echoed[8..20].copy_from_slice(&txid);
        let _ = dm_cwmp_tokio::stun::binding_response(&echoed, txid);
    }
});
