//! The demo of scripts/demo.sh (examples/demo.rs, which `cargo test`
//! builds beside the agent): it ends by itself with exit 0 and shows both
//! registrations, the cross-protocol value change and the firmware report.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_demo_shows_the_job_and_ends_by_itself() {
    let dmagent = PathBuf::from(env!("CARGO_BIN_EXE_dmagent"));
    let demo = dmagent.parent().unwrap().join("examples/demo");
    let out = Command::new(&demo)
        .arg(&dmagent)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (`cargo test` builds it; with a --test filter, \
                 `cargo build -p dmagent --example demo` first)",
                demo.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shown in [
        "[acs]   Inform from serial DEMO-0001: events 0 BOOTSTRAP, 1 BOOT",
        "[lwm2m] registered endpoint dmagent-demo",
        "[acs]   GetParameterValues: Device.DeviceInfo.ModelName = \"dmagent demo\"",
        "[lwm2m] Write /12/1/5 (WLAN SSID) = \"from-lwm2m\": 2.04 Changed",
        "[acs]   Inform 4 VALUE CHANGE: Device.WiFi.SSID.1.SSID = \"from-lwm2m\"",
        "the configured program applied 65536 bytes",
        "[acs]   AutonomousTransferComplete: 65536 bytes, fault 0",
        "[lwm2m] de-registered; dmagent stopped (exit status: 0)",
    ] {
        assert!(stdout.contains(shown), "{shown:?} missing from:\n{stdout}");
    }
}
