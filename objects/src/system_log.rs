//! System Log (/10259): the host's log, whole or since the last read.

use std::sync::Arc;

use dm_core::catalog::system_log::{self, *};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
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
            .with(READ, Slot::Live))
    }

    fn read(
        &self,
        origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let text = match resource {
            READ_ALL => self.log.read_all()?,
            // "Since the last read" of this reader (Core: each LwM2M
            // server, the ACS, the CLI).
            READ => self.log.read_new(&origin.to_string())?,
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        };
        Ok(ResourceValue::Single(Value::String(text)))
    }
}
