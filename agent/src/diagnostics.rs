//! Runs the diagnostic tests clients request (`dm_objects::diagnostics`):
//! each on a thread of its own beside the protocols, one per kind at a
//! time, its results written back with the final DiagnosticsState.
//!
//! A test the ACS requested starts once its session has ended (TR-181
//! DiagnosticsState: the CPE SHOULD wait until after the session). A new
//! request of the same kind (Requested written again) replaces a running
//! test; DiagnosticsState going to None (an input changed) or Canceled
//! stops it. A test requested before a restart runs again after it: the
//! state was saved as Requested, and the ACS is still owed its "8
//! DIAGNOSTICS COMPLETE".
//!
//! Which request a test answers is the sequence number of the change
//! that asked for it. Its results are written by the run loop
//! ([`Runner::finish`]), under the tree's lock, only when every change
//! committed so far has been seen and no later request or cancel came: a
//! test that ends just as it is asked for again never reports as the new
//! one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::catalog::{
    download_diagnostics, ethernet, ip_interface, ip_ping, ns_lookup, server_selection,
    trace_route, udp_echo, upload_diagnostics,
};
use dm_core::{
    Change, ChangeKind, InstanceId, ObjectId, Origin, Path, ResourceId, ResourceValue, Tree, Value,
    lock,
};
use dm_platform::linux::nslookup::{self, Lookup, LookupRequest, LookupStatus};
use dm_platform::linux::ping::{self, DiagnosticError, Family, PingRequest, PingResult};
use dm_platform::linux::traceroute::{self, TraceRequest, TraceResult};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// A test's final DiagnosticsState and the results to write with it.
type Outcome = (&'static str, Vec<(ResourceId, ResourceValue)>);

/// A test that ended, for [`Runner::finish`].
pub struct Finished {
    object: ObjectId,
    /// The request it answers.
    request: u64,
    outcome: Outcome,
}

struct Running {
    cancel: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Runner {
    tree: Arc<Mutex<Tree>>,
    cwmp: Option<Arc<Mutex<dm_cwmp_tokio::Status>>>,
    running: HashMap<ObjectId, Running>,
    /// Per kind, the sequence of the change that last asked for a test or
    /// stopped one: only a test answering it may write results.
    current: HashMap<ObjectId, u64>,
    finished: mpsc::UnboundedSender<Finished>,
    /// Tests that ended while changes were still to be seen.
    deferred: Vec<Finished>,
}

fn state_path(object: ObjectId) -> Option<Path> {
    let kind = dm_objects::diagnostics::kind(object)?;
    Some(Path::resource(object, InstanceId(0), kind.state))
}

fn read(tree: &Tree, path: Path) -> Option<Value> {
    match tree.read(Origin::Agent, &path) {
        Ok(ResourceValue::Single(v)) => Some(v),
        _ => None,
    }
}

impl Runner {
    /// The runner, and where the tests it starts report their end (to be
    /// given to [`Runner::finish`] by the run loop).
    pub fn new(
        tree: Arc<Mutex<Tree>>,
        cwmp: Option<Arc<Mutex<dm_cwmp_tokio::Status>>>,
    ) -> (Runner, mpsc::UnboundedReceiver<Finished>) {
        let (finished, ended) = mpsc::unbounded_channel();
        let runner = Runner {
            tree,
            cwmp,
            running: HashMap::new(),
            current: HashMap::new(),
            finished,
            deferred: Vec::new(),
        };
        (runner, ended)
    }

    /// Starts the tests a restart interrupted.
    pub fn resume(&mut self) {
        for kind in dm_objects::diagnostics::KINDS {
            let Some(path) = state_path(kind.schema.id) else {
                continue;
            };
            let (requested, sequence) = {
                let tree = lock(&self.tree);
                (
                    matches!(read(&tree, path), Some(Value::String(s)) if s == "Requested"),
                    tree.last_sequence(),
                )
            };
            if requested {
                info!(
                    test = kind.schema.name,
                    "resuming a diagnostic test a restart interrupted"
                );
                self.start(kind.schema.id, Origin::Agent, sequence);
            }
        }
    }

    /// Acts on a change of the tree: a DiagnosticsState a client set to
    /// Requested starts its test, None or Canceled stops it.
    pub fn observe(&mut self, change: &Change) {
        let ChangeKind::Value(ResourceValue::Single(Value::String(state))) = &change.kind else {
            return;
        };
        let object = change.path.object_id();
        if state_path(object) != Some(change.path) || !change.origin.is_client() {
            return;
        }
        match state.as_str() {
            "Requested" => self.start(object, change.origin, change.sequence),
            "None" | "Canceled" => {
                self.current.insert(object, change.sequence);
                if let Some(running) = self.running.remove(&object) {
                    info!(test = %object, state, "diagnostic test stopped");
                    running.cancel.store(true, Ordering::Relaxed);
                    running.task.abort();
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, object: ObjectId, origin: Origin, request: u64) {
        if let Some(previous) = self.running.remove(&object) {
            previous.cancel.store(true, Ordering::Relaxed);
            previous.task.abort();
        }
        self.current.insert(object, request);
        let cancel = Arc::new(AtomicBool::new(false));
        let tree = Arc::clone(&self.tree);
        let session = (origin == Origin::Acs).then(|| self.cwmp.clone()).flatten();
        let stop = Arc::clone(&cancel);
        let finished = self.finished.clone();
        let task = tokio::spawn(async move {
            if let Some(status) = session {
                session_over(&status).await;
            }
            if let Some(outcome) = run(object, tree, stop).await {
                let _ = finished.send(Finished {
                    object,
                    request,
                    outcome,
                });
            }
        });
        self.running.insert(object, Running { cancel, task });
    }

    /// Writes a test's results, once every change up to `seen` (the last
    /// the run loop handled) is all there is: else it waits for
    /// [`Runner::retry`] after the next ones.
    pub fn finish(&mut self, done: Finished, seen: u64) {
        let mut tree = lock(&self.tree);
        if tree.last_sequence() > seen {
            self.deferred.push(done);
            return;
        }
        self.running.remove(&done.object);
        if self.current.get(&done.object) != Some(&done.request) {
            return;
        }
        write_results(&mut tree, done);
    }

    /// [`Runner::finish`] for the tests that ended before the changes the
    /// run loop has now seen.
    pub fn retry(&mut self, seen: u64) {
        for done in std::mem::take(&mut self.deferred) {
            self.finish(done, seen);
        }
    }
}

/// Writes the results and the final state, as the agent; should the
/// tree refuse them, the state alone as Error_Internal, so that no test
/// stays Requested for ever.
fn write_results(tree: &mut Tree, done: Finished) {
    let Some(kind) = dm_objects::diagnostics::kind(done.object) else {
        return;
    };
    let at = |r| Path::resource(done.object, InstanceId(0), r);
    if !matches!(read(tree, at(kind.state)), Some(Value::String(s)) if s == "Requested") {
        return;
    }
    let (state, results) = done.outcome;
    let mut tx = tree.begin(Origin::Agent);
    for (resource, value) in results {
        match value {
            ResourceValue::Single(value) => tx.set(at(resource), value),
            ResourceValue::Multiple(values) => tx.set_multiple(at(resource), values),
        };
    }
    tx.set(at(kind.state), Value::String(state.into()));
    if let Err(e) = tx.commit() {
        warn!(test = kind.schema.name, "results not saved: {e}");
        let fallback = tree
            .begin(Origin::Agent)
            .set(at(kind.state), Value::String("Error_Internal".into()))
            .commit();
        if let Err(e) = fallback {
            warn!(test = kind.schema.name, "state not saved: {e}");
        }
    }
}

/// Waits until no CWMP session is open. The wake-up is taken before the
/// state is looked at, so a session that ends in between is not missed.
async fn session_over(status: &Mutex<dm_cwmp_tokio::Status>) {
    let ended = lock(status).ended.0.clone();
    loop {
        let notified = ended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !lock(status).in_session {
            return;
        }
        notified.await;
    }
}

/// A test to run, its inputs read from the tree.
enum Job {
    Ping(PingRequest),
    Trace(TraceRequest),
    Lookup(LookupRequest),
    /// One ping per host of the list, the same settings for each.
    Select(Vec<String>, PingRequest),
    /// A download or an upload; whether each connection's results are
    /// kept.
    Throughput(crate::throughput::Request, bool),
    /// A UDP echo test; whether each packet's results are kept.
    Echo(crate::udp_echo::EchoRequest, bool),
}

/// What a kind's inputs have in common (TR-181 names them alike).
struct Common {
    host: String,
    family: Family,
    interface: Option<String>,
}

fn common(
    tree: &Tree,
    object: ObjectId,
    host: ResourceId,
    version: Option<ResourceId>,
    interface: ResourceId,
) -> Common {
    let at = |r| Path::resource(object, InstanceId(0), r);
    let interface = match read(tree, at(interface)) {
        Some(Value::ObjectLink(link)) => interface_name(tree, link),
        _ => None,
    };
    Common {
        host: match read(tree, at(host)) {
            Some(Value::String(host)) => host.trim().to_owned(),
            _ => String::new(),
        },
        family: match version.and_then(|v| read(tree, at(v))) {
            Some(Value::String(v)) if v == "IPv4" => Family::V4,
            Some(Value::String(v)) if v == "IPv6" => Family::V6,
            _ => Family::Any,
        },
        interface,
    }
}

/// The kernel's name of the interface a test's Interface names: an IP
/// interface's, or an Ethernet interface's or link's (the same kernel
/// interface);
/// another row (a Wi-Fi profile) names none, and the route decides, as
/// with no row.
pub fn interface_name(tree: &Tree, link: dm_core::ObjectLink) -> Option<String> {
    if link == dm_core::ObjectLink::NULL {
        return None;
    }
    let name = if link.object == ip_interface::ID {
        Some(ip_interface::NAME)
    } else if link.object == ethernet::ID {
        Some(ethernet::NAME)
    } else if link.object == dm_core::catalog::ethernet_link::ID {
        Some(dm_core::catalog::ethernet_link::NAME)
    } else {
        None
    };
    let found = name.and_then(|name| {
        match read(
            tree,
            Path::resource(link.object, InstanceId(link.instance), name),
        ) {
            Some(Value::String(name)) if !name.is_empty() => Some(name),
            _ => None,
        }
    });
    if found.is_none() {
        warn!(
            row = %Path::instance(link.object, InstanceId(link.instance)),
            "the test's Interface names no network interface: the route decides"
        );
    }
    found
}

/// The send buffer of a throughput test's connections.
const SEND_BUFFER: usize = 128 * 1024;

/// A test's socket towards `address`: bound to `interface` (the device
/// itself where the kernel lets us, root; its address always) and marked
/// with `dscp`.
pub fn test_socket(
    address: std::net::SocketAddr,
    kind: socket2::Type,
    interface: Option<&str>,
    dscp: u8,
) -> Result<socket2::Socket, DiagnosticError> {
    use socket2::{Domain, Socket};
    let internal =
        |what: &str, e: std::io::Error| DiagnosticError::Internal(format!("{what}: {e}"));
    let socket =
        Socket::new(Domain::for_address(address), kind, None).map_err(|e| internal("socket", e))?;
    if kind == socket2::Type::STREAM {
        // A small send buffer: an upload's bytes count as sent when they
        // leave, not when a few MiB of kernel buffer take them (which
        // would also leave the test silent while they drain).
        let _ = socket.set_send_buffer_size(SEND_BUFFER);
    }
    if let Some(interface) = interface {
        let source = ping::source_of(interface, address.is_ipv6()).ok_or_else(|| {
            DiagnosticError::Other(format!("{interface} has no address of {address}'s family"))
        })?;
        let _ = socket.bind_device(Some(interface.as_bytes()));
        socket
            .bind(&std::net::SocketAddr::new(source, 0).into())
            .map_err(|e| internal("bind", e))?;
    }
    let tos = u32::from(dscp) << 2;
    if address.is_ipv6() {
        socket.set_tclass_v6(tos)
    } else {
        socket.set_tos_v4(tos)
    }
    .map_err(|e| internal("DSCP", e))?;
    Ok(socket)
}

fn unsigned(tree: &Tree, object: ObjectId, resource: ResourceId, default: u64) -> u64 {
    match read(tree, Path::resource(object, InstanceId(0), resource)) {
        Some(Value::Unsigned(u)) => u,
        Some(Value::Integer(i)) => u64::try_from(i).unwrap_or(default),
        _ => default,
    }
}

fn job(tree: &Tree, object: ObjectId) -> Option<Job> {
    if object == ip_ping::ID {
        use ip_ping::*;
        let c = common(tree, ID, HOST, Some(PROTOCOL_VERSION), INTERFACE);
        return Some(Job::Ping(PingRequest {
            host: c.host,
            family: c.family,
            interface: c.interface,
            // One echo's sequence number each.
            repetitions: u32::try_from(unsigned(tree, ID, NUMBER_OF_REPETITIONS, 3))
                .unwrap_or(u32::MAX)
                .min(u32::from(u16::MAX)),
            timeout: Duration::from_millis(unsigned(tree, ID, TIMEOUT, 1000)),
            size: usize::try_from(unsigned(tree, ID, DATA_BLOCK_SIZE, 64)).unwrap_or(64),
            dscp: u8::try_from(unsigned(tree, ID, DSCP, 0)).unwrap_or(0),
        }));
    }
    if object == trace_route::ID {
        use trace_route::*;
        let c = common(tree, ID, HOST, Some(PROTOCOL_VERSION), INTERFACE);
        return Some(Job::Trace(TraceRequest {
            host: c.host,
            family: c.family,
            interface: c.interface,
            tries: u32::try_from(unsigned(tree, ID, NUMBER_OF_TRIES, 3))
                .unwrap_or(3)
                .min(10),
            timeout: Duration::from_millis(unsigned(tree, ID, TIMEOUT, 5000)),
            size: usize::try_from(unsigned(tree, ID, DATA_BLOCK_SIZE, 32))
                .unwrap_or(32)
                .min(65_000),
            dscp: u8::try_from(unsigned(tree, ID, DSCP, 0)).unwrap_or(0),
            max_hops: u8::try_from(unsigned(tree, ID, MAX_HOP_COUNT, 30)).unwrap_or(u8::MAX),
        }));
    }
    if object == server_selection::ID {
        use server_selection::*;
        let c = common(tree, ID, HOST_LIST, Some(PROTOCOL_VERSION), INTERFACE);
        let hosts = match read(tree, Path::resource(ID, InstanceId(0), HOST_LIST)) {
            Some(Value::String(list)) => list
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .take(10)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        return Some(Job::Select(
            hosts,
            PingRequest {
                host: String::new(),
                family: c.family,
                interface: c.interface,
                repetitions: u32::try_from(unsigned(tree, ID, NUMBER_OF_REPETITIONS, 3))
                    .unwrap_or(3)
                    .min(100),
                timeout: Duration::from_millis(unsigned(tree, ID, TIMEOUT, 1000)),
                size: 32,
                dscp: 0,
            },
        ));
    }
    if object == download_diagnostics::ID || object == upload_diagnostics::ID {
        let download = object == download_diagnostics::ID;
        let (url, connections, per_connection) = if download {
            use download_diagnostics::*;
            (
                DOWNLOAD_URL,
                NUMBER_OF_CONNECTIONS,
                ENABLE_PER_CONNECTION_RESULTS,
            )
        } else {
            use upload_diagnostics::*;
            (
                UPLOAD_URL,
                NUMBER_OF_CONNECTIONS,
                ENABLE_PER_CONNECTION_RESULTS,
            )
        };
        let (interface, version, dscp) = if download {
            use download_diagnostics::*;
            (INTERFACE, PROTOCOL_VERSION, DSCP)
        } else {
            use upload_diagnostics::*;
            (INTERFACE, PROTOCOL_VERSION, DSCP)
        };
        let c = common(tree, object, url, Some(version), interface);
        let at = |r| Path::resource(object, InstanceId(0), r);
        return Some(Job::Throughput(
            crate::throughput::Request {
                url: c.host,
                upload: (!download)
                    .then(|| unsigned(tree, object, upload_diagnostics::TEST_FILE_LENGTH, 0)),
                connections: u32::try_from(unsigned(tree, object, connections, 1))
                    .unwrap_or(1)
                    .clamp(1, 4),
                interface: c.interface,
                family: c.family,
                dscp: u8::try_from(unsigned(tree, object, dscp, 0)).unwrap_or(0),
            },
            matches!(read(tree, at(per_connection)), Some(Value::Boolean(true))),
        ));
    }
    if object == udp_echo::ID {
        use udp_echo::*;
        let c = common(tree, ID, HOST, Some(PROTOCOL_VERSION), INTERFACE);
        return Some(Job::Echo(
            crate::udp_echo::EchoRequest {
                host: c.host,
                port: u16::try_from(unsigned(tree, ID, PORT, 0)).unwrap_or(0),
                repetitions: u32::try_from(unsigned(tree, ID, NUMBER_OF_REPETITIONS, 1))
                    .unwrap_or(1)
                    .min(10_000),
                timeout: Duration::from_millis(unsigned(tree, ID, TIMEOUT, 5000)),
                size: usize::try_from(unsigned(tree, ID, DATA_BLOCK_SIZE, 24)).unwrap_or(24),
                dscp: u8::try_from(unsigned(tree, ID, DSCP, 0)).unwrap_or(0),
                spacing: Duration::from_millis(unsigned(tree, ID, INTER_TRANSMISSION_TIME, 1000)),
                family: c.family,
                interface: c.interface,
            },
            matches!(
                read(
                    tree,
                    Path::resource(ID, InstanceId(0), ENABLE_INDIVIDUAL_PACKET_RESULTS)
                ),
                Some(Value::Boolean(true))
            ),
        ));
    }
    if object == ns_lookup::ID {
        use ns_lookup::*;
        let c = common(tree, ID, HOST_NAME, None, INTERFACE);
        let server = match read(tree, Path::resource(ID, InstanceId(0), DNS_SERVER)) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        };
        return Some(Job::Lookup(LookupRequest {
            host_name: c.host,
            server,
            interface: c.interface,
            timeout: Duration::from_millis(unsigned(tree, ID, TIMEOUT, 5000)),
            repetitions: u32::try_from(unsigned(tree, ID, NUMBER_OF_REPETITIONS, 1))
                .unwrap_or(1)
                .min(100),
        }));
    }
    None
}

/// TR-181's Error_ state for a test that could not run.
fn error_state(e: &DiagnosticError) -> &'static str {
    match e {
        DiagnosticError::CannotResolveHostName(_) => "Error_CannotResolveHostName",
        DiagnosticError::NoRouteToHost(_) => "Error_NoRouteToHost",
        DiagnosticError::Internal(_) => "Error_Internal",
        DiagnosticError::Other(_) => "Error_Other",
    }
}

/// The results as TR-181 has them: ms and µs, 0 when nothing answered.
fn ping_results(result: &PingResult) -> Vec<(ResourceId, Value)> {
    use ip_ping::*;
    let micros: Vec<u64> = result
        .times
        .iter()
        .map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX))
        .collect();
    let (min, max) = (
        micros.iter().copied().min().unwrap_or(0),
        micros.iter().copied().max().unwrap_or(0),
    );
    let average = if micros.is_empty() {
        0
    } else {
        micros.iter().sum::<u64>() / micros.len() as u64
    };
    let unsigned = |v: u64| Value::Unsigned(v.min(u64::from(u32::MAX)));
    // Milliseconds, rounded.
    let ms = |us: u64| unsigned(us.saturating_add(500) / 1000);
    vec![
        (
            IP_ADDRESS_USED,
            Value::String(result.source.map(|a| a.to_string()).unwrap_or_default()),
        ),
        (SUCCESS_COUNT, unsigned(u64::from(result.success))),
        (FAILURE_COUNT, unsigned(u64::from(result.failure))),
        (AVERAGE_RESPONSE_TIME, ms(average)),
        (MINIMUM_RESPONSE_TIME, ms(min)),
        (MAXIMUM_RESPONSE_TIME, ms(max)),
        (AVERAGE_RESPONSE_TIME_DETAILED, unsigned(average)),
        (MINIMUM_RESPONSE_TIME_DETAILED, unsigned(min)),
        (MAXIMUM_RESPONSE_TIME_DETAILED, unsigned(max)),
    ]
}

/// Milliseconds, rounded.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros().saturating_add(500) / 1000).unwrap_or(u64::MAX)
}

/// The route as TR-181 has it: one RouteHops row per hop, the addresses
/// as names (no reverse lookup is made), each probe's time in ms.
fn trace_results(result: &TraceResult) -> Vec<(ResourceId, ResourceValue)> {
    use trace_route::*;
    let column = |value: &dyn Fn(&traceroute::Hop) -> Value| {
        ResourceValue::Multiple((0u16..).zip(result.hops.iter().map(value)).collect())
    };
    let address =
        |h: &traceroute::Hop| Value::String(h.address.map(|a| a.to_string()).unwrap_or_default());
    // The destination's round trip, the last hop's average.
    let response = result
        .hops
        .last()
        .filter(|_| result.reached)
        .map(|h| h.times.iter().map(|t| millis(*t)).sum::<u64>() / h.times.len().max(1) as u64)
        .unwrap_or(0);
    vec![
        (
            IP_ADDRESS_USED,
            ResourceValue::Single(Value::String(
                result.source.map(|a| a.to_string()).unwrap_or_default(),
            )),
        ),
        (
            RESPONSE_TIME,
            ResourceValue::Single(Value::Unsigned(response.min(u64::from(u32::MAX)))),
        ),
        (ROUTE_HOPS_HOST, column(&address)),
        (ROUTE_HOPS_HOST_ADDRESS, column(&address)),
        (
            ROUTE_HOPS_ERROR_CODE,
            column(&|h| Value::Unsigned(u64::from(h.error))),
        ),
        (
            ROUTE_HOPS_RT_TIMES,
            column(&|h| {
                Value::String(
                    h.times
                        .iter()
                        .map(|t| millis(*t).to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
        ),
    ]
}

/// ServerSelectionDiagnostics: each host pinged in turn; the fastest is
/// the one with the smallest average among those that answered (its
/// times in µs). A host that does not resolve is left out; when none
/// does, the test ends with Error_CannotResolveHostName.
fn select(
    hosts: &[String],
    request: &PingRequest,
    cancel: &AtomicBool,
) -> Result<Outcome, DiagnosticError> {
    use server_selection::*;
    let mut fastest: Option<(&String, PingResult, u64)> = None;
    let mut resolved = false;
    for host in hosts {
        let asked = PingRequest {
            host: host.clone(),
            ..request.clone()
        };
        let result = match ping::ping(&asked, cancel) {
            Ok(result) => result,
            Err(DiagnosticError::CannotResolveHostName(_)) => continue,
            // No route to it, or nothing of its family on the interface:
            // it is not the fastest, the others may still be measured.
            Err(DiagnosticError::NoRouteToHost(_) | DiagnosticError::Other(_)) => {
                resolved = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        resolved = true;
        if result.times.is_empty() {
            continue;
        }
        let average =
            result.times.iter().map(|t| t.as_micros()).sum::<u128>() / result.times.len() as u128;
        let average = u64::try_from(average).unwrap_or(u64::MAX);
        if fastest.as_ref().is_none_or(|(_, _, best)| average < *best) {
            fastest = Some((host, result, average));
        }
    }
    if !resolved {
        return Err(DiagnosticError::CannotResolveHostName(hosts.join(",")));
    }
    let micros = |d: &Duration| {
        Value::Unsigned(
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX)
                .min(u64::from(u32::MAX)),
        )
    };
    let mut results = Vec::new();
    if let Some((host, result, average)) = fastest {
        results = vec![
            (FASTEST_HOST, Value::String(host.clone())),
            (
                MINIMUM_RESPONSE_TIME,
                result.times.iter().min().map_or(Value::Unsigned(0), micros),
            ),
            (
                AVERAGE_RESPONSE_TIME,
                Value::Unsigned(average.min(u64::from(u32::MAX))),
            ),
            (
                MAXIMUM_RESPONSE_TIME,
                result.times.iter().max().map_or(Value::Unsigned(0), micros),
            ),
            (
                IP_ADDRESS_USED,
                Value::String(result.source.map(|a| a.to_string()).unwrap_or_default()),
            ),
        ];
    }
    Ok((
        "Complete",
        results
            .into_iter()
            .map(|(r, v)| (r, ResourceValue::Single(v)))
            .collect(),
    ))
}

/// One Result row per repetition (TR-181 NSLookupDiagnostics.Result).
fn lookup_results(lookups: &[Lookup]) -> Vec<(ResourceId, ResourceValue)> {
    use ns_lookup::*;
    let column = |value: &dyn Fn(&Lookup) -> Value| {
        ResourceValue::Multiple((0u16..).zip(lookups.iter().map(value)).collect())
    };
    let succeeded = lookups
        .iter()
        .filter(|l| l.status == LookupStatus::Success)
        .count();
    vec![
        (
            SUCCESS_COUNT,
            ResourceValue::Single(Value::Unsigned(succeeded as u64)),
        ),
        (
            RESULT_STATUS,
            column(&|l| {
                Value::String(
                    match l.status {
                        LookupStatus::Success => "Success",
                        LookupStatus::ServerNotAvailable => "Error_DNSServerNotAvailable",
                        LookupStatus::NotResolved => "Error_HostNameNotResolved",
                        LookupStatus::Timeout => "Error_Timeout",
                        LookupStatus::Other => "Error_Other",
                    }
                    .into(),
                )
            }),
        ),
        (
            RESULT_ANSWER_TYPE,
            column(&|l| {
                Value::String(
                    match l.authoritative {
                        None => "None",
                        Some(true) => "Authoritative",
                        Some(false) => "NonAuthoritative",
                    }
                    .into(),
                )
            }),
        ),
        (
            RESULT_HOST_NAME_RETURNED,
            column(&|l| Value::String(l.name.clone())),
        ),
        (
            RESULT_IP_ADDRESSES,
            column(&|l| {
                Value::String(
                    l.addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
        ),
        (
            RESULT_DNS_SERVER_IP,
            column(&|l| Value::String(l.server.to_string())),
        ),
        (
            RESULT_RESPONSE_TIME,
            column(&|l| Value::Unsigned(millis(l.time).min(u64::from(u32::MAX)))),
        ),
    ]
}

/// A throughput test's results (TR-181 DownloadDiagnostics and
/// UploadDiagnostics share their shape): the connections' earliest
/// beginnings and latest end, their bytes summed, each connection's own
/// when asked for.
fn throughput_results(
    outcome: &crate::throughput::Outcome,
    download: bool,
    per_connection: bool,
) -> Vec<(ResourceId, ResourceValue)> {
    use crate::throughput::Connection;
    let shape = if download {
        &dm_objects::diagnostics::DOWNLOAD
    } else {
        &dm_objects::diagnostics::UPLOAD
    };
    let (ids, columns) = (shape.results, shape.connections);
    let all = &outcome.connections;
    let earliest = |f: fn(&Connection) -> i64| all.iter().map(f).min().unwrap_or(0);
    let latest = |f: fn(&Connection) -> i64| all.iter().map(f).max().unwrap_or(0);
    let time = Value::DateTimeMicros;
    let count = |n: u64| Value::Unsigned(n);
    // PeriodOfFullLoading is an unsignedInt of µs.
    let period_of = |n: u64| Value::Unsigned(n.min(u64::from(u32::MAX)));
    let (period, bytes, received, sent) = outcome.full_loading;
    let singles = [
        Value::String(outcome.source.map(|a| a.to_string()).unwrap_or_default()),
        time(earliest(|c| c.rom)),
        time(earliest(|c| c.bom)),
        time(latest(|c| c.eom)),
        count(all.iter().map(|c| c.test_bytes).sum()),
        count(outcome.total_received),
        count(outcome.total_sent),
        count(bytes),
        count(received),
        count(sent),
        period_of(period),
        // TR-181: "the latest ... across all connections".
        time(latest(|c| c.tcp_open_request)),
        time(latest(|c| c.tcp_open_response)),
    ];
    let mut results: Vec<(ResourceId, ResourceValue)> = ids
        .into_iter()
        .zip(singles)
        .map(|(r, v)| (r, ResourceValue::Single(v)))
        .collect();
    let values: [fn(&Connection) -> Value; 8] = [
        |c| Value::DateTimeMicros(c.rom),
        |c| Value::DateTimeMicros(c.bom),
        |c| Value::DateTimeMicros(c.eom),
        |c| Value::Unsigned(c.test_bytes),
        |c| Value::Unsigned(c.total_received),
        |c| Value::Unsigned(c.total_sent),
        |c| Value::DateTimeMicros(c.tcp_open_request),
        |c| Value::DateTimeMicros(c.tcp_open_response),
    ];
    for (column, value) in columns.into_iter().zip(values) {
        let rows = if per_connection {
            (0u16..).zip(all.iter().map(value)).collect()
        } else {
            std::collections::BTreeMap::new()
        };
        results.push((column, ResourceValue::Multiple(rows)));
    }
    results
}

/// A UDP echo test's results: response times in µs over the packets
/// answered; each packet's row, up to UDPEchoDiagnosticsMaxResults, when
/// asked for.
fn echo_results(
    outcome: &crate::udp_echo::EchoOutcome,
    individual: bool,
) -> Vec<(ResourceId, ResourceValue)> {
    use crate::udp_echo::EchoPacket;
    use udp_echo::*;
    let times: Vec<u64> = outcome
        .packets
        .iter()
        .filter(|p| p.success)
        .map(|p| u64::try_from(p.received - p.sent).unwrap_or(0))
        .collect();
    let clamp = |v: u64| Value::Unsigned(v.min(u64::from(u32::MAX)));
    let average = if times.is_empty() {
        0
    } else {
        times.iter().sum::<u64>() / times.len() as u64
    };
    let mut results: Vec<(ResourceId, ResourceValue)> = [
        (
            IP_ADDRESS_USED,
            Value::String(outcome.source.map(|a| a.to_string()).unwrap_or_default()),
        ),
        (SUCCESS_COUNT, clamp(times.len() as u64)),
        (
            FAILURE_COUNT,
            clamp((outcome.packets.len() - times.len()) as u64),
        ),
        (AVERAGE_RESPONSE_TIME, clamp(average)),
        (
            MINIMUM_RESPONSE_TIME,
            clamp(times.iter().copied().min().unwrap_or(0)),
        ),
        (
            MAXIMUM_RESPONSE_TIME,
            clamp(times.iter().copied().max().unwrap_or(0)),
        ),
    ]
    .into_iter()
    .map(|(r, v)| (r, ResourceValue::Single(v)))
    .collect();
    let time = |us: i64| {
        if us == 0 {
            Value::DateTime(dm_objects::UNKNOWN_TIME)
        } else {
            Value::DateTimeMicros(us)
        }
    };
    type Column<'a> = (ResourceId, &'a dyn Fn(&EchoPacket) -> Value);
    let columns: [Column; 8] = [
        (INDIVIDUAL_PACKET_RESULT_PACKET_SUCCESS, &|p| {
            Value::Boolean(p.success)
        }),
        (INDIVIDUAL_PACKET_RESULT_PACKET_SEND_TIME, &|p| time(p.sent)),
        (INDIVIDUAL_PACKET_RESULT_PACKET_RECEIVE_TIME, &|p| {
            time(p.received)
        }),
        (INDIVIDUAL_PACKET_RESULT_TEST_GEN_SN, &|p| {
            Value::Unsigned(u64::from(p.gen_sn))
        }),
        (INDIVIDUAL_PACKET_RESULT_TEST_RESP_SN, &|p| {
            Value::Unsigned(u64::from(p.resp_sn))
        }),
        (INDIVIDUAL_PACKET_RESULT_TEST_RESP_RCV_TIME_STAMP, &|p| {
            Value::Unsigned(u64::from(p.rcv_timestamp))
        }),
        (INDIVIDUAL_PACKET_RESULT_TEST_RESP_REPLY_TIME_STAMP, &|p| {
            Value::Unsigned(u64::from(p.reply_timestamp))
        }),
        (
            INDIVIDUAL_PACKET_RESULT_TEST_RESP_REPLY_FAILURE_COUNT,
            &|p| Value::Unsigned(u64::from(p.reply_failures)),
        ),
    ];
    let kept = usize::try_from(dm_objects::diagnostics::MAX_ECHO_RESULTS).unwrap_or(100);
    for (column, value) in columns {
        let rows = if individual {
            (0u16..)
                .zip(outcome.packets.iter().take(kept).map(value))
                .collect()
        } else {
            std::collections::BTreeMap::new()
        };
        results.push((column, ResourceValue::Multiple(rows)));
    }
    results
}

/// Runs the test of `object`; its outcome, unless it was stopped.
async fn run(object: ObjectId, tree: Arc<Mutex<Tree>>, cancel: Arc<AtomicBool>) -> Option<Outcome> {
    let job = job(&lock(&tree), object)?;
    let name = dm_objects::diagnostics::kind(object).map_or("a test", |k| k.schema.name);
    info!(test = name, "diagnostic test started");
    let (state, results) = match job {
        // The tests that wait on sockets run as tasks.
        Job::Throughput(request, per_connection) => {
            let download = request.upload.is_none();
            match crate::throughput::run(request, Arc::clone(&cancel)).await {
                Ok(outcome) => (
                    "Complete",
                    throughput_results(&outcome, download, per_connection),
                ),
                Err(e) => {
                    warn!(test = name, "{e}");
                    (e.state(), Vec::new())
                }
            }
        }
        Job::Echo(request, individual) => {
            match crate::udp_echo::echo(request, Arc::clone(&cancel)).await {
                Ok(outcome) => ("Complete", echo_results(&outcome, individual)),
                Err(e) => {
                    warn!(test = name, "{e}");
                    (error_state(&e), Vec::new())
                }
            }
        }
        // The others, on a blocking thread.
        job => blocking(job, name, Arc::clone(&cancel)).await,
    };
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    // An error state the kind does not have (TR-181 gives each its own
    // list) is its Error_Other.
    let state = dm_objects::diagnostics::kind(object)
        .and_then(|k| k.schema.resource(k.state))
        .filter(|r| Value::String(state.into()).check(r).is_err())
        .map_or(state, |_| "Error_Other");
    info!(test = name, state, "diagnostic test ended");
    Some((state, results))
}

/// A test of raw sockets and blocking calls, on a blocking thread.
async fn blocking(job: Job, name: &'static str, cancel: Arc<AtomicBool>) -> Outcome {
    let outcome = tokio::task::spawn_blocking(move || match job {
        Job::Throughput(..) | Job::Echo(..) => {
            Err(DiagnosticError::Internal("not a blocking test".into()))
        }
        Job::Ping(request) => ping::ping(&request, &cancel).map(|result| {
            let results = ping_results(&result)
                .into_iter()
                .map(|(r, v)| (r, ResourceValue::Single(v)))
                .collect();
            ("Complete", results)
        }),
        Job::Trace(request) => traceroute::traceroute(&request, &cancel).map(|result| {
            let state = if result.reached || result.stopped_by_error {
                "Complete"
            } else {
                "Error_MaxHopCountExceeded"
            };
            (state, trace_results(&result))
        }),
        Job::Select(hosts, request) => select(&hosts, &request, &cancel),
        Job::Lookup(request) => match nslookup::nslookup(&request, &cancel) {
            Ok(lookups) => Ok(("Complete", lookup_results(&lookups))),
            // The server named is no name this host resolves.
            Err(DiagnosticError::CannotResolveHostName(server)) => {
                warn!(server, "NSLookup: the DNS server does not resolve");
                Ok(("Error_DNSServerNotResolved", Vec::new()))
            }
            Err(e) => Err(e),
        },
    })
    .await;
    match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            warn!(test = name, "{e}");
            (error_state(&e), Vec::new())
        }
        Err(e) => {
            warn!(test = name, "{e}");
            ("Error_Internal", Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_in_milliseconds_and_microseconds() {
        let result = PingResult {
            source: Some("192.0.2.1".parse().unwrap()),
            success: 3,
            failure: 1,
            times: [1_400, 2_600, 50_000]
                .iter()
                .map(|us| Duration::from_micros(*us))
                .collect(),
            ..PingResult::default()
        };
        let results: HashMap<_, _> = ping_results(&result).into_iter().collect();
        use ip_ping::*;
        assert_eq!(
            results[&AVERAGE_RESPONSE_TIME_DETAILED],
            Value::Unsigned(18_000)
        );
        assert_eq!(results[&AVERAGE_RESPONSE_TIME], Value::Unsigned(18));
        assert_eq!(results[&MINIMUM_RESPONSE_TIME], Value::Unsigned(1));
        assert_eq!(results[&MAXIMUM_RESPONSE_TIME], Value::Unsigned(50));
        assert_eq!(results[&FAILURE_COUNT], Value::Unsigned(1));
        assert_eq!(results[&IP_ADDRESS_USED], Value::String("192.0.2.1".into()));
        // Nothing answered: zeros, not garbage.
        let none: HashMap<_, _> = ping_results(&PingResult::default()).into_iter().collect();
        assert_eq!(none[&MINIMUM_RESPONSE_TIME], Value::Unsigned(0));
    }
}
