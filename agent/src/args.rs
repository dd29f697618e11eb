//! The command line, and nothing else: clap's definition of every option,
//! verb and value. Kept free of the rest of the agent so that
//! `cargo xtask dist` can include it to write the man page and the shell
//! completions without linking the agent (or carrying clap_mangen in it).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dmagent",
    version,
    about = "TR-069/CWMP and LwM2M device management agent",
    after_help = "The options come before the verb: dmagent --config FILE run. \
                  The verbs that talk to a running agent (get, set, status, ...) \
                  use its D-Bus control API: the system bus as root, the session \
                  bus otherwise (DMAGENT_BUS=system or session chooses)."
)]
pub struct Cli {
    /// Configuration file; without it the embedded default is used.
    #[arg(long, short = 'c', env = "DMAGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or target=level list.
    #[arg(long, env = "DMAGENT_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log lines for people (the default) or one JSON object per line.
    #[arg(long, value_enum, env = "DMAGENT_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Where the agent keeps its state.
    #[arg(long, env = "DMAGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where live values come from.
    #[arg(long, value_enum, env = "DMAGENT_PLATFORM")]
    pub platform: Option<PlatformKind>,
    /// ACS URL, overriding [cwmp] acs_url.
    #[arg(long, env = "DMAGENT_ACS_URL")]
    pub acs_url: Option<String>,
    /// LwM2M server URI, overriding [lwm2m] server_uri.
    #[arg(long, env = "DMAGENT_LWM2M_SERVER")]
    pub lwm2m_server: Option<String>,
    /// USP's MQTT broker (mqtt://HOST:PORT), overriding [usp] broker.
    #[arg(long, env = "DMAGENT_USP_BROKER")]
    pub usp_broker: Option<String>,
    /// The USP controller's WebSocket URL (ws://HOST:PORT/PATH), overriding
    /// [usp] controller_url: WebSocket instead of MQTT.
    #[arg(long, env = "DMAGENT_USP_CONTROLLER_URL")]
    pub usp_controller_url: Option<String>,
    /// The USP controller's endpoint ID, overriding [usp]
    /// controller_endpoint_id.
    #[arg(long, env = "DMAGENT_USP_CONTROLLER")]
    pub usp_controller: Option<String>,
    /// The USP controller's MQTT topic, overriding [usp] controller_topic.
    #[arg(long, env = "DMAGENT_USP_CONTROLLER_TOPIC")]
    pub usp_controller_topic: Option<String>,
    /// LwM2M endpoint name, overriding [lwm2m] endpoint.
    #[arg(long, env = "DMAGENT_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Device serial number, overriding [device] serial_number.
    #[arg(long, env = "DMAGENT_SERIAL")]
    pub serial: Option<String>,
    /// LwM2M PSK identity (with --psk-key): the server is coaps://.
    #[arg(long, env = "DMAGENT_PSK_IDENTITY", requires = "psk_key")]
    pub psk_identity: Option<String>,
    /// LwM2M PSK key, hexadecimal.
    #[arg(long, env = "DMAGENT_PSK_KEY", requires = "psk_identity")]
    pub psk_key: Option<String>,
    /// LwM2M certificate mode (Security Mode 2): our certificate, PEM,
    /// with any intermediates (with --private-key and
    /// --server-certificate): the server is coaps://.
    #[arg(
        long,
        env = "DMAGENT_CERTIFICATE",
        requires_all = ["private_key", "server_certificate"],
        conflicts_with = "psk_identity"
    )]
    pub certificate: Option<String>,
    /// Our private key for --certificate, PEM (PKCS#8, ECDSA P-256).
    #[arg(long, env = "DMAGENT_PRIVATE_KEY", requires = "certificate")]
    pub private_key: Option<String>,
    /// The LwM2M server's certificate, or a CA's, PEM: what
    /// --certificate-usage says it is.
    #[arg(long, env = "DMAGENT_SERVER_CERTIFICATE", requires = "certificate")]
    pub server_certificate: Option<String>,
    /// How --server-certificate is matched (LwM2M /0/x/15): 2 for a CA
    /// the server's certificate chains to, 3 for the server's own
    /// certificate (0 and 1 also need [lwm2m] ca_file).
    #[arg(long, env = "DMAGENT_CERTIFICATE_USAGE", requires = "certificate",
          value_parser = clap::value_parser!(u8).range(0..=3), default_value_t = 3)]
    pub certificate_usage: u8,
    /// The LwM2M server is a bootstrap server.
    #[arg(long, env = "DMAGENT_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Run without CWMP.
    #[arg(long, env = "DMAGENT_NO_CWMP")]
    pub no_cwmp: bool,
    /// Run without LwM2M.
    #[arg(long, env = "DMAGENT_NO_LWM2M")]
    pub no_lwm2m: bool,
    /// The program that applies a firmware image (its one argument).
    #[arg(long, env = "DMAGENT_FIRMWARE_COMMAND")]
    pub firmware_command: Option<String>,
    /// CWMP connection-request username, overriding [cwmp]
    /// connection_request_username.
    #[arg(long, env = "DMAGENT_CR_USERNAME")]
    pub cr_username: Option<String>,
    /// CWMP connection-request password (better given by the environment:
    /// ps shows every process's arguments).
    #[arg(long, env = "DMAGENT_CR_PASSWORD", hide_env_values = true)]
    pub cr_password: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run,
    /// Values at or under a path (TR-181 `Device.` or LwM2M `/3/0`).
    Get {
        /// A TR-181 path (`Device.DeviceInfo.` for a subtree, a full name
        /// for one value) or an LwM2M path (`/3`, `/3/0`, `/3/0/0`);
        /// without it, `Device.`.
        path: Option<String>,
    },
    /// Parameter names under a TR-181 path.
    GetNames {
        /// A TR-181 partial path ending in a dot, or a full parameter
        /// name; without it, `Device.`.
        path: Option<String>,
        /// `true`: only the level right below the path; `false` (the
        /// default): everything under it.
        #[arg(value_parser = clap::builder::BoolishValueParser::new())]
        next_level: Option<bool>,
    },
    /// Sets one value.
    Set {
        /// A writable parameter (`Device.WiFi.SSID.1.SSID`) or LwM2M
        /// resource (`/12/1/5`).
        path: String,
        /// The new value, as text (`true`/`false`, numbers in decimal,
        /// dates in ISO 8601).
        value: String,
    },
    /// Creates an instance (`Device.WiFi.SSID.` or `/12`); prints its path.
    Add {
        /// The table to add to: `Device.WiFi.SSID.` or `/12`.
        object: String,
    },
    /// Deletes an instance (`Device.WiFi.SSID.2.` or `/12/2`).
    Del {
        /// The instance to delete: `Device.WiFi.SSID.2.` or `/12/2`.
        object: String,
    },
    /// CWMP notification levels at or under a path.
    GetNotif {
        /// A TR-181 path; without it, `Device.`.
        path: Option<String>,
    },
    /// Sets a CWMP notification level: 0 off, 1 passive, 2 active.
    SetNotif {
        /// A TR-181 parameter name or partial path.
        path: String,
        /// 0, 1 or 2.
        #[arg(value_parser = clap::value_parser!(u8).range(0..=2))]
        level: u8,
    },
    /// The running agent's state, per protocol.
    Status {
        /// As JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Asks the ACS for a file (CWMP RequestDownload), by default
    /// "1 Firmware Upgrade Image".
    RequestDownload {
        /// The file type TR-069 §A.4.2.1 names, e.g. "3 Vendor
        /// Configuration File".
        file_type: Option<String>,
    },
    /// Sends a CWMP Kicked (what a device web page does when the ACS's
    /// web site sends a user to it) and prints the ACS's NextURL.
    Kick {
        /// The command from the web site (at most 32 characters).
        command: String,
        /// The page the user came from.
        #[arg(long, default_value = "")]
        referer: String,
        /// The command's argument.
        #[arg(long, default_value = "")]
        arg: String,
        /// Where the user goes when done.
        #[arg(long, default_value = "")]
        next: String,
    },
    /// Starts a CWMP session now, reporting EVENT (e.g. "2 PERIODIC"), or
    /// "GetRPCMethods" to ask the ACS which methods it serves.
    Inform {
        /// An event code ("2 PERIODIC", "6 CONNECTION REQUEST", ...) or
        /// "GetRPCMethods"; without it, the vendor event "X OUI
        /// LocalRequest".
        event: Option<String>,
    },
    /// Sends an LwM2M registration Update to every server now.
    Update,
    /// Re-reads the configuration, keeping the state.
    Reload,
    /// Stops the running agent (as SIGTERM).
    Stop,
    /// Firmware through the running agent: `pull URL` downloads an image
    /// (coap, coaps, http, https) and shows its progress; `update` applies
    /// the downloaded image.
    Firmware {
        #[command(subcommand)]
        action: FirmwareAction,
    },
    /// Validate the configuration and print what it resolves to.
    CheckConfig,
    /// Print the whole object tree as TR-181 and LwM2M paths.
    Dump {
        /// The TR-181 names, the LwM2M paths, or both.
        #[arg(long, value_enum, default_value = "both")]
        view: View,
    },
}

#[derive(Subcommand)]
pub enum FirmwareAction {
    /// Downloads the image at URL into the agent's image store.
    Pull {
        /// Where the image is: coap://, coaps://, http:// or https://.
        url: String,
        /// The image's SHA-256 (64 hexadecimal digits): another is refused.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Applies the downloaded image with the configured program.
    Update,
}

/// Where live values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformKind {
    /// The default: NetworkManager, oFono and logind where they answer on
    /// the system bus, the kernel's own view for the rest.
    Auto,
    /// The kernel only (`/proc`, sysfs, netlink): no D-Bus.
    Linux,
    /// NetworkManager, oFono and logind only.
    Dbus,
    /// Invented values, for tests and the demo: never on a device.
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Which views to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    Tr181,
    Lwm2m,
    Both,
}
