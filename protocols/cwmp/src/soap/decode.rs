//! Decoding what the ACS sends.

use super::dom::{self, Element, Ns};
use super::{
    AcsEnvelope, AcsMessage, AcsRequest, AcsResponse, AttributeChange, CwmpVersion, DuOperation,
    Fault, Header, ParameterFault, ParameterValueIn, TimeWindow, Transfer,
};

/// Why a message could not be decoded. Each maps to the fault the CPE
/// answers with; the `id` is what could be read of `cwmp:ID`, so even a
/// fault echoes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub detail: String,
    pub id: Option<String>,
    pub version: CwmpVersion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Not XML, or not a SOAP envelope: SOAP Client fault, 9003.
    Malformed,
    /// A well-formed RPC this CPE does not know: 9000.
    UnknownMethod,
    /// A known RPC with missing or bad arguments: 9003.
    InvalidArguments,
    /// A header entry with mustUnderstand="1" that this CPE does not
    /// understand: SOAP MustUnderstand fault (SOAP 1.1 §4.2.3).
    MustUnderstand,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one message from the ACS.
pub fn decode(input: &str) -> Result<AcsEnvelope, DecodeError> {
    let mut failure = Failure {
        id: None,
        version: CwmpVersion::LATEST,
    };
    let document = dom::parse(input).map_err(|e| failure.error(DecodeErrorKind::Malformed, e.0))?;
    let root = document.root();
    if root.ns() != Ns::Soap || root.name() != "Envelope" {
        return Err(failure.error(
            DecodeErrorKind::Malformed,
            "the root is not a SOAP Envelope",
        ));
    }
    let header = root
        .children()
        .find(|c| c.ns() == Ns::Soap && c.name() == "Header");
    let body = root
        .children()
        .find(|c| c.ns() == Ns::Soap && c.name() == "Body")
        .ok_or_else(|| failure.error(DecodeErrorKind::Malformed, "no SOAP Body"))?;

    let mut parsed_header = Header::default();
    let mut not_understood = None;
    if let Some(header) = header {
        for entry in header.children() {
            match (entry.ns(), entry.name()) {
                (Ns::Cwmp(v), "ID") => {
                    failure.version = CwmpVersion(v);
                    parsed_header.id = Some(entry.text().to_owned());
                }
                (Ns::Cwmp(_), "HoldRequests") => {
                    parsed_header.hold_requests =
                        Some(boolean(entry.trimmed()).ok_or_else(|| {
                            failure.error(
                                DecodeErrorKind::InvalidArguments,
                                "HoldRequests is not a boolean",
                            )
                        })?);
                }
                // NoMoreRequests is deprecated (TR-069 §A.4.1) but sent by
                // old ACSs; ignoring it is what the spec asks.
                (Ns::Cwmp(_), "NoMoreRequests") => {}
                _ if must_understand(entry) => not_understood = Some(entry.name().to_owned()),
                _ => {}
            }
        }
    }
    failure.id = parsed_header.id.clone();
    let Some(message) = body.children().next() else {
        return Err(failure.error(DecodeErrorKind::Malformed, "empty SOAP Body"));
    };
    if let Some(name) = not_understood {
        return Err(failure.error(
            DecodeErrorKind::MustUnderstand,
            format!("header entry {name} is not understood"),
        ));
    }
    let version = match message.ns() {
        Ns::Cwmp(v) => CwmpVersion(v),
        Ns::Soap if message.name() == "Fault" => failure.version,
        _ => {
            return Err(failure.error(
                DecodeErrorKind::Malformed,
                format!("{} is not in a cwmp namespace", message.name()),
            ));
        }
    };
    failure.version = version;
    let body = if message.ns() == Ns::Soap {
        AcsMessage::Fault(
            fault(message).map_err(|d| failure.error(DecodeErrorKind::InvalidArguments, d))?,
        )
    } else if let Some(response) =
        response(message).map_err(|d| failure.error(DecodeErrorKind::InvalidArguments, d))?
    {
        AcsMessage::Response(response)
    } else {
        AcsMessage::Request(request(message, &failure)?)
    };
    Ok(AcsEnvelope {
        version,
        header: parsed_header,
        body,
    })
}

struct Failure {
    id: Option<String>,
    version: CwmpVersion,
}

impl Failure {
    fn error(&self, kind: DecodeErrorKind, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            kind,
            detail: detail.into(),
            id: self.id.clone(),
            version: self.version,
        }
    }
}

fn must_understand(entry: Element<'_, '_>) -> bool {
    entry
        .attribute(Ns::Soap, "mustUnderstand")
        .is_some_and(|v| v.trim() == "1" || v.trim() == "true")
}

/// xsd:boolean: `true`, `false`, `1`, `0`.
fn boolean(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

type Arg<T> = Result<T, String>;

fn text(element: Element<'_, '_>, name: &str) -> Arg<String> {
    trimmed(element, name).map(str::to_owned)
}

/// The trimmed text of a child, borrowed.
fn trimmed<'e>(element: Element<'e, '_>, name: &str) -> Arg<&'e str> {
    element
        .child(name)
        .map(|c| c.trimmed())
        .ok_or_else(|| format!("{} has no {name}", element.name()))
}

/// A child that may be absent (several ACSs omit empty ones).
fn text_or_empty(element: Element<'_, '_>, name: &str) -> String {
    element
        .child(name)
        .map(|c| c.text().to_owned())
        .unwrap_or_default()
}

fn number<T: std::str::FromStr>(element: Element<'_, '_>, name: &str) -> Arg<T> {
    let value = trimmed(element, name)?;
    value
        .parse()
        .map_err(|_| format!("{name} {value:?} is not a valid number"))
}

fn number_or<T: std::str::FromStr>(element: Element<'_, '_>, name: &str, default: T) -> Arg<T> {
    match element.child(name) {
        Some(_) => number(element, name),
        None => Ok(default),
    }
}

/// The `string` items of an array argument.
fn strings(element: Element<'_, '_>, name: &str) -> Arg<Vec<String>> {
    let array = element
        .child(name)
        .ok_or_else(|| format!("{} has no {name}", element.name()))?;
    Ok(array.children().map(|c| c.trimmed().to_owned()).collect())
}

fn request(message: Element<'_, '_>, failure: &Failure) -> Result<AcsRequest, DecodeError> {
    let invalid = |detail: String| failure.error(DecodeErrorKind::InvalidArguments, detail);
    let m = message;
    let request = match m.name() {
        "GetRPCMethods" => AcsRequest::GetRPCMethods,
        "SetParameterValues" => {
            let list = m
                .child("ParameterList")
                .ok_or_else(|| invalid("no ParameterList".into()))?;
            let parameters = list
                .children()
                .map(|p| {
                    let value = p
                        .child("Value")
                        .ok_or_else(|| format!("{} has no Value", p.name()))?;
                    Ok(ParameterValueIn {
                        name: trimmed(p, "Name")?.to_owned(),
                        value: value.text().to_owned(),
                        xsd_type: value
                            .attribute(Ns::Xsi, "type")
                            .map(|t| t.rsplit(':').next().unwrap_or(t).to_owned()),
                    })
                })
                .collect::<Arg<Vec<_>>>()
                .map_err(invalid)?;
            AcsRequest::SetParameterValues {
                parameters,
                parameter_key: text_or_empty(m, "ParameterKey"),
            }
        }
        "GetParameterValues" => AcsRequest::GetParameterValues {
            names: strings(m, "ParameterNames").map_err(invalid)?,
        },
        "GetParameterNames" => AcsRequest::GetParameterNames {
            path: text_or_empty(m, "ParameterPath").trim().to_owned(),
            next_level: boolean(&text(m, "NextLevel").map_err(invalid)?)
                .ok_or_else(|| invalid("NextLevel is not a boolean".into()))?,
        },
        "SetParameterAttributes" => {
            let list = m
                .child("ParameterList")
                .ok_or_else(|| invalid("no ParameterList".into()))?;
            let changes = list
                .children()
                .map(|s| {
                    let flag = |name: &str| -> Arg<bool> {
                        boolean(&text(s, name)?).ok_or_else(|| format!("{name} is not a boolean"))
                    };
                    let notification = if flag("NotificationChange")? {
                        let level: u8 = number(s, "Notification")?;
                        if level > 6 {
                            return Err(format!("Notification {level} is out of range"));
                        }
                        Some(level)
                    } else {
                        None
                    };
                    let access_list = if flag("AccessListChange")? {
                        Some(strings(s, "AccessList")?)
                    } else {
                        None
                    };
                    Ok(AttributeChange {
                        name: text(s, "Name")?,
                        notification,
                        access_list,
                    })
                })
                .collect::<Arg<Vec<_>>>()
                .map_err(invalid)?;
            AcsRequest::SetParameterAttributes { changes }
        }
        "GetParameterAttributes" => AcsRequest::GetParameterAttributes {
            names: strings(m, "ParameterNames").map_err(invalid)?,
        },
        "AddObject" => AcsRequest::AddObject {
            object: text(m, "ObjectName").map_err(invalid)?,
            parameter_key: text_or_empty(m, "ParameterKey"),
        },
        "DeleteObject" => AcsRequest::DeleteObject {
            object: text(m, "ObjectName").map_err(invalid)?,
            parameter_key: text_or_empty(m, "ParameterKey"),
        },
        "Reboot" => AcsRequest::Reboot {
            command_key: text_or_empty(m, "CommandKey"),
        },
        "Download" => AcsRequest::Download(transfer(m).map_err(invalid)?),
        "ScheduleDownload" => {
            let windows = m
                .child("TimeWindowList")
                .map(|list| {
                    list.children()
                        .map(|w| {
                            Ok(TimeWindow {
                                start: number(w, "WindowStart")?,
                                end: number(w, "WindowEnd")?,
                                mode: text(w, "WindowMode")?,
                                user_message: text_or_empty(w, "UserMessage"),
                                max_retries: number_or(w, "MaxRetries", 0)?,
                            })
                        })
                        .collect::<Arg<Vec<_>>>()
                })
                .transpose()
                .map_err(invalid)?
                .unwrap_or_default();
            AcsRequest::ScheduleDownload {
                transfer: transfer(m).map_err(invalid)?,
                windows,
            }
        }
        "Upload" => AcsRequest::Upload {
            command_key: text_or_empty(m, "CommandKey"),
            file_type: text(m, "FileType").map_err(invalid)?,
            url: text(m, "URL").map_err(invalid)?,
            username: text_or_empty(m, "Username"),
            password: text_or_empty(m, "Password"),
            delay_seconds: number_or(m, "DelaySeconds", 0).map_err(invalid)?,
        },
        "FactoryReset" => AcsRequest::FactoryReset,
        "GetQueuedTransfers" => AcsRequest::GetQueuedTransfers,
        "GetAllQueuedTransfers" => AcsRequest::GetAllQueuedTransfers,
        "CancelTransfer" => AcsRequest::CancelTransfer {
            command_key: text_or_empty(m, "CommandKey"),
        },
        "ScheduleInform" => AcsRequest::ScheduleInform {
            delay_seconds: number(m, "DelaySeconds").map_err(invalid)?,
            command_key: text_or_empty(m, "CommandKey"),
        },
        "ChangeDUState" => {
            // The XSD types each Operations element (xsi:type); ACSs also
            // wrap each operation in an element named for its type. Both
            // are read.
            let mut operations = Vec::new();
            for ops in m.children().filter(|c| c.name() == "Operations") {
                match ops.attribute(Ns::Xsi, "type") {
                    Some(kind) => operations.push(
                        du_operation(kind.rsplit(':').next().unwrap_or(kind), ops)
                            .map_err(invalid)?,
                    ),
                    None => {
                        for op in ops.children() {
                            operations.push(du_operation(op.name(), op).map_err(invalid)?);
                        }
                    }
                }
            }
            if operations.is_empty() {
                return Err(invalid("ChangeDUState has no Operations".into()));
            }
            AcsRequest::ChangeDUState {
                command_key: text_or_empty(m, "CommandKey"),
                operations,
            }
        }
        "GetOptions" => AcsRequest::GetOptions {
            option_name: text_or_empty(m, "OptionName"),
        },
        "SetVouchers" => AcsRequest::SetVouchers {
            count: m.child("VoucherList").map_or(0, |l| l.children().count()),
        },
        other => {
            return Err(failure.error(
                DecodeErrorKind::UnknownMethod,
                format!("{other} is not a method this CPE supports"),
            ));
        }
    };
    Ok(request)
}

fn du_operation(kind: &str, e: Element<'_, '_>) -> Arg<DuOperation> {
    let field = |name: &str| text_or_empty(e, name).trim().to_owned();
    Ok(match kind {
        "InstallOpStruct" => DuOperation::Install {
            url: trimmed(e, "URL")?.to_owned(),
            uuid: field("UUID"),
            username: field("Username"),
            password: text_or_empty(e, "Password"),
            execution_env: field("ExecutionEnvRef"),
        },
        "UpdateOpStruct" => DuOperation::Update {
            uuid: field("UUID"),
            version: field("Version"),
            url: field("URL"),
            username: field("Username"),
            password: text_or_empty(e, "Password"),
        },
        "UninstallOpStruct" => DuOperation::Uninstall {
            uuid: trimmed(e, "UUID")?.to_owned(),
            version: field("Version"),
            execution_env: field("ExecutionEnvRef"),
        },
        other => return Err(format!("{other} is not a deployment-unit operation")),
    })
}

fn transfer(m: Element<'_, '_>) -> Arg<Transfer> {
    Ok(Transfer {
        command_key: text_or_empty(m, "CommandKey"),
        file_type: text(m, "FileType")?,
        url: text(m, "URL")?,
        username: text_or_empty(m, "Username"),
        password: text_or_empty(m, "Password"),
        file_size: number_or(m, "FileSize", 0)?,
        target_file_name: text_or_empty(m, "TargetFileName"),
        delay_seconds: number_or(m, "DelaySeconds", 0)?,
        success_url: text_or_empty(m, "SuccessURL"),
        failure_url: text_or_empty(m, "FailureURL"),
    })
}

/// A response to a CPE-initiated RPC, or `None` if the element is not one.
fn response(m: Element<'_, '_>) -> Arg<Option<AcsResponse>> {
    Ok(Some(match m.name() {
        "InformResponse" => AcsResponse::Inform {
            // Some ACSs omit it; 1 is the only value TR-069 §A.3.3.1
            // allows anyway.
            max_envelopes: number_or(m, "MaxEnvelopes", 1)?,
        },
        "TransferCompleteResponse" => AcsResponse::TransferComplete,
        "AutonomousTransferCompleteResponse" => AcsResponse::AutonomousTransferComplete,
        "GetRPCMethodsResponse" => AcsResponse::GetRPCMethods {
            methods: strings(m, "MethodList")?,
        },
        "DUStateChangeCompleteResponse" => AcsResponse::DUStateChangeComplete,
        "AutonomousDUStateChangeCompleteResponse" => AcsResponse::AutonomousDUStateChangeComplete,
        "RequestDownloadResponse" => AcsResponse::RequestDownload,
        "KickedResponse" => AcsResponse::Kicked {
            next_url: text_or_empty(m, "NextURL"),
        },
        _ => return Ok(None),
    }))
}

fn fault(soap_fault: Element<'_, '_>) -> Arg<Fault> {
    let detail = soap_fault
        .child("detail")
        .and_then(|d| d.child("Fault"))
        .ok_or("SOAP Fault without a cwmp Fault detail")?;
    Ok(Fault {
        code: number(detail, "FaultCode")?,
        message: text_or_empty(detail, "FaultString"),
        parameters: detail
            .children()
            .filter(|c| c.name() == "SetParameterValuesFault")
            .map(|f| {
                Ok(ParameterFault {
                    name: text(f, "ParameterName")?,
                    code: number(f, "FaultCode")?,
                    message: text_or_empty(f, "FaultString"),
                })
            })
            .collect::<Arg<Vec<_>>>()?,
    })
}
