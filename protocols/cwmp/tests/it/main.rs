//! The integration tests of this crate, in one binary: each file a
//! module (one link of the workspace instead of one per file).

mod common;
mod declare;
mod rpc;
mod session;
mod soap;
