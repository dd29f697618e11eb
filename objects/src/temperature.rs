//! TR-181 `Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}.`:
//! the host's thermal zones and hwmon inputs, numbered in the platform's
//! order. The value is read at each read (sysfs); TR-181 wants the last
//! good reading, so a failed read answers the previous one, or -274
//! ("no good reading yet") with the Unknown Time as LastUpdate.
//!
//! A declared object bound to this table takes its place in TR-181 (the
//! CWMP mapping's replaceable tables): an integrator's own sensors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dm_core::catalog::temperature_sensor::*;
use dm_core::facts::stage_fact;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Tree, Value, lock,
};
use dm_platform::Host;

use crate::ethernet::refuse_clients;
use crate::management::UNKNOWN_TIME;

struct Sensors {
    host: Arc<dyn Host>,
    /// Each sensor's last good reading (°C) and when it was taken.
    last: Mutex<HashMap<u16, (i64, i64)>>,
}

pub fn register(tree: &mut Tree, host: Arc<dyn Host>) -> Result<(), Error> {
    tree.register(Box::new(Sensors {
        host,
        last: Mutex::new(HashMap::new()),
    }))
}

impl Sensors {
    fn reading(&self, instance: InstanceId) -> (i64, i64) {
        let n = usize::from(instance.0).saturating_sub(1);
        let mut last = lock(&self.last);
        if let Ok(celsius) = self.host.temperature(n)
            && celsius.is_finite()
        {
            let reading = (
                celsius.round().max(-274.0) as i64,
                dm_core::unix_seconds(self.host.now()),
            );
            last.insert(instance.0, reading);
        }
        last.get(&instance.0)
            .copied()
            .unwrap_or((-274, UNKNOWN_TIME))
    }
}

impl ObjectHandler for Sensors {
    fn schema(&self) -> &'static ObjectSchema {
        &SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(crate::ethernet::facts_row(&SCHEMA, &[VALUE, LAST_UPDATE]))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let (value, at) = self.reading(instance);
        Ok(ResourceValue::Single(match resource {
            VALUE => Value::Integer(value),
            LAST_UPDATE => Value::DateTime(at),
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        }))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ID, instance))
    }
}

/// One row per sensor the host has.
pub fn sync(tree: &mut Tree, host: &dyn Host, warnings: &mut Vec<String>) {
    let sensors = host.temperature_sensors();
    let held = tree.instances(ID).unwrap_or_default();
    let wanted: Vec<InstanceId> = (1..=sensors.len().min(usize::from(u16::MAX - 1)))
        .map(|n| InstanceId(n as u16))
        .collect();
    if held == wanted {
        // Names and states do not change: nothing to write.
        return;
    }
    let mut tx = tree.begin(Origin::Platform);
    for gone in held.iter().filter(|i| !wanted.contains(i)) {
        tx.delete(ID, *gone);
    }
    for (instance, name) in wanted.iter().zip(&sensors) {
        if !held.contains(instance) {
            tx.create(ID, Some(*instance));
        }
        let at = |r| Path::resource(ID, *instance, r);
        stage_fact(&mut tx, &SCHEMA, at(ENABLE), Value::Boolean(true), warnings);
        stage_fact(
            &mut tx,
            &SCHEMA,
            at(STATUS),
            Value::String("Enabled".into()),
            warnings,
        );
        stage_fact(
            &mut tx,
            &SCHEMA,
            at(NAME),
            Value::String(name.clone()),
            warnings,
        );
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
