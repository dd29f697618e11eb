//! The SOAP codec: what ACSs send decodes to the right request, what the
//! CPE sends validates against cwmp-1-4.xsd, and no input panics.

use crate::common;

use common::{body_document, validate};
use dm_cwmp::soap::{
    AcsMessage, AcsRequest, AcsResponse, AttributeChange, Body, Cursor, CwmpVersion, DeviceId,
    DuOperation, Encoder, Event, ParameterFault, ParameterValue, decode,
};
use proptest::prelude::*;

/// An ACS message as GenieACS writes it: `soap-env`/`cwmp` prefixes,
/// cwmp:ID with mustUnderstand.
fn acs(version: u8, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soap-env:Envelope xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-{version}"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">42</cwmp:ID></soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"#
    )
}

fn request(body: &str) -> AcsRequest {
    let envelope = decode(&acs(0, body)).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(envelope.header.id.as_deref(), Some("42"));
    match envelope.body {
        AcsMessage::Request(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_acs_rpc_decodes() {
    let cases: Vec<(&str, AcsRequest)> = vec![
        ("<cwmp:GetRPCMethods/>", AcsRequest::GetRPCMethods),
        (
            r#"<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType="xsd:string[2]"><string>Device.DeviceInfo.</string><string>Device.ManagementServer.URL</string></ParameterNames></cwmp:GetParameterValues>"#,
            AcsRequest::GetParameterValues {
                names: vec![
                    "Device.DeviceInfo.".into(),
                    "Device.ManagementServer.URL".into(),
                ],
            },
        ),
        (
            "<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath><NextLevel>true</NextLevel></cwmp:GetParameterNames>",
            AcsRequest::GetParameterNames {
                path: "Device.".into(),
                next_level: true,
            },
        ),
        (
            "<cwmp:GetParameterNames><ParameterPath/><NextLevel>0</NextLevel></cwmp:GetParameterNames>",
            AcsRequest::GetParameterNames {
                path: String::new(),
                next_level: false,
            },
        ),
        (
            r#"<cwmp:SetParameterAttributes><ParameterList soap-enc:arrayType="cwmp:SetParameterAttributesStruct[1]"><SetParameterAttributesStruct><Name>Device.WiFi.SSID.1.SSID</Name><NotificationChange>1</NotificationChange><Notification>2</Notification><AccessListChange>0</AccessListChange><AccessList/></SetParameterAttributesStruct></ParameterList></cwmp:SetParameterAttributes>"#,
            AcsRequest::SetParameterAttributes {
                changes: vec![AttributeChange {
                    name: "Device.WiFi.SSID.1.SSID".into(),
                    notification: Some(2),
                    access_list: None,
                }],
            },
        ),
        (
            r#"<cwmp:GetParameterAttributes><ParameterNames soap-enc:arrayType="xsd:string[1]"><string>Device.WiFi.</string></ParameterNames></cwmp:GetParameterAttributes>"#,
            AcsRequest::GetParameterAttributes {
                names: vec!["Device.WiFi.".into()],
            },
        ),
        (
            "<cwmp:AddObject><ObjectName>Device.WiFi.SSID.</ObjectName><ParameterKey>k1</ParameterKey></cwmp:AddObject>",
            AcsRequest::AddObject {
                object: "Device.WiFi.SSID.".into(),
                parameter_key: "k1".into(),
            },
        ),
        (
            "<cwmp:DeleteObject><ObjectName>Device.WiFi.SSID.2.</ObjectName><ParameterKey></ParameterKey></cwmp:DeleteObject>",
            AcsRequest::DeleteObject {
                object: "Device.WiFi.SSID.2.".into(),
                parameter_key: String::new(),
            },
        ),
        (
            "<cwmp:Reboot><CommandKey>reboot-1</CommandKey></cwmp:Reboot>",
            AcsRequest::Reboot {
                command_key: "reboot-1".into(),
            },
        ),
        ("<cwmp:FactoryReset/>", AcsRequest::FactoryReset),
        ("<cwmp:GetQueuedTransfers/>", AcsRequest::GetQueuedTransfers),
        (
            "<cwmp:GetAllQueuedTransfers/>",
            AcsRequest::GetAllQueuedTransfers,
        ),
        (
            "<cwmp:CancelTransfer><CommandKey>dl</CommandKey></cwmp:CancelTransfer>",
            AcsRequest::CancelTransfer {
                command_key: "dl".into(),
            },
        ),
        (
            "<cwmp:ScheduleInform><DelaySeconds>30</DelaySeconds><CommandKey>si</CommandKey></cwmp:ScheduleInform>",
            AcsRequest::ScheduleInform {
                delay_seconds: 30,
                command_key: "si".into(),
            },
        ),
        (
            "<cwmp:GetOptions><OptionName></OptionName></cwmp:GetOptions>",
            AcsRequest::GetOptions {
                option_name: String::new(),
            },
        ),
        (
            r#"<cwmp:SetVouchers><VoucherList soap-enc:arrayType="xsd:base64[1]"><base64>AAAA</base64></VoucherList></cwmp:SetVouchers>"#,
            AcsRequest::SetVouchers { count: 1 },
        ),
        (
            "<cwmp:Upload><CommandKey>up</CommandKey><FileType>1 Vendor Configuration File</FileType><URL>http://127.0.0.1/up</URL><Username/><Password/><DelaySeconds>0</DelaySeconds></cwmp:Upload>",
            AcsRequest::Upload {
                command_key: "up".into(),
                file_type: "1 Vendor Configuration File".into(),
                url: "http://127.0.0.1/up".into(),
                username: String::new(),
                password: String::new(),
                delay_seconds: 0,
            },
        ),
        (
            "<cwmp:ChangeDUState><Operations><InstallOpStruct><URL>http://127.0.0.1/du</URL><UUID/><Username/><Password/><ExecutionEnvRef/></InstallOpStruct></Operations><CommandKey>du</CommandKey></cwmp:ChangeDUState>",
            AcsRequest::ChangeDUState {
                command_key: "du".into(),
                operations: vec![DuOperation::Install {
                    url: "http://127.0.0.1/du".into(),
                    uuid: String::new(),
                    username: String::new(),
                    password: String::new(),
                    execution_env: String::new(),
                }],
            },
        ),
        // As the XSD types it: repeated Operations with xsi:type.
        (
            "<cwmp:ChangeDUState><Operations xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"cwmp:UninstallOpStruct\"><UUID>3b2f7c1e-0000-4000-8000-00000000abcd</UUID><Version>1.2</Version><ExecutionEnvRef/></Operations><Operations xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"cwmp:UpdateOpStruct\"><UUID>3b2f7c1e-0000-4000-8000-00000000abce</UUID><URL>https://h/p</URL></Operations><CommandKey>k2</CommandKey></cwmp:ChangeDUState>",
            AcsRequest::ChangeDUState {
                command_key: "k2".into(),
                operations: vec![
                    DuOperation::Uninstall {
                        uuid: "3b2f7c1e-0000-4000-8000-00000000abcd".into(),
                        version: "1.2".into(),
                        execution_env: String::new(),
                    },
                    DuOperation::Update {
                        uuid: "3b2f7c1e-0000-4000-8000-00000000abce".into(),
                        version: String::new(),
                        url: "https://h/p".into(),
                        username: String::new(),
                        password: String::new(),
                    },
                ],
            },
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(request(body), expected, "{body}");
    }
}

#[test]
fn set_parameter_values_keeps_values_types_and_key() {
    let r = request(
        r#"<cwmp:SetParameterValues><ParameterList soap-enc:arrayType="cwmp:ParameterValueStruct[2]"><ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformInterval</Name><Value xsi:type="xsd:unsignedInt">300</Value></ParameterValueStruct><ParameterValueStruct><Name>Device.WiFi.SSID.1.SSID</Name><Value xsi:type="xsd:string">a &lt;b&gt; &amp; c</Value></ParameterValueStruct></ParameterList><ParameterKey>pk-7</ParameterKey></cwmp:SetParameterValues>"#,
    );
    let AcsRequest::SetParameterValues {
        parameters,
        parameter_key,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(parameter_key, "pk-7");
    assert_eq!(parameters[0].xsd_type.as_deref(), Some("unsignedInt"));
    assert_eq!(parameters[0].value, "300");
    assert_eq!(parameters[1].value, "a <b> & c");
}

#[test]
fn download_and_schedule_download() {
    let transfer = "<CommandKey>fw</CommandKey><FileType>1 Firmware Upgrade Image</FileType><URL>http://127.0.0.1/fw.bin</URL><Username>u</Username><Password>p</Password><FileSize>5000000</FileSize><TargetFileName>fw.bin</TargetFileName>";
    let r = request(&format!(
        "<cwmp:Download>{transfer}<DelaySeconds>5</DelaySeconds><SuccessURL/><FailureURL/></cwmp:Download>"
    ));
    let AcsRequest::Download(t) = r else { panic!() };
    assert_eq!(
        (t.file_size, t.delay_seconds, t.username.as_str()),
        (5_000_000, 5, "u")
    );
    let r = request(&format!(
        "<cwmp:ScheduleDownload>{transfer}<TimeWindowList><TimeWindowStruct><WindowStart>10</WindowStart><WindowEnd>100</WindowEnd><WindowMode>1 At Any Time</WindowMode><UserMessage/><MaxRetries>3</MaxRetries></TimeWindowStruct></TimeWindowList></cwmp:ScheduleDownload>"
    ));
    let AcsRequest::ScheduleDownload { windows, .. } = r else {
        panic!()
    };
    assert_eq!(
        (windows[0].start, windows[0].end, windows[0].max_retries),
        (10, 100, 3)
    );
}

#[test]
fn namespace_version_is_detected_whatever_the_prefix() {
    // Every namespace an ACS may use, cwmp-1-0 to cwmp-1-4 (field
    // interop issue), under any prefix.
    for version in 0..=4u8 {
        let text = format!(
            r#"<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/" xmlns:x="urn:dslforum-org:cwmp-1-{version}"><E:Header><x:ID E:mustUnderstand="1">id-{version}</x:ID><x:HoldRequests E:mustUnderstand="1">true</x:HoldRequests></E:Header><E:Body><x:InformResponse><MaxEnvelopes>1</MaxEnvelopes></x:InformResponse></E:Body></E:Envelope>"#
        );
        let envelope = decode(&text).unwrap();
        assert_eq!(envelope.version, CwmpVersion(version));
        assert_eq!(envelope.header.hold_requests, Some(true));
        assert_eq!(envelope.header.id, Some(format!("id-{version}")));
        assert_eq!(
            envelope.body,
            AcsMessage::Response(AcsResponse::Inform { max_envelopes: 1 })
        );
        // A request in that namespace is answered in it.
        let gpn = decode(&acs(
            version,
            "<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath><NextLevel>1</NextLevel></cwmp:GetParameterNames>",
        ))
        .unwrap();
        assert_eq!(gpn.version, CwmpVersion(version));
        let answer = Encoder::new(gpn.version).empty_response(Some("42"), "Reboot");
        assert!(answer.contains(&format!("xmlns:cwmp=\"urn:dslforum-org:cwmp-1-{version}\"")));
    }
    // Hostile input: only the five published namespaces are CWMP. An
    // integer parser took `cwmp-1-00` and `cwmp-1-+4` for versions.
    for bogus in ["00", "+4", "04", "5", "", "1 ", "٤"] {
        let text = format!(
            r#"<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/" xmlns:x="urn:dslforum-org:cwmp-1-{bogus}"><E:Header><x:ID E:mustUnderstand="1">7</x:ID></E:Header><E:Body><x:GetRPCMethods/></E:Body></E:Envelope>"#
        );
        let error = decode(&text).unwrap_err();
        assert_eq!(error.version, CwmpVersion::LATEST, "cwmp-1-{bogus}");
    }
}

#[test]
fn acs_faults_decode_with_parameter_faults() {
    let text = acs(
        2,
        "<soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8005</FaultCode><FaultString>Retry request</FaultString></cwmp:Fault></detail></soap-env:Fault>",
    );
    let AcsMessage::Fault(fault) = decode(&text).unwrap().body else {
        panic!()
    };
    assert_eq!(
        (fault.code, fault.message.as_str()),
        (8005, "Retry request")
    );
}

#[test]
fn bad_requests_name_their_fault() {
    use dm_cwmp::soap::DecodeError;
    let kind = |text: &str| -> (String, Option<String>) {
        let e: DecodeError = decode(text).unwrap_err();
        (format!("{:?}", e.kind), e.id)
    };
    assert_eq!(kind("not xml").0, "Malformed");
    assert_eq!(kind("<a/>").0, "Malformed");
    let unknown = kind(&acs(0, "<cwmp:Frobnicate/>"));
    assert_eq!(unknown, ("UnknownMethod".into(), Some("42".into())));
    assert_eq!(
        kind(&acs(0, "<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath><NextLevel>maybe</NextLevel></cwmp:GetParameterNames>")).0,
        "InvalidArguments"
    );
    assert_eq!(
        kind(&acs(
            0,
            "<cwmp:ScheduleInform><DelaySeconds>-1</DelaySeconds></cwmp:ScheduleInform>"
        ))
        .0,
        "InvalidArguments"
    );
    // An unknown header entry: ignored unless mustUnderstand="1".
    let ignored = acs(0, "<cwmp:GetRPCMethods/>").replace(
        "</soap-env:Header>",
        r#"<v:Extra xmlns:v="urn:vendor" soap-env:mustUnderstand="0">x</v:Extra></soap-env:Header>"#,
    );
    assert!(decode(&ignored).is_ok());
    let refused = ignored.replace("mustUnderstand=\"0\"", "mustUnderstand=\"1\"");
    assert_eq!(kind(&refused), ("MustUnderstand".into(), Some("42".into())));
}

fn emitted() -> Vec<(&'static str, String)> {
    let e = Encoder::new(CwmpVersion::LATEST);
    let id = Some("42");
    let values = vec![
        ParameterValue {
            name: "Device.DeviceInfo.UpTime".into(),
            value: "42".into(),
            xsd_type: "xsd:unsignedInt",
        },
        ParameterValue {
            name: "Device.WiFi.SSID.1.SSID".into(),
            value: "a <b> & \"c\"".into(),
            xsd_type: "xsd:string",
        },
    ];
    vec![
        (
            "Inform",
            e.inform(
                "1",
                &DeviceId {
                    manufacturer: "Acme & Co".into(),
                    oui: "00D09E".into(),
                    product_class: "Gateway".into(),
                    serial_number: "SN1".into(),
                },
                &[
                    Event {
                        code: "0 BOOTSTRAP".into(),
                        command_key: String::new(),
                    },
                    Event {
                        code: "M Reboot".into(),
                        command_key: "rb".into(),
                    },
                ],
                1,
                "2026-11-22T12:00:00Z",
                0,
                &values,
            ),
        ),
        (
            "GetParameterValuesResponse",
            e.get_parameter_values_response(id, values.clone())
                .to_text(),
        ),
        (
            "SetParameterValuesResponse",
            e.set_parameter_values_response(id, 0),
        ),
        (
            "GetParameterNamesResponse",
            e.get_parameter_names_response(
                id,
                vec![
                    ("Device.".into(), false),
                    ("Device.WiFi.SSID.1.SSID".into(), true),
                ],
            )
            .to_text(),
        ),
        (
            "SetParameterAttributesResponse",
            e.empty_response(id, "SetParameterAttributes"),
        ),
        (
            "GetParameterAttributesResponse",
            e.get_parameter_attributes_response(
                id,
                &[(
                    "Device.WiFi.SSID.1.SSID".into(),
                    2,
                    vec!["Subscriber".into()],
                )],
            ),
        ),
        ("AddObjectResponse", e.add_object_response(id, 3, 0)),
        ("DeleteObjectResponse", e.delete_object_response(id, 1)),
        ("RebootResponse", e.empty_response(id, "Reboot")),
        ("FactoryResetResponse", e.empty_response(id, "FactoryReset")),
        (
            "ScheduleInformResponse",
            e.empty_response(id, "ScheduleInform"),
        ),
        (
            "GetRPCMethodsResponse",
            e.get_rpc_methods_response(id, dm_cwmp::soap::CPE_METHODS),
        ),
        ("GetRPCMethods", e.get_rpc_methods("7")),
        (
            "Fault",
            e.fault(
                id,
                9003,
                "Invalid arguments",
                &[ParameterFault {
                    name: "Device.WiFi.SSID.1.SSID".into(),
                    code: 9007,
                    message: "Invalid parameter value".into(),
                }],
            ),
        ),
    ]
}

#[test]
fn every_emitted_message_validates_against_cwmp_1_4() {
    for (name, envelope) in emitted() {
        validate(&envelope, name);
        // A SOAP Fault's detail is checked as part of the envelope; every
        // other body is checked standalone too.
        if name != "Fault" {
            validate(&body_document(&envelope), &format!("{name} body"));
        }
    }
}

#[test]
fn emitted_messages_decode_back() {
    // What the CPE writes is read back by the same codec's tree parser
    // (an ACS-side view): escaping and structure survive.
    for (name, envelope) in emitted() {
        let document =
            dm_cwmp::soap::dom::parse(&envelope).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(document.root().name(), "Envelope");
    }
    let e = Encoder::new(CwmpVersion(0));
    let text = e
        .get_parameter_values_response(
            Some("9"),
            vec![ParameterValue {
                name: "X".into(),
                value: "<&>".into(),
                xsd_type: "xsd:string",
            }],
        )
        .to_text();
    assert!(text.contains("urn:dslforum-org:cwmp-1-0"));
    let document = dm_cwmp::soap::dom::parse(&text).unwrap();
    let value = document
        .root()
        .child("Body")
        .and_then(|b| b.child("GetParameterValuesResponse"))
        .and_then(|r| r.child("ParameterList"))
        .and_then(|l| l.child("ParameterValueStruct"))
        .and_then(|p| p.child("Value"))
        .unwrap();
    assert_eq!(value.text(), "<&>");
}

/// The pieces a body is written in, as the HTTP driver takes them.
fn chunks(body: &Body) -> Vec<String> {
    let mut cursor = Cursor::default();
    std::iter::from_fn(|| body.next_chunk(&mut cursor)).collect()
}

/// Field interop (GenieACS asks GetParameterNames of the whole tree): a
/// long list is written in pieces of about 16 KiB, never as one string,
/// and the pieces make the valid envelope whose length was announced.
#[test]
fn long_lists_are_written_in_pieces() {
    let e = Encoder::new(CwmpVersion::LATEST);
    let names: Vec<(String, bool)> = (1..=5000)
        .map(|i| (format!("Device.WiFi.SSID.{i}.SSID"), i % 2 == 0))
        .collect();
    let body = e.get_parameter_names_response(Some("7"), names);
    let pieces = chunks(&body);
    assert!(pieces.len() > 10, "{} pieces", pieces.len());
    let longest = pieces.iter().map(String::len).max().unwrap();
    assert!(
        longest < dm_cwmp::soap::CHUNK + 1024,
        "a piece of {longest} bytes"
    );
    let text: String = pieces.concat();
    assert_eq!(text.len(), body.len());
    assert_eq!(text, body.to_text());
    validate(&text, "GetParameterNamesResponse");
    assert!(text.contains("ParameterInfoStruct[5000]"));
    assert!(text.contains("<Name>Device.WiFi.SSID.5000.SSID</Name><Writable>1</Writable>"));
    // A long text (a log upload) goes in pieces too, never split inside a
    // character.
    let text = "journal: é ✓ 𝄞\n".repeat(4000);
    let body = Body::from(text.clone());
    let pieces = chunks(&body);
    assert!(pieces.len() > 3, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= dm_cwmp::soap::CHUNK + 3));
    assert_eq!(pieces.concat(), text);
    assert_eq!(body.len(), text.len());
    // A cursor carried over from another body never panics.
    let mut cursor = Cursor::default();
    let long = Body::from("é".repeat(20_000));
    long.next_chunk(&mut cursor);
    let short = Body::from("<x/>".to_owned());
    while short.next_chunk(&mut cursor).is_some() {}
    // A short message is one piece; the empty POST none.
    assert_eq!(chunks(&Body::from("<x/>".to_owned())), ["<x/>"]);
    assert!(chunks(&Body::empty()).is_empty());
    assert!(Body::empty().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The announced length (the POST's Content-Length) is what is
    /// written, whatever the names and values hold.
    #[test]
    fn announced_length_is_exact(
        entries in proptest::collection::vec((".{0,40}", ".{0,40}", any::<bool>()), 0..200),
    ) {
        let e = Encoder::new(CwmpVersion::LATEST);
        let names: Vec<(String, bool)> =
            entries.iter().map(|(n, _, w)| (n.clone(), *w)).collect();
        let values: Vec<ParameterValue> = entries
            .iter()
            .map(|(n, v, _)| ParameterValue { name: n.clone(), value: v.clone(), xsd_type: "xsd:string" })
            .collect();
        for body in [
            e.get_parameter_names_response(Some("1"), names),
            e.get_parameter_values_response(None, values),
        ] {
            let text = chunks(&body).concat();
            prop_assert_eq!(text.len(), body.len());
            prop_assert!(dm_cwmp::soap::dom::parse(&text).is_ok());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode(&text);
    }

    #[test]
    fn truncated_envelopes_never_panic(cut in 0usize..2000, pick in 0usize..4) {
        let bodies = [
            r#"<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.WiFi.SSID.1.SSID</Name><Value xsi:type="xsd:string">x</Value></ParameterValueStruct></ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues>"#,
            "<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath><NextLevel>1</NextLevel></cwmp:GetParameterNames>",
            "<cwmp:Download><CommandKey>fw</CommandKey><FileType>1 Firmware Upgrade Image</FileType><URL>http://127.0.0.1/</URL><FileSize>1</FileSize></cwmp:Download>",
            "<soap-env:Fault><faultcode>Client</faultcode><detail><cwmp:Fault><FaultCode>8005</FaultCode></cwmp:Fault></detail></soap-env:Fault>",
        ];
        let text = acs(2, bodies[pick]);
        let cut = cut.min(text.len());
        if text.is_char_boundary(cut) {
            let _ = decode(&text[..cut]);
        }
    }

    #[test]
    fn mutated_envelopes_never_panic(position in 0usize..1000, byte in any::<u8>()) {
        let mut bytes = acs(2, "<cwmp:GetParameterValues><ParameterNames><string>Device.</string></ParameterNames></cwmp:GetParameterValues>").into_bytes();
        let position = position % bytes.len();
        bytes[position] = byte;
        let _ = decode(&String::from_utf8_lossy(&bytes));
    }
}
