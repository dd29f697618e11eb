//! Device (LwM2M /3, TR-181 Device.DeviceInfo and Device.Time.CurrentLocalTime).
//!
//! Identity comes from the configuration (see `provision`); uptime, memory,
//! CPU and time are read from the host at every read. The time zone
//! (/3/0/15, read-write in OMA's object 3) is the host's: its time
//! service's, taken in at each sync from the platform's snapshot, or on a
//! host without one the system's, read at start; a server's write of it
//! goes to the time service as `Device.Time.LocalTimeZone`'s does.

use std::collections::BTreeMap;
use std::sync::Arc;

use dm_core::catalog::device::{self, *};
use dm_core::{
    Error, HostWrite, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};
use dm_platform::Host;

use crate::{HostAction, Platform, layout, stage_fact, stored};

/// The TR-181 version the generated mapping comes from.
pub const DATA_MODEL_VERSION: &str = "2.17";

struct Device {
    host: Arc<dyn Host>,
}

pub fn register(tree: &mut Tree, platform: &Platform) -> Result<(), Error> {
    tree.register(Box::new(Device {
        host: Arc::clone(&platform.host),
    }))
}

impl ObjectHandler for Device {
    fn schema(&self) -> &'static ObjectSchema {
        &device::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let mut errors = BTreeMap::new();
        // LwM2M Core E.4: 0 means "no error".
        errors.insert(0, Value::Integer(0));
        Ok(layout(
            &device::SCHEMA,
            &[
                MANUFACTURER,
                MODEL_NUMBER,
                SERIAL_NUMBER,
                FIRMWARE_VERSION,
                FACTORY_RESET,
                RESET_ERROR_CODE,
                DEVICE_TYPE,
                HARDWARE_VERSION,
                SOFTWARE_VERSION,
                MANUFACTURER_OUI,
                PRODUCT_CLASS,
                MODEL_NAME,
                DESCRIPTION,
                PROVISIONING_CODE,
            ],
        )
        .with(ERROR_CODE, Slot::Stored(ResourceValue::Multiple(errors)))
        // Queue mode and UDP; the LwM2M adapter rewrites this when it
        // serves other bindings.
        .with(
            SUPPORTED_BINDING_AND_MODES,
            stored(Value::String("UQ".into())),
        )
        .with(
            ROOT_DATA_MODEL_VERSION,
            stored(Value::String(DATA_MODEL_VERSION.into())),
        )
        .with_power(&self.host.power_sources())
        .with(MEMORY_FREE, Slot::Live)
        .with(MEMORY_TOTAL, Slot::Live)
        .with(CURRENT_TIME, Slot::Live)
        .with(UTC_OFFSET, Slot::Live)
        .with(
            TIMEZONE,
            stored(Value::String(
                host_zone(self.host.as_ref()).unwrap_or_default(),
            )),
        )
        .with(UP_TIME, Slot::Live)
        .with(CPU_USAGE, Slot::Live)
        .with(ACTIVE_FIRMWARE_IMAGE, Slot::Live))
    }

    fn read(
        &self,
        origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let value = match resource {
            MEMORY_FREE => Value::Integer(self.host.memory()?.free_kib as i64),
            MEMORY_TOTAL => Value::Integer(self.host.memory()?.total_kib as i64),
            CURRENT_TIME => Value::DateTime(dm_core::unix_seconds(self.host.now())),
            UTC_OFFSET => Value::String(format_offset(self.host.utc_offset())),
            UP_TIME => Value::Unsigned(self.host.uptime()?.as_secs().min(u32::MAX as u64)),
            CPU_USAGE => Value::Unsigned(self.host.cpu_usage(&origin.to_string())?.into()),
            // The running image is always FirmwareImage's row 1.
            ACTIVE_FIRMWARE_IMAGE => Value::ObjectLink(dm_core::ObjectLink {
                object: dm_core::catalog::firmware_image::ID,
                instance: crate::firmware_image::ACTIVE.0,
            }),
            AVAILABLE_POWER_SOURCES | POWER_SOURCE_VOLTAGE | POWER_SOURCE_CURRENT => {
                return Ok(ResourceValue::Multiple(power_column(
                    &self.host.power_sources(),
                    resource,
                )));
            }
            BATTERY_LEVEL | BATTERY_STATUS => {
                let sources = self.host.power_sources();
                let battery = sources
                    .iter()
                    .find(|s| s.kind == "Battery")
                    .ok_or_else(|| Error::PlatformUnavailable("the battery".into()))?;
                if resource == BATTERY_LEVEL {
                    let level = battery
                        .capacity
                        .ok_or_else(|| Error::PlatformUnavailable("the battery's charge".into()))?;
                    Value::Integer(i64::from(level))
                } else {
                    Value::Integer(battery_status(battery))
                }
            }
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        };
        Ok(ResourceValue::Single(value))
    }

    fn host_write(
        &self,
        origin: Origin,
        instance: InstanceId,
        old: Option<&Instance>,
        new: Option<&Instance>,
    ) -> Result<Option<HostWrite>, Error> {
        let (Some(old), Some(new)) = (old, new) else {
            return Ok(None);
        };
        if origin == Origin::Platform {
            return Ok(None);
        }
        match new.value(TIMEZONE) {
            Some(Value::String(zone)) if old.value(TIMEZONE) != new.value(TIMEZONE) => {
                if !dm_platform::linux::zone::is_zone_name(zone) {
                    return Err(Error::Rejected {
                        path: Path::resource(ID, instance, TIMEZONE),
                        reason: format!(
                            "{zone:?} is not a time zone name (OMA object 3: /3/0/15 is in \
                             IANA Time Zone Database format)"
                        ),
                    });
                }
                crate::time::zone_write(&self.host, zone.clone()).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn execute(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        _state: &Instance,
    ) -> Result<(), Error> {
        match resource {
            REBOOT | FACTORY_RESET | RESET_ERROR_CODE => Ok(()),
            _ => Err(Error::NotSupported(Path::resource(
                ID,
                InstanceId(0),
                resource,
            ))),
        }
    }
}

/// The power resources a host's supplies give /3: the sources, their
/// voltage and current (live), and with a battery its level and status.
trait WithPower {
    fn with_power(self, sources: &[dm_platform::PowerSource]) -> Self;
}

impl WithPower for Instance {
    fn with_power(self, sources: &[dm_platform::PowerSource]) -> Instance {
        if sources.iter().all(|s| source_code(&s.kind).is_none()) {
            return self;
        }
        let instance = self
            .with(AVAILABLE_POWER_SOURCES, Slot::Live)
            .with(POWER_SOURCE_VOLTAGE, Slot::Live)
            .with(POWER_SOURCE_CURRENT, Slot::Live);
        if sources.iter().any(|s| s.kind == "Battery") {
            instance
                .with(BATTERY_LEVEL, Slot::Live)
                .with(BATTERY_STATUS, Slot::Live)
        } else {
            instance
        }
    }
}

/// The host's time zone by name: its time service's where it has one
/// (the zone a write set), else the system's.
fn host_zone(host: &dyn Host) -> Option<String> {
    host.time_sync()
        .map(|sync| sync.zone)
        .or_else(|| host.timezone())
}

/// Takes the time service's zone into /3/0/15: from the platform's
/// snapshot, as the sync runs under the tree's lock (the system's zone,
/// read from files, is taken at start only).
pub fn sync(tree: &mut Tree, host: &dyn Host, warnings: &mut Vec<String>) {
    let Some(zone) = host.time_sync().map(|sync| sync.zone) else {
        return;
    };
    let mut tx = tree.begin(Origin::Platform);
    stage_fact(
        &mut tx,
        &SCHEMA,
        Path::resource(ID, InstanceId(0), TIMEZONE),
        Value::String(zone),
        warnings,
    );
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}

/// /3's Available Power Sources code of a kernel supply type.
fn source_code(kind: &str) -> Option<i64> {
    Some(match kind {
        "Battery" => 1,
        "UPS" => 2,
        "USB" => 5,
        "Mains" => 6,
        _ => return None,
    })
}

/// One column of the power resources, the supplies /3 has a code for, in
/// the same order in each (a voltage or current the supply does not
/// report is left out of its column).
fn power_column(
    sources: &[dm_platform::PowerSource],
    resource: ResourceId,
) -> BTreeMap<u16, Value> {
    sources
        .iter()
        .filter_map(|s| Some((source_code(&s.kind)?, s)))
        .zip(0u16..)
        .filter_map(|((code, s), i)| {
            let value = match resource {
                AVAILABLE_POWER_SOURCES => code,
                POWER_SOURCE_VOLTAGE => s.voltage_mv?,
                _ => s.current_ma?,
            };
            Some((i, Value::Integer(value)))
        })
        .collect()
}

/// /3's Battery Status: 0 normal, 1 charging, 2 charged, 4 low, 6 unknown.
fn battery_status(battery: &dm_platform::PowerSource) -> i64 {
    let low = matches!(battery.capacity_level.as_deref(), Some("Low" | "Critical"));
    match battery.status.as_deref() {
        Some("Charging") => 1,
        Some("Full") => 2,
        Some("Discharging" | "Not charging") if low => 4,
        Some("Discharging" | "Not charging") => 0,
        _ => 6,
    }
}

/// LwM2M writes UTC offsets as ISO 8601 `+HH:MM`.
fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Acts on an accepted Execute of this object.
pub fn perform(tree: &mut Tree, path: &Path) -> Option<HostAction> {
    if path.object_id() != ID {
        return None;
    }
    match path.resource_id()? {
        REBOOT => Some(HostAction::Reboot),
        FACTORY_RESET => Some(HostAction::FactoryReset),
        RESET_ERROR_CODE => {
            let mut errors = BTreeMap::new();
            errors.insert(0, Value::Integer(0));
            let target = Path::resource(ID, path.instance_id()?, ERROR_CODE);
            // The agent resets its own bookkeeping; a failure here means
            // the state store failed, which the store already reported.
            let _ = tree
                .begin(Origin::Agent)
                .set_multiple(target, errors)
                .commit();
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(format_offset(3600), "+01:00");
        assert_eq!(format_offset(-9000), "-02:30");
        assert_eq!(format_offset(0), "+00:00");
    }
}
