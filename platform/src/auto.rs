//! The default platform's network: NetworkManager and oFono where they
//! answer on the system bus, the kernel's own view for the rest. The
//! network state (default route, addresses, bearer) comes from
//! NetworkManager when it reports one and from the kernel otherwise;
//! radio, Wi-Fi profiles and packet-data contexts only ever come from the
//! D-Bus services: nothing is invented where none answers.

use crate::dbus::DbusNetwork;
use crate::linux::network::LinuxNetwork;
use crate::{
    ApnContext, ApnSettings, BearerKind, ChangeCallback, Link, LinkStats, Network, NetworkState,
    PlatformError, RadioState, WifiProfile, WifiSettings,
};

pub struct AutoNetwork {
    dbus: DbusNetwork,
    kernel: LinuxNetwork,
}

impl AutoNetwork {
    pub fn new(dbus: DbusNetwork, kernel: LinuxNetwork) -> AutoNetwork {
        AutoNetwork { dbus, kernel }
    }
}

/// Whether a system bus is there to ask: its address is set, or its
/// standard socket exists (D-Bus Specification, "Well-known Message Bus
/// Instances").
pub fn system_bus_present() -> bool {
    std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some()
        || std::path::Path::new("/run/dbus/system_bus_socket").exists()
        || std::path::Path::new("/var/run/dbus/system_bus_socket").exists()
}

impl Network for AutoNetwork {
    fn state(&self) -> NetworkState {
        let managed = self.dbus.state();
        if managed.interface.is_some() || !managed.addresses.is_empty() {
            managed
        } else {
            self.kernel.state()
        }
    }

    fn radio(&self) -> RadioState {
        self.dbus.radio()
    }

    fn wifi_profiles(&self) -> Vec<WifiProfile> {
        self.dbus.wifi_profiles()
    }

    fn masqueraded(&self) -> Result<Vec<String>, crate::PlatformError> {
        self.kernel.masqueraded()
    }

    fn wifi_radios(&self) -> Vec<crate::WifiRadio> {
        self.dbus.wifi_radios()
    }

    fn apn_contexts(&self) -> Vec<ApnContext> {
        self.dbus.apn_contexts()
    }

    fn on_change(&self, callback: ChangeCallback) {
        self.dbus.on_change(std::sync::Arc::clone(&callback));
        self.kernel.on_change(callback);
    }

    fn add_wifi_profile(&self, settings: &WifiSettings) -> Result<String, PlatformError> {
        self.dbus.add_wifi_profile(settings)
    }

    fn update_wifi_profile(&self, id: &str, settings: &WifiSettings) -> Result<(), PlatformError> {
        self.dbus.update_wifi_profile(id, settings)
    }

    fn delete_wifi_profile(&self, id: &str) -> Result<(), PlatformError> {
        self.dbus.delete_wifi_profile(id)
    }

    fn add_apn_context(&self, settings: &ApnSettings) -> Result<String, PlatformError> {
        self.dbus.add_apn_context(settings)
    }

    fn update_apn_context(&self, id: &str, settings: &ApnSettings) -> Result<(), PlatformError> {
        self.dbus.update_apn_context(id, settings)
    }

    fn delete_apn_context(&self, id: &str) -> Result<(), PlatformError> {
        self.dbus.delete_apn_context(id)
    }

    fn select_bearer(&self, kind: BearerKind) -> Result<(), PlatformError> {
        self.dbus.select_bearer(kind)
    }

    // Links, counters and the resolver: the kernel's, whatever manages
    // them.
    fn links(&self) -> Vec<Link> {
        self.kernel.links()
    }

    fn dhcp_leases(&self) -> Vec<crate::DhcpLease> {
        self.dbus.dhcp_leases()
    }

    fn dhcpv6_leases(&self) -> Vec<crate::Dhcp6Lease> {
        self.dbus.dhcpv6_leases()
    }

    fn ip_interfaces(&self) -> Vec<crate::IpInterface> {
        self.kernel.ip_interfaces()
    }

    fn link_stats(&self, name: &str) -> Result<LinkStats, PlatformError> {
        self.kernel.link_stats(name)
    }

    fn link_counter(&self, name: &str, counter: crate::LinkCounter) -> Result<u64, PlatformError> {
        self.kernel.link_counter(name, counter)
    }

    fn ip_interface_name(&self, index: u32) -> Option<String> {
        self.kernel.ip_interface_name(index)
    }

    fn dns_servers(&self) -> Vec<std::net::IpAddr> {
        self.kernel.dns_servers()
    }

    fn routes(&self) -> Vec<crate::Route> {
        self.kernel.routes()
    }

    fn neighbours(&self) -> Result<Vec<crate::Neighbour>, crate::PlatformError> {
        self.kernel.neighbours()
    }
}
