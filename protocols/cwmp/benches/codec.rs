//! SOAP codec throughput against bare quick-xml on the same bytes.
//!
//! `cargo bench -p dmagent-cwmp --bench codec`. Encodes a
//! GetParameterValuesResponse of 10,000 parameters and decodes a
//! SetParameterValues of 1,000, and does the same work with quick-xml alone
//! (writing the same elements; reading every event). Reports the best of
//! several passes in µs and the throughput ratio codec/bare (1.0 = as fast
//! as bare quick-xml; the target is at least 0.5). Also the peak heap of
//! that response written out chunk by chunk, as it is sent, against the
//! same response written whole.

#[path = "common/mod.rs"]
mod common;
use common::{best_micros, peak_heap};
use std::hint::black_box;

use dm_cwmp::soap::{Body, Cursor, CwmpVersion, Encoder, ParameterValue, decode};
use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

fn values(n: usize) -> Vec<ParameterValue> {
    (0..n)
        .map(|i| ParameterValue {
            name: format!(
                "Device.IP.Interface.{}.IPv4Address.{}.IPAddress",
                i / 100 + 1,
                i % 100 + 1
            ),
            value: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            xsd_type: "xsd:string",
        })
        .collect()
}

/// The same elements written with quick-xml's Writer.
fn bare_write(values: &[ParameterValue]) -> Vec<u8> {
    let mut writer = Writer::new(Vec::with_capacity(values.len() * 160));
    let start = |name: &'static str| Event::Start(BytesStart::new(name));
    let end = |name: &'static str| Event::End(BytesEnd::new(name));
    let _ = writer.write_event(start("soap-env:Envelope"));
    let _ = writer.write_event(start("soap-env:Body"));
    let _ = writer.write_event(start("cwmp:GetParameterValuesResponse"));
    let _ = writer.write_event(start("ParameterList"));
    for v in values {
        let _ = writer.write_event(start("ParameterValueStruct"));
        let _ = writer.write_event(start("Name"));
        let _ = writer.write_event(Event::Text(BytesText::new(&v.name)));
        let _ = writer.write_event(end("Name"));
        let mut value = BytesStart::new("Value");
        value.push_attribute(("xsi:type", v.xsd_type));
        let _ = writer.write_event(Event::Start(value));
        let _ = writer.write_event(Event::Text(BytesText::new(&v.value)));
        let _ = writer.write_event(end("Value"));
        let _ = writer.write_event(end("ParameterValueStruct"));
    }
    let _ = writer.write_event(end("ParameterList"));
    let _ = writer.write_event(end("cwmp:GetParameterValuesResponse"));
    let _ = writer.write_event(end("soap-env:Body"));
    let _ = writer.write_event(end("soap-env:Envelope"));
    writer.into_inner()
}

fn spv(n: usize) -> String {
    let mut body = String::from(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">1</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:SetParameterValues><ParameterList>"#,
    );
    for i in 0..n {
        body.push_str(&format!(
            "<ParameterValueStruct><Name>Device.WiFi.SSID.{}.SSID</Name><Value xsi:type=\"xsd:string\">ssid-{i}</Value></ParameterValueStruct>",
            i + 1
        ));
    }
    body.push_str("</ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues></soap-env:Body></soap-env:Envelope>");
    body
}

fn bare_read(text: &str) -> usize {
    let mut reader = quick_xml::NsReader::from_str(text);
    let mut events = 0;
    loop {
        match reader.read_resolved_event() {
            Ok((_, Event::Eof)) | Err(_) => return events,
            Ok(_) => events += 1,
        }
    }
}

/// Writes a body out as the HTTP driver does: chunk by chunk, each
/// dropped once sent.
fn send(body: &Body) -> usize {
    let mut cursor = Cursor::default();
    let mut sent = 0;
    while let Some(chunk) = body.next_chunk(&mut cursor) {
        sent += black_box(chunk).len();
    }
    sent
}

fn main() {
    let passes = 60;
    let gpv = values(10_000);
    let encoder = Encoder::new(CwmpVersion::LATEST);
    let mut copies: Vec<_> = (0..passes).map(|_| gpv.clone()).collect();
    // Building the response (its length included) and writing it out.
    let ours = best_micros(passes, || {
        let values = copies.pop().unwrap_or_default();
        let body = encoder.get_parameter_values_response(Some("1"), black_box(values));
        black_box(send(&body));
    });
    let bare = best_micros(passes, || {
        black_box(bare_write(black_box(&gpv)));
    });
    let bytes = encoder
        .get_parameter_values_response(Some("1"), gpv.clone())
        .len();
    println!("encode GetParameterValuesResponse, 10,000 parameters ({bytes} bytes):");
    println!(
        "  codec {ours:9.0} µs   bare quick-xml Writer {bare:9.0} µs   ratio {:.2}",
        bare / ours
    );

    // Memory: the list is kept, the XML written a chunk at a time, against
    // the same message written whole (as before streaming, and as the HTTP
    // body copied it once more). The list itself is counted in both.
    let streamed = peak_heap(|| {
        let body = encoder.get_parameter_values_response(Some("1"), gpv.clone());
        black_box(send(&body));
    });
    let whole = peak_heap(|| {
        let body = encoder.get_parameter_values_response(Some("1"), gpv.clone());
        let text = body.to_text();
        black_box(text.as_bytes().to_vec());
    });
    println!("peak heap answering it (the 10,000 values included):");
    println!(
        "  streamed {:6} KiB   whole text {:6} KiB   ratio {:.2}",
        streamed / 1024,
        whole / 1024,
        streamed as f64 / whole as f64
    );

    let text = spv(1_000);
    assert!(decode(&text).is_ok());
    let ours = best_micros(passes, || {
        black_box(decode(black_box(&text)).ok());
    });
    let bare = best_micros(passes, || {
        black_box(bare_read(black_box(&text)));
    });
    println!(
        "decode SetParameterValues, 1,000 parameters ({} bytes):",
        text.len()
    );
    println!(
        "  codec {ours:9.0} µs   bare quick-xml NsReader {bare:9.0} µs   ratio {:.2}",
        bare / ours
    );
}
