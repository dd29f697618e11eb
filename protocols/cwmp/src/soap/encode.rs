//! Encoding what the CPE sends.
//!
//! Envelopes are written as text with every value escaped
//! (`quick_xml::escape`); the element order is the cwmp-1-4.xsd sequence
//! order, which tests check with xmllint.

use std::fmt::Write as _;

use quick_xml::escape::escape;

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
        let mut out = String::with_capacity(body.len() + 512);
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
        out.push_str(body);
        out.push_str("</soap-env:Body></soap-env:Envelope>");
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

    pub fn get_parameter_values_response(
        &self,
        id: Option<&str>,
        values: &[ParameterValue],
    ) -> String {
        let mut body = String::with_capacity(128 + values.len() * 128);
        body.push_str("<cwmp:GetParameterValuesResponse>");
        write_values(&mut body, values);
        body.push_str("</cwmp:GetParameterValuesResponse>");
        self.envelope(id, &body)
    }

    /// Status 0: applied; 1: committed, applied later (TR-069 §A.3.2.1).
    pub fn set_parameter_values_response(&self, id: Option<&str>, status: u8) -> String {
        self.envelope(
            id,
            &format!("<cwmp:SetParameterValuesResponse><Status>{status}</Status></cwmp:SetParameterValuesResponse>"),
        )
    }

    pub fn get_parameter_names_response(
        &self,
        id: Option<&str>,
        names: &[(String, bool)],
    ) -> String {
        let mut body = String::with_capacity(128 + names.len() * 96);
        let _ = write!(
            body,
            "<cwmp:GetParameterNamesResponse><ParameterList soap-enc:arrayType=\"cwmp:ParameterInfoStruct[{}]\">",
            names.len()
        );
        for (name, writable) in names {
            let _ = write!(
                body,
                "<ParameterInfoStruct><Name>{}</Name><Writable>{}</Writable></ParameterInfoStruct>",
                escape(name.as_str()),
                // xsd:boolean allows both spellings; "1"/"0" is what every
                // ACS reads (acsrs 0.5 parses Writable as an integer;
                // GenieACS takes either).
                if *writable { "1" } else { "0" }
            );
        }
        body.push_str("</ParameterList></cwmp:GetParameterNamesResponse>");
        self.envelope(id, &body)
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
                 <ExecutionUnitRefList></ExecutionUnitRefList><StartTime>{}</StartTime>\
                 <CompleteTime>{}</CompleteTime><Fault><FaultCode>{}</FaultCode>\
                 <FaultString>{}</FaultString></Fault></Results>",
                escape(&r.uuid),
                escape(&r.deployment_unit_ref),
                escape(&r.version),
                escape(&r.current_state),
                if r.resolved { "1" } else { "0" },
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
        let faultcode = if matches!(code, 9002 | 9004) {
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

fn write_values(body: &mut String, values: &[ParameterValue]) {
    let _ = write!(
        body,
        "<ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[{}]\">",
        values.len()
    );
    for v in values {
        let _ = write!(
            body,
            "<ParameterValueStruct><Name>{}</Name><Value xsi:type=\"{}\">{}</Value></ParameterValueStruct>",
            escape(v.name.as_str()),
            v.xsd_type,
            escape(v.value.as_str())
        );
    }
    body.push_str("</ParameterList>");
}
