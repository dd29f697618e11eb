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
/// applied.
pub(super) struct Firmware {
    /// `Device.DeviceInfo.FirmwareImage.2.Download()`.
    command: String,
    activate: bool,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The pull asked for; `begun` once the pipeline said Downloading (a
    /// Downloaded before that is an earlier image's).
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

impl Firmware {
    /// A Download(): the pull is asked for already.
    pub(super) fn download(command: String, activate: bool) -> Firmware {
        Firmware {
            command,
            activate,
            phase: Phase::Fetching { begun: false },
        }
    }

    /// An Activate(): the update is asked for already.
    pub(super) fn activate(command: String) -> Firmware {
        Firmware {
            command,
            activate: true,
            phase: Phase::Applying { begun: false },
        }
    }

    /// The pipeline's state now, as this command's end, if it is one;
    /// an AutoActivate download moves on to the update here.
    fn look(&mut self, tree: &mut Tree) -> Option<Result<(), UspError>> {
        let (state, result) = dm_objects::firmware::status(tree);
        let failed = |result: i64| {
            Some(Err(UspError::new(
                if result == update_result::CANCELLED {
                    Code::COMMAND_CANCELED
                } else {
                    Code::COMMAND_FAILURE
                },
                format!("the firmware pipeline ended with Update Result {result} (LwM2M /5/0/5)"),
            )))
        };
        if state == IDLE && result != update_result::INITIAL && result != update_result::SUCCESS {
            return failed(result);
        }
        match &mut self.phase {
            Phase::Fetching { begun } => {
                *begun |= state == DOWNLOADING;
                if !*begun || state != DOWNLOADED {
                    return None;
                }
                if !self.activate {
                    return Some(Ok(()));
                }
                if let Err(e) = dm_objects::firmware::execute(tree, super::CONTROLLER, true) {
                    return Some(Err(UspError::new(
                        Code::COMMAND_FAILURE,
                        format!("the downloaded image cannot be applied: {e}"),
                    )));
                }
                self.phase = Phase::Applying { begun: false };
                None
            }
            Phase::Applying { begun } => {
                *begun |= state == UPDATING;
                match (state, result) {
                    (IDLE, update_result::SUCCESS) if *begun => Some(Ok(())),
                    (DOWNLOADED, r) if *begun && r != update_result::INITIAL => failed(r),
                    _ => None,
                }
            }
        }
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
            .then(|| f.look(tree))
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
            Task::Firmware(f) => f.look(tree).map(End::Firmware),
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
