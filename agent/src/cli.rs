//! The verbs that talk to a running agent through its control API
//! (`org.dmagent.Agent1`, see `control.rs`), as icwmpd's `-c get ...`.
//! Output is one line per value (`name value`), or JSON for
//! `status --json`; errors go to stderr with a non-zero exit.

use std::collections::HashMap;
use std::process::ExitCode;

use crate::Command;
use crate::control;

#[zbus::proxy(
    interface = "org.dmagent.Agent1",
    default_service = "org.dmagent.Agent1",
    default_path = "/org/dmagent/Agent1"
)]
trait Agent1 {
    fn status(&self) -> zbus::Result<String>;
    fn get(&self, path: &str) -> zbus::Result<Vec<(String, String)>>;
    fn get_names(&self, path: &str, next_level: bool) -> zbus::Result<Vec<(String, bool)>>;
    fn set(&self, path: &str, value: &str) -> zbus::Result<()>;
    fn add(&self, object: &str) -> zbus::Result<String>;
    fn delete(&self, object: &str) -> zbus::Result<()>;
    fn get_notification(&self, path: &str) -> zbus::Result<Vec<(String, u8)>>;
    fn set_notification(&self, path: &str, level: u8) -> zbus::Result<()>;
    fn inform(&self, event: &str) -> zbus::Result<()>;
    fn update(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn exit(&self) -> zbus::Result<()>;
}

/// Runs a client verb; `None` for the verbs the binary runs itself.
pub fn run(command: &Command) -> Option<ExitCode> {
    if matches!(
        command,
        Command::Run | Command::CheckConfig | Command::Dump { .. }
    ) {
        return None;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dmagent: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    Some(match runtime.block_on(call(command)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dmagent: {e}");
            ExitCode::FAILURE
        }
    })
}

/// A D-Bus error as the user should read it.
fn explain(e: zbus::Error) -> String {
    match &e {
        zbus::Error::FDO(f) => match &**f {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                "no agent is running (nothing owns org.dmagent.Agent1 on this bus)".into()
            }
            zbus::fdo::Error::AccessDenied(m) => format!("access denied: {m}"),
            zbus::fdo::Error::InvalidArgs(m) | zbus::fdo::Error::Failed(m) => m.clone(),
            other => other.to_string(),
        },
        _ => e.to_string(),
    }
}

async fn call(command: &Command) -> Result<String, String> {
    let builder = if control::use_system_bus() {
        zbus::connection::Builder::system()
    } else {
        zbus::connection::Builder::session()
    };
    let connection = builder
        .build()
        .await
        .map_err(|e| format!("cannot reach D-Bus: {e}"))?;
    let agent = Agent1Proxy::new(&connection).await.map_err(explain)?;
    let lines = |pairs: Vec<(String, String)>| {
        pairs
            .into_iter()
            .map(|(name, value)| format!("{name} {value}\n"))
            .collect::<String>()
    };
    Ok(match command {
        Command::Get { path } => lines(
            agent
                .get(path.as_deref().unwrap_or(""))
                .await
                .map_err(explain)?,
        ),
        Command::GetNames { path, next_level } => agent
            .get_names(path.as_deref().unwrap_or(""), next_level.unwrap_or(false))
            .await
            .map_err(explain)?
            .into_iter()
            .map(|(name, writable)| format!("{name} {}\n", if writable { "rw" } else { "r" }))
            .collect(),
        Command::Set { path, value } => {
            agent.set(path, value).await.map_err(explain)?;
            String::new()
        }
        Command::Add { object } => format!("{}\n", agent.add(object).await.map_err(explain)?),
        Command::Del { object } => {
            agent.delete(object).await.map_err(explain)?;
            String::new()
        }
        Command::GetNotif { path } => lines(
            agent
                .get_notification(path.as_deref().unwrap_or(""))
                .await
                .map_err(explain)?
                .into_iter()
                .map(|(name, level)| (name, level.to_string()))
                .collect(),
        ),
        Command::SetNotif { path, level } => {
            agent
                .set_notification(path, *level)
                .await
                .map_err(explain)?;
            String::new()
        }
        Command::Status { json } => {
            let text = agent.status().await.map_err(explain)?;
            if *json {
                format!("{text}\n")
            } else {
                human_status(&text)?
            }
        }
        Command::Inform { event } => {
            agent
                .inform(event.as_deref().unwrap_or(""))
                .await
                .map_err(explain)?;
            String::new()
        }
        Command::Update => {
            agent.update().await.map_err(explain)?;
            String::new()
        }
        Command::Reload => {
            agent.reload().await.map_err(explain)?;
            String::new()
        }
        Command::Stop => {
            agent.exit().await.map_err(explain)?;
            String::new()
        }
        Command::Run | Command::CheckConfig | Command::Dump { .. } => String::new(),
    })
}

/// `dmagent status` for people: one table.
fn human_status(text: &str) -> Result<String, String> {
    let status: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("unreadable status: {e}"))?;
    let time = |v: &serde_json::Value| match v.as_i64() {
        Some(t) => jiff::Timestamp::from_second(t)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| t.to_string()),
        None => "-".into(),
    };
    let mut out = String::new();
    let agent = &status["agent"];
    out += &format!(
        "agent       dmagent {} (pid {}), up since {}\n",
        agent["version"].as_str().unwrap_or("?"),
        agent["pid"],
        time(&agent["started"])
    );
    match status["cwmp"].as_object() {
        None => out += "cwmp        disabled\n",
        Some(cwmp) => {
            let map: HashMap<&str, &serde_json::Value> =
                cwmp.iter().map(|(k, v)| (k.as_str(), v)).collect();
            out += &format!(
                "cwmp        {}  {}  last session {} ({})  ok {}  failed {}  next {}\n",
                map["acs_url"].as_str().unwrap_or(""),
                if map["in_session"].as_bool() == Some(true) {
                    "in session"
                } else {
                    "idle"
                },
                time(map["last_session_end"]),
                match map["last_session_ok"].as_bool() {
                    Some(true) => "ok",
                    Some(false) => "failed",
                    None => "none yet",
                },
                map["sessions_ok"],
                map["sessions_failed"],
                time(map["next_session"]),
            );
        }
    }
    match status["lwm2m"]["servers"].as_array() {
        None => out += "lwm2m       disabled\n",
        Some(servers) if servers.is_empty() => out += "lwm2m       no server yet\n",
        Some(servers) => {
            for server in servers {
                out += &format!(
                    "lwm2m {:<5} {}  {}  last update {}  failures {}{}\n",
                    server["short_server_id"],
                    server["address"].as_str().unwrap_or(""),
                    if server["registered"].as_bool() == Some(true) {
                        format!(
                            "registered at {}",
                            server["location"].as_str().unwrap_or("?")
                        )
                    } else {
                        "not registered".to_owned()
                    },
                    time(&server["last_update"]),
                    server["failures"],
                    server["last_error"]
                        .as_str()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    let firmware = &status["firmware"];
    if let Some(state) = firmware["state"].as_i64() {
        // LwM2M Core E.6 names.
        let name = match state {
            0 => "idle",
            1 => "downloading",
            2 => "downloaded",
            3 => "updating",
            _ => "?",
        };
        out += &format!(
            "firmware    {name}, last result {}",
            firmware["update_result"]
        );
        let transfer = &firmware["transfer"];
        if let Some(done) = transfer["done"].as_u64() {
            out += &match transfer["total"].as_u64() {
                Some(total) if total > 0 => format!(
                    "  last transfer {done} of {total} bytes ({}%)",
                    done * 100 / total
                ),
                _ => format!("  last transfer {done} bytes"),
            };
        }
        out += "\n";
    }
    Ok(out)
}
