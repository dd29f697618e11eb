//! TR-181's `Device.DeviceInfo.VendorConfigFile.{i}`: the configuration
//! file the agent has, its own (every writable parameter, what an Upload
//! of "1 Vendor Configuration File" sends and a Download of "3 Vendor
//! Configuration File" restores). One row, the agent's; its Date is when
//! a Download last restored it (TR-181: "first applied"), saved with the
//! tree, the unknown time until then.

use dm_core::catalog::vendor_config_file::*;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};

use crate::{UNKNOWN_TIME, layout, stored};

/// The file's one row.
pub const ROW: InstanceId = InstanceId(1);
/// Its name and version, as its first line says them (`# dmagent
/// configuration 1`).
pub const NAME_OF_FILE: &str = "dmagent configuration";
pub const VERSION_OF_FILE: &str = "1";

struct VendorConfigFile;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(VendorConfigFile))
}

impl ObjectHandler for VendorConfigFile {
    fn schema(&self) -> &'static ObjectSchema {
        &SCHEMA
    }

    /// What the file is comes with this version of the agent (read
    /// live, not saved); when it was restored is saved.
    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(&SCHEMA, &[])
            .with(NAME, Slot::Live)
            .with(VERSION, Slot::Live)
            .with(DATE, stored(Value::DateTime(UNKNOWN_TIME)))
            .with(DESCRIPTION, Slot::Live)
            .with(USE_FOR_BACKUP_RESTORE, Slot::Live))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let value = match resource {
            NAME => Value::String(NAME_OF_FILE.into()),
            VERSION => Value::String(VERSION_OF_FILE.into()),
            DESCRIPTION => {
                Value::String("every writable parameter, one per line: name, type, value".into())
            }
            USE_FOR_BACKUP_RESTORE => Value::Boolean(true),
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        };
        Ok(ResourceValue::Single(value))
    }

    /// "For information only" (TR-181): no client adds or removes one.
    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        crate::ethernet::refuse_clients(origin, Path::instance(ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        crate::ethernet::refuse_clients(origin, Path::instance(ID, instance))
    }
}

/// The row, made at first start (the table is the agent's).
pub fn create(tx: &mut dm_core::tree::Transaction<'_>) {
    tx.create(ID, Some(ROW));
}

/// A Download restored the file at `now` (Unix seconds).
pub fn restored(tree: &mut Tree, now: i64) -> Result<(), dm_core::TransactionError> {
    tree.begin(Origin::Agent)
        .set(Path::resource(ID, ROW, DATE), Value::DateTime(now))
        .commit()
        .map(drop)
}
