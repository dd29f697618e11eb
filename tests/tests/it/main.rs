//! The integration tests of this crate, in one binary: each file a
//! module (one link of the workspace instead of one per file).

mod cross_protocol;
mod dbus_mock;
mod dbus_real;
mod persistence;
