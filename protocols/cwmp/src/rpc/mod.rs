//! The data-model RPCs (TR-069 Amendment 6 §A.3.2) on the core tree:
//! GetParameterValues, SetParameterValues, GetParameterNames,
//! Set/GetParameterAttributes, AddObject and DeleteObject.
//!
//! Each takes the decoded arguments and returns the response's content or
//! the CWMP fault, never panicking on what the ACS sent. Core errors map to
//! fault codes in one place, [`fault_code`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use dm_core::catalog::management_server;
use dm_core::tree::Prepared;
use dm_core::{
    Error, InstanceId, Notification, Origin, Path, ResourceValue, TransactionError, Tree, Value,
    ValueError,
};

use crate::mapping::{ActiveNotify, ObjectPath, ParameterMap, Resolver};
use crate::soap::{
    AttributeChange, Fault, FaultCode, ParameterFault, ParameterValue, ParameterValueIn,
};
use crate::values;

mod concrete;

use concrete::{
    Concrete, concrete, counts, natural, select, select_each_once, too_many, write_only,
};
pub use concrete::{MAX_RESPONSE_ENTRIES, entry_counts};

/// The fault a core error becomes.
pub fn fault_code(error: &Error) -> FaultCode {
    match error {
        Error::ObjectNotFound(_)
        | Error::InstanceNotFound(_)
        | Error::ResourceNotFound(_)
        | Error::NotReadable(_)
        | Error::FixedInstances(_) => FaultCode::InvalidParameterName,
        Error::NotWritable(_) => FaultCode::NonWritableParameter,
        Error::InvalidValue {
            source: ValueError::Type { .. },
            ..
        } => FaultCode::InvalidParameterType,
        Error::InvalidValue { .. } | Error::Rejected { .. } => FaultCode::InvalidParameterValue,
        Error::InstancesExhausted(_) | Error::TooManyInstances { .. } => {
            FaultCode::ResourcesExceeded
        }
        Error::NotExecutable(_) | Error::NotSupported(_) | Error::AccessDenied { .. } => {
            FaultCode::RequestDenied
        }
        Error::InstanceExists(_) => FaultCode::InvalidArguments,
        Error::Platform(_) | Error::PlatformUnavailable(_) | Error::Storage(_) => {
            FaultCode::InternalError
        }
        Error::PlatformDenied(_) => FaultCode::RequestDenied,
        // Another client's change of the instance is on its way to the
        // host: refused for now (TR-069 has no "busy"; 9001 says denied,
        // the message says why).
        Error::Busy(_) => FaultCode::RequestDenied,
        Error::PlatformInvalid(_) => FaultCode::InvalidParameterValue,
        _ => FaultCode::InternalError,
    }
}

fn fault(code: FaultCode, detail: impl std::fmt::Display) -> Fault {
    Fault {
        code: code.code(),
        message: format!("{}: {detail}", code.text()),
        parameters: Vec::new(),
    }
}

fn wire_value(tree: &Tree, c: &Concrete) -> ParameterValue {
    wire_value_or_unavailable(tree, c, Origin::Acs).unwrap_or_else(|_| ParameterValue {
        name: c.name.clone(),
        value: String::new(),
        xsd_type: c.map.syntax.xsd_type(),
    })
}

/// The parameter as GetParameterValues answers it, or the error of a
/// value whose server is away for now ([`Error::PlatformUnavailable`]).
/// Read once: a value computed "since the last read" is not consumed
/// twice.
fn wire_value_or_unavailable(
    tree: &Tree,
    c: &Concrete,
    reader: Origin,
) -> Result<ParameterValue, Error> {
    Ok(ParameterValue {
        name: c.name.clone(),
        // Secured and write-only values read back empty (§A.3.2.2); a
        // computed value that cannot be read now (the host failed) too.
        value: if c.map.secured || write_only(tree, c) {
            String::new()
        } else {
            match c.read(tree, reader) {
                Err(e @ Error::PlatformUnavailable(_)) => return Err(e),
                read => read
                    .ok()
                    .flatten()
                    .map(|v| values::render(&v, c.map.syntax))
                    .unwrap_or_default(),
            }
        },
        xsd_type: c.map.syntax.xsd_type(),
    })
}

/// GetParameterValues (§A.3.2.2).
pub fn get_parameter_values(tree: &Tree, names: &[String]) -> Result<Vec<ParameterValue>, Fault> {
    get_parameter_values_within(tree, names, MAX_RESPONSE_ENTRIES)
}

/// GetParameterValues listing at most `limit` parameters (9004 beyond).
pub fn get_parameter_values_within(
    tree: &Tree,
    names: &[String],
    limit: usize,
) -> Result<Vec<ParameterValue>, Fault> {
    let all = concrete(tree);
    let selected = select_each_once(&all, names, limit)?;
    // A value whose server is away (a provider that is not running) is
    // not answered as empty. Asked for by its full name, the request gets
    // 9002, TR-069's nearest to "try later" (§A.5.1); under a partial
    // path it is left out, as an object that is not there for now, so
    // that one away provider does not fail a whole refresh of Device.
    let named: std::collections::HashSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.is_empty() && !n.ends_with('.'))
        .collect();
    let mut out = Vec::with_capacity(selected.len());
    for c in selected {
        match wire_value_or_unavailable(tree, c, Origin::Acs) {
            Ok(value) => out.push(value),
            Err(e) if named.contains(c.name.as_str()) => {
                return Err(fault(FaultCode::InternalError, format!("{}: {e}", c.name)));
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

/// The tree paths GetParameterValues of `names` reads (none when it
/// would fail), for the host reads it needs first.
pub fn selected_paths(tree: &Tree, names: &[String]) -> Vec<Path> {
    let all = concrete(tree);
    select_each_once(&all, names, MAX_RESPONSE_ENTRIES)
        .map(|selected| {
            selected
                .into_iter()
                .filter(|c| c.count.is_none())
                .map(|c| c.path)
                .collect()
        })
        .unwrap_or_default()
}

/// The tables the host gives on demand (the processes, the neighbour
/// table) that `names` list from at or above the table (`Device.`, the
/// table's own partial path, its `NumberOfEntries`), each as its object's
/// path: [`Tree::host_reads`] refreshes them before the request is
/// answered, even when they have no instance yet. A name inside one
/// instance (`...Process.5.PID`) reads what the last listing found: a
/// refresh then could remove the very instance the ACS just listed and
/// asks for (9005), as GenieACS's refresh (names, then their values)
/// would meet.
pub fn tables_listed(tree: &Tree, names: &[String]) -> Vec<Path> {
    let tables = tree.tables_read_on_demand();
    let mut listed = Vec::new();
    for map in crate::mapping::parameters().filter(|m| tables.contains(&m.object)) {
        if listed.contains(&Path::object(map.object)) {
            continue;
        }
        // The table's partial path (`Device.DeviceInfo.ProcessStatus.Process.`)
        // and its count (`...ProcessNumberOfEntries`).
        let Some(at) = map.path.find("{i}") else {
            continue;
        };
        let table = &map.path[..at];
        let count = format!("{}NumberOfEntries", table.trim_end_matches('.'));
        let lists =
            |name: &String| name.is_empty() || table.starts_with(name.as_str()) || *name == count;
        if names.iter().any(lists) {
            listed.push(Path::object(map.object));
        }
    }
    listed
}

/// The values `names` select (parameters' and objects' paths), read as
/// `reader`, each once, in one walk of the tree: a name that selects
/// nothing now (an instance that is not there) gives nothing; a value
/// whose server is away is left out under an object's path and an
/// error (9002) when named; more than `limit` values is 9004. For USP's
/// Get, whose resolved paths may name instances that are gone.
pub fn existing_values_as(
    tree: &Tree,
    reader: Origin,
    names: &[String],
    limit: usize,
) -> Result<Vec<ParameterValue>, Fault> {
    let all = concrete(tree);
    let mut taken = vec![false; all.len()];
    let mut out = Vec::new();
    for name in names {
        let Ok(selected) = select(&all, name) else {
            continue;
        };
        for at in selected {
            if std::mem::replace(&mut taken[at], true) {
                continue;
            }
            match wire_value_or_unavailable(tree, &all[at], reader) {
                Ok(value) => out.push(value),
                Err(e) if all[at].name == *name => {
                    return Err(fault(FaultCode::InternalError, format!("{name}: {e}")));
                }
                Err(_) => {}
            }
            if out.len() > limit {
                return Err(too_many(limit));
            }
        }
    }
    Ok(out)
}

/// One parameter's value as `reader` reads it, found through the mapping
/// alone (no walk of the tree): `None` when it is not there now or
/// cannot be read; a secured or write-only one reads back empty.
pub fn value_as(tree: &Tree, reader: Origin, name: &str) -> Option<String> {
    let resolved = Resolver::global().resolve(name).ok()?;
    let map = resolved.parameter;
    match tree.read(reader, &resolved.path).ok()? {
        ResourceValue::Single(_) if map.secured => Some(String::new()),
        ResourceValue::Single(value) => Some(values::render(&value, map.syntax)),
        ResourceValue::Multiple(_) => None,
    }
}

/// The values of those of `names` that exist, for an Inform: a name
/// whose instance is gone is skipped. One walk of the tree for all names.
pub fn existing_parameter_values(tree: &Tree, names: &[String]) -> Vec<ParameterValue> {
    let all = concrete(tree);
    names
        .iter()
        .filter_map(|name| select(&all, name).ok())
        .flatten()
        .map(|i| wire_value(tree, &all[i]))
        .collect()
}

/// The parameters `patterns` name, each once, with its value as
/// GetParameterValues answers it (read as the ACS reads it) and which of
/// the patterns named it, in natural path order. A pattern is a
/// parameter's path, or an object's (ending in `.`) for every parameter
/// below it, `*` standing for any instance number (TR-181 BulkData's
/// Parameter.{i}.Reference); one that names nothing now gives nothing; a
/// value whose server is away is left out. At most `limit` of the
/// parameters `counts` (given the patterns that named one) says count;
/// the others are all given (the second value says whether some were
/// left out). One walk of the tree for all the patterns.
pub fn matching_values(
    tree: &Tree,
    patterns: &[&str],
    limit: usize,
    counts: &dyn Fn(&[usize]) -> bool,
) -> (Vec<(Vec<usize>, ParameterValue)>, bool) {
    matching_values_as(tree, Origin::Acs, patterns, limit, counts)
}

/// [`matching_values`] read as `reader`.
pub fn matching_values_as(
    tree: &Tree,
    reader: Origin,
    patterns: &[&str],
    limit: usize,
    counts: &dyn Fn(&[usize]) -> bool,
) -> (Vec<(Vec<usize>, ParameterValue)>, bool) {
    // Only the objects some pattern can name are listed.
    let objects: BTreeSet<dm_core::ObjectId> = crate::mapping::parameters()
        .filter(|map| patterns.iter().any(|p| may_match(p, map.path)))
        .map(|map| map.object)
        .collect();
    let all = concrete::concrete_of(tree, &|object| objects.contains(&object));
    let mut out = Vec::new();
    let (mut counted, mut truncated) = (0, false);
    for c in &all {
        let hits: Vec<usize> = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| matches_pattern(p, &c.name))
            .map(|(at, _)| at)
            .collect();
        if hits.is_empty() {
            continue;
        }
        if counts(&hits) {
            if counted == limit {
                truncated = true;
                continue;
            }
            counted += 1;
        }
        if let Ok(value) = wire_value_or_unavailable(tree, c, reader) {
            out.push((hits, value));
        }
    }
    (out, truncated)
}

/// The tree paths the names select that exist now, for the host reads a
/// read of them needs: unlike [`selected_paths`], a name that selects
/// nothing (a row since deleted) is passed over, not the end of all.
pub fn existing_paths(tree: &Tree, names: &[String]) -> Vec<Path> {
    let all = concrete(tree);
    let mut paths: Vec<Path> = names
        .iter()
        .filter_map(|name| select(&all, name).ok())
        .flatten()
        .filter(|&at| all[at].count.is_none())
        .map(|at| all[at].path)
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

/// Whether the data model has what `pattern` names: a parameter's path,
/// an object's (ending in `.`), or a table's NumberOfEntries, with
/// instance numbers or `*` where the model has instances; whether or not
/// such instances exist now.
pub fn in_schema(pattern: &str) -> bool {
    crate::mapping::parameters().any(|map| may_match(pattern, map.path))
}

/// Whether `path` (ending in `.`) is a table: of instances, or the rows
/// of a multiple resource (`{j}`).
pub fn is_table(path: &str) -> bool {
    matches!(
        Resolver::global().object(path),
        Some(ObjectPath::Table(_) | ObjectPath::Rows { .. })
    )
}

/// Whether `pattern` may name a parameter of `template` (a mapping's
/// path, `{i}` and `{j}` for instance numbers), or the NumberOfEntries of
/// a table of it.
fn may_match(pattern: &str, template: &str) -> bool {
    let (pattern, partial) = match pattern.strip_suffix('.') {
        Some(object) => (object, true),
        None => match pattern.strip_suffix("NumberOfEntries") {
            // `...ProfileNumberOfEntries` counts `...Profile.{i}.`.
            Some(table) => (table, true),
            None => (pattern, false),
        },
    };
    if pattern.is_empty() {
        return true;
    }
    let mut templates = template.split('.');
    for segment in pattern.split('.') {
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match templates.next() {
            Some("{i}" | "{j}") if segment == "*" || numeric(segment) => {}
            Some(t) if numeric(t) && segment == "*" => {}
            Some(t) if t == segment => {}
            _ => return false,
        }
    }
    templates.next().is_some() == partial
}

/// Whether `name` is `pattern` or (a pattern ending in `.`) below it,
/// `*` matching any instance number.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (pattern, partial) = match pattern.strip_suffix('.') {
        Some(object) => (object, true),
        None => (pattern, false),
    };
    let mut names = name.split('.');
    for segment in pattern.split('.') {
        match names.next() {
            Some(n) if n == segment => {}
            Some(n) if segment == "*" && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            }
            _ => return false,
        }
    }
    // A parameter's path is all of it; an object's has more below.
    names.next().is_some() == partial
}

/// SetParameterValues (§A.3.2.1): all or nothing; on failure fault 9003
/// with one SetParameterValuesFault per refused parameter. The
/// ParameterKey is set in the same transaction. Returns the Status.
pub fn set_parameter_values(
    tree: &mut Tree,
    parameters: &[ParameterValueIn],
    parameter_key: &str,
) -> Result<u8, Fault> {
    set_parameter_values_by(tree, Origin::Acs, parameters, Some(parameter_key))
}

/// SetParameterValues on behalf of `origin` (the local CLI uses it too);
/// the ParameterKey is set only when given.
pub fn set_parameter_values_by(
    tree: &mut Tree,
    origin: Origin,
    parameters: &[ParameterValueIn],
    parameter_key: Option<&str>,
) -> Result<u8, Fault> {
    set_values(tree, origin, parameters, parameter_key, false)
}

/// SetParameterValues' checks and transaction; with `create_missing`,
/// the instances of multi-instance objects the names point at that do
/// not exist are created in the same transaction (a configuration file
/// restored).
fn set_values(
    tree: &mut Tree,
    origin: Origin,
    parameters: &[ParameterValueIn],
    parameter_key: Option<&str>,
    create_missing: bool,
) -> Result<u8, Fault> {
    // A caller that may block: the host writes run here.
    let written = prepare_values(tree, origin, parameters, parameter_key, create_missing);
    blocking(tree, written).map(WriteResult::status)
}

/// SetParameterValues on behalf of `origin`, prepared (see
/// [`set_parameter_values_prepared`]).
pub fn set_parameter_values_by_prepared(
    tree: &mut Tree,
    origin: Origin,
    parameters: &[ParameterValueIn],
    parameter_key: Option<&str>,
) -> Written {
    prepare_values(tree, origin, parameters, parameter_key, false)
}

/// SetParameterValues prepared: answered at once, or waiting for the
/// host writes it needs (the engine's driver makes them off the lock).
pub fn set_parameter_values_prepared(
    tree: &mut Tree,
    parameters: &[ParameterValueIn],
    parameter_key: &str,
) -> Written {
    prepare_values(tree, Origin::Acs, parameters, Some(parameter_key), false)
}

fn prepare_values(
    tree: &mut Tree,
    origin: Origin,
    parameters: &[ParameterValueIn],
    parameter_key: Option<&str>,
    create_missing: bool,
) -> Written {
    match stage_values(tree, origin, parameters, parameter_key, create_missing) {
        Err(fault) => Written::Done(Err(fault)),
        Ok((mut tx_parts, writes)) => {
            let names: Vec<(String, Path)> =
                writes.iter().map(|(n, p, _)| (n.clone(), *p)).collect();
            let prepared = tx_parts.prepare(tree);
            finish(prepared, Kind::Set { writes: names })
        }
    }
}

/// A parameter a SetParameterValues writes: its name, where, and what.
type NamedWrite = (String, Path, Value);

/// The transaction of a SetParameterValues, checked but not run.
struct Staging {
    origin: Origin,
    create: Vec<(dm_core::ObjectId, InstanceId)>,
    writes: Vec<(Path, Value)>,
    parameter_key: Option<String>,
}

impl Staging {
    fn prepare(&mut self, tree: &mut Tree) -> Result<Prepared, TransactionError> {
        let mut tx = tree.begin(self.origin);
        for (object, instance) in &self.create {
            tx.create(*object, Some(*instance));
        }
        for (path, value) in &self.writes {
            tx.set(*path, value.clone());
        }
        if let Some(parameter_key) = &self.parameter_key {
            tx.set_by(
                Origin::Agent,
                parameter_key_path(),
                Value::String(parameter_key.clone()),
            );
        }
        tx.prepare()
    }
}

fn parameter_key_path() -> Path {
    Path::resource(
        management_server::ID,
        InstanceId(0),
        management_server::PARAMETER_KEY,
    )
}

/// A write RPC's answer: given now, or after the host writes it needs.
#[derive(Debug)]
pub enum Written {
    Done(Result<WriteResult, Fault>),
    Host(HostRpc),
}

/// What a write RPC returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteResult {
    /// SetParameterValues, DeleteObject: the Status.
    Status(u8),
    /// AddObject: the instance number and the Status.
    Added { instance: u32, status: u8 },
}

impl WriteResult {
    fn status(self) -> u8 {
        match self {
            WriteResult::Status(status) | WriteResult::Added { status, .. } => status,
        }
    }
}

/// A write RPC waiting for its host writes.
#[derive(Debug)]
pub struct HostRpc {
    pending: dm_core::PendingCommit,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The parameters written, by name, to name the one a fault is for.
    Set {
        writes: Vec<(String, Path)>,
    },
    Add,
    /// A row of a `{j}` table: its number is known before the commit.
    AddRow(u32),
    Delete,
}

impl HostRpc {
    /// The host writes to make (once).
    pub fn take_work(&mut self) -> dm_core::HostWork {
        self.pending.take_work()
    }

    /// The answer, with the outcome of the host writes; and the writes'
    /// undo when the tree could not take the change (to run off the
    /// lock).
    pub fn complete(
        self,
        tree: &mut Tree,
        outcome: Result<dm_core::HostWork, Error>,
    ) -> (Result<WriteResult, Fault>, Option<dm_core::HostWork>) {
        let completion = tree.complete(self.pending, outcome);
        (answer(completion.result, &self.kind), completion.undo)
    }
}

fn finish(prepared: Result<Prepared, TransactionError>, kind: Kind) -> Written {
    match prepared {
        Ok(Prepared::Committed(committed)) => Written::Done(answer(Ok(committed), &kind)),
        Ok(Prepared::Pending(pending)) => Written::Host(HostRpc { pending, kind }),
        Err(e) => Written::Done(answer(Err(e), &kind)),
    }
}

/// A write RPC's answer from its transaction's outcome.
fn answer(
    result: Result<dm_core::tree::Committed, TransactionError>,
    kind: &Kind,
) -> Result<WriteResult, Fault> {
    match (kind, result) {
        (Kind::Set { .. } | Kind::Delete, Ok(_)) => Ok(WriteResult::Status(0)),
        (Kind::AddRow(instance), Ok(_)) => Ok(WriteResult::Added {
            instance: *instance,
            status: 0,
        }),
        (Kind::Add, Ok(committed)) => {
            let instance = committed
                .created
                .first()
                .and_then(|p| p.instance_id())
                .ok_or_else(|| fault(FaultCode::InternalError, "no instance created"))?;
            Ok(WriteResult::Added {
                instance: u32::from(instance.0),
                status: 0,
            })
        }
        (Kind::Set { writes }, Err(e)) => Err(set_fault(writes, &e)),
        (Kind::Add | Kind::AddRow(_) | Kind::Delete, Err(e)) => Err(match e.faults.first() {
            Some(first) => fault(fault_code(first), first),
            None => fault(FaultCode::InternalError, e),
        }),
    }
}

/// SetParameterValues' checks: the parameters resolved, typed and
/// parsed, and the instances a file restore must make; faults for every
/// bad parameter at once.
fn stage_values(
    tree: &mut Tree,
    origin: Origin,
    parameters: &[ParameterValueIn],
    parameter_key: Option<&str>,
    create_missing: bool,
) -> Result<(Staging, Vec<NamedWrite>), Fault> {
    let resolver = Resolver::global();
    let mut faults = Vec::new();
    let mut writes = Vec::new();
    let mut seen = BTreeSet::new();
    // The tables' NumberOfEntries, listed once if a name needs them.
    let mut count_names: Option<BTreeSet<String>> = None;
    for p in parameters {
        let mut refuse = |code: FaultCode, detail: String| {
            faults.push(ParameterFault {
                name: p.name.clone(),
                code: code.code(),
                message: format!("{}: {detail}", code.text()),
            });
        };
        // TR-069 §A.3.2.1: a name may appear only once.
        if !seen.insert(p.name.as_str()) {
            refuse(
                FaultCode::InvalidArguments,
                "the parameter is listed twice".into(),
            );
            continue;
        }
        let resolved = match resolver.resolve(&p.name) {
            Ok(r) => r,
            // A table's NumberOfEntries: there, and read-only.
            Err(_)
                if count_names
                    .get_or_insert_with(|| {
                        counts(&concrete(tree))
                            .into_iter()
                            .map(|c| c.name)
                            .collect()
                    })
                    .contains(&p.name) =>
            {
                refuse(FaultCode::NonWritableParameter, p.name.clone());
                continue;
            }
            Err(e) => {
                refuse(FaultCode::InvalidParameterName, e.to_string());
                continue;
            }
        };
        if !resolved.parameter.writable {
            refuse(FaultCode::NonWritableParameter, p.name.clone());
            continue;
        }
        if let Some(declared) = &p.xsd_type
            && format!("xsd:{declared}") != resolved.parameter.syntax.xsd_type()
        {
            refuse(
                FaultCode::InvalidParameterType,
                format!(
                    "{declared} given, {} expected",
                    resolved.parameter.syntax.xsd_type()
                ),
            );
            continue;
        }
        // From the tree: declared objects are not in the catalog.
        let core_type = tree
            .schema(resolved.parameter.object)
            .and_then(|o| o.resource(resolved.parameter.resource))
            .map(|r| r.value_type);
        let Some(core_type) = core_type else {
            refuse(FaultCode::InternalError, "unmapped resource".into());
            continue;
        };
        match values::parse(&p.value, resolved.parameter.syntax, core_type) {
            // A reference names a row that is there (TR-106's reference
            // parameters: one to a row that does not exist is invalid).
            Ok(Value::ObjectLink(link))
                if link != dm_core::ObjectLink::NULL
                    && tree
                        .instance(link.object, InstanceId(link.instance))
                        .is_err() =>
            {
                refuse(
                    FaultCode::InvalidParameterValue,
                    format!("{:?}: no such row", p.value),
                );
            }
            Ok(value) => writes.push((p.name.clone(), resolved.path, value)),
            Err(e) => refuse(FaultCode::InvalidParameterValue, e.0),
        }
    }
    if !faults.is_empty() {
        return Err(invalid_arguments(faults));
    }
    let mut missing = BTreeSet::new();
    if create_missing {
        for (_, path, _) in &writes {
            if let Some(instance) = path.instance_id()
                && tree.schema(path.object_id()).is_some_and(|s| s.multiple)
                && tree.instance(path.object_id(), instance).is_err()
            {
                missing.insert((path.object_id(), instance));
            }
        }
    }
    // An instance whose object holds secrets (a Wi-Fi passphrase, an APN
    // password) is not made from a file that never carries them: it would
    // come up open or unusable.
    for &(object, instance) in &missing {
        let secret = tree.schema(object).is_some_and(|schema| {
            schema.resources.iter().any(|r| {
                resolver
                    .parameters_for(object, r.id)
                    .iter()
                    .any(|p| p.secured && p.writable)
            })
        });
        if secret {
            let named = writes
                .iter()
                .find(|(_, path, _)| {
                    path.object_id() == object && path.instance_id() == Some(instance)
                })
                .map_or_else(String::new, |(name, _, _)| name.clone());
            return Err(fault(
                FaultCode::InvalidArguments,
                format!(
                    "{named}: its instance holds secrets a file does not carry; create it first"
                ),
            ));
        }
    }
    let staging = Staging {
        origin,
        create: missing.into_iter().collect(),
        writes: writes.iter().map(|(_, p, v)| (*p, v.clone())).collect(),
        parameter_key: parameter_key.map(str::to_owned),
    };
    Ok((staging, writes))
}

/// The fault of a SetParameterValues the core refused: 9003 naming each
/// parameter, or the error itself when it is not about one.
fn set_fault(writes: &[(String, Path)], e: &TransactionError) -> Fault {
    let mut faults = Vec::new();
    for error in &e.faults {
        let code = fault_code(error);
        if code == FaultCode::InternalError {
            return fault(code, error);
        }
        // Name the parameter the core refused; an object rule may point at
        // a resource that was not written, then every written parameter of
        // that instance is named.
        let at = error_path(error);
        let named: Vec<_> = writes
            .iter()
            .filter(|(_, path)| at.is_some_and(|a| a.without_index() == path.without_index()))
            .map(|(name, _)| name.clone())
            .collect();
        let named = if named.is_empty() {
            writes
                .iter()
                .filter(|(_, path)| {
                    at.is_some_and(|a| {
                        a.object_id() == path.object_id() && a.instance_id() == path.instance_id()
                    })
                })
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            named
        };
        for name in named {
            faults.push(ParameterFault {
                name,
                code: code.code(),
                message: format!("{}: {error}", code.text()),
            });
        }
    }
    if faults.is_empty() {
        return fault(FaultCode::InvalidArguments, e);
    }
    invalid_arguments(faults)
}

/// The first line of a configuration file.
const CONFIGURATION_HEADER: &str = "# dmagent configuration 1";

/// The device's configuration as a vendor configuration file (TR-069
/// A.4.1.5 Upload "1 Vendor Configuration File", restored by a Download
/// of "3 Vendor Configuration File"): every writable parameter the tree
/// holds, one per line, `Name<TAB>xsd-type<TAB>value`, the value with
/// `\\`, tab, CR and LF escaped. Secured values (passwords, keys) are left
/// out: they never leave the device, and a restore keeps the device's.
/// So are the diagnostic tests (TR-143): a test is asked for, not
/// configured, and its inputs are no setting of the device.
pub fn configuration_file(tree: &Tree) -> String {
    let mut out = format!("{CONFIGURATION_HEADER}\n");
    for c in concrete(tree) {
        if !c.map.writable || c.map.secured || write_only(tree, &c) || is_diagnostic(&c.name) {
            continue;
        }
        let Some(value) = c.read(tree, Origin::Acs).ok().flatten() else {
            continue;
        };
        let value = values::render(&value, c.map.syntax);
        let mut escaped = String::with_capacity(value.len());
        for ch in value.chars() {
            match ch {
                '\\' => escaped.push_str("\\\\"),
                '\t' => escaped.push_str("\\t"),
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                ch => escaped.push(ch),
            }
        }
        let xsd = c.map.syntax.xsd_type();
        let _ = writeln!(out, "{}\t{xsd}\t{escaped}", c.name);
    }
    out
}

/// A parameter of a diagnostic test's object (TR-181 puts them under
/// `Diagnostics.`).
fn is_diagnostic(name: &str) -> bool {
    name.contains(".Diagnostics.")
}

/// Restores a [`configuration_file`]: all or nothing, with
/// SetParameterValues' checks (name, writability, type, value), creating
/// the table instances it names that are missing (not those holding
/// secrets, which the file does not carry). Returns how many
/// parameters were set; a file that is not one, or that the tree refuses,
/// is a readable reason (TR-069 fault 9018, file corrupted or unusable).
/// Diagnostic tests' parameters in it are skipped.
pub fn apply_configuration_file(
    tree: &mut Tree,
    text: &str,
) -> Result<usize, ConfigurationFileError> {
    let mut parameters = parse_configuration_file(text)?;
    // A file from an earlier version may hold them: not restored.
    parameters.retain(|p| !is_diagnostic(&p.name));
    let written = prepare_configuration(tree, &parameters);
    blocking(tree, written).map_err(|fault| configuration_refused(&fault))?;
    Ok(parameters.len())
}

/// The values of a configuration file (see [`apply_configuration_file`]),
/// checked for form only.
pub fn parse_configuration_file(
    text: &str,
) -> Result<Vec<ParameterValueIn>, ConfigurationFileError> {
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some(CONFIGURATION_HEADER) {
        return Err(ConfigurationFileError::NotOne);
    }
    let mut parameters = Vec::new();
    for (number, line) in lines.enumerate() {
        let number = number + 2;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(name), Some(xsd), Some(raw)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(ConfigurationFileError::Line {
                line: number,
                reason: "not Name<TAB>type<TAB>value",
            });
        };
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(ch) = chars.next() {
            if ch != '\\' {
                value.push(ch);
                continue;
            }
            match chars.next() {
                Some('\\') => value.push('\\'),
                Some('t') => value.push('\t'),
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                _ => {
                    return Err(ConfigurationFileError::Line {
                        line: number,
                        reason: "a bad escape",
                    });
                }
            }
        }
        parameters.push(ParameterValueIn {
            name: name.to_owned(),
            value,
            xsd_type: Some(xsd.strip_prefix("xsd:").unwrap_or(xsd).to_owned()),
        });
    }
    Ok(parameters)
}

/// A configuration file's values prepared, as the ACS's (host writes, if
/// any, to make off the lock: see [`set_parameter_values_prepared`]).
pub fn prepare_configuration(tree: &mut Tree, parameters: &[ParameterValueIn]) -> Written {
    prepare_values(tree, Origin::Acs, parameters, None, true)
}

/// Why the values of a configuration file were refused, from the fault a
/// SetParameterValues of them would get.
pub fn configuration_refused(fault: &Fault) -> ConfigurationFileError {
    let mut reason = fault.message.clone();
    for p in fault.parameters.iter().take(5) {
        let _ = write!(reason, "; {} ({})", p.name, p.message);
    }
    ConfigurationFileError::Refused(reason)
}

/// Why a configuration file was not restored (nothing of it was).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigurationFileError {
    #[error("not a dmagent configuration file (no {CONFIGURATION_HEADER:?} first line)")]
    NotOne,
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: &'static str },
    /// The values were refused, as a SetParameterValues of them would be.
    #[error("{0}")]
    Refused(String),
}

fn invalid_arguments(parameters: Vec<ParameterFault>) -> Fault {
    Fault {
        code: FaultCode::InvalidArguments.code(),
        message: FaultCode::InvalidArguments.text().to_owned(),
        parameters,
    }
}

fn error_path(error: &Error) -> Option<Path> {
    match error {
        Error::InstanceNotFound(p)
        | Error::ResourceNotFound(p)
        | Error::NotReadable(p)
        | Error::NotWritable(p)
        | Error::NotExecutable(p)
        | Error::InstanceExists(p)
        | Error::NotSupported(p) => Some(*p),
        Error::InvalidValue { path, .. }
        | Error::Rejected { path, .. }
        | Error::AccessDenied { path, .. } => Some(*path),
        _ => None,
    }
}

/// GetParameterNames (§A.3.2.3): parameters and objects under `path`
/// (`""` is the root), only the next level when asked.
pub fn get_parameter_names(
    tree: &Tree,
    path: &str,
    next_level: bool,
) -> Result<Vec<(String, bool)>, Fault> {
    get_parameter_names_within(tree, path, next_level, MAX_RESPONSE_ENTRIES)
}

/// GetParameterNames listing at most `limit` names (9004 beyond).
pub fn get_parameter_names_within(
    tree: &Tree,
    path: &str,
    next_level: bool,
    limit: usize,
) -> Result<Vec<(String, bool)>, Fault> {
    let resolver = Resolver::global();
    let all = concrete(tree);
    let is_object = path.is_empty() || path.ends_with('.');
    if !is_object {
        return match all.iter().find(|c| c.name == path) {
            // NextLevel true on a parameter is invalid (§A.3.2.3).
            Some(_) if next_level => Err(fault(
                FaultCode::InvalidArguments,
                "NextLevel true on a parameter",
            )),
            Some(c) => Ok(vec![(c.name.clone(), c.map.writable)]),
            None => Err(fault(FaultCode::InvalidParameterName, path)),
        };
    }
    let selected: Vec<&Concrete> = select(&all, path)?.into_iter().map(|i| &all[i]).collect();
    let mut names: Vec<(String, bool)> = Vec::new();
    let mut objects = BTreeSet::new();
    // Objects that exist whatever the instances, each object on the way
    // to a table included (Device.SoftwareModules. above its
    // DeploymentUnit. table): a level-by-level walk, as GenieACS makes,
    // must find every table, and tables with no instance yet are still
    // listed, so an ACS can find where to AddObject (§A.3.2.3).
    for map in crate::mapping::parameters() {
        let fixed = match map.path.find('{') {
            Some(at) => &map.path[..at],
            None => map.path,
        };
        let mut end = 0;
        while let Some(offset) = fixed[end..].find('.') {
            end += offset + 1;
            if fixed[..end].starts_with(path) {
                objects.insert(fixed[..end].to_owned());
            }
        }
    }
    objects.extend(
        concrete::row_tables(&all)
            .into_iter()
            .filter(|table| table.starts_with(path)),
    );
    for c in &selected {
        let mut end = path.len();
        while let Some(offset) = c.name[end..].find('.') {
            end += offset + 1;
            objects.insert(c.name[..end].to_owned());
        }
    }
    // §A.3.2.3: with NextLevel false the object named by ParameterPath is
    // itself in the list; with NextLevel true only what is below it.
    if next_level || path.is_empty() {
        objects.remove(path);
    } else {
        objects.insert(path.to_owned());
    }
    // A table the ACS may add to, an instance it may delete: not the
    // host's reported facts (links, routes), which it only reads.
    let writable_object = |name: &str| match resolver.object(name) {
        Some(ObjectPath::Table(object) | ObjectPath::Instance(object, _)) => {
            !tree.is_reported(object)
        }
        // A `{j}` table: where its columns may be written.
        Some(
            ObjectPath::Rows {
                object, columns, ..
            }
            | ObjectPath::Row {
                object, columns, ..
            },
        ) => columns.iter().any(|&column| {
            resolver
                .parameters_for(object, column)
                .iter()
                .any(|map| map.writable)
        }),
        _ => false,
    };
    let depth = |name: &str| name.trim_end_matches('.').split('.').count();
    let base = if path.is_empty() { 0 } else { depth(path) };
    for object in objects {
        if !next_level || depth(&object) == base + 1 {
            let writable = writable_object(&object);
            names.push((object, writable));
        }
    }
    for c in selected {
        if !next_level || depth(&c.name) == base + 1 {
            names.push((c.name.clone(), c.map.writable));
        }
    }
    names.sort_by(|a, b| natural(&a.0).cmp(&natural(&b.0)));
    names.dedup_by(|a, b| a.0 == b.0);
    if names.len() > limit {
        return Err(too_many(limit));
    }
    Ok(names)
}

/// SetParameterAttributes (§A.3.2.4): every change is checked before any
/// is applied.
pub fn set_parameter_attributes(tree: &mut Tree, changes: &[AttributeChange]) -> Result<(), Fault> {
    set_parameter_attributes_by(tree, Origin::Acs, changes)
}

/// SetParameterAttributes on behalf of `origin`.
pub fn set_parameter_attributes_by(
    tree: &mut Tree,
    origin: Origin,
    changes: &[AttributeChange],
) -> Result<(), Fault> {
    let all = concrete(tree);
    let on_demand = tree.tables_read_on_demand();
    // One entry per parameter, later changes overriding earlier ones
    // (§A.3.2.4: applied in order), so a request naming the whole tree
    // many times costs one pass and one save.
    let mut plan: std::collections::BTreeMap<Path, (Option<Notification>, Option<Vec<String>>)> =
        std::collections::BTreeMap::new();
    for change in changes {
        let selected: Vec<&Concrete> = select(&all, &change.name)?
            .into_iter()
            .map(|i| &all[i])
            .collect();
        let level = match change.notification {
            None => None,
            Some(level) => Some(Notification::from_level(level).ok_or_else(|| {
                // Levels 3–6 are lightweight notifications (CWMP 1.4 Annex
                // K), not served.
                fault(
                    FaultCode::NotificationRequestRejected,
                    format!("notification {level}"),
                )
            })?),
        };
        for c in selected {
            // A table's NumberOfEntries has no change events: named, a
            // notification is refused (canDeny); under a partial path it
            // is passed over.
            if c.count.is_some() {
                if change.name == c.name && level.is_some_and(|l| l != Notification::Off) {
                    return Err(fault(FaultCode::NotificationRequestRejected, &c.name));
                }
                continue;
            }
            // A table read on demand (the processes) changes at every
            // read and says nothing between: no notification of it. TR-181
            // marks most of its parameters activeNotify "normal"; with no
            // change events to report, the agent refuses rather than
            // accept a notification that could never fire.
            if on_demand.contains(&c.path.object_id()) {
                if change.name == c.name && level.is_some_and(|l| l != Notification::Off) {
                    return Err(fault(FaultCode::NotificationRequestRejected, &c.name));
                }
                continue;
            }
            let live = tree
                .instance(
                    c.path.object_id(),
                    c.path.instance_id().unwrap_or(InstanceId(0)),
                )
                .ok()
                .and_then(|i| i.slot(c.path.resource_id()?).cloned())
                .is_some_and(|slot| matches!(slot, dm_core::Slot::Live));
            // A value read from the host at every read (uptime, free
            // memory) has no change events to report: active notification
            // is refused, as TR-181's canDeny allows, when asked
            // explicitly on that parameter.
            if live && level == Some(Notification::Active) && change.name == c.name {
                return Err(fault(FaultCode::NotificationRequestRejected, &c.name));
            }
            if live && level == Some(Notification::Active) {
                continue;
            }
            // A write-only parameter (a password) has no value to report:
            // a partial path passes over it; named, it is refused below.
            if write_only(tree, c) && change.name != c.name {
                continue;
            }
            if c.map.active_notify == ActiveNotify::ForceEnabled
                && level.is_some_and(|l| l != Notification::Active)
            {
                // forceEnabled: always active; the request is accepted but
                // changes nothing (TR-181 activeNotify).
                continue;
            }
            let entry = plan.entry(c.path.without_index()).or_default();
            if level.is_some() {
                entry.0 = level;
            }
            if change.access_list.is_some() {
                entry.1.clone_from(&change.access_list);
            }
        }
    }
    let plan: Vec<_> = plan
        .into_iter()
        .map(|(path, (level, list))| (path, level, list))
        .collect();
    tree.set_attributes(origin, &plan)
        .map_err(|e| fault(fault_code(&e), e))
}

/// GetParameterAttributes (§A.3.2.5).
pub fn get_parameter_attributes(
    tree: &Tree,
    names: &[String],
) -> Result<Vec<(String, u8, Vec<String>)>, Fault> {
    get_parameter_attributes_within(tree, names, MAX_RESPONSE_ENTRIES)
}

/// GetParameterAttributes listing at most `limit` parameters (9004
/// beyond); each parameter once, as for GetParameterValues.
pub fn get_parameter_attributes_within(
    tree: &Tree,
    names: &[String],
    limit: usize,
) -> Result<Vec<(String, u8, Vec<String>)>, Fault> {
    let all = concrete(tree);
    let attributes = tree.attributes();
    Ok(select_each_once(&all, names, limit)?
        .into_iter()
        .map(|c| {
            let path = c.path.without_index();
            let level = if c.map.active_notify == ActiveNotify::ForceEnabled {
                Notification::Active
            } else {
                attributes.notification(&path)
            };
            (
                c.name.clone(),
                level.level(),
                attributes.access_list(&path).to_vec(),
            )
        })
        .collect())
}

/// AddObject (§A.3.2.6): returns the new instance number and the Status.
pub fn add_object(tree: &mut Tree, object: &str, parameter_key: &str) -> Result<(u32, u8), Fault> {
    add_object_by(tree, Origin::Acs, object, Some(parameter_key))
}

/// AddObject on behalf of `origin`.
pub fn add_object_by(
    tree: &mut Tree,
    origin: Origin,
    object: &str,
    parameter_key: Option<&str>,
) -> Result<(u32, u8), Fault> {
    let written = add_object_prepared(tree, origin, object, parameter_key);
    match blocking(tree, written)? {
        WriteResult::Added { instance, status } => Ok((instance, status)),
        WriteResult::Status(_) => Err(fault(FaultCode::InternalError, "no instance created")),
    }
}

/// AddObject prepared (see [`set_parameter_values_prepared`]).
pub fn add_object_prepared(
    tree: &mut Tree,
    origin: Origin,
    object: &str,
    parameter_key: Option<&str>,
) -> Written {
    let mut tx = match Resolver::global().object(object) {
        Some(ObjectPath::Table(core)) => {
            let mut tx = tree.begin(origin);
            tx.create(core, None);
            tx
        }
        Some(ObjectPath::Rows {
            object: core,
            instance,
            columns,
        }) if rows_writable(core, &columns) => {
            return add_row(
                tree,
                origin,
                object,
                (core, instance, &columns),
                parameter_key,
            );
        }
        _ => {
            return Written::Done(Err(fault(
                FaultCode::InvalidParameterName,
                format!("{object} is not a table"),
            )));
        }
    };
    if let Some(parameter_key) = parameter_key {
        tx.set_by(
            Origin::Agent,
            parameter_key_path(),
            Value::String(parameter_key.to_owned()),
        );
    }
    finish(tx.prepare(), Kind::Add)
}

/// AddObject with the new instance's parameters set in the same
/// transaction (USP's Add, TR-369 §Add: the instance is made with its
/// values or not at all). `parameters` are named relative to the new
/// instance (`Alias`, `Stats.X`); with none, as [`add_object_prepared`].
/// A fault naming parameters (9003) names them in full.
pub fn add_object_with_prepared(
    tree: &mut Tree,
    origin: Origin,
    object: &str,
    parameters: &[(String, String)],
) -> Written {
    if parameters.is_empty() {
        return add_object_prepared(tree, origin, object, None);
    }
    let Some(ObjectPath::Table(core)) = Resolver::global().object(object) else {
        return Written::Done(Err(fault(
            FaultCode::InvalidParameterName,
            format!("{object} is not a table whose rows are given values when made"),
        )));
    };
    let instance = match tree.free_instance(core) {
        Ok(instance) => instance,
        Err(e) => return Written::Done(Err(fault(fault_code(&e), e))),
    };
    let named: Vec<ParameterValueIn> = parameters
        .iter()
        .map(|(name, value)| ParameterValueIn {
            name: format!("{object}{}.{name}", instance.0),
            value: value.clone(),
            xsd_type: None,
        })
        .collect();
    match stage_values(tree, origin, &named, None, false) {
        Err(fault) => Written::Done(Err(fault)),
        Ok((mut staging, _)) => {
            staging.create = vec![(core, instance)];
            finish(staging.prepare(tree), Kind::Add)
        }
    }
}

/// DeleteObject of several instances in one transaction (USP's Delete
/// without allow_partial: all or none). Rows of `{j}` tables are deleted
/// one at a time ([`delete_object_prepared`]).
pub fn delete_objects_prepared(tree: &mut Tree, origin: Origin, objects: &[String]) -> Written {
    if let [one] = objects {
        return delete_object_prepared(tree, origin, one, None);
    }
    let mut instances = Vec::with_capacity(objects.len());
    for object in objects {
        match Resolver::global().object(object) {
            Some(ObjectPath::Instance(core, instance)) => instances.push((core, instance)),
            _ => {
                return Written::Done(Err(fault(
                    FaultCode::InvalidParameterName,
                    format!("{object} is not an instance deleted with others"),
                )));
            }
        }
    }
    let mut tx = tree.begin(origin);
    for (core, instance) in instances {
        tx.delete(core, instance);
    }
    finish(tx.prepare(), Kind::Delete)
}

/// A column of a `{j}` table: its resource and its values by index.
type Column = (dm_core::ResourceId, BTreeMap<u16, Value>);

/// The values of a `{j}` table's columns in one instance, each column's
/// by index, read as the agent (the rows are rewritten whole, so a
/// column the client could not read must not come back empty): 9005 when
/// the instance does not exist, 9002 when a column cannot be read now.
fn rows_of(
    tree: &Tree,
    name: &str,
    object: dm_core::ObjectId,
    instance: dm_core::InstanceId,
    columns: &[dm_core::ResourceId],
) -> Result<Vec<Column>, Fault> {
    if tree.instance(object, instance).is_err() {
        return Err(fault(
            FaultCode::InvalidParameterName,
            format!("{name}: no such instance"),
        ));
    }
    columns
        .iter()
        .map(
            |&column| match tree.read(Origin::Agent, &Path::resource(object, instance, column)) {
                Ok(ResourceValue::Multiple(values)) => Ok((column, values)),
                Ok(ResourceValue::Single(_)) => Err(fault(
                    FaultCode::InternalError,
                    format!("{name}: a column holds one value"),
                )),
                Err(e) => Err(fault(FaultCode::InternalError, format!("{name}: {e}"))),
            },
        )
        .collect()
}

/// Whether a client may add and delete rows of a `{j}` table: one of its
/// columns is writable (a diagnostic test's result rows, an interface's
/// addresses are not: AddObject on them is 9005, as on any object that
/// is no table of the ACS's).
fn rows_writable(object: dm_core::ObjectId, columns: &[dm_core::ResourceId]) -> bool {
    let resolver = Resolver::global();
    columns.iter().any(|&column| {
        resolver
            .parameters_for(object, column)
            .iter()
            .any(|map| map.writable)
    })
}

/// AddObject on a `{j}` table (TR-069 §A.3.2.6): a new row, numbered
/// after the highest ever given in the table (kept in the tree's durable
/// state, so that a deleted row's number is not given again), each
/// column at its type's zero value (an empty string, false, 0) as
/// TR-181's defaults for these tables are.
fn add_row(
    tree: &mut Tree,
    origin: Origin,
    name: &str,
    (object, instance, columns): (
        dm_core::ObjectId,
        dm_core::InstanceId,
        &[dm_core::ResourceId],
    ),
    parameter_key: Option<&str>,
) -> Written {
    let rows = match rows_of(tree, name, object, instance, columns) {
        Ok(rows) => rows,
        Err(fault) => return Written::Done(Err(fault)),
    };
    let key = format!(
        "rows:{}:{}:{}",
        object.0,
        instance.0,
        columns.first().map_or(0, |c| c.0)
    );
    let given = tree
        .pending_state(&key)
        .and_then(|n| n.parse::<u16>().ok())
        .unwrap_or(0);
    let next = rows
        .iter()
        .filter_map(|(_, values)| values.keys().next_back())
        .max()
        .map_or(Some(0), |last| last.checked_add(1))
        .map(|n| n.max(given));
    // Index u16::MAX would be number 65536, past what a row may have.
    let Some(index) = next.filter(|i| *i < u16::MAX) else {
        return Written::Done(Err(fault(
            FaultCode::ResourcesExceeded,
            format!("{name}: no row number left"),
        )));
    };
    if let Err(e) = tree.set_pending_state(&key, Some((index + 1).to_string())) {
        return Written::Done(Err(fault(FaultCode::InternalError, e)));
    }
    let schema = tree.schema(object);
    let mut tx = tree.begin(origin);
    for (column, mut values) in rows {
        let zero = schema
            .and_then(|s| s.resource(column))
            .and_then(|r| Value::default_for(r.value_type))
            .unwrap_or(Value::String(String::new()));
        values.insert(index, zero);
        tx.set_multiple(Path::resource(object, instance, column), values);
    }
    if let Some(parameter_key) = parameter_key {
        tx.set_by(
            Origin::Agent,
            parameter_key_path(),
            Value::String(parameter_key.to_owned()),
        );
    }
    finish(tx.prepare(), Kind::AddRow(u32::from(index) + 1))
}

/// A prepared write RPC run to its end by a caller that may block.
fn blocking(tree: &mut Tree, written: Written) -> Result<WriteResult, Fault> {
    match written {
        Written::Done(result) => result,
        Written::Host(mut host) => {
            let outcome = host.take_work().run();
            let (result, undo) = host.complete(tree, outcome);
            if let Some(undo) = undo {
                undo.undo();
            }
            result
        }
    }
}

/// DeleteObject (§A.3.2.7): returns the Status.
pub fn delete_object(tree: &mut Tree, object: &str, parameter_key: &str) -> Result<u8, Fault> {
    delete_object_by(tree, Origin::Acs, object, Some(parameter_key))
}

/// DeleteObject on behalf of `origin`.
pub fn delete_object_by(
    tree: &mut Tree,
    origin: Origin,
    object: &str,
    parameter_key: Option<&str>,
) -> Result<u8, Fault> {
    let written = delete_object_prepared(tree, origin, object, parameter_key);
    blocking(tree, written).map(WriteResult::status)
}

/// DeleteObject prepared (see [`set_parameter_values_prepared`]).
pub fn delete_object_prepared(
    tree: &mut Tree,
    origin: Origin,
    object: &str,
    parameter_key: Option<&str>,
) -> Written {
    let mut tx = match Resolver::global().object(object) {
        Some(ObjectPath::Instance(core, instance)) => {
            let mut tx = tree.begin(origin);
            tx.delete(core, instance);
            tx
        }
        Some(ObjectPath::Row {
            object: core,
            instance,
            columns,
            index,
        }) if rows_writable(core, &columns) => {
            let rows = match rows_of(tree, object, core, instance, &columns) {
                Ok(rows) => rows,
                Err(fault) => return Written::Done(Err(fault)),
            };
            if !rows.iter().any(|(_, values)| values.contains_key(&index)) {
                return Written::Done(Err(fault(
                    FaultCode::InvalidParameterName,
                    format!("{object}: no such instance"),
                )));
            }
            let mut tx = tree.begin(origin);
            for (column, mut values) in rows {
                values.remove(&index);
                tx.set_multiple(Path::resource(core, instance, column), values);
            }
            tx
        }
        _ => {
            return Written::Done(Err(fault(
                FaultCode::InvalidParameterName,
                format!("{object} is not an instance"),
            )));
        }
    };
    if let Some(parameter_key) = parameter_key {
        tx.set_by(
            Origin::Agent,
            parameter_key_path(),
            Value::String(parameter_key.to_owned()),
        );
    }
    finish(tx.prepare(), Kind::Delete)
}
