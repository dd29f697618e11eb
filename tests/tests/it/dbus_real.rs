//! The D-Bus platform against the real NetworkManager and oFono, started by
//! `tests/peers/dbus-stack.sh` on a private system bus in a network
//! namespace (root needed: CI runs as root). Nothing here touches the
//! machine's own bus or network.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use dm_platform::dbus::DbusNetwork;
use dm_platform::{
    ApnAuth, ApnSettings, BearerKind, Network, PlatformError, WifiSecurity, WifiSettings,
};
use dm_tests::dbus_stack::Stack;

fn wifi(ssid: &str, passphrase: Option<&str>) -> WifiSettings {
    WifiSettings {
        interface: "wlan0".into(),
        ssid: ssid.into(),
        enabled: true,
        channel: 0,
        access_point: false,
        security: if passphrase.is_some() {
            WifiSecurity::WpaPsk
        } else {
            WifiSecurity::Open
        },
        passphrase: passphrase.map(str::to_owned),
    }
}

#[test]
fn real_network_manager_and_ofono() {
    let mut stack = Stack::start();
    let network = DbusNetwork::start(Some(stack.bus.clone())).expect("the D-Bus platform starts");
    let (changed_tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = changed_tx.send(());
    }));

    // NetworkManager: the namespace's veth0 with its address.
    let state = network.state();
    assert_eq!(state.interface.as_deref(), Some("veth0"), "{state:?}");
    assert_eq!(state.bearer, Some(BearerKind::Ethernet));
    assert!(
        state.addresses.contains(&"198.51.100.1".parse().unwrap()),
        "{state:?}"
    );
    // The modem registered on the responder's fake network.
    assert!(state.available.contains(&BearerKind::Wcdma), "{state:?}");
    let radio = network.radio();
    assert_eq!(radio.cell_id, Some(0xA1B2), "{radio:?}");
    assert_eq!(radio.lac, Some(0x00C3));
    assert_eq!((radio.mcc, radio.mnc), (Some(244), Some(5)));
    assert_eq!(radio.technology.as_deref(), Some("umts"));
    assert_eq!(radio.operator.as_deref(), Some("FakeNet"));
    assert_eq!(radio.link_quality, Some(64));
    assert_eq!(radio.imei.as_deref(), Some("350000000000001"));

    // A Wi-Fi profile: a real keyfile appears, with the passphrase.
    let id = network
        .add_wifi_profile(&wifi("dmagent-guest", Some("correct horse")))
        .unwrap();
    let profile = network
        .wifi_profiles()
        .into_iter()
        .find(|p| p.id == id)
        .expect("the profile reads back");
    assert_eq!(profile.ssid, "dmagent-guest");
    assert_eq!(profile.security, WifiSecurity::WpaPsk);
    let keyfile = stack.keyfile_with("ssid=dmagent-guest").expect("a keyfile");
    assert!(keyfile.contains("psk=correct horse"), "{keyfile}");

    // Renamed, on channel 6, passphrase untouched: NetworkManager's Update
    // replaces the whole profile, so the platform must send the old psk.
    let mut renamed = wifi("dmagent-visitors", None);
    renamed.security = WifiSecurity::WpaPsk;
    renamed.channel = 6;
    network.update_wifi_profile(&id, &renamed).unwrap();
    let keyfile = stack
        .keyfile_with("ssid=dmagent-visitors")
        .expect("the keyfile follows");
    assert!(keyfile.contains("channel=6"), "{keyfile}");
    assert!(keyfile.contains("psk=correct horse"), "{keyfile}");
    assert!(stack.keyfile_with("ssid=dmagent-guest").is_none());

    // Deleted: the keyfile goes.
    network.delete_wifi_profile(&id).unwrap();
    assert!(stack.keyfile_with("ssid=dmagent-visitors").is_none());
    assert!(network.wifi_profiles().iter().all(|p| p.id != id));
    // An unknown profile is a clear error, not a panic.
    let missing = network.update_wifi_profile("00000000-0000-0000-0000-000000000000", &renamed);
    assert!(
        matches!(missing, Err(PlatformError::InvalidArgument(_))),
        "{missing:?}"
    );

    // oFono: the APN of the real context changes.
    let context = network
        .apn_contexts()
        .into_iter()
        .next()
        .expect("a context");
    network
        .update_apn_context(
            &context.id,
            &ApnSettings {
                name: context.name.clone(),
                apn: "iot.example".into(),
                username: "device".into(),
                password: Some("s3cret".into()),
                auth: ApnAuth::Pap,
            },
        )
        .unwrap();
    let context = network
        .apn_contexts()
        .into_iter()
        .find(|c| c.id == context.id)
        .unwrap();
    assert_eq!(context.apn, "iot.example");
    assert_eq!(context.username, "device");

    // Live: the network reports another cell; oFono signals it and the
    // platform's callback runs with the new value in place.
    while changed.try_recv().is_ok() {}
    assert_eq!(stack.command("cell 00C4 0000A1B3"), "ok");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        changed
            .recv_timeout(left)
            .expect("a change callback after the new cell");
        if network.radio().cell_id == Some(0xA1B3) {
            break;
        }
    }
    assert_eq!(network.radio().lac, Some(0x00C4));

    // Bearer Selection on the real NetworkManager: the Ethernet device
    // (the namespace's veth) is activated with its own profile, and stays
    // the bearer.
    network.select_bearer(BearerKind::Ethernet).unwrap();
    assert_eq!(network.state().bearer, Some(BearerKind::Ethernet));
    // Taken down by hand (nmcli, NetworkManager's own client), the modem
    // is what is left; selecting Ethernet brings veth0 back, and the call
    // returns once it is activated, not in the gap between the two.
    let down = std::process::Command::new("nmcli")
        .args(["device", "disconnect", "veth0"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
        .output()
        .expect("nmcli runs");
    assert!(down.status.success(), "{down:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while network.state().bearer != Some(BearerKind::Wcdma) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        changed
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("veth0 goes down: {:?}", network.state()));
    }
    network.select_bearer(BearerKind::Ethernet).unwrap();
    let state = network.state();
    assert_eq!(state.bearer, Some(BearerKind::Ethernet), "{state:?}");
    assert_eq!(state.interface.as_deref(), Some("veth0"), "{state:?}");
    // Cellular goes through oFono: the modem is on UMTS, so LTE is
    // unavailable; selecting WCDMA activates its internet context (oFono's
    // phonesim driver sends AT+CGACT, which the responder accepts).
    assert!(matches!(
        network.select_bearer(BearerKind::LteFdd),
        Err(PlatformError::Unavailable(_))
    ));
    assert!(network.apn_contexts().iter().all(|c| !c.active));
    network.select_bearer(BearerKind::Wcdma).unwrap();
    let contexts = network.apn_contexts();
    assert!(contexts.iter().any(|c| c.active), "{contexts:?}");
}
