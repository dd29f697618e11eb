//! What carries out an asynchronous command a controller started, and how
//! its end is seen on the tree's change stream: a TR-143 test (its
//! object's DiagnosticsState, `dm_usp::commands`), or the firmware
//! pipeline (LwM2M /5's State and Update Result, which the agent's pull
//! and update program move, whoever asked: an LwM2M server, the CLI, a
//! controller), or the package program (a deployment unit's operation,
//! CWMP ChangeDUState's handler; its end comes back from that task, not
//! from the change stream).

use dm_core::enums::firmware::{DOWNLOADED, DOWNLOADING, IDLE, UPDATING, result as update_result};
use dm_core::{Change, Origin, Tree};
use dm_usp::proto::usp::notify::OperationComplete;
use dm_usp::{Code, UspError};

/// A running command's carrier.
pub(super) enum Task {
    Test(&'static dm_usp::commands::AsyncCommand),
    Firmware(Firmware),
    /// A deployment unit's Install, Update or Uninstall (its path).
    Software(String),
}

/// How a running command is stopped.
pub(super) enum Stop {
    /// Its test's writes (DiagnosticsState Canceled), as the controller.
    Writes(Vec<dm_cwmp::soap::ParameterValueIn>),
    /// The firmware pipeline's Cancel.
    Firmware,
    /// It cannot be (the package program runs to its end).
    Cannot,
}

/// A firmware image fetched, then (with AutoActivate, or for Activate())
/// applied. Its course is read from the State values the pipeline commits
/// (the change stream's, one by one, not the tree's state when the
/// serving task looks: a fast download would pass Downloading unseen),
/// after the command's own writes; the pipeline is the command's while it
/// runs (the driver starts none while it is busy, and another client's
/// Package URI supersedes it).
pub(super) struct Firmware {
    /// `Device.DeviceInfo.FirmwareImage.2.Download()`.
    command: String,
    /// The URL a Download() asked for.
    uri: Option<String>,
    activate: bool,
    phase: Phase,
    /// Kept for the Boot! after the reboot an update may cause.
    command_key: String,
}

/// While a controller's firmware command has the update program run, the
/// cause a reboot would have: Boot! then says RemoteFWUpdate with its
/// command key. Set only where no other cause waits (a Reboot() asked
/// meanwhile keeps its own); cleared, when the command ends without a
/// reboot, only if it is still this command's.
pub(super) fn remote_update(tree: &mut Tree, command_key: &str, on: bool) {
    let held: Option<serde_json::Value> = tree
        .pending_state(super::BOOT_KEY)
        .and_then(|text| serde_json::from_str(text).ok());
    let ours = held
        .as_ref()
        .is_some_and(|v| v["cause"] == "RemoteFWUpdate" && v["command_key"] == command_key);
    let left = match (on, held.is_some()) {
        (true, false) => Some(
            serde_json::json!({"cause": "RemoteFWUpdate", "command_key": command_key}).to_string(),
        ),
        (false, true) if ours => None,
        _ => return,
    };
    if let Err(e) = tree.set_pending_state(super::BOOT_KEY, left) {
        tracing::warn!("USP: a firmware update's cause is not kept: {e}");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The pull asked for; `begun` once the pipeline said Downloading.
    Fetching { begun: bool },
    /// The update program asked for; `begun` once it said Updating.
    Applying { begun: bool },
}

/// How a command ended.
pub(super) enum End {
    /// The test's DiagnosticsState.
    Test(String),
    Firmware(Result<(), UspError>),
}

/// The failure of a firmware command, with the Update Result that says
/// why (a cancel is 7023).
fn firmware_failed(result: i64) -> Result<(), UspError> {
    Err(UspError::new(
        if result == update_result::CANCELLED {
            Code::COMMAND_CANCELED
        } else {
            Code::COMMAND_FAILURE
        },
        format!("the firmware pipeline ended with Update Result {result} (LwM2M /5/0/5)"),
    ))
}

impl Firmware {
    /// A Download() of `uri`: the pull is asked for already.
    pub(super) fn download(
        command: String,
        uri: String,
        activate: bool,
        command_key: String,
    ) -> Firmware {
        Firmware {
            command,
            uri: Some(uri),
            activate,
            phase: Phase::Fetching { begun: false },
            command_key,
        }
    }

    /// An Activate(): the update is asked for already.
    pub(super) fn activate(command: String, command_key: String) -> Firmware {
        Firmware {
            command,
            uri: None,
            activate: true,
            phase: Phase::Applying { begun: false },
            command_key,
        }
    }

    /// Its end, if it came: the cause a reboot would have had is dropped.
    fn ended(
        &self,
        tree: &mut Tree,
        end: Option<Result<(), UspError>>,
    ) -> Option<Result<(), UspError>> {
        if end.is_some() {
            remote_update(tree, &self.command_key, false);
        }
        end
    }

    /// One change of /5 committed after the command's writes: its end, if
    /// this is it. An AutoActivate download moves on to the update here.
    fn step(&mut self, tree: &mut Tree, change: &Change) -> Option<Result<(), UspError>> {
        use dm_core::catalog::firmware::{PACKAGE_URI, STATE};
        use dm_core::{ChangeKind, ResourceValue, Value};
        let ChangeKind::Value(ResourceValue::Single(value)) = &change.kind else {
            return None;
        };
        match (change.path.resource_id()?, value) {
            // Another client asked for another image before the update
            // began: this one is gone (once Updating, the program runs on).
            (PACKAGE_URI, Value::String(uri))
                if change.origin != super::CONTROLLER
                    && self.uri.as_ref() != Some(uri)
                    && !matches!(self.phase, Phase::Applying { begun: true }) =>
            {
                let end = Some(Err(UspError::new(
                    Code::COMMAND_FAILURE,
                    format!(
                        "superseded: {} asked the firmware pipeline for another image",
                        change.origin
                    ),
                )));
                self.ended(tree, end)
            }
            (STATE, Value::Integer(state)) => {
                let (_, result) = dm_objects::firmware::status(tree);
                let end = self.state(tree, *state, result);
                self.ended(tree, end)
            }
            _ => None,
        }
    }

    /// The pipeline reached `state` (with `result`). Idle with a failure
    /// ends it whenever it comes (the Update Result was reset when the
    /// command asked: a failure is this one's); Downloaded and Idle with
    /// success count once the pipeline began this command's work.
    fn state(&mut self, tree: &mut Tree, state: i64, result: i64) -> Option<Result<(), UspError>> {
        let failure = result != update_result::INITIAL && result != update_result::SUCCESS;
        if state == IDLE && failure {
            return Some(firmware_failed(result));
        }
        match &mut self.phase {
            Phase::Fetching { begun } => match state {
                DOWNLOADING => {
                    *begun = true;
                    None
                }
                // Back to Idle once begun: the pull was reset.
                IDLE if *begun => Some(firmware_failed(result)),
                DOWNLOADED if *begun && !self.activate => Some(Ok(())),
                DOWNLOADED if *begun => {
                    if let Err(e) = dm_objects::firmware::execute(tree, super::CONTROLLER, true) {
                        return Some(Err(UspError::new(
                            Code::COMMAND_FAILURE,
                            format!("the downloaded image cannot be applied: {e}"),
                        )));
                    }
                    remote_update(tree, &self.command_key, true);
                    self.phase = Phase::Applying { begun: false };
                    None
                }
                _ => None,
            },
            Phase::Applying { begun } => match state {
                UPDATING => {
                    *begun = true;
                    None
                }
                IDLE if *begun && result == update_result::SUCCESS => Some(Ok(())),
                // Downloaded again (the program failed) or Idle otherwise.
                IDLE | DOWNLOADED if *begun => Some(firmware_failed(result)),
                _ => None,
            },
        }
    }

    /// After missed changes: its end from the pipeline's state now (a
    /// Downloaded before this command began is an earlier image's, and
    /// waits).
    fn settle(&mut self, tree: &mut Tree) -> Option<Result<(), UspError>> {
        let (state, result) = dm_objects::firmware::status(tree);
        let end = self.state(tree, state, result);
        self.ended(tree, end)
    }
}

impl Task {
    /// The command's path (`Device.IP.Diagnostics.IPPing()`).
    pub(super) fn command(&self) -> &str {
        match self {
            Task::Test(test) => test.command,
            Task::Firmware(f) => &f.command,
            Task::Software(command) => command,
        }
    }

    /// The command's end, if `change` (committed after `started`) is it.
    pub(super) fn observe(
        &mut self,
        tree: &mut Tree,
        change: &Change,
        started: u64,
    ) -> Option<End> {
        match self {
            Task::Test(test) => test.ended_by(change, started).map(End::Test),
            Task::Firmware(f) => (change.sequence > started
                && dm_objects::firmware::concerns(change))
            .then(|| f.step(tree, change))
            .flatten()
            .map(End::Firmware),
            Task::Software(_) => None,
        }
    }

    /// The command's end from the tree's state now (after missed
    /// changes), if it came.
    pub(super) fn settled(&mut self, tree: &mut Tree) -> Option<End> {
        match self {
            Task::Test(test) => test.state(tree).filter(|s| s != "Requested").map(End::Test),
            Task::Firmware(f) => f.settle(tree).map(End::Firmware),
            Task::Software(_) => None,
        }
    }

    /// Its OperationComplete, outputs read as `reader`.
    pub(super) fn complete(
        &self,
        tree: &Tree,
        reader: Origin,
        command_key: &str,
        end: End,
    ) -> OperationComplete {
        match (self, end) {
            (Task::Test(test), End::Test(state)) => {
                test.complete(tree, reader, command_key, &state)
            }
            (_, End::Firmware(outcome)) => {
                dm_usp::commands::finished(self.command(), command_key, outcome)
            }
            (_, End::Test(state)) => dm_usp::commands::finished(
                self.command(),
                command_key,
                Err(UspError::new(Code::COMMAND_FAILURE, state)),
            ),
        }
    }

    /// Whether it is a firmware command (one at a time: the pipeline is
    /// the command's while it runs).
    pub(super) fn is_firmware(&self) -> bool {
        matches!(self, Task::Firmware(_))
    }

    /// Whether its test still runs in the tree (DiagnosticsState
    /// Requested): a test that ended, its end not yet taken from the change
    /// stream, is not canceled after the fact.
    pub(super) fn still_running(&self, tree: &Tree) -> bool {
        match self {
            Task::Test(test) => test.state(tree).as_deref() == Some("Requested"),
            Task::Firmware(_) | Task::Software(_) => true,
        }
    }

    /// How to stop it: a test as TR-181 stops one (DiagnosticsState
    /// Canceled, written as the controller; host writes, so the caller
    /// makes them), the firmware pipeline with /5 Cancel.
    pub(super) fn stop(&self) -> Stop {
        match self {
            Task::Test(test) => Stop::Writes(vec![dm_cwmp::soap::ParameterValueIn {
                name: format!("{}DiagnosticsState", test.object),
                value: "Canceled".into(),
                xsd_type: None,
            }]),
            Task::Firmware(_) => Stop::Firmware,
            Task::Software(_) => Stop::Cannot,
        }
    }
}
