//! Declared objects: objects the agent is not built with, whose schema a
//! definition file gave at start (see `dm_lwm2m::declare`), served from
//! values the configuration gives.
//!
//! A declared instance starts with the configured values and every other
//! mandatory resource at its type's zero value; a management server's
//! write is stored and saved like any other, so after a restart the
//! saved value is served, not the configured one (the configuration
//! gives initial values, as a factory default would).

use std::collections::BTreeMap;

use dm_core::tree::default_slot;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, ResourceId, ResourceValue,
    Slot, Tree,
};

/// One declared object and its configured instances and values.
#[derive(Clone, Debug)]
pub struct Declaration {
    pub schema: &'static ObjectSchema,
    /// Created at first start (a single-instance object has instance 0
    /// only).
    pub instances: Vec<InstanceId>,
    /// Initial values, checked against the schema.
    pub values: Vec<(InstanceId, ResourceId, ResourceValue)>,
}

// Schemas are interned (one per definition text), so the same schema is
// the same address.
impl PartialEq for Declaration {
    fn eq(&self, other: &Declaration) -> bool {
        std::ptr::eq(self.schema, other.schema)
            && self.instances == other.instances
            && self.values == other.values
    }
}

// Values come from a configuration file, which has no NaN the loader
// accepts.
impl Eq for Declaration {}

struct Declared {
    schema: &'static ObjectSchema,
    values: BTreeMap<InstanceId, Vec<(ResourceId, ResourceValue)>>,
}

impl ObjectHandler for Declared {
    fn schema(&self) -> &'static ObjectSchema {
        self.schema
    }

    fn create(&self, instance: InstanceId) -> Result<Instance, Error> {
        let mut created = Instance::new();
        for resource in self.schema.resources.iter().filter(|r| r.mandatory) {
            created = created.with(resource.id, default_slot(resource));
        }
        for (resource, value) in self.values.get(&instance).into_iter().flatten() {
            created = created.with(*resource, Slot::Stored(value.clone()));
        }
        Ok(created)
    }

    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        _state: &Instance,
    ) -> Result<(), Error> {
        // Nothing serves it yet: no provider is attached to a declared
        // object by a definition alone.
        Err(Error::NotSupported(dm_core::Path::resource(
            self.schema.id,
            instance,
            resource,
        )))
    }
}

/// Registers the declared objects' handlers (before a snapshot is
/// restored, so their saved instances come back).
pub fn register(tree: &mut Tree, declarations: &[Declaration]) -> Result<(), Error> {
    for declaration in declarations {
        let mut values: BTreeMap<InstanceId, Vec<(ResourceId, ResourceValue)>> = BTreeMap::new();
        for (instance, resource, value) in &declaration.values {
            values
                .entry(*instance)
                .or_default()
                .push((*resource, value.clone()));
        }
        tree.register(Box::new(Declared {
            schema: declaration.schema,
            values,
        }))?;
    }
    Ok(())
}

/// Creates the configured instances of the declared objects a restored
/// snapshot did not cover (single-instance objects were made by
/// [`crate::populate`]).
pub fn populate(
    tree: &mut Tree,
    declarations: &[Declaration],
    covered: &[dm_core::ObjectId],
) -> Result<(), dm_core::TransactionError> {
    let mut tx = tree.begin(Origin::Agent);
    let mut any = false;
    for declaration in declarations
        .iter()
        .filter(|d| d.schema.multiple && !covered.contains(&d.schema.id))
    {
        for instance in &declaration.instances {
            tx.create(declaration.schema.id, Some(*instance));
            any = true;
        }
    }
    if any {
        tx.commit()?;
    }
    Ok(())
}
