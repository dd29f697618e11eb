//! A CWMP Download through the agent: the ACS (dm_tests' minimal ACS) asks
//! for a firmware image on a local HTTP server, the agent streams it to
//! its image file, the configured program applies it, and the result goes
//! back as TransferComplete in a new session with 7 TRANSFER COMPLETE and
//! M Download.

use std::process::{Child, Command, Stdio};

use dm_tests::mini_acs::MiniAcs;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let image: Vec<u8> = (0..250_000u32).map(|i| (i * 17 % 253) as u8).collect();
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
    let applied = dir.path().join("applied.bin");
    let program = dir.path().join("apply-firmware");
    std::fs::write(
        &program,
        format!("#!/bin/sh\ncp \"$1\" '{}'\n", applied.display()),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&program).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&program, permissions).unwrap();
    let cr_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    let _agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
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
