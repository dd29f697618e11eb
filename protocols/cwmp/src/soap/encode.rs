//! Encoding what the CPE sends.
//!
//! Envelopes are written as text with every value escaped
//! (`quick_xml::escape`); the element order is the cwmp-1-4.xsd sequence
//! order, which tests check with xmllint.

use std::fmt::Write as _;

use super::{CwmpVersion, Kick, ParameterFault};

/// One ParameterValueStruct to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterValue {
    pub name: String,
    pub value: String,
    /// `xsd:string`, `xsd:unsignedInt`, ...
    pub xsd_type: &'static str,
}

/// The DeviceIdStruct of an Inform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceId {
    pub manufacturer: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
}

/// An EventStruct of an Inform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub code: String,
    pub command_key: String,
}

/// A queued transfer as GetQueuedTransfers reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedTransfer {
    pub command_key: String,
    /// 1 not yet started, 2 in progress.
    pub state: u8,
    pub is_download: bool,
    pub file_type: String,
    pub file_size: u64,
    pub target_file_name: String,
}

/// Writes envelopes in one cwmp namespace version.
#[derive(Clone, Copy, Debug)]
pub struct Encoder {
    pub version: CwmpVersion,
}

impl Encoder {
    pub fn new(version: CwmpVersion) -> Encoder {
        Encoder { version }
    }

    /// A whole envelope around `body`, with `cwmp:ID` when given.
    fn envelope(&self, id: Option<&str>, body: &str) -> String {
        let mut out = self.envelope_head(id, body.len() + ENVELOPE_TAIL.len());
        out.push_str(body);
        out.push_str(ENVELOPE_TAIL);
        out
    }

    /// An envelope up to its Body's content, with room for `more` bytes.
    fn envelope_head(&self, id: Option<&str>, more: usize) -> String {
        let mut out = String::with_capacity(more + 512);
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = write!(
            out,
            "\n<soap-env:Envelope xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\" \
             xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:cwmp=\"{}\">",
            self.version.namespace()
        );
        match id {
            Some(id) => {
                let _ = write!(
                    out,
                    "<soap-env:Header><cwmp:ID soap-env:mustUnderstand=\"1\">{}</cwmp:ID></soap-env:Header>",
                    escape(id)
                );
            }
            None => out.push_str("<soap-env:Header/>"),
        }
        out.push_str("<soap-env:Body>");
        out
    }

    /// Inform (TR-069 §A.3.3.1).
    #[allow(clippy::too_many_arguments)]
    pub fn inform(
        &self,
        id: &str,
        device: &DeviceId,
        events: &[Event],
        max_envelopes: u32,
        current_time: &str,
        retry_count: u32,
        parameters: &[ParameterValue],
    ) -> String {
        // The DeviceIdStruct's facets (cwmp-1-4.xsd): what the tree holds
        // comes from the configuration and the platform, and an Inform the
        // ACS's parser refuses would leave the device unmanaged for good,
        // so the fields are cut to their maximum lengths and an OUI that
        // is not six hex digits is sent as 000000.
        let clip = |text: &str| -> String { text.chars().take(64).collect() };
        let oui = device.oui.to_ascii_uppercase();
        let oui = if oui.len() == 6 && oui.bytes().all(|b| b.is_ascii_hexdigit()) {
            oui
        } else {
            "000000".to_owned()
        };
        let device = &DeviceId {
            manufacturer: clip(&device.manufacturer),
            oui,
            product_class: clip(&device.product_class),
            serial_number: clip(&device.serial_number),
        };
        let mut body = String::with_capacity(1024 + parameters.len() * 128);
        let _ = write!(
            body,
            "<cwmp:Inform><DeviceId><Manufacturer>{}</Manufacturer><OUI>{}</OUI>\
             <ProductClass>{}</ProductClass><SerialNumber>{}</SerialNumber></DeviceId>\
             <Event soap-enc:arrayType=\"cwmp:EventStruct[{}]\">",
            escape(device.manufacturer.as_str()),
            escape(device.oui.as_str()),
            escape(device.product_class.as_str()),
            escape(device.serial_number.as_str()),
            events.len()
        );
        for event in events {
            let _ = write!(
                body,
                "<EventStruct><EventCode>{}</EventCode><CommandKey>{}</CommandKey></EventStruct>",
                escape(event.code.as_str()),
                escape(event.command_key.as_str())
            );
        }
        let _ = write!(
            body,
            "</Event><MaxEnvelopes>{max_envelopes}</MaxEnvelopes><CurrentTime>{}</CurrentTime>\
             <RetryCount>{retry_count}</RetryCount>",
            escape(current_time)
        );
        write_values(&mut body, parameters);
        body.push_str("</cwmp:Inform>");
        self.envelope(Some(id), &body)
    }

    /// GetParameterValuesResponse, written out as it is sent ([`Body`]).
    pub fn get_parameter_values_response(
        &self,
        id: Option<&str>,
        values: Vec<ParameterValue>,
    ) -> Body {
        self.list_response(
            id,
            "GetParameterValuesResponse",
            "ParameterValueStruct",
            List::Values(values),
        )
    }

    /// A response whose one argument is ParameterList, an array of `item`.
    fn list_response(&self, id: Option<&str>, method: &str, item: &str, list: List) -> Body {
        let mut head = self.envelope_head(id, 128);
        let _ = write!(
            head,
            "<cwmp:{method}><ParameterList soap-enc:arrayType=\"cwmp:{item}[{}]\">",
            list.len()
        );
        let tail = format!("</ParameterList></cwmp:{method}>{ENVELOPE_TAIL}");
        Body::list(head, list, tail)
    }

    /// Status 0: applied; 1: committed, applied later (TR-069 §A.3.2.1).
    pub fn set_parameter_values_response(&self, id: Option<&str>, status: u8) -> String {
        self.envelope(
            id,
            &format!("<cwmp:SetParameterValuesResponse><Status>{status}</Status></cwmp:SetParameterValuesResponse>"),
        )
    }

    /// GetParameterNamesResponse, written out as it is sent ([`Body`]).
    pub fn get_parameter_names_response(
        &self,
        id: Option<&str>,
        names: Vec<(String, bool)>,
    ) -> Body {
        self.list_response(
            id,
            "GetParameterNamesResponse",
            "ParameterInfoStruct",
            List::Names(names),
        )
    }

    pub fn get_parameter_attributes_response(
        &self,
        id: Option<&str>,
        attributes: &[(String, u8, Vec<String>)],
    ) -> String {
        let mut body = String::with_capacity(128 + attributes.len() * 160);
        let _ = write!(
            body,
            "<cwmp:GetParameterAttributesResponse><ParameterList soap-enc:arrayType=\"cwmp:ParameterAttributeStruct[{}]\">",
            attributes.len()
        );
        for (name, notification, access_list) in attributes {
            let _ = write!(
                body,
                "<ParameterAttributeStruct><Name>{}</Name><Notification>{notification}</Notification>\
                 <AccessList soap-enc:arrayType=\"xsd:string[{}]\">",
                escape(name.as_str()),
                access_list.len()
            );
            for entry in access_list {
                let _ = write!(body, "<string>{}</string>", escape(entry.as_str()));
            }
            body.push_str("</AccessList></ParameterAttributeStruct>");
        }
        body.push_str("</ParameterList></cwmp:GetParameterAttributesResponse>");
        self.envelope(id, &body)
    }

    pub fn add_object_response(&self, id: Option<&str>, instance: u32, status: u8) -> String {
        self.envelope(
            id,
            &format!(
                "<cwmp:AddObjectResponse><InstanceNumber>{instance}</InstanceNumber><Status>{status}</Status></cwmp:AddObjectResponse>"
            ),
        )
    }

    pub fn delete_object_response(&self, id: Option<&str>, status: u8) -> String {
        self.envelope(
            id,
            &format!(
                "<cwmp:DeleteObjectResponse><Status>{status}</Status></cwmp:DeleteObjectResponse>"
            ),
        )
    }

    pub fn get_rpc_methods_response(&self, id: Option<&str>, methods: &[&str]) -> String {
        let mut body = format!(
            "<cwmp:GetRPCMethodsResponse><MethodList soap-enc:arrayType=\"xsd:string[{}]\">",
            methods.len()
        );
        for method in methods {
            let _ = write!(body, "<string>{}</string>", escape(*method));
        }
        body.push_str("</MethodList></cwmp:GetRPCMethodsResponse>");
        self.envelope(id, &body)
    }

    /// A response with no arguments: RebootResponse, FactoryResetResponse,
    /// ScheduleInformResponse, SetVouchersResponse,
    /// SetParameterAttributesResponse, CancelTransferResponse.
    pub fn empty_response(&self, id: Option<&str>, method: &str) -> String {
        self.envelope(id, &format!("<cwmp:{method}Response/>"))
    }

    /// Get(All)QueuedTransfersResponse (TR-069 §A.4.1.5, §A.4.1.7): each
    /// transfer as (CommandKey, State: 1 not started, 2 in progress, file
    /// type, size, target file name).
    pub fn queued_transfers_response(
        &self,
        id: Option<&str>,
        all: bool,
        transfers: &[QueuedTransfer],
    ) -> String {
        let (method, item) = if all {
            ("GetAllQueuedTransfersResponse", "AllQueuedTransferStruct")
        } else {
            ("GetQueuedTransfersResponse", "QueuedTransferStruct")
        };
        let mut body = format!(
            "<cwmp:{method}><TransferList soap-enc:arrayType=\"cwmp:{item}[{}]\">",
            transfers.len()
        );
        for t in transfers {
            let _ = write!(
                body,
                "<{item}><CommandKey>{}</CommandKey><State>{}</State>",
                escape(t.command_key.as_str()),
                t.state
            );
            if all {
                let _ = write!(
                    body,
                    "<IsDownload>{}</IsDownload><FileType>{}</FileType><FileSize>{}</FileSize>\
                     <TargetFileName>{}</TargetFileName>",
                    u8::from(t.is_download),
                    escape(t.file_type.as_str()),
                    t.file_size,
                    escape(t.target_file_name.as_str())
                );
            }
            let _ = write!(body, "</{item}>");
        }
        let _ = write!(body, "</TransferList></cwmp:{method}>");
        self.envelope(id, &body)
    }

    /// DownloadResponse (TR-069 §A.3.2.8): Status 1, the transfer is
    /// queued and TransferComplete will tell how it went.
    pub fn download_response(&self, id: Option<&str>) -> String {
        self.envelope(
            id,
            "<cwmp:DownloadResponse><Status>1</Status>\
             <StartTime>0001-01-01T00:00:00Z</StartTime>\
             <CompleteTime>0001-01-01T00:00:00Z</CompleteTime></cwmp:DownloadResponse>",
        )
    }

    /// UploadResponse (TR-069 §A.4.1.5): Status 1, queued.
    pub fn upload_response(&self, id: Option<&str>) -> String {
        self.envelope(
            id,
            "<cwmp:UploadResponse><Status>1</Status>\
             <StartTime>0001-01-01T00:00:00Z</StartTime>\
             <CompleteTime>0001-01-01T00:00:00Z</CompleteTime></cwmp:UploadResponse>",
        )
    }

    /// The CPE's TransferComplete request (TR-069 §A.3.3.2); fault code 0
    /// is success.
    pub fn transfer_complete(
        &self,
        id: &str,
        command_key: &str,
        fault_code: u32,
        fault_string: &str,
        start_time: &str,
        complete_time: &str,
    ) -> String {
        self.envelope(
            Some(id),
            &format!(
                "<cwmp:TransferComplete><CommandKey>{}</CommandKey>\
                 <FaultStruct><FaultCode>{fault_code}</FaultCode><FaultString>{}</FaultString></FaultStruct>\
                 <StartTime>{}</StartTime><CompleteTime>{}</CompleteTime></cwmp:TransferComplete>",
                escape(command_key),
                escape(fault_string),
                escape(start_time),
                escape(complete_time)
            ),
        )
    }

    /// The CPE's AutonomousTransferComplete request (TR-069 §A.3.3.3):
    /// a transfer the ACS did not ask for.
    pub fn autonomous_transfer_complete(
        &self,
        id: &str,
        transfer: &crate::session::AutonomousTransfer,
        fault_code: u32,
        fault_string: &str,
        start_time: &str,
        complete_time: &str,
    ) -> String {
        self.envelope(
            Some(id),
            &format!(
                "<cwmp:AutonomousTransferComplete><AnnounceURL>{}</AnnounceURL>\
                 <TransferURL>{}</TransferURL><IsDownload>{}</IsDownload>\
                 <FileType>{}</FileType><FileSize>{}</FileSize>\
                 <TargetFileName>{}</TargetFileName>\
                 <FaultStruct><FaultCode>{fault_code}</FaultCode><FaultString>{}</FaultString></FaultStruct>\
                 <StartTime>{}</StartTime><CompleteTime>{}</CompleteTime></cwmp:AutonomousTransferComplete>",
                escape(&transfer.announce_url),
                escape(&transfer.transfer_url),
                if transfer.is_download { "1" } else { "0" },
                escape(&transfer.file_type),
                transfer.file_size.min(u64::from(u32::MAX)),
                escape(&transfer.target_file_name),
                escape(fault_string),
                escape(start_time),
                escape(complete_time)
            ),
        )
    }

    /// The CPE's DUStateChangeComplete request (TR-069 §A.4.2.2).
    pub fn du_state_change_complete(
        &self,
        id: &str,
        command_key: &str,
        results: &[(super::DuResult, String, String)],
    ) -> String {
        // The XSD repeats Results itself, one OpResultStruct each.
        let mut body = String::from("<cwmp:DUStateChangeComplete>");
        for (r, start, complete) in results {
            let _ = write!(
                body,
                "<Results><UUID>{}</UUID><DeploymentUnitRef>{}</DeploymentUnitRef>\
                 <Version>{}</Version><CurrentState>{}</CurrentState><Resolved>{}</Resolved>\
                 <ExecutionUnitRefList>{}</ExecutionUnitRefList><StartTime>{}</StartTime>\
                 <CompleteTime>{}</CompleteTime><Fault><FaultCode>{}</FaultCode>\
                 <FaultString>{}</FaultString></Fault></Results>",
                escape(&r.uuid),
                escape(&r.deployment_unit_ref),
                escape(&r.version),
                escape(&r.current_state),
                if r.resolved { "1" } else { "0" },
                escape(r.execution_unit_refs()),
                escape(start),
                escape(complete),
                r.fault_code,
                escape(&r.fault_string),
            );
        }
        let _ = write!(
            body,
            "<CommandKey>{}</CommandKey></cwmp:DUStateChangeComplete>",
            escape(command_key)
        );
        self.envelope(Some(id), &body)
    }

    /// The CPE's RequestDownload (TR-069 §A.4.2.1): asks the ACS for a
    /// file of `file_type`, with up to 16 name/value arguments.
    pub fn request_download(&self, id: &str, file_type: &str, args: &[(String, String)]) -> String {
        let mut body = format!(
            "<cwmp:RequestDownload><FileType>{}</FileType>\
             <FileTypeArg soap-enc:arrayType=\"cwmp:ArgStruct[{}]\">",
            escape(file_type),
            args.len().min(16)
        );
        for (name, value) in args.iter().take(16) {
            let _ = write!(
                body,
                "<ArgStruct><Name>{}</Name><Value>{}</Value></ArgStruct>",
                escape(name),
                escape(value)
            );
        }
        body.push_str("</FileTypeArg></cwmp:RequestDownload>");
        self.envelope(Some(id), &body)
    }

    /// The CPE's Kicked (TR-069 §A.4.2.3): a
    /// web page on the device was "kicked" by the ACS's web site; the ACS
    /// answers with the page to go to next.
    pub fn kicked(&self, id: &str, kick: &Kick) -> String {
        let body = format!(
            "<cwmp:Kicked><Command>{}</Command><Referer>{}</Referer><Arg>{}</Arg>\
             <Next>{}</Next></cwmp:Kicked>",
            escape(&kick.command),
            escape(&kick.referer),
            escape(&kick.arg),
            escape(&kick.next)
        );
        self.envelope(Some(id), &body)
    }

    /// The CPE's GetRPCMethods request to the ACS.
    pub fn get_rpc_methods(&self, id: &str) -> String {
        self.envelope(Some(id), "<cwmp:GetRPCMethods/>")
    }

    /// A SOAP Fault with a CWMP fault detail (TR-069 §A.5.1). Codes
    /// 9000–9019 other than 9000/9002/9004-class server errors are the
    /// client's fault ("Client"); internal errors are "Server".
    pub fn fault(
        &self,
        id: Option<&str>,
        code: u32,
        message: &str,
        parameters: &[ParameterFault],
    ) -> String {
        // SOAP's Server faultcode for the CPE's own trouble (TR-069 §A.5).
        let faultcode = if [
            super::FaultCode::InternalError,
            super::FaultCode::ResourcesExceeded,
        ]
        .iter()
        .any(|f| f.code() == code)
        {
            "Server"
        } else {
            "Client"
        };
        let mut body = format!(
            "<soap-env:Fault><faultcode>{faultcode}</faultcode><faultstring>CWMP fault</faultstring>\
             <detail><cwmp:Fault><FaultCode>{code}</FaultCode><FaultString>{}</FaultString>",
            escape(message)
        );
        for p in parameters {
            let _ = write!(
                body,
                "<SetParameterValuesFault><ParameterName>{}</ParameterName><FaultCode>{}</FaultCode>\
                 <FaultString>{}</FaultString></SetParameterValuesFault>",
                escape(p.name.as_str()),
                p.code,
                escape(p.message.as_str())
            );
        }
        body.push_str("</cwmp:Fault></detail></soap-env:Fault>");
        self.envelope(id, &body)
    }

    /// A SOAP-level fault with no CWMP detail: MustUnderstand (SOAP 1.1
    /// §4.4) or a message too broken to answer in CWMP terms.
    pub fn soap_fault(&self, id: Option<&str>, faultcode: &str, message: &str) -> String {
        self.envelope(
            id,
            &format!(
                "<soap-env:Fault><faultcode>soap-env:{faultcode}</faultcode><faultstring>{}</faultstring></soap-env:Fault>",
                escape(message)
            ),
        )
    }
}

/// What closes every envelope.
const ENVELOPE_TAIL: &str = "</soap-env:Body></soap-env:Envelope>";

fn write_values(body: &mut String, values: &[ParameterValue]) {
    let _ = write!(
        body,
        "<ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[{}]\">",
        values.len()
    );
    for v in values {
        write_value(body, v);
    }
    body.push_str("</ParameterList>");
}

fn write_value(body: &mut String, v: &ParameterValue) {
    let _ = write!(
        body,
        "<ParameterValueStruct><Name>{}</Name><Value xsi:type=\"{}\">{}</Value></ParameterValueStruct>",
        escape(v.name.as_str()),
        v.xsd_type,
        escape(v.value.as_str())
    );
}

/// How much of a long list a [`Body`] writes at a time.
pub const CHUNK: usize = 16 * 1024;

/// A message to POST. A message with a long list (a GetParameterNames or
/// GetParameterValues response covering a whole tree: tens of thousands
/// of entries) keeps the entries and writes their XML piece by piece as
/// the connection takes it, never the whole envelope at once (field
/// interop issue: GenieACS asks for the whole tree with NextLevel=false).
/// Its exact length is known beforehand, so the POST carries a
/// Content-Length rather than chunked transfer coding, which some ACSs
/// mishandle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    head: String,
    list: List,
    tail: String,
    len: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum List {
    #[default]
    Nothing,
    Names(Vec<(String, bool)>),
    Values(Vec<ParameterValue>),
}

impl List {
    fn len(&self) -> usize {
        match self {
            List::Nothing => 0,
            List::Names(names) => names.len(),
            List::Values(values) => values.len(),
        }
    }

    /// The length `write` gives item `i`, counted without writing it.
    fn item_len(&self, i: usize) -> usize {
        match self {
            List::Nothing => 0,
            List::Names(names) => {
                "<ParameterInfoStruct><Name></Name><Writable>0</Writable></ParameterInfoStruct>"
                    .len()
                    + escaped_len(&names[i].0)
            }
            List::Values(values) => {
                let v = &values[i];
                "<ParameterValueStruct><Name></Name><Value xsi:type=\"\"></Value></ParameterValueStruct>"
                    .len()
                    + escaped_len(&v.name)
                    + v.xsd_type.len()
                    + escaped_len(&v.value)
            }
        }
    }

    fn write(&self, i: usize, out: &mut String) {
        match self {
            List::Nothing => {}
            List::Names(names) => {
                let (name, writable) = &names[i];
                let _ = write!(
                    out,
                    "<ParameterInfoStruct><Name>{}</Name><Writable>{}</Writable></ParameterInfoStruct>",
                    escape(name.as_str()),
                    // xsd:boolean allows both spellings; "1"/"0" is what
                    // every ACS reads (acsrs 0.5 parses Writable as an
                    // integer; GenieACS takes either).
                    if *writable { "1" } else { "0" }
                );
            }
            List::Values(values) => write_value(out, &values[i]),
        }
    }
}

/// Where writing a [`Body`] out has got to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    stage: Stage,
    item: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stage {
    #[default]
    Head,
    List,
    Tail,
    Done,
}

impl Body {
    fn list(head: String, list: List, tail: String) -> Body {
        let len =
            head.len() + tail.len() + (0..list.len()).map(|i| list.item_len(i)).sum::<usize>();
        Body {
            head,
            list,
            tail,
            len,
        }
    }

    /// The empty POST (TR-069 §3.7.2.4).
    pub fn empty() -> Body {
        Body::default()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// How many parameters (names or values) it lists.
    pub fn items(&self) -> usize {
        self.list.len()
    }

    /// The fault code, when it is a SOAP Fault: the CWMP one, or 0 for a
    /// SOAP-level fault without CWMP detail (MustUnderstand).
    pub fn fault_code(&self) -> Option<u32> {
        if !self.head.contains("<soap-env:Fault>") {
            return None;
        }
        let code = self
            .head
            .split("<FaultCode>")
            .nth(1)
            .and_then(|c| c.split('<').next());
        Some(code.and_then(|c| c.parse().ok()).unwrap_or(0))
    }

    /// The empty POST.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next piece from `cursor` on: about [`CHUNK`] bytes of a list,
    /// or a short message whole; `None` once all is written.
    pub fn next_chunk(&self, cursor: &mut Cursor) -> Option<String> {
        let mut out = String::new();
        loop {
            match cursor.stage {
                // The head (a whole short message, or what precedes a list)
                // goes in pieces too: a long text body (a log upload) is
                // not copied whole. `item` counts its bytes until done.
                Stage::Head => {
                    // A cursor from another body may point anywhere: it
                    // ends the writing rather than cut inside a character.
                    let Some(rest) = self.head.get(cursor.item..) else {
                        cursor.stage = Stage::Done;
                        break;
                    };
                    let room = CHUNK.saturating_sub(out.len()).max(1);
                    let mut end = room.min(rest.len());
                    while !rest.is_char_boundary(end) {
                        end += 1;
                    }
                    if out.capacity() == 0 {
                        out.reserve(if self.list.len() > 0 {
                            CHUNK + 256
                        } else {
                            end
                        });
                    }
                    out.push_str(&rest[..end]);
                    if end == rest.len() {
                        cursor.stage = Stage::List;
                        cursor.item = 0;
                    } else {
                        cursor.item += end;
                        break;
                    }
                }
                Stage::List if cursor.item < self.list.len() => {
                    if out.len() >= CHUNK {
                        break;
                    }
                    if out.capacity() == 0 {
                        out.reserve(CHUNK + 256);
                    }
                    self.list.write(cursor.item, &mut out);
                    cursor.item += 1;
                }
                Stage::List => cursor.stage = Stage::Tail,
                Stage::Tail => {
                    out.push_str(&self.tail);
                    cursor.stage = Stage::Done;
                }
                Stage::Done => break,
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The whole message as text (tests, trace logs).
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.len);
        let _ = write!(text, "{self}");
        text
    }
}

/// Escapes `text` for element content and attribute values
/// (quick-xml's escaping, which borrows when there is nothing to escape).
///
/// Characters XML 1.0 cannot carry at all (§2.2 `Char`: the C0 controls
/// other than tab, LF and CR; U+FFFE and U+FFFF), which no character
/// reference can express either, become U+FFFD: the tree refuses them from
/// every management client, but the platform may report them (a Wi-Fi
/// SSID is any 32 octets), and one such value must not make every later
/// Inform ill-formed.
pub(crate) fn escape<'a>(text: impl Into<std::borrow::Cow<'a, str>>) -> std::borrow::Cow<'a, str> {
    let text = text.into();
    if text.chars().all(dm_core::value::xml_char) {
        return quick_xml::escape::escape(text);
    }
    let clean: String = text
        .chars()
        .map(|c| {
            if dm_core::value::xml_char(c) {
                c
            } else {
                char::REPLACEMENT_CHARACTER
            }
        })
        .collect();
    std::borrow::Cow::Owned(quick_xml::escape::escape(clean).into_owned())
}

/// The length of `text` once escaped by [`escape`].
fn escaped_len(text: &str) -> usize {
    escape(text).len()
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body {
            len: text.len(),
            head: text,
            list: List::Nothing,
            tail: String::new(),
        }
    }
}

impl std::fmt::Display for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut cursor = Cursor::default();
        while let Some(chunk) = self.next_chunk(&mut cursor) {
            f.write_str(&chunk)?;
        }
        Ok(())
    }
}
