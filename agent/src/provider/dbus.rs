//! D-Bus providers: a service that serves a declared object
//! (`provider = "dbus"`; the contract: [`super`]). It registers with the
//! control API, on the bus the control API is on:
//!
//! - `org.dmagent.Agent1.RegisterProvider(s object, o path)`: the object
//!   as "/3303" or as its TR-181 path ("Device.X_000000_Example."), and
//!   where the service implements `org.dmagent.Provider1`. Refused for an
//!   object that is not declared with `provider = "dbus"` (one the agent
//!   or a program of its own serves) and for one another connection has
//!   registered;
//! - `PushValues(s object, u instance, a{sv} values)`,
//!   `AddInstance(s object, u instance, a{sv} values)` and
//!   `DeleteInstance(s object, u instance)`: what it pushes, from the
//!   connection that registered only.
//!
//! `org.dmagent.Provider1`, which the agent calls:
//!
//! - `Set(u instance, a{sv} values)`, `Add(u instance, a{sv} values)`,
//!   `Delete(u instance)`: all or nothing; an error of its own (any name
//!   but the bus's "not there" ones: NoReply, ServiceUnknown,
//!   UnknownObject, ...) refuses the change with its message;
//! - `Execute(u instance, u resource, s arguments)`: not waited for;
//! - `ExecuteCommand(u instance, s command, a{ss} inputs)`: the same for a
//!   USP command of a TR-181 object (`"Reset()"`, its input arguments);
//! - `Get(u instance, as resources) → a{sv}`: the volatile values.
//!
//! The registration lasts as long as the service's connection: the agent
//! watches its unique name (NameOwnerChanged) and, once it is gone,
//! answers "temporarily unavailable" for the object until a service
//! registers again. A Set, Add or Delete not answered in time is taken
//! back by its inverse, sent after it to the same connection (D-Bus keeps
//! one connection's messages in order).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use tracing::{info, warn};
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

use dm_core::{Error, InstanceId, ObjectSchema, ResourceId, ResourceValue, Tree};
use dm_objects::declared::{Provider, Request, VOLATILE_LIMIT};

use super::{CALL_LIMIT, Push};

pub const INTERFACE: &str = "org.dmagent.Provider1";

/// The service serving an object now, and the connection it registered
/// on (the control API's).
#[derive(Clone, Debug)]
struct Owner {
    name: String,
    path: OwnedObjectPath,
    connection: zbus::Connection,
}

impl Owner {
    /// Calls its `method` of `org.dmagent.Provider1`.
    async fn call<B>(&self, method: &'static str, body: &B) -> zbus::Result<zbus::Message>
    where
        B: serde::Serialize + zbus::wire::DynamicType,
    {
        self.connection
            .call_method(
                Some(self.name.as_str()),
                self.path.as_str(),
                Some(INTERFACE),
                method,
                body,
            )
            .await
    }
}

/// Why a call to the provider failed.
enum Failure {
    /// It answered with a D-Bus error of its own: its refusal.
    Refused(String),
    /// It is not there to answer (left the bus, never had the object).
    Away(String),
    /// No answer in time: whether it acted is unknown.
    TimedOut,
}

/// One object a D-Bus service may serve.
pub struct DbusProvider {
    object: &'static ObjectSchema,
    owner: Mutex<Option<Owner>>,
    runtime: tokio::runtime::Handle,
    /// The thread that runs the (current-thread) runtime: never blocked
    /// waiting for a call that needs it.
    runtime_thread: std::thread::ThreadId,
}

/// Errors the bus itself answers for a service that is not there, or not
/// serving what was called: the provider is away, not refusing.
const AWAY: [&str; 8] = [
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod",
];

/// Of those, the ones that say its connection is gone.
const GONE: [&str; 3] = [
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
];

impl DbusProvider {
    fn owner(&self) -> Option<Owner> {
        dm_core::lock(&self.owner).clone()
    }

    /// Calls `owner`'s `method` and waits at most `limit` for its reply,
    /// from a host thread (never the runtime's: the call runs there).
    fn ask<B>(
        &self,
        owner: &Owner,
        method: &'static str,
        body: B,
        limit: Duration,
    ) -> Result<zbus::Message, Failure>
    where
        B: serde::Serialize + zbus::wire::DynamicType + Send + Sync + 'static,
    {
        if std::thread::current().id() == self.runtime_thread {
            // Blocking here would stop the very runtime the call needs.
            return Err(Failure::Away("asked from the runtime's own thread".into()));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let called = owner.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(tokio::time::timeout(limit, called.call(method, &body)).await);
        });
        // An error reply: its name and text. zbus gives the bus's own
        // names (org.freedesktop.DBus.Error.*) as `FDO` errors.
        let named = |e: &zbus::Error| -> Option<(String, String)> {
            use zbus::DBusError as _;
            match e {
                zbus::Error::MethodError(name, detail, _) => Some((
                    name.to_string(),
                    detail.clone().unwrap_or_else(|| name.to_string()),
                )),
                zbus::Error::FDO(e) => Some((
                    e.name().to_string(),
                    e.description().unwrap_or_default().to_owned(),
                )),
                _ => None,
            }
        };
        match rx.recv_timeout(limit + Duration::from_secs(1)) {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(e))) => match named(&e) {
                Some((name, text)) => {
                    if GONE.contains(&name.as_str()) {
                        // Gone now, whether or not NameOwnerChanged has
                        // come.
                        self.forget(&owner.name);
                    }
                    if AWAY.contains(&name.as_str()) {
                        Err(Failure::Away(format!("{name}: {text}")))
                    } else {
                        Err(Failure::Refused(text))
                    }
                }
                None => Err(Failure::Away(e.to_string())),
            },
            Ok(Err(_)) | Err(_) => Err(Failure::TimedOut),
        }
    }

    /// A failure as the request's error.
    fn error(&self, failure: Failure, limit: Duration) -> Error {
        match failure {
            Failure::Refused(why) => Error::PlatformInvalid(format!("{}: {why}", self.name())),
            Failure::Away(why) => self.unavailable(&why),
            Failure::TimedOut => {
                self.unavailable(&format!("no answer within {} ms", limit.as_millis()))
            }
        }
    }

    /// `name` no longer serves the object (if it did).
    fn forget(&self, name: &str) -> bool {
        let mut owner = dm_core::lock(&self.owner);
        if owner.as_ref().is_some_and(|o| o.name == name) {
            *owner = None;
            drop(owner);
            warn!(
                object = self.object.id.0,
                name,
                "D-Bus provider left the bus; its object is unavailable until it registers again"
            );
            return true;
        }
        false
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::PlatformUnavailable(format!("{} ({why})", self.name()))
    }

    /// Sends a request to `owner` without waiting for its answer.
    fn send(
        &self,
        owner: Owner,
        method: &'static str,
        body: impl serde::Serialize + zbus::wire::DynamicType + Send + Sync + 'static,
    ) {
        let name = self.name();
        self.runtime.spawn(async move {
            let outcome = match tokio::time::timeout(CALL_LIMIT, owner.call(method, &body)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer".to_owned(),
            };
            warn!(provider = %name, method, "provider call failed: {outcome}");
        });
    }

    /// `request` as a method and its arguments.
    fn request(
        &self,
        request: &Request,
    ) -> (&'static str, u32, Option<HashMap<String, OwnedVariant>>) {
        let (op, instance, values) = super::parts(self.object, request);
        let method = match op {
            "set" => "Set",
            "add" => "Add",
            _ => "Delete",
        };
        (method, u32::from(instance.0), values.map(|v| variants(&v)))
    }
}

impl Provider for DbusProvider {
    fn name(&self) -> String {
        match self.owner() {
            Some(owner) => format!(
                "the D-Bus provider {} of object {}",
                owner.name, self.object.id.0
            ),
            None => format!(
                "the D-Bus provider of object {} (none is registered)",
                self.object.id.0
            ),
        }
    }

    fn is_up(&self) -> bool {
        dm_core::lock(&self.owner).is_some()
    }

    fn call(&self, request: Request, undo: Option<&Request>) -> Result<(), Error> {
        let Some(owner) = self.owner() else {
            return Err(self.unavailable("not registered"));
        };
        let outcome = match self.request(&request) {
            (method, instance, Some(values)) => {
                self.ask(&owner, method, (instance, values), CALL_LIMIT)
            }
            (method, instance, None) => self.ask(&owner, method, (instance,), CALL_LIMIT),
        };
        match outcome {
            Ok(_) => Ok(()),
            Err(Failure::TimedOut) => {
                // Unknown whether it made the change: its inverse follows
                // it, to the same connection (D-Bus keeps their order).
                if let Some(undo) = undo {
                    match self.request(undo) {
                        (method, instance, Some(values)) => {
                            self.send(owner, method, (instance, values));
                        }
                        (method, instance, None) => self.send(owner, method, (instance,)),
                    }
                }
                Err(self.error(Failure::TimedOut, CALL_LIMIT))
            }
            Err(failure) => Err(self.error(failure, CALL_LIMIT)),
        }
    }

    fn get(
        &self,
        instance: InstanceId,
        resources: &[ResourceId],
    ) -> Result<Vec<(ResourceId, ResourceValue)>, Error> {
        let Some(owner) = self.owner() else {
            return Err(self.unavailable("not registered"));
        };
        let wanted: Vec<String> = resources
            .iter()
            .map(|r| super::key(self.object, *r))
            .collect();
        let reply = self
            .ask(
                &owner,
                "Get",
                (u32::from(instance.0), wanted),
                VOLATILE_LIMIT,
            )
            .map_err(|failure| self.error(failure, VOLATILE_LIMIT))?;
        let given: HashMap<String, OwnedVariant> = reply
            .body()
            .deserialize()
            .map_err(|e| self.unavailable(&format!("its Get answer: {e}")))?;
        let given = json_map(&given).map_err(|why| self.unavailable(&why))?;
        super::got(self.object, resources, &given).map_err(|why| self.unavailable(&why))
    }

    fn execute(
        &self,
        instance: InstanceId,
        resource: ResourceId,
        arguments: &str,
    ) -> Result<(), Error> {
        let Some(owner) = self.owner() else {
            return Err(self.unavailable("not registered"));
        };
        if super::is_tr181(self.object) {
            let inputs: HashMap<String, String> = super::command_inputs(arguments)?
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (name, text)
                })
                .collect();
            self.send(
                owner,
                "ExecuteCommand",
                (
                    u32::from(instance.0),
                    super::key(self.object, resource),
                    inputs,
                ),
            );
            return Ok(());
        }
        self.send(
            owner,
            "Execute",
            (
                u32::from(instance.0),
                u32::from(resource.0),
                arguments.to_owned(),
            ),
        );
        Ok(())
    }
}

/// The declared objects D-Bus services may serve, and who serves them.
pub struct Registry {
    providers: Vec<Arc<DbusProvider>>,
    tree: OnceLock<Arc<Mutex<Tree>>>,
}

impl Registry {
    /// One entry per object declared with `provider = "dbus"`; call on the
    /// runtime's thread.
    pub fn new(objects: &[&'static ObjectSchema]) -> Arc<Registry> {
        let runtime = tokio::runtime::Handle::current();
        Arc::new(Registry {
            providers: objects
                .iter()
                .map(|object| {
                    Arc::new(DbusProvider {
                        object,
                        owner: Mutex::new(None),
                        runtime: runtime.clone(),
                        runtime_thread: std::thread::current().id(),
                    })
                })
                .collect(),
            tree: OnceLock::new(),
        })
    }

    /// The provider of `object`, for its handler.
    pub fn provider(&self, object: dm_core::ObjectId) -> Option<Arc<DbusProvider>> {
        self.providers
            .iter()
            .find(|p| p.object.id == object)
            .cloned()
    }

    /// Where pushes go: set before the control API is served.
    pub fn attach(&self, tree: Arc<Mutex<Tree>>) {
        let _ = self.tree.set(tree);
    }

    /// The object a client names: "/3303", or a TR-181 object path.
    fn find(&self, object: &str) -> Result<&Arc<DbusProvider>, String> {
        let id = match object.strip_prefix('/').map(str::parse::<u16>) {
            Some(Ok(id)) => dm_core::ObjectId(id),
            Some(Err(_)) => return Err(format!("{object}: not an object (\"/3303\")")),
            None => {
                let wanted = object.trim_end_matches('.');
                dm_cwmp::mapping::parameters()
                    .find(|p| {
                        p.path
                            .rsplit_once('.')
                            .map(|(o, _)| o.trim_end_matches(".{i}"))
                            == Some(wanted)
                    })
                    .map(|p| p.object)
                    .ok_or_else(|| format!("{object}: no such object"))?
            }
        };
        self.providers
            .iter()
            .find(|p| p.object.id == id)
            .ok_or_else(|| {
                format!(
                    "{object}: not served by a D-Bus provider (it is built in, or its \
                     [[object]] has no provider = \"dbus\")"
                )
            })
    }

    /// Registers `sender` as `object`'s provider, at `path`.
    pub async fn register(
        self: &Arc<Self>,
        connection: &zbus::Connection,
        sender: &str,
        object: &str,
        path: OwnedObjectPath,
    ) -> Result<(), String> {
        let provider = Arc::clone(self.find(object)?);
        let current = provider.owner();
        // Again from the same connection: only the path changes.
        if let Some(owner) = current.as_ref().filter(|o| o.name == sender) {
            *dm_core::lock(&provider.owner) = Some(Owner {
                path,
                ..owner.clone()
            });
            return Ok(());
        }
        let proxy = zbus::fdo::DBusProxy::new(connection)
            .await
            .map_err(|e| e.to_string())?;
        let has_owner = |name: String| {
            let proxy = proxy.clone();
            async move {
                match zbus::names::BusName::try_from(name) {
                    Ok(name) => proxy.name_has_owner(name).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        // Another connection has it: refused, unless that one has left
        // the bus and its NameOwnerChanged is still on its way.
        if let Some(other) = current {
            if has_owner(other.name.clone()).await? {
                return Err(format!("{object} is served by {} already", other.name));
            }
            provider.forget(&other.name);
        }
        // Watched before the owner is set and checked: a provider gone
        // meanwhile is seen by one or the other.
        let mut gone = proxy
            .receive_name_owner_changed_with_args(&[(0, sender), (2, "")])
            .await
            .map_err(|e| e.to_string())?;
        {
            let mut owner = dm_core::lock(&provider.owner);
            if let Some(other) = owner.as_ref().filter(|o| o.name != sender) {
                return Err(format!("{object} is served by {} already", other.name));
            }
            *owner = Some(Owner {
                name: sender.to_owned(),
                path,
                connection: connection.clone(),
            });
        }
        let present = has_owner(sender.to_owned()).await?;
        info!(provider = %provider.name(), "D-Bus provider registered");
        let sender = sender.to_owned();
        // Once it leaves the bus, the object is unavailable until a
        // service registers again.
        tokio::spawn(async move {
            if present {
                gone.next().await;
            }
            provider.forget(&sender);
        });
        Ok(())
    }

    /// A push from `sender`: only the registered provider may.
    pub fn push(
        &self,
        sender: &str,
        object: &str,
        push: impl FnOnce(&serde_json::Map<String, serde_json::Value>) -> Push<'_>,
        values: &HashMap<String, OwnedVariant>,
    ) -> Result<(), String> {
        let provider = self.find(object)?;
        if provider.owner().is_none_or(|o| o.name != sender) {
            return Err(format!("{object}: {sender} is not its registered provider"));
        }
        let Some(tree) = self.tree.get() else {
            return Err("the agent is starting".into());
        };
        let values = json_map(values)?;
        super::apply(tree, provider.object, push(&values))
    }
}

/// Values as D-Bus carries them (`a{sv}`).
fn variants(values: &serde_json::Map<String, serde_json::Value>) -> HashMap<String, OwnedVariant> {
    values
        .iter()
        .filter_map(|(k, v)| {
            let variant = variant(v)?;
            OwnedVariant::try_from(variant).ok().map(|v| (k.clone(), v))
        })
        .collect()
}

fn variant(value: &serde_json::Value) -> Option<Variant<'static>> {
    Some(match value {
        serde_json::Value::String(s) => Variant::from(s.clone()),
        serde_json::Value::Bool(b) => Variant::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Variant::from(i),
            (None, Some(u), _) => Variant::from(u),
            (None, None, Some(f)) => Variant::from(f),
            _ => return None,
        },
        // A multiple resource: an array of variants ("av").
        serde_json::Value::Array(items) => Variant::from(zbus::Array::from(
            items
                .iter()
                .filter_map(variant)
                .collect::<Vec<Variant<'static>>>(),
        )),
        _ => return None,
    })
}

/// Values a provider gave over D-Bus, as the JSON its values are typed
/// from.
fn json_map(
    values: &HashMap<String, OwnedVariant>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    values
        .iter()
        .map(|(k, v)| Ok((k.clone(), json(v)?)))
        .collect()
}

fn json(value: &Variant<'_>) -> Result<serde_json::Value, String> {
    Ok(match value {
        Variant::Bool(b) => (*b).into(),
        Variant::U8(n) => (*n).into(),
        Variant::I16(n) => (*n).into(),
        Variant::U16(n) => (*n).into(),
        Variant::I32(n) => (*n).into(),
        Variant::U32(n) => (*n).into(),
        Variant::I64(n) => (*n).into(),
        Variant::U64(n) => (*n).into(),
        Variant::F64(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or("not a finite number")?,
        Variant::Str(s) => s.as_str().into(),
        Variant::Variant(inner) => json(inner)?,
        Variant::Array(items) => items.iter().map(json).collect::<Result<_, _>>()?,
        other => return Err(format!("{} is not a value", other.value_signature())),
    })
}
