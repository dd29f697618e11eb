//! Connectivity Monitoring (/4), Cellular Connectivity (/10), APN
//! Connection Profile (/11) and Bearer Selection (/13).
//!
//! /4 and the radio facts are reported by the platform; /11 instances
//! mirror the modem's packet-data contexts; /10 and /13 hold settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use dm_core::catalog::{apn, bearer_selection, cellular, connectivity};
use dm_core::{
    Error, HostWrite, Instance, InstanceId, ObjectHandler, ObjectLink, ObjectSchema, Origin, Path,
    Tree, Value,
};
use dm_platform::{ApnAuth, ApnSettings, BearerKind, Network};

use crate::{layout, stage_fact};

struct Connectivity;
struct Cellular;
struct Apn {
    network: Arc<dyn Network>,
}
struct BearerSelection;

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Connectivity))?;
    tree.register(Box::new(Cellular))?;
    tree.register(Box::new(Apn { network }))?;
    tree.register(Box::new(BearerSelection))
}

impl ObjectHandler for Connectivity {
    fn schema(&self) -> &'static ObjectSchema {
        &connectivity::SCHEMA
    }

    /// The radio's optional resources (Link Quality, Cell ID, SMNC, SMCC,
    /// LAC) come when a modem reports them: on an Ethernet or Wi-Fi
    /// bearer a zero there would be an invented cell.
    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use connectivity::*;
        Ok(layout(
            &SCHEMA,
            &[
                ROUTER_IP_ADDRESSES,
                APN,
                IMEI,
                CURRENT_ACCESS_TECHNOLOGY,
                NETWORK_IN_USE,
                RSRP,
                RSRQ,
                IMSI,
                ICCID,
            ],
        ))
    }
}

impl ObjectHandler for Cellular {
    fn schema(&self) -> &'static ObjectSchema {
        &cellular::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use cellular::*;
        Ok(layout(&SCHEMA, &[SMSC_ADDRESS, PSM_TIMER, ACTIVE_TIMER]))
    }
}

impl ObjectHandler for Apn {
    fn schema(&self) -> &'static ObjectSchema {
        &apn::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use apn::*;
        Ok(layout(&SCHEMA, &[APN, ENABLE_STATUS, USER_NAME, SECRET]))
    }

    fn validate(
        &self,
        _origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        // LwM2M /11/x/4: 0 PAP, 1 CHAP, 2 PAP or CHAP, 3 none.
        match state.value(apn::AUTHENTICATION_TYPE) {
            Some(Value::Integer(0..=3)) | None => Ok(()),
            Some(other) => Err(Error::Rejected {
                path: Path::resource(apn::ID, instance, apn::AUTHENTICATION_TYPE),
                reason: format!(
                    "authentication type {other} is not 0 (PAP), 1 (CHAP), 2 (PAP or CHAP) or 3 (none)"
                ),
            }),
        }
    }

    /// A client's change of a profile goes to the modem's context (oFono
    /// ConnectionContext) first; the secret is write only.
    fn host_write(
        &self,
        origin: Origin,
        _instance: InstanceId,
        old: Option<&Instance>,
        new: Option<&Instance>,
    ) -> Result<Option<HostWrite>, Error> {
        if origin == Origin::Platform {
            return Ok(None);
        }
        let network = Arc::clone(&self.network);
        let context_of = |instance: &Instance| match instance.value(apn::PROFILE_NAME) {
            Some(Value::String(name)) => network
                .apn_contexts()
                .into_iter()
                .find(|c| c.name == *name)
                .map(|c| c.id),
            _ => None,
        };
        Ok(match (old, new) {
            (_, Some(new)) if matches!(new.value(apn::PROFILE_NAME), Some(Value::String(n)) if n.is_empty()) => {
                None
            }
            (old, Some(new)) => {
                let settings = apn_settings(new, old);
                let context = old.and_then(context_of);
                let before = old.map(|old| apn_settings(old, None));
                Some(HostWrite::new(
                    format!("APN context {}", settings.name),
                    move || match (context, before) {
                        (Some(id), Some(before)) => {
                            network.update_apn_context(&id, &settings)?;
                            Ok(Some(HostWrite::new(
                                format!("APN context {} restored", before.name),
                                move || {
                                    network.update_apn_context(&id, &before)?;
                                    Ok(None)
                                },
                            )))
                        }
                        _ => {
                            let id = network.add_apn_context(&settings)?;
                            Ok(Some(HostWrite::new(
                                format!("APN context {} removed", settings.name),
                                move || {
                                    network.delete_apn_context(&id)?;
                                    Ok(None)
                                },
                            )))
                        }
                    },
                ))
            }
            // Not re-created on failure, as for a Wi-Fi profile: its
            // secret is write only; the refresh brings the tree in line.
            (Some(old), None) => context_of(old).map(|id| {
                HostWrite::new("APN context deleted", move || {
                    network.delete_apn_context(&id)?;
                    Ok(None)
                })
            }),
            (None, None) => None,
        })
    }
}

/// The context settings an /11 instance describes.
fn apn_settings(state: &Instance, old: Option<&Instance>) -> ApnSettings {
    let text = |i: &Instance, r| match i.value(r) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let secret = text(state, apn::SECRET);
    let password = (!secret.is_empty() && old.is_none_or(|old| text(old, apn::SECRET) != secret))
        .then_some(secret);
    ApnSettings {
        name: text(state, apn::PROFILE_NAME),
        apn: text(state, apn::APN),
        username: text(state, apn::USER_NAME),
        password,
        auth: match state.value(apn::AUTHENTICATION_TYPE) {
            Some(Value::Integer(0)) => ApnAuth::Pap,
            Some(Value::Integer(1)) => ApnAuth::Chap,
            Some(Value::Integer(3)) => ApnAuth::None,
            _ => ApnAuth::Any,
        },
    }
}

impl ObjectHandler for BearerSelection {
    fn schema(&self) -> &'static ObjectSchema {
        &bearer_selection::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(
            &bearer_selection::SCHEMA,
            &[bearer_selection::PREFERRED_COMMUNICATIONS_BEARER],
        ))
    }
}

/// The LwM2M /4/0/0 code of a bearer (LwM2M object 4 definition).
fn bearer_code(bearer: BearerKind) -> i64 {
    match bearer {
        BearerKind::Gsm => 0,
        BearerKind::Wcdma => 2,
        BearerKind::LteFdd => 6,
        BearerKind::NbIot => 7,
        BearerKind::Wlan => 21,
        BearerKind::Ethernet => 41,
    }
}

fn indexed(values: impl IntoIterator<Item = Value>) -> BTreeMap<u16, Value> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as u16, v))
        .collect()
}

/// Whether a write to the objects [`sync`] refreshes is being made on
/// the host.
pub fn pending(tree: &Tree) -> bool {
    use connectivity::*;
    [ID, apn::ID, cellular::ID]
        .into_iter()
        .any(|object| tree.has_pending(object))
}

/// Refreshes /4, /11 and /10's profile links from the platform.
pub fn sync(tree: &mut Tree, network: &dyn Network, warnings: &mut Vec<String>) {
    use connectivity::*;
    let state = network.state();
    let radio = network.radio();
    let contexts = network.apn_contexts();
    let at = |r| Path::resource(ID, InstanceId(0), r);

    // APN profiles: one instance per modem context, matched by name.
    let mut existing: BTreeMap<String, InstanceId> = BTreeMap::new();
    if let Ok(instances) = tree.instances(apn::ID) {
        for i in instances {
            let name = tree
                .instance(apn::ID, i)
                .ok()
                .and_then(|inst| inst.value(apn::PROFILE_NAME).cloned());
            if let Some(Value::String(name)) = name {
                existing.insert(name, i);
            }
        }
    }
    let missing: Vec<_> = contexts
        .iter()
        .filter(|c| !existing.contains_key(&c.name))
        .collect();
    if !missing.is_empty() {
        let mut tx = tree.begin(Origin::Platform);
        for _ in &missing {
            tx.create(apn::ID, None);
        }
        match tx.commit() {
            Ok(done) => {
                for (path, context) in done.created.iter().zip(&missing) {
                    if let Some(i) = path.instance_id() {
                        existing.insert(context.name.clone(), i);
                    }
                }
            }
            Err(e) => warnings.push(e.to_string()),
        }
    }

    let mut tx = tree.begin(Origin::Platform);
    let mut active_links = Vec::new();
    for context in &contexts {
        let Some(&i) = existing.get(&context.name) else {
            continue;
        };
        let p = |r| Path::resource(apn::ID, i, r);
        stage_fact(
            &mut tx,
            &apn::SCHEMA,
            p(apn::PROFILE_NAME),
            Value::String(context.name.clone()),
            warnings,
        );
        stage_fact(
            &mut tx,
            &apn::SCHEMA,
            p(apn::APN),
            Value::String(context.apn.clone()),
            warnings,
        );
        stage_fact(
            &mut tx,
            &apn::SCHEMA,
            p(apn::USER_NAME),
            Value::String(context.username.clone()),
            warnings,
        );
        stage_fact(
            &mut tx,
            &apn::SCHEMA,
            p(apn::ENABLE_STATUS),
            Value::Boolean(context.active),
            warnings,
        );
        if context.active {
            active_links.push(Value::ObjectLink(ObjectLink {
                object: apn::ID,
                instance: i.0,
            }));
        }
    }
    tx.set_multiple(
        Path::resource(
            cellular::ID,
            InstanceId(0),
            cellular::ACTIVATED_PROFILE_NAMES,
        ),
        indexed(active_links),
    );

    if let Some(bearer) = state.bearer {
        stage_fact(
            &mut tx,
            &SCHEMA,
            at(NETWORK_BEARER),
            Value::Integer(bearer_code(bearer)),
            warnings,
        );
    }
    tx.set_multiple(
        at(AVAILABLE_NETWORK_BEARER),
        indexed(
            state
                .available
                .iter()
                .map(|b| Value::Integer(bearer_code(*b))),
        ),
    );
    tx.set_multiple(
        at(IP_ADDRESSES),
        indexed(state.addresses.iter().map(|a| Value::String(a.to_string()))),
    );
    tx.set_multiple(
        at(ROUTER_IP_ADDRESSES),
        indexed(state.routers.iter().map(|a| Value::String(a.to_string()))),
    );
    tx.set_multiple(
        at(APN),
        indexed(
            contexts
                .iter()
                .filter(|c| c.active)
                .map(|c| Value::String(c.apn.clone())),
        ),
    );
    let facts: [(_, Option<Value>); 13] = [
        (
            RADIO_SIGNAL_STRENGTH,
            radio.signal_dbm.map(|v| Value::Integer(v.into())),
        ),
        (
            LINK_QUALITY,
            radio.link_quality.map(|v| Value::Integer(v.into())),
        ),
        (CELL_ID, radio.cell_id.map(|v| Value::Integer(v.into()))),
        (LAC, radio.lac.map(|v| Value::Integer(v.into()))),
        (SMCC, radio.mcc.map(|v| Value::Integer(v.into()))),
        (SMNC, radio.mnc.map(|v| Value::Integer(v.into()))),
        (IMEI, radio.imei.clone().map(Value::String)),
        (IMSI, radio.imsi.clone().map(Value::String)),
        (ICCID, radio.iccid.clone().map(Value::String)),
        (
            CURRENT_ACCESS_TECHNOLOGY,
            radio.technology.as_deref().map(tr181_technology),
        ),
        (NETWORK_IN_USE, radio.operator.clone().map(Value::String)),
        (RSRP, radio.rsrp_dbm.map(|v| Value::Integer(v.into()))),
        (RSRQ, radio.rsrq_db.map(|v| Value::Integer(v.into()))),
    ];
    for (resource, value) in facts {
        if let Some(value) = value {
            stage_fact(&mut tx, &SCHEMA, at(resource), value, warnings);
        }
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}

/// TR-181 Device.Cellular.Interface.{i}.CurrentAccessTechnology takes
/// "GPRS", "EDGE", "UMTS", "UMTSHSPA", "CDMA2000OneX", "CDMA2000HRPD",
/// "LTE", "NR"; oFono says "gsm", "edge", "umts", "hspa", "lte".
fn tr181_technology(ofono: &str) -> Value {
    Value::String(
        match ofono {
            "gsm" => "GPRS",
            "edge" => "EDGE",
            "umts" => "UMTS",
            "hsdpa" | "hsupa" | "hspa" => "UMTSHSPA",
            "lte" | "nbiot" => "LTE",
            "nr" => "NR",
            other => other,
        }
        .to_owned(),
    )
}
