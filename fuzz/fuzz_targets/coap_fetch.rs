//! A firmware pull over CoAP Block2: the fetch engine fed whatever a
//! hostile server sends, in simulated time; it ends, never panics, never
//! runs past its limits.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut fetch = dm_lwm2m::fetch::Fetch::new(
        now,
        vec!["fw".into(), "image.bin".into()],
        vec![],
        6,
        dm_lwm2m::coap::Parameters::default(),
        7,
    );
    for datagram in data.split(|b| *b == 0xc3).take(256) {
        // Answers carry the token and message id the request had.
        let mut datagram = datagram.to_vec();
        if let Some(sent) = fetch.poll_transmit()
            && datagram.len() >= 4
            && sent.len() >= 4
        {
            datagram[2..4].copy_from_slice(&sent[2..4]);
        }
        fetch.handle_datagram(now, &datagram);
        while fetch.poll_event().is_some() {}
        now += Duration::from_millis(300);
        fetch.handle_timeout(now);
        if fetch.is_done() {
            break;
        }
    }
    assert!(now.duration_since(start) < Duration::from_secs(3600));
});
