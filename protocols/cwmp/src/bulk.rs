//! Bulk data collection's reports (TR-069 Annex N, the HTTP transport of
//! TR-181 `Device.BulkData.`; USP's "HTTP Bulk Data Collection" carries
//! the same text): a profile's settings as the tree has them, a
//! collection of the parameters they name, and the message that carries
//! it, JSON or CSV. Sans-IO: the agent's collector schedules, reads the
//! host, compresses and sends.
//!
//! Choices where the specification leaves room, as the open agents
//! (bbfdm) and collectors read it:
//! - Unix-Epoch timestamps are in seconds, as every example of Annex N
//!   has them (the enumeration's text says milliseconds);
//! - a reference that names nothing now is left out of the report,
//!   which is still sent (USP's annex: references filter the
//!   instantiated model at each collection);
//! - `BBF-Report-Format` is sent as the token, unquoted.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use dm_core::catalog::{bulk_data, bulk_data_profile as profile};
use dm_core::{InstanceId, Origin, Path, ResourceId, ResourceValue, Tree, Value};

use crate::soap::ParameterValue;

/// What one profile's failed reports may hold in memory, in bytes of
/// names and values, whatever NumberOfRetainedFailedReports allows: the
/// oldest go first.
pub const RETAINED_BYTES: usize = 256 * 1024;
/// The most failed reports kept when NumberOfRetainedFailedReports is -1
/// ("as many as possible").
pub const RETAINED_REPORTS: usize = 64;
/// A report's timestamp (JSONEncoding.ReportTimestamp,
/// CSVEncoding.RowTimestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamp {
    UnixEpoch,
    Iso8601,
    None,
}

impl Timestamp {
    fn from_name(name: &str) -> Timestamp {
        match name {
            "ISO-8601" => Timestamp::Iso8601,
            "None" => Timestamp::None,
            _ => Timestamp::UnixEpoch,
        }
    }

    /// The time as text, or `None` when no timestamp is written.
    fn render(self, time: i64) -> Option<String> {
        match self {
            Timestamp::UnixEpoch => Some(time.to_string()),
            Timestamp::Iso8601 => Some(iso8601(time)),
            Timestamp::None => None,
        }
    }
}

pub fn iso8601(time: i64) -> String {
    jiff::Timestamp::from_second(time)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

/// How a profile's reports are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json {
        /// ObjectHierarchy (else NameValuePair).
        hierarchy: bool,
        timestamp: Timestamp,
    },
    Csv {
        field: String,
        row: String,
        escape: String,
        /// ParameterPerRow (else ParameterPerColumn).
        per_row: bool,
        timestamp: Timestamp,
    },
}

impl Encoding {
    /// The `BBF-Report-Format` header's token.
    pub fn format(&self) -> &'static str {
        match self {
            Encoding::Json {
                hierarchy: true, ..
            } => "ObjectHierarchy",
            Encoding::Json { .. } => "NameValuePair",
            Encoding::Csv { per_row: true, .. } => "ParameterPerRow",
            Encoding::Csv { .. } => "ParameterPerColumn",
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Encoding::Json { .. } => "application/json; charset=UTF-8",
            // TR-069 Annex N: the header line is there, and said so.
            Encoding::Csv { .. } => "text/csv; charset=UTF-8; header=present",
        }
    }

    fn is_json(&self) -> bool {
        matches!(self, Encoding::Json { .. })
    }
}

/// One Parameter row (or RequestURIParameter row) of a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Its Name: what the report calls what it names (empty: their own
    /// names).
    pub name: String,
    pub path: String,
}

/// A profile's settings, as the tree has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interval: u64,
    /// TimeReference, when one is set (Unix seconds).
    pub time_reference: Option<i64>,
    pub references: Vec<Reference>,
    /// Paths of the rows with Exclude true.
    pub excluded: Vec<String>,
    pub encoding: Encoding,
    pub url: String,
    pub username: String,
    pub password: String,
    pub gzip: bool,
    pub put: bool,
    pub date_header: bool,
    /// RetryMinimumWaitInterval (s) and RetryIntervalMultiplier (‰),
    /// when RetryEnable.
    pub retry: Option<(u64, u64)>,
    pub uri_parameters: Vec<Reference>,
    /// NumberOfRetainedFailedReports.
    pub retained: i64,
}

fn read(tree: &Tree, instance: InstanceId, resource: ResourceId) -> Option<ResourceValue> {
    tree.read(
        Origin::Agent,
        &Path::resource(profile::ID, instance, resource),
    )
    .ok()
}

fn text(tree: &Tree, instance: InstanceId, resource: ResourceId) -> String {
    match read(tree, instance, resource) {
        Some(ResourceValue::Single(Value::String(s))) => s,
        _ => String::new(),
    }
}

fn flag(tree: &Tree, instance: InstanceId, resource: ResourceId) -> bool {
    matches!(
        read(tree, instance, resource),
        Some(ResourceValue::Single(Value::Boolean(true)))
    )
}

fn number(tree: &Tree, instance: InstanceId, resource: ResourceId) -> i64 {
    match read(tree, instance, resource) {
        Some(ResourceValue::Single(Value::Unsigned(u))) => i64::try_from(u).unwrap_or(i64::MAX),
        Some(ResourceValue::Single(Value::Integer(i))) => i,
        _ => 0,
    }
}

/// A `{j}` table's rows, each column's value by index.
fn rows(tree: &Tree, instance: InstanceId, columns: &[ResourceId]) -> Vec<Vec<Value>> {
    let columns: Vec<_> = columns
        .iter()
        .map(|&c| match read(tree, instance, c) {
            Some(ResourceValue::Multiple(values)) => values,
            _ => Default::default(),
        })
        .collect();
    let Some(first) = columns.first() else {
        return Vec::new();
    };
    first
        .keys()
        .map(|index| {
            columns
                .iter()
                .map(|c| {
                    c.get(index)
                        .cloned()
                        .unwrap_or(Value::String(String::new()))
                })
                .collect()
        })
        .collect()
}

fn row_text(row: &[Value], at: usize) -> String {
    match row.get(at) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

impl Settings {
    /// A profile's settings, if it is to run now: enabled (and bulk data
    /// collection with it), with a collector to send to.
    pub fn read(tree: &Tree, instance: InstanceId) -> Option<Settings> {
        let enabled = matches!(
            tree.read(
                Origin::Agent,
                &Path::resource(bulk_data::ID, InstanceId(0), bulk_data::ENABLE)
            ),
            Ok(ResourceValue::Single(Value::Boolean(true)))
        );
        if !enabled || !flag(tree, instance, profile::ENABLE) {
            return None;
        }
        let url = text(tree, instance, profile::HTTP_URL);
        if url.trim().is_empty() {
            return None;
        }
        let timestamp = |r| Timestamp::from_name(&text(tree, instance, r));
        let encoding = if text(tree, instance, profile::ENCODING_TYPE) == "CSV" {
            Encoding::Csv {
                field: text(tree, instance, profile::CSV_ENCODING_FIELD_SEPARATOR),
                row: text(tree, instance, profile::CSV_ENCODING_ROW_SEPARATOR),
                escape: text(tree, instance, profile::CSV_ENCODING_ESCAPE_CHARACTER),
                per_row: text(tree, instance, profile::CSV_ENCODING_REPORT_FORMAT)
                    == "ParameterPerRow",
                timestamp: timestamp(profile::CSV_ENCODING_ROW_TIMESTAMP),
            }
        } else {
            Encoding::Json {
                hierarchy: text(tree, instance, profile::JSON_ENCODING_REPORT_FORMAT)
                    != "NameValuePair",
                timestamp: timestamp(profile::JSON_ENCODING_REPORT_TIMESTAMP),
            }
        };
        let mut references = Vec::new();
        let mut excluded = Vec::new();
        for row in rows(
            tree,
            instance,
            &[
                profile::PARAMETER_NAME,
                profile::PARAMETER_REFERENCE,
                profile::PARAMETER_EXCLUDE,
            ],
        ) {
            let path = row_text(&row, 1);
            if path.is_empty() {
                continue;
            }
            if row.get(2) == Some(&Value::Boolean(true)) {
                excluded.push(path);
            } else {
                references.push(Reference {
                    name: row_text(&row, 0),
                    path,
                });
            }
        }
        let uri_parameters = rows(
            tree,
            instance,
            &[
                profile::HTTP_REQUEST_URI_PARAMETER_NAME,
                profile::HTTP_REQUEST_URI_PARAMETER_REFERENCE,
            ],
        )
        .into_iter()
        .filter_map(|row| {
            let path = row_text(&row, 1);
            (!path.is_empty()).then(|| Reference {
                name: row_text(&row, 0),
                path,
            })
        })
        .collect();
        let time_reference = match read(tree, instance, profile::TIME_REFERENCE) {
            Some(ResourceValue::Single(Value::DateTime(t))) if t != crate::values::UNKNOWN_TIME => {
                Some(t)
            }
            _ => None,
        };
        Some(Settings {
            interval: u64::try_from(number(tree, instance, profile::REPORTING_INTERVAL))
                .unwrap_or(86_400)
                .max(1),
            time_reference,
            references,
            excluded,
            encoding,
            url,
            username: text(tree, instance, profile::HTTP_USERNAME),
            password: text(tree, instance, profile::HTTP_PASSWORD),
            gzip: text(tree, instance, profile::HTTP_COMPRESSION) == "GZIP",
            put: text(tree, instance, profile::HTTP_METHOD) == "PUT",
            date_header: flag(tree, instance, profile::HTTP_USE_DATE_HEADER),
            retry: flag(tree, instance, profile::HTTP_RETRY_ENABLE).then(|| {
                (
                    u64::try_from(number(
                        tree,
                        instance,
                        profile::HTTP_RETRY_MINIMUM_WAIT_INTERVAL,
                    ))
                    .unwrap_or(5)
                    .max(1),
                    u64::try_from(number(
                        tree,
                        instance,
                        profile::HTTP_RETRY_INTERVAL_MULTIPLIER,
                    ))
                    .unwrap_or(2000)
                    .max(1000),
                )
            }),
            uri_parameters,
            retained: number(tree, instance, profile::NUMBER_OF_RETAINED_FAILED_REPORTS),
        })
    }

    /// The reporting intervals' phase: the end of the first interval
    /// after `now` (TimeReference plus a whole number of intervals; with
    /// no TimeReference, `start` is the reference, TR-181 leaving it to
    /// the CPE).
    pub fn next_report(&self, start: i64, now: i64) -> i64 {
        let interval = i64::try_from(self.interval).unwrap_or(i64::MAX).max(1);
        let reference = self.time_reference.unwrap_or(start);
        let since = now.saturating_sub(reference);
        let intervals = since.div_euclid(interval).saturating_add(1);
        reference.saturating_add(intervals.saturating_mul(interval))
    }
}

/// One collection: when, and each parameter's report name, value and
/// TR-106 type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub time: i64,
    pub values: Vec<(String, String, &'static str)>,
    /// More was named than a report carries ([`MAX_REPORT_PARAMETERS`],
    /// [`MAX_REPORT_BYTES`]).
    pub truncated: bool,
}

impl Report {
    fn bytes(&self) -> usize {
        self.values
            .iter()
            .map(|(n, v, _)| n.len() + v.len() + 16)
            .sum()
    }
}

/// The name a parameter has in the report (TR-069 Annex N.3.1, R-BULK.9
/// and 10): its own path when the row has no Name; else the Name, then
/// each instance number a `*` of the reference matched, then what
/// follows an object reference.
pub fn report_name(reference: &Reference, parameter: &str) -> String {
    if reference.name.is_empty() {
        return parameter.to_owned();
    }
    let pattern = reference.path.trim_end_matches('.');
    let mut name = reference.name.clone();
    let mut segments = parameter.split('.');
    for wanted in pattern.split('.') {
        match segments.next() {
            Some(instance) if wanted == "*" => {
                name.push('.');
                name.push_str(instance);
            }
            Some(_) => {}
            None => break,
        }
    }
    for rest in segments {
        name.push('.');
        name.push_str(rest);
    }
    name
}

/// The paths to read for the host before a collection, as GetParameter
/// Values names them: each reference up to its first wildcard.
pub fn read_names(settings: &Settings) -> Vec<String> {
    settings
        .references
        .iter()
        .chain(&settings.uri_parameters)
        .map(|r| match r.path.find(".*.") {
            Some(at) => r.path[..=at].to_owned(),
            None => r.path.clone(),
        })
        .collect()
}

/// The most parameters one report carries, and the most bytes of names
/// and values: a reference to `Device.` on a large tree is cut there
/// (`Report::truncated`, which the collector logs).
pub const MAX_REPORT_PARAMETERS: usize = 10_000;
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;

/// Collects a report now, from the tree as it is (its caller holds the
/// lock), and the values of the URI parameters with it. Each parameter
/// once, named after the first reference that names it; one an Exclude
/// row names is left out.
pub fn collect(tree: &Tree, settings: &Settings, time: i64) -> (Report, Vec<(String, String)>) {
    let references = settings.references.len();
    let uri = settings.uri_parameters.len();
    let patterns: Vec<&str> = settings
        .references
        .iter()
        .map(|r| r.path.as_str())
        .chain(settings.uri_parameters.iter().map(|r| r.path.as_str()))
        .chain(settings.excluded.iter().map(String::as_str))
        .collect();
    // The limit is the report's: what only a RequestURIParameter or an
    // Exclude row names does not count.
    let reported = |hits: &[usize]| {
        hits.iter().any(|&at| at < references) && hits.iter().all(|&at| at < references + uri)
    };
    let (matched, mut truncated) =
        crate::rpc::matching_values(tree, &patterns, MAX_REPORT_PARAMETERS, &reported);
    let mut values = Vec::new();
    let mut uri_values: Vec<Option<(String, String)>> = vec![None; uri];
    let mut bytes = 0;
    for (hits, value) in matched {
        for &at in hits
            .iter()
            .filter(|&&at| (references..references + uri).contains(&at))
        {
            let reference = &settings.uri_parameters[at - references];
            uri_values[at - references].get_or_insert_with(|| {
                let name = if reference.name.is_empty() {
                    value.name.clone()
                } else {
                    reference.name.clone()
                };
                (name, value.value.clone())
            });
        }
        if hits.iter().any(|&at| at >= references + uri) {
            continue;
        }
        let Some(&first) = hits.iter().find(|&&at| at < references) else {
            continue;
        };
        // Past the byte limit the report is cut; the URI parameters
        // further on are still looked for.
        if truncated && bytes > MAX_REPORT_BYTES {
            continue;
        }
        bytes += value.name.len() + value.value.len();
        if bytes > MAX_REPORT_BYTES {
            truncated = true;
            continue;
        }
        let ParameterValue {
            name,
            value,
            xsd_type,
        } = value;
        let base = xsd_type.strip_prefix("xsd:").unwrap_or(xsd_type);
        values.push((report_name(&settings.references[first], &name), value, base));
    }
    (
        Report {
            time,
            values,
            truncated,
        },
        uri_values.into_iter().flatten().collect(),
    )
}

/// A JSON value of the TR-106 type (TR-069 Annex N.3.5: numbers as
/// numbers, booleans as booleans, everything else a string).
fn json_value(value: &str, kind: &str) -> serde_json::Value {
    let number = match kind {
        "unsignedInt" | "unsignedLong" => value.parse::<u64>().ok().map(serde_json::Value::from),
        "int" | "long" => value.parse::<i64>().ok().map(serde_json::Value::from),
        "boolean" => match value {
            "1" | "true" => Some(serde_json::Value::Bool(true)),
            "0" | "false" => Some(serde_json::Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    number.unwrap_or_else(|| serde_json::Value::String(value.to_owned()))
}

fn json_report(report: &Report, hierarchy: bool, timestamp: Timestamp) -> serde_json::Value {
    use serde_json::{Map, Value as J};
    let mut object = Map::new();
    match timestamp {
        Timestamp::UnixEpoch => {
            object.insert("CollectionTime".into(), J::from(report.time));
        }
        Timestamp::Iso8601 => {
            object.insert("CollectionTime".into(), J::from(iso8601(report.time)));
        }
        Timestamp::None => {}
    }
    for (name, value, kind) in &report.values {
        let value = json_value(value, kind);
        if !hierarchy {
            object.insert(name.clone(), value);
            continue;
        }
        // Each object of the path a JSON object of its own, instance
        // numbers as names; a name that is a value already (two names
        // made to clash by a row's Name) keeps its first value.
        let mut at = &mut object;
        let mut segments = name.split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                at.entry(segment).or_insert(value);
                break;
            }
            let next = at.entry(segment).or_insert_with(|| J::Object(Map::new()));
            let J::Object(next) = next else {
                break;
            };
            at = next;
        }
    }
    J::Object(object)
}

/// A CSV field, quoted with the escape character where it holds a
/// separator, the escape character or a line break (RFC 4180 §2, the
/// profile's characters in place of its).
fn csv_field(out: &mut String, field: &str, encoding: (&str, &str, &str)) {
    let (separator, row, escape) = encoding;
    let quote = field.contains(separator)
        || field.contains(escape)
        || field.contains(row)
        || field.contains(['\r', '\n']);
    if !quote {
        out.push_str(field);
        return;
    }
    out.push_str(escape);
    out.push_str(&field.replace(escape, &format!("{escape}{escape}")));
    out.push_str(escape);
}

fn csv(reports: &[Report], encoding: &Encoding) -> String {
    let Encoding::Csv {
        field,
        row,
        escape,
        per_row,
        timestamp,
    } = encoding
    else {
        return String::new();
    };
    let chars = (field.as_str(), row.as_str(), escape.as_str());
    let mut out = String::new();
    let stamped = *timestamp != Timestamp::None;
    let line = |out: &mut String, fields: &mut dyn Iterator<Item = &str>| {
        for (n, f) in fields.enumerate() {
            if n > 0 {
                out.push_str(field);
            }
            csv_field(out, f, chars);
        }
        out.push_str(row);
    };
    if *per_row {
        let header = [
            "ReportTimestamp",
            "ParameterName",
            "ParameterValue",
            "ParameterType",
        ];
        line(
            &mut out,
            &mut header.iter().copied().skip(usize::from(!stamped)),
        );
        for report in reports {
            let time = timestamp.render(report.time);
            for (name, value, kind) in &report.values {
                let fields =
                    time.as_deref()
                        .into_iter()
                        .chain([name.as_str(), value.as_str(), *kind]);
                line(&mut out, &mut fields.into_iter());
            }
        }
        return out;
    }
    // One column per parameter, in the order they first appear; a report
    // without one (a retained report from before a row was added) leaves
    // its field empty.
    let mut columns: Vec<&str> = Vec::new();
    let mut known = std::collections::HashSet::new();
    for report in reports {
        for (name, _, _) in &report.values {
            if known.insert(name.as_str()) {
                columns.push(name);
            }
        }
    }
    let head = stamped.then_some("ReportTimestamp");
    line(
        &mut out,
        &mut head.into_iter().chain(columns.iter().copied()),
    );
    for report in reports {
        let values: HashMap<&str, &str> = report
            .values
            .iter()
            .map(|(n, v, _)| (n.as_str(), v.as_str()))
            .collect();
        let time = timestamp.render(report.time);
        let fields = time
            .as_deref()
            .into_iter()
            .chain(columns.iter().map(|c| values.get(c).copied().unwrap_or("")));
        line(&mut out, &mut fields.into_iter());
    }
    out
}

/// The message that carries `reports`, oldest first (TR-069 Annex N:
/// retained reports go with the current one, in one message).
pub fn encode(reports: &[Report], encoding: &Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Json {
            hierarchy,
            timestamp,
        } => {
            let reports: Vec<_> = reports
                .iter()
                .map(|r| json_report(r, *hierarchy, *timestamp))
                .collect();
            let mut message = serde_json::Map::new();
            message.insert("Report".into(), serde_json::Value::Array(reports));
            serde_json::to_vec(&serde_json::Value::Object(message)).unwrap_or_default()
        }
        Encoding::Csv { .. } => csv(reports, encoding).into_bytes(),
    }
}

/// The collector's URL with the query TR-069 Annex N.2.1 asks for: the
/// device's OUI, product class and serial number, then each
/// RequestURIParameter, percent-encoded.
pub fn report_url(url: &str, identity: [(&str, String); 3], extra: &[(String, String)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut out = url.to_owned();
    let mut separator = if url.contains('?') { '&' } else { '?' };
    for (name, value) in identity
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        let _ = write!(
            out,
            "{separator}{}={}",
            utf8_percent_encode(name, NON_ALPHANUMERIC),
            utf8_percent_encode(value, NON_ALPHANUMERIC)
        );
        separator = '&';
    }
    out
}

/// The device's identity for the report URL.
pub fn identity(tree: &Tree) -> [(&'static str, String); 3] {
    let names = [
        "Device.DeviceInfo.ManufacturerOUI",
        "Device.DeviceInfo.ProductClass",
        "Device.DeviceInfo.SerialNumber",
    ];
    let (found, _) = crate::rpc::matching_values(tree, &names, names.len(), &|_| true);
    let value = |at: usize| {
        found
            .iter()
            .find(|(hits, _)| hits.contains(&at))
            .map(|(_, p)| p.value.clone())
            .unwrap_or_default()
    };
    [("oui", value(0)), ("pc", value(1)), ("sn", value(2))]
}

/// RFC 9110 §5.6.7's IMF-fixdate.
pub fn http_date(time: i64) -> String {
    jiff::Timestamp::from_second(time)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// The failed reports kept for one profile.
#[derive(Default)]
pub struct Retained {
    reports: VecDeque<Report>,
    /// The encoding they were collected for (TR-181 drops them when it
    /// changes) and the collector they are for.
    json: Option<bool>,
    url: Option<String>,
}

impl Retained {
    /// Makes the reports the profile's: they are dropped when its
    /// encoding changed (TR-181 NumberOfRetainedFailedReports: "If the
    /// value of the EncodingType parameter is modified any outstanding
    /// failed reports are deleted").
    ///
    /// They are dropped too when the collector changes: they were made
    /// for the one that refused them.
    pub fn follow(&mut self, encoding: &Encoding, url: &str) {
        let changed = self.json.is_some_and(|json| json != encoding.is_json())
            || self.url.as_deref().is_some_and(|old| old != url);
        if changed {
            self.reports.clear();
        }
        self.json = Some(encoding.is_json());
        self.url = Some(url.to_owned());
    }

    /// The reports, oldest first.
    pub fn reports(&self) -> impl Iterator<Item = &Report> {
        self.reports.iter()
    }

    pub fn len(&self) -> usize {
        self.reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// Forgets them (they were delivered).
    pub fn clear(&mut self) {
        self.reports.clear();
    }

    /// Keeps `reports` (oldest first) within the profile's limit and
    /// [`RETAINED_BYTES`]; returns how many were dropped.
    pub fn keep(&mut self, reports: Vec<Report>, limit: i64) -> usize {
        let limit = match usize::try_from(limit) {
            Ok(n) => n.min(RETAINED_REPORTS),
            // -1: as many as the memory bound lets.
            Err(_) => RETAINED_REPORTS,
        };
        self.reports = reports.into();
        let mut dropped = 0;
        while self.reports.len() > limit
            || self.reports.iter().map(Report::bytes).sum::<usize>() > RETAINED_BYTES
        {
            self.reports.pop_front();
            dropped += 1;
        }
        dropped
    }
}

/// How long retry `n` (from 1) waits at most (TR-069 §3.2.1.1's table,
/// as Annex N.2.2.1 asks: m·(k/1000)^n, fixed from the tenth on).
pub fn retry_ceiling(n: u32, (minimum, multiplier): (u64, u64)) -> Duration {
    let mut wait = minimum as f64;
    for _ in 0..n.min(10) {
        wait *= multiplier as f64 / 1000.0;
    }
    Duration::from_secs_f64(wait.min(1e9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(time: i64, values: &[(&str, &str, &'static str)]) -> Report {
        Report {
            time,
            values: values
                .iter()
                .map(|(n, v, t)| ((*n).to_owned(), (*v).to_owned(), *t))
                .collect(),
            truncated: false,
        }
    }

    #[test]
    fn names_follow_annex_n() {
        let r = |name: &str, path: &str| Reference {
            name: name.into(),
            path: path.into(),
        };
        let p = "Device.WiFi.AccessPoint.1.AssociatedDevice.10.Stats.BytesSent";
        assert_eq!(report_name(&r("", "Device.WiFi."), p), p);
        assert_eq!(
            report_name(
                &r(
                    "WiFi_AP_Assoc_BSent",
                    "Device.WiFi.AccessPoint.*.AssociatedDevice.*.Stats.BytesSent"
                ),
                p
            ),
            "WiFi_AP_Assoc_BSent.1.10"
        );
        assert_eq!(
            report_name(
                &r(
                    "WiFi_AP1_Assoc10",
                    "Device.WiFi.AccessPoint.1.AssociatedDevice.10.Stats."
                ),
                p
            ),
            "WiFi_AP1_Assoc10.BytesSent"
        );
        assert_eq!(
            report_name(
                &r(
                    "WiFi_AP_Assoc",
                    "Device.WiFi.AccessPoint.*.AssociatedDevice.*.Stats."
                ),
                p
            ),
            "WiFi_AP_Assoc.1.10.BytesSent"
        );
    }

    #[test]
    fn json_encodings_are_annex_ns() {
        let reports = [report(
            1_364_529_149,
            &[
                (
                    "Device.MoCA.Interface.1.Stats.BytesSent",
                    "25248",
                    "unsignedLong",
                ),
                (
                    "Device.MoCA.Interface.2.Stats.BytesSent",
                    "93247",
                    "unsignedLong",
                ),
                ("Device.MoCA.Interface.1.Enable", "true", "boolean"),
                ("Device.MoCA.Interface.1.Name", "moca0", "string"),
            ],
        )];
        let hierarchy: serde_json::Value = serde_json::from_slice(&encode(
            &reports,
            &Encoding::Json {
                hierarchy: true,
                timestamp: Timestamp::UnixEpoch,
            },
        ))
        .unwrap();
        assert_eq!(
            hierarchy,
            serde_json::json!({"Report": [{
                "CollectionTime": 1_364_529_149,
                "Device": {"MoCA": {"Interface": {
                    "1": {"Stats": {"BytesSent": 25248}, "Enable": true, "Name": "moca0"},
                    "2": {"Stats": {"BytesSent": 93247}}
                }}}
            }]})
        );
        let pairs: serde_json::Value = serde_json::from_slice(&encode(
            &reports,
            &Encoding::Json {
                hierarchy: false,
                timestamp: Timestamp::Iso8601,
            },
        ))
        .unwrap();
        assert_eq!(pairs["Report"][0]["CollectionTime"], "2013-03-29T03:52:29Z");
        assert_eq!(
            pairs["Report"][0]["Device.MoCA.Interface.2.Stats.BytesSent"],
            93247
        );
    }

    #[test]
    fn csv_encodings_are_annex_ns() {
        let csv = |per_row, reports: &[Report]| {
            String::from_utf8(encode(
                reports,
                &Encoding::Csv {
                    field: ",".into(),
                    row: "\n".into(),
                    escape: "\"".into(),
                    per_row,
                    timestamp: Timestamp::UnixEpoch,
                },
            ))
            .unwrap()
        };
        let first = report(
            1,
            &[("A.B", "1", "unsignedInt"), ("A.C", "x,\"y\"", "string")],
        );
        let second = report(2, &[("A.B", "2", "unsignedInt")]);
        assert_eq!(
            csv(true, &[first.clone(), second.clone()]),
            "ReportTimestamp,ParameterName,ParameterValue,ParameterType\n\
             1,A.B,1,unsignedInt\n1,A.C,\"x,\"\"y\"\"\",string\n2,A.B,2,unsignedInt\n"
        );
        assert_eq!(
            csv(false, &[first, second]),
            "ReportTimestamp,A.B,A.C\n1,1,\"x,\"\"y\"\"\"\n2,2,\n"
        );
    }

    #[test]
    fn intervals_keep_their_phase() {
        let settings = Settings {
            interval: 60,
            time_reference: Some(30),
            references: Vec::new(),
            excluded: Vec::new(),
            encoding: Encoding::Json {
                hierarchy: true,
                timestamp: Timestamp::None,
            },
            url: String::new(),
            username: String::new(),
            password: String::new(),
            gzip: false,
            put: false,
            date_header: false,
            retry: None,
            uri_parameters: Vec::new(),
            retained: 0,
        };
        assert_eq!(settings.next_report(0, 1_000), 1_050);
        assert_eq!(settings.next_report(0, 1_050), 1_110);
        // A reference in the future counts back from it.
        let ahead = Settings {
            time_reference: Some(10_010),
            ..settings.clone()
        };
        assert_eq!(ahead.next_report(0, 1_000), 1_010);
        let relative = Settings {
            time_reference: None,
            ..settings
        };
        assert_eq!(relative.next_report(500, 500), 560);
    }

    #[test]
    fn retained_reports_are_bounded() {
        let mut retained = Retained::default();
        let reports: Vec<Report> = (0..10).map(|t| report(t, &[("A", "1", "int")])).collect();
        assert_eq!(retained.keep(reports.clone(), 3), 7);
        assert_eq!(
            retained.reports.iter().map(|r| r.time).collect::<Vec<_>>(),
            [7, 8, 9]
        );
        assert_eq!(retained.keep(reports.clone(), 0), 10);
        // -1: as many as the bounds allow.
        let big = "x".repeat(RETAINED_BYTES / 4);
        let heavy: Vec<Report> = (0..10)
            .map(|t| report(t, &[("A", big.as_str(), "string")]))
            .collect();
        retained.keep(heavy, -1);
        assert!(retained.reports.len() < 4);
        assert_eq!(retained.reports.back().unwrap().time, 9);
    }

    #[test]
    fn the_url_carries_the_device_and_the_uri_parameters() {
        let url = report_url(
            "http://collector/bulk",
            [
                ("oui", "00D09E".into()),
                ("pc", "IG 60".into()),
                ("sn", "SN1".into()),
            ],
            &[("ct".into(), "2015-11-01T11:12:13Z".into())],
        );
        assert_eq!(
            url,
            "http://collector/bulk?oui=00D09E&pc=IG%2060&sn=SN1&ct=2015%2D11%2D01T11%3A12%3A13Z"
        );
    }
}
