//! TR-181 `Device.Time`, applied to the host through its time service
//! (systemd-timedated): `Enable` turns NTP on or off, `LocalTimeZone` (a
//! POSIX TZ string, or an IANA name as many ACSs write) sets the zone,
//! `Status` says whether the clock is synchronised. Where the host has no
//! time service, writes of those two are refused ("unavailable") rather
//! than stored and applied nowhere. `NTPServer1`/`2` are stored only
//! (timesyncd takes its servers from files, not from D-Bus).

use std::sync::Arc;

use dm_core::catalog::time::{self, *};
use dm_core::{
    Error, HostRead, HostWrite, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path,
    ResourceId, ResourceValue, Slot, Tree, Value,
};
use dm_platform::{Host, TimeSync};

use crate::{layout, stage_fact, stored};

struct Time {
    host: Arc<dyn Host>,
}

pub fn register(tree: &mut Tree, host: Arc<dyn Host>) -> Result<(), Error> {
    tree.register(Box::new(Time { host }))
}

/// TR-181 2.17 `Time.Status`: Synchronized when the clock is, Disabled
/// when NTP is off (or nothing says it is on), Unsynchronized otherwise.
fn status(sync: Option<&TimeSync>) -> Value {
    Value::String(
        match sync {
            Some(s) if s.synchronized => "Synchronized",
            Some(s) if s.ntp => "Unsynchronized",
            _ => "Disabled",
        }
        .into(),
    )
}

fn text(instance: &Instance, resource: ResourceId) -> Option<String> {
    match instance.value(resource) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

impl ObjectHandler for Time {
    fn schema(&self) -> &'static ObjectSchema {
        &time::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(&time::SCHEMA, &[])
            .with(ENABLE, stored(Value::Boolean(false)))
            .with(STATUS, Slot::Live)
            .with(NTP_SERVER1, stored(Value::String(String::new())))
            .with(NTP_SERVER2, stored(Value::String(String::new())))
            .with(LOCAL_TIME_ZONE, stored(Value::String(String::new()))))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        match resource {
            STATUS => Ok(ResourceValue::Single(status(
                self.host.time_sync().as_ref(),
            ))),
            _ => Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        }
    }

    /// timedated does not signal when the clock becomes synchronised:
    /// asked afresh for a request that reads Status.
    fn host_read(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        resource: ResourceId,
    ) -> Option<HostRead> {
        if resource != STATUS || self.host.time_sync().is_none() {
            return None;
        }
        let host = Arc::clone(&self.host);
        Some(HostRead::new("the clock's synchronisation", move || {
            let sync = host.read_time_sync()?;
            Ok(ResourceValue::Single(status(Some(&sync))))
        }))
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
        let ntp = match (old.value(ENABLE), new.value(ENABLE)) {
            (Some(Value::Boolean(was)), Some(Value::Boolean(is))) if was != is => Some(*is),
            _ => None,
        };
        let zone =
            text(new, LOCAL_TIME_ZONE).filter(|z| Some(z) != text(old, LOCAL_TIME_ZONE).as_ref());
        if ntp.is_none() && zone.is_none() {
            return Ok(None);
        }
        if let Some(zone) = &zone
            && !dm_platform::linux::zone::is_zone_or_rules(zone)
        {
            return Err(Error::Rejected {
                path: Path::resource(ID, instance, LOCAL_TIME_ZONE),
                reason: format!(
                    "{zone:?} is neither a POSIX TZ string (IEEE 1003.1 §8.3) nor a time zone name"
                ),
            });
        }
        let before = time_service(self.host.as_ref(), "applies Device.Time")?;
        let host = Arc::clone(&self.host);
        Ok(Some(HostWrite::new("the time settings", move || {
            if let Some(on) = ntp {
                host.set_ntp(on)?;
            }
            if let Some(zone) = &zone
                && let Err(e) = host.set_timezone(zone)
            {
                if ntp.is_some() {
                    let _ = host.set_ntp(before.ntp);
                }
                return Err(e.into());
            }
            Ok(Some(HostWrite::new(
                "the time settings restored",
                move || {
                    if ntp.is_some() {
                        host.set_ntp(before.ntp)?;
                    }
                    if zone.is_some() {
                        host.set_timezone(&before.zone)?;
                    }
                    Ok(None)
                },
            )))
        })))
    }
}

/// The host's time settings before a change `what` describes, or why
/// the host cannot take one: it has no time service.
fn time_service(host: &dyn Host, what: &str) -> Result<TimeSync, Error> {
    host.time_sync().ok_or_else(|| {
        Error::PlatformUnavailable(format!("the time service that {what} (systemd-timedated)"))
    })
}

/// The host write that sets a zone a client wrote (LwM2M /3/0/15, whose
/// changes are carried apart from `Device.Time`'s; checked by its
/// object), with the write that sets the old one back.
pub(crate) fn zone_write(host: &Arc<dyn Host>, zone: String) -> Result<HostWrite, Error> {
    let before = time_service(host.as_ref(), "sets the time zone")?;
    let host = Arc::clone(host);
    Ok(HostWrite::new("the time zone", move || {
        host.set_timezone(&zone)?;
        Ok(Some(HostWrite::new("the time zone restored", move || {
            host.set_timezone(&before.zone)?;
            Ok(None)
        })))
    }))
}

/// Takes the host's settings into the tree. A zone the tree holds that
/// names the host's zone (its IANA name or its rules) stays as the
/// client wrote it, so an ACS that wrote `Europe/Paris` reads it back.
pub fn sync(tree: &mut Tree, host: &dyn Host, warnings: &mut Vec<String>) {
    let Some(sync) = host.time_sync() else {
        return;
    };
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let held = match tree.read(Origin::Agent, &at(LOCAL_TIME_ZONE)) {
        Ok(ResourceValue::Single(Value::String(zone))) => zone,
        _ => String::new(),
    };
    let zone = if held == sync.zone || Some(&held) == sync.posix_zone.as_ref() {
        held
    } else {
        sync.posix_zone.clone().unwrap_or_else(|| sync.zone.clone())
    };
    let mut tx = tree.begin(Origin::Platform);
    stage_fact(
        &mut tx,
        &SCHEMA,
        at(ENABLE),
        Value::Boolean(sync.ntp),
        warnings,
    );
    stage_fact(
        &mut tx,
        &SCHEMA,
        at(LOCAL_TIME_ZONE),
        Value::String(zone),
        warnings,
    );
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
