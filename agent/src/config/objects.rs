//! `[[object]]` tables: objects declared from an OMA LwM2M definition
//! file or a Broadband Forum DM instance document (a TR-181 vendor
//! object), with their instances and initial values.
//!
//! ```toml
//! [[object]]
//! definition = "3303.xml"          # relative to this file's directory
//! instances = [0]                  # default [0]
//! values = { "0/5700" = 21.5, "0/5701" = "Cel", "0/5750" = { file = "/etc/location" } }
//! provider = ["python3", "provider.py"]  # optional, runs in this file's directory;
//!                                  # or "dbus": a service registers for it
//! volatile = [5700]                # optional: asked of the provider when read
//!
//! [object.tr181]                   # optional: the same resources over CWMP
//! "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}.Value" = { resource = 5700, type = "int" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use dm_core::{InstanceId, ResourceId, ResourceSchema, ResourceValue, Value, ValueType};
use dm_cwmp::mapping::{Binding, CommandBinding};
use dm_objects::declared::{Declaration, ProviderKind, Scalar};

use super::{ConfigError, Locator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectFile {
    definition: Spanned<String>,
    instances: Option<Spanned<Vec<Spanned<u32>>>>,
    #[serde(default)]
    values: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// argv of the program that serves the object (no shell), or "dbus"
    /// for a service that registers over D-Bus.
    provider: Option<Spanned<toml::Value>>,
    /// Resources the provider gives when asked, not pushed: ids or names.
    #[serde(default)]
    volatile: Option<Spanned<Vec<toml::Value>>>,
    /// TR-181 parameter templates bound to the object's resources: a
    /// resource id, or `{ resource = N, type = "int" }`.
    #[serde(default)]
    tr181: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// The declarations of `tables` and their TR-181 bindings; `base` is the
/// directory relative definition paths start from.
pub(super) fn declarations(
    tables: &[ObjectFile],
    base: Option<&Path>,
    at: &Locator<'_>,
) -> Result<Declared, ConfigError> {
    let mut declarations: Vec<Declaration> = Vec::new();
    let mut bindings: Vec<Binding> = Vec::new();
    let mut commands: Vec<CommandBinding> = Vec::new();
    let mut spans = Vec::new();
    for table in tables {
        let taken: Vec<dm_core::ObjectId> = declarations.iter().map(|d| d.schema.id).collect();
        let (declaration, own, own_commands) = declaration(table, base, &taken, at)?;
        for command in own_commands {
            // One provider per command path.
            if commands.iter().any(|c| c.path == command.path) {
                return Err(at.error(
                    &table.definition.span(),
                    format!("{}: declared twice", command.path),
                ));
            }
            commands.push(command);
        }
        // A DM document names its own TR-181 paths.
        if !own.is_empty()
            && let Some((path, _)) = table.tr181.iter().next()
        {
            return Err(at.error(
                &path.span(),
                "a DM document declares its TR-181 paths itself".into(),
            ));
        }
        for binding in own {
            bindings.push(binding);
            spans.push(table.definition.span());
        }
        for (path, value) in &table.tr181 {
            bindings.push(binding(&declaration, path, value, at)?);
            spans.push(path.span());
        }
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
    // Against the agent's own parameters and each other.
    let templates: Vec<(&str, dm_core::ObjectId)> = bindings
        .iter()
        .map(|b| (b.path.as_str(), b.object))
        .collect();
    if let Err(e) = dm_cwmp::mapping::check_declared(&templates) {
        let n = match &e {
            dm_cwmp::mapping::DeclareError::Taken(p)
            | dm_cwmp::mapping::DeclareError::Malformed(p) => {
                bindings.iter().position(|b| &b.path == p).unwrap_or(0)
            }
            _ => 0,
        };
        return Err(at.error(&spans[n], e.to_string()));
    }
    Ok(Declared {
        objects: declarations,
        tr181: bindings,
        commands,
    })
}

/// What `[[object]]` declares.
#[derive(Default)]
pub(super) struct Declared {
    pub objects: Vec<Declaration>,
    pub tr181: Vec<Binding>,
    pub commands: Vec<CommandBinding>,
}

/// One `tr181` entry: a template bound to a resource of `declared`.
fn binding(
    declared: &Declaration,
    path: &Spanned<String>,
    value: &Spanned<toml::Value>,
    at: &Locator<'_>,
) -> Result<Binding, ConfigError> {
    let error = |message: String| at.error(&path.span(), message);
    let (resource, syntax) = match value.get_ref() {
        toml::Value::Integer(n) => (*n, None),
        toml::Value::Table(t) => {
            let resource = t.get("resource").and_then(toml::Value::as_integer);
            // A type that is not a string is a mistake, not "no type".
            let syntax = t.get("type").map(toml::Value::as_str);
            match (
                resource,
                syntax,
                t.keys().all(|k| k == "resource" || k == "type"),
            ) {
                (Some(resource), None, true) => (resource, None),
                (Some(resource), Some(Some(name)), true) => (resource, Some(name)),
                _ => {
                    return Err(error(
                        "give a resource id, or { resource = ID, type = \"int\" }".into(),
                    ));
                }
            }
        }
        _ => {
            return Err(error(
                "give a resource id, or { resource = ID, type = \"int\" }".into(),
            ));
        }
    };
    let schema = declared.schema;
    let Some(resource) = u16::try_from(resource)
        .ok()
        .and_then(|r| schema.resource(ResourceId(r)))
    else {
        return Err(error(format!("{} has no resource {resource}", schema.name)));
    };
    let allowed = dm_cwmp::mapping::Syntax::for_type(resource.value_type);
    if allowed.is_empty() || resource.multiple {
        return Err(error(format!(
            "{} ({}{}) has no TR-181 form",
            resource.name,
            resource.value_type.name(),
            if resource.multiple {
                ", several values"
            } else {
                ""
            }
        )));
    }
    let names: Vec<&str> = allowed
        .iter()
        .map(|s| s.xsd_type().trim_start_matches("xsd:"))
        .collect();
    let syntax = match syntax {
        None => allowed[0],
        Some(name) => dm_cwmp::mapping::Syntax::from_name(name)
            .filter(|s| allowed.contains(s))
            .ok_or_else(|| {
                error(format!(
                    "type {name:?} cannot carry {} ({}); allowed: {}",
                    resource.name,
                    resource.value_type.name(),
                    names.join(", ")
                ))
            })?,
    };
    let table = path.get_ref().contains(".{i}.");
    if table != schema.multiple {
        return Err(error(if schema.multiple {
            format!(
                "{} has several instances: the path needs one {{i}}",
                schema.name
            )
        } else {
            format!("{} has one instance: the path has no {{i}}", schema.name)
        }));
    }
    if table && declared.instances.contains(&InstanceId(0)) {
        return Err(error(
            "TR-181 numbers instances from 1 (TR-069 §A.2.2.1): list instances = [1] or more"
                .into(),
        ));
    }
    Ok(Binding {
        path: path.get_ref().clone(),
        object: schema.id,
        resource: resource.id,
        syntax,
        writable: resource.access.writable(),
    })
}

/// One declaration, and the TR-181 bindings a DM document brings.
fn declaration(
    table: &ObjectFile,
    base: Option<&Path>,
    taken: &[dm_core::ObjectId],
    at: &Locator<'_>,
) -> Result<(Declaration, Vec<Binding>, Vec<CommandBinding>), ConfigError> {
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
    let located = |e: &dyn std::fmt::Display| at.error(&span, format!("{}: {e}", path.display()));
    // An OMA LwM2M object definition, or a Broadband Forum DM instance
    // document (a TR-181 vendor object).
    let (schema, own, commands) = if dm_cwmp::declare::is_document(&text) {
        let declared = dm_cwmp::declare::object(&text, taken).map_err(|e| located(&e))?;
        (
            declared.schema,
            declared.bindings(),
            declared.commands().to_vec(),
        )
    } else {
        (
            dm_lwm2m::declare::schema(&text).map_err(|e| located(&e))?,
            Vec::new(),
            Vec::new(),
        )
    };

    let instances: Vec<InstanceId> = match &table.instances {
        // A TR-181 table numbers from 1.
        None if schema.multiple && !own.is_empty() => vec![InstanceId(1)],
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

    if schema.multiple && !own.is_empty() && instances.contains(&InstanceId(0)) {
        return Err(at.error(
            &span,
            "TR-181 numbers instances from 1 (TR-069 §A.2.2.1): list instances = [1] or more"
                .into(),
        ));
    }
    let mut values = Vec::new();
    for (key, value) in &table.values {
        let error = |message: String| at.error(&key.span(), message);
        // "0/5700", or by name: "0/Setting".
        let (instance, resource) = key
            .get_ref()
            .split_once('/')
            .and_then(|(i, r)| Some((i.parse::<u16>().ok()?, r)))
            .ok_or_else(|| {
                error(format!(
                    "{:?} is not \"instance/resource\", e.g. \"0/5700\" or \"0/Setting\"",
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
        let found = match resource.parse::<u16>() {
            Ok(id) => schema.resource(ResourceId(id)),
            Err(_) => schema.resources.iter().find(|r| r.name == resource),
        };
        let Some(resource_schema) = found else {
            return Err(error(format!("{} has no resource {resource}", schema.name)));
        };
        let resource = resource_schema.id.0;
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
        } else if let toml::Value::Table(from) = value.get_ref() {
            // { file = "/etc/asset-tag" }: the file's text, read now.
            let Some(toml::Value::String(file)) = from.get("file").filter(|_| from.len() == 1)
            else {
                return Err(at.error(
                    &value.span(),
                    "a value, or { file = \"PATH\" } to read it from a file".into(),
                ));
            };
            let path = match base {
                Some(base) if Path::new(file).is_relative() => base.join(file),
                _ => PathBuf::from(file),
            };
            ResourceValue::Single(
                from_file(resource_schema, &path).map_err(|m| at.error(&value.span(), m))?,
            )
        } else {
            ResourceValue::Single(
                configured(resource_schema, value.get_ref())
                    .map_err(|m| at.error(&value.span(), m))?,
            )
        };
        values.push((instance, ResourceId(resource), configured));
    }
    let program = "must name a program, e.g. [\"/usr/libexec/sensor-provider\"] (argv, no shell), \
                   or be \"dbus\"";
    let provider = match table.provider.as_ref().map(|p| (p, p.get_ref())) {
        None => None,
        Some((span, toml::Value::String(kind))) if kind == "dbus" => {
            if !cfg!(feature = "dbus") {
                return Err(at.error(&span.span(), crate::not_built("D-Bus", "dbus")));
            }
            Some(ProviderKind::Dbus)
        }
        Some((span, toml::Value::Array(argv))) => {
            let argv: Option<Vec<String>> =
                argv.iter().map(|a| a.as_str().map(str::to_owned)).collect();
            match argv {
                Some(argv) if argv.first().is_some_and(|p| !p.is_empty()) => {
                    Some(ProviderKind::Command(dm_objects::declared::Command {
                        argv,
                        dir: base.map(Path::to_path_buf),
                    }))
                }
                _ => return Err(at.error(&span.span(), program.into())),
            }
        }
        Some((span, _)) => return Err(at.error(&span.span(), program.into())),
    };
    let mut volatile = Vec::new();
    if let Some(list) = &table.volatile {
        if provider.is_none() {
            return Err(at.error(
                &list.span(),
                "volatile values are asked of a provider: the object has none".into(),
            ));
        }
        for item in list.get_ref() {
            let found = match item {
                toml::Value::Integer(id) => u16::try_from(*id)
                    .ok()
                    .and_then(|id| schema.resource(ResourceId(id))),
                toml::Value::String(name) => schema.resources.iter().find(|r| r.name == name),
                _ => None,
            };
            let Some(resource) = found else {
                return Err(at.error(
                    &list.span(),
                    match item {
                        toml::Value::String(name) => {
                            format!("{} has no resource {name:?}", schema.name)
                        }
                        toml::Value::Integer(id) => format!("{} has no resource {id}", schema.name),
                        _ => "give resource ids or names".to_owned(),
                    },
                ));
            };
            if resource.value_type == ValueType::None
                || !resource.access.readable()
                || resource.access.writable()
            {
                return Err(at.error(
                    &list.span(),
                    format!(
                        "{} is not read-only: only a value the provider gives and nobody \
                         writes can be volatile",
                        resource.name
                    ),
                ));
            }
            if resource.multiple {
                return Err(at.error(
                    &list.span(),
                    format!(
                        "{} holds several values: only a single value can be volatile",
                        resource.name
                    ),
                ));
            }
            if values.iter().any(|(_, r, _)| *r == resource.id) {
                return Err(at.error(
                    &list.span(),
                    format!(
                        "{} is volatile: its provider gives it, not the configuration",
                        resource.name
                    ),
                ));
            }
            if !volatile.contains(&resource.id) {
                volatile.push(resource.id);
            }
        }
    }
    Ok((
        Declaration {
            schema,
            instances,
            values,
            provider,
            volatile,
        },
        own,
        commands,
    ))
}

fn read_definition(path: &Path) -> Result<String, String> {
    read_bounded(path, dm_lwm2m::declare::MAX_DEFINITION)
}

/// A file's text, refused over `limit` bytes whatever the file is (a FIFO
/// or a device says no size: up to one byte past the limit is read).
fn read_bounded(path: &Path, limit: usize) -> Result<String, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > limit {
        return Err(format!("{}: over {limit} bytes", path.display()));
    }
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))
}

/// The largest file a value is read from.
const MAX_VALUE_FILE: usize = 64 * 1024;

/// A value read from a file (an asset tag, a provisioning code): its text
/// without the line end, typed as the resource is.
fn from_file(schema: &ResourceSchema, path: &Path) -> Result<Value, String> {
    let text = read_bounded(path, MAX_VALUE_FILE)?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let not = |what: &str| format!("{}: {text:?} is not {what}", path.display());
    let scalar = match schema.value_type {
        ValueType::Int
        | ValueType::UnsignedInt
        | ValueType::Long
        | ValueType::UnsignedLong
        | ValueType::DateTime => {
            Scalar::Integer(text.trim().parse().map_err(|_| not("an integer"))?)
        }
        ValueType::Float => Scalar::Float(text.trim().parse().map_err(|_| not("a number"))?),
        ValueType::Boolean => Scalar::Boolean(match text.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(not("true or false")),
        }),
        _ => Scalar::Text(text.to_owned()),
    };
    dm_objects::declared::value_of(schema, scalar)
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
