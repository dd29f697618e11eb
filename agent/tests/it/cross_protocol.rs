//! The feature no other agent has, end to end through the binary: an LwM2M
//! server's write to a resource the ACS asked to be notified about starts a
//! CWMP session with "4 VALUE CHANGE" carrying the new value.
//!
//! Peers: aiocoap as the LwM2M server (tests/peers/lwm2m_server.py in
//! `write` mode) and a scripted ACS on a loopback socket, which sets active
//! notification with SetParameterAttributes in the boot session.

use dm_tests::process::Guard;
use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn envelope(body: &str) -> String {
    format!(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">7</cwmp:ID></soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"#
    )
}

/// Reads one HTTP request (headers and Content-Length body).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A scripted ACS: answers each POST with the next reply (an empty reply is
/// 204) and reports every body it receives.
fn scripted_acs(replies: Vec<String>) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut replies = VecDeque::from(replies);
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            while let Some(body) = read_request(&mut reader) {
                if tx.send(body).is_err() {
                    return;
                }
                let reply = replies.pop_front().unwrap_or_default();
                let head = if reply.is_empty() {
                    "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                        reply.len()
                    )
                };
                if writer.write_all(head.as_bytes()).is_err()
                    || writer.write_all(reply.as_bytes()).is_err()
                {
                    break;
                }
            }
        }
    });
    (port, rx)
}

fn received(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the ACS hears from the agent")
}

#[test]
fn an_lwm2m_write_becomes_a_cwmp_value_change() {
    let inform_response =
        envelope("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>");
    let (acs_port, posts) = scripted_acs(vec![
        // Boot session: InformResponse, then SPA on the empty POST, then 204.
        inform_response.clone(),
        envelope(
            "<cwmp:SetParameterAttributes><ParameterList><SetParameterAttributesStruct>\
             <Name>Device.WiFi.SSID.1.SSID</Name><NotificationChange>1</NotificationChange>\
             <Notification>2</Notification><AccessListChange>0</AccessListChange><AccessList/>\
             </SetParameterAttributesStruct></ParameterList></cwmp:SetParameterAttributes>",
        ),
        String::new(),
        // The value-change session.
        inform_response,
        String::new(),
    ]);
    let coap_port = dm_tests::files::free_udp_port();
    let cr_port = dm_tests::files::free_tcp_port();

    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&coap_port.to_string(), "write", "/12/1/5", "from-lwm2m"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lwm2m_events = BufReader::new(server.0.stdout.take().unwrap()).lines();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-X\"\noui = \"00D09E\"\n\n\
             [cwmp]\nacs_url = \"http://127.0.0.1:{acs_port}/acs\"\nconnection_request_port = {cr_port}\n\
             connection_request_bind = \"127.0.0.1\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{coap_port}\"\nendpoint = \"dmagent-x\"\n"
        ),
    )
    .unwrap();
    let _agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            // The in-memory platform, whose values this test knows.
            .env("DMAGENT_PLATFORM", "memory")
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The boot session: Inform, empty POST, SPA response.
    assert!(received(&posts).contains("<EventCode>1 BOOT</EventCode>"));
    assert_eq!(received(&posts), "");
    assert!(received(&posts).contains("SetParameterAttributesResponse"));
    // The agent is registered with the LwM2M server too.
    let register = lwm2m_events.next().unwrap().unwrap();
    let register = if register.contains("listening") {
        lwm2m_events.next().unwrap().unwrap()
    } else {
        register
    };
    assert!(register.contains("\"register\""), "{register}");

    // The LwM2M server writes the SSID.
    let stdin = server.0.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
    let write = lwm2m_events.next().unwrap().unwrap();
    assert!(write.contains("2.04 Changed"), "{write}");

    // A new CWMP session reports it.
    let inform = received(&posts);
    assert!(
        inform.contains("<EventCode>4 VALUE CHANGE</EventCode>"),
        "{inform}"
    );
    assert!(
        inform.contains(
            "<Name>Device.WiFi.SSID.1.SSID</Name><Value xsi:type=\"xsd:string\">from-lwm2m</Value>"
        ),
        "{inform}"
    );
}
