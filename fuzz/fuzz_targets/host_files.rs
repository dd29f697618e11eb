//! What the agent reads from the host and its own disk: /proc files and
//! a (corrupted) state file, whose snapshot is then restored into a tree.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dm_platform::linux::parse_uptime(text);
        let _ = dm_platform::linux::parse_meminfo(text);
        if let Ok(times) = dm_platform::linux::parse_cpu_times(text) {
            let _ = times.usage_since(Some(&times));
        }
    }
    if let Ok(snapshot) = dm_platform::store::FileStore::decode(data) {
        let mut tree = dm_core::Tree::new();
        let platform = dm_objects::Platform {
            host: std::sync::Arc::new(dm_platform::linux::LinuxHost::new("/nonexistent")),
            network: std::sync::Arc::new(dm_platform::memory::MemoryNetwork::demo()),
            log: std::sync::Arc::new(dm_platform::memory::MemoryLog::default()),
        };
        let _ = dm_objects::register(&mut tree, &platform);
        let (_, covered) = tree.restore(snapshot);
        let _ = dm_objects::populate(&mut tree, &covered);
    }
});
