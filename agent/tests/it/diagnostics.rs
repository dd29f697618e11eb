//! TR-143 IPPing end to end through CWMP, in a network namespace the test
//! makes: the far host is a TUN device whose echoes are answered 50 ms
//! late (`tests/peers/delay_host.py`; this kernel has no netem). The ACS
//! sets the inputs with DiagnosticsState Requested; the test runs after
//! the session; the next session carries "8 DIAGNOSTICS COMPLETE" and the
//! ACS reads the results. Then a host name that is a URL: the
//! Error_CannotResolveHostName state, reported the same way.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use dm_tests::mini_acs::{
    MiniAcs, get_parameter_values, parameter_values as values, set_parameter_values,
};
use dm_tests::netns::Netns;
use dm_tests::process::Guard;

/// The scripted ACS, in `netns` (it sees only what follows each
/// Inform): each session answers with the next list of `sessions`, taken
/// from the end, one request per POST.
fn acs_in(netns: &str, sessions: Vec<Vec<String>>) -> MiniAcs {
    dm_tests::netns::run_in(netns, move || {
        MiniAcs::start(dm_tests::mini_acs::scripted(sessions))
    })
}

/// The agent in `netns`, on the kernel's platform, with `acs` as its ACS;
/// its directory goes with it.
fn agent_in(netns: &str, acs: &MiniAcs, serial: &str) -> (Guard, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"{serial}\"\n\n[platform]\nkind = \"linux\"\n\n\
             [cwmp]\nacs_url = \"{}\"\nconnection_request_port = {}\n\
             connection_request_bind = \"127.0.0.1\"\n\n[lwm2m]\nenabled = false\n",
            acs.url(),
            dm_tests::files::free_tcp_port()
        ),
    )
    .unwrap();
    let agent = Guard(
        Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(env!("CARGO_BIN_EXE_dmagent"))
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env_remove("DMAGENT_PLATFORM")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (agent, dir)
}

/// A peer of `tests/peers/` (python, its arguments), in `netns`, once it
/// said READY.
fn peer_in(netns: &str, script: &str, args: &[&str]) -> Guard {
    let mut peer = Guard(
        Command::new("ip")
            .args(["netns", "exec", netns, "python3"])
            .arg(format!(
                "{}/../tests/peers/{script}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(peer.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "READY", "{script} did not start");
    peer
}

/// `interface`: a row's path, or empty for none.
fn set_ping(host: &str, interface: &str) -> String {
    const PING: &str = "Device.IP.Diagnostics.IPPing.";
    set_parameter_values(
        "ping",
        &[
            (&format!("{PING}Host"), "string", host),
            (&format!("{PING}Interface"), "string", interface),
            (&format!("{PING}NumberOfRepetitions"), "unsignedInt", "4"),
            (&format!("{PING}Timeout"), "unsignedInt", "2000"),
            (&format!("{PING}DiagnosticsState"), "string", "Requested"),
        ],
    )
}

const READ: &str = "Device.IP.Diagnostics.IPPing.";

#[test]
fn ip_ping_runs_after_the_session_and_reports_diagnostics_complete() {
    let netns = Netns::new(&format!("dmt-diag-{}", std::process::id()));
    netns.ip("link set lo up");
    // The far host: 198.18.0.2, behind tun0, 50 ms away one way.
    let _far = peer_in(&netns.0, "delay_host.py", &["tun0", "50"]);
    netns.ip("addr add 198.18.0.1/24 dev tun0");
    netns.ip("link set tun0 up");
    let link = Command::new("ip")
        .args(["-n", &netns.0, "-j", "link", "show", "tun0"])
        .output()
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
    let tun = format!("Device.IP.Interface.{}", link[0]["ifindex"]);

    // The ACS, in the namespace (it sees only what follows each Inform).
    // Sessions, in order: the first sets the test; the next (reporting its
    // end) reads it and sets another, with a URL as host; the last
    // (reporting that) reads it again.
    let sessions = vec![
        vec![get_parameter_values(READ_SELECTION)],
        vec![
            get_parameter_values(READ),
            set_selection("198.18.0.2,127.0.0.1,http://x/"),
        ],
        vec![
            get_parameter_values(READ),
            set_ping("http://198.18.0.2/", ""),
        ],
        // Through tun0, named by its IP interface row.
        vec![set_ping("198.18.0.2", &tun)],
    ];
    let acs = acs_in(&netns.0, sessions);

    let (_agent, _dir) = agent_in(&netns.0, &acs, "SN-DIAG");

    let set = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(set.contains("<Status>0</Status>"), "{set}");
    let inform = acs.post_with("8 DIAGNOSTICS COMPLETE");
    assert!(inform.contains("<cwmp:Inform>"), "{inform}");
    let first = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| first[&format!("Device.IP.Diagnostics.IPPing.{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{first:?}");
    assert_eq!(
        (at("SuccessCount").as_str(), at("FailureCount").as_str()),
        ("4", "0")
    );
    assert_eq!(at("IPAddressUsed"), "198.18.0.1");
    assert_eq!(at("Interface"), tun);
    // The far host's 50 ms, within 20 % (the fastest echo: the others
    // may wait for a loaded machine's scheduler too).
    let fastest: u64 = at("MinimumResponseTimeDetailed").parse().unwrap();
    assert!((40_000..=60_000).contains(&fastest), "{fastest} µs");
    let average: u64 = at("AverageResponseTimeDetailed").parse().unwrap();
    assert!(average >= fastest, "{average} µs");
    let minimum: u64 = at("MinimumResponseTime").parse().unwrap();
    let maximum: u64 = at("MaximumResponseTime").parse().unwrap();
    assert!(
        minimum >= 40 && minimum <= maximum && maximum <= 100,
        "{first:?}"
    );

    // A URL is no host name: the error state, reported the same way.
    let set = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(set.contains("<Status>0</Status>"), "{set}");
    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let second = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    assert_eq!(
        second["Device.IP.Diagnostics.IPPing.DiagnosticsState"],
        "Error_CannotResolveHostName"
    );
    assert_eq!(second["Device.IP.Diagnostics.IPPing.SuccessCount"], "0");

    // ServerSelection among the far host, the loopback and a URL (left
    // out): the loopback is the fastest.
    let set = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(set.contains("<Status>0</Status>"), "{set}");
    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let selection = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| {
        selection[&format!("Device.IP.Diagnostics.ServerSelectionDiagnostics.{name}")].clone()
    };
    assert_eq!(at("DiagnosticsState"), "Complete", "{selection:?}");
    assert_eq!(at("FastestHost"), "127.0.0.1");
    let average: u64 = at("AverageResponseTime").parse().unwrap();
    assert!(average < 40_000, "{average} µs");
}

fn set_selection(hosts: &str) -> String {
    const SELECTION: &str = "Device.IP.Diagnostics.ServerSelectionDiagnostics.";
    set_parameter_values(
        "select",
        &[
            (&format!("{SELECTION}HostList"), "string", hosts),
            (
                &format!("{SELECTION}NumberOfRepetitions"),
                "unsignedInt",
                "2",
            ),
            (
                &format!("{SELECTION}DiagnosticsState"),
                "string",
                "Requested",
            ),
        ],
    )
}

const READ_SELECTION: &str = "Device.IP.Diagnostics.ServerSelectionDiagnostics.";

fn set_trace(host: &str, max_hops: u32) -> String {
    const TRACE: &str = "Device.IP.Diagnostics.TraceRoute.";
    set_parameter_values(
        "trace",
        &[
            (&format!("{TRACE}Host"), "string", host),
            (&format!("{TRACE}NumberOfTries"), "unsignedInt", "2"),
            (&format!("{TRACE}Timeout"), "unsignedInt", "2000"),
            (
                &format!("{TRACE}MaxHopCount"),
                "unsignedInt",
                &max_hops.to_string(),
            ),
            (&format!("{TRACE}DiagnosticsState"), "string", "Requested"),
        ],
    )
}

const READ_TRACE: &str = "Device.IP.Diagnostics.TraceRoute.";

/// TraceRoute through a router: three namespaces the test makes (the
/// agent's, a router that forwards, the target's), real kernels
/// answering "time exceeded" and "port unreachable". The route is the
/// router, then the target; with one hop allowed, the test ends at the
/// router with Error_MaxHopCountExceeded.
#[test]
fn trace_route_finds_the_router_then_the_target() {
    let id = std::process::id();
    let agent_ns = Netns::new(&format!("dmt-tr-a-{id}"));
    let router = Netns::new(&format!("dmt-tr-r-{id}"));
    let target = Netns::new(&format!("dmt-tr-b-{id}"));
    let link = |a: &Netns, a_if: &str, b: &Netns, b_if: &str| {
        let status = Command::new("ip")
            .args([
                "link", "add", a_if, "netns", &a.0, "type", "veth", "peer", "name", b_if,
            ])
            .args(["netns", &b.0])
            .status()
            .unwrap();
        assert!(status.success(), "veth {a_if}-{b_if}");
    };
    link(&agent_ns, "a0", &router, "r0");
    link(&router, "r1", &target, "b0");
    for (ns, setup) in [
        (
            &agent_ns,
            &[
                "addr add 10.90.1.2/24 dev a0",
                "link set a0 up",
                "link set lo up",
                "route add default via 10.90.1.1",
            ][..],
        ),
        (
            &router,
            &[
                "addr add 10.90.1.1/24 dev r0",
                "addr add 10.90.2.1/24 dev r1",
                "link set r0 up",
                "link set r1 up",
            ][..],
        ),
        (
            &target,
            &[
                "addr add 10.90.2.2/24 dev b0",
                "link set b0 up",
                "route add default via 10.90.2.1",
            ][..],
        ),
    ] {
        for command in setup {
            ns.ip(command);
        }
    }
    // The router forwards; neither it nor the target rations its ICMP
    // errors (the kernel's default would drop some of two quick probes).
    for (ns, settings) in [
        (
            &router,
            &["net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"][..],
        ),
        (&target, &["net.ipv4.icmp_ratelimit=0"][..]),
    ] {
        let status = Command::new("ip")
            .args(["netns", "exec", &ns.0, "sysctl", "-q", "-w"])
            .args(settings)
            .status()
            .unwrap();
        assert!(status.success(), "sysctl in {}", ns.0);
    }

    let sessions = vec![
        vec![get_parameter_values(READ_TRACE)],
        vec![get_parameter_values(READ_TRACE), set_trace("10.90.2.2", 1)],
        vec![set_trace("10.90.2.2", 30)],
    ];
    let acs = acs_in(&agent_ns.0, sessions);
    let (_agent, _dir) = agent_in(&agent_ns.0, &acs, "SN-TRACE");

    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let route = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| route[&format!("Device.IP.Diagnostics.TraceRoute.{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{route:?}");
    assert_eq!(at("RouteHopsNumberOfEntries"), "2");
    assert_eq!(at("RouteHops.1.HostAddress"), "10.90.1.1");
    assert_eq!(at("RouteHops.2.HostAddress"), "10.90.2.2");
    assert_eq!(at("RouteHops.2.RTTimes").split(',').count(), 2);
    assert_eq!(at("IPAddressUsed"), "10.90.1.2");

    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let short = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| short[&format!("Device.IP.Diagnostics.TraceRoute.{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Error_MaxHopCountExceeded");
    assert_eq!(at("RouteHopsNumberOfEntries"), "1");
    assert_eq!(at("RouteHops.1.HostAddress"), "10.90.1.1");
}

fn set_lookup(host: &str, server: &str, repetitions: u32, timeout: u32) -> String {
    const LOOKUP: &str = "Device.DNS.Diagnostics.NSLookupDiagnostics.";
    set_parameter_values(
        "lookup",
        &[
            (&format!("{LOOKUP}HostName"), "string", host),
            (&format!("{LOOKUP}DNSServer"), "string", server),
            (
                &format!("{LOOKUP}NumberOfRepetitions"),
                "unsignedInt",
                &repetitions.to_string(),
            ),
            (
                &format!("{LOOKUP}Timeout"),
                "unsignedInt",
                &timeout.to_string(),
            ),
            (&format!("{LOOKUP}DiagnosticsState"), "string", "Requested"),
        ],
    )
}

const READ_LOOKUP: &str = "Device.DNS.Diagnostics.NSLookupDiagnostics.";

/// NSLookupDiagnostics against a test DNS server on the namespace's
/// loopback: a name it knows (two repetitions, both families), one it
/// does not (NXDOMAIN), one it never answers (the timeout), and a DNS
/// server that is a URL (Error_DNSServerNotResolved).
#[test]
fn ns_lookup_asks_the_server_named() {
    let netns = Netns::new(&format!("dmt-dns-{}", std::process::id()));
    netns.ip("link set lo up");
    let _dns = peer_in(
        &netns.0,
        "dns_server.py",
        &["127.0.0.1", "53", "host.test=192.0.2.7,2001:db8::7"],
    );

    let sessions = vec![
        vec![get_parameter_values(READ_LOOKUP)],
        vec![
            get_parameter_values(READ_LOOKUP),
            set_lookup("host.test", "http://dns/", 1, 1000),
        ],
        vec![
            get_parameter_values(READ_LOOKUP),
            set_lookup("missing.test", "127.0.0.1", 2, 300),
        ],
        vec![
            get_parameter_values(READ_LOOKUP),
            set_lookup("silent.test", "127.0.0.1", 1, 300),
        ],
        vec![set_lookup("host.test", "127.0.0.1", 2, 2000)],
    ];
    let acs = acs_in(&netns.0, sessions);
    let (_agent, _dir) = agent_in(&netns.0, &acs, "SN-DNS");
    let next = || {
        acs.post_with("8 DIAGNOSTICS COMPLETE");
        let read = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
        move |name: &str| {
            read.get(&format!(
                "Device.DNS.Diagnostics.NSLookupDiagnostics.{name}"
            ))
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {read:?}"))
        }
    };
    let found = next();
    assert_eq!(found("DiagnosticsState"), "Complete");
    assert_eq!(found("SuccessCount"), "2");
    assert_eq!(found("ResultNumberOfEntries"), "2");
    for n in [1, 2] {
        assert_eq!(found(&format!("Result.{n}.Status")), "Success");
        assert_eq!(
            found(&format!("Result.{n}.IPAddresses")),
            "192.0.2.7,2001:db8::7"
        );
        assert_eq!(found(&format!("Result.{n}.AnswerType")), "Authoritative");
        assert_eq!(found(&format!("Result.{n}.HostNameReturned")), "host.test");
        assert_eq!(found(&format!("Result.{n}.DNSServerIP")), "127.0.0.1");
    }
    let silent = next();
    assert_eq!(silent("Result.1.Status"), "Error_Timeout");
    assert_eq!(silent("Result.1.AnswerType"), "None");
    let missing = next();
    assert_eq!(missing("SuccessCount"), "0");
    assert_eq!(missing("Result.2.Status"), "Error_HostNameNotResolved");
    let bad_server = next();
    assert_eq!(bad_server("DiagnosticsState"), "Error_DNSServerNotResolved");
}

/// A TR-143 dateTime to the microsecond, as µs since the epoch.
fn micros(text: &str) -> i64 {
    let (seconds, fraction) = text
        .strip_suffix('Z')
        .and_then(|t| t.split_once('.'))
        .unwrap_or_else(|| panic!("{text:?} has no microseconds"));
    assert_eq!(fraction.len(), 6, "{text:?}");
    let whole: jiff::Timestamp = format!("{seconds}Z").parse().unwrap();
    whole.as_second() * 1_000_000 + fraction.parse::<i64>().unwrap()
}

/// DownloadDiagnostics over two connections and UploadDiagnostics,
/// against a test HTTP server in a namespace of the test's: the bytes
/// each reports are the file's, its times are in order to the
/// microsecond, and the server got what the upload says it sent.
#[test]
fn download_and_upload_report_the_bytes_moved_and_their_times() {
    let netns = Netns::new(&format!("dmt-tput-{}", std::process::id()));
    netns.ip("link set lo up");
    // Socket buffers far smaller than half the file: the server's having
    // sent half of every answer (its barrier, `together`) means the agent
    // is reading each of them, so the connections overlap however the
    // machine schedules the agent's tasks.
    netns.sysctl("net.ipv4.tcp_rmem", "4096 65536 262144");
    netns.sysctl("net.ipv4.tcp_wmem", "4096 16384 262144");
    let mut server = Guard(
        Command::new("ip")
            .args(["netns", "exec", &netns.0, "python3"])
            .arg(format!(
                "{}/../tests/peers/http_sink.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg("8080")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "READY");

    const DOWNLOAD: &str = "Device.IP.Diagnostics.DownloadDiagnostics.";
    const UPLOAD: &str = "Device.IP.Diagnostics.UploadDiagnostics.";
    let set_download = set_parameter_values(
        "download",
        &[
            (
                &format!("{DOWNLOAD}DownloadURL"),
                "string",
                // Both connections' answers start together, and neither
                // ends before both are half read: a period of full
                // loading there is.
                "http://127.0.0.1:8080/file?size=3000000&amp;together=2",
            ),
            (
                &format!("{DOWNLOAD}NumberOfConnections"),
                "unsignedInt",
                "2",
            ),
            // The loopback (interface index 1 in a new namespace): its
            // counters give the bytes at the IP layer.
            (
                &format!("{DOWNLOAD}Interface"),
                "string",
                "Device.IP.Interface.1",
            ),
            (
                &format!("{DOWNLOAD}EnablePerConnectionResults"),
                "boolean",
                "true",
            ),
            (
                &format!("{DOWNLOAD}DiagnosticsState"),
                "string",
                "Requested",
            ),
        ],
    );
    let set_upload = set_parameter_values(
        "upload",
        &[
            (
                &format!("{UPLOAD}UploadURL"),
                "string",
                "http://127.0.0.1:8080/sink",
            ),
            (&format!("{UPLOAD}TestFileLength"), "unsignedInt", "1000000"),
            (&format!("{UPLOAD}DiagnosticsState"), "string", "Requested"),
        ],
    );
    let sessions = vec![
        vec![get_parameter_values(UPLOAD)],
        vec![get_parameter_values(DOWNLOAD), set_upload],
        vec![set_download],
    ];
    let acs = acs_in(&netns.0, sessions);
    let (_agent, _dir) = agent_in(&netns.0, &acs, "SN-TPUT");

    acs.post_with("<cwmp:SetParameterValuesResponse>");
    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let got = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| got[&format!("{DOWNLOAD}{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{got:?}");
    // TR-181: the HTTP transaction's bytes, its headers included.
    let number = |text: String| -> u64 { text.parse().unwrap() };
    let test = number(at("TestBytesReceived"));
    assert!((6_000_000..6_002_000).contains(&test), "{test}");
    assert_eq!(at("PerConnectionResultNumberOfEntries"), "2");
    for n in 1..=2 {
        let row = |name: &str| at(&format!("PerConnectionResult.{n}.{name}"));
        let mine = number(row("TestBytesReceived"));
        assert!((3_000_000..3_001_000).contains(&mine), "{mine}");
        let times: Vec<i64> = [
            "TCPOpenRequestTime",
            "TCPOpenResponseTime",
            "ROMTime",
            "BOMTime",
            "EOMTime",
        ]
        .iter()
        .map(|name| micros(&row(name)))
        .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(times[3] < times[4], "{times:?}");
    }
    assert_eq!(at("IPAddressUsed"), "127.0.0.1");
    assert!(micros(&at("BOMTime")) < micros(&at("EOMTime")), "{got:?}");
    // At the IP layer (the loopback's counters): the file and more.
    let total = number(at("TotalBytesReceived"));
    assert!(total >= 6_000_000, "{total}");
    let loaded = number(at("TestBytesReceivedUnderFullLoading"));
    assert!(loaded > 0 && loaded <= test, "{loaded}");
    assert!(number(at("PeriodOfFullLoading")) > 0, "{got:?}");

    acs.post_with("<cwmp:SetParameterValuesResponse>");
    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let got = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| got[&format!("{UPLOAD}{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{got:?}");
    let sent: u64 = at("TestBytesSent").parse().unwrap();
    assert!((1_000_000..1_001_000).contains(&sent), "{sent}");
    // No Interface: the IP layer's bytes cannot be told (TR-181: 0).
    assert_eq!(at("TotalBytesSent"), "0");
    assert_eq!(lines.next().unwrap().unwrap(), "PUT 1000000");
    // The end is the server's answer, after the whole file: later than
    // the beginning, and than the request.
    let (rom, bom, eom) = (
        micros(&at("ROMTime")),
        micros(&at("BOMTime")),
        micros(&at("EOMTime")),
    );
    assert!(rom <= bom && bom < eom, "{got:?}");
    assert_eq!(at("PerConnectionResultNumberOfEntries"), "0");
}

/// TR-143's UDP echo both ways, in a namespace of the test's: the ACS
/// enables the agent's echo server (UDP Echo Plus) and runs
/// UDPEchoDiagnostics against it; a test client is answered with its
/// TestGenSN and the server's Echo Plus fields; the server's counters
/// add up.
#[test]
fn udp_echo_server_answers_and_the_echo_test_measures_it() {
    let netns = Netns::new(&format!("dmt-echo-{}", std::process::id()));
    netns.ip("link set lo up");
    const CONFIG: &str = "Device.IP.Diagnostics.UDPEchoConfig.";
    const TEST: &str = "Device.IP.Diagnostics.UDPEchoDiagnostics.";
    let set = set_parameter_values(
        "echo",
        &[
            (&format!("{CONFIG}UDPPort"), "unsignedInt", "7000"),
            (&format!("{CONFIG}EchoPlusEnabled"), "boolean", "true"),
            (&format!("{CONFIG}Enable"), "boolean", "true"),
            (&format!("{TEST}Host"), "string", "127.0.0.1"),
            (&format!("{TEST}Port"), "unsignedInt", "7000"),
            (&format!("{TEST}NumberOfRepetitions"), "unsignedInt", "3"),
            (&format!("{TEST}InterTransmissionTime"), "unsignedInt", "10"),
            (&format!("{TEST}Timeout"), "unsignedInt", "2000"),
            (
                &format!("{TEST}EnableIndividualPacketResults"),
                "boolean",
                "true",
            ),
            (&format!("{TEST}DiagnosticsState"), "string", "Requested"),
        ],
    );
    let sessions = vec![
        vec![get_parameter_values(TEST), get_parameter_values(CONFIG)],
        vec![set],
    ];
    // The ACS reads the server's counters only once the test client has
    // its answer: the diagnostics session may come first, and a client
    // packet sent before the server listened is retried 200 ms later.
    let (client_done, gate) = std::sync::mpsc::channel::<()>();
    let mut script = dm_tests::mini_acs::scripted(sessions);
    let acs = dm_tests::netns::run_in(&netns.0, move || {
        MiniAcs::start(Box::new(move |body: &str| {
            let next = script(body);
            if next
                .as_deref()
                .is_some_and(|r| r.contains("GetParameterValues") && r.contains(CONFIG))
            {
                let _ = gate.recv_timeout(std::time::Duration::from_secs(30));
            }
            next
        }))
    });
    let (_agent, _dir) = agent_in(&netns.0, &acs, "SN-ECHO");
    acs.post_with("<cwmp:SetParameterValuesResponse>");

    // A test client: 24 bytes, TestGenSN 77, answered by the server (it
    // listens once the change is made: retried until then).
    let reply = dm_tests::netns::run_in(&netns.0, || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut packet = [0u8; 24];
        packet[..4].copy_from_slice(&77u32.to_be_bytes());
        let mut reply = [0u8; 64];
        for _ in 0..100 {
            socket.send_to(&packet, "127.0.0.1:7000").unwrap();
            if let Ok((n, _)) = socket.recv_from(&mut reply) {
                let first = reply[..n].to_vec();
                // A retry sent while the first reply was on its way is
                // answered too: the counters are read once the server
                // has gone quiet, not between its count and its reply.
                let mut rest = [0u8; 64];
                while socket.recv_from(&mut rest).is_ok() {}
                return first;
            }
        }
        panic!("the echo server never answered");
    });
    assert_eq!(reply.len(), 24);
    let word = |at: usize| u32::from_be_bytes(reply[at..at + 4].try_into().unwrap());
    assert_eq!(word(0), 77, "TestGenSN echoed");
    assert!(word(4) >= 1, "TestRespSN counts the replies");
    assert_ne!(word(8), 0, "TestRespRcvTimeStamp");
    client_done.send(()).unwrap();

    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let got = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| got[&format!("{TEST}{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{got:?}");
    assert_eq!(
        (at("SuccessCount").as_str(), at("FailureCount").as_str()),
        ("3", "0")
    );
    let (min, max): (u64, u64) = (
        at("MinimumResponseTime").parse().unwrap(),
        at("MaximumResponseTime").parse().unwrap(),
    );
    assert!(min > 0 && min <= max, "{got:?}");
    assert_eq!(at("IndividualPacketResultNumberOfEntries"), "3");
    for n in 1..=3 {
        let row = |name: &str| at(&format!("IndividualPacketResult.{n}.{name}"));
        assert_eq!(row("PacketSuccess"), "true");
        assert_eq!(row("TestGenSN"), n.to_string());
        assert!(row("TestRespSN").parse::<u32>().unwrap() >= 1);
        assert!(micros(&row("PacketSendTime")) < micros(&row("PacketReceiveTime")));
    }
    let got = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| got[&format!("{CONFIG}{name}")].clone();
    let packets: u64 = at("PacketsReceived").parse().unwrap();
    assert!(packets >= 4, "the test's 3 and the client's: {got:?}");
    assert_eq!(at("PacketsResponded"), packets.to_string());
    assert_eq!(at("BytesReceived"), (24 * packets).to_string());
    assert!(micros(&at("TimeFirstPacketReceived")) <= micros(&at("TimeLastPacketReceived")));
}

/// DownloadDiagnostics and UploadDiagnostics over FTP (pyftpdlib on
/// 127.0.0.1, the login in the URL), two connections: the file's bytes
/// on the data connections, its times in order; the server stores what
/// the upload says it sent.
#[test]
fn download_and_upload_over_ftp() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("file.bin"), vec![0x5a; 2_000_000]).unwrap();
    let ftp = dm_tests::py_peers::FtpServer::start(root.path(), None);
    let base = format!("ftp://dm:ftp-secret@127.0.0.1:{}", ftp.port);
    const DOWNLOAD: &str = "Device.IP.Diagnostics.DownloadDiagnostics.";
    const UPLOAD: &str = "Device.IP.Diagnostics.UploadDiagnostics.";
    let set_download = set_parameter_values(
        "download",
        &[
            (
                &format!("{DOWNLOAD}DownloadURL"),
                "string",
                &format!("{base}/file.bin"),
            ),
            (
                &format!("{DOWNLOAD}NumberOfConnections"),
                "unsignedInt",
                "2",
            ),
            (
                &format!("{DOWNLOAD}EnablePerConnectionResults"),
                "boolean",
                "true",
            ),
            (
                &format!("{DOWNLOAD}DiagnosticsState"),
                "string",
                "Requested",
            ),
        ],
    );
    let set_upload = set_parameter_values(
        "upload",
        &[
            (
                &format!("{UPLOAD}UploadURL"),
                "string",
                &format!("{base}/up.bin"),
            ),
            (&format!("{UPLOAD}TestFileLength"), "unsignedInt", "500000"),
            (&format!("{UPLOAD}DiagnosticsState"), "string", "Requested"),
        ],
    );
    let acs = MiniAcs::start(dm_tests::mini_acs::scripted(vec![
        vec![get_parameter_values(UPLOAD)],
        vec![get_parameter_values(DOWNLOAD), set_upload],
        vec![set_download],
    ]));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-FTP\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
             [lwm2m]\nenabled = false\n",
            acs.url(),
            dm_tests::files::free_tcp_port()
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );

    acs.post_with("<cwmp:SetParameterValuesResponse>");
    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let got = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| got[&format!("{DOWNLOAD}{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{got:?}");
    assert_eq!(at("TestBytesReceived"), "4000000", "{got:?}");
    for n in 1..=2 {
        let row = |name: &str| at(&format!("PerConnectionResult.{n}.{name}"));
        assert_eq!(row("TestBytesReceived"), "2000000");
        let times: Vec<i64> = [
            "TCPOpenRequestTime",
            "TCPOpenResponseTime",
            "ROMTime",
            "BOMTime",
            "EOMTime",
        ]
        .iter()
        .map(|name| micros(&row(name)))
        .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }
    assert_eq!(at("IPAddressUsed"), "127.0.0.1");

    acs.post_with("<cwmp:SetParameterValuesResponse>");
    acs.post_with("8 DIAGNOSTICS COMPLETE");
    let got = values(&acs.post_with("<cwmp:GetParameterValuesResponse>"));
    let at = |name: &str| got[&format!("{UPLOAD}{name}")].clone();
    assert_eq!(at("DiagnosticsState"), "Complete", "{got:?}");
    assert_eq!(at("TestBytesSent"), "500000");
    let times: Vec<i64> = ["ROMTime", "BOMTime", "EOMTime"]
        .iter()
        .map(|name| micros(&at(name)))
        .collect();
    assert!(times[0] <= times[1] && times[1] < times[2], "{times:?}");
    assert_eq!(
        std::fs::metadata(root.path().join("up.bin")).unwrap().len(),
        500_000
    );
}
