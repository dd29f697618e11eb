//! The host boundary: what the host must do for the tree, made off the
//! tree's lock (see ARCHITECTURE.md, "Host boundary").
//!
//! Writes: a transaction whose changes need the host ([`HostWrite`], from
//! `ObjectHandler::host_write`) is prepared, its [`HostWork`] run by the
//! driver on a thread of its own, then completed.

use crate::error::Error;

/// One change the host makes for a transaction (a D-Bus call to
/// NetworkManager): it may take seconds, so it runs off the tree's lock and
/// off the runtime thread, and the transaction completes with its outcome.
/// Made, it returns the write that takes it back, built from what the
/// host answered (the id NetworkManager gave a new profile): worked out
/// before, an undo could not name what did not exist yet.
pub struct HostWrite {
    what: String,
    run: Box<dyn FnOnce() -> Result<Option<HostWrite>, Error> + Send>,
}

impl HostWrite {
    /// `what` names the write for logs ("NetworkManager profile guest");
    /// `run` makes it and returns its undo, if it can be undone.
    pub fn new(
        what: impl Into<String>,
        run: impl FnOnce() -> Result<Option<HostWrite>, Error> + Send + 'static,
    ) -> HostWrite {
        HostWrite {
            what: what.into(),
            run: Box::new(run),
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}

impl std::fmt::Debug for HostWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostWrite({})", self.what)
    }
}

/// How long the host may take over a transaction's writes before the
/// request that wants them is answered with the failure
/// ([`HostWork::run_within`]).
/// Two writes to a slow NetworkManager fit (the D-Bus platform gives one
/// 10 s), and it stays under the 30 s an ACS such as GenieACS waits
/// between two messages of a session.
pub const HOST_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(25);

/// The host writes of one transaction, in order. While the work (or the
/// undo it leaves) exists, the transaction's instances stay busy for
/// other clients ([`HostWork::hold`]): a host thread still writing after
/// its caller gave up keeps them.
#[derive(Debug, Default)]
pub struct HostWork {
    steps: Vec<HostWrite>,
    hold: Option<std::sync::Arc<()>>,
}

impl HostWork {
    /// Adds a write.
    pub(crate) fn push(&mut self, write: HostWrite) {
        self.steps.push(write);
    }

    /// Keeps `token` (the busy mark of the transaction's instances) alive
    /// as long as this work or its undo.
    pub(crate) fn hold(&mut self, token: std::sync::Arc<()>) {
        self.hold = Some(token);
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// What the writes are, for logs.
    pub fn describe(&self) -> String {
        self.steps
            .iter()
            .map(|w| w.what.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs the writes in order, blocking (the caller runs it on a thread
    /// of its own). On a failure the writes already made are taken back,
    /// last first (best effort), and the error returned; on success, the
    /// work that takes every write back, last first, should the
    /// transaction still fail (its save, or a caller that stopped
    /// waiting).
    pub fn run(self) -> Result<HostWork, Error> {
        let mut undo = Vec::new();
        for write in self.steps {
            match (write.run)() {
                Ok(back) => undo.extend(back),
                Err(e) => {
                    undo.reverse();
                    HostWork {
                        steps: undo,
                        hold: self.hold,
                    }
                    .undo();
                    return Err(e);
                }
            }
        }
        undo.reverse();
        Ok(HostWork {
            steps: undo,
            hold: self.hold,
        })
    }

    /// [`HostWork::run`] on a thread of its own, waiting at most `limit`
    /// for it (blocking the caller, which runs this off the runtime
    /// thread). A host that has not answered by then is a failure
    /// ([`Error::PlatformUnavailable`]); should its writes still be made
    /// later, that thread takes them back, so the host ends as the tree
    /// (all or nothing).
    pub fn run_within(self, limit: std::time::Duration) -> Result<HostWork, Error> {
        use std::sync::{Arc, Condvar, Mutex, PoisonError};
        let what = self.describe();
        // The outcome, and whether the caller stopped waiting: decided
        // under one lock, so writes made after the wait ended are always
        // taken back, and never twice.
        type Shared = (Mutex<(Option<Result<HostWork, Error>>, bool)>, Condvar);
        let shared: Arc<Shared> = Arc::new((Mutex::new((None, false)), Condvar::new()));
        let worker = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("host-write".into())
            .spawn(move || {
                let outcome = self.run();
                let (state, ready) = &*worker;
                let mut state = crate::support::lock(state);
                if state.1 {
                    drop(state);
                    if let Ok(undo) = outcome {
                        undo.undo();
                    }
                } else {
                    state.0 = Some(outcome);
                    ready.notify_one();
                }
            });
        if let Err(e) = spawned {
            return Err(Error::Platform(format!("{what}: no thread to run it: {e}")));
        }
        let (state, ready) = &*shared;
        let state = crate::support::lock(state);
        let (mut state, _) = ready
            .wait_timeout_while(state, limit, |s| s.0.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        match state.0.take() {
            Some(outcome) => outcome,
            None => {
                state.1 = true;
                Err(Error::PlatformUnavailable(format!(
                    "{what}: no answer from the host within {} s",
                    limit.as_secs()
                )))
            }
        }
    }

    /// Runs the writes as an undo: every one, in order, errors ignored.
    pub fn undo(self) {
        for write in self.steps {
            let _ = (write.run)();
        }
    }
}

/// A read of a live resource that needs slow host I/O (a process to run,
/// a provider to ask): made off the tree's lock before a request that
/// wants the value is served, then supplied to the tree
/// ([`Tree::supply`](crate::Tree::supply)), where that origin's reads
/// find it.
pub struct HostRead {
    what: String,
    read: Box<dyn FnOnce() -> Result<crate::ResourceValue, Error> + Send>,
}

impl HostRead {
    /// `what` names the read for logs ("the system log since the last
    /// read").
    pub fn new(
        what: impl Into<String>,
        read: impl FnOnce() -> Result<crate::ResourceValue, Error> + Send + 'static,
    ) -> HostRead {
        HostRead {
            what: what.into(),
            read: Box::new(read),
        }
    }
}

impl std::fmt::Debug for HostRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostRead({})", self.what)
    }
}

/// One row of a table the host gives: its resources' values.
pub type Row = Vec<(crate::ResourceId, crate::Value)>;

/// The rows of a table the host gives when a request lists it (the
/// processes, the neighbour table): there is no event when they change,
/// so they are fetched off the tree's lock before a request that lists
/// the table (the adapter decides which: for CWMP, a GetParameterValues
/// or GetParameterNames at or above the table), and committed as the
/// platform's
/// ([`Tree::supply`](crate::Tree::supply)). A row keeps its instance
/// number while its `key` resources keep their values.
pub struct HostRows {
    what: String,
    key: &'static [crate::ResourceId],
    read: Box<dyn FnOnce() -> Result<Vec<Row>, Error> + Send>,
}

impl HostRows {
    pub fn new(
        what: impl Into<String>,
        key: &'static [crate::ResourceId],
        read: impl FnOnce() -> Result<Vec<Row>, Error> + Send + 'static,
    ) -> HostRows {
        HostRows {
            what: what.into(),
            key,
            read: Box::new(read),
        }
    }
}

impl std::fmt::Debug for HostRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostRows({})", self.what)
    }
}

/// What one host read is: a value, or a table's rows.
enum Job {
    Value(Box<dyn FnOnce() -> Result<crate::ResourceValue, Error> + Send>),
    Rows(Box<dyn FnOnce() -> Result<Vec<Row>, Error> + Send>),
}

enum Outcome {
    Value(Result<crate::ResourceValue, Error>),
    Rows(Result<Vec<Row>, Error>),
}

impl Job {
    fn run(self) -> Outcome {
        match self {
            Job::Value(read) => Outcome::Value(read()),
            Job::Rows(read) => Outcome::Rows(read()),
        }
    }
}

/// The most threads one request's host reads run on: a table of volatile
/// values is read a few at a time, not one thread each.
pub const HOST_READ_THREADS: usize = 4;

/// How long the host may take over a request's reads; those not answered
/// by then read as unavailable.
pub const HOST_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The host reads one request needs ([`Tree::host_reads`](crate::Tree::host_reads)).
#[derive(Debug, Default)]
pub struct HostReads {
    reads: Vec<(crate::Origin, crate::Path, HostRead)>,
    rows: Vec<(crate::ObjectId, HostRows)>,
}

/// A table's rows as read: the object, its key resources, the rows.
pub(crate) type FetchedRows = (
    crate::ObjectId,
    &'static [crate::ResourceId],
    Result<Vec<Row>, Error>,
);

/// What [`HostReads`] brought back, for [`Tree::supply`](crate::Tree::supply).
#[derive(Debug, Default)]
pub struct Fetched {
    pub(crate) values: Vec<(
        crate::Origin,
        crate::Path,
        Result<crate::ResourceValue, Error>,
    )>,
    /// Tables' rows.
    pub(crate) rows: Vec<FetchedRows>,
}

/// Where a host read's outcome goes.
enum Target {
    Value(crate::Origin, crate::Path),
    Rows(crate::ObjectId, &'static [crate::ResourceId]),
}

impl HostReads {
    pub(crate) fn push(&mut self, origin: crate::Origin, path: crate::Path, read: HostRead) {
        self.reads.push((origin, path, read));
    }

    pub(crate) fn push_rows(&mut self, object: crate::ObjectId, rows: HostRows) {
        self.rows.push((object, rows));
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.rows.is_empty()
    }

    /// What the reads are, for logs.
    pub fn describe(&self) -> String {
        self.rows
            .iter()
            .map(|(_, r)| r.what.as_str())
            .chain(self.reads.iter().map(|(_, _, r)| r.what.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Makes the reads, blocking (the caller runs this off the runtime
    /// thread), on at most [`HOST_READ_THREADS`] threads and all within
    /// `limit`: a read not answered by then is
    /// [`Error::PlatformUnavailable`] (its thread finishes on its own and
    /// its value is dropped).
    pub fn run_within(self, limit: std::time::Duration) -> Fetched {
        use std::sync::{Arc, Mutex};
        let deadline = std::time::Instant::now() + limit;
        let total = self.reads.len() + self.rows.len();
        let mut slots = Vec::with_capacity(total);
        let mut queue = Vec::with_capacity(total);
        let (tx, rx) = std::sync::mpsc::channel();
        // Tables first: their rows are what a request lists.
        let rows = self.rows.into_iter().map(|(object, rows)| {
            (
                Target::Rows(object, rows.key),
                rows.what,
                Job::Rows(rows.read),
            )
        });
        let values = self.reads.into_iter().map(|(origin, path, read)| {
            (
                Target::Value(origin, path),
                read.what,
                Job::Value(read.read),
            )
        });
        for (n, (target, what, job)) in rows.chain(values).enumerate() {
            slots.push((target, what, None));
            queue.push((n, job));
        }
        // Taken from the front by the workers, in the request's order.
        queue.reverse();
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = 0;
        for _ in 0..total.min(HOST_READ_THREADS) {
            let (queue, tx) = (Arc::clone(&queue), tx.clone());
            let spawned = std::thread::Builder::new()
                .name("host-read".into())
                .spawn(move || {
                    loop {
                        let next = crate::support::lock(&queue).pop();
                        let Some((n, job)) = next else { return };
                        if tx.send((n, job.run())).is_err() {
                            return;
                        }
                    }
                });
            if spawned.is_ok() {
                workers += 1;
            }
        }
        drop(tx);
        let mut answered = 0;
        while workers > 0 && answered < total {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((n, outcome)) => {
                    slots[n].2 = Some(outcome);
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        // What is still queued is not made: the time is up.
        crate::support::lock(&queue).clear();
        let mut fetched = Fetched::default();
        for (target, what, outcome) in slots {
            let missing = || {
                if workers == 0 {
                    Error::Platform(format!("{what}: no thread to run it"))
                } else {
                    Error::PlatformUnavailable(format!(
                        "{what}: no answer in {} s",
                        limit.as_secs()
                    ))
                }
            };
            match (target, outcome) {
                (Target::Value(origin, path), Some(Outcome::Value(value))) => {
                    fetched.values.push((origin, path, value));
                }
                (Target::Value(origin, path), _) => {
                    fetched.values.push((origin, path, Err(missing())));
                }
                (Target::Rows(object, key), Some(Outcome::Rows(rows))) => {
                    fetched.rows.push((object, key, rows));
                }
                (Target::Rows(object, key), _) => fetched.rows.push((object, key, Err(missing()))),
            }
        }
        fetched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};

    /// A table's worth of reads runs on at most HOST_READ_THREADS threads,
    /// and every read is answered.
    #[test]
    fn host_reads_run_a_few_at_a_time() {
        // (running now, most at once), and a wake-up for the readers.
        let shared = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
        let total = HOST_READ_THREADS + 3;
        let mut reads = HostReads::default();
        for n in 0..total {
            let shared = Arc::clone(&shared);
            let path = crate::Path::resource(
                crate::ObjectId(32769),
                crate::InstanceId(0),
                crate::ResourceId(u16::try_from(n).unwrap()),
            );
            reads.push(
                crate::Origin::Acs,
                path,
                HostRead::new(format!("read {n}"), move || {
                    let (state, changed) = &*shared;
                    let mut state = crate::support::lock(state);
                    state.0 += 1;
                    state.1 = state.1.max(state.0);
                    changed.notify_all();
                    // Held until every read runs at once, or a while: with
                    // a bound, that never happens.
                    let (mut state, _) = changed
                        .wait_timeout_while(state, std::time::Duration::from_millis(200), |s| {
                            s.0 < total
                        })
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    state.0 -= 1;
                    Ok(crate::ResourceValue::Single(crate::Value::Integer(
                        i64::try_from(n).unwrap(),
                    )))
                }),
            );
        }
        let fetched = reads.run_within(std::time::Duration::from_secs(30));
        assert_eq!(fetched.values.len(), total);
        for (n, (_, _, value)) in fetched.values.iter().enumerate() {
            assert_eq!(
                value,
                &Ok(crate::ResourceValue::Single(crate::Value::Integer(
                    i64::try_from(n).unwrap()
                )))
            );
        }
        assert_eq!(crate::support::lock(&shared.0).1, HOST_READ_THREADS);
    }
}
