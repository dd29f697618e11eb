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
use crate::runtime::lock;

/// Update State (/9/x/7).
const INITIAL: i64 = 0;
const DOWNLOAD_STARTED: i64 = 1;
const DELIVERED: i64 = 3;
const INSTALLED: i64 = 4;

/// Update Result (/9/x/9).
const R_INITIAL: i64 = 0;
const R_DOWNLOADING: i64 = 1;
const R_INSTALLED: i64 = 2;
const R_DELIVERED: i64 = 3;
const R_NO_SPACE: i64 = 50;
const R_CONNECTION_LOST: i64 = 52;
const R_INVALID_URI: i64 = 56;
const R_INSTALL_FAILED: i64 = 58;
const R_UNINSTALL_FAILED: i64 = 59;

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

/// Where one instance's package lives.
pub fn store(state_dir: &FsPath, instance: InstanceId, max_size: u64) -> ImageStore {
    ImageStore::new(
        state_dir.join("software").join(instance.0.to_string()),
        max_size,
    )
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

/// Carries out one operation; the object's handler has already checked
/// that the state allows it.
pub async fn perform(
    tree: Arc<Mutex<Tree>>,
    state_dir: PathBuf,
    max_size: u64,
    command: Option<Vec<String>>,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
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
            let result = match crate::firmware::fetch(&tree, &store, &uri, tls).await {
                // E.9: no separate verification step here (no signature
                // in the package format), so downloaded is delivered.
                Ok(_) => {
                    state(&tree, instance, DELIVERED, R_DELIVERED);
                    return;
                }
                Err(Failure::NoSpace) => R_NO_SPACE,
                Err(Failure::ConnectionLost) => R_CONNECTION_LOST,
                Err(Failure::InvalidUri | Failure::Unsupported) => R_INVALID_URI,
            };
            state(&tree, instance, INITIAL, result);
        }
        Operation::Install => {
            set(
                &tree,
                instance,
                &[(software::STATUS, Value::String("Installing".into()))],
            );
            let outcome = match store.image() {
                None => Err("no package".to_owned()),
                Some(package) => run(&command, "install", package.as_os_str()).await,
            };
            match outcome {
                Ok(stdout) => {
                    // "NAME VERSION" from the program, else the package's
                    // file name in the URI.
                    let mut words = stdout.lines().next().unwrap_or("").split_whitespace();
                    let uri = text(&tree, instance, PACKAGE_URI);
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
                        &tree,
                        instance,
                        &[
                            (PKGNAME, Value::String(name)),
                            (PKGVERSION, Value::String(version)),
                            (UPDATE_STATE, Value::Integer(INSTALLED)),
                            (UPDATE_RESULT, Value::Integer(R_INSTALLED)),
                            (ACTIVATION_STATE, Value::Boolean(false)),
                            (software::STATUS, Value::String("Installed".into())),
                        ],
                    );
                }
                Err(e) => {
                    warn!(instance = instance.0, "software install failed: {e}");
                    set(
                        &tree,
                        instance,
                        &[
                            (UPDATE_STATE, Value::Integer(DELIVERED)),
                            (UPDATE_RESULT, Value::Integer(R_INSTALL_FAILED)),
                            (software::STATUS, Value::String("Uninstalled".into())),
                        ],
                    );
                }
            }
        }
        Operation::Uninstall => {
            let name = text(&tree, instance, PKGNAME);
            set(
                &tree,
                instance,
                &[(software::STATUS, Value::String("Uninstalling".into()))],
            );
            match run(&command, "uninstall", name.as_ref()).await {
                Ok(_) => {
                    info!(instance = instance.0, name, "software package uninstalled");
                    store.discard();
                    set(
                        &tree,
                        instance,
                        &[
                            (UPDATE_STATE, Value::Integer(INITIAL)),
                            (UPDATE_RESULT, Value::Integer(R_INITIAL)),
                            (ACTIVATION_STATE, Value::Boolean(false)),
                            (software::STATUS, Value::String("Uninstalled".into())),
                        ],
                    );
                }
                Err(e) => {
                    warn!(instance = instance.0, "software uninstall failed: {e}");
                    set(
                        &tree,
                        instance,
                        &[
                            (UPDATE_RESULT, Value::Integer(R_UNINSTALL_FAILED)),
                            (software::STATUS, Value::String("Installed".into())),
                        ],
                    );
                }
            }
        }
        Operation::Activate | Operation::Deactivate => {
            let activate = operation == Operation::Activate;
            let name = text(&tree, instance, PKGNAME);
            let verb = if activate { "activate" } else { "deactivate" };
            match run(&command, verb, name.as_ref()).await {
                Ok(_) => set(
                    &tree,
                    instance,
                    &[(ACTIVATION_STATE, Value::Boolean(activate))],
                ),
                // The state stays as it was: the program said no.
                Err(e) => warn!(instance = instance.0, "software {verb} failed: {e}"),
            }
        }
    }
}

/// Runs `PROGRAM VERB ARGUMENT`; its stdout on success.
async fn run(
    command: &Option<Vec<String>>,
    verb: &str,
    argument: &std::ffi::OsStr,
) -> Result<String, String> {
    let Some((program, arguments)) = command.as_deref().and_then(<[String]>::split_first) else {
        return Err("no software command is configured ([software] command)".into());
    };
    let output = tokio::process::Command::new(program)
        .args(arguments)
        .arg(verb)
        .arg(argument)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
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
