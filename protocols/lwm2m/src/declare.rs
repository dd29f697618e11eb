//! Declared objects: an OMA LwM2M object definition the agent was not
//! built with, read at start and served like a built-in object.
//!
//! The definition gives the schema (types, operations, ranges,
//! multiplicity) through the same reader the code generator uses
//! ([`crate::object_xml`]). A declared object keeps its registry id in the
//! core, as built-in registry objects do, so [`crate::mapping`] maps it
//! one to one.

use std::sync::Mutex;

use dm_core::schema::Constraint;
use dm_core::{Access, ObjectId, ObjectSchema, ResourceId, ResourceSchema, ValueType};

use crate::object_xml::{self, ObjectDef, Operations, Range, ResourceType, XmlError};

/// The largest definition file read (the biggest registry object, /0,
/// is about 30 KiB).
pub const MAX_DEFINITION: usize = 1024 * 1024;

/// Core object ids from here up are TR-181-only (the agent's own from
/// 50000, declared ones from 60000): LwM2M never sees them, and an LwM2M
/// object cannot be declared with such an id.
pub const TR181_ONLY: u16 = 50000;

/// Why a definition cannot be declared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclareError {
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("{size} bytes; a definition may have at most {MAX_DEFINITION}")]
    TooLarge { size: usize },
    /// The agent serves this object itself (or a TR-181 object has its
    /// number).
    #[error("object {0} ({1}) is built in and cannot be declared")]
    BuiltIn(u16, &'static str),
    #[error("object {0}: ids from {TR181_ONLY} up are TR-181-only objects")]
    Reserved(u16),
}

/// The schema of a definition. Schemas live as long as the process (the
/// tree holds `&'static` ones): the same text gives the same schema, so a
/// configuration read again does not allocate it again.
pub fn schema(text: &str) -> Result<&'static ObjectSchema, DeclareError> {
    static READ: Mutex<Vec<(String, &'static ObjectSchema)>> = Mutex::new(Vec::new());
    if text.len() > MAX_DEFINITION {
        return Err(DeclareError::TooLarge { size: text.len() });
    }
    let def = object_xml::parse(text)?;
    if let Some(built_in) = dm_core::catalog::ALL.iter().find(|s| s.id.0 == def.id) {
        return Err(DeclareError::BuiltIn(def.id, built_in.name));
    }
    if def.id >= TR181_ONLY {
        return Err(DeclareError::Reserved(def.id));
    }
    let mut read = READ
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, schema)) = read.iter().find(|(t, _)| t == text) {
        return Ok(schema);
    }
    let schema: &'static ObjectSchema = Box::leak(Box::new(from_definition(&def)));
    read.push((text.to_owned(), schema));
    Ok(schema)
}

/// The core schema of a definition, as the code generator makes it for
/// the built-in objects.
pub fn from_definition(def: &ObjectDef) -> ObjectSchema {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let mut resources: Vec<ResourceSchema> = def
        .resources
        .iter()
        .map(|r| ResourceSchema {
            id: ResourceId(r.id),
            name: leak(&r.name),
            value_type: value_type(r.value_type),
            access: match r.operations {
                Operations::None => Access::None,
                Operations::Read => Access::Read,
                Operations::Write => Access::Write,
                Operations::ReadWrite => Access::ReadWrite,
                Operations::Execute => Access::Execute,
            },
            multiple: r.multiple,
            mandatory: r.mandatory,
            units: leak(&r.units),
            constraint: match object_xml::range(&r.range, r.value_type) {
                Range::None => Constraint::None,
                Range::Values { min, max } => Constraint::Range { min, max },
                Range::Lengths(lengths) => Constraint::Lengths(Box::leak(lengths.into())),
            },
        })
        .collect();
    resources.sort_by_key(|r| r.id);
    ObjectSchema {
        id: ObjectId(def.id),
        name: leak(&def.name),
        version: leak(&def.version),
        multiple: def.multiple,
        mandatory: def.mandatory,
        resources: Box::leak(resources.into_boxed_slice()),
    }
}

fn value_type(t: ResourceType) -> ValueType {
    match t {
        ResourceType::None => ValueType::None,
        ResourceType::String => ValueType::String,
        ResourceType::Integer => ValueType::Long,
        ResourceType::UnsignedInteger => ValueType::UnsignedLong,
        ResourceType::Float => ValueType::Float,
        ResourceType::Boolean => ValueType::Boolean,
        ResourceType::Opaque => ValueType::Opaque,
        ResourceType::Time => ValueType::DateTime,
        ResourceType::Objlnk => ValueType::ObjectLink,
        ResourceType::Corelnk => ValueType::CoreLink,
    }
}
