//! Bulk data collection as TR-181 has it (`Device.BulkData.`, its
//! `Profile.{i}` table): what the agent can do (read-only), and the
//! profiles a client sets up. The agent's collector
//! (`agent/src/bulkdata.rs`) reports each enabled profile's parameters at
//! its interval; these objects only keep the rules of the values.
//!
//! What the agent offers: the HTTP transport (POST or PUT), JSON and CSV
//! encodings, gzip, wildcards in references. Failed reports are kept in
//! memory only, so `HTTP.PersistAcrossReboot` can only be false.

use std::collections::BTreeMap;

use dm_core::catalog::{bulk_data, bulk_data_profile};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};

use crate::{UNKNOWN_TIME, layout};

/// The shortest reporting interval a profile may ask for, in seconds.
pub const MIN_REPORTING_INTERVAL: u64 = 1;
/// The most profiles clients may make.
pub const MAX_PROFILES: usize = 8;
/// The most Parameter rows (references) one profile may have.
pub const MAX_PARAMETER_REFERENCES: usize = 256;
/// The most RequestURIParameter rows one profile may have.
pub const MAX_URI_PARAMETERS: usize = 32;

struct BulkData;
struct Profile;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(BulkData))?;
    tree.register(Box::new(Profile))
}

impl ObjectHandler for BulkData {
    fn schema(&self) -> &'static ObjectSchema {
        &bulk_data::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use bulk_data::*;
        Ok(layout(&SCHEMA, &[])
            .with(ENABLE, stored(Value::Boolean(true)))
            .with(STATUS, stored(Value::String("Enabled".into())))
            .with(MIN_REPORTING_INTERVAL, Slot::Live)
            .with(PROTOCOLS, Slot::Live)
            .with(ENCODING_TYPES, Slot::Live)
            .with(PARAMETER_WILD_CARD_SUPPORTED, Slot::Live)
            .with(MAX_NUMBER_OF_PROFILES, Slot::Live)
            .with(MAX_NUMBER_OF_PARAMETER_REFERENCES, Slot::Live))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        use bulk_data::*;
        let value = match resource {
            MIN_REPORTING_INTERVAL => Value::Unsigned(self::MIN_REPORTING_INTERVAL),
            PROTOCOLS => Value::String("HTTP".into()),
            ENCODING_TYPES => Value::String("JSON,CSV".into()),
            PARAMETER_WILD_CARD_SUPPORTED => Value::Boolean(true),
            MAX_NUMBER_OF_PROFILES => Value::Integer(MAX_PROFILES as i64),
            MAX_NUMBER_OF_PARAMETER_REFERENCES => Value::Integer(MAX_PARAMETER_REFERENCES as i64),
            _ => return Err(Error::NotReadable(Path::resource(ID, instance, resource))),
        };
        Ok(ResourceValue::Single(value))
    }

    fn adjust(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        written: &[ResourceId],
        state: &mut Instance,
    ) -> Result<Vec<ResourceId>, Error> {
        use bulk_data::*;
        if written.contains(&ENABLE) {
            let enabled = state.value(ENABLE) == Some(&Value::Boolean(true));
            let status = if enabled { "Enabled" } else { "Disabled" };
            state.set_value(STATUS, Value::String(status.into()));
        }
        Ok(Vec::new())
    }
}

fn stored(value: Value) -> Slot {
    Slot::Stored(ResourceValue::Single(value))
}

fn string(text: &str) -> Slot {
    stored(Value::String(text.into()))
}

/// The values TR-181 2.17 gives a new profile, where it gives one; the
/// others are the agent's: JSON object hierarchy, one report a day.
fn profile_defaults() -> Instance {
    use bulk_data_profile::*;
    let empty = || Slot::Stored(ResourceValue::Multiple(BTreeMap::new()));
    layout(&SCHEMA, &[])
        .with(ENABLE, stored(Value::Boolean(false)))
        .with(NAME, string(""))
        .with(NUMBER_OF_RETAINED_FAILED_REPORTS, stored(Value::Integer(0)))
        .with(PROTOCOL, string("HTTP"))
        .with(ENCODING_TYPE, string("JSON"))
        .with(REPORTING_INTERVAL, stored(Value::Unsigned(86_400)))
        .with(TIME_REFERENCE, stored(Value::DateTime(UNKNOWN_TIME)))
        .with(PARAMETER_NAME, empty())
        .with(PARAMETER_REFERENCE, empty())
        .with(PARAMETER_EXCLUDE, empty())
        .with(CSV_ENCODING_FIELD_SEPARATOR, string(","))
        // The XML's default lost its character to attribute
        // normalisation; LF, as bbfdm has it.
        .with(CSV_ENCODING_ROW_SEPARATOR, string("\n"))
        .with(CSV_ENCODING_ESCAPE_CHARACTER, string("\""))
        .with(CSV_ENCODING_REPORT_FORMAT, string("ParameterPerColumn"))
        .with(CSV_ENCODING_ROW_TIMESTAMP, string("Unix-Epoch"))
        .with(JSON_ENCODING_REPORT_FORMAT, string("ObjectHierarchy"))
        .with(JSON_ENCODING_REPORT_TIMESTAMP, string("Unix-Epoch"))
        .with(HTTP_URL, string(""))
        .with(HTTP_USERNAME, string(""))
        .with(HTTP_PASSWORD, string(""))
        .with(HTTP_COMPRESSIONS_SUPPORTED, string("GZIP"))
        .with(HTTP_COMPRESSION, string("None"))
        .with(HTTP_METHODS_SUPPORTED, string("POST,PUT"))
        .with(HTTP_METHOD, string("POST"))
        .with(HTTP_USE_DATE_HEADER, stored(Value::Boolean(true)))
        .with(HTTP_RETRY_ENABLE, stored(Value::Boolean(false)))
        .with(HTTP_RETRY_MINIMUM_WAIT_INTERVAL, stored(Value::Unsigned(5)))
        .with(
            HTTP_RETRY_INTERVAL_MULTIPLIER,
            stored(Value::Unsigned(2000)),
        )
        .with(HTTP_REQUEST_URI_PARAMETER_NAME, empty())
        .with(HTTP_REQUEST_URI_PARAMETER_REFERENCE, empty())
        .with(HTTP_PERSIST_ACROSS_REBOOT, stored(Value::Boolean(false)))
}

/// The values a string resource may take where TR-181 gives them as a
/// list the object announces (Protocols, EncodingTypes, ...).
const CHOICES: &[(ResourceId, &[&str])] = &[
    (bulk_data_profile::PROTOCOL, &["HTTP"]),
    (bulk_data_profile::ENCODING_TYPE, &["JSON", "CSV"]),
    (bulk_data_profile::HTTP_COMPRESSION, &["None", "GZIP"]),
    (bulk_data_profile::HTTP_METHOD, &["POST", "PUT"]),
];

impl ObjectHandler for Profile {
    fn schema(&self) -> &'static ObjectSchema {
        &bulk_data_profile::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(profile_defaults())
    }

    fn max_instances(&self) -> Option<usize> {
        Some(MAX_PROFILES)
    }

    fn validate(
        &self,
        origin: Origin,
        instance: InstanceId,
        state: &Instance,
    ) -> Result<(), Error> {
        use bulk_data_profile::*;
        if !origin.is_client() {
            return Ok(());
        }
        let rejected = |resource, reason: String| Error::Rejected {
            path: Path::resource(ID, instance, resource),
            reason,
        };
        for (resource, choices) in CHOICES {
            if let Some(Value::String(s)) = state.value(*resource)
                && !choices.contains(&s.as_str())
            {
                return Err(rejected(
                    *resource,
                    format!("{s:?}: one of {} (the agent's)", choices.join(", ")),
                ));
            }
        }
        if let Some(Value::Unsigned(interval)) = state.value(REPORTING_INTERVAL)
            && *interval < self::MIN_REPORTING_INTERVAL
        {
            return Err(rejected(
                REPORTING_INTERVAL,
                format!(
                    "below MinReportingInterval ({})",
                    self::MIN_REPORTING_INTERVAL
                ),
            ));
        }
        if state.value(HTTP_PERSIST_ACROSS_REBOOT) == Some(&Value::Boolean(true)) {
            return Err(rejected(
                HTTP_PERSIST_ACROSS_REBOOT,
                "failed reports are kept in memory only: they do not survive a reboot".into(),
            ));
        }
        for separator in [
            CSV_ENCODING_FIELD_SEPARATOR,
            CSV_ENCODING_ROW_SEPARATOR,
            CSV_ENCODING_ESCAPE_CHARACTER,
        ] {
            if let Some(Value::String(s)) = state.value(separator)
                && (s.is_empty() || s.chars().count() > 2)
            {
                return Err(rejected(separator, format!("{s:?}: one or two characters")));
            }
        }
        if let Some(ResourceValue::Multiple(rows)) =
            state.slot(PARAMETER_REFERENCE).and_then(|slot| match slot {
                Slot::Stored(value) => Some(value),
                _ => None,
            })
        {
            if rows.len() > MAX_PARAMETER_REFERENCES {
                // MaxNumberOfParameterReferences: as a table that is full.
                return Err(Error::TooManyInstances {
                    object: ID,
                    limit: MAX_PARAMETER_REFERENCES,
                });
            }
            for reference in rows.values() {
                if let Value::String(reference) = reference
                    && let Err(reason) = check_reference(reference)
                {
                    return Err(rejected(PARAMETER_REFERENCE, reason));
                }
            }
        }
        if let Some(ResourceValue::Multiple(rows)) = state
            .slot(HTTP_REQUEST_URI_PARAMETER_REFERENCE)
            .and_then(|slot| match slot {
                Slot::Stored(value) => Some(value),
                _ => None,
            })
        {
            if rows.len() > MAX_URI_PARAMETERS {
                return Err(Error::TooManyInstances {
                    object: ID,
                    limit: MAX_URI_PARAMETERS,
                });
            }
            for reference in rows.values() {
                if let Value::String(reference) = reference
                    && let Err(reason) = check_reference(reference)
                {
                    return Err(rejected(HTTP_REQUEST_URI_PARAMETER_REFERENCE, reason));
                }
            }
        }
        Ok(())
    }
}

/// A Parameter's Reference as TR-181 allows it: empty (not set yet), or a
/// `Device.` path of a parameter or (ending in `.`) an object, `*` in
/// place of instance numbers.
pub fn check_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Ok(());
    }
    if !reference.starts_with("Device.") {
        return Err(format!("{reference:?}: not a Device. path"));
    }
    let segments: Vec<&str> = reference.trim_end_matches('.').split('.').collect();
    for segment in &segments {
        let good = *segment == "*"
            || (!segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if !good {
            return Err(format!("{reference:?}: {segment:?} is no path segment"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_core::catalog::bulk_data_profile::*;

    fn tree() -> Tree {
        let mut tree = Tree::new();
        register(&mut tree).unwrap();
        tree.begin(Origin::Agent)
            .create(bulk_data::ID, None)
            .commit()
            .unwrap();
        tree
    }

    #[test]
    fn a_client_makes_profiles_up_to_the_announced_maximum() {
        let mut tree = tree();
        for _ in 0..MAX_PROFILES {
            tree.begin(Origin::Acs).create(ID, None).commit().unwrap();
        }
        assert!(tree.begin(Origin::Acs).create(ID, None).commit().is_err());
        let announced = tree
            .read(
                Origin::Acs,
                &Path::resource(
                    bulk_data::ID,
                    InstanceId(0),
                    bulk_data::MAX_NUMBER_OF_PROFILES,
                ),
            )
            .unwrap();
        assert_eq!(
            announced,
            ResourceValue::Single(Value::Integer(MAX_PROFILES as i64))
        );
    }

    #[test]
    fn values_the_agent_cannot_honour_are_refused() {
        let mut tree = tree();
        tree.begin(Origin::Acs).create(ID, None).commit().unwrap();
        let instance = tree.instances(ID).unwrap()[0];
        let at = |r| Path::resource(ID, instance, r);
        let refused =
            |tree: &mut Tree, r, v: Value| tree.begin(Origin::Acs).set(at(r), v).commit().is_err();
        assert!(refused(&mut tree, PROTOCOL, Value::String("MQTT".into())));
        assert!(refused(
            &mut tree,
            ENCODING_TYPE,
            Value::String("XML".into())
        ));
        assert!(refused(
            &mut tree,
            HTTP_PERSIST_ACROSS_REBOOT,
            Value::Boolean(true)
        ));
        assert!(refused(&mut tree, REPORTING_INTERVAL, Value::Unsigned(0)));
        assert!(refused(
            &mut tree,
            CSV_ENCODING_FIELD_SEPARATOR,
            Value::String(String::new())
        ));
        let mut bad = BTreeMap::new();
        bad.insert(0, Value::String("Device.IP.Interface.{i}.".into()));
        assert!(
            tree.begin(Origin::Acs)
                .set_multiple(at(PARAMETER_REFERENCE), bad)
                .commit()
                .is_err()
        );
        // What it can, it takes.
        assert!(!refused(
            &mut tree,
            ENCODING_TYPE,
            Value::String("CSV".into())
        ));
        let mut good = BTreeMap::new();
        good.insert(0, Value::String("Device.IP.Interface.*.Stats.".into()));
        tree.begin(Origin::Acs)
            .set_multiple(at(PARAMETER_REFERENCE), good)
            .commit()
            .unwrap();
    }

    #[test]
    fn disabling_collection_says_so_in_its_status() {
        let mut tree = tree();
        let at = |r| Path::resource(bulk_data::ID, InstanceId(0), r);
        tree.begin(Origin::Acs)
            .set(at(bulk_data::ENABLE), Value::Boolean(false))
            .commit()
            .unwrap();
        assert_eq!(
            tree.read(Origin::Acs, &at(bulk_data::STATUS)).unwrap(),
            ResourceValue::Single(Value::String("Disabled".into()))
        );
    }
}
