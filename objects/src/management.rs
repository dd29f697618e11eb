//! Management objects: LwM2M Security (/0), Server (/1) and Access Control
//! (/2), TR-181 Device.ManagementServer (with its
//! AutonomousTransferCompletePolicy).
//!
//! Their values come from the configuration on first start (see
//! `provision`) and are then owned by the servers that manage them.

use dm_core::catalog::{
    access_control, autonomous_transfer_complete_policy, management_server, security, server,
};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId, Tree, Value,
};

use crate::{layout, stored};

struct Security;
struct Server;
struct AccessControl;
struct ManagementServer;
struct AutonomousTransferCompletePolicy;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(Security))?;
    tree.register(Box::new(Server))?;
    tree.register(Box::new(AccessControl))?;
    tree.register(Box::new(ManagementServer))?;
    tree.register(Box::new(AutonomousTransferCompletePolicy))
}

impl ObjectHandler for Security {
    fn schema(&self) -> &'static ObjectSchema {
        &security::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(
            &security::SCHEMA,
            &[security::SHORT_SERVER_ID, security::CLIENT_HOLD_OFF_TIME],
        ))
    }
}

impl ObjectHandler for Server {
    fn schema(&self) -> &'static ObjectSchema {
        &server::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use server::*;
        Ok(layout(
            &SCHEMA,
            &[
                DEFAULT_MINIMUM_PERIOD,
                DEFAULT_MAXIMUM_PERIOD,
                DISABLE,
                DISABLE_TIMEOUT,
                BOOTSTRAP_REQUEST_TRIGGER,
            ],
        )
        .with(LIFETIME, stored(Value::Integer(86400)))
        // LwM2M Core §6.2.2: Disable Timeout defaults to 86400 s.
        .with(DISABLE_TIMEOUT, stored(Value::Integer(86400)))
        .with(
            NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE,
            stored(Value::Boolean(true)),
        )
        .with(BINDING, stored(Value::String("U".into()))))
    }

    fn validate(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        use server::*;
        if let Some(Value::String(binding)) = state.value(BINDING) {
            // LwM2M 1.1 Core §5.2.1.1: U, T, S, N, plus Q for queue mode.
            if binding.is_empty() || !binding.chars().all(|c| "UTSNQ".contains(c)) {
                return Err(Error::Rejected {
                    path: Path::resource(ID, instance, BINDING),
                    reason: format!("binding {binding:?} is not made of U, T, S, N and Q"),
                });
            }
        }
        for resource in [
            LIFETIME,
            DEFAULT_MINIMUM_PERIOD,
            DEFAULT_MAXIMUM_PERIOD,
            DISABLE_TIMEOUT,
        ] {
            if let Some(Value::Integer(v)) = state.value(resource)
                && *v < 0
            {
                return Err(Error::Rejected {
                    path: Path::resource(ID, instance, resource),
                    reason: "a period cannot be negative".into(),
                });
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        _state: &Instance,
    ) -> Result<(), Error> {
        use server::*;
        match resource {
            // The LwM2M adapter acts on these when it sees them executed.
            DISABLE | REGISTRATION_UPDATE_TRIGGER | BOOTSTRAP_REQUEST_TRIGGER => Ok(()),
            _ => Err(Error::NotSupported(Path::resource(ID, instance, resource))),
        }
    }
}

impl ObjectHandler for AccessControl {
    fn schema(&self) -> &'static ObjectSchema {
        &access_control::SCHEMA
    }
}

impl ObjectHandler for ManagementServer {
    fn schema(&self) -> &'static ObjectSchema {
        &management_server::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use management_server::*;
        let s = |v: &str| stored(Value::String(v.into()));
        let b = |v| stored(Value::Boolean(v));
        let u = |v| stored(Value::Unsigned(v));
        Ok(layout(&SCHEMA, &[])
            .with(ENABLE_CWMP, b(true))
            .with(URL, s(""))
            .with(USERNAME, s(""))
            .with(PASSWORD, s(""))
            .with(PERIODIC_INFORM_ENABLE, b(true))
            .with(PERIODIC_INFORM_INTERVAL, u(3600))
            // TR-069 §3.2.1.1: "unknown time" means "any time".
            .with(PERIODIC_INFORM_TIME, stored(Value::DateTime(UNKNOWN_TIME)))
            .with(PARAMETER_KEY, s(""))
            .with(CONNECTION_REQUEST_URL, s(""))
            .with(CONNECTION_REQUEST_USERNAME, s(""))
            .with(CONNECTION_REQUEST_PASSWORD, s(""))
            .with(UPGRADES_MANAGED, b(false))
            .with(DEFAULT_ACTIVE_NOTIFICATION_THROTTLE, u(0))
            // TR-069 §3.2.1.1 defaults.
            .with(CWMP_RETRY_MINIMUM_WAIT_INTERVAL, u(5))
            .with(CWMP_RETRY_INTERVAL_MULTIPLIER, u(2000))
            .with(HTTP_CONNECTION_REQUEST_ENABLE, b(true))
            .with(UDP_CONNECTION_REQUEST_ADDRESS, s(""))
            .with(STUN_ENABLE, b(false))
            .with(STUN_SERVER_ADDRESS, s(""))
            .with(STUN_SERVER_PORT, u(3478))
            .with(STUN_USERNAME, s(""))
            .with(STUN_PASSWORD, s(""))
            .with(STUN_MAXIMUM_KEEP_ALIVE_PERIOD, stored(Value::Integer(-1)))
            .with(STUN_MINIMUM_KEEP_ALIVE_PERIOD, u(0))
            .with(NAT_DETECTED, b(false))
            .with(SUPPORTED_CONN_REQ_METHODS, s("HTTP"))
            .with(INSTANCE_WILDCARDS_SUPPORTED, b(false))
            .with(ALIAS_BASED_ADDRESSING, b(false)))
    }
}

/// TR-106 "unknown time", 0001-01-01T00:00:00Z, in Unix seconds.
pub const UNKNOWN_TIME: i64 = -62_135_596_800;

/// TR-181's file types for FileTypeFilter, besides "X <OUI> <name>".
const FILE_TYPES: [&str; 4] = [
    "1 Firmware Upgrade Image",
    "2 Web Content",
    "3 Vendor Configuration File",
    "4 Vendor Log File",
];

/// Whether `entry` is a FileTypeFilter entry TR-181 allows: one of
/// [`FILE_TYPES`] or "X <6 upper-case hex digits> <identifier>".
fn is_file_type(entry: &str) -> bool {
    if FILE_TYPES.contains(&entry) {
        return true;
    }
    let mut parts = entry.splitn(3, ' ');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("X"), Some(oui), Some(_))
            if oui.len() == 6 && oui.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    )
}

/// Device.ManagementServer.AutonomousTransferCompletePolicy: whether and
/// which transfers the ACS did not ask for are reported to it (TR-069
/// AutonomousTransferComplete). Off by default, as TR-181 leaves it; the
/// configuration's `[cwmp] autonomous_transfer_complete` turns it on at
/// first start. When enabled, firmware updates of either outcome are
/// reported.
impl ObjectHandler for AutonomousTransferCompletePolicy {
    fn schema(&self) -> &'static ObjectSchema {
        &autonomous_transfer_complete_policy::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use autonomous_transfer_complete_policy::*;
        let s = |v: &str| stored(Value::String(v.into()));
        Ok(layout(&SCHEMA, &[])
            .with(ENABLE, stored(Value::Boolean(false)))
            .with(TRANSFER_TYPE_FILTER, s("Both"))
            .with(RESULT_TYPE_FILTER, s("Both"))
            .with(FILE_TYPE_FILTER, s("1 Firmware Upgrade Image")))
    }

    fn validate(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        use autonomous_transfer_complete_policy::*;
        let Some(Value::String(list)) = state.value(FILE_TYPE_FILTER) else {
            return Ok(());
        };
        if list.len() > 1024 {
            return Err(Error::Rejected {
                path: Path::resource(ID, instance, FILE_TYPE_FILTER),
                reason: "longer than 1024 characters".into(),
            });
        }
        match list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .find(|e| !is_file_type(e))
        {
            Some(bad) => Err(Error::Rejected {
                path: Path::resource(ID, instance, FILE_TYPE_FILTER),
                reason: format!(
                    "{bad:?} is not a file type (\"1 Firmware Upgrade Image\" ... \"4 Vendor Log File\", or \"X <OUI> <name>\")"
                ),
            }),
            None => Ok(()),
        }
    }
}

/// Whether the policy in `tree` lets an autonomous transfer be reported:
/// enabled, and the transfer's direction, outcome and file type pass the
/// filters (TR-181; an empty FileTypeFilter lets nothing through).
pub fn autonomous_transfer_reported(
    tree: &Tree,
    upload: bool,
    succeeded: bool,
    file_type: &str,
) -> bool {
    use autonomous_transfer_complete_policy::*;
    let read = |r| match tree.read(Origin::Agent, &Path::resource(ID, InstanceId(0), r)) {
        Ok(dm_core::ResourceValue::Single(v)) => Some(v),
        _ => None,
    };
    let text = |r| match read(r) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let direction = text(TRANSFER_TYPE_FILTER);
    let result = text(RESULT_TYPE_FILTER);
    read(ENABLE) == Some(Value::Boolean(true))
        && (direction == "Both" || direction == if upload { "Upload" } else { "Download" })
        && (result == "Both" || result == if succeeded { "Success" } else { "Failure" })
        && text(FILE_TYPE_FILTER)
            .split(',')
            .any(|e| e.trim() == file_type)
}
