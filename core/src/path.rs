//! Addresses in the core tree.
//!
//! A [`Path`] names an object type, an instance, a resource or one value of a
//! multiple resource, by core ids. It is written `/3/0/2` for humans; the
//! notation is the core's own, adapters translate their paths into it.

use std::fmt;

use crate::schema::{InstanceId, ObjectId, ResourceId};

/// A possibly partial address: object, instance, resource, resource index.
/// A later part is only set when every earlier one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Path {
    object: ObjectId,
    instance: Option<InstanceId>,
    resource: Option<ResourceId>,
    index: Option<u16>,
}

impl Path {
    pub fn object(object: ObjectId) -> Path {
        Path {
            object,
            instance: None,
            resource: None,
            index: None,
        }
    }

    pub fn instance(object: ObjectId, instance: InstanceId) -> Path {
        Path {
            instance: Some(instance),
            ..Path::object(object)
        }
    }

    pub fn resource(object: ObjectId, instance: InstanceId, resource: ResourceId) -> Path {
        Path {
            resource: Some(resource),
            ..Path::instance(object, instance)
        }
    }

    pub fn resource_instance(
        object: ObjectId,
        instance: InstanceId,
        resource: ResourceId,
        index: u16,
    ) -> Path {
        Path {
            index: Some(index),
            ..Path::resource(object, instance, resource)
        }
    }

    pub fn object_id(&self) -> ObjectId {
        self.object
    }

    pub fn instance_id(&self) -> Option<InstanceId> {
        self.instance
    }

    pub fn resource_id(&self) -> Option<ResourceId> {
        self.resource
    }

    pub fn index(&self) -> Option<u16> {
        self.index
    }

    /// Whether `self` is `other` or an ancestor of it.
    pub fn contains(&self, other: &Path) -> bool {
        self.object == other.object
            && (self.instance.is_none() || self.instance == other.instance)
            && (self.resource.is_none() || self.resource == other.resource)
            && (self.index.is_none() || self.index == other.index)
    }

    /// The same path without its resource index.
    pub fn without_index(&self) -> Path {
        Path {
            index: None,
            ..*self
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.object)?;
        if let Some(i) = self.instance {
            write!(f, "/{i}")?;
        }
        if let Some(r) = self.resource {
            write!(f, "/{r}")?;
        }
        if let Some(x) = self.index {
            write!(f, "/{x}")?;
        }
        Ok(())
    }
}

/// Who asks. Every call into the tree carries one, and every published
/// change says which origin made it, so an adapter can tell its own writes
/// from everyone else's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The TR-069 auto-configuration server.
    Acs,
    /// An LwM2M server, by Short Server ID.
    Server(u16),
    /// An LwM2M bootstrap server: may touch resources no server may.
    Bootstrap,
    /// A local user through the CLI or the control API.
    Cli,
    /// A USP controller, by its instance of the agent's controllers.
    Controller(u16),
    /// The platform reporting a change on the host (NetworkManager, oFono).
    Platform,
    /// The agent itself: start-up, restore, internal state machines.
    Agent,
}

impl Origin {
    /// Whether this origin is a management client, held to the schema's
    /// access rights. The platform and the agent report facts and bypass
    /// them.
    pub fn is_client(self) -> bool {
        matches!(
            self,
            Origin::Acs
                | Origin::Server(_)
                | Origin::Bootstrap
                | Origin::Cli
                | Origin::Controller(_)
        )
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Acs => f.write_str("acs"),
            Origin::Server(id) => write!(f, "server:{id}"),
            Origin::Bootstrap => f.write_str("bootstrap"),
            Origin::Cli => f.write_str("cli"),
            Origin::Controller(n) => write!(f, "controller:{n}"),
            Origin::Platform => f.write_str("platform"),
            Origin::Agent => f.write_str("agent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_is_prefix_on_set_parts() {
        let obj = Path::object(ObjectId(3));
        let inst = Path::instance(ObjectId(3), InstanceId(0));
        let res = Path::resource(ObjectId(3), InstanceId(0), ResourceId(2));
        assert!(obj.contains(&res));
        assert!(inst.contains(&res));
        assert!(res.contains(&res));
        assert!(!res.contains(&inst));
        assert!(!Path::object(ObjectId(4)).contains(&res));
        assert_eq!(res.to_string(), "/3/0/2");
    }
}
