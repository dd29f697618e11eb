//! TR-181 `Device.` paths ↔ core resources.
//!
//! The table is generated from `model/model.toml` and the TR-181 2.17 XML
//! (`cargo xtask codegen`). A template may hold `{i}` (the core instance
//! number: TR-181 and the core both number multi-instance objects from 1)
//! and `{j}` (a value of a multiple resource: TR-181 table instance `j` is
//! the value at index `j - 1`, since TR-181 numbers from 1 and LwM2M
//! resource instances from 0). A literal number
//! is a fixed instance of a TR-181 table that a single-instance core object
//! fills (`Device.Cellular.Interface.1.RSSI`).
//!
//! Resolution walks a segment trie built once from the table, so resolving
//! a path costs one pass over its segments and no allocation.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::OnceLock;

use dm_core::{InstanceId, ObjectId, Path, ResourceId};

#[rustfmt::skip]
mod table;

pub use table::PARAMETERS;

/// The TR-106 type a parameter has on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    String,
    Int,
    UnsignedInt,
    Long,
    UnsignedLong,
    Boolean,
    DateTime,
    Base64,
    HexBinary,
}

impl Syntax {
    /// The syntax a TR-106 type name (`unsignedInt`) is.
    pub fn from_name(name: &str) -> Option<Syntax> {
        Some(match name {
            "string" => Syntax::String,
            "int" => Syntax::Int,
            "unsignedInt" => Syntax::UnsignedInt,
            "long" => Syntax::Long,
            "unsignedLong" => Syntax::UnsignedLong,
            "boolean" => Syntax::Boolean,
            "dateTime" => Syntax::DateTime,
            "base64" => Syntax::Base64,
            "hexBinary" => Syntax::HexBinary,
            _ => return None,
        })
    }

    /// The syntaxes that carry values of a core type (read as the type's
    /// lexical form, written back through `values::parse`), the first
    /// being its default.
    pub fn for_type(value_type: dm_core::ValueType) -> &'static [Syntax] {
        use dm_core::ValueType as T;
        const INTEGERS: &[Syntax] = &[
            Syntax::Long,
            Syntax::Int,
            Syntax::UnsignedInt,
            Syntax::UnsignedLong,
        ];
        match value_type {
            T::String | T::CoreLink => &[Syntax::String],
            T::Int | T::Long | T::Float => INTEGERS,
            T::UnsignedInt | T::UnsignedLong => &[
                Syntax::UnsignedLong,
                Syntax::UnsignedInt,
                Syntax::Long,
                Syntax::Int,
            ],
            T::Boolean => &[Syntax::Boolean],
            T::DateTime => &[Syntax::DateTime],
            T::Opaque => &[Syntax::Base64, Syntax::HexBinary],
            // A reference to a row, written as its path.
            T::ObjectLink => &[Syntax::String],
            T::None => &[],
        }
    }

    /// The `xsi:type` a ParameterValueStruct carries.
    pub fn xsd_type(self) -> &'static str {
        match self {
            Syntax::String => "xsd:string",
            Syntax::Int => "xsd:int",
            Syntax::UnsignedInt => "xsd:unsignedInt",
            Syntax::Long => "xsd:long",
            Syntax::UnsignedLong => "xsd:unsignedLong",
            Syntax::Boolean => "xsd:boolean",
            Syntax::DateTime => "xsd:dateTime",
            Syntax::Base64 => "xsd:base64",
            Syntax::HexBinary => "xsd:hexBinary",
        }
    }
}

/// The TR-181 `activeNotify` facet: whether an ACS may turn active
/// notification on, and whether it starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveNotify {
    Normal,
    ForceEnabled,
    ForceDefaultEnabled,
    CanDeny,
}

/// One TR-181 parameter bound to a core resource.
#[derive(Debug, PartialEq, Eq)]
pub struct ParameterMap {
    /// Path template, e.g. `Device.WiFi.SSID.{i}.SSID`.
    pub path: &'static str,
    pub object: ObjectId,
    pub resource: ResourceId,
    pub syntax: Syntax,
    /// A comma-separated list in TR-181.
    pub list: bool,
    /// Writable over CWMP (TR-181 `readWrite`), whatever other protocols
    /// may do with the same resource.
    pub writable: bool,
    /// Reads back as an empty string (TR-181 `secured`/`hidden`).
    pub secured: bool,
    /// Always sent in Inform.
    pub forced_inform: bool,
    pub active_notify: ActiveNotify,
}

impl ParameterMap {
    /// The concrete path for a core instance and, for a multiple resource,
    /// an index.
    pub fn render(&self, instance: InstanceId, index: Option<u16>) -> String {
        let mut out = String::with_capacity(self.path.len() + 8);
        for (n, segment) in self.path.split('.').enumerate() {
            if n > 0 {
                out.push('.');
            }
            match segment {
                "{i}" => out.push_str(&instance.0.to_string()),
                "{j}" => out.push_str(&(u32::from(index.unwrap_or(0)) + 1).to_string()),
                literal => out.push_str(literal),
            }
        }
        out
    }

    /// Whether the template has an `{i}`, i.e. the core object is
    /// multi-instance.
    pub fn has_instance(&self) -> bool {
        self.path.contains(".{i}.")
    }
}

/// A concrete TR-181 path resolved to its binding and core path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resolved {
    pub parameter: &'static ParameterMap,
    pub path: Path,
}

/// Why a path does not resolve. Maps to CWMP fault 9005 (Invalid parameter
/// name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPath(pub String);

impl fmt::Display for UnknownPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: no such parameter", self.0)
    }
}

impl std::error::Error for UnknownPath {}

/// One segment of the path trie. Children are node numbers; the root
/// (0) is nobody's child, so `NonZeroU32` makes `Option` free. Compact
/// because it lives as long as the agent: about 30 bytes a node, where
/// a `HashMap` of literal children per node cost 175 KB of heap for the
/// generated table (heaptrack; the footprint issue).
#[derive(Default)]
struct Node {
    /// The literal children: `Resolver::literals[first..first + count]`,
    /// sorted by name.
    first: u32,
    count: u32,
    instance: Option<NonZeroU32>,
    index: Option<NonZeroU32>,
    parameter: Option<&'static ParameterMap>,
    /// The core object whose instances this node's `{i}` child numbers.
    table: Option<ObjectId>,
}

/// What an object path (one ending in `.`) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectPath {
    /// A multi-instance table, e.g. `Device.WiFi.SSID.`: AddObject target.
    Table(ObjectId),
    /// One instance of a table, e.g. `Device.WiFi.SSID.2.`: DeleteObject
    /// target.
    Instance(ObjectId, InstanceId),
    /// A table inside an instance whose rows are the indices of multiple
    /// resources (`{j}`), e.g. `Device.BulkData.Profile.1.Parameter.`:
    /// AddObject target. `columns` are the resources a row has a value of.
    Rows {
        object: ObjectId,
        instance: InstanceId,
        columns: Vec<ResourceId>,
    },
    /// One row of such a table (`...Parameter.2.` is index 1):
    /// DeleteObject target.
    Row {
        object: ObjectId,
        instance: InstanceId,
        columns: Vec<ResourceId>,
        index: u16,
    },
    /// Any other object, e.g. `Device.DeviceInfo.`.
    Other,
}

/// Parameters declared at start (bindings of declared objects), added to
/// the generated table by [`declare`].
static DECLARED: OnceLock<Vec<&'static ParameterMap>> = OnceLock::new();
/// The built-in tables declared ones took the place of.
static REPLACED: OnceLock<Vec<&'static str>> = OnceLock::new();

/// Built-in tables a declared object may take the place of: host facts
/// an integrator may serve better from a provider of their own (their
/// sensors rather than the kernel's thermal zones). The built-in table's
/// parameters are then not served.
pub const REPLACEABLE: &[&str] = &["Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}."];

/// The built-in tables declared ones took the place of.
pub fn replaced() -> &'static [&'static str] {
    REPLACED.get().map(Vec::as_slice).unwrap_or_default()
}

/// The table a template is in: its path through the first `{i}.`.
fn table_of(path: &str) -> Option<&str> {
    path.find(".{i}.").map(|at| &path[..at + ".{i}.".len()])
}

/// The replaceable tables `templates` bind.
fn replaced_by<'t>(templates: impl IntoIterator<Item = &'t str>) -> Vec<&'static str> {
    let tables: Vec<&str> = templates.into_iter().filter_map(table_of).collect();
    REPLACEABLE
        .iter()
        .copied()
        .filter(|t| tables.contains(t))
        .collect()
}
static RESOLVER: OnceLock<Resolver> = OnceLock::new();

/// Why [`declare`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclareError {
    #[error("TR-181 parameters are declared once, before the first path is resolved")]
    TooLate,
    #[error("{0}: bound twice, or where the agent already serves an object")]
    Taken(String),
    #[error("{0}: not a TR-181 parameter path template (Device.Name.{{i}}.Parameter)")]
    Malformed(String),
}

/// A command of a declared TR-181 object: USP's Operate of it is an
/// Execute of its resource (CWMP has no commands). Declared with
/// [`declare_commands`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandBinding {
    /// `Device.X_000000_Example.Reset()` or `Device.X_000000_Table.{i}.Reset()`.
    pub path: String,
    pub object: ObjectId,
    pub resource: ResourceId,
    /// Its input arguments' names.
    pub inputs: Vec<String>,
}

impl CommandBinding {
    /// The instance `command` (a path with instance numbers) executes the
    /// command of, if it is this command's path.
    pub fn instance_of(&self, command: &str) -> Option<InstanceId> {
        match self.path.split_once("{i}") {
            None => (command == self.path).then_some(InstanceId(0)),
            Some((before, after)) => {
                let number = command.strip_prefix(before)?.strip_suffix(after)?;
                instance_number(number).map(InstanceId)
            }
        }
    }
}

static COMMANDS: OnceLock<Vec<CommandBinding>> = OnceLock::new();

/// Declares the declared objects' commands, once (the same list again is
/// accepted).
pub fn declare_commands(commands: Vec<CommandBinding>) -> Result<(), DeclareError> {
    match COMMANDS.get() {
        Some(declared) if *declared == commands => Ok(()),
        Some(_) => Err(DeclareError::TooLate),
        None => COMMANDS.set(commands).map_err(|_| DeclareError::TooLate),
    }
}

/// The declared objects' commands.
pub fn commands() -> &'static [CommandBinding] {
    COMMANDS.get().map(Vec::as_slice).unwrap_or_default()
}

/// A declared object's resource bound to a TR-181 parameter (from the
/// configuration; see [`declare`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Template, e.g. `Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}.Value`.
    pub path: String,
    pub object: ObjectId,
    pub resource: ResourceId,
    pub syntax: Syntax,
    pub writable: bool,
}

impl Binding {
    fn map(&self, path: &'static str) -> ParameterMap {
        ParameterMap {
            path,
            object: self.object,
            resource: self.resource,
            syntax: self.syntax,
            list: false,
            writable: self.writable,
            secured: false,
            forced_inform: false,
            active_notify: ActiveNotify::Normal,
        }
    }
}

/// Adds the bindings of declared objects to the table the
/// [`Resolver::global`] serves, for the life of the process (their paths
/// are leaked once). Call it before anything resolves a path; the same
/// bindings declared again are accepted.
pub fn declare(bindings: &[Binding]) -> Result<(), DeclareError> {
    if bindings.is_empty() && DECLARED.get().is_none() {
        return Ok(());
    }
    if let Some(declared) = DECLARED.get() {
        let same = declared.len() == bindings.len()
            && declared
                .iter()
                .zip(bindings)
                .all(|(a, b)| **a == b.map(a.path) && a.path == b.path);
        return if same {
            Ok(())
        } else {
            Err(DeclareError::TooLate)
        };
    }
    if RESOLVER.get().is_some() {
        return Err(DeclareError::TooLate);
    }
    let templates: Vec<(&str, ObjectId)> = bindings
        .iter()
        .map(|b| (b.path.as_str(), b.object))
        .collect();
    check_declared(&templates)?;
    let _ = REPLACED.set(replaced_by(templates.iter().map(|(p, _)| *p)));
    let leaked: Vec<&'static ParameterMap> = bindings
        .iter()
        .map(|b| {
            let path: &'static str = Box::leak(b.path.clone().into_boxed_str());
            &*Box::leak(Box::new(b.map(path)))
        })
        .collect();
    DECLARED.set(leaked).map_err(|_| DeclareError::TooLate)
}

/// Whether two templates cannot live in one resolver: the same path; a
/// table (`{i}`) they share but bind to different core objects (its
/// AddObject would reach the wrong one); or, where they part, an `{i}` in
/// one and a name in the other (the name would hide the instances).
fn clash(a: (&str, ObjectId), b: (&str, ObjectId)) -> bool {
    if a.0 == b.0 {
        return true;
    }
    for (x, y) in a.0.split('.').zip(b.0.split('.')) {
        if x != y {
            return [x, y].iter().any(|s| s.starts_with('{'));
        }
        if x == "{i}" && a.1 != b.1 {
            return true;
        }
    }
    // One is a prefix of the other: a parameter where the other has an
    // object.
    true
}

/// Checks templates to declare, each with its core object: they keep the
/// generated table working (see [`clash`]). They may add parameters to an
/// object the agent serves (`Device.DeviceInfo.X_000000_Tag`), not to its
/// tables.
pub fn check_declared(templates: &[(&str, ObjectId)]) -> Result<(), DeclareError> {
    for (n, &(path, object)) in templates.iter().enumerate() {
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() < 2
            || segments[0] != "Device"
            || path.matches("{i}").count() > 1
            || segments.last().is_some_and(|s| *s == "{i}")
            || segments.iter().any(|s| {
                *s != "{i}"
                    && (s.is_empty()
                        || !s
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            })
        {
            return Err(DeclareError::Malformed(path.to_owned()));
        }
        let replaced = replaced_by(templates.iter().map(|(p, _)| *p));
        if PARAMETERS
            .iter()
            .filter(|p| !table_of(p.path).is_some_and(|t| replaced.contains(&t)))
            .map(|p| (p.path, p.object))
            .chain(templates[..n].iter().copied())
            .any(|other| clash((path, object), other))
        {
            return Err(DeclareError::Taken(path.to_owned()));
        }
    }
    Ok(())
}

/// The unique keys (TR-181 `uniqueKey`) of the table `table` names
/// (`Device.WiFi.SSID.`, `Device.IP.Interface.2.IPv4Address.`, or a
/// template: instance numbers, `{i}` and `{j}` alike), each a set of
/// parameter names; those whose parameters are all served.
pub fn unique_keys(table: &str) -> &'static [&'static [&'static str]] {
    let wanted = format!("{}{{i}}.", generic_path(table));
    table::UNIQUE_KEYS
        .iter()
        .find(|(template, _)| generic_path(template) == wanted)
        .map_or(&[], |(_, keys)| keys)
}

/// A path with every instance number, `{i}` and `{j}` written `{i}`:
/// the form TR-181's object names (and USP's supported paths) have.
pub fn generic_path(path: &str) -> String {
    path.split('.')
        .map(|segment| {
            if segment == "{j}"
                || (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()))
            {
                "{i}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The generated table's parameters (but for the tables declared ones
/// replaced), then the declared ones.
pub fn parameters() -> impl Iterator<Item = &'static ParameterMap> {
    let replaced = REPLACED.get().map(Vec::as_slice).unwrap_or_default();
    PARAMETERS
        .iter()
        .filter(move |p| !table_of(p.path).is_some_and(|t| replaced.contains(&t)))
        .chain(DECLARED.get().into_iter().flatten().copied())
}

/// The TR-181 path of the row a core object link names, as a reference
/// parameter holds it (the row's path, no trailing dot, as TR-181's
/// examples write it),
/// or an empty string for a null link or an object no table is bound to.
pub fn reference(link: dm_core::ObjectLink) -> String {
    if link.instance == u16::MAX {
        return String::new();
    }
    parameters()
        .find(|p| p.object == link.object && p.path.contains(".{i}."))
        .and_then(|p| p.path.split_once(".{i}."))
        .map(|(table, _)| format!("{table}.{}", link.instance))
        .unwrap_or_default()
}

/// The row a reference parameter's text names (its path, with or
/// without a trailing dot; empty: no row).
pub fn dereference(text: &str) -> Option<dm_core::ObjectLink> {
    let text = text.trim().trim_end_matches('.');
    if text.is_empty() {
        return Some(dm_core::ObjectLink::NULL);
    }
    let (table, number) = text.rsplit_once('.')?;
    let instance = instance_number(number)?;
    parameters()
        .find(|p| {
            p.path
                .split_once(".{i}.")
                .is_some_and(|(prefix, _)| prefix == table)
        })
        .map(|p| dm_core::ObjectLink {
            object: p.object,
            instance,
        })
}

/// Resolves concrete TR-181 paths against [`parameters`].
pub struct Resolver {
    nodes: Vec<Node>,
    /// Every node's literal children, each node's together (see
    /// [`Node::first`]).
    literals: Vec<(&'static str, NonZeroU32)>,
    /// The bindings sorted by core resource: several paths may bind one.
    bindings: Vec<&'static ParameterMap>,
}

impl Resolver {
    /// The resolver over the generated table and the declared
    /// parameters, built on first use.
    pub fn global() -> &'static Resolver {
        RESOLVER.get_or_init(|| Resolver::new(parameters()))
    }

    pub fn new(parameters: impl IntoIterator<Item = &'static ParameterMap>) -> Resolver {
        // Built with a list of literal children per node, then packed.
        let mut nodes = vec![Node::default()];
        let mut children: Vec<Vec<(&'static str, NonZeroU32)>> = vec![Vec::new()];
        let mut bindings = Vec::new();
        for parameter in parameters {
            let mut at = 0;
            for segment in parameter.path.split('.') {
                let next = NonZeroU32::new(u32::try_from(nodes.len()).expect("fewer nodes"))
                    .expect("the root is node 0");
                let child = match segment {
                    "{i}" => {
                        nodes[at].table = Some(parameter.object);
                        *nodes[at].instance.get_or_insert(next)
                    }
                    "{j}" => *nodes[at].index.get_or_insert(next),
                    literal => match children[at].iter().find(|(name, _)| *name == literal) {
                        Some(&(_, child)) => child,
                        None => {
                            children[at].push((literal, next));
                            next
                        }
                    },
                };
                if child == next {
                    nodes.push(Node::default());
                    children.push(Vec::new());
                }
                at = child_index(child);
            }
            nodes[at].parameter = Some(parameter);
            bindings.push(parameter);
        }
        let mut literals = Vec::with_capacity(children.iter().map(Vec::len).sum());
        for (node, mut children) in nodes.iter_mut().zip(children) {
            children.sort_unstable_by_key(|&(name, _)| name);
            node.first = literals.len() as u32;
            node.count = children.len() as u32;
            literals.extend(children);
        }
        nodes.shrink_to_fit();
        // Stable: a resource's bindings keep the order they were given in.
        bindings.sort_by_key(|p| (p.object, p.resource));
        bindings.shrink_to_fit();
        Resolver {
            nodes,
            literals,
            bindings,
        }
    }

    /// The literal children of node `at`.
    fn literals(&self, at: usize) -> &[(&'static str, NonZeroU32)] {
        let node = &self.nodes[at];
        &self.literals[node.first as usize..][..node.count as usize]
    }

    /// Node `at`'s literal child `segment`.
    fn literal(&self, at: usize, segment: &str) -> Option<usize> {
        let children = self.literals(at);
        let found = children
            .binary_search_by_key(&segment, |&(name, _)| name)
            .ok()?;
        Some(child_index(children[found].1))
    }

    /// Resolves a concrete parameter path such as `Device.WiFi.SSID.2.SSID`.
    pub fn resolve(&self, path: &str) -> Result<Resolved, UnknownPath> {
        let unknown = || UnknownPath(path.to_owned());
        let mut at = 0;
        let mut instance = None;
        let mut index = None;
        for segment in path.split('.') {
            let node = &self.nodes[at];
            at = if let Some(next) = self.literal(at, segment) {
                next
            } else if let Some(number) = instance_number(segment) {
                match (node.instance, node.index) {
                    (Some(next), _) => {
                        // TR-069 §A.2.2.1: instance numbers are 1 or more.
                        if number == 0 || number > InstanceId::MAX.0 {
                            return Err(unknown());
                        }
                        instance = Some(InstanceId(number));
                        child_index(next)
                    }
                    (None, Some(next)) => {
                        index = Some(number.checked_sub(1).ok_or_else(unknown)?);
                        child_index(next)
                    }
                    (None, None) => return Err(unknown()),
                }
            } else {
                return Err(unknown());
            };
        }
        let parameter = self.nodes[at].parameter.ok_or_else(unknown)?;
        let instance = instance.unwrap_or(InstanceId(0));
        let path = match index {
            Some(index) => {
                Path::resource_instance(parameter.object, instance, parameter.resource, index)
            }
            None => Path::resource(parameter.object, instance, parameter.resource),
        };
        Ok(Resolved { parameter, path })
    }

    /// Classifies an object path (`Device.WiFi.SSID.` or
    /// `Device.WiFi.SSID.2.`); `None` if no mapped parameter lies under it.
    /// `""` and `Device.` are the root.
    pub fn object(&self, path: &str) -> Option<ObjectPath> {
        if path.is_empty() {
            return Some(ObjectPath::Other);
        }
        let path = path.strip_suffix('.')?;
        let mut at = 0;
        let mut parent_table = None;
        let mut instance = None;
        // The last instance number of the path, whatever segment it ends.
        let mut held = None;
        let mut row = None;
        for segment in path.split('.') {
            let node = &self.nodes[at];
            instance = None;
            row = None;
            at = if let Some(next) = self.literal(at, segment) {
                next
            } else if let Some(number) = instance_number(segment) {
                match (node.instance, node.index) {
                    (Some(next), _) if number != 0 && number <= InstanceId::MAX.0 => {
                        instance = Some(InstanceId(number));
                        held = instance;
                        parent_table = node.table;
                        child_index(next)
                    }
                    (None, Some(next)) if number != 0 => {
                        row = Some((number - 1, at));
                        child_index(next)
                    }
                    _ => return None,
                }
            } else {
                return None;
            };
        }
        let node = &self.nodes[at];
        if node.parameter.is_some() {
            return None;
        }
        let rows = |table: usize| {
            let columns = self.columns(child_index(self.nodes[table].index?));
            let object = columns.first()?.object;
            let columns = columns.iter().map(|p| p.resource).collect();
            Some((object, held.unwrap_or(InstanceId(0)), columns))
        };
        if let Some((index, table)) = row {
            let (object, instance, columns) = rows(table)?;
            return Some(ObjectPath::Row {
                object,
                instance,
                columns,
                index,
            });
        }
        if instance.is_none()
            && node.table.is_none()
            && let Some((object, instance, columns)) = rows(at)
        {
            return Some(ObjectPath::Rows {
                object,
                instance,
                columns,
            });
        }
        Some(match (instance, parent_table, node.table) {
            (Some(i), Some(object), _) => ObjectPath::Instance(object, i),
            (None, _, Some(object)) => ObjectPath::Table(object),
            _ => ObjectPath::Other,
        })
    }

    /// The parameters under node `at`, by core resource: the first is the
    /// table's lowest (what names its saved row count).
    fn columns(&self, at: usize) -> Vec<&'static ParameterMap> {
        let mut found = Vec::new();
        let mut stack = vec![at];
        while let Some(at) = stack.pop() {
            let held = &self.nodes[at];
            found.extend(held.parameter);
            let children = self.literals(at).iter().map(|&(_, child)| child);
            stack.extend(
                children
                    .chain(held.instance)
                    .chain(held.index)
                    .map(child_index),
            );
        }
        found.sort_by_key(|p| p.resource);
        found
    }

    /// The TR-181 parameters bound to a core resource (one resource may
    /// appear under several paths, or none).
    pub fn parameters_for(
        &self,
        object: ObjectId,
        resource: ResourceId,
    ) -> &[&'static ParameterMap] {
        let key = |p: &&ParameterMap| (p.object, p.resource);
        let start = self
            .bindings
            .partition_point(|p| key(p) < (object, resource));
        let end = self
            .bindings
            .partition_point(|p| key(p) <= (object, resource));
        &self.bindings[start..end]
    }
}

/// The index in `Resolver::nodes` of a child node.
fn child_index(child: NonZeroU32) -> usize {
    child.get() as usize
}

/// A decimal instance number without sign or leading zeros.
pub fn instance_number(segment: &str) -> Option<u16> {
    if segment.is_empty() || segment.len() > 5 || (segment.len() > 1 && segment.starts_with('0')) {
        return None;
    }
    if !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_core::catalog;

    const fn binding(path: &'static str, object: u16, resource: u16) -> ParameterMap {
        ParameterMap {
            path,
            object: ObjectId(object),
            resource: ResourceId(resource),
            syntax: Syntax::String,
            list: false,
            writable: true,
            secured: false,
            forced_inform: false,
            active_notify: ActiveNotify::Normal,
        }
    }

    /// A table of rows (`{j}`) lists its columns by core resource, not by
    /// name or in the order the paths come in (the lowest names its saved
    /// row count); a
    /// resource bound under two paths has both, in the order given; an
    /// unknown path or resource has nothing.
    #[test]
    fn columns_come_by_resource_and_a_resource_may_have_two_paths() {
        static BINDINGS: [ParameterMap; 4] = [
            binding("Device.X.{i}.Row.{j}.A", 60000, 7),
            binding("Device.X.{i}.Row.{j}.B", 60000, 3),
            binding("Device.Y.Name", 60001, 5),
            binding("Device.Z.Name", 60001, 5),
        ];
        let resolver = Resolver::new(&BINDINGS);
        assert_eq!(
            resolver.object("Device.X.2.Row."),
            Some(ObjectPath::Rows {
                object: ObjectId(60000),
                instance: InstanceId(2),
                columns: vec![ResourceId(3), ResourceId(7)],
            })
        );
        let paths: Vec<_> = resolver
            .parameters_for(ObjectId(60001), ResourceId(5))
            .iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["Device.Y.Name", "Device.Z.Name"]);
        assert!(
            resolver
                .parameters_for(ObjectId(60001), ResourceId(6))
                .is_empty()
        );
        assert!(
            resolver
                .parameters_for(ObjectId(60000), ResourceId(5))
                .is_empty()
        );
        assert_eq!(
            resolver.resolve("Device.X.2.Row.3.B").unwrap().path,
            Path::resource_instance(ObjectId(60000), InstanceId(2), ResourceId(3), 2)
        );
        assert!(resolver.resolve("Device.X.2.Row.3.C").is_err());
        assert!(resolver.resolve("Device.Y.Nam").is_err());
    }

    /// Every binding renders to a concrete path that resolves back to the
    /// same binding and core path, and names a resource the catalog has.
    #[test]
    fn every_mapped_path_resolves_both_ways() {
        let resolver = Resolver::global();
        for parameter in PARAMETERS {
            let schema = catalog::ALL
                .iter()
                .find(|o| o.id == parameter.object)
                .unwrap_or_else(|| panic!("{}: object not in catalog", parameter.path));
            let resource = schema
                .resource(parameter.resource)
                .unwrap_or_else(|| panic!("{}: resource not in catalog", parameter.path));
            assert_eq!(
                schema.multiple,
                parameter.has_instance(),
                "{}",
                parameter.path
            );
            let instance = if schema.multiple {
                InstanceId(7)
            } else {
                InstanceId(0)
            };
            let index = resource.multiple.then_some(3);
            let concrete = parameter.render(instance, index);
            assert!(!concrete.contains('{'), "{concrete}");
            let resolved = resolver.resolve(&concrete).expect(&concrete);
            assert!(std::ptr::eq(resolved.parameter, parameter), "{concrete}");
            assert_eq!(resolved.path.object_id(), parameter.object);
            assert_eq!(resolved.path.instance_id(), Some(instance));
            assert_eq!(resolved.path.resource_id(), Some(parameter.resource));
            assert_eq!(resolved.path.index(), index);
            assert!(
                resolver
                    .parameters_for(parameter.object, parameter.resource)
                    .iter()
                    .any(|p| std::ptr::eq(*p, parameter))
            );
        }
    }

    #[test]
    fn examples_from_the_issue() {
        let resolver = Resolver::global();
        let serial = resolver.resolve("Device.DeviceInfo.SerialNumber").unwrap();
        assert_eq!(serial.path.to_string(), "/3/0/2");
        let ssid = resolver.resolve("Device.WiFi.SSID.4.SSID").unwrap();
        assert_eq!(ssid.path.to_string(), "/12/4/5");
        // A nested table: interface 3's second address.
        let address = resolver
            .resolve("Device.IP.Interface.3.IPv4Address.2.IPAddress")
            .unwrap();
        assert_eq!(address.path.to_string(), "/50010/3/20/1");
        assert_eq!(
            address.parameter.render(InstanceId(3), Some(1)),
            "Device.IP.Interface.3.IPv4Address.2.IPAddress"
        );
    }

    /// A declared object may take the place of a replaceable built-in
    /// table (the host's temperature sensors), not of another.
    #[test]
    fn declared_tables_replace_only_replaceable_ones() {
        let sensor = "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}.Value";
        assert_eq!(check_declared(&[(sensor, ObjectId(3303))]), Ok(()));
        assert_eq!(
            replaced_by([sensor]),
            ["Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}."]
        );
        let ssid = "Device.WiFi.SSID.{i}.X_000000_Tag";
        assert_eq!(
            check_declared(&[(ssid, ObjectId(3303))]),
            Err(DeclareError::Taken(ssid.to_owned()))
        );
        assert!(replaced_by([ssid]).is_empty());
    }

    #[test]
    fn references_name_rows_both_ways() {
        let link = |object, instance| dm_core::ObjectLink {
            object: ObjectId(object),
            instance,
        };
        let interface = dm_core::catalog::ip_interface::ID.0;
        assert_eq!(reference(link(interface, 2)), "Device.IP.Interface.2");
        assert_eq!(
            dereference("Device.IP.Interface.2"),
            Some(link(interface, 2))
        );
        assert_eq!(
            dereference("Device.IP.Interface.2."),
            Some(link(interface, 2))
        );
        // Null both ways; no such table, no number.
        assert_eq!(reference(link(u16::MAX, u16::MAX)), "");
        assert_eq!(dereference(""), Some(link(u16::MAX, u16::MAX)));
        assert_eq!(dereference("Device.Nothing.2"), None);
        assert_eq!(dereference("Device.IP.Interface.x"), None);
        assert_eq!(reference(link(60000, 1)), "");
    }

    #[test]
    fn object_paths() {
        let r = Resolver::global();
        let wlan = dm_core::catalog::wlan::ID;
        assert_eq!(r.object(""), Some(ObjectPath::Other));
        assert_eq!(r.object("Device."), Some(ObjectPath::Other));
        assert_eq!(r.object("Device.WiFi.SSID."), Some(ObjectPath::Table(wlan)));
        assert_eq!(
            r.object("Device.WiFi.SSID.2."),
            Some(ObjectPath::Instance(wlan, InstanceId(2)))
        );
        assert_eq!(
            r.object("Device.WiFi.AccessPoint.2.Security."),
            Some(ObjectPath::Other)
        );
        assert_eq!(r.object("Device.DeviceInfo."), Some(ObjectPath::Other));
        assert_eq!(r.object("Device.DeviceInfo"), None);
        assert_eq!(r.object("Device.DeviceInfo.SerialNumber."), None);
        assert_eq!(r.object("Device.Nothing."), None);
        assert_eq!(r.object("Device.WiFi.SSID.0."), None);
    }

    #[test]
    fn bad_paths_are_unknown() {
        let resolver = Resolver::global();
        for path in [
            "",
            "Device.",
            "Device.DeviceInfo.",
            "Device.DeviceInfo.Serial",
            "Device.WiFi.SSID.0.SSID",
            "Device.WiFi.SSID.01.SSID",
            "Device.WiFi.SSID.65535.SSID",
            "Device.IP.Interface.1.IPv4Address.0.IPAddress",
            "Device.WiFi.SSID.x.SSID",
            "Device.WiFi.SSID.-1.SSID",
            "Device.Cellular.Interface.2.RSSI",
            "Device.DeviceInfo.SerialNumber.",
        ] {
            assert_eq!(
                resolver.resolve(path),
                Err(UnknownPath(path.to_owned())),
                "{path}"
            );
        }
    }
}
