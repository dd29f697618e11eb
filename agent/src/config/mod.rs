//! `dmagent.toml`: parsing, validation and overrides.
//!
//! The agent refuses to start on an invalid configuration rather than
//! guessing: every error names the file, the line, the key, what was wrong
//! and what is allowed. Values given on the command line or in the
//! environment override the file and are validated the same way, with the
//! flag or variable named instead of a line.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use crate::args::{LogFormat, PlatformKind};
use dm_objects::{CwmpSettings, Identity, Lwm2mServer, Provisioning, SecurityMode};

/// The configuration the agent runs on when given none: the device's real
/// values (the "auto" platform) and local peers only.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../dmagent.default.toml");

/// A configuration error, pointing at its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name, `<embedded default>`, or the flag or variable.
    pub source: String,
    /// 1-based line in the file, when the error comes from one.
    pub line: Option<usize>,
    /// Dotted key, e.g. `cwmp.periodic_interval`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.source)?,
            None => write!(f, "{}: ", self.source)?,
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error of a configuration, in file order (the command line's and
/// the environment's first): one run of `check-config` lists them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![error])
    }
}

impl PlatformKind {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::Auto => "auto",
            PlatformKind::Linux => "linux",
            PlatformKind::Dbus => "dbus",
            PlatformKind::Memory => "memory",
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub state_dir: PathBuf,
    pub platform: PlatformKind,
    /// Commands for reboot and factory reset, argv only; `None`: the
    /// platform's own way (logind on D-Bus).
    pub reboot_command: Option<Vec<String>>,
    pub factory_reset_command: Option<Vec<String>>,
    /// The connectivity watchdog: reboot after this long without reaching
    /// any management server (`None`: never).
    pub offline_reboot_after: Option<std::time::Duration>,
    /// The program that applies a firmware image (argv; the image path is
    /// appended), and the largest image accepted.
    pub firmware_command: Option<Vec<String>>,
    pub firmware_max_size: u64,
    /// The program that installs, uninstalls, activates and deactivates
    /// software packages (argv; the verb and its argument are appended).
    pub software_command: Option<Vec<String>>,
    /// Packages that are dmagent binaries update the agent (dmagent-launch
    /// swaps them in).
    pub self_update: bool,
    /// Reboot after the firmware program succeeds; the update counts only
    /// if the software version differs after the reboot (A/B systems).
    pub firmware_reboot: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    /// The most instances a management client may make one object hold.
    pub max_instances: usize,
    pub identity: Identity,
    pub cwmp: Option<Cwmp>,
    pub lwm2m: Option<Lwm2m>,
    pub usp: Option<Usp>,
    /// Objects declared from definition files (`[[object]]`).
    pub objects: Vec<dm_objects::declared::Declaration>,
    /// Their resources bound to TR-181 parameters (`[object.tr181]`).
    pub tr181: Vec<dm_cwmp::mapping::Binding>,
    /// The commands of the TR-181 objects declared (USP's Operate).
    pub commands: Vec<dm_cwmp::mapping::CommandBinding>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cwmp {
    pub settings: CwmpSettings,
    pub tls: dm_cwmp_tokio::TlsSettings,
    pub connection_request_port: u16,
    /// The address the connection-request server listens on.
    pub connection_request_bind: std::net::IpAddr,
    /// Take the ACS URL from DHCP option 43 when the lease offers one.
    pub acs_url_from_dhcp: bool,
    /// Answer an ACS's Basic challenge on a plain http:// URL (off: the
    /// password would cross the network readable).
    pub allow_basic_over_http: bool,
}

/// USP (TR-369) to one controller, over MQTT or WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usp {
    /// The agent's endpoint ID (TR-369 §2.2.1; default `os::OUI-SERIAL`).
    pub endpoint_id: String,
    pub controller_endpoint_id: String,
    /// The controller's role (`Device.LocalAgent.Controller.1.AssignedRole`).
    pub controller_role: dm_objects::local_agent::ControllerRole,
    /// MQTT keep-alive, WebSocket ping interval.
    pub keep_alive: std::time::Duration,
    pub mtp: UspMtp,
    /// For mqtts:// and wss://.
    pub tls: dm_cwmp_tokio::TlsSettings,
}

/// How the agent reaches its controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UspMtp {
    Mqtt(UspMqtt),
    /// A WebSocket session the agent opens to the controller's URL.
    WebSocket {
        url: String,
    },
}

/// USP over MQTT 5 (TR-369 §MQTT binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UspMqtt {
    /// The broker's `mqtt://HOST[:PORT]` (or mqtts://, over TLS), host
    /// and port.
    pub broker: String,
    pub tls: bool,
    pub broker_host: String,
    pub broker_port: u16,
    /// The MQTT client identifier (R-MQTT.8; default: the endpoint ID).
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// The topic the agent subscribes to and names as its reply-to,
    /// unless the broker assigns one in CONNACK (R-MQTT.21).
    pub agent_topic: String,
    pub controller_topic: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lwm2m {
    pub endpoint: String,
    pub server: Lwm2mServer,
    /// Trust anchors (DER) for certificate usages 0 and 1 (`ca_file`).
    pub trust_anchors: Vec<Vec<u8>>,
    /// Updates at least every ¾ of this, to keep a NAT binding open.
    pub nat_timeout: Option<std::time::Duration>,
}

impl Config {
    /// What is valid but probably not meant: printed by `check-config` and
    /// logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(cwmp) = &self.cwmp
            && cwmp.settings.connection_request_username.is_empty()
            && cwmp.settings.connection_request_password.is_empty()
        {
            warnings.push(
                "cwmp: connection requests are unprotected: connection_request_username and \
                 connection_request_password are empty, so any host that reaches port \
                 {port} can start a session (a Digest over the empty pair is accepted, as a \
                 stock GenieACS sends it); set both, or have the ACS set them"
                    .replace("{port}", &cwmp.connection_request_port.to_string()),
            );
        }
        if self.platform == PlatformKind::Memory {
            warnings.push(
                "platform: \"memory\" reports invented values (an IMEI, a Wi-Fi network, \
                 addresses) and never acts on the host: for tests and the demo, not a device"
                    .to_owned(),
            );
        }
        let programs = [
            ("platform.reboot_command", &self.reboot_command),
            (
                "platform.factory_reset_command",
                &self.factory_reset_command,
            ),
            ("firmware.command", &self.firmware_command),
            ("software.command", &self.software_command),
        ];
        for (key, argv) in programs {
            if let Some(program) = argv.as_ref().and_then(|a| a.first())
                && !runnable(program)
            {
                warnings.push(format!(
                    "{key}: {program:?} is not an executable file{}; it fails when it is needed",
                    if program.contains('/') {
                        ""
                    } else {
                        " on PATH"
                    }
                ));
            }
        }
        warnings
    }

    /// What the objects are provisioned with.
    pub fn provisioning(&self) -> Provisioning {
        Provisioning {
            identity: self.identity.clone(),
            cwmp: self.cwmp.as_ref().map(|c| c.settings.clone()),
            lwm2m: self.lwm2m.iter().map(|l| l.server.clone()).collect(),
        }
    }
}

/// Values that override the file (command line or environment). Each
/// carries the name of the flag or variable it came from.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub state_dir: Option<(String, PathBuf)>,
    pub platform: Option<PlatformKind>,
    pub log_level: Option<(String, String)>,
    pub log_format: Option<LogFormat>,
    pub acs_url: Option<(String, String)>,
    pub lwm2m_server: Option<(String, String)>,
    pub endpoint: Option<(String, String)>,
    /// USP's broker, or the controller's WebSocket URL; and its
    /// controller's endpoint ID and topic.
    pub usp_broker: Option<(String, String)>,
    pub usp_controller_url: Option<(String, String)>,
    pub usp_controller: Option<(String, String)>,
    pub usp_controller_topic: Option<(String, String)>,
    pub serial_number: Option<(String, String)>,
    /// PSK identity and key (hex) for the LwM2M server, making it coaps.
    pub psk: Option<(String, String, String)>,
    /// Certificate mode for the LwM2M server: the flag, our certificate,
    /// our key, the server's certificate or CA (files), and its usage.
    pub certificate: Option<(String, String, String, String, u8)>,
    /// The LwM2M server is a bootstrap server.
    pub bootstrap: bool,
    pub no_cwmp: bool,
    pub no_lwm2m: bool,
    /// The firmware apply program (a path).
    pub firmware_command: Option<(String, String)>,
    /// CWMP connection-request credentials.
    pub cr_username: Option<(String, String)>,
    pub cr_password: Option<(String, String)>,
}

// The file as written. Fields that need checks beyond their type are
// `Spanned`, so an error can point at the line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    device: DeviceFile,
    cwmp: Option<CwmpFile>,
    lwm2m: Option<Lwm2mFile>,
    usp: Option<UspFile>,
    #[serde(default)]
    platform: PlatformFile,
    #[serde(default)]
    firmware: FirmwareFile,
    #[serde(default)]
    software: SoftwareFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    limits: LimitsFile,
    /// `[[object]]`: declared objects (see `objects.rs`).
    #[serde(default)]
    object: Vec<objects::ObjectFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    /// The most instances a management server may make one object hold.
    max_instances: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    manufacturer: Option<String>,
    oui: Option<Spanned<String>>,
    product_class: Option<String>,
    model_name: Option<String>,
    serial_number: Option<Spanned<String>>,
    hardware_version: Option<String>,
    software_version: Option<String>,
    /// A file the software version is read from at every start (an A/B
    /// system's image says its version there): os-release style
    /// (IMAGE_VERSION, else VERSION_ID) or the first line.
    software_version_file: Option<Spanned<PathBuf>>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CwmpFile {
    #[serde(default = "yes")]
    enabled: bool,
    /// Needed when enabled (checked then).
    #[serde(default = "no_uri")]
    acs_url: Spanned<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default = "yes")]
    periodic_inform: bool,
    periodic_interval: Option<Spanned<u32>>,
    connection_request_port: Option<Spanned<u16>>,
    connection_request_bind: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_certificate: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    #[serde(default)]
    connection_request_username: String,
    #[serde(default)]
    connection_request_password: String,
    #[serde(default)]
    acs_url_from_dhcp: bool,
    #[serde(default)]
    autonomous_transfer_complete: bool,
    #[serde(default)]
    allow_basic_over_http: bool,
}

fn no_uri() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lwm2mFile {
    #[serde(default = "yes")]
    enabled: bool,
    /// Needed when enabled (checked then): `[lwm2m] enabled = false` alone
    /// is a valid table.
    #[serde(default = "no_uri")]
    server_uri: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    bootstrap: bool,
    lifetime: Option<Spanned<u32>>,
    short_server_id: Option<Spanned<u16>>,
    binding: Option<Spanned<String>>,
    security: Option<Spanned<String>>,
    psk_identity: Option<Spanned<String>>,
    psk_key: Option<Spanned<String>>,
    /// Security "certificate" (LwM2M Security Mode 2): PEM files of our
    /// certificate (and its intermediates), our PKCS#8 key, the server's
    /// certificate or a CA's, how that one is matched (/0/x/15), and the
    /// trust anchors usages 0 and 1 validate the server's path to.
    certificate: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    server_certificate: Option<Spanned<String>>,
    certificate_usage: Option<Spanned<u8>>,
    ca_file: Option<Spanned<String>>,
    /// Seconds an idle UDP binding lives in the network's NAT; 0: none.
    nat_timeout: Option<Spanned<u32>>,
    /// With a bootstrap server: seconds to wait for it to start a bootstrap
    /// before asking for one (Client Hold Off Time).
    #[serde(default)]
    client_hold_off: u32,
    /// The name sent in the DTLS handshake (SNI) and matched against the
    /// server's certificate, instead of the URI's host (/0/x/14).
    sni: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UspFile {
    #[serde(default = "yes")]
    enabled: bool,
    /// Needed when enabled (checked then).
    #[serde(default = "no_uri")]
    broker: Spanned<String>,
    /// ws:// or wss://: WebSocket to the controller instead of MQTT.
    controller_url: Option<Spanned<String>>,
    /// TLS (mqtts://, wss://): the CAs trusted (the system's when
    /// absent), and the agent's certificate when the server asks.
    ca_file: Option<Spanned<String>>,
    client_certificate: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    endpoint_id: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    agent_topic: Option<Spanned<String>>,
    controller_endpoint_id: Option<Spanned<String>>,
    controller_topic: Option<Spanned<String>>,
    /// "full-access" (the default) or "untrusted".
    controller_role: Option<Spanned<String>>,
    /// Seconds, 5 or more.
    keep_alive: Option<Spanned<u16>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    kind: Option<Spanned<String>>,
    /// argv of the command that reboots the device (no shell).
    reboot_command: Option<Spanned<Vec<String>>>,
    /// argv of the command that resets the device to factory settings.
    factory_reset_command: Option<Spanned<Vec<String>>>,
    /// Reboot after this many seconds without reaching any management
    /// server; 0: never.
    #[serde(default)]
    offline_reboot_after: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SoftwareFile {
    /// argv of the package program: `install PATH`, `uninstall NAME`,
    /// `activate NAME`, `deactivate NAME` are appended.
    command: Option<Spanned<Vec<String>>>,
    /// A package that is a dmagent binary updates the agent itself
    /// (through the launcher).
    #[serde(default)]
    self_update: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FirmwareFile {
    /// argv of the program that applies an image; the image's path is
    /// added as its last argument.
    command: Option<Spanned<Vec<String>>>,
    /// The largest image accepted, in bytes.
    max_size: Option<Spanned<u64>>,
    /// The program installs into the inactive slot: reboot into it, and
    /// confirm the update only if the device comes back with a new
    /// software version.
    #[serde(default)]
    reboot: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogFile {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Reads and validates a configuration file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source: path.display().to_string(),
        line: None,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &path.display().to_string(), overrides)
}

/// The embedded default. It sets up both protocols: a build without one
/// runs the other, as if told --no-cwmp or --no-lwm2m (a server given on
/// the command line is still refused by the feature's name).
pub fn embedded(mut overrides: Overrides) -> Result<Config, ConfigErrors> {
    overrides.no_cwmp |= !cfg!(feature = "cwmp") && overrides.acs_url.is_none();
    overrides.no_lwm2m |= !cfg!(feature = "lwm2m") && overrides.lwm2m_server.is_none();
    parse(EMBEDDED_DEFAULT, "<embedded default>", &overrides)
}

/// Parses and validates configuration text; `source` names it in errors.
pub fn parse(text: &str, source: &str, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let at = Locator {
        text,
        source,
        errors: RefCell::default(),
        blanked: RefCell::default(),
    };
    let file = deserialize(&at)?;
    // Each check below reports what it finds and goes on with a stand-in
    // value, so that every error of the file is listed in one run.

    let state_dir = match (&overrides.state_dir, &file.state_dir) {
        (Some((_, dir)), _) => dir.clone(),
        (None, Some(dir)) => {
            if dir.get_ref().is_empty() {
                at.report(at.error(&dir.span(), "must not be empty".into()));
            }
            PathBuf::from(dir.get_ref())
        }
        (None, None) => default_state_dir(),
    };

    let platform = match (overrides.platform, &file.platform.kind) {
        (Some(kind), _) => kind,
        (None, Some(kind)) => match kind.get_ref().as_str() {
            "auto" => PlatformKind::Auto,
            "linux" => PlatformKind::Linux,
            "dbus" => PlatformKind::Dbus,
            "memory" => PlatformKind::Memory,
            other => {
                at.report(at.error(
                    &kind.span(),
                    format!(
                        "{other:?} is not a platform; allowed: \"auto\", \"linux\", \"dbus\", \"memory\""
                    ),
                ));
                PlatformKind::Auto
            }
        },
        // Real values by default; invented ones only when asked for.
        (None, None) => PlatformKind::Auto,
    };

    let command = |key: &Option<Spanned<Vec<String>>>| match key {
        None => None,
        Some(argv) if argv.get_ref().first().is_none_or(|p| p.is_empty()) => {
            at.report(at.error(
                &argv.span(),
                "must name a program, e.g. [\"/sbin/reboot\"] (argv, no shell)".into(),
            ));
            None
        }
        Some(argv) => Some(argv.get_ref().clone()),
    };
    let reboot_command = command(&file.platform.reboot_command);
    let factory_reset_command = command(&file.platform.factory_reset_command);
    let firmware_command = match &overrides.firmware_command {
        Some((flag, program)) if program.is_empty() => {
            at.report(flag_error(flag, "must name a program".into()));
            None
        }
        Some((_, program)) => Some(vec![program.clone()]),
        None => command(&file.firmware.command),
    };
    let software_command = command(&file.software.command);
    let firmware_max_size = match &file.firmware.max_size {
        Some(size) if *size.get_ref() == 0 => {
            at.report(at.error(&size.span(), "must be at least 1 (bytes)".into()));
            1
        }
        Some(size) => *size.get_ref(),
        None => 256 * 1024 * 1024,
    };

    let max_instances = match &file.limits.max_instances {
        Some(n) if *n.get_ref() == 0 || *n.get_ref() > 65535 => {
            at.report(at.error(&n.span(), "must be from 1 to 65535 (instances)".into()));
            dm_core::tree::DEFAULT_INSTANCE_LIMIT
        }
        Some(n) => *n.get_ref() as usize,
        None => dm_core::tree::DEFAULT_INSTANCE_LIMIT,
    };
    let log_level = match (&overrides.log_level, &file.log.level) {
        (Some((name, level)), _) => at
            .keep(check_level(level).map_err(|m| flag_error(name, m)))
            .unwrap_or_default(),
        (None, Some(level)) => at
            .keep(check_level(level.get_ref()).map_err(|m| at.error(&level.span(), m)))
            .unwrap_or_default(),
        (None, None) => "info".to_owned(),
    };
    let log_format = match (overrides.log_format, &file.log.format) {
        (Some(format), _) => format,
        (None, Some(format)) => match format.get_ref().as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                at.report(at.error(
                    &format.span(),
                    format!("{other:?} is not a log format; allowed: \"human\", \"json\""),
                ));
                LogFormat::Human
            }
        },
        (None, None) => LogFormat::Human,
    };

    let identity = identity(&file.device, overrides, &at);
    // Definition paths are relative to the configuration file's directory.
    let base = Path::new(source)
        .is_file()
        .then(|| Path::new(source).parent())
        .flatten();
    let objects::Declared {
        objects,
        tr181,
        commands,
    } = at
        .keep(objects::declarations(&file.object, base, &at))
        .unwrap_or_default();

    // A server given on the command line needs no table in the file.
    let cwmp_file = match (file.cwmp, &overrides.acs_url) {
        (Some(c), _) => Some(c),
        (None, Some(_)) => toml::from_str::<CwmpFile>("acs_url = \"\"").ok(),
        (None, None) => None,
    };
    let cwmp = match cwmp_file {
        // A table whose `enabled` was refused is not checked further.
        Some(c) if c.enabled && !overrides.no_cwmp && !at.was_blanked("cwmp.enabled") => {
            Some(cwmp(c, overrides, &at))
        }
        _ => None,
    };
    let lwm2m_file = match (file.lwm2m, &overrides.lwm2m_server) {
        (Some(l), _) => Some(l),
        (None, Some(_)) => toml::from_str::<Lwm2mFile>("server_uri = \"\"").ok(),
        (None, None) => None,
    };
    let lwm2m = match lwm2m_file {
        Some(mut l) if l.enabled && !overrides.no_lwm2m && !at.was_blanked("lwm2m.enabled") => {
            if overrides.bootstrap {
                l.bootstrap = true;
            }
            if let Some((flag, identity, key)) = &overrides.psk {
                if identity.is_empty() {
                    at.report(flag_error(
                        flag,
                        "the PSK identity must not be empty".into(),
                    ));
                }
                at.keep(decode_hex(key).map_err(|m| flag_error(flag, m)));
                l.security = Some(Spanned::new(0..0, "psk".to_owned()));
                l.psk_identity = Some(Spanned::new(0..0, identity.clone()));
                l.psk_key = Some(Spanned::new(0..0, key.clone()));
            }
            if let Some((_, certificate, key, server, usage)) = &overrides.certificate {
                let given = |v: &String| Some(Spanned::new(0..0, v.clone()));
                l.security = given(&"certificate".to_owned());
                l.certificate = given(certificate);
                l.private_key = given(key);
                l.server_certificate = given(server);
                l.certificate_usage = Some(Spanned::new(0..0, *usage));
            }
            Some(lwm2m(l, overrides, &identity, &at))
        }
        _ => None,
    };

    let usp_file = match file.usp {
        Some(u) => Some(u),
        None if overrides.usp_broker.is_some() || overrides.usp_controller_url.is_some() => {
            toml::from_str::<UspFile>("").ok()
        }
        None => None,
    };
    let usp = match usp_file {
        Some(u) if u.enabled => Some(usp(u, overrides, &identity, &at)),
        _ => None,
    };
    // A protocol set up for a build that left it out: refused, not
    // silently not run.
    let unbuilt = |table: &str, flag: Option<&String>, what: &str, feature: &str| {
        let message = format!(
            "{}; remove [{table}] or set enabled = false",
            crate::not_built(what, feature)
        );
        at.report(match flag {
            Some(flag) if !at.text.lines().any(|l| table_header(l) == Some(table)) => {
                flag_error(flag, message)
            }
            _ => at.table_error(table, message),
        });
    };
    if cwmp.is_some() && !cfg!(feature = "cwmp") {
        unbuilt(
            "cwmp",
            overrides.acs_url.as_ref().map(|(f, _)| f),
            "CWMP",
            "cwmp",
        );
    }
    if lwm2m.is_some() && !cfg!(feature = "lwm2m") {
        unbuilt(
            "lwm2m",
            overrides.lwm2m_server.as_ref().map(|(f, _)| f),
            "LwM2M",
            "lwm2m",
        );
    }
    if usp.is_some() && !cfg!(feature = "usp") {
        let flag = overrides
            .usp_broker
            .as_ref()
            .or(overrides.usp_controller_url.as_ref());
        unbuilt("usp", flag.map(|(f, _)| f), "USP", "usp");
    }
    if platform == PlatformKind::Dbus && !cfg!(feature = "dbus") {
        let message = crate::not_built("D-Bus", "dbus");
        at.report(match &file.platform.kind {
            Some(kind) if overrides.platform.is_none() => at.error(&kind.span(), message),
            _ => flag_error("--platform (or DMAGENT_PLATFORM)", message),
        });
    }

    let errors = at.errors.take();
    if !errors.is_empty() {
        return Err(in_file_order(errors));
    }
    Ok(Config {
        state_dir,
        platform,
        reboot_command,
        factory_reset_command,
        offline_reboot_after: (file.platform.offline_reboot_after > 0)
            .then(|| std::time::Duration::from_secs(u64::from(file.platform.offline_reboot_after))),
        firmware_command,
        firmware_max_size,
        firmware_reboot: file.firmware.reboot,
        software_command,
        self_update: file.software.self_update,
        log_level,
        log_format,
        max_instances,
        identity,
        cwmp,
        lwm2m,
        usp,
        objects,
        tr181,
        commands,
    })
}

/// The file's tables and keys. serde stops at the first unknown key or
/// value of the wrong type: its line is reported, blanked (so the lines
/// keep their numbers) and the text read again, so that those errors are
/// all listed too. A syntax error stops here: what follows it cannot be
/// read.
fn deserialize(at: &Locator<'_>) -> Result<File, ConfigErrors> {
    let mut text = at.text.to_owned();
    // At most one pass per line.
    for _ in 0..=at.text.lines().count() {
        let e = match toml::from_str::<File>(&text) {
            Ok(file) => return Ok(file),
            Err(e) => e,
        };
        let Some(span) = e.span() else {
            at.report(at.error(&(0..0), e.message().to_owned()));
            break;
        };
        at.report(at.error(&span, e.message().to_owned()));
        let per_key = [
            "unknown field",
            "invalid type",
            "invalid value",
            "invalid length",
        ]
        .iter()
        .any(|m| e.message().starts_with(m));
        let start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        // Only a line that is one `key = value` whole is blanked.
        let line = &text[start..end];
        if !per_key || table_header(line).is_some() || !balanced(line) {
            break;
        }
        // Its key counts as reported: not "missing" again below.
        at.blanked.borrow_mut().push(at.key_at(start));
        text.replace_range(start..end, &" ".repeat(end - start));
    }
    Err(in_file_order(at.errors.take()))
}

/// The command line's and the environment's errors first, then the
/// file's by line.
fn in_file_order(mut errors: Vec<ConfigError>) -> ConfigErrors {
    errors.sort_by_key(|e| e.line.unwrap_or(0));
    ConfigErrors(errors)
}

/// Whether a line's brackets and braces close on it (a value that does
/// not span lines).
fn balanced(line: &str) -> bool {
    let count = |c| line.matches(c).count();
    line.contains('=') && count('[') == count(']') && count('{') == count('}')
}

/// Whether `program` names an executable file: a path as it is, a bare
/// name on PATH (as `Command` looks it up).
fn runnable(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// Where state lives by default: the system location when root, the
/// user's state directory otherwise.
pub fn default_state_dir() -> PathBuf {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
    if root {
        return PathBuf::from("/var/lib/dmagent");
    }
    if let Ok(dir) = std::env::var("XDG_STATE_HOME")
        && !dir.is_empty()
    {
        return PathBuf::from(dir).join("dmagent");
    }
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() => PathBuf::from(home).join(".local/state/dmagent"),
        _ => PathBuf::from("/var/lib/dmagent"),
    }
}

fn identity(device: &DeviceFile, overrides: &Overrides, at: &Locator<'_>) -> Identity {
    let oui = match &device.oui {
        Some(oui) => {
            let value = oui.get_ref();
            if value.len() != 6
                || !value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
            {
                at.report(at.error(
                    &oui.span(),
                    format!("{value:?} is not an OUI; allowed: six upper-case hexadecimal digits, e.g. \"00D09E\""),
                ));
            }
            value.clone()
        }
        None => "000000".to_owned(),
    };
    let serial_number = match (&overrides.serial_number, &device.serial_number) {
        (Some((name, serial)), _) => at
            .keep(check_serial(serial).map_err(|m| flag_error(name, m)))
            .unwrap_or_default(),
        (None, Some(serial)) => at
            .keep(check_serial(serial.get_ref()).map_err(|m| at.error(&serial.span(), m)))
            .unwrap_or_default(),
        (None, None) => default_serial(),
    };
    Identity {
        manufacturer: device
            .manufacturer
            .clone()
            .unwrap_or_else(|| "dmagent".into()),
        oui,
        product_class: device
            .product_class
            .clone()
            .unwrap_or_else(|| "LinuxGateway".into()),
        model_name: device
            .model_name
            .clone()
            .unwrap_or_else(|| "dmagent".into()),
        serial_number,
        hardware_version: device.hardware_version.clone().unwrap_or_default(),
        software_version: match (&device.software_version_file, &device.software_version) {
            (Some(file), _) => at
                .keep(read_version(file.get_ref()).map_err(|m| at.error(&file.span(), m)))
                .unwrap_or_default(),
            (None, Some(version)) => version.clone(),
            (None, None) => env!("CARGO_PKG_VERSION").to_owned(),
        },
        description: device
            .description
            .clone()
            .unwrap_or_else(|| "Linux device managed by dmagent".into()),
    }
}

/// The version in `path`: os-release's IMAGE_VERSION or VERSION_ID when
/// it is such a file, else its first line.
fn read_version(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    };
    let version = key("IMAGE_VERSION")
        .or_else(|| key("VERSION_ID"))
        .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_owned());
    if version.is_empty() {
        return Err(format!("{}: no version in it", path.display()));
    }
    Ok(version)
}

/// The serial number when none is configured: the first 12 hex digits of
/// the systemd machine id, which is stable and unique per installation.
fn default_serial() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| {
            id.trim()
                .chars()
                .take(12)
                .collect::<String>()
                .to_uppercase()
        })
        .filter(|id| id.len() == 12)
        .unwrap_or_else(|| "000000000000".to_owned())
}

fn check_serial(serial: &str) -> Result<String, String> {
    // TR-181 SerialNumber: at most 64 characters; TR-069 §3.4.4 puts it in
    // the connection-request URL path, so keep it to URL-safe characters.
    if serial.is_empty() || serial.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !serial
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "{serial:?}: allowed characters are letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(serial.to_owned())
}

fn check_level(level: &str) -> Result<String, String> {
    // A comma-separated list of `level` or `target=level` directives. The
    // filter parser itself would take a bare word as a target name and log
    // nothing, which is the silent guess this file refuses to make.
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let valid = !level.trim().is_empty()
        && level.split(',').all(|directive| {
            let (target, lvl) = match directive.trim().rsplit_once('=') {
                Some((target, lvl)) => (Some(target), lvl),
                None => (None, directive.trim()),
            };
            LEVELS.contains(&lvl.to_ascii_lowercase().as_str())
                && target.is_none_or(|t| !t.is_empty())
        })
        && level.parse::<tracing_subscriber::filter::Targets>().is_ok();
    if valid {
        Ok(level.to_owned())
    } else {
        Err(format!(
            "{level:?} is not a log level; allowed: error, warn, info, debug, trace, or target=level directives"
        ))
    }
}

fn cwmp(file: CwmpFile, overrides: &Overrides, at: &Locator<'_>) -> Cwmp {
    let acs_url = match &overrides.acs_url {
        Some((name, url)) => at
            .keep(check_url(url, &["http", "https"]).map_err(|m| flag_error(name, m)))
            .unwrap_or_default(),
        None if file.acs_url.get_ref().is_empty() => {
            if !at.was_blanked("cwmp.acs_url") {
                at.report(
                    at.table_error("cwmp", "acs_url is missing (or set enabled = false)".into()),
                );
            }
            String::new()
        }
        None => at
            .keep(
                check_url(file.acs_url.get_ref(), &["http", "https"])
                    .map_err(|m| at.error(&file.acs_url.span(), m)),
            )
            .unwrap_or_default(),
    };
    let periodic_interval = match &file.periodic_interval {
        // TR-181 PeriodicInformInterval: unsignedInt, at least 1.
        Some(v) if *v.get_ref() == 0 => {
            at.report(at.error(&v.span(), "must be at least 1 (seconds)".into()));
            3600
        }
        Some(v) => *v.get_ref(),
        None => 3600,
    };
    let connection_request_port = match &file.connection_request_port {
        Some(p) if *p.get_ref() == 0 => {
            at.report(at.error(&p.span(), "must be a port from 1 to 65535".into()));
            7547
        }
        Some(p) => *p.get_ref(),
        None => 7547,
    };
    let connection_request_bind = match &file.connection_request_bind {
        Some(b) => at
            .keep(b.get_ref().parse().map_err(|_| {
                at.error(
                    &b.span(),
                    format!(
                        "{:?} is not an IP address; allowed: e.g. \"0.0.0.0\", \"::\", \"127.0.0.1\"",
                        b.get_ref()
                    ),
                )
            }))
            .unwrap_or(std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)),
        // Both families (a dual-stack socket; 0.0.0.0 on a host without
        // IPv6): the ConnectionRequestURL carries the address of the
        // family that reaches the ACS, which must then be served.
        None => std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let tls = tls_settings(
        at,
        "cwmp",
        &file.ca_file,
        &file.client_certificate,
        &file.client_key,
    );
    Cwmp {
        tls,
        settings: CwmpSettings {
            acs_url,
            username: file.username,
            password: file.password,
            periodic_inform: file.periodic_inform,
            periodic_interval,
            connection_request_username: overrides
                .cr_username
                .as_ref()
                .map_or(file.connection_request_username, |(_, u)| u.clone()),
            connection_request_password: overrides
                .cr_password
                .as_ref()
                .map_or(file.connection_request_password, |(_, p)| p.clone()),
            autonomous_transfer_complete: file.autonomous_transfer_complete,
        },
        connection_request_port,
        connection_request_bind,
        acs_url_from_dhcp: file.acs_url_from_dhcp,
        allow_basic_over_http: file.allow_basic_over_http,
    }
}

fn lwm2m(file: Lwm2mFile, overrides: &Overrides, identity: &Identity, at: &Locator<'_>) -> Lwm2m {
    let schemes = ["coap", "coaps"];
    let uri = match &overrides.lwm2m_server {
        Some((name, uri)) => at
            .keep(check_url(uri, &schemes).map_err(|m| flag_error(name, m)))
            .unwrap_or_default(),
        None if file.server_uri.get_ref().is_empty() => {
            if !at.was_blanked("lwm2m.server_uri") {
                at.report(at.table_error(
                    "lwm2m",
                    "server_uri is missing (or set enabled = false)".into(),
                ));
            }
            String::new()
        }
        None => at
            .keep(
                check_url(file.server_uri.get_ref(), &schemes)
                    .map_err(|m| at.error(&file.server_uri.span(), m)),
            )
            .unwrap_or_default(),
    };
    let endpoint = match (&overrides.endpoint, &file.endpoint) {
        (Some((name, ep)), _) => at
            .keep(check_endpoint(ep).map_err(|m| flag_error(name, m)))
            .unwrap_or_default(),
        (None, Some(ep)) => at
            .keep(check_endpoint(ep.get_ref()).map_err(|m| at.error(&ep.span(), m)))
            .unwrap_or_default(),
        // LwM2M Core §7.3.1 recommends a URN; this is the urn:dev:ops form
        // (RFC 8141 registration of OUI-ProductClass-Serial).
        (None, None) => format!(
            "urn:dev:ops:{}-{}-{}",
            identity.oui, identity.product_class, identity.serial_number
        ),
    };
    let lifetime = match &file.lifetime {
        Some(v) if *v.get_ref() < 30 => {
            at.report(at.error(&v.span(), "must be at least 30 (seconds)".into()));
            300
        }
        Some(v) => *v.get_ref(),
        None => 300,
    };
    let nat_timeout = match &file.nat_timeout {
        Some(v) if (1..4).contains(v.get_ref()) => {
            at.report(at.error(
                &v.span(),
                "must be 0 (no NAT) or at least 4 (seconds)".into(),
            ));
            None
        }
        Some(v) if *v.get_ref() > 0 => {
            Some(std::time::Duration::from_secs(u64::from(*v.get_ref())))
        }
        _ => None,
    };
    let short_server_id = match &file.short_server_id {
        // LwM2M /0/x/10: 1..65534.
        Some(v) if *v.get_ref() == 0 || *v.get_ref() == u16::MAX => {
            at.report(at.error(&v.span(), "must be from 1 to 65534".into()));
            101
        }
        Some(v) => *v.get_ref(),
        None => 101,
    };
    let binding = match &file.binding {
        Some(b) => {
            let value = b.get_ref();
            if value.is_empty() || !value.chars().all(|c| "UTSNQ".contains(c)) {
                at.report(at.error(
                    &b.span(),
                    format!("{value:?} is not a binding; allowed: letters from U, T, S, N and Q, e.g. \"U\" or \"UQ\""),
                ));
            }
            value.clone()
        }
        None => "U".to_owned(),
    };
    #[derive(PartialEq)]
    enum Mode {
        NoSec,
        Psk,
        Certificate,
    }
    let mode = match &file.security {
        Some(s) => match s.get_ref().as_str() {
            "nosec" => Mode::NoSec,
            "psk" => Mode::Psk,
            "certificate" => Mode::Certificate,
            other => {
                at.report(at.error(
                    &s.span(),
                    format!(
                        "{other:?} is not a security mode; allowed: \"nosec\", \"psk\", \"certificate\""
                    ),
                ));
                Mode::NoSec
            }
        },
        None if uri.starts_with("coaps:") && file.certificate.is_some() => Mode::Certificate,
        None if uri.starts_with("coaps:") => Mode::Psk,
        None => Mode::NoSec,
    };
    let scheme_ok = match mode {
        Mode::Psk | Mode::Certificate => uri.starts_with("coaps:"),
        Mode::NoSec => uri.starts_with("coap:"),
    };
    // A URI already refused is not refused again here.
    if !scheme_ok && !uri.is_empty() {
        let span = file
            .security
            .as_ref()
            .map_or(file.server_uri.span(), |s| s.span());
        at.report(at.error(
            &span,
            "coap:// goes with security \"nosec\", coaps:// with \"psk\" or \"certificate\"".into(),
        ));
    }
    // A key that is not there is reported at its table's header (or, with
    // the server from the command line, without a line).
    let missing = |key: &str, when: &str| {
        if at.was_blanked(&format!("lwm2m.{key}")) {
            return;
        }
        let message = format!("required when {when}");
        let mut error = if at.text.lines().any(|l| table_header(l) == Some("lwm2m")) {
            at.table_error("lwm2m", message)
        } else {
            ConfigError {
                source: at.source.to_owned(),
                line: None,
                key: String::new(),
                message,
            }
        };
        error.key = format!("lwm2m.{key}");
        at.report(error);
    };
    let mut trust_anchors = Vec::new();
    let security = match mode {
        Mode::NoSec => SecurityMode::NoSec,
        Mode::Psk => {
            let mut identity = Vec::new();
            let mut key = Vec::new();
            match &file.psk_identity {
                None => missing("psk_identity", "security is \"psk\""),
                Some(given) if given.get_ref().is_empty() => {
                    at.report(at.error(&given.span(), "must not be empty".into()));
                }
                Some(given) => identity = given.get_ref().as_bytes().to_vec(),
            }
            match &file.psk_key {
                None => missing("psk_key", "security is \"psk\""),
                Some(given) => {
                    key = at
                        .keep(decode_hex(given.get_ref()).map_err(|m| at.error(&given.span(), m)))
                        .unwrap_or_default();
                }
            }
            SecurityMode::PreSharedKey { identity, key }
        }
        Mode::Certificate => {
            // Each file read and decoded, or its error at its key.
            let read = |key: &str,
                        given: &Option<Spanned<String>>,
                        decode: fn(&[u8]) -> Result<Vec<u8>, String>| {
                let Some(given) = given else {
                    missing(key, "security is \"certificate\"");
                    return None;
                };
                let bytes = match std::fs::read(given.get_ref()) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        at.report(at.error(
                            &given.span(),
                            format!("{:?}: {e}; allowed: a PEM file path", given.get_ref()),
                        ));
                        return None;
                    }
                };
                at.keep(
                    decode(&bytes)
                        .map_err(|m| at.error(&given.span(), format!("{:?} {m}", given.get_ref()))),
                )
            };
            let chain = read(
                "certificate",
                &file.certificate,
                dm_lwm2m::dtls::certificates_from_pem,
            );
            let private_key = read(
                "private_key",
                &file.private_key,
                dm_lwm2m::dtls::private_key_from_pem,
            );
            let server = read(
                "server_certificate",
                &file.server_certificate,
                dm_lwm2m::dtls::certificates_from_pem,
            );
            let usage = match &file.certificate_usage {
                Some(u) if *u.get_ref() > 3 => {
                    at.report(
                        at.error(
                            &u.span(),
                            "must be 0 (CA constraint), 1 (service certificate constraint), \
                         2 (trust anchor assertion) or 3 (domain-issued certificate)"
                                .into(),
                        ),
                    );
                    3
                }
                Some(u) => *u.get_ref(),
                // Object 0, /0/x/15: absent means 3.
                None => 3,
            };
            let usage_kind = dm_lwm2m::security::CertificateUsage::from_value(usage.into())
                .unwrap_or(dm_lwm2m::security::CertificateUsage::DomainIssuedCertificate);
            if let Some(ca) = &file.ca_file {
                trust_anchors = match std::fs::read(ca.get_ref())
                    .map_err(|e| e.to_string())
                    .and_then(|pem| dm_lwm2m::dtls::certificates_from_pem(&pem))
                    .and_then(|der| {
                        dm_lwm2m::security::split_der(&der)
                            .map(|all| all.into_iter().map(<[u8]>::to_vec).collect())
                    }) {
                    Ok(anchors) => anchors,
                    Err(m) => {
                        at.report(at.error(&ca.span(), format!("{:?}: {m}", ca.get_ref())));
                        Vec::new()
                    }
                };
            } else if usage_kind.needs_trust_anchors() {
                missing("ca_file", "certificate_usage is 0 or 1");
            }
            match (chain, private_key, server) {
                (Some(chain), Some(private_key), Some(server)) => {
                    let certificates = dm_lwm2m::security::Certificates {
                        chain,
                        private_key,
                        server,
                        usage: usage_kind,
                        trust_anchors: trust_anchors.clone(),
                    };
                    if let Err(m) = dm_lwm2m::dtls::check_certificates(&certificates) {
                        // At the key of the file the problem is in.
                        let file_of = if m.contains("/0/x/4") {
                            &file.server_certificate
                        } else if m.contains("/0/x/5") {
                            &file.private_key
                        } else if m.contains("trust anchor") {
                            &file.ca_file
                        } else {
                            &file.certificate
                        };
                        let span = file_of.as_ref().map_or(0..0, Spanned::span);
                        at.report(at.error(&span, m));
                    }
                    let dm_lwm2m::security::Certificates {
                        chain,
                        private_key,
                        server,
                        ..
                    } = certificates;
                    SecurityMode::Certificate {
                        chain,
                        private_key,
                        server,
                        usage,
                    }
                }
                _ => SecurityMode::NoSec,
            }
        }
    };
    let sni = file.sni.as_ref().and_then(|name| {
        let problem = dm_lwm2m::bootstrap::sni_problem(name.get_ref());
        at.keep(match problem {
            Some(m) => Err(at.error(&name.span(), format!("{:?} is {m}", name.get_ref()))),
            None => Ok(name.get_ref().clone()),
        })
        .filter(|name| !name.is_empty())
    });
    Lwm2m {
        endpoint,
        server: Lwm2mServer {
            uri,
            bootstrap: file.bootstrap,
            short_server_id,
            lifetime,
            binding,
            security,
            client_hold_off: file.client_hold_off,
            sni,
        },
        trust_anchors,
        nat_timeout,
    }
}

fn usp(file: UspFile, overrides: &Overrides, identity: &Identity, at: &Locator<'_>) -> Usp {
    // TR-369 §2.2.1: the `os` authority scheme, OUI-SERIAL.
    let endpoint_id = match &file.endpoint_id {
        Some(id) => at
            .keep(check_usp_text(id.get_ref(), 256).map_err(|m| at.error(&id.span(), m)))
            .unwrap_or_default(),
        None => format!("os::{}-{}", identity.oui, identity.serial_number),
    };
    let broker_of = |url: &str| {
        let port = if url.starts_with("mqtts://") {
            8883
        } else {
            1883
        };
        check_url(url, &["mqtt", "mqtts"])
            .and_then(|_| dm_rt::uri::host_port(url, port).map_err(|e| e.reason))
    };
    // A flag chooses the transport over the file's other one.
    let mut file = file;
    if overrides.usp_controller_url.is_some() && overrides.usp_broker.is_none() {
        file.broker = no_uri();
    }
    if overrides.usp_broker.is_some() {
        file.controller_url = None;
    }
    let websocket_url = match (&overrides.usp_controller_url, &file.controller_url) {
        (Some((flag, url)), _) => Some(
            at.keep(check_url(url, &["ws", "wss"]).map_err(|m| flag_error(flag, m)))
                .unwrap_or_default(),
        ),
        (None, Some(url)) => Some(
            at.keep(check_url(url.get_ref(), &["ws", "wss"]).map_err(|m| at.error(&url.span(), m)))
                .unwrap_or_default(),
        ),
        (None, None) => None,
    };
    let mqtt_given = overrides.usp_broker.is_some() || !file.broker.get_ref().is_empty();
    if websocket_url.is_some() && mqtt_given {
        at.report(at.table_error(
            "usp",
            "broker and controller_url are two ways to reach the controller: give one".into(),
        ));
    }
    let (broker, (broker_host, broker_port)) = match &overrides.usp_broker {
        Some((flag, url)) => (
            url.clone(),
            at.keep(broker_of(url).map_err(|m| flag_error(flag, m)))
                .unwrap_or_default(),
        ),
        None if file.broker.get_ref().is_empty() => {
            if websocket_url.is_none() {
                at.report(at.table_error(
                    "usp",
                    "broker (mqtt://) or controller_url (ws://) is missing, e.g. broker = \"mqtt://127.0.0.1:1883\" (or set enabled = false)"
                        .into(),
                ));
            }
            (String::new(), (String::new(), 0))
        }
        None => (
            file.broker.get_ref().clone(),
            at.keep(broker_of(file.broker.get_ref()).map_err(|m| at.error(&file.broker.span(), m)))
                .unwrap_or_default(),
        ),
    };
    // A key, or the flag that stands for it.
    let text = |key: &Option<Spanned<String>>, flag: &Option<(String, String)>| match (flag, key) {
        (Some((flag, value)), _) => Some(
            at.keep(check_usp_text(value, 256).map_err(|m| flag_error(flag, m)))
                .unwrap_or_default(),
        ),
        (None, Some(value)) => Some(
            at.keep(check_usp_text(value.get_ref(), 256).map_err(|m| at.error(&value.span(), m)))
                .unwrap_or_default(),
        ),
        (None, None) => None,
    };
    let required = |key: &Option<Spanned<String>>, flag: &Option<(String, String)>, name: &str| {
        text(key, flag).unwrap_or_else(|| {
            at.report(at.table_error("usp", format!("{name} is missing")));
            String::new()
        })
    };
    let controller_endpoint_id = required(
        &file.controller_endpoint_id,
        &overrides.usp_controller,
        "controller_endpoint_id",
    );
    // MQTT's only: WebSocket has one session to the controller.
    let controller_topic = if websocket_url.is_some() {
        text(&file.controller_topic, &overrides.usp_controller_topic).unwrap_or_default()
    } else {
        required(
            &file.controller_topic,
            &overrides.usp_controller_topic,
            "controller_topic",
        )
    };
    let client_id = text(&file.client_id, &None).unwrap_or_else(|| endpoint_id.clone());
    let agent_topic =
        text(&file.agent_topic, &None).unwrap_or_else(|| format!("usp/agent/{endpoint_id}"));
    // A topic a PUBLISH can name: no wildcards (MQTT 5 §4.7).
    let wildcard = |topic: &str| topic.contains(['+', '#']);
    match (&overrides.usp_controller_topic, &file.controller_topic) {
        (Some((flag, topic)), _) if wildcard(topic) => {
            at.report(flag_error(
                flag,
                "a topic to send to has no + or # wildcard".into(),
            ));
        }
        (None, Some(topic)) if wildcard(topic.get_ref()) => {
            at.report(at.error(
                &topic.span(),
                "a topic to send to has no + or # wildcard".into(),
            ));
        }
        _ => {}
    }
    if let Some(topic) = &file.agent_topic
        && wildcard(topic.get_ref())
    {
        at.report(at.error(
            &topic.span(),
            "a topic to send to has no + or # wildcard".into(),
        ));
    }
    use dm_objects::local_agent::ControllerRole;
    let controller_role = match &file.controller_role {
        None => ControllerRole::FullAccess,
        Some(role) => match role.get_ref().as_str() {
            "full-access" => ControllerRole::FullAccess,
            "untrusted" => ControllerRole::Untrusted,
            other => {
                at.report(at.error(
                    &role.span(),
                    format!("{other:?} is not a role: \"full-access\" or \"untrusted\""),
                ));
                ControllerRole::FullAccess
            }
        },
    };
    let keep_alive = std::time::Duration::from_secs(u64::from(match &file.keep_alive {
        // The MQTT client pings at least every 5 s or not at all;
        // "not at all" would let a dead connection go unnoticed.
        Some(k) if *k.get_ref() < 5 => {
            at.report(at.error(&k.span(), "must be from 5 to 65535 (seconds)".into()));
            60
        }
        Some(k) => *k.get_ref(),
        None => 60,
    }));
    let mtp = match websocket_url {
        Some(url) => UspMtp::WebSocket { url },
        None => UspMtp::Mqtt(UspMqtt {
            tls: broker.starts_with("mqtts://"),
            broker,
            broker_host,
            broker_port,
            client_id,
            username: file.username,
            password: file.password,
            agent_topic,
            controller_topic,
        }),
    };
    let tls = tls_settings(
        at,
        "usp",
        &file.ca_file,
        &file.client_certificate,
        &file.client_key,
    );
    Usp {
        endpoint_id,
        controller_endpoint_id,
        controller_role,
        keep_alive,
        mtp,
        tls,
    }
}

/// TLS settings of a table (`ca_file`, `client_certificate`,
/// `client_key`): the files must be there; the certificate and its key
/// go together.
fn tls_settings(
    at: &Locator<'_>,
    table: &str,
    ca_file: &Option<Spanned<String>>,
    certificate: &Option<Spanned<String>>,
    key: &Option<Spanned<String>>,
) -> dm_cwmp_tokio::TlsSettings {
    let existing = |file: &Option<Spanned<String>>| -> Option<PathBuf> {
        match file {
            // Not ignored: refused by the feature's name.
            Some(f) if !cfg!(feature = "https") => {
                at.report(at.error(&f.span(), crate::not_built("TLS", "https")));
                None
            }
            Some(f) if !Path::new(f.get_ref()).is_file() => {
                at.report(at.error(
                    &f.span(),
                    format!(
                        "{:?} is not a readable file; allowed: a PEM file path",
                        f.get_ref()
                    ),
                ));
                None
            }
            Some(f) => Some(PathBuf::from(f.get_ref())),
            None => None,
        }
    };
    let ca_file = existing(ca_file);
    let client_certificate = match (existing(certificate), existing(key)) {
        (Some(chain), Some(key)) => Some((chain, key)),
        (None, None) => None,
        _ => {
            // At whichever of the two is there.
            let given = certificate.as_ref().or(key.as_ref());
            let mut error = at.error(
                &given.map_or(0..0, Spanned::span),
                "client_certificate and client_key go together".into(),
            );
            error.key = format!("{table}.client_certificate");
            at.report(error);
            None
        }
    };
    dm_cwmp_tokio::TlsSettings {
        ca_file,
        client_certificate,
    }
}

/// An endpoint ID, client ID or topic: not empty, bounded, printable.
fn check_usp_text(text: &str, max: usize) -> Result<String, String> {
    if text.is_empty() || text.len() > max {
        return Err(format!("must be 1 to {max} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not hold control characters".into());
    }
    Ok(text.to_owned())
}

fn check_url(url: &str, schemes: &[&str]) -> Result<String, String> {
    let allowed = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(format!(
            "{url:?} is not a URL; allowed: {allowed}HOST[:PORT][/PATH]"
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "scheme {scheme:?} is not supported; allowed: {allowed}"
        ));
    }
    if let Some(reason) = crate::unbuilt_scheme(scheme) {
        return Err(reason);
    }
    let parsed = dm_rt::uri::parse(url).map_err(|e| format!("{url:?}: {}", e.reason))?;
    dm_rt::uri::port(&parsed).map_err(|e| format!("{url:?}: {}", e.reason))?;
    Ok(url.to_owned())
}

fn check_endpoint(endpoint: &str) -> Result<String, String> {
    // The endpoint goes into the Register query (`ep=`): no spaces or
    // query delimiters, and servers limit its length.
    if endpoint.is_empty() || endpoint.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if endpoint
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b"&?=#".contains(&b) || !b.is_ascii())
    {
        return Err(format!(
            "{endpoint:?}: no spaces, '&', '?', '=', '#' or non-ASCII characters"
        ));
    }
    Ok(endpoint.to_owned())
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    match dm_core::support::hex::decode(text) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err("must be an even number of hexadecimal digits, e.g. \"000102030405\"".into()),
    }
}

fn flag_error(name: &str, message: String) -> ConfigError {
    ConfigError {
        source: name.to_owned(),
        line: None,
        key: String::new(),
        message,
    }
}

/// The table a `[table]` header line opens (spaces and a trailing
/// comment allowed), if it is one.
fn table_header(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    (!inner.starts_with('[')).then(|| inner.trim())
}

/// Turns byte spans into lines and dotted keys.
struct Locator<'t> {
    text: &'t str,
    source: &'t str,
    /// What the checks found so far.
    errors: RefCell<Vec<ConfigError>>,
    /// Dotted keys whose line serde refused (reported already, then
    /// blanked): not to be reported as missing.
    blanked: RefCell<Vec<String>>,
}

impl Locator<'_> {
    fn was_blanked(&self, key: &str) -> bool {
        self.blanked.borrow().iter().any(|k| k == key)
    }

    fn report(&self, error: ConfigError) {
        self.errors.borrow_mut().push(error);
    }

    /// The value, or `None` with its error reported.
    fn keep<T>(&self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.report(e)).ok()
    }

    fn error(&self, span: &Range<usize>, message: String) -> ConfigError {
        let start = span.start.min(self.text.len());
        let line = self.text[..start].matches('\n').count() + 1;
        ConfigError {
            source: self.source.to_owned(),
            line: Some(line),
            key: self.key_at(start),
            message,
        }
    }

    /// An error about a whole `[table]`, at its header line.
    fn table_error(&self, table: &str, message: String) -> ConfigError {
        // Offsets from the lines with their own endings (CRLF files too);
        // the header may carry spaces and a comment: "[ cwmp ] # ACS".
        let start = self
            .text
            .split_inclusive('\n')
            .scan(0, |offset, line| {
                let here = *offset;
                *offset += line.len();
                Some((here, line))
            })
            .find(|(_, line)| table_header(line) == Some(table))
            .map_or(0, |(offset, _)| offset);
        let mut error = self.error(&(start..start), message);
        error.key = table.to_owned();
        error
    }

    /// The dotted key whose line holds `offset`: the nearest `[table]`
    /// header above it, then the key before `=` on the line.
    fn key_at(&self, offset: usize) -> String {
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        // An error about a whole table (a missing field) points at its
        // header: the table is that one, not the one above.
        if let Some(table) = table_header(line) {
            return table.to_owned();
        }
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .unwrap_or_default();
        let table = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(['[', ']']).trim().to_owned());
        match (table, key.is_empty()) {
            (Some(table), false) => format!("{table}.{key}"),
            (None, false) => key,
            (Some(table), true) if line.trim_start().starts_with('[') => table,
            _ => String::new(),
        }
    }
}

mod objects;
#[cfg(test)]
mod tests;
