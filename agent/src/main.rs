//! dmagent: one agent that manages a Linux device over TR-069/CWMP and
//! OMA LwM2M at once.
//!
//! This binary is the only place that sees every crate: it reads the
//! configuration, builds the platform, the objects and the tree, and runs
//! the protocol drivers.

// A build with features left out carries code only they reach; the full
// build (the default, which clippy and the tests check) keeps the lints.
#![cfg_attr(
    not(dmagent_full),
    allow(dead_code, unused_imports, unused_variables, unused_mut)
)]

mod args;
mod bearer;
mod bulkdata;
#[cfg(feature = "dbus")]
mod cli;
mod config;
#[cfg(feature = "dbus")]
mod control;
mod diagnostics;
mod dump;
mod firmware;
mod host;
mod memory;
mod provider;
mod runtime;
mod software;
mod throughput;
mod udp_echo;
#[cfg(feature = "usp")]
mod usp;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

pub use args::{Cli, Command, FirmwareAction};
use config::{Config, LogFormat, Overrides};

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
            usp_broker: named("usp-broker", "DMAGENT_USP_BROKER", &self.usp_broker),
            usp_controller_url: named(
                "usp-controller-url",
                "DMAGENT_USP_CONTROLLER_URL",
                &self.usp_controller_url,
            ),
            usp_controller: named(
                "usp-controller",
                "DMAGENT_USP_CONTROLLER",
                &self.usp_controller,
            ),
            usp_controller_topic: named(
                "usp-controller-topic",
                "DMAGENT_USP_CONTROLLER_TOPIC",
                &self.usp_controller_topic,
            ),
            serial_number: named("serial", "DMAGENT_SERIAL", &self.serial),
            psk: match (&self.psk_identity, &self.psk_key) {
                (Some(identity), Some(key)) => Some((
                    "--psk-identity/--psk-key (or DMAGENT_PSK_IDENTITY/DMAGENT_PSK_KEY)".to_owned(),
                    identity.clone(),
                    key.clone(),
                )),
                _ => None,
            },
            certificate: match (
                &self.certificate,
                &self.private_key,
                &self.server_certificate,
            ) {
                (Some(certificate), Some(key), Some(server)) => Some((
                    "--certificate/--private-key/--server-certificate".to_owned(),
                    certificate.clone(),
                    key.clone(),
                    server.clone(),
                    self.certificate_usage,
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

    fn load_config(&self) -> Result<Config, config::ConfigErrors> {
        let overrides = self.overrides();
        match &self.config {
            Some(path) => config::load(path, &overrides),
            None => config::embedded(overrides),
        }
    }
}

/// The cargo features, each with whether this binary carries it.
pub const FEATURES: [(&str, bool); 7] = [
    ("cwmp", cfg!(feature = "cwmp")),
    ("lwm2m", cfg!(feature = "lwm2m")),
    ("usp", cfg!(feature = "usp")),
    ("dtls", cfg!(feature = "dtls")),
    ("https", cfg!(feature = "https")),
    ("ftp", cfg!(feature = "ftp")),
    ("dbus", cfg!(feature = "dbus")),
];

/// What a configuration that needs a feature left out of the build gets.
pub fn not_built(what: &str, feature: &str) -> String {
    format!("this dmagent was built without {what} (cargo feature `{feature}`)")
}

/// Why this build cannot use a URL of `scheme`, when it cannot: the cargo
/// feature that carries it was left out. A transfer gets its protocol's
/// "unsupported protocol" (TR-069 9013, LwM2M /5 Update Result 6), a
/// configuration an error.
pub fn unbuilt_scheme(scheme: &str) -> Option<String> {
    match scheme {
        "https" | "wss" | "mqtts" if !cfg!(feature = "https") => Some(not_built("TLS", "https")),
        "ftp" if !cfg!(feature = "ftp") => Some(not_built("FTP", "ftp")),
        "coaps" if !cfg!(feature = "dtls") => Some(not_built("DTLS", "dtls")),
        _ => None,
    }
}

#[cfg(not(feature = "dbus"))]
pub const NOT_BUILT_DBUS: &str = "this dmagent was built without D-Bus (cargo feature `dbus`): no control API, no D-Bus platform or providers";

/// `dmagent --version`: the version and the features built in.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let built: Vec<&str> = FEATURES
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        format!(
            "{} (features: {})",
            env!("CARGO_PKG_VERSION"),
            if built.is_empty() {
                "none".to_owned()
            } else {
                built.join(", ")
            }
        )
    })
}

fn main() -> ExitCode {
    let matches = Cli::command().version(version()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Verbs for a running agent: they speak to its control API and need no
    // configuration.
    #[cfg(feature = "dbus")]
    if let Some(code) = cli::run(&cli.command) {
        return code;
    }
    #[cfg(not(feature = "dbus"))]
    if !matches!(
        cli.command,
        Command::Run | Command::CheckConfig | Command::Dump { .. }
    ) {
        eprintln!("dmagent: {NOT_BUILT_DBUS}");
        return ExitCode::FAILURE;
    }
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            match e.0.as_slice() {
                [one] => eprintln!("dmagent: invalid configuration: {one}"),
                all => {
                    eprintln!("dmagent: invalid configuration, {} errors:", all.len());
                    for error in all {
                        eprintln!("  {error}");
                    }
                }
            }
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
            .on_thread_park(memory::release_when_idle)
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(runtime::run(config, || {
                    // One line per log event (the journal takes a line's
                    // priority from its own prefix).
                    cli.load_config().map_err(|e| {
                        e.0.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
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
    let (mut tree, mut warnings) = runtime::build(config, &host.platform, saved, &[])?;
    // The tables the host gives on demand (the processes), read now: no
    // one else holds this tree.
    let tables: Vec<dm_core::Path> = tree
        .tables_read_on_demand()
        .into_iter()
        .map(dm_core::Path::object)
        .collect();
    let reads = tree.host_reads(dm_core::Origin::Cli, &tables);
    warnings.extend(tree.supply(reads.run_within(dm_core::tree::HOST_READ_LIMIT)));
    tree.forget_fetched(dm_core::Origin::Cli);
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
    use std::io::IsTerminal as _;
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
    // Colour only for a person at a terminal who has not asked for none
    // (https://no-color.org): a file, a pipe or the journal gets plain text.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => registry.with(layer.json()).init(),
        // The journal stamps each line itself and reads its priority from
        // a `<N>` prefix (sd-daemon(3)); the level stays in the text.
        LogFormat::Human if stderr_is_journal() => registry
            .with(
                layer.event_format(JournalPriority(
                    tracing_subscriber::fmt::format()
                        .without_time()
                        .with_ansi(false),
                )),
            )
            .init(),
        LogFormat::Human => registry.with(layer).init(),
    }
}

/// Whether stderr is the journal's stream: systemd sets JOURNAL_STREAM to
/// its device and inode (systemd.exec(5)), which a redirected stderr no
/// longer matches.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()))
}

/// Prefixes each line with its syslog priority for the journal.
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3) priorities: err, warning, info, debug.
fn syslog_priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}
