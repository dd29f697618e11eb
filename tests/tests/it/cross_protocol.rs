//! One tree, two protocols: a write made through one adapter's mapping is
//! published once, with its origin, and every other adapter can place it in
//! its own namespace.

use dm_core::{ChangeKind, Origin, ResourceValue, Value};
use dm_cwmp::mapping::Resolver;
use dm_lwm2m::mapping::{self as lwm2m, Lwm2mPath};

#[test]
fn an_lwm2m_write_is_seen_under_its_tr181_path() {
    let (platform, _) = dm_tests::platform();
    let mut tree = dm_tests::tree(&platform);
    let cwmp_view = tree.subscribe(16);
    let lwm2m_view = tree.subscribe(16);

    // The LwM2M server 101 writes /12/1/5 (SSID).
    let path: Lwm2mPath = "/12/1/5".parse().unwrap();
    let core = lwm2m::to_core(&path).unwrap();
    tree.begin(Origin::Server(101))
        .set(core, Value::String("guest".into()))
        .commit()
        .unwrap();

    // The CWMP side sees exactly one change and names it in TR-181.
    let changes = cwmp_view.drain();
    assert_eq!(changes.len(), 1);
    let change = &changes[0];
    assert_eq!(change.origin, Origin::Server(101));
    let names: Vec<String> = Resolver::global()
        .parameters_for(change.path.object_id(), change.path.resource_id().unwrap())
        .iter()
        .map(|p| p.render(change.path.instance_id().unwrap(), change.path.index()))
        .collect();
    assert_eq!(names, ["Device.WiFi.SSID.1.SSID"]);
    assert_eq!(
        change.kind,
        ChangeKind::Value(ResourceValue::Single(Value::String("guest".into())))
    );
    // The LwM2M side sees it too, and can tell it is its own server's write.
    let own = lwm2m_view.drain();
    assert_eq!(own.len(), 1);
    assert_eq!(lwm2m::from_core(&own[0].path), Some(path));
}

#[test]
fn an_acs_write_is_seen_under_its_lwm2m_path() {
    let (platform, _) = dm_tests::platform();
    let mut tree = dm_tests::tree(&platform);
    let lwm2m_view = tree.subscribe(16);
    let resolved = Resolver::global()
        .resolve("Device.Cellular.AccessPoint.1.APN")
        .unwrap();
    tree.begin(Origin::Acs)
        .set(resolved.path, Value::String("iot.example".into()))
        .commit()
        .unwrap();
    let changes = lwm2m_view.drain();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].origin, Origin::Acs);
    assert_eq!(
        lwm2m::from_core(&changes[0].path).map(|p| p.to_string()),
        Some("/11/1/1".to_owned())
    );
}

#[test]
fn a_platform_change_reaches_both_sides_once() {
    let (platform, network) = dm_tests::platform();
    let mut tree = dm_tests::tree(&platform);
    let a = tree.subscribe(16);
    let b = tree.subscribe(16);
    let mut radio = dm_platform::Network::radio(network.as_ref());
    radio.signal_dbm = Some(-99);
    network.set_radio(radio);
    let _ = dm_objects::sync_platform(&mut tree, &platform);
    for view in [a, b] {
        let changes = view.drain();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].origin, Origin::Platform);
        let tr181: Vec<_> = Resolver::global()
            .parameters_for(
                changes[0].path.object_id(),
                changes[0].path.resource_id().unwrap(),
            )
            .iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(tr181, ["Device.Cellular.Interface.1.RSSI"]);
        assert_eq!(
            lwm2m::from_core(&changes[0].path).map(|p| p.to_string()),
            Some("/4/0/2".to_owned())
        );
    }
}
