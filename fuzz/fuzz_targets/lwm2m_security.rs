//! Security Mode 2 material as a bootstrap server may write it (/0/x/3,
//! 4 and 5, and the PEM files of a configuration): whatever the bytes,
//! the checks say what is wrong or accept, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

use dm_lwm2m::security::{CertificateUsage, Certificates, split_der};

fuzz_target!(|fields: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>)| {
    let (chain, private_key, server, anchor) = fields;
    let _ = split_der(&chain);
    let _ = dm_lwm2m::dtls::certificates_from_pem(&chain);
    let _ = dm_lwm2m::dtls::private_key_from_pem(&private_key);
    let _ = dm_lwm2m::dtls::check_certificates(&Certificates {
        chain,
        private_key,
        server,
        usage: CertificateUsage::CaConstraint,
        trust_anchors: vec![anchor],
    });
});
