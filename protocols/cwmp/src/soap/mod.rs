//! The CWMP SOAP codec (TR-069 Amendment 6, Annex A and the cwmp-1-x XSDs).
//!
//! [`decode`] turns what an ACS sends (an RPC request, a response to one of
//! ours, or a Fault) into typed values; [`encode`] writes what the CPE
//! sends. Whatever the prefix, the cwmp namespace version (1-0 … 1-4 use
//! `urn:dslforum-org:cwmp-1-0` … `-1-2`) is detected from the message and a
//! response is written in the namespace of the request, as GenieACS and
//! icwmp expect.

mod decode;
pub mod dom;
mod encode;
mod fault;

pub use decode::{DecodeError, DecodeErrorKind, decode};
pub use encode::{Body, CHUNK, Cursor, DeviceId, Encoder, Event, ParameterValue, QueuedTransfer};
pub use fault::{FaultCode, TransferFault};

/// The cwmp namespace version of a message: the `N` of
/// `urn:dslforum-org:cwmp-1-N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CwmpVersion(pub u8);

impl CwmpVersion {
    /// CWMP 1.1 to 1.4 all use the 1-2 namespace (TR-069 Amendment 6
    /// §A.3.1); this agent speaks 1.4.
    pub const LATEST: CwmpVersion = CwmpVersion(2);

    pub fn namespace(self) -> String {
        format!("urn:dslforum-org:cwmp-1-{}", self.0)
    }
}

/// SOAP header entries of a message (TR-069 §A.4.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `cwmp:ID`: echoed in the response.
    pub id: Option<String>,
    /// `cwmp:HoldRequests`: the ACS asks the CPE to send no requests.
    pub hold_requests: Option<bool>,
}

/// A message from the ACS.
#[derive(Clone, Debug, PartialEq)]
pub struct AcsEnvelope {
    pub version: CwmpVersion,
    pub header: Header,
    pub body: AcsMessage,
}

/// What the body of an ACS message is.
#[derive(Clone, Debug, PartialEq)]
pub enum AcsMessage {
    Request(AcsRequest),
    /// A response to an RPC the CPE called.
    Response(AcsResponse),
    /// The ACS refused an RPC the CPE called.
    Fault(Fault),
}

/// One parameter of a SetParameterValues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterValueIn {
    pub name: String,
    pub value: String,
    /// The `xsi:type`, without prefix (`unsignedInt`), when given.
    pub xsd_type: Option<String>,
}

/// One SetParameterAttributesStruct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeChange {
    pub name: String,
    pub notification: Option<u8>,
    pub access_list: Option<Vec<String>>,
}

/// A Download or ScheduleDownload's file (TR-069 §A.3.2.8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub command_key: String,
    pub file_type: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub file_size: u64,
    pub target_file_name: String,
    pub delay_seconds: u32,
    pub success_url: String,
    pub failure_url: String,
}

/// A ScheduleDownload time window (TR-069 §A.4.1.8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: u32,
    pub end: u32,
    pub mode: String,
    pub user_message: String,
    pub max_retries: i32,
}

/// One ChangeDUState operation (TR-069 §A.4.1.10).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DuOperation {
    Install {
        url: String,
        uuid: String,
        username: String,
        password: String,
        execution_env: String,
    },
    Update {
        uuid: String,
        version: String,
        url: String,
        username: String,
        password: String,
    },
    Uninstall {
        uuid: String,
        version: String,
        execution_env: String,
    },
}

impl DuOperation {
    /// "Install", "Update" or "Uninstall" (TR-181 2.16 DUStateChange!'s
    /// OperationPerformed).
    pub fn name(&self) -> &'static str {
        match self {
            DuOperation::Install { .. } => "Install",
            DuOperation::Update { .. } => "Update",
            DuOperation::Uninstall { .. } => "Uninstall",
        }
    }
}

/// How one operation ended (TR-069 §A.4.2.2 OpResultStruct).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DuResult {
    pub uuid: String,
    pub deployment_unit_ref: String,
    pub version: String,
    /// "Installed", "Uninstalled" or "Failed".
    pub current_state: String,
    pub resolved: bool,
    /// Unix times.
    pub start: i64,
    pub complete: i64,
    pub fault_code: u32,
    pub fault_string: String,
}

impl DuResult {
    /// ExecutionUnitRefList: an installed unit's one Execution Unit, the
    /// row of the same number (a package is one unit).
    pub fn execution_unit_refs(&self) -> String {
        let row = self
            .deployment_unit_ref
            .trim_end_matches('.')
            .strip_prefix("Device.SoftwareModules.DeploymentUnit.");
        match row {
            Some(row) if self.current_state == "Installed" => {
                format!("Device.SoftwareModules.ExecutionUnit.{row}")
            }
            _ => String::new(),
        }
    }
}

/// The arguments of the CPE's Kicked (TR-069 §A.4.2.3): what a web page
/// on the device passes on from the ACS's web site that sent the user to
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kick {
    /// The command the web site gave (at most 32 characters).
    pub command: String,
    /// The page the user came from (at most 64).
    pub referer: String,
    /// The command's argument (at most 256).
    pub arg: String,
    /// Where to go when done (at most 1024).
    pub next: String,
}

/// A Kicked argument longer than the XSD allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} is longer than {max} characters")]
pub struct KickTooLong {
    pub field: &'static str,
    pub max: usize,
}

impl Kick {
    /// The XSD's length limits.
    pub fn check(&self) -> Result<(), KickTooLong> {
        for (name, value, max) in [
            ("Command", &self.command, 32),
            ("Referer", &self.referer, 64),
            ("Arg", &self.arg, 256),
            ("Next", &self.next, 1024),
        ] {
            if value.chars().count() > max {
                return Err(KickTooLong { field: name, max });
            }
        }
        Ok(())
    }
}

/// An RPC the ACS calls on the CPE.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AcsRequest {
    GetRPCMethods,
    SetParameterValues {
        parameters: Vec<ParameterValueIn>,
        parameter_key: String,
    },
    GetParameterValues {
        names: Vec<String>,
    },
    GetParameterNames {
        path: String,
        next_level: bool,
    },
    SetParameterAttributes {
        changes: Vec<AttributeChange>,
    },
    GetParameterAttributes {
        names: Vec<String>,
    },
    AddObject {
        object: String,
        parameter_key: String,
    },
    DeleteObject {
        object: String,
        parameter_key: String,
    },
    Reboot {
        command_key: String,
    },
    Download(Transfer),
    ScheduleDownload {
        transfer: Transfer,
        windows: Vec<TimeWindow>,
    },
    Upload {
        command_key: String,
        file_type: String,
        url: String,
        username: String,
        password: String,
        delay_seconds: u32,
    },
    FactoryReset,
    GetQueuedTransfers,
    GetAllQueuedTransfers,
    CancelTransfer {
        command_key: String,
    },
    ScheduleInform {
        delay_seconds: u32,
        command_key: String,
    },
    ChangeDUState {
        command_key: String,
        operations: Vec<DuOperation>,
    },
    GetOptions {
        option_name: String,
    },
    SetVouchers {
        count: usize,
    },
}

impl AcsRequest {
    /// How many parameters, objects or operations it names, for the log.
    pub fn parameter_count(&self) -> usize {
        match self {
            AcsRequest::SetParameterValues { parameters, .. } => parameters.len(),
            AcsRequest::GetParameterValues { names }
            | AcsRequest::GetParameterAttributes { names } => names.len(),
            AcsRequest::SetParameterAttributes { changes } => changes.len(),
            AcsRequest::ChangeDUState { operations, .. } => operations.len(),
            AcsRequest::GetParameterNames { .. }
            | AcsRequest::AddObject { .. }
            | AcsRequest::DeleteObject { .. } => 1,
            _ => 0,
        }
    }

    /// The RPC's element name.
    pub fn name(&self) -> &'static str {
        match self {
            AcsRequest::GetRPCMethods => "GetRPCMethods",
            AcsRequest::SetParameterValues { .. } => "SetParameterValues",
            AcsRequest::GetParameterValues { .. } => "GetParameterValues",
            AcsRequest::GetParameterNames { .. } => "GetParameterNames",
            AcsRequest::SetParameterAttributes { .. } => "SetParameterAttributes",
            AcsRequest::GetParameterAttributes { .. } => "GetParameterAttributes",
            AcsRequest::AddObject { .. } => "AddObject",
            AcsRequest::DeleteObject { .. } => "DeleteObject",
            AcsRequest::Reboot { .. } => "Reboot",
            AcsRequest::Download(_) => "Download",
            AcsRequest::ScheduleDownload { .. } => "ScheduleDownload",
            AcsRequest::Upload { .. } => "Upload",
            AcsRequest::FactoryReset => "FactoryReset",
            AcsRequest::GetQueuedTransfers => "GetQueuedTransfers",
            AcsRequest::GetAllQueuedTransfers => "GetAllQueuedTransfers",
            AcsRequest::CancelTransfer { .. } => "CancelTransfer",
            AcsRequest::ScheduleInform { .. } => "ScheduleInform",
            AcsRequest::ChangeDUState { .. } => "ChangeDUState",
            AcsRequest::GetOptions { .. } => "GetOptions",
            AcsRequest::SetVouchers { .. } => "SetVouchers",
        }
    }
}

/// The RPCs this CPE answers, for GetRPCMethodsResponse (TR-069 Table 5).
pub const CPE_METHODS: &[&str] = &[
    "GetRPCMethods",
    "SetParameterValues",
    "GetParameterValues",
    "GetParameterNames",
    "SetParameterAttributes",
    "GetParameterAttributes",
    "AddObject",
    "DeleteObject",
    "Reboot",
    "Download",
    "ScheduleDownload",
    "Upload",
    "FactoryReset",
    "GetQueuedTransfers",
    "GetAllQueuedTransfers",
    "CancelTransfer",
    "ScheduleInform",
    "ChangeDUState",
    "GetOptions",
    "SetVouchers",
];

/// A response of the ACS to an RPC the CPE called.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcsResponse {
    Inform { max_envelopes: u32 },
    TransferComplete,
    AutonomousTransferComplete,
    GetRPCMethods { methods: Vec<String> },
    DUStateChangeComplete,
    AutonomousDUStateChangeComplete,
    RequestDownload,
    Kicked { next_url: String },
}

/// A SOAP Fault carrying a CWMP fault (TR-069 §A.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: u32,
    pub message: String,
    /// Per-parameter faults of a SetParameterValues (9003).
    pub parameters: Vec<ParameterFault>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterFault {
    pub name: String,
    pub code: u32,
    pub message: String,
}
