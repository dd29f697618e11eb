//! Providers: other processes that serve a declared object (`[[object]]`
//! with `provider = [argv]` or `provider = "dbus"`). Both kinds speak the
//! same contract, in JSON lines ([`command`]) or D-Bus calls ([`dbus`]):
//!
//! - the agent asks: **set** values of an instance, **add** an instance
//!   with values, **delete** one (each all or nothing: the provider checks
//!   everything before it changes anything, and answers ok or why not),
//!   **execute** a resource or, for a TR-181 object, a command its DM
//!   document declares (`<command name="Reset()">`, which USP controllers
//!   operate; synchronous, inputs only) with its input arguments (handed
//!   over, not waited for) and **get** the
//!   current values of volatile resources (answered within 2 s);
//! - the provider pushes, whenever it likes: **values** of an instance,
//!   an instance **added** (with values) and one **deleted**. The tree
//!   takes them as platform facts: observers and CWMP notifications see
//!   them, nothing is saved for them.
//!
//! Values are keyed by resource id ("5700") for an LwM2M object and by
//! parameter name ("Greeting") for a TR-181 one declared from a DM
//! document; they are strings, numbers or booleans (arrays for multiple
//! resources), typed by the object's definition as in the configuration's
//! `values`: a value outside the declared type or range is refused, with
//! the provider's name, and nothing of that push is taken.

pub mod command;
#[cfg(feature = "dbus")]
pub mod dbus;

use std::sync::Mutex;

use dm_core::{InstanceId, ObjectSchema, Origin, Path, ResourceId, ResourceValue, Tree, lock};
use dm_objects::declared::{Request, Scalar};

/// How long a set, add or delete may take the provider: under the host
/// write limit, so the request's answer says what went wrong.
pub const CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a provider pushes.
#[derive(Debug)]
pub enum Push<'a> {
    Values {
        instance: InstanceId,
        values: &'a serde_json::Map<String, serde_json::Value>,
    },
    Added {
        instance: InstanceId,
        values: &'a serde_json::Map<String, serde_json::Value>,
    },
    Deleted {
        instance: InstanceId,
    },
}

/// Takes a push into the tree, all of it or none (as the platform).
pub fn apply(
    tree: &Mutex<Tree>,
    object: &'static ObjectSchema,
    push: Push<'_>,
) -> Result<(), String> {
    let typed = |values: &serde_json::Map<String, serde_json::Value>| {
        values
            .iter()
            .map(|(key, value)| typed(object, key, value))
            .collect::<Result<Vec<_>, String>>()
    };
    let mut tree = lock(tree);
    let mut tx = tree.begin(Origin::Platform);
    let (instance, values) = match push {
        Push::Values { instance, values } => (instance, typed(values)?),
        Push::Added { instance, values } => {
            if !object.multiple {
                return Err(format!("{} has a single instance", object.name));
            }
            let values = typed(values)?;
            tx.create(object.id, Some(instance));
            (instance, values)
        }
        Push::Deleted { instance } => {
            // What it could never make again.
            if !object.multiple {
                return Err(format!("{} has a single instance", object.name));
            }
            tx.delete(object.id, instance);
            (instance, Vec::new())
        }
    };
    for (resource, value) in values {
        let path = Path::resource(object.id, instance, resource);
        match value {
            ResourceValue::Single(value) => tx.set(path, value),
            ResourceValue::Multiple(values) => tx.set_multiple(path, values),
        };
    }
    tx.commit().map(|_| ()).map_err(|e| {
        e.faults
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// A value a provider gave, keyed by resource id or name, typed by
/// `object`'s definition.
pub fn typed(
    object: &'static ObjectSchema,
    key: &str,
    value: &serde_json::Value,
) -> Result<(ResourceId, ResourceValue), String> {
    let resource = match key.parse::<u16>() {
        Ok(id) => object.resource(ResourceId(id)),
        Err(_) => object.resources.iter().find(|r| r.name == key),
    }
    .ok_or_else(|| format!("{} has no resource {key:?}", object.name))?;
    let scalar = |v: &serde_json::Value| -> Result<Scalar, String> {
        Ok(match v {
            serde_json::Value::String(s) => Scalar::Text(s.clone()),
            serde_json::Value::Bool(b) => Scalar::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Scalar::Integer(i),
                None => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            other => return Err(format!("{}: {other} is not a value", resource.name)),
        })
    };
    let one = |v: &serde_json::Value| dm_objects::declared::value_of(resource, scalar(v)?);
    let value = match (resource.multiple, value) {
        (true, serde_json::Value::Array(items)) if items.len() > usize::from(u16::MAX) => {
            return Err(format!("{}: more than {} values", resource.name, u16::MAX));
        }
        (true, serde_json::Value::Array(items)) => ResourceValue::Multiple(
            (0u16..)
                .zip(items)
                .map(|(i, v)| Ok((i, one(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        (true, _) => return Err(format!("{} holds several values: an array", resource.name)),
        (false, v) => ResourceValue::Single(one(v)?),
    };
    Ok((resource.id, value))
}

/// How a provider names a resource of `object`: its parameter name for a
/// TR-181 object, its id otherwise.
pub fn key(object: &ObjectSchema, id: ResourceId) -> String {
    match object.resource(id) {
        Some(r) if is_tr181(object) => r.name.to_owned(),
        _ => id.0.to_string(),
    }
}

/// Whether `object` is a TR-181 object declared from a DM document (its
/// values keyed by name, its commands USP's).
pub fn is_tr181(object: &ObjectSchema) -> bool {
    object.id.0 >= dm_lwm2m::declare::TR181_ONLY
}

/// A TR-181 command's input arguments, as the USP engine passes them with
/// the Execute (a JSON object of strings, or nothing).
pub fn command_inputs(
    arguments: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, dm_core::Error> {
    if arguments.is_empty() {
        return Ok(serde_json::Map::new());
    }
    serde_json::from_str(arguments).map_err(|e| {
        dm_core::Error::PlatformInvalid(format!("command inputs are not a JSON object: {e}"))
    })
}

/// Values as a provider reads them.
pub fn values(
    object: &ObjectSchema,
    values: &[(ResourceId, ResourceValue)],
) -> serde_json::Map<String, serde_json::Value> {
    values
        .iter()
        .map(|(id, value)| (key(object, *id), json(value)))
        .collect()
}

/// The operation, instance and values of a request, as a provider reads
/// them.
pub fn parts(
    object: &ObjectSchema,
    request: &Request,
) -> (
    &'static str,
    InstanceId,
    Option<serde_json::Map<String, serde_json::Value>>,
) {
    match request {
        Request::Set {
            instance,
            values: v,
        } => ("set", *instance, Some(values(object, v))),
        Request::Add {
            instance,
            values: v,
        } => ("add", *instance, Some(values(object, v))),
        Request::Delete { instance } => ("delete", *instance, None),
    }
}

/// A value as a provider reads it: the inverse of what it may push.
pub fn json(value: &ResourceValue) -> serde_json::Value {
    let one = |v: &dm_core::Value| match v {
        dm_core::Value::String(s) => serde_json::Value::from(s.as_str()),
        dm_core::Value::Integer(i) | dm_core::Value::DateTime(i) => serde_json::Value::from(*i),
        dm_core::Value::DateTimeMicros(us) => serde_json::Value::from(us.div_euclid(1_000_000)),
        dm_core::Value::Unsigned(u) => serde_json::Value::from(*u),
        dm_core::Value::Boolean(b) => serde_json::Value::from(*b),
        dm_core::Value::Float(f) => serde_json::Value::from(*f),
        dm_core::Value::Opaque(bytes) => {
            serde_json::Value::from(dm_core::support::hex::encode(bytes))
        }
        dm_core::Value::ObjectLink(link) => {
            serde_json::Value::from(format!("{}:{}", link.object.0, link.instance))
        }
    };
    match value {
        ResourceValue::Single(v) => one(v),
        ResourceValue::Multiple(values) => values.values().map(one).collect(),
    }
}

/// The answer to a get: the wanted resources' values, typed. A value the
/// provider did not give, or one outside the declared type or range, is
/// the request's error.
pub fn got(
    object: &'static ObjectSchema,
    wanted: &[ResourceId],
    given: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(ResourceId, ResourceValue)>, String> {
    let given: Vec<(ResourceId, ResourceValue)> = given
        .iter()
        .map(|(k, v)| typed(object, k, v))
        .collect::<Result<_, _>>()?;
    wanted
        .iter()
        .map(|id| {
            given
                .iter()
                .find(|(g, _)| g == id)
                .cloned()
                .ok_or_else(|| format!("no value for {}", key(object, *id)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_core::schema::Constraint;
    use dm_core::{Access, ObjectId, ResourceSchema, Value, ValueType};

    static RESOURCES: [ResourceSchema; 1] = [ResourceSchema {
        id: ResourceId(1),
        name: "Level",
        value_type: ValueType::Long,
        access: Access::Read,
        multiple: false,
        mandatory: true,
        units: "",
        constraint: Constraint::Range { min: 0, max: 100 },
    }];
    static TABLE: ObjectSchema = ObjectSchema {
        id: ObjectId(32771),
        name: "Table",
        version: "1.0",
        multiple: true,
        mandatory: false,
        resources: &RESOURCES,
    };
    static SINGLE: ObjectSchema = ObjectSchema {
        id: ObjectId(32772),
        name: "Single",
        version: "1.0",
        multiple: false,
        mandatory: false,
        resources: &RESOURCES,
    };

    fn values(json: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(json).unwrap()
    }

    /// Pushed instances are made and removed as platform facts; a value
    /// outside the declared range, or an instance a single-instance object
    /// cannot have, is refused with the reason and changes nothing.
    #[test]
    fn pushes_add_and_delete_instances_all_or_nothing() {
        let mut tree = Tree::new();
        let declarations: Vec<dm_objects::declared::Declaration> = [&TABLE, &SINGLE]
            .into_iter()
            .map(|schema| dm_objects::declared::Declaration {
                schema,
                instances: Vec::new(),
                values: Vec::new(),
                provider: None,
                volatile: Vec::new(),
            })
            .collect();
        dm_objects::declared::register(&mut tree, &declarations, &|_| None).unwrap();
        let tree = Mutex::new(tree);
        let instances = || lock(&tree).instances(TABLE.id).unwrap();
        let level = |i: u16| {
            lock(&tree).read(
                Origin::Agent,
                &Path::resource(TABLE.id, InstanceId(i), ResourceId(1)),
            )
        };

        let two = values(r#"{"Level": 20}"#);
        apply(
            &tree,
            &TABLE,
            Push::Added {
                instance: InstanceId(2),
                values: &two,
            },
        )
        .unwrap();
        assert_eq!(instances(), [InstanceId(2)]);
        assert_eq!(level(2), Ok(ResourceValue::Single(Value::Integer(20))));

        let out_of_range = values(r#"{"1": 101}"#);
        let refused = apply(
            &tree,
            &TABLE,
            Push::Added {
                instance: InstanceId(3),
                values: &out_of_range,
            },
        )
        .unwrap_err();
        assert!(refused.contains("Level"), "{refused}");
        assert_eq!(instances(), [InstanceId(2)]);
        let refused = apply(
            &tree,
            &TABLE,
            Push::Values {
                instance: InstanceId(2),
                values: &out_of_range,
            },
        )
        .unwrap_err();
        assert!(refused.contains("Level"), "{refused}");
        assert_eq!(level(2), Ok(ResourceValue::Single(Value::Integer(20))));

        let refused = apply(
            &tree,
            &SINGLE,
            Push::Added {
                instance: InstanceId(1),
                values: &two,
            },
        )
        .unwrap_err();
        assert!(refused.contains("single instance"), "{refused}");

        apply(
            &tree,
            &TABLE,
            Push::Deleted {
                instance: InstanceId(2),
            },
        )
        .unwrap();
        assert!(instances().is_empty());
        assert!(
            apply(
                &tree,
                &TABLE,
                Push::Deleted {
                    instance: InstanceId(2)
                }
            )
            .is_err()
        );
    }
}
