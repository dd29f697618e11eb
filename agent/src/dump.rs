//! `dmagent dump`: the whole tree as TR-181 paths and as LwM2M paths.
//!
//! This is a diagnostic view through both adapters' mappings. Values are
//! rendered in each protocol's lexical form; secured and write-only values
//! are never printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;

use dm_core::{Origin, Path, ResourceValue, Tree, Value};
use dm_cwmp::mapping::{Resolver, Syntax};
use dm_lwm2m::mapping as lwm2m;

/// Which views to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    Tr181,
    Lwm2m,
    Both,
}

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
            let mut emit = |index: Option<u16>, value: &Value| {
                let text = if parameter.secured {
                    String::new()
                } else {
                    tr181_value(value, parameter.syntax)
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
    out
}

fn lwm2m_paths(tree: &Tree) -> Vec<(String, String)> {
    let mut out = Vec::new();
    visit(tree, &mut |path, value| {
        let Some(lwm2m_path) = lwm2m::from_core(&path) else {
            return;
        };
        match &value {
            ResourceValue::Single(v) => out.push((lwm2m_path.to_string(), lwm2m_value(v))),
            ResourceValue::Multiple(values) => {
                for (index, v) in values {
                    out.push((format!("{lwm2m_path}/{index}"), lwm2m_value(v)));
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

/// TR-069 lexical forms (TR-069 Table 4 / XML Schema datatypes).
fn tr181_value(value: &Value, syntax: Syntax) -> String {
    match (value, syntax) {
        (Value::DateTime(t), _) => format_datetime(*t),
        (Value::Opaque(bytes), Syntax::HexBinary) => {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        (Value::Opaque(bytes), _) => base64::engine::general_purpose::STANDARD.encode(bytes),
        (other, _) => other.to_string(),
    }
}

/// LwM2M text forms (Core §7.3.2 text/plain): Time as Unix seconds,
/// opaque as base64, object links as `object:instance`.
fn lwm2m_value(value: &Value) -> String {
    match value {
        Value::DateTime(t) => t.to_string(),
        Value::Opaque(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
        other => other.to_string(),
    }
}

/// `dateTime` in UTC; TR-106 §3.2.1 spells the unknown time
/// `0001-01-01T00:00:00Z`.
fn format_datetime(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => "0001-01-01T00:00:00Z".to_owned(),
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
    fn datetimes() {
        assert_eq!(format_datetime(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_datetime(-62_135_596_800), "0001-01-01T00:00:00Z");
    }

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
