//! Behaviour of the tree through its public API: transactions, instance
//! numbering, the change stream, attributes and snapshots.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dm_core::catalog::{device, server, wlan};
use dm_core::{
    ChangeKind, Error, Instance, InstanceId, Notification, ObjectHandler, ObjectSchema,
    ObserveAttributes, Origin, Path, ResourceId, ResourceValue, Slot, Snapshot, StateStore, Tree,
    Value,
};

/// WLAN with one object rule: WPA2 (authentication mode 2) needs a key
/// phrase of 8 or more characters.
struct Wlan;

impl ObjectHandler for Wlan {
    fn schema(&self) -> &'static ObjectSchema {
        &wlan::SCHEMA
    }

    fn validate(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        let mode = state.value(wlan::AUTHENTICATION_MODE);
        let phrase = match state.value(wlan::WPA_KEY_PHRASE) {
            Some(Value::String(s)) => s.len(),
            _ => 0,
        };
        if mode == Some(&Value::Integer(2)) && phrase < 8 {
            return Err(Error::Rejected {
                path: Path::resource(wlan::ID, instance, wlan::WPA_KEY_PHRASE),
                reason: "WPA2 needs a key phrase of 8 to 63 characters".into(),
            });
        }
        Ok(())
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let mut instance = Instance::new();
        for resource in wlan::SCHEMA.resources.iter().filter(|r| r.mandatory) {
            instance = instance.with(resource.id, dm_core::tree::default_slot(resource));
        }
        Ok(instance.with(
            wlan::WPA_KEY_PHRASE,
            Slot::Stored(ResourceValue::Single(Value::String(String::new()))),
        ))
    }
}

/// Device with a live uptime-like value and an executable reboot.
struct Device {
    reads: AtomicUsize,
}

impl ObjectHandler for Device {
    fn schema(&self) -> &'static ObjectSchema {
        &device::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(Instance::new()
            .with(device::SERIAL_NUMBER, single(Value::String("SN1".into())))
            .with(device::MEMORY_FREE, Slot::Live)
            .with(device::REBOOT, Slot::Executable)
            .with(
                device::ERROR_CODE,
                Slot::Stored(ResourceValue::Multiple(BTreeMap::new())),
            ))
    }

    fn read(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        _resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(ResourceValue::Single(Value::Integer(1000 + n as i64)))
    }

    fn execute(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        _resource: ResourceId,
        _arguments: &str,
        _state: &Instance,
    ) -> Result<(), Error> {
        Ok(())
    }
}

struct Server;

impl ObjectHandler for Server {
    fn schema(&self) -> &'static ObjectSchema {
        &server::SCHEMA
    }
}

fn single(value: Value) -> Slot {
    Slot::Stored(ResourceValue::Single(value))
}

/// A store that keeps every saved snapshot and can be told to fail.
#[derive(Clone, Default)]
struct MemoryStore {
    saved: Arc<Mutex<Vec<Snapshot>>>,
    fail: Arc<Mutex<bool>>,
}

impl StateStore for MemoryStore {
    fn save(&mut self, snapshot: &Snapshot) -> Result<(), dm_core::SaveError> {
        if *self.fail.lock().unwrap() {
            return Err("disk full".into());
        }
        self.saved.lock().unwrap().push(snapshot.clone());
        Ok(())
    }
}

fn tree() -> Tree {
    let mut tree = Tree::new();
    tree.register(Box::new(Wlan)).unwrap();
    tree.register(Box::new(Device {
        reads: AtomicUsize::new(0),
    }))
    .unwrap();
    tree.register(Box::new(Server)).unwrap();
    tree.begin(Origin::Agent)
        .create(device::ID, None)
        .commit()
        .unwrap();
    tree
}

fn ssid(instance: u16) -> Path {
    Path::resource(wlan::ID, InstanceId(instance), wlan::SSID)
}

fn read(tree: &Tree, path: Path) -> Value {
    match tree.read(Origin::Acs, &path).unwrap() {
        ResourceValue::Single(v) => v,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn single_instance_object_lives_at_zero_and_multi_instance_from_one() {
    let mut tree = tree();
    assert_eq!(tree.instances(device::ID).unwrap(), vec![InstanceId(0)]);
    let committed = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(
        committed.created,
        vec![Path::instance(wlan::ID, InstanceId(1))]
    );
    // A client cannot add a second instance of a single-instance object.
    let err = tree
        .begin(Origin::Acs)
        .create(device::ID, None)
        .commit()
        .unwrap_err();
    assert_eq!(err.faults, vec![Error::FixedInstances(device::ID)]);
}

#[test]
fn transaction_rolls_back_when_validate_fails() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let changes = tree.subscribe(16);
    let mut tx = tree.begin(Origin::Acs);
    tx.set(ssid(1), Value::String("home".into()));
    tx.set(
        Path::resource(wlan::ID, InstanceId(1), wlan::AUTHENTICATION_MODE),
        Value::Integer(2),
    );
    tx.set(
        Path::resource(wlan::ID, InstanceId(1), wlan::WPA_KEY_PHRASE),
        Value::String("short".into()),
    );
    let err = tx.commit().unwrap_err();
    assert!(matches!(&err.faults[..], [Error::Rejected { .. }]), "{err}");
    // Nothing was applied, nothing published.
    assert_eq!(read(&tree, ssid(1)), Value::String(String::new()));
    assert!(changes.drain().is_empty());
}

#[test]
fn transaction_reports_every_fault_and_applies_nothing() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let mut tx = tree.begin(Origin::Acs);
    tx.set(ssid(1), Value::String("fine".into()));
    tx.set(ssid(1).without_index(), Value::Integer(3)); // wrong type
    tx.set(
        Path::resource(wlan::ID, InstanceId(1), wlan::STATUS),
        Value::Integer(1),
    ); // read-only
    tx.set(ssid(9), Value::String("x".into())); // no such instance
    tx.set(
        Path::resource(wlan::ID, InstanceId(1), wlan::CHANNEL),
        Value::Integer(300),
    ); // out of range 0..255
    let err = tx.commit().unwrap_err();
    assert_eq!(err.faults.len(), 4, "{err}");
    assert!(matches!(err.faults[0], Error::InvalidValue { .. }));
    assert!(matches!(err.faults[1], Error::NotWritable(_)));
    assert!(matches!(err.faults[2], Error::InstanceNotFound(_)));
    assert!(matches!(err.faults[3], Error::InvalidValue { .. }));
    assert_eq!(read(&tree, ssid(1)), Value::String(String::new()));
}

#[test]
fn platform_may_set_read_only_values_clients_may_not() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let status = Path::resource(wlan::ID, InstanceId(1), wlan::STATUS);
    assert!(
        tree.begin(Origin::Server(1))
            .set(status, Value::Integer(1))
            .commit()
            .is_err()
    );
    tree.begin(Origin::Platform)
        .set(status, Value::Integer(1))
        .commit()
        .unwrap();
    assert_eq!(read(&tree, status), Value::Integer(1));
}

/// What any management client writes must be reportable by every
/// protocol: a string XML 1.0 cannot carry is refused for all of them (a
/// value error, CWMP 9007 / LwM2M 4.00); the platform reports facts as
/// they are and the encoders make them safe.
#[test]
fn clients_cannot_store_characters_xml_cannot_carry() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    for origin in [
        Origin::Acs,
        Origin::Server(1),
        Origin::Cli,
        Origin::Bootstrap,
    ] {
        for bad in ["a\u{0}b", "\u{7}", "x\u{FFFF}"] {
            let error = tree
                .begin(origin)
                .set(ssid(1), Value::String(bad.into()))
                .commit()
                .unwrap_err();
            assert!(
                matches!(
                    error.faults[..],
                    [Error::InvalidValue {
                        source: dm_core::ValueError::Character { .. },
                        ..
                    }]
                ),
                "{origin} {bad:?}: {error:?}"
            );
        }
    }
    assert_eq!(read(&tree, ssid(1)), Value::String(String::new()));
    tree.begin(Origin::Acs)
        .set(ssid(1), Value::String("tab\there\r\n".into()))
        .commit()
        .unwrap();
    tree.begin(Origin::Platform)
        .set(ssid(1), Value::String("\u{1}raw".into()))
        .commit()
        .unwrap();
    assert_eq!(read(&tree, ssid(1)), Value::String("\u{1}raw".into()));
}

#[test]
fn instance_numbers_are_not_reused() {
    let mut tree = tree();
    for _ in 0..3 {
        tree.begin(Origin::Acs)
            .create(wlan::ID, None)
            .commit()
            .unwrap();
    }
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(3))
        .commit()
        .unwrap();
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(2))
        .commit()
        .unwrap();
    let next = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(next.created, vec![Path::instance(wlan::ID, InstanceId(4))]);
    // An explicit number moves the counter past it.
    tree.begin(Origin::Server(1))
        .create(wlan::ID, Some(InstanceId(10)))
        .commit()
        .unwrap();
    let next = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(next.created, vec![Path::instance(wlan::ID, InstanceId(11))]);
    // Two creations in one transaction get distinct numbers.
    let both = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(
        both.created,
        vec![
            Path::instance(wlan::ID, InstanceId(12)),
            Path::instance(wlan::ID, InstanceId(13))
        ]
    );
    let err = tree
        .begin(Origin::Acs)
        .create(wlan::ID, Some(InstanceId(4)))
        .commit()
        .unwrap_err();
    assert_eq!(
        err.faults,
        vec![Error::InstanceExists(Path::instance(
            wlan::ID,
            InstanceId(4)
        ))]
    );
}

#[test]
fn numbers_wrap_to_the_lowest_gap_only_when_the_space_is_exhausted() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    tree.begin(Origin::Acs)
        .create(wlan::ID, Some(InstanceId::MAX))
        .commit()
        .unwrap();
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(1))
        .commit()
        .unwrap();
    // 65534 was the last number: the next free one is the lowest gap.
    let next = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(next.created, vec![Path::instance(wlan::ID, InstanceId(1))]);
    let next = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(next.created, vec![Path::instance(wlan::ID, InstanceId(2))]);
}

#[test]
fn a_change_is_delivered_once_to_each_subscriber_with_its_origin() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let cwmp = tree.subscribe(16);
    let lwm2m = tree.subscribe(16);
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    lwm2m.set_waker(move || {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    tree.begin(Origin::Server(7))
        .set(ssid(1), Value::String("cafe".into()))
        .commit()
        .unwrap();
    // Writing the same value again is not a change.
    tree.begin(Origin::Acs)
        .set(ssid(1), Value::String("cafe".into()))
        .commit()
        .unwrap();
    for subscriber in [&cwmp, &lwm2m] {
        let changes = subscriber.drain();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].origin, Origin::Server(7));
        assert_eq!(changes[0].path, ssid(1));
        assert_eq!(
            changes[0].kind,
            ChangeKind::Value(ResourceValue::Single(Value::String("cafe".into())))
        );
        assert!(subscriber.drain().is_empty());
    }
    assert_eq!(wakes.load(Ordering::Relaxed), 1);
}

#[test]
fn changes_keep_commit_order_and_instance_events() {
    let mut tree = tree();
    let changes = tree.subscribe(16);
    tree.begin(Origin::Cli)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    tree.begin(Origin::Platform)
        .set(ssid(1), Value::String("a".into()))
        .commit()
        .unwrap();
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(1))
        .commit()
        .unwrap();
    let kinds: Vec<_> = changes
        .drain()
        .iter()
        .map(|c| (c.sequence, c.origin, c.kind.clone()))
        .collect();
    assert!(kinds.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    let summary: Vec<_> = kinds.into_iter().map(|(_, o, k)| (o, k)).collect();
    assert_eq!(
        summary,
        vec![
            (Origin::Cli, ChangeKind::Created),
            (
                Origin::Platform,
                ChangeKind::Value(ResourceValue::Single(Value::String("a".into())))
            ),
            (Origin::Acs, ChangeKind::Deleted),
        ]
    );
}

#[test]
fn a_slow_subscriber_learns_it_lagged() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let slow = tree.subscribe(2);
    for name in ["a", "b", "c", "d"] {
        tree.begin(Origin::Acs)
            .set(ssid(1), Value::String(name.into()))
            .commit()
            .unwrap();
    }
    assert_eq!(slow.take_lagged(), 2);
    assert_eq!(slow.drain().len(), 2);
    assert_eq!(slow.take_lagged(), 0);
}

#[test]
fn dropped_subscription_is_forgotten() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    drop(tree.subscribe(4));
    let kept = tree.subscribe(4);
    tree.begin(Origin::Acs)
        .set(ssid(1), Value::String("x".into()))
        .commit()
        .unwrap();
    assert_eq!(kept.drain().len(), 1);
}

#[test]
fn live_values_executables_and_write_only() {
    let mut tree = tree();
    let memory = Path::resource(device::ID, InstanceId(0), device::MEMORY_FREE);
    let first = read(&tree, memory);
    assert_ne!(first, read(&tree, memory), "live values are read each time");
    let reboot = Path::resource(device::ID, InstanceId(0), device::REBOOT);
    assert_eq!(
        tree.read(Origin::Acs, &reboot),
        Err(Error::NotReadable(reboot))
    );
    let changes = tree.subscribe(4);
    tree.execute(Origin::Server(1), &reboot, "").unwrap();
    let executed = changes.drain();
    assert_eq!(executed[0].kind, ChangeKind::Executed(String::new()));
    assert_eq!(executed[0].origin, Origin::Server(1));
    let serial = Path::resource(device::ID, InstanceId(0), device::SERIAL_NUMBER);
    assert_eq!(
        tree.execute(Origin::Acs, &serial, ""),
        Err(Error::NotExecutable(serial))
    );
    // Write-only values are not readable by clients, but the agent sees them.
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let phrase = Path::resource(wlan::ID, InstanceId(1), wlan::WPA_KEY_PHRASE);
    tree.begin(Origin::Acs)
        .set(phrase, Value::String("secret-phrase".into()))
        .commit()
        .unwrap();
    assert_eq!(
        tree.read(Origin::Acs, &phrase),
        Err(Error::NotReadable(phrase))
    );
    assert!(tree.read(Origin::Agent, &phrase).is_ok());
    let mut walked = Vec::new();
    tree.walk(
        Origin::Acs,
        &Path::instance(wlan::ID, InstanceId(1)),
        &mut |p, _| walked.push(p),
    )
    .unwrap();
    assert!(!walked.contains(&phrase));
    assert!(walked.contains(&ssid(1)));
}

#[test]
fn multiple_resources_by_index_and_whole() {
    let mut tree = tree();
    let errors = Path::resource(device::ID, InstanceId(0), device::ERROR_CODE);
    let one = Path::resource_instance(device::ID, InstanceId(0), device::ERROR_CODE, 3);
    tree.begin(Origin::Platform)
        .set(one, Value::Integer(5))
        .commit()
        .unwrap();
    assert_eq!(
        tree.read(Origin::Acs, &one).unwrap(),
        ResourceValue::Single(Value::Integer(5))
    );
    let mut all = BTreeMap::new();
    all.insert(0, Value::Integer(1));
    all.insert(1, Value::Integer(2));
    tree.begin(Origin::Platform)
        .set_multiple(errors, all.clone())
        .commit()
        .unwrap();
    assert_eq!(
        tree.read(Origin::Acs, &errors).unwrap(),
        ResourceValue::Multiple(all)
    );
    assert_eq!(
        tree.read(Origin::Acs, &one),
        Err(Error::ResourceNotFound(one))
    );
}

/// Flash wear: every commit rewrote the state file with two fsyncs, a
/// write that changed nothing and each platform fact (a signal strength)
/// included. Now only durable changes write.
#[test]
fn only_durable_changes_are_saved() {
    let mut tree = tree();
    let store = MemoryStore::default();
    tree.set_store(Box::new(store.clone()));
    let saves = || store.saved.lock().unwrap().len();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(saves(), 1, "a new instance is durable");
    tree.begin(Origin::Acs)
        .set(ssid(1), Value::String("home".into()))
        .commit()
        .unwrap();
    assert_eq!(saves(), 2);
    for _ in 0..200 {
        tree.begin(Origin::Server(1))
            .set(ssid(1), Value::String("home".into()))
            .commit()
            .unwrap();
    }
    assert_eq!(saves(), 2, "200 identical writes, no save");
    let status = Path::resource(wlan::ID, InstanceId(1), wlan::STATUS);
    for dbm in 0..600 {
        tree.begin(Origin::Platform)
            .set(status, Value::Integer(dbm % 3))
            .commit()
            .unwrap();
    }
    assert_eq!(saves(), 2, "platform facts are not written");
    assert_eq!(read(&tree, status), Value::Integer(599 % 3));
    // An instance the platform reports is (its number must stay).
    tree.begin(Origin::Platform)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(saves(), 3);
    // The same pending state again is durable already.
    tree.set_pending_state("x", Some("1".into())).unwrap();
    tree.set_pending_state("x", Some("1".into())).unwrap();
    tree.set_pending_state("y", None).unwrap();
    assert_eq!(saves(), 4);
}

/// Hostile input: 3,000 empty Creates of /12 were accepted, and the state
/// file (written whole) grew with each. A client may fill an object up to
/// the limit, counting what its own transaction creates and deletes; the
/// platform is not held to it.
#[test]
fn clients_create_instances_up_to_the_limit() {
    let mut tree = tree();
    tree.set_instance_limit(3);
    for _ in 0..3 {
        tree.begin(Origin::Server(1))
            .create(wlan::ID, None)
            .commit()
            .unwrap();
    }
    let error = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap_err();
    assert_eq!(
        error.faults,
        [Error::TooManyInstances {
            object: wlan::ID,
            limit: 3
        }]
    );
    // A transaction that deletes one may create one; two is one too many.
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(1))
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert!(
        tree.begin(Origin::Acs)
            .delete(wlan::ID, InstanceId(2))
            .create(wlan::ID, None)
            .create(wlan::ID, None)
            .commit()
            .is_err()
    );
    assert_eq!(tree.instances(wlan::ID).unwrap().len(), 3);
    tree.begin(Origin::Platform)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(tree.instances(wlan::ID).unwrap().len(), 4);
}

#[test]
fn a_failed_save_rolls_the_commit_back() {
    let mut tree = tree();
    let store = MemoryStore::default();
    tree.set_store(Box::new(store.clone()));
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let changes = tree.subscribe(4);
    *store.fail.lock().unwrap() = true;
    let err = tree
        .begin(Origin::Acs)
        .set(ssid(1), Value::String("lost?".into()))
        .create(wlan::ID, None)
        .commit()
        .unwrap_err();
    assert_eq!(err.faults, vec![Error::Storage("disk full".into())]);
    assert_eq!(read(&tree, ssid(1)), Value::String(String::new()));
    assert_eq!(tree.instances(wlan::ID).unwrap(), vec![InstanceId(1)]);
    assert!(changes.drain().is_empty());
    // The instance number the failed transaction took is free again.
    *store.fail.lock().unwrap() = false;
    let next = tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(next.created, vec![Path::instance(wlan::ID, InstanceId(2))]);
    // And a failed attribute save changes nothing either.
    *store.fail.lock().unwrap() = true;
    assert!(
        tree.set_notification(Origin::Acs, &ssid(1), Notification::Active)
            .is_err()
    );
    assert_eq!(tree.attributes().notification(&ssid(1)), Notification::Off);
}

#[test]
fn snapshot_restores_values_numbers_attributes_and_pending_state() {
    let mut tree = tree();
    let store = MemoryStore::default();
    tree.set_store(Box::new(store.clone()));
    for _ in 0..3 {
        tree.begin(Origin::Acs)
            .create(wlan::ID, None)
            .commit()
            .unwrap();
    }
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(2))
        .commit()
        .unwrap();
    tree.begin(Origin::Acs)
        .set(ssid(3), Value::String("kept".into()))
        .commit()
        .unwrap();
    tree.set_notification(Origin::Acs, &ssid(3), Notification::Active)
        .unwrap();
    tree.set_access_list(Origin::Acs, &ssid(3), vec!["Subscriber".into()])
        .unwrap();
    let attrs = ObserveAttributes {
        pmin: Some(5),
        st: Some(1.5),
        ..Default::default()
    };
    tree.set_observe_attributes(101, &Path::instance(wlan::ID, InstanceId(3)), attrs)
        .unwrap();
    tree.set_pending_state("cwmp", Some("{\"events\":[\"1 BOOT\"]}".into()))
        .unwrap();
    let saved = store.saved.lock().unwrap().last().cloned().unwrap();
    assert_eq!(saved, tree.snapshot());

    let mut restored = Tree::new();
    restored.register(Box::new(Wlan)).unwrap();
    restored
        .register(Box::new(Device {
            reads: AtomicUsize::new(0),
        }))
        .unwrap();
    restored.register(Box::new(Server)).unwrap();
    let (warnings, covered) = restored.restore(saved);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(covered.contains(&wlan::ID) && covered.contains(&device::ID));
    assert_eq!(
        restored.instances(wlan::ID).unwrap(),
        vec![InstanceId(1), InstanceId(3)]
    );
    assert_eq!(read(&restored, ssid(3)), Value::String("kept".into()));
    assert_eq!(
        restored.attributes().notification(&ssid(3)),
        Notification::Active
    );
    assert_eq!(restored.attributes().access_list(&ssid(3)), ["Subscriber"]);
    assert_eq!(
        restored.attributes().effective_observe(101, &ssid(3)),
        attrs
    );
    assert_eq!(
        restored.pending_state("cwmp"),
        Some("{\"events\":[\"1 BOOT\"]}")
    );
    // The deleted number stays retired after the restart.
    let next = restored
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    assert_eq!(next.created, vec![Path::instance(wlan::ID, InstanceId(4))]);
    // Live and executable slots come from the handler, not the snapshot.
    let memory = Path::resource(device::ID, InstanceId(0), device::MEMORY_FREE);
    assert!(matches!(
        restored.read(Origin::Acs, &memory),
        Ok(ResourceValue::Single(Value::Integer(_)))
    ));
}

#[test]
fn restore_drops_what_no_longer_fits_with_a_warning() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let mut snapshot = tree.snapshot();
    let wlan_state = snapshot
        .objects
        .iter_mut()
        .find(|o| o.object == wlan::ID)
        .unwrap();
    wlan_state.instances[0].values.push((
        wlan::CHANNEL,
        ResourceValue::Single(Value::String("x".into())),
    ));
    snapshot.objects.push(dm_core::snapshot::ObjectState {
        object: dm_core::ObjectId(4242),
        next_instance: 0,
        instances: Vec::new(),
    });
    let mut restored = Tree::new();
    restored.register(Box::new(Wlan)).unwrap();
    restored.register(Box::new(Server)).unwrap();
    restored
        .register(Box::new(Device {
            reads: AtomicUsize::new(0),
        }))
        .unwrap();
    let (warnings, _) = restored.restore(snapshot);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(restored.instances(wlan::ID).unwrap(), vec![InstanceId(1)]);
}

#[test]
fn deleting_an_instance_forgets_its_attributes() {
    let mut tree = tree();
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    tree.set_notification(Origin::Acs, &ssid(1), Notification::Passive)
        .unwrap();
    tree.begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(1))
        .commit()
        .unwrap();
    assert_eq!(tree.attributes().notification(&ssid(1)), Notification::Off);
    assert!(tree.attributes().notified().next().is_none());
}

/// A WLAN mirrored to a host that may refuse: each host write is
/// recorded when it runs.
struct Mirrored {
    log: Arc<Mutex<Vec<String>>>,
    refuse_ssid: &'static str,
}

impl ObjectHandler for Mirrored {
    fn schema(&self) -> &'static ObjectSchema {
        &wlan::SCHEMA
    }

    fn host_write(
        &self,
        _origin: Origin,
        instance: InstanceId,
        old: Option<&Instance>,
        new: Option<&Instance>,
    ) -> Result<Option<dm_core::HostWrite>, Error> {
        let ssid = |i: Option<&Instance>| match i.and_then(|i| i.value(wlan::SSID)) {
            Some(Value::String(s)) => s.clone(),
            _ => "-".into(),
        };
        let (from, to) = (ssid(old), ssid(new));
        let (log, refuse) = (Arc::clone(&self.log), self.refuse_ssid);
        Ok(Some(dm_core::HostWrite::new(
            format!("{} {from}->{to}", instance.0),
            move || {
                if to == refuse {
                    return Err(Error::Platform(format!("host refuses {refuse}")));
                }
                log.lock()
                    .unwrap()
                    .push(format!("{} {from}->{to}", instance.0));
                // Its undo, from what it did.
                Ok(Some(dm_core::HostWrite::new(
                    format!("{} {to}->{from}", instance.0),
                    move || {
                        log.lock()
                            .unwrap()
                            .push(format!("{} {to}->{from}", instance.0));
                        Ok(None)
                    },
                )))
            },
        )))
    }
}

fn mirrored_tree(log: &Arc<Mutex<Vec<String>>>) -> Tree {
    let mut tree = Tree::new();
    tree.register(Box::new(Mirrored {
        log: Arc::clone(log),
        refuse_ssid: "bad",
    }))
    .unwrap();
    tree
}

fn wlan_ssid(i: u16) -> Path {
    Path::resource(wlan::ID, InstanceId(i), wlan::SSID)
}

#[test]
fn apply_carries_changes_to_the_host_and_a_refusal_aborts_and_carries_back() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tree = mirrored_tree(&log);
    let ssid = wlan_ssid;
    tree.begin(Origin::Cli)
        .create(wlan::ID, Some(InstanceId(1)))
        .create(wlan::ID, Some(InstanceId(2)))
        .commit()
        .unwrap();
    tree.begin(Origin::Cli)
        .set(ssid(1), Value::String("home".into()))
        .commit()
        .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        // Created (nothing before, an empty SSID after), then written.
        ["1 -->", "2 -->", "1 ->home"]
    );
    log.lock().unwrap().clear();
    // Instance 1 is carried over, instance 2 is refused: the transaction
    // fails, 1 is carried back and the tree keeps "home".
    let failed = tree
        .begin(Origin::Cli)
        .set(ssid(1), Value::String("office".into()))
        .set(ssid(2), Value::String("bad".into()))
        .commit();
    assert!(failed.is_err());
    assert_eq!(*log.lock().unwrap(), ["1 home->office", "1 office->home"]);
    assert_eq!(
        tree.read(Origin::Agent, &ssid(1)).unwrap(),
        ResourceValue::Single(Value::String("home".into()))
    );
}

/// The host boundary: a transaction with host writes is prepared under the
/// lock, its writes run outside it (here: not at all yet), and it completes
/// with their outcome. Meanwhile reads see the instance as it was and
/// clients' changes of it are Busy; other instances are not held up.
#[test]
fn a_prepared_transaction_holds_its_instances_until_completed() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tree = mirrored_tree(&log);
    tree.begin(Origin::Cli)
        .create(wlan::ID, Some(InstanceId(1)))
        .create(wlan::ID, Some(InstanceId(2)))
        .commit()
        .unwrap();
    log.lock().unwrap().clear();
    let changes = tree.subscribe(16);
    let mut pending = match tree
        .begin(Origin::Server(1))
        .set(wlan_ssid(1), Value::String("home".into()))
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let work = pending.take_work();
    assert_eq!(work.describe(), "1 ->home");
    assert!(log.lock().unwrap().is_empty(), "nothing ran under the lock");
    assert_eq!(read(&tree, wlan_ssid(1)), Value::String(String::new()));
    let busy = tree
        .begin(Origin::Acs)
        .set(wlan_ssid(1), Value::String("other".into()))
        .commit()
        .unwrap_err();
    assert!(matches!(busy.faults[..], [Error::Busy(_)]), "{busy:?}");
    assert!(
        tree.begin(Origin::Acs)
            .delete(wlan::ID, InstanceId(1))
            .commit()
            .is_err()
    );
    // Another instance goes through meanwhile.
    tree.begin(Origin::Acs)
        .set(wlan_ssid(2), Value::String("guest".into()))
        .commit()
        .unwrap();
    // The write is made (here, on this thread), then the tree takes it.
    let outcome = work.run();
    let completion = tree.complete(pending, outcome);
    completion.result.unwrap();
    assert!(completion.undo.is_none());
    assert_eq!(read(&tree, wlan_ssid(1)), Value::String("home".into()));
    assert!(
        changes
            .drain()
            .iter()
            .any(|c| c.path == wlan_ssid(1) && c.origin == Origin::Server(1))
    );
    // Not busy any more.
    tree.begin(Origin::Acs)
        .set(wlan_ssid(1), Value::String("office".into()))
        .commit()
        .unwrap();
    // A host that refuses: the tree keeps its value.
    let mut pending = match tree
        .begin(Origin::Acs)
        .set(wlan_ssid(1), Value::String("bad".into()))
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let outcome = pending.take_work().run();
    assert!(tree.complete(pending, outcome).result.is_err());
    assert_eq!(read(&tree, wlan_ssid(1)), Value::String("office".into()));
}

/// A prepared transaction whose save fails hands back the work that takes
/// the host writes back.
#[test]
fn a_failed_save_after_host_writes_hands_back_their_undo() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tree = mirrored_tree(&log);
    tree.begin(Origin::Cli)
        .create(wlan::ID, Some(InstanceId(1)))
        .commit()
        .unwrap();
    let store = MemoryStore::default();
    tree.set_store(Box::new(store.clone()));
    log.lock().unwrap().clear();
    let mut pending = match tree
        .begin(Origin::Cli)
        .set(wlan_ssid(1), Value::String("home".into()))
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let outcome = pending.take_work().run();
    *store.fail.lock().unwrap() = true;
    let completion = tree.complete(pending, outcome);
    assert!(completion.result.is_err());
    completion.undo.expect("the host writes' undo").undo();
    assert_eq!(*log.lock().unwrap(), ["1 ->home", "1 home->"]);
    assert_eq!(read(&tree, wlan_ssid(1)), Value::String(String::new()));
}

/// A host write still running when its caller gave up (the driver's
/// limit, an engine replaced) keeps its instance busy until the host
/// thread has ended, its late write taken back: no other client writes
/// the instance meanwhile, only to be overwritten by that undo.
#[test]
fn an_abandoned_host_write_holds_its_instance_until_its_thread_ends() {
    let mut tree = Tree::new();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let (undone_tx, undone) = std::sync::mpsc::channel::<()>();
    struct Slow {
        release: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
        undone: Mutex<std::sync::mpsc::Sender<()>>,
    }
    impl ObjectHandler for Slow {
        fn schema(&self) -> &'static ObjectSchema {
            &wlan::SCHEMA
        }
        fn host_write(
            &self,
            _origin: Origin,
            _instance: InstanceId,
            _old: Option<&Instance>,
            new: Option<&Instance>,
        ) -> Result<Option<dm_core::HostWrite>, Error> {
            if new.is_none_or(|n| n.value(wlan::SSID) == Some(&Value::String(String::new()))) {
                return Ok(None);
            }
            let release = Arc::clone(&self.release);
            let undone = self.undone.lock().unwrap().clone();
            Ok(Some(dm_core::HostWrite::new("slow", move || {
                // The host answers only when the test says so.
                let _ = release.lock().unwrap().recv();
                Ok(Some(dm_core::HostWrite::new("undo", move || {
                    let _ = undone.send(());
                    Ok(None)
                })))
            })))
        }
    }
    tree.register(Box::new(Slow {
        release: release_rx,
        undone: Mutex::new(undone_tx),
    }))
    .unwrap();
    tree.begin(Origin::Cli)
        .create(wlan::ID, Some(InstanceId(1)))
        .commit()
        .unwrap();
    let mut pending = match tree
        .begin(Origin::Acs)
        .set(wlan_ssid(1), Value::String("home".into()))
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let work = pending.take_work();
    // The caller gives up at once; the host thread goes on.
    let outcome = work.run_within(std::time::Duration::ZERO);
    assert!(matches!(outcome, Err(Error::PlatformUnavailable(_))));
    let failed = tree.complete(pending, outcome);
    assert!(failed.result.is_err());
    let busy = tree
        .begin(Origin::Server(1))
        .set(wlan_ssid(1), Value::String("other".into()))
        .commit()
        .unwrap_err();
    assert!(matches!(busy.faults[..], [Error::Busy(_)]), "{busy:?}");
    // The host answers late: its write is taken back, and only then is
    // the instance free (the busy mark goes with the undo, right after
    // it ran).
    release_tx.send(()).unwrap();
    undone
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the late write is taken back");
    let freed = (0..1000).any(|_| {
        if tree
            .begin(Origin::Server(1))
            .set(wlan_ssid(1), Value::String("other".into()))
            .prepare()
            .is_ok_and(|p| matches!(p, dm_core::Prepared::Pending(_)))
        {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        false
    });
    assert!(freed, "the instance is free once the host thread ended");
    assert_eq!(read(&tree, wlan_ssid(1)), Value::String(String::new()));
}

/// A refusal part way takes back what was made, last first.
#[test]
fn a_refused_write_takes_back_the_earlier_ones_last_first() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tree = mirrored_tree(&log);
    tree.begin(Origin::Cli)
        .create(wlan::ID, Some(InstanceId(1)))
        .create(wlan::ID, Some(InstanceId(2)))
        .create(wlan::ID, Some(InstanceId(3)))
        .commit()
        .unwrap();
    log.lock().unwrap().clear();
    let failed = tree
        .begin(Origin::Cli)
        .set(wlan_ssid(1), Value::String("a".into()))
        .set(wlan_ssid(2), Value::String("b".into()))
        .set(wlan_ssid(3), Value::String("bad".into()))
        .commit();
    assert!(failed.is_err());
    assert_eq!(*log.lock().unwrap(), ["1 ->a", "2 ->b", "2 b->", "1 a->"]);
}

/// What changed in an instance while a transaction of it waited for the
/// host (a platform fact, the agent's own bookkeeping) stays when it
/// completes; only what the transaction changed is taken from it.
#[test]
fn a_completed_transaction_keeps_what_changed_meanwhile() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tree = mirrored_tree(&log);
    tree.begin(Origin::Cli)
        .create(wlan::ID, Some(InstanceId(1)))
        .commit()
        .unwrap();
    let channel = Path::resource(wlan::ID, InstanceId(1), wlan::CHANNEL);
    let mut pending = match tree
        .begin(Origin::Acs)
        .set(wlan_ssid(1), Value::String("home".into()))
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    // The platform reports a channel meanwhile (not a client: not Busy).
    tree.begin(Origin::Platform)
        .set(channel, Value::Integer(11))
        .commit()
        .unwrap();
    let outcome = pending.take_work().run();
    tree.complete(pending, outcome).result.unwrap();
    assert_eq!(read(&tree, wlan_ssid(1)), Value::String("home".into()));
    assert_eq!(read(&tree, channel), Value::Integer(11));
}

/// A number reserved by a transaction still waiting for the host counts
/// against the instance limit: pending creates cannot add up past it.
#[test]
fn pending_creates_count_against_the_instance_limit() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tree = mirrored_tree(&log);
    tree.set_instance_limit(2);
    tree.begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let pending = match tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .prepare()
        .unwrap()
    {
        dm_core::Prepared::Pending(pending) => pending,
        other => panic!("{other:?}"),
    };
    let refused = tree
        .begin(Origin::Server(1))
        .create(wlan::ID, None)
        .commit()
        .unwrap_err();
    assert!(
        matches!(refused.faults[..], [Error::TooManyInstances { .. }]),
        "{refused:?}"
    );
    drop(pending);
    // Given up: the number is free again.
    tree.begin(Origin::Server(1))
        .create(wlan::ID, None)
        .commit()
        .unwrap();
}

/// PID and command of each process, or why the host cannot say.
type ProcessList = Result<Vec<(u64, &'static str)>, String>;

/// A table the host gives on demand: its rows, as a test changes them.
struct Processes {
    rows: Arc<Mutex<ProcessList>>,
}

impl ObjectHandler for Processes {
    fn schema(&self) -> &'static ObjectSchema {
        &dm_core::catalog::process::SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(dm_core::catalog::process::SCHEMA
            .resources
            .iter()
            .fold(Instance::new(), |i, r| {
                i.with(r.id, dm_core::tree::default_slot(r))
            }))
    }

    fn host_rows(&self) -> Option<dm_core::HostRows> {
        use dm_core::catalog::process::{COMMAND, PID};
        let rows = Arc::clone(&self.rows);
        Some(dm_core::HostRows::new("processes", &[PID], move || {
            rows.lock()
                .unwrap()
                .clone()
                .map_err(Error::Platform)
                .map(|rows| {
                    rows.into_iter()
                        .map(|(pid, command)| {
                            vec![
                                (PID, Value::Unsigned(pid)),
                                (COMMAND, Value::String(command.into())),
                            ]
                        })
                        .collect()
                })
        }))
    }
}

/// Rows read on demand: fetched by `host_reads` (off the lock), committed
/// by `supply` as the platform's; a row keeps its instance number while
/// its key does, one that is gone is deleted, a new one takes a free
/// number; a table the host could not read stays as it was.
#[test]
fn tables_read_on_demand_keep_instance_numbers_by_key() {
    use dm_core::catalog::process::{COMMAND, ID, PID};
    let rows = Arc::new(Mutex::new(Ok(vec![
        (1, "init"),
        (42, "sshd"),
        (77, "cron"),
    ])));
    let mut tree = Tree::new();
    tree.register(Box::new(Processes {
        rows: Arc::clone(&rows),
    }))
    .unwrap();
    assert_eq!(tree.tables_read_on_demand(), [ID]);
    let changes = tree.subscribe(64);
    let refresh = |tree: &mut Tree| {
        let reads = tree.host_reads(Origin::Acs, &[Path::object(ID)]);
        assert!(!reads.is_empty());
        assert_eq!(reads.describe(), "processes");
        let warnings = tree.supply(reads.run_within(std::time::Duration::from_secs(5)));
        assert!(warnings.is_empty(), "{warnings:?}");
    };
    let table = |tree: &Tree| -> Vec<(u16, Value, Value)> {
        tree.instances(ID)
            .unwrap()
            .into_iter()
            .map(|i| {
                (
                    i.0,
                    read(tree, Path::resource(ID, i, PID)),
                    read(tree, Path::resource(ID, i, COMMAND)),
                )
            })
            .collect()
    };
    assert!(table(&tree).is_empty());
    refresh(&mut tree);
    let command = |s: &str| Value::String(s.into());
    assert_eq!(
        table(&tree),
        [
            (1, Value::Unsigned(1), command("init")),
            (2, Value::Unsigned(42), command("sshd")),
            (3, Value::Unsigned(77), command("cron"))
        ]
    );
    // Not published: they change at every read, nothing acts on them.
    assert!(changes.drain().is_empty());
    // sshd ends, a new process starts: cron keeps 3, the new one takes a
    // number no entry held (not sshd's 2 at once: an ACS that read it
    // must not find another process there).
    *rows.lock().unwrap() = Ok(vec![(1, "init"), (77, "cron"), (90, "sleep")]);
    refresh(&mut tree);
    assert_eq!(
        table(&tree),
        [
            (1, Value::Unsigned(1), command("init")),
            (3, Value::Unsigned(77), command("cron")),
            (4, Value::Unsigned(90), command("sleep"))
        ]
    );
    // The host cannot say: the table stays as it was.
    *rows.lock().unwrap() = Err("no /proc".into());
    refresh(&mut tree);
    assert_eq!(table(&tree).len(), 3);
}

/// A transaction that touches a table read on demand and an ordinary
/// object publishes the ordinary object's changes only.
#[test]
fn changes_of_tables_read_on_demand_are_not_published() {
    let mut tree = Tree::new();
    tree.register(Box::new(Processes {
        rows: Arc::new(Mutex::new(Ok(Vec::new()))),
    }))
    .unwrap();
    tree.register(Box::new(Wlan)).unwrap();
    let changes = tree.subscribe(16);
    tree.begin(Origin::Platform)
        .create(dm_core::catalog::process::ID, None)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    let published: Vec<_> = changes.drain().iter().map(|c| c.path).collect();
    assert_eq!(published, [Path::instance(wlan::ID, InstanceId(1))]);
}
