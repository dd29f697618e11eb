//! scripts/dmagent-launch: its options, its refusals, restarting a crashed
//! agent, and the shell scripts being shellcheck-clean.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn launch(args: &[&str], bin: &std::path::Path) -> Output {
    Command::new(root().join("scripts/dmagent-launch"))
        .args(args)
        .env("DMAGENT_BIN", bin)
        .env("DMAGENT_LAUNCH_MAX_BACKOFF", "1")
        .output()
        .unwrap()
}

/// A stand-in agent: records its arguments, crashes on the first run and
/// exits normally on the second.
fn fake_agent(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("fake-dmagent");
    dm_tests::files::executable(
        &path,
        &format!(
            "#!/bin/sh\ncase \" $* \" in *\" check-config \"*) exit 0;; esac\n\
             echo \"$* key=$DMAGENT_PSK_KEY cr=${{DMAGENT_CR_USERNAME:-}}:${{DMAGENT_CR_PASSWORD:-}}\" >> '{log}'\n\
             if [ -e '{seen}' ]; then exit 0; fi\ntouch '{seen}'\nexit 3\n",
            log = dir.join("runs").display(),
            seen = dir.join("seen").display()
        ),
    );
    path
}

#[test]
fn help_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_agent(dir.path());
    let help = launch(&["--help"], &bin);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--server-port PORT"));
    for (args, message) in [
        (&["--bogus"][..], "unknown option: --bogus"),
        (
            &["--server", "h", "--server-port", "abc"],
            "abc is not a port number",
        ),
        (
            &["--server", "h", "--server-port", "70000"],
            "70000 is not 1 to 65535",
        ),
        (&["--server-port", "5683"], "--server-port needs --server"),
        (&["--psk-id", "dev"], "--psk-id needs --psk-key"),
        (
            &["--cr-username", "acs"],
            "--cr-username needs --cr-password",
        ),
        (
            &["--cr-password", "pw"],
            "--cr-password needs --cr-username",
        ),
        (&["--server"], "--server needs a value"),
        (
            &["--config", "/nonexistent.toml"],
            "cannot read /nonexistent.toml",
        ),
    ] {
        let out = launch(args, &bin);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("runs").exists(), "nothing was started");
}

#[test]
fn a_crashed_agent_is_restarted_with_the_same_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_agent(dir.path());
    let out = launch(
        &[
            "--server",
            "127.0.0.1",
            "--psk-id",
            "dev",
            "--psk-key",
            "0011",
            "-e",
            "my-ig60",
            "--no-cwmp",
            "--state-dir",
            "/tmp/x",
            "--cr-username",
            "acs",
            "--cr-password",
            "cr-secret",
        ],
        &bin,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exited with status 3; restarting"));
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    // The keys by environment: they are not in the agent's argv.
    let expected = "--state-dir /tmp/x --lwm2m-server coaps://127.0.0.1:5684 --endpoint my-ig60 \
                    --no-cwmp run key=0011 cr=acs:cr-secret";
    assert_eq!(runs.lines().collect::<Vec<_>>(), [expected, expected]);
}

#[test]
fn a_bad_configuration_is_not_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[cwmp]\nacs_url = \"ftp://x/\"\n").unwrap();
    let out = launch(
        &["--config", config.to_str().unwrap()],
        std::path::Path::new(env!("CARGO_BIN_EXE_dmagent")),
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not restarting"));
}

/// A PATH with the tools the launcher uses and no dmagent (even on a
/// machine where one is installed).
fn tools_only(dir: &std::path::Path) -> PathBuf {
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for tool in [
        "dirname", "sed", "date", "sleep", "rm", "mkdir", "chmod", "mv", "cat",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let path = String::from_utf8(found.stdout).unwrap();
        std::os::unix::fs::symlink(path.trim(), tools.join(tool)).unwrap();
    }
    tools
}

/// Run from a source checkout (scripts/dmagent-launch, as the README
/// says) with no dmagent beside it or on PATH, the launcher runs
/// target/release/dmagent, and passes --platform on.
#[test]
fn from_a_checkout_the_launcher_runs_the_release_build() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    std::fs::create_dir_all(checkout.join("scripts")).unwrap();
    std::fs::create_dir_all(checkout.join("target/release")).unwrap();
    std::fs::copy(
        root().join("scripts/dmagent-launch"),
        checkout.join("scripts/dmagent-launch"),
    )
    .unwrap();
    std::fs::write(checkout.join("Cargo.toml"), "[workspace]\n").unwrap();
    let runs = dir.path().join("runs");
    dm_tests::files::executable(
        &checkout.join("target/release/dmagent"),
        &format!(
            "#!/bin/sh\ncase \" $* \" in *\" check-config \"*) exit 0;; esac\n\
             echo \"$*\" >> '{}'\nexit 0\n",
            runs.display()
        ),
    );
    let out = Command::new(checkout.join("scripts/dmagent-launch"))
        .args(["--platform", "memory", "--no-cwmp"])
        .env_remove("DMAGENT_BIN")
        .env("PATH", tools_only(dir.path()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "--platform memory --no-cwmp run\n"
    );
    // Anything else for --platform is refused before anything runs.
    let out = Command::new(checkout.join("scripts/dmagent-launch"))
        .args(["--platform", "fake"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// A dmagent that cannot be run (not there, not executable) is not
/// restarted forever: the launcher stops with the shell's status and says
/// why; with no dmagent to be found at all, it says where it looked.
#[test]
fn an_agent_that_cannot_run_is_not_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dmagent");
    let out = launch(&[], &missing);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot be run (status 127); not restarting"),
        "{stderr}"
    );
    assert!(!stderr.contains("restarting in"), "{stderr}");

    let lonely = dir.path().join("dmagent-launch");
    std::fs::copy(root().join("scripts/dmagent-launch"), &lonely).unwrap();
    let out = Command::new(&lonely)
        .env_remove("DMAGENT_BIN")
        .env("PATH", tools_only(dir.path()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no dmagent found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGHUP to the launcher (what procd and sysvinit send to reload) is
/// passed on to the agent, which goes on running: not a restart, and the
/// agent's own exit status is the one acted on.
#[test]
fn the_launcher_passes_sighup_on() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("said");
    dm_tests::files::fifo(&fifo);
    let bin = dir.path().join("fake-dmagent");
    dm_tests::files::executable(
        &bin,
        &format!(
            "#!/bin/sh\ncase \" $* \" in *\" check-config \"*) exit 0;; esac\n\
             exec 3>'{fifo}'\nn=0\n\
             trap 'n=$((n+1)); echo hup >&3; [ $n -lt 2 ] || exit 78' HUP\n\
             echo started >&3\nwhile :; do sleep 1 & wait $!; done\n",
            fifo = fifo.display()
        ),
    );
    let mut launcher = Command::new(root().join("scripts/dmagent-launch"))
        .env("DMAGENT_BIN", &bin)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines = std::io::BufReader::new(std::fs::File::open(fifo).unwrap()).lines();
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        said.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap()
    };
    assert_eq!(next(), "started");
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &launcher.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-HUP");
    assert_eq!(next(), "hup");
    // Still the same agent (no second "started"); the second HUP makes it
    // exit 78, and the launcher sees that status (not its own wait's 129).
    signal("-HUP");
    assert_eq!(next(), "hup");
    assert_eq!(launcher.wait().unwrap().code(), Some(78));
    assert!(said.try_recv().is_err(), "not restarted");
}

#[test]
fn the_shell_scripts_are_shellcheck_clean() {
    let root = root();
    let scripts = [
        "scripts/dmagent-launch",
        "scripts/install-deps.sh",
        "scripts/install-run-deps.sh",
        "scripts/build-deb.sh",
        "scripts/install-acsrs.sh",
        "scripts/install-py-peers.sh",
        "scripts/demo.sh",
        "scripts/test.sh",
        "scripts/fuzz.sh",
        "tests/peers/dbus-stack.sh",
        "tests/peers/dbus-mock.sh",
        ".ci/run",
    ];
    let out = Command::new("shellcheck")
        .args(scripts.iter().map(|s| root.join(s)))
        .output()
        .expect("shellcheck (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A stand-in agent of version `version`: answers check-config with the
/// state directory and --version with its version; `run` is `body`.
fn versioned_agent(path: &std::path::Path, version: &str, state: &std::path::Path, body: &str) {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\ncase \" $* \" in\n\
             *\" check-config \"*) echo 'state_dir = {state}'; exit 0;;\n\
             *\" --version \"*) echo 'dmagent {version}'; exit 0;;\nesac\n{body}\n",
            state = state.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

/// Self-update (issue 7): the agent exits with 75 after staging
/// update/dmagent.new; the launcher swaps it into STATE/bin and starts it.
/// A swapped-in agent that fails at once is rolled back.
#[test]
fn a_staged_update_is_swapped_in_and_a_failing_one_rolled_back() {
    for (v2_body, expect_v2_ok) in [
        ("echo v2 >> \"$RUNS\"; exit 0", true),
        ("echo v2 >> \"$RUNS\"; exit 3", false),
        // It refuses the configuration: rolled back too, not a dead device.
        ("echo v2 >> \"$RUNS\"; exit 78", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let runs = dir.path().join("runs");
        std::fs::create_dir_all(state.join("update")).unwrap();
        let staged_source = dir.path().join("v2");
        versioned_agent(&staged_source, "2.0", &state, v2_body);
        let v1 = dir.path().join("v1");
        // Version 1: stages version 2 and asks for the swap; the second
        // time it runs (after a rollback) it stops normally.
        versioned_agent(
            &v1,
            "1.0",
            &state,
            &format!(
                "echo v1 >> \"$RUNS\"\nif [ -e '{seen}' ]; then exit 0; fi\ntouch '{seen}'\n\
                 cp '{src}' '{staged}'\nexit 75",
                seen = dir.path().join("seen").display(),
                src = staged_source.display(),
                staged = state.join("update/dmagent.new").display()
            ),
        );
        let out = Command::new(root().join("scripts/dmagent-launch"))
            .args(["--no-cwmp", "--state-dir", state.to_str().unwrap()])
            .env("DMAGENT_BIN", &v1)
            .env("DMAGENT_LAUNCH_MAX_BACKOFF", "1")
            .env("RUNS", &runs)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("updated to dmagent 2.0"), "{stderr}");
        let ran = std::fs::read_to_string(&runs).unwrap();
        if expect_v2_ok {
            assert_eq!(ran.lines().collect::<Vec<_>>(), ["v1", "v2"]);
            assert!(state.join("bin/dmagent").is_file(), "v2 stays in place");
        } else {
            assert_eq!(ran.lines().collect::<Vec<_>>(), ["v1", "v2", "v1"]);
            assert!(stderr.contains("rolled back"), "{stderr}");
            assert!(!state.join("bin/dmagent").exists(), "v2 is gone");
        }
        assert!(!state.join("update/dmagent.new").exists());
    }
}
