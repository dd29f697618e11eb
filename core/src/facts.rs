//! Tables of facts the platform reports (routes, name servers, processes):
//! staged in a transaction as the platform's, each entry keeping its
//! instance number while it exists. Used by the objects' sync and by
//! [`Tree::supply`] for tables read on demand ([`crate::host::HostRows`]).

use crate::{
    InstanceId, ObjectSchema, Origin, Path, ResourceId, ResourceValue, Tree, Value,
    tree::Transaction,
};

/// Stages a platform-reported value if it fits the resource; otherwise
/// notes why and leaves the resource as it was.
pub fn stage_fact(
    tx: &mut Transaction<'_>,
    schema: &ObjectSchema,
    path: Path,
    value: Value,
    warnings: &mut Vec<String>,
) {
    let Some(resource) = path.resource_id().and_then(|r| schema.resource(r)) else {
        warnings.push(format!("{path}: no such resource"));
        return;
    };
    match value.check(resource) {
        Ok(value) => {
            tx.set(path, value);
        }
        Err(e) => warnings.push(format!("{path}: platform value skipped: {e}")),
    }
}

/// The most entries one table of facts holds: a gateway's routes and
/// name servers are a handful; a full routing table is not served (the
/// rest is left out, with a warning).
pub const MAX_FACTS: usize = 1024;

/// The instances of `object` the tree holds, each with its `key`
/// resources' values.
pub fn held_keys(
    tree: &Tree,
    object: crate::ObjectId,
    key: &[ResourceId],
) -> Vec<(InstanceId, Vec<Value>)> {
    tree.instances(object)
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let values = key
                .iter()
                .map(
                    |r| match tree.read(Origin::Agent, &Path::resource(object, i, *r)) {
                        Ok(ResourceValue::Single(v)) => v,
                        _ => Value::String(String::new()),
                    },
                )
                .collect();
            (i, values)
        })
        .collect()
}

/// Makes `schema`'s instances hold `rows`, the platform's facts in its
/// own order. An entry keeps its instance number while it exists (matched
/// by its `key` resources: TR-069 instance numbers follow their entry);
/// new ones take numbers no entry holds, from `first_new` up; the rest are
/// removed. Each row is a list of (resource, value); a multiple resource
/// (a table inside the row, `{j}`) may appear several times, its values
/// in order. Every multiple resource of the schema is the rows': one a
/// row does not name is emptied (a table whose `{j}` column is written
/// by someone else must not be filled here).
pub fn fill(
    held: &[(InstanceId, Vec<Value>)],
    tx: &mut Transaction<'_>,
    schema: &'static ObjectSchema,
    key: &[ResourceId],
    mut rows: Vec<Vec<(ResourceId, Value)>>,
    first_new: u16,
    warnings: &mut Vec<String>,
) {
    if rows.len() > MAX_FACTS {
        warnings.push(format!(
            "{}: {} entries, the first {MAX_FACTS} served",
            schema.name,
            rows.len()
        ));
        rows.truncate(MAX_FACTS);
    }
    let key_of = |row: &[(ResourceId, Value)]| -> Vec<Value> {
        key.iter()
            .map(|k| {
                row.iter()
                    .find(|(r, _)| r == k)
                    .map_or(Value::String(String::new()), |(_, v)| v.clone())
            })
            .collect()
    };
    let mut kept: Vec<InstanceId> = Vec::new();
    let assigned: Vec<Option<InstanceId>> = rows
        .iter()
        .map(|row| {
            let wanted = key_of(row);
            let found = held
                .iter()
                .find(|(i, k)| *k == wanted && !kept.contains(i))
                .map(|(i, _)| *i);
            kept.extend(found);
            found
        })
        .collect();
    for (i, _) in held.iter().filter(|(i, _)| !kept.contains(i)) {
        tx.delete(schema.id, *i);
    }
    let mut next = first_new.max(1);
    for (row, slot) in rows.into_iter().zip(assigned) {
        let instance = match slot {
            Some(instance) => instance,
            None => {
                while held.iter().any(|(i, _)| i.0 == next) || kept.contains(&InstanceId(next)) {
                    // Past the last number: from 1 again.
                    next = if next >= InstanceId::MAX.0 {
                        1
                    } else {
                        next + 1
                    };
                }
                let instance = InstanceId(next);
                kept.push(instance);
                tx.create(schema.id, Some(instance));
                instance
            }
        };
        // A multiple resource (a table inside the row) takes the row's
        // values of it in order, none when it names none; a value its
        // schema refuses is left out.
        let mut columns: std::collections::BTreeMap<
            ResourceId,
            std::collections::BTreeMap<u16, Value>,
        > = schema
            .resources
            .iter()
            .filter(|r| r.multiple)
            .map(|r| (r.id, std::collections::BTreeMap::new()))
            .collect();
        for (resource, value) in row {
            let path = Path::resource(schema.id, instance, resource);
            match (columns.get_mut(&resource), schema.resource(resource)) {
                (Some(column), Some(described)) => match value.check(described) {
                    Ok(value) => {
                        let index = u16::try_from(column.len()).unwrap_or(u16::MAX);
                        column.insert(index, value);
                    }
                    Err(e) => warnings.push(format!("{path}: platform value skipped: {e}")),
                },
                _ => stage_fact(tx, schema, path, value, warnings),
            }
        }
        for (resource, column) in columns {
            tx.set_multiple(Path::resource(schema.id, instance, resource), column);
        }
    }
}
