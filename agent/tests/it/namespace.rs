//! The agent on a real Linux network: in the network namespace of the
//! real-daemon stack (NetworkManager, oFono; `tests/peers/dbus-stack.sh`),
//! on the default `auto` platform, the veth's MAC, address, default route,
//! name server and byte counters read the same through CWMP
//! GetParameterValues, LwM2M Read and `ip`, and a byte counter read twice
//! grows with the traffic sent between the reads.
//!
//! Every peer lives in the namespace: the scripted ACS on a thread that
//! entered it, the aiocoap LwM2M server and the agent through
//! `ip netns exec`. Traffic goes to an address on the veth's own subnet
//! (documentation range, inside the namespace): the ARP requests it
//! causes are the bytes counted.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_tests::mini_acs::{MiniAcs, parameter_values as values};
use dm_tests::process::Guard;

/// `ip -n NETNS -j ARGS...` as JSON.
fn ip(netns: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["-n", netns, "-j"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_veth_reads_the_same_through_cwmp_lwm2m_and_ip() {
    let mut stack = dm_tests::dbus_stack::Stack::start();
    let netns = stack.netns.clone();
    // A default route and a name server, as a gateway's uplink has them.
    for command in [
        "nm connection modify wired ipv4.gateway 198.51.100.254",
        "nm connection up wired",
    ] {
        assert_eq!(stack.command(command), "ok", "{command}");
    }
    // `ip netns exec` mounts this over /etc/resolv.conf; the stack removes
    // it with the namespace.
    std::fs::create_dir_all(format!("/etc/netns/{netns}")).unwrap();
    std::fs::write(
        format!("/etc/netns/{netns}/resolv.conf"),
        "nameserver 198.51.100.53\n",
    )
    .unwrap();

    // The ACS, in the namespace: two reads of the link's facts in one
    // session, traffic sent between them (from the namespace too).
    // veth0's IP interface is the row of its interface index.
    let index = ip(&netns, &["link", "show", "veth0"])[0]["ifindex"]
        .as_u64()
        .unwrap();
    let interface = format!("Device.IP.Interface.{index}");
    let asked = format!(
        "<string>Device.Ethernet.Interface.</string>\
         <string>Device.Ethernet.Link.</string>\
         <string>{interface}.</string>\
         <string>Device.Routing.Router.1.IPv4Forwarding.</string>\
         <string>Device.DNS.Client.Server.</string>"
    );
    let step = Arc::new(Mutex::new(0));
    let acs = dm_tests::netns::run_in(&netns, move || {
        MiniAcs::start(Box::new(move |_body| {
            let mut step = dm_core::lock(&step);
            *step += 1;
            match *step {
                1 => Some(format!(
                    "<cwmp:GetParameterValues><ParameterNames>{asked}</ParameterNames></cwmp:GetParameterValues>"
                )),
                2 => {
                    // Ten datagrams to a neighbour nobody answers for:
                    // each wait for its ARP reply, and the requests go
                    // out of veth0.
                    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                    for _ in 0..10 {
                        let _ = socket.send_to(b"dmagent", "198.51.100.77:9");
                    }
                    Some(
                        "<cwmp:GetParameterValues><ParameterNames>\
                         <string>Device.Ethernet.Interface.</string>\
                         </ParameterNames></cwmp:GetParameterValues>"
                            .to_owned(),
                    )
                }
                _ => None,
            }
        }))
    });

    // The LwM2M server, in the namespace.
    let coap_port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(dm_tests::py_peers::python())
            .arg(dm_tests::py_peers::lwm2m_server_script())
            .args([&coap_port.to_string(), "write", "/1/0/1", "300"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut tell = server.0.stdin.take().unwrap();
    let lwm2m = dm_tests::process::lines(server.0.stdout.take().unwrap());
    let next_with = |needle: &str| loop {
        let line = lwm2m
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("the LwM2M server never said {needle}: {e}"));
        if line.contains(needle) {
            return serde_json::from_str::<serde_json::Value>(&line).unwrap();
        }
    };
    next_with("\"listening\"");

    // The agent, in the namespace, on the default platform and the
    // stack's system bus.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-NS\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{coap_port}\"\nendpoint = \"ns\"\n",
            acs.url(),
            dm_tests::files::free_tcp_port()
        ),
    )
    .unwrap();
    let _agent = Guard(
        Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(env!("CARGO_BIN_EXE_dmagent"))
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env_remove("DMAGENT_PLATFORM")
            .env("DMAGENT_BUS", "system")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let first = values(&acs.post_with("GetParameterValuesResponse"));
    let second = values(&acs.post_with("GetParameterValuesResponse"));
    let after = ip(&netns, &["-s", "link", "show", "veth0"]);

    // The link: found by its kernel index, with its MAC.
    let link = ip(&netns, &["link", "show", "veth0"]);
    let index = link[0]["ifindex"].as_u64().unwrap();
    let port = format!("Device.Ethernet.Interface.{index}.");
    assert_eq!(first[&format!("{port}Name")], "veth0", "{first:?}");
    assert_eq!(
        first[&format!("{port}MACAddress")],
        link[0]["address"].as_str().unwrap()
    );
    assert_eq!(first[&format!("{port}Upstream")], "true");
    // Bytes sent: more at the second read than the first (ARP requests
    // went out between them), and no more than the kernel counts after.
    let sent = |values: &HashMap<String, String>| -> u64 {
        values[&format!("{port}Stats.BytesSent")].parse().unwrap()
    };
    let counted = after[0]["stats64"]["tx"]["bytes"].as_u64().unwrap();
    assert!(
        sent(&first) < sent(&second) && sent(&second) <= counted,
        "{} then {}, the kernel {counted}",
        sent(&first),
        sent(&second)
    );
    // The address and the default route, as `ip` has them.
    let addresses = ip(&netns, &["-4", "addr", "show", "veth0"]);
    let address = addresses[0]["addr_info"][0]["local"].as_str().unwrap();
    assert_eq!(address, "198.51.100.1");
    assert_eq!(
        first[&format!("{interface}.IPv4Address.1.IPAddress")],
        address
    );
    assert_eq!(first[&format!("{interface}.Name")], "veth0");
    // The address's kind as the kernel holds it: leased (ip's
    // "dynamic") or configured.
    let dynamic = addresses[0]["addr_info"][0]["dynamic"].as_bool() == Some(true);
    assert_eq!(
        first[&format!("{interface}.IPv4Address.1.AddressingType")],
        if dynamic { "DHCP" } else { "Static" }
    );
    // TR-181's stack: IP.Interface over Ethernet.Link over
    // Ethernet.Interface, each the veth's kernel index.
    assert_eq!(
        first[&format!("{interface}.LowerLayers")],
        format!("Device.Ethernet.Link.{index}")
    );
    assert_eq!(
        first[&format!("Device.Ethernet.Link.{index}.LowerLayers")],
        format!("Device.Ethernet.Interface.{index}")
    );
    assert_eq!(
        first[&format!("Device.Ethernet.Link.{index}.MACAddress")],
        link[0]["address"].as_str().unwrap()
    );
    let default = ip(&netns, &["route", "show", "default"]);
    let gateway = default[0]["gateway"].as_str().unwrap();
    let route = first
        .iter()
        .find(|(name, value)| name.ends_with(".GatewayIPAddress") && value.as_str() == gateway)
        .map(|(name, _)| name.trim_end_matches("GatewayIPAddress").to_owned())
        .unwrap_or_else(|| panic!("no forwarding entry via {gateway}: {first:?}"));
    assert_eq!(first[&format!("{route}DestIPAddress")], "");
    assert_eq!(first[&format!("{route}Interface")], interface);
    // The name server of the namespace's resolver.
    assert_eq!(
        first["Device.DNS.Client.Server.1.DNSServer"],
        "198.51.100.53"
    );

    // The same through LwM2M: /4/0/4 the address, /4/0/5 the router.
    next_with("\"register\"");
    for line in ["go", "read /4/0/4/0", "read /4/0/5/0"] {
        writeln!(tell, "{line}").unwrap();
    }
    tell.flush().unwrap();
    let ip_read = next_with("\"step\": \"read\"");
    assert_eq!(ip_read["text"], address, "{ip_read}");
    let router_read = next_with("\"step\": \"read\"");
    assert_eq!(router_read["text"], gateway, "{router_read}");
}
