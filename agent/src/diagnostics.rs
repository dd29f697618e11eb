//! Runs the diagnostic tests clients request (`dm_objects::diagnostics`):
//! each on a thread of its own beside the protocols, one per kind at a
//! time, its results written back with the final DiagnosticsState.
//!
//! A test the ACS requested starts once its session has ended (TR-181
//! DiagnosticsState: the CPE SHOULD wait until after the session). A new
//! request of the same kind replaces a running test; DiagnosticsState
//! going back to None (an input changed) cancels it. A test requested
//! before a restart runs again after it: the state was saved as
//! Requested, and the ACS is still owed its "8 DIAGNOSTICS COMPLETE".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::catalog::{ip_interface, ip_ping};
use dm_core::{
    Change, ChangeKind, InstanceId, ObjectId, Origin, Path, ResourceValue, Tree, Value, lock,
};
use dm_platform::linux::ping::{self, DiagnosticError, Family, PingRequest, PingResult};
use tracing::{info, warn};

struct Running {
    cancel: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Runner {
    tree: Arc<Mutex<Tree>>,
    cwmp: Option<Arc<Mutex<dm_cwmp_tokio::Status>>>,
    running: HashMap<ObjectId, Running>,
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
    pub fn new(tree: Arc<Mutex<Tree>>, cwmp: Option<Arc<Mutex<dm_cwmp_tokio::Status>>>) -> Runner {
        Runner {
            tree,
            cwmp,
            running: HashMap::new(),
        }
    }

    /// Starts the tests a restart interrupted.
    pub fn resume(&mut self) {
        for kind in dm_objects::diagnostics::KINDS {
            let Some(path) = state_path(kind.schema.id) else {
                continue;
            };
            let requested = matches!(
                read(&lock(&self.tree), path),
                Some(Value::String(s)) if s == "Requested"
            );
            if requested {
                info!(
                    test = kind.schema.name,
                    "resuming a diagnostic test a restart interrupted"
                );
                self.start(kind.schema.id, Origin::Agent);
            }
        }
    }

    /// Acts on a change of the tree: a DiagnosticsState a client set to
    /// Requested starts its test, one set back to None cancels it.
    pub fn observe(&mut self, change: &Change) {
        let ChangeKind::Value(ResourceValue::Single(Value::String(state))) = &change.kind else {
            return;
        };
        let object = change.path.object_id();
        if state_path(object) != Some(change.path) {
            return;
        }
        match state.as_str() {
            "Requested" if change.origin.is_client() => self.start(object, change.origin),
            "None" => {
                if let Some(running) = self.running.remove(&object) {
                    info!(test = %object, "diagnostic test canceled: an input changed");
                    running.cancel.store(true, Ordering::Relaxed);
                    running.task.abort();
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, object: ObjectId, origin: Origin) {
        if let Some(previous) = self.running.remove(&object) {
            previous.cancel.store(true, Ordering::Relaxed);
            previous.task.abort();
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let tree = Arc::clone(&self.tree);
        let session = (origin == Origin::Acs).then(|| self.cwmp.clone()).flatten();
        let stop = Arc::clone(&cancel);
        let task = tokio::spawn(async move {
            if let Some(status) = session {
                session_over(&status).await;
            }
            if object == ip_ping::ID {
                run_ping(tree, stop).await;
            }
        });
        self.running.insert(object, Running { cancel, task });
    }
}

/// Waits until no CWMP session is open.
async fn session_over(status: &Mutex<dm_cwmp_tokio::Status>) {
    loop {
        let ended = {
            let status = lock(status);
            if !status.in_session {
                return;
            }
            status.ended.0.clone()
        };
        ended.notified().await;
    }
}

/// The test's inputs, read from the tree.
fn ping_request(tree: &Tree) -> PingRequest {
    use ip_ping::*;
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let unsigned = |r, default: u64| match read(tree, at(r)) {
        Some(Value::Unsigned(u)) => u,
        Some(Value::Integer(i)) => u64::try_from(i).unwrap_or(default),
        _ => default,
    };
    let interface = match read(tree, at(INTERFACE)) {
        Some(Value::ObjectLink(link)) if link.object == ip_interface::ID => {
            match read(
                tree,
                Path::resource(
                    ip_interface::ID,
                    InstanceId(link.instance),
                    ip_interface::NAME,
                ),
            ) {
                Some(Value::String(name)) => Some(name),
                _ => None,
            }
        }
        _ => None,
    };
    PingRequest {
        host: match read(tree, at(HOST)) {
            Some(Value::String(host)) => host.trim().to_owned(),
            _ => String::new(),
        },
        family: match read(tree, at(PROTOCOL_VERSION)) {
            Some(Value::String(v)) if v == "IPv4" => Family::V4,
            Some(Value::String(v)) if v == "IPv6" => Family::V6,
            _ => Family::Any,
        },
        interface,
        repetitions: u32::try_from(unsigned(NUMBER_OF_REPETITIONS, 3)).unwrap_or(u32::MAX),
        timeout: Duration::from_millis(unsigned(TIMEOUT, 1000)),
        size: usize::try_from(unsigned(DATA_BLOCK_SIZE, 64)).unwrap_or(64),
        dscp: u8::try_from(unsigned(DSCP, 0)).unwrap_or(0),
    }
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
fn ping_results(result: &PingResult) -> Vec<(dm_core::ResourceId, Value)> {
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

async fn run_ping(tree: Arc<Mutex<Tree>>, cancel: Arc<AtomicBool>) {
    let request = ping_request(&lock(&tree));
    info!(
        host = request.host,
        repetitions = request.repetitions,
        "IPPing started"
    );
    let stop = Arc::clone(&cancel);
    let outcome = tokio::task::spawn_blocking(move || ping::ping(&request, &stop)).await;
    if cancel.load(Ordering::Relaxed) {
        return;
    }
    let (state, results) = match outcome {
        Ok(Ok(result)) => {
            info!(
                success = result.success,
                failure = result.failure,
                "IPPing complete"
            );
            ("Complete", ping_results(&result))
        }
        Ok(Err(e)) => {
            warn!("IPPing: {e}");
            (error_state(&e), Vec::new())
        }
        Err(e) => {
            warn!("IPPing: {e}");
            ("Error_Internal", Vec::new())
        }
    };
    let mut tree = lock(&tree);
    let at = |r| Path::resource(ip_ping::ID, InstanceId(0), r);
    // Canceled meanwhile (an input changed): its results are not about
    // what is asked now.
    if !matches!(read(&tree, at(ip_ping::DIAGNOSTICS_STATE)), Some(Value::String(s)) if s == "Requested")
    {
        return;
    }
    let mut tx = tree.begin(Origin::Agent);
    for (resource, value) in results {
        tx.set(at(resource), value);
    }
    tx.set(at(ip_ping::DIAGNOSTICS_STATE), Value::String(state.into()));
    if let Err(e) = tx.commit() {
        warn!("IPPing results not saved: {e}");
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
