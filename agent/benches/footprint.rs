//! Size, memory and idle wake-ups per feature set (the footprint issue):
//! `cargo bench -p dmagent --bench footprint`.
//!
//! For each feature set it builds the release binary (profile `release`:
//! stripped, LTO, `opt-level = "z"`) into `target/footprint`, and prints:
//! - its size and its size compressed with `xz -9e` (what a flash image
//!   stores);
//! - idle VmRSS and RssAnon of the running agent, registered to the test
//!   LwM2M server (`tests/peers/lwm2m_server.py idle`, aiocoap) and/or
//!   with its boot session done at the test ACS (`dm_tests::mini_acs`),
//!   whichever protocols the set carries, on the kernel-only platform;
//! - its wake-ups while idle: scheduling events (the third field of each
//!   thread's `/proc/PID/task/TID/schedstat`) and CPU time over
//!   [`IDLE`], counted from [`SETTLE`] after registration.
//!
//! `FOOTPRINT_SETS=default,lwm2m-dtls` limits the sets; `FOOTPRINT_IDLE`
//! sets the idle window in seconds; `FOOTPRINT_LOG=debug` runs the agent
//! at that log level and echoes its log (what woke it);
//! `FOOTPRINT_SMAPS=1` prints where the anonymous memory is (per mapping
//! of `/proc/PID/smaps`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dm_tests::mini_acs::MiniAcs;

/// Time after registration before counting: start-up's blocking threads
/// (tokio keeps an idle one 10 s) have gone.
const SETTLE: Duration = Duration::from_secs(15);
/// The idle window counted.
const IDLE: Duration = Duration::from_secs(60);

/// A feature set: its name, its `--features` (`None`: the default), and
/// which protocols it runs against.
struct Set {
    name: &'static str,
    features: Option<&'static str>,
    cwmp: bool,
    lwm2m: bool,
}

const SETS: [Set; 4] = [
    Set {
        name: "default",
        features: None,
        cwmp: true,
        lwm2m: true,
    },
    Set {
        name: "lwm2m-dtls",
        features: Some("lwm2m,dtls"),
        cwmp: false,
        lwm2m: true,
    },
    Set {
        name: "cwmp-https",
        features: Some("cwmp,https"),
        cwmp: true,
        lwm2m: false,
    },
    Set {
        name: "lwm2m",
        features: Some("lwm2m"),
        cwmp: false,
        lwm2m: true,
    },
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds `set` and returns its binary's path (a copy per set).
fn build(set: &Set) -> PathBuf {
    let target = workspace().join("target/footprint");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace())
        .args(["build", "--release", "-p", "dmagent", "--target-dir"])
        .arg(&target);
    if let Some(features) = set.features {
        cargo.args(["--no-default-features", "--features", features]);
    }
    let status = cargo.status().expect("cargo");
    assert!(status.success(), "building {}", set.name);
    let copy = target.join(format!("dmagent-{}", set.name));
    std::fs::copy(target.join("release/dmagent"), &copy).unwrap();
    copy
}

fn xz_size(binary: &Path) -> u64 {
    let out = Command::new("xz")
        .args(["-9e", "-c"])
        .arg(binary)
        .output()
        .expect("xz (scripts/install-deps.sh installs xz-utils)");
    assert!(out.status.success());
    out.stdout.len() as u64
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// (CPU ns, scheduling events) of every thread of `pid`, by thread id.
fn schedstat(pid: u32) -> std::collections::HashMap<String, (u64, u64)> {
    let mut threads = std::collections::HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let entry = entry.unwrap();
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let fields: Vec<u64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [cpu, _, events] = fields[..] {
            threads.insert(
                entry.file_name().to_string_lossy().into_owned(),
                (cpu, events),
            );
        }
    }
    threads
}

/// Prints the anonymous memory of `pid` per mapping (file mappings by
/// name and permissions, `[heap]`, `[stack]`, unnamed ones together).
fn print_anonymous(set: &Set, pid: u32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut by_mapping: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let name = fields.get(5).copied().unwrap_or("(anonymous)");
            current = format!("{name} {}", fields.get(1).copied().unwrap_or(""));
        } else if let ["Anonymous:", kb, ..] = fields[..] {
            let kb: u64 = kb.parse().unwrap_or(0);
            match by_mapping.iter_mut().find(|(name, _)| *name == current) {
                Some((_, sum)) => *sum += kb,
                None => by_mapping.push((current.clone(), kb)),
            }
        }
    }
    by_mapping.sort_by_key(|&(_, kb)| std::cmp::Reverse(kb));
    eprintln!("{}: anonymous memory by mapping", set.name);
    for (name, kb) in by_mapping.iter().filter(|(_, kb)| *kb > 0) {
        eprintln!("{kb:>8} kB  {name}");
    }
}

struct Idle {
    rss_kb: u64,
    anon_kb: u64,
    threads: usize,
    cpu_ms: f64,
    events: u64,
}

/// Kills the child when dropped (a failed assertion leaves no agent or
/// server behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `binary` against the peers `set` needs and measures it idle for
/// `window`.
fn idle(set: &Set, binary: &Path, window: Duration) -> Idle {
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("[device]\nserial_number = \"SN-FOOT\"\n\n");
    let acs = set.cwmp.then(|| MiniAcs::start(Box::new(|_: &str| None)));
    match &acs {
        Some(acs) => {
            config += &format!(
                "[cwmp]\nacs_url = \"{}\"\nconnection_request_port = {}\n\
             connection_request_bind = \"127.0.0.1\"\n\n",
                acs.url(),
                dm_tests::files::free_tcp_port()
            )
        }
        None => config += "[cwmp]\nenabled = false\n\n",
    }
    let server = set.lwm2m.then(|| {
        let port = dm_tests::files::free_udp_port();
        let mut child = Guard(
            dm_tests::py_peers::lwm2m_server()
                .args([port.to_string(), "idle".into()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let events = dm_tests::py_peers::json_lines(&mut child.0);
        assert_eq!(dm_tests::py_peers::next_json(&events)["event"], "listening");
        (child, events, port)
    });
    match &server {
        Some((_, _, port)) => {
            config +=
                &format!("[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nlifetime = 300\n")
        }
        None => config += "[lwm2m]\nenabled = false\n",
    }
    let file = dir.path().join("dmagent.toml");
    std::fs::write(&file, config).unwrap();
    let log = std::env::var("FOOTPRINT_LOG").ok();
    let mut agent = Guard(
        Command::new(binary)
            .args(["--log-level", log.as_deref().unwrap_or("info")])
            .args(["--config", file.to_str().unwrap(), "--platform", "linux"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            // No control API on a bus that is not there (the default set
            // would serve it; it is not what is measured here).
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = agent.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    if set.cwmp {
        // The boot session, done.
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the agent's boot session ends");
            if line.contains("CWMP session ended") {
                break;
            }
        }
    }
    if let Some((_, events, _)) = &server {
        loop {
            if dm_tests::py_peers::next_json(events)["event"] == "register" {
                break;
            }
        }
    }
    std::thread::spawn(move || {
        for line in lines {
            if log.is_some() {
                eprintln!("agent: {line}");
            }
        }
    });
    std::thread::sleep(SETTLE);
    let pid = agent.0.id();
    let before = schedstat(pid);
    std::thread::sleep(window);
    let after = schedstat(pid);
    let (mut cpu, mut events) = (0u64, 0u64);
    for (thread, (c, e)) in &after {
        let (c0, e0) = before.get(thread).copied().unwrap_or((0, 0));
        cpu += c - c0;
        events += e - e0;
    }
    if std::env::var_os("FOOTPRINT_SMAPS").is_some() {
        print_anonymous(set, pid);
    }
    let measured = Idle {
        rss_kb: status_kb(pid, "VmRSS"),
        anon_kb: status_kb(pid, "RssAnon"),
        threads: after.len(),
        cpu_ms: cpu as f64 / 1e6,
        events,
    };
    drop(agent);
    drop(server);
    drop(acs);
    measured
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let wanted: Option<Vec<String>> = std::env::var("FOOTPRINT_SETS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let idle_window = std::env::var("FOOTPRINT_IDLE")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(IDLE, Duration::from_secs);
    let sets: Vec<&Set> = SETS
        .iter()
        .filter(|s| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|n| n == s.name))
        })
        .collect();
    let mut rows = Vec::new();
    for set in &sets {
        let binary = build(set);
        let size = std::fs::metadata(&binary).unwrap().len();
        let xz = xz_size(&binary);
        let version = Command::new(&binary).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        eprintln!("{}: {version}", set.name);
        let idle = idle(set, &binary, idle_window);
        rows.push((set, size, xz, idle));
    }
    println!(
        "\nfootprint (release profile; idle on the kernel-only platform, {} s after {} s settling)",
        idle_window.as_secs(),
        SETTLE.as_secs()
    );
    println!(
        "{:<11} {:>10} {:>9} {:>9} {:>10} {:>8} {:>10} {:>9}  registered to",
        "set", "stripped", "MiB", "xz", "VmRSS kB", "Anon kB", "wake-ups", "CPU ms"
    );
    for (set, size, xz, idle) in rows {
        let per_minute = idle.events as f64 * 60.0 / idle_window.as_secs_f64();
        println!(
            "{:<11} {:>10} {:>9.2} {:>9} {:>10} {:>8} {:>6.1}/min {:>9.2}  {}{}{} ({} threads)",
            set.name,
            size,
            size as f64 / (1024.0 * 1024.0),
            xz,
            idle.rss_kb,
            idle.anon_kb,
            per_minute,
            idle.cpu_ms,
            if set.cwmp { "ACS" } else { "" },
            if set.cwmp && set.lwm2m { " + " } else { "" },
            if set.lwm2m { "LwM2M server" } else { "" },
            idle.threads,
        );
    }
}
