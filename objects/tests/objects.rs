//! The objects on the in-memory platform: start-up, platform facts,
//! provisioning and the rules each object enforces.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dm_core::catalog::{
    apn, cellular, connectivity, device, location, management_server, security, server, system_log,
    time, wlan,
};
use dm_core::{Error, InstanceId, ObjectLink, Origin, Path, ResourceValue, Tree, Value};
use dm_objects::{CwmpSettings, Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};
use dm_platform::memory::{FixedHost, MemoryLog, MemoryNetwork};
use dm_platform::{Memory, Network, WifiProfile, WifiSecurity};

struct Fixture {
    tree: Tree,
    network: Arc<MemoryNetwork>,
    log: Arc<MemoryLog>,
    platform: Platform,
}

fn fixture() -> Fixture {
    let network = Arc::new(MemoryNetwork::demo());
    let log = Arc::new(MemoryLog::default());
    let platform = Platform {
        host: Arc::new(FixedHost {
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            uptime: Duration::from_secs(4242),
            memory: Memory {
                total_kib: 65536,
                free_kib: 12345,
            },
            cpu: 17,
            timezone: Some("Europe/Paris".into()),
            utc_offset: 3600,
        }),
        network: network.clone(),
        log: log.clone(),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    Fixture {
        tree,
        network,
        log,
        platform,
    }
}

fn provisioning(acs_url: &str) -> Provisioning {
    Provisioning {
        identity: Identity {
            manufacturer: "Acme".into(),
            oui: "00D09E".into(),
            product_class: "Gateway".into(),
            model_name: "GW-1".into(),
            serial_number: "SN0001".into(),
            hardware_version: "1.0".into(),
            software_version: "0.1.0".into(),
            description: "test gateway".into(),
        },
        cwmp: Some(CwmpSettings {
            acs_url: acs_url.into(),
            username: "cpe".into(),
            password: "secret".into(),
            periodic_inform: true,
            periodic_interval: 300,
            connection_request_username: "acs".into(),
            connection_request_password: "cr-secret".into(),
            ..CwmpSettings::default()
        }),
        lwm2m: vec![Lwm2mServer {
            uri: "coaps://127.0.0.1:5684".into(),
            bootstrap: false,
            short_server_id: 101,
            lifetime: 300,
            binding: "U".into(),
            security: SecurityMode::PreSharedKey {
                identity: b"dev1".to_vec(),
                key: vec![0x01, 0x02, 0x03],
            },
            client_hold_off: 0,
            sni: None,
        }],
    }
}

fn value(tree: &Tree, path: Path) -> Value {
    match tree.read(Origin::Agent, &path).unwrap() {
        ResourceValue::Single(v) => v,
        other => panic!("{path}: {other:?}"),
    }
}

fn multiple(tree: &Tree, path: Path) -> Vec<Value> {
    match tree.read(Origin::Agent, &path).unwrap() {
        ResourceValue::Multiple(v) => v.into_values().collect(),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn device_values_come_from_the_host_and_the_identity() {
    let mut f = fixture();
    dm_objects::provision(&mut f.tree, &provisioning("http://127.0.0.1:7547/")).unwrap();
    let d = |r| Path::resource(device::ID, InstanceId(0), r);
    assert_eq!(
        value(&f.tree, d(device::MEMORY_FREE)),
        Value::Integer(12345)
    );
    assert_eq!(
        value(&f.tree, d(device::MEMORY_TOTAL)),
        Value::Integer(65536)
    );
    assert_eq!(value(&f.tree, d(device::UP_TIME)), Value::Unsigned(4242));
    assert_eq!(value(&f.tree, d(device::CPU_USAGE)), Value::Unsigned(17));
    assert_eq!(
        value(&f.tree, d(device::CURRENT_TIME)),
        Value::DateTime(1_700_000_000)
    );
    assert_eq!(
        value(&f.tree, d(device::UTC_OFFSET)),
        Value::String("+01:00".into())
    );
    assert_eq!(
        value(&f.tree, d(device::TIMEZONE)),
        Value::String("Europe/Paris".into())
    );
    assert_eq!(
        value(&f.tree, d(device::SERIAL_NUMBER)),
        Value::String("SN0001".into())
    );
    assert_eq!(
        value(&f.tree, d(device::MANUFACTURER_OUI)),
        Value::String("00D09E".into())
    );
    assert_eq!(
        value(&f.tree, d(device::ROOT_DATA_MODEL_VERSION)),
        Value::String("2.17".into())
    );
    assert_eq!(
        multiple(&f.tree, d(device::ERROR_CODE)),
        vec![Value::Integer(0)]
    );
}

#[test]
fn platform_facts_fill_connectivity_and_apn() {
    let mut f = fixture();
    let warnings = dm_objects::sync_platform(&mut f.tree, &f.platform).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
    let c = |r| Path::resource(connectivity::ID, InstanceId(0), r);
    assert_eq!(
        value(&f.tree, c(connectivity::NETWORK_BEARER)),
        Value::Integer(41)
    );
    assert_eq!(
        multiple(&f.tree, c(connectivity::AVAILABLE_NETWORK_BEARER)),
        vec![Value::Integer(41), Value::Integer(6)]
    );
    assert_eq!(
        value(&f.tree, c(connectivity::RADIO_SIGNAL_STRENGTH)),
        Value::Integer(-71)
    );
    assert_eq!(
        multiple(&f.tree, c(connectivity::IP_ADDRESSES)),
        vec![Value::String("127.0.0.2".into())]
    );
    assert_eq!(
        value(&f.tree, c(connectivity::CURRENT_ACCESS_TECHNOLOGY)),
        Value::String("LTE".into())
    );
    let apns = f.tree.instances(apn::ID).unwrap();
    assert_eq!(apns, vec![InstanceId(1)]);
    let a = |r| Path::resource(apn::ID, InstanceId(1), r);
    assert_eq!(
        value(&f.tree, a(apn::APN)),
        Value::String("internet".into())
    );
    assert_eq!(
        multiple(
            &f.tree,
            Path::resource(
                cellular::ID,
                InstanceId(0),
                cellular::ACTIVATED_PROFILE_NAMES
            )
        ),
        vec![Value::ObjectLink(ObjectLink {
            object: apn::ID,
            instance: 1
        })]
    );

    // A second sync with nothing new changes nothing and creates nothing.
    let changes = f.tree.subscribe(64);
    assert!(
        dm_objects::sync_platform(&mut f.tree, &f.platform)
            .warnings
            .is_empty()
    );
    assert!(changes.drain().is_empty());
    assert_eq!(f.tree.instances(apn::ID).unwrap(), vec![InstanceId(1)]);

    // A signal change becomes exactly one change from the platform.
    let mut radio = f.network.radio();
    radio.signal_dbm = Some(-90);
    f.network.set_radio(radio);
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    let seen = changes.drain();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].origin, Origin::Platform);
    assert_eq!(seen[0].path, c(connectivity::RADIO_SIGNAL_STRENGTH));
}

/// The SIM's identities and the modem's fix: /6 exists while there is a
/// fix, its Timestamp moves only when the coordinates do, and it goes
/// when the fix is lost.
#[test]
fn the_sim_and_the_fix_are_reported() {
    let mut f = fixture();
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    // No fix: no /6, not even after populate.
    assert_eq!(f.tree.instances(location::ID).unwrap(), vec![]);
    let mut radio = f.network.radio();
    radio.imsi = Some("001010123456789".into());
    radio.iccid = Some("8949000000000000017".into());
    radio.location = Some(dm_platform::GeoLocation {
        latitude: 48.8584,
        longitude: 2.2945,
        altitude: None,
    });
    f.network.set_radio(radio.clone());
    let warnings = dm_objects::sync_platform(&mut f.tree, &f.platform).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
    let c = |r| Path::resource(connectivity::ID, InstanceId(0), r);
    assert_eq!(
        value(&f.tree, c(connectivity::IMSI)),
        Value::String("001010123456789".into())
    );
    assert_eq!(
        value(&f.tree, c(connectivity::ICCID)),
        Value::String("8949000000000000017".into())
    );
    let l = |r| Path::resource(location::ID, InstanceId(0), r);
    assert_eq!(value(&f.tree, l(location::LATITUDE)), Value::Float(48.8584));
    assert_eq!(value(&f.tree, l(location::LONGITUDE)), Value::Float(2.2945));
    assert_eq!(
        value(&f.tree, l(location::TIMESTAMP)),
        Value::DateTime(1_700_000_000)
    );
    // The same fix again: nothing changes.
    let changes = f.tree.subscribe(64);
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(changes.drain().is_empty());
    // Lost: the instance goes.
    radio.location = None;
    f.network.set_radio(radio);
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert_eq!(f.tree.instances(location::ID).unwrap(), vec![]);
}

#[test]
fn out_of_range_platform_values_are_skipped_not_fatal() {
    let mut f = fixture();
    let mut radio = f.network.radio();
    radio.mcc = Some(1234); // SMCC is 0..999
    f.network.set_radio(radio);
    let warnings = dm_objects::sync_platform(&mut f.tree, &f.platform).warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("/4/0/10"), "{warnings:?}");
    let c = |r| Path::resource(connectivity::ID, InstanceId(0), r);
    assert_eq!(
        value(&f.tree, c(connectivity::RADIO_SIGNAL_STRENGTH)),
        Value::Integer(-71)
    );
}

#[test]
fn wifi_profiles_become_wlan_instances() {
    let mut f = fixture();
    f.network.set_wifi_profiles(vec![WifiProfile {
        id: "uuid-1".into(),
        interface: "wlan0".into(),
        ssid: "home".into(),
        enabled: true,
        active: true,
        channel: 6,
        access_point: false,
        security: WifiSecurity::WpaPsk,
        bssid: Some("00:11:22:33:44:55".into()),
    }]);
    let warnings = dm_objects::sync_platform(&mut f.tree, &f.platform).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(f.tree.instances(wlan::ID).unwrap(), vec![InstanceId(1)]);
    let w = |r| Path::resource(wlan::ID, InstanceId(1), r);
    assert_eq!(value(&f.tree, w(wlan::SSID)), Value::String("home".into()));
    assert_eq!(
        value(&f.tree, w(wlan::BSSID)),
        Value::String("001122334455".into())
    );
    assert_eq!(
        value(&f.tree, w(wlan::SSID_BSSID)),
        Value::String("00:11:22:33:44:55".into())
    );
    assert_eq!(
        value(&f.tree, w(wlan::MODE_ENABLED)),
        Value::String("WPA2-Personal".into())
    );
    // A second sync maps the profile to the same instance.
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert_eq!(f.tree.instances(wlan::ID).unwrap(), vec![InstanceId(1)]);
    // A client may change the channel without knowing the platform's
    // secret, but not set a short passphrase.
    f.tree
        .begin(Origin::Server(101))
        .set(w(wlan::CHANNEL), Value::Integer(11))
        .commit()
        .unwrap();
    let err = f
        .tree
        .begin(Origin::Acs)
        .set(w(wlan::WPA_KEY_PHRASE), Value::String("short".into()))
        .commit()
        .unwrap_err();
    assert!(matches!(err.faults[..], [Error::Rejected { .. }]), "{err}");
}

/// The radios NetworkManager knows: a Radio row per wireless device, by
/// interface index, an EndPoint for a station; the SSID's counters are
/// its interface's while its profile is active, 0 while it is not.
#[test]
fn wifi_radios_end_points_and_ssid_counters() {
    use dm_core::catalog::{wifi_endpoint as endpoint, wifi_radio as radio};
    use dm_platform::{IpInterface, WifiRadio};
    let mut f = fixture();
    f.network.set_ip_interfaces(vec![IpInterface {
        index: 3,
        name: "wlan0".into(),
        enabled: true,
        operstate: "up".into(),
        ..IpInterface::default()
    }]);
    let station = WifiRadio {
        interface: "wlan0".into(),
        enabled: true,
        up: true,
        station: true,
        bands: vec!["2.4GHz", "5GHz"],
        bitrate: 54_000,
        frequency: Some(5180),
    };
    f.network.set_wifi_radios(vec![
        station.clone(),
        // No such interface: no row.
        WifiRadio {
            interface: "gone0".into(),
            ..WifiRadio::default()
        },
    ]);
    let profile = WifiProfile {
        id: "uuid-1".into(),
        interface: "wlan0".into(),
        ssid: "home".into(),
        enabled: true,
        active: true,
        channel: 0,
        access_point: false,
        security: WifiSecurity::Open,
        bssid: None,
    };
    f.network.set_wifi_profiles(vec![profile.clone()]);
    let warnings = dm_objects::sync_platform(&mut f.tree, &f.platform).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
    let r = |res| Path::resource(radio::ID, InstanceId(3), res);
    assert_eq!(f.tree.instances(radio::ID).unwrap(), [InstanceId(3)]);
    assert_eq!(value(&f.tree, r(radio::CHANNEL)), Value::Unsigned(36));
    assert_eq!(
        value(&f.tree, r(radio::OPERATING_FREQUENCY_BAND)),
        Value::String("5GHz".into())
    );
    assert_eq!(
        value(&f.tree, r(radio::SUPPORTED_FREQUENCY_BANDS)),
        Value::String("2.4GHz,5GHz".into())
    );
    assert_eq!(value(&f.tree, r(radio::UPSTREAM)), Value::Boolean(true));
    assert_eq!(value(&f.tree, r(radio::STATUS)), Value::String("Up".into()));
    let first = value(&f.tree, r(radio::STATS_BYTES_SENT));
    assert!(value(&f.tree, r(radio::STATS_BYTES_SENT)) != first);
    let e = |res| Path::resource(endpoint::ID, InstanceId(3), res);
    assert_eq!(f.tree.instances(endpoint::ID).unwrap(), [InstanceId(3)]);
    assert_eq!(
        value(&f.tree, e(endpoint::STATS_LAST_DATA_UPLINK_RATE)),
        Value::Unsigned(54_000)
    );
    // The SSID's traffic, while active.
    let w = |res| Path::resource(wlan::ID, InstanceId(1), res);
    let sent = value(&f.tree, w(wlan::SSID_STATS_BYTES_SENT));
    assert!(matches!(sent, Value::Unsigned(n) if n > 0), "{sent:?}");
    assert!(value(&f.tree, w(wlan::SSID_STATS_BYTES_SENT)) != sent);

    // Disconnected: the radio waits (Dormant), the channel and the last
    // rate stay what they were, the SSID counts nothing.
    f.network.set_wifi_radios(vec![WifiRadio {
        up: false,
        bitrate: 0,
        frequency: None,
        ..station.clone()
    }]);
    f.network.set_wifi_profiles(vec![WifiProfile {
        active: false,
        ..profile
    }]);
    let warnings = dm_objects::sync_platform(&mut f.tree, &f.platform).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        value(&f.tree, r(radio::STATUS)),
        Value::String("Dormant".into())
    );
    assert_eq!(value(&f.tree, r(radio::CHANNEL)), Value::Unsigned(36));
    assert_eq!(
        value(&f.tree, e(endpoint::STATS_LAST_DATA_UPLINK_RATE)),
        Value::Unsigned(54_000)
    );
    assert_eq!(
        value(&f.tree, w(wlan::SSID_STATS_BYTES_SENT)),
        Value::Unsigned(0)
    );
    // An access point has no end point; a radio gone, no row.
    f.network.set_wifi_radios(vec![WifiRadio {
        station: false,
        ..station
    }]);
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(f.tree.instances(endpoint::ID).unwrap().is_empty());
    assert_eq!(value(&f.tree, r(radio::UPSTREAM)), Value::Boolean(false));
    f.network.set_wifi_radios(Vec::new());
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(f.tree.instances(radio::ID).unwrap().is_empty());
}

#[test]
fn a_refresh_waits_for_a_wifi_write_being_made_on_the_host() {
    let mut f = fixture();
    f.network.set_wifi_profiles(vec![WifiProfile {
        id: "uuid-1".into(),
        interface: "wlan0".into(),
        ssid: "home".into(),
        enabled: true,
        active: true,
        channel: 6,
        access_point: false,
        security: WifiSecurity::Open,
        bssid: None,
    }]);
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    let ssid = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    let prepared = f
        .tree
        .begin(Origin::Acs)
        .set(ssid, Value::String("renamed".into()))
        .prepare()
        .unwrap();
    let dm_core::Prepared::Pending(mut pending) = prepared else {
        panic!("a new SSID is a host write");
    };
    // The host has the new name; the tree does not know yet. A refresh
    // now would take the renamed profile for a new one and the tree's
    // instance for one deleted on the host.
    let outcome = pending.take_work().run();
    assert_eq!(f.network.wifi_profiles()[0].ssid, "renamed");
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(synced.deferred);
    assert_eq!(f.tree.instances(wlan::ID).unwrap(), vec![InstanceId(1)]);
    assert_eq!(value(&f.tree, ssid), Value::String("home".into()));

    f.tree.complete(pending, outcome).result.unwrap();
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(!synced.deferred);
    assert_eq!(f.tree.instances(wlan::ID).unwrap(), vec![InstanceId(1)]);
    assert_eq!(value(&f.tree, ssid), Value::String("renamed".into()));
}

/// What the host was told is taken back from what it answered: a new
/// profile by its id (it did not exist when the write was prepared), a
/// renamed one back to its name, with no duplicate left behind.
#[test]
fn host_writes_are_taken_back_by_what_they_made() {
    let f = fixture();
    let mut tree = f.tree;
    let _ = dm_objects::sync_platform(&mut tree, &f.platform);
    let before = f.network.wifi_profiles();
    let ssid = |i| Path::resource(wlan::ID, InstanceId(i), wlan::SSID);
    // A new profile, made then taken back: gone again.
    let free = tree.free_instance(wlan::ID).unwrap();
    let mut tx = tree.begin(Origin::Acs);
    tx.create(wlan::ID, Some(free));
    tx.set(ssid(free.0), Value::String("guest".into()));
    let mut added = match tx.prepare().unwrap() {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let undo = added.take_work().run().unwrap();
    assert!(f.network.wifi_profiles().iter().any(|p| p.ssid == "guest"));
    undo.undo();
    assert_eq!(f.network.wifi_profiles(), before);
    drop(added);
    // A rename, taken back: the old name, one profile.
    let first = tree.instances(wlan::ID).unwrap()[0];
    let old_name = match tree.read(Origin::Agent, &ssid(first.0)).unwrap() {
        ResourceValue::Single(Value::String(s)) => s,
        other => panic!("{other:?}"),
    };
    let mut renamed = match tree
        .begin(Origin::Acs)
        .set(ssid(first.0), Value::String("office".into()))
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let undo = renamed.take_work().run().unwrap();
    assert!(f.network.wifi_profiles().iter().any(|p| p.ssid == "office"));
    undo.undo();
    let names: Vec<String> = f
        .network
        .wifi_profiles()
        .into_iter()
        .map(|p| p.ssid)
        .collect();
    assert_eq!(names, [old_name]);
}

/// The configured SNI goes to /0/x/14, and taking it out of the
/// configuration takes it out of the account; an account that never had
/// one is not written.
#[test]
fn a_configured_sni_is_provisioned_and_taken_back() {
    let mut f = fixture();
    let sni = Path::resource(security::ID, InstanceId(0), security::SNI);
    let mut with_sni = provisioning("http://127.0.0.1:7547/");
    let applied = dm_objects::provision(&mut f.tree, &with_sni).unwrap();
    assert!(f.tree.read(Origin::Agent, &sni).is_err(), "no SNI written");
    with_sni.lwm2m[0].sni = Some("lwm2m.test".into());
    assert_eq!(dm_objects::provision(&mut f.tree, &with_sni).unwrap(), 1);
    assert_eq!(value(&f.tree, sni), Value::String("lwm2m.test".into()));
    let without = provisioning("http://127.0.0.1:7547/");
    assert_eq!(dm_objects::provision(&mut f.tree, &without).unwrap(), 1);
    assert_eq!(value(&f.tree, sni), Value::String(String::new()));
    assert!(applied > 1);
}

#[test]
fn provisioning_applies_once_and_respects_server_changes() {
    let mut f = fixture();
    let ms = |r| Path::resource(management_server::ID, InstanceId(0), r);
    assert_eq!(
        dm_objects::provision(&mut f.tree, &provisioning("http://127.0.0.1:7547/")).unwrap(),
        18
    );
    assert_eq!(
        value(&f.tree, ms(management_server::PERIODIC_INFORM_INTERVAL)),
        Value::Unsigned(300)
    );
    assert_eq!(
        value(
            &f.tree,
            Path::resource(
                security::ID,
                InstanceId(0),
                security::PUBLIC_KEY_OR_IDENTITY
            )
        ),
        Value::Opaque(b"dev1".to_vec())
    );
    assert_eq!(
        value(
            &f.tree,
            Path::resource(server::ID, InstanceId(0), server::SHORT_SERVER_ID)
        ),
        Value::Integer(101)
    );

    // The ACS changes the interval; the same configuration does not undo it.
    f.tree
        .begin(Origin::Acs)
        .set(
            ms(management_server::PERIODIC_INFORM_INTERVAL),
            Value::Unsigned(60),
        )
        .commit()
        .unwrap();
    assert_eq!(
        dm_objects::provision(&mut f.tree, &provisioning("http://127.0.0.1:7547/")).unwrap(),
        0
    );
    assert_eq!(
        value(&f.tree, ms(management_server::PERIODIC_INFORM_INTERVAL)),
        Value::Unsigned(60)
    );

    // A changed configuration value is applied; the others stay.
    assert_eq!(
        dm_objects::provision(&mut f.tree, &provisioning("http://127.0.0.1:9999/")).unwrap(),
        1
    );
    assert_eq!(
        value(&f.tree, ms(management_server::URL)),
        Value::String("http://127.0.0.1:9999/".into())
    );
    assert_eq!(
        value(&f.tree, ms(management_server::PERIODIC_INFORM_INTERVAL)),
        Value::Unsigned(60)
    );
}

#[test]
fn executes_follow_each_objects_rules() {
    let mut f = fixture();
    let changes = f.tree.subscribe(8);
    let reboot = Path::resource(device::ID, InstanceId(0), device::REBOOT);
    f.tree.execute(Origin::Acs, &reboot, "").unwrap();
    let change = changes.next().unwrap();
    assert_eq!(
        dm_objects::perform(&mut f.tree, &change),
        Some(dm_objects::HostAction::Reboot)
    );

    let update = Path::resource(
        dm_core::catalog::firmware::ID,
        InstanceId(0),
        dm_core::catalog::firmware::UPDATE,
    );
    assert!(matches!(
        f.tree.execute(Origin::Server(1), &update, ""),
        Err(Error::Rejected { .. })
    ));

    // Reset Error Code empties the list back to "no error".
    let errors = Path::resource(device::ID, InstanceId(0), device::ERROR_CODE);
    f.tree
        .begin(Origin::Platform)
        .set(errors.without_index(), Value::Integer(0))
        .commit()
        .unwrap_err();
    let mut list = std::collections::BTreeMap::new();
    list.insert(0, Value::Integer(3));
    list.insert(1, Value::Integer(5));
    f.tree
        .begin(Origin::Platform)
        .set_multiple(errors, list)
        .commit()
        .unwrap();
    let reset = Path::resource(device::ID, InstanceId(0), device::RESET_ERROR_CODE);
    f.tree.execute(Origin::Server(1), &reset, "").unwrap();
    let executed = changes
        .drain()
        .into_iter()
        .find(|c| c.path == reset)
        .unwrap();
    assert_eq!(dm_objects::perform(&mut f.tree, &executed), None);
    assert_eq!(multiple(&f.tree, errors), vec![Value::Integer(0)]);
}

#[test]
fn system_log_reads_whole_and_incremental() {
    let mut f = fixture();
    f.log.append("boot");
    let instance = f.tree.instances(system_log::ID).unwrap()[0];
    let all = Path::resource(system_log::ID, instance, system_log::READ_ALL);
    let new = Path::resource(system_log::ID, instance, system_log::READ);
    // The log is a host read: made off the tree's lock, then supplied.
    let fetch = |tree: &mut Tree, path: Path| {
        let reads = tree.host_reads(Origin::Agent, &[path]);
        assert!(!reads.is_empty(), "{path} is read from the host");
        tree.supply(reads.run_within(Duration::from_secs(5)));
        value(tree, path)
    };
    // Not fetched: not read under the lock.
    assert!(matches!(
        f.tree.read(Origin::Agent, &new),
        Err(Error::PlatformUnavailable(_))
    ));
    assert_eq!(fetch(&mut f.tree, new), Value::String("boot\n".into()));
    f.log.append("link up");
    assert_eq!(fetch(&mut f.tree, new), Value::String("link up\n".into()));
    assert_eq!(
        fetch(&mut f.tree, all),
        Value::String("boot\nlink up\n".into())
    );
    // A whole instance's reads: both resources, each once.
    let instance_path = Path::instance(system_log::ID, instance);
    let reads = f.tree.host_reads(Origin::Agent, &[instance_path, all]);
    assert_eq!(reads.describe().matches("the system log").count(), 2);
}

/// Device.Time on a host with no time service: NTP and the zone cannot
/// be applied, so a client's change of them is refused, not stored; a
/// zone that is not one is refused before the host is asked; the NTP
/// servers are stored as before; Status says Disabled.
#[test]
fn time_settings_no_host_can_apply_are_refused() {
    let mut f = fixture();
    let at = |r| Path::resource(time::ID, InstanceId(0), r);
    let refused = f
        .tree
        .begin(Origin::Acs)
        .set(at(time::ENABLE), Value::Boolean(true))
        .commit();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("the time service that applies Device.Time (systemd-timedated) is not available")),
        "{refused:?}"
    );
    assert_eq!(value(&f.tree, at(time::ENABLE)), Value::Boolean(false));
    let refused = f
        .tree
        .begin(Origin::Acs)
        .set(
            at(time::LOCAL_TIME_ZONE),
            Value::String("not a zone!".into()),
        )
        .commit();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("POSIX TZ")),
        "{refused:?}"
    );
    f.tree
        .begin(Origin::Acs)
        .set(at(time::NTP_SERVER1), Value::String("pool.ntp.org".into()))
        .commit()
        .unwrap();
    assert_eq!(
        value(&f.tree, at(time::STATUS)),
        Value::String("Disabled".into())
    );
}

/// A host with a time service whose zone a test can see and change.
struct ZoneHost {
    fixed: FixedHost,
    zone: std::sync::Mutex<String>,
}

impl dm_platform::Host for ZoneHost {
    fn now(&self) -> std::time::SystemTime {
        self.fixed.now()
    }
    fn uptime(&self) -> Result<Duration, dm_platform::PlatformError> {
        self.fixed.uptime()
    }
    fn memory(&self) -> Result<Memory, dm_platform::PlatformError> {
        self.fixed.memory()
    }
    fn cpu_usage(&self, reader: &str) -> Result<u8, dm_platform::PlatformError> {
        self.fixed.cpu_usage(reader)
    }
    fn timezone(&self) -> Option<String> {
        Some(self.zone.lock().unwrap().clone())
    }
    fn utc_offset(&self) -> i32 {
        self.fixed.utc_offset()
    }
    fn time_sync(&self) -> Option<dm_platform::TimeSync> {
        Some(dm_platform::TimeSync {
            ntp: true,
            synchronized: true,
            zone: self.zone.lock().unwrap().clone(),
            posix_zone: None,
        })
    }
    fn set_timezone(&self, zone: &str) -> Result<(), dm_platform::PlatformError> {
        *self.zone.lock().unwrap() = zone.to_owned();
        Ok(())
    }
}

/// LwM2M /3/0/15 (read-write in OMA's object 3) is the host's zone, and a
/// server's write of it goes to the host's time service as
/// Device.Time.LocalTimeZone's does (Leshan's write of it was refused
/// with 4.05); a zone that is none is refused before the host is asked;
/// the host's own change comes in at the next sync.
#[test]
fn a_servers_time_zone_reaches_the_time_service() {
    let host = Arc::new(ZoneHost {
        fixed: FixedHost {
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            uptime: Duration::from_secs(4242),
            memory: Memory {
                total_kib: 65536,
                free_kib: 12345,
            },
            cpu: 17,
            timezone: None,
            utc_offset: 3600,
        },
        zone: std::sync::Mutex::new("Europe/Paris".into()),
    });
    let platform = Platform {
        host: host.clone(),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    let zone = Path::resource(device::ID, InstanceId(0), device::TIMEZONE);
    assert_eq!(value(&tree, zone), Value::String("Europe/Paris".into()));
    tree.begin(Origin::Server(101))
        .set(zone, Value::String("Asia/Tokyo".into()))
        .commit()
        .unwrap();
    assert_eq!(*host.zone.lock().unwrap(), "Asia/Tokyo");
    assert_eq!(value(&tree, zone), Value::String("Asia/Tokyo".into()));
    let refused = tree
        .begin(Origin::Server(101))
        .set(zone, Value::String("not a zone!".into()))
        .commit();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("is not a time zone name")),
        "{refused:?}"
    );
    assert_eq!(*host.zone.lock().unwrap(), "Asia/Tokyo");
    *host.zone.lock().unwrap() = "America/New_York".into();
    let _ = dm_objects::sync_platform(&mut tree, &platform);
    assert_eq!(value(&tree, zone), Value::String("America/New_York".into()));
}

/// Without a time service a server's zone is refused, not stored and
/// applied nowhere.
#[test]
fn a_time_zone_no_host_can_apply_is_refused() {
    let mut f = fixture();
    let zone = Path::resource(device::ID, InstanceId(0), device::TIMEZONE);
    let refused = f
        .tree
        .begin(Origin::Server(101))
        .set(zone, Value::String("Asia/Tokyo".into()))
        .commit();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("the time service that sets the time zone (systemd-timedated) is not available")),
        "{refused:?}"
    );
    assert_eq!(value(&f.tree, zone), Value::String("Europe/Paris".into()));
}

#[test]
fn client_changes_to_wlan_and_apn_reach_the_platform_and_its_refusals_fail_them() {
    let mut f = fixture();
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    let at = |i, r| Path::resource(wlan::ID, InstanceId(i), r);
    // An ACS-style AddObject then SetParameterValues: the profile appears
    // once the instance has an SSID, with the passphrase handed over.
    let created = f
        .tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let i = created.created[0].instance_id().unwrap().0;
    assert_eq!(
        f.network.wifi_profiles().len(),
        1,
        "no profile for a placeholder"
    );
    f.tree
        .begin(Origin::Acs)
        .set(at(i, wlan::SSID), Value::String("guest".into()))
        .set(at(i, wlan::AUTHENTICATION_MODE), Value::Integer(1))
        .set(
            at(i, wlan::WPA_KEY_PHRASE),
            Value::String("correct horse".into()),
        )
        .commit()
        .unwrap();
    let guest = f
        .network
        .wifi_profiles()
        .into_iter()
        .find(|p| p.ssid == "guest")
        .expect("a guest profile on the platform");
    assert_eq!(guest.security, WifiSecurity::WpaPsk);
    // Renamed: the same profile is updated, not a new one added.
    f.tree
        .begin(Origin::Server(101))
        .set(at(i, wlan::SSID), Value::String("visitors".into()))
        .commit()
        .unwrap();
    let profiles = f.network.wifi_profiles();
    assert_eq!(profiles.len(), 2);
    assert!(
        profiles
            .iter()
            .any(|p| p.id == guest.id && p.ssid == "visitors")
    );
    // The host refuses: the write fails and the tree keeps the old value.
    f.network
        .refuse_writes(Some(dm_platform::PlatformError::AccessDenied(
            "polkit says no".into(),
        )));
    let refused = f
        .tree
        .begin(Origin::Acs)
        .set(at(i, wlan::SSID), Value::String("nope".into()))
        .commit();
    assert!(refused.is_err());
    assert_eq!(
        value(&f.tree, at(i, wlan::SSID)),
        Value::String("visitors".into())
    );
    f.network.refuse_writes(None);
    // Deleted by a client: the profile goes.
    f.tree
        .begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(i))
        .commit()
        .unwrap();
    assert!(!f.network.wifi_profiles().iter().any(|p| p.id == guest.id));
    // Deleted on the host: the instance goes at the next sync.
    f.network.set_wifi_profiles(Vec::new());
    f.network.set_wifi_profiles(vec![WifiProfile {
        id: "x".into(),
        interface: "wlan0".into(),
        ssid: "other".into(),
        enabled: true,
        active: false,
        channel: 0,
        access_point: false,
        security: WifiSecurity::Open,
        bssid: None,
    }]);
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    let ssids: Vec<Value> = f
        .tree
        .instances(wlan::ID)
        .unwrap()
        .into_iter()
        .map(|i| value(&f.tree, at(i.0, wlan::SSID)))
        .collect();
    assert_eq!(ssids, [Value::String("other".into())]);

    // APN: a client's write changes the modem's context.
    let apn_instance = f.tree.instances(apn::ID).unwrap()[0];
    f.tree
        .begin(Origin::Server(101))
        .set(
            Path::resource(apn::ID, apn_instance, apn::APN),
            Value::String("iot.example".into()),
        )
        .commit()
        .unwrap();
    assert_eq!(f.network.apn_contexts()[0].apn, "iot.example");
}

mod declared {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use dm_core::schema::Constraint;
    use dm_core::{
        Access, Error, InstanceId, ObjectId, ObjectSchema, Origin, Path, Prepared, ResourceId,
        ResourceSchema, ResourceValue, Tree, Value, ValueType,
    };
    use dm_objects::declared::{Declaration, Provider, Request};

    const fn resource(id: u16, value_type: ValueType, access: Access) -> ResourceSchema {
        ResourceSchema {
            id: ResourceId(id),
            name: "r",
            value_type,
            access,
            multiple: false,
            mandatory: true,
            units: "",
            constraint: Constraint::Range { min: 0, max: 100 },
        }
    }

    static RESOURCES: [ResourceSchema; 3] = [
        resource(1, ValueType::Long, Access::ReadWrite),
        resource(2, ValueType::Long, Access::ReadWrite),
        resource(3, ValueType::None, Access::Execute),
    ];
    static SCHEMA: ObjectSchema = ObjectSchema {
        id: ObjectId(32769),
        name: "Test",
        version: "1.0",
        multiple: true,
        mandatory: false,
        resources: &RESOURCES,
    };

    #[derive(Default)]
    struct Recorder {
        up: AtomicBool,
        refuse: AtomicBool,
        calls: Mutex<Vec<Request>>,
    }

    impl Provider for Recorder {
        fn name(&self) -> String {
            "recorder".into()
        }
        fn get(
            &self,
            _: InstanceId,
            resources: &[ResourceId],
        ) -> Result<Vec<(ResourceId, ResourceValue)>, Error> {
            if !self.is_up() {
                return Err(Error::PlatformUnavailable("not running".into()));
            }
            Ok(resources
                .iter()
                .map(|r| {
                    (
                        *r,
                        ResourceValue::Single(Value::Integer(40 + i64::from(r.0))),
                    )
                })
                .collect())
        }
        fn is_up(&self) -> bool {
            self.up.load(Ordering::SeqCst)
        }
        fn execute(&self, _: InstanceId, _: ResourceId, _: &str) -> Result<(), Error> {
            Ok(())
        }
        fn call(&self, request: Request, _undo: Option<&Request>) -> Result<(), Error> {
            self.calls.lock().unwrap().push(request);
            if self.refuse.load(Ordering::SeqCst) {
                return Err(Error::PlatformInvalid("no".into()));
            }
            Ok(())
        }
    }

    fn tree(provider: &Arc<Recorder>) -> Tree {
        tree_with(provider, Vec::new())
    }

    fn tree_with(provider: &Arc<Recorder>, volatile: Vec<ResourceId>) -> Tree {
        let mut tree = Tree::new();
        let declarations = [Declaration {
            schema: &SCHEMA,
            instances: vec![InstanceId(0)],
            values: vec![(
                InstanceId(0),
                ResourceId(1),
                ResourceValue::Single(Value::Integer(5)),
            )],
            provider: None,
            volatile,
        }];
        let provider: Arc<dyn Provider> = provider.clone();
        dm_objects::declared::register(&mut tree, &declarations, &|_| Some(Arc::clone(&provider)))
            .unwrap();
        dm_objects::declared::populate(&mut tree, &declarations, &[]).unwrap();
        tree
    }

    fn at(resource: u16) -> Path {
        Path::resource(SCHEMA.id, InstanceId(0), ResourceId(resource))
    }

    /// Sets resource 1 to `value` as an LwM2M server, running the host
    /// work as a driver would.
    fn server_sets(tree: &mut Tree, value: i64) -> Result<(), Error> {
        let prepared = tree
            .begin(Origin::Server(1))
            .set(at(1), Value::Integer(value))
            .set(at(2), Value::Integer(0))
            .prepare()
            .map_err(|mut e| e.faults.remove(0))?;
        let Prepared::Pending(mut pending) = prepared else {
            panic!("no host write for a provided object");
        };
        let outcome = pending.take_work().run();
        tree.complete(pending, outcome)
            .result
            .map(|_| ())
            .map_err(|mut e| e.faults.remove(0))
    }

    #[test]
    fn client_changes_reach_the_provider_all_or_nothing() {
        let provider = Arc::new(Recorder::default());
        let mut tree = tree(&provider);
        assert_eq!(
            tree.read(Origin::Agent, &at(1)).unwrap(),
            ResourceValue::Single(Value::Integer(5))
        );
        // Not running: refused as "not now", nothing asked; clients'
        // reads too (nobody stands behind the values), not the agent's.
        assert!(matches!(
            server_sets(&mut tree, 7),
            Err(Error::PlatformUnavailable(_))
        ));
        assert!(provider.calls.lock().unwrap().is_empty());
        assert!(matches!(
            tree.read(Origin::Server(1), &at(1)),
            Err(Error::PlatformUnavailable(_))
        ));
        let mut walked = Vec::new();
        tree.walk(Origin::Acs, &Path::object(SCHEMA.id), &mut |p, v| {
            walked.push((p, v))
        })
        .unwrap();
        assert!(
            !walked.is_empty()
                && walked
                    .iter()
                    .all(|(_, v)| matches!(v, Err(Error::PlatformUnavailable(_)))),
            "{walked:?}"
        );

        provider.up.store(true, Ordering::SeqCst);
        assert_eq!(
            tree.read(Origin::Server(1), &at(1)).unwrap(),
            ResourceValue::Single(Value::Integer(5))
        );
        server_sets(&mut tree, 7).unwrap();
        // Only what changed goes (resource 2 was 0 already).
        assert_eq!(
            provider.calls.lock().unwrap().drain(..).collect::<Vec<_>>(),
            [Request::Set {
                instance: InstanceId(0),
                values: vec![(ResourceId(1), ResourceValue::Single(Value::Integer(7)))]
            }]
        );
        assert_eq!(
            tree.read(Origin::Agent, &at(1)).unwrap(),
            ResourceValue::Single(Value::Integer(7))
        );

        // Refused: the tree keeps its value.
        provider.refuse.store(true, Ordering::SeqCst);
        assert!(matches!(
            server_sets(&mut tree, 9),
            Err(Error::PlatformInvalid(_))
        ));
        assert_eq!(
            tree.read(Origin::Agent, &at(1)).unwrap(),
            ResourceValue::Single(Value::Integer(7))
        );

        // The provider's own values (platform facts) and the agent's go
        // nowhere.
        provider.calls.lock().unwrap().clear();
        tree.begin(Origin::Platform)
            .set(at(1), Value::Integer(50))
            .commit()
            .unwrap();
        assert!(provider.calls.lock().unwrap().is_empty());

        // Executes are accepted while it runs, refused while it does not.
        assert_eq!(tree.execute(Origin::Server(1), &at(3), ""), Ok(()));
        provider.up.store(false, Ordering::SeqCst);
        assert!(matches!(
            tree.execute(Origin::Server(1), &at(3), ""),
            Err(Error::PlatformUnavailable(_))
        ));
    }

    /// A volatile value is asked of the provider by a request's host
    /// read, off the lock, and read by that request only; outside one,
    /// and while the provider is away, it is unavailable.
    #[test]
    fn volatile_values_are_fetched_for_the_request_that_wants_them() {
        let provider = Arc::new(Recorder::default());
        provider.up.store(true, Ordering::SeqCst);
        let mut tree = tree_with(&provider, vec![ResourceId(2)]);
        let origin = Origin::Server(1);
        assert!(matches!(
            tree.read(origin, &at(2)),
            Err(Error::PlatformUnavailable(_))
        ));
        // Resource 1 is cached: no host read for it.
        let reads = tree.host_reads(origin, &[Path::instance(SCHEMA.id, InstanceId(0))]);
        assert_eq!(
            reads.describe().matches("recorder").count(),
            1,
            "{}",
            reads.describe()
        );
        tree.supply(reads.run_within(std::time::Duration::from_secs(2)));
        assert_eq!(
            tree.read(origin, &at(2)).unwrap(),
            ResourceValue::Single(Value::Integer(42))
        );
        tree.forget_fetched(origin);
        assert!(tree.read(origin, &at(2)).is_err());

        // Away: the read fetches nothing and says so.
        provider.up.store(false, Ordering::SeqCst);
        let reads = tree.host_reads(origin, &[at(2)]);
        tree.supply(reads.run_within(std::time::Duration::from_secs(2)));
        assert!(matches!(
            tree.read(origin, &at(2)),
            Err(Error::PlatformUnavailable(_))
        ));
    }
}

/// A state store that counts its saves.
struct Saves(Arc<std::sync::atomic::AtomicUsize>);

impl dm_core::StateStore for Saves {
    fn save(&mut self, _: &dm_core::Snapshot) -> Result<(), dm_core::SaveError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The host's links, routes and name servers become read-only TR-181
/// tables: made, changed and removed as the platform reports them, with
/// no write to the state file (they are reported again at every start)
/// and never saved; a link's counters are read at each read.
#[test]
fn the_hosts_links_routes_and_name_servers_are_reported_without_writes() {
    use dm_core::catalog::{dns_server, ethernet, ipv4_forwarding, ipv6_forwarding};
    use dm_platform::{Link, Route};
    let mut f = fixture();
    // The demo network's own facts first: the rest is this test's.
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    let saves = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    f.tree.set_store(Box::new(Saves(Arc::clone(&saves))));
    let link = |index: u32, name: &str| Link {
        index,
        name: name.into(),
        mac: format!("02:00:00:00:00:{index:02x}"),
        enabled: true,
        up: true,
        operstate: "up".into(),
        speed: Some(1000),
        duplex: Some("full".into()),
    };
    let route = |destination: &str, prefix: u8, gateway: Option<&str>| Route {
        destination: destination.parse().unwrap(),
        prefix,
        gateway: gateway.map(|g| g.parse().unwrap()),
        interface: "eth0".into(),
        metric: 100,
    };
    f.network.set_host_network(
        vec![link(2, "eth0"), link(7, "eth1")],
        vec![
            route("0.0.0.0", 0, Some("192.0.2.1")),
            route("192.0.2.0", 24, None),
            route("::", 0, Some("fe80::1")),
        ],
        vec!["192.0.2.53".parse().unwrap()],
    );
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(synced.warnings.is_empty(), "{:?}", synced.warnings);
    assert_eq!(
        f.tree.instances(ethernet::ID).unwrap(),
        [InstanceId(2), InstanceId(7)]
    );
    assert_eq!(
        value(
            &f.tree,
            Path::resource(ethernet::ID, InstanceId(7), ethernet::MAC_ADDRESS)
        ),
        Value::String("02:00:00:00:00:07".into())
    );
    assert_eq!(
        value(
            &f.tree,
            Path::resource(
                ipv4_forwarding::ID,
                InstanceId(2),
                ipv4_forwarding::DEST_SUBNET_MASK
            )
        ),
        Value::String("255.255.255.0".into())
    );
    assert_eq!(f.tree.instances(ipv6_forwarding::ID).unwrap().len(), 1);
    assert_eq!(
        value(
            &f.tree,
            Path::resource(dns_server::ID, InstanceId(1), dns_server::DNS_SERVER)
        ),
        Value::String("192.0.2.53".into())
    );
    // Counters are read at each read, and grow with the traffic.
    let received = Path::resource(ethernet::ID, InstanceId(2), ethernet::STATS_BYTES_RECEIVED);
    let first = value(&f.tree, received);
    assert!(value(&f.tree, received) != first);
    // The same in the Ethernet.Link over it.
    use dm_core::catalog::ethernet_link;
    let received = Path::resource(
        ethernet_link::ID,
        InstanceId(2),
        ethernet_link::STATS_BYTES_RECEIVED,
    );
    let first = value(&f.tree, received);
    assert!(value(&f.tree, received) != first);

    // A link gone, a route gone: removed, still without a write.
    f.network.set_host_network(
        vec![link(2, "eth0")],
        vec![route("0.0.0.0", 0, Some("192.0.2.1"))],
        Vec::new(),
    );
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert_eq!(f.tree.instances(ethernet::ID).unwrap(), [InstanceId(2)]);
    assert_eq!(
        f.tree.instances(ethernet_link::ID).unwrap(),
        [InstanceId(2)]
    );
    assert_eq!(
        f.tree.instances(ipv4_forwarding::ID).unwrap(),
        [InstanceId(1)]
    );
    assert!(f.tree.instances(dns_server::ID).unwrap().is_empty());
    // A route added in front of the others: each entry keeps its
    // instance number (TR-069 instance numbers follow their entry).
    f.network.set_host_network(
        vec![link(2, "eth0")],
        vec![
            route("198.51.100.0", 24, None),
            route("0.0.0.0", 0, Some("192.0.2.1")),
        ],
        Vec::new(),
    );
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    let gateway = |i: u16| {
        value(
            &f.tree,
            Path::resource(
                ipv4_forwarding::ID,
                InstanceId(i),
                ipv4_forwarding::GATEWAY_IP_ADDRESS,
            ),
        )
    };
    assert_eq!(gateway(1), Value::String("192.0.2.1".into()));
    assert_eq!(
        value(
            &f.tree,
            Path::resource(
                ipv4_forwarding::ID,
                InstanceId(2),
                ipv4_forwarding::DEST_IP_ADDRESS
            )
        ),
        Value::String("198.51.100.0".into())
    );

    // The IP interfaces: every link, loopback too, numbered by interface
    // index; eth0's lower layer is its Ethernet row, the routes name
    // their interface's row.
    use dm_core::catalog::ip_interface;
    use dm_platform::{InterfaceAddress, IpInterface};
    let address = |a: &str, prefix| InterfaceAddress {
        address: a.parse().unwrap(),
        prefix,
        permanent: true,
        tentative: false,
        deprecated: false,
    };
    f.network.set_ip_interfaces(vec![
        IpInterface {
            index: 1,
            name: "lo".into(),
            enabled: true,
            operstate: "unknown".into(),
            carrier: true,
            loopback: true,
            mtu: 65536,
            ipv6: true,
            addresses: vec![address("127.0.0.1", 8), address("::1", 128)],
        },
        IpInterface {
            index: 2,
            name: "eth0".into(),
            enabled: true,
            operstate: "up".into(),
            carrier: true,
            loopback: false,
            mtu: 1500,
            ipv6: true,
            addresses: vec![
                address("192.0.2.10", 24),
                address("198.51.100.7", 25),
                address("fe80::1", 64),
            ],
        },
    ]);
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(synced.warnings.is_empty(), "{:?}", synced.warnings);
    let i = |n, r| Path::resource(ip_interface::ID, InstanceId(n), r);
    assert_eq!(
        f.tree.instances(ip_interface::ID).unwrap(),
        [InstanceId(1), InstanceId(2)]
    );
    assert_eq!(
        value(&f.tree, i(1, ip_interface::TYPE)),
        Value::String("Loopback".into())
    );
    assert_eq!(
        value(&f.tree, i(1, ip_interface::STATUS)),
        Value::String("Up".into())
    );
    assert_eq!(
        value(&f.tree, i(1, ip_interface::MAX_MTU_SIZE)),
        Value::Unsigned(65535)
    );
    assert_eq!(
        value(&f.tree, i(1, ip_interface::LOWER_LAYERS)),
        Value::ObjectLink(ObjectLink {
            object: dm_core::ObjectId(u16::MAX),
            instance: u16::MAX
        })
    );
    let row = |object, instance| Value::ObjectLink(ObjectLink { object, instance });
    assert_eq!(
        value(&f.tree, i(2, ip_interface::LOWER_LAYERS)),
        row(ethernet_link::ID, 2)
    );
    // The Ethernet link over the interface of the same number.
    assert_eq!(
        value(
            &f.tree,
            Path::resource(
                ethernet_link::ID,
                InstanceId(2),
                ethernet_link::LOWER_LAYERS
            )
        ),
        row(ethernet::ID, 2)
    );
    // The stack: eth0's IP interface over its Ethernet link over its
    // Ethernet interface, nothing for loopback.
    use dm_core::catalog::interface_stack as stack;
    let layers: Vec<(Value, Value)> = f
        .tree
        .instances(stack::ID)
        .unwrap()
        .into_iter()
        .map(|n| {
            let at = |r| value(&f.tree, Path::resource(stack::ID, n, r));
            (at(stack::HIGHER_LAYER), at(stack::LOWER_LAYER))
        })
        .collect();
    assert_eq!(
        layers,
        [
            (row(ip_interface::ID, 2), row(ethernet_link::ID, 2)),
            (row(ethernet_link::ID, 2), row(ethernet::ID, 2)),
        ]
    );
    assert_eq!(
        multiple(&f.tree, i(2, ip_interface::IPV4_ADDRESS_IP_ADDRESS)),
        [
            Value::String("192.0.2.10".into()),
            Value::String("198.51.100.7".into())
        ]
    );
    assert_eq!(
        multiple(&f.tree, i(2, ip_interface::IPV4_ADDRESS_SUBNET_MASK)),
        [
            Value::String("255.255.255.0".into()),
            Value::String("255.255.255.128".into())
        ]
    );
    assert_eq!(
        multiple(&f.tree, i(2, ip_interface::IPV6_ADDRESS_ORIGIN)),
        [Value::String("WellKnown".into())]
    );
    assert_eq!(
        value(
            &f.tree,
            Path::resource(
                ipv4_forwarding::ID,
                InstanceId(1),
                ipv4_forwarding::INTERFACE
            )
        ),
        Value::ObjectLink(ObjectLink {
            object: ip_interface::ID,
            instance: 2
        })
    );
    // eth0's DHCPv4 lease: the client row of its interface's number,
    // the time left worked out at each read (the fixture's clock is at
    // 1 700 000 000).
    use dm_core::catalog::dhcpv4_client as dhcp;
    f.network.set_dhcp_leases(vec![
        dm_platform::DhcpLease {
            interface: "eth0".into(),
            address: Some("192.0.2.10".parse().unwrap()),
            subnet_mask: Some("255.255.255.0".parse().unwrap()),
            routers: vec!["192.0.2.1".parse().unwrap()],
            dns_servers: vec!["192.0.2.53".parse().unwrap(), "192.0.2.54".parse().unwrap()],
            server: Some("192.0.2.1".parse().unwrap()),
            expiry: Some(1_700_000_600),
        },
        // An interface the kernel does not have: no row.
        dm_platform::DhcpLease {
            interface: "gone0".into(),
            ..dm_platform::DhcpLease::default()
        },
    ]);
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(synced.warnings.is_empty(), "{:?}", synced.warnings);
    let c = |r| Path::resource(dhcp::ID, InstanceId(2), r);
    assert_eq!(f.tree.instances(dhcp::ID).unwrap(), [InstanceId(2)]);
    assert_eq!(
        value(&f.tree, c(dhcp::INTERFACE)),
        Value::ObjectLink(ObjectLink {
            object: ip_interface::ID,
            instance: 2
        })
    );
    assert_eq!(
        value(&f.tree, c(dhcp::DNS_SERVERS)),
        Value::String("192.0.2.53,192.0.2.54".into())
    );
    assert_eq!(
        value(&f.tree, c(dhcp::LEASE_TIME_REMAINING)),
        Value::Integer(600)
    );
    // Its DHCPv6 client: the DUID, the server's, the options received.
    use dm_core::catalog::dhcpv6_client as dhcp6;
    f.network.set_dhcpv6_leases(vec![dm_platform::Dhcp6Lease {
        interface: "eth0".into(),
        client_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1],
        server_id: vec![0, 1, 0, 1, 9],
        dns_servers: vec!["2001:db8::53".parse().unwrap()],
        ..dm_platform::Dhcp6Lease::default()
    }]);
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(synced.warnings.is_empty(), "{:?}", synced.warnings);
    let c6 = |r| Path::resource(dhcp6::ID, InstanceId(2), r);
    assert_eq!(f.tree.instances(dhcp6::ID).unwrap(), [InstanceId(2)]);
    assert_eq!(
        value(&f.tree, c6(dhcp6::DUID)),
        Value::Opaque(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1])
    );
    assert_eq!(
        multiple(&f.tree, c6(dhcp6::SERVER_DUID)),
        [Value::Opaque(vec![0, 1, 0, 1, 9])]
    );
    assert_eq!(
        multiple(&f.tree, c6(dhcp6::RECEIVED_OPTION_TAG)),
        [Value::Unsigned(2), Value::Unsigned(23)]
    );
    // A server DUID past TR-181's 130 bytes (it comes from the network)
    // is left out with a warning; the rest of the row is kept.
    f.network.set_dhcpv6_leases(vec![dm_platform::Dhcp6Lease {
        interface: "eth0".into(),
        client_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 2],
        server_id: vec![7; 200],
        ..dm_platform::Dhcp6Lease::default()
    }]);
    let synced = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert_eq!(synced.warnings.len(), 1, "{:?}", synced.warnings);
    assert!(multiple(&f.tree, c6(dhcp6::SERVER_DUID)).is_empty());
    // As option 2, whose values may be longer, it is there.
    assert_eq!(
        multiple(&f.tree, c6(dhcp6::RECEIVED_OPTION_TAG)),
        [Value::Unsigned(2)]
    );
    assert_eq!(
        value(&f.tree, c6(dhcp6::DUID)),
        Value::Opaque(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 2])
    );
    // Gone with its lease.
    f.network.set_dhcpv6_leases(Vec::new());
    let _ = dm_objects::sync_platform(&mut f.tree, &f.platform);
    assert!(f.tree.instances(dhcp6::ID).unwrap().is_empty());

    // Its counters, read at each read.
    let sent = i(2, ip_interface::STATS_BYTES_SENT);
    let first = value(&f.tree, sent);
    assert!(value(&f.tree, sent) != first);

    assert_eq!(saves.load(std::sync::atomic::Ordering::SeqCst), 0);
    // And never in a snapshot.
    assert!(
        !f.tree.snapshot().objects.iter().any(|o| [
            ethernet::ID,
            ipv4_forwarding::ID,
            ip_interface::ID
        ]
        .contains(&o.object))
    );

    // A client may not add or remove the host's facts.
    let refused = f
        .tree
        .begin(Origin::Acs)
        .create(ethernet::ID, Some(InstanceId(9)))
        .commit()
        .unwrap_err();
    assert!(
        matches!(refused.faults[..], [Error::NotSupported(_)]),
        "{refused:?}"
    );
    let refused = f
        .tree
        .begin(Origin::Acs)
        .delete(ethernet::ID, InstanceId(2))
        .commit()
        .unwrap_err();
    assert!(
        !refused.faults.is_empty()
            && refused
                .faults
                .iter()
                .all(|f| matches!(f, Error::NotSupported(_))),
        "{refused:?}"
    );
}

/// A state saved while Device.IP.Interface.1's addresses were /4's (its
/// IP Addresses, then resources 1005 and 1006): which row of the host's
/// interface table they meant is not known, so the ACS's attributes on
/// them are dropped with a warning each, and so are the values held;
/// everything else stays.
#[test]
fn an_older_states_interface_1_attributes_are_dropped_with_a_warning() {
    let at = |r| Path::resource(connectivity::ID, InstanceId(0), r);
    let first = at(connectivity::IP_ADDRESSES);
    let retired = at(dm_core::ResourceId(1006));
    let other = at(connectivity::APN);
    let mut snapshot = dm_core::Snapshot {
        notification: vec![
            (first, dm_core::Notification::Active),
            (retired, dm_core::Notification::Active),
            (other, dm_core::Notification::Passive),
        ],
        access_list: vec![(first, vec!["Subscriber".into()])],
        objects: vec![dm_core::snapshot::ObjectState {
            object: connectivity::ID,
            next_instance: 1,
            instances: vec![dm_core::snapshot::InstanceState {
                instance: InstanceId(0),
                values: vec![
                    (
                        dm_core::ResourceId(1005),
                        ResourceValue::Multiple(Default::default()),
                    ),
                    (
                        connectivity::APN,
                        ResourceValue::Multiple(Default::default()),
                    ),
                ],
            }],
        }],
        ..dm_core::Snapshot::default()
    };
    let warnings = dm_objects::upgrade(&mut snapshot);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].contains("Device.IP.Interface.{i}"),
        "{warnings:?}"
    );
    assert_eq!(
        snapshot.notification,
        [(other, dm_core::Notification::Passive)]
    );
    assert!(snapshot.access_list.is_empty());
    let kept: Vec<_> = snapshot.objects[0].instances[0]
        .values
        .iter()
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(kept, [connectivity::APN]);
}

/// The host's temperature sensors (a sysfs tree of the test's): one row
/// each, named as the kernel names them; the value is read at each read,
/// and a read that fails answers the last good one (TR-181), or -274
/// before there was one.
#[test]
fn temperature_sensors_are_the_hosts() {
    use dm_core::catalog::temperature_sensor as sensor;
    let sys = tempfile::tempdir().unwrap();
    let zone = sys.path().join("class/thermal/thermal_zone0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("type"), "cpu-thermal\n").unwrap();
    std::fs::write(zone.join("temp"), "47600\n").unwrap();
    let broken = sys.path().join("class/thermal/thermal_zone1");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("type"), "board\n").unwrap();
    std::fs::write(broken.join("temp"), "n/a\n").unwrap();
    let f = fixture();
    let platform = Platform {
        host: Arc::new(dm_platform::linux::LinuxHost::with_sys(
            "/proc",
            sys.path().to_str().unwrap(),
        )),
        ..f.platform.clone()
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    let synced = dm_objects::sync_platform(&mut tree, &platform);
    assert!(synced.warnings.is_empty(), "{:?}", synced.warnings);
    let at = |i, r| Path::resource(sensor::ID, InstanceId(i), r);
    assert_eq!(
        tree.instances(sensor::ID).unwrap(),
        [InstanceId(1), InstanceId(2)]
    );
    assert_eq!(
        value(&tree, at(1, sensor::NAME)),
        Value::String("cpu-thermal".into())
    );
    assert_eq!(value(&tree, at(1, sensor::VALUE)), Value::Integer(48));
    assert!(matches!(value(&tree, at(1, sensor::LAST_UPDATE)), Value::DateTime(t) if t > 0));
    // No good reading yet.
    assert_eq!(value(&tree, at(2, sensor::VALUE)), Value::Integer(-274));
    assert_eq!(
        value(&tree, at(2, sensor::LAST_UPDATE)),
        Value::DateTime(-62_135_596_800)
    );
    // The reading moves; then it fails: the last good one stays.
    std::fs::write(zone.join("temp"), "52400\n").unwrap();
    assert_eq!(value(&tree, at(1, sensor::VALUE)), Value::Integer(52));
    std::fs::write(zone.join("temp"), "\n").unwrap();
    assert_eq!(value(&tree, at(1, sensor::VALUE)), Value::Integer(52));
    // Nothing to write when nothing changed.
    let changes = tree.subscribe(16);
    let _ = dm_objects::sync_platform(&mut tree, &platform);
    assert!(changes.drain().is_empty());
}

/// Connectivity Statistics (/7) over a kernel of the test's (its default
/// route and counters in files): Tx/Rx Data are the bearer's kB since
/// Start, frozen at Stop or at the end of the Collection Period.
#[test]
fn connectivity_statistics_count_the_bearers_data_between_start_and_stop() {
    use dm_core::catalog::connectivity_statistics as stats;
    let root = tempfile::tempdir().unwrap();
    let proc = root.path().join("proc");
    let sys = root.path().join("sys");
    std::fs::create_dir_all(proc.join("net")).unwrap();
    // A default route via eth0 (gateway 192.0.2.1).
    std::fs::write(
        proc.join("net/route"),
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n",
    )
    .unwrap();
    let counters = sys.join("class/net/eth0/statistics");
    std::fs::create_dir_all(&counters).unwrap();
    let traffic = |sent: u64, received: u64| {
        std::fs::write(counters.join("tx_bytes"), format!("{sent}\n")).unwrap();
        std::fs::write(counters.join("rx_bytes"), format!("{received}\n")).unwrap();
    };
    for other in [
        "tx_packets",
        "rx_packets",
        "tx_errors",
        "rx_errors",
        "tx_dropped",
        "rx_dropped",
        "multicast",
    ] {
        std::fs::write(counters.join(other), "0\n").unwrap();
    }
    traffic(10_000, 50_000);
    let network = Arc::new(dm_platform::linux::network::LinuxNetwork::new(
        proc.to_str().unwrap(),
        sys.to_str().unwrap(),
        root.path().join("resolv.conf").to_str().unwrap(),
    ));
    assert_eq!(network.state().interface.as_deref(), Some("eth0"));
    let f = fixture();
    let platform = Platform {
        network,
        ..f.platform.clone()
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    let at = |r| Path::resource(stats::ID, InstanceId(0), r);
    let server = Origin::Server(101);
    // Nothing collected before Start.
    assert_eq!(value(&tree, at(stats::TX_DATA)), Value::Integer(0));
    tree.execute(server, &at(stats::START), "").unwrap();
    traffic(10_000 + 5 * 1024, 50_000 + 20 * 1024 + 1000);
    assert_eq!(value(&tree, at(stats::TX_DATA)), Value::Integer(5));
    assert_eq!(value(&tree, at(stats::RX_DATA)), Value::Integer(20));
    tree.execute(server, &at(stats::STOP), "").unwrap();
    traffic(900_000, 900_000);
    assert_eq!(value(&tree, at(stats::TX_DATA)), Value::Integer(5));

    // A period: collection stops by itself once it is over.
    let refused = tree
        .begin(server)
        .set(at(stats::COLLECTION_PERIOD), Value::Integer(-1))
        .commit();
    assert!(refused.is_err(), "{refused:?}");
    tree.begin(server)
        .set(at(stats::COLLECTION_PERIOD), Value::Integer(1))
        .commit()
        .unwrap();
    tree.execute(server, &at(stats::START), "").unwrap();
    traffic(900_000 + 3 * 1024, 900_000);
    // No event says the period ended: look until the figures stop
    // following the counters.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 900_000 + 3 * 1024;
    loop {
        sent += 1024;
        traffic(sent, 900_000);
        if value(&tree, at(stats::TX_DATA)) != Value::Integer(((sent - 900_000) / 1024) as i64) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the collection never stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let frozen = value(&tree, at(stats::TX_DATA));
    traffic(sent + 100 * 1024, 900_000);
    assert_eq!(value(&tree, at(stats::TX_DATA)), frozen);
}

/// /3's power resources from the kernel's power supplies (a sysfs tree
/// of the test's): mains and a battery discharging at a low level; a host
/// with no supply has none of these resources.
#[test]
fn the_device_reports_the_hosts_power_supplies() {
    let sys = tempfile::tempdir().unwrap();
    let supply = |name: &str, files: &[(&str, &str)]| {
        let dir = sys.path().join("class/power_supply").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), format!("{text}\n")).unwrap();
        }
    };
    supply("AC", &[("type", "Mains"), ("online", "1")]);
    supply(
        "BAT0",
        &[
            ("type", "Battery"),
            ("capacity", "12"),
            ("capacity_level", "Low"),
            ("status", "Discharging"),
            ("voltage_now", "11400000"),
            ("current_now", "1500000"),
        ],
    );
    let f = fixture();
    let platform = Platform {
        host: Arc::new(dm_platform::linux::LinuxHost::with_sys(
            "/proc",
            sys.path().to_str().unwrap(),
        )),
        ..f.platform.clone()
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    let d = |r| Path::resource(device::ID, InstanceId(0), r);
    assert_eq!(
        multiple(&tree, d(device::AVAILABLE_POWER_SOURCES)),
        [Value::Integer(6), Value::Integer(1)]
    );
    assert_eq!(
        tree.read(Origin::Server(101), &d(device::POWER_SOURCE_VOLTAGE))
            .unwrap(),
        ResourceValue::Multiple([(1, Value::Integer(11_400))].into_iter().collect())
    );
    assert_eq!(value(&tree, d(device::BATTERY_LEVEL)), Value::Integer(12));
    assert_eq!(value(&tree, d(device::BATTERY_STATUS)), Value::Integer(4));
    // The fixture's host has no supply: no power resources at all.
    assert!(
        f.tree
            .read(Origin::Server(101), &d(device::BATTERY_LEVEL))
            .is_err()
    );
    assert!(
        f.tree
            .read(Origin::Server(101), &d(device::AVAILABLE_POWER_SOURCES))
            .is_err()
    );
}

/// TR-181 DiagnosticsState rules: a client writes only Requested, which
/// clears the last results; an input written without it sets the state
/// back to None; the agent writes results and final states.
#[test]
fn diagnostics_state_follows_tr_181s_rules() {
    use dm_core::catalog::ip_ping as ping;
    let mut f = fixture();
    let at = |r| Path::resource(ping::ID, InstanceId(0), r);
    assert_eq!(
        value(&f.tree, at(ping::DIAGNOSTICS_STATE)),
        Value::String("None".into())
    );
    let refused = f
        .tree
        .begin(Origin::Acs)
        .set(
            at(ping::DIAGNOSTICS_STATE),
            Value::String("Complete".into()),
        )
        .commit();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("only write Requested")),
        "{refused:?}"
    );
    f.tree
        .begin(Origin::Acs)
        .set(at(ping::HOST), Value::String("192.0.2.1".into()))
        .set(
            at(ping::DIAGNOSTICS_STATE),
            Value::String("Requested".into()),
        )
        .commit()
        .unwrap();
    assert_eq!(
        value(&f.tree, at(ping::DIAGNOSTICS_STATE)),
        Value::String("Requested".into())
    );
    // The agent's results.
    f.tree
        .begin(Origin::Agent)
        .set(at(ping::SUCCESS_COUNT), Value::Unsigned(3))
        .set(
            at(ping::DIAGNOSTICS_STATE),
            Value::String("Complete".into()),
        )
        .commit()
        .unwrap();
    // An input alone: back to None, results kept until the next request.
    f.tree
        .begin(Origin::Acs)
        .set(at(ping::NUMBER_OF_REPETITIONS), Value::Unsigned(9))
        .commit()
        .unwrap();
    assert_eq!(
        value(&f.tree, at(ping::DIAGNOSTICS_STATE)),
        Value::String("None".into())
    );
    assert_eq!(value(&f.tree, at(ping::SUCCESS_COUNT)), Value::Unsigned(3));
    // Requested again: the old results go.
    f.tree
        .begin(Origin::Acs)
        .set(
            at(ping::DIAGNOSTICS_STATE),
            Value::String("Requested".into()),
        )
        .commit()
        .unwrap();
    assert_eq!(value(&f.tree, at(ping::SUCCESS_COUNT)), Value::Unsigned(0));
    // Results are not a client's to write.
    assert!(
        f.tree
            .begin(Origin::Acs)
            .set(at(ping::SUCCESS_COUNT), Value::Unsigned(1))
            .commit()
            .is_err()
    );
    // ServerSelection by UDP Echo is refused with its reason.
    use dm_core::catalog::server_selection as selection;
    let refused = f
        .tree
        .begin(Origin::Acs)
        .set(
            Path::resource(selection::ID, InstanceId(0), selection::PROTOCOL),
            Value::String("UDP Echo".into()),
        )
        .commit();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("only ICMP")),
        "{refused:?}"
    );
    // Throughput tests take what the agent runs: http://, file-based, up
    // to the connections announced.
    use dm_core::catalog::download_diagnostics as download;
    let write = |tree: &mut Tree, r, v: Value| {
        tree.begin(Origin::Acs)
            .set(Path::resource(download::ID, InstanceId(0), r), v)
            .commit()
    };
    for (resource, value) in [
        (download::DOWNLOAD_URL, Value::String("https://x/f".into())),
        (download::TIME_BASED_TEST_DURATION, Value::Unsigned(10)),
        (download::NUMBER_OF_CONNECTIONS, Value::Unsigned(5)),
    ] {
        assert!(
            write(&mut f.tree, resource, value.clone()).is_err(),
            "{value:?}"
        );
    }
    write(
        &mut f.tree,
        download::DOWNLOAD_URL,
        Value::String("HTTP://x/f".into()),
    )
    .unwrap();
    write(
        &mut f.tree,
        download::NUMBER_OF_CONNECTIONS,
        Value::Unsigned(4),
    )
    .unwrap();
}

/// USP's MTP rows follow the configuration: an MQTT one, then a
/// WebSocket one after a restart with another configuration, leaves no
/// MQTT topic or client behind on the (saved) controller row; a
/// subscription made by any origin gets its CreationDate, from which its
/// TimeToLive counts on the host's clock.
#[test]
fn usp_mtp_rows_follow_the_configuration_and_time_to_live_the_hosts_clock() {
    use dm_core::catalog::{mqtt_client, usp_controller, usp_subscription};
    use dm_objects::local_agent::{self, MtpFacts};
    let mut f = fixture();
    let roles: [local_agent::Role; 1] = [("Full Access", &[])];
    local_agent::provision(
        &mut f.tree,
        "os::x",
        &[("self::c".to_owned(), Default::default())],
        &roles,
    )
    .unwrap();
    local_agent::provision_mtp(
        &mut f.tree,
        &MtpFacts::Mqtt {
            broker_host: "b".into(),
            broker_port: 1883,
            tls: false,
            client_id: "c".into(),
            username: String::new(),
            keep_alive: 60,
            agent_topic: "usp/a".into(),
            controller_topic: "usp/c".into(),
        },
    )
    .unwrap();
    let c = |r| Path::resource(usp_controller::ID, InstanceId(1), r);
    assert_eq!(
        multiple(&f.tree, c(usp_controller::MTP_MQTT_TOPIC)),
        [Value::String("usp/c".into())]
    );
    local_agent::provision_mtp(
        &mut f.tree,
        &MtpFacts::WebSocket {
            host: "h".into(),
            port: 8080,
            path: "/usp".into(),
            tls: false,
            keep_alive: 30,
        },
    )
    .unwrap();
    assert!(multiple(&f.tree, c(usp_controller::MTP_MQTT_TOPIC)).is_empty());
    assert!(multiple(&f.tree, c(usp_controller::MTP_MQTT_REFERENCE)).is_empty());
    assert_eq!(
        multiple(&f.tree, c(usp_controller::MTP_WEB_SOCKET_PORT)),
        [Value::Unsigned(8080)]
    );
    assert!(f.tree.instances(mqtt_client::ID).unwrap().is_empty());

    // A subscription made by the CLI, with a TimeToLive: dated by the
    // host's clock (the fixture's, fixed), so it has 60 s to go.
    let s = |r| Path::resource(usp_subscription::ID, InstanceId(1), r);
    f.tree
        .begin(Origin::Cli)
        .create(usp_subscription::ID, Some(InstanceId(1)))
        .set(s(usp_subscription::TIME_TO_LIVE), Value::Unsigned(60))
        .commit()
        .unwrap();
    assert!(matches!(
        value(&f.tree, s(usp_subscription::CREATION_DATE)),
        Value::DateTime(t) if t > 0
    ));
    assert_eq!(
        local_agent::expired_subscriptions(&f.tree),
        (Vec::new(), Some(60))
    );
}
