//! The in-memory platform: networking, radio, Wi-Fi, APN and log state held
//! in memory and set by whoever drives it (tests, the demo). Every setter
//! runs the change callbacks, as a D-Bus implementation does on
//! PropertiesChanged, so the objects refresh the tree the same way.

use std::sync::{Mutex, MutexGuard};

use dm_core::lock;
use std::time::{Duration, SystemTime};

use crate::{
    ApnContext, ApnSettings, BearerKind, ChangeCallback as Callback, Host, Memory, Network,
    NetworkState, PlatformError, RadioState, SystemLog, WifiProfile, WifiSettings,
};

#[derive(Default)]
struct State {
    network: NetworkState,
    radio: RadioState,
    wifi: Vec<WifiProfile>,
    radios: Vec<crate::WifiRadio>,
    masqueraded: Vec<String>,
    neighbours: Vec<crate::Neighbour>,
    apn: Vec<ApnContext>,
    links: Vec<crate::Link>,
    interfaces: Vec<crate::IpInterface>,
    leases: Vec<crate::DhcpLease>,
    leases6: Vec<crate::Dhcp6Lease>,
    routes: Vec<crate::Route>,
    dns: Vec<std::net::IpAddr>,
    /// Counter reads so far: each read sees more traffic.
    counter_reads: u64,
    /// Ids handed out so far.
    created: u32,
    /// Writes refused with this error (tests of host failures).
    refuse: Option<PlatformError>,
}

/// Network state in memory.
#[derive(Default)]
pub struct MemoryNetwork {
    state: Mutex<State>,
    callbacks: Mutex<Vec<Callback>>,
}

impl MemoryNetwork {
    /// A plausible gateway: Ethernet up with a loopback-range address,
    /// an LTE modem registered, no Wi-Fi profile. Documentation values
    /// only; nothing here is ever contacted.
    pub fn demo() -> MemoryNetwork {
        let network = MemoryNetwork::default();
        network.set_network(NetworkState {
            bearer: Some(BearerKind::Ethernet),
            available: vec![BearerKind::Ethernet, BearerKind::LteFdd],
            interface: Some("eth0".into()),
            addresses: vec!["127.0.0.2".parse().expect("literal address")],
            routers: vec!["127.0.0.1".parse().expect("literal address")],
            dhcp_acs_url: None,
        });
        network.set_radio(RadioState {
            imei: Some("490154203237518".into()),
            signal_dbm: Some(-71),
            rsrp_dbm: Some(-95),
            rsrq_db: Some(-9),
            link_quality: Some(70),
            cell_id: Some(0x1A2B3C),
            lac: Some(0x2F),
            mcc: Some(1),
            mnc: Some(1),
            technology: Some("lte".into()),
            operator: Some("Test Network".into()),
            ..RadioState::default()
        });
        network.set_wifi_profiles(vec![WifiProfile {
            id: "5f1c9a2e-0000-4000-8000-000000000001".into(),
            interface: "wlan0".into(),
            ssid: "dmagent-demo".into(),
            enabled: true,
            active: true,
            channel: 6,
            access_point: true,
            security: crate::WifiSecurity::WpaPsk,
            bssid: Some("02:00:00:00:00:01".into()),
        }]);
        network.set_apn_contexts(vec![ApnContext {
            id: "/phonesim/context1".into(),
            name: "Internet".into(),
            apn: "internet".into(),
            username: String::new(),
            active: true,
        }]);
        network
    }

    /// Makes every write fail with `error` (or succeed again with `None`),
    /// as a host that refuses would.
    pub fn refuse_writes(&self, error: Option<PlatformError>) {
        lock(&self.state).refuse = error;
    }

    fn writable(&self) -> Result<MutexGuard<'_, State>, PlatformError> {
        let state = lock(&self.state);
        match &state.refuse {
            Some(e) => Err(e.clone()),
            None => Ok(state),
        }
    }

    pub fn set_network(&self, network: NetworkState) {
        lock(&self.state).network = network;
        self.changed();
    }

    /// The host's links, routes and name servers (none by default).
    pub fn set_host_network(
        &self,
        links: Vec<crate::Link>,
        routes: Vec<crate::Route>,
        dns: Vec<std::net::IpAddr>,
    ) {
        {
            let mut state = lock(&self.state);
            state.links = links;
            state.routes = routes;
            state.dns = dns;
        }
        self.changed();
    }

    /// The DHCPv6 clients' leases (none by default).
    pub fn set_dhcpv6_leases(&self, leases: Vec<crate::Dhcp6Lease>) {
        lock(&self.state).leases6 = leases;
    }

    /// The DHCPv4 leases (none by default).
    pub fn set_dhcp_leases(&self, leases: Vec<crate::DhcpLease>) {
        lock(&self.state).leases = leases;
        self.changed();
    }

    /// The host's IP interfaces (none by default).
    pub fn set_ip_interfaces(&self, interfaces: Vec<crate::IpInterface>) {
        lock(&self.state).interfaces = interfaces;
        self.changed();
    }

    pub fn set_radio(&self, radio: RadioState) {
        lock(&self.state).radio = radio;
        self.changed();
    }

    /// The neighbour tables' entries (none by default).
    pub fn set_neighbours(&self, neighbours: Vec<crate::Neighbour>) {
        lock(&self.state).neighbours = neighbours;
    }

    /// The interfaces NAT translates on (none by default).
    pub fn set_masqueraded(&self, interfaces: Vec<String>) {
        lock(&self.state).masqueraded = interfaces;
    }

    /// The Wi-Fi radios (none by default).
    pub fn set_wifi_radios(&self, radios: Vec<crate::WifiRadio>) {
        lock(&self.state).radios = radios;
    }

    pub fn set_wifi_profiles(&self, profiles: Vec<WifiProfile>) {
        lock(&self.state).wifi = profiles;
        self.changed();
    }

    pub fn set_apn_contexts(&self, contexts: Vec<ApnContext>) {
        lock(&self.state).apn = contexts;
        self.changed();
    }

    fn changed(&self) {
        // Clone the list so a callback may register another.
        let callbacks: Vec<Callback> = lock(&self.callbacks).clone();
        for callback in callbacks {
            callback();
        }
    }
}

impl Network for MemoryNetwork {
    fn on_change(&self, callback: Callback) {
        lock(&self.callbacks).push(callback);
    }

    fn links(&self) -> Vec<crate::Link> {
        lock(&self.state).links.clone()
    }

    fn ip_interfaces(&self) -> Vec<crate::IpInterface> {
        lock(&self.state).interfaces.clone()
    }

    fn dhcpv6_leases(&self) -> Vec<crate::Dhcp6Lease> {
        lock(&self.state).leases6.clone()
    }

    fn dhcp_leases(&self) -> Vec<crate::DhcpLease> {
        lock(&self.state).leases.clone()
    }

    fn link_stats(&self, name: &str) -> Result<crate::LinkStats, PlatformError> {
        // Counters that grow with every read: traffic, as far as a test
        // can tell.
        let mut state = lock(&self.state);
        if !state.links.iter().any(|l| l.name == name)
            && !state.interfaces.iter().any(|i| i.name == name)
        {
            return Err(PlatformError::Unavailable(format!(
                "the counters of {name}"
            )));
        }
        state.counter_reads += 1;
        let n = state.counter_reads;
        Ok(crate::LinkStats {
            bytes_sent: 100 * n,
            bytes_received: 200 * n,
            ..crate::LinkStats::default()
        })
    }

    fn dns_servers(&self) -> Vec<std::net::IpAddr> {
        lock(&self.state).dns.clone()
    }

    fn routes(&self) -> Vec<crate::Route> {
        lock(&self.state).routes.clone()
    }

    /// The selected bearer carries the traffic from now on, if available.
    fn select_bearer(&self, kind: BearerKind) -> Result<(), PlatformError> {
        {
            let mut state = lock(&self.state);
            if !state.network.available.contains(&kind) {
                return Err(PlatformError::Unavailable(format!("a {kind:?} bearer")));
            }
            state.network.bearer = Some(kind);
        }
        self.changed();
        Ok(())
    }

    fn add_wifi_profile(&self, settings: &WifiSettings) -> Result<String, PlatformError> {
        let id = {
            let mut state = self.writable()?;
            state.created += 1;
            let id = format!("memory-wifi-{}", state.created);
            state.wifi.push(profile(&id, settings));
            id
        };
        self.changed();
        Ok(id)
    }

    fn update_wifi_profile(&self, id: &str, settings: &WifiSettings) -> Result<(), PlatformError> {
        {
            let mut state = self.writable()?;
            let existing =
                state.wifi.iter_mut().find(|p| p.id == id).ok_or_else(|| {
                    PlatformError::InvalidArgument(format!("no Wi-Fi profile {id}"))
                })?;
            let active = existing.active;
            let bssid = existing.bssid.clone();
            *existing = WifiProfile {
                active,
                bssid,
                ..profile(id, settings)
            };
        }
        self.changed();
        Ok(())
    }

    fn delete_wifi_profile(&self, id: &str) -> Result<(), PlatformError> {
        {
            let mut state = self.writable()?;
            let before = state.wifi.len();
            state.wifi.retain(|p| p.id != id);
            if state.wifi.len() == before {
                return Err(PlatformError::InvalidArgument(format!(
                    "no Wi-Fi profile {id}"
                )));
            }
        }
        self.changed();
        Ok(())
    }

    fn add_apn_context(&self, settings: &ApnSettings) -> Result<String, PlatformError> {
        let id = {
            let mut state = self.writable()?;
            state.created += 1;
            let id = format!("/memory/context{}", state.created);
            state.apn.push(ApnContext {
                id: id.clone(),
                name: settings.name.clone(),
                apn: settings.apn.clone(),
                username: settings.username.clone(),
                active: false,
            });
            id
        };
        self.changed();
        Ok(id)
    }

    fn update_apn_context(&self, id: &str, settings: &ApnSettings) -> Result<(), PlatformError> {
        {
            let mut state = self.writable()?;
            let context = state
                .apn
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(|| PlatformError::InvalidArgument(format!("no context {id}")))?;
            context.name = settings.name.clone();
            context.apn = settings.apn.clone();
            context.username = settings.username.clone();
        }
        self.changed();
        Ok(())
    }

    fn delete_apn_context(&self, id: &str) -> Result<(), PlatformError> {
        {
            let mut state = self.writable()?;
            let before = state.apn.len();
            state.apn.retain(|c| c.id != id);
            if state.apn.len() == before {
                return Err(PlatformError::InvalidArgument(format!("no context {id}")));
            }
        }
        self.changed();
        Ok(())
    }

    fn state(&self) -> NetworkState {
        lock(&self.state).network.clone()
    }

    fn radio(&self) -> RadioState {
        lock(&self.state).radio.clone()
    }

    fn wifi_profiles(&self) -> Vec<WifiProfile> {
        lock(&self.state).wifi.clone()
    }

    fn wifi_radios(&self) -> Vec<crate::WifiRadio> {
        lock(&self.state).radios.clone()
    }

    fn masqueraded(&self) -> Result<Vec<String>, PlatformError> {
        Ok(lock(&self.state).masqueraded.clone())
    }

    fn neighbours(&self) -> Result<Vec<crate::Neighbour>, PlatformError> {
        Ok(lock(&self.state).neighbours.clone())
    }

    fn apn_contexts(&self) -> Vec<ApnContext> {
        lock(&self.state).apn.clone()
    }
}

/// The profile a write makes (not active until the host connects it).
fn profile(id: &str, settings: &WifiSettings) -> WifiProfile {
    WifiProfile {
        id: id.to_owned(),
        interface: settings.interface.clone(),
        ssid: settings.ssid.clone(),
        enabled: settings.enabled,
        active: false,
        channel: settings.channel,
        access_point: settings.access_point,
        security: settings.security,
        bssid: None,
    }
}

/// Host actions that are only recorded: the in-memory platform runs on a
/// developer's machine, which must not reboot.
#[derive(Default)]
pub struct MemoryActions {
    pub done: Mutex<Vec<&'static str>>,
}

impl crate::Actions for MemoryActions {
    fn reboot(&self) -> Result<(), PlatformError> {
        lock(&self.done).push("reboot");
        Ok(())
    }

    fn factory_reset(&self) -> Result<(), PlatformError> {
        lock(&self.done).push("factory reset");
        Ok(())
    }
}

/// A log kept in memory, with the incremental-read cursor LwM2M /10259
/// needs.
#[derive(Default)]
pub struct MemoryLog {
    /// The log, and each reader's position in it.
    inner: Mutex<(String, std::collections::HashMap<String, usize>)>,
}

impl MemoryLog {
    pub fn append(&self, line: &str) {
        let mut inner = lock(&self.inner);
        inner.0.push_str(line);
        inner.0.push('\n');
    }
}

impl SystemLog for MemoryLog {
    /// In memory only: gone with the process, bounded by nothing but it.
    fn maximum_size(&self) -> u64 {
        u64::from(u32::MAX)
    }

    fn persistent(&self) -> Option<bool> {
        Some(false)
    }

    fn read_all(&self) -> Result<String, PlatformError> {
        Ok(lock(&self.inner).0.clone())
    }

    fn read_new(&self, reader: &str) -> Result<String, PlatformError> {
        let mut inner = lock(&self.inner);
        let from = inner.1.get(reader).copied().unwrap_or(0);
        let new = inner.0[from..].to_owned();
        let end = inner.0.len();
        inner.1.insert(reader.to_owned(), end);
        Ok(new)
    }
}

/// A host with fixed answers, for tests that must not depend on the
/// machine.
pub struct FixedHost {
    pub now: SystemTime,
    pub uptime: Duration,
    pub memory: Memory,
    pub cpu: u8,
    pub timezone: Option<String>,
    pub utc_offset: i32,
}

impl Host for FixedHost {
    fn now(&self) -> SystemTime {
        self.now
    }

    fn uptime(&self) -> Result<Duration, PlatformError> {
        Ok(self.uptime)
    }

    fn memory(&self) -> Result<Memory, PlatformError> {
        Ok(self.memory)
    }

    fn cpu_usage(&self, _reader: &str) -> Result<u8, PlatformError> {
        Ok(self.cpu)
    }

    fn timezone(&self) -> Option<String> {
        self.timezone.clone()
    }

    fn utc_offset(&self) -> i32 {
        self.utc_offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn setters_run_callbacks() {
        let network = MemoryNetwork::default();
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        network.on_change(Arc::new(move || {
            c.fetch_add(1, Ordering::Relaxed);
        }));
        network.set_radio(RadioState {
            signal_dbm: Some(-80),
            ..Default::default()
        });
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert_eq!(network.radio().signal_dbm, Some(-80));
    }

    #[test]
    fn log_reads_incrementally() {
        let log = MemoryLog::default();
        log.append("one");
        assert_eq!(log.read_new("a").unwrap(), "one\n");
        log.append("two");
        assert_eq!(log.read_new("a").unwrap(), "two\n");
        assert_eq!(log.read_new("a").unwrap(), "");
        // Another reader has its own cursor.
        assert_eq!(log.read_new("b").unwrap(), "one\ntwo\n");
        assert_eq!(log.read_all().unwrap(), "one\ntwo\n");
    }
}
