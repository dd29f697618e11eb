//! Device.NAT.InterfaceSetting from the host's nftables rules: in a
//! network namespace the test makes, a masquerade rule out of one link, a
//! source-NAT rule out of a set of names, a filter rule and a masquerade
//! with no output interface; `dmagent dump` (run in the namespace) lists
//! one row per interface some rule translates on, each naming that
//! interface's IP.Interface row.

use std::io::Write as _;
use std::process::{Command, Stdio};

use dm_tests::netns::Netns;

fn values(dump: &str, prefix: &str) -> Vec<(String, String)> {
    dump.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.split("  [").next().unwrap().to_owned()))
        .collect()
}

#[test]
fn nat_interface_settings_are_the_nftables_rules() {
    let netns = Netns::new("dmagent-nat");
    // veth pairs: this kernel may have no dummy links.
    for link in ["wan0", "lte0", "lan0"] {
        netns.ip(&format!("link add {link} type veth peer name {link}p"));
        netns.ip(&format!("link set {link} up"));
    }
    let ruleset = r#"
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
        oifname { "lte0", "gone0" } snat to 198.51.100.1
        masquerade
    }
}
table inet filter {
    chain forward {
        type filter hook forward priority filter; policy accept;
        oifname "lan0" accept
    }
}
"#;
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &netns.0, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (scripts/install-deps.sh installs nftables)");
    nft.stdin
        .take()
        .unwrap()
        .write_all(ruleset.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft -f refused the ruleset");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\n\n[lwm2m]\nenabled = false\n",
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &netns.0])
        .arg(env!("CARGO_BIN_EXE_dmagent"))
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["dump", "--view", "tr181"])
        .env_remove("DMAGENT_CONFIG")
        .env_remove("DMAGENT_PLATFORM")
        .env("DMAGENT_BUS", "session")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();
    let index = |link: &str| -> u64 {
        let shown = Command::new("ip")
            .args(["-n", &netns.0, "-j", "link", "show", link])
            .output()
            .unwrap();
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        shown[0]["ifindex"].as_u64().unwrap()
    };
    let rows = values(&dump, "Device.NAT.");
    let interfaces: Vec<&str> = rows
        .iter()
        .filter(|(k, _)| k.ends_with(".Interface"))
        .map(|(_, v)| v.as_str())
        .collect();
    // wan0 and lte0, then "gone0", a link the namespace does not have
    // (yet): its row names no interface. lan0's rule does no NAT; the
    // bare masquerade names no one interface, so no row.
    let wan = format!("Device.IP.Interface.{}", index("wan0"));
    let lte = format!("Device.IP.Interface.{}", index("lte0"));
    assert_eq!(interfaces, [wan.as_str(), lte.as_str(), ""], "{rows:?}");
    assert!(
        rows.contains(&("InterfaceSettingNumberOfEntries".into(), "3".into())),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .filter(|(k, _)| k.ends_with(".Status"))
            .all(|(_, v)| v == "Enabled"),
        "{rows:?}"
    );
}
