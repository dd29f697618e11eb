//! The integration tests of this crate, in one binary: each file a
//! module (one link of the workspace instead of one per file).

mod bootstrap;
mod client;
mod declare;
mod dtls;
mod formats;
