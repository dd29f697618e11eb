//! System Log (/10259): the host's log, whole or since the last read.

use std::sync::Arc;

use dm_core::catalog::system_log::{self, *};
use dm_core::{
    Error, HostRead, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};
use dm_platform::SystemLog;

use crate::{Platform, layout, stored};

struct Log {
    log: Arc<dyn SystemLog>,
}

pub fn register(tree: &mut Tree, platform: &Platform) -> Result<(), Error> {
    tree.register(Box::new(Log {
        log: Arc::clone(&platform.log),
    }))
}

impl ObjectHandler for Log {
    fn schema(&self) -> &'static ObjectSchema {
        &system_log::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(&SCHEMA, &[ENABLED])
            .with(NAME, stored(Value::String("system".into())))
            .with(ENABLED, stored(Value::Boolean(true)))
            .with(READ_ALL, Slot::Live)
            .with(READ, Slot::Live)
            .with(MAXIMUM_SIZE, Slot::Live)
            .with(PERSISTENT, Slot::Live))
    }

    /// Both reads run a process (journalctl): made off the tree's lock
    /// before the request is served (`Tree::host_reads`).
    fn host_read(
        &self,
        origin: Origin,
        _instance: InstanceId,
        resource: ResourceId,
    ) -> Option<HostRead> {
        let log = Arc::clone(&self.log);
        match resource {
            READ_ALL => Some(HostRead::new("the system log", move || {
                Ok(ResourceValue::Single(Value::String(log.read_all()?)))
            })),
            // "Since the last read" of this reader (Core: each LwM2M
            // server, the ACS, the CLI).
            READ => Some(HostRead::new(
                "the system log since the last read",
                move || {
                    let text = log.read_new(&origin.to_string())?;
                    Ok(ResourceValue::Single(Value::String(text)))
                },
            )),
            _ => None,
        }
    }

    /// A read that fetched nothing first (a notification, `dmagent dump`):
    /// the log is not read under the tree's lock.
    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        match resource {
            READ_ALL | READ => Err(Error::PlatformUnavailable(
                "the system log is read on request".into(),
            )),
            // TR-181 VendorLogFile: the log's bounds, from the platform.
            MAXIMUM_SIZE => Ok(ResourceValue::Single(Value::Unsigned(
                self.log.maximum_size().min(u64::from(u32::MAX)),
            ))),
            PERSISTENT => self
                .log
                .persistent()
                .map(|p| ResourceValue::Single(Value::Boolean(p)))
                .ok_or(Error::NotReadable(Path::resource(ID, instance, resource))),
            _ => Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        }
    }
}
