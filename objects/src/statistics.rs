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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::catalog::connectivity_statistics::*;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value, lock,
};
use dm_platform::{LinkStats, Network};

use crate::{layout, stored};

#[derive(Default)]
struct Collection {
    /// Bumped at each Start and Stop: a period's end that finds another
    /// number belongs to a collection that is over.
    generation: u64,
    interface: Option<String>,
    base: LinkStats,
    /// The figures once collection stopped (bytes sent, received).
    stopped: Option<(u64, u64)>,
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

struct Statistics {
    network: Arc<dyn Network>,
    collection: Arc<Mutex<Collection>>,
}

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Statistics {
        network,
        collection: Arc::new(Mutex::new(Collection {
            stopped: Some((0, 0)),
            ..Collection::default()
        })),
    }))
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
        let (sent, received) = lock(&self.collection).figures(self.network.as_ref());
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
        let mut collection = lock(&self.collection);
        match resource {
            START => {
                let interface = self.network.state().interface;
                let base = interface
                    .as_deref()
                    .and_then(|i| self.network.link_stats(i).ok())
                    .unwrap_or_default();
                collection.generation += 1;
                collection.interface = interface;
                collection.base = base;
                collection.stopped = None;
                let period = match state.value(COLLECTION_PERIOD) {
                    Some(Value::Integer(p)) if *p > 0 => u64::try_from(*p).ok(),
                    _ => None,
                };
                if let Some(period) = period {
                    // One sleeping thread for the collection's end: gone
                    // at the end, and a later Start or Stop makes it a
                    // no-op.
                    let (network, shared) =
                        (Arc::clone(&self.network), Arc::clone(&self.collection));
                    let generation = collection.generation;
                    std::thread::Builder::new()
                        .name("dmagent-stats".into())
                        .spawn(move || {
                            std::thread::sleep(Duration::from_secs(period));
                            let mut collection = lock(&shared);
                            if collection.generation == generation {
                                collection.stopped = Some(collection.figures(network.as_ref()));
                            }
                        })
                        .map_err(|e| {
                            Error::Platform(format!("the collection period's timer: {e}"))
                        })?;
                }
                Ok(())
            }
            STOP => {
                collection.generation += 1;
                let figures = collection.figures(self.network.as_ref());
                collection.stopped = Some(figures);
                Ok(())
            }
            _ => Err(Error::NotSupported(Path::resource(ID, instance, resource))),
        }
    }
}
