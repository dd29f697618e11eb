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

use crate::mapping::{ActiveNotify, PARAMETERS, Resolver};
use crate::rpc;
use crate::soap::{
    self, AcsEnvelope, AcsMessage, AcsRequest, AcsResponse, AttributeChange, CwmpVersion,
    DecodeError, DeviceId, Encoder, Event, FaultCode, ParameterValue,
};
use crate::values;

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
    /// scheduled.
    SessionEnded { ok: bool },
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
    events: Vec<(String, String)>,
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

/// The UUID an operation names, for its result. An Install may leave the
/// choice to the CPE; one that failed before choosing reports the nil UUID
/// (OpResultStruct requires one).
pub fn du_uuid(op: &soap::DuOperation) -> &str {
    match op {
        soap::DuOperation::Install { uuid, .. }
        | soap::DuOperation::Update { uuid, .. }
        | soap::DuOperation::Uninstall { uuid, .. }
            if !uuid.is_empty() =>
        {
            uuid
        }
        _ => "00000000-0000-0000-0000-000000000000",
    }
}

/// 8-4-4-4-12 hexadecimal digits (TR-069 DeploymentUnitUUID).
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn transfer_event(result: &TransferResult) -> &'static str {
    if result.autonomous.is_some() {
        return AUTONOMOUS;
    }
    match (result.upload, result.scheduled) {
        (true, _) => "M Upload",
        (false, true) => "M ScheduleDownload",
        (false, false) => "M Download",
    }
}

const AUTONOMOUS: &str = "10 AUTONOMOUS TRANSFER COMPLETE";

/// Events that are reported once whatever their count (TR-069 Table 7:
/// single) as opposed to the `M` events, one per CommandKey.
fn single(code: &str) -> bool {
    !code.starts_with("M ")
}

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
    in_flight: Vec<(String, String)>,
    /// The event codes this session's Inform carried: a request of ours
    /// goes only in a session that announced it.
    announced: Vec<String>,
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
    rng: u64,
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
            rng: seed | 1,
        };
        let url = settings(tree).url;
        if engine.durable.bootstrapped_url.as_deref() != Some(url.as_str()) {
            engine.add_event("0 BOOTSTRAP", "");
        }
        engine.add_event("1 BOOT", "");
        if let Some(key) = engine.durable.reboot_command_key.take() {
            engine.add_event("M Reboot", &key);
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
                        fault_code: 9001,
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

    /// A connection request was accepted (TR-069 §3.2.2).
    /// A session asked for locally (the agent's control API, as icwmp's
    /// `ubus call tr069 inform`): `event` is the EventCode to report, a
    /// standard single one ("2 PERIODIC", "6 CONNECTION REQUEST", ...) or
    /// a vendor one ("X OUI name", TR-069 §3.7.1.5).
    pub fn request_session(&mut self, tree: &mut Tree, event: &str) -> Result<(), String> {
        // icwmp's `inform GetRPCMethods`: a session that asks the ACS
        // which methods it serves, with a vendor event that says why (no
        // standard event does).
        if event == "GetRPCMethods" {
            return self.queue_request(tree, CpeRequest::GetRpcMethods);
        }
        let known = [
            "1 BOOT",
            "2 PERIODIC",
            "3 SCHEDULED",
            "4 VALUE CHANGE",
            "6 CONNECTION REQUEST",
            "8 DIAGNOSTICS COMPLETE",
        ];
        let vendor = event.starts_with("X ") && event.split(' ').count() >= 3;
        if !known.contains(&event) && !vendor {
            return Err(format!(
                "{event:?} is not an event a local request may send; use one of {known:?} or \"X <OUI> <name>\""
            ));
        }
        self.add_event(event, "");
        self.save(tree);
        self.wanted = true;
        Ok(())
    }

    /// RequestDownload (TR-069 §A.4.2.1): asks the ACS for a file of
    /// `file_type` in a session with "9 REQUEST DOWNLOAD".
    pub fn request_download(
        &mut self,
        tree: &mut Tree,
        file_type: &str,
        args: Vec<(String, String)>,
    ) -> Result<(), String> {
        let request = CpeRequest::RequestDownload {
            file_type: file_type.to_owned(),
            args,
        };
        self.queue_request(tree, request)
    }

    /// Kicked (TR-069 §A.4.2.3), in a session with "5 KICKED"; the ACS's
    /// NextURL comes back as [`EngineEvent::Kicked`].
    pub fn kicked(&mut self, tree: &mut Tree, kick: soap::Kick) -> Result<(), String> {
        kick.check()?;
        self.queue_request(tree, CpeRequest::Kicked(kick))
    }

    fn queue_request(&mut self, tree: &mut Tree, request: CpeRequest) -> Result<(), String> {
        if self.durable.cpe_requests.len() >= MAX_CPE_REQUESTS {
            return Err("too many requests for the ACS are waiting".into());
        }
        let event = request_event(tree, &request);
        if !self.durable.cpe_requests.contains(&request) {
            self.durable.cpe_requests.push(request);
        }
        self.add_event(&event, "");
        self.save(tree);
        self.wanted = true;
        Ok(())
    }

    /// A connection request: a session within 30 s (TR-069 §3.2.2), even
    /// while a failed session waits for its retry: the ACS just showed it
    /// is there (the retry count goes on, it is reset only by a session
    /// that succeeds).
    pub fn handle_connection_request(&mut self, tree: &mut Tree) {
        self.add_event("6 CONNECTION REQUEST", "");
        self.save(tree);
        self.wanted = true;
        self.next_retry = None;
    }

    /// A change on the tree. Changes made by the ACS itself are never
    /// reported back (TR-069 §A.3.2.4); others are reported per the
    /// parameter's notification attribute: active starts a session,
    /// passive waits for the next one.
    pub fn handle_change(&mut self, tree: &mut Tree, change: &Change) {
        if change.origin == Origin::Acs {
            return;
        }
        if change.kind == ChangeKind::Created {
            self.handle_created(tree, change);
            return;
        }
        let ChangeKind::Value(value) = &change.kind else {
            return;
        };
        let (Some(resource), Some(instance)) =
            (change.path.resource_id(), change.path.instance_id())
        else {
            return;
        };
        let object = change.path.object_id();
        let level = tree.attributes().notification(&change.path.without_index());
        let mut any = false;
        let mut active = false;
        for map in Resolver::global().parameters_for(object, resource) {
            let level = if map.active_notify == ActiveNotify::ForceEnabled {
                Notification::Active
            } else {
                level
            };
            if level == Notification::Off {
                continue;
            }
            let names: Vec<String> = match value {
                ResourceValue::Single(_) => vec![map.render(instance, change.path.index())],
                ResourceValue::Multiple(values) => values
                    .keys()
                    .map(|i| map.render(instance, Some(*i)))
                    .collect(),
            };
            for name in names {
                if self.in_flight_changed.contains(&name) {
                    self.changed_again.insert(name.clone());
                }
                self.durable.changed.insert(name);
            }
            any = true;
            active |= level == Notification::Active;
        }
        if active {
            self.add_event("4 VALUE CHANGE", "");
            self.wanted = true;
        }
        if any {
            self.save(tree);
        }
    }

    /// SetParameterAttributes on a partial path sets the level of the
    /// parameters there now; it is also kept for instances created later
    /// (a field case from GenieACS users: new Hosts.Host entries were never
    /// reported). Level 0 forgets it.
    fn remember_table_notifications(&mut self, tree: &mut Tree, changes: &[AttributeChange]) {
        let mut any = false;
        for change in changes {
            let (Some(level), true) = (change.notification, change.name.ends_with('.')) else {
                continue;
            };
            any = true;
            if level == 0 {
                self.durable.table_notifications.remove(&change.name);
            } else {
                self.durable
                    .table_notifications
                    .insert(change.name.clone(), level);
            }
        }
        if any {
            self.save(tree);
        }
    }

    /// An instance created by someone other than the ACS, under a partial
    /// path with a notification level: its parameters get that level and
    /// are reported as changed (active: "4 VALUE CHANGE" at once).
    fn handle_created(&mut self, tree: &mut Tree, change: &Change) {
        if self.durable.table_notifications.is_empty() {
            return;
        }
        let object = change.path.object_id();
        let Some(instance) = change.path.instance_id() else {
            return;
        };
        let resources: Vec<_> = match tree.instance(object, instance) {
            Ok(state) => state.resources().collect(),
            Err(_) => return,
        };
        let mut any = false;
        let mut active = false;
        for resource in resources {
            for map in Resolver::global().parameters_for(object, resource) {
                if !map.has_instance() || map.path.contains("{j}") {
                    continue;
                }
                let name = map.render(instance, None);
                let Some(level) = self
                    .durable
                    .table_notifications
                    .iter()
                    .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())
                    .and_then(|(_, level)| Notification::from_level(*level))
                else {
                    continue;
                };
                let path = Path::resource(object, instance, resource);
                let live = matches!(
                    tree.instance(object, instance)
                        .ok()
                        .and_then(|i| i.slot(resource)),
                    Some(dm_core::Slot::Live)
                );
                if !(live && level == Notification::Active)
                    && map.active_notify != ActiveNotify::ForceEnabled
                {
                    let _ = tree.set_notification(Origin::Acs, &path, level);
                }
                self.durable.changed.insert(name);
                any = true;
                active |= level == Notification::Active;
            }
        }
        if active {
            self.add_event("4 VALUE CHANGE", "");
            self.wanted = true;
        }
        if any {
            self.save(tree);
        }
    }

    /// Changes were lost (the change stream overflowed): every parameter
    /// with notification on is reported as changed, the active ones with
    /// "4 VALUE CHANGE". Reporting an unchanged value is better than
    /// missing a change.
    pub fn handle_lost_changes(&mut self, tree: &mut Tree) {
        let notified: Vec<Path> = tree
            .attributes()
            .notified()
            .map(|(path, _)| *path)
            .filter(|path| path.resource_id().is_some())
            .collect();
        for path in notified {
            let Ok(value) = tree.read(Origin::Agent, &path) else {
                continue;
            };
            let change = Change {
                sequence: 0,
                origin: Origin::Agent,
                path,
                kind: ChangeKind::Value(value),
            };
            self.handle_change(tree, &change);
        }
    }

    /// Timers: periodic inform, retries, scheduled informs.
    pub fn handle_timeout(&mut self, tree: &mut Tree, now: Instant, wall: i64) {
        self.clock = (now, wall);
        if self.next_periodic.is_some_and(|t| t <= now) {
            self.add_event("2 PERIODIC", "");
            self.save(tree);
            self.wanted = true;
            self.next_periodic = None;
            self.schedule_periodic(tree, now, wall);
        }
        if self.next_retry.is_some_and(|t| t <= now) {
            self.next_retry = None;
            self.wanted = true;
        }
        let due: Vec<String> = self
            .durable
            .scheduled
            .iter()
            .filter(|(t, _)| *t <= wall)
            .map(|(_, key)| key.clone())
            .collect();
        self.durable.scheduled.retain(|(t, _)| *t > wall);
        if !due.is_empty() {
            self.add_event("3 SCHEDULED", "");
            for key in due {
                self.add_event("M ScheduleInform", &key);
            }
            self.save(tree);
            self.wanted = true;
        }
    }

    /// Starts a session if one is wanted and none is open. `wall` is the
    /// Unix time, for the Inform's CurrentTime.
    pub fn poll_start(&mut self, tree: &mut Tree, wall: i64) {
        if self.phase != Phase::Idle || !self.wanted || self.next_retry.is_some() {
            return;
        }
        let s = settings(tree);
        let enabled = matches!(
            tree.read(Origin::Agent, &ms(management_server::ENABLE_CWMP)),
            Ok(ResourceValue::Single(Value::Boolean(true)))
        );
        if !enabled || s.url.is_empty() {
            return;
        }
        self.wanted = false;
        // TransferComplete may only go in a session whose Inform says
        // "7 TRANSFER COMPLETE" (with its "M Download"): after a session
        // that failed once its Inform was acknowledged, they are back.
        let completed: Vec<(&'static str, String)> = self
            .durable
            .completed
            .iter()
            .map(|c| (transfer_event(c), c.command_key.clone()))
            .collect();
        if completed.iter().any(|(e, _)| *e != AUTONOMOUS) {
            self.add_event("7 TRANSFER COMPLETE", "");
        }
        // Requests of ours still waiting (a session that failed after its
        // Inform was acknowledged took their events with it).
        let requested: Vec<String> = self
            .durable
            .cpe_requests
            .iter()
            .map(|r| request_event(tree, r))
            .collect();
        for event in requested {
            self.add_event(&event, "");
        }
        let du_keys: Vec<String> = self
            .durable
            .du_completed
            .iter()
            .map(|c| c.command_key.clone())
            .collect();
        if !du_keys.is_empty() {
            self.add_event("11 DU STATE CHANGE COMPLETE", "");
            for key in du_keys {
                if !self
                    .durable
                    .events
                    .iter()
                    .any(|(c, k)| c == "M ChangeDUState" && *k == key)
                {
                    self.add_event("M ChangeDUState", &key);
                }
            }
        }
        if !completed.is_empty() {
            for (event, key) in completed {
                if event == AUTONOMOUS {
                    self.add_event(AUTONOMOUS, "");
                    continue;
                }
                if !self
                    .durable
                    .events
                    .iter()
                    .any(|(c, k)| c == event && *k == key)
                {
                    self.add_event(event, &key);
                }
            }
        }
        if self.durable.events.is_empty() {
            // Nothing to report: the retry of a session whose Inform was
            // acknowledged (its events delivered) before it failed. No
            // event code stands for "again", and GenieACS crashes on an
            // Inform with an empty Event list; the ACS reaches us with a
            // connection request if it still wants the device. The retry
            // is over, so is its count.
            if self.durable.retry_count != 0 {
                self.durable.retry_count = 0;
                self.save(tree);
            }
            return;
        }
        self.in_flight = self.durable.events.clone();
        self.announced = self.in_flight.iter().map(|(c, _)| c.clone()).collect();
        self.in_flight_changed = self.durable.changed.clone();
        self.changed_again.clear();
        self.hold_requests = false;
        self.version = CwmpVersion::LATEST;
        self.inform_id += 1;
        let inform = self.inform(tree, wall);
        self.events.push_back(EngineEvent::SessionStarted {
            events: self.in_flight.iter().map(|(c, _)| c.clone()).collect(),
        });
        self.outbox.push_back(inform.into());
        self.phase = Phase::Informing;
    }

    /// The next POST body. An empty body is the empty POST.
    pub fn poll_transmit(&mut self) -> Option<soap::Body> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// The next download that is due (now `wall`), marked as started:
    /// the driver performs it and reports with [`Engine::transfer_complete`].
    pub fn poll_transfer(&mut self, tree: &mut Tree, wall: i64) -> Option<QueuedDownload> {
        // A scheduled download whose windows have all passed fails (9020).
        let expired: Vec<QueuedDownload> = self
            .durable
            .transfers
            .iter()
            .filter(|t| !t.started && t.deadline.is_some_and(|d| d <= wall))
            .cloned()
            .collect();
        for transfer in expired {
            self.durable
                .transfers
                .retain(|t| t.command_key != transfer.command_key || t.started);
            self.transfer_complete(
                tree,
                TransferResult {
                    command_key: transfer.command_key,
                    fault_code: 9020,
                    fault_string: "Download failure: unable to complete download within specified time windows".into(),
                    start: wall,
                    complete: wall,
                    upload: false,
                    scheduled: true,
                    autonomous: None,
                },
            );
        }
        let transfer = self
            .durable
            .transfers
            .iter_mut()
            .find(|t| !t.started && t.due <= wall)?;
        transfer.started = true;
        let transfer = transfer.clone();
        self.save(tree);
        Some(transfer)
    }

    /// A download was installed into the inactive slot and the device is
    /// about to reboot into it: its outcome is decided at the next start,
    /// by the software version then.
    pub fn transfer_awaiting_reboot(&mut self, tree: &mut Tree, command_key: &str, before: String) {
        if let Some(transfer) = self
            .durable
            .transfers
            .iter_mut()
            .find(|t| t.started && t.command_key == command_key)
        {
            transfer.awaiting_reboot = Some(before);
        }
        self.save(tree);
    }

    /// A transfer the ACS did not ask for ended (TR-069 §A.3.3.3): it is
    /// reported with AutonomousTransferComplete in a session whose Inform
    /// says "10 AUTONOMOUS TRANSFER COMPLETE", started now.
    pub fn autonomous_transfer_complete(&mut self, tree: &mut Tree, result: TransferResult) {
        if result.autonomous.is_none() {
            return self.transfer_complete(tree, result);
        }
        self.add_event(AUTONOMOUS, "");
        self.durable.completed.push(result);
        self.save(tree);
        self.wanted = true;
    }

    /// The next ChangeDUState to perform, if one waits and none runs; the
    /// driver performs it and reports with [`Engine::du_change_complete`].
    pub fn poll_du_change(&mut self, tree: &mut Tree) -> Option<DuChange> {
        if self.durable.du_changes.iter().any(|c| c.started) {
            return None;
        }
        let change = self.durable.du_changes.first_mut()?;
        change.started = true;
        let change = change.clone();
        self.save(tree);
        Some(change)
    }

    /// A ChangeDUState finished: DUStateChangeComplete goes out in a new
    /// session with "11 DU STATE CHANGE COMPLETE" and "M ChangeDUState".
    pub fn du_change_complete(
        &mut self,
        tree: &mut Tree,
        command_key: &str,
        results: Vec<soap::DuResult>,
    ) {
        if let Some(i) = self
            .durable
            .du_changes
            .iter()
            .position(|c| c.started && c.command_key == command_key)
        {
            self.durable.du_changes.remove(i);
        }
        self.add_event("11 DU STATE CHANGE COMPLETE", "");
        self.add_event("M ChangeDUState", command_key);
        self.durable.du_completed.push(DuCompleted {
            command_key: command_key.to_owned(),
            results,
        });
        self.save(tree);
        self.wanted = true;
    }

    /// A download ended: its TransferComplete goes out in a new session
    /// with "7 TRANSFER COMPLETE" and "M Download" (TR-069 §A.3.3.2).
    pub fn transfer_complete(&mut self, tree: &mut Tree, result: TransferResult) {
        self.durable
            .transfers
            .retain(|t| t.command_key != result.command_key || !t.started);
        self.add_event("7 TRANSFER COMPLETE", "");
        self.add_event(transfer_event(&result), &result.command_key);
        self.durable.completed.push(result);
        self.save(tree);
        self.wanted = true;
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

    fn timeout(&self, with_transfers: bool) -> Option<Instant> {
        let (now, wall) = self.clock;
        let at =
            |t: i64| now + Duration::from_secs(u64::try_from(t.saturating_sub(wall)).unwrap_or(0));
        let scheduled = self.durable.scheduled.iter().map(|(t, _)| at(*t)).chain(
            self.durable
                .transfers
                .iter()
                .filter(|t| with_transfers && !t.started)
                .map(|t| at(t.due)),
        );
        [self.next_periodic, self.next_retry]
            .into_iter()
            .flatten()
            .chain(scheduled)
            .min()
    }

    /// Whether a session is open.
    pub fn in_session(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// The final HTTP response to the last POST: its status and body.
    pub fn handle_response(
        &mut self,
        tree: &mut Tree,
        now: Instant,
        wall: i64,
        status: u16,
        body: &[u8],
    ) {
        self.clock = (now, wall);
        // CWMP messages are UTF-8 (TR-069 §3.4.1, SOAP 1.1 over HTTP):
        // anything else is not guessed at (a lossy decode would store
        // U+FFFD in place of what the ACS meant).
        let body = match std::str::from_utf8(body) {
            Ok(body) => body,
            Err(e) => return self.not_utf8(tree, now, e),
        };
        let empty = body.trim().is_empty();
        match self.phase {
            Phase::Idle => {}
            Phase::Informing => {
                if !(200..300).contains(&status) || empty {
                    return self.fail(tree, now);
                }
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        version,
                        header,
                        body: AcsMessage::Response(AcsResponse::Inform { .. }),
                    }) => {
                        self.version = version;
                        self.hold_requests = header.hold_requests.unwrap_or(false);
                        self.delivered(tree);
                        self.next_post(tree, wall);
                    }
                    // 8005: retry; any other fault or message: the
                    // session failed (TR-069 §3.7.1.5).
                    _ => self.fail(tree, now),
                }
            }
            Phase::Requesting => {
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        body: AcsMessage::Response(response),
                        ..
                    }) if (200..300).contains(&status) => {
                        let answered = self.durable.cpe_requests.remove(0);
                        match (response, answered) {
                            (AcsResponse::GetRPCMethods { methods }, _) => {
                                self.events.push_back(EngineEvent::AcsMethods { methods });
                            }
                            (AcsResponse::Kicked { next_url }, CpeRequest::Kicked(kick)) => {
                                self.events.push_back(EngineEvent::Kicked {
                                    kick,
                                    next_url: Some(next_url),
                                });
                            }
                            // Answered with something else: no NextURL,
                            // and the caller hears so at once.
                            (_, CpeRequest::Kicked(kick)) => {
                                self.events.push_back(EngineEvent::Kicked {
                                    kick,
                                    next_url: None,
                                });
                            }
                            _ => {}
                        }
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    // Refused (a Fault other than 8005, "retry"): it is
                    // not asked again.
                    Ok(AcsEnvelope {
                        body: AcsMessage::Fault(fault),
                        ..
                    }) if fault.code != 8005 => {
                        let dropped = self.durable.cpe_requests.remove(0);
                        self.refused_request(dropped);
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    // An empty answer: the ACS ends the session without
                    // taking the request. It is best effort: not asked
                    // again, or it would stand before every later one.
                    _ if empty && (200..300).contains(&status) => {
                        let dropped = self.durable.cpe_requests.remove(0);
                        self.refused_request(dropped);
                        self.save(tree);
                        self.end(tree, now, wall);
                    }
                    _ => self.fail(tree, now),
                }
            }
            Phase::CompletingDu => {
                // An ACS that refuses the report (a Fault other than 8005,
                // "retry") would refuse it in every session after, and no
                // session would get past it: it is dropped, and said so.
                if let Ok(AcsEnvelope {
                    body: AcsMessage::Fault(fault),
                    ..
                }) = soap::decode(body)
                    && fault.code != 8005
                {
                    let dropped = self.durable.du_completed.remove(0);
                    self.events.push_back(EngineEvent::ReportRefused {
                        what: format!(
                            "DUStateChangeComplete {} ({} {})",
                            dropped.command_key, fault.code, fault.message
                        ),
                    });
                    self.save(tree);
                    self.next_post(tree, wall);
                    return;
                }
                if !(200..300).contains(&status) {
                    return self.fail(tree, now);
                }
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        body: AcsMessage::Response(AcsResponse::DUStateChangeComplete),
                        ..
                    }) => {
                        self.durable.du_completed.remove(0);
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    _ if empty => self.end(tree, now, wall),
                    _ => self.fail(tree, now),
                }
            }
            Phase::Completing => {
                // An ACS that does not take AutonomousTransferComplete
                // answers it with a SOAP Fault (HTTP 500, 8000 or 8005):
                // that report is dropped, or it would fail every session
                // after. TransferComplete is the ACS's own request: kept.
                let autonomous = self
                    .durable
                    .completed
                    .first()
                    .is_some_and(|c| c.autonomous.is_some());
                if autonomous
                    && matches!(
                        soap::decode(body),
                        Ok(AcsEnvelope {
                            body: AcsMessage::Fault(_),
                            ..
                        })
                    )
                {
                    let dropped = self.durable.completed.remove(0);
                    self.events.push_back(EngineEvent::ReportRefused {
                        what: format!(
                            "AutonomousTransferComplete for {}",
                            dropped
                                .autonomous
                                .map(|a| a.transfer_url)
                                .unwrap_or_default()
                        ),
                    });
                    self.save(tree);
                    self.next_post(tree, wall);
                    return;
                }
                if !(200..300).contains(&status) {
                    return self.fail(tree, now);
                }
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        body:
                            AcsMessage::Response(
                                AcsResponse::TransferComplete
                                | AcsResponse::AutonomousTransferComplete,
                            ),
                        ..
                    }) => {
                        self.durable.completed.remove(0);
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    // An empty answer ends the session: the report waits
                    // for the next one. Anything else is a failed session.
                    _ if empty => self.end(tree, now, wall),
                    _ => self.fail(tree, now),
                }
            }
            Phase::Exchanging { empty: sent_empty } => {
                if !(200..300).contains(&status) {
                    return self.fail(tree, now);
                }
                if empty {
                    // The ACS has no more requests. If ours was the empty
                    // POST, or we have nothing left, the session is over.
                    let _ = sent_empty;
                    return self.end(tree, now, wall);
                }
                let reply = match soap::decode(body) {
                    Ok(envelope) => {
                        self.version = envelope.version;
                        if let Some(hold) = envelope.header.hold_requests {
                            self.hold_requests = hold;
                        }
                        let id = envelope.header.id.clone();
                        match envelope.body {
                            AcsMessage::Request(request) => {
                                self.answer(tree, id.as_deref(), request, wall)
                            }
                            // A response or fault to a request of ours:
                            // none is outstanding besides those handled
                            // above, so carry on.
                            AcsMessage::Response(_) | AcsMessage::Fault(_) => soap::Body::empty(),
                        }
                    }
                    Err(e) => self.decode_fault(&e).into(),
                };
                self.phase = Phase::Exchanging {
                    empty: reply.is_empty(),
                };
                self.outbox.push_back(reply);
            }
        }
    }

    /// A response body that is not UTF-8: a request in it is answered
    /// with 8003 (its ID cannot be read); anything else fails the session.
    fn not_utf8(&mut self, tree: &mut Tree, now: Instant, error: std::str::Utf8Error) {
        if !matches!(self.phase, Phase::Exchanging { .. }) {
            return self.fail(tree, now);
        }
        let reply: soap::Body = self
            .decode_fault(&soap::DecodeError {
                kind: soap::DecodeErrorKind::Malformed,
                id: None,
                version: self.version,
                detail: format!("the message is not UTF-8 ({error})"),
            })
            .into();
        self.phase = Phase::Exchanging { empty: false };
        self.outbox.push_back(reply);
    }

    /// The POST could not be completed (connection refused, timeout, TLS
    /// failure, authentication failure).
    pub fn handle_transport_error(&mut self, tree: &mut Tree, now: Instant) {
        if self.phase != Phase::Idle {
            self.fail(tree, now);
        }
    }

    /// After the InformResponse: our requests first (TransferComplete,
    /// unless the ACS holds requests), then the empty POST.
    fn next_post(&mut self, tree: &mut Tree, _wall: i64) {
        // AutonomousTransferComplete came with CWMP 1.1: an ACS speaking
        // 1.0 cannot take it.
        if self.version == CwmpVersion(0) {
            self.durable.completed.retain(|c| c.autonomous.is_none());
        }
        if !self.hold_requests
            && let Some(result) = self.durable.completed.first()
        {
            self.inform_id += 1;
            let encoder = Encoder::new(self.version);
            let id = self.inform_id.to_string();
            let (start, complete) = (
                values::format_datetime(result.start),
                values::format_datetime(result.complete),
            );
            let message = match &result.autonomous {
                Some(transfer) => encoder.autonomous_transfer_complete(
                    &id,
                    transfer,
                    result.fault_code,
                    &result.fault_string,
                    &start,
                    &complete,
                ),
                None => encoder.transfer_complete(
                    &id,
                    &result.command_key,
                    result.fault_code,
                    &result.fault_string,
                    &start,
                    &complete,
                ),
            };
            self.phase = Phase::Completing;
            self.outbox.push_back(message.into());
            return;
        }
        if !self.hold_requests
            && let Some(done) = self.durable.du_completed.first()
        {
            self.inform_id += 1;
            let results: Vec<_> = done
                .results
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        values::format_datetime(r.start),
                        values::format_datetime(r.complete),
                    )
                })
                .collect();
            let message = Encoder::new(self.version).du_state_change_complete(
                &self.inform_id.to_string(),
                &done.command_key,
                &results,
            );
            self.phase = Phase::CompletingDu;
            self.outbox.push_back(message.into());
            return;
        }
        // A request queued during this session waits for the next one,
        // which it starts with its own event (TR-069 §3.7.1.5).
        if !self.hold_requests
            && let Some(request) = self.durable.cpe_requests.first()
            && self.announced.contains(&request_event(tree, request))
        {
            self.inform_id += 1;
            let encoder = Encoder::new(self.version);
            let id = self.inform_id.to_string();
            let message = match request {
                CpeRequest::GetRpcMethods => encoder.get_rpc_methods(&id),
                CpeRequest::RequestDownload { file_type, args } => {
                    encoder.request_download(&id, file_type, args)
                }
                CpeRequest::Kicked(kick) => encoder.kicked(&id, kick),
            };
            self.phase = Phase::Requesting;
            self.outbox.push_back(message.into());
            return;
        }
        self.phase = Phase::Exchanging { empty: true };
        self.outbox.push_back(soap::Body::empty());
    }

    /// A request of ours the ACS would not take: dropped, and said so.
    fn refused_request(&mut self, dropped: CpeRequest) {
        if let CpeRequest::Kicked(kick) = &dropped {
            self.events.push_back(EngineEvent::Kicked {
                kick: kick.clone(),
                next_url: None,
            });
        }
        self.events.push_back(EngineEvent::ReportRefused {
            what: format!("{dropped:?}"),
        });
    }

    fn end(&mut self, tree: &mut Tree, now: Instant, wall: i64) {
        self.phase = Phase::Idle;
        self.durable.retry_count = 0;
        self.save(tree);
        self.events
            .push_back(EngineEvent::SessionEnded { ok: true });
        match std::mem::replace(&mut self.after_session, AfterSession::Nothing) {
            AfterSession::Nothing => {}
            AfterSession::Reboot => self.events.push_back(EngineEvent::Reboot),
            AfterSession::FactoryReset => self.events.push_back(EngineEvent::FactoryReset),
        }
        // Settings may have changed during the session.
        self.next_periodic = None;
        self.schedule_periodic(tree, now, wall);
    }

    /// A failed session: keep the events, count the retry and wait
    /// (TR-069 §3.2.1.1).
    fn fail(&mut self, tree: &mut Tree, now: Instant) {
        self.phase = Phase::Idle;
        self.outbox.clear();
        // Nothing was delivered: everything goes in the next Inform.
        self.in_flight.clear();
        self.in_flight_changed.clear();
        self.changed_again.clear();
        self.durable.retry_count = self.durable.retry_count.saturating_add(1);
        self.save(tree);
        let s = settings(tree);
        let wait = retry_wait(
            s.retry_minimum,
            s.retry_multiplier,
            self.durable.retry_count,
            self.random(),
        );
        self.next_retry = Some(now + wait);
        self.wanted = true;
        self.events
            .push_back(EngineEvent::SessionEnded { ok: false });
        // The ACS was told the Reboot or FactoryReset would happen: it
        // does, however the session ended (its "M Reboot" key is saved).
        match std::mem::replace(&mut self.after_session, AfterSession::Nothing) {
            AfterSession::Nothing => {}
            AfterSession::Reboot => self.events.push_back(EngineEvent::Reboot),
            AfterSession::FactoryReset => self.events.push_back(EngineEvent::FactoryReset),
        }
    }

    /// The InformResponse arrived: the Inform's events are delivered.
    /// `M Reboot` and `1 BOOT` are not repeated; events added during the
    /// session stay for the next one.
    fn delivered(&mut self, tree: &mut Tree) {
        let sent = std::mem::take(&mut self.in_flight);
        for event in &sent {
            if let Some(i) = self.durable.events.iter().position(|e| e == event) {
                self.durable.events.remove(i);
            }
        }
        if sent.iter().any(|(c, _)| c == "0 BOOTSTRAP") {
            self.durable.bootstrapped_url = Some(settings(tree).url);
        }
        let changed = std::mem::take(&mut self.in_flight_changed);
        let again = std::mem::take(&mut self.changed_again);
        self.durable
            .changed
            .retain(|n| !changed.contains(n) || again.contains(n));
        self.durable.retry_count = 0;
        self.save(tree);
    }

    /// The answer to an ACS request. The lists of GetParameterValues and
    /// GetParameterNames are written out as they are sent ([`soap::Body`]).
    fn answer(
        &mut self,
        tree: &mut Tree,
        id: Option<&str>,
        request: AcsRequest,
        wall: i64,
    ) -> soap::Body {
        let e = Encoder::new(self.version);
        let fault = |f: soap::Fault| e.fault(id, f.code, &f.message, &f.parameters).into();
        match request {
            AcsRequest::GetParameterValues { names } => {
                match rpc::get_parameter_values(tree, &names) {
                    Ok(values) => e.get_parameter_values_response(id, values),
                    Err(f) => fault(f),
                }
            }
            AcsRequest::GetParameterNames { path, next_level } => {
                match rpc::get_parameter_names(tree, &path, next_level) {
                    Ok(names) => e.get_parameter_names_response(id, names),
                    Err(f) => fault(f),
                }
            }
            other => self.answer_text(tree, id, other, wall).into(),
        }
    }

    /// The answer to any other ACS request: short, written whole.
    fn answer_text(
        &mut self,
        tree: &mut Tree,
        id: Option<&str>,
        request: AcsRequest,
        wall: i64,
    ) -> String {
        let e = Encoder::new(self.version);
        let fault = |f: soap::Fault| e.fault(id, f.code, &f.message, &f.parameters);
        let plain = |code: FaultCode, detail: &str| {
            e.fault(id, code.code(), &format!("{}: {detail}", code.text()), &[])
        };
        match request {
            AcsRequest::GetRPCMethods => e.get_rpc_methods_response(id, SUPPORTED),
            AcsRequest::SetParameterValues {
                parameters,
                parameter_key,
            } => match rpc::set_parameter_values(tree, &parameters, &parameter_key) {
                Ok(status) => e.set_parameter_values_response(id, status),
                Err(f) => fault(f),
            },
            AcsRequest::SetParameterAttributes { changes } => {
                match rpc::set_parameter_attributes(tree, &changes) {
                    Ok(()) => {
                        self.remember_table_notifications(tree, &changes);
                        e.empty_response(id, "SetParameterAttributes")
                    }
                    Err(f) => fault(f),
                }
            }
            AcsRequest::GetParameterAttributes { names } => {
                match rpc::get_parameter_attributes(tree, &names) {
                    Ok(attributes) => e.get_parameter_attributes_response(id, &attributes),
                    Err(f) => fault(f),
                }
            }
            AcsRequest::AddObject {
                object,
                parameter_key,
            } => match rpc::add_object(tree, &object, &parameter_key) {
                Ok((instance, status)) => e.add_object_response(id, instance, status),
                Err(f) => fault(f),
            },
            AcsRequest::DeleteObject {
                object,
                parameter_key,
            } => match rpc::delete_object(tree, &object, &parameter_key) {
                Ok(status) => e.delete_object_response(id, status),
                Err(f) => fault(f),
            },
            AcsRequest::Reboot { command_key } => {
                // Saved before answering: "M Reboot" must follow the
                // reboot even if we are killed before it happens.
                self.durable.reboot_command_key = Some(command_key);
                self.save(tree);
                self.after_session = AfterSession::Reboot;
                e.empty_response(id, "Reboot")
            }
            AcsRequest::FactoryReset => {
                self.after_session = AfterSession::FactoryReset;
                e.empty_response(id, "FactoryReset")
            }
            AcsRequest::ScheduleInform {
                delay_seconds,
                command_key,
            } => {
                if self.multiple_events() >= MAX_MULTIPLE_EVENTS {
                    return plain(FaultCode::ResourcesExceeded, "too many scheduled informs");
                }
                if delay_seconds == 0 {
                    // TR-069 §A.4.1.4: DelaySeconds must be greater than 0.
                    return plain(
                        FaultCode::InvalidArguments,
                        "DelaySeconds must be at least 1",
                    );
                }
                // Kept in Unix time so that it survives a restart.
                self.durable
                    .scheduled
                    .push((wall.saturating_add(i64::from(delay_seconds)), command_key));
                self.save(tree);
                e.empty_response(id, "ScheduleInform")
            }
            AcsRequest::Download(transfer) => {
                if let Err((code, text)) = self.acceptable_download(&transfer) {
                    return plain(code, &text);
                }
                self.durable.transfers.push(QueuedDownload {
                    command_key: transfer.command_key,
                    file_type: transfer.file_type,
                    url: transfer.url,
                    username: transfer.username,
                    password: transfer.password,
                    file_size: transfer.file_size,
                    target_file_name: transfer.target_file_name,
                    due: wall.saturating_add(i64::from(transfer.delay_seconds)),
                    started: false,
                    upload: false,
                    scheduled: false,
                    deadline: None,
                    awaiting_reboot: None,
                });
                self.save(tree);
                e.download_response(id)
            }
            AcsRequest::ScheduleDownload { transfer, windows } => {
                // TR-069 §A.4.1.8: one or two windows, in order, each
                // ending after it starts. This device downloads at the
                // start of the first window whatever its mode, except
                // "4 Confirmation Needed", which needs a user it has not.
                let ordered = windows.windows(2).all(|w| w[0].end <= w[1].start);
                if windows.is_empty()
                    || windows.len() > 2
                    || !ordered
                    || windows.iter().any(|w| w.end <= w.start)
                {
                    return plain(
                        FaultCode::InvalidArguments,
                        "time windows out of order or empty",
                    );
                }
                if windows.iter().any(|w| w.mode.starts_with("4 ")) {
                    return plain(
                        FaultCode::RequestDenied,
                        "WindowMode 4 Confirmation Needed: this device has no user to ask",
                    );
                }
                if let Err((code, text)) = self.acceptable_download(&transfer) {
                    return plain(code, &text);
                }
                let last_end = windows.iter().map(|w| w.end).max().unwrap_or(0);
                self.durable.transfers.push(QueuedDownload {
                    command_key: transfer.command_key,
                    file_type: transfer.file_type,
                    url: transfer.url,
                    username: transfer.username,
                    password: transfer.password,
                    file_size: transfer.file_size,
                    target_file_name: transfer.target_file_name,
                    due: wall.saturating_add(i64::from(windows[0].start)),
                    started: false,
                    upload: false,
                    scheduled: true,
                    deadline: Some(wall.saturating_add(i64::from(last_end))),
                    awaiting_reboot: None,
                });
                self.save(tree);
                e.empty_response(id, "ScheduleDownload")
            }
            AcsRequest::Upload {
                command_key,
                file_type,
                url,
                username,
                password,
                delay_seconds,
            } => {
                if !TRANSFER_SCHEMES.iter().any(|s| url.starts_with(s)) {
                    return plain(
                        FaultCode::UnsupportedTransferProtocol,
                        &format!("{url}: only http://, https:// and ftp:// are uploaded to"),
                    );
                }
                if file_type != VENDOR_LOG && file_type != CONFIGURATION_UPLOAD {
                    return plain(
                        FaultCode::InvalidArguments,
                        &format!("file type {file_type:?} is not uploaded by this device"),
                    );
                }
                if self.durable.transfers.len() >= MAX_TRANSFERS {
                    return plain(FaultCode::ResourcesExceeded, "too many queued transfers");
                }
                self.durable.transfers.push(QueuedDownload {
                    command_key,
                    file_type,
                    url,
                    username,
                    password,
                    file_size: 0,
                    target_file_name: String::new(),
                    due: wall.saturating_add(i64::from(delay_seconds)),
                    started: false,
                    upload: true,
                    scheduled: false,
                    deadline: None,
                    awaiting_reboot: None,
                });
                self.save(tree);
                e.upload_response(id)
            }
            AcsRequest::CancelTransfer { command_key } => {
                // TR-069 §A.4.1.6: a transfer not yet started can be
                // cancelled; one in progress cannot (9021).
                match self
                    .durable
                    .transfers
                    .iter()
                    .position(|t| t.command_key == command_key)
                {
                    Some(i) if self.durable.transfers[i].started => plain(
                        FaultCode::CancelationNotPermitted,
                        "the transfer is in progress",
                    ),
                    Some(i) => {
                        self.durable.transfers.remove(i);
                        self.save(tree);
                        e.empty_response(id, "CancelTransfer")
                    }
                    None => plain(
                        FaultCode::InvalidArguments,
                        &format!("no queued transfer has CommandKey {command_key:?}"),
                    ),
                }
            }
            AcsRequest::GetQueuedTransfers => {
                e.queued_transfers_response(id, false, &self.queued())
            }
            AcsRequest::GetAllQueuedTransfers => {
                e.queued_transfers_response(id, true, &self.queued())
            }
            AcsRequest::ChangeDUState {
                command_key,
                operations,
            } => {
                // TR-069 §A.4.1.10: a malformed UUID is refused at once
                // (9022); the rest is found out while performing.
                for op in &operations {
                    let uuid = du_uuid(op);
                    if !is_uuid(uuid) {
                        return plain(FaultCode::InvalidUuidFormat, uuid);
                    }
                    if let soap::DuOperation::Install { url, .. } = op
                        && !TRANSFER_SCHEMES
                            .iter()
                            .chain(&["coap://", "coaps://"])
                            .any(|s| url.starts_with(s))
                    {
                        return plain(
                            FaultCode::UnsupportedTransferProtocol,
                            &format!("{url}: not http(s), ftp or coap(s)"),
                        );
                    }
                }
                if self.durable.du_changes.len() >= MAX_DU_CHANGES {
                    return plain(
                        FaultCode::ResourcesExceeded,
                        "too many queued ChangeDUState",
                    );
                }
                self.durable.du_changes.push(DuChange {
                    command_key,
                    operations,
                    started: false,
                });
                self.save(tree);
                e.empty_response(id, "ChangeDUState")
            }
            AcsRequest::SetVouchers { .. } => plain(
                FaultCode::RequestDenied,
                "this device has no options that vouchers could enable",
            ),
            other => plain(
                FaultCode::MethodNotSupported,
                &format!("{} is not served by this device yet", other.name()),
            ),
        }
    }

    /// Only what can be carried out is accepted (TR-069 §A.3.2.8):
    /// firmware images over HTTP(S) or FTP, while the queue has room.
    fn acceptable_download(&self, transfer: &soap::Transfer) -> Result<(), (FaultCode, String)> {
        if !TRANSFER_SCHEMES.iter().any(|s| transfer.url.starts_with(s)) {
            return Err((
                FaultCode::UnsupportedTransferProtocol,
                format!(
                    "{}: only http://, https:// and ftp:// are downloaded",
                    transfer.url
                ),
            ));
        }
        if transfer.file_type != FIRMWARE_IMAGE && transfer.file_type != CONFIGURATION_DOWNLOAD {
            return Err((
                FaultCode::InvalidArguments,
                format!(
                    "file type {:?} is not downloaded by this device",
                    transfer.file_type
                ),
            ));
        }
        if self.durable.transfers.len() >= MAX_TRANSFERS {
            return Err((
                FaultCode::ResourcesExceeded,
                "too many queued transfers".into(),
            ));
        }
        Ok(())
    }

    fn decode_fault(&self, error: &DecodeError) -> String {
        let e = Encoder::new(error.version);
        let id = error.id.as_deref();
        match error.kind {
            soap::DecodeErrorKind::MustUnderstand => {
                e.soap_fault(id, "MustUnderstand", &error.detail)
            }
            soap::DecodeErrorKind::UnknownMethod => {
                let code = FaultCode::MethodNotSupported;
                e.fault(
                    id,
                    code.code(),
                    &format!("{}: {}", code.text(), error.detail),
                    &[],
                )
            }
            soap::DecodeErrorKind::InvalidArguments | soap::DecodeErrorKind::Malformed => {
                let code = FaultCode::InvalidArguments;
                e.fault(
                    id,
                    code.code(),
                    &format!("{}: {}", code.text(), error.detail),
                    &[],
                )
            }
        }
    }

    fn inform(&mut self, tree: &Tree, wall: i64) -> String {
        let read = |r| match tree.read(Origin::Agent, &Path::resource(device::ID, InstanceId(0), r))
        {
            Ok(ResourceValue::Single(Value::String(s))) => s,
            _ => String::new(),
        };
        let device = DeviceId {
            manufacturer: read(device::MANUFACTURER),
            oui: read(device::MANUFACTURER_OUI),
            product_class: read(device::PRODUCT_CLASS),
            serial_number: read(device::SERIAL_NUMBER),
        };
        let events: Vec<Event> = self
            .in_flight
            .iter()
            .map(|(code, key)| Event {
                code: code.clone(),
                command_key: key.clone(),
            })
            .collect();
        let mut names: Vec<String> = PARAMETERS
            .iter()
            .filter(|p| p.forced_inform)
            .map(|p| p.render(InstanceId(0), None))
            .collect();
        for name in &self.in_flight_changed {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        // A changed parameter whose instance is gone since is dropped, not
        // a reason to fail the Inform.
        let parameters: Vec<ParameterValue> = rpc::existing_parameter_values(tree, &names);
        Encoder::new(CwmpVersion::LATEST).inform(
            &self.inform_id.to_string(),
            &device,
            &events,
            1,
            &values::format_datetime(wall),
            self.durable.retry_count,
            &parameters,
        )
    }

    fn add_event(&mut self, code: &str, command_key: &str) {
        // A single event already waiting is not repeated; one already in
        // the Inform in flight is, since it happened again after.
        let waiting = &self.durable.events[self.in_flight.len().min(self.durable.events.len())..];
        if single(code) && waiting.iter().any(|(c, _)| c == code) {
            return;
        }
        // cwmp-1-4.xsd allows 64 EventStructs in an Inform: an ACS that
        // floods ScheduleInform cannot grow the list past what can be sent.
        // Room is kept for the single events (at most one of each code).
        if !single(code) && self.multiple_events() >= MAX_MULTIPLE_EVENTS {
            return;
        }
        self.durable
            .events
            .push((code.to_owned(), command_key.to_owned()));
    }

    /// The queued downloads as GetQueuedTransfers reports them.
    fn queued(&self) -> Vec<soap::QueuedTransfer> {
        self.durable
            .transfers
            .iter()
            .map(|t| soap::QueuedTransfer {
                command_key: t.command_key.clone(),
                state: if t.started { 2 } else { 1 },
                is_download: !t.upload,
                file_type: t.file_type.clone(),
                file_size: t.file_size,
                target_file_name: t.target_file_name.clone(),
            })
            .collect()
    }

    /// "M …" events waiting, and ScheduleInforms that will add one.
    fn multiple_events(&self) -> usize {
        self.durable
            .events
            .iter()
            .filter(|(c, _)| !single(c))
            .count()
            + self.durable.scheduled.len()
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

    /// Arms the periodic timer from PeriodicInformInterval and, when it is
    /// known, PeriodicInformTime (TR-069 §3.2.1.1: informs happen at
    /// PeriodicInformTime + n × interval).
    fn schedule_periodic(&mut self, tree: &Tree, now: Instant, wall: i64) {
        let s = settings(tree);
        if !s.periodic_enable || s.periodic_interval == 0 {
            self.next_periodic = None;
            return;
        }
        let interval = s.periodic_interval;
        let delay = if s.periodic_time > values::UNKNOWN_TIME && wall != wall_clock_unknown() {
            let since = (wall - s.periodic_time).rem_euclid(interval as i64) as u64;
            let delay = interval - since;
            if delay == 0 { interval } else { delay }
        } else {
            interval
        };
        self.next_periodic = Some(now + Duration::from_secs(delay));
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: enough to spread retries across devices.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
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

fn wall_clock_unknown() -> i64 {
    i64::MIN
}

fn ms(resource: dm_core::ResourceId) -> Path {
    Path::resource(management_server::ID, InstanceId(0), resource)
}

fn settings(tree: &Tree) -> Settings {
    let read = |r| tree.read(Origin::Agent, &ms(r)).ok();
    let string = |r| match read(r) {
        Some(ResourceValue::Single(Value::String(s))) => s,
        _ => String::new(),
    };
    let unsigned = |r, default| match read(r) {
        Some(ResourceValue::Single(Value::Unsigned(u))) => u,
        _ => default,
    };
    Settings {
        url: string(management_server::URL),
        periodic_enable: matches!(
            read(management_server::PERIODIC_INFORM_ENABLE),
            Some(ResourceValue::Single(Value::Boolean(true)))
        ),
        periodic_interval: unsigned(management_server::PERIODIC_INFORM_INTERVAL, 3600),
        periodic_time: match read(management_server::PERIODIC_INFORM_TIME) {
            Some(ResourceValue::Single(Value::DateTime(t))) => t,
            _ => values::UNKNOWN_TIME,
        },
        retry_minimum: unsigned(management_server::CWMP_RETRY_MINIMUM_WAIT_INTERVAL, 5),
        retry_multiplier: unsigned(management_server::CWMP_RETRY_INTERVAL_MULTIPLIER, 2000),
    }
}

/// The vendor event of a GetRPCMethods the CPE asks (icwmp's `inform
/// GetRPCMethods`): "X <OUI> GetRPCMethods", no standard event saying why.
fn get_rpc_methods_event(tree: &Tree) -> String {
    let oui = match tree.read(
        Origin::Agent,
        &Path::resource(device::ID, InstanceId(0), device::MANUFACTURER_OUI),
    ) {
        Ok(ResourceValue::Single(Value::String(oui))) if !oui.is_empty() => oui,
        _ => "000000".to_owned(),
    };
    format!("X {oui} GetRPCMethods")
}

/// The event a request of ours is announced with.
fn request_event(tree: &Tree, request: &CpeRequest) -> String {
    match request {
        CpeRequest::GetRpcMethods => get_rpc_methods_event(tree),
        CpeRequest::RequestDownload { .. } => "9 REQUEST DOWNLOAD".to_owned(),
        CpeRequest::Kicked(_) => "5 KICKED".to_owned(),
    }
}
