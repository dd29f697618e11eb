//! Firmware update over LwM2M /5, push delivery: the package goes to a file
//! in the state directory as its blocks arrive (`FileSink`, bounded
//! memory), and an Execute of /5/0/2 runs the configured program with the
//! image's path as its one argument (argv, no shell), as the IG60 client
//! runs its update script. State and Update Result follow LwM2M Core E.6:
//! Downloaded → Updating → Idle with result 1 on success, back to
//! Downloaded with result 8 when the program fails.

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use dm_core::catalog::firmware::{ID, STATE, UPDATE_RESULT};
use dm_core::{InstanceId, Origin, Path, Tree, Value};
use dm_lwm2m::client::{PackageError, PackageSink};
use dm_platform::firmware::{ImageError, ImageStore, ImageWriter};
use tracing::{info, warn};

use dm_core::lock;
use dm_cwmp::soap::{FaultCode, TransferFault};
use dm_rt::clock::wall;

use dm_core::enums::firmware::result::{
    CANCELLED as RESULT_CANCELLED, CONNECTION_LOST as RESULT_CONNECTION_LOST,
    FAILED as RESULT_FAILED, INTEGRITY as RESULT_INTEGRITY, INVALID_URI as RESULT_INVALID_URI,
    NO_SPACE as RESULT_NO_SPACE, SUCCESS as RESULT_SUCCESS,
    UNSUPPORTED_PROTOCOL as RESULT_UNSUPPORTED_PROTOCOL,
};
use dm_core::enums::firmware::{DOWNLOADED, DOWNLOADING, IDLE, UPDATING};

/// The image store for a state directory.
pub fn store(state_dir: &FsPath, max_size: u64) -> ImageStore {
    ImageStore::new(state_dir.join("firmware"), max_size)
}

/// Tells the ACS about firmware transfers an LwM2M server made (TR-069
/// §A.3.3.3, AutonomousTransferComplete): with both protocols on one
/// device, the ACS learns that its image changed under it.
/// Reported only as Device.ManagementServer.AutonomousTransferCompletePolicy
/// lets it.
#[derive(Clone, Default)]
pub struct Announcer {
    commands: Option<tokio::sync::mpsc::Sender<dm_cwmp_tokio::Command>>,
    /// Where the policy is.
    tree: Option<Arc<Mutex<Tree>>>,
    /// When the current transfer began (Unix time).
    started: Arc<Mutex<Option<i64>>>,
}

impl Announcer {
    pub fn new(
        commands: Option<tokio::sync::mpsc::Sender<dm_cwmp_tokio::Command>>,
        tree: Arc<Mutex<Tree>>,
    ) -> Announcer {
        Announcer {
            commands,
            tree: Some(tree),
            started: Arc::default(),
        }
    }

    fn begin(&self) {
        *lock(&self.started) = Some(wall());
    }

    /// A transfer (and, for a download applied, its update) ended.
    fn report(&self, uri: &str, size: u64, fault: Option<TransferFault>) {
        let (Some(commands), Some(tree)) = (&self.commands, &self.tree) else {
            return;
        };
        let wanted = dm_objects::autonomous_transfer_reported(
            &lock(tree),
            false,
            fault.is_none(),
            dm_cwmp::session::FIRMWARE_IMAGE,
        );
        if !wanted {
            return;
        }
        let now = wall();
        let start = lock(&self.started).take().unwrap_or(now);
        let (fault_code, fault_string) =
            fault.map_or((0, String::new()), |f| (f.code.code(), f.text));
        let result = dm_cwmp::session::TransferResult {
            command_key: String::new(),
            fault_code,
            fault_string,
            start,
            complete: now,
            upload: false,
            scheduled: false,
            autonomous: Some(dm_cwmp::session::AutonomousTransfer {
                announce_url: String::new(),
                transfer_url: uri.to_owned(),
                is_download: true,
                file_type: dm_cwmp::session::FIRMWARE_IMAGE.to_owned(),
                file_size: size,
                target_file_name: String::new(),
            }),
        };
        if commands
            .try_send(dm_cwmp_tokio::Command::AutonomousTransfer(Box::new(result)))
            .is_err()
        {
            warn!("the ACS could not be told about the LwM2M firmware transfer");
        }
    }
}

/// A package sink writing to the image store.
pub struct FileSink {
    store: ImageStore,
    writer: Option<ImageWriter>,
    announcer: Announcer,
}

impl FileSink {
    pub fn new(store: ImageStore, announcer: Announcer) -> FileSink {
        FileSink {
            store,
            writer: None,
            announcer,
        }
    }
}

fn package_error(e: ImageError) -> PackageError {
    match e {
        ImageError::NoSpace(m) => PackageError::NoSpace(m),
        ImageError::Io(m) => PackageError::Failed(m),
    }
}

impl PackageSink for FileSink {
    fn begin(&mut self) -> Result<(), PackageError> {
        // A push started again from block 0: the unfinished one goes first
        // (its slot with it).
        if let Some(old) = self.writer.take() {
            old.abort();
        }
        self.writer = Some(self.store.begin().map_err(package_error)?);
        self.announcer.begin();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PackageError> {
        self.writer
            .as_mut()
            .ok_or_else(|| PackageError::Failed("no transfer in progress".into()))?
            .write(bytes)
            .map_err(package_error)
    }

    fn finish(&mut self) -> Result<(), PackageError> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| PackageError::Failed("no transfer in progress".into()))?;
        let size = writer.written();
        let path = writer.finish().map_err(package_error)?;
        info!(path = %path.display(), size, "firmware package received");
        Ok(())
    }

    fn abort(&mut self) {
        // Only this sink's own transfer: another one may be writing.
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

fn set(tree: &Mutex<Tree>, state: i64, result: i64) {
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let _ = lock(tree)
        .begin(Origin::Agent)
        .set(at(STATE), Value::Integer(state))
        .set(at(UPDATE_RESULT), Value::Integer(result))
        .commit();
}

/// How long the update program may take: flashing is slow, but one that
/// hangs must not hold the image store and every later transfer.
const UPDATE_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Runs the update program with the image's path, within the time limit.
async fn run_update(
    program: &str,
    arguments: &[String],
    image: &std::path::Path,
) -> Result<std::process::ExitStatus, String> {
    tokio::time::timeout(
        UPDATE_TIME_LIMIT,
        tokio::process::Command::new(program)
            .args(arguments)
            .arg(image)
            .kill_on_drop(true)
            .status(),
    )
    .await
    .map_err(|_| format!("{program}: still running after {UPDATE_TIME_LIMIT:?}; killed"))?
    .map_err(|e| format!("{program}: {e}"))
}

/// Whether a change is the Execute of /5/0/10 (Cancel).
pub fn is_cancel(change: &dm_core::Change) -> bool {
    matches!(change.kind, dm_core::ChangeKind::Executed(_))
        && change.path == Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::CANCEL)
}

/// After a Cancel (the pull, if any, stopped): the image and any partial
/// one are deleted, State Idle, Update Result 10 "Firmware update
/// cancelled" (object 5 v1.1). A push is aborted by the LwM2M engine that
/// receives it.
pub fn cancelled(tree: &Mutex<Tree>, store: &ImageStore) {
    store.discard();
    set(tree, IDLE, RESULT_CANCELLED);
    info!("firmware download cancelled; the image is deleted");
}

/// Whether a change is the Execute of /5/0/2 (Update).
pub fn is_update(change: &dm_core::Change) -> bool {
    matches!(change.kind, dm_core::ChangeKind::Executed(_))
        && change.path == Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::UPDATE)
}

/// The mark holding the software version an LwM2M update must replace,
/// while the device reboots into it.
const AWAITING_REBOOT: &str = "lwm2m-awaiting-reboot";

/// What the A/B mark records: the version the update must replace, and
/// the package's URI and size for the report after the reboot.
fn awaiting(tree: &Mutex<Tree>, uri: &str, size: u64) -> String {
    format!("{}\n{uri}\n{size}\n", running_version(tree))
}

/// The software version the device runs (/3/0/3).
pub fn running_version(tree: &Mutex<Tree>) -> String {
    use dm_core::catalog::device;
    match lock(tree).read(
        Origin::Agent,
        &Path::resource(device::ID, InstanceId(0), device::FIRMWARE_VERSION),
    ) {
        Ok(dm_core::ResourceValue::Single(Value::String(v))) => v,
        _ => String::new(),
    }
}

/// Applies the downloaded image with `command`, moving the state machine.
/// With `reboot` (an A/B system: the program installs into the inactive
/// slot), success is not final: the version it must replace is recorded,
/// the state stays Updating, and the device reboots through `reboot`; the
/// next start decides ([`recover`]).
pub async fn apply(
    tree: Arc<Mutex<Tree>>,
    store: ImageStore,
    command: Option<Vec<String>>,
    reboot: Option<tokio::sync::mpsc::Sender<&'static str>>,
    announcer: Announcer,
) {
    set(&tree, UPDATING, 0);
    // The image is held while it is applied: no transfer may replace it.
    let claim = match store.claim() {
        Ok(claim) => claim,
        Err(e) => {
            warn!("firmware update refused: {e}");
            set(&tree, DOWNLOADED, RESULT_FAILED);
            return;
        }
    };
    let size = claim
        .image()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let uri = package_uri_now(&tree);
    let outcome =
        match (command, claim.image()) {
            (None, _) => Err("no firmware command is configured ([firmware] command)".to_owned()),
            (_, None) => Err("no image to apply".to_owned()),
            (Some(argv), Some(image)) => match argv.split_first() {
                None => Err("an empty firmware command".to_owned()),
                Some((program, arguments)) => run_update(program, arguments, &image)
                    .await
                    .and_then(|status| {
                        if status.success() {
                            Ok(())
                        } else {
                            Err(format!("{program}: {status}"))
                        }
                    }),
            },
        };
    let outcome = match (outcome, reboot) {
        (Ok(()), Some(reboot)) => match store.mark(AWAITING_REBOOT, &awaiting(&tree, &uri, size)) {
            Ok(()) => {
                info!("firmware installed; rebooting into it to confirm the new version");
                claim.discard();
                let _ = reboot.send("firmware update").await;
                return;
            }
            Err(e) => Err(format!(
                "the update cannot be confirmed after a reboot: {e}"
            )),
        },
        (outcome, _) => outcome,
    };
    match outcome {
        Ok(()) => {
            info!("firmware update applied");
            claim.discard();
            set(&tree, IDLE, RESULT_SUCCESS);
            announcer.report(&uri, size, None);
        }
        Err(e) => {
            warn!("firmware update failed: {e}");
            set(&tree, DOWNLOADED, RESULT_FAILED);
            announcer.report(
                &uri,
                size,
                Some(TransferFault::new(
                    FaultCode::DownloadFailure,
                    format!("Download failure: {e}"),
                )),
            );
        }
    }
}

/// The Package URI (/5/0/1) now: where a pulled image came from; empty
/// for a pushed one.
fn package_uri_now(tree: &Mutex<Tree>) -> String {
    match lock(tree).read(
        Origin::Agent,
        &Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::PACKAGE_URI),
    ) {
        Ok(dm_core::ResourceValue::Single(Value::String(uri))) => uri,
        _ => String::new(),
    }
}

/// Whether a change is a client's write of the Package URI (/5/0/1);
/// returns the URI.
pub fn package_uri(change: &dm_core::Change) -> Option<String> {
    if change.origin == Origin::Agent
        || change.path != Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::PACKAGE_URI)
    {
        return None;
    }
    match &change.kind {
        dm_core::ChangeKind::Value(dm_core::ResourceValue::Single(Value::String(uri))) => {
            Some(uri.clone())
        }
        _ => None,
    }
}

/// What the agent can pull from (/5/0/8: 0 CoAP, 1 CoAPS, 2 HTTP/1.1,
/// 3 HTTPS/1.1) and how
/// packages come (/5/0/9: 2, push and pull).
pub fn announce(tree: &Mutex<Tree>) {
    use dm_core::catalog::firmware::{
        FIRMWARE_UPDATE_DELIVERY_METHOD, FIRMWARE_UPDATE_PROTOCOL_SUPPORT,
    };
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let _ = lock(tree)
        .begin(Origin::Agent)
        .set_multiple(
            at(FIRMWARE_UPDATE_PROTOCOL_SUPPORT),
            // CoAP, CoAPS, HTTP, HTTPS (the object's enumeration), those
            // this build has.
            ["coap", "coaps", "http", "https"]
                .into_iter()
                .enumerate()
                .filter(|(_, scheme)| crate::unbuilt_scheme(scheme).is_none())
                .enumerate()
                .map(|(i, (protocol, _))| (i as u16, Value::Integer(protocol as i64)))
                .collect(),
        )
        .set(at(FIRMWARE_UPDATE_DELIVERY_METHOD), Value::Integer(2))
        .commit();
}

/// Pull delivery: downloads `uri` into the image store, streaming.
/// Downloading, then Downloaded; on failure Idle with the Update Result
/// that says why. An empty URI resets the state machine.
pub async fn pull(
    tree: Arc<Mutex<Tree>>,
    store: ImageStore,
    uri: String,
    tls: dm_cwmp_tokio::tls::Trust,
    announcer: Announcer,
    sha256: Option<[u8; 32]>,
) {
    if uri.is_empty() {
        set(&tree, IDLE, 0);
        return;
    }
    announcer.begin();
    let result = pull_inner(Arc::clone(&tree), store, uri.clone(), tls, sha256).await;
    // A pull that failed is over; one that succeeded is reported with its
    // update.
    let fault = match result {
        RESULT_NO_SPACE => Some(TransferFault::new(
            FaultCode::DownloadFailure,
            "Download failure: no room for the image",
        )),
        RESULT_CONNECTION_LOST => Some(TransferFault::new(
            FaultCode::DownloadIncomplete,
            "Download failure: the transfer broke off",
        )),
        RESULT_INVALID_URI => Some(TransferFault::new(
            FaultCode::FileNotAccessible,
            "Download failure: the file is not accessible",
        )),
        RESULT_UNSUPPORTED_PROTOCOL => Some(TransferFault::new(
            FaultCode::UnsupportedTransferProtocol,
            "Unsupported protocol for file transfer",
        )),
        RESULT_INTEGRITY => Some(TransferFault::new(
            FaultCode::FileCorrupted,
            "Download failure: the file is corrupted",
        )),
        _ => None,
    };
    if let Some(fault) = fault {
        announcer.report(&uri, 0, Some(fault));
    }
}

/// The pull itself; returns the Update Result it left (0 when Downloaded).
async fn pull_inner(
    tree: Arc<Mutex<Tree>>,
    store: ImageStore,
    uri: String,
    tls: dm_cwmp_tokio::tls::Trust,
    sha256: Option<[u8; 32]>,
) -> i64 {
    // E.6: an unsupported protocol leaves the state Idle (one this build
    // left out too).
    let scheme = uri.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("coap" | "coaps" | "http" | "https"))
        || scheme.and_then(crate::unbuilt_scheme).is_some()
    {
        warn!(uri = %dm_cwmp_tokio::redacted(&uri), "coap://, coaps://, http:// and https:// are pulled, as this build has them");
        set(&tree, IDLE, RESULT_UNSUPPORTED_PROTOCOL);
        return RESULT_UNSUPPORTED_PROTOCOL;
    }
    set(&tree, DOWNLOADING, 0);
    let result = match fetch(&tree, &store, &uri, Default::default(), tls, sha256).await {
        Ok(_) => {
            set(&tree, DOWNLOADED, 0);
            return 0;
        }
        Err(Failure::NoSpace) => RESULT_NO_SPACE,
        Err(Failure::ConnectionLost) => RESULT_CONNECTION_LOST,
        Err(Failure::InvalidUri) => RESULT_INVALID_URI,
        Err(Failure::Unsupported) => RESULT_UNSUPPORTED_PROTOCOL,
        Err(Failure::Integrity) => RESULT_INTEGRITY,
    };
    set(&tree, IDLE, result);
    result
}

/// Why a download failed, whichever object asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Too large for the limit, or the disk is full.
    NoSpace,
    /// The server went away or the transfer broke off.
    ConnectionLost,
    /// Not found, refused, or not a URI.
    InvalidUri,
    /// A scheme we do not pull, or coaps:// without credentials.
    Unsupported,
    /// The image is not the one named (its SHA-256 differs).
    Integrity,
}

/// Downloads `uri` (coap, coaps, http, https, ftp) into `store`, streaming and
/// with progress on the change stream; the complete image is in place
/// when it returns Ok with its path and size. A failure leaves nothing.
pub async fn fetch(
    tree: &Arc<Mutex<Tree>>,
    store: &ImageStore,
    uri: &str,
    credentials: dm_cwmp_tokio::Credentials,
    tls: dm_cwmp_tokio::tls::Trust,
    sha256: Option<[u8; 32]>,
) -> Result<(std::path::PathBuf, u64), Failure> {
    let scheme = uri.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("coap" | "coaps" | "http" | "https" | "ftp")) {
        warn!(
            uri = %dm_cwmp_tokio::redacted(uri),
            "coap://, coaps://, http://, https:// and ftp:// are pulled"
        );
        return Err(Failure::Unsupported);
    }
    if let Some(reason) = scheme.and_then(crate::unbuilt_scheme) {
        warn!(uri = %dm_cwmp_tokio::redacted(uri), "{reason}");
        return Err(Failure::Unsupported);
    }
    let mut writer = store.begin().map_err(|e| {
        warn!("download: {e}");
        match e {
            ImageError::NoSpace(_) => Failure::NoSpace,
            // Another transfer holds the slot.
            ImageError::Io(_) => Failure::ConnectionLost,
        }
    })?;
    let transferred = |received: Result<u64, dm_cwmp_tokio::http::HttpError>| {
        received.map_err(|e| {
            warn!(uri = %dm_cwmp_tokio::redacted(uri), "download: {e}");
            match e {
                dm_cwmp_tokio::http::HttpError::Sink(_) => Failure::NoSpace,
                dm_cwmp_tokio::http::HttpError::Status(_)
                | dm_cwmp_tokio::http::HttpError::Unauthorized(_) => Failure::InvalidUri,
                _ => Failure::ConnectionLost,
            }
        })
    };
    let received = match scheme {
        Some("coap" | "coaps") => fetch_coap(tree, uri, &mut writer).await,
        Some("ftp") => {
            transferred(download_image(Source::Ftp(uri), credentials, tls, &mut writer, tree).await)
        }
        _ => match uri.parse::<hyper::Uri>() {
            Err(e) => {
                warn!(uri = %dm_cwmp_tokio::redacted(uri), "{e}");
                Err(Failure::InvalidUri)
            }
            Ok(parsed) => transferred(
                download_image(Source::Http(parsed), credentials, tls, &mut writer, tree).await,
            ),
        },
    };
    let size = match received {
        Ok(size) => size,
        Err(failure) => {
            // The partial file goes: a full disk must not stay full.
            writer.abort();
            return Err(failure);
        }
    };
    if let Some(expected) = sha256
        && !writer.has_sha256(&expected)
    {
        warn!(uri = %dm_cwmp_tokio::redacted(uri), "the image's SHA-256 is not the one named; discarded");
        writer.abort();
        return Err(Failure::Integrity);
    }
    match writer.finish() {
        Ok(path) => {
            info!(uri = %dm_cwmp_tokio::redacted(uri), size, path = %path.display(), "package downloaded");
            // The last step, whether or not the size was known.
            let package = Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::PACKAGE);
            lock(tree).publish_progress(Origin::Agent, &package, size, Some(size));
            Ok((path, size))
        }
        Err(e) => {
            warn!("download: {e}");
            Err(match e {
                ImageError::NoSpace(_) => Failure::NoSpace,
                ImageError::Io(_) => Failure::ConnectionLost,
            })
        }
    }
}

/// Publishes transfer progress on the change stream (/5/0/0), about every
/// 2% of a known size, else every MiB: enough for a progress bar, without
/// taking the tree's lock for every network chunk.
pub struct Progress {
    tree: Arc<Mutex<Tree>>,
    done: u64,
    total: Option<u64>,
    published: u64,
}

impl Progress {
    pub fn new(tree: Arc<Mutex<Tree>>) -> Progress {
        Progress {
            tree,
            done: 0,
            total: None,
            published: 0,
        }
    }

    fn step(&self) -> u64 {
        self.total.map_or(1 << 20, |t| (t / 50).max(64 * 1024))
    }

    /// `done` bytes of `total` so far.
    pub fn at(&mut self, done: u64, total: Option<u64>) {
        self.done = done;
        self.total = total.or(self.total);
        let finished = self.total == Some(done);
        if finished || done < self.published || done - self.published >= self.step() {
            self.published = done;
            let package = Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::PACKAGE);
            lock(&self.tree).publish_progress(Origin::Agent, &package, done, self.total);
        }
    }
}

/// An HTTP download into the image file, with progress.
struct ImageSink<'a> {
    writer: &'a mut ImageWriter,
    progress: Progress,
}

impl dm_cwmp_tokio::http::DownloadSink for ImageSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), dm_cwmp_tokio::http::SinkError> {
        self.writer.write(bytes).map_err(|e| e.to_string())?;
        self.progress.at(self.writer.written(), None);
        Ok(())
    }

    fn restart(&mut self) -> Result<(), dm_cwmp_tokio::http::SinkError> {
        self.writer.restart().map_err(|e| e.to_string().into())
    }

    fn length(&mut self, total: Option<u64>) {
        self.progress.total = total;
    }
}

/// How many times a download cut short is resumed before it fails.
const RESUMES: u32 = 3;

/// Downloads over HTTP(S) into `writer`; a transfer cut short (the
/// connection lost or stalled) is resumed from where it stopped with a
/// Range request, where the server allows it, up to [`RESUMES`] times.
/// Returns the image's size.
async fn fetch_http(
    session: &mut dm_cwmp_tokio::http::HttpSession,
    writer: &mut ImageWriter,
    tree: Arc<Mutex<Tree>>,
) -> Result<u64, dm_cwmp_tokio::http::HttpError> {
    use dm_cwmp_tokio::http::HttpError;
    let idle = std::time::Duration::from_secs(30);
    let mut sink = ImageSink {
        writer,
        progress: Progress::new(tree),
    };
    let mut resumes = 0;
    loop {
        let offset = sink.writer.written();
        match session.download_to(idle, offset, &mut sink).await {
            Ok(_) => return Ok(sink.writer.written()),
            Err(e @ (HttpError::Protocol(_) | HttpError::Timeout))
                if resumes < RESUMES && sink.writer.written() > offset =>
            {
                resumes += 1;
                warn!(
                    at = sink.writer.written(),
                    "download cut short ({e}); resuming"
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pull over CoAP(S) Block2 (LwM2M Core E.6). coaps:// uses the
/// credentials (PSK or certificates) of the server account on the same
/// host, else of the first account that has some (certificate usages 0 and
/// 1, which need the configured trust anchors, are not for pulls): LwM2M ties the pull's credentials to a server's Security
/// instance, and Leshan and Wakaama serve packages from the server itself.
async fn fetch_coap(
    tree: &Arc<Mutex<Tree>>,
    uri: &str,
    writer: &mut ImageWriter,
) -> Result<u64, Failure> {
    use dm_lwm2m_tokio::pull::PullError;
    let (credentials, sni) = {
        let accounts = dm_lwm2m::bootstrap::accounts(&lock(tree));
        // The server the package is on, by host and port (coaps://h and
        // coaps://h:5684 are one server).
        let host = |u: &str| {
            dm_lwm2m_tokio::parse_server_uri(u)
                .ok()
                .map(|(h, p, _)| (h, p))
        };
        let wanted = host(uri);
        let usable = accounts
            .iter()
            .filter(|a| {
                a.credentials
                    .as_ref()
                    .is_some_and(|c| !c.needs_trust_anchors())
            })
            .collect::<Vec<_>>();
        let same_server = usable.iter().find(|a| host(&a.uri) == wanted);
        (
            same_server
                .or(usable.first())
                .and_then(|a| a.credentials.clone()),
            // The server's SNI (/0/x/14) names it for the package too.
            same_server.and_then(|a| a.sni.clone()),
        )
    };
    let mut progress = Progress::new(Arc::clone(tree));
    dm_lwm2m_tokio::pull::pull(
        uri,
        credentials,
        sni,
        &mut |bytes| writer.write(bytes).map_err(|e| e.to_string()),
        &mut |done, total| progress.at(done, total),
    )
    .await
    .map_err(|e| {
        warn!(uri = %dm_cwmp_tokio::redacted(uri), "download: {e}");
        match e {
            PullError::Uri(_)
            | PullError::Fetch(
                dm_lwm2m::fetch::FetchError::NotFound
                | dm_lwm2m::fetch::FetchError::Unauthorized(_),
            ) => Failure::InvalidUri,
            PullError::Unsupported(_) => Failure::Unsupported,
            PullError::Sink(_) => Failure::NoSpace,
            PullError::Fetch(_) | PullError::Dtls(_) | PullError::Io(_) => Failure::ConnectionLost,
        }
    })
}

/// CWMP Download of a firmware image (TR-069 §A.3.2.8) over HTTP(S) or
/// FTP: the same image
/// store and update program as LwM2M's /5. The image streams to the file;
/// FileSize, when given, must match; then the program applies it. Faults
/// are TR-069's: 9012 authentication, 9015 server unreachable, 9016 file
/// not accessible, 9017 transfer broken, 9018 size mismatch, 9010 other.
/// A "3 Vendor Configuration File" Download restores a configuration
/// (`restore_configuration`). Uploads (TR-069 §A.4.1.5) send the system
/// log ("2 Vendor Log File") or the configuration ("1 Vendor
/// Configuration File") by PUT (POST if refused) or FTP STOR, with the
/// same authentication; faults 9012 authentication, 9011 any other.
///
/// With `reboot` (A/B), a successful program is not the end: the driver
/// reboots the device and the next start reports the outcome by the
/// software version.
pub fn cwmp_transfers(
    tree: Arc<Mutex<Tree>>,
    store: ImageStore,
    command: Option<Vec<String>>,
    reboot: bool,
    tls: dm_cwmp_tokio::tls::Trust,
    log: Arc<dyn dm_platform::SystemLog>,
) -> dm_cwmp_tokio::TransferHandler {
    use dm_cwmp_tokio::Applied;
    dm_cwmp_tokio::TransferHandler(Arc::new(move |transfer| {
        let (tree, store, command, tls, log) = (
            Arc::clone(&tree),
            store.clone(),
            command.clone(),
            tls.clone(),
            Arc::clone(&log),
        );
        Box::pin(async move {
            if let Some(reason) = transfer
                .url
                .split_once("://")
                .and_then(|(scheme, _)| crate::unbuilt_scheme(&scheme.to_ascii_lowercase()))
            {
                return Err(TransferFault::new(
                    FaultCode::UnsupportedTransferProtocol,
                    format!("Unsupported protocol for file transfer: {reason}"),
                ));
            }
            if transfer.upload {
                return upload(&transfer, &tree, log.as_ref(), tls)
                    .await
                    .map(|()| Applied::Done);
            }
            let fault = |code: FaultCode, text: String| Err(TransferFault::new(code, text));
            let credentials = dm_cwmp_tokio::Credentials {
                username: transfer.username.clone(),
                password: transfer.password.clone(),
            };
            if transfer.file_type == dm_cwmp::session::CONFIGURATION_DOWNLOAD {
                return restore_configuration(&transfer, &tree, credentials, tls)
                    .await
                    .map(|()| Applied::Done);
            }
            let source = match Source::of(&transfer.url) {
                Ok(source) => source,
                Err(e) => return fault(FaultCode::FileNotAccessible, e),
            };
            let mut writer = match store.begin() {
                Ok(writer) => writer,
                Err(e) => return fault(FaultCode::DownloadFailure, e.to_string()),
            };
            let received = download_image(source, credentials, tls, &mut writer, &tree).await;
            let size = match received {
                Ok(size) if transfer.file_size > 0 && size != transfer.file_size => {
                    writer.abort();
                    return fault(
                        FaultCode::FileCorrupted,
                        format!(
                            "{size} bytes received, FileSize said {}",
                            transfer.file_size
                        ),
                    );
                }
                Ok(size) => size,
                Err(e) => {
                    // A failed transfer does not keep the disk full.
                    writer.abort();
                    return Err(download_fault(e, FaultCode::DownloadFailure));
                }
            };
            // Held until applied: no other transfer replaces it meanwhile.
            let (image, claim) = match writer.finish_claimed() {
                Ok(done) => done,
                Err(e) => return fault(FaultCode::DownloadFailure, e.to_string()),
            };
            let Some((program, arguments)) = command.as_deref().and_then(<[String]>::split_first)
            else {
                return fault(
                    FaultCode::DownloadFailure,
                    "downloaded, but no firmware command is configured ([firmware] command)".into(),
                );
            };
            match run_update(program, arguments, &image).await {
                Ok(status) if status.success() => {
                    info!(
                        key = transfer.command_key,
                        size, "firmware image applied (CWMP Download)"
                    );
                    claim.discard();
                    Ok(if reboot {
                        Applied::AwaitingReboot {
                            version_before: running_version(&tree),
                        }
                    } else {
                        Applied::Done
                    })
                }
                Ok(status) => fault(
                    FaultCode::DownloadFailure,
                    format!("the update program failed: {status}"),
                ),
                Err(e) => fault(FaultCode::DownloadFailure, e),
            }
        })
    }))
}

/// The largest configuration file a Download restores.
const MAX_CONFIGURATION: usize = 1 << 20;

/// How long a download may go without a byte.
const TRANSFER_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a download comes from: FTP, or HTTP(S) with its parsed URI.
enum Source<'u> {
    Ftp(&'u str),
    Http(hyper::Uri),
}

impl<'u> Source<'u> {
    /// ftp:// goes to the FTP client as it is (it parses its own URLs);
    /// anything else must parse as an HTTP URI.
    fn of(url: &'u str) -> Result<Source<'u>, String> {
        if url.starts_with("ftp://") {
            return Ok(Source::Ftp(url));
        }
        url.parse()
            .map(Source::Http)
            .map_err(|e| format!("{}: {e}", dm_cwmp_tokio::redacted(url)))
    }
}

/// Downloads into the image file, with progress: FTP (resumed with REST)
/// or HTTP(S) (resumed with Range). Returns the size.
async fn download_image(
    source: Source<'_>,
    credentials: dm_cwmp_tokio::Credentials,
    tls: dm_cwmp_tokio::tls::Trust,
    writer: &mut ImageWriter,
    tree: &Arc<Mutex<Tree>>,
) -> Result<u64, dm_cwmp_tokio::http::HttpError> {
    match source {
        Source::Ftp(url) => {
            let mut sink = ImageSink {
                writer,
                progress: Progress::new(Arc::clone(tree)),
            };
            dm_cwmp_tokio::ftp::download(url, &credentials, TRANSFER_IDLE, &mut sink).await
        }
        Source::Http(uri) => {
            let mut session =
                dm_cwmp_tokio::http::HttpSession::new(uri, credentials, TRANSFER_IDLE, tls);
            let received = fetch_http(&mut session, writer, Arc::clone(tree)).await;
            session.close().await;
            received
        }
    }
}

/// A failed download as TR-069's TransferComplete fault: 9012 refused
/// login, 9015 no server, 9016 no file, 9017 cut short; `sink` is the code
/// for bytes the destination refused (9010 for a full disk, 9018 for a
/// file too large to be what was asked).
fn download_fault(e: dm_cwmp_tokio::http::HttpError, sink: FaultCode) -> TransferFault {
    use dm_cwmp_tokio::http::HttpError;
    match e {
        HttpError::Unauthorized(e) => {
            TransferFault::new(FaultCode::FileTransferAuthenticationFailure, e)
        }
        e @ HttpError::Connect(_) => {
            TransferFault::new(FaultCode::FileServerUnreachable, e.to_string())
        }
        e @ HttpError::Status(_) => TransferFault::new(FaultCode::FileNotAccessible, e.to_string()),
        e @ (HttpError::Timeout | HttpError::Protocol(_)) => {
            TransferFault::new(FaultCode::DownloadIncomplete, e.to_string())
        }
        e @ HttpError::Sink(_) => TransferFault::new(sink, e.to_string()),
    }
}

/// A download kept in memory, up to a limit.
struct MemorySink {
    bytes: Vec<u8>,
    limit: usize,
}

impl dm_cwmp_tokio::http::DownloadSink for MemorySink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), dm_cwmp_tokio::http::SinkError> {
        if self.bytes.len() + bytes.len() > self.limit {
            return Err(format!("larger than {} bytes", self.limit).into());
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn restart(&mut self) -> Result<(), dm_cwmp_tokio::http::SinkError> {
        self.bytes.clear();
        Ok(())
    }
}

/// Download "3 Vendor Configuration File": the file (HTTP(S) or FTP, at
/// most [`MAX_CONFIGURATION`]) restored with
/// `dm_cwmp::rpc::apply_configuration_file`, all or nothing. Faults: the
/// transfer's as for firmware, 9018 for a file that is not a
/// configuration or that the data model refuses.
async fn restore_configuration(
    transfer: &dm_cwmp::session::QueuedDownload,
    tree: &Mutex<Tree>,
    credentials: dm_cwmp_tokio::Credentials,
    tls: dm_cwmp_tokio::tls::Trust,
) -> Result<(), TransferFault> {
    let mut sink = MemorySink {
        bytes: Vec::new(),
        limit: MAX_CONFIGURATION,
    };
    match Source::of(&transfer.url)
        .map_err(|e| TransferFault::new(FaultCode::FileNotAccessible, e))?
    {
        Source::Ftp(url) => {
            dm_cwmp_tokio::ftp::download(url, &credentials, TRANSFER_IDLE, &mut sink).await
        }
        Source::Http(uri) => {
            let mut session =
                dm_cwmp_tokio::http::HttpSession::new(uri, credentials, TRANSFER_IDLE, tls);
            let received = session.download_to(TRANSFER_IDLE, 0, &mut sink).await;
            session.close().await;
            received
        }
    }
    // Too large a file is no configuration: 9018.
    .map_err(|e| download_fault(e, FaultCode::FileCorrupted))?;
    if transfer.file_size > 0 && sink.bytes.len() as u64 != transfer.file_size {
        return Err(TransferFault::new(
            FaultCode::FileCorrupted,
            format!(
                "{} bytes received, FileSize said {}",
                sink.bytes.len(),
                transfer.file_size
            ),
        ));
    }
    let text = String::from_utf8(sink.bytes).map_err(|_| {
        TransferFault::new(
            FaultCode::FileCorrupted,
            "the configuration file is not UTF-8".to_owned(),
        )
    })?;
    let not_applied = |e: dm_cwmp::rpc::ConfigurationFileError| {
        TransferFault::new(
            FaultCode::FileCorrupted,
            format!("the configuration file was not applied: {e}"),
        )
    };
    let parameters = dm_cwmp::rpc::parse_configuration_file(&text).map_err(not_applied)?;
    // Wi-Fi and APN settings are host writes: made off the tree's lock.
    let written = dm_cwmp::rpc::prepare_configuration(&mut lock(tree), &parameters);
    crate::host::finish_written(tree, written)
        .await
        .map_err(|fault| {
            let mut refused = not_applied(dm_cwmp::rpc::configuration_refused(&fault));
            // A host that failed or refused for now (another client's change
            // on its way, D-Bus down) says nothing of the file: 9001/9002 as
            // the SetParameterValues would get (TR-069 §A.3.3.1 lists both
            // for TransferComplete), not 9018.
            for code in [FaultCode::RequestDenied, FaultCode::InternalError] {
                if fault.code == code.code() {
                    refused.code = code;
                }
            }
            refused
        })?;
    let applied = parameters.len();
    info!(
        key = transfer.command_key,
        parameters = applied,
        "configuration restored (CWMP Download)"
    );
    // VendorConfigFile's Date: when the file was applied.
    if let Err(e) = dm_objects::vendor_config_file::restored(&mut lock(tree), dm_rt::clock::wall())
    {
        warn!("VendorConfigFile.1.Date not saved: {e}");
    }
    Ok(())
}

/// Upload (TR-069 §A.4.1.5) of the system log ("2 Vendor Log File") or
/// the configuration ("1 Vendor Configuration File").
async fn upload(
    transfer: &dm_cwmp::session::QueuedDownload,
    tree: &Mutex<Tree>,
    log: &dyn dm_platform::SystemLog,
    tls: dm_cwmp_tokio::tls::Trust,
) -> Result<(), TransferFault> {
    use dm_cwmp_tokio::http::HttpError;
    let body = if transfer.file_type == dm_cwmp::session::CONFIGURATION_UPLOAD {
        dm_cwmp::rpc::configuration_file(&lock(tree))
    } else {
        log.read_all().map_err(|e| {
            TransferFault::new(
                FaultCode::UploadFailure,
                format!("Upload failure: the log cannot be read: {e}"),
            )
        })?
    };
    let credentials = dm_cwmp_tokio::Credentials {
        username: transfer.username.clone(),
        password: transfer.password.clone(),
    };
    let idle = std::time::Duration::from_secs(60);
    let size = body.len();
    let sent = if transfer.url.starts_with("ftp://") {
        dm_cwmp_tokio::ftp::upload(&transfer.url, &credentials, idle, body.as_bytes())
            .await
            .map(|()| 200)
    } else {
        let uri: hyper::Uri = transfer.url.parse().map_err(|e| {
            TransferFault::new(FaultCode::UploadFailure, format!("{}: {e}", transfer.url))
        })?;
        let mut session = dm_cwmp_tokio::http::HttpSession::new(uri, credentials, idle, tls);
        let sent = session.upload(body).await;
        session.close().await;
        sent
    };
    match sent {
        Ok(status) if (200..300).contains(&status) => {
            info!(
                key = transfer.command_key,
                file_type = transfer.file_type,
                bytes = size,
                "file uploaded"
            );
            Ok(())
        }
        Ok(status) => Err(TransferFault::new(
            FaultCode::UploadFailure,
            format!("Upload failure: the server answered {status}"),
        )),
        Err(HttpError::Unauthorized(e)) => Err(TransferFault::new(
            FaultCode::FileTransferAuthenticationFailure,
            e,
        )),
        Err(e) => Err(TransferFault::new(
            FaultCode::UploadFailure,
            format!("Upload failure: {e}"),
        )),
    }
}

/// At start: a /5 transfer or update that was running when the agent
/// stopped did not finish. Downloading becomes Idle with result 4
/// (connection lost). Updating after an A/B install and its reboot becomes
/// Idle with result 1 when the software version changed, 8 when the device
/// came back with the version the update was to replace (the old slot
/// stays). Any other Updating becomes Idle with result 8: its outcome is
/// unknown. Returns whether this start is into a firmware an update just
/// installed (USP's Boot! says FirmwareUpdated).
pub fn recover(tree: &Mutex<Tree>, store: &ImageStore, announcer: &Announcer) -> bool {
    let awaiting = store.read_mark(AWAITING_REBOOT);
    store.clear_mark(AWAITING_REBOOT);
    let state = match lock(tree).read(Origin::Agent, &Path::resource(ID, InstanceId(0), STATE)) {
        Ok(dm_core::ResourceValue::Single(Value::Integer(state))) => state,
        _ => return false,
    };
    match state {
        DOWNLOADING => {
            warn!("a firmware download was interrupted by a restart");
            set(tree, IDLE, RESULT_CONNECTION_LOST);
        }
        UPDATING => match awaiting {
            Some(mark) => {
                let mut lines = mark.lines();
                let before = lines.next().unwrap_or("").to_owned();
                let uri = lines.next().unwrap_or("");
                let size = lines.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let now = running_version(tree);
                if now != before {
                    info!(
                        from = before,
                        to = now,
                        "firmware update confirmed after the reboot"
                    );
                    set(tree, IDLE, RESULT_SUCCESS);
                    announcer.report(uri, size, None);
                    return true;
                } else {
                    warn!(
                        version = now,
                        "the device came back with the version the update was to replace: \
                         the update failed, the old image stays"
                    );
                    set(tree, IDLE, RESULT_FAILED);
                    announcer.report(
                        uri,
                        size,
                        Some(TransferFault::new(
                            FaultCode::DownloadFailure,
                            format!("the device came back with {now}"),
                        )),
                    );
                }
            }
            None => {
                warn!("a firmware update was interrupted by a restart; reported as failed");
                set(tree, IDLE, RESULT_FAILED);
            }
        },
        _ => {}
    }
    false
}

#[cfg(test)]
mod tests;
