//! CoAP responses and the mapping of core errors to CoAP codes, in one
//! place; the schema type of a path.

use super::*;

pub(super) fn code_of(packet: &Packet) -> Option<ResponseType> {
    match packet.header.code {
        MessageClass::Response(code) => Some(code),
        _ => None,
    }
}

pub(super) fn options_text(packet: &Packet, option: CoapOption) -> String {
    packet
        .get_option(option)
        .map(|values| {
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

pub(super) fn content_format(format: ContentFormat) -> Vec<u8> {
    let n = format.number();
    if n == 0 {
        Vec::new()
    } else if n < 256 {
        vec![n as u8]
    } else {
        n.to_be_bytes().to_vec()
    }
}

pub(super) fn status(code: ResponseType) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet
}

/// An error response with a diagnostic payload (RFC 7252 §5.5.2).
pub(super) fn error(code: ResponseType, diagnostic: &str) -> Packet {
    let mut packet = status(code);
    packet.payload = diagnostic.as_bytes().to_vec();
    packet
}

pub(super) fn not_found(path: &Lwm2mPath) -> Packet {
    error(ResponseType::NotFound, &format!("{path} not found"))
}

/// The CoAP code of a core error: the one mapping of this adapter.
pub fn core_error(e: &Error) -> Packet {
    let code = match e {
        Error::ObjectNotFound(_) | Error::InstanceNotFound(_) | Error::ResourceNotFound(_) => {
            ResponseType::NotFound
        }
        Error::NotReadable(_)
        | Error::NotWritable(_)
        | Error::NotExecutable(_)
        | Error::FixedInstances(_) => ResponseType::MethodNotAllowed,
        Error::NotSupported(_) => ResponseType::MethodNotAllowed,
        Error::AccessDenied { .. } => ResponseType::Unauthorized,
        Error::InvalidValue { .. } | Error::Rejected { .. } | Error::InstanceExists(_) => {
            ResponseType::BadRequest
        }
        Error::InstancesExhausted(_) => ResponseType::RequestEntityTooLarge,
        // Core's Create has no code for "full": 5.00, with the limit in
        // the diagnostic.
        Error::TooManyInstances { .. } => ResponseType::InternalServerError,
        Error::PlatformUnavailable(_) | Error::Busy(_) => ResponseType::ServiceUnavailable,
        Error::PlatformDenied(_) => ResponseType::Unauthorized,
        Error::PlatformInvalid(_) => ResponseType::BadRequest,
        _ => ResponseType::InternalServerError,
    };
    error(code, &e.to_string())
}

pub(super) fn format_error(e: &FormatError) -> Packet {
    let code = match e {
        FormatError::Malformed(_) => ResponseType::BadRequest,
        FormatError::NotAcceptable(_) => ResponseType::NotAcceptable,
        FormatError::Unsupported(_) => ResponseType::UnsupportedContentFormat,
    };
    error(code, &e.to_string())
}

/// The type of an LwM2M resource `tree` serves, built in or declared.
pub fn type_in(tree: &dm_core::Tree, path: &Lwm2mPath) -> Option<ValueType> {
    let core = mapping::to_core(&Lwm2mPath {
        index: None,
        ..*path
    })
    .ok()?;
    Some(
        tree.schema(core.object_id())?
            .resource(core.resource_id()?)?
            .value_type,
    )
}

/// The type of a built-in LwM2M resource, from the generated catalog
/// (for decoding with no tree at hand).
pub fn type_of(path: &Lwm2mPath) -> Option<ValueType> {
    let core = mapping::to_core(&Lwm2mPath {
        index: None,
        ..*path
    })
    .ok()?;
    let schema = dm_core::catalog::ALL
        .iter()
        .find(|o| o.id == core.object_id())?;
    Some(schema.resource(core.resource_id()?)?.value_type)
}
