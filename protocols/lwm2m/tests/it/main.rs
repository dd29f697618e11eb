//! The integration tests of this crate, in one binary: each file a
//! module (one link of the workspace instead of one per file).

mod bootstrap;
mod client;
mod declare;
#[cfg(feature = "dtls")]
mod dtls;
mod formats;

/// The client's events past the [`ClientEvent::Served`] it says for every
/// request (asserted on by `client::each_request_served_is_said_once`):
/// what the other tests look at.
trait NextEvent {
    fn next_event(&mut self) -> Option<dm_lwm2m::client::ClientEvent>;
}

impl NextEvent for dm_lwm2m::client::Client {
    fn next_event(&mut self) -> Option<dm_lwm2m::client::ClientEvent> {
        std::iter::from_fn(|| self.poll_event())
            .find(|e| !matches!(e, dm_lwm2m::client::ClientEvent::Served { .. }))
    }
}
