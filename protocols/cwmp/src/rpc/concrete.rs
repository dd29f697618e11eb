//! The tree as CWMP sees it: every concrete parameter (a mapped resource
//! of an instance, or a table's NumberOfEntries), and the selection a
//! request's names make of them.

use super::*;

/// One concrete parameter of the tree: its name and where its value is.
/// Values are read only for the parameters a request selects
/// ([`Concrete::value`]), so listing names (GetParameterNames, attributes)
/// reads nothing from the host, and an Inform reads only what it reports.
pub(super) struct Concrete {
    pub(super) name: String,
    pub(super) map: &'static ParameterMap,
    pub(super) path: Path,
    /// A table's `NumberOfEntries` parameter: its value, counted from the
    /// table's instances (`path` and `map` then stand for no resource).
    pub(super) count: Option<u32>,
}

/// What a `NumberOfEntries` parameter is: a read-only unsignedInt bound to
/// no resource.
static COUNT: ParameterMap = ParameterMap {
    path: "",
    object: dm_core::ObjectId(0),
    resource: dm_core::ResourceId(0),
    syntax: crate::mapping::Syntax::UnsignedInt,
    list: false,
    writable: false,
    secured: false,
    forced_inform: false,
    active_notify: ActiveNotify::Normal,
};

impl Concrete {
    /// The value as `reader` reads it: a value computed when read
    /// ("since the last read" log lines, CPU usage) is read for that
    /// reader's own state, not another protocol's; values fetched from
    /// the host are those fetched for it.
    pub(super) fn read(&self, tree: &Tree, reader: Origin) -> Result<Option<Value>, Error> {
        if let Some(count) = self.count {
            return Ok(Some(Value::Unsigned(u64::from(count))));
        }
        Ok(match tree.read(reader, &self.path)? {
            ResourceValue::Single(v) => Some(v),
            ResourceValue::Multiple(_) => None,
        })
    }
}

/// Every table's `NumberOfEntries` parameter and its value, as
/// GetParameterValues answers them.
pub fn entry_counts(tree: &Tree) -> Vec<(String, u32)> {
    concrete(tree)
        .into_iter()
        .filter_map(|c| Some((c.name, c.count?)))
        .collect()
}

/// Each table's `NumberOfEntries` parameter (TR-106 §3.4.2: the table's
/// name followed by `NumberOfEntries`, in the object above it, as every
/// TR-181 table's `numEntriesParameter` is named), counted from the
/// instances `parameters` name; a top-level table with none counts 0.
pub(super) fn counts(parameters: &[Concrete]) -> Vec<Concrete> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut tables: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    // Tables whose place is known whatever the instances: each
    // placeholder (or literal instance number) of a template with no
    // placeholder before it.
    for map in crate::mapping::parameters() {
        let mut start = 0;
        for segment in map.path.split('.') {
            if segment.starts_with('{') || segment.parse::<u32>().is_ok() {
                let table = &map.path[..start];
                if table.contains('{') {
                    break;
                }
                let instances = tables.entry(table.to_owned()).or_default();
                // A literal instance (Router.1.) is there whatever the
                // tree holds: GetParameterNames lists it.
                if let Ok(n) = segment.parse::<u32>() {
                    instances.insert(n);
                }
            }
            start += segment.len() + 1;
        }
    }
    for c in parameters {
        let mut start = 0;
        for segment in c.name.split('.') {
            if let Ok(n) = segment.parse::<u32>() {
                tables
                    .entry(c.name[..start].to_owned())
                    .or_default()
                    .insert(n);
            }
            start += segment.len() + 1;
        }
    }
    for table in row_tables(parameters) {
        tables.entry(table).or_default();
    }
    tables
        .into_iter()
        .filter_map(|(table, instances)| {
            let (parent, name) = table.trim_end_matches('.').rsplit_once('.')?;
            Some(Concrete {
                name: format!("{parent}.{name}NumberOfEntries"),
                map: &COUNT,
                path: Path::object(dm_core::ObjectId(0)),
                count: Some(u32::try_from(instances.len()).unwrap_or(u32::MAX)),
            })
        })
        .collect()
}

/// The `{j}` tables of every instance `parameters` name
/// (`Device.BulkData.Profile.1.Parameter.`), the empty ones included: a
/// profile with no Parameter row yet still has the table to add one to.
pub(super) fn row_tables(parameters: &[Concrete]) -> BTreeSet<String> {
    use std::collections::BTreeMap;
    // (the table's name up to `{i}`, what follows the instance up to `{j}`)
    let templates: Vec<(dm_core::ObjectId, &str, &str)> = crate::mapping::parameters()
        .filter_map(|map| {
            let (table, rest) = map.path.split_once(".{i}.")?;
            let (sub, _) = rest.split_once("{j}.")?;
            (!sub.contains('{')).then_some((map.object, table, sub))
        })
        .collect();
    let mut instances: BTreeMap<dm_core::ObjectId, BTreeSet<u16>> = BTreeMap::new();
    for c in parameters {
        if templates
            .iter()
            .any(|(object, _, _)| *object == c.map.object)
            && let Some(instance) = c.path.instance_id()
        {
            instances
                .entry(c.map.object)
                .or_default()
                .insert(instance.0);
        }
    }
    let mut out = BTreeSet::new();
    for (object, table, sub) in templates {
        for instance in instances.get(&object).into_iter().flatten() {
            out.insert(format!("{table}.{instance}.{sub}"));
        }
    }
    out
}

/// Every mapped parameter the tree holds now, in natural path order.
pub(super) fn concrete(tree: &Tree) -> Vec<Concrete> {
    concrete_of(tree, &|_| true)
}

/// [`concrete`] for the objects `wanted` takes only.
pub(super) fn concrete_of(
    tree: &Tree,
    wanted: &dyn Fn(dm_core::ObjectId) -> bool,
) -> Vec<Concrete> {
    let resolver = Resolver::global();
    let mut out = Vec::new();
    for schema in tree.objects().filter(|s| wanted(s.id)).collect::<Vec<_>>() {
        for instance in tree.instances(schema.id).unwrap_or_default() {
            let Ok(held) = tree.instance(schema.id, instance) else {
                continue;
            };
            for resource in held.resources() {
                let path = Path::resource(schema.id, instance, resource);
                let maps = resolver.parameters_for(schema.id, resource);
                if maps.is_empty() {
                    continue;
                }
                // The indices of a multiple resource are its parameters:
                // stored ones are known without a read; a computed one is
                // read (as the ACS).
                let indices = match held.slot(resource) {
                    Some(dm_core::Slot::Executable) | None => continue,
                    Some(dm_core::Slot::Stored(ResourceValue::Multiple(values))) => {
                        Some(values.keys().copied().collect::<Vec<_>>())
                    }
                    Some(dm_core::Slot::Stored(ResourceValue::Single(_))) => None,
                    Some(dm_core::Slot::Live) => match schema.resource(resource) {
                        Some(r) if r.multiple => match tree.read(Origin::Acs, &path) {
                            Ok(ResourceValue::Multiple(values)) => {
                                Some(values.keys().copied().collect())
                            }
                            _ => continue,
                        },
                        _ => None,
                    },
                };
                for map in maps {
                    // TR-181 tables number from 1 (§A.2.2.1): instance 0
                    // of a declared object is LwM2M's only.
                    if map.has_instance() && instance.0 == 0 {
                        continue;
                    }
                    match &indices {
                        None => out.push(Concrete {
                            name: map.render(instance, None),
                            map,
                            path,
                            count: None,
                        }),
                        Some(indices) => {
                            for index in indices {
                                out.push(Concrete {
                                    name: map.render(instance, Some(*index)),
                                    map,
                                    path: Path::resource_instance(
                                        schema.id, instance, resource, *index,
                                    ),
                                    count: None,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    let counts = counts(&out);
    out.extend(counts);
    sort_natural(out)
}

/// `parameters` in natural path order, each name's key made once (not
/// once per comparison: a whole tree's sort made 40,000 of them).
fn sort_natural(parameters: Vec<Concrete>) -> Vec<Concrete> {
    let order: Vec<usize> = {
        let mut keyed: Vec<_> = parameters
            .iter()
            .enumerate()
            .map(|(at, c)| (natural(&c.name), at))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, at)| at).collect()
    };
    let mut slots: Vec<Option<Concrete>> = parameters.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|at| slots.get_mut(at).and_then(Option::take))
        .collect()
}

/// Orders `X.10.Y` after `X.9.Y`, and an object (`X.`, whose last
/// segment is empty) before what is in it.
pub(super) fn natural(path: &str) -> Vec<(u8, u32, &str)> {
    path.split('.')
        .map(|s| match s.parse::<u32>() {
            _ if s.is_empty() => (0, 0, ""),
            Ok(n) => (1, n, ""),
            Err(_) => (2, 0, s),
        })
        .collect()
}

/// The most entries one response lists (GetParameterValues,
/// GetParameterNames, GetParameterAttributes). With duplicates folded a
/// response holds each parameter at most once, so only a tree larger than
/// this reaches it; beyond it the ACS gets 9004 and asks for less.
pub const MAX_RESPONSE_ENTRIES: usize = 65_536;

/// The parameters `names` select, each once, in the order first named:
/// a request naming `Device.` 100,000 times (2.4 MB, under the body cap)
/// made a 1 GB response before. More than `limit` is fault 9004.
pub(super) fn select_each_once<'c>(
    all: &'c [Concrete],
    names: &[String],
    limit: usize,
) -> Result<Vec<&'c Concrete>, Fault> {
    let mut asked = std::collections::HashSet::new();
    let mut taken = vec![false; all.len()];
    let mut out = Vec::new();
    for name in names {
        if !asked.insert(name.as_str()) {
            continue;
        }
        for i in select(all, name)? {
            if !std::mem::replace(&mut taken[i], true) {
                out.push(&all[i]);
            }
        }
        if out.len() > limit {
            return Err(too_many(limit));
        }
    }
    Ok(out)
}

pub(super) fn too_many(limit: usize) -> Fault {
    fault(
        FaultCode::ResourcesExceeded,
        format!("the response would list more than {limit} parameters; ask for less"),
    )
}

/// The parameters a name selects, as indices into `all`: one parameter,
/// or every parameter under a partial path (ending in `.`; `""` is the
/// whole tree). Unknown names are fault 9005.
pub(super) fn select(all: &[Concrete], name: &str) -> Result<Vec<usize>, Fault> {
    if name.is_empty() || name.ends_with('.') {
        if Resolver::global().object(name).is_none() {
            return Err(fault(FaultCode::InvalidParameterName, name));
        }
        let selected: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.starts_with(name))
            .map(|(i, _)| i)
            .collect();
        // A path with an instance number names that instance: it must
        // exist (TR-069 §A.3.2.2).
        if selected.is_empty()
            && matches!(
                Resolver::global().object(name),
                Some(ObjectPath::Instance(..) | ObjectPath::Row { .. })
            )
        {
            return Err(fault(FaultCode::InvalidParameterName, name));
        }
        Ok(selected)
    } else {
        match all.iter().position(|c| c.name == name) {
            Some(i) => Ok(vec![i]),
            None => Err(fault(FaultCode::InvalidParameterName, name)),
        }
    }
}

/// A parameter that can be written and not read (a trigger, a secret).
pub(super) fn write_only(tree: &Tree, c: &Concrete) -> bool {
    c.path
        .resource_id()
        .and_then(|r| tree.schema(c.path.object_id())?.resource(r))
        .is_some_and(|r| !r.access.readable())
}
