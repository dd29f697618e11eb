//! The CWMP session engine (TR-069 Amendment 6 §3.7): sans-IO.
//!
//! Design note. The engine decides *when* a session starts (boot, periodic
//! timer, scheduled inform, connection request, active value change,
//! retry), *what* each HTTP POST carries (Inform, the CPE's own requests,
//! responses to the ACS's requests, the empty POST) and *what to do* with
//! each HTTP response. It never opens a socket or reads a clock: the
//! driver calls, in this order,
//!
//! - `handle_*` with what happened (a timer fired, a response arrived, a
//!   transport error, a change on the tree, a connection request) and the
//!   current `Instant` and wall-clock Unix time;
//! - [`Engine::poll_transmit`] for the next POST body to send, if any;
//! - [`Engine::poll_event`] for things the driver must act on (a reboot
//!   after the session, a session result);
//! - [`Engine::poll_timeout`] for when to call `handle_timeout` next.
//!
//! HTTP authentication, cookies and keep-alive are the driver's: the engine
//! sees the final response of each POST. State that must survive a restart
//! or kill -9 (undelivered events and their CommandKeys, changed
//! parameters, the retry count, a requested reboot) is written to the
//! tree's pending state under [`STATE_KEY`] before it matters.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use dm_core::catalog::{device, management_server};
use dm_core::{
    Change, ChangeKind, InstanceId, Notification, Origin, Path, ResourceValue, Tree, Value,
};
use serde::{Deserialize, Serialize};

use crate::mapping::{ActiveNotify, Resolver};
use crate::rpc;
use crate::soap::{
    self, AcsEnvelope, AcsMessage, AcsRequest, AcsResponse, AttributeChange, CwmpVersion,
    DecodeError, DeviceId, Encoder, Event, FaultCode, ParameterValue,
};
use crate::values;

mod dispatch;
mod event_code;
mod events;
mod exchange;
mod timers;
mod transfers;

pub use event_code::EventCode;
pub use transfers::{du_uuid, is_uuid};

use events::*;
use timers::*;

/// Why a local request for a session (`dmagent inform`, `kick`,
/// `request-download`) was not queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error(
        "{0:?} is not an event a local request may send; use one of \"1 BOOT\", \"2 PERIODIC\", \"3 SCHEDULED\", \"4 VALUE CHANGE\", \"6 CONNECTION REQUEST\", \"8 DIAGNOSTICS COMPLETE\" or \"X <OUI> <name>\""
    )]
    UnknownEvent(String),
    #[error("too many requests for the ACS are waiting")]
    QueueFull,
    #[error(transparent)]
    Kick(#[from] soap::KickTooLong),
}

/// The most EventStructs one Inform may carry (cwmp-1-4.xsd).
const MAX_EVENTS: usize = 64;

/// How many "M …" events may wait: the rest of [`MAX_EVENTS`] is kept for
/// the single events (there are fewer than 16 codes of them).
const MAX_MULTIPLE_EVENTS: usize = MAX_EVENTS - 16;

/// Pending-state key of the engine's durable state.
pub const STATE_KEY: &str = "cwmp.session";

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// A session began (the Inform is the next transmit).
    SessionStarted { events: Vec<String> },
    /// The session ended; `ok` false means it failed and a retry is
    /// scheduled, and `error` says why (an HTTP status, a SOAP fault, a
    /// transport error) for the log and the status.
    SessionEnded { ok: bool, error: Option<String> },
    /// An ACS request was answered (the answer is the next POST): the
    /// RPC, how many parameters it named and the answer listed, and the
    /// fault code when it was refused.
    Served {
        rpc: &'static str,
        asked: usize,
        answered: usize,
        fault: Option<u32>,
    },
    /// Reboot now: the session that asked for it has ended and the
    /// request is saved ("M Reboot" follows the next boot).
    Reboot,
    /// Factory reset now (the session that asked has ended).
    FactoryReset,
    /// The ACS refused a report it need not take (AutonomousTransferComplete
    /// answered with a Fault): dropped, for the log.
    ReportRefused { what: String },
    /// The ACS's answer to our GetRPCMethods: the methods it serves.
    AcsMethods { methods: Vec<String> },
    /// The ACS's answer to a Kicked: the page to go to next; `None` when
    /// the ACS refused it (then it is not sent again).
    Kicked {
        kick: soap::Kick,
        next_url: Option<String>,
    },
}

/// Durable state, kept as JSON in the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Durable {
    /// Undelivered events: (code, command key), in order.
    events: Vec<(EventCode, String)>,
    /// ScheduleInform requests not yet due: (Unix time, command key).
    scheduled: Vec<(i64, String)>,
    /// TR-181 names of changed parameters to report.
    changed: BTreeSet<String>,
    retry_count: u32,
    /// The ACS URL the last BOOTSTRAP was delivered to.
    bootstrapped_url: Option<String>,
    /// CommandKey of a Reboot the ACS asked for, until it is reported.
    reboot_command_key: Option<String>,
    /// Downloads accepted and not finished, in order.
    #[serde(default)]
    transfers: Vec<QueuedDownload>,
    /// Finished transfers whose TransferComplete the ACS has not yet
    /// acknowledged.
    #[serde(default)]
    completed: Vec<TransferResult>,
    /// Partial paths (`Device.Hosts.Host.`) the ACS set a notification
    /// level on: instances created under them later get that level, and
    /// their parameters are reported as changed.
    #[serde(default)]
    table_notifications: std::collections::BTreeMap<String, u8>,
    /// Requests of our own for the ACS (GetRPCMethods, RequestDownload),
    /// sent after the reports in the next session.
    #[serde(default)]
    cpe_requests: Vec<CpeRequest>,
    /// ChangeDUState requests accepted and not yet reported, in order.
    #[serde(default)]
    du_changes: Vec<DuChange>,
    /// The DiagnosticsState parameters the ACS set to Requested whose test
    /// has not ended yet: its end is reported with "8 DIAGNOSTICS
    /// COMPLETE" (TR-069 §3.7.1.5, Table 7), a test the ACS did not ask
    /// for is not.
    #[serde(default)]
    diagnostics: BTreeSet<String>,
    /// Finished ChangeDUState requests whose DUStateChangeComplete the ACS
    /// has not acknowledged.
    #[serde(default)]
    du_completed: Vec<DuCompleted>,
}

/// A ChangeDUState the ACS asked for (TR-069 §A.4.1.10), durable until
/// reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuChange {
    pub command_key: String,
    pub operations: Vec<soap::DuOperation>,
    /// Handed to the driver.
    pub started: bool,
}

/// A finished ChangeDUState, for DUStateChangeComplete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuCompleted {
    pub command_key: String,
    pub results: Vec<soap::DuResult>,
}

/// A request the CPE makes of the ACS (TR-069 §A.3.1, §A.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpeRequest {
    GetRpcMethods,
    RequestDownload {
        file_type: String,
        args: Vec<(String, String)>,
    },
    Kicked(soap::Kick),
}

/// The most CPE requests queued at once.
const MAX_CPE_REQUESTS: usize = 8;

/// The most ChangeDUState requests queued at once.
const MAX_DU_CHANGES: usize = 8;

/// A Download the ACS asked for (TR-069 §A.3.2.8), durable until it has
/// been reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedDownload {
    pub command_key: String,
    pub file_type: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub file_size: u64,
    pub target_file_name: String,
    /// Unix time it may start.
    pub due: i64,
    /// Handed to the driver (in progress).
    pub started: bool,
    /// An Upload (TR-069 §A.4.1.5) rather than a Download.
    #[serde(default)]
    pub upload: bool,
    /// A ScheduleDownload (TR-069 §A.4.1.8): reported as "M
    /// ScheduleDownload", and failed with 9020 when its last window ends
    /// before it could run.
    #[serde(default)]
    pub scheduled: bool,
    /// Unix time the last time window ends.
    #[serde(default)]
    pub deadline: Option<i64>,
    /// Installed into the inactive slot (A/B); the device reboots into it.
    /// Holds the software version it must replace: the next start reports
    /// success only if Device.DeviceInfo.SoftwareVersion differs.
    #[serde(default)]
    pub awaiting_reboot: Option<String>,
}

/// How a transfer ended, for TransferComplete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferResult {
    pub command_key: String,
    /// 0 for success, else a 9010–9019 fault.
    pub fault_code: u32,
    pub fault_string: String,
    /// Unix times.
    pub start: i64,
    pub complete: i64,
    /// An Upload's result ("M Upload" rather than "M Download").
    #[serde(default)]
    pub upload: bool,
    /// A ScheduleDownload's result ("M ScheduleDownload").
    #[serde(default)]
    pub scheduled: bool,
    /// A transfer the ACS did not ask for (an LwM2M server's firmware
    /// update, say): reported with AutonomousTransferComplete and
    /// "10 AUTONOMOUS TRANSFER COMPLETE" (TR-069 §A.3.3.3).
    #[serde(default)]
    pub autonomous: Option<AutonomousTransfer>,
}

/// What AutonomousTransferComplete says besides the outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutonomousTransfer {
    pub announce_url: String,
    pub transfer_url: String,
    pub is_download: bool,
    pub file_type: String,
    pub file_size: u64,
    pub target_file_name: String,
}

/// The file transfer protocols of Download, Upload and ChangeDUState
/// (TR-069 §3.6: HTTP, HTTPS and FTP).
const TRANSFER_SCHEMES: [&str; 3] = ["http://", "https://", "ftp://"];

/// The most downloads queued at once (TR-069 lets a CPE refuse more
/// with 9004).
const MAX_TRANSFERS: usize = 16;

/// The file types this device downloads (TR-069 §A.3.2.8): firmware,
/// and a configuration file (`rpc::configuration_file`) to restore.
pub const FIRMWARE_IMAGE: &str = "1 Firmware Upgrade Image";
pub const CONFIGURATION_DOWNLOAD: &str = "3 Vendor Configuration File";

/// The file types this device uploads (TR-069 §A.4.1.5): its
/// configuration (`rpc::configuration_file`) and its system log.
pub const CONFIGURATION_UPLOAD: &str = "1 Vendor Configuration File";
pub const VENDOR_LOG: &str = "2 Vendor Log File";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Inform sent.
    Informing,
    /// A POST with a response or request of ours is out; `empty` when it
    /// was the empty POST.
    Exchanging {
        empty: bool,
    },
    /// Our DUStateChangeComplete is out, waiting for its response.
    CompletingDu,
    /// Our own request (GetRPCMethods, RequestDownload) is out.
    Requesting,
    /// Our TransferComplete is out, waiting for its response.
    Completing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterSession {
    Nothing,
    Reboot,
    FactoryReset,
}

/// Settings the engine reads from the tree at each session start.
#[derive(Clone, Debug)]
struct Settings {
    url: String,
    periodic_enable: bool,
    periodic_interval: u64,
    periodic_time: i64,
    retry_minimum: u64,
    retry_multiplier: u64,
}

/// The session engine.
pub struct Engine {
    durable: Durable,
    phase: Phase,
    version: CwmpVersion,
    /// Events delivered by the Inform in flight, removed on InformResponse.
    in_flight: Vec<(EventCode, String)>,
    /// The event codes this session's Inform carried: a request of ours
    /// goes only in a session that announced it.
    announced: Vec<EventCode>,
    in_flight_changed: BTreeSet<String>,
    /// Parameters of `in_flight_changed` that changed again after the
    /// Inform was built: still to be reported.
    changed_again: BTreeSet<String>,
    hold_requests: bool,
    outbox: VecDeque<soap::Body>,
    events: VecDeque<EngineEvent>,
    after_session: AfterSession,
    /// Start a session as soon as possible.
    wanted: bool,
    next_periodic: Option<Instant>,
    next_retry: Option<Instant>,
    /// The Instant and Unix time of the last call, to turn one into the
    /// other for scheduled informs.
    clock: (Instant, i64),
    inform_id: u64,
    rng: dm_core::support::rng::XorShift64Star,
    /// An ACS request whose answer waits for host writes (a Wi-Fi profile
    /// written to NetworkManager): its ID, which RPC, and the write.
    host: Option<(Option<String>, HostAnswer, rpc::HostRpc)>,
    /// Those writes, until the driver takes them.
    host_work: Option<dm_core::HostWork>,
    /// A GetParameterValues or GetParameterNames whose answer waits for
    /// host reads (a provider's volatile value, a table read on demand):
    /// its ID and the request.
    reading: Option<(Option<String>, AcsRequest)>,
    /// Those reads, until the driver takes them.
    host_reads: Option<dm_core::HostReads>,
    /// The ACS request being answered: its RPC and how many parameters it
    /// named, for [`EngineEvent::Served`].
    serving: Option<(&'static str, usize)>,
}

/// Which write RPC waits for the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostAnswer {
    SetParameterValues,
    AddObject,
    DeleteObject,
}

impl Engine {
    /// Creates the engine at agent start. Restores undelivered events,
    /// adds `1 BOOT` (and `M Reboot` when the ACS asked for the reboot that
    /// preceded this start, `0 BOOTSTRAP` on first contact with the
    /// configured ACS), and asks for a session.
    pub fn new(tree: &mut Tree, now: Instant, wall: i64, seed: u64) -> Engine {
        let durable: Durable = tree
            .pending_state(STATE_KEY)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut engine = Engine {
            durable,
            phase: Phase::Idle,
            version: CwmpVersion::LATEST,
            in_flight: Vec::new(),
            announced: Vec::new(),
            in_flight_changed: BTreeSet::new(),
            changed_again: BTreeSet::new(),
            hold_requests: false,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            after_session: AfterSession::Nothing,
            wanted: true,
            next_periodic: None,
            next_retry: None,
            clock: (now, wall),
            inform_id: 0,
            rng: dm_core::support::rng::XorShift64Star::new(seed),
            host: None,
            host_work: None,
            reading: None,
            serving: None,
            host_reads: None,
        };
        let url = settings(tree).url;
        if engine.durable.bootstrapped_url.as_deref() != Some(url.as_str()) {
            engine.add_event(EventCode::Bootstrap, "");
        }
        engine.add_event(EventCode::Boot, "");
        if let Some(key) = engine.durable.reboot_command_key.take() {
            engine.add_event(EventCode::MReboot, &key);
        }
        // A transfer in progress when the agent stopped did not finish:
        // it is reported as failed, never silently dropped.
        let running = match tree.read(
            Origin::Agent,
            &Path::resource(device::ID, InstanceId(0), device::FIRMWARE_VERSION),
        ) {
            Ok(ResourceValue::Single(Value::String(v))) => v,
            _ => String::new(),
        };
        for transfer in std::mem::take(&mut engine.durable.transfers) {
            if let (true, Some(before)) = (transfer.started, &transfer.awaiting_reboot) {
                // TR-069 §A.3.2.8: a download applied across a reboot is
                // reported in the first session after it, with 1 BOOT.
                let (fault_code, fault_string) = if *before != running {
                    (0, String::new())
                } else {
                    (
                        FaultCode::DownloadFailure.code(),
                        format!(
                            "Download failure: the device came back with {running}, \
                             the version the image was to replace"
                        ),
                    )
                };
                engine.durable.completed.push(TransferResult {
                    command_key: transfer.command_key,
                    fault_code,
                    fault_string,
                    start: transfer.due,
                    complete: wall,
                    upload: false,
                    scheduled: transfer.scheduled,
                    autonomous: None,
                });
            } else if transfer.started {
                let (code, what) = if transfer.upload {
                    (FaultCode::UploadFailure, "Upload")
                } else {
                    (FaultCode::DownloadFailure, "Download")
                };
                engine.durable.completed.push(TransferResult {
                    command_key: transfer.command_key,
                    fault_code: code.code(),
                    fault_string: format!("{what} failure: interrupted by a restart"),
                    start: wall,
                    complete: wall,
                    upload: transfer.upload,
                    scheduled: transfer.scheduled,
                    autonomous: None,
                });
            } else {
                engine.durable.transfers.push(transfer);
            }
        }
        // A ChangeDUState running when the agent stopped did not finish:
        // each operation is reported failed (9001), never dropped.
        for change in std::mem::take(&mut engine.durable.du_changes) {
            if change.started {
                let results = change
                    .operations
                    .iter()
                    .map(|op| soap::DuResult {
                        uuid: du_uuid(op).to_owned(),
                        current_state: "Failed".into(),
                        start: wall,
                        complete: wall,
                        fault_code: FaultCode::RequestDenied.code(),
                        fault_string: "interrupted by a restart".into(),
                        ..soap::DuResult::default()
                    })
                    .collect();
                engine.durable.du_completed.push(DuCompleted {
                    command_key: change.command_key,
                    results,
                });
            } else {
                engine.durable.du_changes.push(change);
            }
        }
        engine.save(tree);
        engine.schedule_periodic(tree, now, wall);
        engine
    }

    /// The next POST body. An empty body is the empty POST.
    pub fn poll_transmit(&mut self) -> Option<soap::Body> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timeout(true)
    }

    /// [`Engine::poll_timeout`] leaving out queued transfers: for a driver
    /// that is busy with one and polls for the next when it is done.
    pub fn poll_session_timeout(&self) -> Option<Instant> {
        self.timeout(false)
    }

    /// Whether a session is open.
    pub fn in_session(&self) -> bool {
        self.phase != Phase::Idle
    }

    fn save(&self, tree: &mut Tree) {
        if let Ok(text) = serde_json::to_string(&self.durable)
            && tree.pending_state(STATE_KEY) != Some(text.as_str())
        {
            // A failed save leaves the previous durable state; the next
            // save writes the whole state again.
            let _ = tree.set_pending_state(STATE_KEY, Some(text));
        }
    }

    /// Enough to spread retries across devices.
    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// The RPCs answered for real, for GetRPCMethodsResponse.
pub const SUPPORTED: &[&str] = &[
    "GetRPCMethods",
    "SetParameterValues",
    "GetParameterValues",
    "GetParameterNames",
    "SetParameterAttributes",
    "GetParameterAttributes",
    "AddObject",
    "DeleteObject",
    "Reboot",
    "FactoryReset",
    "ScheduleInform",
    "Download",
    "ScheduleDownload",
    "Upload",
    "CancelTransfer",
    "GetQueuedTransfers",
    "GetAllQueuedTransfers",
    "ChangeDUState",
];

/// TR-069 §3.2.1.1: the wait before retry `n` (n ≥ 1) is drawn from
/// [m·(k/1000)^(n−1), m·(k/1000)^n) seconds, with n capped at 10.
pub fn retry_wait(minimum: u64, multiplier: u64, retry: u32, random: u64) -> Duration {
    let n = retry.clamp(1, 10) as i32;
    let k = multiplier.max(1000) as f64 / 1000.0;
    let m = minimum.max(1) as f64;
    let low = m * k.powi(n - 1);
    let high = m * k.powi(n);
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    // The ACS may set m and k up to 65535 each: the product can exceed
    // any sensible wait (and Duration's range). Cap at MAX_RETRY_WAIT.
    let seconds = (low + (high - low) * fraction).min(MAX_RETRY_WAIT.as_secs_f64());
    Duration::try_from_secs_f64(seconds).unwrap_or(MAX_RETRY_WAIT)
}

/// The longest wait between session retries: a week.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

fn ms(resource: dm_core::ResourceId) -> Path {
    Path::resource(management_server::ID, InstanceId(0), resource)
}
