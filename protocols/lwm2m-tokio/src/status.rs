//! The LwM2M side as `dmagent status` shows it, and a wake-up for whoever
//! acts on a registration's outcome (Bearer Selection) without polling.

use std::sync::Arc;

use tokio::sync::Notify;

/// The LwM2M side as `dmagent status` shows it: one entry per server, by
/// Short Server ID (0: the bootstrap server).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub servers: std::collections::BTreeMap<u16, ServerStatus>,
    /// Notified when a server's registration is made, lost or fails.
    pub changed: StatusChanged,
}

/// A wake-up shared by the clones of a [`Status`]: a notification made
/// while nobody waits is kept for the next waiter.
#[derive(Clone, Debug, Default)]
pub struct StatusChanged(pub Arc<Notify>);

impl StatusChanged {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

// Not part of what the status says.
impl PartialEq for StatusChanged {
    fn eq(&self, _: &StatusChanged) -> bool {
        true
    }
}

impl Eq for StatusChanged {}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStatus {
    pub address: String,
    pub registered: bool,
    /// The registration's location (`/rd/...`).
    pub location: Option<String>,
    /// Unix times.
    pub last_registration: Option<i64>,
    /// Registrations this server accepted since the agent started.
    pub registrations: u64,
    pub last_update: Option<i64>,
    pub failures: u64,
    pub last_error: Option<String>,
    /// The server executed Disable (/1/x/4): not to be contacted until
    /// this Unix time.
    pub disabled_until: Option<i64>,
}
