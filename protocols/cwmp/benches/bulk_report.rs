//! A bulk data report of about 1,000 parameters (TR-069 Annex N, JSON
//! ObjectHierarchy), against building the same JSON with serde_json
//! directly from values already in hand.
//!
//! `cargo bench -p dmagent-cwmp --bench bulk_report`. Ours is the whole
//! collection: the references (a wildcard) matched against the tree,
//! each value read and rendered, the report named and encoded. The
//! baseline is only the last step: serde_json's own nested objects from
//! the same names and values, then `to_vec`. Reports the best of several
//! passes in µs, and the peak heap of one pass of each, with their ratios
//! (ours / serde_json).

#[path = "common/mod.rs"]
mod common;
use common::{best_micros, peak_heap};
use std::hint::black_box;
use std::sync::Arc;

use dm_core::Tree;
use dm_cwmp::bulk::{self, Encoding, Reference, Report, Settings, Timestamp};
use dm_objects::{Identity, Platform, Provisioning};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};

/// The agent's tree with eight bulk data profiles of 33 Parameter rows
/// each: about 1,000 parameters of every TR-106 type under
/// `Device.BulkData.Profile.`.
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
    for profile in 1..=8 {
        dm_cwmp::rpc::add_object(&mut tree, "Device.BulkData.Profile.", "b").unwrap();
        let rows = format!("Device.BulkData.Profile.{profile}.Parameter.");
        for _ in 0..33 {
            dm_cwmp::rpc::add_object(&mut tree, &rows, "b").unwrap();
        }
    }
    tree
}

/// The same JSON, built with serde_json's own values.
fn serde_json_report(report: &Report) -> Vec<u8> {
    use serde_json::{Map, Value};
    let mut object = Map::new();
    object.insert("CollectionTime".into(), Value::from(report.time));
    for (name, value, kind) in &report.values {
        let value = match *kind {
            "unsignedInt" | "unsignedLong" => Value::from(value.parse::<u64>().unwrap_or(0)),
            "int" | "long" => Value::from(value.parse::<i64>().unwrap_or(0)),
            "boolean" => Value::Bool(value == "true" || value == "1"),
            _ => Value::String(value.clone()),
        };
        let mut at = &mut object;
        let mut segments = name.split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                at.insert(segment.to_owned(), value);
                break;
            }
            let Value::Object(next) = at
                .entry(segment)
                .or_insert_with(|| Value::Object(Map::new()))
            else {
                break;
            };
            at = next;
        }
    }
    let mut message = Map::new();
    message.insert("Report".into(), Value::Array(vec![Value::Object(object)]));
    serde_json::to_vec(&Value::Object(message)).unwrap()
}

fn main() {
    let tree = tree();
    let settings = Settings {
        interval: 60,
        time_reference: None,
        references: vec![Reference {
            name: String::new(),
            path: "Device.BulkData.Profile.*.".into(),
        }],
        excluded: Vec::new(),
        encoding: Encoding::Json {
            hierarchy: true,
            timestamp: Timestamp::UnixEpoch,
        },
        url: "http://collector/".into(),
        username: String::new(),
        password: String::new(),
        gzip: false,
        put: false,
        date_header: true,
        retry: None,
        uri_parameters: Vec::new(),
        retained: 0,
    };
    let ours = || {
        let (report, _) = bulk::collect(black_box(&tree), &settings, 1_700_000_000);
        bulk::encode(std::slice::from_ref(&report), &settings.encoding)
    };
    let (report, _) = bulk::collect(&tree, &settings, 1_700_000_000);
    let parameters = report.values.len();
    assert!(parameters >= 1_000, "{parameters} parameters");
    // The same document both ways.
    let a: serde_json::Value = serde_json::from_slice(&ours()).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&serde_json_report(&report)).unwrap();
    assert_eq!(a, b);

    let passes = 50;
    let ours_us = best_micros(passes, || {
        black_box(ours());
    });
    let collect_us = best_micros(passes, || {
        black_box(bulk::collect(black_box(&tree), &settings, 1_700_000_000));
    });
    let serde_us = best_micros(passes, || {
        black_box(serde_json_report(black_box(&report)));
    });
    let ours_heap = peak_heap(|| {
        black_box(ours());
    });
    let serde_heap = peak_heap(|| {
        black_box(serde_json_report(black_box(&report)));
    });
    let size = ours().len();
    println!("bulk data report, JSON ObjectHierarchy, {parameters} parameters, {size} bytes");
    println!(
        "  collected from the tree and encoded: {ours_us:>9.0} µs, peak heap {:>7} KiB",
        ours_heap / 1024
    );
    println!("    of which the collection (match, read, name): {collect_us:>9.0} µs");
    println!(
        "  serde_json from values in hand:      {serde_us:>9.0} µs, peak heap {:>7} KiB",
        serde_heap / 1024
    );
    println!(
        "  ratio ours / serde_json: CPU {:.2}x, peak heap {:.2}x",
        ours_us / serde_us,
        ours_heap as f64 / serde_heap as f64
    );
}
