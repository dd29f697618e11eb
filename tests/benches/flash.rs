//! Flash wear: state-file writes in ten idle minutes while the radio's
//! signal strength changes every second, on the whole object tree with
//! the real file store (temp file, fsync, rename, fsync of the directory).
//!
//! `cargo bench -p dmagent-tests --bench flash`. Simulated time: the
//! platform reports a new signal each second and the objects commit it, as
//! the D-Bus platform's signal handler does. Target: 0 writes. Before the
//! rule "only durable changes are written" this was one write per change
//! (600, each with two fsyncs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dm_core::{Snapshot, StateStore, Tree};
use dm_objects::{Identity, Platform, Provisioning};
use dm_platform::Network as _;
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};
use dm_platform::store::FileStore;

/// The real store, counting what it writes.
struct Counted {
    inner: FileStore,
    writes: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl StateStore for Counted {
    fn save(&mut self, snapshot: &Snapshot) -> Result<(), dm_core::SaveError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.save(snapshot)?;
        let size =
            std::fs::metadata(self.inner.dir().join("state.json")).map_or(0, |m| m.len() as usize);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let network = Arc::new(MemoryNetwork::demo());
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: network.clone(),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).expect("objects");
    dm_objects::populate(&mut tree, &[]).expect("defaults");
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
    .expect("provisioning");
    let _ = dm_objects::sync_platform(&mut tree, &platform);
    let (writes, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    tree.set_store(Box::new(Counted {
        inner: FileStore::open(dir.path()).expect("a state directory"),
        writes: writes.clone(),
        bytes: bytes.clone(),
    }));
    let changes = tree.subscribe(1024);
    let start = std::time::Instant::now();
    for second in 0..600 {
        let mut radio = network.radio();
        radio.signal_dbm = Some(-70 - (second % 20));
        network.set_radio(radio);
        let _ = dm_objects::sync_platform(&mut tree, &platform);
    }
    let published = changes.drain().len();
    println!(
        "10 simulated idle minutes, signal changing every second: {published} changes published, \
         {} state writes ({} bytes), {:.1} ms of CPU time in all",
        writes.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64() * 1000.0
    );
}
