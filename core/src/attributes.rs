//! Per-resource reporting attributes.
//!
//! Two families live side by side, because both adapters report changes of
//! the same tree: the TR-069 notification level and access list (TR-069
//! §A.3.2.4), and the LwM2M notification attributes kept per server (LwM2M
//! Core §5.1.1). The core stores and persists them; deciding when to report
//! is each adapter's job.

use std::collections::BTreeMap;

use crate::path::Path;

/// How a change of a resource is reported to the ACS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Notification {
    /// Not reported.
    #[default]
    Off,
    /// Reported in the next session.
    Passive,
    /// Reported at once: a session is started for it.
    Active,
}

impl Notification {
    pub fn from_level(level: u8) -> Option<Notification> {
        match level {
            0 => Some(Notification::Off),
            1 => Some(Notification::Passive),
            2 => Some(Notification::Active),
            _ => None,
        }
    }

    pub fn level(self) -> u8 {
        match self {
            Notification::Off => 0,
            Notification::Passive => 1,
            Notification::Active => 2,
        }
    }
}

/// LwM2M notification attributes (`pmin`, `pmax`, `gt`, `lt`, `st`,
/// `epmin`, `epmax`). `None` means "not set at this level".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ObserveAttributes {
    pub pmin: Option<u32>,
    pub pmax: Option<u32>,
    pub gt: Option<f64>,
    pub lt: Option<f64>,
    pub st: Option<f64>,
    pub epmin: Option<u32>,
    pub epmax: Option<u32>,
}

impl ObserveAttributes {
    pub fn is_empty(&self) -> bool {
        *self == ObserveAttributes::default()
    }

    /// Attributes set here win; unset ones come from `parent` (LwM2M Core
    /// §5.1.1: resource attributes override instance ones, which override
    /// object ones).
    pub fn inherit(&self, parent: &ObserveAttributes) -> ObserveAttributes {
        ObserveAttributes {
            pmin: self.pmin.or(parent.pmin),
            pmax: self.pmax.or(parent.pmax),
            gt: self.gt.or(parent.gt),
            lt: self.lt.or(parent.lt),
            st: self.st.or(parent.st),
            epmin: self.epmin.or(parent.epmin),
            epmax: self.epmax.or(parent.epmax),
        }
    }
}

/// Every attribute set on the tree. Entries equal to the default are not
/// stored, so the table stays as small as what clients actually set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    pub(crate) notification: BTreeMap<Path, Notification>,
    pub(crate) access_list: BTreeMap<Path, Vec<String>>,
    pub(crate) observe: BTreeMap<(u16, Path), ObserveAttributes>,
}

impl Attributes {
    pub fn notification(&self, path: &Path) -> Notification {
        self.notification.get(path).copied().unwrap_or_default()
    }

    pub fn access_list(&self, path: &Path) -> &[String] {
        self.access_list.get(path).map_or(&[], Vec::as_slice)
    }

    /// The attributes a server set at exactly this level (no inheritance).
    pub fn observe(&self, server: u16, path: &Path) -> ObserveAttributes {
        self.observe
            .get(&(server, *path))
            .copied()
            .unwrap_or_default()
    }

    /// The attributes in force for `path`: resource over instance over
    /// object level.
    pub fn effective_observe(&self, server: u16, path: &Path) -> ObserveAttributes {
        let mut levels = vec![*path];
        let object = Path::object(path.object_id());
        if let Some(instance) = path.instance_id() {
            let instance_path = Path::instance(path.object_id(), instance);
            if let Some(resource) = path.resource_id() {
                let resource_path = Path::resource(path.object_id(), instance, resource);
                levels.push(resource_path);
            }
            levels.push(instance_path);
        }
        levels.push(object);
        levels.dedup();
        levels
            .iter()
            .fold(ObserveAttributes::default(), |acc, level| {
                acc.inherit(&self.observe(server, level))
            })
    }

    /// Every path at which `server` has set attributes, in path order.
    pub fn observed_paths(&self, server: u16) -> impl Iterator<Item = (&Path, &ObserveAttributes)> {
        self.observe
            .iter()
            .filter(move |((s, _), _)| *s == server)
            .map(|((_, path), attrs)| (path, attrs))
    }

    /// Paths with a notification level other than off.
    pub fn notified(&self) -> impl Iterator<Item = (&Path, Notification)> {
        self.notification.iter().map(|(p, n)| (p, *n))
    }

    pub(crate) fn set_notification(&mut self, path: Path, level: Notification) {
        if level == Notification::Off {
            self.notification.remove(&path);
        } else {
            self.notification.insert(path, level);
        }
    }

    pub(crate) fn set_access_list(&mut self, path: Path, list: Vec<String>) {
        if list.is_empty() {
            self.access_list.remove(&path);
        } else {
            self.access_list.insert(path, list);
        }
    }

    pub(crate) fn set_observe(&mut self, server: u16, path: Path, attrs: ObserveAttributes) {
        if attrs.is_empty() {
            self.observe.remove(&(server, path));
        } else {
            self.observe.insert((server, path), attrs);
        }
    }

    /// Forgets everything set on `prefix` or below it (an instance was
    /// deleted).
    pub(crate) fn remove_under(&mut self, prefix: &Path) {
        self.notification.retain(|p, _| !prefix.contains(p));
        self.access_list.retain(|p, _| !prefix.contains(p));
        self.observe.retain(|(_, p), _| !prefix.contains(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{InstanceId, ObjectId, ResourceId};

    #[test]
    fn resource_attributes_override_instance_and_object() {
        let mut attrs = Attributes::default();
        let object = Path::object(ObjectId(3));
        let instance = Path::instance(ObjectId(3), InstanceId(0));
        let resource = Path::resource(ObjectId(3), InstanceId(0), ResourceId(9));
        attrs.set_observe(
            1,
            object,
            ObserveAttributes {
                pmin: Some(10),
                pmax: Some(60),
                ..Default::default()
            },
        );
        attrs.set_observe(
            1,
            instance,
            ObserveAttributes {
                pmax: Some(30),
                ..Default::default()
            },
        );
        attrs.set_observe(
            1,
            resource,
            ObserveAttributes {
                gt: Some(50.0),
                ..Default::default()
            },
        );
        let effective = attrs.effective_observe(1, &resource);
        assert_eq!(effective.pmin, Some(10));
        assert_eq!(effective.pmax, Some(30));
        assert_eq!(effective.gt, Some(50.0));
        // Another server sees none of it.
        assert!(attrs.effective_observe(2, &resource).is_empty());
    }
}
