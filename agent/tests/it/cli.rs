//! The `dmagent` binary as a user runs it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};

fn dmagent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(args)
        .env_remove("DMAGENT_CONFIG")
        .output()
        .unwrap()
}

fn proc_value(file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn uptime() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split('.').next().unwrap().parse().unwrap()
}

fn field<'t>(dump: &'t str, path: &str) -> &'t str {
    let prefix = format!("{path} = ");
    dump.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{path} missing from dump:\n{dump}"))
        .split("  [")
        .next()
        .unwrap()
}

#[test]
fn dump_prints_the_hosts_real_values_by_default() {
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("dmagent.toml");
    std::fs::write(
        &config,
        "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\npassword = \"topsecret\"\n\
         [lwm2m]\nserver_uri = \"coaps://127.0.0.1:5684\"\npsk_identity = \"dev1\"\npsk_key = \"c0ffee\"\n",
    )
    .unwrap();
    let processes_now = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
            })
            .count()
    };
    let processes_before = processes_now();
    let before = uptime();
    let child = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.path().join("state").to_str().unwrap(),
            "--serial",
            "SN-TEST-1",
            "dump",
        ])
        .env_remove("DMAGENT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dump_pid = child.id();
    let out = child.wait_with_output().unwrap();
    let after = uptime();
    let processes_after = processes_now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();

    assert_eq!(field(&dump, "Device.DeviceInfo.SerialNumber"), "SN-TEST-1");
    assert_eq!(field(&dump, "/3/0/2"), "SN-TEST-1");
    let up: u64 = field(&dump, "Device.DeviceInfo.UpTime").parse().unwrap();
    assert!(
        (before..=after).contains(&up),
        "uptime {up} not in {before}..={after}"
    );
    let total = proc_value("/proc/meminfo", "MemTotal");
    assert_eq!(
        field(&dump, "Device.DeviceInfo.MemoryStatus.Total"),
        total.to_string()
    );
    assert_eq!(field(&dump, "/3/0/21"), total.to_string());
    let free: u64 = field(&dump, "/3/0/10").parse().unwrap();
    assert!(free > 0 && free <= total);
    // Current time within a minute of ours, in each protocol's form.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let lwm2m_time: i64 = field(&dump, "/3/0/13").parse().unwrap();
    assert!((lwm2m_time - now).abs() < 60);
    assert!(field(&dump, "Device.Time.CurrentLocalTime").ends_with('Z'));
    // Secrets never appear: not the ACS password, not the PSK (hex
    // c0ffee is base64 wP/u), not the Wi-Fi passphrase.
    assert!(!dump.contains("topsecret"));
    assert!(!dump.contains("wP/u") && !dump.contains("c0ffee"));
    assert!(!dump.contains("/0/0/5 ="));
    assert!(!dump.contains("/12/1/18"));

    // The default platform: this host's own network, nothing invented (the
    // in-memory platform's IMEI, address and Wi-Fi network are not there).
    assert!(!dump.contains("# platform: memory"), "{dump}");
    for invented in [
        "490154203237518",
        "127.0.0.2",
        "dmagent-demo",
        "Test Network",
    ] {
        assert!(!dump.contains(invented), "{invented} in\n{dump}");
    }
    // The addresses of the interface the default route leaves by, as `ip`
    // shows them, each under its family's table.
    let ip = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new("ip")
            .arg("-j")
            .args(args)
            .output()
            .expect("ip");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let routes = ip(&["route", "show", "default"]);
    if let Some(dev) = routes[0]["dev"].as_str() {
        let index = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex")).unwrap();
        let interface = format!("Device.IP.Interface.{}", index.trim());
        assert_eq!(field(&dump, &format!("{interface}.Name")), dev);
        let shown = ip(&["addr", "show", "dev", dev]);
        let mut checked = 0;
        for address in shown[0]["addr_info"].as_array().unwrap() {
            if address["scope"] != "global" {
                continue;
            }
            let local = address["local"].as_str().unwrap();
            let table = if address["family"] == "inet" {
                "IPv4Address"
            } else {
                "IPv6Address"
            };
            assert!(
                dump.lines()
                    .any(|l| l.starts_with(&format!("{interface}.{table}."))
                        && l.contains(&format!(".IPAddress = {local}  ["))),
                "{local} not under {table} in\n{dump}"
            );
            checked += 1;
        }
        assert!(checked > 0, "no global address on {dev}");
        // The link itself, under its kernel index, with the kernel's MAC.
        let mac = std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).unwrap();
        let port = format!("Device.Ethernet.Interface.{}.", index.trim());
        if std::path::Path::new(&format!("/sys/class/net/{dev}/device")).exists() {
            assert_eq!(field(&dump, &format!("{port}Name")), dev);
            assert_eq!(field(&dump, &format!("{port}MACAddress")), mac.trim());
            assert_eq!(field(&dump, &format!("{port}Upstream")), "true");
            let received: u64 = field(&dump, &format!("{port}Stats.BytesReceived"))
                .parse()
                .unwrap();
            let now: u64 =
                std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/rx_bytes"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
            assert!(received > 0 && received <= now, "{received} vs {now}");
        }
    }
    // The main routing table, as `ip` lists it.
    let routes = ip(&["-4", "route", "show", "table", "main"]);
    let routes = routes.as_array().cloned().unwrap_or_default();
    assert_eq!(
        field(
            &dump,
            "Device.Routing.Router.1.IPv4ForwardingNumberOfEntries"
        ),
        routes.len().to_string()
    );
    for route in &routes {
        if let Some(gateway) = route["gateway"].as_str() {
            assert!(
                dump.contains(&format!(".GatewayIPAddress = {gateway}  [")),
                "{route} not in\n{dump}"
            );
        }
        if let Some((destination, _)) = route["dst"].as_str().and_then(|d| d.split_once('/')) {
            assert!(
                dump.contains(&format!(".DestIPAddress = {destination}  [")),
                "{route} not in\n{dump}"
            );
        }
    }
    // The resolver's servers, in its order.
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(|s| s.trim().split('%').next().unwrap())
        .collect();
    for (n, server) in servers.iter().enumerate() {
        assert_eq!(
            field(
                &dump,
                &format!("Device.DNS.Client.Server.{}.DNSServer", n + 1)
            ),
            *server
        );
    }
    assert_eq!(
        field(&dump, "Device.DNS.Client.ServerNumberOfEntries"),
        servers.len().to_string()
    );
    // The processes: the dump's own among them, with its command line
    // and state; about as many as /proc lists now.
    let process = dump
        .lines()
        .find(|l| l.ends_with(&format!(".PID = {dump_pid}  [xsd:unsignedInt]")))
        .unwrap_or_else(|| panic!("the dump's own process {dump_pid} is not listed"));
    let instance = process
        .strip_suffix(&format!("PID = {dump_pid}  [xsd:unsignedInt]"))
        .unwrap();
    assert!(
        field(&dump, &format!("{instance}Command")).ends_with("--serial SN-TEST-1 dump"),
        "{}",
        field(&dump, &format!("{instance}Command"))
    );
    // Its main thread waits for the host-read threads meanwhile.
    assert!(
        ["Running", "Sleeping"].contains(&field(&dump, &format!("{instance}State"))),
        "{}",
        field(&dump, &format!("{instance}State"))
    );
    let size: u64 = field(&dump, &format!("{instance}Size")).parse().unwrap();
    assert!(size > 1000, "{size} KiB resident");
    let listed: usize = field(
        &dump,
        "Device.DeviceInfo.ProcessStatus.ProcessNumberOfEntries",
    )
    .parse()
    .unwrap();
    // Other tests start and stop processes meanwhile: within what /proc
    // listed just before and just after, give or take a few.
    let (low, high) = (
        processes_before.min(processes_after),
        processes_before.max(processes_after),
    );
    assert!(
        (low.saturating_sub(low / 4 + 5)..=high + high / 4 + 5).contains(&listed),
        "{listed} listed; /proc had {processes_before} before, {processes_after} after"
    );
    // One processor each as /proc/cpuinfo lists, where TR-181 names this
    // architecture.
    if let Some(arch) = match std::env::consts::ARCH {
        "x86_64" => Some("x86_64"),
        "aarch64" | "arm" => Some("arm"),
        _ => None,
    } {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let processors = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        assert_eq!(
            field(&dump, "Device.DeviceInfo.ProcessorNumberOfEntries"),
            processors.to_string()
        );
        assert_eq!(
            field(&dump, "Device.DeviceInfo.Processor.1.Architecture"),
            arch
        );
    }
    // Each neighbour the dump lists, of either family, has in the
    // kernel's table now (if it is still there) the hardware address the
    // dump gives. (A machine with an empty neighbour table checks nothing
    // here.)
    let neighbours = std::process::Command::new("ip")
        .arg("neigh")
        .output()
        .expect("ip");
    let neighbours = String::from_utf8_lossy(&neighbours.stdout);
    let hosts: usize = field(&dump, "Device.Hosts.HostNumberOfEntries")
        .parse()
        .unwrap();
    for n in 1..=hosts {
        let at = format!("Device.Hosts.Host.{n}.");
        let Some(address) = dump
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{at}IPAddress = ")))
            .map(|v| v.split("  [").next().unwrap())
        else {
            continue; // numbered past a neighbour that went
        };
        let mac = field(&dump, &format!("{at}PhysAddress"));
        if let Some(line) = neighbours
            .lines()
            .find(|l| l.split_whitespace().next() == Some(address))
        {
            assert!(
                line.to_ascii_lowercase().contains(mac),
                "{address}: {mac} vs {line}"
            );
        }
    }
    // The log's bounds: what one read (an Upload) carries at most, and
    // whether journald keeps it on disk.
    assert_eq!(
        field(&dump, "Device.DeviceInfo.VendorLogFile.1.MaximumSize"),
        "1048576"
    );
    // Persistent: journald's Storage= (what the platform reads of this
    // host's configuration), auto looking at /var/log/journal.
    let conf = std::fs::read_to_string("/etc/systemd/journald.conf").unwrap_or_default();
    let directory = std::path::Path::new("/var/log/journal").is_dir();
    let drop_ins = [
        "/usr/lib/systemd/journald.conf.d",
        "/run/systemd/journald.conf.d",
        "/etc/systemd/journald.conf.d",
    ]
    .iter()
    .any(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()));
    if !drop_ins && !std::path::Path::new("/usr/lib/systemd/journald.conf").exists() {
        assert_eq!(
            field(&dump, "Device.DeviceInfo.VendorLogFile.1.Persistent"),
            dm_platform::linux::journal_persistent([conf.as_str()].into_iter(), directory)
                .to_string()
        );
    }
    // What a Linux host answers, counted: an ordinary machine has a few
    // dozen processes, six parameters each, plus the rest of the tree.
    let parameters = dump.lines().filter(|l| l.starts_with("Device.")).count();
    eprintln!("dump: {parameters} TR-181 parameters, {listed} processes");
    if listed >= 60 {
        assert!(parameters >= 400, "{parameters} for {listed} processes");
    }
}

#[test]
fn a_bad_config_names_file_line_and_key_and_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dmagent.toml");
    std::fs::write(
        &path,
        "[device]\nserial_number = \"SN1\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:5683\"\nlifetime = 10\n",
    )
    .unwrap();
    for verb in ["check-config", "run", "dump"] {
        let out = dmagent(&["--config", path.to_str().unwrap(), verb]);
        assert_eq!(out.status.code(), Some(78), "{verb}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim(),
            format!(
                "dmagent: invalid configuration: {}:6: lwm2m.lifetime: must be at least 30 (seconds)",
                path.display()
            ),
            "{verb}"
        );
    }
}

/// One run lists every error of a file, in file order, each with its line
/// (a missing key at its table's header), an unknown key among them.
#[test]
fn check_config_lists_every_error_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dmagent.toml");
    std::fs::write(
        &path,
        "[device]\noui = \"xyz\"\ncolour = \"blue\"\n\n\
         [lwm2m]\nserver_uri = \"coaps://127.0.0.1:5684\"\nlifetime = 10\n\
         psk_identity = \"dev\"\n",
    )
    .unwrap();
    let out = dmagent(&["--config", path.to_str().unwrap(), "check-config"]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0], "dmagent: invalid configuration, 4 errors:",
        "{stderr}"
    );
    let at: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.trim().split(": ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        at,
        [
            "device.oui",
            "device.colour",
            "lwm2m.psk_key",
            "lwm2m.lifetime"
        ],
        "{stderr}"
    );
    let file = path.display().to_string();
    for (line, expected) in lines[1..].iter().zip([2, 3, 5, 7]) {
        assert!(
            line.trim().starts_with(&format!("{file}:{expected}: ")),
            "{line}"
        );
    }
}

/// Valid, but probably not meant: the in-memory platform and a program
/// that is not there are warned about.
#[test]
fn check_config_warns_about_the_memory_platform_and_a_missing_program() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dmagent.toml");
    std::fs::write(
        &path,
        "[platform]\nkind = \"memory\"\n\n[firmware]\ncommand = [\"/nonexistent/flash-it\"]\n",
    )
    .unwrap();
    let out = dmagent(&["--config", path.to_str().unwrap(), "check-config"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("warning: platform: \"memory\""), "{stdout}");
    assert!(
        stdout.contains(
            "warning: firmware.command: \"/nonexistent/flash-it\" is not an executable file"
        ),
        "{stdout}"
    );
}

#[test]
fn check_config_accepts_the_embedded_default() {
    let out = dmagent(&["check-config"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("configuration is valid"));
    // Valid, but connection requests without credentials are open to
    // anyone who reaches the port: said so.
    assert!(
        stdout.contains("warning: cwmp: connection requests are unprotected"),
        "{stdout}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--cr-username", "acs", "check-config"])
        .env_remove("DMAGENT_CONFIG")
        .env("DMAGENT_CR_PASSWORD", "cr-secret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("warning"), "{stdout}");
}

#[test]
fn run_stops_cleanly_on_sigterm_and_keeps_its_state_directory_to_itself() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--state-dir", dir, "--log-format", "json", "run"])
        .env_remove("DMAGENT_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait for the readiness line, not a fixed time.
    let started = log
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("dmagent started"))
        .expect("agent reports start");
    assert!(started.contains("\"first_start\":true"), "{started}");
    assert!(state.path().join("state.json").exists());

    let second = dmagent(&["--state-dir", dir, "run"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another dmagent holds this state directory")
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert!(log.any(|l| l.unwrap().contains("dmagent stopping")));

    // The next start finds its state.
    let mut again = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--state-dir", dir, "--log-format", "json", "run"])
        .env_remove("DMAGENT_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(again.stderr.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.contains("dmagent started"))
        .unwrap();
    assert!(line.contains("\"first_start\":false"), "{line}");
    again.kill().unwrap();
    again.wait().unwrap();
}

/// Type=notify: READY=1 once the agent is up, then WATCHDOG=1 at half the
/// watchdog interval, on the socket systemd names.
#[test]
fn the_agent_tells_systemd_it_is_ready_and_alive() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(&config, "[device]\nserial_number = \"SN-NOTIFY\"\n").unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("run")
        .env_remove("DMAGENT_CONFIG")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        // No control bus here: the agent runs on without it.
        .env("DMAGENT_BUS", "session")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buffer = [0u8; 64];
    // A signal to this process (a sibling test's child ending) may cut a
    // recv short: EINTR is tried again, a timeout is not.
    let recv = |buffer: &mut [u8]| loop {
        match socket.recv(buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let n = recv(&mut buffer).expect("a notification");
        messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    assert_eq!(messages, ["READY=1", "WATCHDOG=1"]);
    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(agent.wait().unwrap().success());
    let n = recv(&mut buffer).expect("STOPPING=1");
    let last = String::from_utf8_lossy(&buffer[..n]).into_owned();
    // Watchdog pings may come before it.
    assert!(last == "STOPPING=1" || last == "WATCHDOG=1", "{last}");
}

/// The shipped unit and bus policy are valid for systemd and D-Bus.
#[test]
fn the_service_unit_and_bus_policy_are_valid() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root.join("dist/dmagent.service"))
        .unwrap()
        .replace(
            "/usr/bin/dmagent-launch",
            &root.join("scripts/dmagent-launch").display().to_string(),
        )
        .replace("/usr/bin/dmagent", env!("CARGO_BIN_EXE_dmagent"));
    let path = dir.path().join("dmagent.service");
    std::fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/install-deps.sh installs systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    let policy = Command::new("xmllint")
        .arg("--noout")
        .arg(root.join("dist/org.dmagent.Agent1.conf"))
        .status()
        .unwrap();
    assert!(policy.success());
}

/// A system bus address with no daemon behind it: the default platform
/// says so and serves the kernel's network, rather than retry the dead
/// bus every few seconds.
#[test]
fn a_dead_system_bus_leaves_the_kernels_network() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--state-dir"])
        .arg(state.path().join("state"))
        .args(["--log-level", "info", "dump", "--view", "tr181"])
        .env_remove("DMAGENT_CONFIG")
        .env_remove("DMAGENT_PLATFORM")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("no system bus answers"), "{log}");
    let dump = String::from_utf8(out.stdout).unwrap();
    // The kernel's routes are served (this machine has at least its
    // loopback-free routes, or none: the count is there either way).
    assert!(
        dump.contains("Device.Routing.Router.1.IPv4ForwardingNumberOfEntries = "),
        "{dump}"
    );
}
