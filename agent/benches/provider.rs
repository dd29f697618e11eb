//! LwM2M Read round trips through the agent binary over loopback UDP, all
//! in one run: a built-in value, a declared object's value its command
//! provider pushed (cached in the tree), and a volatile one, which the
//! agent asks of the provider for each Read (a JSON line each way over its
//! pipes, off the tree's lock, answered as a separate response).
//! `cargo bench -p dmagent --bench provider`.
//!
//! The server is this process: it answers the agent's Register, then sends
//! interleaved Reads and takes p50 and p99 of each kind.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

const READS: usize = 1_000;

/// A provider of Temperature (3303) instance 0: it pushes Application
/// Type and answers a get of Sensor Value with a reading.
const PROVIDER: &str = r#"
import json, sys
print(json.dumps({"op": "values", "instance": 0, "values": {"5750": "bench"}}), flush=True)
reading = 20.0
for line in sys.stdin:
    request = json.loads(line)
    answer = {"id": request["id"], "ok": True}
    if request["op"] == "get":
        reading += 0.5
        answer["values"] = {"5700": reading}
    print(json.dumps(answer), flush=True)
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(id: u16, path: &str) -> Vec<u8> {
    let mut request = Packet::new();
    request.header.set_type(MessageType::Confirmable);
    request.header.code = MessageClass::Request(RequestType::Get);
    request.header.message_id = id;
    request.set_token(id.to_be_bytes().to_vec());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        request.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    request.add_option(CoapOption::Accept, vec![0]);
    request.to_bytes().unwrap()
}

/// One Read: sent, and its answer received, piggybacked or separate (an
/// empty ACK first, then a confirmable response this side acknowledges);
/// anything but 2.05 is the answer's text.
fn read(socket: &UdpSocket, agent: SocketAddr, id: u16, path: &str) -> Result<Duration, String> {
    let start = Instant::now();
    socket.send_to(&get(id, path), agent).unwrap();
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("the agent answers");
        let packet = Packet::from_bytes(&buf[..n]).unwrap();
        if packet.get_token() != id.to_be_bytes() {
            // The empty ACK of a separate response, or a stray.
            continue;
        }
        if packet.header.get_type() == MessageType::Confirmable {
            let mut ack = Packet::new();
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.message_id = packet.header.message_id;
            socket.send_to(&ack.to_bytes().unwrap(), agent).unwrap();
        }
        if packet.header.code != MessageClass::Response(ResponseType::Content) {
            return Err(format!(
                "{path}: {:?} {}",
                packet.header.code,
                String::from_utf8_lossy(&packet.payload)
            ));
        }
        return Ok(start.elapsed());
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let definition = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/temperature/3303.xml"
    );
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"bench\"\n\n\
             [[object]]\ndefinition = \"{definition}\"\nvalues = {{ \"0/5750\" = \"room\" }}\n\
             provider = [\"python3\", \"-c\", {PROVIDER:?}]\nvolatile = [5700]\n"
        ),
    )
    .unwrap();
    let _agent = Child(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The Register: answered 2.01 Created.
    let mut buf = [0u8; 1500];
    let (n, agent) = socket.recv_from(&mut buf).expect("the agent registers");
    let register = Packet::from_bytes(&buf[..n]).unwrap();
    let mut created = Packet::new();
    created.header.set_type(MessageType::Acknowledgement);
    created.header.code = MessageClass::Response(ResponseType::Created);
    created.header.message_id = register.header.message_id;
    created.set_token(register.get_token().to_vec());
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    created.add_option(CoapOption::LocationPath, b"bench".to_vec());
    socket.send_to(&created.to_bytes().unwrap(), agent).unwrap();

    // Built in: Manufacturer. Declared, cached: Application Type
    // (configured, then pushed). Volatile: Sensor Value, a provider round
    // trip each.
    let cases = ["/3/0/0", "/3303/0/5750", "/3303/0/5700"];
    // Warm up, once the provider runs: until then its object answers
    // 5.03 (at most a few seconds of that).
    let mut id = 1u16;
    let started = Instant::now();
    for path in cases {
        let mut good = 0;
        while good < 50 {
            match read(&socket, agent, id, path) {
                Ok(_) => good += 1,
                Err(e) if started.elapsed() < Duration::from_secs(20) => drop(e),
                Err(e) => panic!("the agent does not serve it: {e}"),
            }
            id = id.wrapping_add(1);
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(READS); cases.len()];
    // Interleaved, each case first as often as the others: what one read
    // leaves behind (a host-read thread ending) falls on all alike.
    for i in 0..READS {
        for k in 0..cases.len() {
            let n = (i + k) % cases.len();
            times[n].push(read(&socket, agent, id, cases[n]).expect("2.05"));
            id = id.wrapping_add(1);
        }
    }
    println!("LwM2M Read over loopback UDP through the agent, µs ({READS} each, interleaved):");
    let mut p50 = Vec::new();
    for (path, mut samples) in cases.iter().zip(times) {
        samples.sort();
        p50.push(percentile(&samples, 0.5));
        println!(
            "  {path:14} p50 {:7.0}  p99 {:7.0}",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        );
    }
    println!(
        "  declared (cached) / built-in, p50: {:.2}x; volatile (provider round trip) / built-in: {:.2}x",
        p50[1] / p50[0],
        p50[2] / p50[0]
    );
}
