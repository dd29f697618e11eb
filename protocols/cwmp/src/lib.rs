//! The CWMP (TR-069) adapter of dmagent.
//!
//! For now this crate holds the adapter's half of the object model: the
//! mapping between TR-181 `Device.` paths and core resources
//! ([`mapping`]). The sans-IO session engine and its SOAP codec land with
//! the CWMP issue.

pub mod mapping;
pub mod soap;
