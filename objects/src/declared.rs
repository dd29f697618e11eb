//! Declared objects: objects the agent is not built with, whose schema a
//! definition file gave at start (see `dm_lwm2m::declare`), served from
//! the values the configuration gives and, with a provider, the ones it
//! pushes.
//!
//! A declared instance starts with the configured values and every other
//! mandatory resource at its type's zero value; a management server's
//! write is stored and saved like any other, so after a restart the
//! saved value is served, not the configured one (the configuration
//! gives initial values, as a factory default would).
//!
//! A declared object may have a [`Provider`]: another process that
//! serves it. Management clients' changes (set, add, delete) are then
//! carried to it as host writes, off the tree's lock, all or nothing with
//! the transaction (each one taken back by its inverse should the
//! transaction fail); Executes are handed to it as they are accepted; the values it
//! pushes come into the tree as platform facts, and its volatile values
//! are asked of it when a request wants them (within [`VOLATILE_LIMIT`]).
//! While it is not running (registered), management clients' reads,
//! changes and Executes of its object are refused as temporarily
//! unavailable (CWMP 9002, CoAP 5.03): the values it last pushed are kept
//! for when it is back, but nobody stands behind them meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use dm_core::tree::default_slot;
use dm_core::{
    Error, HostRead, HostWrite, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path,
    ResourceId, ResourceSchema, ResourceValue, Slot, Tree, Value, ValueType,
};

/// What a management client's change asks of a provider.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Set these values of an instance, all or none.
    Set {
        instance: InstanceId,
        values: Vec<(ResourceId, ResourceValue)>,
    },
    /// Make an instance with these values.
    Add {
        instance: InstanceId,
        values: Vec<(ResourceId, ResourceValue)>,
    },
    Delete {
        instance: InstanceId,
    },
}

/// How long a volatile value's provider may take to give it before the
/// request that wants it gets the protocol's "temporarily unavailable".
pub const VOLATILE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A process that serves a declared object. `call` and `get` block until
/// the provider has answered (or a time limit passed): they run on a host
/// thread, never under the tree's lock.
pub trait Provider: Send + Sync {
    /// For messages: the program or bus name, and the object it serves.
    fn name(&self) -> String;
    /// Whether it is running (registered) now.
    fn is_up(&self) -> bool;
    /// Makes the change; its error is the request's (use
    /// [`Error::PlatformUnavailable`] for "not now", [`Error::PlatformInvalid`]
    /// for a value it refuses). After a call that could not wait for its
    /// answer the provider's state is unknown: the implementation brings
    /// it back to the tree's (the command provider is started again, and
    /// pushes its values when it starts; a D-Bus provider is sent `undo`,
    /// which takes the request back, after it; `None` for a call that is
    /// itself an undo).
    fn call(&self, request: Request, undo: Option<&Request>) -> Result<(), Error>;
    /// The current values of an instance's volatile `resources`, within
    /// [`VOLATILE_LIMIT`].
    fn get(
        &self,
        instance: InstanceId,
        resources: &[ResourceId],
    ) -> Result<Vec<(ResourceId, ResourceValue)>, Error>;
    /// Hands an accepted Execute to the provider, without waiting (it is
    /// called under the tree's lock); an error refuses the Execute.
    fn execute(
        &self,
        instance: InstanceId,
        resource: ResourceId,
        arguments: &str,
    ) -> Result<(), Error>;
}

/// A value as a configuration file or a provider's message writes it,
/// before it is typed by its resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

/// `scalar` as a value of the resource `schema`: checked against its type,
/// range and the characters XML 1.0 carries. Opaque values are written as
/// hexadecimal digits, object links as "object:instance", times as Unix
/// seconds.
pub fn value_of(schema: &ResourceSchema, scalar: Scalar) -> Result<Value, String> {
    let value = match (schema.value_type, scalar) {
        (ValueType::Opaque, Scalar::Text(hex)) => Value::Opaque(
            dm_core::support::hex::decode(&hex)
                .map_err(|_| format!("{}: opaque values are hexadecimal digits", schema.name))?,
        ),
        (ValueType::ObjectLink, Scalar::Text(link)) => link
            .split_once(':')
            .and_then(|(o, i)| {
                Some(Value::ObjectLink(dm_core::ObjectLink {
                    object: dm_core::ObjectId(o.parse().ok()?),
                    instance: i.parse().ok()?,
                }))
            })
            .ok_or_else(|| format!("{}: an object link is \"object:instance\"", schema.name))?,
        (ValueType::DateTime, Scalar::Integer(seconds)) => Value::DateTime(seconds),
        (_, Scalar::Text(text)) => Value::String(text),
        (_, Scalar::Integer(n)) => Value::Integer(n),
        (_, Scalar::Float(f)) if f.is_finite() => Value::Float(f),
        (_, Scalar::Float(_)) => return Err(format!("{}: not a finite number", schema.name)),
        (_, Scalar::Boolean(b)) => Value::Boolean(b),
    };
    dm_core::value::check_characters(&value).map_err(|e| format!("{}: {e}", schema.name))?;
    value
        .check(schema)
        .map_err(|e| format!("{}: {e}", schema.name))
}

/// One declared object and its configured instances and values.
#[derive(Clone, Debug)]
pub struct Declaration {
    pub schema: &'static ObjectSchema,
    /// Created at first start (a single-instance object has instance 0
    /// only).
    pub instances: Vec<InstanceId>,
    /// Initial values, checked against the schema.
    pub values: Vec<(InstanceId, ResourceId, ResourceValue)>,
    /// What serves the object, if anything.
    pub provider: Option<ProviderKind>,
    /// Resources whose values the provider gives when a request wants
    /// them, rather than pushing them (only with a provider).
    pub volatile: Vec<ResourceId>,
}

/// What serves a declared object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// A program the agent starts.
    Command(Command),
    /// A service that registers with the agent's control API.
    Dbus,
}

/// How a provider program is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// argv, no shell.
    pub argv: Vec<String>,
    /// The directory it runs in (the configuration file's), if not the
    /// agent's.
    pub dir: Option<std::path::PathBuf>,
}

// Schemas are interned (one per definition text), so the same schema is
// the same address.
impl PartialEq for Declaration {
    fn eq(&self, other: &Declaration) -> bool {
        std::ptr::eq(self.schema, other.schema)
            && self.instances == other.instances
            && self.values == other.values
            && self.provider == other.provider
            && self.volatile == other.volatile
    }
}

// Values come from a configuration file, which has no NaN the loader
// accepts.
impl Eq for Declaration {}

struct Declared {
    schema: &'static ObjectSchema,
    values: BTreeMap<InstanceId, Vec<(ResourceId, ResourceValue)>>,
    provider: Option<Arc<dyn Provider>>,
    volatile: Vec<ResourceId>,
}

impl Declared {
    /// The provider, when one serves the object and is running.
    fn running(&self, path: Path) -> Result<Option<&Arc<dyn Provider>>, Error> {
        match &self.provider {
            None => Ok(None),
            Some(p) if p.is_up() => Ok(Some(p)),
            // "platform: the provider ... (for /3303/0) is not available"
            Some(p) => Err(Error::PlatformUnavailable(format!(
                "{} (for {path})",
                p.name()
            ))),
        }
    }
}

/// The stored values of an instance's resources.
fn stored_values(instance: &Instance) -> Vec<(ResourceId, ResourceValue)> {
    instance
        .resources()
        .filter_map(|id| match instance.slot(id) {
            Some(Slot::Stored(value)) => Some((id, value.clone())),
            _ => None,
        })
        .collect()
}

/// The request that makes `old` into `new`, and the one that takes it back.
fn requests(
    instance: InstanceId,
    old: Option<&Instance>,
    new: Option<&Instance>,
) -> Option<(Request, Request)> {
    match (old, new) {
        (None, Some(new)) => Some((
            Request::Add {
                instance,
                values: stored_values(new),
            },
            Request::Delete { instance },
        )),
        (Some(old), None) => Some((
            Request::Delete { instance },
            Request::Add {
                instance,
                values: stored_values(old),
            },
        )),
        (Some(old), Some(new)) => {
            let before = stored_values(old);
            let changed: Vec<(ResourceId, ResourceValue)> = stored_values(new)
                .into_iter()
                .filter(|(id, value)| !before.iter().any(|(b, v)| b == id && v == value))
                .collect();
            if changed.is_empty() {
                return None;
            }
            let undo = before
                .into_iter()
                .filter(|(id, _)| changed.iter().any(|(c, _)| c == id))
                .collect();
            Some((
                Request::Set {
                    instance,
                    values: changed,
                },
                Request::Set {
                    instance,
                    values: undo,
                },
            ))
        }
        (None, None) => None,
    }
}

impl ObjectHandler for Declared {
    fn schema(&self) -> &'static ObjectSchema {
        self.schema
    }

    fn available(&self) -> Result<(), Error> {
        self.running(Path::object(self.schema.id)).map(|_| ())
    }

    fn create(&self, instance: InstanceId) -> Result<Instance, Error> {
        let mut created = Instance::new();
        // With a provider, every Execute the definition has is its to
        // perform; without, only the mandatory ones exist (and are refused).
        for resource in self.schema.resources.iter().filter(|r| {
            r.mandatory || (self.provider.is_some() && r.value_type == dm_core::ValueType::None)
        }) {
            created = created.with(resource.id, default_slot(resource));
        }
        for (resource, value) in self.values.get(&instance).into_iter().flatten() {
            created = created.with(*resource, Slot::Stored(value.clone()));
        }
        // Asked of the provider when a request wants them.
        for resource in &self.volatile {
            created = created.with(*resource, Slot::Live);
        }
        Ok(created)
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        // Only a request's host read fetches a volatile value: a read
        // outside one (a notification's check) has none to give.
        Err(Error::PlatformUnavailable(format!(
            "{} (volatile: read from its provider by a request only)",
            Path::resource(self.schema.id, instance, resource)
        )))
    }

    fn host_read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Option<HostRead> {
        let provider = Arc::clone(self.provider.as_ref()?);
        let path = Path::resource(self.schema.id, instance, resource);
        Some(HostRead::new(
            format!("{path} from {}", provider.name()),
            move || {
                // Whatever went wrong with the provider's answer, the
                // request gets "not now" (5.03, 9002), never an empty or
                // made-up value.
                let away = |e: Error| match e {
                    Error::PlatformUnavailable(_) => e,
                    other => Error::PlatformUnavailable(format!(
                        "{} (its answer: {other})",
                        provider.name()
                    )),
                };
                provider
                    .get(instance, &[resource])
                    .map_err(away)?
                    .into_iter()
                    .find(|(id, _)| *id == resource)
                    .map(|(_, value)| value)
                    .ok_or_else(|| {
                        Error::PlatformUnavailable(format!(
                            "{} (it gave no value for {path})",
                            provider.name()
                        ))
                    })
            },
        ))
    }

    fn host_write(
        &self,
        origin: Origin,
        instance: InstanceId,
        old: Option<&Instance>,
        new: Option<&Instance>,
    ) -> Result<Option<HostWrite>, Error> {
        // Only management clients' changes go to the provider: what it
        // pushed comes back as Platform, what the agent sets up as Agent.
        if !origin.is_client() {
            return Ok(None);
        }
        let Some(provider) = self.running(Path::instance(self.schema.id, instance))? else {
            return Ok(None);
        };
        // A bootstrap server's writes are made on the driver's own thread,
        // which a provider's answer needs: not carried, refused.
        if origin == Origin::Bootstrap {
            return Err(Error::NotSupported(Path::instance(
                self.schema.id,
                instance,
            )));
        }
        let Some((request, undo)) = requests(instance, old, new) else {
            return Ok(None);
        };
        let provider = Arc::clone(provider);
        let what = format!(
            "{} {} of {}",
            provider.name(),
            match request {
                Request::Set { .. } => "set",
                Request::Add { .. } => "add",
                Request::Delete { .. } => "delete",
            },
            Path::instance(self.schema.id, instance)
        );
        Ok(Some(HostWrite::new(what.clone(), move || {
            provider.call(request, Some(&undo))?;
            Ok(Some(HostWrite::new(format!("undo of {what}"), move || {
                provider.call(undo, None)?;
                Ok(None)
            })))
        })))
    }

    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        arguments: &str,
        _state: &Instance,
    ) -> Result<(), Error> {
        let path = Path::resource(self.schema.id, instance, resource);
        match self.running(path)? {
            // Handed over now, so that no later event can lose it.
            Some(provider) => provider.execute(instance, resource, arguments),
            // Nothing serves it: a definition alone performs nothing.
            None => Err(Error::NotSupported(path)),
        }
    }
}

/// Registers the declared objects' handlers (before a snapshot is
/// restored, so their saved instances come back), each with the provider
/// `provider` gives it, if any.
pub fn register(
    tree: &mut Tree,
    declarations: &[Declaration],
    provider: &dyn Fn(&Declaration) -> Option<Arc<dyn Provider>>,
) -> Result<(), Error> {
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
            provider: provider(declaration),
            volatile: declaration.volatile.clone(),
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
