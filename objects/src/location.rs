//! Location (LwM2M /6) from the modem's GNSS fix. The instance exists
//! while the platform has a fix and goes when it loses it; it is a fact
//! the platform reports, never saved.

use std::time::SystemTime;

use dm_core::catalog::location::{self, *};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceValue, Tree,
    Value,
};
use dm_platform::Network;

use crate::{layout, stage_fact};

struct Location;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(Location))
}

impl ObjectHandler for Location {
    fn schema(&self) -> &'static ObjectSchema {
        &location::SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(&SCHEMA, &[ALTITUDE]))
    }
}

/// Makes /6 follow the fix. The Timestamp is when the agent saw the
/// coordinates change (ModemManager gives the fix's time of day only).
pub fn sync(tree: &mut Tree, network: &dyn Network, now: SystemTime, warnings: &mut Vec<String>) {
    let fix = network.radio().location;
    let held = tree
        .instances(ID)
        .unwrap_or_default()
        .contains(&InstanceId(0));
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let value = |tree: &Tree, r| match tree.read(Origin::Agent, &at(r)) {
        Ok(ResourceValue::Single(v)) => Some(v),
        _ => None,
    };
    let Some(fix) = fix else {
        if held {
            let mut tx = tree.begin(Origin::Platform);
            tx.delete(ID, InstanceId(0));
            if let Err(e) = tx.commit() {
                warnings.push(e.to_string());
            }
        }
        return;
    };
    let wanted = [
        (LATITUDE, Some(Value::Float(fix.latitude))),
        (LONGITUDE, Some(Value::Float(fix.longitude))),
        (ALTITUDE, fix.altitude.map(Value::Float)),
    ];
    if held
        && wanted
            .iter()
            .all(|(r, v)| v.is_none() || value(tree, *r) == *v)
    {
        return;
    }
    let mut tx = tree.begin(Origin::Platform);
    if !held {
        tx.create(ID, Some(InstanceId(0)));
    }
    for (resource, v) in wanted {
        if let Some(v) = v {
            stage_fact(&mut tx, &SCHEMA, at(resource), v, warnings);
        }
    }
    stage_fact(
        &mut tx,
        &SCHEMA,
        at(TIMESTAMP),
        Value::DateTime(dm_core::unix_seconds(now)),
        warnings,
    );
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
