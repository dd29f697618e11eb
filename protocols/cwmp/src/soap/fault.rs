//! CWMP fault codes and their fault strings (TR-069 Amendment 6, Table 48
//! for the CPE, Table 50 for the ACS).

/// A fault the CPE returns: every code TR-069 defines for the CPE
/// (cwmp-1-2.xsd, 9000–9032).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCode {
    MethodNotSupported,
    RequestDenied,
    InternalError,
    InvalidArguments,
    ResourcesExceeded,
    InvalidParameterName,
    InvalidParameterType,
    InvalidParameterValue,
    NonWritableParameter,
    NotificationRequestRejected,
    DownloadFailure,
    UploadFailure,
    FileTransferAuthenticationFailure,
    UnsupportedTransferProtocol,
    MulticastJoinFailed,
    FileServerUnreachable,
    FileNotAccessible,
    DownloadIncomplete,
    FileCorrupted,
    FileAuthenticationFailure,
    OutsideTimeWindows,
    CancelationNotPermitted,
    InvalidUuidFormat,
    UnknownExecutionEnvironment,
    DisabledExecutionEnvironment,
    ExecutionEnvironmentMismatch,
    DuplicateDeploymentUnit,
    SystemResourcesExceeded,
    UnknownDeploymentUnit,
    InvalidDeploymentUnitState,
    DowngradeNotPermitted,
    VersionNotSpecified,
    VersionAlreadyExists,
}

impl FaultCode {
    /// Every code, in order.
    pub const ALL: [FaultCode; 33] = [
        FaultCode::MethodNotSupported,
        FaultCode::RequestDenied,
        FaultCode::InternalError,
        FaultCode::InvalidArguments,
        FaultCode::ResourcesExceeded,
        FaultCode::InvalidParameterName,
        FaultCode::InvalidParameterType,
        FaultCode::InvalidParameterValue,
        FaultCode::NonWritableParameter,
        FaultCode::NotificationRequestRejected,
        FaultCode::DownloadFailure,
        FaultCode::UploadFailure,
        FaultCode::FileTransferAuthenticationFailure,
        FaultCode::UnsupportedTransferProtocol,
        FaultCode::MulticastJoinFailed,
        FaultCode::FileServerUnreachable,
        FaultCode::FileNotAccessible,
        FaultCode::DownloadIncomplete,
        FaultCode::FileCorrupted,
        FaultCode::FileAuthenticationFailure,
        FaultCode::OutsideTimeWindows,
        FaultCode::CancelationNotPermitted,
        FaultCode::InvalidUuidFormat,
        FaultCode::UnknownExecutionEnvironment,
        FaultCode::DisabledExecutionEnvironment,
        FaultCode::ExecutionEnvironmentMismatch,
        FaultCode::DuplicateDeploymentUnit,
        FaultCode::SystemResourcesExceeded,
        FaultCode::UnknownDeploymentUnit,
        FaultCode::InvalidDeploymentUnitState,
        FaultCode::DowngradeNotPermitted,
        FaultCode::VersionNotSpecified,
        FaultCode::VersionAlreadyExists,
    ];

    pub fn code(self) -> u32 {
        match self {
            FaultCode::MethodNotSupported => 9000,
            FaultCode::RequestDenied => 9001,
            FaultCode::InternalError => 9002,
            FaultCode::InvalidArguments => 9003,
            FaultCode::ResourcesExceeded => 9004,
            FaultCode::InvalidParameterName => 9005,
            FaultCode::InvalidParameterType => 9006,
            FaultCode::InvalidParameterValue => 9007,
            FaultCode::NonWritableParameter => 9008,
            FaultCode::NotificationRequestRejected => 9009,
            FaultCode::DownloadFailure => 9010,
            FaultCode::UploadFailure => 9011,
            FaultCode::FileTransferAuthenticationFailure => 9012,
            FaultCode::UnsupportedTransferProtocol => 9013,
            FaultCode::MulticastJoinFailed => 9014,
            FaultCode::FileServerUnreachable => 9015,
            FaultCode::FileNotAccessible => 9016,
            FaultCode::DownloadIncomplete => 9017,
            FaultCode::FileCorrupted => 9018,
            FaultCode::FileAuthenticationFailure => 9019,
            FaultCode::OutsideTimeWindows => 9020,
            FaultCode::CancelationNotPermitted => 9021,
            FaultCode::InvalidUuidFormat => 9022,
            FaultCode::UnknownExecutionEnvironment => 9023,
            FaultCode::DisabledExecutionEnvironment => 9024,
            FaultCode::ExecutionEnvironmentMismatch => 9025,
            FaultCode::DuplicateDeploymentUnit => 9026,
            FaultCode::SystemResourcesExceeded => 9027,
            FaultCode::UnknownDeploymentUnit => 9028,
            FaultCode::InvalidDeploymentUnitState => 9029,
            FaultCode::DowngradeNotPermitted => 9030,
            FaultCode::VersionNotSpecified => 9031,
            FaultCode::VersionAlreadyExists => 9032,
        }
    }

    /// The code's variant, if TR-069 defines it for the CPE.
    pub fn from_code(code: u32) -> Option<FaultCode> {
        FaultCode::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The FaultString TR-069 Table 48 gives.
    pub fn text(self) -> &'static str {
        match self {
            FaultCode::MethodNotSupported => "Method not supported",
            FaultCode::RequestDenied => "Request denied (no reason specified)",
            FaultCode::InternalError => "Internal error",
            FaultCode::InvalidArguments => "Invalid arguments",
            FaultCode::ResourcesExceeded => "Resources exceeded",
            FaultCode::InvalidParameterName => "Invalid parameter name",
            FaultCode::InvalidParameterType => "Invalid parameter type",
            FaultCode::InvalidParameterValue => "Invalid parameter value",
            FaultCode::NonWritableParameter => "Attempt to set a non-writable parameter",
            FaultCode::NotificationRequestRejected => "Notification request rejected",
            FaultCode::DownloadFailure => "Download failure",
            FaultCode::UploadFailure => "Upload failure",
            FaultCode::FileTransferAuthenticationFailure => {
                "File transfer server authentication failure"
            }
            FaultCode::UnsupportedTransferProtocol => "Unsupported protocol for file transfer",
            FaultCode::MulticastJoinFailed => "Download failure: unable to join multicast group",
            FaultCode::FileServerUnreachable => "Download failure: unable to contact file server",
            FaultCode::FileNotAccessible => "Download failure: unable to access file",
            FaultCode::DownloadIncomplete => "Download failure: unable to complete download",
            FaultCode::FileCorrupted => "Download failure: file corrupted",
            FaultCode::FileAuthenticationFailure => "Download failure: file authentication failure",
            FaultCode::OutsideTimeWindows => {
                "Download failure: unable to complete download within specified time windows"
            }
            FaultCode::CancelationNotPermitted => {
                "Cancelation of file transfer not permitted in current transfer state"
            }
            FaultCode::InvalidUuidFormat => "Invalid UUID Format",
            FaultCode::UnknownExecutionEnvironment => "Unknown Execution Environment",
            FaultCode::DisabledExecutionEnvironment => "Disabled Execution Environment",
            FaultCode::ExecutionEnvironmentMismatch => {
                "Deployment Unit to Execution Environment Mismatch"
            }
            FaultCode::DuplicateDeploymentUnit => "Duplicate Deployment Unit",
            FaultCode::SystemResourcesExceeded => "System Resources Exceeded",
            FaultCode::UnknownDeploymentUnit => "Unknown Deployment Unit",
            FaultCode::InvalidDeploymentUnitState => "Invalid Deployment Unit State",
            FaultCode::DowngradeNotPermitted => {
                "Invalid Deployment Unit Update - Downgrade not permitted"
            }
            FaultCode::VersionNotSpecified => {
                "Invalid Deployment Unit Update - Version not specified"
            }
            FaultCode::VersionAlreadyExists => {
                "Invalid Deployment Unit Update - Version already exists"
            }
        }
    }
}

/// Why a transfer failed, as TransferComplete (or DUStateChangeComplete)
/// reports it: the code and a FaultString for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferFault {
    pub code: FaultCode,
    pub text: String,
}

impl TransferFault {
    pub fn new(code: FaultCode, text: impl Into<String>) -> TransferFault {
        TransferFault {
            code,
            text: text.into(),
        }
    }
}

impl std::fmt::Display for TransferFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.code(), self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cpe_code_once_in_order() {
        let codes: Vec<u32> = FaultCode::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes, (9000..=9032).collect::<Vec<_>>());
        for fault in FaultCode::ALL {
            assert_eq!(FaultCode::from_code(fault.code()), Some(fault));
            assert!(!fault.text().is_empty());
        }
        assert_eq!(FaultCode::from_code(9033), None);
    }
}
