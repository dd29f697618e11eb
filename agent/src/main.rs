//! dmagent: one agent that manages a Linux device over TR-069/CWMP and
//! OMA LwM2M at once.
//!
//! This binary is the only place that sees every crate: it reads the
//! configuration, builds the platform, the objects and the tree, and runs
//! the protocol drivers.

mod bearer;
mod cli;
mod config;
mod control;
mod dump;
mod firmware;
mod host;
mod provider;
mod runtime;
mod software;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::{Config, LogFormat, Overrides, PlatformKind};

#[derive(Parser)]
#[command(
    name = "dmagent",
    version,
    about = "TR-069/CWMP and LwM2M device management agent"
)]
struct Cli {
    /// Configuration file; without it the embedded default is used.
    #[arg(long, short = 'c', global = true, env = "DMAGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or target=level list.
    #[arg(long, global = true, env = "DMAGENT_LOG_LEVEL")]
    log_level: Option<String>,
    #[arg(long, global = true, value_enum, env = "DMAGENT_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Where the agent keeps its state.
    #[arg(long, global = true, env = "DMAGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where live values come from.
    #[arg(long, global = true, value_enum, env = "DMAGENT_PLATFORM")]
    platform: Option<PlatformKind>,
    /// ACS URL, overriding [cwmp] acs_url.
    #[arg(long, global = true, env = "DMAGENT_ACS_URL")]
    acs_url: Option<String>,
    /// LwM2M server URI, overriding [lwm2m] server_uri.
    #[arg(long, global = true, env = "DMAGENT_LWM2M_SERVER")]
    lwm2m_server: Option<String>,
    /// LwM2M endpoint name, overriding [lwm2m] endpoint.
    #[arg(long, global = true, env = "DMAGENT_ENDPOINT")]
    endpoint: Option<String>,
    /// Device serial number, overriding [device] serial_number.
    #[arg(long, global = true, env = "DMAGENT_SERIAL")]
    serial: Option<String>,
    /// LwM2M PSK identity (with --psk-key): the server is coaps://.
    #[arg(
        long,
        global = true,
        env = "DMAGENT_PSK_IDENTITY",
        requires = "psk_key"
    )]
    psk_identity: Option<String>,
    /// LwM2M PSK key, hexadecimal.
    #[arg(
        long,
        global = true,
        env = "DMAGENT_PSK_KEY",
        requires = "psk_identity"
    )]
    psk_key: Option<String>,
    /// The LwM2M server is a bootstrap server.
    #[arg(long, global = true, env = "DMAGENT_BOOTSTRAP")]
    bootstrap: bool,
    /// Run without CWMP.
    #[arg(long, global = true, env = "DMAGENT_NO_CWMP")]
    no_cwmp: bool,
    /// Run without LwM2M.
    #[arg(long, global = true, env = "DMAGENT_NO_LWM2M")]
    no_lwm2m: bool,
    /// The program that applies a firmware image (its one argument).
    #[arg(long, global = true, env = "DMAGENT_FIRMWARE_COMMAND")]
    firmware_command: Option<String>,
    /// CWMP connection-request username, overriding [cwmp]
    /// connection_request_username.
    #[arg(long, global = true, env = "DMAGENT_CR_USERNAME")]
    cr_username: Option<String>,
    /// CWMP connection-request password (better given by the environment:
    /// ps shows every process's arguments).
    #[arg(
        long,
        global = true,
        env = "DMAGENT_CR_PASSWORD",
        hide_env_values = true
    )]
    cr_password: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run,
    /// Values at or under a path (TR-181 `Device.` or LwM2M `/3/0`).
    Get { path: Option<String> },
    /// Parameter names under a TR-181 path.
    GetNames {
        path: Option<String>,
        /// Only the level right below the path.
        #[arg(value_parser = clap::builder::BoolishValueParser::new())]
        next_level: Option<bool>,
    },
    /// Sets one value.
    Set { path: String, value: String },
    /// Creates an instance (`Device.WiFi.SSID.` or `/12`); prints its path.
    Add { object: String },
    /// Deletes an instance (`Device.WiFi.SSID.2.` or `/12/2`).
    Del { object: String },
    /// CWMP notification levels at or under a path.
    GetNotif { path: Option<String> },
    /// Sets a CWMP notification level: 0 off, 1 passive, 2 active.
    SetNotif {
        path: String,
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
    RequestDownload { file_type: Option<String> },
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
    Inform { event: Option<String> },
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
        #[arg(long, value_enum, default_value = "both")]
        view: dump::View,
    },
}

#[derive(Subcommand)]
enum FirmwareAction {
    /// Downloads the image at URL into the agent's image store.
    Pull {
        url: String,
        /// The image's SHA-256 (64 hexadecimal digits): another is refused.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Applies the downloaded image with the configured program.
    Update,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let named = |flag: &str, env: &str, v: &Option<String>| {
            v.clone().map(|v| (format!("--{flag} (or {env})"), v))
        };
        Overrides {
            state_dir: self
                .state_dir
                .clone()
                .map(|d| ("--state-dir (or DMAGENT_STATE_DIR)".to_owned(), d)),
            platform: self.platform,
            log_level: named("log-level", "DMAGENT_LOG_LEVEL", &self.log_level),
            log_format: self.log_format,
            acs_url: named("acs-url", "DMAGENT_ACS_URL", &self.acs_url),
            lwm2m_server: named("lwm2m-server", "DMAGENT_LWM2M_SERVER", &self.lwm2m_server),
            endpoint: named("endpoint", "DMAGENT_ENDPOINT", &self.endpoint),
            serial_number: named("serial", "DMAGENT_SERIAL", &self.serial),
            psk: match (&self.psk_identity, &self.psk_key) {
                (Some(identity), Some(key)) => Some((
                    "--psk-identity/--psk-key (or DMAGENT_PSK_IDENTITY/DMAGENT_PSK_KEY)".to_owned(),
                    identity.clone(),
                    key.clone(),
                )),
                _ => None,
            },
            bootstrap: self.bootstrap,
            no_cwmp: self.no_cwmp,
            no_lwm2m: self.no_lwm2m,
            firmware_command: self.firmware_command.clone().map(|c| {
                (
                    "--firmware-command (or DMAGENT_FIRMWARE_COMMAND)".to_owned(),
                    c,
                )
            }),
            cr_username: named("cr-username", "DMAGENT_CR_USERNAME", &self.cr_username),
            cr_password: named("cr-password", "DMAGENT_CR_PASSWORD", &self.cr_password),
        }
    }

    fn load_config(&self) -> Result<Config, config::ConfigError> {
        let overrides = self.overrides();
        match &self.config {
            Some(path) => config::load(path, &overrides),
            None => config::parse(config::EMBEDDED_DEFAULT, "<embedded default>", &overrides),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Verbs for a running agent: they speak to its control API and need no
    // configuration.
    if let Some(code) = cli::run(&cli.command) {
        return code;
    }
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dmagent: invalid configuration: {e}");
            return ExitCode::from(78); // EX_CONFIG (sysexits.h)
        }
    };
    init_logging(&config);
    // The exit status of `run`: 0, or 75 when an update of the agent is
    // staged for the launcher.
    let mut exit = 0u8;
    let result = match &cli.command {
        Command::CheckConfig => {
            print!("{}", describe(&config));
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            Ok(())
        }
        Command::Dump { view } => dump(&config, *view),
        Command::Run => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(runtime::run(config, || {
                    cli.load_config().map_err(|e| e.to_string())
                }))
            })
            .map(|code| {
                exit = code;
            }),
        // The client verbs returned above.
        _ => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::from(exit),
        Err(e) => {
            eprintln!("dmagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dump(config: &Config, view: dump::View) -> anyhow::Result<()> {
    let host = runtime::host(config)?;
    // Look at the saved state without locking it: a running agent may
    // hold the directory.
    let saved = dm_platform::store::FileStore::peek(&config.state_dir).unwrap_or(None);
    let (tree, warnings) = runtime::build(config, &host.platform, saved, &[])?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    // Never mistaken for the device's own values.
    if config.platform == config::PlatformKind::Memory {
        println!("# platform: memory (invented values, for tests and the demo)");
    }
    print!("{}", dump::render(&tree, view));
    Ok(())
}

fn describe(config: &Config) -> String {
    let mut out = format!(
        "configuration is valid\nstate_dir = {}\nplatform = {}{}\nserial_number = {}\n",
        config.state_dir.display(),
        config.platform.name(),
        if config.platform == config::PlatformKind::Memory {
            " (invented values, for tests and the demo: not for a device)"
        } else {
            ""
        },
        config.identity.serial_number
    );
    match &config.cwmp {
        Some(c) => out.push_str(&format!(
            "cwmp: acs_url = {}, periodic_interval = {} s, connection_request_port = {}\n",
            c.settings.acs_url, c.settings.periodic_interval, c.connection_request_port
        )),
        None => out.push_str("cwmp: disabled\n"),
    }
    match &config.lwm2m {
        Some(l) => out.push_str(&format!(
            "lwm2m: server_uri = {}, endpoint = {}, lifetime = {} s, security = {:?}\n",
            l.server.uri, l.endpoint, l.server.lifetime, l.server.security
        )),
        None => out.push_str("lwm2m: disabled\n"),
    }
    for declared in &config.objects {
        let instances: Vec<String> = declared.instances.iter().map(|i| i.0.to_string()).collect();
        let id = declared.schema.id.0;
        out.push_str(&format!(
            "declared object: {} {} (version {}), instances [{}], {} configured values\n",
            if id < dm_lwm2m::declare::TR181_ONLY {
                format!("/{id}")
            } else {
                format!("TR-181 object (core {id})")
            },
            declared.schema.name,
            declared.schema.version,
            instances.join(", "),
            declared.values.len()
        ));
    }
    for binding in &config.tr181 {
        out.push_str(&format!(
            "declared parameter: {} = core object {} resource {} ({})\n",
            binding.path,
            binding.object.0,
            binding.resource.0,
            binding.syntax.xsd_type()
        ));
    }
    out
}

fn init_logging(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `level` or `target=level` directives (checked by the config). A
    // Targets filter rather than EnvFilter: no regex engine in the binary
    // (about 200 KiB).
    let filter: tracing_subscriber::filter::Targets =
        config.log_level.parse().unwrap_or_else(|_| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    let registry = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Human => registry.with(layer).init(),
    }
}
