//! `[[object]]` tables: objects declared from an OMA LwM2M definition
//! file, with their instances and initial values.
//!
//! ```toml
//! [[object]]
//! definition = "3303.xml"          # relative to this file's directory
//! instances = [0]                  # default [0]
//! values = { "0/5700" = 21.5, "0/5701" = "Cel" }
//! provider = ["python3", "provider.py"]  # optional, runs in this file's directory
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use dm_core::{InstanceId, ResourceId, ResourceSchema, ResourceValue, Value, ValueType};
use dm_objects::declared::{Declaration, Scalar};

use super::{ConfigError, Locator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectFile {
    definition: Spanned<String>,
    instances: Option<Spanned<Vec<Spanned<u32>>>>,
    #[serde(default)]
    values: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// argv of the program that serves the object (no shell).
    provider: Option<Spanned<Vec<String>>>,
}

/// The declarations of `tables`; `base` is the directory relative
/// definition paths start from.
pub(super) fn declarations(
    tables: &[ObjectFile],
    base: Option<&Path>,
    at: &Locator<'_>,
) -> Result<Vec<Declaration>, ConfigError> {
    let mut declarations: Vec<Declaration> = Vec::new();
    for table in tables {
        let declaration = declaration(table, base, at)?;
        if declarations
            .iter()
            .any(|d| d.schema.id == declaration.schema.id)
        {
            return Err(at.error(
                &table.definition.span(),
                format!("object {} is declared twice", declaration.schema.id),
            ));
        }
        declarations.push(declaration);
    }
    Ok(declarations)
}

fn declaration(
    table: &ObjectFile,
    base: Option<&Path>,
    at: &Locator<'_>,
) -> Result<Declaration, ConfigError> {
    let span = table.definition.span();
    let written = table.definition.get_ref();
    if written.is_empty() {
        return Err(at.error(
            &span,
            "must name an OMA LwM2M object definition file".into(),
        ));
    }
    let path = match base {
        Some(base) if Path::new(written).is_relative() => base.join(written),
        _ => PathBuf::from(written),
    };
    let text = read_definition(&path).map_err(|m| at.error(&span, m))?;
    let schema = dm_lwm2m::declare::schema(&text)
        .map_err(|e| at.error(&span, format!("{}: {e}", path.display())))?;

    let instances: Vec<InstanceId> = match &table.instances {
        None => vec![InstanceId(0)],
        Some(list) => {
            let mut instances = Vec::new();
            for n in list.get_ref() {
                let id = match u16::try_from(*n.get_ref()) {
                    Ok(id) if id != u16::MAX => InstanceId(id),
                    _ => return Err(at.error(&n.span(), "must be from 0 to 65534".into())),
                };
                if instances.contains(&id) {
                    return Err(at.error(&n.span(), format!("instance {} is listed twice", id.0)));
                }
                instances.push(id);
            }
            if !schema.multiple && instances != [InstanceId(0)] {
                return Err(at.error(
                    &list.span(),
                    format!(
                        "{} ({}) is a single-instance object: its instance is [0]",
                        schema.name, schema.id
                    ),
                ));
            }
            instances
        }
    };

    let mut values = Vec::new();
    for (key, value) in &table.values {
        let error = |message: String| at.error(&key.span(), message);
        let (instance, resource) = key
            .get_ref()
            .split_once('/')
            .and_then(|(i, r)| Some((i.parse::<u16>().ok()?, r.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                error(format!(
                    "{:?} is not \"instance/resource\", e.g. \"0/5700\"",
                    key.get_ref()
                ))
            })?;
        let instance = InstanceId(instance);
        if !instances.contains(&instance) {
            return Err(error(format!(
                "instance {} is not among the object's instances",
                instance.0
            )));
        }
        let Some(resource_schema) = schema.resource(ResourceId(resource)) else {
            return Err(error(format!("{} has no resource {resource}", schema.name)));
        };
        if resource_schema.value_type == ValueType::None {
            return Err(error(format!(
                "{} is executable: it has no value",
                resource_schema.name
            )));
        }
        let configured = if resource_schema.multiple {
            let toml::Value::Array(items) = value.get_ref() else {
                return Err(at.error(
                    &value.span(),
                    format!(
                        "{} holds several values: give an array",
                        resource_schema.name
                    ),
                ));
            };
            let mut multiple = BTreeMap::new();
            for (index, item) in (0u16..).zip(items) {
                multiple.insert(
                    index,
                    configured(resource_schema, item).map_err(|m| at.error(&value.span(), m))?,
                );
            }
            ResourceValue::Multiple(multiple)
        } else {
            ResourceValue::Single(
                configured(resource_schema, value.get_ref())
                    .map_err(|m| at.error(&value.span(), m))?,
            )
        };
        values.push((instance, ResourceId(resource), configured));
    }
    let provider = match &table.provider {
        None => None,
        Some(argv) if argv.get_ref().first().is_none_or(|p| p.is_empty()) => {
            return Err(at.error(
                &argv.span(),
                "must name a program, e.g. [\"/usr/libexec/sensor-provider\"] (argv, no shell)"
                    .into(),
            ));
        }
        Some(argv) => Some(dm_objects::declared::Command {
            argv: argv.get_ref().clone(),
            dir: base.map(Path::to_path_buf),
        }),
    };
    Ok(Declaration {
        schema,
        instances,
        values,
        provider,
    })
}

fn read_definition(path: &Path) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > dm_lwm2m::declare::MAX_DEFINITION as u64 {
        return Err(format!(
            "{}: {size} bytes; a definition may have at most {}",
            path.display(),
            dm_lwm2m::declare::MAX_DEFINITION
        ));
    }
    std::fs::read_to_string(path).map_err(cannot)
}

/// A configured value in the resource's representation, checked against
/// its type, range and the characters XML 1.0 carries.
fn configured(schema: &ResourceSchema, value: &toml::Value) -> Result<Value, String> {
    let scalar = match value {
        toml::Value::String(text) => Scalar::Text(text.clone()),
        toml::Value::Integer(n) => Scalar::Integer(*n),
        toml::Value::Float(f) => Scalar::Float(*f),
        toml::Value::Boolean(b) => Scalar::Boolean(*b),
        other => {
            return Err(format!(
                "{}: a {} cannot be a {} value",
                schema.name,
                other.type_str(),
                schema.value_type.name()
            ));
        }
    };
    dm_objects::declared::value_of(schema, scalar)
}
