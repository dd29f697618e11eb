//! The verbs that talk to a running agent through its control API
//! (`org.dmagent.Agent1`, see `control.rs`), as icwmpd's `-c get ...`.
//! Output is one line per value (`name value`), or JSON for
//! `status --json`; errors go to stderr with a non-zero exit.

use std::collections::HashMap;
use std::process::ExitCode;

use crate::control;
use crate::{Command, FirmwareAction};

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
    fn execute(&self, path: &str, arguments: &str) -> zbus::Result<()>;
    fn firmware_pull(&self, url: &str, sha256: &str) -> zbus::Result<()>;
    fn request_download(&self, file_type: &str) -> zbus::Result<()>;
    fn kick(&self, command: &str, referer: &str, arg: &str, next: &str) -> zbus::Result<String>;
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
        Command::Firmware { action } => firmware(&agent, action).await?,
        Command::RequestDownload { file_type } => {
            agent
                .request_download(file_type.as_deref().unwrap_or(""))
                .await
                .map_err(explain)?;
            String::new()
        }
        Command::Kick {
            command,
            referer,
            arg,
            next,
        } => {
            let next_url = agent
                .kick(command, referer, arg, next)
                .await
                .map_err(explain)?;
            format!("{next_url}\n")
        }
        Command::Run | Command::CheckConfig | Command::Dump { .. } => String::new(),
    })
}

/// The firmware object's state and last result, and the last transfer's
/// progress, from the agent's status.
async fn firmware_state(
    agent: &Agent1Proxy<'_>,
) -> Result<(i64, i64, Option<(u64, Option<u64>)>), String> {
    let text = agent.status().await.map_err(explain)?;
    let status: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("unreadable status: {e}"))?;
    let firmware = &status["firmware"];
    let transfer = firmware["transfer"]["done"]
        .as_u64()
        .map(|done| (done, firmware["transfer"]["total"].as_u64()));
    Ok((
        firmware["state"].as_i64().unwrap_or(-1),
        firmware["update_result"].as_i64().unwrap_or(-1),
        transfer,
    ))
}

/// LwM2M Core E.6's Update Result, for people.
fn result_text(result: i64) -> &'static str {
    dm_core::enums::firmware::result::describe(result)
}

/// How often a waiting verb asks the agent how things stand. A person is
/// watching: a fifth of a second is smooth enough and costs nothing.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// `firmware pull URL` and `firmware update`: start it through the tree
/// (as the local CLI), then follow the firmware object until it settles,
/// drawing a progress bar on a terminal.
async fn firmware(agent: &Agent1Proxy<'_>, action: &FirmwareAction) -> Result<String, String> {
    use std::io::{IsTerminal as _, Write as _};
    let tty = std::io::stderr().is_terminal();
    match action {
        FirmwareAction::Pull { url, sha256 } => {
            // The agent resets the object first: a result seen from now on
            // is this pull's.
            use dm_core::enums::firmware::{DOWNLOADED, IDLE, result};
            agent
                .firmware_pull(url, sha256.as_deref().unwrap_or(""))
                .await
                .map_err(explain)?;
            loop {
                let (state, result, transfer) = firmware_state(agent).await?;
                if tty && let Some((done, total)) = transfer {
                    eprint!("\r{}", progress_bar(done, total));
                    let _ = std::io::stderr().flush();
                }
                match (state, result) {
                    (DOWNLOADED, _) => {
                        if tty {
                            eprintln!();
                        }
                        let size = transfer.map_or(0, |(done, _)| done);
                        return Ok(format!("downloaded {size} bytes\n"));
                    }
                    (IDLE, r) if r != result::INITIAL => {
                        if tty {
                            eprintln!();
                        }
                        return Err(format!("download failed: {} (result {r})", result_text(r)));
                    }
                    _ => tokio::time::sleep(POLL).await,
                }
            }
        }
        FirmwareAction::Update => {
            use dm_core::enums::firmware::{DOWNLOADED, IDLE, UPDATING, result};
            let (state, before, _) = firmware_state(agent).await?;
            if state != DOWNLOADED {
                return Err("no downloaded image to apply (firmware pull first)".into());
            }
            agent.execute("/5/0/2", "").await.map_err(explain)?;
            // The update moves the object to Updating (3) at once; an
            // update that fails before we look shows the same Downloaded
            // and failed result as one that failed before: after a few
            // seconds without any other state, that is its outcome.
            let asked = dm_rt::clock::now();
            let mut updating = false;
            loop {
                match firmware_state(agent).await {
                    Ok((IDLE, result::SUCCESS, _)) => return Ok("updated\n".into()),
                    Ok((UPDATING, _, _)) => updating = true,
                    Ok((DOWNLOADED | IDLE, r, _))
                        if r != result::INITIAL
                            && (updating
                                || r != before
                                || dm_rt::clock::since(asked)
                                    > std::time::Duration::from_secs(5)) =>
                    {
                        return Err(format!("update failed: {} (result {r})", result_text(r)));
                    }
                    Ok(_) => {}
                    // The agent went away: an A/B update reboots the device.
                    Err(e) => {
                        return Ok(format!(
                            "the agent stopped ({e}): rebooting into the new image?\n"
                        ));
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// `[=========>          ]  45%  2.3 of 5.0 MB`, or bytes so far when the
/// size is not known.
fn progress_bar(done: u64, total: Option<u64>) -> String {
    const WIDTH: u64 = 30;
    let mb = |b: u64| b as f64 / 1e6;
    match total {
        Some(total) if total > 0 => {
            let done = done.min(total);
            let filled = (done * WIDTH / total) as usize;
            format!(
                "[{}{}] {:3}%  {:.1} of {:.1} MB",
                "=".repeat(filled),
                " ".repeat(WIDTH as usize - filled),
                done * 100 / total,
                mb(done),
                mb(total)
            )
        }
        _ => format!("{:.1} MB", mb(done)),
    }
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
        "agent       dmagent {} (pid {}), up since {}, platform {}\n",
        agent["version"].as_str().unwrap_or("?"),
        agent["pid"],
        time(&agent["started"]),
        match agent["platform"].as_str() {
            Some("memory") => "memory (invented values, for tests and the demo)",
            Some(name) => name,
            None => "?",
        }
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
            if let Some(last) = map.get("last_error").filter(|e| !e.is_null()) {
                out += &format!(
                    "            last failure {}: {}\n",
                    time(&last["at"]),
                    last["error"].as_str().unwrap_or("?")
                );
            }
            if let Some(error) = map.get("connection_request_error").and_then(|e| e.as_str()) {
                out += &format!("            connection requests not served: {error}\n");
            }
            if map
                .get("connection_requests_unprotected")
                .and_then(|u| u.as_bool())
                == Some(true)
            {
                out += "            warning: connection requests are unprotected (empty ConnectionRequestUsername and ConnectionRequestPassword)\n";
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_with_the_transfer() {
        assert_eq!(
            progress_bar(0, Some(1_000_000)),
            format!("[{}]   0%  0.0 of 1.0 MB", " ".repeat(30))
        );
        assert_eq!(
            progress_bar(500_000, Some(1_000_000)),
            format!("[{}{}]  50%  0.5 of 1.0 MB", "=".repeat(15), " ".repeat(15))
        );
        assert_eq!(
            progress_bar(2_000_000, Some(1_000_000)),
            format!("[{}] 100%  1.0 of 1.0 MB", "=".repeat(30))
        );
        assert_eq!(progress_bar(2_500_000, None), "2.5 MB");
    }
}
