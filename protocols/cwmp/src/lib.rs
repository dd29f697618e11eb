//! The CWMP (TR-069) adapter of dmagent.
//!
//! Sans-IO: nothing here opens a socket or reads the clock. [`mapping`]
//! binds TR-181 `Device.` paths to core resources (generated), [`soap`]
//! decodes what an ACS sends and encodes what the CPE sends, [`values`]
//! converts TR-069 lexical forms, and [`rpc`] runs the data-model RPCs on
//! the core tree.

pub mod bulk;
pub mod declare;
pub mod mapping;
pub mod rpc;
pub mod session;
pub mod soap;
pub mod values;
