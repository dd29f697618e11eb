//! The D-Bus platform against python-dbusmock services on a private bus,
//! for what the real daemons cannot show here: a service that is missing
//! and then appears, a Wi-Fi radio, an error reply, and logind.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dm_platform::dbus::{DbusNetwork, LogindActions};
use dm_platform::{Actions as _, BearerKind, Network, PlatformError, WifiSecurity, WifiSettings};
use dm_tests::dbus_stack::Stack;

const NM: &str = "org.freedesktop.NetworkManager";

/// Waits for callbacks until `done` holds.
fn until(changed: &mpsc::Receiver<()>, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        changed
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no change callback while waiting for {what}"));
    }
}

fn wifi() -> WifiSettings {
    WifiSettings {
        interface: "wlan0".into(),
        ssid: "mock".into(),
        enabled: true,
        channel: 0,
        access_point: false,
        security: WifiSecurity::Open,
        passphrase: None,
    }
}

#[test]
fn missing_services_then_a_wifi_radio_then_an_error_reply() {
    let mut stack = Stack::mock();
    // Nothing on the bus yet: empty reads, writes refused as unavailable.
    let network = DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    let (tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = tx.send(());
    }));
    assert_eq!(network.state(), Default::default());
    assert!(matches!(
        network.add_wifi_profile(&wifi()),
        Err(PlatformError::Unavailable(_))
    ));

    // NetworkManager appears (NameOwnerChanged) with a Wi-Fi device that
    // is up: picked up without a restart.
    assert_eq!(stack.command("start networkmanager"), "ok");
    let answer = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager org.freedesktop.DBus.Mock AddWiFiDevice ssu wlan0dev wlan0 100"
    ));
    assert!(answer.starts_with("ok"), "{answer}");
    until(&changed, "the Wi-Fi device", || {
        network.state().available.contains(&BearerKind::Wlan)
    });
    let state = network.state();
    assert_eq!(state.bearer, Some(BearerKind::Wlan), "{state:?}");
    assert_eq!(state.interface.as_deref(), Some("wlan0"));

    // NetworkManager refuses the profile: the error keeps its kind.
    let answer = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager/Settings org.freedesktop.DBus.Mock AddMethod sssss \
         org.freedesktop.NetworkManager.Settings AddConnection 'a{{sa{{sv}}}}' o \
         \"raise dbus.exceptions.DBusException('not allowed', name='org.freedesktop.DBus.Error.AccessDenied')\""
    ));
    assert!(answer.starts_with("ok"), "{answer}");
    let refused = network.add_wifi_profile(&wifi());
    assert!(
        matches!(refused, Err(PlatformError::AccessDenied(_))),
        "{refused:?}"
    );

    // It goes away again: the platform notices and empties its view.
    assert_eq!(stack.command("stop networkmanager"), "ok");
    until(&changed, "NetworkManager to be gone", || {
        network.state().interface.is_none()
    });
}

#[test]
fn reboot_goes_through_logind() {
    let mut stack = Stack::mock();
    assert_eq!(stack.command("start logind"), "ok");
    LogindActions::new(Some(stack.bus.clone()))
        .reboot()
        .unwrap();
    let calls = stack.command(
        "call org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.DBus.Mock GetCalls",
    );
    assert!(calls.contains("\"Reboot\""), "{calls}");
}

/// The ACS URL from DHCP option 43 (issue 8, as icwmp's dhcp_discovery):
/// NetworkManager shows the lease's options on the device's DHCP4Config;
/// sub-option 1 of vendor_encapsulated_options is the URL, and a new lease
/// (PropertiesChanged) is picked up without a restart.
#[test]
fn the_acs_url_comes_from_dhcp_option_43() {
    let mut stack = Stack::mock();
    let network = DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    let (tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = tx.send(());
    }));
    assert_eq!(stack.command("start networkmanager"), "ok");
    let answer = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager org.freedesktop.DBus.Mock AddWiFiDevice ssu wlan0dev wlan0 100"
    ));
    assert!(answer.starts_with("ok"), "{answer}");
    until(&changed, "the Wi-Fi device", || {
        network.state().interface.is_some()
    });
    assert_eq!(network.state().dhcp_acs_url, None);
    // Option 43: sub-option 2 (provisioning code), then 1 (the URL), as hex.
    let url = "http://192.0.2.10:7547/acs";
    let mut option = vec![2u8, 2, b'p', b'c', 1, url.len() as u8];
    option.extend_from_slice(url.as_bytes());
    let hex: Vec<String> = option.iter().map(|b| format!("{b:02x}")).collect();
    let config = "/org/freedesktop/NetworkManager/DHCP4Config/1";
    let answer = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager org.freedesktop.DBus.Mock AddObject 'ssa{{sv}}a(ssss)' \
         {config} org.freedesktop.NetworkManager.DHCP4Config 1 Options 'a{{sv}}' 7 \
         vendor_encapsulated_options s {} ip_address s 192.0.2.77 subnet_mask s 255.255.255.0 \
         routers s 192.0.2.1 domain_name_servers s \"192.0.2.53 192.0.2.54\" \
         dhcp_server_identifier s 192.0.2.1 expiry s 1700003600 0",
        hex.join(":")
    ));
    assert!(answer.starts_with("ok"), "{answer}");
    // The template's devices have no Dhcp4Config yet ("/" is NM's none).
    let answer = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager/Devices/wlan0dev org.freedesktop.DBus.Mock AddProperty ssv \
         org.freedesktop.NetworkManager.Device Dhcp4Config o /"
    ));
    assert!(answer.starts_with("ok"), "{answer}");
    let answer = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager/Devices/wlan0dev org.freedesktop.DBus.Properties Set ssv \
         org.freedesktop.NetworkManager.Device Dhcp4Config o {config}"
    ));
    assert!(answer.starts_with("ok"), "{answer}");
    until(&changed, "the DHCP option", || {
        network.state().dhcp_acs_url.as_deref() == Some(url)
    });
    // The lease itself, as DHCPv4.Client shows it.
    let leases = network.dhcp_leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    let lease = &leases[0];
    assert_eq!(lease.interface, "wlan0");
    assert_eq!(lease.address, Some("192.0.2.77".parse().unwrap()));
    assert_eq!(lease.subnet_mask, Some("255.255.255.0".parse().unwrap()));
    assert_eq!(
        lease.routers,
        ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        lease.dns_servers,
        [
            "192.0.2.53".parse::<std::net::IpAddr>().unwrap(),
            "192.0.2.54".parse().unwrap()
        ]
    );
    assert_eq!(lease.server, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(lease.expiry, Some(1_700_003_600));
}

/// DHCPv6.Client's facts: NetworkManager shows what its DHCPv6 client
/// holds on the device's DHCP6Config, with its own option names (DUIDs as
/// colon-separated hex, lists space-separated).
#[test]
fn a_dhcpv6_lease_is_read_from_dhcp6config() {
    let mut stack = Stack::mock();
    let network = DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    let (tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = tx.send(());
    }));
    assert_eq!(stack.command("start networkmanager"), "ok");
    let mut call = |path: &str, rest: &str| {
        let answer = stack.command(&format!("call {NM} {path} {rest}"));
        assert!(answer.starts_with("ok"), "{rest}: {answer}");
    };
    call(
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Mock AddWiFiDevice ssu wlan0dev wlan0 100",
    );
    let config = "/org/freedesktop/NetworkManager/DHCP6Config/1";
    call(
        "/org/freedesktop/NetworkManager",
        &format!(
            "org.freedesktop.DBus.Mock AddObject 'ssa{{sv}}a(ssss)' {config} \
             org.freedesktop.NetworkManager.DHCP6Config 1 Options 'a{{sv}}' 6 \
             dhcp6_client_id s 00:03:00:01:02:fc:00:00:00:01 \
             dhcp6_server_id s 00:01:00:01:2a:bc:de:f0:02:fc:00:00:00:05 \
             dhcp6_name_servers s \"2001:db8::53 2001:db8::54\" \
             dhcp6_domain_search s \"lan example.com\" \
             ip6_address s 2001:db8::77 \
             dhcp6_sntp_servers s \"not-an-address\" 0"
        ),
    );
    let device = "/org/freedesktop/NetworkManager/Devices/wlan0dev";
    call(
        device,
        "org.freedesktop.DBus.Mock AddProperty ssv org.freedesktop.NetworkManager.Device Dhcp6Config o /",
    );
    call(
        device,
        &format!(
            "org.freedesktop.DBus.Properties Set ssv org.freedesktop.NetworkManager.Device Dhcp6Config o {config}"
        ),
    );
    until(&changed, "the DHCPv6 lease", || {
        !network.dhcpv6_leases().is_empty()
    });
    assert_eq!(
        network.dhcpv6_leases(),
        [dm_platform::Dhcp6Lease {
            interface: "wlan0".into(),
            client_id: vec![0, 3, 0, 1, 2, 0xfc, 0, 0, 0, 1],
            server_id: vec![0, 1, 0, 1, 0x2a, 0xbc, 0xde, 0xf0, 2, 0xfc, 0, 0, 0, 5],
            dns_servers: vec![
                "2001:db8::53".parse().unwrap(),
                "2001:db8::54".parse().unwrap()
            ],
            domain_search: vec!["lan".into(), "example.com".into()],
            // Garbage is no server.
            sntp_servers: Vec::new(),
        }]
    );
}

/// WiFi.Radio's facts: a wireless device's capabilities, mode and bit
/// rate, and the frequency of its active access point.
#[test]
fn a_wifi_radio_is_read_from_the_wireless_device() {
    let mut stack = Stack::mock();
    let network = DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    let (tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = tx.send(());
    }));
    assert_eq!(stack.command("start networkmanager"), "ok");
    let mut call = |path: &str, rest: &str| {
        let answer = stack.command(&format!("call {NM} {path} {rest}"));
        assert!(answer.starts_with("ok"), "{rest}: {answer}");
        answer
    };
    let device = "/org/freedesktop/NetworkManager/Devices/wlan0dev";
    // Activated (100), in infrastructure mode (the template's 2).
    call(
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Mock AddWiFiDevice ssu wlan0dev wlan0 100",
    );
    until(&changed, "the radio", || !network.wifi_radios().is_empty());
    // The template's capabilities (255) have no valid frequency flags, and
    // there is no access point yet: no bands, no frequency.
    let radio = &network.wifi_radios()[0];
    assert_eq!(radio.interface, "wlan0");
    assert!(radio.enabled && radio.up && radio.station, "{radio:?}");
    assert!(
        radio.bands.is_empty() && radio.frequency.is_none(),
        "{radio:?}"
    );
    assert_eq!(radio.bitrate, 5400);
    let ap = call(
        "/org/freedesktop/NetworkManager",
        &format!(
            "org.freedesktop.DBus.Mock AddAccessPoint ssssuuuyu {device} ap1 home 02:fc:00:00:00:09 2 2437 54000 80 0"
        ),
    );
    let ap = ap
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("no access point path in {ap}"))
        .to_owned();
    call(
        device,
        &format!(
            "org.freedesktop.DBus.Mock AddProperty ssv org.freedesktop.NetworkManager.Device.Wireless ActiveAccessPoint o {ap}"
        ),
    );
    // FREQ_VALID | 2 GHz | 5 GHz.
    call(
        device,
        "org.freedesktop.DBus.Properties Set ssv org.freedesktop.NetworkManager.Device.Wireless WirelessCapabilities u 1792",
    );
    until(&changed, "the access point's frequency", || {
        network
            .wifi_radios()
            .first()
            .is_some_and(|r| r.frequency == Some(2437) && !r.bands.is_empty())
    });
    assert_eq!(network.wifi_radios()[0].bands, ["2.4GHz", "5GHz"]);
}

/// Bearer Selection (/13) on NetworkManager: the platform activates an
/// available device of the kind asked for (ActivateConnection with "/",
/// NetworkManager's best connection for it); a kind with no device is
/// refused as unavailable.
#[test]
fn a_bearer_is_selected_by_activating_its_device() {
    let mut stack = Stack::mock();
    let network = DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    let (tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = tx.send(());
    }));
    assert_eq!(stack.command("start networkmanager"), "ok");
    for call in [
        "AddEthernetDevice ssi eth0dev eth0 100",
        "AddWiFiDevice ssu wlan0dev wlan0 30",
        "AddAccessPoint ssssuuuyu /org/freedesktop/NetworkManager/Devices/wlan0dev ap0 home \
         00:11:22:33:44:55 2 2412 54000 80 0",
        "AddWiFiConnection ssss /org/freedesktop/NetworkManager/Devices/wlan0dev home home wpa-psk",
    ] {
        let answer = stack.command(&format!(
            "call {NM} /org/freedesktop/NetworkManager org.freedesktop.DBus.Mock {call}"
        ));
        assert!(answer.starts_with("ok"), "{call}: {answer}");
    }
    until(&changed, "both devices", || {
        let state = network.state();
        state.available.contains(&BearerKind::Wlan)
            && state.available.contains(&BearerKind::Ethernet)
    });
    network.select_bearer(BearerKind::Wlan).unwrap();
    let active = stack.command(&format!(
        "call {NM} /org/freedesktop/NetworkManager org.freedesktop.DBus.Properties Get ss \
         org.freedesktop.NetworkManager ActiveConnections"
    ));
    assert!(
        active.contains("/org/freedesktop/NetworkManager/ActiveConnection/"),
        "{active}"
    );
    assert!(matches!(
        network.select_bearer(BearerKind::LteFdd),
        Err(PlatformError::Unavailable(_))
    ));
}

/// Bearer Selection of a cellular bearer goes through oFono: the modem
/// registered on that technology gets its packet service powered and its
/// internet context activated, and the call returns once oFono says the
/// context is active. Another technology is unavailable.
#[test]
fn a_cellular_bearer_is_selected_by_activating_the_modems_context() {
    let mut stack = Stack::mock();
    assert_eq!(stack.command("start ofono"), "ok");
    const OFONO: &str = "org.ofono";
    let context = "/ril_0/context1";
    for call in [
        // An internet context, inactive; GetContexts lists it.
        format!(
            "{OFONO} / org.freedesktop.DBus.Mock AddObject 'ssa{{sv}}a(ssss)' {context} \
             org.ofono.ConnectionContext 2 Type s internet Active b false 2 \
             GetProperties '' 'a{{sv}}' 'ret = self.GetAll(\"org.ofono.ConnectionContext\")' \
             SetProperty sv '' 'self.Set(\"org.ofono.ConnectionContext\", args[0], args[1]); \
             self.EmitSignal(\"org.ofono.ConnectionContext\", \"PropertyChanged\", \"sv\", [args[0], args[1]])'"
        ),
        format!(
            "{OFONO} /ril_0 org.freedesktop.DBus.Mock AddMethod sssss org.ofono.ConnectionManager \
             GetContexts '' 'a(oa{{sv}})' 'ret = [(dbus.ObjectPath(\"{context}\"), \
             objects[\"{context}\"].GetAll(\"org.ofono.ConnectionContext\"))]'"
        ),
        // Packet service off: it is powered first.
        format!("{OFONO} /ril_0 org.ofono.ConnectionManager SetProperty sv Powered b false"),
    ] {
        let answer = stack.command(&format!("call {call}"));
        assert!(answer.starts_with("ok"), "{call}: {answer}");
    }
    let network = DbusNetwork::start(Some(stack.bus.clone())).expect("the D-Bus platform starts");
    // The mock modem is registered on GSM.
    assert!(matches!(
        network.select_bearer(BearerKind::LteFdd),
        Err(PlatformError::Unavailable(_))
    ));
    network.select_bearer(BearerKind::Gsm).unwrap();
    let active = stack.command(&format!(
        "call {OFONO} {context} org.ofono.ConnectionContext GetProperties"
    ));
    assert!(active.contains("\"Active\" b true"), "{active}");
    let powered = stack.command(&format!(
        "call {OFONO} /ril_0 org.ofono.ConnectionManager GetProperties"
    ));
    assert!(powered.contains("\"Powered\" b true"), "{powered}");
    // Already active: nothing to do.
    network.select_bearer(BearerKind::Gsm).unwrap();
}

const MM: &str = "org.freedesktop.ModemManager1";

/// ModemManager, where oFono has no modem (python-dbusmock's template from
/// PyPI, its simple modem given a SIM, a bearer, extended signal figures
/// and a location): the radio, the identities, the bearer and the fix are
/// read, and a change of the modem's properties is picked up.
#[test]
fn the_modem_comes_from_modem_manager_when_ofono_has_none() {
    let mut stack = Stack::mock();
    let network = DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    let (tx, changed) = mpsc::channel();
    network.on_change(Arc::new(move || {
        let _ = tx.send(());
    }));
    assert_eq!(stack.command("start modemmanager"), "ok");
    let mut call = |path: &str, rest: &str| {
        // `--`: negative figures are not busctl options.
        let answer = stack.command(&format!("call -- {MM} {path} {rest}"));
        assert!(answer.starts_with("ok"), "{rest}: {answer}");
    };
    let modem = "/org/freedesktop/ModemManager1/Modems/8";
    call(
        "/org/freedesktop/ModemManager1",
        "org.freedesktop.DBus.Mock AddObject 'ssa{sv}a(ssss)' /org/freedesktop/ModemManager1/Bearer/0 \
         org.freedesktop.ModemManager1.Bearer 3 Connected b true Interface s wwan0 \
         Properties 'a{sv}' 2 apn s internet.example user s dm 0",
    );
    call(
        "/org/freedesktop/ModemManager1",
        "org.freedesktop.DBus.Mock AddSimpleModem",
    );
    until(&changed, "the modem", || network.radio().operator.is_some());
    let radio = network.radio();
    assert_eq!(radio.operator.as_deref(), Some("TheOperator"), "{radio:?}");
    assert_eq!((radio.mcc, radio.mnc), (Some(1), Some(1)));
    assert_eq!(radio.technology.as_deref(), Some("lte"));
    // SignalQuality 70 % with no extended figures: the CSQ scale.
    assert_eq!(radio.link_quality, Some(70));
    assert_eq!(radio.signal_dbm, Some(-113 + 2 * 21));
    assert!(network.state().available.contains(&BearerKind::LteFdd));

    call(
        "/org/freedesktop/ModemManager1/SIM/2",
        "org.freedesktop.DBus.Mock AddProperty ssv org.freedesktop.ModemManager1.Sim \
         SimIdentifier s 8949000000000000017",
    );
    call(
        "/org/freedesktop/ModemManager1/SIM/2",
        "org.freedesktop.DBus.Mock UpdateProperties 'sa{sv}' org.freedesktop.ModemManager1.Sim \
         1 Imsi s 001010123456789",
    );
    call(
        modem,
        "org.freedesktop.DBus.Mock AddProperty ssv org.freedesktop.ModemManager1.Modem \
         Bearers ao 1 /org/freedesktop/ModemManager1/Bearer/0",
    );
    call(
        modem,
        "org.freedesktop.DBus.Mock AddProperties 'sa{sv}' org.freedesktop.ModemManager1.Modem.Signal \
         1 Lte 'a{sv}' 3 rssi d -71 rsrp d -95.4 rsrq d -9",
    );
    call(
        modem,
        "org.freedesktop.DBus.Mock AddProperties 'sa{sv}' org.freedesktop.ModemManager1.Modem.Location \
         1 Location 'a{uv}' 2 1 s 262,02,0000,1A2B3C,2F 2 'a{sv}' 3 \
         latitude d 48.8584 longitude d 2.2945 altitude d 35",
    );
    // The change the modem signals (PropertiesChanged) brings all of it.
    call(
        modem,
        "org.freedesktop.DBus.Mock UpdateProperties 'sa{sv}' \
         org.freedesktop.ModemManager1.Modem.Modem3gpp 1 Imei s 356938035643809",
    );
    until(&changed, "the IMEI", || {
        network.radio().imei.as_deref() == Some("356938035643809")
    });
    let radio = network.radio();
    assert_eq!(radio.imsi.as_deref(), Some("001010123456789"));
    assert_eq!(radio.iccid.as_deref(), Some("8949000000000000017"));
    assert_eq!(
        (radio.signal_dbm, radio.rsrp_dbm, radio.rsrq_db),
        (Some(-71), Some(-95), Some(-9))
    );
    // The operator code's MCC/MNC stay; the cell's LTE area is its TAC.
    assert_eq!((radio.cell_id, radio.lac), (Some(0x1a2b3c), Some(0x2f)));
    let fix = radio.location.expect("the GPS fix");
    assert_eq!((fix.latitude, fix.longitude), (48.8584, 2.2945));
    assert_eq!(fix.altitude, Some(35.0));
    let contexts = network.apn_contexts();
    assert_eq!(contexts.len(), 1, "{contexts:?}");
    assert_eq!(
        (
            contexts[0].name.as_str(),
            contexts[0].apn.as_str(),
            contexts[0].username.as_str(),
            contexts[0].active
        ),
        ("internet.example", "internet.example", "dm", true)
    );
    // Bearers are reported, not written: a clear refusal, not oFono's
    // "no modem".
    let refused = network.delete_apn_context(&contexts[0].id);
    assert!(
        matches!(&refused, Err(PlatformError::Unavailable(m)) if m.contains("ModemManager")),
        "{refused:?}"
    );

    // ModemManager goes: the radio view empties.
    assert_eq!(stack.command("stop modemmanager"), "ok");
    until(&changed, "ModemManager to be gone", || {
        network.radio().imei.is_none()
    });
    assert!(network.apn_contexts().is_empty());
}
