//! OpenSSL through the openssl crate, linked to the system's libssl3.

#[path = "../common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;

use openssl::ssl::{SslConnector, SslMethod, SslOptions, SslStream, SslVerifyMode};

/// One datagram per read and write, as DTLS wants its BIO.
struct Datagrams(UdpSocket);

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let common::Probe {
        socket,
        identity,
        key,
        deadline: _,
    } = common::setup();
    // Blocking: OpenSSL retransmits on its own timer between reads.
    if let Err(e) = socket.set_read_timeout(Some(common::GIVE_UP)) {
        common::fail("socket", e);
    }
    let mut builder =
        SslConnector::builder(SslMethod::dtls()).unwrap_or_else(|e| common::fail("openssl", e));
    builder.set_verify(SslVerifyMode::NONE);
    builder.set_options(SslOptions::NO_QUERY_MTU);
    if let Err(e) = builder.set_cipher_list("PSK-AES128-CCM8") {
        common::fail("cipher", e);
    }
    builder.set_psk_client_callback(move |_ssl, _hint, id, psk| {
        if identity.len() >= id.len() || key.len() > psk.len() {
            return Ok(0);
        }
        id[..identity.len()].copy_from_slice(identity.as_bytes());
        id[identity.len()] = 0;
        psk[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    let ssl = builder
        .build()
        .configure()
        .and_then(|mut c| {
            c.set_verify_hostname(false);
            c.into_ssl("localhost")
        })
        .and_then(|mut ssl| ssl.set_mtu(1200).map(|()| ssl))
        .unwrap_or_else(|e| common::fail("openssl", e));
    let mut stream =
        SslStream::new(ssl, Datagrams(socket)).unwrap_or_else(|e| common::fail("openssl", e));
    if let Err(e) = stream.connect() {
        common::fail("handshake", e);
    }
    if let Err(e) = stream.write_all(b"hello from openssl\n") {
        common::fail("write", e);
    }
    println!("openssl connected");
}
