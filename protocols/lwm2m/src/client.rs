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

use crate::access::{self, Operation};
use crate::coap::{Block, Endpoint, Incoming, Parameters, encode_uint, option_number};
use crate::format::{self, ContentFormat, FormatError, Item};
use crate::mapping::{self, Lwm2mPath};

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
    /// Queue mode (LwM2M Core §6.4): the server reaches the client only
    /// within AWAKE_WINDOW after the client last spoke.
    queue_mode: bool,
    awake_until: Instant,
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
            queue_mode: false,
            awake_until: Instant::now(),
        }
    }

    /// Firmware packages written to /5/0/0 go to `sink` as they arrive.
    pub fn set_package_sink(&mut self, sink: Box<dyn PackageSink>) {
        self.package_sink = Some(sink);
    }

    /// Sends a Bootstrap-Request (LwM2M Core §6.1.3) to the bootstrap
    /// server this engine talks to, announcing SenML JSON as the preferred
    /// content format.
    pub fn bootstrap_request(&mut self, now: Instant) {
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.add_option(CoapOption::UriPath, b"bs".to_vec());
        packet.add_option(
            CoapOption::UriQuery,
            format!("ep={}", self.config.endpoint).into_bytes(),
        );
        packet.add_option(
            CoapOption::UriQuery,
            format!("pct={}", ContentFormat::SenmlJson.number()).into_bytes(),
        );
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::BootstrapRequest);
        self.bootstrapping = true;
        self.retry_at = None;
    }

    /// Waits `hold_off` for the bootstrap server to start a bootstrap of
    /// its own (server-initiated, LwM2M Core §6.1.3: Client Hold Off Time,
    /// /0/x/11), serving its operations meanwhile; a Bootstrap-Request goes
    /// out only when it has not begun by then.
    pub fn await_bootstrap(&mut self, now: Instant, hold_off: Duration) {
        if hold_off.is_zero() {
            return self.bootstrap_request(now);
        }
        self.bootstrapping = true;
        // A hold-off too large for the clock is "a year".
        self.retry_at = Some(
            now.checked_add(hold_off)
                .unwrap_or(now + Duration::from_secs(365 * 86_400)),
        );
    }

    /// Sends the Register request (LwM2M Core §6.2.1).
    pub fn register(&mut self, tree: &Tree, now: Instant) {
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.add_option(CoapOption::UriPath, b"rd".to_vec());
        let lifetime = self.lifetime(tree);
        let binding = self.binding(tree);
        // LwM2M 1.1 §6.2.1.1: queue mode is the "Q" parameter, no longer a
        // letter of the binding.
        self.queue_mode = binding.contains('Q');
        let transport: String = binding.chars().filter(|c| *c != 'Q').collect();
        let mut queries = vec![
            format!("ep={}", self.config.endpoint),
            format!("lt={lifetime}"),
            "lwm2m=1.1".to_owned(),
            format!("b={transport}"),
        ];
        if self.queue_mode {
            queries.push("Q".to_owned());
        }
        self.told_lifetime = lifetime;
        self.told_binding = binding;
        for query in queries {
            packet.add_option(CoapOption::UriQuery, query.into_bytes());
        }
        self.awake_until = now + AWAKE_WINDOW;
        packet.add_option(
            CoapOption::ContentFormat,
            content_format(ContentFormat::LinkFormat),
        );
        packet.payload = object_links(tree).into_bytes();
        self.links_changed = false;
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Register);
        self.state = State::Registering;
        self.retry_at = None;
    }

    /// Sends De-register (LwM2M Core §6.2.3), e.g. at shutdown.
    pub fn deregister(&mut self, now: Instant) {
        let State::Registered { location } = &self.state else {
            return;
        };
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Delete);
        for segment in location.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Deregister);
        self.next_update = None;
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
        self.awake_until = self.awake_until.max(now + AWAKE_WINDOW);
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
                    Value::Integer(4),
                )
                .commit();
        }
        if self.bootstrap_deadline.is_some_and(|t| t <= now) {
            self.bootstrap_deadline = None;
            // Roll back to the accounts from before this bootstrap.
            if let Some(saved) = self.bootstrap_saved.take() {
                let restored = crate::bootstrap::restore(tree, &saved);
                self.events.push(ClientEvent::BootstrapRolledBack {
                    error: restored.err(),
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

    /// Cancel (/5/0/10, object 5 v1.1) ends a push being received: its
    /// blocks are dropped and later ones are out of sequence (4.08). State
    /// and Update Result are set by whoever acts on the Execute.
    fn cancel_push(&mut self, path: &Path) {
        let cancel = Path::resource(
            dm_core::catalog::firmware::ID,
            InstanceId(0),
            dm_core::catalog::firmware::CANCEL,
        );
        if *path != cancel || self.package_next.is_none() {
            return;
        }
        self.package_next = None;
        self.package_deadline = None;
        if let Some(sink) = self.package_sink.as_mut() {
            sink.abort();
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

    fn update(&mut self, tree: &Tree, now: Instant) {
        let State::Registered { location } = &self.state else {
            return;
        };
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        for segment in location.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        // LwM2M Core §6.2.2: an Update carries what changed since the last
        // registration message: the lifetime (a server that wrote /1/x/1
        // keeps its old one until told, and expires the registration), the
        // binding and queue mode, and the object links when instances
        // came or went.
        let lifetime = self.lifetime(tree);
        if lifetime != self.told_lifetime {
            packet.add_option(CoapOption::UriQuery, format!("lt={lifetime}").into_bytes());
            self.told_lifetime = lifetime;
        }
        let binding = self.binding(tree);
        if binding != self.told_binding {
            let transport: String = binding.chars().filter(|c| *c != 'Q').collect();
            packet.add_option(CoapOption::UriQuery, format!("b={transport}").into_bytes());
            let queue = binding.contains('Q');
            if queue {
                packet.add_option(CoapOption::UriQuery, b"Q".to_vec());
            }
            self.queue_mode = queue;
            self.told_binding = binding;
        }
        if std::mem::take(&mut self.links_changed) {
            packet.add_option(
                CoapOption::ContentFormat,
                content_format(ContentFormat::LinkFormat),
            );
            packet.payload = object_links(tree).into_bytes();
        }
        self.awake_until = now + AWAKE_WINDOW;
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Update);
    }

    fn process(&mut self, tree: &mut Tree, now: Instant) {
        while let Some(incoming) = self.coap.poll_incoming() {
            match incoming {
                Incoming::Request(request) => {
                    let response = self.serve_blockwise(tree, now, &request);
                    self.coap.respond(now, &request, response);
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

    fn on_response(&mut self, tree: &Tree, now: Instant, kind: Pending, packet: &Packet) {
        let code = match packet.header.code {
            MessageClass::Response(code) => code,
            _ => return,
        };
        match (kind, code) {
            (Pending::Register, ResponseType::Created) => {
                let location: Vec<String> = packet
                    .get_option(CoapOption::LocationPath)
                    .map(|values| {
                        values
                            .iter()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let location = format!("/{}", location.join("/"));
                self.failures = 0;
                self.state = State::Registered {
                    location: location.clone(),
                };
                self.schedule_update(tree, now);
                self.events.push(ClientEvent::Registered { location });
            }
            (Pending::Update, ResponseType::Changed) => {
                self.schedule_update(tree, now);
                self.events.push(ClientEvent::Updated);
            }
            // LwM2M Core §6.2.2: the server no longer knows this
            // registration: register again.
            (Pending::Update, ResponseType::NotFound) => {
                self.state = State::Idle;
                self.register(tree, now);
            }
            (Pending::Deregister, _) => {
                self.state = State::Deregistered;
                self.events.push(ClientEvent::Deregistered);
            }
            (Pending::Send, ResponseType::Changed) => self.events.push(ClientEvent::Sent),
            (Pending::BootstrapRequest, ResponseType::Changed) => {
                // Not a success yet: a bootstrap server that accepts every
                // request and never finishes must meet a growing back-off,
                // so the failure count ends only with Bootstrap-Finish.
                self.bootstrap_deadline = Some(now + self.coap.parameters().exchange_lifetime());
                if self.bootstrap_saved.is_none() {
                    self.bootstrap_saved = Some(crate::bootstrap::save(tree));
                }
                self.events.push(ClientEvent::BootstrapStarted);
            }
            (kind, code) => self.on_failure(tree, now, kind, &format!("{code:?}")),
        }
    }

    fn on_failure(&mut self, tree: &Tree, now: Instant, kind: Pending, reason: &str) {
        match kind {
            Pending::Deregister => {
                self.state = State::Deregistered;
                self.events.push(ClientEvent::Deregistered);
            }
            Pending::Send => self.events.push(ClientEvent::SendFailed {
                reason: reason.to_owned(),
            }),
            Pending::Register | Pending::Update | Pending::BootstrapRequest => {
                self.state = State::Idle;
                self.failures = self.failures.saturating_add(1);
                let wait = retry_wait(self.failures);
                self.retry_at = Some(now + wait);
                self.events.push(ClientEvent::RegistrationFailed {
                    reason: reason.to_owned(),
                    failures: self.failures,
                    retry_in: wait,
                });
                let _ = tree;
            }
        }
    }

    /// The next Update: half the lifetime (well before it, as Leshan and
    /// Wakaama clients do), or sooner to keep a NAT binding open.
    fn schedule_update(&mut self, tree: &Tree, now: Instant) {
        let lifetime = u64::from(self.lifetime(tree)).max(2);
        let mut interval = Duration::from_secs(lifetime / 2);
        if let Some(nat) = self.config.nat_timeout {
            interval = interval.min((nat * 3 / 4).max(Duration::from_secs(1)));
        }
        self.next_update = Some(now + interval);
    }

    fn server_value(&self, tree: &Tree, resource: dm_core::ResourceId) -> Option<Value> {
        let path = Path::resource(
            dm_core::catalog::server::ID,
            InstanceId(self.config.server_instance),
            resource,
        );
        match tree.read(Origin::Agent, &path) {
            Ok(ResourceValue::Single(v)) => Some(v),
            _ => None,
        }
    }

    fn lifetime(&self, tree: &Tree) -> u32 {
        match self.server_value(tree, dm_core::catalog::server::LIFETIME) {
            Some(Value::Integer(l)) if l > 0 => u32::try_from(l).unwrap_or(u32::MAX),
            _ => 86400,
        }
    }

    fn binding(&self, tree: &Tree) -> String {
        match self.server_value(tree, dm_core::catalog::server::BINDING) {
            Some(Value::String(b)) if !b.is_empty() => b,
            _ => "U".to_owned(),
        }
    }

    fn attributes(&self, tree: &Tree, path: &Lwm2mPath) -> ObserveAttributes {
        let defaults = ObserveAttributes {
            pmin: match self.server_value(tree, dm_core::catalog::server::DEFAULT_MINIMUM_PERIOD) {
                Some(Value::Integer(v)) if v > 0 => u32::try_from(v).ok(),
                _ => None,
            },
            pmax: match self.server_value(tree, dm_core::catalog::server::DEFAULT_MAXIMUM_PERIOD) {
                Some(Value::Integer(v)) if v > 0 => u32::try_from(v).ok(),
                _ => None,
            },
            ..ObserveAttributes::default()
        };
        match mapping::to_core(path) {
            Ok(core) => tree
                .attributes()
                .effective_observe(self.config.short_server_id, &core)
                .inherit(&defaults),
            Err(_) => defaults,
        }
    }

    /// Sends the notifications that are due: changed and past pmin, or
    /// unchanged but at pmax (LwM2M Core §5.1.2, RFC 7641).
    fn notify_due(&mut self, tree: &mut Tree, now: Instant) {
        if !self.is_registered() {
            // Offline: with Notification Storing (/1/x/6, default true)
            // each change is stored as the notification it would have
            // been, and all go out in order once registered again;
            // without it they are dropped (LwM2M Core §6.4.1).
            let storing = self.server_value(
                tree,
                dm_core::catalog::server::NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE,
            ) != Some(Value::Boolean(false));
            for i in 0..self.observations.len() {
                if !self.observations[i].dirty {
                    continue;
                }
                self.observations[i].dirty = false;
                if !storing {
                    continue;
                }
                let o = &self.observations[i];
                let (token, format) = (o.token.clone(), o.format);
                let read = match o.composite.clone() {
                    Some(paths) => self.read_composite(tree, &paths, format).ok(),
                    None => self
                        .read(tree, &o.path.clone(), Some(format))
                        .ok()
                        .map(|(p, _)| p),
                };
                if let Some(payload) = read {
                    self.stored_bytes += payload.len();
                    self.stored.push_back((token, format, payload));
                    while self.stored_bytes > MAX_STORED_BYTES {
                        match self.stored.pop_front() {
                            Some((_, _, old)) => self.stored_bytes -= old.len(),
                            None => break,
                        }
                    }
                }
            }
            return;
        }
        self.send_stored(now);
        let mut due = Vec::new();
        let mut unreported = Vec::new();
        let mut evaluated = Vec::new();
        let mut moved = Vec::new();
        for (i, o) in self.observations.iter().enumerate() {
            let attrs = self.observation_attributes(tree, o);
            let since = now.saturating_duration_since(o.last_sent);
            let secs = |s: u32| Duration::from_secs(s.into());
            let pmin_ok = since >= secs(attrs.pmin.unwrap_or(0));
            let pmax_due = attrs.pmax.is_some_and(|p| p > 0 && since >= secs(p));
            // LwM2M Core §5.1.2: epmin is the shortest time between two
            // samples of the value, epmax the longest. A value the platform
            // reads live (no change events) is sampled every epmax.
            let evaluated_since = now.saturating_duration_since(o.last_evaluated);
            let epmin_ok = evaluated_since >= secs(attrs.epmin.unwrap_or(0));
            // A value computed when read (Current Time, free memory) has no
            // change events: it is sampled every epmax, or at pmin (at
            // least every second), as Anjay samples it.
            let sample_every = sampling(&attrs, o, tree);
            let sampled = sample_every.is_some_and(|every| evaluated_since >= every);
            if pmax_due {
                due.push(i);
            } else if (o.dirty && epmin_ok || sampled) && pmin_ok {
                evaluated.push(i);
                let value = match o.composite {
                    Some(_) => None,
                    None => single_value(tree, &o.path),
                };
                // A sample without a change event is worth a notification
                // only if the value moved (and meets gt, lt, st).
                let moved = o.dirty || value != o.last_value;
                if moved && meets_change_conditions(&attrs, o.last_value.as_ref(), value.as_ref()) {
                    due.push(i);
                } else {
                    unreported.push(i);
                }
            } else if sampled {
                // Within pmin: a value that moved is a change, reported
                // once pmin allows.
                evaluated.push(i);
                if single_value(tree, &o.path) != o.last_value {
                    moved.push(i);
                }
            }
        }
        for i in evaluated {
            self.observations[i].last_evaluated = now;
        }
        for i in moved {
            self.observations[i].dirty = true;
        }
        // A change that meets none of gt, lt and st is not reported.
        for i in unreported {
            self.observations[i].dirty = false;
        }
        if due.is_empty() {
            return;
        }
        // Asleep in queue mode: wake the server with an Update first; the
        // notifications follow once it answers.
        if self.queue_mode && now >= self.awake_until {
            if !self.pending.values().any(|p| *p == Pending::Update) {
                self.update(tree, now);
            }
            return;
        }
        self.awake_until = now + AWAKE_WINDOW;
        for i in due {
            let (path, format) = (self.observations[i].path, self.observations[i].format);
            let read = match self.observations[i].composite.clone() {
                Some(paths) => self
                    .read_composite(tree, &paths, format)
                    .map(|payload| (payload, format)),
                None => self.read(tree, &path, Some(format)),
            };
            let Ok((payload, format)) = read else {
                // The observed thing is gone: end the observation with an
                // error notification (RFC 7641 §3.2).
                let o = self.observations.remove(i);
                let mut packet = Packet::new();
                packet.header.code = MessageClass::Response(ResponseType::NotFound);
                packet.set_token(o.token);
                self.coap.send_confirmable(now, packet);
                return;
            };
            let value = match self.observations[i].composite {
                Some(_) => None,
                None => single_value(tree, &path),
            };
            let o = &mut self.observations[i];
            o.last_value = value;
            o.sequence = o.sequence.wrapping_add(1) & 0x00ff_ffff;
            o.dirty = false;
            o.last_sent = now;
            let mut packet = Packet::new();
            packet.header.code = MessageClass::Response(ResponseType::Content);
            packet.set_token(o.token.clone());
            packet.set_observe_value(o.sequence);
            packet.add_option(CoapOption::ContentFormat, content_format(format));
            packet.payload = payload;
            // A notification larger than a block goes out as its first
            // block (RFC 7959 §2.6 with RFC 7641): the observer fetches the
            // rest with GETs, served from this same representation.
            let packet = if self.observations[i].composite.is_some() {
                packet
            } else {
                let request = get_request(&path);
                let key = format!(
                    "{:?} {}",
                    request.header.code,
                    options_text(&request, CoapOption::UriPath)
                );
                self.block2(&request, &key, packet)
            };
            self.coap.send_confirmable(now, packet);
        }
    }

    /// Sends the notifications stored while offline, oldest first, for the
    /// observations that still exist.
    fn send_stored(&mut self, now: Instant) {
        if self.stored.is_empty() || (self.queue_mode && now >= self.awake_until) {
            return;
        }
        self.stored_bytes = 0;
        for (token, format, payload) in std::mem::take(&mut self.stored) {
            let Some(o) = self.observations.iter_mut().find(|o| o.token == token) else {
                continue;
            };
            o.sequence = o.sequence.wrapping_add(1) & 0x00ff_ffff;
            o.last_sent = now;
            let mut packet = Packet::new();
            packet.header.code = MessageClass::Response(ResponseType::Content);
            packet.set_token(token);
            packet.set_observe_value(o.sequence);
            packet.add_option(CoapOption::ContentFormat, content_format(format));
            packet.payload = payload;
            self.coap.send_confirmable(now, packet);
        }
    }

    /// Serves one request, assembling a Block1 body first and serving a
    /// large response in Block2 blocks (RFC 7959).
    fn serve_blockwise(&mut self, tree: &mut Tree, now: Instant, request: &Packet) -> Packet {
        if self.package_sink.is_some()
            && !self.bootstrapping
            && matches!(
                request.header.code,
                MessageClass::Request(RequestType::Put | RequestType::Post)
            )
            && options_text(request, CoapOption::UriPath) == "5/0/0"
        {
            let package = Lwm2mPath {
                object: dm_core::catalog::firmware::ID.0,
                instance: Some(0),
                resource: Some(0),
                index: None,
            };
            if let Some(refused) = self.refused(tree, &package, Operation::Write) {
                return refused;
            }
            return self.receive_package(tree, now, request);
        }
        let key = format!(
            "{:?} {}",
            request.header.code,
            options_text(request, CoapOption::UriPath)
        );
        let mut assembled = None;
        if let Some(block1) = request
            .get_first_option(CoapOption::Block1)
            .map(|v| Block::decode(v))
        {
            let Some(block1) = block1 else {
                return error(ResponseType::BadOption, "malformed Block1");
            };
            let declared = request
                .get_first_option(CoapOption::Size1)
                .map(|v| option_number(v) as usize)
                .unwrap_or(0);
            if declared > MAX_BODY {
                return too_large();
            }
            let (expected, mut body) = match self.upload.take() {
                Some((k, body)) if k == key => (body.len() / block1.size(), body),
                _ => (0, Vec::new()),
            };
            if block1.number as usize != expected
                || body.len() != block1.number as usize * block1.size()
            {
                return error(
                    ResponseType::RequestEntityIncomplete,
                    "Block1 out of sequence",
                );
            }
            body.extend_from_slice(&request.payload);
            if body.len() > MAX_BODY {
                return too_large();
            }
            if block1.more {
                self.upload = Some((key, body));
                let mut response = status(ResponseType::Continue);
                response.add_option(CoapOption::Block1, block1.encode());
                return response;
            }
            let mut whole = request.clone();
            whole.payload = body;
            whole.clear_option(CoapOption::Block1);
            assembled = Some((whole, block1));
        }
        // A later block of a representation being served block-wise is cut
        // from the bytes the first block was cut from, without serving the
        // request again: a read has effects ("since the last read" log
        // lines), and a value changing mid-transfer must not tear it.
        let later_block = request
            .get_first_option(CoapOption::Block2)
            .and_then(|v| Block::decode(v))
            .is_some_and(|b| b.number > 0);
        if later_block
            && assembled.is_none()
            && let Some((_, _, first)) = self.download.as_ref().filter(|(k, _, _)| *k == key)
        {
            let response = first.clone();
            return self.block2(request, &key, response);
        }
        let mut response = match &assembled {
            Some((whole, _)) => self.serve(tree, now, whole),
            None => self.serve(tree, now, request),
        };
        if let Some((_, block1)) = assembled {
            response.add_option(CoapOption::Block1, block1.encode());
        }
        self.block2(request, &key, response)
    }

    /// Slices a response into the block the request asks for (block 0
    /// when it asks for none) if it does not fit one block.
    fn block2(&mut self, request: &Packet, key: &str, mut response: Packet) -> Packet {
        let asked = request
            .get_first_option(CoapOption::Block2)
            .map(|v| Block::decode(v));
        let (number, szx) = match asked {
            Some(Some(b)) => (b.number, b.szx),
            Some(None) => return error(ResponseType::BadOption, "malformed Block2"),
            None => (0, DEFAULT_BLOCK_SZX),
        };
        let size = 16usize << szx;
        // Later blocks come from the representation the first one was cut
        // from, so a value changing mid-transfer cannot tear it.
        let payload = match &self.download {
            Some((k, bytes, _)) if number > 0 && k == key => bytes.clone(),
            _ => response.payload.clone(),
        };
        if payload.len() <= size && number == 0 {
            return response;
        }
        let start = number as usize * size;
        if start >= payload.len() {
            return error(ResponseType::BadOption, "Block2 beyond the end");
        }
        let end = (start + size).min(payload.len());
        let more = end < payload.len();
        if number == 0 {
            // Kept for the later blocks: the response without its payload.
            let mut first = response.clone();
            first.payload = Vec::new();
            // Later blocks answer plain GETs, a notification's too
            // (RFC 7959 §2.6).
            first.clear_option(CoapOption::Observe);
            self.download = more.then(|| (key.to_owned(), payload.clone(), first));
        } else if !more {
            self.download = None;
        }
        response.payload = payload[start..end].to_vec();
        response.add_option(CoapOption::Block2, Block { number, more, szx }.encode());
        if number == 0 {
            response.add_option(CoapOption::Size2, encode_uint(payload.len() as u64));
        }
        response
    }

    /// A firmware package pushed to /5/0/0 (LwM2M Core E.6): each block
    /// goes to the sink as it comes; State goes Downloading, then
    /// Downloaded when the last block is stored, or back to Idle with the
    /// Update Result saying why. An empty package resets the state
    /// machine.
    fn receive_package(&mut self, tree: &mut Tree, now: Instant, request: &Packet) -> Packet {
        use dm_core::catalog::firmware::{STATE, UPDATE_RESULT};
        self.package_deadline = None;
        let Some(sink) = self.package_sink.as_mut() else {
            return status(ResponseType::InternalServerError);
        };
        let block1 = match request
            .get_first_option(CoapOption::Block1)
            .map(|v| Block::decode(v))
        {
            Some(None) => return error(ResponseType::BadOption, "malformed Block1"),
            Some(Some(block)) => Some(block),
            None => None,
        };
        let set = |tree: &mut Tree, state: i64, result: i64| {
            let at = |r| Path::resource(dm_core::catalog::firmware::ID, InstanceId(0), r);
            let _ = tree
                .begin(Origin::Agent)
                .set(at(STATE), Value::Integer(state))
                .set(at(UPDATE_RESULT), Value::Integer(result))
                .commit();
        };
        if block1.is_none() && request.payload.is_empty() {
            sink.abort();
            self.package_next = None;
            set(tree, crate_state::IDLE, 0);
            return status(ResponseType::Changed);
        }
        let number = block1.map_or(0, |b| b.number);
        if number == 0 {
            if let Err(e) = sink.begin() {
                set(tree, crate_state::IDLE, package_result(&e));
                return package_failure(&e);
            }
            set(tree, crate_state::DOWNLOADING, 0);
            let total = request
                .get_first_option(CoapOption::Size1)
                .map(|v| option_number(v));
            self.package_progress = (0, total, 0);
        } else if self.package_next != Some(number) {
            return error(
                ResponseType::RequestEntityIncomplete,
                "Block1 out of sequence",
            );
        }
        if let Err(e) = sink.write(&request.payload) {
            sink.abort();
            self.package_next = None;
            set(tree, crate_state::IDLE, package_result(&e));
            return package_failure(&e);
        }
        // Progress on the change stream, as pulls have it: about every 2%
        // of an announced size, else every MiB, and at the end.
        let (done, total, published) = &mut self.package_progress;
        *done += request.payload.len() as u64;
        let step = total.map_or(1 << 20, |t| (t / 50).max(64 * 1024));
        let last = !block1.is_some_and(|b| b.more);
        if last || *done - *published >= step {
            *published = *done;
            let package = Path::resource(
                dm_core::catalog::firmware::ID,
                InstanceId(0),
                dm_core::catalog::firmware::PACKAGE,
            );
            let total = if last { Some(*done) } else { *total };
            tree.publish_progress(Origin::Agent, &package, *done, total);
        }
        if let Some(block) = block1.filter(|b| b.more) {
            self.package_next = Some(number + 1);
            // A server that stops sending blocks does not hold the image
            // store for ever.
            self.package_deadline = Some(now + self.coap.parameters().exchange_lifetime());
            let mut response = status(ResponseType::Continue);
            response.add_option(CoapOption::Block1, block.encode());
            return response;
        }
        self.package_next = None;
        if let Err(e) = sink.finish() {
            sink.abort();
            set(tree, crate_state::IDLE, package_result(&e));
            return package_failure(&e);
        }
        set(tree, crate_state::DOWNLOADED, 0);
        let mut response = status(ResponseType::Changed);
        if let Some(block) = block1 {
            response.add_option(CoapOption::Block1, block.encode());
        }
        response
    }

    /// Serves one request from the server.
    fn serve(&mut self, tree: &mut Tree, now: Instant, request: &Packet) -> Packet {
        if self.bootstrapping {
            // The first operation of a server-initiated bootstrap: no
            // Bootstrap-Request goes out now, and what is there is kept to
            // roll back to, as for one we asked for.
            if !self
                .pending
                .values()
                .any(|p| *p == Pending::BootstrapRequest)
                && self.bootstrap_deadline.is_none()
            {
                self.retry_at = None;
                if self.bootstrap_saved.is_none() {
                    self.bootstrap_saved = Some(crate::bootstrap::save(tree));
                }
                self.events.push(ClientEvent::BootstrapStarted);
            }
            let served = crate::bootstrap::serve(tree, request);
            // Each bootstrap operation shows the server is still at it.
            self.bootstrap_deadline = Some(now + self.coap.parameters().exchange_lifetime());
            if served.finished {
                self.bootstrap_deadline = None;
                self.bootstrap_saved = None;
                self.bootstrapping = false;
                self.failures = 0;
                self.events.push(ClientEvent::BootstrapFinished);
            }
            return served.response;
        }
        let origin = Origin::Server(self.config.short_server_id);
        if matches!(
            request.header.code,
            MessageClass::Request(RequestType::Fetch | RequestType::IPatch)
        ) {
            return self.serve_composite(tree, now, request);
        }
        let path = match request_path(request) {
            Ok(path) => path,
            Err(response) => return response,
        };
        if path.object == dm_core::catalog::security::ID.0 {
            return security_hidden();
        }
        let method = match request.header.code {
            MessageClass::Request(method) => method,
            _ => return error(ResponseType::BadRequest, "not a request"),
        };
        let accept = request
            .get_first_option(CoapOption::Accept)
            .map(|v| option_number(v))
            .map(|n| {
                u16::try_from(n)
                    .ok()
                    .and_then(ContentFormat::from_number)
                    .ok_or(n)
            });
        let content = request
            .get_first_option(CoapOption::ContentFormat)
            .map(|v| option_number(v))
            .map(|n| {
                u16::try_from(n)
                    .ok()
                    .and_then(ContentFormat::from_number)
                    .ok_or(n)
            });
        let observe = request
            .get_first_option(CoapOption::Observe)
            .map(|v| option_number(v));
        // Access Control (LwM2M Core §7.3.3): reads are checked per
        // instance where the values are gathered (object-level reads leave
        // out what the server may not read); the rest here.
        let needed = match method {
            RequestType::Put
                if request.payload.is_empty()
                    && request.get_option(CoapOption::UriQuery).is_some() =>
            {
                Some(Operation::Read)
            }
            RequestType::Put => Some(Operation::Write),
            RequestType::Post if path.instance.is_none() => Some(Operation::Create),
            RequestType::Post if path.resource.is_none() => Some(Operation::Write),
            RequestType::Post => Some(Operation::Execute),
            RequestType::Delete => Some(Operation::Delete),
            _ => None,
        };
        if let Some(operation) = needed
            && let Some(refused) = self.refused(tree, &path, operation)
        {
            return refused;
        }
        match method {
            RequestType::Get if accept == Some(Ok(ContentFormat::LinkFormat)) => {
                self.discover(tree, &path)
            }
            RequestType::Get => {
                let accept = match accept {
                    Some(Err(n)) => {
                        return error(
                            ResponseType::NotAcceptable,
                            &format!("content format {n} is not served"),
                        );
                    }
                    Some(Ok(f)) => Some(f),
                    None => None,
                };
                match self.read(tree, &path, accept) {
                    Ok((payload, format)) => {
                        let mut response = Packet::new();
                        response.header.code = MessageClass::Response(ResponseType::Content);
                        response.add_option(CoapOption::ContentFormat, content_format(format));
                        match observe {
                            // RFC 7641 §4.1: a client that cannot keep
                            // one more observation answers as to a plain GET.
                            Some(0)
                                if self.observations.len() >= MAX_OBSERVATIONS
                                    && !self
                                        .observations
                                        .iter()
                                        .any(|o| o.token == request.get_token()) => {}
                            Some(0) => {
                                self.observations.retain(|o| o.token != request.get_token());
                                self.observations.push(Observation {
                                    token: request.get_token().to_vec(),
                                    path,
                                    format,
                                    sequence: 0,
                                    last_sent: now,
                                    dirty: false,
                                    last_value: single_value(tree, &path),
                                    last_evaluated: now,
                                    composite: None,
                                });
                                response.set_observe_value(0);
                            }
                            Some(1) => self.observations.retain(|o| o.token != request.get_token()),
                            _ => {}
                        }
                        response.payload = payload;
                        response
                    }
                    Err(response) => response,
                }
            }
            RequestType::Put
                if request.payload.is_empty()
                    && request.get_option(CoapOption::UriQuery).is_some() =>
            {
                self.write_attributes(tree, &path, request)
            }
            RequestType::Put => self.write(tree, origin, &path, request, content, true),
            RequestType::Post if path.instance.is_none() => {
                self.create(tree, origin, &path, request, content)
            }
            RequestType::Post if path.resource.is_none() => {
                self.write(tree, origin, &path, request, content, false)
            }
            RequestType::Post => {
                let Ok(core) = mapping::to_core(&path) else {
                    return not_found(&path);
                };
                let arguments = String::from_utf8_lossy(&request.payload).into_owned();
                match tree.execute(origin, &core, &arguments) {
                    Ok(()) => status(ResponseType::Changed),
                    Err(e) => core_error(&e),
                }
            }
            RequestType::Delete => {
                let (Ok(core), Some(instance), None) =
                    (mapping::to_core(&path), path.instance, path.resource)
                else {
                    return error(
                        ResponseType::MethodNotAllowed,
                        "Delete takes an object instance",
                    );
                };
                match tree
                    .begin(origin)
                    .delete(core.object_id(), InstanceId(instance))
                    .commit()
                {
                    Ok(_) => {
                        access::forget(tree, core.object_id(), InstanceId(instance));
                        status(ResponseType::Deleted)
                    }
                    Err(e) => e
                        .faults
                        .first()
                        .map_or_else(|| status(ResponseType::InternalServerError), core_error),
                }
            }
            _ => error(ResponseType::MethodNotAllowed, "method not allowed"),
        }
    }

    /// Reads `path` in `accept` or the default format: text/plain (or
    /// octet-stream) for one resource, TLV otherwise.
    fn read(
        &self,
        tree: &Tree,
        path: &Lwm2mPath,
        accept: Option<ContentFormat>,
    ) -> Result<(Vec<u8>, ContentFormat), Packet> {
        let items = self.items(tree, path)?;
        // One value: a single resource, or one instance of a multiple one.
        let single_value = path.resource.is_some()
            && items.len() == 1
            && (items[0].path.index.is_none() || path.index.is_some());
        let format = match accept {
            Some(f) => f,
            None if single_value && matches!(items[0].value, Value::Opaque(_)) => {
                ContentFormat::Opaque
            }
            None if single_value => ContentFormat::Text,
            None => ContentFormat::Tlv,
        };
        let payload = format::encode(format, path, &items).map_err(|e| format_error(&e))?;
        Ok((payload, format))
    }

    /// The values at `path`, as this server may read them: an instance it
    /// has no Read right on is 4.01, and left out of an object-level read.
    fn items(&self, tree: &Tree, path: &Lwm2mPath) -> Result<Vec<Item>, Packet> {
        let origin = Origin::Server(self.config.short_server_id);
        let core = mapping::to_core(path).map_err(|_| not_found(path))?;
        if let Some(refused) = self.refused(tree, path, Operation::Read) {
            return Err(refused);
        }
        let mut items = Vec::new();
        let mut failure = None;
        if let Some(resource) = core.resource_id() {
            let Some(instance) = core.instance_id() else {
                return Err(not_found(path));
            };
            let whole = Path::resource(core.object_id(), instance, resource);
            match tree.read(origin, &whole) {
                Ok(value) => push_items(&mut items, path, value),
                Err(e) => return Err(core_error(&e)),
            }
            if let Some(index) = path.index {
                items.retain(|i: &Item| i.path.index == Some(index));
                if items.is_empty() {
                    return Err(not_found(path));
                }
            }
        } else {
            let walked = tree.walk(origin, &core, &mut |p, value| match value {
                Ok(value) => {
                    if let Some(lwm2m) = mapping::from_core(&p) {
                        push_items(&mut items, &lwm2m, value);
                    }
                }
                Err(e) => failure = Some(e),
            });
            if let Err(e) = walked {
                return Err(core_error(&e));
            }
            if let Some(e) = failure {
                return Err(core_error(&e));
            }
            if path.instance.is_none() {
                let ssid = self.config.short_server_id;
                let before = items.len();
                // Judged once per instance, not per value.
                let mut verdicts = HashMap::new();
                items.retain(|i| {
                    *verdicts.entry(i.path.instance).or_insert_with(|| {
                        access::allowed(
                            tree,
                            ssid,
                            core.object_id(),
                            i.path.instance.map(InstanceId),
                            Operation::Read,
                        )
                    })
                });
                if before > 0 && items.is_empty() {
                    return Err(error(
                        ResponseType::Unauthorized,
                        &format!("no instance of {path} may be read by server {ssid}"),
                    ));
                }
            }
        }
        Ok(items)
    }

    /// 4.01 when the Access Control object denies `operation` on `path`'s
    /// instance (or, without one, Create on its object) to this server.
    fn refused(&self, tree: &Tree, path: &Lwm2mPath, operation: Operation) -> Option<Packet> {
        if path.object == dm_core::catalog::security::ID.0 {
            return Some(security_hidden());
        }
        let core = mapping::to_core(path).ok()?;
        // An object-level read is filtered per instance instead.
        if path.instance.is_none() && operation != Operation::Create {
            return None;
        }
        let ssid = self.config.short_server_id;
        (!access::allowed(
            tree,
            ssid,
            core.object_id(),
            path.instance.map(InstanceId),
            operation,
        ))
        .then(|| {
            error(
                ResponseType::Unauthorized,
                &format!("server {ssid} has no {operation:?} right on {path}"),
            )
        })
    }

    /// The attributes in force for an observation: a composite one uses
    /// the server's default periods (its paths may carry different ones).
    fn observation_attributes(&self, tree: &Tree, o: &Observation) -> ObserveAttributes {
        match o.composite {
            Some(_) => self.attributes(
                tree,
                &Lwm2mPath {
                    object: dm_core::catalog::server::ID.0,
                    instance: None,
                    resource: None,
                    index: None,
                },
            ),
            None => self.attributes(tree, &o.path),
        }
    }

    /// The values of several paths, named in full (Read-Composite). A path
    /// that does not exist is left out; 4.04 only when none exists.
    fn read_composite(
        &self,
        tree: &Tree,
        paths: &[Lwm2mPath],
        format: ContentFormat,
    ) -> Result<Vec<u8>, Packet> {
        let mut items = Vec::new();
        let mut found = false;
        for path in paths {
            match self.items(tree, path) {
                Ok(mut more) => {
                    found = true;
                    items.append(&mut more);
                }
                Err(response) if code_of(&response) == Some(ResponseType::NotFound) => {}
                Err(response) => return Err(response),
            }
        }
        if !found {
            return Err(error(ResponseType::NotFound, "none of the paths exists"));
        }
        format::encode_composite(format, &items).map_err(|e| format_error(&e))
    }

    /// Read-Composite and Observe-Composite (FETCH), Write-Composite
    /// (iPATCH) on the root path (LwM2M Transport §6.4).
    fn serve_composite(&mut self, tree: &mut Tree, now: Instant, request: &Packet) -> Packet {
        if request
            .get_option(CoapOption::UriPath)
            .is_some_and(|p| p.iter().any(|segment| !segment.is_empty()))
        {
            return error(
                ResponseType::MethodNotAllowed,
                "composite operations target /",
            );
        }
        let number = |option| {
            request
                .get_first_option(option)
                .map(|v| option_number(v))
                .map(|n| {
                    u16::try_from(n)
                        .ok()
                        .and_then(ContentFormat::from_number)
                        .ok_or(n)
                })
        };
        let content = match number(CoapOption::ContentFormat) {
            // LwM2M CBOR carries values, not bare names: iPATCH only.
            Some(Ok(ContentFormat::LwM2mCbor))
                if request.header.code == MessageClass::Request(RequestType::IPatch) =>
            {
                ContentFormat::LwM2mCbor
            }
            Some(Ok(f @ (ContentFormat::SenmlJson | ContentFormat::SenmlCbor))) => f,
            Some(Ok(f)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {} cannot name several paths", f.number()),
                );
            }
            Some(Err(n)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {n}"),
                );
            }
            None => {
                return error(
                    ResponseType::BadRequest,
                    "a composite needs a Content-Format",
                );
            }
        };
        let origin = Origin::Server(self.config.short_server_id);
        if request.header.code == MessageClass::Request(RequestType::IPatch) {
            let items = match format::decode_composite(content, &request.payload, &|p| type_of(p)) {
                Ok(items) => items,
                Err(e) => return format_error(&e),
            };
            if let Some(refused) = items
                .iter()
                .find_map(|i| self.refused(tree, &i.path, Operation::Write))
            {
                return refused;
            }
            // All or nothing, like any write (LwM2M Core §6.3.8).
            let mut tx = tree.begin(origin);
            for item in &items {
                if let Ok(core) = mapping::to_core(&item.path) {
                    tx.set(core, item.value.clone());
                }
            }
            return match tx.commit() {
                Ok(_) => status(ResponseType::Changed),
                Err(e) => e
                    .faults
                    .first()
                    .map_or_else(|| status(ResponseType::InternalServerError), core_error),
            };
        }
        let accept = match number(CoapOption::Accept) {
            None => content,
            Some(Ok(
                f
                @ (ContentFormat::SenmlJson | ContentFormat::SenmlCbor | ContentFormat::LwM2mCbor),
            )) => f,
            Some(Ok(f)) => {
                return error(
                    ResponseType::NotAcceptable,
                    &format!("content format {} cannot carry a composite", f.number()),
                );
            }
            Some(Err(n)) => {
                return error(
                    ResponseType::NotAcceptable,
                    &format!("content format {n} is not served"),
                );
            }
        };
        let paths = match format::decode_names(content, &request.payload) {
            Ok(paths) if !paths.is_empty() => fold_paths(paths),
            Ok(_) => return error(ResponseType::BadRequest, "no path named"),
            Err(e) => return format_error(&e),
        };
        let payload = match self.read_composite(tree, &paths, accept) {
            Ok(payload) => payload,
            Err(response) => return response,
        };
        let mut response = status(ResponseType::Content);
        response.add_option(CoapOption::ContentFormat, content_format(accept));
        let token = request.get_token().to_vec();
        match request
            .get_first_option(CoapOption::Observe)
            .map(|v| option_number(v))
        {
            Some(0)
                if self.observations.len() < MAX_OBSERVATIONS
                    || self.observations.iter().any(|o| o.token == token) =>
            {
                self.observations.retain(|o| o.token != token);
                self.observations.push(Observation {
                    token,
                    path: paths[0],
                    format: accept,
                    sequence: 0,
                    last_sent: now,
                    dirty: false,
                    last_value: None,
                    last_evaluated: now,
                    composite: Some(paths),
                });
                response.set_observe_value(0);
            }
            Some(1) => self.observations.retain(|o| o.token != token),
            _ => {}
        }
        response.payload = payload;
        response
    }

    /// Send (LwM2M Core §6.4.1.1): the values of `paths` to the server,
    /// unasked, as SenML CBOR in a POST to /dp. Refused while not
    /// registered or while the server's Mute Send (/1/x/23) is true.
    pub fn send(&mut self, tree: &Tree, now: Instant, paths: &[Lwm2mPath]) -> Result<(), String> {
        if !self.is_registered() {
            return Err("not registered".into());
        }
        if self.server_value(tree, dm_core::catalog::server::MUTE_SEND)
            == Some(Value::Boolean(true))
        {
            return Err("the server muted Send (Mute Send is true)".into());
        }
        let payload = self
            .read_composite(tree, paths, ContentFormat::SenmlCbor)
            .map_err(|response| String::from_utf8_lossy(&response.payload).into_owned())?;
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.add_option(CoapOption::UriPath, b"dp".to_vec());
        packet.add_option(
            CoapOption::ContentFormat,
            content_format(ContentFormat::SenmlCbor),
        );
        packet.payload = payload;
        self.awake_until = now + AWAKE_WINDOW;
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Send);
        Ok(())
    }

    fn discover(&self, tree: &Tree, path: &Lwm2mPath) -> Packet {
        let Ok(core) = mapping::to_core(path) else {
            return not_found(path);
        };
        let Some(map) = mapping::object(path.object) else {
            return not_found(path);
        };
        let mut links = Vec::new();
        let attrs = |p: &Lwm2mPath| {
            let a = mapping::to_core(p)
                .map(|c| tree.attributes().observe(self.config.short_server_id, &c))
                .unwrap_or_default();
            attribute_text(&a)
        };
        let instances = match core.instance_id() {
            Some(i) => vec![i],
            None => tree.instances(core.object_id()).unwrap_or_default(),
        };
        if path.instance.is_none() {
            links.push(format!("</{}>{}", path.object, attrs(path)));
        }
        if let Some(refused) = self.refused(tree, path, Operation::Read) {
            return refused;
        }
        for instance in instances {
            if !access::allowed(
                tree,
                self.config.short_server_id,
                core.object_id(),
                Some(instance),
                Operation::Read,
            ) {
                continue;
            }
            let Ok(inst) = tree.instance(core.object_id(), instance) else {
                return not_found(path);
            };
            let inst_path = Lwm2mPath {
                instance: Some(instance.0),
                ..*path
            };
            if path.resource.is_none() {
                links.push(format!("<{inst_path}>{}", attrs(&inst_path)));
            }
            for resource in inst.resources() {
                let Some(r) = map.resources.iter().find(|r| r.resource == resource) else {
                    continue;
                };
                if path.resource.is_some_and(|want| want != r.lwm2m) {
                    continue;
                }
                let res_path = Lwm2mPath {
                    resource: Some(r.lwm2m),
                    ..inst_path
                };
                // A multiple resource says how many instances it has
                // (Core §5.4.2, the dim attribute).
                let dim = match inst.slot(resource) {
                    Some(dm_core::Slot::Stored(ResourceValue::Multiple(values))) => {
                        format!(";dim={}", values.len())
                    }
                    _ => String::new(),
                };
                links.push(format!("<{res_path}>{dim}{}", attrs(&res_path)));
            }
        }
        let mut response = status(ResponseType::Content);
        response.add_option(
            CoapOption::ContentFormat,
            content_format(ContentFormat::LinkFormat),
        );
        response.payload = links.join(",").into_bytes();
        response
    }

    fn write(
        &mut self,
        tree: &mut Tree,
        origin: Origin,
        path: &Lwm2mPath,
        request: &Packet,
        content: Option<Result<ContentFormat, u64>>,
        replace: bool,
    ) -> Packet {
        let format = match content {
            Some(Ok(f)) => f,
            Some(Err(n)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {n}"),
                );
            }
            None => return error(ResponseType::BadRequest, "a Write needs a Content-Format"),
        };
        if path.instance.is_none() {
            return error(
                ResponseType::MethodNotAllowed,
                "Write targets an instance or resource",
            );
        }
        let items = match format::decode(format, path, &request.payload, &|p| type_of(p)) {
            Ok(items) => items,
            Err(e) => return format_error(&e),
        };
        let held = if replace && path.resource.is_none() {
            held_multiples(tree, origin, path)
        } else {
            Vec::new()
        };
        let mut tx = tree.begin(origin);
        stage_items(&mut tx, path, &items, replace.then_some(&held[..]));
        match tx.commit() {
            Ok(_) => status(ResponseType::Changed),
            Err(e) => e
                .faults
                .first()
                .map_or_else(|| status(ResponseType::InternalServerError), core_error),
        }
    }

    fn create(
        &mut self,
        tree: &mut Tree,
        origin: Origin,
        path: &Lwm2mPath,
        request: &Packet,
        content: Option<Result<ContentFormat, u64>>,
    ) -> Packet {
        let Ok(core) = mapping::to_core(path) else {
            return not_found(path);
        };
        let format = match content {
            Some(Ok(f)) => f,
            Some(Err(n)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {n}"),
                );
            }
            None if request.payload.is_empty() => ContentFormat::Tlv,
            None => return error(ResponseType::BadRequest, "a Create needs a Content-Format"),
        };
        // The payload names the new instance (a TLV object instance, SenML
        // names with an instance) or holds bare resources (LwM2M Core
        // §5.4.5 allows both); then the tree chooses the number.
        let (items, chosen) = match format::decode(format, path, &request.payload, &|p| type_of(p))
        {
            Ok(items) => {
                let chosen = items.iter().find_map(|i| i.path.instance);
                (items, chosen)
            }
            Err(first) => {
                let placeholder = Lwm2mPath {
                    instance: Some(0),
                    ..*path
                };
                match format::decode(format, &placeholder, &request.payload, &|p| type_of(p)) {
                    Ok(items) => (items, None),
                    Err(_) => return format_error(&first),
                }
            }
        };
        let mut tx = tree.begin(origin);
        tx.create(core.object_id(), chosen.map(InstanceId));
        let committed = match tx.commit() {
            Ok(c) => c,
            Err(e) => {
                return e
                    .faults
                    .first()
                    .map_or_else(|| status(ResponseType::InternalServerError), core_error);
            }
        };
        let Some(instance) = committed.created.first().and_then(|p| p.instance_id()) else {
            return status(ResponseType::InternalServerError);
        };
        if !items.is_empty() {
            let base = Lwm2mPath {
                instance: Some(instance.0),
                ..*path
            };
            let items: Vec<Item> = items
                .into_iter()
                .map(|i| Item {
                    path: Lwm2mPath {
                        instance: Some(instance.0),
                        ..i.path
                    },
                    value: i.value,
                })
                .collect();
            let mut tx = tree.begin(origin);
            stage_items(&mut tx, &base, &items, None);
            if let Err(e) = tx.commit() {
                // Undo the creation: a Create is all or nothing too.
                let _ = tree
                    .begin(Origin::Agent)
                    .delete(core.object_id(), instance)
                    .commit();
                return e
                    .faults
                    .first()
                    .map_or_else(|| status(ResponseType::InternalServerError), core_error);
            }
        }
        // The creator owns the new instance (LwM2M Core §7.3.3).
        if let Err(e) = access::claim(
            tree,
            self.config.short_server_id,
            core.object_id(),
            instance,
        ) {
            // Not left without its owner: the Create fails whole.
            let _ = tree
                .begin(Origin::Agent)
                .delete(core.object_id(), instance)
                .commit();
            return error(
                ResponseType::InternalServerError,
                &format!("the new instance's access control: {e}"),
            );
        }
        let mut response = status(ResponseType::Created);
        response.add_option(
            CoapOption::LocationPath,
            path.object.to_string().into_bytes(),
        );
        response.add_option(
            CoapOption::LocationPath,
            instance.0.to_string().into_bytes(),
        );
        response
    }

    fn write_attributes(&mut self, tree: &mut Tree, path: &Lwm2mPath, request: &Packet) -> Packet {
        let Ok(core) = mapping::to_core(path) else {
            return not_found(path);
        };
        let mut attrs = mapping::to_core(path)
            .map(|c| tree.attributes().observe(self.config.short_server_id, &c))
            .unwrap_or_default();
        for query in request
            .get_option(CoapOption::UriQuery)
            .into_iter()
            .flatten()
        {
            let query = String::from_utf8_lossy(query);
            let (key, value) = query.split_once('=').unwrap_or((&query, ""));
            let bad = || {
                error(
                    ResponseType::BadRequest,
                    &format!("bad attribute {query:?}"),
                )
            };
            let int = |v: &str| {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.parse::<u32>().map(Some)
                }
            };
            let float = |v: &str| {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.parse::<f64>().map(Some)
                }
            };
            let result = match key {
                "pmin" => int(value).map(|v| attrs.pmin = v).map_err(|_| ()),
                "pmax" => int(value).map(|v| attrs.pmax = v).map_err(|_| ()),
                "epmin" => int(value).map(|v| attrs.epmin = v).map_err(|_| ()),
                "epmax" => int(value).map(|v| attrs.epmax = v).map_err(|_| ()),
                "gt" => float(value).map(|v| attrs.gt = v).map_err(|_| ()),
                "lt" => float(value).map(|v| attrs.lt = v).map_err(|_| ()),
                "st" => float(value).map(|v| attrs.st = v).map_err(|_| ()),
                _ => Err(()),
            };
            if result.is_err() {
                return bad();
            }
        }
        // LwM2M Core §5.1.2: pmin must not exceed pmax.
        if let (Some(pmin), Some(pmax)) = (attrs.pmin, attrs.pmax)
            && pmax > 0
            && pmin > pmax
        {
            return error(ResponseType::BadRequest, "pmin is greater than pmax");
        }
        match tree.set_observe_attributes(self.config.short_server_id, &core, attrs) {
            Ok(()) => status(ResponseType::Changed),
            Err(e) => core_error(&e),
        }
    }
}

/// How long to wait after the `failures`-th failed registration or
/// bootstrap in a row: 30 s, doubling, at most an hour.
pub fn retry_wait(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(7);
    Duration::from_secs((30u64 << doublings).min(3600))
}

/// The value of a single resource (or one instance of a multiple one),
/// of any type: what a sample compares.
fn single_value(tree: &Tree, path: &Lwm2mPath) -> Option<Value> {
    path.resource?;
    let core = mapping::to_core(&Lwm2mPath {
        index: None,
        ..*path
    })
    .ok()?;
    match tree.read(Origin::Agent, &core).ok()? {
        ResourceValue::Single(v) if path.index.is_none() => Some(v),
        ResourceValue::Multiple(values) => values.get(&path.index?).cloned(),
        ResourceValue::Single(_) => None,
    }
}

/// How often an observation's value is sampled without a change event:
/// every epmax when the server set it (its choice of evaluation period);
/// otherwise a value the tree computes at each read (no change events at
/// all) is sampled at pmin, never more than once a second nor more often
/// than epmin. `None`: it is not sampled (composites, stored values
/// without epmax).
fn sampling(attrs: &ObserveAttributes, o: &Observation, tree: &Tree) -> Option<Duration> {
    if o.composite.is_some() {
        return None;
    }
    let secs = |s: u32| Duration::from_secs(s.into());
    let epmax = attrs.epmax.filter(|e| *e > 0).map(secs);
    let live = o.path.resource.is_some()
        && mapping::to_core(&Lwm2mPath {
            index: None,
            ..o.path
        })
        .ok()
        .and_then(|core| {
            let instance = tree.instance(core.object_id(), core.instance_id()?).ok()?;
            instance.slot(core.resource_id()?).cloned()
        })
        .is_some_and(|slot| slot == dm_core::Slot::Live);
    epmax.or_else(|| {
        live.then(|| {
            secs(attrs.pmin.unwrap_or(0))
                .max(secs(attrs.epmin.unwrap_or(0)))
                .max(Duration::from_secs(1))
        })
    })
}

fn as_number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Integer(v) => Some(*v as f64),
        Value::Unsigned(v) => Some(*v as f64),
        Value::Float(v) => Some(*v),
        _ => None,
    }
}

/// Whether a change from `old` to `new` is to be notified under the
/// observation's change conditions (LwM2M Core §5.1.2): it crosses gt or
/// lt, or moves by at least st. With none of them set, every change is;
/// they apply to numbers only.
fn meets_change_conditions(
    attrs: &ObserveAttributes,
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    if attrs.gt.is_none() && attrs.lt.is_none() && attrs.st.is_none() {
        return true;
    }
    let (Some(old), Some(new)) = (as_number(old), as_number(new)) else {
        // Not numeric: the conditions do not apply.
        return true;
    };
    let crosses = |t: f64| (old > t) != (new > t) || (old < t) != (new < t);
    attrs.gt.is_some_and(crosses)
        || attrs.lt.is_some_and(crosses)
        || attrs.st.is_some_and(|st| (new - old).abs() >= st)
}

/// The writable multiple resources of an instance that hold values now.
fn held_multiples(tree: &Tree, origin: Origin, instance: &Lwm2mPath) -> Vec<Lwm2mPath> {
    let Ok(core) = mapping::to_core(instance) else {
        return Vec::new();
    };
    let (Some(schema), Some(id)) = (tree.schema(core.object_id()), core.instance_id()) else {
        return Vec::new();
    };
    schema
        .resources
        .iter()
        .filter(|r| r.multiple && r.access.writable())
        .map(|r| Path::resource(core.object_id(), id, r.id))
        .filter(|p| matches!(tree.read(origin, p), Ok(ResourceValue::Multiple(v)) if !v.is_empty()))
        .filter_map(|p| mapping::from_core(&p))
        .collect()
}

/// Stages written items (LwM2M Core §5.4.3). Replace (PUT): a multiple
/// resource written is replaced whole, and on an instance every writable
/// multiple resource the payload leaves out is emptied. Partial update
/// (POST): resource instances are added or changed one by one and the
/// others stay. `replace` holds, for a Replace, the multiple resources
/// that have values now (emptied unless the payload writes them).
fn stage_items(
    tx: &mut dm_core::tree::Transaction<'_>,
    base: &Lwm2mPath,
    items: &[Item],
    replace: Option<&[Lwm2mPath]>,
) {
    let mut multiple: HashMap<Lwm2mPath, std::collections::BTreeMap<u16, Value>> = HashMap::new();
    for item in items {
        let Ok(core) = mapping::to_core(&Lwm2mPath {
            index: None,
            ..item.path
        }) else {
            continue;
        };
        match item.path.index {
            Some(index) if base.index.is_none() && replace.is_some() => {
                multiple
                    .entry(Lwm2mPath {
                        index: None,
                        ..item.path
                    })
                    .or_default()
                    .insert(index, item.value.clone());
            }
            Some(index) => {
                if let (Some(i), Some(r)) = (core.instance_id(), core.resource_id()) {
                    tx.set(
                        Path::resource_instance(core.object_id(), i, r, index),
                        item.value.clone(),
                    );
                }
            }
            None => {
                tx.set(core, item.value.clone());
            }
        }
    }
    if let Some(held) = replace {
        for path in held {
            multiple.entry(*path).or_default();
        }
    }
    for (path, values) in multiple {
        if let Ok(core) = mapping::to_core(&path) {
            tx.set_multiple(core, values);
        }
    }
}

fn push_items(items: &mut Vec<Item>, path: &Lwm2mPath, value: ResourceValue) {
    match value {
        ResourceValue::Single(value) => items.push(Item {
            path: Lwm2mPath {
                index: None,
                ..*path
            },
            value,
        }),
        ResourceValue::Multiple(values) => {
            for (index, value) in values {
                items.push(Item {
                    path: Lwm2mPath {
                        index: Some(index),
                        ..*path
                    },
                    value,
                });
            }
        }
    }
}

/// The type of an LwM2M resource, from the generated catalog.
pub fn type_of(path: &Lwm2mPath) -> Option<ValueType> {
    let core = mapping::to_core(&Lwm2mPath {
        index: None,
        ..*path
    })
    .ok()?;
    let schema = dm_core::catalog::ALL
        .iter()
        .find(|o| o.id == core.object_id())?;
    Some(schema.resource(core.resource_id()?)?.value_type)
}

/// The paths of a composite request, each value named once: a path
/// named again, or under another path named in the same request, adds
/// nothing. A 1 MiB Read-Composite naming /3 a hundred thousand times
/// would otherwise read and encode the whole object as often. Order is
/// kept; linear in the number of paths.
fn fold_paths(paths: Vec<Lwm2mPath>) -> Vec<Lwm2mPath> {
    let named: std::collections::HashSet<Lwm2mPath> = paths.iter().copied().collect();
    let mut kept = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter(|p| {
            let ancestors = [
                (p.instance.is_some()).then_some(Lwm2mPath {
                    instance: None,
                    resource: None,
                    index: None,
                    ..*p
                }),
                (p.resource.is_some()).then_some(Lwm2mPath {
                    resource: None,
                    index: None,
                    ..*p
                }),
                (p.index.is_some()).then_some(Lwm2mPath { index: None, ..*p }),
            ];
            !ancestors.into_iter().flatten().any(|a| named.contains(&a)) && kept.insert(*p)
        })
        .collect()
}

/// Whether `outer` is `inner` or an ancestor of it.
fn covers(outer: &Lwm2mPath, inner: &Lwm2mPath) -> bool {
    outer.object == inner.object
        && (outer.instance.is_none() || outer.instance == inner.instance)
        && (outer.resource.is_none() || outer.resource == inner.resource)
        && (outer.index.is_none() || outer.index == inner.index)
}

/// The version an object is announced with in a registration with
/// `lwm2m=1.1`: the object versions that belong to that enabler version
/// (those Leshan's and Wakaama's 1.1 models have), not the newest ones the
/// catalog's resources come from. A server that does not know the
/// announced version of an object types its values as opaque (Leshan
/// read every /1 and /5 TLV value so when they were announced as 1.2). A
/// registration with `lwm2m=1.2` would announce the catalog's versions.
fn version_for_1_1(object: u16, catalog: &'static str) -> &'static str {
    match object {
        // Security and Server 1.1, Access Control 1.0, Device 1.1,
        // Connectivity Monitoring 1.2, Firmware Update 1.0.
        0 | 1 | 3 => "1.1",
        2 | 5 => "1.0",
        4 => "1.2",
        _ => catalog,
    }
}

/// The object links of a Register: every object the client serves except
/// Security (LwM2M Core §6.2.1), with versions other than 1.0, and their
/// instances.
pub fn object_links(tree: &Tree) -> String {
    let mut links = vec![format!(
        "</>;rt=\"oma.lwm2m\";ct={}",
        ContentFormat::SenmlJson.number()
    )];
    for map in mapping::OBJECTS {
        if map.object == dm_core::catalog::security::ID || tree.schema(map.object).is_none() {
            continue;
        }
        let instances = tree.instances(map.object).unwrap_or_default();
        let version = match version_for_1_1(map.lwm2m, map.version) {
            "1.0" => String::new(),
            version => format!(";ver={version}"),
        };
        links.push(format!("</{}>{version}", map.lwm2m));
        for instance in instances {
            links.push(format!("</{}/{}>", map.lwm2m, instance.0));
        }
    }
    links.join(",")
}

fn attribute_text(a: &ObserveAttributes) -> String {
    let mut out = String::new();
    for (key, value) in [
        ("pmin", a.pmin),
        ("pmax", a.pmax),
        ("epmin", a.epmin),
        ("epmax", a.epmax),
    ] {
        if let Some(v) = value {
            out.push_str(&format!(";{key}={v}"));
        }
    }
    for (key, value) in [("gt", a.gt), ("lt", a.lt), ("st", a.st)] {
        if let Some(v) = value {
            out.push_str(&format!(";{key}={v}"));
        }
    }
    out
}

fn request_path(request: &Packet) -> Result<Lwm2mPath, Packet> {
    let segments: Vec<String> = request
        .get_option(CoapOption::UriPath)
        .map(|values| {
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default();
    format!("/{}", segments.join("/"))
        .parse()
        .map_err(|_| error(ResponseType::NotFound, "not an LwM2M path"))
}

/// /5/0/3 State values (LwM2M object 5).
mod crate_state {
    pub const IDLE: i64 = 0;
    pub const DOWNLOADING: i64 = 1;
    pub const DOWNLOADED: i64 = 2;
}

/// /5/0/5 Update Result for a package that could not be kept: 2 (not
/// enough storage) or 8 (failed).
fn package_result(e: &PackageError) -> i64 {
    match e {
        PackageError::NoSpace(_) => 2,
        PackageError::Failed(_) => 8,
    }
}

fn package_failure(e: &PackageError) -> Packet {
    match e {
        PackageError::NoSpace(m) => error(ResponseType::RequestEntityTooLarge, m),
        PackageError::Failed(m) => error(ResponseType::InternalServerError, m),
    }
}

fn too_large() -> Packet {
    let mut response = error(
        ResponseType::RequestEntityTooLarge,
        "request body too large",
    );
    response.add_option(CoapOption::Size1, encode_uint(MAX_BODY as u64));
    response
}

/// A GET for `path`, as the server would send it.
fn get_request(path: &Lwm2mPath) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Request(RequestType::Get);
    let segments = [Some(path.object), path.instance, path.resource, path.index];
    for segment in segments.into_iter().map_while(|s| s) {
        packet.add_option(CoapOption::UriPath, segment.to_string().into_bytes());
    }
    packet
}

fn code_of(packet: &Packet) -> Option<ResponseType> {
    match packet.header.code {
        MessageClass::Response(code) => Some(code),
        _ => None,
    }
}

fn options_text(packet: &Packet, option: CoapOption) -> String {
    packet
        .get_option(option)
        .map(|values| {
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

fn content_format(format: ContentFormat) -> Vec<u8> {
    let n = format.number();
    if n == 0 {
        Vec::new()
    } else if n < 256 {
        vec![n as u8]
    } else {
        n.to_be_bytes().to_vec()
    }
}

fn status(code: ResponseType) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet
}

/// An error response with a diagnostic payload (RFC 7252 §5.5.2).
fn error(code: ResponseType, diagnostic: &str) -> Packet {
    let mut packet = status(code);
    packet.payload = diagnostic.as_bytes().to_vec();
    packet
}

/// What a management server hears of the Security object (/0): it "MUST
/// NOT be accessible by any other LwM2M Server" than the bootstrap server
/// (object 0's definition), so for a server it is not there, as Leshan's
/// client answers it (4.04), whatever the operation and however many
/// server accounts the client holds.
fn security_hidden() -> Packet {
    error(
        ResponseType::NotFound,
        "/0 is served to the bootstrap server only",
    )
}

fn not_found(path: &Lwm2mPath) -> Packet {
    error(ResponseType::NotFound, &format!("{path} not found"))
}

/// The CoAP code of a core error: the one mapping of this adapter.
pub fn core_error(e: &Error) -> Packet {
    let code = match e {
        Error::ObjectNotFound(_) | Error::InstanceNotFound(_) | Error::ResourceNotFound(_) => {
            ResponseType::NotFound
        }
        Error::NotReadable(_)
        | Error::NotWritable(_)
        | Error::NotExecutable(_)
        | Error::FixedInstances(_) => ResponseType::MethodNotAllowed,
        Error::NotSupported(_) => ResponseType::MethodNotAllowed,
        Error::AccessDenied { .. } => ResponseType::Unauthorized,
        Error::InvalidValue { .. } | Error::Rejected { .. } | Error::InstanceExists(_) => {
            ResponseType::BadRequest
        }
        Error::InstancesExhausted(_) => ResponseType::RequestEntityTooLarge,
        // Core's Create has no code for "full": 5.00, with the limit in
        // the diagnostic.
        Error::TooManyInstances { .. } => ResponseType::InternalServerError,
        Error::PlatformUnavailable(_) => ResponseType::ServiceUnavailable,
        Error::PlatformDenied(_) => ResponseType::Unauthorized,
        Error::PlatformInvalid(_) => ResponseType::BadRequest,
        _ => ResponseType::InternalServerError,
    };
    error(code, &e.to_string())
}

fn format_error(e: &FormatError) -> Packet {
    let code = match e {
        FormatError::Malformed(_) => ResponseType::BadRequest,
        FormatError::NotAcceptable(_) => ResponseType::NotAcceptable,
        FormatError::Unsupported(_) => ResponseType::UnsupportedContentFormat,
    };
    error(code, &e.to_string())
}
