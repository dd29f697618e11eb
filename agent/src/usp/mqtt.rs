//! USP over MQTT 5 (TR-369 §MQTT binding). rumqttc keeps the connection
//! (CONNECT with the `usp-endpoint-id` user property and Request
//! Response Information, keep-alive, reconnection when polled again);
//! this loop subscribes to the agent's topic, sends the MQTT connect
//! record on every connection (R-MTP.6), and hands received records to
//! the serving task with their Response Topic.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::support::lock;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tracing::{info, warn};

use super::{MAX_RECORD, Mtp, Received, Shared};
use crate::config::{Usp, UspMqtt};

/// R-MQTT.27: the Content Type of a PUBLISH holding a USP record.
const CONTENT_TYPE: &str = "usp.msg";

/// The MQTT connection as the serving task sees it: whether records may
/// go (connected and subscribed, R-MQTT.17), how large one may be, and
/// the topics.
pub(super) struct Link {
    client: AsyncClient,
    online: AtomicBool,
    /// The broker's Maximum Packet Size (CONNACK), else the agent's own.
    max_record: AtomicU32,
    /// The agent's topic now (R-MQTT.21: the broker may assign it).
    own_topic: Mutex<String>,
    controller_topic: String,
}

impl Mtp for Link {
    /// A record in a PUBLISH: Content Type `usp.msg` (R-MQTT.27) and the
    /// agent's topic as Response Topic (R-MQTT.22, R-MQTT.23). Never
    /// waits: the loop that polls the connection is the one that empties
    /// rumqttc's queue, so a full queue (the broker away) drops the
    /// record, logged, rather than stalling every protocol's shutdown.
    fn send(&self, reply_to: Option<&str>, record: Vec<u8>) {
        let topic = reply_to.unwrap_or(&self.controller_topic);
        if !self.online.load(Ordering::Relaxed) {
            warn!("USP: not connected; a record for {topic} is dropped");
            return;
        }
        // rumqttc fails the connection on a PUBLISH beyond the broker's
        // Maximum Packet Size: such a record is dropped instead (its
        // topics counted too).
        let own_topic = lock(&self.own_topic).len();
        if !self.fits(record.len() + topic.len() + own_topic) {
            warn!(
                size = record.len(),
                "USP: a record larger than the broker takes is dropped"
            );
            return;
        }
        let properties = PublishProperties {
            response_topic: Some(lock(&self.own_topic).clone()),
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

    /// Whether a record fits a PUBLISH the broker takes (its topic and
    /// properties counted generously).
    fn fits(&self, size: usize) -> bool {
        size.saturating_add(1024) <= self.max_record.load(Ordering::Relaxed) as usize
    }
}

/// The connection loop's side.
pub(super) struct Connection {
    link: Arc<Link>,
    events: EventLoop,
    broker: String,
    agent_topic: String,
}

impl Connection {
    /// The connection's settings; an error when its TLS settings cannot
    /// be used (a CA file that holds no certificate).
    pub(super) fn new(config: &Usp, mqtt: &UspMqtt) -> Result<(Arc<Link>, Connection), String> {
        let mut options = MqttOptions::new(
            mqtt.client_id.clone(),
            mqtt.broker_host.clone(),
            mqtt.broker_port,
        );
        options
            .set_keep_alive(config.keep_alive)
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_RECORD))
            // rumqttc keeps a slot per packet id in flight, all made at
            // once: its default (65,535) costs some 13 MiB of RAM. The
            // agent has a few records in flight at most.
            .set_outgoing_inflight_upper_limit(16)
            // R-MQTT.12, R-MQTT.13.
            .set_request_response_info(Some(1))
            .set_user_properties(vec![(
                "usp-endpoint-id".to_owned(),
                config.endpoint_id.clone(),
            )]);
        if !mqtt.username.is_empty() || !mqtt.password.is_empty() {
            options.set_credentials(mqtt.username.clone(), mqtt.password.clone());
        }
        if mqtt.tls {
            // mqtts://: the agent's rustls configuration (its CAs, its
            // certificate when the broker asks), as for HTTPS to the ACS.
            #[cfg(feature = "https")]
            {
                let tls =
                    dm_cwmp_tokio::tls::client_config(&config.tls).map_err(|e| e.to_string())?;
                options.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(tls),
                ));
            }
            // The configuration check refuses mqtts:// without it.
            #[cfg(not(feature = "https"))]
            return Err(crate::not_built("TLS", "https"));
        }
        let (client, events) = AsyncClient::new(options, 16);
        let link = Arc::new(Link {
            client,
            online: AtomicBool::new(false),
            max_record: AtomicU32::new(MAX_RECORD),
            own_topic: Mutex::new(mqtt.agent_topic.clone()),
            controller_topic: mqtt.controller_topic.clone(),
        });
        let connection = Connection {
            link: Arc::clone(&link),
            events,
            broker: mqtt.broker.clone(),
            agent_topic: mqtt.agent_topic.clone(),
        };
        Ok((link, connection))
    }

    /// Runs until `stop` says so: connects, subscribes, reconnects after
    /// a back-off (R-MQTT.10, R-MQTT.33) when the broker is away.
    pub(super) async fn run(
        mut self,
        mut shared: Shared,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let link = Arc::clone(&self.link);
        let client = link.client.clone();
        let mut failures = 0u32;
        info!(broker = %self.broker, endpoint = %shared.agent.endpoint_id(), "USP over MQTT starting");
        loop {
            let event = tokio::select! {
                event = self.events.poll() => event,
                _ = stop.changed() => {
                    // R-MQTT.35: a DISCONNECT when shutting down, after
                    // what is queued (a Reboot()'s OperateResp).
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        loop {
                            match self.events.poll().await {
                                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                                Ok(_) => {}
                            }
                        }
                    })
                    .await;
                    return;
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
                        .unwrap_or_else(|| self.agent_topic.clone());
                    *lock(&link.own_topic) = topic.clone();
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
                        let topic = lock(&link.own_topic).clone();
                        link.online.store(true, Ordering::Relaxed);
                        let record = shared.agent.mqtt_connect_record(&shared.controller, &topic);
                        link.send(None, record);
                        shared.status(true, Some(&topic));
                        shared.connected();
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
                    shared.received(Received {
                        payload: publish.payload.to_vec(),
                        reply_to,
                    });
                }
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    link.online.store(false, Ordering::Relaxed);
                    shared.status(false, None);
                    warn!("the MQTT broker disconnected: {:?}", d.reason_code);
                }
                Ok(_) => {}
                Err(e) => {
                    link.online.store(false, Ordering::Relaxed);
                    shared.status(false, None);
                    failures = failures.saturating_add(1);
                    let wait = super::retry_wait(failures);
                    warn!("USP: MQTT connection: {e}; trying again in {wait:?}");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}
