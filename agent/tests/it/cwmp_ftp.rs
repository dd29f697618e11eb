//! CWMP file transfers over FTP (TR-069 §3.6) against a real FTP server
//! (pyftpdlib): a Download whose data connection breaks part-way is
//! resumed with REST and applied whole; a wrong password is 9012, a
//! missing file 9016; an Upload stores the system log with STOR, logged in
//! with the credentials of its URL.

use dm_tests::mini_acs::MiniAcs;
use dm_tests::py_peers::FtpServer;

fn download(key: &str, url: &str, user: &str, password: &str, size: usize) -> String {
    format!(
        "<cwmp:Download><CommandKey>{key}</CommandKey><FileType>1 Firmware Upgrade Image</FileType>\
         <URL>{url}</URL><Username>{user}</Username><Password>{password}</Password>\
         <FileSize>{size}</FileSize><TargetFileName>fw.bin</TargetFileName>\
         <DelaySeconds>0</DelaySeconds><SuccessURL></SuccessURL><FailureURL></FailureURL>\
         </cwmp:Download>"
    )
}

#[test]
fn ftp_downloads_resume_and_fail_with_their_codes_and_uploads_store_the_log() {
    let root = tempfile::tempdir().unwrap();
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(root.path().join("fw.bin"), &image).unwrap();
    // The first download breaks after 1 MB.
    let ftp = FtpServer::start(root.path(), Some(1_000_000));
    let base = format!("ftp://127.0.0.1:{}", ftp.port);
    let cases = [
        (
            "ftp-ok",
            download(
                "ftp-ok",
                &format!("{base}/fw.bin"),
                "dm",
                "ftp-secret",
                image.len(),
            ),
            "0",
        ),
        (
            "ftp-auth",
            download("ftp-auth", &format!("{base}/fw.bin"), "dm", "wrong", 0),
            "9012",
        ),
        (
            "ftp-missing",
            download(
                "ftp-missing",
                &format!("{base}/none.bin"),
                "dm",
                "ftp-secret",
                0,
            ),
            "9016",
        ),
        (
            "ftp-log",
            format!(
                "<cwmp:Upload><CommandKey>ftp-log</CommandKey><FileType>2 Vendor Log File</FileType>\
                 <URL>ftp://dm:ftp-secret@127.0.0.1:{}/dev1.log</URL><Username></Username>\
                 <Password></Password><DelaySeconds>0</DelaySeconds></cwmp:Upload>",
                ftp.port
            ),
            "0",
        ),
    ];
    let mut requests: Vec<String> = cases.iter().rev().map(|(_, r, _)| r.clone()).collect();
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty()
            || body.contains("<cwmp:DownloadResponse>")
            || body.contains("<cwmp:UploadResponse>")
        {
            return requests.pop();
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
            "[device]\nserial_number = \"SN-FTP\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {cr_port}\n\n[firmware]\ncommand = [\"{}\"]\n",
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
    let reported = dm_tests::agent::transfer_completes(&acs, cases.len());
    for (key, _, code) in &cases {
        assert_eq!(reported[*key], *code, "{key}");
    }
    // Whole, though its first data connection broke at 1 MB.
    assert!(
        std::fs::read(&applied).unwrap() == image,
        "the applied image differs"
    );
    let log = std::fs::read_to_string(root.path().join("dev1.log")).unwrap();
    assert!(log.contains("in-memory platform started"), "{log}");
}

/// A configuration backup and restore (TR-069 Upload "1 Vendor
/// Configuration File", Download "3 Vendor Configuration File"), through
/// the FTP server: what was uploaded is restored over a later change.
#[test]
fn a_configuration_uploaded_by_ftp_is_restored_by_a_download() {
    let root = tempfile::tempdir().unwrap();
    let ftp = FtpServer::start(root.path(), None);
    let url = format!("ftp://127.0.0.1:{}/backup.cfg", ftp.port);
    let interval = |seconds: u32| {
        format!(
            "<cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[1]\">\
             <ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformInterval</Name>\
             <Value xsi:type=\"xsd:unsignedInt\">{seconds}</Value></ParameterValueStruct>\
             </ParameterList><ParameterKey>k{seconds}</ParameterKey></cwmp:SetParameterValues>"
        )
    };
    let restore = format!(
        "<cwmp:Download><CommandKey>cfg-down</CommandKey>\
         <FileType>3 Vendor Configuration File</FileType><URL>{url}</URL>\
         <Username>dm</Username><Password>ftp-secret</Password><FileSize>0</FileSize>\
         <TargetFileName></TargetFileName><DelaySeconds>0</DelaySeconds>\
         <SuccessURL></SuccessURL><FailureURL></FailureURL></cwmp:Download>"
    );
    // Popped from the end: 777, the backup; once it is reported, 100 and
    // the restore; once that is reported, a read.
    let mut requests = vec![
        format!(
            "<cwmp:Upload><CommandKey>cfg-up</CommandKey>\
             <FileType>1 Vendor Configuration File</FileType><URL>{url}</URL>\
             <Username>dm</Username><Password>ftp-secret</Password>\
             <DelaySeconds>0</DelaySeconds></cwmp:Upload>"
        ),
        interval(777),
    ];
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.contains("<cwmp:TransferComplete>") {
            if body.contains("<CommandKey>cfg-up</CommandKey>") {
                requests.push(restore.clone());
                requests.push(interval(100));
            }
            if body.contains("<CommandKey>cfg-down</CommandKey>") {
                requests.push(
                    "<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType=\"xsd:string[2]\">\
                     <string>Device.ManagementServer.PeriodicInformInterval</string>\
                     <string>Device.DeviceInfo.VendorConfigFile.</string>\
                     </ParameterNames></cwmp:GetParameterValues>"
                        .into(),
                );
            }
            return Some("<cwmp:TransferCompleteResponse/>".into());
        }
        if body.is_empty() || body.contains("Response>") {
            return requests.pop();
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let cr_port = dm_tests::files::free_tcp_port();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-CFG\"\n\n[cwmp]\nacs_url = \"{}\"\n\
             connection_request_port = {cr_port}\n",
            acs.url(),
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    for key in ["cfg-up", "cfg-down"] {
        let complete = acs.post_with("<cwmp:TransferComplete>");
        assert!(
            complete.contains(&format!("<CommandKey>{key}</CommandKey>")),
            "{complete}"
        );
        assert!(complete.contains("<FaultCode>0</FaultCode>"), "{complete}");
        if key == "cfg-up" {
            // The change the restore is to undo took effect.
            let changed = acs.post_with("<cwmp:SetParameterValuesResponse>");
            assert!(changed.contains("<Status>0</Status>"), "{changed}");
        }
    }
    let backup = std::fs::read_to_string(root.path().join("backup.cfg")).unwrap();
    assert!(
        backup.contains("Device.ManagementServer.PeriodicInformInterval\txsd:unsignedInt\t777\n"),
        "{backup}"
    );
    let read = acs.post_with("<cwmp:GetParameterValuesResponse>");
    assert!(
        read.contains("<Value xsi:type=\"xsd:unsignedInt\">777</Value>"),
        "{read}"
    );
    // The agent's one configuration file, restored now (TR-181
    // VendorConfigFile: the CPE updates the table at such a Download).
    let values = dm_tests::mini_acs::parameter_values(&read);
    let file = |name: &str| values[&format!("Device.DeviceInfo.VendorConfigFile.1.{name}")].clone();
    assert_eq!(file("Name"), "dmagent configuration");
    assert_eq!(file("UseForBackupRestore"), "true");
    let date: jiff::Timestamp = file("Date").parse().unwrap();
    assert!(
        (date.as_second() - jiff::Timestamp::now().as_second()).abs() < 120,
        "{date}"
    );
}
