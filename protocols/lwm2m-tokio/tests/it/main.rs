//! The integration tests of this crate, in one binary: each file a
//! module (one link of the workspace instead of one per file).

mod common;
mod dtls_session;
mod rebootstrap;
mod shutdown;
