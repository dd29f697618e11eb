//! Errors of the core model.
//!
//! Adapters map each variant to their own fault in one function (CWMP fault
//! codes 9000–9019, CoAP response codes); the variants keep apart "the
//! client asked for something that does not exist or is not allowed", "the
//! value is bad" and "we or the platform failed".

use crate::path::{Origin, Path};
use crate::schema::ObjectId;
use crate::value::ValueError;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}: no such object")]
    ObjectNotFound(ObjectId),
    #[error("{0}: no such instance")]
    InstanceNotFound(Path),
    #[error("{0}: no such resource")]
    ResourceNotFound(Path),
    #[error("{0}: not readable")]
    NotReadable(Path),
    #[error("{0}: not writable")]
    NotWritable(Path),
    #[error("{0}: not executable")]
    NotExecutable(Path),
    #[error("{path}: refused to {origin}")]
    AccessDenied { path: Path, origin: Origin },
    #[error("{path}: invalid value: {source}")]
    InvalidValue { path: Path, source: ValueError },
    /// The object's own rules refused the change (a cross-resource check, a
    /// state that does not allow it).
    #[error("{path}: {reason}")]
    Rejected { path: Path, reason: String },
    #[error("{0}: instance already exists")]
    InstanceExists(Path),
    #[error("{0}: every instance number is in use")]
    InstancesExhausted(ObjectId),
    #[error("{0}: instances cannot be created or deleted here")]
    FixedInstances(ObjectId),
    /// The instance is being changed on the host for another transaction
    /// (a NetworkManager profile written, waiting for its answer).
    #[error("{0}: a change of it is being carried to the host; try again")]
    Busy(Path),
    /// A client asked for one more instance than an object may hold
    /// (TR-181 maxEntries, or the configured limit).
    #[error("{object}: no more than {limit} instances")]
    TooManyInstances { object: ObjectId, limit: usize },
    #[error("{0}: not supported by this device")]
    NotSupported(Path),
    /// The host failed (a D-Bus error).
    #[error("platform: {0}")]
    Platform(String),
    /// The host service that would do it is not running (NetworkManager
    /// or oFono absent).
    #[error("platform: {0} is not available")]
    PlatformUnavailable(String),
    /// The host refused it (D-Bus access denied, polkit).
    #[error("platform: access denied: {0}")]
    PlatformDenied(String),
    /// The host found the value unacceptable (an SSID or APN it rejects).
    #[error("platform: invalid argument: {0}")]
    PlatformInvalid(String),
    /// The state could not be saved; the change was rolled back.
    #[error("state store: {0}")]
    Storage(String),
}

/// Every fault of a failed transaction, in the order the writes were made.
/// Nothing of the transaction was applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("transaction refused: {}", .faults.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
pub struct TransactionError {
    pub faults: Vec<Error>,
}
