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
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$* key=$DMAGENT_PSK_KEY\" >> '{log}'\n\
             if [ -e '{seen}' ]; then exit 0; fi\ntouch '{seen}'\nexit 3\n",
            log = dir.join("runs").display(),
            seen = dir.join("seen").display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
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
    // The key by environment: it is not in the agent's argv.
    let expected = "--state-dir /tmp/x --lwm2m-server coaps://127.0.0.1:5684 --endpoint my-ig60 \
                    --no-cwmp run key=0011";
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

#[test]
fn the_shell_scripts_are_shellcheck_clean() {
    let root = root();
    let scripts = [
        "scripts/dmagent-launch",
        "scripts/install-deps.sh",
        "scripts/install-acsrs.sh",
        "scripts/install-aiocoap.sh",
        "scripts/demo.sh",
        "scripts/test.sh",
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
