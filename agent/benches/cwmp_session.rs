//! Agent CPU time and peak RSS for one CWMP session against the test ACS:
//! Inform → GetParameterValues of 1,000 parameters → 204 (the CWMP issue's
//! benchmark; repeated names are answered once, so the response holds
//! the distinct ones), and Inform → GetParameterValues of `Device.` (the whole
//! tree of the default platform on this machine) → 204, with its
//! parameter count. `cargo bench -p dmagent --bench cwmp_session`.
//!
//! Run as root where NetworkManager and oFono are installed
//! (`scripts/install-deps.sh`), it measures the bare session and the GPV
//! of `Device.` again inside the real-daemon stack's network namespace
//! (`tests/peers/dbus-stack.sh`), on its system bus: the agent's whole
//! tree with NetworkManager and oFono behind it, as a gateway has them.
//!
//! The agent binary runs as a child: it starts, holds its boot session
//! with dm_tests' ACS, and is stopped with SIGTERM once it logs the
//! session's end. Its CPU time (user + system) and peak RSS come from
//! wait4's rusage, exact to the microsecond and KiB, not sampled. A
//! baseline run whose ACS ends the session right after the Inform (same
//! start-up and shutdown) is subtracted to give the GetParameterValues'
//! own cost. The default tree holds about 70 parameters, so the 1,000
//! names cycle through them; every name is resolved, read and encoded as
//! a distinct one would be.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use dm_tests::mini_acs::MiniAcs;

const NAMES: usize = 1_000;
const RUNS: usize = 5;

/// The tree's TR-181 parameter names, from `dmagent dump`.
fn parameter_names(config: &std::path::Path, state: &std::path::Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--config", config.to_str().unwrap(), "--state-dir"])
        .arg(state)
        .args(["dump", "--view", "tr181"])
        .env_remove("DMAGENT_CONFIG")
        .output()
        .expect("dmagent dump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("Device."))
        .map(str::to_owned)
        .collect()
}

/// Where the agent runs.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// This host, with no system bus: the kernel's network.
    Host,
    /// The real-daemon stack's namespace, on its system bus.
    Stack { netns: &'a str, bus: &'a str },
}

/// One agent run: (CPU µs, peak RSS KiB, response bytes seen, parameters
/// in it).
// The child is reaped by wait4 below (std's wait reports no rusage).
#[allow(clippy::zombie_processes)]
fn run(names: Option<&[String]>, place: Place<'_>) -> (u64, u64, usize, usize) {
    let request = names.map(|names| {
        let list: String = names
            .iter()
            .map(|n| format!("<string>{n}</string>"))
            .collect();
        format!(
            "<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType=\"xsd:string[{}]\" \
             xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\">{list}</ParameterNames>\
             </cwmp:GetParameterValues>",
            names.len()
        )
    });
    let mut asked = false;
    let script = Box::new(move |body: &str| {
        if body.is_empty() && !asked {
            asked = true;
            return request.clone();
        }
        None
    });
    // In the namespace, the ACS's listening thread is started from a
    // thread that entered it.
    let acs = match place {
        Place::Host => MiniAcs::start(script),
        Place::Stack { netns, .. } => {
            dm_tests::netns::run_in(netns, move || MiniAcs::start(script))
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    let cr_port = dm_tests::files::free_tcp_port();
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-BENCH\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {cr_port}\nconnection_request_bind = \"127.0.0.1\"\n\n\
             [lwm2m]\nenabled = false\n",
            acs.url()
        ),
    )
    .unwrap();
    // `ip netns exec` execs the agent: the pid waited for is the agent's.
    let mut command = match place {
        Place::Host => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_dmagent"));
            c.env("DMAGENT_BUS", "session")
                .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent");
            c
        }
        Place::Stack { netns, bus } => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns])
                .arg(env!("CARGO_BIN_EXE_dmagent"))
                .env("DMAGENT_BUS", "system")
                .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
            c
        }
    };
    let mut child = command
        .args(["--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("run")
        .env_remove("DMAGENT_CONFIG")
        .env_remove("DMAGENT_PLATFORM")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = BufReader::new(child.stderr.take().unwrap());
    let mut lines = log.lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("CWMP session ended") {
            break;
        }
    }
    let (response, count) = match names {
        Some(_) => {
            let answer = acs.post_with("<cwmp:GetParameterValuesResponse>");
            // Each distinct name once (a name repeated is answered once).
            let count = answer.matches("<ParameterValueStruct>").count();
            assert!(count > 0, "{answer}");
            (answer.len(), count)
        }
        None => (0, 0),
    };
    let pid = child.id() as i32;
    std::thread::spawn(move || for _ in lines {});
    // The child is reaped here with its resource use, not through
    // std's Child::wait, which does not report it.
    #[allow(unsafe_code)]
    // SAFETY: pid is our own child, not yet reaped; rusage and status are
    // plain out-parameters owned by this frame.
    let usage = unsafe {
        libc::kill(pid, libc::SIGTERM);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (
        micros(usage.ru_utime) + micros(usage.ru_stime),
        usage.ru_maxrss as u64,
        response,
        count,
    )
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        "[cwmp]\nacs_url = \"http://127.0.0.1:9/\"\n\n[lwm2m]\nenabled = false\n",
    )
    .unwrap();
    let distinct = parameter_names(&config, &dir.path().join("state"));
    assert!(!distinct.is_empty(), "dmagent dump listed no parameters");
    let names: Vec<String> = distinct.iter().cycle().take(NAMES).cloned().collect();

    let whole = ["Device.".to_owned()];
    let mut base = (Vec::new(), Vec::new());
    let mut gpv = (Vec::new(), Vec::new());
    let mut tree = (Vec::new(), Vec::new());
    let mut bytes = 0;
    let mut tree_bytes = 0;
    let mut tree_count = 0;
    for _ in 0..RUNS {
        let (cpu, rss, _, _) = run(None, Place::Host);
        base.0.push(cpu);
        base.1.push(rss);
        let (cpu, rss, response, _) = run(Some(&names), Place::Host);
        gpv.0.push(cpu);
        gpv.1.push(rss);
        bytes = response;
        let (cpu, rss, response, count) = run(Some(&whole), Place::Host);
        tree.0.push(cpu);
        tree.1.push(rss);
        tree_bytes = response;
        tree_count = count;
    }
    let (tree_cpu, tree_rss) = (median(tree.0), median(tree.1));
    let (base_cpu, base_rss) = (median(base.0), median(base.1));
    let (gpv_cpu, gpv_rss) = (median(gpv.0), median(gpv.1));
    println!(
        "CWMP session, agent process (median of {RUNS} runs; {} distinct parameters named {NAMES} times in all):",
        distinct.len()
    );
    println!(
        "  Inform → 204:                           CPU {:7.1} ms   peak RSS {:6} KiB",
        base_cpu as f64 / 1e3,
        base_rss
    );
    println!(
        "  Inform → GPV of {NAMES} ({bytes} B) → 204: CPU {:7.1} ms   peak RSS {:6} KiB",
        gpv_cpu as f64 / 1e3,
        gpv_rss
    );
    println!(
        "  the GetParameterValues itself:          CPU {:7.1} ms   RSS growth {:6} KiB   ({:.2}× the bare session)",
        gpv_cpu.saturating_sub(base_cpu) as f64 / 1e3,
        gpv_rss.saturating_sub(base_rss),
        gpv_cpu as f64 / base_cpu.max(1) as f64
    );
    println!(
        "  Inform → GPV of Device. ({tree_count} parameters, {tree_bytes} B) → 204: CPU {:7.1} ms   peak RSS {:6} KiB   ({:.2}× the bare session)",
        tree_cpu as f64 / 1e3,
        tree_rss,
        tree_cpu as f64 / base_cpu.max(1) as f64
    );
    in_the_stack(&whole);
}

/// The bare session and the GPV of `Device.` in the real-daemon stack's
/// namespace, when this machine can run it.
fn in_the_stack(whole: &[String]) {
    let missing = ["NetworkManager", "ofonod", "dbus-daemon"]
        .into_iter()
        .find(|p| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {p} || test -x /usr/sbin/{p}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root || missing.is_some() {
        println!(
            "  (the namespace stack needs root and {}: not measured)",
            missing.unwrap_or("root")
        );
        return;
    }
    let mut stack = dm_tests::dbus_stack::Stack::start();
    // A default route, as a gateway's uplink has it.
    for command in [
        "nm connection modify wired ipv4.gateway 198.51.100.254",
        "nm connection up wired",
    ] {
        assert_eq!(stack.command(command), "ok", "{command}");
    }
    let place = Place::Stack {
        netns: &stack.netns.clone(),
        bus: &stack.bus.clone(),
    };
    let (mut base, mut tree) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    let (mut tree_bytes, mut tree_count) = (0, 0);
    for _ in 0..RUNS {
        let (cpu, rss, _, _) = run(None, place);
        base.0.push(cpu);
        base.1.push(rss);
        let (cpu, rss, response, count) = run(Some(whole), place);
        tree.0.push(cpu);
        tree.1.push(rss);
        tree_bytes = response;
        tree_count = count;
    }
    let (base_cpu, base_rss) = (median(base.0), median(base.1));
    let (tree_cpu, tree_rss) = (median(tree.0), median(tree.1));
    println!(
        "In the namespace stack (NetworkManager and oFono on its system bus; median of {RUNS} runs):"
    );
    println!(
        "  Inform → 204:                           CPU {:7.1} ms   peak RSS {:6} KiB",
        base_cpu as f64 / 1e3,
        base_rss
    );
    println!(
        "  Inform → GPV of Device. ({tree_count} parameters, {tree_bytes} B) → 204: CPU {:7.1} ms   peak RSS {:6} KiB   ({:.2}× the bare session)",
        tree_cpu as f64 / 1e3,
        tree_rss,
        tree_cpu as f64 / base_cpu.max(1) as f64
    );
}
