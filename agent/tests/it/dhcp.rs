//! Field case (issue 8, icwmp's `dhcp_discovery`): with
//! `acs_url_from_dhcp`, the ACS URL of the DHCPv4 lease's option 43, as
//! NetworkManager shows it (python-dbusmock's NetworkManager with a
//! DHCP4Config), is where the agent's first Inform goes; without it, the
//! configured URL is. The lease is in place before the agent starts, and
//! the platform's first snapshot is read before the first session, so
//! each case has one possible target.

use dm_tests::dbus_stack::Stack;
use dm_tests::mini_acs::MiniAcs;

const NM: &str = "org.freedesktop.NetworkManager";

/// NetworkManager with a Wi-Fi device whose DHCPv4 lease carries `url`
/// in option 43 (sub-option 1), as hex the way NetworkManager shows it.
fn network_manager_with_option_43(stack: &mut Stack, url: &str) {
    assert_eq!(stack.command("start networkmanager"), "ok");
    let call = |stack: &mut Stack, path: &str, rest: &str| {
        let answer = stack.command(&format!("call {NM} {path} {rest}"));
        assert!(answer.starts_with("ok"), "{rest}: {answer}");
    };
    call(
        stack,
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Mock AddWiFiDevice ssu wlan0dev wlan0 100",
    );
    let mut option = vec![1u8, url.len() as u8];
    option.extend_from_slice(url.as_bytes());
    let hex: Vec<String> = option.iter().map(|b| format!("{b:02x}")).collect();
    let config = "/org/freedesktop/NetworkManager/DHCP4Config/1";
    call(
        stack,
        "/org/freedesktop/NetworkManager",
        &format!(
            "org.freedesktop.DBus.Mock AddObject 'ssa{{sv}}a(ssss)' {config} \
             org.freedesktop.NetworkManager.DHCP4Config 1 Options 'a{{sv}}' 1 \
             vendor_encapsulated_options s {} 0",
            hex.join(":")
        ),
    );
    let device = "/org/freedesktop/NetworkManager/Devices/wlan0dev";
    call(
        stack,
        device,
        "org.freedesktop.DBus.Mock AddProperty ssv org.freedesktop.NetworkManager.Device Dhcp4Config o /",
    );
    call(
        stack,
        device,
        &format!(
            "org.freedesktop.DBus.Properties Set ssv org.freedesktop.NetworkManager.Device Dhcp4Config o {config}"
        ),
    );
}

#[test]
fn the_acs_url_comes_from_dhcp_option_43_only_when_configured() {
    for from_dhcp in [true, false] {
        let leased = MiniAcs::start(Box::new(|_| None));
        let configured = MiniAcs::start(Box::new(|_| None));
        let mut stack = Stack::mock();
        network_manager_with_option_43(&mut stack, &leased.url());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dmagent.toml");
        std::fs::write(
            &config,
            format!(
                "[device]\nserial_number = \"SN-DHCP\"\n\n[platform]\nkind = \"dbus\"\n\n\
                 [cwmp]\nacs_url = \"{}\"\nacs_url_from_dhcp = {from_dhcp}\n\
                 connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
                 [lwm2m]\nenabled = false\n",
                configured.url(),
                dm_tests::files::free_tcp_port()
            ),
        )
        .unwrap();
        let _agent = dm_tests::agent::run_on_bus(
            env!("CARGO_BIN_EXE_dmagent"),
            &config,
            &dir.path().join("state"),
            &stack.bus,
        );
        let target = if from_dhcp { &leased } else { &configured };
        let inform = target.post_with("<cwmp:Inform>");
        assert!(inform.contains("0 BOOTSTRAP"), "{inform}");
    }
}
