//! Stopping the driver while its Register is on its way (field case: a
//! test's SIGTERM, or a device shutting down, right after start): the
//! driver waits for the answer and de-registers, so the server is not left
//! holding a registration until its lifetime runs out.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use tokio::net::UdpSocket;

async fn receive(socket: &UdpSocket) -> (Packet, std::net::SocketAddr) {
    let mut buffer = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer))
        .await
        .expect("the client sends")
        .unwrap();
    (Packet::from_bytes(&buffer[..n]).unwrap(), from)
}

fn path(packet: &Packet) -> Vec<String> {
    packet
        .get_option(CoapOption::UriPath)
        .map(|p| {
            p.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn answer(request: &Packet, code: ResponseType) -> Vec<u8> {
    let mut response = Packet::new();
    response.header.set_type(MessageType::Acknowledgement);
    response.header.message_id = request.header.message_id;
    response.header.code = MessageClass::Response(code);
    response.set_token(request.get_token().to_vec());
    if code == ResponseType::Created {
        response.add_option(CoapOption::LocationPath, b"rd".to_vec());
        response.add_option(CoapOption::LocationPath, b"9".to_vec());
    }
    response.to_bytes().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_stop_during_register_waits_for_it_then_deregisters() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let tree = Arc::new(std::sync::Mutex::new(common::tree(vec![common::account(
        format!("coap://127.0.0.1:{}", address.port()),
        false,
        101,
        300,
        None,
    )])));
    let driver = common::Running::start(
        &tree,
        common::config(address, None, dm_lwm2m::coap::Parameters::default()),
    );
    let (register, client) = receive(&socket).await;
    assert_eq!(
        register.header.code,
        MessageClass::Request(RequestType::Post)
    );
    assert_eq!(path(&register), ["rd"]);
    // The stop comes while the Register awaits its answer; the answer
    // comes after the driver has seen the stop.
    driver.request_stop();
    tokio::task::yield_now().await;
    socket
        .send_to(&answer(&register, ResponseType::Created), client)
        .await
        .unwrap();
    let (deregister, _) = receive(&socket).await;
    assert_eq!(
        deregister.header.code,
        MessageClass::Request(RequestType::Delete)
    );
    assert_eq!(path(&deregister), ["rd", "9"]);
    socket
        .send_to(&answer(&deregister, ResponseType::Deleted), client)
        .await
        .unwrap();
    // The driver ends once de-registered.
    driver.stopped().await;
}
