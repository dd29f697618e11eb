//! Bulk data collection (TR-181 `Device.BulkData.`, HTTP transport): one
//! task per enabled profile collects its parameters every
//! ReportingInterval (`dm_cwmp::bulk` makes the report and its message)
//! and sends them to its collector.
//!
//! A collection reads the tree once, under its lock, and only for what
//! the profile names (the slow host reads first, off the lock, as a CWMP
//! read makes them); compression and the HTTP exchange happen after. A
//! report the collector did not take is kept, up to
//! NumberOfRetainedFailedReports and `bulk::RETAINED_BYTES`, and sent
//! again, oldest first, with the next.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::catalog::{bulk_data, bulk_data_profile as profile};
use dm_core::{Change, InstanceId, Origin, Tree, lock};
use dm_cwmp::bulk::{self, Report, Retained, Settings};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long one delivery may take, the connection included: a collector
/// that drips its answer is given up on.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Why a delivery failed.
#[derive(Debug)]
pub enum Failure {
    Http(dm_cwmp_tokio::http::HttpError),
    Status(u16),
    Url(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Http(e) => write!(f, "{e}"),
            Failure::Status(code) => write!(f, "the collector answered {code}"),
            Failure::Url(e) => write!(f, "{e}"),
        }
    }
}

/// Sends one message to the collector.
async fn deliver(
    settings: &Settings,
    url: &str,
    body: Vec<u8>,
    tls: dm_cwmp_tokio::tls::Trust,
) -> Result<(), Failure> {
    use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, DATE, HeaderName, HeaderValue};
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Failure::Url(format!("{url}: {e}")))?;
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(settings.encoding.content_type()),
    );
    headers.insert(
        HeaderName::from_static("bbf-report-format"),
        HeaderValue::from_static(settings.encoding.format()),
    );
    if settings.gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if settings.date_header
        && let Ok(date) = HeaderValue::from_str(&bulk::http_date(dm_rt::clock::wall()))
    {
        headers.insert(DATE, date);
    }
    let credentials = dm_cwmp_tokio::http::Credentials {
        username: settings.username.clone(),
        password: settings.password.clone(),
    };
    let mut session = dm_cwmp_tokio::http::HttpSession::new(uri, credentials, DELIVERY_LIMIT, tls);
    let method = if settings.put {
        hyper::Method::PUT
    } else {
        hyper::Method::POST
    };
    let status = session
        .send(method, headers, body.into())
        .await
        .map_err(Failure::Http);
    session.close().await;
    match status? {
        200..=299 => Ok(()),
        code => Err(Failure::Status(code)),
    }
}

/// Runs the bulk data profiles: starts, restarts and stops their tasks
/// as the tree's BulkData objects change.
pub struct Collector {
    tree: Arc<Mutex<Tree>>,
    tls: dm_cwmp_tokio::tls::Trust,
    running: HashMap<InstanceId, (Settings, JoinHandle<()>)>,
    retained: HashMap<InstanceId, Arc<Mutex<Retained>>>,
    dirty: bool,
}

impl Collector {
    /// `tls`: for https:// collectors, the ACS's settings.
    pub fn new(tree: Arc<Mutex<Tree>>, tls: dm_cwmp_tokio::tls::Trust) -> Collector {
        Collector {
            tree,
            tls,
            running: HashMap::new(),
            retained: HashMap::new(),
            dirty: true,
        }
    }

    /// Notes a change of the tree: one of BulkData's makes the profiles
    /// be looked at again ([`Collector::settle`]).
    pub fn observe(&mut self, change: &Change) {
        let object = change.path.object_id();
        if object == profile::ID || object == bulk_data::ID {
            self.dirty = true;
        }
    }

    /// Looks at the profiles again at the next [`Collector::settle`]
    /// (the change stream lost changes).
    pub fn refresh(&mut self) {
        self.dirty = true;
    }

    /// Stops every profile (the agent is stopping).
    pub fn stop(&mut self) {
        for (_, (_, task)) in self.running.drain() {
            task.abort();
        }
    }

    /// Brings the running tasks in line with the profiles, after the
    /// changes [`Collector::observe`] saw.
    pub fn settle(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let wanted: HashMap<InstanceId, Settings> = {
            let tree = lock(&self.tree);
            tree.instances(profile::ID)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| Some((i, Settings::read(&tree, i)?)))
                .collect()
        };
        let exists: Vec<InstanceId> = lock(&self.tree).instances(profile::ID).unwrap_or_default();
        self.retained.retain(|i, _| exists.contains(i));
        self.running.retain(|instance, (settings, task)| {
            let keep = wanted.get(instance) == Some(settings);
            if !keep {
                info!(profile = instance.0, "bulk data profile stopped");
                task.abort();
            }
            keep
        });
        for (instance, settings) in wanted {
            if self.running.contains_key(&instance) {
                continue;
            }
            info!(
                profile = instance.0,
                interval = settings.interval,
                format = settings.encoding.format(),
                "bulk data profile started"
            );
            let retained = Arc::clone(self.retained.entry(instance).or_default());
            lock(&retained).follow(&settings.encoding, &settings.url);
            let task = tokio::spawn(run(
                Arc::clone(&self.tree),
                instance,
                settings.clone(),
                retained,
                self.tls.clone(),
            ));
            self.running.insert(instance, (settings, task));
        }
    }
}

/// Reads what the profile names off the lock (the slow host reads), then
/// collects under it.
async fn collect_now(
    tree: &Arc<Mutex<Tree>>,
    settings: &Settings,
    time: i64,
) -> (Report, Vec<(String, String)>, [(&'static str, String); 3]) {
    let reads = {
        let tree = lock(tree);
        let names = bulk::read_names(settings);
        let mut paths = dm_cwmp::rpc::existing_paths(&tree, &names);
        paths.extend(dm_cwmp::rpc::tables_listed(&tree, &names));
        tree.host_reads(Origin::Acs, &paths)
    };
    let fetched = if reads.is_empty() {
        None
    } else {
        tokio::task::spawn_blocking(move || reads.run_within(dm_core::tree::HOST_READ_LIMIT))
            .await
            .ok()
    };
    let mut tree = lock(tree);
    if let Some(fetched) = fetched {
        for warning in tree.supply(fetched) {
            warn!("{warning}");
        }
    }
    let (report, uri) = bulk::collect(&tree, settings, time);
    let identity = bulk::identity(&tree);
    tree.forget_fetched(Origin::Acs);
    (report, uri, identity)
}

async fn run(
    tree: Arc<Mutex<Tree>>,
    instance: InstanceId,
    settings: Settings,
    retained: Arc<Mutex<Retained>>,
    tls: dm_cwmp_tokio::tls::Trust,
) {
    let start = dm_rt::clock::wall();
    let mut last: Option<i64> = None;
    loop {
        // To the interval's end exactly (TimeReference's phase): the
        // report's CollectionTime is that second.
        let now = dm_rt::clock::wall_micros();
        let due = settings.next_report(start, now.div_euclid(1_000_000));
        let wait = due.saturating_mul(1_000_000).saturating_sub(now);
        tokio::time::sleep(Duration::from_micros(u64::try_from(wait).unwrap_or(0))).await;
        // The interval's end, unless the clock was stepped meanwhile (NTP
        // on a device that booted near 1970): then the clock's time. Never
        // the same time twice.
        let woke = dm_rt::clock::wall();
        let time = if (woke - due).abs() <= 1 { due } else { woke };
        if last.is_some_and(|last| time <= last) {
            continue;
        }
        last = Some(time);
        let (report, uri, identity) = collect_now(&tree, &settings, time).await;
        let count = report.values.len();
        if report.truncated {
            warn!(
                profile = instance.0,
                parameters = count,
                "bulk data: the references name more than a report carries; cut"
            );
        }
        // Copied, not taken: a profile restarted in the middle of a
        // delivery (its settings changed) still has them.
        let mut reports: Vec<Report> = lock(&retained).reports().cloned().collect();
        reports.push(report);
        // Encoding and compression are CPU work: off the runtime's thread.
        let (encoding, gzipped) = (settings.encoding.clone(), settings.gzip);
        let Ok((reports, body)) = tokio::task::spawn_blocking(move || {
            let mut body = bulk::encode(&reports, &encoding);
            if gzipped {
                match gzip(&body) {
                    Ok(zipped) => body = zipped,
                    Err(e) => warn!("bulk data: gzip: {e}"),
                }
            }
            (reports, body)
        })
        .await
        else {
            warn!(
                profile = instance.0,
                "bulk data: encoding the report failed"
            );
            continue;
        };
        let url = bulk::report_url(&settings.url, identity, &uri);
        let next = settings.next_report(start, dm_rt::clock::wall());
        let mut attempt = 0;
        let outcome = loop {
            let outcome = deliver(&settings, &url, body.clone(), tls.clone()).await;
            let Err(e) = outcome else {
                break Ok(());
            };
            let Some(retry) = settings.retry else {
                break Err(e);
            };
            attempt += 1;
            let ceiling = bulk::retry_ceiling(attempt, retry);
            let floor = bulk::retry_ceiling(attempt - 1, retry);
            let wait = floor + (ceiling.saturating_sub(floor)).mul_f64(jitter());
            // Retries stop where the next interval starts.
            if dm_rt::clock::wall() + i64::try_from(wait.as_secs()).unwrap_or(i64::MAX) >= next {
                break Err(e);
            }
            debug!(
                profile = instance.0,
                attempt,
                ?wait,
                "bulk data: {e}; retrying"
            );
            tokio::time::sleep(wait).await;
        };
        match outcome {
            Ok(()) => {
                lock(&retained).clear();
                info!(
                    profile = instance.0,
                    parameters = count,
                    reports = reports.len(),
                    bytes = body.len(),
                    "bulk data report delivered"
                );
            }
            Err(e) => {
                let dropped = lock(&retained).keep(reports, settings.retained);
                warn!(
                    profile = instance.0,
                    kept = lock(&retained).len(),
                    dropped,
                    "bulk data report not delivered: {e}"
                );
            }
        }
    }
}

/// A number in [0, 1) for the retry waits' spread.
fn jitter() -> f64 {
    (dm_rt::random::seed() % 1_000_000) as f64 / 1_000_000.0
}
