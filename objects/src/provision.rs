//! Identity and settings from the configuration.
//!
//! Identity (manufacturer, serial, versions) is read-only to servers and is
//! written at every start. Settings (ACS URL, periodic interval, LwM2M
//! servers) are writable by the servers that manage the device, so a value
//! from the configuration is applied only when it differs from what the
//! configuration said the last time it was applied: an ACS change survives
//! a restart, and a local edit of the configuration still wins. The last
//! applied values are kept in the tree's pending state under
//! [`APPLIED_KEY`].

use std::collections::BTreeMap;

use dm_core::catalog::{
    autonomous_transfer_complete_policy, device, management_server, security, server,
};
use dm_core::{InstanceId, ObjectId, Origin, Path, TransactionError, Tree, Value};

/// Pending-state key of the last applied settings.
pub const APPLIED_KEY: &str = "objects.provisioned";

/// Who the device is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub manufacturer: String,
    /// Six upper-case hex digits.
    pub oui: String,
    pub product_class: String,
    pub model_name: String,
    pub serial_number: String,
    pub hardware_version: String,
    pub software_version: String,
    pub description: String,
}

/// TR-069 settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CwmpSettings {
    pub acs_url: String,
    pub username: String,
    pub password: String,
    pub periodic_inform: bool,
    pub periodic_interval: u32,
    pub connection_request_username: String,
    pub connection_request_password: String,
    /// AutonomousTransferCompletePolicy.Enable: report transfers the ACS
    /// did not ask for (firmware through LwM2M).
    pub autonomous_transfer_complete: bool,
}

/// LwM2M Security Mode (/0/x/2) and its key material (/0/x/3, 4, 5, 15).
#[derive(Clone, PartialEq, Eq)]
pub enum SecurityMode {
    /// Mode 3.
    NoSec,
    /// Mode 0: the PSK identity (/0/x/3) and key (/0/x/5).
    PreSharedKey { identity: Vec<u8>, key: Vec<u8> },
    /// Mode 2: our certificate, DER, with any intermediates after it
    /// (/0/x/3); our PKCS#8 DER key (/0/x/5); the server's or a CA's
    /// certificate, DER (/0/x/4); the Certificate Usage (/0/x/15, 0..=3).
    Certificate {
        chain: Vec<u8>,
        private_key: Vec<u8>,
        server: Vec<u8>,
        usage: u8,
    },
}

/// Keys are never printed: configurations are logged with `{:?}`.
impl std::fmt::Debug for SecurityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecurityMode::NoSec => f.write_str("NoSec"),
            SecurityMode::PreSharedKey { identity, .. } => f
                .debug_struct("PreSharedKey")
                .field("identity", &String::from_utf8_lossy(identity))
                .finish_non_exhaustive(),
            SecurityMode::Certificate { chain, usage, .. } => f
                .debug_struct("Certificate")
                .field("chain", &format_args!("{} bytes", chain.len()))
                .field("usage", usage)
                .finish_non_exhaustive(),
        }
    }
}

/// One LwM2M server or bootstrap server account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lwm2mServer {
    pub uri: String,
    pub bootstrap: bool,
    pub short_server_id: u16,
    pub lifetime: u32,
    pub binding: String,
    pub security: SecurityMode,
    /// For a bootstrap account: the Client Hold Off Time (/0/x/11), how
    /// long to wait for a server-initiated bootstrap, in seconds.
    pub client_hold_off: u32,
    /// The SNI (/0/x/14): the name sent in the DTLS handshake and matched
    /// against the server's certificate, instead of the URI's host.
    pub sni: Option<String>,
}

/// Everything the configuration says about the objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioning {
    pub identity: Identity,
    pub cwmp: Option<CwmpSettings>,
    pub lwm2m: Vec<Lwm2mServer>,
}

/// Writes identity and changed settings into the tree. Returns the number
/// of settings applied.
pub fn provision(tree: &mut Tree, provisioning: &Provisioning) -> Result<usize, TransactionError> {
    let identity = identity_facts(&provisioning.identity);
    let settings = setting_facts(provisioning);
    let previous: BTreeMap<Path, Value> = tree
        .pending_state(APPLIED_KEY)
        .and_then(|text| serde_json::from_str::<Vec<(Path, Value)>>(text).ok())
        .map(|list| list.into_iter().collect())
        .unwrap_or_default();
    let changed: Vec<&(Path, Value)> = settings
        .iter()
        .filter(|(path, value)| match previous.get(path) {
            Some(before) => before != value,
            // No SNI configured where none ever was: nothing to write
            // (a bootstrap server's /0/x/14 stays where an upgrade brings
            // this setting in).
            None => !(is_sni(path) && *value == Value::String(String::new())),
        })
        .collect();

    let mut missing: Vec<(ObjectId, InstanceId)> = changed
        .iter()
        .filter_map(|(path, _)| {
            let instance = path.instance_id()?;
            tree.instance(path.object_id(), instance)
                .is_err()
                .then_some((path.object_id(), instance))
        })
        .collect();
    missing.sort();
    missing.dedup();

    let mut tx = tree.begin(Origin::Agent);
    for (object, instance) in missing {
        tx.create(object, Some(instance));
    }
    for (path, value) in identity.iter().chain(changed.iter().copied()) {
        tx.set(*path, value.clone());
    }
    tx.commit()?;
    let applied = serde_json::to_string(&settings).unwrap_or_default();
    tree.set_pending_state(APPLIED_KEY, Some(applied))
        .map_err(|e| TransactionError { faults: vec![e] })?;
    Ok(changed.len())
}

fn is_sni(path: &Path) -> bool {
    path.object_id() == security::ID && path.resource_id() == Some(security::SNI)
}

fn identity_facts(identity: &Identity) -> Vec<(Path, Value)> {
    use device::*;
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let s = |v: &str| Value::String(v.to_owned());
    vec![
        (at(MANUFACTURER), s(&identity.manufacturer)),
        (at(MANUFACTURER_OUI), s(&identity.oui)),
        (at(PRODUCT_CLASS), s(&identity.product_class)),
        (at(MODEL_NAME), s(&identity.model_name)),
        (at(MODEL_NUMBER), s(&identity.model_name)),
        (at(SERIAL_NUMBER), s(&identity.serial_number)),
        (at(HARDWARE_VERSION), s(&identity.hardware_version)),
        (at(SOFTWARE_VERSION), s(&identity.software_version)),
        (at(FIRMWARE_VERSION), s(&identity.software_version)),
        (at(DESCRIPTION), s(&identity.description)),
        (at(DEVICE_TYPE), s(&identity.product_class)),
    ]
}

fn setting_facts(provisioning: &Provisioning) -> Vec<(Path, Value)> {
    let mut facts = Vec::new();
    if let Some(cwmp) = &provisioning.cwmp {
        use management_server::*;
        let at = |r| Path::resource(ID, InstanceId(0), r);
        let s = |v: &str| Value::String(v.to_owned());
        facts.extend([
            (at(URL), s(&cwmp.acs_url)),
            (at(USERNAME), s(&cwmp.username)),
            (at(PASSWORD), s(&cwmp.password)),
            (
                at(PERIODIC_INFORM_ENABLE),
                Value::Boolean(cwmp.periodic_inform),
            ),
            (
                at(PERIODIC_INFORM_INTERVAL),
                Value::Unsigned(cwmp.periodic_interval.into()),
            ),
            (
                at(CONNECTION_REQUEST_USERNAME),
                s(&cwmp.connection_request_username),
            ),
            (
                at(CONNECTION_REQUEST_PASSWORD),
                s(&cwmp.connection_request_password),
            ),
            (
                Path::resource(
                    autonomous_transfer_complete_policy::ID,
                    InstanceId(0),
                    autonomous_transfer_complete_policy::ENABLE,
                ),
                Value::Boolean(cwmp.autonomous_transfer_complete),
            ),
        ]);
    }
    // Accounts take instances 0, 1, ... in configuration order, as LwM2M
    // clients conventionally do (/0/0, /1/0).
    let mut server_instance = 0;
    for (n, account) in provisioning.lwm2m.iter().enumerate() {
        let sec = |r| Path::resource(security::ID, InstanceId(n as u16), r);
        facts.extend([
            (
                sec(security::LWM2M_SERVER_URI),
                Value::String(account.uri.clone()),
            ),
            (
                sec(security::BOOTSTRAP_SERVER),
                Value::Boolean(account.bootstrap),
            ),
        ]);
        let none = Vec::new();
        let (mode, public, server_key, secret) = match &account.security {
            SecurityMode::NoSec => (3, &none, &none, &none),
            SecurityMode::PreSharedKey { identity, key } => (0, identity, &none, key),
            SecurityMode::Certificate {
                chain,
                private_key,
                server,
                usage,
            } => {
                facts.push((
                    sec(security::CERTIFICATE_USAGE),
                    Value::Unsigned((*usage).into()),
                ));
                (2, chain, server, private_key)
            }
        };
        facts.extend([
            (sec(security::SECURITY_MODE), Value::Integer(mode)),
            (
                sec(security::PUBLIC_KEY_OR_IDENTITY),
                Value::Opaque(public.clone()),
            ),
            (sec(security::SECRET_KEY), Value::Opaque(secret.clone())),
            (
                sec(security::SERVER_PUBLIC_KEY),
                Value::Opaque(server_key.clone()),
            ),
            // Empty: none (a name taken out of the configuration goes).
            (
                sec(security::SNI),
                Value::String(account.sni.clone().unwrap_or_default()),
            ),
        ]);
        if account.bootstrap {
            facts.push((
                sec(security::CLIENT_HOLD_OFF_TIME),
                Value::Integer(account.client_hold_off.into()),
            ));
            continue;
        }
        facts.push((
            sec(security::SHORT_SERVER_ID),
            Value::Integer(account.short_server_id.into()),
        ));
        let srv = |r| Path::resource(server::ID, InstanceId(server_instance), r);
        facts.extend([
            (
                srv(server::SHORT_SERVER_ID),
                Value::Integer(account.short_server_id.into()),
            ),
            (
                srv(server::LIFETIME),
                Value::Integer(account.lifetime.into()),
            ),
            (srv(server::BINDING), Value::String(account.binding.clone())),
        ]);
        server_instance += 1;
    }
    facts
}
