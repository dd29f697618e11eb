//! Software packages: LwM2M Software Management (/9, Core E.9), which
//! TR-181 shows as Device.SoftwareModules.DeploymentUnit.{i}. One instance
//! per package. A Package URI pulls the package (coap, coaps, http, https,
//! streamed) into `<state_dir>/software/<instance>/`; Install, Uninstall,
//! Activate and Deactivate run the configured program, argv only:
//!
//! ```text
//! PROGRAM install PACKAGE_PATH     (may print "NAME VERSION" on stdout)
//! PROGRAM uninstall NAME
//! PROGRAM activate NAME
//! PROGRAM deactivate NAME
//! ```
//!
//! as opkg or apt wrappers do. Update State and Update Result follow E.9:
//! INITIAL → DOWNLOAD STARTED → DOWNLOADED → DELIVERED (result 3,
//! downloaded and verified) → INSTALLED (result 2) → INITIAL after
//! Uninstall.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use dm_core::catalog::software::{self, *};
use dm_core::{
    Change, ChangeKind, InstanceId, Origin, Path, ResourceId, ResourceValue, Tree, Value,
};
use dm_platform::firmware::ImageStore;
use tracing::{info, warn};

use crate::firmware::Failure;
use dm_core::lock;
use dm_cwmp::soap::{FaultCode, TransferFault};

use dm_core::enums::software::result::{
    CONNECTION_LOST as R_CONNECTION_LOST, DELIVERED as R_DELIVERED, DOWNLOADING as R_DOWNLOADING,
    INITIAL as R_INITIAL, INSTALL_FAILED as R_INSTALL_FAILED, INSTALLED as R_INSTALLED,
    INVALID_URI as R_INVALID_URI, NO_SPACE as R_NO_SPACE, UNINSTALL_FAILED as R_UNINSTALL_FAILED,
};
use dm_core::enums::software::{DELIVERED, DOWNLOAD_STARTED, INITIAL, INSTALLED};

/// What the agent does for a change on /9.
#[derive(Debug, PartialEq, Eq)]
pub enum Operation {
    Pull(String),
    Install,
    Uninstall,
    Activate,
    Deactivate,
    /// The instance was deleted: its package goes too.
    Forget,
}

/// The operation a change asks for, and on which instance: a Package URI
/// written by someone other than the agent, or an executed resource.
pub fn operation(change: &Change) -> Option<(InstanceId, Operation)> {
    if change.path.object_id() != software::ID || change.origin == Origin::Agent {
        return None;
    }
    let instance = change.path.instance_id()?;
    if change.kind == ChangeKind::Deleted {
        return Some((instance, Operation::Forget));
    }
    let operation = match (&change.kind, change.path.resource_id()?) {
        (ChangeKind::Value(ResourceValue::Single(Value::String(uri))), PACKAGE_URI) => {
            Operation::Pull(uri.clone())
        }
        (ChangeKind::Executed(_), INSTALL) => Operation::Install,
        (ChangeKind::Executed(_), UNINSTALL) => Operation::Uninstall,
        (ChangeKind::Executed(_), ACTIVATE) => Operation::Activate,
        (ChangeKind::Executed(_), DEACTIVATE) => Operation::Deactivate,
        _ => return None,
    };
    Some((instance, operation))
}

/// Where one instance's package lives: one store per instance for the
/// whole process, so that its single-writer slot is shared by the LwM2M
/// and the CWMP paths.
pub fn store(state_dir: &FsPath, instance: InstanceId, max_size: u64) -> ImageStore {
    static STORES: std::sync::OnceLock<Mutex<std::collections::HashMap<PathBuf, ImageStore>>> =
        std::sync::OnceLock::new();
    let dir = state_dir.join("software").join(instance.0.to_string());
    let mut stores = lock(STORES.get_or_init(Default::default));
    stores
        .entry(dir.clone())
        .or_insert_with(|| ImageStore::new(dir, max_size))
        .clone()
}

fn at(instance: InstanceId, resource: ResourceId) -> Path {
    Path::resource(software::ID, instance, resource)
}

/// Sets resources of an instance as the agent; an instance deleted
/// meanwhile is left alone.
fn set(tree: &Mutex<Tree>, instance: InstanceId, values: &[(ResourceId, Value)]) {
    let mut tree = lock(tree);
    let mut tx = tree.begin(Origin::Agent);
    for (resource, value) in values {
        tx.set(at(instance, *resource), value.clone());
        // The package's Execution Unit (TR-181 2.16) runs while it is
        // activated.
        if let (ACTIVATION_STATE, Value::Boolean(active)) = (*resource, value) {
            let status = if *active { "Active" } else { "Idle" };
            tx.set(at(instance, EU_STATUS), Value::String(status.into()));
        }
    }
    if let Err(e) = tx.commit() {
        warn!(instance = instance.0, "software state not recorded: {e:?}");
    }
}

fn state(tree: &Mutex<Tree>, instance: InstanceId, update: i64, result: i64) {
    set(
        tree,
        instance,
        &[
            (UPDATE_STATE, Value::Integer(update)),
            (UPDATE_RESULT, Value::Integer(result)),
        ],
    );
}

fn text(tree: &Mutex<Tree>, instance: InstanceId, resource: ResourceId) -> String {
    match lock(tree).read(Origin::Agent, &at(instance, resource)) {
        Ok(ResourceValue::Single(Value::String(s))) => s,
        _ => String::new(),
    }
}

/// What [`perform`] needs besides the instance and the operation.
#[derive(Clone)]
pub struct Performer {
    pub tree: Arc<Mutex<Tree>>,
    pub state_dir: PathBuf,
    pub max_size: u64,
    pub command: Option<Vec<String>>,
    pub tls: dm_cwmp_tokio::tls::Trust,
    pub self_update: Option<tokio::sync::mpsc::Sender<()>>,
    /// Where installs and uninstalls are told, for USP's DUStateChange!.
    pub events: Option<DuEvents>,
}

/// One queue per instance: its operations run one after another in the
/// order they were asked for (an Uninstall sent right after an Activate
/// must not overtake it, whatever each program takes); different
/// instances go on side by side.
#[derive(Default)]
pub struct Queues(std::collections::HashMap<u16, tokio::sync::mpsc::UnboundedSender<Operation>>);

impl Queues {
    pub fn submit(&mut self, performer: &Performer, instance: InstanceId, operation: Operation) {
        // The instance is gone: its queue ends (and its task) once what it
        // holds is done.
        let last = operation == Operation::Forget;
        let operation = match self.0.get(&instance.0) {
            Some(queue) => match queue.send(operation) {
                Ok(()) => {
                    if last {
                        self.0.remove(&instance.0);
                    }
                    return;
                }
                Err(closed) => closed.0,
            },
            None => operation,
        };
        let (queue, mut operations) = tokio::sync::mpsc::unbounded_channel();
        let _ = queue.send(operation);
        let performer = performer.clone();
        tokio::spawn(async move {
            while let Some(operation) = operations.recv().await {
                let p = performer.clone();
                perform(
                    p.tree,
                    p.state_dir,
                    p.max_size,
                    p.command,
                    p.tls,
                    p.self_update,
                    p.events,
                    instance,
                    operation,
                )
                .await;
            }
        });
        if !last {
            self.0.insert(instance.0, queue);
        }
    }
}

/// Carries out one operation; the object's handler has already checked
/// that the state allows it.
#[allow(clippy::too_many_arguments)]
pub async fn perform(
    tree: Arc<Mutex<Tree>>,
    state_dir: PathBuf,
    max_size: u64,
    command: Option<Vec<String>>,
    tls: dm_cwmp_tokio::tls::Trust,
    self_update: Option<tokio::sync::mpsc::Sender<()>>,
    events: Option<DuEvents>,
    instance: InstanceId,
    operation: Operation,
) {
    let store = store(&state_dir, instance, max_size);
    match operation {
        Operation::Forget => {
            store.discard();
            let _ = std::fs::remove_dir(state_dir.join("software").join(instance.0.to_string()));
        }
        Operation::Pull(uri) if uri.is_empty() => {
            store.discard();
            state(&tree, instance, INITIAL, R_INITIAL);
        }
        Operation::Pull(uri) => {
            state(&tree, instance, DOWNLOAD_STARTED, R_DOWNLOADING);
            let result =
                match crate::firmware::fetch(&tree, &store, &uri, Default::default(), tls, None)
                    .await
                {
                    // E.9: no separate verification step here (no signature
                    // in the package format), so downloaded is delivered.
                    Ok(_) => {
                        state(&tree, instance, DELIVERED, R_DELIVERED);
                        return;
                    }
                    Err(Failure::NoSpace) => R_NO_SPACE,
                    Err(Failure::ConnectionLost) => R_CONNECTION_LOST,
                    Err(Failure::InvalidUri | Failure::Unsupported) => R_INVALID_URI,
                    Err(Failure::Integrity) => 53,
                };
            state(&tree, instance, INITIAL, result);
        }
        Operation::Install => {
            if self_update.is_some()
                && install_self_update(&tree, &state_dir, &store, instance).await
            {
                return;
            }
            let start = dm_rt::clock::wall();
            let outcome = install(&tree, &store, &command, instance).await;
            tell(
                events.as_ref(),
                &tree,
                instance,
                "Install",
                start,
                outcome.map(|_| ()),
            );
        }
        Operation::Uninstall if is_self(&tree, &state_dir, instance) => {
            // The running agent cannot be uninstalled; its staged update
            // can, and the instance is no longer the agent's.
            let _ = std::fs::remove_file(staged(&state_dir));
            let _ = std::fs::remove_file(self_instance(&state_dir));
            store.discard();
            state(&tree, instance, INITIAL, R_INITIAL);
        }
        Operation::Uninstall => {
            let start = dm_rt::clock::wall();
            let outcome = uninstall(&tree, &command, instance).await;
            if outcome.is_ok() {
                store.discard();
            }
            tell(
                events.as_ref(),
                &tree,
                instance,
                "Uninstall",
                start,
                outcome,
            );
        }
        Operation::Activate if is_self(&tree, &state_dir, instance) => {
            // Only dmagent-launch swaps binaries: without it (systemd
            // running the agent directly) an exit would restart the old one.
            let launched = std::env::var_os("DMAGENT_LAUNCHER").is_some();
            match (self_update, staged(&state_dir).is_file(), launched) {
                (Some(ready), true, true) => {
                    info!("the agent's update is activated: handing over to the launcher");
                    set(&tree, instance, &[(ACTIVATION_STATE, Value::Boolean(true))]);
                    let _ = ready.send(()).await;
                }
                (_, false, _) => set(&tree, instance, &[(ACTIVATION_STATE, Value::Boolean(true))]),
                _ => {
                    warn!(
                        "the agent's update is staged, but no dmagent-launch runs the agent to swap it in"
                    );
                    set(
                        &tree,
                        instance,
                        &[(UPDATE_RESULT, Value::Integer(R_INSTALL_FAILED))],
                    );
                }
            }
        }
        Operation::Deactivate if is_self(&tree, &state_dir, instance) => {
            warn!("the running agent cannot be deactivated");
        }
        Operation::Activate | Operation::Deactivate => {
            let activate = operation == Operation::Activate;
            let name = text(&tree, instance, PKGNAME);
            let verb = if activate { "activate" } else { "deactivate" };
            // The Execution Unit is Starting or Stopping while the
            // program runs (TR-181 2.16 ExecutionUnit.{i}.Status).
            let moving = if activate { "Starting" } else { "Stopping" };
            set(
                &tree,
                instance,
                &[(EU_STATUS, Value::String(moving.into()))],
            );
            let after = match run(&command, verb, name.as_ref()).await {
                Ok(_) => activate,
                // The state stays as it was: the program said no.
                Err(e) => {
                    warn!(instance = instance.0, "software {verb} failed: {e}");
                    let now = lock(&tree).read(Origin::Agent, &at(instance, ACTIVATION_STATE));
                    matches!(now, Ok(ResourceValue::Single(Value::Boolean(true))))
                }
            };
            set(
                &tree,
                instance,
                &[(ACTIVATION_STATE, Value::Boolean(after))],
            );
        }
    }
}

/// Tells USP's DUStateChange! of a unit an LwM2M server installed or
/// uninstalled through /9 (E.9's Install and Uninstall), with the faults
/// CWMP's ChangeDUState gives the same failures: an install the package
/// program refused, an uninstall it refused (the unit stays installed).
fn tell(
    events: Option<&DuEvents>,
    tree: &Mutex<Tree>,
    instance: InstanceId,
    operation: &'static str,
    start: i64,
    outcome: Result<(), String>,
) {
    if events.is_none() {
        return;
    }
    let install = operation == "Install";
    let (current_state, fault, fault_string) = match outcome {
        Ok(()) if install => ("Installed", None, String::new()),
        Ok(()) => ("Uninstalled", None, String::new()),
        Err(e) if install => ("Failed", Some(FaultCode::FileCorrupted), e),
        Err(e) => ("Installed", Some(FaultCode::RequestDenied), e),
    };
    let result = dm_cwmp::soap::DuResult {
        // An LwM2M server may make a unit without one.
        uuid: uuid_or_nil(&text(tree, instance, software::UUID)),
        deployment_unit_ref: unit_ref(instance),
        version: version32(text(tree, instance, PKGVERSION)),
        current_state: current_state.into(),
        resolved: true,
        start,
        complete: dm_rt::clock::wall(),
        fault_code: fault.map_or(0, FaultCode::code),
        fault_string,
    };
    send_event(events, result, operation);
}

/// At start: a package download that a restart cut short is reported as
/// lost (E.9: INITIAL, result 52) rather than left "download started". A
/// ChangeDUState Install cut short (the unit has its UUID but was never
/// installed) is removed: the ACS was told it failed (9001), so it must
/// not linger as a unit. Any other operation cut short leaves the status
/// its state says.
pub fn recover(tree: &Mutex<Tree>) {
    let instances = lock(tree).instances(software::ID).unwrap_or_default();
    for instance in instances {
        let update = match lock(tree).read(Origin::Agent, &at(instance, UPDATE_STATE)) {
            Ok(ResourceValue::Single(Value::Integer(s))) => s,
            _ => continue,
        };
        let status = text(tree, instance, software::STATUS);
        let half_made = status == "Installing"
            && update != INSTALLED
            && !text(tree, instance, software::UUID).is_empty();
        if half_made {
            warn!(
                instance = instance.0,
                "a deployment unit install was cut by a restart; removed"
            );
            let _ = lock(tree)
                .begin(Origin::Agent)
                .delete(software::ID, instance)
                .commit();
            continue;
        }
        // The Execution Unit's Status follows the Activation State (kept
        // by `set`; state saved before it existed has only the latter).
        let activation = lock(tree).read(Origin::Agent, &at(instance, ACTIVATION_STATE));
        if let Ok(ResourceValue::Single(Value::Boolean(active))) = activation {
            set(
                tree,
                instance,
                &[(ACTIVATION_STATE, Value::Boolean(active))],
            );
        }

        if update == DOWNLOAD_STARTED {
            warn!(
                instance = instance.0,
                "a package download was interrupted by a restart"
            );
            state(tree, instance, INITIAL, R_CONNECTION_LOST);
        }
        if matches!(status.as_str(), "Installing" | "Updating" | "Uninstalling") {
            let now = if update == INSTALLED {
                "Installed"
            } else {
                "Uninstalled"
            };
            set(
                tree,
                instance,
                &[(software::STATUS, Value::String(now.into()))],
            );
        }
    }
}

/// The exit status that tells the launcher an update of the agent itself
/// is staged (EX_TEMPFAIL): it swaps `<state_dir>/update/dmagent.new` in
/// and starts the agent again.
pub const UPDATE_READY: u8 = 75;

/// Where a verified update of the agent waits for the launcher.
pub fn staged(state_dir: &FsPath) -> PathBuf {
    state_dir.join("update").join("dmagent.new")
}

/// Which /9 instance is the agent itself (recorded when its update was
/// staged; it outlives the swap).
fn self_instance(state_dir: &FsPath) -> PathBuf {
    state_dir.join("update").join("instance")
}

/// Whether the instance is the agent's own package: never handed to the
/// package program.
fn is_self(_tree: &Mutex<Tree>, state_dir: &FsPath, instance: InstanceId) -> bool {
    std::fs::read_to_string(self_instance(state_dir))
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        == Some(instance.0)
}

/// With `[software] self_update`: a package that is a dmagent binary
/// (verified by running a copy with `--version`, which must answer
/// "dmagent VERSION" on this machine) is installed as the agent's next
/// version: staged for the launcher, not given to the package program.
/// Returns whether it was one.
async fn install_self_update(
    tree: &Mutex<Tree>,
    state_dir: &FsPath,
    store: &ImageStore,
    instance: InstanceId,
) -> bool {
    let Some(package) = store.image() else {
        return false;
    };
    // Only an executable for this kind of machine is ever tried: a script
    // or an installer is the package program's to judge, not something
    // to run as the agent.
    let elf = std::fs::File::open(&package).and_then(|mut f| {
        use std::io::Read as _;
        let mut magic = [0u8; 4];
        f.read_exact(&mut magic).map(|()| magic)
    });
    if !matches!(elf, Ok(m) if m == *b"\x7fELF") {
        return false;
    }
    let dir = state_dir.join("update");
    let candidate = dir.join("dmagent.candidate");
    let copied = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::copy(&package, &candidate))
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&candidate, std::fs::Permissions::from_mode(0o755))
        });
    if let Err(e) = copied {
        warn!("self-update: {e}");
        return false;
    }
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::process::Command::new(&candidate)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let version = match answer {
        Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("dmagent "))
            // "0.1.0 (features: ...)": the version is the first word.
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned),
        _ => None,
    };
    let Some(version) = version else {
        let _ = std::fs::remove_file(&candidate);
        return false;
    };
    let staged = staged(state_dir);
    let placed = std::fs::rename(&candidate, &staged)
        .and_then(|()| std::fs::File::open(&dir).and_then(|d| d.sync_all()));
    if let Err(e) = placed {
        warn!("self-update: {e}");
        let _ = std::fs::remove_file(&candidate);
        return false;
    }
    if let Err(e) = std::fs::write(self_instance(state_dir), instance.0.to_string()) {
        warn!("self-update: {e}");
        let _ = std::fs::remove_file(&staged);
        return false;
    }
    info!(version, path = %staged.display(), "an update of the agent is staged");
    set(
        tree,
        instance,
        &[
            (PKGNAME, Value::String("dmagent".into())),
            (PKGVERSION, Value::String(version)),
            (UPDATE_STATE, Value::Integer(INSTALLED)),
            (UPDATE_RESULT, Value::Integer(R_INSTALLED)),
            (ACTIVATION_STATE, Value::Boolean(false)),
            (software::STATUS, Value::String("Installed".into())),
        ],
    );
    true
}

/// Install: runs `PROGRAM install PACKAGE` and records the outcome on the
/// instance (E.9: INSTALLED with result 2, or DELIVERED with result 58).
/// Returns the package's name and version.
async fn install(
    tree: &Mutex<Tree>,
    store: &ImageStore,
    command: &Option<Vec<String>>,
    instance: InstanceId,
) -> Result<(String, String), String> {
    set(
        tree,
        instance,
        &[(software::STATUS, Value::String("Installing".into()))],
    );
    let outcome = match store.image() {
        None => Err("no package".to_owned()),
        Some(package) => run(command, "install", package.as_os_str()).await,
    };
    match outcome {
        Ok(stdout) => {
            // "NAME VERSION" from the program, else the package's file
            // name in the URI.
            let mut words = stdout.lines().next().unwrap_or("").split_whitespace();
            let uri = text(tree, instance, PACKAGE_URI);
            let fallback = uri
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("package")
                .to_owned();
            let name = words.next().map_or(fallback, str::to_owned);
            let version = words.next().unwrap_or("").to_owned();
            info!(
                instance = instance.0,
                name, version, "software package installed"
            );
            set(
                tree,
                instance,
                &[
                    (PKGNAME, Value::String(name.clone())),
                    (PKGVERSION, Value::String(version.clone())),
                    (UPDATE_STATE, Value::Integer(INSTALLED)),
                    (UPDATE_RESULT, Value::Integer(R_INSTALLED)),
                    (ACTIVATION_STATE, Value::Boolean(false)),
                    (software::STATUS, Value::String("Installed".into())),
                ],
            );
            Ok((name, version))
        }
        Err(e) => {
            warn!(instance = instance.0, "software install failed: {e}");
            set(
                tree,
                instance,
                &[
                    (UPDATE_STATE, Value::Integer(DELIVERED)),
                    (UPDATE_RESULT, Value::Integer(R_INSTALL_FAILED)),
                    (software::STATUS, Value::String("Uninstalled".into())),
                ],
            );
            Err(e)
        }
    }
}

/// Uninstall: runs `PROGRAM uninstall NAME` and records the outcome (E.9:
/// INITIAL, or result 59 with the package still installed).
async fn uninstall(
    tree: &Mutex<Tree>,
    command: &Option<Vec<String>>,
    instance: InstanceId,
) -> Result<(), String> {
    let name = text(tree, instance, PKGNAME);
    set(
        tree,
        instance,
        &[(software::STATUS, Value::String("Uninstalling".into()))],
    );
    match run(command, "uninstall", name.as_ref()).await {
        Ok(_) => {
            info!(instance = instance.0, name, "software package uninstalled");
            set(
                tree,
                instance,
                &[
                    (UPDATE_STATE, Value::Integer(INITIAL)),
                    (UPDATE_RESULT, Value::Integer(R_INITIAL)),
                    (ACTIVATION_STATE, Value::Boolean(false)),
                    (software::STATUS, Value::String("Uninstalled".into())),
                ],
            );
            Ok(())
        }
        Err(e) => {
            warn!(instance = instance.0, "software uninstall failed: {e}");
            set(
                tree,
                instance,
                &[
                    (UPDATE_RESULT, Value::Integer(R_UNINSTALL_FAILED)),
                    (software::STATUS, Value::String("Installed".into())),
                ],
            );
            Err(e)
        }
    }
}

/// The /9 instance holding deployment unit `uuid` (and `version`, when
/// given).
fn find(tree: &Mutex<Tree>, uuid: &str, version: &str) -> Option<InstanceId> {
    if uuid.is_empty() {
        return None;
    }
    let instances = lock(tree).instances(software::ID).ok()?;
    instances.into_iter().find(|i| {
        text(tree, *i, software::UUID).eq_ignore_ascii_case(uuid)
            && (version.is_empty() || text(tree, *i, PKGVERSION) == version)
    })
}

/// The /9 instance installed from `uri`.
fn find_by_uri(tree: &Mutex<Tree>, uri: &str) -> Option<InstanceId> {
    if uri.is_empty() {
        return None;
    }
    let instances = lock(tree).instances(software::ID).ok()?;
    instances
        .into_iter()
        .find(|i| text(tree, *i, PACKAGE_URI) == uri && !text(tree, *i, software::UUID).is_empty())
}

fn unit_ref(instance: InstanceId) -> String {
    format!("Device.SoftwareModules.DeploymentUnit.{}.", instance.0)
}

/// CWMP ChangeDUState (TR-069 §A.4.1.10) on the same /9 instances: Install
/// creates one (pull, then the program), Update pulls and installs again,
/// Uninstall runs the program and removes the instance. Faults are
/// TR-069's: 9010 download failure, 9013 unsupported protocol, 9018 the
/// package was refused, 9026 duplicate unit, 9028 unknown unit, 9001 other.
pub fn cwmp_handler(
    tree: Arc<Mutex<Tree>>,
    state_dir: PathBuf,
    max_size: u64,
    command: Option<Vec<String>>,
    tls: dm_cwmp_tokio::tls::Trust,
    events: Option<DuEvents>,
) -> dm_cwmp_tokio::DuHandler {
    dm_cwmp_tokio::DuHandler(Arc::new(move |change| {
        let (tree, state_dir, command, tls, events) = (
            Arc::clone(&tree),
            state_dir.clone(),
            command.clone(),
            tls.clone(),
            events.clone(),
        );
        Box::pin(async move {
            let mut results = Vec::new();
            for op in change.operations {
                let operation = op.name();
                let start = dm_rt::clock::wall();
                let mut result =
                    du_operation(&tree, &state_dir, max_size, &command, tls.clone(), op).await;
                result.start = start;
                result.complete = dm_rt::clock::wall();
                send_event(events.as_ref(), result.clone(), operation);
                results.push(result);
            }
            results
        })
    }))
}

/// A deployment unit's operation carried out for another protocol
/// (CWMP's ChangeDUState, LwM2M's /9), for USP's DUStateChange! (TR-181
/// 2.16: an event of every unit's state change, whoever asked).
#[derive(Clone, Debug)]
pub struct DuEvent {
    pub result: dm_cwmp::soap::DuResult,
    /// "Install", "Update" or "Uninstall".
    pub operation: &'static str,
}

pub type DuEvents = tokio::sync::broadcast::Sender<DuEvent>;

fn send_event(events: Option<&DuEvents>, result: dm_cwmp::soap::DuResult, operation: &'static str) {
    if let Some(events) = events {
        // Nobody listening (no USP) is no error.
        let _ = events.send(DuEvent { result, operation });
    }
}

/// OpResultStruct requires a UUID: the nil one when the unit has none.
fn uuid_or_nil(uuid: &str) -> String {
    if uuid.is_empty() {
        "00000000-0000-0000-0000-000000000000".to_owned()
    } else {
        uuid.to_owned()
    }
}

fn failed(uuid: &str, code: FaultCode, text: impl Into<String>) -> dm_cwmp::soap::DuResult {
    dm_cwmp::soap::DuResult {
        uuid: uuid_or_nil(uuid),
        current_state: "Failed".into(),
        fault_code: code.code(),
        fault_string: text.into(),
        ..Default::default()
    }
}

/// DeploymentUnitCPEFaultCodeType allows 9001, 9003, 9012, 9013,
/// 9015-9018 and 9022-9032 only (cwmp-1-2.xsd).
fn download_fault(failure: Failure) -> TransferFault {
    match failure {
        Failure::Unsupported => TransferFault::new(
            FaultCode::UnsupportedTransferProtocol,
            "Unsupported protocol for file transfer",
        ),
        Failure::InvalidUri => TransferFault::new(
            FaultCode::FileNotAccessible,
            "Download failure: unable to access file",
        ),
        Failure::NoSpace => TransferFault::new(
            FaultCode::SystemResourcesExceeded,
            "System resources exceeded: no room for the package",
        ),
        Failure::ConnectionLost => TransferFault::new(
            FaultCode::DownloadIncomplete,
            "Download failure: unable to complete download",
        ),
        Failure::Integrity => {
            TransferFault::new(FaultCode::FileCorrupted, "Download failure: file corrupted")
        }
    }
}

/// OpResultStruct's Version is at most 32 characters.
fn version32(version: String) -> String {
    version.chars().take(32).collect()
}

/// A unit that stays installed after a failed Update or Uninstall: the
/// result says so (CurrentState Failed is for an Install that created
/// nothing).
fn still_installed(
    tree: &Mutex<Tree>,
    uuid: &str,
    instance: InstanceId,
    code: FaultCode,
    text: impl Into<String>,
) -> dm_cwmp::soap::DuResult {
    dm_cwmp::soap::DuResult {
        uuid: uuid.to_owned(),
        deployment_unit_ref: unit_ref(instance),
        version: version32(self::text(tree, instance, PKGVERSION)),
        current_state: "Installed".into(),
        resolved: true,
        fault_code: code.code(),
        fault_string: text.into(),
        ..Default::default()
    }
}

async fn du_operation(
    tree: &Arc<Mutex<Tree>>,
    state_dir: &FsPath,
    max_size: u64,
    command: &Option<Vec<String>>,
    tls: dm_cwmp_tokio::tls::Trust,
    op: dm_cwmp::soap::DuOperation,
) -> dm_cwmp::soap::DuResult {
    use dm_cwmp::soap::{DuOperation, DuResult};
    match op {
        DuOperation::Install {
            url,
            uuid,
            username,
            password,
            ..
        } => {
            let uuid = if uuid.is_empty() {
                match dm_rt::random::uuid_v4() {
                    Ok(uuid) => uuid,
                    // 9002 Internal error (TR-069 Table 51).
                    Err(e) => return failed("", FaultCode::InternalError, e.to_string()),
                }
            } else {
                uuid
            };
            if find(tree, &uuid, "").is_some() {
                return failed(
                    &uuid,
                    FaultCode::DuplicateDeploymentUnit,
                    "Duplicate Deployment Unit",
                );
            }
            let created = {
                let mut tree = lock(tree);
                let mut tx = tree.begin(Origin::Agent);
                tx.create(software::ID, None);
                tx.commit()
            };
            let instance = match created {
                Ok(created) => match created.created.first().and_then(Path::instance_id) {
                    Some(instance) => instance,
                    None => {
                        return failed(&uuid, FaultCode::RequestDenied, "no instance was created");
                    }
                },
                Err(e) => return failed(&uuid, FaultCode::SystemResourcesExceeded, e.to_string()),
            };
            // The UUID on its own: a URI too long for /9/x/3 (255) must not
            // leave the unit without its identity.
            let named = lock(tree)
                .begin(Origin::Agent)
                .set(
                    Path::resource(software::ID, instance, software::UUID),
                    Value::String(uuid.clone()),
                )
                .commit();
            if let Err(e) = named {
                let _ = lock(tree)
                    .begin(Origin::Agent)
                    .delete(software::ID, instance)
                    .commit();
                return failed(
                    &uuid,
                    FaultCode::RequestDenied,
                    format!("the unit cannot be recorded: {e}"),
                );
            }
            set(tree, instance, &[(PACKAGE_URI, Value::String(url.clone()))]);
            let store = store(state_dir, instance, max_size);
            let credentials = dm_cwmp_tokio::Credentials { username, password };
            let outcome =
                match crate::firmware::fetch(tree, &store, &url, credentials, tls, None).await {
                    Err(failure) => Err(download_fault(failure)),
                    Ok(_) => {
                        state(tree, instance, DELIVERED, R_DELIVERED);
                        install(tree, &store, command, instance).await.map_err(|_| {
                            TransferFault::new(
                                FaultCode::FileCorrupted,
                                "the package program refused the package",
                            )
                        })
                    }
                };
            match outcome {
                Ok((_, version)) => DuResult {
                    uuid,
                    deployment_unit_ref: unit_ref(instance),
                    version: version32(version),
                    current_state: "Installed".into(),
                    resolved: true,
                    ..Default::default()
                },
                Err(TransferFault { code, text }) => {
                    // The unit was never installed: it does not stay.
                    store.discard();
                    let _ = lock(tree)
                        .begin(Origin::Agent)
                        .delete(software::ID, instance)
                        .commit();
                    failed(&uuid, code, text)
                }
            }
        }
        DuOperation::Update {
            uuid,
            version,
            url,
            username,
            password,
        } => {
            // No UUID: the URL names the unit (TR-069 UpdateOpStruct).
            let found = if uuid.is_empty() {
                find_by_uri(tree, &url)
            } else {
                find(tree, &uuid, &version)
            };
            let Some(instance) = found else {
                return failed(
                    &uuid,
                    FaultCode::UnknownDeploymentUnit,
                    "Unknown Deployment Unit",
                );
            };
            let uuid = text(tree, instance, software::UUID);
            let url = if url.is_empty() {
                text(tree, instance, PACKAGE_URI)
            } else {
                url
            };
            let store = store(state_dir, instance, max_size);
            let credentials = dm_cwmp_tokio::Credentials { username, password };
            // Busy meanwhile: an LwM2M Execute on the unit is refused.
            state(tree, instance, DOWNLOAD_STARTED, R_DOWNLOADING);
            set(
                tree,
                instance,
                &[(software::STATUS, Value::String("Updating".into()))],
            );
            let outcome =
                match crate::firmware::fetch(tree, &store, &url, credentials, tls, None).await {
                    Err(failure) => {
                        // The installed version stays.
                        set(
                            tree,
                            instance,
                            &[
                                (UPDATE_STATE, Value::Integer(INSTALLED)),
                                (software::STATUS, Value::String("Installed".into())),
                            ],
                        );
                        Err(download_fault(failure))
                    }
                    Ok(_) => {
                        set(tree, instance, &[(PACKAGE_URI, Value::String(url))]);
                        install(tree, &store, command, instance).await.map_err(|_| {
                            TransferFault::new(
                                FaultCode::FileCorrupted,
                                "the package program refused the package",
                            )
                        })
                    }
                };
            match outcome {
                Ok((_, version)) => DuResult {
                    uuid,
                    deployment_unit_ref: unit_ref(instance),
                    version: version32(version),
                    current_state: "Installed".into(),
                    resolved: true,
                    ..Default::default()
                },
                Err(TransferFault { code, text }) => {
                    still_installed(tree, &uuid, instance, code, text)
                }
            }
        }
        DuOperation::Uninstall { uuid, version, .. } => {
            let Some(instance) = find(tree, &uuid, &version) else {
                return failed(
                    &uuid,
                    FaultCode::UnknownDeploymentUnit,
                    "Unknown Deployment Unit",
                );
            };
            let version = text(tree, instance, PKGVERSION);
            match uninstall(tree, command, instance).await {
                Ok(()) => {
                    store(state_dir, instance, max_size).discard();
                    let _ = lock(tree)
                        .begin(Origin::Agent)
                        .delete(software::ID, instance)
                        .commit();
                    DuResult {
                        uuid,
                        deployment_unit_ref: unit_ref(instance),
                        version: version32(version),
                        current_state: "Uninstalled".into(),
                        resolved: true,
                        ..Default::default()
                    }
                }
                Err(e) => still_installed(
                    tree,
                    &uuid,
                    instance,
                    FaultCode::RequestDenied,
                    format!("uninstall failed: {e}"),
                ),
            }
        }
    }
}

/// How long the package program may take: one that hangs (a held package
/// manager lock) must not block every later transfer.
const PROGRAM_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Runs `PROGRAM VERB ARGUMENT`; its stdout on success.
async fn run(
    command: &Option<Vec<String>>,
    verb: &str,
    argument: &std::ffi::OsStr,
) -> Result<String, String> {
    let Some((program, arguments)) = command.as_deref().and_then(<[String]>::split_first) else {
        return Err("no software command is configured ([software] command)".into());
    };
    let output = tokio::time::timeout(
        PROGRAM_TIME_LIMIT,
        tokio::process::Command::new(program)
            .args(arguments)
            .arg(verb)
            .arg(argument)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{program} {verb}: still running after {PROGRAM_TIME_LIMIT:?}; killed"))?
    .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{program} {verb}: {}", output.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Mutex<Tree> {
        let platform = dm_objects::Platform {
            host: Arc::new(dm_platform::linux::LinuxHost::default()),
            network: Arc::new(dm_platform::memory::MemoryNetwork::demo()),
            log: Arc::new(dm_platform::memory::MemoryLog::default()),
        };
        let mut tree = Tree::new();
        dm_objects::register(&mut tree, &platform).unwrap();
        dm_objects::populate(&mut tree, &[]).unwrap();
        Mutex::new(tree)
    }

    /// Operations on one instance run in the order asked, however long
    /// each program takes: a slow Activate is not overtaken by the
    /// Uninstall the server sent right after it (an end-to-end test saw
    /// "uninstall" before "activate" when each ran as its own task).
    #[tokio::test(flavor = "current_thread")]
    async fn operations_on_one_instance_keep_their_order() {
        let tree = Arc::new(tree());
        let created = lock(&tree)
            .begin(Origin::Agent)
            .create(software::ID, None)
            .commit()
            .unwrap();
        let instance = created.created[0].instance_id().unwrap();
        set(&tree, instance, &[(PKGNAME, Value::String("pkg".into()))]);
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let program = dir.path().join("program");
        // A slow activate: the stand-in for a package manager that
        // takes its time.
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\n[ \"$1\" = activate ] && sleep 0.3\necho \"$1\" >> '{}'\n",
                calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let changed = Arc::new(tokio::sync::Notify::new());
        let changes = lock(&tree).subscribe(64);
        let notify = Arc::clone(&changed);
        changes.set_waker(move || notify.notify_one());
        let performer = Performer {
            tree: Arc::clone(&tree),
            state_dir: dir.path().to_owned(),
            max_size: 1 << 20,
            command: Some(vec![program.display().to_string()]),
            tls: dm_cwmp_tokio::tls::Trust::None,
            self_update: None,
            events: None,
        };
        let mut queues = Queues::default();
        queues.submit(&performer, instance, Operation::Activate);
        queues.submit(&performer, instance, Operation::Uninstall);
        tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while text(&tree, instance, software::STATUS) != "Uninstalled" {
                changed.notified().await;
                changes.drain();
            }
        })
        .await
        .expect("the uninstall ends");
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            "activate\nuninstall\n"
        );
    }

    /// After a restart: a half-made unit goes, a cut download is lost
    /// (52), and a status left mid-operation follows the state.
    #[test]
    fn operations_cut_by_a_restart_are_settled() {
        let tree = tree();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let created = lock(&tree)
                .begin(Origin::Agent)
                .create(software::ID, None)
                .commit()
                .unwrap();
            ids.push(created.created[0].instance_id().unwrap());
        }
        let (half, downloading, updating) = (ids[0], ids[1], ids[2]);
        set(
            &tree,
            half,
            &[
                (
                    software::UUID,
                    Value::String("6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b".into()),
                ),
                (software::STATUS, Value::String("Installing".into())),
                (UPDATE_STATE, Value::Integer(DELIVERED)),
            ],
        );
        state(&tree, downloading, DOWNLOAD_STARTED, R_DOWNLOADING);
        set(
            &tree,
            updating,
            &[
                (software::STATUS, Value::String("Updating".into())),
                (UPDATE_STATE, Value::Integer(INSTALLED)),
            ],
        );
        recover(&tree);
        let left = lock(&tree).instances(software::ID).unwrap();
        assert!(!left.contains(&half), "the half-made unit is gone");
        assert_eq!(
            lock(&tree)
                .read(Origin::Agent, &at(downloading, UPDATE_RESULT))
                .unwrap(),
            ResourceValue::Single(Value::Integer(R_CONNECTION_LOST))
        );
        assert_eq!(text(&tree, updating, software::STATUS), "Installed");
    }

    #[test]
    fn only_others_writes_and_executes_are_operations() {
        let change = |origin, resource, kind| Change {
            sequence: 1,
            origin,
            path: at(InstanceId(2), resource),
            kind,
        };
        let uri = ChangeKind::Value(ResourceValue::Single(Value::String(
            "http://h/p.ipk".into(),
        )));
        assert_eq!(
            operation(&change(Origin::Server(1), PACKAGE_URI, uri.clone())),
            Some((InstanceId(2), Operation::Pull("http://h/p.ipk".into())))
        );
        assert_eq!(operation(&change(Origin::Agent, PACKAGE_URI, uri)), None);
        assert_eq!(
            operation(&change(
                Origin::Cli,
                INSTALL,
                ChangeKind::Executed(String::new())
            )),
            Some((InstanceId(2), Operation::Install))
        );
        assert_eq!(
            operation(&change(
                Origin::Server(1),
                UPDATE_STATE,
                ChangeKind::Value(ResourceValue::Single(Value::Integer(4)))
            )),
            None
        );
    }
}
