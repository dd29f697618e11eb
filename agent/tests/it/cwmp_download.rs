//! A CWMP Download through the agent: the ACS (dm_tests' minimal ACS) asks
//! for a firmware image on a local HTTP server, the agent streams it to
//! its image file, the configured program applies it, and the result goes
//! back as TransferComplete in a new session with 7 TRANSFER COMPLETE and
//! M Download.

use std::process::Command;

use dm_tests::mini_acs::MiniAcs;

fn download(key: &str, url: &str, size: usize) -> String {
    format!(
        "<cwmp:Download><CommandKey>{key}</CommandKey><FileType>1 Firmware Upgrade Image</FileType>\
         <URL>{url}</URL><Username></Username><Password></Password><FileSize>{size}</FileSize>\
         <TargetFileName>fw.bin</TargetFileName><DelaySeconds>0</DelaySeconds>\
         <SuccessURL></SuccessURL><FailureURL></FailureURL></cwmp:Download>"
    )
}

#[test]
fn a_cwmp_download_is_applied_and_reported_with_transfer_complete() {
    let image: Vec<u8> = (0..5_000_000u32).map(|i| (i * 17 % 253) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let url = format!("http://127.0.0.1:{http_port}/image");
    let size = image.len();
    let mut asked = false;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() && !asked {
            // The first empty POST: ask for the download.
            asked = true;
            return Some(download("fw-42", &url, size));
        }
        if body.contains("<cwmp:TransferComplete>") {
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let (program, applied) = dm_tests::files::copying_program(dir.path());
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-DL\"\n\n[cwmp]\nacs_url = \"{}\"\nconnection_request_port = {cr_port}\n\n\
             [firmware]\ncommand = [\"{}\"]\n",
            acs.url(),
            program.display()
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    let response = acs.post_with("<cwmp:DownloadResponse>");
    assert!(response.contains("<Status>1</Status>"), "{response}");
    let inform = acs.post_with("7 TRANSFER COMPLETE");
    assert!(
        inform.contains("<EventCode>M Download</EventCode><CommandKey>fw-42</CommandKey>"),
        "{inform}"
    );
    let complete = acs.post_with("<cwmp:TransferComplete>");
    assert!(
        complete.contains("<CommandKey>fw-42</CommandKey>"),
        "{complete}"
    );
    assert!(complete.contains("<FaultCode>0</FaultCode>"), "{complete}");
    assert_eq!(std::fs::read(&applied).unwrap(), image);
}

/// kill -9 while a Download runs: after the restart the ACS hears about
/// it, TransferComplete with 9010, once.
#[test]
fn a_download_killed_mid_transfer_is_reported_failed_after_the_restart() {
    let (http_port, started) = dm_tests::files::stalling_server();
    let url = format!("http://127.0.0.1:{http_port}/image");
    let mut asked = false;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() && !asked {
            asked = true;
            return Some(download("fw-kill", &url, 1_000_000));
        }
        if body.contains("<cwmp:TransferComplete>") {
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-KILL\"\n\n[cwmp]\nacs_url = \"{}\"\nconnection_request_port = {cr_port}\n",
            acs.url()
        ),
    )
    .unwrap();
    let start = || {
        dm_tests::agent::run(
            env!("CARGO_BIN_EXE_dmagent"),
            &config,
            &dir.path().join("state"),
        )
    };
    let mut agent = start();
    acs.post_with("<cwmp:DownloadResponse>");
    started
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the download started");
    // kill -9 mid-transfer.
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let _agent = start();
    let inform = acs.post_with("7 TRANSFER COMPLETE");
    assert!(inform.contains("<EventCode>1 BOOT</EventCode>"), "{inform}");
    assert!(
        inform.contains("<EventCode>M Download</EventCode><CommandKey>fw-kill</CommandKey>"),
        "{inform}"
    );
    let complete = acs.post_with("<cwmp:TransferComplete>");
    assert!(
        complete.contains("<FaultCode>9010</FaultCode>"),
        "{complete}"
    );
}

/// Upload of "2 Vendor Log File": the system log is PUT to the URL, and
/// TransferComplete (M Upload) follows in a new session.
/// Uploads PUT the system log; a server that refuses PUT (405) gets it
/// by POST.
#[test]
fn an_upload_puts_the_system_log_and_is_reported() {
    let (http_port, received) = dm_tests::files::receiver();
    let upload = |key: &str, path: &str| {
        format!(
            "<cwmp:Upload><CommandKey>{key}</CommandKey><FileType>2 Vendor Log File</FileType>\
             <URL>http://127.0.0.1:{http_port}{path}</URL><Username></Username><Password></Password>\
             <DelaySeconds>0</DelaySeconds></cwmp:Upload>"
        )
    };
    let mut requests = vec![
        upload("log-post", "/post-only/dev1.log"),
        upload("log-1", "/logs/dev1.log"),
    ];
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() || body.contains("<cwmp:UploadResponse>") {
            return requests.pop();
        }
        if body.contains("<cwmp:TransferComplete>") {
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-UP\"\n\n[cwmp]\nacs_url = \"{}\"\nconnection_request_port = {cr_port}\n",
            acs.url()
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    let response = acs.post_with("<cwmp:UploadResponse>");
    assert!(response.contains("<Status>1</Status>"), "{response}");
    let (request_line, body) = received
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the log arrives");
    assert_eq!(request_line, "PUT /logs/dev1.log HTTP/1.1");
    assert!(
        String::from_utf8_lossy(&body).contains("in-memory platform started"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The second: PUT refused, then POST.
    let wait = std::time::Duration::from_secs(30);
    let (refused, _) = received.recv_timeout(wait).expect("the PUT");
    assert_eq!(refused, "PUT /post-only/dev1.log HTTP/1.1");
    let (request_line, posted) = received.recv_timeout(wait).expect("the POST");
    assert_eq!(request_line, "POST /post-only/dev1.log HTTP/1.1");
    assert!(
        String::from_utf8_lossy(&posted).contains("in-memory platform started"),
        "{}",
        String::from_utf8_lossy(&posted)
    );
    let inform = acs.post_with("7 TRANSFER COMPLETE");
    assert!(
        inform.contains("<EventCode>M Upload</EventCode><CommandKey>log-1</CommandKey>"),
        "{inform}"
    );
    for _ in 0..2 {
        let complete = acs.post_with("<cwmp:TransferComplete>");
        assert!(complete.contains("<FaultCode>0</FaultCode>"), "{complete}");
    }
}

/// A/B (issue 6): with `[firmware] reboot = true` the program installs
/// into the inactive slot, the agent reboots the device (here a configured
/// reboot command) and exits; the TransferComplete waits for the next
/// start, where the software version (read from a file the new slot
/// changes) decides: a new version is success, with 1 BOOT.
#[test]
fn an_ab_download_is_reported_after_the_reboot_by_the_new_version() {
    let image: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let url = format!("http://127.0.0.1:{http_port}/image");
    let size = image.len();
    let mut asked = false;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() && !asked {
            asked = true;
            return Some(download("ab-1", &url, size));
        }
        if body.contains("<cwmp:TransferComplete>") {
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("os-release");
    std::fs::write(&version, "NAME=Demo\nVERSION_ID=1.0\n").unwrap();
    let rebooted = dir.path().join("rebooted");
    let program = dir.path().join("install-to-slot-b");
    // The new slot carries version 2.0.
    dm_tests::files::executable(
        &program,
        &format!(
            "#!/bin/sh\ntest -s \"$1\" && printf 'NAME=Demo\\nVERSION_ID=2.0\\n' > '{}'\n",
            version.display()
        ),
    );
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-AB\"\nsoftware_version_file = \"{}\"\n\n\
             [cwmp]\nacs_url = \"{}\"\nconnection_request_port = {cr_port}\n\n\
             [firmware]\ncommand = [\"{}\"]\nreboot = true\n\n\
             [platform]\nreboot_command = [\"touch\", \"{}\"]\n",
            version.display(),
            acs.url(),
            program.display(),
            rebooted.display()
        ),
    )
    .unwrap();
    let start = || {
        dm_tests::agent::run(
            env!("CARGO_BIN_EXE_dmagent"),
            &config,
            &dir.path().join("state"),
        )
    };
    let mut agent = start();
    let response = acs.post_with("<cwmp:DownloadResponse>");
    assert!(response.contains("<Status>1</Status>"), "{response}");
    // Installed, then the reboot: the agent leaves after asking for it.
    assert!(agent.0.wait().unwrap().success());
    assert!(rebooted.exists(), "the reboot command ran");
    // The next boot.
    let _agent = start();
    let inform = acs.post_with("7 TRANSFER COMPLETE");
    assert!(inform.contains("<EventCode>1 BOOT</EventCode>"), "{inform}");
    assert!(
        inform.contains("<EventCode>M Download</EventCode><CommandKey>ab-1</CommandKey>"),
        "{inform}"
    );
    assert!(
        inform.contains(">2.0</Value>"),
        "the new version is reported: {inform}"
    );
    let complete = acs.post_with("<cwmp:TransferComplete>");
    assert!(
        complete.contains("<CommandKey>ab-1</CommandKey>"),
        "{complete}"
    );
    assert!(complete.contains("<FaultCode>0</FaultCode>"), "{complete}");
}

/// Fault injection (issue 6): each broken download is reported with the
/// TransferComplete fault TR-069 gives it, and no partial image stays.
/// A truncated body is 9017, a size other than FileSize 9018, a refused
/// login 9012, a missing file 9016, a server that is not there 9015; a
/// body cut short by a server that serves ranges is resumed (success, and
/// FileSize proves nothing was written twice).
#[test]
fn broken_downloads_are_reported_with_their_fault_codes() {
    let image: Vec<u8> = (0..64_000u32).map(|i| (i % 199) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let closed = dm_tests::files::free_tcp_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let cases = vec![
        ("short", format!("{base}/short"), image.len(), "9017"),
        ("size", format!("{base}/image"), image.len() + 1, "9018"),
        ("auth", format!("{base}/auth"), 0, "9012"),
        ("missing", format!("{base}/missing"), 0, "9016"),
        (
            "closed",
            format!("http://127.0.0.1:{closed}/image"),
            0,
            "9015",
        ),
        ("resumed", format!("{base}/flaky"), image.len(), "0"),
        // A 206 from the wrong offset is never spliced in.
        ("badrange", format!("{base}/badrange"), image.len(), "9017"),
    ];
    let mut requests: Vec<String> = cases
        .iter()
        .map(|(key, url, size, _)| download(key, url, *size))
        .collect();
    requests.reverse();
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() || body.contains("<cwmp:DownloadResponse>") {
            return requests.pop();
        }
        if body.contains("<cwmp:TransferComplete>") {
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-FAULTS\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {cr_port}\n\n[firmware]\ncommand = [\"/bin/true\"]\n",
            acs.url(),
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    let reported = dm_tests::agent::transfer_completes(&acs, cases.len());
    for (key, _, _, code) in &cases {
        assert_eq!(reported[*key], *code, "{key}");
    }
    let firmware = dir.path().join("state/firmware");
    let left: Vec<_> = std::fs::read_dir(&firmware)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing stays in {}: {left:?}",
        firmware.display()
    );
}

/// kill -9 while the update program runs (issue 6, crash safety): after
/// the restart the ACS hears TransferComplete 9010 (the outcome is
/// unknown), exactly once.
#[test]
fn a_download_killed_during_apply_is_reported_failed_after_the_restart() {
    let image: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let url = format!("http://127.0.0.1:{http_port}/image");
    let size = image.len();
    let mut asked = false;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() && !asked {
            asked = true;
            return Some(download("fw-apply", &url, size));
        }
        if body.contains("<cwmp:TransferComplete>") {
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    // The program says it runs (its pid, through a FIFO the test reads:
    // no polling), then works for a long time.
    let fifo = dir.path().join("applying");
    dm_tests::files::fifo(&fifo);
    let program = dir.path().join("slow-apply");
    dm_tests::files::executable(
        &program,
        &format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 120\n",
            fifo.display()
        ),
    );
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-APPLY\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {cr_port}\n\n[firmware]\ncommand = [\"{}\"]\n",
            acs.url(),
            program.display()
        ),
    )
    .unwrap();
    let start = || {
        dm_tests::agent::run(
            env!("CARGO_BIN_EXE_dmagent"),
            &config,
            &dir.path().join("state"),
        )
    };
    let mut agent = start();
    acs.post_with("<cwmp:DownloadResponse>");
    let pid = std::fs::read_to_string(&fifo).unwrap();
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    // The orphaned program goes too (a reboot would take it).
    Command::new("kill").arg(pid.trim()).status().unwrap();
    let _agent = start();
    let inform = acs.post_with("7 TRANSFER COMPLETE");
    assert!(
        inform.contains("<EventCode>M Download</EventCode><CommandKey>fw-apply</CommandKey>"),
        "{inform}"
    );
    let complete = acs.post_with("<cwmp:TransferComplete>");
    assert!(
        complete.contains("<FaultCode>9010</FaultCode>"),
        "{complete}"
    );
}

/// ChangeDUState end to end (issue 3 and 6): the ACS installs a deployment
/// unit from a URL (pulled over HTTP, installed by the package program,
/// which names its version), then uninstalls it by UUID; each is reported
/// with DUStateChangeComplete, and TR-181 shows the unit in between.
#[test]
fn change_du_state_installs_and_uninstalls_a_deployment_unit() {
    let package: Vec<u8> = (0..30_000u32).map(|i| (i % 211) as u8).collect();
    let http_port = dm_tests::files::image_server(package.clone());
    let uuid = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
    let install = format!(
        "<cwmp:ChangeDUState><Operations><InstallOpStruct><URL>http://127.0.0.1:{http_port}/image</URL>\
         <UUID>{uuid}</UUID><Username/><Password/><ExecutionEnvRef/></InstallOpStruct></Operations>\
         <CommandKey>du-install</CommandKey></cwmp:ChangeDUState>"
    );
    let uninstall = format!(
        "<cwmp:ChangeDUState><Operations><UninstallOpStruct><UUID>{uuid}</UUID><Version/>\
         <ExecutionEnvRef/></UninstallOpStruct></Operations><CommandKey>du-remove</CommandKey></cwmp:ChangeDUState>"
    );
    let mut empties = 0;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() {
            empties += 1;
            return match empties {
                1 => Some(install.clone()),
                2 => Some(
                    "<cwmp:GetParameterValues><ParameterNames><string>Device.SoftwareModules.\
                     </string></ParameterNames></cwmp:GetParameterValues>"
                        .into(),
                ),
                _ => None,
            };
        }
        if body.contains("<cwmp:GetParameterValuesResponse>") {
            return Some(uninstall.clone());
        }
        if body.contains("<cwmp:DUStateChangeComplete>") {
            return Some("<cwmp:DUStateChangeCompleteResponse/>".into());
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let program = dir.path().join("packages");
    dm_tests::files::executable(
        &program,
        &format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\ncase \"$1\" in install) echo 'demo-app 3.0';; esac\n",
            calls.display()
        ),
    );
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-DU\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {cr_port}\n\n[software]\ncommand = [\"{}\"]\n",
            acs.url(),
            program.display()
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    acs.post_with("<cwmp:ChangeDUStateResponse");
    let inform = acs.post_with("11 DU STATE CHANGE COMPLETE");
    assert!(
        inform
            .contains("<EventCode>M ChangeDUState</EventCode><CommandKey>du-install</CommandKey>"),
        "{inform}"
    );
    let installed = acs.post_with("<cwmp:DUStateChangeComplete>");
    assert!(
        installed.contains(&format!("<UUID>{uuid}</UUID>")),
        "{installed}"
    );
    assert!(
        installed.contains("<CurrentState>Installed</CurrentState>"),
        "{installed}"
    );
    assert!(installed.contains("<Version>3.0</Version>"), "{installed}");
    assert!(
        installed.contains("<FaultCode>0</FaultCode>"),
        "{installed}"
    );
    let unit = installed
        .split("<DeploymentUnitRef>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned();
    // Its one Execution Unit, the row of the same number.
    let execution_unit = unit
        .trim_end_matches('.')
        .replace("DeploymentUnit", "ExecutionUnit");
    assert!(
        installed.contains(&format!(
            "<ExecutionUnitRefList>{execution_unit}</ExecutionUnitRefList>"
        )),
        "{installed}"
    );
    // TR-181 shows the unit.
    let values = acs.post_with("<cwmp:GetParameterValuesResponse>");
    assert!(
        values.contains(&format!(
            "{unit}UUID</Name><Value xsi:type=\"xsd:string\">{uuid}"
        )),
        "{values}"
    );
    assert!(
        values.contains(&format!(
            "{unit}Version</Name><Value xsi:type=\"xsd:string\">3.0"
        )),
        "{values}"
    );
    assert!(
        values.contains(&format!(
            "{unit}Status</Name><Value xsi:type=\"xsd:string\">Installed"
        )),
        "{values}"
    );
    acs.post_with("<cwmp:ChangeDUStateResponse");
    let removed = acs.post_with("<CommandKey>du-remove</CommandKey></cwmp:DUStateChangeComplete>");
    assert!(
        removed.contains("<CurrentState>Uninstalled</CurrentState>"),
        "{removed}"
    );
    assert!(removed.contains("<FaultCode>0</FaultCode>"), "{removed}");
    assert!(
        removed.contains("<ExecutionUnitRefList></ExecutionUnitRefList>"),
        "{removed}"
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(calls.lines().collect::<Vec<_>>(), ["install", "uninstall"]);
}

/// SIGTERM in the middle of a CWMP session loses nothing (issue 7): the
/// ACS queued a Download in the session and the agent is stopped before
/// the session ends; after the restart the Download is still queued
/// (GetAllQueuedTransfers lists it).
#[test]
fn sigterm_during_a_cwmp_session_loses_nothing() {
    use std::sync::{Arc, Mutex, mpsc};
    let (held_tx, held) = mpsc::channel::<()>();
    let (release_tx, release) = mpsc::channel::<()>();
    let release = Arc::new(Mutex::new(release));
    let mut empties = 0;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() {
            empties += 1;
            return Some(match empties {
                1 => download("kept", "http://127.0.0.1:9/later.bin", 0).replace(
                    "<DelaySeconds>0</DelaySeconds>",
                    "<DelaySeconds>3600</DelaySeconds>",
                ),
                _ => "<cwmp:GetAllQueuedTransfers/>".into(),
            });
        }
        if body.contains("<cwmp:DownloadResponse>") {
            // The session stays open here until the test has stopped the
            // agent.
            let _ = held_tx.send(());
            let _ = release.lock().unwrap().recv();
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-TERM\"\n\n[cwmp]\nacs_url = \"{}\"\nconnection_request_port = {cr_port}\n",
            acs.url()
        ),
    )
    .unwrap();
    let start = || {
        dm_tests::agent::run(
            env!("CARGO_BIN_EXE_dmagent"),
            &config,
            &dir.path().join("state"),
        )
    };
    let mut agent = start();
    held.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the session reached the DownloadResponse");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(agent.0.wait().unwrap().success(), "a clean stop");
    release_tx.send(()).unwrap();
    let _agent = start();
    let queued = acs.post_with("<cwmp:GetAllQueuedTransfersResponse>");
    assert!(queued.contains("<CommandKey>kept</CommandKey>"), "{queued}");
}
