//! The LwM2M client engine for one server (LwM2M Core §6.2–6.4): sans-IO.
//!
//! Design note. The engine registers (Register with the object links of
//! the tree), keeps the registration alive (Update at half the lifetime,
//! Register again when the server forgot us), answers the server's device
//! management requests on the core tree (Read, Discover, Write,
//! Write-Attributes, Execute, Create, Delete, Observe) and sends
//! notifications when observed values change. It works through the CoAP
//! [`Endpoint`]; the driver feeds datagrams and time in and sends what
//! `poll_transmit` returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use dm_core::{
    Change, ChangeKind, Error, InstanceId, ObserveAttributes, Origin, Path, ResourceValue, Tree,
    Value, ValueType,
};

mod blockwise;
mod composite;
mod observe;
mod registration;
mod responses;
mod serve;

pub use registration::{object_links, retry_wait};
pub use responses::{core_error, type_in, type_of};

use blockwise::*;
use observe::*;
use responses::*;

use crate::access::{self, Operation};
use crate::coap::{Block, Endpoint, Incoming, Parameters, encode_uint, option_number};
use crate::format::{self, ContentFormat, FormatError, Item};
use crate::mapping::{self, Lwm2mPath};

/// Why a Send (LwM2M Core §6.4.1.1) was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("not registered")]
    NotRegistered,
    #[error("the server muted Send (Mute Send is true)")]
    Muted,
    /// None of the paths can be read (the diagnostic of the read).
    #[error("{0}")]
    Unreadable(String),
}

/// A request's transaction waiting for its host writes, and what follows.
struct HostWait {
    pending: dm_core::PendingCommit,
    then: Then,
    /// The request, for its separate response.
    request: Option<Packet>,
}

/// What a transaction that went through still does, and the response.
enum Then {
    Respond(Packet),
    /// The creator owns the new instance (Access Control).
    Created {
        object: dm_core::ObjectId,
        instance: InstanceId,
        response: Packet,
    },
    /// Its Access Control goes with it.
    Deleted {
        object: dm_core::ObjectId,
        instance: InstanceId,
        response: Packet,
    },
}

impl Then {
    fn response_mut(&mut self) -> &mut Packet {
        match self {
            Then::Respond(response)
            | Then::Created { response, .. }
            | Then::Deleted { response, .. } => response,
        }
    }
}

/// What the driver may want to know or log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Registered {
        location: String,
    },
    Updated,
    /// Registration (or a bootstrap) failed; a new attempt follows after
    /// `retry_in`, the `failures`-th in a row.
    RegistrationFailed {
        reason: String,
        failures: u32,
        retry_in: Duration,
    },
    Deregistered,
    /// The bootstrap server accepted our Bootstrap-Request.
    BootstrapStarted,
    /// Bootstrap-Finish succeeded: the tree holds a server account.
    BootstrapFinished,
    /// The server acknowledged a Send (2.04).
    Sent,
    /// A Send was refused or got no answer; nothing is retried.
    SendFailed {
        reason: String,
    },
    /// A bootstrap failed part way: the Security, Server and Access Control
    /// instances from before it are back (or `error` says why not).
    BootstrapRolledBack {
        error: Option<String>,
    },
    /// The server executed its Bootstrap-Request Trigger (/1/x/9): the
    /// driver de-registers and bootstraps again.
    BootstrapRequested,
    /// A request of the server was answered: which operation, on which
    /// path, and the response code (`2.05`, `4.04`, ...), for the log.
    Served {
        operation: &'static str,
        path: String,
        code: String,
    },
    /// The server executed Disable (/1/x/4): de-registered until the
    /// Disable Timeout passes.
    Disabled {
        until: Instant,
    },
}

/// Where a firmware package pushed to /5/0/0 goes, block by block, so the
/// image is never whole in memory (LwM2M Core E.6, push delivery). The
/// driver gives one; without it a package is an ordinary Write.
pub trait PackageSink: Send {
    /// A new transfer: anything unfinished is discarded.
    fn begin(&mut self) -> Result<(), PackageError>;
    fn write(&mut self, bytes: &[u8]) -> Result<(), PackageError>;
    /// The last block arrived: the image is complete and durable.
    fn finish(&mut self) -> Result<(), PackageError>;
    fn abort(&mut self);
}

/// Why a package could not be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageError {
    /// Too large or the storage is full (Update Result 2).
    NoSpace(String),
    Failed(String),
}

/// Registration settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint: String,
    pub short_server_id: u16,
    /// The Server object instance that describes this server (/1/x).
    pub server_instance: u16,
    /// How long the network's NAT keeps an idle UDP binding: Updates come
    /// at least this often (¾ of it), whatever the lifetime, so the server
    /// can still reach the client.
    pub nat_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Register,
    Update,
    Deregister,
    BootstrapRequest,
    Send,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Registering,
    Registered { location: String },
    Deregistered,
}

struct Observation {
    token: Vec<u8>,
    path: Lwm2mPath,
    format: ContentFormat,
    sequence: u32,
    last_sent: Instant,
    dirty: bool,
    /// The value last reported, for a single resource: a sample compares
    /// with it, and gt/lt/st judge numbers against it (LwM2M Core §5.1.2).
    last_value: Option<Value>,
    /// When the value was last sampled and judged (epmin, epmax).
    last_evaluated: Instant,
    /// An Observe-Composite: every path observed (`path` is the first).
    composite: Option<Vec<Lwm2mPath>>,
}

impl Observation {
    fn paths(&self) -> &[Lwm2mPath] {
        match &self.composite {
            Some(paths) => paths,
            None => std::slice::from_ref(&self.path),
        }
    }
}

/// The client engine.
pub struct Client {
    config: ClientConfig,
    coap: Endpoint,
    state: State,
    pending: HashMap<Vec<u8>, Pending>,
    next_update: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
    observations: Vec<Observation>,
    events: Vec<ClientEvent>,
    /// A Block1 transfer being received: the request's key and the bytes
    /// so far.
    upload: Option<(String, Vec<u8>)>,
    /// The last representation served block-wise, so later blocks slice
    /// the same bytes: request key, payload, and the response it came in
    /// (its options, for the later blocks).
    download: Option<(String, Vec<u8>, Packet)>,
    /// Talking to a bootstrap server: requests are bootstrap operations.
    bootstrapping: bool,
    /// Where pushed firmware packages go, and the next block expected.
    package_sink: Option<Box<dyn PackageSink>>,
    /// The agent has trust anchors for certificate usages 0 and 1 (its
    /// `ca_file`): without them Bootstrap-Finish refuses such accounts.
    trust_anchors: bool,
    package_next: Option<u32>,
    /// When a push whose next block has not come is given up.
    package_deadline: Option<Instant>,
    /// A push's progress: bytes so far, the size Size1 announced, and the
    /// count last published on the change stream.
    package_progress: (u64, Option<u64>, u64),
    /// When the bootstrap counts as failed unless the server does
    /// something (LwM2M Core §6.1.3: Bootstrap-Finish must come).
    bootstrap_deadline: Option<Instant>,
    /// Notifications made while offline with Notification Storing on, in
    /// order: token, content format, payload. Bounded by
    /// [`MAX_STORED_BYTES`]; the oldest go first.
    stored: std::collections::VecDeque<(Vec<u8>, ContentFormat, Vec<u8>)>,
    stored_bytes: usize,
    /// The accounts before the bootstrap in progress, to roll back to.
    bootstrap_saved: Option<crate::bootstrap::Saved>,
    /// Instances came or went since the last Register/Update.
    links_changed: bool,
    /// The lifetime and binding the server was last told (Register or
    /// Update): an Update carries each that changed since (Core §6.2.2).
    told_lifetime: u32,
    told_binding: String,
    /// A request whose answer waits for host writes (a Wi-Fi profile
    /// written to NetworkManager): answered with a separate response
    /// once they are made (`host_work_done`). One at a time.
    host: Option<HostWait>,
    /// Those writes, until the driver takes them.
    host_work: Option<dm_core::HostWork>,
    /// Set while a request is served when its transaction must wait.
    deferring: Option<HostWait>,
    /// A request whose values need host reads first (the system log),
    /// acknowledged and served again once they are made
    /// (`host_reads_done`). One at a time.
    reading: Option<Packet>,
    /// Those reads, until the driver takes them.
    host_reads: Option<dm_core::HostReads>,
    /// Queue mode (LwM2M Core §6.4): the server reaches the client only
    /// within AWAKE_WINDOW after the client last spoke.
    queue_mode: bool,
    awake_until: Option<Instant>,
}

/// How long a client in queue mode stays reachable after it last sent
/// something: CoAP MAX_TRANSMIT_WAIT (93 s), which Leshan also assumes.
pub const AWAKE_WINDOW: Duration = Duration::from_secs(93);

/// The largest request body assembled from Block1 blocks. A firmware image
/// pushed to /5/0/0 goes to a file with the firmware pipeline; until then
/// anything larger is refused with 4.13 and this size in Size1.
pub const MAX_BODY: usize = 1024 * 1024;

/// The most bytes of notifications stored while offline (LwM2M Core
/// §6.4.1); beyond it the oldest are dropped.
pub const MAX_STORED_BYTES: usize = 64 * 1024;

/// The most observations one server may hold.
pub const MAX_OBSERVATIONS: usize = 64;

/// Block size used when the server asks for none (RFC 7959: 2^(4+6)).
const DEFAULT_BLOCK_SZX: u8 = 6;

impl Client {
    pub fn new(config: ClientConfig, parameters: Parameters, seed: u64) -> Client {
        Client {
            config,
            coap: Endpoint::new(parameters, seed),
            state: State::Idle,
            pending: HashMap::new(),
            next_update: None,
            retry_at: None,
            failures: 0,
            observations: Vec::new(),
            events: Vec::new(),
            upload: None,
            download: None,
            bootstrapping: false,
            package_sink: None,
            trust_anchors: false,
            package_next: None,
            package_deadline: None,
            package_progress: (0, None, 0),
            bootstrap_deadline: None,
            bootstrap_saved: None,
            stored: std::collections::VecDeque::new(),
            stored_bytes: 0,
            links_changed: false,
            told_lifetime: 0,
            told_binding: String::new(),
            host: None,
            host_work: None,
            deferring: None,
            reading: None,
            host_reads: None,
            queue_mode: false,
            awake_until: None,
        }
    }

    /// Whether the agent has trust anchors for certificate usages 0 and 1
    /// (none by default): Bootstrap-Finish refuses such an account
    /// without them, rather than lose working accounts to it.
    pub fn set_trust_anchors(&mut self, configured: bool) {
        self.trust_anchors = configured;
    }

    /// Firmware packages written to /5/0/0 go to `sink` as they arrive.
    pub fn set_package_sink(&mut self, sink: Box<dyn PackageSink>) {
        self.package_sink = Some(sink);
    }

    /// The most retransmissions a request of ours has had without an
    /// answer (see `Endpoint::unanswered_retransmissions`).
    pub fn unanswered_retransmissions(&self) -> u32 {
        self.coap.unanswered_retransmissions()
    }

    pub fn is_registered(&self) -> bool {
        matches!(self.state, State::Registered { .. })
    }

    /// A Register is on its way: the server may hold a registration the
    /// client does not know of yet.
    pub fn is_registering(&self) -> bool {
        matches!(self.state, State::Registering)
    }

    /// A datagram from the server.
    pub fn handle_datagram(&mut self, tree: &mut Tree, now: Instant, bytes: &[u8]) {
        self.awake_until = Some(
            self.awake_until
                .map_or(now + AWAKE_WINDOW, |t| t.max(now + AWAKE_WINDOW)),
        );
        self.coap.handle_datagram(now, bytes);
        self.process(tree, now);
        // An answer from the server may have woken a queue-mode client or
        // completed a registration: send what waited.
        self.notify_due(tree, now);
    }

    /// Timers: retransmissions, Update, registration retries,
    /// notifications due by pmin/pmax.
    pub fn handle_timeout(&mut self, tree: &mut Tree, now: Instant) {
        self.coap.handle_timeout(now);
        if self.package_deadline.is_some_and(|t| t <= now) {
            self.package_deadline = None;
            self.package_next = None;
            if let Some(sink) = self.package_sink.as_mut() {
                sink.abort();
            }
            // E.6: the transfer was lost (Update Result 4).
            let at = |r| Path::resource(dm_core::catalog::firmware::ID, InstanceId(0), r);
            let _ = tree
                .begin(Origin::Agent)
                .set(
                    at(dm_core::catalog::firmware::STATE),
                    Value::Integer(crate_state::IDLE),
                )
                .set(
                    at(dm_core::catalog::firmware::UPDATE_RESULT),
                    Value::Integer(crate_state::result::CONNECTION_LOST),
                )
                .commit();
        }
        if self.bootstrap_deadline.is_some_and(|t| t <= now) {
            self.bootstrap_deadline = None;
            // Roll back to the accounts from before this bootstrap.
            if let Some(saved) = self.bootstrap_saved.take() {
                let restored = crate::bootstrap::restore(tree, &saved);
                self.events.push(ClientEvent::BootstrapRolledBack {
                    error: restored.err().map(|e| e.to_string()),
                });
            }
            self.on_failure(
                tree,
                now,
                Pending::BootstrapRequest,
                "the bootstrap server went quiet before Bootstrap-Finish",
            );
        }
        if self.next_update.is_some_and(|t| t <= now) {
            self.next_update = None;
            self.update(tree, now);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            if self.bootstrapping {
                self.bootstrap_request(now);
            } else {
                self.register(tree, now);
            }
        }
        self.notify_due(tree, now);
        self.process(tree, now);
    }

    /// A change on the tree: observations that cover it become due.
    pub fn handle_change(&mut self, tree: &mut Tree, now: Instant, change: &Change) {
        // Our own lifetime or binding changed (a server wrote it): the
        // server hears it in an Update now, not at the next one.
        if change.path.object_id() == dm_core::catalog::server::ID
            && change.path.instance_id() == Some(InstanceId(self.config.server_instance))
            && matches!(
                change.path.resource_id(),
                Some(dm_core::catalog::server::LIFETIME | dm_core::catalog::server::BINDING)
            )
            && matches!(change.kind, ChangeKind::Value(_))
            && self.is_registered()
        {
            self.next_update = Some(now);
        }
        match change.kind {
            ChangeKind::Executed(_) => {
                self.handle_execute(tree, now, &change.path);
                self.cancel_push(&change.path);
                return;
            }
            // Not a value: nothing to notify.
            ChangeKind::Progress { .. } => return,
            // A new or deleted instance of an object the server sees:
            // Update with the new object links at once.
            ChangeKind::Created | ChangeKind::Deleted
                if mapping::from_core(&change.path).is_some()
                    && change.path.object_id() != dm_core::catalog::security::ID =>
            {
                // Whoever deleted it (CWMP, a bootstrap server), its
                // Access Control goes with it, or a later instance of the
                // same number would inherit it.
                if change.kind == ChangeKind::Deleted
                    && let Some(instance) = change.path.instance_id()
                {
                    access::forget(tree, change.path.object_id(), instance);
                }
                self.links_changed = true;
                if self.is_registered() {
                    self.next_update = Some(now);
                }
            }
            _ => {}
        }
        let Some(changed) = mapping::from_core(&change.path) else {
            return;
        };
        for observation in &mut self.observations {
            if observation
                .paths()
                .iter()
                .any(|p| covers(p, &changed) || covers(&changed, p))
            {
                observation.dirty = true;
            }
        }
        self.notify_due(tree, now);
    }

    /// Executable resources of this server's own /1 instance (LwM2M Core
    /// §E.2): Disable, Registration Update Trigger, Bootstrap-Request
    /// Trigger. Whoever executed them, the engine acts.
    fn handle_execute(&mut self, tree: &mut Tree, now: Instant, path: &Path) {
        use dm_core::catalog::server;
        if path.object_id() != server::ID
            || path.instance_id() != Some(InstanceId(self.config.server_instance))
        {
            return;
        }
        match path.resource_id() {
            Some(server::REGISTRATION_UPDATE_TRIGGER) if self.is_registered() => {
                self.next_update = Some(now);
            }
            Some(server::BOOTSTRAP_REQUEST_TRIGGER) => {
                self.events.push(ClientEvent::BootstrapRequested);
            }
            Some(server::DISABLE) => {
                let timeout = match self.server_value(tree, server::DISABLE_TIMEOUT) {
                    Some(Value::Integer(t)) if t >= 0 => t as u64,
                    _ => 86400,
                };
                // A Disable Timeout too large for the clock is "a year".
                let until = now
                    .checked_add(Duration::from_secs(timeout))
                    .unwrap_or(now + Duration::from_secs(365 * 86_400));
                // The De-register goes out after the answer to the
                // Execute (it is queued behind it).
                self.deregister(now);
                self.retry_at = Some(until);
                self.events.push(ClientEvent::Disabled { until });
            }
            _ => {}
        }
    }

    /// Changes were lost (the change stream overflowed): every
    /// observation is re-read and the object links are sent again.
    pub fn handle_lost_changes(&mut self, tree: &mut Tree, now: Instant) {
        for observation in &mut self.observations {
            observation.dirty = true;
        }
        self.links_changed = true;
        if self.is_registered() {
            self.next_update = Some(now);
        }
        self.notify_due(tree, now);
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.coap.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    pub fn poll_timeout(&self, tree: &Tree) -> Option<Instant> {
        // Notifications wait for the registration (offline) or for the
        // waking Update's answer (queue mode): no timer for them then, or
        // the driver would spin on a deadline already past.
        let waiting = !self.is_registered()
            || (self.queue_mode && self.pending.values().any(|p| *p == Pending::Update));
        let observations = if waiting {
            &[][..]
        } else {
            &self.observations[..]
        };
        let pmax = observations.iter().map(|o| {
            let attrs = self.observation_attributes(tree, o);
            let pmin = Duration::from_secs(attrs.pmin.unwrap_or(0).into());
            let secs = |s: u32| Duration::from_secs(s.into());
            let report = match (o.dirty, attrs.pmax) {
                // A change waits for pmin, and for epmin since the last
                // evaluation.
                (true, _) => {
                    (o.last_sent + pmin).max(o.last_evaluated + secs(attrs.epmin.unwrap_or(0)))
                }
                (false, Some(pmax)) if pmax > 0 => o.last_sent + secs(pmax),
                _ => o.last_sent + Duration::from_secs(86400),
            };
            // Sampling applies to single paths only (notify_due): a
            // composite with epmax must not make a deadline that never
            // moves.
            match sampling(&attrs, o, tree) {
                Some(every) => report.min(o.last_evaluated + every),
                None => report,
            }
        });
        [
            self.coap.poll_timeout(),
            self.next_update,
            self.retry_at,
            self.bootstrap_deadline,
            self.package_deadline,
        ]
        .into_iter()
        .flatten()
        .chain(pmax)
        .min()
    }

    fn process(&mut self, tree: &mut Tree, now: Instant) {
        while let Some(incoming) = self.coap.poll_incoming() {
            match incoming {
                Incoming::Request(request) => {
                    // Values the host must be asked for first: an empty
                    // ACK now, the response once they are in.
                    if self.reading.is_none() && !self.bootstrapping {
                        let origin = Origin::Server(self.config.short_server_id);
                        // Only what this server may read (Access Control).
                        let targets: Vec<Path> = serve::read_targets(&request)
                            .iter()
                            .filter(|p| self.refused(tree, p, Operation::Read).is_none())
                            .filter_map(|p| mapping::to_core(p).ok())
                            .collect();
                        let reads = tree.host_reads(origin, &targets);
                        if !reads.is_empty() {
                            self.coap.acknowledge(now, &request);
                            self.reading = Some(request);
                            self.host_reads = Some(reads);
                            continue;
                        }
                    }
                    let response = self.serve_blockwise(tree, now, &request);
                    match self.deferring.take() {
                        // Its transaction waits for the host: an empty ACK
                        // now, the response when the writes are made.
                        Some(mut wait) => {
                            self.host_work = Some(wait.pending.take_work());
                            self.coap.acknowledge(now, &request);
                            wait.request = Some(request);
                            self.host = Some(wait);
                        }
                        None => self.coap.respond(now, &request, response),
                    }
                }
                Incoming::Response { token, packet } => {
                    if let Some(kind) = self.pending.remove(&token) {
                        self.on_response(tree, now, kind, &packet);
                    }
                }
                Incoming::Failed { token, reset } => {
                    if let Some(kind) = self.pending.remove(&token) {
                        self.on_failure(tree, now, kind, "no response");
                    } else {
                        // RFC 7641 §3.6: a Reset to a notification cancels
                        // the observation; §4.5: so does a confirmable
                        // notification that was never acknowledged.
                        let _ = reset;
                        self.observations.retain(|o| o.token != token);
                    }
                }
            }
        }
    }
}
