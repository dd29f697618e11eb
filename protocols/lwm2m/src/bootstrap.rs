//! The bootstrap interface, client side (LwM2M Core §6.1): what a
//! Bootstrap-Server may do between Bootstrap-Request and Bootstrap-Finish.
//!
//! Bootstrap-Write creates and writes Security, Server and Access Control
//! instances (any resource, as the bootstrap origin); Bootstrap-Delete
//! erases them; Bootstrap-Discover lists what the client has;
//! Bootstrap-Read is allowed on Server and Access Control only (Core
//! §6.1.7.7); Bootstrap-Finish checks that at least one server account is
//! complete.

use std::collections::BTreeMap;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use dm_core::catalog::{access_control, security, server};
use dm_core::{InstanceId, ObjectId, Origin, Path, ResourceValue, Tree, Value};

use crate::format::{self, ContentFormat, Item};
use crate::mapping::{self, Lwm2mPath};
use crate::security::{CertificateUsage, Certificates, Credentials};

/// Objects Bootstrap-Delete of "/" erases. LwM2M Core §6.1.7.5 says every
/// instance but the bootstrap account and Device; this client keeps the
/// objects that mirror the host (Wi-Fi profiles, APN contexts): they are
/// the platform's, not the bootstrap server's, to erase.
const BOOTSTRAP_OBJECTS: [ObjectId; 3] = [security::ID, server::ID, access_control::ID];

/// The Security, Server and Access Control instances as they were before
/// a bootstrap, to roll back to when it fails (a bootstrap server that
/// deletes everything and then goes quiet must not leave the device with
/// no server at all).
#[derive(Clone, Debug, Default)]
pub struct Saved {
    instances: Vec<SavedInstance>,
}

/// One instance: its object, number and resource values.
type SavedInstance = (
    ObjectId,
    InstanceId,
    Vec<(dm_core::ResourceId, ResourceValue)>,
);

/// Saves the bootstrap objects' instances and values.
pub fn save(tree: &Tree) -> Saved {
    let mut instances = Vec::new();
    for object in BOOTSTRAP_OBJECTS {
        let Some(schema) = tree.schema(object) else {
            continue;
        };
        for instance in tree.instances(object).unwrap_or_default() {
            // The bootstrap account is never erased by a bootstrap.
            if object == security::ID && is_bootstrap_account(tree, instance) {
                continue;
            }
            let values = schema
                .resources
                .iter()
                .filter(|r| r.access != dm_core::Access::Execute)
                .filter_map(|r| {
                    tree.read(Origin::Agent, &Path::resource(object, instance, r.id))
                        .ok()
                        .map(|v| (r.id, v))
                })
                .collect();
            instances.push((object, instance, values));
        }
    }
    Saved { instances }
}

/// Puts the saved instances back, replacing whatever a failed bootstrap
/// left.
pub fn restore(tree: &mut Tree, saved: &Saved) -> Result<(), dm_core::TransactionError> {
    let current: Vec<(ObjectId, InstanceId)> = BOOTSTRAP_OBJECTS
        .iter()
        .flat_map(|&object| {
            tree.instances(object)
                .unwrap_or_default()
                .into_iter()
                .map(move |instance| (object, instance))
        })
        .filter(|&(object, instance)| {
            !(object == security::ID && is_bootstrap_account(tree, instance))
        })
        .collect();
    let mut delete = tree.begin(Origin::Bootstrap);
    for (object, instance) in current {
        delete.delete(object, instance);
    }
    delete.commit()?;
    let mut create = tree.begin(Origin::Bootstrap);
    for (object, instance, values) in &saved.instances {
        create.create(*object, Some(*instance));
        for (resource, value) in values {
            let path = Path::resource(*object, *instance, *resource);
            match value {
                ResourceValue::Single(v) => create.set(path, v.clone()),
                ResourceValue::Multiple(v) => create.set_multiple(path, v.clone()),
            };
        }
    }
    create.commit().map(drop)
}

/// The result of serving one bootstrap request.
pub struct Served {
    pub response: Packet,
    /// Bootstrap-Finish succeeded: the client may register.
    pub finished: bool,
}

/// Serves one request from the bootstrap server. `trust_anchors`: the
/// agent has anchors for certificate usages 0 and 1.
pub fn serve(tree: &mut Tree, request: &Packet, trust_anchors: bool) -> Served {
    let segments: Vec<String> = request
        .get_option(CoapOption::UriPath)
        .map(|v| {
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let method = match request.header.code {
        MessageClass::Request(m) => m,
        _ => return answer(error(ResponseType::BadRequest, "not a request")),
    };
    if method == RequestType::Post && segments == ["bs"] {
        return finish(tree, trust_anchors);
    }
    let path: Option<Lwm2mPath> = if segments.is_empty() {
        None
    } else {
        match format!("/{}", segments.join("/")).parse() {
            Ok(p) => Some(p),
            Err(_) => return answer(error(ResponseType::NotFound, "not an LwM2M path")),
        }
    };
    let accept = request
        .get_first_option(CoapOption::Accept)
        .map(|v| v.iter().fold(0u16, |a, &b| (a << 8) | u16::from(b)));
    answer(match (method, path) {
        (RequestType::Delete, path) => delete(tree, path.as_ref()),
        (RequestType::Put, Some(path)) => write(tree, &path, request),
        (RequestType::Get, path) if accept == Some(ContentFormat::LinkFormat.number()) => {
            discover(tree, path.as_ref())
        }
        (RequestType::Get, Some(path)) if path.object == 1 || path.object == 2 => {
            read(tree, &path, accept)
        }
        (RequestType::Get, _) => error(
            ResponseType::MethodNotAllowed,
            "Bootstrap-Read covers /1 and /2",
        ),
        _ => error(ResponseType::MethodNotAllowed, "not a bootstrap operation"),
    })
}

fn answer(response: Packet) -> Served {
    Served {
        response,
        finished: false,
    }
}

/// Whether a Security instance is the bootstrap account.
fn is_bootstrap_account(tree: &Tree, instance: InstanceId) -> bool {
    matches!(
        tree.read(
            Origin::Agent,
            &Path::resource(security::ID, instance, security::BOOTSTRAP_SERVER)
        ),
        Ok(ResourceValue::Single(Value::Boolean(true)))
    )
}

fn delete(tree: &mut Tree, path: Option<&Lwm2mPath>) -> Packet {
    let objects: Vec<ObjectId> = match path {
        None => BOOTSTRAP_OBJECTS.to_vec(),
        Some(p) if p.resource.is_some() => {
            return error(
                ResponseType::BadRequest,
                "Bootstrap-Delete takes an object or instance",
            );
        }
        Some(p) => match mapping::to_core(p) {
            Ok(core) => vec![core.object_id()],
            Err(_) => return error(ResponseType::NotFound, "no such object"),
        },
    };
    let mut tx_targets = Vec::new();
    for object in objects {
        let Ok(instances) = tree.instances(object) else {
            continue;
        };
        for instance in instances {
            if path
                .and_then(|p| p.instance)
                .is_some_and(|i| i != instance.0)
            {
                continue;
            }
            if object == security::ID && is_bootstrap_account(tree, instance) {
                continue;
            }
            tx_targets.push((object, instance));
        }
    }
    let mut tx = tree.begin(Origin::Bootstrap);
    for (object, instance) in tx_targets {
        tx.delete(object, instance);
    }
    match tx.commit() {
        Ok(_) => status(ResponseType::Deleted),
        Err(e) => error(ResponseType::BadRequest, &e.to_string()),
    }
}

fn write(tree: &mut Tree, path: &Lwm2mPath, request: &Packet) -> Packet {
    let content = request
        .get_first_option(CoapOption::ContentFormat)
        .map(|v| v.iter().fold(0u16, |a, &b| (a << 8) | u16::from(b)));
    let Some(format) = content.and_then(ContentFormat::from_number) else {
        return error(
            ResponseType::UnsupportedContentFormat,
            "Bootstrap-Write needs TLV, SenML or text",
        );
    };
    let Ok(core) = mapping::to_core(path) else {
        return error(ResponseType::NotFound, "no such object");
    };
    let items = match format::decode(format, path, &request.payload, &|p| {
        crate::client::type_in(tree, p)
    }) {
        Ok(items) => items,
        Err(e) => return error(ResponseType::BadRequest, &e.to_string()),
    };
    // Instances the write names and the tree lacks are created first.
    let mut missing = Vec::new();
    for item in &items {
        if let Some(i) = item.path.instance
            && tree.instance(core.object_id(), InstanceId(i)).is_err()
            && !missing.contains(&i)
        {
            missing.push(i);
        }
    }
    let mut tx = tree.begin(Origin::Bootstrap);
    for i in &missing {
        tx.create(core.object_id(), Some(InstanceId(*i)));
    }
    if let Err(e) = tx.commit() {
        return error(ResponseType::BadRequest, &e.to_string());
    }
    let mut tx = tree.begin(Origin::Bootstrap);
    let mut multiple: BTreeMap<Path, BTreeMap<u16, Value>> = BTreeMap::new();
    for item in &items {
        let Ok(target) = mapping::to_core(&Lwm2mPath {
            index: None,
            ..item.path
        }) else {
            continue;
        };
        match item.path.index {
            Some(index) => {
                multiple
                    .entry(target)
                    .or_default()
                    .insert(index, item.value.clone());
            }
            None => {
                tx.set(target, item.value.clone());
            }
        }
    }
    for (target, values) in multiple {
        tx.set_multiple(target, values);
    }
    match tx.commit() {
        Ok(_) => status(ResponseType::Changed),
        Err(e) => {
            // Nothing half-written stays: the instances this write
            // created go too.
            let mut undo = tree.begin(Origin::Agent);
            for i in missing {
                undo.delete(core.object_id(), InstanceId(i));
            }
            let _ = undo.commit();
            error(ResponseType::BadRequest, &e.to_string())
        }
    }
}

fn text_of(tree: &Tree, path: Path) -> Option<String> {
    match tree.read(Origin::Agent, &path) {
        Ok(ResourceValue::Single(Value::String(s))) => Some(s),
        _ => None,
    }
}

fn integer_of(tree: &Tree, path: Path) -> Option<i64> {
    match tree.read(Origin::Agent, &path) {
        Ok(ResourceValue::Single(Value::Integer(i))) => Some(i),
        // Certificate Usage (/0/x/15) is an Unsigned Integer.
        Ok(ResourceValue::Single(Value::Unsigned(u))) => i64::try_from(u).ok(),
        _ => None,
    }
}

/// Bootstrap-Discover (Core §5.2.7.3): `lwm2m="1.1"` then the instances,
/// with `ssid` and `uri` on Security and `ssid` on Server instances.
fn discover(tree: &Tree, path: Option<&Lwm2mPath>) -> Packet {
    let mut links = vec!["lwm2m=\"1.1\"".to_owned()];
    for (lwm2m, object, _) in mapping::served(tree) {
        if path.is_some_and(|p| p.object != lwm2m) {
            continue;
        }
        let instances = tree.instances(object).unwrap_or_default();
        if instances.is_empty() {
            links.push(format!("</{lwm2m}>"));
        }
        for instance in instances {
            let mut link = format!("</{lwm2m}/{}>", instance.0);
            if object == security::ID {
                if let Some(ssid) = integer_of(
                    tree,
                    Path::resource(security::ID, instance, security::SHORT_SERVER_ID),
                ) && !is_bootstrap_account(tree, instance)
                {
                    link.push_str(&format!(";ssid={ssid}"));
                }
                if let Some(uri) = text_of(
                    tree,
                    Path::resource(security::ID, instance, security::LWM2M_SERVER_URI),
                ) {
                    link.push_str(&format!(";uri=\"{uri}\""));
                }
            } else if object == server::ID
                && let Some(ssid) = integer_of(
                    tree,
                    Path::resource(server::ID, instance, server::SHORT_SERVER_ID),
                )
            {
                link.push_str(&format!(";ssid={ssid}"));
            }
            links.push(link);
        }
    }
    let mut response = status(ResponseType::Content);
    response.add_option(
        CoapOption::ContentFormat,
        vec![ContentFormat::LinkFormat.number() as u8],
    );
    response.payload = links.join(",").into_bytes();
    response
}

fn read(tree: &Tree, path: &Lwm2mPath, accept: Option<u16>) -> Packet {
    let format = match accept.map(ContentFormat::from_number) {
        None => ContentFormat::Tlv,
        Some(Some(f)) => f,
        Some(None) => return error(ResponseType::NotAcceptable, "content format not served"),
    };
    let Ok(core) = mapping::to_core(path) else {
        return error(ResponseType::NotFound, "no such object");
    };
    let mut items = Vec::new();
    let walked = tree.walk(
        Origin::Bootstrap,
        &Path::object(core.object_id()),
        &mut |p, value| {
            if let (Ok(value), Some(lwm2m)) = (value, mapping::from_core(&p)) {
                if path.instance.is_some_and(|i| Some(i) != lwm2m.instance) {
                    return;
                }
                match value {
                    ResourceValue::Single(v) => items.push(Item {
                        path: lwm2m,
                        value: v,
                    }),
                    ResourceValue::Multiple(values) => {
                        for (index, v) in values {
                            items.push(Item {
                                path: Lwm2mPath {
                                    index: Some(index),
                                    ..lwm2m
                                },
                                value: v,
                            });
                        }
                    }
                }
            }
        },
    );
    if walked.is_err() {
        return error(ResponseType::NotFound, "no such object");
    }
    match format::encode(format, path, &items) {
        Ok(payload) => {
            let mut response = status(ResponseType::Content);
            let n = format.number();
            response.add_option(
                CoapOption::ContentFormat,
                if n < 256 {
                    vec![n as u8]
                } else {
                    n.to_be_bytes().to_vec()
                },
            );
            response.payload = payload;
            response
        }
        Err(e) => error(ResponseType::NotAcceptable, &e.to_string()),
    }
}

/// Bootstrap-Finish (Core §6.1.7.8): accepted when a non-bootstrap
/// Security instance and a Server instance share a Short Server ID.
fn finish(tree: &Tree, trust_anchors: bool) -> Served {
    let server_ids: Vec<i64> = tree
        .instances(server::ID)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| integer_of(tree, Path::resource(server::ID, i, server::SHORT_SERVER_ID)))
        .collect();
    let complete = tree
        .instances(security::ID)
        .unwrap_or_default()
        .into_iter()
        .any(|i| {
            !is_bootstrap_account(tree, i)
                && integer_of(
                    tree,
                    Path::resource(security::ID, i, security::SHORT_SERVER_ID),
                )
                .is_some_and(|ssid| server_ids.contains(&ssid))
        });
    if !complete {
        return answer(error(
            ResponseType::NotAcceptable,
            "no server account: a Security and a Server instance with the same Short Server ID are needed",
        ));
    }
    // Key material is checked before it is accepted: a certificate that
    // does not parse or a key that is not the certificate's would only
    // fail later, in every handshake, with the previous accounts gone.
    if let Err(reason) = check_security(tree, trust_anchors) {
        return answer(error(ResponseType::NotAcceptable, &reason));
    }
    {
        Served {
            response: status(ResponseType::Changed),
            finished: true,
        }
    }
}

/// What the Security instance authenticates with: `Ok(None)` for NoSec
/// (3), an error for what this client cannot use (an account with one is
/// skipped with the reason, never registered in the clear).
fn credentials_at(tree: &Tree, instance: InstanceId) -> Result<Option<Credentials>, String> {
    let opaque = |path: Path| match tree.read(Origin::Agent, &path) {
        Ok(ResourceValue::Single(Value::Opaque(bytes))) => bytes,
        _ => Vec::new(),
    };
    let at = |r| Path::resource(security::ID, instance, r);
    Ok(
        match integer_of(tree, at(security::SECURITY_MODE)).unwrap_or(3) {
            0 => Some(Credentials::Psk {
                identity: opaque(at(security::PUBLIC_KEY_OR_IDENTITY)),
                key: opaque(at(security::SECRET_KEY)),
            }),
            2 => Some(Credentials::Certificate(Certificates {
                chain: opaque(at(security::PUBLIC_KEY_OR_IDENTITY)),
                private_key: opaque(at(security::SECRET_KEY)),
                server: opaque(at(security::SERVER_PUBLIC_KEY)),
                // Absent: 3, domain-issued certificate (object 0, /0/x/15).
                usage: match integer_of(tree, at(security::CERTIFICATE_USAGE)) {
                    None => CertificateUsage::DomainIssuedCertificate,
                    Some(value) => CertificateUsage::from_value(value).ok_or_else(|| {
                        format!("{value} is not a Certificate Usage (/0/x/15): 0 to 3")
                    })?,
                },
                trust_anchors: Vec::new(),
            })),
            3 => None,
            1 => return Err("Security Mode 1 (Raw Public Key) is not supported".to_owned()),
            4 => return Err("Security Mode 4 (Certificate with EST) is not supported".to_owned()),
            other => return Err(format!("{other} is not a Security Mode")),
        },
    )
}

/// What is wrong with an SNI (/0/x/14) for a handshake, if anything: it
/// must be a host name (RFC 6066 §3: no IP literal; RFC 1035 §2.3.4:
/// labels of 1 to 63 letters, digits and hyphens, 253 bytes in all).
/// Empty means none.
pub fn sni_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let valid = trimmed.len() <= 253
        && trimmed.parse::<std::net::IpAddr>().is_err()
        && trimmed.split('.').all(label_ok);
    (!valid).then(|| {
        "not a host name (RFC 6066 §3: letters, digits, hyphens and dots, at most 253 bytes, \
         no IP address)"
            .to_owned()
    })
}

/// The security of every Security instance, as Bootstrap-Finish checks it
/// (Core §6.1.7.8: 4.06 when the client cannot use what it was given).
fn check_security(tree: &Tree, trust_anchors: bool) -> Result<(), String> {
    for instance in tree.instances(security::ID).unwrap_or_default() {
        let problem = match credentials_at(tree, instance) {
            // The anchors usages 0 and 1 validate to are the agent's
            // configuration (its `ca_file`), not the Security object's.
            Ok(Some(Credentials::Certificate(certificates)))
                if certificates.usage.needs_trust_anchors() && !trust_anchors =>
            {
                Some(format!(
                    "certificate usage {} validates the server's path, and this client has \
                     no trust anchors configured",
                    certificates.usage.value()
                ))
            }
            Ok(Some(Credentials::Certificate(certificates))) => {
                crate::dtls::check_certificates(&certificates).err()
            }
            Ok(_) => None,
            Err(problem) => Some(problem),
        }
        .or_else(|| {
            text_of(tree, Path::resource(security::ID, instance, security::SNI))
                .and_then(|name| sni_problem(&name))
                .map(|problem| format!("the SNI (/0/x/14) is {problem}"))
        });
        if let Some(problem) = problem {
            return Err(format!("/0/{}: {problem}", instance.0));
        }
    }
    Ok(())
}

fn status(code: ResponseType) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet
}

fn error(code: ResponseType, diagnostic: &str) -> Packet {
    let mut packet = status(code);
    packet.payload = diagnostic.as_bytes().to_vec();
    packet
}

/// The server account bootstrap left: what registration needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uri: String,
    pub short_server_id: u16,
    /// The Server instance (/1/x) of this account.
    pub server_instance: u16,
    /// What a coaps:// account authenticates with: Security Mode 0 (PSK)
    /// or 2 (Certificate); `None` for NoSec (3) and the modes this client
    /// does not speak (1, Raw Public Key; 4, EST).
    pub credentials: Option<Credentials>,
    /// The SNI (/0/x/14): when present, the name sent in the handshake
    /// and matched against the server's certificate, the URI being only
    /// where the server is.
    pub sni: Option<String>,
}

/// The first complete server account in the tree, if any.
pub fn account(tree: &Tree) -> Option<Account> {
    accounts(tree).into_iter().next()
}

/// Every complete server account in the tree (a non-bootstrap Security
/// instance with a Server instance of the same Short Server ID), in
/// Security instance order: the client registers with each.
pub fn accounts(tree: &Tree) -> Vec<Account> {
    tree.instances(security::ID)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !is_bootstrap_account(tree, *i))
        .filter_map(|i| account_at(tree, i, false))
        .collect()
}

/// The bootstrap server account, if the tree has one.
/// The bootstrap account's Client Hold Off Time (/0/x/11): how long to
/// wait for a server-initiated bootstrap before asking for one.
pub fn client_hold_off(tree: &Tree) -> std::time::Duration {
    tree.instances(security::ID)
        .unwrap_or_default()
        .into_iter()
        .find(|i| is_bootstrap_account(tree, *i))
        .and_then(|i| {
            integer_of(
                tree,
                Path::resource(security::ID, i, security::CLIENT_HOLD_OFF_TIME),
            )
        })
        .and_then(|s| u64::try_from(s).ok())
        // At most a day: a longer wait is a misconfiguration, not a plan.
        .map_or(std::time::Duration::ZERO, |s| {
            std::time::Duration::from_secs(s.min(86_400))
        })
}

pub fn bootstrap_account(tree: &Tree) -> Option<Account> {
    tree.instances(security::ID)
        .unwrap_or_default()
        .into_iter()
        .find(|i| is_bootstrap_account(tree, *i))
        .and_then(|i| account_at(tree, i, true))
}

fn account_at(tree: &Tree, instance: InstanceId, bootstrap: bool) -> Option<Account> {
    let (short_server_id, server_instance) = if bootstrap {
        (0, 0)
    } else {
        let ssid = integer_of(
            tree,
            Path::resource(security::ID, instance, security::SHORT_SERVER_ID),
        )?;
        let server_instance = tree
            .instances(server::ID)
            .unwrap_or_default()
            .into_iter()
            .find(|i| {
                integer_of(
                    tree,
                    Path::resource(server::ID, *i, server::SHORT_SERVER_ID),
                ) == Some(ssid)
            })?;
        (u16::try_from(ssid).ok()?, server_instance.0)
    };
    let uri = text_of(
        tree,
        Path::resource(security::ID, instance, security::LWM2M_SERVER_URI),
    )?;
    let credentials = credentials_at(tree, instance).ok().flatten();
    // A name Bootstrap-Finish refuses (check_security) is never used.
    let sni = text_of(tree, Path::resource(security::ID, instance, security::SNI))
        .filter(|name| !name.is_empty() && sni_problem(name).is_none());
    Some(Account {
        uri,
        short_server_id,
        server_instance,
        credentials,
        sni,
    })
}

#[cfg(test)]
mod tests {
    use super::sni_problem;

    #[test]
    fn an_sni_must_be_a_host_name() {
        for good in [
            "",
            "lwm2m.example.net",
            "lwm2m.example.net.",
            "a-1.b",
            "localhost",
        ] {
            assert_eq!(sni_problem(good), None, "{good}");
        }
        let long = format!("{}.net", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "127.0.0.1",
            "::1",
            "lwm2m server",
            "a..b",
            "-a.b",
            "a-.b",
            &"a".repeat(64),
            &long,
            "ü.example",
        ] {
            assert!(sni_problem(bad).is_some(), "{bad}");
        }
    }
}
