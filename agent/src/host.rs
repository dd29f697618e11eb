//! The agent's own writes through the host boundary: a prepared
//! transaction's host writes made off the runtime thread, the tree
//! unlocked meanwhile, then completed (ARCHITECTURE.md, "Host boundary").

use std::sync::Mutex;

use dm_core::{Origin, Path, Tree, lock};
use dm_cwmp::rpc;

/// Makes host writes off the runtime thread, within
/// [`dm_core::tree::HOST_WRITE_LIMIT`] (the tree unlocked meanwhile).
pub async fn make_host_writes(
    work: dm_core::HostWork,
) -> Result<dm_core::HostWork, dm_core::Error> {
    tokio::task::spawn_blocking(move || work.run_within(dm_core::tree::HOST_WRITE_LIMIT))
        .await
        .unwrap_or_else(|e| Err(dm_core::Error::Platform(e.to_string())))
}

/// Makes a transaction's host writes off the runtime thread, within
/// [`dm_core::tree::HOST_WRITE_LIMIT`], the tree unlocked meanwhile.
pub async fn carry_to_host(
    mut pending: dm_core::PendingCommit,
    tree: &Mutex<Tree>,
) -> Result<dm_core::tree::Committed, dm_core::TransactionError> {
    let outcome = make_host_writes(pending.take_work()).await;
    let completion = lock(tree).complete(pending, outcome);
    if let Some(undo) = completion.undo {
        tokio::task::spawn_blocking(move || undo.undo());
    }
    completion.result
}

/// A change the agent (the CLI, a configuration restore) makes, to its
/// end (see [`carry_to_host`]).
pub async fn finish_prepared(
    tree: &Mutex<Tree>,
    prepared: Result<dm_core::Prepared, dm_core::TransactionError>,
) -> Result<dm_core::tree::Committed, dm_core::TransactionError> {
    match prepared? {
        dm_core::Prepared::Committed(committed) => Ok(committed),
        dm_core::Prepared::Pending(pending) => carry_to_host(pending, tree).await,
    }
}

/// A write RPC the agent makes (the CLI, a configuration restore), to its
/// end (see [`carry_to_host`]).
pub async fn finish_written(
    tree: &Mutex<Tree>,
    written: rpc::Written,
) -> Result<rpc::WriteResult, dm_cwmp::soap::Fault> {
    match written {
        rpc::Written::Done(result) => result,
        rpc::Written::Host(mut host) => {
            let outcome = make_host_writes(host.take_work()).await;
            let (result, undo) = host.complete(&mut lock(tree), outcome);
            if let Some(undo) = undo {
                tokio::task::spawn_blocking(move || undo.undo());
            }
            result
        }
    }
}

/// Makes the host reads the paths `paths` picks from the tree need
/// (volatile values, tables read on demand) off the tree's lock and
/// off the runtime's thread, and supplies them: `origin` reads them
/// until it calls `Tree::forget_fetched`. Returns the tree, locked
/// since the supply (no other request forgets them meanwhile), and
/// whether anything was read.
pub async fn read_from_host<'t>(
    tree: &'t Mutex<Tree>,
    origin: Origin,
    paths: impl FnOnce(&Tree) -> Vec<Path>,
) -> (std::sync::MutexGuard<'t, Tree>, bool) {
    let reads = {
        let tree = lock(tree);
        tree.host_reads(origin, &paths(&tree))
    };
    if reads.is_empty() {
        return (lock(tree), false);
    }
    let fetched =
        tokio::task::spawn_blocking(move || reads.run_within(dm_core::tree::HOST_READ_LIMIT))
            .await
            .unwrap_or_default();
    let mut tree = lock(tree);
    for warning in tree.supply(fetched) {
        tracing::warn!("{warning}");
    }
    (tree, true)
}
