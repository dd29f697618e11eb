//! The persistent state, as plain data.
//!
//! The core decides *what* is persisted (stored values, instance numbers,
//! attributes, adapters' pending state) and *when* (before a change is
//! acknowledged); a [`StateStore`] from the platform decides *how* (an atomic
//! file write). The core itself does no I/O.

use std::collections::BTreeMap;

use crate::attributes::{Notification, ObserveAttributes};
use crate::path::Path;
use crate::schema::{InstanceId, ObjectId, ResourceId};
use crate::tree::ResourceValue;

/// Everything the tree persists.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    pub objects: Vec<ObjectState>,
    pub notification: Vec<(Path, Notification)>,
    pub access_list: Vec<(Path, Vec<String>)>,
    pub observe: Vec<(u16, Path, ObserveAttributes)>,
    pub pending: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ObjectState {
    pub object: ObjectId,
    pub next_instance: u16,
    pub instances: Vec<InstanceState>,
}

#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct InstanceState {
    pub instance: InstanceId,
    pub values: Vec<(ResourceId, ResourceValue)>,
}

/// Where snapshots go. `save` returns only once the snapshot is durable:
/// after it, a crash at any moment must leave this snapshot or a later one.
/// Why a state could not be saved: whatever the store met (a full disk,
/// a read-only file system), kept for the message.
pub type SaveError = Box<dyn std::error::Error + Send + Sync>;

pub trait StateStore: Send + Sync {
    fn save(&mut self, snapshot: &Snapshot) -> Result<(), SaveError>;
}
