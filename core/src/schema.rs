//! Constant object schemas.
//!
//! Every object the agent serves is described once by an [`ObjectSchema`]: a
//! `'static` table generated from the standards' XML (see `catalog`). The
//! tables carry no protocol paths: each adapter owns its own mapping onto
//! them.

use std::fmt;

/// Identifies an object type in the core model.
///
/// Objects that come from the OMA LwM2M registry keep their registry number;
/// objects that exist only in TR-181 get numbers from 50000 up. The number is
/// a core identifier: adapters map it explicitly, they never assume identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ObjectId(pub u16);

/// Identifies a resource within an object type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ResourceId(pub u16);

/// Identifies an instance of an object. 65535 is reserved (LwM2M uses it as
/// "no instance"; TR-181 instance numbers start at 1), so the usable space
/// is 0..=65534.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct InstanceId(pub u16);

impl InstanceId {
    /// The largest usable instance number.
    pub const MAX: InstanceId = InstanceId(65534);
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The type of a resource's value.
///
/// The set is the union of the LwM2M data types and the TR-106 primitive
/// types; each adapter converts to and from its own lexical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ValueType {
    String,
    /// 32-bit signed (TR-106 `int`).
    Int,
    /// 32-bit unsigned (TR-106 `unsignedInt`).
    UnsignedInt,
    /// 64-bit signed (TR-106 `long`, LwM2M `Integer`).
    Long,
    /// 64-bit unsigned (TR-106 `unsignedLong`, LwM2M `Unsigned Integer`).
    UnsignedLong,
    Boolean,
    /// Seconds since the Unix epoch (TR-106 `dateTime`, LwM2M `Time`).
    DateTime,
    /// Raw bytes (TR-106 `base64`/`hexBinary`, LwM2M `Opaque`).
    Opaque,
    Float,
    /// A reference to an object instance (LwM2M `Objlnk`).
    ObjectLink,
    /// CoRE link-format text (LwM2M `Corelnk`).
    CoreLink,
    /// An executable resource: it has no value.
    None,
}

impl ValueType {
    /// The name used in error messages and the `dump` output.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Int => "int",
            ValueType::UnsignedInt => "unsignedInt",
            ValueType::Long => "long",
            ValueType::UnsignedLong => "unsignedLong",
            ValueType::Boolean => "boolean",
            ValueType::DateTime => "dateTime",
            ValueType::Opaque => "opaque",
            ValueType::Float => "float",
            ValueType::ObjectLink => "objectLink",
            ValueType::CoreLink => "coreLink",
            ValueType::None => "none",
        }
    }
}

/// What a management client may do with a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Access {
    /// No management operation: only bootstrap and the agent itself touch
    /// it (LwM2M Security object resources).
    None,
    Read,
    Write,
    ReadWrite,
    Execute,
}

impl Access {
    pub fn readable(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    pub fn writable(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    pub fn executable(self) -> bool {
        self == Access::Execute
    }

    /// The short form used by the standards: `R`, `W`, `RW`, `E`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::None => "",
            Access::Read => "R",
            Access::Write => "W",
            Access::ReadWrite => "RW",
            Access::Execute => "E",
        }
    }
}

/// A constraint on a value beyond its type, taken from the standard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constraint {
    None,
    /// Inclusive numeric range.
    Range {
        min: i64,
        max: i64,
    },
    /// Inclusive length range, in bytes for opaque and characters for strings.
    Length {
        min: u32,
        max: u32,
    },
    /// The length must be one of these.
    Lengths(&'static [u32]),
    /// A string that must be one of these.
    Enumeration(&'static [&'static str]),
}

/// One resource of an object type.
#[derive(Debug)]
pub struct ResourceSchema {
    pub id: ResourceId,
    /// Name as in the source standard, for humans and logs.
    pub name: &'static str,
    pub value_type: ValueType,
    pub access: Access,
    /// Whether the resource holds several values (LwM2M multiple-instance
    /// resource; a TR-181 table with a single parameter maps to it).
    pub multiple: bool,
    pub mandatory: bool,
    pub units: &'static str,
    pub constraint: Constraint,
}

/// One object type.
#[derive(Debug)]
pub struct ObjectSchema {
    pub id: ObjectId,
    pub name: &'static str,
    /// Version of the source definition (e.g. "1.2").
    pub version: &'static str,
    pub multiple: bool,
    pub mandatory: bool,
    /// Sorted by id.
    pub resources: &'static [ResourceSchema],
}

impl ObjectSchema {
    /// Looks a resource up by id (binary search over the sorted table).
    pub fn resource(&self, id: ResourceId) -> Option<&'static ResourceSchema> {
        self.resources
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|i| &self.resources[i])
    }
}
