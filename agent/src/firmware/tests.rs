//! Tests of the firmware module.

use super::*;

fn tree() -> Mutex<Tree> {
    let platform = dm_objects::Platform {
        host: Arc::new(dm_platform::linux::LinuxHost::default()),
        network: Arc::new(dm_platform::memory::MemoryNetwork::demo()),
        log: Arc::new(dm_platform::memory::MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    Mutex::new(tree)
}

fn state(tree: &Mutex<Tree>) -> (Value, Value) {
    let read = |r| match lock(tree)
        .read(Origin::Agent, &Path::resource(ID, InstanceId(0), r))
        .unwrap()
    {
        dm_core::ResourceValue::Single(v) => v,
        other => panic!("{other:?}"),
    };
    (read(STATE), read(UPDATE_RESULT))
}

fn set_version(tree: &Mutex<Tree>, version: &str) {
    use dm_core::catalog::device;
    lock(tree)
        .begin(Origin::Platform)
        .set(
            Path::resource(device::ID, InstanceId(0), device::FIRMWARE_VERSION),
            Value::String(version.into()),
        )
        .commit()
        .unwrap();
}

#[test]
fn an_interrupted_transfer_or_update_is_reported_after_a_restart() {
    let tree = tree();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 1024);
    set(&tree, DOWNLOADING, 0);
    recover(&tree, &store, &Announcer::default());
    assert_eq!(state(&tree), (Value::Integer(IDLE), Value::Integer(4)));
    set(&tree, UPDATING, 0);
    recover(&tree, &store, &Announcer::default());
    assert_eq!(state(&tree), (Value::Integer(IDLE), Value::Integer(8)));
    // Downloaded stays: the image is complete and durable.
    set(&tree, DOWNLOADED, 0);
    recover(&tree, &store, &Announcer::default());
    assert_eq!(
        state(&tree),
        (Value::Integer(DOWNLOADED), Value::Integer(0))
    );
}

/// A/B: after the reboot, a new version confirms the update; the old
/// version means the device fell back to the old slot.
#[tokio::test(flavor = "current_thread")]
async fn an_ab_update_is_confirmed_only_by_a_new_version_after_the_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("install");
    std::fs::write(&program, "#!/bin/sh\ntest -s \"$1\"\n").unwrap();
    let mut permissions = std::fs::metadata(&program).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&program, permissions).unwrap();
    let command = Some(vec![program.display().to_string()]);
    for (after, result) in [("2.0", RESULT_SUCCESS), ("1.0", RESULT_FAILED)] {
        let tree = Arc::new(tree());
        set_version(&tree, "1.0");
        let store = store(&dir.path().join(after), 1 << 20);
        let mut writer = store.begin().unwrap();
        writer.write(b"image").unwrap();
        writer.finish().unwrap();
        let (reboot, mut rebooting) = tokio::sync::mpsc::channel(1);
        apply(
            Arc::clone(&tree),
            store.clone(),
            command.clone(),
            Some(reboot),
            Announcer::default(),
        )
        .await;
        assert_eq!(rebooting.recv().await, Some("firmware update"));
        // Until the reboot the update is not done.
        assert_eq!(state(&tree), (Value::Integer(UPDATING), Value::Integer(0)));
        // The next start, running whatever the bootloader chose.
        set_version(&tree, after);
        recover(&tree, &store, &Announcer::default());
        assert_eq!(
            state(&tree),
            (Value::Integer(IDLE), Value::Integer(result)),
            "{after}"
        );
        assert_eq!(store.read_mark(AWAITING_REBOOT), None);
    }
}

/// Progress goes on the change stream as events, not values: about
/// every 2% of a known size, and the end always.
#[test]
fn progress_is_published_in_steps_and_at_the_end() {
    let tree = Arc::new(tree());
    let changes = lock(&tree).subscribe(1024);
    let mut progress = Progress::new(Arc::clone(&tree));
    let total = 10_000_000u64;
    let mut done = 0;
    while done < total {
        done = (done + 1024).min(total);
        progress.at(done, Some(total));
    }
    let events: Vec<(u64, Option<u64>)> = std::iter::from_fn(|| changes.next())
        .filter_map(|c| match c.kind {
            dm_core::ChangeKind::Progress { done, total } => Some((done, total)),
            _ => None,
        })
        .collect();
    assert!((45..=55).contains(&events.len()), "{} events", events.len());
    assert_eq!(events.last(), Some(&(total, Some(total))));
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
    // Nothing was written: the firmware object is as it was.
    assert_eq!(state(&tree), (Value::Integer(IDLE), Value::Integer(0)));
}

/// The ACS hears of an LwM2M firmware transfer only as
/// AutonomousTransferCompletePolicy says: off by default; once on,
/// its ResultTypeFilter and FileTypeFilter apply.
#[test]
fn autonomous_transfers_are_announced_as_the_policy_says() {
    use dm_core::catalog::autonomous_transfer_complete_policy as policy;
    let tree = Arc::new(tree());
    let (commands, mut sent) = tokio::sync::mpsc::channel(8);
    let announcer = Announcer::new(Some(commands), Arc::clone(&tree));
    let set = |r, v: Value| {
        lock(&tree)
            .begin(Origin::Acs)
            .set(Path::resource(policy::ID, InstanceId(0), r), v)
            .commit()
            .unwrap();
    };
    let failed = || {
        Some(dm_cwmp::soap::TransferFault::new(
            dm_cwmp::soap::FaultCode::DownloadFailure,
            "broken",
        ))
    };
    announcer.report("coap://x/fw", 10, None);
    assert!(sent.try_recv().is_err(), "off by default");
    set(policy::ENABLE, Value::Boolean(true));
    announcer.report("coap://x/fw", 10, None);
    match sent.try_recv() {
        Ok(dm_cwmp_tokio::Command::AutonomousTransfer(result)) => {
            assert_eq!(result.fault_code, 0);
            assert_eq!(result.autonomous.unwrap().transfer_url, "coap://x/fw");
        }
        other => panic!("{other:?}"),
    }
    set(policy::RESULT_TYPE_FILTER, Value::String("Failure".into()));
    announcer.report("coap://x/fw", 10, None);
    assert!(sent.try_recv().is_err(), "successes filtered out");
    announcer.report("coap://x/fw", 10, failed());
    assert!(sent.try_recv().is_ok(), "failures reported");
    set(policy::FILE_TYPE_FILTER, Value::String(String::new()));
    announcer.report("coap://x/fw", 10, failed());
    assert!(
        sent.try_recv().is_err(),
        "an empty FileTypeFilter stops all"
    );
    set(
        policy::FILE_TYPE_FILTER,
        Value::String("3 Vendor Configuration File, 1 Firmware Upgrade Image".into()),
    );
    announcer.report("coap://x/fw", 10, failed());
    assert!(sent.try_recv().is_ok());
    set(policy::TRANSFER_TYPE_FILTER, Value::String("Upload".into()));
    announcer.report("coap://x/fw", 10, failed());
    assert!(sent.try_recv().is_err(), "a firmware pull is a download");
    // Values TR-181 does not allow are refused.
    for (r, v) in [
        (policy::TRANSFER_TYPE_FILTER, "Sideways"),
        (policy::FILE_TYPE_FILTER, "1 Firmware Upgrade Image,9 Nope"),
        (policy::FILE_TYPE_FILTER, "X 00d09e lower-case"),
    ] {
        let refused = lock(&tree)
            .begin(Origin::Acs)
            .set(
                Path::resource(policy::ID, InstanceId(0), r),
                Value::String(v.into()),
            )
            .commit();
        assert!(refused.is_err(), "{v}");
    }
    set(
        policy::FILE_TYPE_FILTER,
        Value::String("X 00D09E Bootloader".into()),
    );
}
