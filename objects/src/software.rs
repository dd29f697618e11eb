//! Software Management (/9) and TR-181 Device.SoftwareModules.
//!
//! One instance per software package. Update State follows LwM2M Core E.9:
//! INITIAL (0), DOWNLOAD STARTED (1), DOWNLOADED (2), DELIVERED (3),
//! INSTALLED (4). Install needs DELIVERED, Uninstall, Activate and
//! Deactivate need INSTALLED; the package pipeline itself comes with the
//! software issue.

use dm_core::catalog::software::{self, *};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId, Tree, Value,
};

use crate::layout;

use dm_core::enums::software::{DELIVERED, INSTALLED};

struct Software;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(Software))
}

impl ObjectHandler for Software {
    fn schema(&self) -> &'static ObjectSchema {
        &software::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        // A package not yet activated is an Idle Execution Unit.
        Ok(layout(&SCHEMA, &[PACKAGE_URI, STATUS, UUID])
            .with(EU_STATUS, crate::stored(Value::String("Idle".into()))))
    }

    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        state: &Instance,
    ) -> Result<(), Error> {
        let update_state = match state.value(UPDATE_STATE) {
            Some(Value::Integer(s)) => *s,
            _ => 0,
        };
        let (needed, what) = match resource {
            INSTALL => (DELIVERED, "install needs a delivered package"),
            UNINSTALL | ACTIVATE | DEACTIVATE => (INSTALLED, "the package is not installed"),
            _ => return Err(Error::NotSupported(Path::resource(ID, instance, resource))),
        };
        if update_state == needed {
            Ok(())
        } else {
            Err(Error::Rejected {
                path: Path::resource(ID, instance, resource),
                reason: what.into(),
            })
        }
    }
}
