//! The data-model RPCs on a full tree (objects on the in-memory platform).

use crate::common;

use std::sync::Arc;

use dm_core::catalog::{management_server, wlan};
use dm_core::{ChangeKind, InstanceId, Origin, Path, ResourceValue, Tree, Value};
use dm_cwmp::rpc;
use dm_cwmp::soap::{AttributeChange, ParameterValueIn};
use dm_objects::{Identity, Platform, Provisioning};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};
use proptest::prelude::*;

fn tree() -> Tree {
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                serial_number: "SN1".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            ..Provisioning::default()
        },
    )
    .unwrap();
    assert!(
        dm_objects::sync_platform(&mut tree, &platform)
            .warnings
            .is_empty()
    );
    tree
}

fn spv(name: &str, value: &str, xsd: Option<&str>) -> ParameterValueIn {
    ParameterValueIn {
        name: name.into(),
        value: value.into(),
        xsd_type: xsd.map(str::to_owned),
    }
}

fn value(tree: &Tree, name: &str) -> String {
    rpc::get_parameter_values(tree, &[name.to_owned()]).unwrap()[0]
        .value
        .clone()
}

#[test]
fn gpv_full_and_partial_paths() {
    let tree = tree();
    let one = rpc::get_parameter_values(&tree, &["Device.DeviceInfo.SerialNumber".into()]).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        (one[0].value.as_str(), one[0].xsd_type),
        ("SN1", "xsd:string")
    );
    let info = rpc::get_parameter_values(&tree, &["Device.DeviceInfo.".into()]).unwrap();
    assert!(info.len() > 10);
    assert!(
        info.iter()
            .all(|p| p.name.starts_with("Device.DeviceInfo."))
    );
    let up = info
        .iter()
        .find(|p| p.name == "Device.DeviceInfo.UpTime")
        .unwrap();
    assert_eq!(up.xsd_type, "xsd:unsignedInt");
    assert!(up.value.parse::<u64>().unwrap() > 0);
    let all = rpc::get_parameter_values(&tree, &[String::new()]).unwrap();
    assert!(all.len() > info.len());
    // Natural order: instance 2 before instance 10 would hold; here check
    // sorted and unique.
    let names: Vec<_> = all.iter().map(|p| p.name.clone()).collect();
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(names, dedup);
    // Secured and write-only values read back empty.
    assert_eq!(
        value(&tree, "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"),
        ""
    );
    assert_eq!(
        value(&tree, "Device.ManagementServer.ConnectionRequestPassword"),
        ""
    );
}

#[test]
fn gpv_unknown_names_fault_9005() {
    let tree = tree();
    for name in [
        "Device.Nope",
        "Device.WiFi.SSID.9.SSID",
        "Device.WiFi.SSID.9.",
        "Device.Nope.",
    ] {
        let fault = rpc::get_parameter_values(&tree, &[name.into()]).unwrap_err();
        assert_eq!(fault.code, 9005, "{name}");
    }
}

#[test]
fn spv_applies_all_sets_the_parameter_key_and_publishes_once() {
    let mut tree = tree();
    let changes = tree.subscribe(16);
    let status = rpc::set_parameter_values(
        &mut tree,
        &[
            spv(
                "Device.ManagementServer.PeriodicInformInterval",
                "120",
                Some("unsignedInt"),
            ),
            spv("Device.WiFi.SSID.1.SSID", "office", Some("string")),
        ],
        "key-1",
    )
    .unwrap();
    assert_eq!(status, 0);
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "120"
    );
    assert_eq!(value(&tree, "Device.WiFi.SSID.1.SSID"), "office");
    assert_eq!(
        value(&tree, "Device.ManagementServer.ParameterKey"),
        "key-1"
    );
    let seen = changes.drain();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|c| c.origin == Origin::Acs));
}

#[test]
fn spv_is_all_or_nothing_with_one_fault_per_bad_parameter() {
    let mut tree = tree();
    let fault = rpc::set_parameter_values(
        &mut tree,
        &[
            spv(
                "Device.ManagementServer.PeriodicInformInterval",
                "120",
                None,
            ),
            spv("Device.DeviceInfo.SerialNumber", "X", None),
            spv("Device.WiFi.SSID.1.Enable", "maybe", None),
            spv("Device.Nope", "1", None),
            spv("Device.ManagementServer.URL", "1", Some("int")),
        ],
        "key-2",
    )
    .unwrap_err();
    assert_eq!(fault.code, 9003);
    let codes: Vec<_> = fault
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.code))
        .collect();
    assert_eq!(
        codes,
        [
            ("Device.DeviceInfo.SerialNumber", 9008),
            ("Device.WiFi.SSID.1.Enable", 9007),
            ("Device.Nope", 9005),
            ("Device.ManagementServer.URL", 9006),
        ]
    );
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "3600"
    );
    assert_eq!(value(&tree, "Device.ManagementServer.ParameterKey"), "");

    // A value the core refuses (SSID longer than 32) also rolls back the
    // rest, and names the parameter.
    let fault = rpc::set_parameter_values(
        &mut tree,
        &[
            spv(
                "Device.ManagementServer.PeriodicInformInterval",
                "120",
                None,
            ),
            spv("Device.WiFi.SSID.1.SSID", &"x".repeat(33), None),
        ],
        "key-3",
    )
    .unwrap_err();
    assert_eq!(fault.parameters.len(), 1);
    assert_eq!(fault.parameters[0].name, "Device.WiFi.SSID.1.SSID");
    assert_eq!(fault.parameters[0].code, 9007);
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "3600"
    );
}

#[test]
fn gpn_next_level_and_whole_subtrees() {
    let tree = tree();
    let root = rpc::get_parameter_names(&tree, "", true).unwrap();
    assert_eq!(root, [("Device.".to_owned(), false)]);
    let level = rpc::get_parameter_names(&tree, "Device.WiFi.", true).unwrap();
    let names: Vec<_> = level.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    assert!(names.contains(&("Device.WiFi.SSID.", true)), "{names:?}");
    assert!(
        names.contains(&("Device.WiFi.AccessPoint.", true)),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|(n, _)| n.trim_end_matches('.').split('.').count() == 3)
    );
    let ssid = rpc::get_parameter_names(&tree, "Device.WiFi.SSID.1.", false).unwrap();
    assert!(ssid.contains(&("Device.WiFi.SSID.1.SSID".to_owned(), true)));
    assert!(ssid.contains(&("Device.WiFi.SSID.1.Status".to_owned(), false)));
    // NextLevel false lists the object itself too (TR-069 §A.3.2.3).
    assert_eq!(ssid[0], ("Device.WiFi.SSID.1.".to_owned(), true));
    let below = rpc::get_parameter_names(&tree, "Device.WiFi.SSID.1.", true).unwrap();
    assert!(!below.iter().any(|(n, _)| n == "Device.WiFi.SSID.1."));
    let one = rpc::get_parameter_names(&tree, "Device.DeviceInfo.SerialNumber", false).unwrap();
    assert_eq!(one, [("Device.DeviceInfo.SerialNumber".to_owned(), false)]);
    assert_eq!(
        rpc::get_parameter_names(&tree, "Device.DeviceInfo.SerialNumber", true)
            .unwrap_err()
            .code,
        9003
    );
    assert_eq!(
        rpc::get_parameter_names(&tree, "Device.Nope.", false)
            .unwrap_err()
            .code,
        9005
    );
    // An empty table is still listed, so the ACS knows where to add.
    let mut empty = tree;
    empty
        .begin(Origin::Acs)
        .delete(wlan::ID, InstanceId(1))
        .commit()
        .unwrap();
    let level = rpc::get_parameter_names(&empty, "Device.WiFi.", true).unwrap();
    assert!(level.iter().any(|(n, _)| n == "Device.WiFi.SSID."));
}

/// GenieACS discovers a CPE level by level (NextLevel true from `Device.`
/// down); the walk must find exactly what the whole-tree listing holds,
/// every object on the way included (`Device.SoftwareModules.` above its
/// `DeploymentUnit.` table was missing, and GenieACS dropped both).
#[test]
fn a_level_by_level_walk_finds_the_whole_tree() {
    let mut tree = tree();
    // The tables the host gives on demand (processes, processors,
    // neighbours) as a request would find them: read once, then the same
    // for the listing and the walk.
    let tables: Vec<Path> = rpc::tables_listed(&tree, &["Device.".to_owned()]);
    assert_eq!(tables.len(), tree.tables_read_on_demand().len());
    let reads = tree.host_reads(Origin::Acs, &tables);
    let warnings = tree.supply(reads.run_within(std::time::Duration::from_secs(5)));
    // Only the cap of a table on a host with over 1,024 processes.
    assert!(
        warnings.iter().all(|w| w.contains("served")),
        "{warnings:?}"
    );
    let whole = rpc::get_parameter_names(&tree, "Device.", false).unwrap();
    // The whole listing passes the CWMP schema.
    let e = dm_cwmp::soap::Encoder::new(dm_cwmp::soap::CwmpVersion::LATEST);
    let gpn = e
        .get_parameter_names_response(Some("1"), whole.clone())
        .to_text();
    common::validate_message(&gpn, "GetParameterNamesResponse of Device.");
    let mut walked = vec![("Device.".to_owned(), false)];
    let mut queue = vec!["Device.".to_owned()];
    while let Some(object) = queue.pop() {
        for (name, writable) in rpc::get_parameter_names(&tree, &object, true).unwrap() {
            if name.ends_with('.') {
                queue.push(name.clone());
            }
            walked.push((name, writable));
        }
    }
    let sorted = |mut v: Vec<(String, bool)>| {
        v.sort();
        v
    };
    let whole = sorted(whole);
    assert_eq!(whole, sorted(walked));
    let names: Vec<&str> = whole.iter().map(|(n, _)| n.as_str()).collect();
    for object in [
        "Device.SoftwareModules.",
        "Device.SoftwareModules.DeploymentUnit.",
        "Device.DeviceInfo.ProcessStatus.Process.1.",
        "Device.DeviceInfo.ProcessStatus.ProcessNumberOfEntries",
        "Device.Hosts.",
    ] {
        assert!(names.contains(&object), "{object} missing: {names:?}");
    }
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "each object once");
    let root = rpc::get_parameter_names(&tree, "Device.", true).unwrap();
    assert!(root.contains(&("Device.SoftwareModules.".to_owned(), false)));
}

/// Every table has its NumberOfEntries parameter, named as TR-181 2.17
/// names it (`numEntriesParameter`), counting the table's instances,
/// listed by GetParameterNames, read-only, and refusing notification.
#[test]
fn every_table_counts_its_entries() {
    let mut tree = tree();
    let counts = rpc::entry_counts(&tree);
    // USP's own tables (Device.LocalAgent.) are in TR-181's USP flavour.
    let xml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../model/tr-181/tr-181-2-17-0-cwmp-full.xml"
    ))
    .unwrap()
        + &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../model/tr-181/tr-181-2-16-0-usp-full.xml"
        ))
        .unwrap();
    for (name, _) in &counts {
        let (parent, leaf) = name.rsplit_once('.').unwrap();
        let table = leaf.strip_suffix("NumberOfEntries").unwrap();
        // The table's element in TR-181, where instance numbers may be
        // literal in our paths (Interface.1. is Interface.{i}.).
        let generic: String = format!("{parent}.{table}.{{i}}.")
            .split('.')
            .map(|s| if s.parse::<u32>().is_ok() { "{i}" } else { s })
            .collect::<Vec<_>>()
            .join(".");
        let at = xml
            .find(&format!("name=\"{generic}\""))
            .unwrap_or_else(|| panic!("{generic} is not a TR-181 table"));
        let element = &xml[at..at + xml[at..].find('>').unwrap()];
        assert!(
            element.contains(&format!("numEntriesParameter=\"{leaf}\"")),
            "{name}: TR-181 says {element}"
        );
    }
    let count = |tree: &Tree, name: &str| -> u32 {
        rpc::entry_counts(tree)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    };
    assert_eq!(count(&tree, "Device.WiFi.SSIDNumberOfEntries"), 1);
    assert_eq!(
        count(
            &tree,
            "Device.SoftwareModules.DeploymentUnitNumberOfEntries"
        ),
        0
    );
    rpc::add_object(&mut tree, "Device.WiFi.SSID.", "k").unwrap();
    assert_eq!(count(&tree, "Device.WiFi.SSIDNumberOfEntries"), 2);
    assert_eq!(value(&tree, "Device.WiFi.SSIDNumberOfEntries"), "2");
    let names = rpc::get_parameter_names(&tree, "Device.WiFi.", true).unwrap();
    assert!(names.contains(&("Device.WiFi.SSIDNumberOfEntries".to_owned(), false)));
    // A table the ACS may add to is writable; the host's reported links
    // are not.
    assert!(names.contains(&("Device.WiFi.SSID.".to_owned(), true)));
    let names = rpc::get_parameter_names(&tree, "Device.Ethernet.", true).unwrap();
    assert!(
        names.contains(&("Device.Ethernet.Interface.".to_owned(), false)),
        "{names:?}"
    );

    let refused = rpc::set_parameter_values(
        &mut tree,
        &[spv("Device.WiFi.SSIDNumberOfEntries", "5", None)],
        "k",
    )
    .unwrap_err();
    assert_eq!(refused.parameters[0].code, 9008, "{refused:?}");
    let refused = rpc::set_parameter_attributes(
        &mut tree,
        &[AttributeChange {
            name: "Device.WiFi.SSIDNumberOfEntries".into(),
            notification: Some(2),
            access_list: None,
        }],
    )
    .unwrap_err();
    assert_eq!(refused.code, 9009);
    // Under a partial path it is passed over.
    rpc::set_parameter_attributes(
        &mut tree,
        &[AttributeChange {
            name: "Device.WiFi.".into(),
            notification: Some(1),
            access_list: None,
        }],
    )
    .unwrap();
}

#[test]
fn add_and_delete_objects() {
    let mut tree = tree();
    let (instance, status) = rpc::add_object(&mut tree, "Device.WiFi.SSID.", "add-1").unwrap();
    assert_eq!((instance, status), (2, 0));
    assert_eq!(
        value(&tree, "Device.ManagementServer.ParameterKey"),
        "add-1"
    );
    rpc::set_parameter_values(
        &mut tree,
        &[spv("Device.WiFi.SSID.2.SSID", "guest", None)],
        "k",
    )
    .unwrap();
    assert_eq!(
        rpc::delete_object(&mut tree, "Device.WiFi.SSID.2.", "del-1").unwrap(),
        0
    );
    assert_eq!(
        rpc::get_parameter_values(&tree, &["Device.WiFi.SSID.2.".into()])
            .unwrap_err()
            .code,
        9005
    );
    // Numbers are not reused.
    assert_eq!(
        rpc::add_object(&mut tree, "Device.WiFi.SSID.", "add-2")
            .unwrap()
            .0,
        3
    );
    assert_eq!(
        rpc::add_object(&mut tree, "Device.DeviceInfo.", "x")
            .unwrap_err()
            .code,
        9005
    );
    assert_eq!(
        rpc::add_object(&mut tree, "Device.WiFi.SSID.3.", "x")
            .unwrap_err()
            .code,
        9005
    );
    assert_eq!(
        rpc::delete_object(&mut tree, "Device.WiFi.SSID.", "x")
            .unwrap_err()
            .code,
        9005
    );
    assert_eq!(
        rpc::delete_object(&mut tree, "Device.WiFi.SSID.9.", "x")
            .unwrap_err()
            .code,
        9005
    );
    assert_eq!(
        value(&tree, "Device.ManagementServer.ParameterKey"),
        "add-2"
    );
}

/// A table inside an instance (TR-181 `Device.BulkData.Profile.{i}.
/// Parameter.{i}.`): rows are added, written, counted, listed and
/// deleted as any table's instances are, each keeping its number.
#[test]
fn rows_of_a_table_in_an_instance() {
    let mut tree = tree();
    let (profile, _) = rpc::add_object(&mut tree, "Device.BulkData.Profile.", "p").unwrap();
    let base = format!("Device.BulkData.Profile.{profile}.");
    // Empty, the table is there to add to, and counts 0.
    assert_eq!(
        value(&tree, &format!("{base}ParameterNumberOfEntries")),
        "0"
    );
    let names = rpc::get_parameter_names(&tree, &base, true).unwrap();
    assert!(
        names.contains(&(format!("{base}Parameter."), true)),
        "{names:?}"
    );
    for (n, reference) in [
        (1, "Device.DeviceInfo.UpTime"),
        (2, "Device.IP.Interface.*.Stats."),
    ] {
        let (row, status) =
            rpc::add_object(&mut tree, &format!("{base}Parameter."), "row").unwrap();
        assert_eq!((row, status), (n, 0));
        rpc::set_parameter_values(
            &mut tree,
            &[spv(
                &format!("{base}Parameter.{row}.Reference"),
                reference,
                None,
            )],
            "k",
        )
        .unwrap();
    }
    // A new row starts empty (TR-181's default for Name and Reference).
    assert_eq!(value(&tree, &format!("{base}Parameter.2.Name")), "");
    assert_eq!(value(&tree, &format!("{base}Parameter.2.Exclude")), "false");
    assert_eq!(
        value(&tree, &format!("{base}ParameterNumberOfEntries")),
        "2"
    );
    assert_eq!(
        rpc::delete_object(&mut tree, &format!("{base}Parameter.1."), "d").unwrap(),
        0
    );
    assert_eq!(
        value(&tree, &format!("{base}ParameterNumberOfEntries")),
        "1"
    );
    assert_eq!(
        value(&tree, &format!("{base}Parameter.2.Reference")),
        "Device.IP.Interface.*.Stats."
    );
    assert_eq!(
        rpc::get_parameter_values(&tree, &[format!("{base}Parameter.1.Reference")])
            .unwrap_err()
            .code,
        9005
    );
    // A row that is not there is no DeleteObject target; numbers go on.
    assert_eq!(
        rpc::delete_object(&mut tree, &format!("{base}Parameter.1."), "d")
            .unwrap_err()
            .code,
        9005
    );
    assert_eq!(
        rpc::add_object(&mut tree, &format!("{base}Parameter."), "row")
            .unwrap()
            .0,
        3
    );
    // Nor is a profile that does not exist.
    assert_eq!(
        rpc::add_object(&mut tree, "Device.BulkData.Profile.9.Parameter.", "x")
            .unwrap_err()
            .code,
        9005
    );
    // The last row deleted, its number is not given again.
    rpc::delete_object(&mut tree, &format!("{base}Parameter.3."), "d").unwrap();
    assert_eq!(
        rpc::add_object(&mut tree, &format!("{base}Parameter."), "row")
            .unwrap()
            .0,
        4
    );
    // Rows that are the agent's (a test's results) are no client's to add.
    assert_eq!(
        rpc::add_object(
            &mut tree,
            "Device.IP.Diagnostics.TraceRoute.RouteHops.",
            "x"
        )
        .unwrap_err()
        .code,
        9005
    );
    // MaxNumberOfParameterReferences: a full table (9004).
    let full = loop {
        match rpc::add_object(&mut tree, &format!("{base}Parameter."), "row") {
            Ok(_) => continue,
            Err(fault) => break fault,
        }
    };
    assert_eq!(full.code, 9004, "{full:?}");
    assert_eq!(
        value(&tree, &format!("{base}ParameterNumberOfEntries")),
        dm_objects::bulk_data::MAX_PARAMETER_REFERENCES.to_string()
    );
}

/// TR-181 BulkData references: a parameter, an object (everything
/// below it), `*` for any instance, a table's NumberOfEntries.
#[test]
fn references_with_wildcards_name_what_they_match() {
    let mut tree = tree();
    rpc::add_object(&mut tree, "Device.WiFi.SSID.", "k").unwrap();
    let names = |found: &[dm_cwmp::soap::ParameterValue]| {
        found.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    };
    let patterns = [
        "Device.WiFi.SSID.*.SSID",
        "Device.WiFi.SSID.2.",
        "Device.WiFi.SSIDNumberOfEntries",
        "Device.WiFi.SSID.*",
        "Device.Nothing.*.",
    ];
    let (matched, truncated) = rpc::matching_values(&tree, &patterns, 10_000, &|_| true);
    assert!(!truncated);
    // Each parameter once, with every pattern that named it.
    let found: Vec<Vec<dm_cwmp::soap::ParameterValue>> = (0..patterns.len())
        .map(|at| {
            matched
                .iter()
                .filter(|(hits, _)| hits.contains(&at))
                .map(|(_, p)| p.clone())
                .collect()
        })
        .collect();
    assert_eq!(
        names(&found[0]),
        ["Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.2.SSID"]
    );
    assert!(found[1].len() > 1, "{:?}", names(&found[1]));
    assert!(
        found[1]
            .iter()
            .all(|p| p.name.starts_with("Device.WiFi.SSID.2."))
    );
    assert_eq!(found[2].len(), 1);
    assert_eq!(found[2][0].value, "2");
    // A wildcard is an instance, not a parameter; nothing is nothing.
    assert!(found[3].is_empty());
    assert!(found[4].is_empty());
    // Bounded: no more than asked for, and said so.
    let (some, truncated) = rpc::matching_values(&tree, &["Device.WiFi."], 3, &|_| true);
    assert_eq!((some.len(), truncated), (3, true));
    // Only what `counts` says counts towards the limit.
    let (all, truncated) = rpc::matching_values(&tree, &["Device.WiFi."], 3, &|_| false);
    assert!(all.len() > 3 && !truncated);
    assert_eq!(
        rpc::get_parameter_values(&tree, &["Device.WiFi.SSID.1.SSID".into()]).unwrap()[0].value,
        found[0][0].value
    );
}

/// Device.DeviceInfo.FirmwareImage follows the firmware pipeline (/3's
/// version, /5's state): the running image is row 1, which
/// ActiveFirmwareImage names; an image held or failed is row 2.
#[test]
fn firmware_images_follow_the_pipeline() {
    use dm_core::catalog::{device, firmware};
    let mut tree = tree();
    let set = |tree: &mut Tree, object, resource, value: Value| {
        tree.begin(Origin::Agent)
            .set(Path::resource(object, InstanceId(0), resource), value)
            .commit()
            .unwrap();
        dm_objects::firmware_image::follow(tree)
    };
    assert!(
        set(
            &mut tree,
            device::ID,
            device::FIRMWARE_VERSION,
            Value::String("1.0".into())
        )
        .is_empty()
    );
    let image = |tree: &Tree, n: u32, name: &str| {
        value(tree, &format!("Device.DeviceInfo.FirmwareImage.{n}.{name}"))
    };
    assert_eq!(image(&tree, 1, "Status"), "Active");
    assert_eq!(image(&tree, 1, "Version"), "1.0");
    assert_eq!(
        value(&tree, "Device.DeviceInfo.ActiveFirmwareImage"),
        "Device.DeviceInfo.FirmwareImage.1"
    );
    // Nothing held: row 2 is there, without an image (a static table).
    assert_eq!(image(&tree, 2, "Status"), "NoImage");
    let pkg = Value::String("2.0".into());
    set(&mut tree, firmware::ID, firmware::PKGVERSION, pkg);
    set(&mut tree, firmware::ID, firmware::STATE, Value::Integer(1));
    assert_eq!(image(&tree, 2, "Status"), "Downloading");
    // TR-181: no Version while downloading.
    assert_eq!(image(&tree, 2, "Version"), "");
    set(&mut tree, firmware::ID, firmware::STATE, Value::Integer(2));
    let row = |tree: &Tree| ["Status", "Available", "Version"].map(|name| image(tree, 2, name));
    assert_eq!(row(&tree), ["Available", "true", "2.0"]);
    // The update program failed: /5 stays Downloaded with result 8.
    let failed = Value::Integer(8);
    set(&mut tree, firmware::ID, firmware::UPDATE_RESULT, failed);
    assert_eq!(row(&tree), ["InstallationFailed", "false", "2.0"]);
    // Installed: the new version runs, no image held.
    set(&mut tree, firmware::ID, firmware::STATE, Value::Integer(0));
    let done = Value::Integer(1);
    set(&mut tree, firmware::ID, firmware::UPDATE_RESULT, done);
    let running = Value::String("2.0".into());
    set(&mut tree, device::ID, device::FIRMWARE_VERSION, running);
    assert_eq!(image(&tree, 1, "Version"), "2.0");
    assert_eq!(image(&tree, 2, "Status"), "NoImage");
    assert_eq!(
        value(&tree, "Device.DeviceInfo.FirmwareImageNumberOfEntries"),
        "2"
    );
    // The ACS cannot add or delete images (9001, as the host's other
    // facts).
    assert_eq!(
        rpc::add_object(&mut tree, "Device.DeviceInfo.FirmwareImage.", "x")
            .unwrap_err()
            .code,
        9001
    );
    assert_eq!(
        rpc::delete_object(&mut tree, "Device.DeviceInfo.FirmwareImage.1.", "x")
            .unwrap_err()
            .code,
        9001
    );
}

/// VendorConfigFile names the file as its first line does.
#[test]
fn the_configuration_file_is_the_one_vendor_config_file_says() {
    use dm_objects::vendor_config_file::{NAME_OF_FILE, VERSION_OF_FILE};
    let tree = tree();
    let file = rpc::configuration_file(&tree);
    assert_eq!(
        file.lines().next(),
        Some(format!("# {NAME_OF_FILE} {VERSION_OF_FILE}").as_str())
    );
    assert_eq!(
        value(&tree, "Device.DeviceInfo.VendorConfigFile.1.Name"),
        NAME_OF_FILE
    );
    assert_eq!(
        value(&tree, "Device.DeviceInfo.VendorConfigFile.1.Date"),
        "0001-01-01T00:00:00Z"
    );
}

#[test]
fn attributes_set_get_and_refuse() {
    let mut tree = tree();
    rpc::set_parameter_attributes(
        &mut tree,
        &[AttributeChange {
            name: "Device.WiFi.SSID.1.".into(),
            notification: Some(2),
            access_list: Some(vec!["Subscriber".into()]),
        }],
    )
    .unwrap();
    let got = rpc::get_parameter_attributes(&tree, &["Device.WiFi.SSID.1.SSID".into()]).unwrap();
    assert_eq!(
        got,
        [(
            "Device.WiFi.SSID.1.SSID".to_owned(),
            2,
            vec!["Subscriber".to_owned()]
        )]
    );
    let core = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    assert_eq!(
        tree.attributes().notification(&core),
        dm_core::Notification::Active
    );
    // Active notification of a value read live from the host is refused.
    let fault = rpc::set_parameter_attributes(
        &mut tree,
        &[AttributeChange {
            name: "Device.DeviceInfo.UpTime".into(),
            notification: Some(2),
            access_list: None,
        }],
    )
    .unwrap_err();
    assert_eq!(fault.code, 9009);
    // SoftwareVersion is forceEnabled in TR-181: always reported active.
    let sw = rpc::get_parameter_attributes(&tree, &["Device.DeviceInfo.SoftwareVersion".into()])
        .unwrap();
    assert_eq!(sw[0].1, 2);
    assert_eq!(
        rpc::set_parameter_attributes(
            &mut tree,
            &[AttributeChange {
                name: "Device.Nope".into(),
                notification: Some(1),
                access_list: None
            }]
        )
        .unwrap_err()
        .code,
        9005
    );
}

#[test]
fn an_acs_write_is_published_with_its_core_path() {
    let mut tree = tree();
    let changes = tree.subscribe(8);
    rpc::set_parameter_values(
        &mut tree,
        &[spv(
            "Device.ManagementServer.PeriodicInformInterval",
            "60",
            None,
        )],
        "",
    )
    .unwrap();
    let interval = Path::resource(
        management_server::ID,
        InstanceId(0),
        management_server::PERIODIC_INFORM_INTERVAL,
    );
    assert!(changes.drain().iter().any(|c| c.path == interval
        && c.kind == ChangeKind::Value(ResourceValue::Single(Value::Unsigned(60)))));
}

/// A vendor configuration file (Upload "1 Vendor Configuration File")
/// restores what changed since, recreates a deleted table row, never
/// carries secrets, and is applied all or nothing.
#[test]
fn a_configuration_file_round_trips_and_is_all_or_nothing() {
    let mut tree = tree();
    rpc::add_object(&mut tree, "Device.WiFi.SSID.", "add").unwrap();
    rpc::set_parameter_values(
        &mut tree,
        &[
            spv("Device.WiFi.SSID.2.SSID", "guest\tnet\\1", None),
            spv(
                "Device.ManagementServer.PeriodicInformInterval",
                "600",
                None,
            ),
            spv("Device.ManagementServer.Password", "secret-pw", None),
        ],
        "k",
    )
    .unwrap();
    let file = rpc::configuration_file(&tree);
    assert!(file.starts_with("# dmagent configuration 1\n"), "{file}");
    assert!(
        file.contains("Device.WiFi.SSID.2.SSID\txsd:string\tguest\\tnet\\\\1\n"),
        "{file}"
    );
    assert!(
        file.contains("Device.ManagementServer.PeriodicInformInterval\txsd:unsignedInt\t600\n"),
        "{file}"
    );
    assert!(!file.contains("secret-pw"), "{file}");
    assert!(!file.contains("Device.DeviceInfo.SerialNumber"), "{file}");

    // Changed since: the interval, and the guest row is gone.
    rpc::set_parameter_values(
        &mut tree,
        &[spv(
            "Device.ManagementServer.PeriodicInformInterval",
            "60",
            None,
        )],
        "k2",
    )
    .unwrap();
    // A Wi-Fi network is not remade from a file, which has no
    // passphrase for it: refused, and nothing applied.
    rpc::delete_object(&mut tree, "Device.WiFi.SSID.2.", "del").unwrap();
    let refused = rpc::apply_configuration_file(&mut tree, &file).unwrap_err();
    assert!(refused.to_string().contains("holds secrets"), "{refused}");
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "60"
    );
    // Recreated by hand (the ACS's AddObject numbers it 3), the rest of
    // the file applies.
    let (three, _) = rpc::add_object(&mut tree, "Device.WiFi.SSID.", "add").unwrap();
    assert_eq!(three, 3);
    let without_two: String = file
        .lines()
        .filter(|l| !l.contains(".2."))
        .map(|l| format!("{l}\n"))
        .collect();
    let with_three = ["SSID", "AccessPoint", "Radio"]
        .iter()
        .fold(file.clone(), |f, table| {
            f.replace(&format!("WiFi.{table}.2."), &format!("WiFi.{table}.3."))
        });
    let applied = rpc::apply_configuration_file(&mut tree, &without_two).unwrap();
    assert!(applied >= 2, "{applied}");
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "600"
    );
    rpc::apply_configuration_file(&mut tree, &with_three).unwrap();
    assert_eq!(value(&tree, "Device.WiFi.SSID.3.SSID"), "guest\tnet\\1");
    // The password stays the device's.
    assert_eq!(
        tree.read(
            Origin::Agent,
            &Path::resource(
                management_server::ID,
                InstanceId(0),
                management_server::PASSWORD
            )
        )
        .unwrap(),
        ResourceValue::Single(Value::String("secret-pw".into()))
    );

    // One bad line: nothing applied, the reason names it.
    rpc::set_parameter_values(
        &mut tree,
        &[spv(
            "Device.ManagementServer.PeriodicInformInterval",
            "60",
            None,
        )],
        "k3",
    )
    .unwrap();
    let broken = file.replace(
        "Device.WiFi.SSID.2.SSID\txsd:string",
        "Device.WiFi.SSID.2.SSID\txsd:boolean",
    );
    let refused = rpc::apply_configuration_file(&mut tree, &broken).unwrap_err();
    assert!(
        refused.to_string().contains("Device.WiFi.SSID.2.SSID"),
        "{refused}"
    );
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "60"
    );
    for bad in [
        "",
        "Device.X\txsd:string\tv\n",
        "# dmagent configuration 1\nDevice.ManagementServer.PeriodicInformInterval 60\n",
        "# dmagent configuration 1\nDevice.WiFi.SSID.2.SSID\txsd:string\ta\\qb\n",
        "# dmagent configuration 1\nDevice.DeviceInfo.SerialNumber\txsd:string\tX\n",
    ] {
        assert!(
            rpc::apply_configuration_file(&mut tree, bad).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(
        value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
        "60"
    );
}

/// Hostile input: a string XML 1.0 cannot carry (a NUL, another C0
/// control) is refused with 9007 and nothing is stored; before, it was
/// stored and made every later Inform and GetParameterValuesResponse
/// ill-formed, after a restart too.
#[test]
fn spv_refuses_characters_xml_cannot_carry() {
    let mut tree = tree();
    for bad in ["ab\u{0}cd", "ab\u{1}", "\u{1b}[31mred", "x\u{FFFE}"] {
        let fault = rpc::set_parameter_values(
            &mut tree,
            &[
                spv("Device.DeviceInfo.ProvisioningCode", bad, None),
                spv(
                    "Device.ManagementServer.PeriodicInformInterval",
                    "120",
                    None,
                ),
            ],
            "k",
        )
        .unwrap_err();
        assert_eq!(fault.code, 9003, "{bad:?}");
        assert_eq!(
            fault
                .parameters
                .iter()
                .map(|p| (p.name.as_str(), p.code))
                .collect::<Vec<_>>(),
            [("Device.DeviceInfo.ProvisioningCode", 9007)],
            "{bad:?}"
        );
        assert_eq!(value(&tree, "Device.DeviceInfo.ProvisioningCode"), "");
        assert_eq!(
            value(&tree, "Device.ManagementServer.PeriodicInformInterval"),
            "3600"
        );
    }
    // Tab, LF, CR and every other character are values like any other.
    rpc::set_parameter_values(
        &mut tree,
        &[spv(
            "Device.DeviceInfo.ProvisioningCode",
            "a\tb\nc é 𝄞",
            None,
        )],
        "k",
    )
    .unwrap();
    assert_eq!(
        value(&tree, "Device.DeviceInfo.ProvisioningCode"),
        "a\tb\nc é 𝄞"
    );
}

/// A value of any type, any content: strings with every kind of
/// character, numbers at their extremes.
fn any_value(value_type: dm_core::ValueType) -> BoxedStrategy<Value> {
    use dm_core::ValueType as T;
    match value_type {
        T::String | T::CoreLink => prop_oneof![
            any::<String>(),
            "[\\x00-\\x1f<>&\"' a-z]{0,12}",
            Just("\u{FFFE}\u{FFFF}\u{0}".to_owned()),
        ]
        .prop_map(Value::String)
        .boxed(),
        T::Int => any::<i32>().prop_map(|i| Value::Integer(i.into())).boxed(),
        T::Long => any::<i64>().prop_map(Value::Integer).boxed(),
        T::UnsignedInt => any::<u32>().prop_map(|u| Value::Unsigned(u.into())).boxed(),
        T::UnsignedLong => any::<u64>().prop_map(Value::Unsigned).boxed(),
        T::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        T::DateTime => any::<i64>().prop_map(Value::DateTime).boxed(),
        T::Opaque => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(Value::Opaque)
            .boxed(),
        T::Float => any::<f64>().prop_map(Value::Float).boxed(),
        _ => Just(Value::Boolean(false)).boxed(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever values the tree holds (the platform reports facts as they
    /// are: an SSID is any octets), every message carrying them is
    /// well-formed and valid against cwmp-1-4.xsd: GetParameterValues of
    /// the whole tree and an Inform with the device's identity.
    #[test]
    fn every_value_the_tree_holds_encodes_valid_xml(seed in any::<u64>()) {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::{Config, TestRng, RngAlgorithm, TestRunner};
        let mut tree = tree();
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &{
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&seed.to_le_bytes());
                bytes
            }),
        );
        let mut targets = Vec::new();
        for schema in tree.objects().collect::<Vec<_>>() {
            for instance in tree.instances(schema.id).unwrap() {
                for resource in tree.instance(schema.id, instance).unwrap().resources() {
                    let Some(r) = schema.resource(resource) else { continue };
                    if r.multiple || !matches!(
                        tree.instance(schema.id, instance).unwrap().slot(resource),
                        Some(dm_core::Slot::Stored(_))
                    ) {
                        continue;
                    }
                    targets.push((Path::resource(schema.id, instance, resource), r.value_type));
                }
            }
        }
        for (path, value_type) in targets {
            let value = any_value(value_type).new_tree(&mut runner).unwrap().current();
            // What the schema's constraints refuse the tree cannot hold.
            let _ = tree.begin(Origin::Platform).set(path, value).commit();
        }
        let values = rpc::get_parameter_values(&tree, &[String::new()]).unwrap();
        let e = dm_cwmp::soap::Encoder::new(dm_cwmp::soap::CwmpVersion::LATEST);
        let gpv = e.get_parameter_values_response(Some("1"), values.clone()).to_text();
        common::validate_message(&gpv, "GetParameterValuesResponse");
        let read = |name: &str| {
            values.iter().find(|v| v.name == name).map(|v| v.value.clone()).unwrap_or_default()
        };
        let inform = e.inform(
            "2",
            &dm_cwmp::soap::DeviceId {
                manufacturer: read("Device.DeviceInfo.Manufacturer"),
                oui: read("Device.DeviceInfo.ManufacturerOUI"),
                product_class: read("Device.DeviceInfo.ProductClass"),
                serial_number: read("Device.DeviceInfo.SerialNumber"),
            },
            &[dm_cwmp::soap::Event { code: "2 PERIODIC".into(), command_key: "k".into() }],
            1,
            "2026-12-06T00:00:00Z",
            0,
            &values[..values.len().min(50)],
        );
        common::validate_message(&inform, "Inform");
        let names = rpc::get_parameter_names(&tree, "", false).unwrap();
        common::validate_message(
            &e.get_parameter_names_response(Some("3"), names).to_text(),
            "GetParameterNamesResponse",
        );
    }
}

/// Counts saves, for what a request costs the flash.
struct CountingStore(Arc<std::sync::atomic::AtomicUsize>);

impl dm_core::StateStore for CountingStore {
    fn save(&mut self, _: &dm_core::Snapshot) -> Result<(), dm_core::SaveError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Hostile input: a 2.4 MB GetParameterValues naming `Device.` 100,000
/// times made a 1.06 GB response (peak RSS 1,079 MB). Each parameter is
/// listed once whatever the names, and a response past the limit is 9004.
/// The same for GetParameterAttributes and GetParameterNames;
/// SetParameterAttributes saves once.
#[test]
fn the_work_a_request_causes_is_bounded() {
    let mut tree = tree();
    let whole = rpc::get_parameter_values(&tree, &["Device.".into()]).unwrap();
    let mut names = vec!["Device.".to_owned(); 100_000];
    names.push("Device.DeviceInfo.SerialNumber".into());
    names.push("Device.DeviceInfo.".into());
    let folded = rpc::get_parameter_values(&tree, &names).unwrap();
    assert_eq!(folded.len(), whole.len());
    let order: Vec<&str> = folded.iter().map(|v| v.name.as_str()).collect();
    let expected: Vec<&str> = whole.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(order, expected);
    // The order is that of the names: what a later name adds comes after.
    let two = rpc::get_parameter_values(
        &tree,
        &[
            "Device.ManagementServer.URL".into(),
            "Device.DeviceInfo.".into(),
            "Device.ManagementServer.URL".into(),
        ],
    )
    .unwrap();
    assert_eq!(two[0].name, "Device.ManagementServer.URL");
    assert_eq!(
        two.iter()
            .filter(|v| v.name == "Device.ManagementServer.URL")
            .count(),
        1
    );
    let limit = whole.len() - 1;
    for fault in [
        rpc::get_parameter_values_within(&tree, &names, limit).unwrap_err(),
        rpc::get_parameter_attributes_within(&tree, &names, limit).unwrap_err(),
        rpc::get_parameter_names_within(&tree, "Device.", false, limit).unwrap_err(),
    ] {
        assert_eq!(fault.code, 9004, "{fault:?}");
    }
    let attributes = rpc::get_parameter_attributes(&tree, &names).unwrap();
    assert_eq!(attributes.len(), whole.len());

    let saves = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tree.set_store(Box::new(CountingStore(saves.clone())));
    let changes: Vec<AttributeChange> = (0..10_000)
        .map(|i| AttributeChange {
            name: "Device.WiFi.".into(),
            notification: Some(if i % 2 == 0 { 1 } else { 2 }),
            access_list: Some(vec![format!("Subscriber{i}")]),
        })
        .collect();
    rpc::set_parameter_attributes(&mut tree, &changes).unwrap();
    assert_eq!(saves.load(std::sync::atomic::Ordering::Relaxed), 1);
    // The last change wins, as if they were applied in order.
    let got = rpc::get_parameter_attributes(&tree, &["Device.WiFi.SSID.1.SSID".into()]).unwrap();
    assert_eq!(got[0].1, 2);
    assert_eq!(got[0].2, ["Subscriber9999"]);
    // The same again changes nothing and writes nothing.
    rpc::set_parameter_attributes(&mut tree, &changes).unwrap();
    assert_eq!(saves.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Hostile input: AddObject without end. Past the instance limit it is
/// 9004 Resources exceeded.
#[test]
fn add_object_past_the_instance_limit_is_9004() {
    let mut tree = tree();
    let have = tree.instances(wlan::ID).unwrap().len();
    tree.set_instance_limit(have + 1);
    rpc::add_object(&mut tree, "Device.WiFi.SSID.", "k1").unwrap();
    let fault = rpc::add_object(&mut tree, "Device.WiFi.SSID.", "k2").unwrap_err();
    assert_eq!(fault.code, 9004, "{fault:?}");
    assert_eq!(tree.instances(wlan::ID).unwrap().len(), have + 1);
    assert_eq!(value(&tree, "Device.ManagementServer.ParameterKey"), "k1");
}

/// Tables read on demand (the processes) change at every read with no
/// event between: a notification on them is refused (9009), and under a
/// partial path they are passed over.
#[test]
fn no_notification_on_tables_read_on_demand() {
    let mut tree = tree();
    let tables = rpc::tables_listed(&tree, &["Device.".to_owned()]);
    let reads = tree.host_reads(Origin::Acs, &tables);
    let _ = tree.supply(reads.run_within(std::time::Duration::from_secs(5)));
    let change = |name: &str, level: u8| AttributeChange {
        name: name.into(),
        notification: Some(level),
        access_list: None,
    };
    for level in [1, 2] {
        let fault = rpc::set_parameter_attributes(
            &mut tree,
            &[change(
                "Device.DeviceInfo.ProcessStatus.Process.1.CPUTime",
                level,
            )],
        )
        .unwrap_err();
        assert_eq!(fault.code, 9009);
    }
    rpc::set_parameter_attributes(&mut tree, &[change("Device.DeviceInfo.", 1)]).unwrap();
    // Passive on all of DeviceInfo: the process table stays off.
    let attributes = rpc::get_parameter_attributes(
        &tree,
        &["Device.DeviceInfo.ProcessStatus.Process.".to_owned()],
    )
    .unwrap();
    assert!(!attributes.is_empty());
    assert!(
        attributes.iter().all(|(_, level, _)| *level == 0),
        "{attributes:?}"
    );
    let serial =
        rpc::get_parameter_attributes(&tree, &["Device.DeviceInfo.SerialNumber".to_owned()])
            .unwrap();
    assert_eq!(serial[0].1, 1);
}

/// A reference parameter (IPPing's Interface) takes the path of a row the
/// device has, or the empty string; another row, a table that is none of
/// the agent's or no path at all is refused with 9007, and reads back as
/// it was written.
#[test]
fn references_name_rows_the_device_has() {
    use dm_core::catalog::ip_interface;
    let mut tree = tree();
    tree.begin(Origin::Platform)
        .create(ip_interface::ID, Some(InstanceId(2)))
        .commit()
        .unwrap();
    let interface = "Device.IP.Diagnostics.IPPing.Interface";
    rpc::set_parameter_values(
        &mut tree,
        &[spv(interface, "Device.IP.Interface.2", None)],
        "r1",
    )
    .unwrap();
    assert_eq!(value(&tree, interface), "Device.IP.Interface.2");
    for bad in ["Device.IP.Interface.3", "Device.Nothing.2", "eth0"] {
        let fault =
            rpc::set_parameter_values(&mut tree, &[spv(interface, bad, None)], "r2").unwrap_err();
        assert_eq!(fault.parameters[0].code, 9007, "{bad}");
    }
    rpc::set_parameter_values(&mut tree, &[spv(interface, "", None)], "r3").unwrap();
    assert_eq!(value(&tree, interface), "");
}
