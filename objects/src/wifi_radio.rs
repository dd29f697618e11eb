//! TR-181 `Device.WiFi.Radio.{i}.` and `Device.WiFi.EndPoint.{i}.`: the
//! Wi-Fi radios the platform knows (NetworkManager's wireless devices),
//! numbered by interface index as the IP interfaces are, and an end point
//! for each radio that is a station, numbered as its radio. Read-only; the
//! radio's counters are its interface's, read at each read.
//!
//! The channel and band are those of the access point the radio is
//! associated with (a station) or serves, from its frequency (IEEE
//! 802.11's channel numbering: 2.4 GHz channels 1 to 14, 5 GHz and 6 GHz
//! channels counted in 5 MHz steps from 5000 and 5950 MHz).

use std::sync::Arc;

use dm_core::catalog::{wifi_endpoint as endpoint, wifi_radio as radio};
use dm_core::facts::stage_fact;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Tree, Value,
};
use dm_platform::{IpInterface, Network, WifiRadio};

use crate::ethernet::{Facts, facts_row, refuse_clients};

/// The radio's Stats, in `LinkCounter::ALL`'s order (it has no multicast
/// counter).
const COUNTERS: [ResourceId; 8] = [
    radio::STATS_BYTES_SENT,
    radio::STATS_BYTES_RECEIVED,
    radio::STATS_PACKETS_SENT,
    radio::STATS_PACKETS_RECEIVED,
    radio::STATS_ERRORS_SENT,
    radio::STATS_ERRORS_RECEIVED,
    radio::STATS_DISCARD_PACKETS_SENT,
    radio::STATS_DISCARD_PACKETS_RECEIVED,
];

struct Radios {
    network: Arc<dyn Network>,
}

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Radios { network }))?;
    tree.register(Facts::reported(&endpoint::SCHEMA))
}

impl ObjectHandler for Radios {
    fn schema(&self) -> &'static ObjectSchema {
        &radio::SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(facts_row(&radio::SCHEMA, &COUNTERS))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        crate::ethernet::read_counter_of_row(
            self.network.as_ref(),
            radio::ID,
            &COUNTERS,
            instance,
            resource,
        )
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(radio::ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(radio::ID, instance))
    }
}

/// IEEE 802.11's band and channel of a frequency in MHz.
pub fn band_and_channel(mhz: u32) -> Option<(&'static str, u32)> {
    match mhz {
        2484 => Some(("2.4GHz", 14)),
        2412..=2472 if (mhz - 2407).is_multiple_of(5) => Some(("2.4GHz", (mhz - 2407) / 5)),
        // 6 GHz: 5955 MHz is channel 1 (channel 2 at 5935 is left out).
        5955..=7115 if (mhz - 5950).is_multiple_of(5) => Some(("6GHz", (mhz - 5950) / 5)),
        5160..=5885 if (mhz - 5000).is_multiple_of(5) => Some(("5GHz", (mhz - 5000) / 5)),
        _ => None,
    }
}

/// The radio's TR-181 Status: Up while connected, Dormant while on and
/// waiting to connect (RFC 2863), Down when off.
fn status(r: &WifiRadio) -> &'static str {
    if r.up {
        "Up"
    } else if r.enabled {
        "Dormant"
    } else {
        "Down"
    }
}

/// One radio row per radio whose interface the kernel has, one end point
/// per station radio, in one transaction.
pub fn sync(
    tree: &mut Tree,
    network: &dyn Network,
    interfaces: &[IpInterface],
    warnings: &mut Vec<String>,
) {
    let rows =
        crate::ip_interface::by_interface(network.wifi_radios(), |r| &r.interface, interfaces);
    let held_radios = tree.instances(radio::ID).unwrap_or_default();
    let held_endpoints = tree.instances(endpoint::ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    let radios: Vec<InstanceId> = rows.iter().map(|(i, _)| *i).collect();
    let stations: Vec<InstanceId> = rows
        .iter()
        .filter(|(_, r)| r.station)
        .map(|(i, _)| *i)
        .collect();
    crate::ip_interface::keep_rows(&mut tx, radio::ID, &held_radios, &radios);
    crate::ip_interface::keep_rows(&mut tx, endpoint::ID, &held_endpoints, &stations);
    for (instance, r) in &rows {
        let at = |resource| Path::resource(radio::ID, *instance, resource);
        let mut facts = vec![
            (radio::ENABLE, Value::Boolean(r.enabled)),
            (radio::STATUS, Value::String(status(r).into())),
            (radio::NAME, Value::String(r.interface.clone())),
            // A station is the device's way out; an access point faces
            // the end devices.
            (radio::UPSTREAM, Value::Boolean(r.station)),
            (
                radio::SUPPORTED_FREQUENCY_BANDS,
                Value::String(r.bands.join(",")),
            ),
        ];
        // Not associated: the band and channel stay the last ones used.
        if let Some((band, channel)) = r.frequency.and_then(band_and_channel) {
            facts.push((radio::OPERATING_FREQUENCY_BAND, Value::String(band.into())));
            facts.push((radio::CHANNEL, Value::Unsigned(u64::from(channel))));
        }
        for (resource, value) in facts {
            stage_fact(&mut tx, &radio::SCHEMA, at(resource), value, warnings);
        }
        if !r.station {
            continue;
        }
        let at = |resource| Path::resource(endpoint::ID, *instance, resource);
        let mut facts = vec![
            (endpoint::ENABLE, Value::Boolean(r.enabled)),
            (
                endpoint::STATUS,
                Value::String(if r.enabled { "Enabled" } else { "Disabled" }.into()),
            ),
        ];
        // TR-181: the rate most recently used; NetworkManager says 0 when
        // not associated, and the last one stands.
        if r.bitrate > 0 {
            facts.push((
                endpoint::STATS_LAST_DATA_UPLINK_RATE,
                Value::Unsigned(u64::from(r.bitrate)),
            ));
        }
        for (resource, value) in facts {
            stage_fact(&mut tx, &endpoint::SCHEMA, at(resource), value, warnings);
        }
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_are_bands_and_channels() {
        assert_eq!(band_and_channel(2412), Some(("2.4GHz", 1)));
        assert_eq!(band_and_channel(2472), Some(("2.4GHz", 13)));
        assert_eq!(band_and_channel(2484), Some(("2.4GHz", 14)));
        assert_eq!(band_and_channel(5180), Some(("5GHz", 36)));
        assert_eq!(band_and_channel(5825), Some(("5GHz", 165)));
        assert_eq!(band_and_channel(5955), Some(("6GHz", 1)));
        assert_eq!(band_and_channel(6415), Some(("6GHz", 93)));
        for nothing in [0, 2413, 2500, 4000, 5000, 9000, u32::MAX] {
            assert_eq!(band_and_channel(nothing), None, "{nothing}");
        }
    }
}
