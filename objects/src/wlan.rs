//! WLAN connectivity (/12) and TR-181 Device.WiFi.
//!
//! Instances mirror the platform's Wi-Fi profiles, matched by interface
//! name and SSID. A client's create, write or delete is carried to the
//! platform (a NetworkManager profile) before the tree takes it; a refusal
//! there fails the request. The key phrase is write only: it goes to the
//! platform and is never read back from it.

use dm_core::catalog::wlan::{self, *};
use std::sync::Arc;

use dm_core::{
    Error, HostWrite, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, Tree, Value,
};
use dm_platform::{Network, WifiSecurity, WifiSettings};

use crate::{layout, stage_fact, stored};

/// TR-181 SSID.{i}.Stats, in `LinkCounter::ALL`'s order.
const STATS: [dm_core::ResourceId; 9] = [
    SSID_STATS_BYTES_SENT,
    SSID_STATS_BYTES_RECEIVED,
    SSID_STATS_PACKETS_SENT,
    SSID_STATS_PACKETS_RECEIVED,
    SSID_STATS_ERRORS_SENT,
    SSID_STATS_ERRORS_RECEIVED,
    SSID_STATS_DISCARD_PACKETS_SENT,
    SSID_STATS_DISCARD_PACKETS_RECEIVED,
    SSID_STATS_MULTICAST_PACKETS_RECEIVED,
];

/// /12/x/15 Authentication Mode values (LwM2M object 12 definition).
const AUTH_NONE: i64 = 0;
const AUTH_PSK: i64 = 1;
/// /12/x/8 Mode: 0 access point, 1 client.
const MODE_ACCESS_POINT: i64 = 0;
const MODE_CLIENT: i64 = 1;

struct Wlan {
    network: Arc<dyn Network>,
}

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Wlan { network }))
}

/// The platform settings an instance describes.
fn settings(state: &Instance, old: Option<&Instance>) -> WifiSettings {
    let text = |i: &Instance, r| match i.value(r) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let integer = |r| match state.value(r) {
        Some(Value::Integer(v)) => *v,
        _ => 0,
    };
    // The phrase goes to the platform when a client wrote a new one.
    let phrase = text(state, WPA_KEY_PHRASE);
    let passphrase = (!phrase.is_empty()
        && old.is_none_or(|old| text(old, WPA_KEY_PHRASE) != phrase))
    .then_some(phrase);
    WifiSettings {
        interface: text(state, INTERFACE_NAME),
        ssid: text(state, SSID),
        enabled: !matches!(state.value(ENABLE), Some(Value::Boolean(false))),
        channel: u8::try_from(integer(CHANNEL)).unwrap_or(0),
        access_point: integer(MODE) == MODE_ACCESS_POINT,
        security: if integer(AUTHENTICATION_MODE) == AUTH_PSK {
            WifiSecurity::WpaPsk
        } else {
            WifiSecurity::Open
        },
        passphrase,
    }
}

/// The id of the platform profile an instance mirrors.
fn profile_of(network: &dyn Network, instance: &Instance) -> Option<String> {
    let key = match (instance.value(INTERFACE_NAME), instance.value(SSID)) {
        (Some(Value::String(i)), Some(Value::String(s))) => (i, s),
        _ => return None,
    };
    network
        .wifi_profiles()
        .into_iter()
        .find(|p| p.interface == *key.0 && p.ssid == *key.1)
        .map(|p| p.id)
}

impl ObjectHandler for Wlan {
    fn schema(&self) -> &'static ObjectSchema {
        &wlan::SCHEMA
    }

    /// SSID.{i}.Stats: the SSID's traffic is its interface's while the
    /// profile is active (SSID Status Up) on an interface the kernel has,
    /// read now; none (0) otherwise, as TR-181's counters start again
    /// when an interface comes up.
    fn read_in(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
        resource: dm_core::ResourceId,
    ) -> Result<dm_core::ResourceValue, Error> {
        let path = Path::resource(ID, instance, resource);
        if !STATS.contains(&resource) {
            return Err(Error::NotReadable(path));
        }
        let active = matches!(state.value(SSID_STATUS), Some(Value::String(s)) if s == "Up");
        // A profile whose interface the kernel does not have (yet) carried
        // nothing.
        let present = |name: &str| self.network.ip_interfaces().iter().any(|i| i.name == name);
        match state.value(INTERFACE_NAME) {
            Some(Value::String(name)) if active && present(name) => {
                crate::ethernet::read_counter(self.network.as_ref(), name, &STATS, resource)
                    .ok_or(Error::NotReadable(path))?
                    .map(dm_core::ResourceValue::Single)
            }
            _ => Ok(dm_core::ResourceValue::Single(Value::Unsigned(0))),
        }
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let instance = layout(
            &SCHEMA,
            &[
                BROADCAST_SSID,
                WPA_KEY_PHRASE,
                WMM_ENABLED,
                SSID_STATUS,
                SSID_BSSID,
                MAC_ADDRESS,
                MODE_ENABLED,
            ],
        )
        .with(INTERFACE_NAME, stored(Value::String("wlan0".into())))
        .with(SSID_STATUS, stored(Value::String("Down".into())))
        .with(MODE_ENABLED, stored(Value::String("None".into())))
        .with(MODE, stored(Value::Integer(MODE_CLIENT)));
        Ok(STATS
            .iter()
            .fold(instance, |i, r| i.with(*r, dm_core::Slot::Live)))
    }

    fn validate(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        let at = |r| Path::resource(ID, instance, r);
        match state.value(AUTHENTICATION_MODE) {
            Some(Value::Integer(AUTH_NONE)) | None => {}
            Some(Value::Integer(AUTH_PSK)) => {
                // WPA-PSK (IEEE 802.11i): a passphrase of 8 to 63
                // characters. An empty one means "unchanged": the platform
                // keeps profile secrets and never reads them back.
                let phrase = match state.value(WPA_KEY_PHRASE) {
                    Some(Value::String(s)) => s.chars().count(),
                    _ => 0,
                };
                if phrase != 0 && !(8..=63).contains(&phrase) {
                    return Err(Error::Rejected {
                        path: at(WPA_KEY_PHRASE),
                        reason: "WPA-PSK needs a key phrase of 8 to 63 characters".into(),
                    });
                }
            }
            Some(other) => {
                return Err(Error::Rejected {
                    path: at(AUTHENTICATION_MODE),
                    reason: format!("authentication mode {other} is not supported (0 none, 1 PSK)"),
                });
            }
        }
        match state.value(MODE) {
            Some(Value::Integer(MODE_ACCESS_POINT | MODE_CLIENT)) | None => Ok(()),
            Some(other) => Err(Error::Rejected {
                path: at(MODE),
                reason: format!("mode {other} is not supported (0 access point, 1 client)"),
            }),
        }
    }

    fn host_write(
        &self,
        origin: Origin,
        instance: InstanceId,
        old: Option<&Instance>,
        new: Option<&Instance>,
    ) -> Result<Option<HostWrite>, Error> {
        if origin == Origin::Platform {
            return Ok(None);
        }
        let ssid_of = |i: &Instance| match i.value(SSID) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let at = |r| Path::resource(ID, instance, r);
        if let (Some(old), Some(new)) = (old, new)
            && !ssid_of(old).is_empty()
            && ssid_of(new).is_empty()
        {
            return Err(Error::Rejected {
                path: at(SSID),
                reason: "the SSID of an existing profile cannot be emptied".into(),
            });
        }
        if let Some(new) = new {
            let wants_psk = matches!(
                new.value(AUTHENTICATION_MODE),
                Some(Value::Integer(AUTH_PSK))
            );
            let had_psk = old.is_some_and(|old| {
                matches!(
                    old.value(AUTHENTICATION_MODE),
                    Some(Value::Integer(AUTH_PSK))
                )
            });
            if wants_psk
                && !had_psk
                && !ssid_of(new).is_empty()
                && settings(new, old).passphrase.is_none()
            {
                return Err(Error::Rejected {
                    path: at(WPA_KEY_PHRASE),
                    reason: "WPA-PSK needs a key phrase: write it with the authentication mode"
                        .into(),
                });
            }
        }
        let network = Arc::clone(&self.network);
        Ok(match (old, new) {
            // A new instance with no SSID yet is only a placeholder (a
            // Create whose values follow in the next write): the profile
            // is made when it has one.
            (_, Some(new)) if ssid_of(new).is_empty() => None,
            (old, Some(new)) => {
                let profile = old.and_then(|old| profile_of(network.as_ref(), old));
                let settings = settings(new, old);
                // What an update takes back to (the key phrase too when
                // the tree holds it).
                let before = old.map(|old| self::settings(old, None));
                Some(HostWrite::new(
                    format!("Wi-Fi profile {}", settings.ssid),
                    move || match (profile, before) {
                        (Some(id), Some(before)) => {
                            network.update_wifi_profile(&id, &settings)?;
                            Ok(Some(HostWrite::new(
                                format!("Wi-Fi profile {} restored", before.ssid),
                                move || {
                                    network.update_wifi_profile(&id, &before)?;
                                    Ok(None)
                                },
                            )))
                        }
                        _ => {
                            let id = network.add_wifi_profile(&settings)?;
                            Ok(Some(HostWrite::new(
                                format!("Wi-Fi profile {} removed", settings.ssid),
                                move || {
                                    network.delete_wifi_profile(&id)?;
                                    Ok(None)
                                },
                            )))
                        }
                    },
                ))
            }
            // Not re-created should the transaction fail after it: the
            // tree has neither its secret nor the settings it does not
            // manage, so a copy would be another profile; the platform
            // refresh brings the tree in line instead.
            (Some(old), None) => profile_of(network.as_ref(), old).map(|id| {
                HostWrite::new(
                    format!("Wi-Fi profile {} deleted", ssid_of(old)),
                    move || {
                        network.delete_wifi_profile(&id)?;
                        Ok(None)
                    },
                )
            }),
            (None, None) => None,
        })
    }
}

/// Refreshes instances from the platform's Wi-Fi profiles. Profiles the
/// tree does not have yet get an instance.
pub fn sync(tree: &mut Tree, network: &dyn Network, warnings: &mut Vec<String>) {
    let profiles = network.wifi_profiles();
    if profiles.is_empty() {
        return;
    }
    let key = |instance: &Instance| match (instance.value(INTERFACE_NAME), instance.value(SSID)) {
        (Some(Value::String(i)), Some(Value::String(s))) => Some((i.clone(), s.clone())),
        _ => None,
    };
    let mut known = Vec::new();
    for i in tree.instances(ID).unwrap_or_default() {
        if let Some(k) = tree.instance(ID, i).ok().and_then(key) {
            known.push((k, i));
        }
    }
    let mut tx = tree.begin(Origin::Platform);
    // Profiles removed on the host (nmcli, another manager) leave the tree
    // too; an instance with no SSID yet (an AddObject waiting for its
    // SetParameterValues) has no profile to lose.
    for (k, i) in &known {
        if !k.1.is_empty() && !profiles.iter().any(|p| p.interface == k.0 && p.ssid == k.1) {
            tx.delete(ID, *i);
        }
    }
    let mut pending = Vec::new();
    for profile in &profiles {
        let k = (profile.interface.clone(), profile.ssid.clone());
        match known.iter().find(|(known, _)| *known == k) {
            Some((_, i)) => pending.push((*i, profile)),
            None => {
                tx.create(ID, None);
                pending.push((InstanceId(u16::MAX), profile));
            }
        }
    }
    let created = match tx.commit() {
        Ok(done) => done.created,
        Err(e) => {
            warnings.push(e.to_string());
            return;
        }
    };
    let mut new = created.iter().filter_map(|p| p.instance_id());
    let mut tx = tree.begin(Origin::Platform);
    for (instance, profile) in pending {
        let instance = if instance.0 == u16::MAX {
            match new.next() {
                Some(i) => i,
                None => continue,
            }
        } else {
            instance
        };
        let at = |r| Path::resource(ID, instance, r);
        let facts = [
            (INTERFACE_NAME, Value::String(profile.interface.clone())),
            (SSID, Value::String(profile.ssid.clone())),
            (ENABLE, Value::Boolean(profile.enabled)),
            (STATUS, Value::Integer(if profile.active { 1 } else { 0 })),
            (
                SSID_STATUS,
                Value::String(if profile.active { "Up" } else { "Down" }.into()),
            ),
            (CHANNEL, Value::Integer(profile.channel.into())),
            (
                MODE,
                Value::Integer(if profile.access_point {
                    MODE_ACCESS_POINT
                } else {
                    MODE_CLIENT
                }),
            ),
            (
                AUTHENTICATION_MODE,
                Value::Integer(match profile.security {
                    WifiSecurity::Open => AUTH_NONE,
                    WifiSecurity::WpaPsk => AUTH_PSK,
                }),
            ),
            (
                MODE_ENABLED,
                Value::String(
                    match profile.security {
                        WifiSecurity::Open => "None",
                        WifiSecurity::WpaPsk => "WPA2-Personal",
                    }
                    .into(),
                ),
            ),
        ];
        for (resource, value) in facts {
            stage_fact(&mut tx, &SCHEMA, at(resource), value, warnings);
        }
        if let Some(bssid) = &profile.bssid {
            stage_fact(
                &mut tx,
                &SCHEMA,
                at(SSID_BSSID),
                Value::String(bssid.clone()),
                warnings,
            );
            let compact: String = bssid.chars().filter(|c| *c != ':').collect();
            stage_fact(
                &mut tx,
                &SCHEMA,
                at(BSSID),
                Value::String(compact),
                warnings,
            );
        }
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
