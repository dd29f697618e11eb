//! TR-369's error codes (§"Error Codes", 7000–7999) and how the tree's
//! refusals, met as CWMP faults by the shared TR-181 RPCs, become them.

use dm_cwmp::soap::Fault;

/// A TR-369 error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub u32);

impl Code {
    pub const MESSAGE_FAILED: Code = Code(7000);
    pub const MESSAGE_NOT_SUPPORTED: Code = Code(7001);
    pub const REQUEST_DENIED: Code = Code(7002);
    pub const INTERNAL_ERROR: Code = Code(7003);
    pub const INVALID_ARGUMENTS: Code = Code(7004);
    pub const RESOURCES_EXCEEDED: Code = Code(7005);
    pub const PERMISSION_DENIED: Code = Code(7006);
    pub const INVALID_PATH_SYNTAX: Code = Code(7008);
    pub const UNSUPPORTED_PARAMETER: Code = Code(7010);
    pub const INVALID_TYPE: Code = Code(7011);
    pub const INVALID_VALUE: Code = Code(7012);
    pub const NOT_WRITABLE: Code = Code(7013);
    pub const OBJECT_NOT_CREATABLE: Code = Code(7017);
    pub const NOT_A_TABLE: Code = Code(7018);
    pub const REQUIRED_PARAMETER_FAILED: Code = Code(7021);
    pub const COMMAND_FAILURE: Code = Code(7022);
    pub const COMMAND_CANCELED: Code = Code(7023);
    pub const OBJECT_NOT_DELETABLE: Code = Code(7024);
    pub const INVALID_PATH: Code = Code(7026);
    pub const INVALID_COMMAND_ARGUMENTS: Code = Code(7027);
    pub const RECORD_NOT_PARSED: Code = Code(7100);
    pub const SECURE_SESSION_NOT_SUPPORTED: Code = Code(7102);
    pub const SAR_NOT_SUPPORTED: Code = Code(7103);
    pub const INVALID_RECORD_VALUE: Code = Code(7104);
    pub const SESSION_CONTEXT_NOT_ALLOWED: Code = Code(7106);

    /// The code of a CWMP fault the shared RPCs returned (TR-069
    /// Table 53 to TR-369's table, meaning for meaning).
    pub fn from_cwmp(code: u32) -> Code {
        match code {
            9000 => Code::MESSAGE_NOT_SUPPORTED,
            9001 => Code::REQUEST_DENIED,
            9003 => Code::INVALID_ARGUMENTS,
            9004 => Code::RESOURCES_EXCEEDED,
            9005 => Code::INVALID_PATH,
            9006 => Code::INVALID_TYPE,
            9007 => Code::INVALID_VALUE,
            9008 => Code::NOT_WRITABLE,
            _ => Code::INTERNAL_ERROR,
        }
    }
}

/// An error with its code and a message for the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UspError {
    pub code: Code,
    pub message: String,
    /// The parameters refused, by path, each with its own code.
    pub params: Vec<(String, Code, String)>,
}

impl UspError {
    pub fn new(code: Code, message: impl Into<String>) -> UspError {
        UspError {
            code,
            message: message.into(),
            params: Vec::new(),
        }
    }

    pub fn from_fault(fault: &Fault) -> UspError {
        UspError {
            code: Code::from_cwmp(fault.code),
            message: fault.message.clone(),
            params: fault
                .parameters
                .iter()
                .map(|p| (p.name.clone(), Code::from_cwmp(p.code), p.message.clone()))
                .collect(),
        }
    }
}

impl std::fmt::Display for UspError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.0, self.message)
    }
}
