//! The Debian package scripts/build-deb.sh makes (scripts/test.sh builds
//! it before the tests): installed into a throw-away root with dpkg-deb,
//! every file is there, the unit passes systemd-analyze, the sysusers and
//! tmpfiles entries apply, and the installed agent and launcher run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn package() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let name = format!(
        "dmagent_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        String::from_utf8(
            Command::new("dpkg")
                .arg("--print-architecture")
                .output()
                .expect("dpkg")
                .stdout
        )
        .unwrap()
        .trim()
    );
    let deb = dir.join(name);
    assert!(
        deb.is_file(),
        "{} is missing: run scripts/build-deb.sh (scripts/test.sh does, before the tests)",
        deb.display()
    );
    deb
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_debian_package_installs_what_a_device_needs() {
    let deb = package();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root));

    for file in [
        "usr/bin/dmagent",
        "usr/bin/dmagent-launch",
        "etc/dmagent.toml",
        "usr/lib/systemd/system/dmagent.service",
        "usr/lib/sysusers.d/dmagent.conf",
        "usr/lib/tmpfiles.d/dmagent.conf",
        "usr/share/dbus-1/system.d/org.dmagent.Agent1.conf",
        "usr/share/man/man1/dmagent.1.gz",
        "usr/share/man/man1/dmagent-run.1.gz",
        "usr/share/man/man1/dmagent-check-config.1.gz",
        "usr/share/bash-completion/completions/dmagent",
        "usr/share/zsh/vendor-completions/_dmagent",
        "usr/share/doc/dmagent/copyright",
        "usr/share/doc/dmagent/README.md",
        "usr/share/doc/dmagent/examples/programs.conf",
    ] {
        assert!(root.join(file).is_file(), "{file} is not in the package");
    }
    // The configuration is a conffile (an upgrade keeps the operator's).
    let control = root.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/dmagent.toml\n"
    );
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    assert!(fields.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))));
    assert!(fields.contains("Depends: libc6 (>= "), "{fields}");

    // The release link (agent/build.rs): no unwind tables and relative
    // relocations packed, unless the build was asked otherwise; packed
    // ones need a glibc whose loader reads them, which Depends says.
    let headers = run(Command::new("objdump")
        .args(["-h", "-p"])
        .arg(root.join("usr/bin/dmagent")));
    if std::env::var("DMAGENT_UNWIND_TABLES").as_deref() != Ok("1") {
        assert!(!headers.contains(".eh_frame"), "{headers}");
    }
    let packed = headers.contains(".relr.dyn");
    if std::env::var("DMAGENT_RELR").as_deref() != Ok("0") {
        assert!(packed, "{headers}");
    }
    assert_eq!(packed, headers.contains("GLIBC_ABI_DT_RELR"), "{headers}");
    if packed {
        let glibc = fields
            .split("Depends: libc6 (>= ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap();
        let version: Vec<u32> = glibc.split('.').map(|n| n.parse().unwrap()).collect();
        assert!(version >= vec![2, 36], "{fields}");
    }

    // The installed agent runs, and accepts the installed configuration.
    let agent = root.join("usr/bin/dmagent");
    // The package is the default build: every feature.
    assert_eq!(
        run(Command::new(&agent).arg("--version")),
        format!(
            "dmagent {} (features: cwmp, lwm2m, usp, dtls, https, ftp, dbus)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let checked = run(Command::new(&agent)
        .arg("--config")
        .arg(root.join("etc/dmagent.toml"))
        .arg("check-config")
        .env_remove("DMAGENT_CONFIG"));
    assert!(checked.starts_with("configuration is valid"), "{checked}");
    // The launcher finds the agent beside it (not on PATH): it runs it,
    // and stops when the agent refuses its configuration.
    let bad = root.join("bad.toml");
    std::fs::write(&bad, "[cwmp]\nacs_url = \"ftp://x/\"\n").unwrap();
    let launched = Command::new(root.join("usr/bin/dmagent-launch"))
        .arg("--config")
        .arg(&bad)
        .env_remove("DMAGENT_BIN")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&launched.stderr);
    assert_eq!(launched.status.code(), Some(78), "{said}");
    assert!(said.contains("dmagent: invalid configuration"), "{said}");
    // Modes: programs executable, the configuration (passwords, keys)
    // root's only.
    let mode = |file: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(root.join(file)).unwrap().permissions(),
        ) & 0o7777
    };
    assert_eq!(mode("usr/bin/dmagent"), 0o755);
    assert_eq!(mode("usr/bin/dmagent-launch"), 0o755);
    assert_eq!(mode("etc/dmagent.toml"), 0o600);
    assert_eq!(mode("usr/lib/systemd/system/dmagent.service"), 0o644);

    // The unit, its commands pointed at the throw-away root, passes
    // systemd-analyze; it runs the agent through the launcher.
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/dmagent.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/dmagent-launch ") && unit.contains("NotifyAccess=all"),
        "{unit}"
    );
    let check = root.join("check");
    std::fs::create_dir(&check).unwrap();
    std::fs::write(
        check.join("dmagent.service"),
        unit.replace("/usr/bin/", &format!("{}/usr/bin/", root.display())),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(check.join("dmagent.service"))
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );

    // sysusers makes the group the bus policy names; tmpfiles the state
    // directory, root's only.
    let sysusers = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(sysusers.status.success());
    // systemd 252 says what it would do on stderr, later ones on stdout.
    let users = String::from_utf8_lossy(&sysusers.stdout).into_owned()
        + &String::from_utf8_lossy(&sysusers.stderr);
    assert!(users.contains("Creating group 'dmagent'"), "{users}");
    run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create")
        .arg(root.join("usr/lib/tmpfiles.d/dmagent.conf")));
    let state = std::fs::metadata(root.join("var/lib/dmagent")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&state.permissions()) & 0o777,
        0o700
    );
    let policy =
        std::fs::read_to_string(root.join("usr/share/dbus-1/system.d/org.dmagent.Agent1.conf"))
            .unwrap();
    assert!(policy.contains("<policy group=\"dmagent\">"));

    // The man page is the agent's own help, rendered.
    let page = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/dmagent.1.gz")));
    assert!(
        page.contains(".TH dmagent 1"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(
        page.contains("\\-\\-state\\-dir"),
        "no --state-dir in the man page"
    );
}
