//! Connectivity Statistics (LwM2M /7): the data sent and received over
//! the bearer since a server executed Start, in kB (1024 bytes), up to
//! Stop or the end of the Collection Period.
//!
//! The bearer is the interface the default route leaves by when Start is
//! executed; its kernel counters are the figures (they count every IP
//! packet with its headers, as /7 asks). A collection lives in memory: a
//! restart ends it (the values read 0 until the next Start). SMS counters
//! and message sizes are not served (the agent sends no SMS, and the
//! sizes of whose messages /7 does not say).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dm_core::catalog::connectivity_statistics::*;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value, lock,
};
use dm_platform::{LinkStats, Network};

use crate::{layout, stored};

#[derive(Default)]
struct Collection {
    interface: Option<String>,
    base: LinkStats,
    /// The figures once collection stopped (bytes sent, received).
    stopped: Option<(u64, u64)>,
    /// When the Collection Period ends, while one runs.
    until: Option<Instant>,
    /// The period's timer thread is there (one at most).
    timing: bool,
}

impl Collection {
    /// Bytes sent and received since Start, now.
    fn figures(&self, network: &dyn Network) -> (u64, u64) {
        if let Some(stopped) = self.stopped {
            return stopped;
        }
        let Some(now) = self
            .interface
            .as_deref()
            .and_then(|i| network.link_stats(i).ok())
        else {
            return (0, 0);
        };
        (
            now.bytes_sent.saturating_sub(self.base.bytes_sent),
            now.bytes_received.saturating_sub(self.base.bytes_received),
        )
    }
}

/// The collection, and the condition its timer waits on.
type Shared = Arc<(Mutex<Collection>, Condvar)>;

struct Statistics {
    network: Arc<dyn Network>,
    collection: Shared,
}

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Statistics {
        network,
        collection: Arc::new((
            Mutex::new(Collection {
                stopped: Some((0, 0)),
                ..Collection::default()
            }),
            Condvar::new(),
        )),
    }))
}

/// The period's timer: one thread, asleep until the end of the period
/// that runs (a later Start moves it, Stop ends it), which freezes the
/// figures then and exits when no period runs.
fn time(network: Arc<dyn Network>, shared: Shared) {
    let (lock_, wake) = &*shared;
    let mut collection = lock(lock_);
    while let Some(until) = collection.until {
        let now = Instant::now();
        if now >= until {
            collection.stopped = Some(collection.figures(network.as_ref()));
            collection.until = None;
            break;
        }
        collection = match wake.wait_timeout(collection, until - now) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
    collection.timing = false;
}

impl ObjectHandler for Statistics {
    fn schema(&self) -> &'static ObjectSchema {
        &SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(&SCHEMA, &[])
            .with(TX_DATA, Slot::Live)
            .with(RX_DATA, Slot::Live)
            .with(COLLECTION_PERIOD, stored(Value::Integer(0))))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let (sent, received) = lock(&self.collection.0).figures(self.network.as_ref());
        let kilobytes =
            |bytes: u64| Value::Integer(i64::try_from(bytes / 1024).unwrap_or(i64::MAX));
        Ok(ResourceValue::Single(match resource {
            TX_DATA => kilobytes(sent),
            RX_DATA => kilobytes(received),
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        }))
    }

    fn validate(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        match state.value(COLLECTION_PERIOD) {
            Some(Value::Integer(p)) if *p < 0 => Err(Error::Rejected {
                path: Path::resource(ID, instance, COLLECTION_PERIOD),
                reason: format!("a collection period of {p} s"),
            }),
            _ => Ok(()),
        }
    }

    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        state: &Instance,
    ) -> Result<(), Error> {
        let (lock_, wake) = &*self.collection;
        let mut collection = lock(lock_);
        match resource {
            START => {
                let interface = self.network.state().interface;
                collection.base = interface
                    .as_deref()
                    .and_then(|i| self.network.link_stats(i).ok())
                    .unwrap_or_default();
                collection.interface = interface;
                collection.stopped = None;
                collection.until = match state.value(COLLECTION_PERIOD) {
                    Some(Value::Integer(p)) if *p > 0 => u64::try_from(*p)
                        .ok()
                        .and_then(|p| Instant::now().checked_add(Duration::from_secs(p))),
                    _ => None,
                };
                if collection.until.is_some() && !collection.timing {
                    let (network, shared) =
                        (Arc::clone(&self.network), Arc::clone(&self.collection));
                    std::thread::Builder::new()
                        .name("dmagent-stats".into())
                        .spawn(move || time(network, shared))
                        .map_err(|e| {
                            Error::Platform(format!("the collection period's timer: {e}"))
                        })?;
                    collection.timing = true;
                }
                wake.notify_all();
                Ok(())
            }
            STOP => {
                let figures = collection.figures(self.network.as_ref());
                collection.stopped = Some(figures);
                collection.until = None;
                wake.notify_all();
                Ok(())
            }
            _ => Err(Error::NotSupported(Path::resource(ID, instance, resource))),
        }
    }
}
