//! `dmagent dump`: the whole tree as TR-181 paths and as LwM2M paths.
//!
//! This is a diagnostic view through both adapters' mappings. Values are
//! rendered in each protocol's lexical form, by the protocol's own code
//! (what an ACS or a server would read); secured and write-only values
//! are never printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use dm_core::{Origin, Path, ResourceValue, Tree, Value};
use dm_cwmp::mapping::{Resolver, Syntax};
use dm_lwm2m::mapping as lwm2m;

pub use crate::args::View;

pub fn render(tree: &Tree, view: View) -> String {
    let mut out = String::new();
    if view != View::Lwm2m {
        out.push_str("# TR-181 (CWMP)\n");
        for (path, (value, syntax)) in tr181(tree) {
            let _ = writeln!(out, "{path} = {value}  [{}]", syntax.xsd_type());
        }
    }
    if view == View::Both {
        out.push('\n');
    }
    if view != View::Tr181 {
        out.push_str("# LwM2M\n");
        for (path, value) in lwm2m_paths(tree) {
            let _ = writeln!(out, "{path} = {value}");
        }
    }
    out
}

/// Every mapped TR-181 parameter with its value, in natural path order.
fn tr181(tree: &Tree) -> BTreeMap<NaturalKey, (String, Syntax)> {
    let resolver = Resolver::global();
    let mut out = BTreeMap::new();
    visit(tree, &mut |path, value| {
        let (Some(object), Some(resource), Some(instance)) = (
            Some(path.object_id()),
            path.resource_id(),
            path.instance_id(),
        ) else {
            return;
        };
        for parameter in resolver.parameters_for(object, resource) {
            // TR-181 tables number from 1: instance 0 has no TR-181 name.
            if parameter.has_instance() && instance.0 == 0 {
                continue;
            }
            let mut emit = |index: Option<u16>, value: &Value| {
                let text = if parameter.secured {
                    String::new()
                } else {
                    dm_cwmp::values::render(value, parameter.syntax)
                };
                out.insert(
                    NaturalKey(parameter.render(instance, index)),
                    (text, parameter.syntax),
                );
            };
            match &value {
                ResourceValue::Single(v) => emit(None, v),
                ResourceValue::Multiple(values) => {
                    for (index, v) in values {
                        emit(Some(*index), v);
                    }
                }
            }
        }
    });
    // The tables' NumberOfEntries, counted as an ACS reads them.
    for (name, count) in dm_cwmp::rpc::entry_counts(tree) {
        out.insert(NaturalKey(name), (count.to_string(), Syntax::UnsignedInt));
    }
    out
}

fn lwm2m_paths(tree: &Tree) -> Vec<(String, String)> {
    let mut out = Vec::new();
    visit(tree, &mut |path, value| {
        let Some(lwm2m_path) = lwm2m::from_core(&path) else {
            return;
        };
        match &value {
            ResourceValue::Single(v) => {
                out.push((lwm2m_path.to_string(), dm_lwm2m::format::text::encode(v)))
            }
            ResourceValue::Multiple(values) => {
                for (index, v) in values {
                    out.push((
                        format!("{lwm2m_path}/{index}"),
                        dm_lwm2m::format::text::encode(v),
                    ));
                }
            }
        }
    });
    out
}

/// Walks every readable value as the local CLI sees it.
fn visit(tree: &Tree, visit: &mut dyn FnMut(Path, ResourceValue)) {
    for schema in tree.objects().collect::<Vec<_>>() {
        let _ = tree.walk(Origin::Cli, &Path::object(schema.id), &mut |path, value| {
            if let Ok(value) = value {
                visit(path, value);
            }
        });
    }
}

/// Orders `Device.X.10.Y` after `Device.X.9.Y`.
#[derive(PartialEq, Eq)]
struct NaturalKey(String);

impl std::fmt::Display for NaturalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for NaturalKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let segments = |s: &str| {
            s.split('.')
                .map(|seg| match seg.parse::<u32>() {
                    Ok(n) => (0, n, String::new()),
                    Err(_) => (1, 0, seg.to_owned()),
                })
                .collect::<Vec<_>>()
        };
        segments(&self.0).cmp(&segments(&other.0))
    }
}

impl PartialOrd for NaturalKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut keys = [
            NaturalKey("A.10.B".into()),
            NaturalKey("A.9.B".into()),
            NaturalKey("A.B".into()),
        ];
        keys.sort();
        let order: Vec<_> = keys.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(order, ["A.9.B", "A.10.B", "A.B"]);
    }
}
