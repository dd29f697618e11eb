//! The LwM2M adapter of dmagent, sans-IO: the mapping between LwM2M
//! `/obj/inst/res` paths and core resources ([`mapping`]), the content
//! formats ([`format`]), the CoAP message layer ([`coap`]), DTLS with a
//! PSK or certificates ([`dtls`], [`security`]), the client engine ([`client`], [`bootstrap`]) and block-wise
//! pulls for firmware delivery ([`fetch`]). Datagrams and time go in;
//! datagrams and events come out; `dm_lwm2m_tokio` drives them.

pub mod access;
pub mod bootstrap;
pub mod client;
pub mod coap;
pub mod declare;
#[cfg(feature = "dtls")]
pub mod dtls;
/// What a secured server gets in a build without DTLS (the `dtls`
/// feature: this crate's, or a driver's that leaves it out).
pub const DTLS_NOT_BUILT: &str = "this dmagent was built without DTLS (cargo feature `dtls`)";

/// A build without the `dtls` feature: the same API, with no session that
/// can exist (secured servers are refused when the configuration is read).
#[cfg(not(feature = "dtls"))]
#[path = "no_dtls.rs"]
pub mod dtls;
pub mod fetch;
pub mod format;
pub mod mapping;
pub mod object_xml;
pub mod security;
