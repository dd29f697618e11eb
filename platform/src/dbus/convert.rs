//! What NetworkManager and oFono say, as the platform's types, and the
//! platform's writes as their calls. No D-Bus type leaves this module.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use zbus::{Connection, ObjectPath, OwnedObjectPath, OwnedVariant, Variant};

use super::proxies::nm::{NmConnectionProxy, NmSettingsProxy};
use super::proxies::ofono::{
    ConnectionContextProxy, ConnectionManagerProxy, ManagerProxy, NetworkRegistrationProxy,
};
use super::proxies::properties::PropertiesProxy;
use super::proxies::{Dict, Settings, nm};
use crate::{
    ApnAuth, ApnContext, ApnSettings, BearerKind, NetworkState, PlatformError, RadioState,
    WifiProfile, WifiSecurity, WifiSettings,
};

/// A D-Bus failure as a platform error: who refused, and why.
pub fn error(service: &str, e: zbus::Error) -> PlatformError {
    let name = dbus_error_name(&e).unwrap_or_default();
    let text = format!("{service}: {e}");
    let last = name.rsplit('.').next().unwrap_or("");
    match last {
        "ServiceUnknown" | "NameHasNoOwner" | "NoReply" | "Disconnected" | "UnknownObject"
        | "UnknownMethod" | "UnknownInterface" | "NoServer" | "Timeout" => {
            PlatformError::Unavailable(text)
        }
        "AccessDenied" | "PermissionDenied" | "NotAuthorized" | "AuthFailed" => {
            PlatformError::AccessDenied(text)
        }
        "InUse" | "Busy" | "InProgress" => PlatformError::Failed(format!(
            "{text} (the context is in use: deactivate it first)"
        )),
        "InvalidArgs" | "InvalidArguments" | "InvalidProperty" | "InvalidSetting"
        | "InvalidFormat" | "MissingProperty" | "InvalidConnection" | "UnknownConnection" => {
            PlatformError::InvalidArgument(text)
        }
        _ => match e {
            zbus::Error::InputOutput(_) | zbus::Error::Connection(..) => {
                PlatformError::Unavailable(text)
            }
            _ => PlatformError::Failed(text),
        },
    }
}

fn dbus_error_name(e: &zbus::Error) -> Option<String> {
    use zbus::DBusError as _;
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(f) => match &**f {
            zbus::fdo::Error::ZBus(inner) => dbus_error_name(inner),
            f => Some(f.name().as_str().to_owned()),
        },
        zbus::Error::DBus(d) => Some(d.name().as_str().to_owned()),
        _ => None,
    }
}

pub(super) fn text(map: &Dict, key: &str) -> Option<String> {
    map.get(key)
        .and_then(|v| <&str>::try_from(v).ok())
        .map(str::to_owned)
}

pub(super) fn number<T: for<'a> TryFrom<&'a OwnedVariant>>(map: &Dict, key: &str) -> Option<T> {
    map.get(key).and_then(|v| T::try_from(v).ok())
}

pub(super) fn path(map: &Dict, key: &str) -> Option<String> {
    map.get(key)
        .and_then(|v| <&ObjectPath<'_>>::try_from(v).ok())
        .map(|p| p.as_str().to_owned())
        .filter(|p| p != "/")
}

pub(super) fn paths(map: &Dict, key: &str) -> Vec<String> {
    map.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<OwnedObjectPath>::try_from(v).ok())
        .unwrap_or_default()
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect()
}

fn bytes(map: &Dict, key: &str) -> Option<Vec<u8>> {
    map.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<u8>::try_from(v).ok())
}

pub(super) async fn get_all(
    connection: &Connection,
    service: &str,
    object: &str,
    interface: &str,
) -> Result<Dict, PlatformError> {
    let proxy = PropertiesProxy::new(connection, service.to_owned(), object.to_owned())
        .await
        .map_err(|e| error(service, e))?;
    proxy
        .get_all(interface)
        .await
        .map_err(|e| error(service, e))
}

/// NetworkManager device types (NMDeviceType) the platform names.
fn bearer_of(device_type: u32) -> Option<BearerKind> {
    match device_type {
        // Ethernet, and veth (20), which the tests' namespace uses.
        1 | 20 => Some(BearerKind::Ethernet),
        2 => Some(BearerKind::Wlan),
        _ => None,
    }
}

/// The modem's access technology as a bearer.
pub(super) fn cellular_bearer(technology: &str) -> Option<BearerKind> {
    match technology {
        "lte" | "nr" => Some(BearerKind::LteFdd),
        "nbiot" => Some(BearerKind::NbIot),
        "umts" | "hspa" | "hsdpa" | "hsupa" => Some(BearerKind::Wcdma),
        "gsm" | "edge" | "gprs" => Some(BearerKind::Gsm),
        _ => None,
    }
}

/// A registered modem is an available bearer, and the bearer in use when
/// nothing else carries traffic.
pub fn add_cellular_bearer(network: &mut NetworkState, radio: &RadioState) {
    let Some(kind) = radio.technology.as_deref().and_then(cellular_bearer) else {
        return;
    };
    if !network.available.contains(&kind) {
        network.available.push(kind);
    }
    if network.bearer.is_none() {
        network.bearer = Some(kind);
    }
}

/// NMDeviceState: activated.
const DEVICE_ACTIVATED: u32 = 100;
/// NMDeviceState: disconnected (usable) and above.
const DEVICE_AVAILABLE: u32 = 30;
/// NMActiveConnectionState: activated.
const ACTIVE_ACTIVATED: u32 = 2;

struct Device {
    interface: String,
    kind: Option<BearerKind>,
    state: u32,
    ip4: Option<String>,
    ip6: Option<String>,
    dhcp4: Option<String>,
    dhcp6: Option<String>,
}

/// The bytes of a DHCP option as NetworkManager shows it in DHCP4Config's
/// Options: colon-separated hex for binary options (its internal client and
/// dhclient both), else the text itself.
fn option_bytes(value: &str) -> Vec<u8> {
    let hex: Option<Vec<u8>> = value
        .split(':')
        .map(|h| match dm_core::support::hex::decode(h).as_deref() {
            Ok(&[byte]) => Some(byte),
            _ => None,
        })
        .collect();
    match hex {
        Some(bytes) if value.contains(':') => bytes,
        _ => value.as_bytes().to_vec(),
    }
}

/// A DHCP4Config's Options as a lease (NetworkManager's names: those of
/// dhclient's environment, the same for its internal client).
pub(super) fn lease(interface: &str, options: &Dict) -> crate::DhcpLease {
    let addresses = |key: &str| -> Vec<IpAddr> {
        text(options, key)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    let v4 = |key: &str| text(options, key).and_then(|a| a.trim().parse().ok());
    crate::DhcpLease {
        interface: interface.to_owned(),
        address: v4("ip_address"),
        subnet_mask: v4("subnet_mask"),
        routers: addresses("routers"),
        dns_servers: addresses("domain_name_servers"),
        server: text(options, "dhcp_server_identifier").and_then(|a| a.trim().parse().ok()),
        expiry: text(options, "expiry").and_then(|e| e.trim().parse().ok()),
    }
}

/// A DHCP6Config's Options as what the client holds (NetworkManager's
/// names, the same for its internal client and dhclient): the DUIDs as
/// colon-separated hex, lists of addresses and names space-separated.
pub(super) fn lease6(interface: &str, options: &Dict) -> crate::Dhcp6Lease {
    let v6 = |key: &str| -> Vec<std::net::Ipv6Addr> {
        text(options, key)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    let duid = |key: &str| {
        text(options, key)
            .map(|v| option_bytes(v.trim()))
            .unwrap_or_default()
    };
    crate::Dhcp6Lease {
        interface: interface.to_owned(),
        client_id: duid("dhcp6_client_id"),
        server_id: duid("dhcp6_server_id"),
        dns_servers: v6("dhcp6_name_servers"),
        domain_search: text(options, "dhcp6_domain_search")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        sntp_servers: v6("dhcp6_sntp_servers"),
    }
}

/// What NetworkManager reports: the network state, Wi-Fi profiles and
/// radios, DHCP leases.
#[derive(Default)]
pub struct NetworkManagerView {
    pub network: NetworkState,
    pub wifi: Vec<WifiProfile>,
    pub leases: Vec<crate::DhcpLease>,
    pub leases6: Vec<crate::Dhcp6Lease>,
    pub radios: Vec<crate::WifiRadio>,
}

/// NMDeviceWifiCapabilities: the frequency flags are valid, 2.4 GHz, 5 GHz.
const WIFI_FREQ_VALID: u32 = 0x100;
const WIFI_FREQ_2GHZ: u32 = 0x200;
const WIFI_FREQ_5GHZ: u32 = 0x400;
/// NM80211Mode: infrastructure (a station).
const WIFI_MODE_INFRA: u32 = 2;

/// A wireless device's radio, from its Device.Wireless properties and its
/// active access point's.
async fn read_radio(
    connection: &Connection,
    object: &str,
    device: &Device,
) -> Option<crate::WifiRadio> {
    let props = get_all(connection, nm::SERVICE, object, nm::WIRELESS)
        .await
        .ok()?;
    let capabilities = number::<u32>(&props, "WirelessCapabilities").unwrap_or(0);
    let mut bands = Vec::new();
    if capabilities & WIFI_FREQ_VALID != 0 {
        if capabilities & WIFI_FREQ_2GHZ != 0 {
            bands.push("2.4GHz");
        }
        if capabilities & WIFI_FREQ_5GHZ != 0 {
            bands.push("5GHz");
        }
    }
    let mut frequency = None;
    if let Some(ap) = path(&props, "ActiveAccessPoint")
        && let Ok(ap) = get_all(connection, nm::SERVICE, &ap, nm::ACCESS_POINT).await
    {
        frequency = number::<u32>(&ap, "Frequency").filter(|f| *f > 0);
    }
    Some(crate::WifiRadio {
        interface: device.interface.clone(),
        enabled: device.state >= DEVICE_AVAILABLE,
        up: device.state == DEVICE_ACTIVATED,
        station: number::<u32>(&props, "Mode") == Some(WIFI_MODE_INFRA),
        bands,
        bitrate: number::<u32>(&props, "Bitrate").unwrap_or(0),
        frequency,
    })
}

/// Devices, addresses, Wi-Fi profiles and leases.
pub async fn read_network_manager(
    connection: &Connection,
) -> Result<NetworkManagerView, PlatformError> {
    let manager = get_all(connection, nm::SERVICE, nm::PATH, nm::INTERFACE).await?;
    let mut devices = HashMap::new();
    for object in paths(&manager, "Devices") {
        let Ok(props) = get_all(connection, nm::SERVICE, &object, nm::DEVICE).await else {
            continue;
        };
        devices.insert(
            object,
            Device {
                interface: text(&props, "Interface").unwrap_or_default(),
                kind: number::<u32>(&props, "DeviceType").and_then(bearer_of),
                state: number::<u32>(&props, "State").unwrap_or(0),
                ip4: path(&props, "Ip4Config"),
                ip6: path(&props, "Ip6Config"),
                dhcp4: path(&props, "Dhcp4Config"),
                dhcp6: path(&props, "Dhcp6Config"),
            },
        );
    }
    let mut active_uuids = BTreeSet::new();
    for object in paths(&manager, "ActiveConnections") {
        if let Ok(props) = get_all(connection, nm::SERVICE, &object, nm::ACTIVE).await
            && number::<u32>(&props, "State") == Some(ACTIVE_ACTIVATED)
            && let Some(uuid) = text(&props, "Uuid")
        {
            active_uuids.insert(uuid);
        }
    }
    // The device carrying the primary connection (the default route), or
    // else the first activated one.
    let mut carrier = None;
    if let Some(primary) = path(&manager, "PrimaryConnection")
        && let Ok(props) = get_all(connection, nm::SERVICE, &primary, nm::ACTIVE).await
    {
        carrier = paths(&props, "Devices").into_iter().next();
    }
    let mut ordered: Vec<(&String, &Device)> = devices.iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(b.0));
    let carrier = carrier.filter(|c| devices.contains_key(c)).or_else(|| {
        ordered
            .iter()
            .find(|(_, d)| d.state == DEVICE_ACTIVATED && d.kind.is_some())
            .map(|(p, _)| (*p).clone())
    });
    let mut leases = Vec::new();
    for (_, device) in &ordered {
        if let Some(config) = &device.dhcp4
            && let Ok(props) = get_all(connection, nm::SERVICE, config, nm::DHCP4).await
            && let Some(options) = props
                .get("Options")
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| Dict::try_from(v).ok())
        {
            leases.push(lease(&device.interface, &options));
        }
    }
    let mut radios = Vec::new();
    for (object, device) in &ordered {
        if device.kind == Some(BearerKind::Wlan)
            && let Some(radio) = read_radio(connection, object, device).await
        {
            radios.push(radio);
        }
    }
    let mut leases6 = Vec::new();
    for (_, device) in &ordered {
        if let Some(config) = &device.dhcp6
            && let Ok(props) = get_all(connection, nm::SERVICE, config, nm::DHCP6).await
            && let Some(options) = props
                .get("Options")
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| Dict::try_from(v).ok())
        {
            leases6.push(lease6(&device.interface, &options));
        }
    }
    let mut network = NetworkState::default();
    for (_, device) in &ordered {
        if let Some(kind) = device.kind
            && device.state >= DEVICE_AVAILABLE
            && !network.available.contains(&kind)
        {
            network.available.push(kind);
        }
    }
    if let Some(device) = carrier.as_ref().and_then(|c| devices.get(c)) {
        network.bearer = device.kind;
        network.interface = Some(device.interface.clone());
        for (config, interface) in [(&device.ip4, nm::IP4), (&device.ip6, nm::IP6)] {
            let Some(config) = config else { continue };
            let Ok(props) = get_all(connection, nm::SERVICE, config, interface).await else {
                continue;
            };
            network.addresses.extend(addresses(&props));
            if let Some(gateway) = text(&props, "Gateway").and_then(|g| g.parse::<IpAddr>().ok()) {
                network.routers.push(gateway);
            }
        }
        if let Some(config) = &device.dhcp4
            && let Ok(props) = get_all(connection, nm::SERVICE, config, nm::DHCP4).await
            && let Some(options) = props
                .get("Options")
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| Dict::try_from(v).ok())
            && let Some(value) = text(&options, "vendor_encapsulated_options")
        {
            network.dhcp_acs_url = crate::acs_url_from_vendor_options(&option_bytes(&value));
        }
    }
    let wifi = read_wifi_profiles(connection, &active_uuids).await?;
    Ok(NetworkManagerView {
        network,
        wifi,
        leases,
        leases6,
        radios,
    })
}

/// Activates an available device of bearer `kind` with the connection
/// NetworkManager finds best for it (Bearer Selection).
pub async fn select_bearer(connection: &Connection, kind: BearerKind) -> Result<(), PlatformError> {
    if matches!(
        kind,
        BearerKind::Gsm | BearerKind::Wcdma | BearerKind::LteFdd | BearerKind::NbIot
    ) {
        return select_cellular(connection, kind).await;
    }
    let manager = get_all(connection, nm::SERVICE, nm::PATH, nm::INTERFACE).await?;
    let mut chosen = None;
    for object in paths(&manager, "Devices") {
        let Ok(props) = get_all(connection, nm::SERVICE, &object, nm::DEVICE).await else {
            continue;
        };
        let state = number::<u32>(&props, "State").unwrap_or(0);
        if number::<u32>(&props, "DeviceType").and_then(bearer_of) == Some(kind)
            && state >= DEVICE_AVAILABLE
        {
            if state == DEVICE_ACTIVATED {
                // A device of that kind is up already: activating another
                // (or this one again) would take a link down for nothing.
                return Ok(());
            }
            // The first available device, with its first usable profile;
            // "/" lets NetworkManager pick when it lists none.
            if chosen.is_none() {
                let profile = paths(&props, "AvailableConnections")
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "/".to_owned());
                chosen = Some((object, profile));
            }
        }
    }
    let (device, profile) =
        chosen.ok_or_else(|| PlatformError::Unavailable(format!("a {kind:?} device")))?;
    let path = |p: &str| {
        ObjectPath::try_from(p.to_owned()).map_err(|e| PlatformError::Failed(e.to_string()))
    };
    let none = ObjectPath::from_static_str_unchecked("/");
    let active = super::proxies::nm::NmProxy::new(connection)
        .await
        .map_err(|e| error(nm::SERVICE, e))?
        .activate_connection(&path(&profile)?, &path(&device)?, &none)
        .await
        .map_err(|e| error(nm::SERVICE, e))?;
    wait_activated(connection, active).await
}

/// A cellular bearer (Bearer Selection) through oFono: the modem must be
/// registered on that access technology; its packet service is powered
/// and its first internet context activated, and the call returns once
/// oFono reports the context active (oFono, not NetworkManager, owns the
/// modem's data connection here).
async fn select_cellular(connection: &Connection, kind: BearerKind) -> Result<(), PlatformError> {
    use futures_util::StreamExt as _;
    let unavailable = |what: String| PlatformError::Unavailable(what);
    let (object, _) = modem(connection)
        .await?
        .ok_or_else(|| unavailable("a modem".into()))?;
    let registration = NetworkRegistrationProxy::new(connection, object.clone())
        .await
        .map_err(|e| error(OFONO, e))?
        .get_properties()
        .await
        .map_err(|e| error(OFONO, e))?;
    let registered = matches!(
        text(&registration, "Status").as_deref(),
        Some("registered" | "roaming")
    );
    let on = text(&registration, "Technology").and_then(|t| cellular_bearer(&t));
    if !registered || on != Some(kind) {
        return Err(unavailable(format!(
            "a modem registered on {kind:?} (it is {}, on {on:?})",
            text(&registration, "Status").unwrap_or_default()
        )));
    }
    let manager = ConnectionManagerProxy::new(connection, object)
        .await
        .map_err(|e| error(OFONO, e))?;
    let deadline = tokio::time::Instant::now() + ACTIVATION_TIMEOUT;
    let mut packet_changes = manager
        .receive_property_changed()
        .await
        .map_err(|e| error(OFONO, e))?;
    let packet = manager
        .get_properties()
        .await
        .map_err(|e| error(OFONO, e))?;
    if number::<bool>(&packet, "Powered") != Some(true) {
        manager
            .set_property("Powered", &Variant::from(true))
            .await
            .map_err(|e| error(OFONO, e))?;
    }
    // A context can be activated once the modem is attached to the packet
    // service (oFono refuses with NotAttached before).
    if number::<bool>(&packet, "Attached") != Some(true) {
        let attached = async {
            while let Some(signal) = packet_changes.next().await {
                if let Ok(args) = signal.args()
                    && args.name == "Attached"
                    && bool::try_from(&args.value).ok() == Some(true)
                {
                    return;
                }
            }
        };
        let timed_out = tokio::time::timeout_at(deadline, attached).await.is_err();
        let attached_now = manager
            .get_properties()
            .await
            .ok()
            .and_then(|p| number::<bool>(&p, "Attached"))
            == Some(true);
        if timed_out && !attached_now {
            return Err(PlatformError::Failed(
                "the modem did not attach to the packet service".into(),
            ));
        }
    }
    let (path, props) = manager
        .get_contexts()
        .await
        .map_err(|e| error(OFONO, e))?
        .into_iter()
        .find(|(_, p)| text(p, "Type").as_deref() == Some("internet"))
        .ok_or_else(|| unavailable("an internet context (APN) on the modem".into()))?;
    if number::<bool>(&props, "Active") == Some(true) {
        return Ok(());
    }
    let context = ConnectionContextProxy::new(connection, path)
        .await
        .map_err(|e| error(OFONO, e))?;
    // Subscribed before asking: the change cannot come in between.
    let mut changes = context
        .receive_property_changed()
        .await
        .map_err(|e| error(OFONO, e))?;
    // oFono answers once the context is up, which can take longer than a
    // D-Bus call may wait here: a timed-out call is not a refusal, the
    // PropertyChanged signal tells.
    match context.set_property("Active", &Variant::from(true)).await {
        Ok(()) => {}
        Err(zbus::Error::InputOutput(e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
        Err(e) => return Err(error(OFONO, e)),
    }
    let wait = async {
        while let Some(signal) = changes.next().await {
            let Ok(args) = signal.args() else { continue };
            if args.name == "Active" && bool::try_from(&args.value).ok() == Some(true) {
                return Ok(());
            }
        }
        Err(PlatformError::Failed("oFono's signal stream ended".into()))
    };
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(result) => result,
        // It may have become active without a signal we saw.
        Err(_)
            if number::<bool>(
                &context.get_properties().await.unwrap_or_default(),
                "Active",
            ) == Some(true) =>
        {
            Ok(())
        }
        Err(_) => Err(PlatformError::Failed(format!(
            "the modem's data context was not active within {} s",
            ACTIVATION_TIMEOUT.as_secs()
        ))),
    }
}

/// NMActiveConnectionState: deactivated.
const ACTIVE_DEACTIVATED: u32 = 4;
/// How long an activation may take: NetworkManager's own DHCP timeout is
/// 45 s, but the agent's callers wait on this.
const ACTIVATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the active connection NetworkManager just created is
/// activated, so that a selected bearer is in use when the call returns
/// (and the state read after it is not the gap between two links).
async fn wait_activated(
    connection: &Connection,
    active: OwnedObjectPath,
) -> Result<(), PlatformError> {
    use futures_util::StreamExt as _;
    let proxy = super::proxies::nm::NmActiveProxy::new(connection, active.clone())
        .await
        .map_err(|e| error(nm::SERVICE, e))?;
    // Subscribe first, then read the state: a change between the two is
    // then in the stream, not lost.
    let mut changes = proxy
        .receive_state_changed()
        .await
        .map_err(|e| error(nm::SERVICE, e))?;
    let wait = async {
        let mut state = get_all(connection, nm::SERVICE, &active, nm::ACTIVE)
            .await
            .ok()
            .and_then(|props| number::<u32>(&props, "State"));
        loop {
            match state {
                Some(ACTIVE_ACTIVATED) => return Ok(()),
                // Gone from the bus: NetworkManager removes an active
                // connection once it is deactivated.
                Some(ACTIVE_DEACTIVATED) | None => {
                    return Err(PlatformError::Failed(
                        "NetworkManager could not activate the connection".into(),
                    ));
                }
                Some(_) => {}
            }
            let Some(signal) = changes.next().await else {
                return Err(PlatformError::Failed(
                    "NetworkManager's signal stream ended".into(),
                ));
            };
            state = signal.args().ok().map(|a| a.state);
        }
    };
    tokio::time::timeout(ACTIVATION_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| {
            Err(PlatformError::Failed(format!(
                "the connection was not activated within {} s",
                ACTIVATION_TIMEOUT.as_secs()
            )))
        })
}

/// The addresses of an IP4Config/IP6Config's AddressData (aa{sv}).
fn addresses(props: &Dict) -> Vec<IpAddr> {
    let Some(data) = props.get("AddressData").and_then(|v| v.try_clone().ok()) else {
        return Vec::new();
    };
    let Ok(entries) = Vec::<HashMap<String, OwnedVariant>>::try_from(data) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| text(entry, "address"))
        .filter_map(|a| a.parse().ok())
        .collect()
}

async fn read_wifi_profiles(
    connection: &Connection,
    active: &BTreeSet<String>,
) -> Result<Vec<WifiProfile>, PlatformError> {
    let settings = NmSettingsProxy::new(connection)
        .await
        .map_err(|e| error(nm::SERVICE, e))?;
    let mut profiles = Vec::new();
    for object in settings
        .list_connections()
        .await
        .map_err(|e| error(nm::SERVICE, e))?
    {
        // A profile that cannot be read makes the whole read incomplete:
        // leaving it out would look like its deletion.
        let profile = NmConnectionProxy::new(connection, object)
            .await
            .map_err(|e| error(nm::SERVICE, e))?;
        let values = profile
            .get_settings()
            .await
            .map_err(|e| error(nm::SERVICE, e))?;
        if let Some(profile) = wifi_profile(&values, active) {
            profiles.push(profile);
        }
    }
    profiles.sort_by(|a, b| (&a.interface, &a.ssid).cmp(&(&b.interface, &b.ssid)));
    Ok(profiles)
}

/// A NetworkManager connection of type 802-11-wireless as a profile.
fn wifi_profile(values: &Settings, active: &BTreeSet<String>) -> Option<WifiProfile> {
    let connection = values.get("connection")?;
    if text(connection, "type").as_deref() != Some("802-11-wireless") {
        return None;
    }
    let wireless = values.get("802-11-wireless")?;
    let uuid = text(connection, "uuid")?;
    let security = values
        .get("802-11-wireless-security")
        .and_then(|s| text(s, "key-mgmt"));
    Some(WifiProfile {
        active: active.contains(&uuid),
        id: uuid,
        interface: text(connection, "interface-name").unwrap_or_default(),
        ssid: String::from_utf8_lossy(&bytes(wireless, "ssid").unwrap_or_default()).into_owned(),
        // NetworkManager leaves defaults out: autoconnect is true unless
        // said otherwise.
        enabled: number::<bool>(connection, "autoconnect").unwrap_or(true),
        channel: number::<u32>(wireless, "channel")
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(0),
        access_point: text(wireless, "mode").as_deref() == Some("ap"),
        security: match security.as_deref() {
            Some("wpa-psk" | "sae") => WifiSecurity::WpaPsk,
            _ => WifiSecurity::Open,
        },
        bssid: None,
    })
}

/// The settings sections for a profile, as NetworkManager takes them.
fn wifi_sections(
    settings: &WifiSettings,
    uuid: &str,
    psk: Option<&str>,
) -> HashMap<String, HashMap<String, OwnedVariant>> {
    let ov = |v: Variant<'_>| v.try_into_owned().expect("no file descriptors");
    let mut connection = HashMap::new();
    connection.insert("id".to_owned(), ov(Variant::from(settings.ssid.as_str())));
    connection.insert("uuid".to_owned(), ov(Variant::from(uuid)));
    connection.insert("type".to_owned(), ov(Variant::from("802-11-wireless")));
    connection.insert(
        "autoconnect".to_owned(),
        ov(Variant::from(settings.enabled)),
    );
    if !settings.interface.is_empty() {
        connection.insert(
            "interface-name".to_owned(),
            ov(Variant::from(settings.interface.as_str())),
        );
    }
    let mut wireless = HashMap::new();
    wireless.insert(
        "ssid".to_owned(),
        ov(Variant::from(settings.ssid.as_bytes().to_vec())),
    );
    wireless.insert(
        "mode".to_owned(),
        ov(Variant::from(if settings.access_point {
            "ap"
        } else {
            "infrastructure"
        })),
    );
    if settings.channel > 0 {
        wireless.insert(
            "channel".to_owned(),
            ov(Variant::from(u32::from(settings.channel))),
        );
        // A channel needs its band: 1–14 are 2.4 GHz.
        let band = if settings.channel <= 14 { "bg" } else { "a" };
        wireless.insert("band".to_owned(), ov(Variant::from(band)));
    }
    let mut sections = HashMap::new();
    sections.insert("connection".to_owned(), connection);
    if settings.security == WifiSecurity::WpaPsk {
        wireless.insert(
            "security".to_owned(),
            ov(Variant::from("802-11-wireless-security")),
        );
        let mut security = HashMap::new();
        security.insert("key-mgmt".to_owned(), ov(Variant::from("wpa-psk")));
        if let Some(psk) = psk {
            security.insert("psk".to_owned(), ov(Variant::from(psk)));
        }
        sections.insert("802-11-wireless-security".to_owned(), security);
    }
    sections.insert("802-11-wireless".to_owned(), wireless);
    let mut ipv4 = HashMap::new();
    ipv4.insert(
        "method".to_owned(),
        ov(Variant::from(if settings.access_point {
            "shared"
        } else {
            "auto"
        })),
    );
    sections.insert("ipv4".to_owned(), ipv4);
    let mut ipv6 = HashMap::new();
    ipv6.insert("method".to_owned(), ov(Variant::from("auto")));
    sections.insert("ipv6".to_owned(), ipv6);
    sections
}

/// A fresh random UUID for a new profile.
fn new_uuid() -> Result<String, PlatformError> {
    dm_rt::random::uuid_v4().map_err(|e| PlatformError::Failed(format!("no UUID: {e}")))
}

pub async fn add_wifi(
    connection: &Connection,
    settings: &WifiSettings,
) -> Result<String, PlatformError> {
    let uuid = new_uuid()?;
    let sections = wifi_sections(settings, &uuid, settings.passphrase.as_deref());
    // AddConnection takes borrowed keys; convert once.
    let borrowed: HashMap<&str, HashMap<&str, Variant<'_>>> = sections
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                v.iter()
                    .map(|(k, v)| (k.as_str(), Variant::from(v.try_clone().expect("no fds"))))
                    .collect(),
            )
        })
        .collect();
    let added = NmSettingsProxy::new(connection)
        .await
        .map_err(|e| error(nm::SERVICE, e))?
        .add_connection(borrowed)
        .await;
    if let Err(e) = added {
        // A call that timed out may still have been carried out: the
        // profile goes by the UUID we gave it (nothing if it was refused),
        // so no orphan turns up later as a new instance.
        let _ = delete_wifi(connection, &uuid).await;
        return Err(error(nm::SERVICE, e));
    }
    Ok(uuid)
}

async fn profile_proxy<'c>(
    connection: &'c Connection,
    uuid: &str,
) -> Result<NmConnectionProxy<'c>, PlatformError> {
    let object = NmSettingsProxy::new(connection)
        .await
        .map_err(|e| error(nm::SERVICE, e))?
        .get_connection_by_uuid(uuid)
        .await
        .map_err(|e| error(nm::SERVICE, e))?;
    NmConnectionProxy::new(connection, object)
        .await
        .map_err(|e| error(nm::SERVICE, e))
}

/// Update replaces the whole profile, and GetSettings hides secrets: the
/// current passphrase is fetched with GetSecrets when the write keeps it.
/// Sections the platform does not manage (IP settings of a client
/// profile, proxy, ...) are kept as NetworkManager has them.
pub async fn update_wifi(
    connection: &Connection,
    uuid: &str,
    settings: &WifiSettings,
) -> Result<(), PlatformError> {
    let profile = profile_proxy(connection, uuid).await?;
    let mut current = profile
        .get_settings()
        .await
        .map_err(|e| error(nm::SERVICE, e))?;
    let psk = match &settings.passphrase {
        Some(psk) => Some(psk.clone()),
        None if settings.security == WifiSecurity::WpaPsk => profile
            .get_secrets("802-11-wireless-security")
            .await
            .ok()
            .and_then(|s| {
                s.get("802-11-wireless-security")
                    .and_then(|s| text(s, "psk"))
            }),
        None => None,
    };
    let was_ap = current
        .get("802-11-wireless")
        .and_then(|w| text(w, "mode"))
        .as_deref()
        == Some("ap");
    // Security this platform does not manage (WPA3 SAE, enterprise, OWE,
    // WEP) is left exactly as NetworkManager has it: a write of another
    // field must not downgrade or strip it.
    let key_mgmt = current
        .get("802-11-wireless-security")
        .and_then(|s| text(s, "key-mgmt"));
    let managed = matches!(key_mgmt.as_deref(), None | Some("none") | Some("wpa-psk"));
    let mut fresh = wifi_sections(settings, uuid, psk.as_deref());
    if !managed {
        fresh.remove("802-11-wireless-security");
        if let Some(wireless) = fresh.get_mut("802-11-wireless") {
            wireless.remove("security");
        }
    }
    if was_ap == settings.access_point {
        // Same mode: keep NetworkManager's IP settings.
        for section in ["ipv4", "ipv6"] {
            if let Some(kept) = current.remove(section) {
                fresh.insert(section.to_owned(), kept);
            }
        }
    }
    if managed && settings.security != WifiSecurity::WpaPsk {
        current.remove("802-11-wireless-security");
    }
    for (section, values) in fresh {
        let merged = current.entry(section.clone()).or_default();
        if section == "connection" && settings.interface.is_empty() {
            merged.remove("interface-name");
        }
        if section == "802-11-wireless" && settings.channel == 0 {
            merged.remove("channel");
            merged.remove("band");
        }
        if managed && section == "802-11-wireless" && settings.security != WifiSecurity::WpaPsk {
            merged.remove("security");
        }
        merged.extend(values);
    }
    profile
        .update(&current)
        .await
        .map_err(|e| error(nm::SERVICE, e))
}

pub async fn delete_wifi(connection: &Connection, uuid: &str) -> Result<(), PlatformError> {
    profile_proxy(connection, uuid)
        .await?
        .delete()
        .await
        .map_err(|e| error(nm::SERVICE, e))
}

const OFONO: &str = super::proxies::ofono::SERVICE;

/// The first modem oFono has (powered ones first).
async fn modem(connection: &Connection) -> Result<Option<(String, Dict)>, PlatformError> {
    let modems = ManagerProxy::new(connection)
        .await
        .map_err(|e| error(OFONO, e))?
        .get_modems()
        .await
        .map_err(|e| error(OFONO, e))?;
    let mut modems: Vec<(String, Dict)> = modems
        .into_iter()
        .map(|(p, d)| (p.as_str().to_owned(), d))
        .collect();
    modems.sort_by_key(|(p, d)| (number::<bool>(d, "Powered") != Some(true), p.clone()));
    Ok(modems.into_iter().next())
}

fn interfaces(modem: &Dict) -> Vec<String> {
    modem
        .get("Interfaces")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<String>::try_from(v).ok())
        .unwrap_or_default()
}

/// Radio facts and packet-data contexts; `None` when oFono has no modem.
pub async fn read_ofono(
    connection: &Connection,
) -> Result<Option<(RadioState, Vec<ApnContext>)>, PlatformError> {
    let Some((object, props)) = modem(connection).await? else {
        return Ok(None);
    };
    let interfaces = interfaces(&props);
    let mut radio = RadioState {
        imei: text(&props, "Serial"),
        ..RadioState::default()
    };
    if interfaces
        .iter()
        .any(|i| i == "org.ofono.NetworkRegistration")
        && let Ok(proxy) = NetworkRegistrationProxy::new(connection, object.clone()).await
        && let Ok(registration) = proxy.get_properties().await
    {
        radio = RadioState {
            link_quality: number::<u8>(&registration, "Strength"),
            // oFono's Strength is the CSQ scale (0–31) in percent:
            // RSSI = -113 + 2 × CSQ dBm (3GPP TS 27.007 §8.5).
            signal_dbm: number::<u8>(&registration, "Strength")
                .map(|s| -113 + 2 * (i32::from(s) * 31 / 100)),
            cell_id: number::<u32>(&registration, "CellId"),
            lac: number::<u16>(&registration, "LocationAreaCode"),
            mcc: text(&registration, "MobileCountryCode").and_then(|m| m.parse().ok()),
            mnc: text(&registration, "MobileNetworkCode").and_then(|m| m.parse().ok()),
            technology: text(&registration, "Technology"),
            operator: text(&registration, "Name"),
            ..radio
        };
    }
    let mut contexts = Vec::new();
    if interfaces
        .iter()
        .any(|i| i == "org.ofono.ConnectionManager")
        && let Ok(manager) = ConnectionManagerProxy::new(connection, object.clone()).await
        && let Ok(found) = manager.get_contexts().await
    {
        for (path, props) in found {
            contexts.push(ApnContext {
                id: path.as_str().to_owned(),
                name: text(&props, "Name").unwrap_or_default(),
                apn: text(&props, "AccessPointName").unwrap_or_default(),
                username: text(&props, "Username").unwrap_or_default(),
                active: number::<bool>(&props, "Active").unwrap_or(false),
            });
        }
    }
    Ok(Some((radio, contexts)))
}

async fn context_manager(
    connection: &Connection,
) -> Result<ConnectionManagerProxy<'_>, PlatformError> {
    let (object, _) = modem(connection)
        .await?
        .ok_or_else(|| PlatformError::Unavailable("a modem".into()))?;
    ConnectionManagerProxy::new(connection, object)
        .await
        .map_err(|e| error(OFONO, e))
}

pub async fn add_apn(
    connection: &Connection,
    settings: &ApnSettings,
) -> Result<String, PlatformError> {
    let object = context_manager(connection)
        .await?
        .add_context("internet")
        .await
        .map_err(|e| error(OFONO, e))?;
    let id = object.as_str().to_owned();
    if let Err(e) = update_apn(connection, &id, settings).await {
        // Not left half made.
        let _ = delete_apn(connection, &id).await;
        return Err(e);
    }
    Ok(id)
}

/// Sets each property (real oFono has no org.freedesktop.DBus.Properties).
pub async fn update_apn(
    connection: &Connection,
    id: &str,
    settings: &ApnSettings,
) -> Result<(), PlatformError> {
    let context = ConnectionContextProxy::new(connection, id.to_owned())
        .await
        .map_err(|e| error(OFONO, e))?;
    let auth = match settings.auth {
        ApnAuth::Pap => "pap",
        ApnAuth::None => "none",
        // oFono offers no "either": CHAP is what it defaults to.
        ApnAuth::Chap | ApnAuth::Any => "chap",
    };
    let mut properties = vec![
        ("AccessPointName", Variant::from(settings.apn.as_str())),
        ("Username", Variant::from(settings.username.as_str())),
        ("AuthenticationMethod", Variant::from(auth)),
    ];
    if !settings.name.is_empty() {
        properties.push(("Name", Variant::from(settings.name.as_str())));
    }
    if let Some(password) = &settings.password {
        properties.push(("Password", Variant::from(password.as_str())));
    }
    // Several SetProperty calls: on a refusal, the ones already made are
    // set back, so the context is as it was (the password excepted: it
    // cannot be read back).
    let before = context
        .get_properties()
        .await
        .map_err(|e| error(OFONO, e))?;
    let mut done: Vec<&str> = Vec::new();
    for (property, value) in &properties {
        if let Err(e) = context.set_property(property, value).await {
            for property in done.into_iter().rev() {
                if let Some(old) = before.get(property) {
                    let _ = context
                        .set_property(property, &Variant::from(old.clone()))
                        .await;
                }
            }
            return Err(error(OFONO, e));
        }
        done.push(property);
    }
    Ok(())
}

pub async fn delete_apn(connection: &Connection, id: &str) -> Result<(), PlatformError> {
    let object = ObjectPath::try_from(id)
        .map_err(|e| PlatformError::InvalidArgument(format!("{id}: {e}")))?;
    context_manager(connection)
        .await?
        .remove_context(&object)
        .await
        .map_err(|e| error(OFONO, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(v: Variant<'_>) -> OwnedVariant {
        v.try_into_owned().unwrap()
    }

    #[test]
    fn a_profile_round_trips_through_settings_sections() {
        let settings = WifiSettings {
            interface: "wlan0".into(),
            ssid: "café".into(),
            enabled: false,
            channel: 36,
            access_point: true,
            security: WifiSecurity::WpaPsk,
            passphrase: Some("correct horse".into()),
        };
        let sections = wifi_sections(&settings, "u-1", settings.passphrase.as_deref());
        assert_eq!(
            text(&sections["802-11-wireless"], "band").as_deref(),
            Some("a")
        );
        assert_eq!(text(&sections["ipv4"], "method").as_deref(), Some("shared"));
        assert_eq!(
            text(&sections["802-11-wireless-security"], "psk").as_deref(),
            Some("correct horse")
        );
        let active = BTreeSet::from(["u-1".to_owned()]);
        let profile = wifi_profile(&sections, &active).unwrap();
        assert_eq!(
            profile,
            WifiProfile {
                id: "u-1".into(),
                interface: "wlan0".into(),
                ssid: "café".into(),
                enabled: false,
                active: true,
                channel: 36,
                access_point: true,
                security: WifiSecurity::WpaPsk,
                bssid: None,
            }
        );
    }

    #[test]
    fn defaults_left_out_by_network_manager_are_read_as_its_defaults() {
        let mut connection = HashMap::new();
        connection.insert("type".to_owned(), ov(Variant::from("802-11-wireless")));
        connection.insert("uuid".to_owned(), ov(Variant::from("u-2")));
        let mut wireless = HashMap::new();
        wireless.insert("ssid".to_owned(), ov(Variant::from(b"open".to_vec())));
        let settings = HashMap::from([
            ("connection".to_owned(), connection),
            ("802-11-wireless".to_owned(), wireless),
        ]);
        let profile = wifi_profile(&settings, &BTreeSet::new()).unwrap();
        assert!(profile.enabled);
        assert!(!profile.access_point);
        assert_eq!(profile.security, WifiSecurity::Open);
        assert_eq!(profile.channel, 0);
    }

    #[test]
    fn dhcp_options_are_read_as_network_manager_shows_them() {
        assert_eq!(option_bytes("01:03:61:62:63"), vec![1, 3, b'a', b'b', b'c']);
        assert_eq!(option_bytes("http://acs/"), b"http://acs/".to_vec());
        // Not all hex: the text itself.
        assert_eq!(option_bytes("01:zz"), b"01:zz".to_vec());
    }

    #[test]
    fn cellular_technology_adds_a_bearer() {
        let mut network = NetworkState::default();
        add_cellular_bearer(
            &mut network,
            &RadioState {
                technology: Some("umts".into()),
                ..RadioState::default()
            },
        );
        assert_eq!(network.bearer, Some(BearerKind::Wcdma));
        assert_eq!(network.available, [BearerKind::Wcdma]);
    }
}
