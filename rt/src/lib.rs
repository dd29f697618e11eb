//! What the tokio drivers (and the agent around them) share.
//!
//! - [`clock`]: the only place a driver reads the time. It follows
//!   tokio's clock, so a test that pauses tokio's time
//!   (`#[tokio::test(start_paused = true)]`) runs a driver's timing
//!   policy (re-handshakes, back-off, grace periods) in simulated time.
//! - [`random`]: the OS's randomness (through `ring`), for nonces, UUIDs
//!   and the engines' seeds.
//! - [`uri`]: URIs parsed by `http::Uri` (hyper's parser, already linked),
//!   with the few questions the drivers ask of them (host and port, CoAP
//!   path and query, a URI fit for a log).
//! - [`sleep_until`]: sleeping until an engine's next deadline, if any.

pub mod clock;
pub mod random;
pub mod uri;

use std::time::Instant;

/// Sleeps until `deadline`, or forever without one (a `select!` branch
/// that never fires).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
