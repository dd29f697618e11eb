//! Structure-aware driving of the CWMP session engine: sequences of ACS
//! messages (every RPC, with real and near-miss parameter names), HTTP
//! statuses, timers, connection requests and transfer results, as quinn's
//! fuzz targets drive a connection.

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use dm_cwmp::session::Engine;

use crate::TR181_NAMES;

#[derive(Arbitrary, Debug)]
pub enum Name {
    Known(u8),
    Other(String),
}

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Known(i) => TR181_NAMES[usize::from(*i) % TR181_NAMES.len()].to_owned(),
            Name::Other(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Message {
    Empty,
    InformResponse {
        max_envelopes: u8,
    },
    GetRpcMethods,
    GetParameterValues(Vec<Name>),
    SetParameterValues {
        values: Vec<(Name, String, Option<u8>)>,
        key: String,
    },
    GetParameterNames {
        path: Name,
        next_level: bool,
    },
    SetParameterAttributes(Vec<(Name, Option<u8>, Option<Vec<String>>)>),
    GetParameterAttributes(Vec<Name>),
    AddObject {
        object: Name,
        key: String,
    },
    DeleteObject {
        object: Name,
        key: String,
    },
    Reboot {
        key: String,
    },
    FactoryReset,
    Download {
        key: String,
        file_type: u8,
        url: String,
        size: u32,
        delay: u16,
    },
    Upload {
        key: String,
        file_type: u8,
        url: String,
    },
    ScheduleInform {
        delay: u32,
        key: String,
    },
    GetQueuedTransfers,
    CancelTransfer {
        key: String,
    },
    ChangeDuState {
        url: String,
        uuid: String,
    },
    Fault {
        code: u16,
    },
    TransferCompleteResponse,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub enum Step {
    Respond {
        status: u8,
        message: Message,
        version: u8,
    },
    Timeout {
        seconds: u16,
    },
    ConnectionRequest,
    TransportError,
    TransferResult {
        fault: u16,
    },
    DuResult,
    Inform(u8),
}

const FILE_TYPES: [&str; 5] = [
    "1 Firmware Upgrade Image",
    "3 Vendor Configuration File",
    "2 Vendor Log File",
    "1 Vendor Configuration File",
    "X 00D09E Custom",
];

const EVENTS: [&str; 4] = [
    "2 PERIODIC",
    "6 CONNECTION REQUEST",
    "GetRPCMethods",
    "0 BOOTSTRAP",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn names(list: &[Name]) -> String {
    list.iter()
        .take(64)
        .map(|n| format!("<string>{}</string>", escape(&n.text())))
        .collect()
}

fn body(message: &Message) -> String {
    match message {
        Message::Empty => String::new(),
        Message::InformResponse { max_envelopes } => format!(
            "<cwmp:InformResponse><MaxEnvelopes>{max_envelopes}</MaxEnvelopes></cwmp:InformResponse>"
        ),
        Message::GetRpcMethods => "<cwmp:GetRPCMethods/>".into(),
        Message::GetParameterValues(list) => format!(
            "<cwmp:GetParameterValues><ParameterNames>{}</ParameterNames></cwmp:GetParameterValues>",
            names(list)
        ),
        Message::SetParameterValues { values, key } => {
            let types = [
                "xsd:string",
                "xsd:unsignedInt",
                "xsd:boolean",
                "xsd:dateTime",
                "xsd:int",
            ];
            let list: String = values
                .iter()
                .take(32)
                .map(|(name, value, t)| {
                    let t = t.map_or(String::new(), |t| {
                        format!(" xsi:type=\"{}\"", types[usize::from(t) % types.len()])
                    });
                    format!(
                        "<ParameterValueStruct><Name>{}</Name><Value{t}>{}</Value></ParameterValueStruct>",
                        escape(&name.text()),
                        escape(value)
                    )
                })
                .collect();
            format!(
                "<cwmp:SetParameterValues><ParameterList>{list}</ParameterList><ParameterKey>{}</ParameterKey></cwmp:SetParameterValues>",
                escape(key)
            )
        }
        Message::GetParameterNames { path, next_level } => format!(
            "<cwmp:GetParameterNames><ParameterPath>{}</ParameterPath><NextLevel>{}</NextLevel></cwmp:GetParameterNames>",
            escape(&path.text()),
            u8::from(*next_level)
        ),
        Message::SetParameterAttributes(list) => {
            let list: String = list
                .iter()
                .take(32)
                .map(|(name, notification, access)| {
                    format!(
                        "<SetParameterAttributesStruct><Name>{}</Name><NotificationChange>{}</NotificationChange><Notification>{}</Notification><AccessListChange>{}</AccessListChange><AccessList>{}</AccessList></SetParameterAttributesStruct>",
                        escape(&name.text()),
                        u8::from(notification.is_some()),
                        notification.unwrap_or(0),
                        u8::from(access.is_some()),
                        access
                            .iter()
                            .flatten()
                            .take(4)
                            .map(|a| format!("<string>{}</string>", escape(a)))
                            .collect::<String>()
                    )
                })
                .collect();
            format!(
                "<cwmp:SetParameterAttributes><ParameterList>{list}</ParameterList></cwmp:SetParameterAttributes>"
            )
        }
        Message::GetParameterAttributes(list) => format!(
            "<cwmp:GetParameterAttributes><ParameterNames>{}</ParameterNames></cwmp:GetParameterAttributes>",
            names(list)
        ),
        Message::AddObject { object, key } => format!(
            "<cwmp:AddObject><ObjectName>{}</ObjectName><ParameterKey>{}</ParameterKey></cwmp:AddObject>",
            escape(&object.text()),
            escape(key)
        ),
        Message::DeleteObject { object, key } => format!(
            "<cwmp:DeleteObject><ObjectName>{}</ObjectName><ParameterKey>{}</ParameterKey></cwmp:DeleteObject>",
            escape(&object.text()),
            escape(key)
        ),
        Message::Reboot { key } => {
            format!(
                "<cwmp:Reboot><CommandKey>{}</CommandKey></cwmp:Reboot>",
                escape(key)
            )
        }
        Message::FactoryReset => "<cwmp:FactoryReset/>".into(),
        Message::Download {
            key,
            file_type,
            url,
            size,
            delay,
        } => format!(
            "<cwmp:Download><CommandKey>{}</CommandKey><FileType>{}</FileType><URL>{}</URL><Username></Username><Password></Password><FileSize>{size}</FileSize><TargetFileName></TargetFileName><DelaySeconds>{delay}</DelaySeconds><SuccessURL></SuccessURL><FailureURL></FailureURL></cwmp:Download>",
            escape(key),
            FILE_TYPES[usize::from(*file_type) % FILE_TYPES.len()],
            escape(url)
        ),
        Message::Upload {
            key,
            file_type,
            url,
        } => format!(
            "<cwmp:Upload><CommandKey>{}</CommandKey><FileType>{}</FileType><URL>{}</URL><Username></Username><Password></Password><DelaySeconds>0</DelaySeconds></cwmp:Upload>",
            escape(key),
            FILE_TYPES[usize::from(*file_type) % FILE_TYPES.len()],
            escape(url)
        ),
        Message::ScheduleInform { delay, key } => format!(
            "<cwmp:ScheduleInform><DelaySeconds>{delay}</DelaySeconds><CommandKey>{}</CommandKey></cwmp:ScheduleInform>",
            escape(key)
        ),
        Message::GetQueuedTransfers => "<cwmp:GetQueuedTransfers/>".into(),
        Message::CancelTransfer { key } => format!(
            "<cwmp:CancelTransfer><CommandKey>{}</CommandKey></cwmp:CancelTransfer>",
            escape(key)
        ),
        Message::ChangeDuState { url, uuid } => format!(
            "<cwmp:ChangeDUState><Operations><InstallOpStruct><URL>{}</URL><UUID>{}</UUID><Username></Username><Password></Password><ExecutionEnvRef></ExecutionEnvRef></InstallOpStruct></Operations><CommandKey>du</CommandKey></cwmp:ChangeDUState>",
            escape(url),
            escape(uuid)
        ),
        Message::Fault { code } => format!(
            "<soap-env:Fault><faultcode>Server</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>{code}</FaultCode><FaultString>x</FaultString></cwmp:Fault></detail></soap-env:Fault>"
        ),
        Message::TransferCompleteResponse => "<cwmp:TransferCompleteResponse/>".into(),
        Message::Raw(text) => text.clone(),
    }
}

fn envelope(version: u8, message: &Message) -> String {
    if matches!(message, Message::Empty) {
        return String::new();
    }
    if let Message::Raw(text) = message {
        return text.clone();
    }
    format!(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-{}"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">id</cwmp:ID></soap-env:Header><soap-env:Body>{}</soap-env:Body></soap-env:Envelope>"#,
        version % 5,
        body(message)
    )
}

/// Drives a fresh engine on a fresh tree through `steps`. Every POST the
/// engine makes must be well-formed XML.
pub fn run(steps: &[Step]) {
    let mut tree = crate::tree();
    let mut now = Instant::now();
    let mut wall: i64 = 1_800_000_000;
    let mut engine = Engine::new(&mut tree, now, wall, 7);
    let mut transfers = Vec::new();
    let mut du = Vec::new();
    for step in steps.iter().take(64) {
        match step {
            Step::Respond {
                status,
                message,
                version,
            } => {
                let status = [200u16, 204, 401, 500, 302, 403][usize::from(*status) % 6];
                let body = envelope(*version, message);
                engine.handle_response(&mut tree, now, wall, status, body.as_bytes());
            }
            Step::Timeout { seconds } => {
                now += Duration::from_secs(u64::from(*seconds));
                wall += i64::from(*seconds);
                engine.handle_timeout(&mut tree, now, wall);
            }
            Step::ConnectionRequest => engine.handle_connection_request(&mut tree),
            Step::TransportError => engine.handle_transport_error(&mut tree, now, "broken"),
            Step::TransferResult { fault } => {
                if let Some(transfer) = transfers.pop() {
                    let transfer: dm_cwmp::session::QueuedDownload = transfer;
                    engine.transfer_complete(
                        &mut tree,
                        dm_cwmp::session::TransferResult {
                            command_key: transfer.command_key,
                            fault_code: u32::from(*fault),
                            fault_string: String::new(),
                            start: wall,
                            complete: wall,
                            upload: transfer.upload,
                            scheduled: transfer.scheduled,
                            autonomous: None,
                        },
                    );
                }
            }
            Step::DuResult => {
                if let Some(change) = du.pop() {
                    let change: dm_cwmp::session::DuChange = change;
                    engine.du_change_complete(&mut tree, &change.command_key, Vec::new());
                }
            }
            Step::Inform(event) => {
                let _ =
                    engine.request_session(&mut tree, EVENTS[usize::from(*event) % EVENTS.len()]);
            }
        }
        engine.poll_start(&mut tree, wall);
        while let Some(post) = engine.poll_transmit() {
            let text = post.to_text();
            assert_eq!(text.len(), post.len(), "the announced length is the length");
            if !text.is_empty() {
                assert!(
                    dm_cwmp::soap::dom::parse(&text).is_ok(),
                    "an ill-formed POST: {text}"
                );
            }
        }
        while engine.poll_event().is_some() {}
        if let Some(transfer) = engine.poll_transfer(&mut tree, wall) {
            transfers.push(transfer);
        }
        if let Some(change) = engine.poll_du_change(&mut tree) {
            du.push(change);
        }
    }
}
