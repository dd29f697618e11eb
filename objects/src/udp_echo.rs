//! TR-143's UDP echo server as TR-181 configures it
//! (`Device.IP.Diagnostics.UDPEchoConfig.`): the settings are the
//! client's; the counters are the agent's echo server's
//! ([`COUNTERS`]), read live rather than saved at every packet.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dm_core::catalog::udp_echo_config::*;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};

use crate::layout;

/// What the echo server has done since it was last enabled.
pub struct Counters {
    pub packets_received: AtomicU64,
    pub packets_responded: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_responded: AtomicU64,
    /// µs since the Unix epoch; 0: none yet.
    pub first: AtomicI64,
    pub last: AtomicI64,
}

/// The echo server's counters (one server per agent).
pub static COUNTERS: Counters = Counters {
    packets_received: AtomicU64::new(0),
    packets_responded: AtomicU64::new(0),
    bytes_received: AtomicU64::new(0),
    bytes_responded: AtomicU64::new(0),
    first: AtomicI64::new(0),
    last: AtomicI64::new(0),
};

impl Counters {
    /// TR-181 Enable: "When enabled from a disabled state all related
    /// timestamps, statistics and UDP Echo Plus counters are cleared."
    pub fn clear(&self) {
        for counter in [
            &self.packets_received,
            &self.packets_responded,
            &self.bytes_received,
            &self.bytes_responded,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.first.store(0, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
    }

    /// A packet of `size` bytes came at `now` (µs).
    pub fn received(&self, size: usize, now: i64) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(size as u64, Ordering::Relaxed);
        let _ = self
            .first
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }

    /// A reply of `size` bytes went out; returns how many have.
    pub fn responded(&self, size: usize) -> u64 {
        self.bytes_responded
            .fetch_add(size as u64, Ordering::Relaxed);
        self.packets_responded.fetch_add(1, Ordering::Relaxed) + 1
    }
}

struct EchoConfig;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(EchoConfig))
}

impl ObjectHandler for EchoConfig {
    fn schema(&self) -> &'static ObjectSchema {
        &SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let stored = |v| Slot::Stored(ResourceValue::Single(v));
        Ok(layout(&SCHEMA, &[])
            .with(ENABLE, stored(Value::Boolean(false)))
            .with(
                INTERFACE,
                stored(Value::ObjectLink(dm_core::ObjectLink::NULL)),
            )
            .with(SOURCE_IP_ADDRESS, stored(Value::String(String::new())))
            .with(UDP_PORT, stored(Value::Unsigned(0)))
            .with(ECHO_PLUS_ENABLED, stored(Value::Boolean(false)))
            .with(ECHO_PLUS_SUPPORTED, Slot::Live)
            .with(PACKETS_RECEIVED, Slot::Live)
            .with(PACKETS_RESPONDED, Slot::Live)
            .with(BYTES_RECEIVED, Slot::Live)
            .with(BYTES_RESPONDED, Slot::Live)
            .with(TIME_FIRST_PACKET_RECEIVED, Slot::Live)
            .with(TIME_LAST_PACKET_RECEIVED, Slot::Live))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let count = |c: &AtomicU64| Value::Unsigned(c.load(Ordering::Relaxed));
        let time = |t: &AtomicI64| match t.load(Ordering::Relaxed) {
            0 => Value::DateTime(crate::UNKNOWN_TIME),
            us => Value::DateTimeMicros(us),
        };
        let c = &COUNTERS;
        let value = match resource {
            ECHO_PLUS_SUPPORTED => Value::Boolean(true),
            PACKETS_RECEIVED => count(&c.packets_received),
            PACKETS_RESPONDED => count(&c.packets_responded),
            BYTES_RECEIVED => count(&c.bytes_received),
            BYTES_RESPONDED => count(&c.bytes_responded),
            TIME_FIRST_PACKET_RECEIVED => time(&c.first),
            TIME_LAST_PACKET_RECEIVED => time(&c.last),
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        };
        Ok(ResourceValue::Single(value))
    }

    fn validate(
        &self,
        origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        if !origin.is_client() {
            return Ok(());
        }
        let enabled = state.value(ENABLE) == Some(&Value::Boolean(true));
        if enabled && state.value(UDP_PORT) == Some(&Value::Unsigned(0)) {
            return Err(Error::Rejected {
                path: Path::resource(ID, instance, UDP_PORT),
                reason: "the server needs a UDPPort to listen on".into(),
            });
        }
        if let Some(Value::Unsigned(port)) = state.value(UDP_PORT)
            && *port > u64::from(u16::MAX)
        {
            return Err(Error::Rejected {
                path: Path::resource(ID, instance, UDP_PORT),
                reason: format!("{port} is no UDP port"),
            });
        }
        if let Some(Value::String(source)) = state.value(SOURCE_IP_ADDRESS)
            && !source.is_empty()
            && source.parse::<std::net::IpAddr>().is_err()
        {
            return Err(Error::Rejected {
                path: Path::resource(ID, instance, SOURCE_IP_ADDRESS),
                reason: format!("{source:?} is no IP address"),
            });
        }
        Ok(())
    }
}
