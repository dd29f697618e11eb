//! USP's thin driver around the sans-IO engine (`dm_usp`): one MTP
//! connection to the controller (`mqtt`: MQTT 5 through a broker;
//! `websocket`: a WebSocket client to the controller), and one serving
//! task that answers requests one at a time and sends the Notify
//! messages the tree's changes make, whichever MTP carries them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::support::lock;
use dm_core::{Origin, Tree};
use dm_usp::{Agent, Incoming, Step};
use tracing::{debug, info, warn};

use crate::config::{Usp, UspMtp};

mod mqtt;
mod tasks;
mod websocket;

/// The largest record accepted (the MQTT Maximum Packet Size the agent
/// announces, the largest WebSocket message it reads): a request beyond
/// it never reaches memory.
pub const MAX_RECORD: u32 = 1024 * 1024;

/// The one controller this driver serves, as a tree origin.
const CONTROLLER: Origin = Origin::Controller(1);

/// Where a USP Reboot() leaves its command key for the Boot! event
/// after the restart.
const BOOT_KEY: &str = "usp.boot";

/// What the serving task does, in order.
enum Work {
    Record(Received),
    /// A deployment unit's operation ended (the package program's task):
    /// its OperationComplete, its Request row to remove, and its
    /// DUStateChange! event's arguments.
    Finished {
        request: dm_core::InstanceId,
        complete: dm_usp::proto::usp::notify::OperationComplete,
        event: Option<std::collections::BTreeMap<String, String>>,
    },
    /// The Boot! event's arguments, to notify once connected.
    Boot(std::collections::BTreeMap<String, String>),
}

/// A record received, with where to answer (MQTT's Response Topic).
struct Received {
    payload: Vec<u8>,
    reply_to: Option<String>,
}

/// An MTP connection as the serving task sees it.
trait Mtp: Send + Sync {
    /// Sends a record to the controller, where `reply_to` says (the
    /// request's Response Topic) or where the controller listens. Never
    /// waits: a record that cannot go now is dropped, logged.
    fn send(&self, reply_to: Option<&str>, record: Vec<u8>);
    /// Whether a record of `size` bytes can go at all.
    fn fits(&self, size: usize) -> bool;
}

/// The wait before the `failures`-th attempt to connect again (or to
/// send a Notify again): TR-369's R-WS.19 algorithm with its defaults
/// (m = 5 s, k = 2000), random in [m·k^(n-1), m·k^n], the same as
/// TR-069's session retry, whose implementation it is; R-MQTT.10's
/// ConnectRetryTime and multiplier and the USP notification retry have
/// the same defaults.
fn retry_wait(failures: u32) -> Duration {
    dm_cwmp::session::retry_wait(5, 2000, failures, dm_rt::random::seed())
}

/// What `Device.LocalAgent.MTP`, `Controller.1.MTP` and `MQTT.Client`
/// show of the configuration.
pub fn mtp_facts(config: &Usp) -> dm_objects::local_agent::MtpFacts {
    use dm_objects::local_agent::MtpFacts;
    let keep_alive = u16::try_from(config.keep_alive.as_secs()).unwrap_or(u16::MAX);
    match &config.mtp {
        UspMtp::Mqtt(m) => MtpFacts::Mqtt {
            broker_host: m.broker_host.clone(),
            broker_port: m.broker_port,
            tls: m.tls,
            client_id: m.client_id.clone(),
            username: m.username.clone(),
            keep_alive,
            agent_topic: m.agent_topic.clone(),
            controller_topic: m.controller_topic.clone(),
        },
        UspMtp::WebSocket { url } => {
            let parsed = dm_rt::uri::parse(url).ok();
            let tls = url.starts_with("wss://");
            MtpFacts::WebSocket {
                host: parsed
                    .as_ref()
                    .map(|u| dm_rt::uri::host(u).to_owned())
                    .unwrap_or_default(),
                port: parsed
                    .as_ref()
                    .and_then(|u| dm_rt::uri::port(u).ok().flatten())
                    .unwrap_or(if tls { 443 } else { 80 }),
                path: parsed
                    .as_ref()
                    .map(|u| u.path().to_owned())
                    .unwrap_or_default(),
                tls,
                keep_alive: u32::from(keep_alive),
            }
        }
    }
}

/// What both transports share: the engine, the requests' queue, the
/// Boot! arguments (taken on the first connection), the tree (for the
/// MTP's status), and whether the connection is up.
struct Shared {
    agent: Agent,
    controller: String,
    requests: tokio::sync::mpsc::Sender<Work>,
    boot: Option<std::collections::BTreeMap<String, String>>,
    tree: Arc<Mutex<Tree>>,
    up: bool,
}

impl Shared {
    /// The connection went up (with the topic the agent listens on) or
    /// down: `LocalAgent.MTP.1.Status` and `MQTT.Client.1.Status` say so.
    fn status(&mut self, up: bool, topic: Option<&str>) {
        if self.up == up {
            return;
        }
        self.up = up;
        if let Err(e) = dm_objects::local_agent::mtp_status(&mut lock(&self.tree), up, topic) {
            debug!("USP: the MTP's status is not recorded: {e}");
        }
    }

    /// A connection is up: Boot!, once (TR-181 2.16 Device.Boot!).
    fn connected(&mut self) {
        if let Some(arguments) = self.boot.take()
            && self.requests.try_send(Work::Boot(arguments)).is_err()
        {
            warn!("USP: Boot! not sent: the requests' queue is full");
        }
    }

    /// A record received, queued for the serving task.
    fn received(&self, received: Received) {
        if self.requests.try_send(Work::Record(received)).is_err() {
            warn!("USP: requests come faster than they are answered; one dropped");
        }
    }
}

/// An MTP's connection loop, until the agent stops.
type Connection = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs until `stop` says so: connects, serves, reconnects after a
/// back-off when the controller's side is away.
pub async fn run(
    tree: Arc<Mutex<Tree>>,
    config: Usp,
    state_dir: std::path::PathBuf,
    host: tokio::sync::mpsc::Sender<dm_objects::HostAction>,
    software: Software,
    firmware_updated: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Software {
        handler: software,
        others: du_events,
    } = software;
    let agent = Agent::new(config.endpoint_id.clone());
    let (requests_tx, requests_rx) = tokio::sync::mpsc::channel::<Work>(16);
    // Why the agent started, for the Boot! event (TR-181 2.16
    // Device.Boot!): what a USP Reboot() left, else a local reboot.
    let boot = Some(boot_arguments(
        &mut lock(&tree),
        &state_dir,
        firmware_updated,
    ));
    // The tree's changes, for the subscriptions' Notify messages.
    let changes = lock(&tree).subscribe(256);
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let changed = Arc::clone(&changed);
        changes.set_waker(move || changed.notify_one());
    }
    let finished = requests_tx.clone();
    let shared = Shared {
        agent: agent.clone(),
        controller: config.controller_endpoint_id.clone(),
        requests: requests_tx,
        boot,
        tree: Arc::clone(&tree),
        up: false,
    };
    let (mtp, connection): (Arc<dyn Mtp>, Connection) = match &config.mtp {
        UspMtp::Mqtt(mqtt) => {
            let (link, connection) = mqtt::Connection::new(&config, mqtt)
                .map_err(|e| anyhow::anyhow!("USP over MQTT cannot start: {e}"))?;
            (link, Box::pin(connection.run(shared, stop)))
        }
        UspMtp::WebSocket { url } => {
            let (link, connection) = websocket::Connection::new(url, &config)
                .map_err(|e| anyhow::anyhow!("USP over WebSocket cannot start: {e}"))?;
            (link, Box::pin(connection.run(shared, stop)))
        }
    };
    let server = tokio::spawn(serve(
        Served {
            agent,
            tree: Arc::clone(&tree),
            mtp,
            controller: config.controller_endpoint_id.clone(),
            host,
            running: Mutex::new(Vec::new()),
            unacked: Mutex::new(std::collections::VecDeque::new()),
            recheck: std::sync::atomic::AtomicBool::new(false),
            changed: Arc::clone(&changed),
            software,
            finished,
            software_turn: Arc::new(tokio::sync::Semaphore::new(1)),
        },
        requests_rx,
        changes,
        du_events,
    ));
    connection.await;
    server.abort();
    Ok(())
}

/// Deployment units: who carries out a controller's operations (CWMP's
/// ChangeDUState handler, on the same /9 instances), and the operations
/// other protocols had carried out, for DUStateChange!.
pub struct Software {
    pub handler: dm_cwmp_tokio::DuHandler,
    pub others: tokio::sync::broadcast::Receiver<crate::software::DuEvent>,
}

/// What the serving task works with.
struct Served {
    agent: Agent,
    tree: Arc<Mutex<Tree>>,
    mtp: Arc<dyn Mtp>,
    /// The configured controller's endpoint ID.
    controller: String,
    /// Where a Reboot() or FactoryReset() goes: the run loop ends the
    /// other protocols, then the host acts.
    host: tokio::sync::mpsc::Sender<dm_objects::HostAction>,
    /// The asynchronous commands running (never held across an await).
    running: Mutex<Vec<Running>>,
    /// Notify messages sent with send_resp (NotifRetry), until the
    /// controller's NotifyResp.
    unacked: Mutex<std::collections::VecDeque<Unacked>>,
    /// The running commands' state to be read from the tree at the next
    /// wake (changes were missed, or an end came too early to be told
    /// apart), and the wake itself.
    recheck: std::sync::atomic::AtomicBool,
    changed: Arc<tokio::sync::Notify>,
    /// Who carries out a deployment unit's operation (CWMP's
    /// ChangeDUState handler), and where its end comes back.
    software: dm_cwmp_tokio::DuHandler,
    finished: tokio::sync::mpsc::Sender<Work>,
    /// Deployment units' operations run one after another, in the order
    /// they were asked for.
    software_turn: Arc<tokio::sync::Semaphore>,
}

/// The most deployment units' operations queued or running.
const MAX_SOFTWARE: usize = 8;

/// A Notify the controller has not acknowledged yet.
struct Unacked {
    msg_id: String,
    record: Vec<u8>,
    attempts: u32,
    next: std::time::Instant,
    expires: Option<std::time::Instant>,
}

/// The most Notify messages kept for retry: the oldest goes beyond.
const MAX_UNACKED: usize = 256;

/// An asynchronous command a controller started, until its end.
struct Running {
    task: tasks::Task,
    /// The tree's sequence once the command's inputs were written: only
    /// later changes end it.
    started: u64,
    command_key: String,
    /// Its row in Device.LocalAgent.Request.
    request: dm_core::InstanceId,
}

/// Answers the requests, one at a time, in the order they came, and
/// sends the Notify messages the tree's changes make for the
/// subscriptions, in commit order.
async fn serve(
    served: Served,
    mut requests: tokio::sync::mpsc::Receiver<Work>,
    changes: dm_core::Subscription,
    du_events: tokio::sync::broadcast::Receiver<crate::software::DuEvent>,
) {
    // Until its sender is gone (then never again).
    let mut du_events = Some(du_events);
    let start = dm_rt::random::hex(4).unwrap_or_else(|_| "0".into());
    let mut notifier = dm_usp::Notifier::new(&format!("notify-{start}"));
    loop {
        // Nothing to retry, no subscription to expire, no timer: an idle
        // agent is not woken.
        let next_retry = lock(&served.unacked).iter().map(|u| u.next).min();
        let next_expiry = expire_subscriptions(&served);
        let du_event = async {
            match du_events.as_mut() {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = dm_rt::sleep_until(next_retry) => retry_notifications(&served),
            event = du_event => match event {
                // A unit another protocol changed: DUStateChange! (USP's
                // own operations send theirs with their OperationComplete).
                Ok(event) => {
                    let arguments = du_state_change(&event.result, event.operation);
                    let outgoing = notifier.event(
                        &lock(&served.tree),
                        "Device.SoftwareModules.DUStateChange!",
                        &arguments,
                    );
                    send_notifications(&served, outgoing).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    warn!("USP: {missed} deployment units' state changes were not notified");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => du_events = None,
            },
            () = dm_rt::sleep_until(next_expiry) => {}
            work = requests.recv() => match work {
                Some(Work::Record(received)) => answer_record(&served, &mut notifier, received).await,
                Some(Work::Finished { request, complete, event }) => {
                    let outgoing = {
                        let mut tree = lock(&served.tree);
                        let command = format!("{}{}", complete.obj_path, complete.command_name);
                        lock(&served.running).retain(|r| r.request != request);
                        if let Err(e) = dm_objects::local_agent::remove_request(&mut tree, request) {
                            warn!("USP: a finished command's Request row stays: {e:?}");
                        }
                        let mut outgoing = notifier.operation_complete(&tree, &command, &complete);
                        if let Some(event) = &event {
                            outgoing.extend(notifier.event(
                                &tree,
                                "Device.SoftwareModules.DUStateChange!",
                                event,
                            ));
                        }
                        outgoing
                    };
                    send_notifications(&served, outgoing).await;
                }
                Some(Work::Boot(arguments)) => {
                    let outgoing = notifier.event(&lock(&served.tree), "Device.Boot!", &arguments);
                    send_notifications(&served, outgoing).await;
                }
                None => return,
            },
            () = served.changed.notified() => {
                let lagged = changes.take_lagged();
                if lagged > 0 {
                    warn!("USP: {lagged} changes were missed; their notifications are lost");
                }
                let outgoing: Vec<dm_usp::Outgoing> = {
                    let mut tree = lock(&served.tree);
                    let mut outgoing = Vec::new();
                    let mut ended = Vec::new();
                    for change in changes.drain() {
                        outgoing.extend(notifier.on_change(&tree, &change));
                        // An asynchronous command's end: its
                        // OperationComplete, and its row gone.
                        let mut running = lock(&served.running);
                        let mut at = 0;
                        while at < running.len() {
                            let started = running[at].started;
                            let Some(end) = running[at].task.observe(&mut tree, &change, started)
                            else {
                                at += 1;
                                continue;
                            };
                            let done = running.remove(at);
                            let complete = done.task.complete(&tree, CONTROLLER, &done.command_key, end);
                            outgoing.extend(notifier.operation_complete(
                                &tree,
                                done.task.command(),
                                &complete,
                            ));
                            ended.push(done.request);
                        }
                    }
                    // Changes missed: a command that has ended meanwhile
                    // is ended from the tree's state.
                    let recheck = served.recheck.swap(false, std::sync::atomic::Ordering::Relaxed);
                    if lagged > 0 || recheck {
                        let mut running = lock(&served.running);
                        let mut at = 0;
                        while at < running.len() {
                            match running[at].task.settled(&mut tree) {
                                Some(end) => {
                                    let done = running.remove(at);
                                    let complete =
                                        done.task.complete(&tree, CONTROLLER, &done.command_key, end);
                                    outgoing.extend(notifier.operation_complete(
                                        &tree,
                                        done.task.command(),
                                        &complete,
                                    ));
                                    ended.push(done.request);
                                }
                                None => at += 1,
                            }
                        }
                    }
                    for request in ended {
                        if let Err(e) = dm_objects::local_agent::remove_request(&mut tree, request) {
                            warn!("USP: a finished command's Request row stays: {e:?}");
                        }
                    }
                    outgoing
                };
                send_notifications(&served, outgoing).await;
            }
        }
    }
}

/// Removes the subscriptions whose TimeToLive ran out (TR-181 2.16);
/// returns when the next one will.
fn expire_subscriptions(served: &Served) -> Option<std::time::Instant> {
    let mut tree = lock(&served.tree);
    let (expired, next) = dm_objects::local_agent::expired_subscriptions(&tree);
    if !expired.is_empty() {
        info!(
            count = expired.len(),
            "USP: subscriptions past their TimeToLive removed"
        );
        if let Err(e) = dm_objects::local_agent::remove_subscriptions(&mut tree, &expired) {
            warn!("USP: subscriptions past their TimeToLive stay: {e}");
        }
    }
    next.map(|wait| dm_rt::clock::now() + Duration::from_secs(wait))
}

/// Sends Notify messages to their controller; those of subscriptions
/// with NotifRetry are kept to send again until acknowledged (TR-369
/// §"Responses to Notifications and Notification Retry").
async fn send_notifications(served: &Served, outgoing: Vec<dm_usp::Outgoing>) {
    for notify in outgoing {
        // One controller is configured: notifications go where it
        // listens.
        if notify.to != served.controller {
            continue;
        }
        let record = served.agent.record(&notify.to, &notify.msg);
        served.mtp.send(None, record.clone());
        if let Some(expiration) = notify.retry
            && served.mtp.fits(record.len())
        {
            let now = dm_rt::clock::now();
            let mut unacked = lock(&served.unacked);
            unacked.push_back(Unacked {
                msg_id: notify.msg.header.map(|h| h.msg_id).unwrap_or_default(),
                record,
                attempts: 1,
                next: now + retry_wait(1),
                expires: expiration.map(|after| now + after),
            });
            if unacked.len() > MAX_UNACKED
                && let Some(oldest) = unacked.pop_front()
            {
                warn!(msg_id = %oldest.msg_id, "USP: too many Notify messages unacknowledged; the oldest is not retried");
            }
        }
    }
}

/// Sends again the unacknowledged Notify messages that are due; those
/// past their NotifExpiration are given up.
fn retry_notifications(served: &Served) {
    let now = dm_rt::clock::now();
    let mut unacked = lock(&served.unacked);
    unacked.retain(|u| {
        let expired = u.expires.is_some_and(|at| at <= now);
        if expired {
            warn!(msg_id = %u.msg_id, "USP: a Notify never acknowledged; given up (NotifExpiration)");
        }
        !expired
    });
    for u in unacked.iter_mut().filter(|u| u.next <= now) {
        debug!(msg_id = %u.msg_id, attempt = u.attempts + 1, "USP: Notify sent again");
        served.mtp.send(None, u.record.clone());
        u.attempts = u.attempts.saturating_add(1);
        u.next = now + retry_wait(u.attempts);
    }
}

/// An asynchronous command started: its object's inputs written (host
/// writes off the lock), its Request row made, the OperateResp naming
/// the row; or the Error of inputs the object refused.
async fn start(
    served: &Served,
    to: &str,
    reply_to: Option<&str>,
    command: dm_usp::Command,
    started: &'static dm_usp::commands::AsyncCommand,
) {
    let written = dm_cwmp::rpc::set_parameter_values_by_prepared(
        &mut lock(&served.tree),
        CONTROLLER,
        &command.writes,
        None,
    );
    let reply = match crate::host::finish_written(&served.tree, written).await {
        Err(fault) => {
            let mut error = dm_usp::UspError::from_fault(&fault);
            if fault.code == 9003 {
                error.code = dm_usp::Code::INVALID_COMMAND_ARGUMENTS;
            }
            Some(dm_usp::engine::error_msg(command.msg_id, &error))
        }
        Ok(_) => {
            let mut tree = lock(&served.tree);
            // The write just made is the latest commit: only later
            // changes end this run.
            let after = tree.last_sequence();
            match dm_objects::local_agent::add_request(
                &mut tree,
                to,
                started.command,
                &command.command_key,
            ) {
                Ok(request) => {
                    info!(command = started.command, "USP: a command started");
                    lock(&served.running).push(Running {
                        task: tasks::Task::Test(started),
                        started: after,
                        command_key: command.command_key.clone(),
                        request,
                    });
                    // Its end, should it have come before the sequence
                    // was read, is caught at the next change: the tree's
                    // state is looked at then (as after missed changes).
                    if started.state(&tree).is_some_and(|s| s != "Requested") {
                        served
                            .recheck
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        served.changed.notify_one();
                    }
                    command.send_resp.then(|| {
                        dm_usp::engine::operate_started(
                            command.msg_id,
                            started.command,
                            &format!("Device.LocalAgent.Request.{}.", request.0),
                        )
                    })
                }
                Err(e) => Some(dm_usp::engine::error_msg(
                    command.msg_id,
                    &dm_usp::UspError::new(dm_usp::Code::INTERNAL_ERROR, format!("{e:?}")),
                )),
            }
        }
    };
    if let Some(msg) = reply {
        served.mtp.send(reply_to, served.agent.record(to, &msg));
    }
}

/// A deployment unit's operation: its Request row and the OperateResp
/// naming it; the operation on a task of its own (the package program may
/// take minutes), whose end comes back to the serving task as
/// [`Work::Finished`]: success, or the failure (7022) with CWMP's fault.
fn start_software(
    served: &Served,
    to: &str,
    reply_to: Option<&str>,
    command: &dm_usp::Command,
    path: &str,
    operation: dm_cwmp::soap::DuOperation,
) {
    let queued = lock(&served.running)
        .iter()
        .filter(|r| matches!(r.task, tasks::Task::Software(_)))
        .count();
    if queued >= MAX_SOFTWARE {
        let msg = dm_usp::engine::error_msg(
            command.msg_id.clone(),
            &dm_usp::UspError::new(
                dm_usp::Code::RESOURCES_EXCEEDED,
                format!("{MAX_SOFTWARE} deployment units' operations wait already"),
            ),
        );
        served.mtp.send(reply_to, served.agent.record(to, &msg));
        return;
    }
    let mut tree = lock(&served.tree);
    let request =
        match dm_objects::local_agent::add_request(&mut tree, to, path, &command.command_key) {
            Ok(request) => request,
            Err(e) => {
                let msg = dm_usp::engine::error_msg(
                    command.msg_id.clone(),
                    &dm_usp::UspError::new(dm_usp::Code::INTERNAL_ERROR, format!("{e:?}")),
                );
                served.mtp.send(reply_to, served.agent.record(to, &msg));
                return;
            }
        };
    let started = tree.last_sequence();
    drop(tree);
    info!(command = %path, "USP: a deployment unit's operation started");
    lock(&served.running).push(Running {
        task: tasks::Task::Software(path.to_owned()),
        started,
        command_key: command.command_key.clone(),
        request,
    });
    if command.send_resp {
        let msg = dm_usp::engine::operate_started(
            command.msg_id.clone(),
            path,
            &format!("Device.LocalAgent.Request.{}.", request.0),
        );
        served.mtp.send(reply_to, served.agent.record(to, &msg));
    }
    let (handler, finished) = (served.software.clone(), served.finished.clone());
    let turn = Arc::clone(&served.software_turn);
    let (path, key) = (path.to_owned(), command.command_key.clone());
    tokio::spawn(async move {
        // One at a time (the semaphore is never closed).
        let _turn = turn.acquire_owned().await;
        let change = dm_cwmp::session::DuChange {
            command_key: key.clone(),
            operations: vec![operation],
            started: true,
        };
        let operation_performed = change
            .operations
            .first()
            .map_or("Uninstall", dm_cwmp::soap::DuOperation::name);
        let result = (handler.0)(change).await.into_iter().next();
        // No result, no event (the OperationComplete says it failed).
        let event = result
            .as_ref()
            .map(|r| du_state_change(r, operation_performed));
        let outcome = match result {
            Some(r) if r.fault_code == 0 => Ok(()),
            Some(r) => Err(dm_usp::UspError::new(
                dm_usp::Code::COMMAND_FAILURE,
                format!("{} (CWMP fault {})", r.fault_string, r.fault_code),
            )),
            None => Err(dm_usp::UspError::new(
                dm_usp::Code::COMMAND_FAILURE,
                "the package program gave no result".to_owned(),
            )),
        };
        let complete = dm_usp::commands::finished(&path, &key, outcome);
        if finished
            .send(Work::Finished {
                request,
                complete,
                event,
            })
            .await
            .is_err()
        {
            debug!("USP: a deployment unit's operation ended after the serving task");
        }
    });
}

/// TR-181 2.16's DUStateChange! arguments of a deployment unit's
/// operation, from its result as CWMP's ChangeDUState reports it.
fn du_state_change(
    result: &dm_cwmp::soap::DuResult,
    operation: &str,
) -> std::collections::BTreeMap<String, String> {
    // TR-181's unknown time for a time not known.
    let time = |t: i64| match jiff::Timestamp::from_second(t) {
        Ok(t) if t.as_second() > 0 => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => "0001-01-01T00:00:00Z".to_owned(),
    };
    [
        ("UUID", result.uuid.clone()),
        (
            "DeploymentUnitRef",
            result.deployment_unit_ref.trim_end_matches('.').to_owned(),
        ),
        ("Version", result.version.clone()),
        ("CurrentState", result.current_state.clone()),
        ("Resolved", result.resolved.to_string()),
        ("ExecutionUnitRefList", result.execution_unit_refs()),
        ("StartTime", time(result.start)),
        ("CompleteTime", time(result.complete)),
        ("OperationPerformed", operation.to_owned()),
        ("Fault.FaultCode", result.fault_code.to_string()),
        ("Fault.FaultString", result.fault_string.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A firmware command: under one lock of the tree, its Request row made,
/// the pipeline asked (`ask`), and the sequence noted after which its
/// course is read (the pipeline cannot move before the lock is let go);
/// the OperateResp naming the row, or the failure (7022) with the row
/// gone. One at a time: the pipeline is the command's while it runs.
fn start_firmware(
    served: &Served,
    to: &str,
    reply_to: Option<&str>,
    command: dm_usp::Command,
    task: tasks::Firmware,
    ask: impl FnOnce(&mut Tree) -> Result<(), String>,
) {
    let task = tasks::Task::Firmware(task);
    let path = task.command().to_owned();
    let failure = |why: String| {
        dm_usp::engine::error_msg(
            command.msg_id.clone(),
            &dm_usp::UspError::new(dm_usp::Code::COMMAND_FAILURE, why),
        )
    };
    let reply = {
        let mut tree = lock(&served.tree);
        let mut running = lock(&served.running);
        if running.iter().any(|r| r.task.is_firmware()) {
            Some(failure("a firmware command runs already".into()))
        } else {
            match dm_objects::local_agent::add_request(&mut tree, to, &path, &command.command_key) {
                Err(e) => Some(failure(format!("no Request row: {e:?}"))),
                Ok(request) => match ask(&mut tree) {
                    Err(why) => {
                        if let Err(e) = dm_objects::local_agent::remove_request(&mut tree, request)
                        {
                            warn!("USP: a refused command's Request row stays: {e:?}");
                        }
                        Some(failure(why))
                    }
                    Ok(()) => {
                        info!(command = %path, "USP: a firmware command started");
                        running.push(Running {
                            task,
                            started: tree.last_sequence(),
                            command_key: command.command_key.clone(),
                            request,
                        });
                        command.send_resp.then(|| {
                            dm_usp::engine::operate_started(
                                command.msg_id.clone(),
                                &path,
                                &format!("Device.LocalAgent.Request.{}.", request.0),
                            )
                        })
                    }
                },
            }
        }
    };
    if let Some(msg) = reply {
        served.mtp.send(reply_to, served.agent.record(to, &msg));
    }
}

/// `Device.LocalAgent.Request.{i}.Cancel()`: the command of that row is
/// stopped as its carrier stops (a test: DiagnosticsState Canceled,
/// written as the controller, if it still runs; a firmware command: /5
/// Cancel), its end then coming as for any other (a failed
/// OperationComplete, 7023; the row gone). A row that runs no command is
/// 7026; a deployment unit's operation, or a test that ended, 7022.
async fn cancel(
    served: &Served,
    to: &str,
    reply_to: Option<&str>,
    command: dm_usp::Command,
    request: u16,
) {
    // What stops it: a test's writes, or the firmware pipeline's Cancel.
    let running = lock(&served.running)
        .iter()
        .find(|r| r.request.0 == request)
        .map(|r| (r.task.command().to_owned(), r.task.stop()));
    let name = format!("Device.LocalAgent.Request.{request}.Cancel()");
    let reply = match running {
        None => Err(dm_usp::UspError::new(
            dm_usp::Code::INVALID_PATH,
            format!("Device.LocalAgent.Request.{request}. runs no command"),
        )),
        Some((running, tasks::Stop::Writes(writes))) => {
            // Looked at and written under one lock: a test that ended
            // meanwhile is not canceled after the fact.
            let written = {
                let mut tree = lock(&served.tree);
                let still = lock(&served.running)
                    .iter()
                    .find(|r| r.request.0 == request)
                    .is_some_and(|r| r.task.still_running(&tree));
                still.then(|| {
                    dm_cwmp::rpc::set_parameter_values_by_prepared(
                        &mut tree, CONTROLLER, &writes, None,
                    )
                })
            };
            match written {
                None => Err(dm_usp::UspError::new(
                    dm_usp::Code::COMMAND_FAILURE,
                    format!("{running} has ended already"),
                )),
                Some(written) => match crate::host::finish_written(&served.tree, written).await {
                    Ok(_) => {
                        info!(command = %running, "USP: a command canceled");
                        Ok(())
                    }
                    Err(fault) => Err(dm_usp::UspError::from_fault(&fault)),
                },
            }
        }
        Some((running, tasks::Stop::Firmware)) => {
            match dm_objects::firmware::execute(&mut lock(&served.tree), CONTROLLER, false) {
                Ok(()) => {
                    info!(command = %running, "USP: a command canceled");
                    Ok(())
                }
                Err(e) => Err(dm_usp::UspError::new(
                    dm_usp::Code::COMMAND_FAILURE,
                    format!("{running} cannot be canceled now: {e}"),
                )),
            }
        }
        Some((running, tasks::Stop::Cannot)) => Err(dm_usp::UspError::new(
            dm_usp::Code::COMMAND_FAILURE,
            format!("{running} runs to its end: the package program is not interrupted"),
        )),
    };
    let msg = match reply {
        Ok(()) => command
            .send_resp
            .then(|| dm_usp::engine::operate_done(command.msg_id, &name)),
        Err(error) => Some(dm_usp::engine::error_msg(command.msg_id, &error)),
    };
    if let Some(msg) = msg {
        served.mtp.send(reply_to, served.agent.record(to, &msg));
    }
}

/// Where the cause of a factory reset waits for the next start, beside
/// the erased state.
const BOOT_CAUSE_FILE: &str = "boot-cause.json";

/// Keeps the cause of the reboot about to happen for the next start's
/// Boot!, unless a USP Reboot() left its own (with its command key).
pub fn remember_boot_cause(tree: &mut Tree, cause: &str) {
    if tree.pending_state(BOOT_KEY).is_some() {
        return;
    }
    let left = serde_json::json!({"cause": cause, "command_key": ""});
    if let Err(e) = tree.set_pending_state(BOOT_KEY, Some(left.to_string())) {
        warn!("the reboot's cause is not kept: {e}");
    }
}

/// The same for a factory reset, whose erase took the state: a file of
/// its own in the state directory.
pub fn remember_boot_cause_after_erase(
    state_dir: &std::path::Path,
    cause: &str,
    command_key: &str,
) {
    let left = serde_json::json!({"cause": cause, "command_key": command_key});
    // Durable before the reset command runs (it usually reboots).
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let temporary = state_dir.join(format!("{BOOT_CAUSE_FILE}.new"));
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, left.to_string().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, state_dir.join(BOOT_CAUSE_FILE))?;
        std::fs::File::open(state_dir)?.sync_all()
    };
    if let Err(e) = write() {
        warn!("the factory reset's cause is not kept: {e}");
    }
}

/// The command key a USP FactoryReset() left (read before the erase).
pub fn left_command_key(tree: &Tree) -> String {
    tree.pending_state(BOOT_KEY)
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v["command_key"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The Boot! event's arguments (TR-181 2.16 `Device.Boot!`), and the
/// cause the last run left forgotten.
fn boot_arguments(
    tree: &mut Tree,
    state_dir: &std::path::Path,
    firmware_updated: bool,
) -> std::collections::BTreeMap<String, String> {
    let file = state_dir.join(BOOT_CAUSE_FILE);
    let left: Option<serde_json::Value> = tree
        .pending_state(BOOT_KEY)
        .map(str::to_owned)
        .or_else(|| std::fs::read_to_string(&file).ok())
        .and_then(|text| serde_json::from_str(&text).ok());
    let _ = std::fs::remove_file(&file);
    if tree.pending_state(BOOT_KEY).is_some()
        && let Err(e) = tree.set_pending_state(BOOT_KEY, None)
    {
        warn!("USP: the reboot's cause is not forgotten: {e}");
    }
    let text = |key: &str, default: &str| {
        left.as_ref()
            .and_then(|v| v[key].as_str())
            .unwrap_or(default)
            .to_owned()
    };
    [
        ("CommandKey".to_owned(), text("command_key", "")),
        // A controller's firmware command left RemoteFWUpdate; an update
        // another client asked for is not a controller's (LocalFWUpdate).
        (
            "Cause".to_owned(),
            text(
                "cause",
                if firmware_updated {
                    "LocalFWUpdate"
                } else {
                    "LocalReboot"
                },
            ),
        ),
        // The firmware pipeline confirmed an update at this start.
        ("FirmwareUpdated".to_owned(), firmware_updated.to_string()),
        // No BootParameter is served yet.
        ("ParameterMap".to_owned(), "{}".to_owned()),
    ]
    .into_iter()
    .collect()
}

/// A command accepted: its cause kept for the Boot! event after the
/// restart, its answer sent, then the run loop told.
async fn carry_out(
    served: &Served,
    notifier: &mut dm_usp::Notifier,
    to: &str,
    reply_to: Option<&str>,
    command: dm_usp::Command,
) {
    let (action, cause) = match command.action {
        dm_usp::Action::Reboot => (dm_objects::HostAction::Reboot, "RemoteReboot"),
        dm_usp::Action::FactoryReset => {
            (dm_objects::HostAction::FactoryReset, "RemoteFactoryReset")
        }
        dm_usp::Action::Start(started) => {
            start(served, to, reply_to, command, started).await;
            return;
        }
        dm_usp::Action::Cancel(request) => {
            cancel(served, to, reply_to, command, request).await;
            return;
        }
        dm_usp::Action::FirmwareDownload { ref url, activate } => {
            let name = format!(
                "Device.DeviceInfo.FirmwareImage.{}.Download()",
                dm_usp::engine::FIRMWARE_SLOT
            );
            let task =
                tasks::Firmware::download(name, url.clone(), activate, command.command_key.clone());
            let url = url.clone();
            start_firmware(served, to, reply_to, command, task, move |tree| {
                dm_objects::firmware::request(tree, CONTROLLER, &url)
                    .map_err(|e| format!("the firmware pipeline refused the URL: {e}"))
            });
            return;
        }
        dm_usp::Action::FirmwareActivate => {
            let name = format!(
                "Device.DeviceInfo.FirmwareImage.{}.Activate()",
                dm_usp::engine::FIRMWARE_SLOT
            );
            let key = command.command_key.clone();
            start_firmware(
                served,
                to,
                reply_to,
                command,
                tasks::Firmware::activate(name, key.clone()),
                move |tree| {
                    dm_objects::firmware::execute(tree, CONTROLLER, true)
                        .map_err(|e| format!("no downloaded image can be applied now: {e}"))?;
                    tasks::remote_update(tree, &key, true);
                    Ok(())
                },
            );
            return;
        }
        dm_usp::Action::Software {
            command: ref path,
            ref operation,
        } => {
            start_software(served, to, reply_to, &command, path, (**operation).clone());
            return;
        }
        dm_usp::Action::Executed => {
            if let Some(msg) = command.response {
                served.mtp.send(reply_to, served.agent.record(to, &msg));
            }
            return;
        }
        dm_usp::Action::OnBoard(controller) => {
            // The answer, then the OnBoardRequest (retried until the
            // controller's NotifyResp), to the controller of that row.
            let notify = notifier.on_board(&lock(&served.tree), controller);
            let reply = match notify {
                Some(_) => command.response,
                None => Some(dm_usp::engine::error_msg(
                    command.msg_id,
                    &dm_usp::UspError::new(
                        dm_usp::Code::INVALID_PATH,
                        format!(
                            "Device.LocalAgent.Controller.{controller}. is no enabled controller"
                        ),
                    ),
                )),
            };
            if let Some(msg) = reply {
                served.mtp.send(reply_to, served.agent.record(to, &msg));
            }
            send_notifications(served, notify.into_iter().collect()).await;
            return;
        }
    };
    let left = serde_json::json!({"cause": cause, "command_key": command.command_key});
    if let Err(e) = lock(&served.tree).set_pending_state(BOOT_KEY, Some(left.to_string())) {
        warn!("USP: the reboot's command key is not kept: {e}");
    }
    if let Some(msg) = command.response {
        served.mtp.send(reply_to, served.agent.record(to, &msg));
    }
    info!(?action, "USP: the controller asked for it");
    let _ = served.host.send(action).await;
}

/// Answers one received record.
async fn answer_record(served: &Served, notifier: &mut dm_usp::Notifier, received: Received) {
    // R-MQTT.26: the answer goes to the PUBLISH's Response Topic.
    let reply_to = received.reply_to.as_deref();
    let (to, record) = match served.agent.receive(&received.payload) {
        Incoming::Nothing(why) => {
            debug!("USP: {why}");
            return;
        }
        Incoming::NotifyResp { from, msg_id } => {
            if from == served.controller {
                lock(&served.unacked).retain(|u| u.msg_id != msg_id);
            }
            return;
        }
        Incoming::Reply { to, record, why } => {
            warn!("USP: {why}");
            (to, record)
        }
        // Only the configured controller is answered; another endpoint
        // has no role here (TR-369 §Access control: 7006).
        Incoming::Request(request) if request.from != served.controller => {
            warn!(from = %request.from, "USP: a request from an unknown controller refused");
            let error = dm_usp::UspError::new(
                dm_usp::Code::PERMISSION_DENIED,
                format!("{} is not a controller of this agent", request.from),
            );
            let msg = dm_usp::engine::error_msg(request.msg_id.clone(), &error);
            (
                request.from.clone(),
                served.agent.record(&request.from, &msg),
            )
        }
        Incoming::Request(request) => {
            let from = request.from.clone();
            let kind = request.kind();
            debug!(from = %from, msg_id = %request.msg_id, "USP {kind}");
            let reads = request.reads(&lock(&served.tree), CONTROLLER);
            let msg_id = request.msg_id.clone();
            match answer(&served.tree, request, reads).await {
                Answered::Msg(msg) => {
                    let mut record = served.agent.record(&from, &msg);
                    if !served.mtp.fits(record.len()) {
                        let error = dm_usp::UspError::new(
                            dm_usp::Code::RESOURCES_EXCEEDED,
                            format!(
                                "the answer ({} bytes) is larger than the MTP takes; ask for less",
                                record.len()
                            ),
                        );
                        let msg = dm_usp::engine::error_msg(msg_id, &error);
                        record = served.agent.record(&from, &msg);
                    }
                    (from, record)
                }
                Answered::Command(command) => {
                    carry_out(served, notifier, &from, reply_to, command).await;
                    return;
                }
            }
        }
    };
    debug!(to = %to, "USP answer");
    served.mtp.send(reply_to, record);
}

/// Answers one request: the host reads it needs first, off the tree's
/// lock; then the request on the tree; host writes off the lock.
enum Answered {
    Msg(dm_usp::proto::usp::Msg),
    Command(dm_usp::Command),
}

async fn answer(
    tree: &Arc<Mutex<Tree>>,
    request: dm_usp::Request,
    reads: Vec<dm_core::Path>,
) -> Answered {
    let mut step = {
        let (mut guard, fetched) = crate::host::read_from_host(tree, CONTROLLER, |_| reads).await;
        let step = request.start(&mut guard, CONTROLLER);
        if fetched {
            guard.forget_fetched(CONTROLLER);
        }
        step
    };
    loop {
        match step {
            Step::Done(msg) => return Answered::Msg(msg),
            Step::Command(command) => return Answered::Command(command),
            Step::Host(mut pending) => {
                let outcome = crate::host::make_host_writes(pending.take_work()).await;
                let (next, undo) = pending.resume(&mut lock(tree), outcome);
                // The undo ends before the next write of the request
                // starts.
                if let Some(undo) = undo {
                    let _ = tokio::task::spawn_blocking(move || undo.undo()).await;
                }
                step = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Boot!'s arguments: a controller's firmware command that had the
    /// update program run leaves RemoteFWUpdate and its key for the next
    /// start, FirmwareUpdated says what the pipeline confirmed; once the
    /// command ended without a reboot, nothing is left; an update another
    /// client asked for is LocalFWUpdate.
    #[test]
    fn boot_says_how_the_firmware_came() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = dm_tests::tree(&dm_tests::platform().0);
        tasks::remote_update(&mut tree, "fw-7", true);
        let boot = boot_arguments(&mut tree, dir.path(), true);
        assert_eq!(boot["Cause"], "RemoteFWUpdate");
        assert_eq!(boot["CommandKey"], "fw-7");
        assert_eq!(boot["FirmwareUpdated"], "true");
        // Taken once.
        let boot = boot_arguments(&mut tree, dir.path(), false);
        assert_eq!(boot["Cause"], "LocalReboot");
        assert_eq!(boot["FirmwareUpdated"], "false");
        // Ended without a reboot: forgotten.
        tasks::remote_update(&mut tree, "fw-8", true);
        tasks::remote_update(&mut tree, "fw-8", false);
        let boot = boot_arguments(&mut tree, dir.path(), true);
        assert_eq!(boot["Cause"], "LocalFWUpdate");
        assert_eq!(boot["CommandKey"], "");
        // A cause that waits already (a Reboot()'s) is neither replaced
        // nor cleared by a firmware command.
        let reboot = serde_json::json!({"cause": "RemoteReboot", "command_key": "RemoteFWUpdate"});
        tree.set_pending_state(BOOT_KEY, Some(reboot.to_string()))
            .unwrap();
        tasks::remote_update(&mut tree, "fw-9", true);
        tasks::remote_update(&mut tree, "fw-9", false);
        tasks::remote_update(&mut tree, "RemoteFWUpdate", false);
        let boot = boot_arguments(&mut tree, dir.path(), false);
        assert_eq!(boot["Cause"], "RemoteReboot");
    }
}
