//! `churn STATE_DIR`: opens the state directory, then commits a new ACS
//! URL `n` (Device.ManagementServer.URL, a value only the tree holds) for
//! n = last saved + 1, + 2, ... printing `n` after each commit returns
//! (i.e. once it is durable). Run until killed.

use std::io::Write as _;

use dm_core::catalog::management_server;
use dm_core::{InstanceId, Origin, Path, Value};
use dm_platform::store::FileStore;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: churn STATE_DIR");
        std::process::exit(2);
    };
    let store = FileStore::open(std::path::Path::new(&dir)).expect("open state directory");
    let saved = store.load().expect("load state");
    let (platform, _) = dm_tests::platform();
    let mut tree = dm_core::Tree::new();
    dm_objects::register(&mut tree, &platform).expect("register");
    let (_, covered) = match saved {
        Some(s) => tree.restore(s),
        None => (Vec::new(), Vec::new()),
    };
    dm_objects::populate(&mut tree, &covered).expect("populate");
    let _ = dm_objects::sync_platform(&mut tree, &platform);
    tree.set_store(Box::new(store));
    let counter = Path::resource(management_server::ID, InstanceId(0), management_server::URL);
    // Continue from what the last run left, so successive runs count up.
    let start = match tree.read(Origin::Agent, &counter) {
        Ok(dm_core::ResourceValue::Single(Value::String(s))) => s.parse::<u64>().unwrap_or(0),
        _ => 0,
    };
    let mut stdout = std::io::stdout();
    for n in start + 1.. {
        tree.begin(Origin::Cli)
            .set(counter, Value::String(n.to_string()))
            .commit()
            .expect("commit");
        writeln!(stdout, "{n}").expect("stdout");
        stdout.flush().expect("flush");
    }
}
