//! CWMP fault codes and their fault strings (TR-069 Amendment 6, Table 48
//! for the CPE, Table 50 for the ACS).

/// A fault the CPE returns.
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
    CancelationNotPermitted,
    InvalidUuidFormat,
}

impl FaultCode {
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
            FaultCode::CancelationNotPermitted => 9021,
            FaultCode::InvalidUuidFormat => 9022,
        }
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
            FaultCode::CancelationNotPermitted => {
                "Cancelation of file transfer not permitted in current transfer state"
            }
            FaultCode::InvalidUuidFormat => "Invalid UUID Format",
        }
    }
}
