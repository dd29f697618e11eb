//! Listening sockets for both address families: an unspecified IPv6
//! address (`::`) takes IPv4 too (IPV6_V6ONLY off, whatever the host's
//! `net.ipv6.bindv6only`), so the ConnectionRequestURL may carry the
//! address of whichever family reaches the ACS; a host without IPv6 falls
//! back to `0.0.0.0`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};

/// The socket for `address`: dual-stack for `::`.
fn socket(address: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let domain = Domain::for_address(address);
    let socket = Socket::new(domain, kind, Some(protocol))?;
    if address.is_ipv6() {
        socket.set_only_v6(!address.ip().is_unspecified())?;
    }
    if kind == Type::STREAM {
        // As tokio's TcpListener::bind: a restart rebinds at once.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// `::` without IPv6 on the host is `0.0.0.0`, same port.
fn with_fallback<T>(
    address: SocketAddr,
    open: impl Fn(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    match open(address) {
        Err(e) if address.is_ipv6() && address.ip().is_unspecified() => {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port());
            open(v4).map_err(|_| e)
        }
        other => other,
    }
}

pub(crate) fn tcp_listener(address: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    with_fallback(address, |address| {
        let socket = socket(address, Type::STREAM, Protocol::TCP)?;
        socket.listen(128)?;
        tokio::net::TcpListener::from_std(socket.into())
    })
}

pub(crate) fn udp_socket(address: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    with_fallback(address, |address| {
        let socket = socket(address, Type::DGRAM, Protocol::UDP)?;
        tokio::net::UdpSocket::from_std(socket.into())
    })
}

/// `to` as a socket bound to `local` can send to it: an IPv4 peer of a
/// dual-stack IPv6 socket is written v4-mapped (`::ffff:a.b.c.d`); `None`
/// when the families cannot meet.
pub(crate) fn peer_for(local: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
    match (local, to) {
        (SocketAddr::V6(l), SocketAddr::V4(v4)) if l.ip().is_unspecified() => Some(SocketAddr::V6(
            SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        )),
        (SocketAddr::V4(_), SocketAddr::V6(_)) | (SocketAddr::V6(_), SocketAddr::V4(_)) => None,
        _ => Some(to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One listener on `::` serves IPv4 and IPv6 clients.
    #[tokio::test(flavor = "current_thread")]
    async fn one_listener_on_the_unspecified_ipv6_address_takes_both_families() {
        let listener = tcp_listener("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        for client in ["127.0.0.1", "::1"] {
            let connect = tokio::net::TcpStream::connect((client, port));
            let (connected, accepted) = tokio::join!(connect, listener.accept());
            connected.unwrap();
            accepted.unwrap();
        }
        let udp = udp_socket("[::]:0".parse().unwrap()).unwrap();
        let port = udp.local_addr().unwrap().port();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"v4", ("127.0.0.1", port)).unwrap();
        let mut buffer = [0u8; 8];
        let (n, from) = udp.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..n], b"v4");
        // And an answer to an IPv4 peer goes out v4-mapped.
        let back = peer_for(udp.local_addr().unwrap(), from).unwrap();
        udp.send_to(b"ok", back).await.unwrap();
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            peer_for(udp.local_addr().unwrap(), v4),
            Some("[::ffff:127.0.0.1]:9".parse().unwrap())
        );
        assert_eq!(
            peer_for("127.0.0.1:0".parse().unwrap(), "[::1]:9".parse().unwrap()),
            None
        );
    }
}
