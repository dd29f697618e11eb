//! The host, behind traits.
//!
//! The objects reach the device only through these traits: [`Host`] (clock,
//! uptime, memory, CPU), [`Network`] (bearers, addresses, radio, Wi-Fi
//! profiles, APN contexts) and [`SystemLog`]. Each has an in-memory
//! implementation ([`memory`]) used by tests and the demo; [`linux`] reads
//! the real host from `/proc` and the kernel's network without D-Bus;
//! `dbus` is NetworkManager, oFono and logind; `auto` (the default) the
//! D-Bus services where they answer and the kernel for the rest.
//! **API Boundary:** no D-Bus path, variant map or `/proc` format leaves
//! this crate.
//!
//! [`store`] persists the core's snapshots atomically.

#[cfg(feature = "dbus")]
pub mod auto;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod firmware;
pub mod linux;
pub mod memory;
pub mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A host failure, kept apart from "the client asked for something wrong".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The service that knows the answer is not running (NetworkManager
    /// absent, no modem).
    #[error("{0} is not available")]
    Unavailable(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Failed(String),
}

impl From<PlatformError> for dm_core::Error {
    fn from(e: PlatformError) -> dm_core::Error {
        match e {
            PlatformError::Unavailable(m) => dm_core::Error::PlatformUnavailable(m),
            PlatformError::AccessDenied(m) => dm_core::Error::PlatformDenied(m),
            PlatformError::InvalidArgument(m) => dm_core::Error::PlatformInvalid(m),
            PlatformError::Failed(m) => dm_core::Error::Platform(m),
        }
    }
}

/// Memory figures in KiB, as both LwM2M /3 (KB) and TR-181
/// MemoryStatus (KiB) want them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub total_kib: u64,
    pub free_kib: u64,
}

/// A process (TR-181 `DeviceInfo.ProcessStatus.Process.{i}`), as
/// `/proc/PID/stat` and `cmdline` give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// The command line, or the kernel's name for a kernel thread.
    pub command: String,
    /// Resident memory, KiB.
    pub size_kib: u64,
    /// 0 highest: the kernel's priority, 0..39 for ordinary processes
    /// (20 + nice), real-time ones 0.
    pub priority: u32,
    /// User and system CPU time since the process started.
    pub cpu_time_ms: u64,
    /// TR-181's state: Running, Sleeping, Stopped, Idle, Uninterruptible
    /// or Zombie.
    pub state: &'static str,
}

/// A power supply the kernel knows (`/sys/class/power_supply`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PowerSource {
    /// The kernel's type: `Battery`, `Mains`, `USB`, `UPS`, `Wireless`.
    pub kind: String,
    pub voltage_mv: Option<i64>,
    pub current_ma: Option<i64>,
    /// A battery's charge, percent.
    pub capacity: Option<u8>,
    /// A battery's state: `Charging`, `Discharging`, `Full`,
    /// `Not charging`, `Unknown`.
    pub status: Option<String>,
    /// A battery's level as the kernel words it (`Low`, `Critical`, ...).
    pub capacity_level: Option<String>,
}

/// Time synchronisation as the host's time service (systemd-timedated)
/// reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeSync {
    /// Network time synchronisation is on.
    pub ntp: bool,
    /// The system clock is synchronised (the kernel's flag, as timedated
    /// reads it with adjtimex).
    pub synchronized: bool,
    /// The IANA time zone, e.g. `Europe/Paris`.
    pub zone: String,
    /// The zone's rules as a POSIX TZ string (the footer of its TZif
    /// file), which is what TR-181's `Time.LocalTimeZone` carries.
    pub posix_zone: Option<String>,
}

/// Facts about the machine the agent runs on.
pub trait Host: Send + Sync {
    /// Wall-clock time.
    fn now(&self) -> SystemTime;
    /// Time since the host booted.
    fn uptime(&self) -> Result<Duration, PlatformError>;
    fn memory(&self) -> Result<Memory, PlatformError>;
    /// CPU busy percentage since `reader`'s previous call (since boot on
    /// its first): each reader (each LwM2M server, the ACS) has its own
    /// "since", so one reading does not take the other's interval.
    fn cpu_usage(&self, reader: &str) -> Result<u8, PlatformError>;
    /// IANA time zone name, e.g. `Europe/Paris`.
    fn timezone(&self) -> Option<String>;
    /// Offset from UTC now, in seconds east.
    fn utc_offset(&self) -> i32;

    /// The processes now. Reads `/proc`: called off the tree's lock, when
    /// a request lists them. A host that cannot say answers an error (the
    /// table stays as it was).
    fn processes(&self) -> Result<Vec<Process>, PlatformError> {
        Err(PlatformError::Unavailable("the processes".into()))
    }

    /// Each processor's architecture, in TR-181's words (`x86_64`, `arm`,
    /// ...; none where unknown).
    fn processors(&self) -> Vec<String> {
        Vec::new()
    }

    /// The temperature sensors, in a stable order (their number in it is
    /// their TR-181 instance): thermal zones, then hwmon inputs.
    fn temperature_sensors(&self) -> Vec<String> {
        Vec::new()
    }

    /// The reading of the `n`th sensor of [`Host::temperature_sensors`]
    /// (from 0), in degrees Celsius: a live read, cheap (sysfs).
    fn temperature(&self, n: usize) -> Result<f64, PlatformError> {
        Err(PlatformError::Unavailable(format!(
            "temperature sensor {n}"
        )))
    }

    /// The power supplies now: a live read, cheap (sysfs).
    fn power_sources(&self) -> Vec<PowerSource> {
        Vec::new()
    }

    /// What the host's time service last said, from memory (no I/O);
    /// `None` where there is none to ask.
    fn time_sync(&self) -> Option<TimeSync> {
        None
    }

    /// Asks the time service now: a D-Bus round trip, made off the tree's
    /// lock.
    fn read_time_sync(&self) -> Result<TimeSync, PlatformError> {
        Err(no_time_service())
    }

    /// Turns network time synchronisation on or off.
    fn set_ntp(&self, _on: bool) -> Result<(), PlatformError> {
        Err(no_time_service())
    }

    /// Sets the system time zone: an IANA name, or a POSIX TZ string that
    /// one of the host's zones has as its rules.
    fn set_timezone(&self, _zone: &str) -> Result<(), PlatformError> {
        Err(no_time_service())
    }
}

fn no_time_service() -> PlatformError {
    PlatformError::Unavailable("the time service (systemd-timedated on the system bus)".into())
}

/// The kind of link a bearer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerKind {
    Gsm,
    Wcdma,
    LteFdd,
    NbIot,
    Wlan,
    Ethernet,
}

/// What the network looks like now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkState {
    /// The bearer carrying the default route.
    pub bearer: Option<BearerKind>,
    pub available: Vec<BearerKind>,
    pub interface: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub routers: Vec<IpAddr>,
    /// The ACS URL the carrier's DHCPv4 lease offers (TR-069 §3.1: option
    /// 43, sub-option 1), if any.
    pub dhcp_acs_url: Option<String>,
}

/// The ACS URL in DHCPv4 vendor-specific information (TR-069 §3.1): option
/// 43's encapsulated sub-options, of which 1 is the URL. A server configured with
/// the plain URL as the whole option (dnsmasq's `dhcp-option=43,http://…`
/// is seen in the field) is accepted too. Only http(s) URLs count.
pub fn acs_url_from_vendor_options(bytes: &[u8]) -> Option<String> {
    let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
    let mut rest = bytes;
    while let [code, length, tail @ ..] = rest {
        let length = usize::from(*length);
        if tail.len() < length {
            break;
        }
        let (value, next) = tail.split_at(length);
        if *code == 1
            && let Ok(url) = std::str::from_utf8(value)
        {
            let url = url.trim_end_matches('\0').trim();
            if is_url(url) {
                return Some(url.to_owned());
            }
        }
        rest = next;
    }
    let whole = std::str::from_utf8(bytes)
        .ok()?
        .trim_end_matches('\0')
        .trim();
    is_url(whole).then(|| whole.to_owned())
}

/// An Ethernet link the kernel has (TR-181 `Device.Ethernet.Interface`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// The kernel's interface index: stable while the link exists.
    pub index: u32,
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Administratively up (IFF_UP).
    pub enabled: bool,
    /// Operationally up (carrier).
    pub up: bool,
    /// The kernel's operational state (RFC 2863: `up`, `down`,
    /// `dormant`, `lowerlayerdown`, `notpresent`, `testing`, `unknown`).
    pub operstate: String,
    /// Mbit/s, when the driver says.
    pub speed: Option<u32>,
    /// `full` or `half`, when the driver says.
    pub duplex: Option<String>,
}

/// An IP interface the kernel has (TR-181 `Device.IP.Interface`): every
/// link, loopback included, with its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpInterface {
    /// The kernel's interface index: stable while the link exists.
    pub index: u32,
    pub name: String,
    /// Administratively up (IFF_UP).
    pub enabled: bool,
    /// The kernel's operational state (RFC 2863), `unknown` for links
    /// that do not track it (loopback, tunnels).
    pub operstate: String,
    /// The link has carrier.
    pub carrier: bool,
    pub loopback: bool,
    pub mtu: u32,
    /// IPv6 is on for the link (its `disable_ipv6` is 0).
    pub ipv6: bool,
    pub addresses: Vec<InterfaceAddress>,
}

/// An address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub address: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Configured, with no lifetime (IFA_F_PERMANENT): not leased by DHCP
    /// nor autoconfigured.
    pub permanent: bool,
    /// Duplicate address detection has not finished (IPv6).
    pub tentative: bool,
    /// Its preferred lifetime is over (IPv6).
    pub deprecated: bool,
}

/// A DHCPv4 lease an interface holds (NetworkManager's DHCP4Config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhcpLease {
    pub interface: String,
    pub address: Option<std::net::Ipv4Addr>,
    pub subnet_mask: Option<std::net::Ipv4Addr>,
    pub routers: Vec<IpAddr>,
    pub dns_servers: Vec<IpAddr>,
    pub server: Option<IpAddr>,
    /// When the lease ends (seconds since the Unix epoch); `None` for an
    /// infinite lease or one whose end is not known.
    pub expiry: Option<i64>,
}

/// What a DHCPv6 client holds for an interface (NetworkManager's
/// DHCP6Config): the identities and the options the server sent, as the
/// client shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dhcp6Lease {
    pub interface: String,
    /// The client's DUID (option 1's data).
    pub client_id: Vec<u8>,
    /// The server's DUID (option 2's data), where the client shows it.
    pub server_id: Vec<u8>,
    /// OPTION_DNS_SERVERS (23).
    pub dns_servers: Vec<std::net::Ipv6Addr>,
    /// OPTION_DOMAIN_LIST (24).
    pub domain_search: Vec<String>,
    /// OPTION_SNTP_SERVERS (31).
    pub sntp_servers: Vec<std::net::Ipv6Addr>,
}

/// A link's counters, read now (TR-181 `Stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub errors_sent: u64,
    pub errors_received: u64,
    pub discards_sent: u64,
    pub discards_received: u64,
    pub multicast_received: u64,
}

/// One of a link's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkCounter {
    BytesSent,
    BytesReceived,
    PacketsSent,
    PacketsReceived,
    ErrorsSent,
    ErrorsReceived,
    DiscardsSent,
    DiscardsReceived,
    MulticastReceived,
}

impl LinkCounter {
    /// Every counter, in the order TR-181's Stats objects list them.
    pub const ALL: [LinkCounter; 9] = [
        LinkCounter::BytesSent,
        LinkCounter::BytesReceived,
        LinkCounter::PacketsSent,
        LinkCounter::PacketsReceived,
        LinkCounter::ErrorsSent,
        LinkCounter::ErrorsReceived,
        LinkCounter::DiscardsSent,
        LinkCounter::DiscardsReceived,
        LinkCounter::MulticastReceived,
    ];

    /// TR-181 keeps errors and discards in 32 bits.
    pub fn is_32_bit(self) -> bool {
        matches!(
            self,
            LinkCounter::ErrorsSent
                | LinkCounter::ErrorsReceived
                | LinkCounter::DiscardsSent
                | LinkCounter::DiscardsReceived
        )
    }
}

impl LinkStats {
    pub fn get(&self, counter: LinkCounter) -> u64 {
        match counter {
            LinkCounter::BytesSent => self.bytes_sent,
            LinkCounter::BytesReceived => self.bytes_received,
            LinkCounter::PacketsSent => self.packets_sent,
            LinkCounter::PacketsReceived => self.packets_received,
            LinkCounter::ErrorsSent => self.errors_sent,
            LinkCounter::ErrorsReceived => self.errors_received,
            LinkCounter::DiscardsSent => self.discards_sent,
            LinkCounter::DiscardsReceived => self.discards_received,
            LinkCounter::MulticastReceived => self.multicast_received,
        }
    }
}

/// A route of the kernel's main routing table (TR-181
/// `Routing.Router.{i}.IPv4Forwarding` / `IPv6Forwarding`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: IpAddr,
    /// Prefix length of the destination.
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub interface: String,
    pub metric: u32,
}

/// An entry of the neighbour table (TR-181 `Hosts.Host.{i}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub address: IpAddr,
    /// Lower-case, colon-separated.
    pub mac: String,
    pub interface: String,
    /// The entry is complete (reachable, or was recently).
    pub active: bool,
}

/// What the cellular modem reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RadioState {
    pub imei: Option<String>,
    /// The SIM's subscriber identity.
    pub imsi: Option<String>,
    /// The SIM card's serial number (ICCID).
    pub iccid: Option<String>,
    /// Received signal strength, dBm.
    pub signal_dbm: Option<i32>,
    pub rsrp_dbm: Option<i32>,
    pub rsrq_db: Option<i32>,
    /// Link quality, 0–100 (oFono's Strength).
    pub link_quality: Option<u8>,
    pub cell_id: Option<u32>,
    pub lac: Option<u16>,
    pub mcc: Option<u16>,
    pub mnc: Option<u16>,
    /// Access technology as the modem names it (`lte`, `umts`, `gsm`).
    pub technology: Option<String>,
    pub operator: Option<String>,
    /// Where the modem's GNSS says the device is, when it has a fix.
    pub location: Option<GeoLocation>,
}

/// A position fix (WGS 84).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoLocation {
    /// Degrees, north positive.
    pub latitude: f64,
    /// Degrees, east positive.
    pub longitude: f64,
    /// Metres above sea level, when the fix has it.
    pub altitude: Option<f64>,
}

/// Wi-Fi security of a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WifiSecurity {
    Open,
    WpaPsk,
}

/// One Wi-Fi profile (a NetworkManager connection of type wifi).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WifiProfile {
    /// Stable platform identifier (NetworkManager connection UUID).
    pub id: String,
    pub interface: String,
    pub ssid: String,
    pub enabled: bool,
    pub active: bool,
    pub channel: u8,
    pub access_point: bool,
    pub security: WifiSecurity,
    pub bssid: Option<String>,
}

/// A Wi-Fi radio as NetworkManager knows it (a wireless device), with the
/// access point it is associated with (a station) or serves (NM's
/// hotspot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WifiRadio {
    pub interface: String,
    /// Usable: NetworkManager manages it and radio is on (device state
    /// disconnected or above).
    pub enabled: bool,
    /// Connected (the device is activated).
    pub up: bool,
    /// A station (NM80211Mode infrastructure), not an access point.
    pub station: bool,
    /// The bands the hardware supports, TR-181's names ("2.4GHz",
    /// "5GHz"); empty where the driver does not say.
    pub bands: Vec<&'static str>,
    /// The bit rate in use, kbit/s (NetworkManager's Bitrate: the last
    /// transmit rate; 0 when not associated).
    pub bitrate: u32,
    /// The frequency of the access point associated with or served, MHz.
    pub frequency: Option<u32>,
}

/// What a client sets on a Wi-Fi profile.
#[derive(Clone, PartialEq, Eq)]
pub struct WifiSettings {
    pub interface: String,
    pub ssid: String,
    /// Connect automatically (NetworkManager's autoconnect).
    pub enabled: bool,
    /// 0: automatic.
    pub channel: u8,
    pub access_point: bool,
    pub security: WifiSecurity,
    /// The WPA passphrase; `None` keeps the one the profile has. Write
    /// only: never read back, never logged (hence no derived Debug).
    pub passphrase: Option<String>,
}

impl std::fmt::Debug for WifiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WifiSettings")
            .field("interface", &self.interface)
            .field("ssid", &self.ssid)
            .field("enabled", &self.enabled)
            .field("channel", &self.channel)
            .field("access_point", &self.access_point)
            .field("security", &self.security)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// PPP/PDP authentication of a packet-data context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApnAuth {
    Pap,
    Chap,
    /// Either; the network picks.
    Any,
    None,
}

/// What a client sets on a packet-data context.
#[derive(Clone, PartialEq, Eq)]
pub struct ApnSettings {
    /// The profile name (oFono's Name).
    pub name: String,
    pub apn: String,
    pub username: String,
    /// `None` keeps the current password. Write only.
    pub password: Option<String>,
    pub auth: ApnAuth,
}

impl std::fmt::Debug for ApnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnSettings")
            .field("name", &self.name)
            .field("apn", &self.apn)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("auth", &self.auth)
            .finish()
    }
}

/// Called after the platform's state changed (a D-Bus signal, a setter).
pub type ChangeCallback = Arc<dyn Fn() + Send + Sync>;

/// One packet-data context (an oFono ConnectionContext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApnContext {
    pub id: String,
    pub name: String,
    pub apn: String,
    pub username: String,
    pub active: bool,
}

/// Networking, cellular and Wi-Fi state. Reads answer from the
/// implementation's current knowledge (a D-Bus implementation keeps it
/// fresh from signals) and never block.
///
/// Writes go to the host and return once it has answered: an error means
/// nothing changed there.
pub trait Network: Send + Sync {
    fn state(&self) -> NetworkState;
    fn radio(&self) -> RadioState;
    fn wifi_profiles(&self) -> Vec<WifiProfile>;
    /// The interfaces the host translates source addresses on (NAT), by
    /// name, read now (blocking: call off the tree's lock); none where
    /// unknown.
    fn masqueraded(&self) -> Result<Vec<String>, PlatformError> {
        Ok(Vec::new())
    }
    /// The Wi-Fi radios (none where unknown).
    fn wifi_radios(&self) -> Vec<WifiRadio> {
        Vec::new()
    }
    fn apn_contexts(&self) -> Vec<ApnContext>;

    /// Runs `callback` after every change of what the reads return.
    fn on_change(&self, callback: ChangeCallback);

    /// Creates a Wi-Fi profile; returns its id.
    fn add_wifi_profile(&self, settings: &WifiSettings) -> Result<String, PlatformError>;
    /// Replaces a profile's settings.
    fn update_wifi_profile(&self, id: &str, settings: &WifiSettings) -> Result<(), PlatformError>;
    fn delete_wifi_profile(&self, id: &str) -> Result<(), PlatformError>;

    /// Creates a packet-data context; returns its id.
    fn add_apn_context(&self, settings: &ApnSettings) -> Result<String, PlatformError>;
    fn update_apn_context(&self, id: &str, settings: &ApnSettings) -> Result<(), PlatformError>;
    fn delete_apn_context(&self, id: &str) -> Result<(), PlatformError>;

    /// The Ethernet links, in the kernel's order (none when unknown).
    fn links(&self) -> Vec<Link> {
        Vec::new()
    }

    /// What the interfaces' DHCPv6 clients hold (none where unknown).
    fn dhcpv6_leases(&self) -> Vec<Dhcp6Lease> {
        Vec::new()
    }

    /// The DHCPv4 leases the interfaces hold (none where unknown).
    fn dhcp_leases(&self) -> Vec<DhcpLease> {
        Vec::new()
    }

    /// The IP interfaces, in the kernel's order (none when unknown).
    fn ip_interfaces(&self) -> Vec<IpInterface> {
        Vec::new()
    }

    /// A link's counters now: a live read, cheap (sysfs).
    fn link_stats(&self, name: &str) -> Result<LinkStats, PlatformError> {
        Err(PlatformError::Unavailable(format!(
            "the counters of {name}"
        )))
    }

    /// One of a link's counters now: what a read of one Stats parameter
    /// costs (one sysfs file, not nine).
    fn link_counter(&self, name: &str, counter: LinkCounter) -> Result<u64, PlatformError> {
        self.link_stats(name).map(|stats| stats.get(counter))
    }

    /// The name of the IP interface with kernel index `index`, without
    /// copying the whole table.
    fn ip_interface_name(&self, index: u32) -> Option<String> {
        self.ip_interfaces()
            .into_iter()
            .find(|i| i.index == index)
            .map(|i| i.name)
    }

    /// The DNS servers the host's resolver uses.
    fn dns_servers(&self) -> Vec<IpAddr> {
        Vec::new()
    }

    /// The routes of the main table, IPv4 first, each family in the
    /// kernel's order.
    fn routes(&self) -> Vec<Route> {
        Vec::new()
    }

    /// The neighbour table now (none where unknown). May read the
    /// kernel's tables: called off the tree's lock, when a request lists
    /// the hosts.
    fn neighbours(&self) -> Result<Vec<Neighbour>, PlatformError> {
        Ok(Vec::new())
    }

    /// Brings up the bearer `kind` (Bearer Selection, /13): activates an
    /// available device of that kind with its best connection.
    fn select_bearer(&self, kind: BearerKind) -> Result<(), PlatformError> {
        Err(PlatformError::Unavailable(format!(
            "selecting the {kind:?} bearer"
        )))
    }
}

/// What the host does when asked to: reboot, factory reset. Each returns
/// once the host accepted (the reboot itself follows).
pub trait Actions: Send + Sync {
    fn reboot(&self) -> Result<(), PlatformError>;
    fn factory_reset(&self) -> Result<(), PlatformError>;
    /// Whether anything can perform a factory reset here: when not, the
    /// agent keeps its state rather than erase it for a reset that will
    /// not happen.
    fn can_factory_reset(&self) -> bool {
        true
    }
}

/// Actions on a host without logind: a reboot by the `reboot` command
/// every Linux init provides (systemd, sysvinit, BusyBox); a factory
/// reset only by a configured command (there is no standard one).
pub struct NoActions;

impl Actions for NoActions {
    fn reboot(&self) -> Result<(), PlatformError> {
        run_command(&["reboot".to_owned()])
    }

    fn factory_reset(&self) -> Result<(), PlatformError> {
        Err(PlatformError::Unavailable(
            "factory reset (no logind on the system bus: configure [platform] factory_reset_command)"
                .into(),
        ))
    }

    fn can_factory_reset(&self) -> bool {
        false
    }
}

/// Configured commands for the actions, falling back to another
/// implementation for an action with none (e.g. logind).
pub struct CommandActions {
    pub reboot: Option<Vec<String>>,
    pub factory_reset: Option<Vec<String>>,
    pub fallback: Arc<dyn Actions>,
}

impl Actions for CommandActions {
    fn reboot(&self) -> Result<(), PlatformError> {
        match &self.reboot {
            Some(argv) => run_command(argv),
            None => self.fallback.reboot(),
        }
    }

    fn factory_reset(&self) -> Result<(), PlatformError> {
        match &self.factory_reset {
            Some(argv) => run_command(argv),
            None => self.fallback.factory_reset(),
        }
    }

    fn can_factory_reset(&self) -> bool {
        self.factory_reset.is_some() || self.fallback.can_factory_reset()
    }
}

/// Runs a configured command, argv only (no shell), and waits for it.
pub fn run_command(argv: &[String]) -> Result<(), PlatformError> {
    let (program, arguments) = argv
        .split_first()
        .ok_or_else(|| PlatformError::InvalidArgument("an empty command".into()))?;
    let status = std::process::Command::new(program)
        .args(arguments)
        .status()
        .map_err(|e| PlatformError::Failed(format!("{program}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(PlatformError::Failed(format!("{program}: {status}")))
    }
}

/// The system log.
pub trait SystemLog: Send + Sync {
    /// The whole retained log.
    fn read_all(&self) -> Result<String, PlatformError>;
    /// What was logged since `reader`'s previous call (everything on its
    /// first): each reader has its own cursor, so a server never loses
    /// lines because another one read them.
    fn read_new(&self, reader: &str) -> Result<String, PlatformError>;
    /// The most one read returns, bytes (what an Upload of the log
    /// carries at most).
    fn maximum_size(&self) -> u64;
    /// Whether the log outlives a reboot (`None`: not known).
    fn persistent(&self) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acs_url_comes_from_sub_option_1_or_a_plain_option() {
        let url = b"http://acs.example:7547/cwmp";
        let mut tlv = vec![2, 3, b'a', b'b', b'c', 1, url.len() as u8];
        tlv.extend_from_slice(url);
        assert_eq!(
            acs_url_from_vendor_options(&tlv).as_deref(),
            Some("http://acs.example:7547/cwmp")
        );
        assert_eq!(
            acs_url_from_vendor_options(b"https://acs.example/").as_deref(),
            Some("https://acs.example/")
        );
        // Truncated, not a URL, another scheme: nothing.
        assert_eq!(acs_url_from_vendor_options(&[1, 40, b'h']), None);
        assert_eq!(acs_url_from_vendor_options(&[1, 3, b'a', b'b', b'c']), None);
        assert_eq!(acs_url_from_vendor_options(b"ftp://x/"), None);
        assert_eq!(acs_url_from_vendor_options(&[]), None);
    }
}
