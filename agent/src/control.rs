//! The control API: `org.dmagent.Agent1` at `/org/dmagent/Agent1` on the
//! system bus (the session bus when not root), what icwmp's `tr069` ubus
//! object offers: status, a session or registration update on demand,
//! reload, exit, and the object tree (get, set, add, delete,
//! notification). Callers are the local CLI origin; who may call is the
//! bus policy's business (`dist/org.dmagent.Agent1.conf`).
//!
//! Paths come in either form: TR-181 (`Device.WiFi.SSID.1.SSID`, objects
//! ending in a dot) or LwM2M (`/12/1/5`).

use std::sync::{Arc, Mutex};

use dm_core::{InstanceId, Notification, Origin, Path, ResourceValue, Tree};
use dm_cwmp::rpc;
use dm_cwmp::soap::ParameterValueIn;
use dm_lwm2m::mapping::{self as lwm2m_mapping, Lwm2mPath};
use serde_json::json;
use tokio::sync::mpsc;
use zbus::fdo;

use dm_core::lock;

use crate::host::{finish_prepared, finish_written};

pub const NAME: &str = "org.dmagent.Agent1";
pub const PATH: &str = "/org/dmagent/Agent1";

pub use crate::runtime::Request;

pub struct Control {
    pub tree: Arc<Mutex<Tree>>,
    /// Unix time the agent started.
    pub started: i64,
    pub cwmp: Option<(
        Arc<Mutex<dm_cwmp_tokio::Status>>,
        mpsc::Sender<dm_cwmp_tokio::Command>,
    )>,
    pub lwm2m: Option<Arc<Mutex<dm_lwm2m_tokio::Status>>>,
    pub requests: mpsc::Sender<Request>,
    pub transfer: Arc<Mutex<Option<TransferProgress>>>,
    /// The SHA-256 the next firmware pull must have, when named.
    pub expected_sha256: Arc<Mutex<Option<[u8; 32]>>>,
    /// The declared objects D-Bus services may serve.
    pub providers: Arc<crate::provider::dbus::Registry>,
    /// Which platform the values come from ("memory": invented).
    pub platform: &'static str,
}

/// The last firmware transfer's progress: bytes done, and of how many.
pub type TransferProgress = (u64, Option<u64>);

fn invalid(message: impl std::fmt::Display) -> fdo::Error {
    fdo::Error::InvalidArgs(message.to_string())
}

fn failed(message: impl std::fmt::Display) -> fdo::Error {
    fdo::Error::Failed(message.to_string())
}

fn fault(f: dm_cwmp::soap::Fault) -> fdo::Error {
    let detail: Vec<String> = f
        .parameters
        .iter()
        .map(|p| format!("{}: {} {}", p.name, p.code, p.message))
        .collect();
    let text = if detail.is_empty() {
        format!("{} {}", f.code, f.message)
    } else {
        format!("{} {} ({})", f.code, f.message, detail.join("; "))
    };
    use dm_cwmp::soap::FaultCode::*;
    match dm_cwmp::soap::FaultCode::from_code(f.code) {
        Some(
            InvalidArguments
            | InvalidParameterName
            | InvalidParameterType
            | InvalidParameterValue
            | NonWritableParameter,
        ) => invalid(text),
        _ => failed(text),
    }
}

/// A refused transaction: the client's mistake (InvalidArgs) or the
/// host's or the store's failure (Failed), with the core's own words.
fn transaction_error(e: dm_core::TransactionError) -> fdo::Error {
    let text: Vec<String> = e.faults.iter().map(ToString::to_string).collect();
    let text = text.join("; ");
    let host = e.faults.iter().any(|f| {
        matches!(
            f,
            dm_core::Error::Platform(_)
                | dm_core::Error::PlatformUnavailable(_)
                | dm_core::Error::PlatformDenied(_)
                | dm_core::Error::Storage(_)
        )
    });
    if host { failed(text) } else { invalid(text) }
}

/// The caller's unique bus name.
fn sender(header: &zbus::message::Header<'_>) -> fdo::Result<String> {
    header
        .sender()
        .map(ToString::to_string)
        .ok_or_else(|| invalid("a call with no sender"))
}

fn instance_id(instance: u32) -> fdo::Result<InstanceId> {
    u16::try_from(instance)
        .ok()
        .filter(|i| *i != u16::MAX)
        .map(InstanceId)
        .ok_or_else(|| invalid(format!("{instance}: not an instance number")))
}

/// An LwM2M-form path, as a core path.
fn lwm2m_path(text: &str) -> Result<(Lwm2mPath, Path), fdo::Error> {
    let path: Lwm2mPath = text
        .parse()
        .map_err(|_| invalid(format!("{text}: not an LwM2M path")))?;
    let core = lwm2m_mapping::to_core(&path).map_err(|e| invalid(format!("{text}: {e}")))?;
    Ok((path, core))
}

fn is_lwm2m(path: &str) -> bool {
    path.starts_with('/')
}

/// Values under a core path, named by their LwM2M paths, as text.
fn lwm2m_values(tree: &Tree, core: &Path) -> Result<Vec<(String, String)>, fdo::Error> {
    let mut out = Vec::new();
    let mut failure = None;
    let mut push = |path: Path, value: ResourceValue| {
        let Some(lwm2m) = lwm2m_mapping::from_core(&path) else {
            return;
        };
        match value {
            ResourceValue::Single(v) => {
                out.push((lwm2m.to_string(), dm_lwm2m::format::text::encode(&v)))
            }
            ResourceValue::Multiple(values) => {
                for (i, v) in values {
                    let at = Lwm2mPath {
                        index: Some(i),
                        ..lwm2m
                    };
                    out.push((at.to_string(), dm_lwm2m::format::text::encode(&v)));
                }
            }
        }
    };
    if core.resource_id().is_some() {
        let whole = core.without_index();
        let value = tree.read(Origin::Cli, &whole).map_err(failed)?;
        push(whole, value);
        if let Some(index) = core.index() {
            let wanted = lwm2m_mapping::from_core(core).map(|p| p.to_string());
            out.retain(|(name, _)| Some(name) == wanted.as_ref());
            if out.is_empty() {
                return Err(invalid(format!("no value {index}")));
            }
        }
    } else {
        tree.walk(Origin::Cli, core, &mut |path, value| match value {
            Ok(value) => push(path, value),
            Err(e) => failure = Some(e),
        })
        .map_err(failed)?;
        if let Some(e) = failure {
            return Err(failed(e));
        }
    }
    Ok(out)
}

#[zbus::interface(name = "org.dmagent.Agent1")]
impl Control {
    /// The agent and each protocol, as JSON (what `dmagent status` prints with
    /// its JSON option). zbus puts this text in an XML comment of the
    /// introspection data, where two hyphens in a row are not allowed.
    fn status(&self) -> String {
        let cwmp = self.cwmp.as_ref().map(|(status, _)| {
            let s = lock(status).clone();
            json!({
                "acs_url": s.acs_url,
                "in_session": s.in_session,
                "last_session_start": s.last_session_start,
                "last_session_end": s.last_session_end,
                "last_session_ok": s.last_session_ok,
                "sessions_ok": s.sessions_ok,
                "sessions_failed": s.sessions_failed,
                "next_session": s.next_session,
                "acs_methods": s.acs_methods,
                "connection_request_address": s.connection_request_address,
                "connection_request_error": s.connection_request_error,
                "connection_requests_unprotected": s.connection_requests_unprotected,
                "last_error": s.last_error.as_ref().map(|(at, e)| json!({ "at": at, "error": e })),
            })
        });
        let lwm2m = self.lwm2m.as_ref().map(|status| {
            let s = lock(status).clone();
            let servers: Vec<_> = s
                .servers
                .iter()
                .map(|(ssid, server)| {
                    json!({
                        "short_server_id": ssid,
                        "address": server.address,
                        "registered": server.registered,
                        "location": server.location,
                        "last_registration": server.last_registration,
                        "last_update": server.last_update,
                        "failures": server.failures,
                        "last_error": server.last_error,
                    })
                })
                .collect();
            json!({ "servers": servers })
        });
        let firmware = {
            use dm_core::catalog::firmware;
            let tree = lock(&self.tree);
            let read = |r| match tree.read(
                Origin::Agent,
                &Path::resource(firmware::ID, InstanceId(0), r),
            ) {
                Ok(ResourceValue::Single(dm_core::Value::Integer(v))) => Some(v),
                _ => None,
            };
            let transfer = *lock(&self.transfer);
            json!({
                "state": read(firmware::STATE),
                "update_result": read(firmware::UPDATE_RESULT),
                "transfer": transfer.map(|(done, total)| json!({ "done": done, "total": total })),
            })
        };
        json!({
            "agent": {
                "version": env!("CARGO_PKG_VERSION"),
                "started": self.started,
                "pid": std::process::id(),
                "platform": self.platform,
            },
            "cwmp": cwmp,
            "lwm2m": lwm2m,
            "firmware": firmware,
        })
        .to_string()
    }

    /// Name and value of each parameter at or under `path`.
    async fn get(&self, path: &str) -> fdo::Result<Vec<(String, String)>> {
        if is_lwm2m(path) {
            let (_, core) = lwm2m_path(path)?;
            // Values the host must be asked for (the system log).
            let (mut tree, fetched) =
                crate::host::read_from_host(&self.tree, Origin::Cli, |_| vec![core]).await;
            let values = lwm2m_values(&tree, &core);
            if fetched {
                tree.forget_fetched(Origin::Cli);
            }
            return values;
        }
        let names = [if path.is_empty() { "Device." } else { path }.to_owned()];
        // The same host reads first (a provider's volatile values, the
        // tables read on demand), made for the origin the TR-181 mapping
        // reads as.
        let (mut tree, fetched) = crate::host::read_from_host(&self.tree, Origin::Acs, |tree| {
            let mut paths = rpc::selected_paths(tree, &names);
            paths.extend(rpc::tables_listed(tree, &names));
            paths
        })
        .await;
        let values = rpc::get_parameter_values(&tree, &names)
            .map(|values| values.into_iter().map(|v| (v.name, v.value)).collect())
            .map_err(fault);
        if fetched {
            tree.forget_fetched(Origin::Acs);
        }
        values
    }

    /// Names under `path` (TR-181), with whether each is writable.
    async fn get_names(&self, path: &str, next_level: bool) -> fdo::Result<Vec<(String, bool)>> {
        if is_lwm2m(path) {
            return Err(invalid("get-names takes a TR-181 path (Device. ...)"));
        }
        // Tables the host gives on demand (the processes), read first.
        let names = [path.to_owned()];
        let (mut tree, fetched) = crate::host::read_from_host(&self.tree, Origin::Acs, |tree| {
            rpc::tables_listed(tree, &names)
        })
        .await;
        let listed = rpc::get_parameter_names(&tree, path, next_level).map_err(fault);
        if fetched {
            tree.forget_fetched(Origin::Acs);
        }
        listed
    }

    /// Asks the ACS for a file of `file_type` (RequestDownload) in a new
    /// session.
    async fn request_download(&self, file_type: &str) -> fdo::Result<()> {
        let Some((_, commands)) = &self.cwmp else {
            return Err(failed("CWMP is not enabled"));
        };
        let file_type = if file_type.is_empty() {
            dm_cwmp::session::FIRMWARE_IMAGE
        } else {
            file_type
        };
        let (answer, mut answered) = mpsc::channel(1);
        commands
            .send(dm_cwmp_tokio::Command::RequestDownload(
                file_type.to_owned(),
                Vec::new(),
                answer,
            ))
            .await
            .map_err(|_| failed("the CWMP driver is not running"))?;
        answered
            .recv()
            .await
            .ok_or_else(|| failed("the CWMP driver did not answer"))?
            .map_err(invalid)
    }

    /// Sends a CWMP Kicked (TR-069 §A.4.2.3, as a device's web page does
    /// when the ACS's web site sends a user to it) and returns the ACS's
    /// NextURL. Waits up to two minutes; a kick the ACS has not answered
    /// by then stays queued for the next session.
    async fn kick(
        &self,
        command: &str,
        referer: &str,
        arg: &str,
        next: &str,
    ) -> fdo::Result<String> {
        let Some((_, commands)) = &self.cwmp else {
            return Err(failed("CWMP is not enabled"));
        };
        let kick = dm_cwmp::soap::Kick {
            command: command.to_owned(),
            referer: referer.to_owned(),
            arg: arg.to_owned(),
            next: next.to_owned(),
        };
        let (answer, mut answered) = mpsc::channel(1);
        commands
            .send(dm_cwmp_tokio::Command::Kicked(kick, answer))
            .await
            .map_err(|_| failed("the CWMP driver is not running"))?;
        match tokio::time::timeout(std::time::Duration::from_secs(120), answered.recv()).await {
            Ok(Some(Ok(next_url))) => Ok(next_url),
            Ok(Some(Err(e))) => Err(invalid(e)),
            Ok(None) => Err(failed("the CWMP driver did not answer")),
            Err(_) => Err(failed(
                "the ACS has not answered yet; the Kicked stays queued for the next session",
            )),
        }
    }

    /// Starts a firmware pull from `url` as the local CLI: the firmware
    /// object goes back to Idle with no result first, so that whatever
    /// result follows is this pull's, and the same URI as before is pulled
    /// again. With `sha256` (64 hexadecimal digits; empty for none) an image
    /// with another hash is refused (Update Result 5).
    fn firmware_pull(&self, url: &str, sha256: &str) -> fdo::Result<()> {
        use dm_core::catalog::firmware;
        let expected = if sha256.is_empty() {
            None
        } else {
            // Any text may come over the bus: checked whole, never sliced
            // by byte index (a multi-byte character would panic).
            let digest = dm_core::support::hex::decode(sha256)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            Some(digest.ok_or_else(|| invalid("--sha256 takes 64 hexadecimal digits"))?)
        };
        *lock(&self.expected_sha256) = expected;
        let at = |r| Path::resource(firmware::ID, InstanceId(0), r);
        let mut tree = lock(&self.tree);
        tree.begin(Origin::Agent)
            .set(
                at(firmware::STATE),
                dm_core::Value::Integer(dm_core::enums::firmware::IDLE),
            )
            .set(
                at(firmware::UPDATE_RESULT),
                dm_core::Value::Integer(dm_core::enums::firmware::result::INITIAL),
            )
            .set(
                at(firmware::PACKAGE_URI),
                dm_core::Value::String(String::new()),
            )
            .commit()
            .map_err(transaction_error)?;
        tree.begin(Origin::Cli)
            .set(
                at(firmware::PACKAGE_URI),
                dm_core::Value::String(url.to_owned()),
            )
            .commit()
            .map_err(transaction_error)?;
        Ok(())
    }

    /// Executes a resource (`/5/0/2`, `/3/0/4`) with `arguments`, as the
    /// local CLI: whoever acts on it (the firmware pipeline, a reboot)
    /// does as for a server's Execute.
    fn execute(&self, path: &str, arguments: &str) -> fdo::Result<()> {
        if !is_lwm2m(path) {
            return Err(invalid("execute takes an LwM2M path (/5/0/2)"));
        }
        let (_, core) = lwm2m_path(path)?;
        lock(&self.tree)
            .execute(Origin::Cli, &core, arguments)
            .map_err(|e| invalid(format!("{path}: {e}")))
    }

    /// Sets one value, all checks as for a protocol write. A value the host
    /// must take first (a Wi-Fi profile) is written off the runtime
    /// thread, the tree unlocked meanwhile.
    async fn set(&self, path: &str, value: &str) -> fdo::Result<()> {
        if is_lwm2m(path) {
            let prepared = {
                let mut tree = lock(&self.tree);
                let (_, core) = lwm2m_path(path)?;
                let value_type = tree
                    .schema(core.object_id())
                    .and_then(|s| s.resource(core.resource_id()?))
                    .map(|r| r.value_type)
                    .ok_or_else(|| invalid(format!("{path} is not a resource")))?;
                let value = dm_lwm2m::format::text::decode(value, value_type).map_err(invalid)?;
                tree.begin(Origin::Cli).set(core, value).prepare()
            };
            finish_prepared(&self.tree, prepared)
                .await
                .map_err(transaction_error)?;
            return Ok(());
        }
        let written = rpc::set_parameter_values_by_prepared(
            &mut lock(&self.tree),
            Origin::Cli,
            &[ParameterValueIn {
                name: path.to_owned(),
                value: value.to_owned(),
                xsd_type: None,
            }],
            None,
        );
        finish_written(&self.tree, written)
            .await
            .map(|_| ())
            .map_err(fault)
    }

    /// Creates an instance of a table (`Device.WiFi.SSID.` or `/12`);
    /// returns the new instance's path.
    async fn add(&self, object: &str) -> fdo::Result<String> {
        if is_lwm2m(object) {
            let (path, core) = lwm2m_path(object)?;
            if path.instance.is_some() {
                return Err(invalid(format!("{object}: name an object, e.g. /12")));
            }
            let prepared = lock(&self.tree)
                .begin(Origin::Cli)
                .create(core.object_id(), None)
                .prepare();
            let done = finish_prepared(&self.tree, prepared)
                .await
                .map_err(transaction_error)?;
            let instance = done
                .created
                .first()
                .and_then(|p| p.instance_id())
                .ok_or_else(|| failed("no instance was created"))?;
            return Ok(format!("/{}/{}", path.object, instance.0));
        }
        let written = rpc::add_object_prepared(&mut lock(&self.tree), Origin::Cli, object, None);
        match finish_written(&self.tree, written).await.map_err(fault)? {
            rpc::WriteResult::Added { instance, .. } => Ok(format!("{object}{instance}.")),
            rpc::WriteResult::Status(_) => Err(failed("no instance was created")),
        }
    }

    /// Deletes an instance (`Device.WiFi.SSID.2.` or `/12/2`).
    async fn delete(&self, object: &str) -> fdo::Result<()> {
        if is_lwm2m(object) {
            let (path, core) = lwm2m_path(object)?;
            let (Some(instance), None) = (path.instance, path.resource) else {
                return Err(invalid(format!("{object}: name an instance, e.g. /12/2")));
            };
            let prepared = lock(&self.tree)
                .begin(Origin::Cli)
                .delete(core.object_id(), InstanceId(instance))
                .prepare();
            finish_prepared(&self.tree, prepared)
                .await
                .map_err(transaction_error)?;
            return Ok(());
        }
        let written = rpc::delete_object_prepared(&mut lock(&self.tree), Origin::Cli, object, None);
        finish_written(&self.tree, written)
            .await
            .map(|_| ())
            .map_err(fault)
    }

    /// The CWMP notification level (0 off, 1 passive, 2 active) of each
    /// parameter at or under `path`.
    fn get_notification(&self, path: &str) -> fdo::Result<Vec<(String, u8)>> {
        let tree = lock(&self.tree);
        if is_lwm2m(path) {
            let (_, core) = lwm2m_path(path)?;
            return Ok(vec![(
                path.to_owned(),
                tree.attributes()
                    .notification(&core.without_index())
                    .level(),
            )]);
        }
        let name = if path.is_empty() { "Device." } else { path };
        rpc::get_parameter_attributes(&tree, &[name.to_owned()])
            .map(|list| list.into_iter().map(|(n, level, _)| (n, level)).collect())
            .map_err(fault)
    }

    fn set_notification(&self, path: &str, level: u8) -> fdo::Result<()> {
        let mut tree = lock(&self.tree);
        if is_lwm2m(path) {
            let (_, core) = lwm2m_path(path)?;
            let level = Notification::from_level(level)
                .ok_or_else(|| invalid(format!("notification {level}: 0, 1 or 2")))?;
            return tree
                .set_notification(Origin::Cli, &core.without_index(), level)
                .map_err(|e| transaction_error(dm_core::TransactionError { faults: vec![e] }));
        }
        rpc::set_parameter_attributes_by(
            &mut tree,
            Origin::Cli,
            &[dm_cwmp::soap::AttributeChange {
                name: path.to_owned(),
                notification: Some(level),
                access_list: None,
            }],
        )
        .map_err(fault)
    }

    /// Starts a CWMP session reporting `event` (empty: a vendor event
    /// "X <OUI> LocalRequest").
    async fn inform(&self, event: &str) -> fdo::Result<()> {
        let Some((_, commands)) = &self.cwmp else {
            return Err(failed("CWMP is not enabled"));
        };
        let event = if event.is_empty() {
            let oui = match lock(&self.tree).read(
                Origin::Agent,
                &Path::resource(
                    dm_core::catalog::device::ID,
                    InstanceId(0),
                    dm_core::catalog::device::MANUFACTURER_OUI,
                ),
            ) {
                Ok(ResourceValue::Single(dm_core::Value::String(oui))) => oui,
                _ => "000000".to_owned(),
            };
            format!("X {oui} LocalRequest")
        } else {
            event.to_owned()
        };
        let (answer, mut answered) = mpsc::channel(1);
        commands
            .send(dm_cwmp_tokio::Command::Inform(event, answer))
            .await
            .map_err(|_| failed("the CWMP driver is not running"))?;
        answered
            .recv()
            .await
            .ok_or_else(|| failed("the CWMP driver did not answer"))?
            .map_err(invalid)
    }

    /// Sends an LwM2M registration Update to every server now (the
    /// Registration Update Trigger of each Server instance).
    fn update(&self) -> fdo::Result<()> {
        let mut tree = lock(&self.tree);
        let server = dm_core::catalog::server::ID;
        let instances = tree.instances(server).map_err(failed)?;
        if instances.is_empty() {
            return Err(failed("no LwM2M server is configured"));
        }
        for instance in instances {
            tree.execute(
                Origin::Cli,
                &Path::resource(
                    server,
                    instance,
                    dm_core::catalog::server::REGISTRATION_UPDATE_TRIGGER,
                ),
                "",
            )
            .map_err(failed)?;
        }
        Ok(())
    }

    /// Re-reads the configuration file and applies it, keeping the state.
    async fn reload(&self) -> fdo::Result<()> {
        let (answer, mut answered) = mpsc::channel(1);
        self.requests
            .send(Request::Reload(answer))
            .await
            .map_err(|_| failed("the agent is stopping"))?;
        answered
            .recv()
            .await
            .ok_or_else(|| failed("no answer"))?
            .map_err(invalid)
    }

    /// Registers the caller as the provider of a declared object
    /// (`provider = "dbus"`): "/3303" or its TR-181 path, and where the
    /// caller implements `org.dmagent.Provider1` (see the agent's
    /// provider module). Lasts as long as the caller's connection.
    async fn register_provider(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        object: &str,
        path: zbus::ObjectPath<'_>,
    ) -> fdo::Result<()> {
        let sender = sender(&header)?;
        self.providers
            .register(connection, &sender, object, path.into())
            .await
            .map_err(invalid)
    }

    /// Values the registered provider of `object` pushes.
    fn push_values(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        object: &str,
        instance: u32,
        values: std::collections::HashMap<String, zbus::OwnedVariant>,
    ) -> fdo::Result<()> {
        let instance = instance_id(instance)?;
        self.providers
            .push(
                &sender(&header)?,
                object,
                |values| crate::provider::Push::Values { instance, values },
                &values,
            )
            .map_err(invalid)
    }

    /// An instance the registered provider of `object` made.
    fn add_instance(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        object: &str,
        instance: u32,
        values: std::collections::HashMap<String, zbus::OwnedVariant>,
    ) -> fdo::Result<()> {
        let instance = instance_id(instance)?;
        self.providers
            .push(
                &sender(&header)?,
                object,
                |values| crate::provider::Push::Added { instance, values },
                &values,
            )
            .map_err(invalid)
    }

    /// An instance the registered provider of `object` removed.
    fn delete_instance(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        object: &str,
        instance: u32,
    ) -> fdo::Result<()> {
        let instance = instance_id(instance)?;
        self.providers
            .push(
                &sender(&header)?,
                object,
                |_| crate::provider::Push::Deleted { instance },
                &std::collections::HashMap::new(),
            )
            .map_err(invalid)
    }

    /// Stops the agent as SIGTERM does.
    async fn exit(&self) -> fdo::Result<()> {
        self.requests
            .send(Request::Exit)
            .await
            .map_err(|_| failed("the agent is stopping"))
    }
}

/// Which bus: `DMAGENT_BUS` = "system" or "session", else the system bus
/// as root and the session bus otherwise.
pub fn use_system_bus() -> bool {
    match std::env::var("DMAGENT_BUS").as_deref() {
        Ok("system") => true,
        Ok("session") => false,
        _ => rustix_is_root(),
    }
}

fn rustix_is_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Serves the API; `None` when no bus is reachable (the agent runs on).
pub async fn serve(control: Control) -> Option<zbus::Connection> {
    let builder = if use_system_bus() {
        zbus::connection::Builder::system()
    } else {
        zbus::connection::Builder::session()
    };
    // A bus that does not answer must not hold the agent's start.
    let built = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        builder.name(NAME).serve_at(PATH, control).build(),
    )
    .await;
    match built {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(e)) => {
            tracing::warn!("control API not available on D-Bus: {e}");
            None
        }
        Err(_) => {
            tracing::warn!("control API not available: the bus did not answer in 3 s");
            None
        }
    }
}
