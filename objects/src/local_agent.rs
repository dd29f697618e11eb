//! USP's own objects (TR-181 `Device.LocalAgent.`, TR-369 §Notifications):
//! the agent itself, the controllers it serves (from its configuration:
//! a client neither adds nor removes one), the roles they are given
//! (`ControllerTrust.Role`: Full Access and Untrusted, built in) and the
//! subscriptions controllers make, kept with the rest of the state.

use std::sync::Arc;

use dm_core::catalog::{
    local_agent, mqtt_client, usp_controller, usp_mtp, usp_request, usp_role, usp_subscription,
};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectLink, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};
use dm_platform::Host;

use crate::ethernet::refuse_clients;

/// The MTPs the agent speaks (`SupportedProtocols`).
pub const PROTOCOLS: &str = "MQTT,WebSocket";

struct LocalAgent {
    host: Arc<dyn Host>,
    /// The host's uptime when the agent started: `UpTime` counts from it
    /// (the host's monotonic clock, through the platform).
    started: Option<std::time::Duration>,
}
struct Controllers;
struct Subscriptions {
    host: Arc<dyn Host>,
}
struct Requests;

pub fn register(tree: &mut Tree, host: Arc<dyn Host>) -> Result<(), Error> {
    let started = host.uptime().ok();
    tree.register(Box::new(LocalAgent {
        host: Arc::clone(&host),
        started,
    }))?;
    tree.register(Box::new(Controllers))?;
    tree.register(Box::new(Subscriptions { host }))?;
    tree.register(Box::new(Requests))?;
    tree.register(crate::ethernet::Facts::reported(&usp_role::SCHEMA))?;
    tree.register(crate::ethernet::Facts::reported(&usp_mtp::SCHEMA))?;
    tree.register(crate::ethernet::Facts::reported(&mqtt_client::SCHEMA))
}

/// The agent's MTP to its controller, as configured: what
/// `LocalAgent.MTP`, `Controller.{i}.MTP` and `MQTT.Client` show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MtpFacts {
    Mqtt {
        broker_host: String,
        broker_port: u16,
        tls: bool,
        client_id: String,
        username: String,
        keep_alive: u16,
        /// The topic the agent asks to be sent to.
        agent_topic: String,
        /// Where it sends to the controller.
        controller_topic: String,
    },
    WebSocket {
        host: String,
        port: u16,
        path: String,
        tls: bool,
        keep_alive: u32,
    },
}

/// The MTP's rows, as the agent, after [`provision`]: one agent MTP (down
/// until connected), the MQTT client for MQTT, and the controller's MTP
/// (row 1's `MTP.1`).
pub fn provision_mtp(tree: &mut Tree, mtp: &MtpFacts) -> Result<(), dm_core::TransactionError> {
    let one = InstanceId(1);
    let has = |tree: &Tree, object| tree.instances(object).unwrap_or_default().contains(&one);
    let (has_mtp, has_client) = (has(tree, usp_mtp::ID), has(tree, mqtt_client::ID));
    let has_controller = has(tree, usp_controller::ID);
    let mut tx = tree.begin(Origin::Agent);
    if !has_mtp {
        tx.create(usp_mtp::ID, Some(one));
    }
    let agent = |r| Path::resource(usp_mtp::ID, one, r);
    let controller = |r| Path::resource(usp_controller::ID, one, r);
    let first = |v: Value| std::collections::BTreeMap::from([(0u16, v)]);
    tx.set(agent(usp_mtp::ENABLE), Value::Boolean(true));
    tx.set(agent(usp_mtp::STATUS), Value::String("Down".into()));
    if has_controller {
        use usp_controller::*;
        tx.set_multiple(controller(MTP_ENABLE), first(Value::Boolean(true)));
        // The controller's row is saved: what an earlier configuration's
        // other MTP left there goes.
        for column in [
            MTP_MQTT_REFERENCE,
            MTP_MQTT_TOPIC,
            MTP_WEB_SOCKET_HOST,
            MTP_WEB_SOCKET_PORT,
            MTP_WEB_SOCKET_PATH,
            MTP_WEB_SOCKET_IS_ENCRYPTED,
            MTP_WEB_SOCKET_KEEP_ALIVE_INTERVAL,
        ] {
            tx.set_multiple(controller(column), std::collections::BTreeMap::new());
        }
    }
    match mtp {
        MtpFacts::Mqtt {
            broker_host,
            broker_port,
            tls,
            client_id,
            username,
            keep_alive,
            agent_topic,
            controller_topic,
        } => {
            if !has_client {
                tx.create(mqtt_client::ID, Some(one));
            }
            let reference = Value::ObjectLink(ObjectLink {
                object: mqtt_client::ID,
                instance: 1,
            });
            tx.set(agent(usp_mtp::PROTOCOL), Value::String("MQTT".into()));
            tx.set(agent(usp_mtp::MQTT_REFERENCE), reference.clone());
            tx.set(
                agent(usp_mtp::MQTT_RESPONSE_TOPIC_CONFIGURED),
                Value::String(agent_topic.clone()),
            );
            let client = |r| Path::resource(mqtt_client::ID, one, r);
            use mqtt_client::*;
            tx.set(client(ENABLE), Value::Boolean(true));
            tx.set(client(STATUS), Value::String("Connecting".into()));
            tx.set(client(PROTOCOL_VERSION), Value::String("5.0".into()));
            tx.set(client(BROKER_ADDRESS), Value::String(broker_host.clone()));
            tx.set(
                client(BROKER_PORT),
                Value::Unsigned(u64::from(*broker_port)),
            );
            tx.set(
                client(TRANSPORT_PROTOCOL),
                Value::String(if *tls { "TLS" } else { "TCP/IP" }.into()),
            );
            tx.set(
                client(KEEP_ALIVE_TIME),
                Value::Unsigned(u64::from(*keep_alive)),
            );
            tx.set(client(CLIENT_ID), Value::String(client_id.clone()));
            tx.set(client(USERNAME), Value::String(username.clone()));
            if has_controller {
                use usp_controller::*;
                tx.set_multiple(
                    controller(MTP_PROTOCOL),
                    first(Value::String("MQTT".into())),
                );
                tx.set_multiple(controller(MTP_MQTT_REFERENCE), first(reference));
                tx.set_multiple(
                    controller(MTP_MQTT_TOPIC),
                    first(Value::String(controller_topic.clone())),
                );
            }
        }
        MtpFacts::WebSocket {
            host,
            port,
            path,
            tls,
            keep_alive,
        } => {
            if has_client {
                tx.delete(mqtt_client::ID, one);
            }
            tx.set(agent(usp_mtp::PROTOCOL), Value::String("WebSocket".into()));
            if has_controller {
                use usp_controller::*;
                tx.set_multiple(
                    controller(MTP_PROTOCOL),
                    first(Value::String("WebSocket".into())),
                );
                tx.set_multiple(
                    controller(MTP_WEB_SOCKET_HOST),
                    first(Value::String(host.clone())),
                );
                tx.set_multiple(
                    controller(MTP_WEB_SOCKET_PORT),
                    first(Value::Unsigned(u64::from(*port))),
                );
                tx.set_multiple(
                    controller(MTP_WEB_SOCKET_PATH),
                    first(Value::String(path.clone())),
                );
                tx.set_multiple(
                    controller(MTP_WEB_SOCKET_IS_ENCRYPTED),
                    first(Value::Boolean(*tls)),
                );
                tx.set_multiple(
                    controller(MTP_WEB_SOCKET_KEEP_ALIVE_INTERVAL),
                    first(Value::Unsigned(u64::from((*keep_alive).max(1)))),
                );
            }
        }
    }
    tx.commit().map(drop)
}

/// The MTP's connection went up (with the topic the agent listens on,
/// for MQTT: the broker may have assigned it) or down.
pub fn mtp_status(
    tree: &mut Tree,
    up: bool,
    topic: Option<&str>,
) -> Result<(), dm_core::TransactionError> {
    let one = InstanceId(1);
    let client = tree
        .instances(mqtt_client::ID)
        .unwrap_or_default()
        .contains(&one);
    let mut tx = tree.begin(Origin::Agent);
    tx.set(
        Path::resource(usp_mtp::ID, one, usp_mtp::STATUS),
        Value::String(if up { "Up" } else { "Down" }.into()),
    );
    if let Some(topic) = topic {
        tx.set(
            Path::resource(usp_mtp::ID, one, usp_mtp::MQTT_RESPONSE_TOPIC_DISCOVERED),
            Value::String(topic.to_owned()),
        );
    }
    if client {
        tx.set(
            Path::resource(mqtt_client::ID, one, mqtt_client::STATUS),
            Value::String(if up { "Connected" } else { "Connecting" }.into()),
        );
    }
    tx.commit().map(drop)
}

/// The role a configured controller is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ControllerRole {
    /// Everything: read, write, add, delete, operate, notifications.
    #[default]
    FullAccess,
    /// TR-369's role for a controller whose identity is not trusted: it
    /// reads what the device and the agent are (DeviceInfo, LocalAgent),
    /// and nothing else.
    Untrusted,
}

impl ControllerRole {
    /// The name of its row in `ControllerTrust.Role` (TR-369's).
    pub fn name(self) -> &'static str {
        match self {
            ControllerRole::FullAccess => "Full Access",
            ControllerRole::Untrusted => "Untrusted",
        }
    }
}

/// One permission of a role: order, targets (paths as the protocol that
/// checks them names them, comma separated), and the four `rwxn` strings
/// for parameters, objects, instances, and commands and events.
pub type Permission = (u64, &'static str, [&'static str; 4]);

/// A role the agent has, as `ControllerTrust.Role.{i}` shows it: its name
/// and permissions. Which roles there are, and what their targets say, is
/// the protocol's (`dm_usp::permissions::BUILT_IN_ROLES`).
pub type Role = (&'static str, &'static [Permission]);

/// The roles' rows, as the agent, numbered in order from 1: made at every
/// start (reported, not saved).
fn make_roles(tx: &mut dm_core::tree::Transaction<'_>, existing: &[InstanceId], roles: &[Role]) {
    use usp_role::*;
    for (at, (name, permissions)) in roles.iter().enumerate() {
        let row = InstanceId(at as u16 + 1);
        if !existing.contains(&row) {
            tx.create(ID, Some(row));
        }
        let at = |r| Path::resource(ID, row, r);
        tx.set(at(ENABLE), Value::Boolean(true));
        tx.set(at(NAME), Value::String((*name).into()));
        let column =
            |pick: &dyn Fn(&Permission) -> Value| -> std::collections::BTreeMap<u16, Value> {
                (0..).zip(permissions.iter().map(pick)).collect()
            };
        tx.set_multiple(at(PERMISSION_ENABLE), column(&|_| Value::Boolean(true)));
        tx.set_multiple(at(PERMISSION_ORDER), column(&|p| Value::Unsigned(p.0)));
        tx.set_multiple(
            at(PERMISSION_TARGETS),
            column(&|p| Value::String(p.1.into())),
        );
        for (at_kind, resource) in [
            PERMISSION_PARAM,
            PERMISSION_OBJ,
            PERMISSION_INSTANTIATED_OBJ,
            PERMISSION_COMMAND_EVENT,
        ]
        .into_iter()
        .enumerate()
        {
            tx.set_multiple(
                at(resource),
                column(&|p| Value::String(p.2[at_kind].into())),
            );
        }
    }
}

fn stored(value: Value) -> Slot {
    Slot::Stored(ResourceValue::Single(value))
}

impl ObjectHandler for LocalAgent {
    fn schema(&self) -> &'static ObjectSchema {
        &local_agent::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use local_agent::*;
        Ok(Instance::new()
            .with(ENDPOINT_ID, stored(Value::String(String::new())))
            .with(SOFTWARE_VERSION, Slot::Live)
            .with(UP_TIME, Slot::Live)
            .with(SUPPORTED_PROTOCOLS, Slot::Live))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        use local_agent::*;
        let value = match resource {
            SOFTWARE_VERSION => Value::String(env!("CARGO_PKG_VERSION").to_owned()),
            UP_TIME => Value::Unsigned(match (self.started, self.host.uptime()) {
                (Some(started), Ok(now)) => now.saturating_sub(started).as_secs(),
                _ => 0,
            }),
            SUPPORTED_PROTOCOLS => Value::String(PROTOCOLS.to_owned()),
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        };
        Ok(ResourceValue::Single(value))
    }
}

impl ObjectHandler for Controllers {
    fn schema(&self) -> &'static ObjectSchema {
        &usp_controller::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use usp_controller::*;
        Ok(Instance::new()
            .with(ALIAS, stored(Value::String(String::new())))
            .with(ENABLE, stored(Value::Boolean(true)))
            .with(ENDPOINT_ID, stored(Value::String(String::new())))
            .with(ASSIGNED_ROLE, stored(Value::ObjectLink(ObjectLink::NULL))))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        // The configuration says which controllers there are, and their
        // roles.
        refuse_clients(origin, Path::instance(usp_controller::ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(usp_controller::ID, instance))
    }
}

impl ObjectHandler for Requests {
    fn schema(&self) -> &'static ObjectSchema {
        &usp_request::SCHEMA
    }

    /// The agent's facts of a running command: reported, never saved (a
    /// command does not outlive the agent).
    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use usp_request::*;
        Ok(Instance::new()
            .with(ORIGINATOR, stored(Value::String(String::new())))
            .with(COMMAND, stored(Value::String(String::new())))
            .with(COMMAND_KEY, stored(Value::String(String::new())))
            .with(STATUS, stored(Value::String("Requested".into()))))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(usp_request::ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(usp_request::ID, instance))
    }
}

/// A row for a command a controller started that runs on (TR-369
/// §Operate: its OperateResp names the row), Status Active.
pub fn add_request(
    tree: &mut Tree,
    originator: &str,
    command: &str,
    command_key: &str,
) -> Result<InstanceId, dm_core::TransactionError> {
    let instance = tree
        .free_instance(usp_request::ID)
        .map_err(|e| dm_core::TransactionError { faults: vec![e] })?;
    let at = |resource| Path::resource(usp_request::ID, instance, resource);
    let text = |value: &str| Value::String(value.to_owned());
    tree.begin(Origin::Agent)
        .create(usp_request::ID, Some(instance))
        .set(at(usp_request::ORIGINATOR), text(originator))
        .set(at(usp_request::COMMAND), text(command))
        .set(at(usp_request::COMMAND_KEY), text(command_key))
        .set(at(usp_request::STATUS), text("Active"))
        .commit()?;
    Ok(instance)
}

/// The subscriptions whose TimeToLive has run out, and how many seconds
/// until the next one will: TR-181 2.16 `TimeToLive`, seconds from
/// CreationDate, 0 for none. Now is the host's clock (the device's
/// Current Time), the one CreationDate was read from.
pub fn expired_subscriptions(tree: &Tree) -> (Vec<InstanceId>, Option<u64>) {
    use usp_subscription::*;
    let Ok(ResourceValue::Single(Value::DateTime(now))) = tree.read(
        Origin::Agent,
        &Path::resource(
            dm_core::catalog::device::ID,
            InstanceId(0),
            dm_core::catalog::device::CURRENT_TIME,
        ),
    ) else {
        return (Vec::new(), None);
    };
    let mut expired = Vec::new();
    let mut next: Option<i64> = None;
    for instance in tree.instances(ID).unwrap_or_default() {
        let read =
            |resource| match tree.read(Origin::Agent, &Path::resource(ID, instance, resource)) {
                Ok(ResourceValue::Single(value)) => Some(value),
                _ => None,
            };
        let (Some(Value::Unsigned(ttl)), Some(Value::DateTime(created))) =
            (read(TIME_TO_LIVE), read(CREATION_DATE))
        else {
            continue;
        };
        if ttl == 0 || created == crate::UNKNOWN_TIME {
            continue;
        }
        let end = created.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        if end <= now {
            expired.push(instance);
        } else {
            next = Some(next.map_or(end, |n| n.min(end)));
        }
    }
    (
        expired,
        next.map(|at| u64::try_from(at.saturating_sub(now)).unwrap_or(0)),
    )
}

/// Subscriptions gone, as the agent (their TimeToLive ran out).
pub fn remove_subscriptions(
    tree: &mut Tree,
    instances: &[InstanceId],
) -> Result<(), dm_core::TransactionError> {
    let mut tx = tree.begin(Origin::Agent);
    for instance in instances {
        tx.delete(usp_subscription::ID, *instance);
    }
    tx.commit().map(drop)
}

/// The row of a command that completed, gone.
pub fn remove_request(
    tree: &mut Tree,
    instance: InstanceId,
) -> Result<(), dm_core::TransactionError> {
    tree.begin(Origin::Agent)
        .delete(usp_request::ID, instance)
        .commit()
        .map(|_| ())
}

impl ObjectHandler for Subscriptions {
    fn schema(&self) -> &'static ObjectSchema {
        &usp_subscription::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use usp_subscription::*;
        // TR-181's defaults.
        Ok(Instance::new()
            .with(ALIAS, stored(Value::String(String::new())))
            .with(ENABLE, stored(Value::Boolean(false)))
            .with(IDENTIFIER, stored(Value::String(String::new())))
            .with(RECIPIENT, stored(Value::ObjectLink(ObjectLink::NULL)))
            .with(CREATION_DATE, stored(Value::DateTime(crate::UNKNOWN_TIME)))
            .with(NOTIF_TYPE, stored(Value::String(String::new())))
            .with(REFERENCE_LIST, stored(Value::String(String::new())))
            .with(PERSISTENT, stored(Value::Boolean(false)))
            .with(TIME_TO_LIVE, stored(Value::Unsigned(0)))
            .with(NOTIF_RETRY, stored(Value::Boolean(false)))
            .with(NOTIF_EXPIRATION, stored(Value::Unsigned(0))))
    }

    /// A subscription a controller makes is that controller's (TR-181:
    /// Recipient is "the Controller instance that created it"), gets an
    /// ID when it has none, and its creation date.
    fn adjust(
        &self,
        origin: Origin,
        instance: InstanceId,
        _written: &[ResourceId],
        state: &mut Instance,
    ) -> Result<Vec<ResourceId>, Error> {
        use usp_subscription::*;
        if let Origin::Controller(controller) = origin
            && state.value(RECIPIENT) == Some(&Value::ObjectLink(ObjectLink::NULL))
        {
            state.set_value(
                RECIPIENT,
                Value::ObjectLink(ObjectLink {
                    object: usp_controller::ID,
                    instance: controller,
                }),
            );
        }
        // Made now, whoever made it: TimeToLive counts from here.
        if state.value(CREATION_DATE) == Some(&Value::DateTime(crate::UNKNOWN_TIME)) {
            state.set_value(
                CREATION_DATE,
                Value::DateTime(dm_core::unix_seconds(self.host.now())),
            );
        }
        if state.value(IDENTIFIER) == Some(&Value::String(String::new())) {
            state.set_value(
                IDENTIFIER,
                Value::String(format!("{}-{}", instance.0, origin)),
            );
        }
        Ok(Vec::new())
    }

    fn validate(
        &self,
        origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        use usp_subscription::*;
        if !origin.is_client() || state.value(ENABLE) != Some(&Value::Boolean(true)) {
            return Ok(());
        }
        let empty = |resource| state.value(resource) == Some(&Value::String(String::new()));
        for (resource, what) in [
            (NOTIF_TYPE, "a NotifType"),
            (REFERENCE_LIST, "a ReferenceList"),
        ] {
            if empty(resource) {
                return Err(Error::Rejected {
                    path: Path::resource(usp_subscription::ID, instance, resource),
                    reason: format!("an enabled subscription needs {what}"),
                });
            }
        }
        Ok(())
    }
}

/// At start, as the agent: the agent's endpoint ID, the built-in roles,
/// its controllers' instances (numbered from 1, as configured, each with
/// its role; those no longer configured deleted), and the subscriptions
/// that do not outlive a restart (TR-181 Persistent false) deleted.
pub fn provision(
    tree: &mut Tree,
    endpoint_id: &str,
    controllers: &[(String, ControllerRole)],
    roles: &[Role],
) -> Result<(), dm_core::TransactionError> {
    let existing = tree.instances(usp_controller::ID).unwrap_or_default();
    let existing_roles = tree.instances(usp_role::ID).unwrap_or_default();
    let transient = transient_subscriptions(tree);
    let mut tx = tree.begin(Origin::Agent);
    make_roles(&mut tx, &existing_roles, roles);
    tx.set(
        Path::resource(local_agent::ID, InstanceId(0), local_agent::ENDPOINT_ID),
        Value::String(endpoint_id.to_owned()),
    );
    for (at, (endpoint, role)) in controllers.iter().enumerate() {
        let Ok(number) = u16::try_from(at + 1) else {
            break;
        };
        let instance = InstanceId(number);
        if !existing.contains(&instance) {
            tx.create(usp_controller::ID, Some(instance));
        }
        tx.set(
            Path::resource(usp_controller::ID, instance, usp_controller::ENDPOINT_ID),
            Value::String(endpoint.clone()),
        );
        // The row of the role of that name; none (no role: nothing
        // allowed) if the roles given have none.
        let row = roles
            .iter()
            .position(|(name, _)| *name == role.name())
            .and_then(|at| u16::try_from(at + 1).ok());
        tx.set(
            Path::resource(usp_controller::ID, instance, usp_controller::ASSIGNED_ROLE),
            Value::ObjectLink(row.map_or(ObjectLink::NULL, |instance| ObjectLink {
                object: usp_role::ID,
                instance,
            })),
        );
    }
    for &instance in &existing {
        if usize::from(instance.0) > controllers.len() {
            tx.delete(usp_controller::ID, instance);
        }
    }
    for instance in transient {
        tx.delete(usp_subscription::ID, instance);
    }
    tx.commit().map(|_| ())
}

/// The subscriptions that do not outlive a restart.
fn transient_subscriptions(tree: &Tree) -> Vec<InstanceId> {
    tree.instances(usp_subscription::ID)
        .unwrap_or_default()
        .into_iter()
        .filter(|&instance| {
            tree.read(
                Origin::Agent,
                &Path::resource(usp_subscription::ID, instance, usp_subscription::PERSISTENT),
            )
            .ok()
                != Some(ResourceValue::Single(Value::Boolean(true)))
        })
        .collect()
}
