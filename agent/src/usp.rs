//! USP over MQTT 5 (TR-369 §MQTT binding): the thin driver around the
//! sans-IO engine (`dm_usp`). rumqttc keeps the connection (CONNECT with
//! the `usp-endpoint-id` user property and Request Response Information,
//! keep-alive, reconnection when polled again); this task subscribes to
//! the agent's topic, sends the MQTT connect record on every connection
//! (R-MTP.6), and answers each request in the controller's response
//! topic, one request at a time.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::support::lock;
use dm_core::{Origin, Tree};
use dm_usp::{Agent, Incoming, Step};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tracing::{debug, info, warn};

use crate::config::Usp;

/// The largest record accepted from the broker (the MQTT Maximum Packet
/// Size the agent announces): a request beyond it never reaches memory.
pub const MAX_RECORD: u32 = 1024 * 1024;
/// R-MQTT.27: the Content Type of a PUBLISH holding a USP record.
const CONTENT_TYPE: &str = "usp.msg";

/// The one controller this driver serves, as a tree origin.
const CONTROLLER: Origin = Origin::Controller(1);

/// Where a USP Reboot() leaves its command key for the Boot! event
/// after the restart.
const BOOT_KEY: &str = "usp.boot";

/// What the serving task does, in order.
enum Work {
    Record(Received),
    /// The Boot! event's arguments, to notify once connected.
    Boot(std::collections::BTreeMap<String, String>),
}

/// A record received, with the topic to answer in.
struct Received {
    payload: Vec<u8>,
    reply_to: Option<String>,
}

/// Runs until `stop` says so: connects, serves, reconnects after a
/// back-off (R-MQTT.10, R-MQTT.33) when the broker is away.
pub async fn run(
    tree: Arc<Mutex<Tree>>,
    config: Usp,
    host: tokio::sync::mpsc::Sender<dm_objects::HostAction>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let agent = Agent::new(config.endpoint_id.clone());
    let mut options = MqttOptions::new(
        config.client_id.clone(),
        config.broker_host.clone(),
        config.broker_port,
    );
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_start(true)
        .set_max_packet_size(Some(MAX_RECORD))
        // R-MQTT.12, R-MQTT.13.
        .set_request_response_info(Some(1))
        .set_user_properties(vec![(
            "usp-endpoint-id".to_owned(),
            config.endpoint_id.clone(),
        )]);
    if !config.username.is_empty() || !config.password.is_empty() {
        options.set_credentials(config.username.clone(), config.password.clone());
    }
    let (client, mut events) = AsyncClient::new(options, 16);
    let link = Arc::new(Link {
        client: client.clone(),
        online: AtomicBool::new(false),
        max_record: AtomicU32::new(MAX_RECORD),
    });
    let (requests_tx, requests_rx) = tokio::sync::mpsc::channel::<Work>(16);
    // Why the agent started, for the Boot! event (TR-181 2.16
    // Device.Boot!): what a USP Reboot() left, else a local reboot.
    let mut boot = Some(boot_arguments(&mut lock(&tree)));
    let reply_to = Arc::new(Mutex::new(config.agent_topic.clone()));
    // The tree's changes, for the subscriptions' Notify messages.
    let changes = lock(&tree).subscribe(256);
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let changed = Arc::clone(&changed);
        changes.set_waker(move || changed.notify_one());
    }
    let server = tokio::spawn(serve(
        Served {
            agent: agent.clone(),
            tree: Arc::clone(&tree),
            link: Arc::clone(&link),
            controller: config.controller_endpoint_id.clone(),
            controller_topic: config.controller_topic.clone(),
            reply_to: Arc::clone(&reply_to),
            host,
            running: Mutex::new(Vec::new()),
        },
        requests_rx,
        (changes, changed),
    ));
    let mut failures = 0u32;
    info!(
        broker = %config.broker,
        endpoint = %config.endpoint_id,
        "USP over MQTT starting"
    );
    loop {
        let event = tokio::select! {
            event = events.poll() => event,
            _ = stop.changed() => {
                // R-MQTT.35: a DISCONNECT when shutting down, after what
                // is queued (a Reboot()'s OperateResp).
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        match events.poll().await {
                            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                server.abort();
                return Ok(());
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code != ConnectReturnCode::Success {
                    warn!("the MQTT broker refused the connection: {:?}", ack.code);
                    continue;
                }
                failures = 0;
                // Records wait for the subscription (R-MQTT.17).
                link.online.store(false, Ordering::Relaxed);
                let properties = ack.properties;
                link.max_record.store(
                    properties
                        .as_ref()
                        .and_then(|p| p.max_packet_size)
                        .map_or(MAX_RECORD, |m| m.min(MAX_RECORD)),
                    Ordering::Relaxed,
                );
                // R-MQTT.21: the broker's Response Information is the
                // agent's topic when it gives one.
                let topic = properties
                    .and_then(|p| p.response_information)
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| config.agent_topic.clone());
                *lock(&reply_to) = topic.clone();
                info!(topic = %topic, "connected to the MQTT broker");
                // R-MQTT.15.
                if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                    warn!("USP: cannot subscribe: {e}");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                {
                    // R-MTP.6: the connect record, on every connection.
                    let topic = lock(&reply_to).clone();
                    link.online.store(true, Ordering::Relaxed);
                    let record = agent.mqtt_connect_record(&config.controller_endpoint_id, &topic);
                    link.send(&config.controller_topic, &topic, record);
                    // Boot!, once, on the first connection.
                    if let Some(arguments) = boot.take()
                        && requests_tx.try_send(Work::Boot(arguments)).is_err()
                    {
                        warn!("USP: Boot! not sent: the requests' queue is full");
                    }
                } else {
                    // R-MQTT.17: no records without a subscription.
                    warn!(
                        "USP: the broker refused the subscription: {:?}",
                        ack.return_codes
                    );
                    let _ = client.try_disconnect();
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let reply_to = publish
                    .properties
                    .and_then(|p| p.response_topic)
                    .filter(|t| !t.is_empty());
                let received = Received {
                    payload: publish.payload.to_vec(),
                    reply_to,
                };
                if requests_tx.try_send(Work::Record(received)).is_err() {
                    warn!("USP: requests come faster than they are answered; one dropped");
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                link.online.store(false, Ordering::Relaxed);
                warn!("the MQTT broker disconnected: {:?}", d.reason_code);
            }
            Ok(_) => {}
            Err(e) => {
                link.online.store(false, Ordering::Relaxed);
                failures = failures.saturating_add(1);
                // MQTT.Client.{i}.ConnectRetryTime's default is 5 s.
                let wait = dm_core::support::backoff::doubling(
                    Duration::from_secs(5),
                    failures,
                    Duration::from_secs(300),
                );
                warn!("USP: MQTT connection: {e}; trying again in {wait:?}");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {
                        server.abort();
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// What the serving task works with.
struct Served {
    agent: Agent,
    tree: Arc<Mutex<Tree>>,
    link: Arc<Link>,
    /// The configured controller's endpoint ID, and its topic.
    controller: String,
    controller_topic: String,
    /// The agent's own topic now.
    reply_to: Arc<Mutex<String>>,
    /// Where a Reboot() or FactoryReset() goes: the run loop ends the
    /// other protocols, then the host acts.
    host: tokio::sync::mpsc::Sender<dm_objects::HostAction>,
    /// The asynchronous commands running (never held across an await).
    running: Mutex<Vec<Running>>,
}

/// An asynchronous command a controller started, until its end.
struct Running {
    command: &'static dm_usp::commands::AsyncCommand,
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
    (changes, changed): (dm_core::Subscription, Arc<tokio::sync::Notify>),
) {
    let mut notifier = dm_usp::Notifier::default();
    loop {
        tokio::select! {
            work = requests.recv() => match work {
                Some(Work::Record(received)) => answer_record(&served, received).await,
                Some(Work::Boot(arguments)) => {
                    let outgoing = notifier.event(&lock(&served.tree), "Device.Boot!", &arguments);
                    send_notifications(&served, outgoing).await;
                }
                None => return,
            },
            () = changed.notified() => {
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
                            let Some(state) = running[at].command.ended_by(&change) else {
                                at += 1;
                                continue;
                            };
                            let done = running.remove(at);
                            let complete =
                                done.command.complete(&tree, CONTROLLER, &done.command_key, &state);
                            outgoing.extend(notifier.operation_complete(
                                &tree,
                                done.command.command,
                                &complete,
                            ));
                            ended.push(done.request);
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

/// Sends Notify messages to their controller.
async fn send_notifications(served: &Served, outgoing: Vec<dm_usp::Outgoing>) {
    let own = lock(&served.reply_to).clone();
    for notify in outgoing {
        // One controller is configured: its topic is where its
        // notifications go.
        if notify.to != served.controller {
            continue;
        }
        let record = served.agent.record(&notify.to, &notify.msg);
        served.link.send(&served.controller_topic, &own, record);
    }
}

/// An asynchronous command started: its object's inputs written (host
/// writes off the lock), its Request row made, the OperateResp naming
/// the row; or the Error of inputs the object refused.
async fn start(
    served: &Served,
    to: &str,
    to_topic: &str,
    command: dm_usp::Command,
    started: &'static dm_usp::commands::AsyncCommand,
) {
    let written = dm_cwmp::rpc::set_parameter_values_by_prepared(
        &mut lock(&served.tree),
        CONTROLLER,
        &command.writes,
        None,
    );
    let own = lock(&served.reply_to).clone();
    let reply = match crate::host::finish_written(&served.tree, written).await {
        Err(fault) => {
            let mut error = dm_usp::UspError::from_fault(&fault);
            if fault.code == 9003 {
                error.code = dm_usp::Code::INVALID_COMMAND_ARGUMENTS;
            }
            Some(dm_usp::engine::error_msg(command.msg_id, &error))
        }
        Ok(_) => match dm_objects::local_agent::add_request(
            &mut lock(&served.tree),
            to,
            started.command,
            &command.command_key,
        ) {
            Ok(request) => {
                info!(command = started.command, "USP: a command started");
                lock(&served.running).push(Running {
                    command: started,
                    command_key: command.command_key.clone(),
                    request,
                });
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
        },
    };
    if let Some(msg) = reply {
        served
            .link
            .send(to_topic, &own, served.agent.record(to, &msg));
    }
}

/// The Boot! event's arguments (TR-181 2.16 `Device.Boot!`), and the
/// cause a USP Reboot() left forgotten.
fn boot_arguments(tree: &mut Tree) -> std::collections::BTreeMap<String, String> {
    let left: Option<serde_json::Value> = tree
        .pending_state(BOOT_KEY)
        .and_then(|text| serde_json::from_str(text).ok());
    if left.is_some()
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
        ("Cause".to_owned(), text("cause", "LocalReboot")),
        // Which firmware the device booted is the update program's;
        // not known here yet.
        ("FirmwareUpdated".to_owned(), "false".to_owned()),
        // No BootParameter is served yet.
        ("ParameterMap".to_owned(), "{}".to_owned()),
    ]
    .into_iter()
    .collect()
}

/// A command accepted: its cause kept for the Boot! event after the
/// restart, its answer sent, then the run loop told.
async fn carry_out(served: &Served, to: &str, to_topic: &str, command: dm_usp::Command) {
    let (action, cause) = match command.action {
        dm_usp::Action::Reboot => (dm_objects::HostAction::Reboot, "RemoteReboot"),
        dm_usp::Action::FactoryReset => {
            (dm_objects::HostAction::FactoryReset, "RemoteFactoryReset")
        }
        dm_usp::Action::Start(started) => {
            start(served, to, to_topic, command, started).await;
            return;
        }
    };
    let left = serde_json::json!({"cause": cause, "command_key": command.command_key});
    if let Err(e) = lock(&served.tree).set_pending_state(BOOT_KEY, Some(left.to_string())) {
        warn!("USP: the reboot's command key is not kept: {e}");
    }
    if let Some(msg) = command.response {
        let own = lock(&served.reply_to).clone();
        served
            .link
            .send(to_topic, &own, served.agent.record(to, &msg));
    }
    info!(?action, "USP: the controller asked for it");
    let _ = served.host.send(action).await;
}

/// Answers one received record.
async fn answer_record(served: &Served, received: Received) {
    // R-MQTT.26: the answer goes to the PUBLISH's Response Topic.
    let to_topic = received
        .reply_to
        .clone()
        .unwrap_or_else(|| served.controller_topic.clone());
    let own = lock(&served.reply_to).clone();
    let (to, record) = match served.agent.receive(&received.payload) {
        Incoming::Nothing(why) => {
            debug!("USP: {why}");
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
                    if !served.link.fits(record.len()) {
                        let error = dm_usp::UspError::new(
                            dm_usp::Code::RESOURCES_EXCEEDED,
                            format!(
                                "the answer ({} bytes) is larger than the MQTT broker takes; ask for less",
                                record.len()
                            ),
                        );
                        let msg = dm_usp::engine::error_msg(msg_id, &error);
                        record = served.agent.record(&from, &msg);
                    }
                    (from, record)
                }
                Answered::Command(command) => {
                    carry_out(served, &from, &to_topic, command).await;
                    return;
                }
            }
        }
    };
    debug!(to = %to, topic = %to_topic, "USP answer");
    served.link.send(&to_topic, &own, record);
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
                let work = pending.take_work();
                let outcome = tokio::task::spawn_blocking(move || {
                    work.run_within(dm_core::tree::HOST_WRITE_LIMIT)
                })
                .await
                .unwrap_or_else(|e| Err(dm_core::Error::Platform(e.to_string())));
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

/// The MQTT connection as the serving task sees it: whether records
/// may go (connected and subscribed, R-MQTT.17) and how large one may be.
struct Link {
    client: AsyncClient,
    online: AtomicBool,
    /// The broker's Maximum Packet Size (CONNACK), else the agent's own.
    max_record: AtomicU32,
}

impl Link {
    /// A record in a PUBLISH: Content Type `usp.msg` (R-MQTT.27) and the
    /// agent's topic as Response Topic (R-MQTT.22, R-MQTT.23). Never
    /// waits: the task that polls the connection is the one that empties
    /// rumqttc's queue, so a full queue (the broker away) drops the
    /// record, logged, rather than stalling every protocol's shutdown.
    fn send(&self, topic: &str, reply_to: &str, record: Vec<u8>) {
        if !self.online.load(Ordering::Relaxed) {
            warn!("USP: not connected; a record for {topic} is dropped");
            return;
        }
        let properties = PublishProperties {
            response_topic: Some(reply_to.to_owned()),
            content_type: Some(CONTENT_TYPE.to_owned()),
            ..PublishProperties::default()
        };
        if let Err(e) = self.client.try_publish_with_properties(
            topic,
            QoS::AtLeastOnce,
            false,
            record,
            properties,
        ) {
            warn!("USP: cannot publish to {topic}: {e}");
        }
    }

    /// Whether a record of `size` bytes fits a PUBLISH the broker takes
    /// (its topic and properties counted generously).
    fn fits(&self, size: usize) -> bool {
        size.saturating_add(1024) <= self.max_record.load(Ordering::Relaxed) as usize
    }
}
