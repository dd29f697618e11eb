//! The protocol-neutral core of dmagent.
//!
//! One object tree with typed resources ([`tree::Tree`]), constant schemas
//! generated from the standards ([`catalog`]), transactions, reporting
//! attributes, a change stream and snapshots. **Architecture Invariant:**
//! nothing here knows a protocol path, opens a file or a socket, or reads the
//! clock; adapters and the platform bring those.

pub mod attributes;
#[rustfmt::skip]
pub mod catalog;
pub mod enums;
pub mod error;
pub mod events;
pub mod facts;
pub mod host;
pub mod path;
pub mod schema;
pub mod snapshot;
pub mod support;
pub mod tree;
pub mod value;

pub use attributes::{Notification, ObserveAttributes};
pub use error::{Error, TransactionError};
pub use events::{Change, ChangeKind, Subscription};
pub use path::{Origin, Path};
pub use schema::{
    Access, InstanceId, ObjectId, ObjectSchema, ResourceId, ResourceSchema, ValueType,
};
pub use snapshot::{SaveError, Snapshot, StateStore};
pub use support::{lock, unix_seconds};
pub use tree::{
    Completion, Fetched, HostRead, HostReads, HostRows, HostWork, HostWrite, Instance,
    ObjectHandler, PendingCommit, Prepared, ResourceValue, Row, Slot, Tree,
};
pub use value::{ObjectLink, Value, ValueError};
