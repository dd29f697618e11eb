//! Bulk data collection end to end: the scripted ACS sets up two profiles
//! through CWMP (AddObject of the profile and of its Parameter rows, then
//! SetParameterValues), and the agent reports to a test collector on
//! 127.0.0.1 at their intervals: gzipped JSON that the collector refuses
//! three times (the reports are kept and come with the fourth, in order),
//! and CSV.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use dm_tests::mini_acs::{MiniAcs, add_object, set_parameter_values};

/// One request the collector took.
struct Received {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    /// The body, un-gzipped where it said it was gzipped.
    body: Vec<u8>,
}

/// A collector on 127.0.0.1: each request is answered with the status
/// `status` gives for it, and sent on.
fn collector(
    mut status: impl FnMut(&Received) -> u16 + Send + 'static,
) -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let target = parts.next().unwrap_or_default().to_owned();
            let mut headers = HashMap::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                }
            }
            let length = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .expect("a body that says gzip is gzip");
                body = plain;
            }
            let received = Received {
                method,
                target,
                headers,
                body,
            };
            let code = status(&received);
            let _ = write!(
                writer,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tx.send(received);
        }
    });
    (port, rx)
}

fn next(rx: &mpsc::Receiver<Received>) -> Received {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("a report within 60 s")
}

#[test]
fn profiles_set_through_cwmp_report_json_and_csv_and_keep_what_failed() {
    // The JSON profile's first three reports are refused.
    let mut refused = 0;
    let (port, reports) = collector(move |r| {
        if r.target.starts_with("/json") && refused < 3 {
            refused += 1;
            500
        } else {
            200
        }
    });
    let json = "Device.BulkData.Profile.1.";
    let csv = "Device.BulkData.Profile.2.";
    let mut requests = vec![
        add_object("Device.BulkData.Profile.", "b"),
        add_object(&format!("{json}Parameter."), "b"),
        add_object(&format!("{json}Parameter."), "b"),
        add_object(&format!("{json}Parameter."), "b"),
        add_object(&format!("{json}HTTP.RequestURIParameter."), "b"),
        add_object("Device.BulkData.Profile.", "b"),
        add_object(&format!("{csv}Parameter."), "b"),
        set_parameter_values(
            "b",
            &[
                (
                    &format!("{json}Parameter.1.Reference"),
                    "string",
                    "Device.DeviceInfo.SerialNumber",
                ),
                (
                    &format!("{json}Parameter.2.Reference"),
                    "string",
                    "Device.ManagementServer.PeriodicInformInterval",
                ),
                (&format!("{json}Parameter.3.Name"), "string", "ssid"),
                (
                    &format!("{json}Parameter.3.Reference"),
                    "string",
                    "Device.WiFi.SSID.*.SSID",
                ),
                (
                    &format!("{json}HTTP.RequestURIParameter.1.Name"),
                    "string",
                    "model",
                ),
                (
                    &format!("{json}HTTP.RequestURIParameter.1.Reference"),
                    "string",
                    "Device.DeviceInfo.ModelName",
                ),
                (
                    &format!("{json}HTTP.URL"),
                    "string",
                    &format!("http://127.0.0.1:{port}/json"),
                ),
                (&format!("{json}HTTP.Compression"), "string", "GZIP"),
                (&format!("{json}NumberOfRetainedFailedReports"), "int", "5"),
                (&format!("{json}ReportingInterval"), "unsignedInt", "1"),
                (&format!("{json}Enable"), "boolean", "true"),
                (
                    &format!("{csv}Parameter.1.Reference"),
                    "string",
                    "Device.DeviceInfo.",
                ),
                (&format!("{csv}EncodingType"), "string", "CSV"),
                (
                    &format!("{csv}CSVEncoding.ReportFormat"),
                    "string",
                    "ParameterPerRow",
                ),
                (
                    &format!("{csv}HTTP.URL"),
                    "string",
                    &format!("http://127.0.0.1:{port}/csv"),
                ),
                (&format!("{csv}ReportingInterval"), "unsignedInt", "2"),
                (&format!("{csv}Enable"), "boolean", "true"),
            ],
        ),
    ];
    requests.reverse();
    let mut first_session = true;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() && !first_session {
            return None;
        }
        first_session = false;
        if body.contains("Fault>") {
            panic!("the agent refused a request: {body}");
        }
        requests.pop()
    }));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"BULK1\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
             [lwm2m]\nenabled = false\n",
            acs.url(),
            dm_tests::files::free_tcp_port()
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    acs.post_with("SetParameterValuesResponse");

    let mut json_reports = Vec::new();
    let mut csv_reports = Vec::new();
    while json_reports.len() < 5 || csv_reports.len() < 2 {
        let r = next(&reports);
        if r.target.starts_with("/json") {
            json_reports.push(r);
        } else {
            csv_reports.push(r);
        }
    }

    // JSON: the three refused, then the fourth carrying all four in
    // order, then one again.
    let counts: Vec<usize> = json_reports
        .iter()
        .map(|r| {
            let message: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            message["Report"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(counts, [1, 2, 3, 4, 1], "reports per message");
    let fourth = &json_reports[3];
    assert_eq!(fourth.method, "POST");
    assert_eq!(
        fourth.headers["content-type"],
        "application/json; charset=UTF-8"
    );
    assert_eq!(fourth.headers["bbf-report-format"], "ObjectHierarchy");
    assert_eq!(fourth.headers["content-encoding"], "gzip");
    assert!(fourth.headers.contains_key("date"));
    // TR-069 Annex N.2.1: the device, then the RequestURIParameters.
    let query = fourth.target.split_once('?').unwrap().1;
    assert!(query.contains("&sn=BULK1"), "{query}");
    assert!(query.starts_with("oui="), "{query}");
    assert!(query.contains("&model="), "{query}");
    let message: serde_json::Value = serde_json::from_slice(&fourth.body).unwrap();
    let all = message["Report"].as_array().unwrap();
    let times: Vec<i64> = all
        .iter()
        .map(|r| r["CollectionTime"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in order: {times:?}");
    let last = &all[3];
    assert_eq!(last["Device"]["DeviceInfo"]["SerialNumber"], "BULK1");
    assert!(
        last["Device"]["ManagementServer"]["PeriodicInformInterval"].is_u64(),
        "an unsignedInt is a JSON number: {last}"
    );
    // A Name with a wildcard: the name, then the instance it matched.
    assert!(last["ssid"]["1"].is_string(), "{last}");

    // CSV, a parameter per row, at its interval's phase.
    let first = &csv_reports[0];
    assert_eq!(
        first.headers["content-type"],
        "text/csv; charset=UTF-8; header=present"
    );
    assert_eq!(first.headers["bbf-report-format"], "ParameterPerRow");
    let rows = |r: &Received| -> Vec<String> {
        String::from_utf8(r.body.clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let text = rows(first);
    assert_eq!(
        text[0],
        "ReportTimestamp,ParameterName,ParameterValue,ParameterType"
    );
    assert!(
        text.iter()
            .any(|row| row.ends_with(",Device.DeviceInfo.SerialNumber,BULK1,string")),
        "{text:?}"
    );
    let stamp = |r: &Received| -> i64 { rows(r)[1].split(',').next().unwrap().parse().unwrap() };
    let (a, b) = (stamp(&csv_reports[0]), stamp(&csv_reports[1]));
    assert!(b > a && (b - a) % 2 == 0, "every 2 s: {a}, {b}");
}
