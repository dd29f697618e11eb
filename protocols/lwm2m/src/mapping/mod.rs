//! LwM2M `/obj/inst/res/ri` paths ↔ core resources.
//!
//! The table is generated from `model/model.toml` and the OMA registry XML
//! (`cargo xtask codegen`). Core objects that come from the registry keep
//! its ids, so today the mapping is one-to-one; it is still a table, so that
//! the core may number its objects its own way and so that TR-181-only
//! resources (ids 1000 and up) stay invisible here.

use std::fmt;
use std::str::FromStr;

use dm_core::{InstanceId, ObjectId, Path, ResourceId};

#[rustfmt::skip]
mod table;

pub use table::OBJECTS;

/// One LwM2M object and the core object behind it.
#[derive(Debug)]
pub struct ObjectMap {
    pub lwm2m: u16,
    pub object: ObjectId,
    /// Object version, sent in the Register link (`</3>;ver=1.2`) when not
    /// 1.0.
    pub version: &'static str,
    /// Sorted by LwM2M id.
    pub resources: &'static [ResourceMap],
}

#[derive(Debug)]
pub struct ResourceMap {
    pub lwm2m: u16,
    pub resource: ResourceId,
}

/// A parsed LwM2M path: `/3`, `/3/0`, `/3/0/7`, `/3/0/7/1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lwm2mPath {
    pub object: u16,
    pub instance: Option<u16>,
    pub resource: Option<u16>,
    pub index: Option<u16>,
}

/// Why a path does not map. Maps to CoAP 4.04 (or 4.00 for a malformed
/// path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    Malformed(String),
    NotFound(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Malformed(p) => write!(f, "{p:?}: not an LwM2M path"),
            PathError::NotFound(p) => write!(f, "{p}: no such object or resource"),
        }
    }
}

impl std::error::Error for PathError {}

impl FromStr for Lwm2mPath {
    type Err = PathError;

    fn from_str(text: &str) -> Result<Lwm2mPath, PathError> {
        let malformed = || PathError::Malformed(text.to_owned());
        let rest = text.strip_prefix('/').ok_or_else(malformed)?;
        let mut parts = [None; 4];
        for (count, segment) in rest.split('/').enumerate() {
            if count == 4 || segment.is_empty() || segment.starts_with('+') {
                return Err(malformed());
            }
            // 65535 is "no id" in LwM2M (Core §7.2) and never addresses
            // anything.
            let id: u16 = segment.parse().map_err(|_| malformed())?;
            if id == u16::MAX {
                return Err(malformed());
            }
            parts[count] = Some(id);
        }
        Ok(Lwm2mPath {
            object: parts[0].ok_or_else(malformed)?,
            instance: parts[1],
            resource: parts[2],
            index: parts[3],
        })
    }
}

impl fmt::Display for Lwm2mPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.object)?;
        for part in [self.instance, self.resource, self.index]
            .into_iter()
            .flatten()
        {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

/// The LwM2M object for an LwM2M id.
pub fn object(lwm2m: u16) -> Option<&'static ObjectMap> {
    OBJECTS
        .binary_search_by_key(&lwm2m, |o| o.lwm2m)
        .ok()
        .map(|i| &OBJECTS[i])
}

/// The LwM2M object a core object is exposed as, if any.
pub fn object_for(core: ObjectId) -> Option<&'static ObjectMap> {
    OBJECTS.iter().find(|o| o.object == core)
}

/// Whether a core object id is a declared one ([`crate::declare`]): not
/// one the agent is built with, and below the TR-181-only ids. Declared objects keep their registry ids
/// and resource ids, so they map one to one; every built-in object,
/// TR-181-only ones included, goes through the generated table.
fn declared(object: u16) -> bool {
    object < crate::declare::TR181_ONLY && !dm_core::catalog::ALL.iter().any(|s| s.id.0 == object)
}

/// Maps an LwM2M path to the core path (whether the tree serves it is the
/// tree's to say).
pub fn to_core(path: &Lwm2mPath) -> Result<Path, PathError> {
    let not_found = || PathError::NotFound(path.to_string());
    let (object, resource) = match object(path.object) {
        Some(map) => {
            let resource = match path.resource {
                Some(id) => Some(
                    map.resources
                        .binary_search_by_key(&id, |r| r.lwm2m)
                        .map(|i| map.resources[i].resource)
                        .map_err(|_| not_found())?,
                ),
                None => None,
            };
            (map.object, resource)
        }
        None if declared(path.object) => (ObjectId(path.object), path.resource.map(ResourceId)),
        None => return Err(not_found()),
    };
    let Some(instance) = path.instance else {
        return Ok(Path::object(object));
    };
    let instance = InstanceId(instance);
    Ok(match (resource, path.index) {
        (None, _) => Path::instance(object, instance),
        (Some(resource), Some(index)) => Path::resource_instance(object, instance, resource, index),
        (Some(resource), None) => Path::resource(object, instance, resource),
    })
}

/// Maps a core path to its LwM2M path; `None` for what LwM2M does not see.
pub fn from_core(path: &Path) -> Option<Lwm2mPath> {
    let (object, resource) = match object_for(path.object_id()) {
        Some(map) => {
            let resource = match path.resource_id() {
                Some(r) => Some(map.resources.iter().find(|m| m.resource == r)?.lwm2m),
                None => None,
            };
            (map.lwm2m, resource)
        }
        None if declared(path.object_id().0) => {
            (path.object_id().0, path.resource_id().map(|r| r.0))
        }
        None => return None,
    };
    Some(Lwm2mPath {
        object,
        instance: path.instance_id().map(|i| i.0),
        resource,
        index: path.index(),
    })
}

/// The LwM2M objects `tree` serves, by LwM2M id, each with its core
/// object and version: the generated table's and the declared ones.
pub fn served(tree: &dm_core::Tree) -> Vec<(u16, ObjectId, &'static str)> {
    let mut served: Vec<(u16, ObjectId, &'static str)> = OBJECTS
        .iter()
        .filter(|map| tree.schema(map.object).is_some())
        .map(|map| (map.lwm2m, map.object, map.version))
        .collect();
    served.extend(
        tree.objects()
            .filter(|schema| declared(schema.id.0))
            .map(|schema| (schema.id.0, schema.id, schema.version)),
    );
    served.sort_by_key(|(lwm2m, _, _)| *lwm2m);
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_core::catalog;

    #[test]
    fn every_mapped_path_resolves_both_ways() {
        for map in OBJECTS {
            let schema = catalog::ALL
                .iter()
                .find(|o| o.id == map.object)
                .expect("object in catalog");
            assert!(map.resources.windows(2).all(|w| w[0].lwm2m < w[1].lwm2m));
            for resource in map.resources {
                assert!(schema.resource(resource.resource).is_some());
                for index in [None, Some(4)] {
                    let lwm2m = Lwm2mPath {
                        object: map.lwm2m,
                        instance: Some(2),
                        resource: Some(resource.lwm2m),
                        index,
                    };
                    let text = lwm2m.to_string();
                    assert_eq!(text.parse::<Lwm2mPath>(), Ok(lwm2m));
                    let core = to_core(&lwm2m).expect(&text);
                    assert_eq!(from_core(&core), Some(lwm2m), "{text}");
                }
            }
        }
    }

    #[test]
    fn tr181_only_resources_are_invisible() {
        let oui = Path::resource(
            catalog::device::ID,
            InstanceId(0),
            catalog::device::MANUFACTURER_OUI,
        );
        assert_eq!(from_core(&oui), None);
        let server = Path::object(catalog::management_server::ID);
        assert_eq!(from_core(&server), None);
        let serial = Path::resource(
            catalog::device::ID,
            InstanceId(0),
            catalog::device::SERIAL_NUMBER,
        );
        assert_eq!(
            from_core(&serial).map(|p| p.to_string()),
            Some("/3/0/2".into())
        );
    }

    #[test]
    fn malformed_paths() {
        for text in [
            "",
            "3",
            "/",
            "/3/",
            "//3",
            "/3/a",
            "/3/0/1/2/3",
            "/65535",
            "/-1",
            "/+3",
            "/70000",
        ] {
            assert!(
                matches!(text.parse::<Lwm2mPath>(), Err(PathError::Malformed(_))),
                "{text}"
            );
        }
        assert_eq!(
            to_core(&"/3/0/1000".parse().unwrap()),
            Err(PathError::NotFound("/3/0/1000".into()))
        );
        // An object not built in maps one to one (it may be declared);
        // whether it is served is the tree's to say.
        assert_eq!(
            to_core(&"/6".parse().unwrap()),
            Ok(Path::object(ObjectId(6)))
        );
    }
}
