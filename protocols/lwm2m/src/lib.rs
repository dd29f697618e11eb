//! The LwM2M adapter of dmagent.
//!
//! For now this crate holds the adapter's half of the object model: the
//! mapping between LwM2M `/obj/inst/res` paths and core resources
//! ([`mapping`]). The sans-IO CoAP engine lands with the LwM2M issue.

pub mod bootstrap;
pub mod client;
pub mod coap;
pub mod dtls;
pub mod format;
pub mod mapping;
