//! What the fuzz targets share: the agent's whole object tree on a fixed
//! host, as the protocol engines see it.

pub mod cwmp;
pub mod lwm2m;
pub mod usp;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dm_core::Tree;
use dm_objects::{CwmpSettings, Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};
use dm_platform::memory::{FixedHost, MemoryLog, MemoryNetwork};

/// The tree with every object, provisioned for an ACS and an LwM2M server
/// (Short Server ID 101) and a bootstrap server, on a host that answers
/// the same every time (runs are reproducible).
pub fn tree() -> Tree {
    let platform = Platform {
        host: Arc::new(FixedHost {
            now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            uptime: Duration::from_secs(100),
            memory: dm_platform::Memory {
                total_kib: 1 << 20,
                free_kib: 1 << 19,
            },
            cpu: 3,
            timezone: Some("Europe/Paris".into()),
            utc_offset: 3600,
        }),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    tree.set_instance_limit(64);
    dm_objects::register(&mut tree, &platform).expect("objects register");
    dm_objects::populate(&mut tree, &[]).expect("default instances");
    let server = |uri: &str, bootstrap: bool, ssid: u16| Lwm2mServer {
        uri: uri.into(),
        bootstrap,
        short_server_id: ssid,
        lifetime: 300,
        binding: "U".into(),
        security: SecurityMode::NoSec,
        client_hold_off: 0,
        sni: None,
    };
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                manufacturer: "Acme".into(),
                oui: "00D09E".into(),
                product_class: "Gateway".into(),
                serial_number: "SN1".into(),
                ..Identity::default()
            },
            cwmp: Some(CwmpSettings {
                acs_url: "http://127.0.0.1:7547/".into(),
                periodic_inform: true,
                periodic_interval: 600,
                ..CwmpSettings::default()
            }),
            lwm2m: vec![
                server("coap://127.0.0.1:5683", false, 101),
                server("coap://127.0.0.1:5783", true, 0),
            ],
        },
    )
    .expect("provisioning");
    tree
}

/// Parameter names the structure-aware CWMP target picks from: real ones
/// (tables, instances, parameters of every type) and near misses.
pub const TR181_NAMES: &[&str] = &[
    "",
    "Device.",
    "Device.DeviceInfo.",
    "Device.DeviceInfo.SerialNumber",
    "Device.DeviceInfo.ProvisioningCode",
    "Device.DeviceInfo.UpTime",
    "Device.ManagementServer.",
    "Device.ManagementServer.PeriodicInformInterval",
    "Device.ManagementServer.PeriodicInformEnable",
    "Device.ManagementServer.PeriodicInformTime",
    "Device.ManagementServer.ConnectionRequestUsername",
    "Device.ManagementServer.URL",
    "Device.WiFi.",
    "Device.WiFi.SSID.",
    "Device.WiFi.SSID.1.",
    "Device.WiFi.SSID.1.SSID",
    "Device.WiFi.SSID.1.Enable",
    "Device.WiFi.SSID.2.SSID",
    "Device.WiFi.AccessPoint.1.Security.KeyPassphrase",
    "Device.WiFi.AccessPoint.1.Security.ModeEnabled",
    "Device.Cellular.AccessPoint.",
    "Device.Cellular.AccessPoint.1.APN",
    "Device.Time.LocalTimeZone",
    "Device.SoftwareModules.DeploymentUnit.",
    "Device.Nope",
    "Device..",
    "Device.WiFi.SSID.65535.",
];

/// LwM2M paths the structure-aware LwM2M targets pick from.
pub const LWM2M_PATHS: &[&str] = &[
    "",
    "0",
    "0/0",
    "0/1/3",
    "1",
    "1/0",
    "1/0/1",
    "1/0/4",
    "1/0/8",
    "1/1",
    "2",
    "2/0",
    "3",
    "3/0",
    "3/0/0",
    "3/0/4",
    "3/0/7",
    "3/0/7/0",
    "3/0/11",
    "3/0/13",
    "3/0/12",
    "4/0",
    "5/0",
    "5/0/0",
    "5/0/1",
    "5/0/2",
    "5/0/3",
    "5/0/10",
    "9",
    "9/0",
    "9/0/4",
    "10259/1/2",
    "12",
    "12/1",
    "12/1/5",
    "12/2",
    "11/1/1",
    "13/0/0",
    "3/65535",
    "99",
    "3/0/99",
    "rd",
    "bs",
];
