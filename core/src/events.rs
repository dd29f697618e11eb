//! The change stream.
//!
//! Every change committed to the tree, whoever made it, is published exactly
//! once, in commit order, to every subscriber. This is what lets a write over
//! LwM2M become a CWMP "4 VALUE CHANGE" and an ACS write become an LwM2M
//! notification. (Changes of tables read on demand, which change at every
//! read and take no notification, are not published:
//! `ObjectHandler::host_rows`.)
//!
//! Design: the core has no async runtime, so a [`Subscription`] is a bounded
//! queue behind a mutex plus an optional waker callback that a driver sets to
//! wake its task (a `tokio::sync::Notify`, say). A subscriber that falls
//! behind by more than its bound loses the oldest changes and is told so by
//! [`Subscription::take_lagged`]; it then re-reads the tree instead of
//! trusting a partial history.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use crate::path::{Origin, Path};
use crate::support::lock;
use crate::tree::ResourceValue;

/// What changed.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeKind {
    /// A resource got a new value (or a multiple resource a new set).
    Value(ResourceValue),
    /// An instance was created; the path is the instance.
    Created,
    /// An instance was deleted; the path is the instance.
    Deleted,
    /// An executable resource was executed with these arguments; the
    /// handler accepted it and whoever performs the action acts on this.
    Executed(String),
    /// A transfer into the resource advanced (`done` bytes of `total`, when
    /// known): transient, never saved, and no value changed.
    Progress { done: u64, total: Option<u64> },
}

/// One committed change.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Increases by one with every change the tree publishes.
    pub sequence: u64,
    pub origin: Origin,
    pub path: Path,
    pub kind: ChangeKind,
}

type Waker = Box<dyn Fn() + Send + Sync>;

struct Queue {
    changes: VecDeque<Arc<Change>>,
    capacity: usize,
    lagged: u64,
    waker: Option<Waker>,
}

/// The publishing side, owned by the tree.
#[derive(Default)]
pub struct ChangeBus {
    subscribers: Vec<Weak<Mutex<Queue>>>,
    sequence: u64,
}

/// The receiving side. Dropping it unsubscribes.
pub struct Subscription {
    queue: Arc<Mutex<Queue>>,
}

impl ChangeBus {
    /// Subscribes to every change published from now on. At most `capacity`
    /// undelivered changes are kept.
    pub fn subscribe(&mut self, capacity: usize) -> Subscription {
        let queue = Arc::new(Mutex::new(Queue {
            changes: VecDeque::new(),
            capacity: capacity.max(1),
            lagged: 0,
            waker: None,
        }));
        self.subscribers.push(Arc::downgrade(&queue));
        Subscription { queue }
    }

    /// Publishes a batch (one transaction) to every live subscriber and
    /// wakes each once.
    pub(crate) fn publish(&mut self, batch: Vec<(Origin, Path, ChangeKind)>) {
        if batch.is_empty() {
            return;
        }
        let changes: Vec<Arc<Change>> = batch
            .into_iter()
            .map(|(origin, path, kind)| {
                self.sequence += 1;
                Arc::new(Change {
                    sequence: self.sequence,
                    origin,
                    path,
                    kind,
                })
            })
            .collect();
        self.subscribers.retain(|weak| {
            let Some(queue) = weak.upgrade() else {
                return false;
            };
            let mut queue = lock(&queue);
            for change in &changes {
                if queue.changes.len() == queue.capacity {
                    queue.changes.pop_front();
                    queue.lagged += 1;
                }
                queue.changes.push_back(Arc::clone(change));
            }
            if let Some(waker) = &queue.waker {
                waker();
            }
            true
        });
    }

    /// The sequence number of the last published change.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl Subscription {
    /// Takes the next change, if any.
    pub fn next(&self) -> Option<Arc<Change>> {
        lock(&self.queue).changes.pop_front()
    }

    /// Takes every pending change.
    pub fn drain(&self) -> Vec<Arc<Change>> {
        lock(&self.queue).changes.drain(..).collect()
    }

    /// How many changes were dropped because this subscriber fell behind
    /// since the last call; resets the count.
    pub fn take_lagged(&self) -> u64 {
        std::mem::take(&mut lock(&self.queue).lagged)
    }

    /// Sets a callback run after every published batch. It runs with the
    /// tree locked: it must only signal, never call back into the tree.
    pub fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        lock(&self.queue).waker = Some(Box::new(waker));
    }
}
