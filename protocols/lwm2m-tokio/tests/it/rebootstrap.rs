//! Bootstrap loops are bounded (field interop issue): a bootstrap server
//! that keeps finishing with an account no server accepts is asked again
//! at once the first time, then only after a growing wait, not every time
//! the registration attempts run out.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use dm_core::Tree;
use tokio::net::UdpSocket;

/// A server account at `dead` (nothing answers there), giving up after
/// one failed registration, and a bootstrap account at `bootstrap`.
fn tree(dead: u16, bootstrap: u16) -> Tree {
    let account = |port: u16, bootstrap: bool, ssid: u16| {
        common::account(
            format!("coap://127.0.0.1:{port}"),
            bootstrap,
            ssid,
            300,
            None,
        )
    };
    let mut tree = common::tree(vec![account(dead, false, 101), account(bootstrap, true, 0)]);
    let instance = dm_lwm2m::bootstrap::accounts(&tree)[0].server_instance;
    tree.begin(dm_core::Origin::Bootstrap)
        .set(
            dm_core::Path::resource(
                dm_core::catalog::server::ID,
                dm_core::InstanceId(instance),
                dm_core::catalog::server::COMMUNICATION_RETRY_COUNT,
            ),
            dm_core::Value::Unsigned(1),
        )
        .commit()
        .unwrap();
    tree
}

/// A bootstrap server that answers each Bootstrap-Request and finishes at
/// once, leaving the accounts as they are; returns when each request came.
async fn serve_bootstraps(socket: UdpSocket, until: Instant) -> Vec<Instant> {
    let mut requests = Vec::new();
    let mut buffer = [0u8; 2048];
    let mut next_id = 1u16;
    while let Ok(Ok((n, client))) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        socket.recv_from(&mut buffer),
    )
    .await
    {
        let Ok(packet) = Packet::from_bytes(&buffer[..n]) else {
            continue;
        };
        if packet.header.code != MessageClass::Request(RequestType::Post)
            || packet.header.get_type() != MessageType::Confirmable
        {
            continue;
        }
        requests.push(Instant::now());
        let mut changed = Packet::new();
        changed.header.set_type(MessageType::Acknowledgement);
        changed.header.message_id = packet.header.message_id;
        changed.header.code = MessageClass::Response(ResponseType::Changed);
        changed.set_token(packet.get_token().to_vec());
        socket
            .send_to(&changed.to_bytes().unwrap(), client)
            .await
            .unwrap();
        // Bootstrap-Finish.
        let mut finish = Packet::new();
        finish.header.set_type(MessageType::Confirmable);
        finish.header.code = MessageClass::Request(RequestType::Post);
        next_id += 1;
        finish.header.message_id = next_id;
        finish.set_token(vec![0xB5, next_id as u8]);
        finish.add_option(CoapOption::UriPath, b"bs".to_vec());
        socket
            .send_to(&finish.to_bytes().unwrap(), client)
            .await
            .unwrap();
    }
    requests
}

#[tokio::test(flavor = "current_thread")]
async fn a_bootstrap_that_gives_a_dead_account_is_repeated_after_a_growing_wait() {
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bootstrap = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (dead_port, bootstrap_port) = (
        dead.local_addr().unwrap().port(),
        bootstrap.local_addr().unwrap().port(),
    );
    // Nothing answers at `dead`: its socket is closed (the Register
    // meets ICMP port unreachable and times out).
    drop(dead);
    let tree = Arc::new(std::sync::Mutex::new(tree(dead_port, bootstrap_port)));
    // A Register fails in 0.3 s.
    let driver = common::Running::start(
        &tree,
        common::config(
            format!("127.0.0.1:{dead_port}").parse().unwrap(),
            None,
            common::short_coap(100, 1),
        ),
    );
    // Each cycle (a failed Register, a bootstrap) takes well under a
    // second. The provisioned account fails: a bootstrap at once. It
    // finishes with the same dead account, which fails again: the next
    // bootstrap only after a 30 s wait, so one in this 6 s window.
    let requests = serve_bootstraps(bootstrap, Instant::now() + Duration::from_secs(6)).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    // It stops even while waiting to bootstrap.
    driver.stop().await;
}
