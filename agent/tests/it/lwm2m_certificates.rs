//! LwM2M Security Mode 2 (certificates) against OpenSSL's s_server: the
//! agent registers over TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 with its own
//! certificate, checking the server's chain as the Certificate Usage
//! (/0/x/15) says; a server it must not trust is refused with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dm_tests::dtls::{Output, certificate_server};
use dm_tests::pki::Pki;
use dm_tests::process::Guard;

/// s_server on a free port of 127.0.0.1 with `chain` and `key`, checking
/// client certificates against the PKI's root.
fn server(pki: &Pki, chain: &Path, key: &Path) -> (Guard, Output, u16) {
    let port = dm_tests::files::free_udp_port();
    let mut server = certificate_server(
        &format!("127.0.0.1:{port}"),
        chain,
        key,
        &pki.root,
        Stdio::piped(),
    );
    let output = Output::of(&mut server);
    output.wait_for("ACCEPT");
    (server, output, port)
}

/// The agent's configuration: certificate mode with the PKI's client
/// certificate, `server_certificate` as /0/x/4 with `usage`, and
/// `anchors` (PEM files) as `ca_file` when there are any.
fn config(
    dir: &Path,
    port: u16,
    pki: &Pki,
    server_certificate: &Path,
    usage: u8,
    anchors: &[&Path],
) -> PathBuf {
    let mut text = format!(
        "[device]\nserial_number = \"SN-CERT\"\n\n[lwm2m]\n\
         server_uri = \"coaps://127.0.0.1:{port}\"\nendpoint = \"dmagent-cert\"\n\
         security = \"certificate\"\ncertificate = {:?}\nprivate_key = {:?}\n\
         server_certificate = {:?}\ncertificate_usage = {usage}\n",
        pki.client, pki.client_key, server_certificate
    );
    if !anchors.is_empty() {
        let ca_file = dir.join("anchors.pem");
        let pem: String = anchors
            .iter()
            .map(|a| std::fs::read_to_string(a).unwrap())
            .collect();
        std::fs::write(&ca_file, pem).unwrap();
        text.push_str(&format!("ca_file = {ca_file:?}\n"));
    }
    let config = dir.join("dmagent.toml");
    std::fs::write(&config, text).unwrap();
    config
}

fn agent(config: &Path, state: &Path, stderr: Stdio) -> Guard {
    Guard(
        dm_tests::agent::command(env!("CARGO_BIN_EXE_dmagent"), config, state)
            .env("DMAGENT_PLATFORM", "memory")
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// The handshake used the mandatory certificate suite, s_server checked
/// our certificate against its CA (-Verify with -verify_return_error
/// ends the handshake otherwise), and the Register came through.
fn registered(output: &Output) {
    let cipher = output.wait_for("CIPHER is");
    assert!(cipher.contains("ECDHE-ECDSA-AES128-CCM8"), "{cipher}");
    let register = output.wait_for("ep=dmagent-cert");
    // The decrypted Register, after the handshake's summary.
    let decrypted = &register[register.find("CIPHER is").unwrap()..];
    assert!(
        decrypted.contains("rd") && decrypted.contains("ep=dmagent-cert"),
        "{register}"
    );
}

/// Certificate usage 2 (trust anchor assertion): /0/x/4 is the root; the
/// server presents its certificate and the intermediate, and the path is
/// validated to the root, with 127.0.0.1 matched against the IP SAN.
#[test]
fn registers_with_certificates_validating_the_servers_chain_to_the_given_root() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (_server, output, port) = server(&pki, &pki.server_chain, &pki.server_key);
    let config = config(dir.path(), port, &pki, &pki.root, 2, &[]);
    let _agent = agent(&config, &dir.path().join("state"), Stdio::null());
    registered(&output);
}

/// Certificate usage 3 (domain-issued certificate): /0/x/4 is the
/// server's own certificate, matched as it is.
#[test]
fn registers_with_certificates_pinning_the_servers_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (_server, output, port) = server(&pki, &pki.server_chain, &pki.server_key);
    let config = config(dir.path(), port, &pki, &pki.server, 3, &[]);
    let _agent = agent(&config, &dir.path().join("state"), Stdio::null());
    registered(&output);
}

/// The usages that validate the path to the configured anchors (`ca_file`
/// holds the root and a second root): 0, with /0/x/4 the intermediate
/// the server's path goes through; 1, with /0/x/4 the server's own
/// certificate.
#[test]
fn registers_with_certificates_under_a_ca_constraint_and_a_service_certificate_constraint() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    for (server_certificate, usage) in [(&pki.intermediate, 0), (&pki.server, 1)] {
        let (_server, output, port) = server(&pki, &pki.server_chain, &pki.server_key);
        let run = tempfile::tempdir().unwrap();
        let anchors: [&Path; 2] = [&pki.other_root, &pki.root];
        let config = config(run.path(), port, &pki, server_certificate, usage, &anchors);
        let _agent = agent(&config, &run.path().join("state"), Stdio::null());
        registered(&output);
    }
}

/// `sni` in the configuration (/0/x/14): the server is given by address
/// and its certificate holds only `lwm2m.test` (refused without it, in
/// the test below); with the name configured, the path validates for it
/// and the agent registers. An address is no name to configure.
#[test]
fn a_configured_sni_is_the_name_the_servers_certificate_is_checked_for() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (_server, output, port) = server(&pki, &pki.named_chain, &pki.named_key);
    let config = config(dir.path(), port, &pki, &pki.root, 2, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}sni = \"lwm2m.test\"\n")).unwrap();
    let _agent = agent(&config, &dir.path().join("state"), Stdio::null());
    registered(&output);

    std::fs::write(&config, format!("{text}sni = \"127.0.0.1\"\n")).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env_remove("DMAGENT_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("\"127.0.0.1\" is not a host name"), "{why}");
}

/// The first log line with every one of `needles`.
fn line_with(lines: &std::sync::mpsc::Receiver<String>, needles: &[&str]) -> String {
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no log line with {needles:?}: {e}"));
        if needles.iter().all(|n| line.contains(n)) {
            return line;
        }
    }
}

/// Servers the agent must not trust: a chain that ends at a root other
/// than /0/x/4, an expired certificate, a certificate other than the one
/// pinned, a path that does not go through the CA /0/x/4 names. Each
/// handshake is ended by the agent with the reason in the log.
#[test]
fn servers_the_agent_must_not_trust_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let both_roots: &[&Path] = &[&pki.other_root, &pki.root];
    for (chain, key, server_certificate, usage, anchors, reason) in [
        // Usage 2: the path ends at a root other than /0/x/4.
        (
            &pki.server_chain,
            &pki.server_key,
            &pki.other_root,
            2,
            &[][..],
            "UnknownIssuer",
        ),
        (
            &pki.expired_chain,
            &pki.expired_key,
            &pki.root,
            2,
            &[][..],
            "expired",
        ),
        // Usage 3: a certificate of the right PKI, not the one pinned.
        (
            &pki.server_chain,
            &pki.server_key,
            &pki.intermediate,
            3,
            &[][..],
            "is not the one in its Server Public Key",
        ),
        // Usage 0: the path validates to a configured anchor, but not
        // through /0/x/4 (another anchor of the same file)...
        (
            &pki.server_chain,
            &pki.server_key,
            &pki.other_root,
            0,
            both_roots,
            "does not go through the CA in its Server Public Key",
        ),
        // ... even when the server sends /0/x/4 (public) along.
        (
            &pki.chain_with_other_root,
            &pki.server_key,
            &pki.other_root,
            0,
            both_roots,
            "does not go through the CA in its Server Public Key",
        ),
        // Usage 2 with a certificate for another name (the URI is
        // 127.0.0.1; it holds only lwm2m.test).
        (
            &pki.named_chain,
            &pki.named_key,
            &pki.root,
            2,
            &[][..],
            "certificate not valid for name",
        ),
    ] {
        let (_server, _output, port) = server(&pki, chain, key);
        let run = tempfile::tempdir().unwrap();
        let config = config(run.path(), port, &pki, server_certificate, usage, anchors);
        let mut agent = agent(&config, &run.path().join("state"), Stdio::piped());
        let lines = dm_tests::process::lines(agent.0.stderr.take().unwrap());
        let line = line_with(&lines, &["DTLS session failed"]);
        assert!(
            line.contains("WARN") && line.contains(reason),
            "{reason}: {line}"
        );
    }
}

/// The IG60-style launcher provisions certificate mode the way it does a
/// PSK: `--cert --key --ca` with a coaps server.
#[test]
fn the_launcher_registers_with_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (_server, output, port) = server(&pki, &pki.server_chain, &pki.server_key);
    let mut launcher = Guard(
        Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/dmagent-launch"))
            .args(["--server", "127.0.0.1", "--server-port"])
            .arg(port.to_string())
            .args(["-e", "dmagent-cert", "--no-cwmp", "--platform", "memory"])
            .arg("--cert")
            .arg(&pki.client)
            .arg("--key")
            .arg(&pki.client_key)
            .arg("--ca")
            .arg(&pki.root)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("DMAGENT_BIN", env!("CARGO_BIN_EXE_dmagent"))
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    registered(&output);
    // SIGTERM reaches the agent through the launcher (a kill of the
    // launcher alone would leave the agent running).
    let status = Command::new("kill")
        .args(["-TERM", &launcher.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(launcher.0.wait().unwrap().success());
}

/// A bootstrap server (aiocoap) provisions a Security Mode 2 account for
/// s_server: the first Finish, with a key that is not the certificate's,
/// is refused with 4.06 and the reason; the second, with the right key, is
/// accepted, and the agent registers at s_server over certificates. The
/// server's certificate is for `lwm2m.test` only and the URI an address:
/// the path validates only because the account's SNI (/0/x/14) names it.
#[test]
fn a_bootstrapped_certificate_account_is_checked_then_registers() {
    use dm_tests::py_peers::{json_lines, lwm2m_server, next_json};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (_server, output, port) = server(&pki, &pki.named_chain, &pki.named_key);
    let bootstrap_port = dm_tests::files::free_udp_port();
    let mut bootstrap = Guard(
        lwm2m_server()
            .arg(dm_tests::files::free_udp_port().to_string())
            .arg("bootstrap-certificate")
            .arg(bootstrap_port.to_string())
            .arg(format!("coaps://127.0.0.1:{port}"))
            .args([&pki.client, &pki.client_key, &pki.root, &pki.server_key])
            .arg("lwm2m.test")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut bootstrap.0);
    assert_eq!(next_json(&events)["event"], "listening");
    assert_eq!(next_json(&events)["event"], "bootstrap-listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-CERT\"\n\n[lwm2m]\n\
             server_uri = \"coap://127.0.0.1:{bootstrap_port}\"\nbootstrap = true\n\
             endpoint = \"dmagent-cert\"\n"
        ),
    )
    .unwrap();
    let _agent = agent(&config, &dir.path().join("state"), Stdio::null());
    let step = |name: &str| loop {
        let event = next_json(&events);
        if event["step"] == name {
            return event;
        }
    };
    let refused = step("bootstrap-finish-wrong-key");
    assert_eq!(refused["code"], "4.06 Not Acceptable", "{refused}");
    let reason = refused["text"].as_str().unwrap();
    assert!(
        reason.contains("/0/1: our private key (/0/x/5) is not the key of our certificate"),
        "{reason}"
    );
    assert_eq!(step("bootstrap-finish")["code"], "2.04 Changed");
    registered(&output);
}
