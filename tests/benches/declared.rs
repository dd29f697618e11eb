//! A Read of a declared object's value (the provider's last push, cached
//! in the tree) against a Read of a built-in one, through the LwM2M engine
//! in this process: the open data model must cost no more than 1.2× per
//! read (issue 16).
//!
//! `cargo bench -p dmagent-tests --bench declared`. Prints ns per Read,
//! best of several passes, both cases in the same run, and their ratio.

use std::hint::black_box;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use dm_core::{InstanceId, Origin, Path, ResourceId, ResourceValue, Value};
use dm_lwm2m::client::{Client, ClientConfig};
use dm_lwm2m::coap::Parameters;

fn read(id: u16, path: &str) -> Vec<u8> {
    let mut request = Packet::new();
    request.header.set_type(MessageType::Confirmable);
    request.header.code = MessageClass::Request(RequestType::Get);
    request.header.message_id = id;
    request.set_token(id.to_be_bytes().to_vec());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        request.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    // text/plain: one value, the same work around it for both.
    request.add_option(CoapOption::Accept, vec![0]);
    request.to_bytes().unwrap()
}

fn main() {
    let (platform, _) = dm_tests::platform();
    let mut tree = dm_tests::tree(&platform);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/temperature/3303.xml"
    ))
    .unwrap();
    let schema = dm_lwm2m::declare::schema(&text).unwrap();
    let declared = [dm_objects::declared::Declaration {
        schema,
        instances: vec![InstanceId(0)],
        values: Vec::new(),
        provider: None,
        volatile: Vec::new(),
    }];
    dm_objects::declared::register(&mut tree, &declared, &|_| None).unwrap();
    // What a provider's push does: a platform fact in a stored slot.
    tree.begin(Origin::Agent)
        .create(schema.id, Some(InstanceId(0)))
        .commit()
        .unwrap();
    tree.begin(Origin::Platform)
        .set(
            Path::resource(schema.id, InstanceId(0), ResourceId(5700)),
            Value::Float(21.5),
        )
        .commit()
        .unwrap();
    assert_eq!(
        tree.read(
            Origin::Agent,
            &Path::resource(schema.id, InstanceId(0), ResourceId(5700))
        )
        .unwrap(),
        ResourceValue::Single(Value::Float(21.5))
    );

    const READS: u16 = 20_000;
    let mut pass = |path: &str, expected: &[u8]| {
        // A fresh engine each pass: message ids are never seen twice (a
        // duplicate would be answered from the response cache).
        let mut client = Client::new(
            ClientConfig {
                endpoint: "bench".into(),
                short_server_id: 101,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            1,
        );
        let requests: Vec<Vec<u8>> = (0..READS).map(|i| read(i, path)).collect();
        let start = Instant::now();
        for request in &requests {
            client.handle_datagram(&mut tree, Instant::now(), black_box(request));
            let response = client.poll_transmit().expect("a response");
            assert_eq!(response[1], 0x45, "2.05 Content for {path}");
            assert!(response.ends_with(expected), "the value of {path}");
            black_box(response);
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(READS)
    };
    // Built in: Manufacturer and Model Number (/3/0/0, /3/0/1), stored
    // strings. Declared: Sensor Value (/3303/0/5700), a stored float.
    let cases = ["/3/0/0", "/3/0/1", "/3303/0/5700"];
    let expected: [&[u8]; 3] = [b"Acme", b"GW-1", b"21.5"];
    let mut best = [f64::INFINITY; 3];
    // Interleaved passes: machine noise falls on all cases alike.
    for _ in 0..10 {
        for (n, path) in cases.iter().enumerate() {
            best[n] = best[n].min(pass(path, expected[n]));
        }
    }
    println!(
        "LwM2M Read through the engine, text/plain, ns per Read (best of 10 passes of {READS}):"
    );
    for (path, ns) in cases.iter().zip(best) {
        println!("  {path:14} {ns:8.0}");
    }
    let built_in = best[0].min(best[1]);
    println!(
        "  declared (provider's cached value) / fastest built-in: {:.2}x",
        best[2] / built_in
    );
}
