//! The session engine against a scripted ACS, in simulated time: no
//! sockets, no clock.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dm_core::catalog::{management_server, wlan};
use dm_core::{InstanceId, Notification, Origin, Path, Tree, Value};
use dm_cwmp::session::{Engine, EngineEvent, retry_wait};
use dm_cwmp::soap::dom;
use dm_objects::{CwmpSettings, Identity, Platform, Provisioning};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};

const WALL: i64 = 1_800_000_000;

fn tree() -> Tree {
    tree_on(Arc::new(MemoryNetwork::demo()))
}

fn tree_on(network: Arc<MemoryNetwork>) -> Tree {
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network,
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                manufacturer: "Acme".into(),
                oui: "00D09E".into(),
                product_class: "Gateway".into(),
                serial_number: "SN1".into(),
                ..Identity::default()
            },
            cwmp: Some(CwmpSettings {
                acs_url: "http://127.0.0.1:7547/".into(),
                periodic_inform: true,
                periodic_interval: 600,
                ..CwmpSettings::default()
            }),
            ..Provisioning::default()
        },
    )
    .unwrap();
    let _ = dm_objects::sync_platform(&mut tree, &platform);
    tree
}

/// An ACS message in the given namespace version.
fn acs(version: u8, id: &str, body: &str) -> String {
    format!(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-{version}"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">{id}</cwmp:ID></soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"#
    )
}

fn inform_response(version: u8) -> String {
    acs(
        version,
        "1",
        "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
    )
}

/// The Inform element of an envelope, as a callback over its parsed tree.
fn with_inform<T>(inform: &str, f: impl FnOnce(dom::Element<'_, '_>) -> T) -> T {
    let document = dom::parse(inform).unwrap();
    let body = document.root().child("Body").unwrap();
    f(body.children().next().unwrap())
}

/// The EventCodes and CommandKeys of an Inform.
fn events(inform: &str) -> Vec<(String, String)> {
    with_inform(inform, |inform| {
        inform
            .child("Event")
            .unwrap()
            .children()
            .map(|e| {
                (
                    e.child("EventCode").unwrap().text().to_owned(),
                    e.child("CommandKey").unwrap().text().to_owned(),
                )
            })
            .collect()
    })
}

fn inform_field(inform: &str, field: &str) -> String {
    with_inform(inform, |inform| {
        inform.child(field).unwrap().text().to_owned()
    })
}

fn parameter_names(inform: &str) -> Vec<String> {
    with_inform(inform, |inform| {
        inform
            .child("ParameterList")
            .unwrap()
            .children()
            .map(|p| p.child("Name").unwrap().text().to_owned())
            .collect()
    })
}

struct Run {
    tree: Tree,
    engine: Engine,
    now: Instant,
}

impl Run {
    fn new() -> Run {
        let mut tree = tree();
        let now = Instant::now();
        let engine = Engine::new(&mut tree, now, WALL, 7);
        Run { tree, engine, now }
    }

    fn restart(self) -> Run {
        let Run { mut tree, now, .. } = self;
        let engine = Engine::new(&mut tree, now, WALL, 7);
        Run { tree, engine, now }
    }

    /// Starts a session and returns the Inform.
    fn start(&mut self) -> String {
        self.engine.poll_start(&mut self.tree, WALL);
        let events = self.drain_events();
        assert!(
            matches!(events.last(), Some(EngineEvent::SessionStarted { .. })),
            "{events:?}"
        );
        let inform = self.engine.poll_transmit().expect("an Inform").to_text();
        common::validate_message(&inform, "Inform");
        inform
    }

    /// Feeds an HTTP response and returns the next POST body.
    fn respond(&mut self, status: u16, body: &str) -> Option<String> {
        self.engine
            .handle_response(&mut self.tree, self.now, WALL, status, body.as_bytes());
        self.engine.poll_transmit().map(|body| body.to_text())
    }

    /// [`Run::respond`] to a request that lists a table the host gives
    /// on demand: the reads it waits for are made here (as the driver
    /// makes them, off the lock), then its answer is the next POST.
    fn respond_reading(&mut self, status: u16, body: &str) -> Option<String> {
        if let Some(answer) = self.respond(status, body) {
            return Some(answer);
        }
        let reads = self.engine.poll_host_reads()?;
        let warnings = self
            .engine
            .host_reads_done(&mut self.tree, reads.run_within(Duration::from_secs(5)));
        assert!(
            warnings.iter().all(|w| w.contains("served")),
            "{warnings:?}"
        );
        self.engine.poll_transmit().map(|body| body.to_text())
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine
            .handle_timeout(&mut self.tree, self.now, WALL + by.as_secs() as i64);
    }

    fn drain_events(&mut self) -> Vec<EngineEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }
}

#[test]
fn boot_session_gpv_then_204() {
    let mut run = Run::new();
    let inform = run.start();
    assert_eq!(
        events(&inform),
        [
            ("0 BOOTSTRAP".into(), String::new()),
            ("1 BOOT".into(), String::new())
        ]
    );
    assert_eq!(inform_field(&inform, "RetryCount"), "0");
    assert_eq!(inform_field(&inform, "MaxEnvelopes"), "1");
    let names = parameter_names(&inform);
    for forced in [
        "Device.RootDataModelVersion",
        "Device.DeviceInfo.HardwareVersion",
        "Device.DeviceInfo.SoftwareVersion",
        "Device.DeviceInfo.ProvisioningCode",
        "Device.ManagementServer.ParameterKey",
        "Device.ManagementServer.ConnectionRequestURL",
    ] {
        assert!(
            names.iter().any(|n| n == forced),
            "{forced} missing from {names:?}"
        );
    }
    // InformResponse: then the empty POST.
    assert_eq!(run.respond(200, &inform_response(0)).as_deref(), Some(""));
    // The ACS asks GPV in the 1-0 namespace: the answer echoes ID and
    // namespace.
    let gpv = acs(
        0,
        "gpv-1",
        "<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.SerialNumber</string></ParameterNames></cwmp:GetParameterValues>",
    );
    let answer = run.respond(200, &gpv).unwrap();
    assert!(answer.contains("urn:dslforum-org:cwmp-1-0"));
    assert!(answer.contains(">gpv-1</cwmp:ID>"));
    assert!(answer.contains("<Value xsi:type=\"xsd:string\">SN1</Value>"));
    // 204: the session ends; nothing more to send.
    assert_eq!(run.respond(204, ""), None);
    assert!(run.drain_events().contains(&EngineEvent::SessionEnded {
        ok: true,
        error: None
    }));
    assert!(!run.engine.in_session());
    // The next session carries no BOOT or BOOTSTRAP.
    run.engine.handle_connection_request(&mut run.tree);
    let next = run.start();
    assert_eq!(
        events(&next),
        [("6 CONNECTION REQUEST".into(), String::new())]
    );
}

#[test]
fn a_failed_session_keeps_events_and_retries_with_backoff() {
    let mut run = Run::new();
    run.start();
    assert_eq!(run.respond(500, ""), None);
    // The reason reaches the log and the status.
    assert!(run.drain_events().contains(&EngineEvent::SessionEnded {
        ok: false,
        error: Some("the ACS answered the Inform with HTTP 500".into())
    }));
    // Defaults m = 5 s, k = 2000: the first retry waits 5..10 s.
    let wait = run.engine.poll_timeout().unwrap() - run.now;
    assert!(
        wait >= Duration::from_secs(5) && wait < Duration::from_secs(10),
        "{wait:?}"
    );
    // Not before the timer.
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None);
    run.advance(wait);
    let inform = run.start();
    assert_eq!(inform_field(&inform, "RetryCount"), "1");
    assert_eq!(events(&inform)[1].0, "1 BOOT");
    // A second failure waits longer: 10..20 s.
    run.respond(200, &acs(2, "1", "<soap-env:Fault><faultcode>Server</faultcode><faultstring>x</faultstring><detail><cwmp:Fault><FaultCode>8005</FaultCode><FaultString>Retry request</FaultString></cwmp:Fault></detail></soap-env:Fault>"));
    let wait = run.engine.poll_timeout().unwrap() - run.now;
    assert!(
        wait >= Duration::from_secs(10) && wait < Duration::from_secs(20),
        "{wait:?}"
    );
    // A connection request does not wait for the retry (GenieACS gives up
    // on a device that does not come within its timeout): the session
    // starts now, still counting the retries.
    run.engine.handle_connection_request(&mut run.tree);
    let inform = run.start();
    assert_eq!(inform_field(&inform, "RetryCount"), "2");
    assert!(
        events(&inform).contains(&("6 CONNECTION REQUEST".into(), String::new())),
        "{inform}"
    );
}

#[test]
fn retry_windows_follow_tr069() {
    for n in 1..=12u32 {
        let low = retry_wait(5, 2000, n, 0);
        let high = retry_wait(5, 2000, n, u64::MAX);
        let capped = n.min(10) as i32;
        assert_eq!(low, Duration::from_secs_f64(5.0 * 2f64.powi(capped - 1)));
        assert!(high <= Duration::from_secs_f64(5.0 * 2f64.powi(capped)));
    }
}

#[test]
fn retry_waits_from_extreme_settings_are_capped_not_a_panic() {
    use dm_cwmp::session::MAX_RETRY_WAIT;
    for (m, k) in [(65535, 65535), (13, 65535), (65535, 27000), (1, 1000)] {
        for n in [1, 5, 10, u32::MAX] {
            for random in [0, u64::MAX] {
                assert!(retry_wait(m, k, n, random) <= MAX_RETRY_WAIT);
            }
        }
    }
    assert_eq!(retry_wait(65535, 65535, 10, 0), MAX_RETRY_WAIT);
}

#[test]
fn events_survive_a_kill_before_the_inform_response() {
    let mut run = Run::new();
    run.start();
    // Killed here: a new engine on the saved tree.
    let mut run = run.restart();
    let inform = run.start();
    assert_eq!(
        events(&inform),
        [
            ("0 BOOTSTRAP".into(), String::new()),
            ("1 BOOT".into(), String::new())
        ]
    );
}

#[test]
fn reboot_runs_after_the_session_and_m_reboot_follows_once() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let answer = run
        .respond(
            200,
            &acs(
                2,
                "rb",
                "<cwmp:Reboot><CommandKey>reboot-7</CommandKey></cwmp:Reboot>",
            ),
        )
        .unwrap();
    common::validate_message(&answer, "RebootResponse");
    // Not yet: the session is still open.
    assert!(!run.drain_events().contains(&EngineEvent::Reboot));
    run.respond(204, "");
    let after = run.drain_events();
    assert_eq!(
        after,
        [
            EngineEvent::SessionEnded {
                ok: true,
                error: None
            },
            EngineEvent::Reboot
        ]
    );
    // The device reboots; the agent starts again.
    let mut run = run.restart();
    let inform = run.start();
    assert_eq!(
        events(&inform),
        [
            ("1 BOOT".into(), String::new()),
            ("M Reboot".into(), "reboot-7".into())
        ]
    );
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    // Another plain restart: no M Reboot again.
    let mut run = run.restart();
    let inform = run.start();
    assert_eq!(events(&inform), [("1 BOOT".into(), String::new())]);
}

#[test]
fn active_notification_starts_a_session_with_the_value() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    let ssid = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    run.tree
        .set_notification(Origin::Acs, &ssid, Notification::Active)
        .unwrap();
    let changes = run.tree.subscribe(16);
    // The ACS's own write is not reported back.
    run.tree
        .begin(Origin::Acs)
        .set(ssid, Value::String("by-acs".into()))
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None);
    // An LwM2M server's write is.
    run.tree
        .begin(Origin::Server(101))
        .set(ssid, Value::String("by-lwm2m".into()))
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    let inform = run.start();
    assert_eq!(events(&inform), [("4 VALUE CHANGE".into(), String::new())]);
    assert!(parameter_names(&inform).contains(&"Device.WiFi.SSID.1.SSID".to_owned()));
    assert!(inform.contains(">by-lwm2m<"));
}

/// "8 DIAGNOSTICS COMPLETE" reports the end of a test the ACS requested,
/// once, and survives a restart in between; the end of a test someone
/// else requested (the CLI, as the agent) is not reported; a test the ACS
/// requested and then canceled (an input changed) is forgotten.
#[test]
fn diagnostics_the_acs_requested_are_reported_complete_once() {
    use dm_core::catalog::ip_ping;
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    let state = Path::resource(ip_ping::ID, InstanceId(0), ip_ping::DIAGNOSTICS_STATE);
    let changes = run.tree.subscribe(16);
    let write = |run: &mut Run, origin: Origin, value: &str| {
        run.tree
            .begin(origin)
            .set(state, Value::String(value.into()))
            .commit()
            .unwrap();
        for change in changes.drain() {
            run.engine.handle_change(&mut run.tree, &change);
        }
    };
    // Requested by someone else, then complete: nothing to report.
    write(&mut run, Origin::Agent, "Requested");
    write(&mut run, Origin::Agent, "Complete");
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None);
    // Requested by the ACS; the agent restarts; the test ends.
    write(&mut run, Origin::Acs, "Requested");
    let mut run = run.restart();
    write(&mut run, Origin::Agent, "Error_CannotResolveHostName");
    let inform = run.start();
    common::validate_message(&inform, "Inform");
    assert_eq!(
        events(&inform),
        [
            ("1 BOOT".into(), String::new()),
            ("8 DIAGNOSTICS COMPLETE".into(), String::new())
        ]
    );
    run.respond(200, &inform_response(2));
    // The results, a TR-143 time to the microsecond among them, as the
    // ACS reads them: XSD-valid (xsd:dateTime takes the fraction).
    use dm_core::catalog::download_diagnostics as download;
    run.tree
        .begin(Origin::Agent)
        .set(
            Path::resource(download::ID, InstanceId(0), download::BOM_TIME),
            Value::DateTimeMicros(1_796_624_247_969_123),
        )
        .commit()
        .unwrap();
    let answer = run
        .respond(
            200,
            &acs(
                2,
                "gpv",
                "<cwmp:GetParameterValues><ParameterNames>\
                 <string>Device.IP.Diagnostics.</string></ParameterNames></cwmp:GetParameterValues>",
            ),
        )
        .unwrap();
    common::validate_message(&answer, "GetParameterValuesResponse");
    assert!(answer.contains("<Name>Device.IP.Diagnostics.DownloadDiagnostics.BOMTime</Name><Value xsi:type=\"xsd:dateTime\">2026-12-07T06:17:27.969123Z</Value>"), "{answer}");
    run.respond(204, "");
    run.drain_events();
    // Requested, then an input changed (the state back to None): no
    // report.
    write(&mut run, Origin::Acs, "Requested");
    run.tree
        .begin(Origin::Acs)
        .set(
            Path::resource(ip_ping::ID, InstanceId(0), ip_ping::HOST),
            Value::String("192.0.2.9".into()),
        )
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    write(&mut run, Origin::Agent, "Complete");
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None);
}

/// Field case (GenieACS users watching Device.Hosts.Host. and similar
/// tables): SetParameterAttributes on a table's partial path, then an
/// instance created by someone else (here an LwM2M server): its parameters
/// are reported at once as a value change, and later changes to them too.
/// The ACS's own AddObject is not reported back.
#[test]
fn new_instances_under_a_notified_table_are_reported_as_value_changes() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let spa = acs(
        2,
        "spa",
        "<cwmp:SetParameterAttributes><ParameterList><SetParameterAttributesStruct>\
         <Name>Device.WiFi.SSID.</Name><NotificationChange>1</NotificationChange>\
         <Notification>2</Notification><AccessListChange>0</AccessListChange>\
         <AccessList></AccessList></SetParameterAttributesStruct></ParameterList>\
         </cwmp:SetParameterAttributes>",
    );
    let answer = run.respond(200, &spa).unwrap();
    assert!(
        answer.contains("SetParameterAttributesResponse"),
        "{answer}"
    );
    run.respond(204, "");
    run.drain_events();
    let changes = run.tree.subscribe(64);
    // The ACS's own instance is not reported back.
    run.tree
        .begin(Origin::Acs)
        .create(wlan::ID, None)
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None);
    // One from an LwM2M server is, even after a restart of the agent.
    let mut run = run.restart();
    let changes = run.tree.subscribe(64);
    run.tree
        .begin(Origin::Server(101))
        .create(wlan::ID, Some(InstanceId(7)))
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    let inform = run.start();
    assert!(events(&inform).contains(&("4 VALUE CHANGE".into(), String::new())));
    let names = parameter_names(&inform);
    assert!(
        names.contains(&"Device.WiFi.SSID.7.SSID".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("Device.WiFi.SSID.1.")),
        "{names:?}"
    );
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    // The new instance's parameters carry the table's level from now on.
    let ssid = Path::resource(wlan::ID, InstanceId(7), wlan::SSID);
    assert_eq!(
        run.tree.attributes().notification(&ssid),
        Notification::Active
    );
    run.tree
        .begin(Origin::Cli)
        .set(ssid, Value::String("renamed".into()))
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    let inform = run.start();
    assert!(inform.contains(">renamed<"), "{inform}");
}

#[test]
fn passive_notification_waits_for_the_next_session() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    let ssid = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    run.tree
        .set_notification(Origin::Acs, &ssid, Notification::Passive)
        .unwrap();
    let changes = run.tree.subscribe(16);
    run.tree
        .begin(Origin::Cli)
        .set(ssid, Value::String("local".into()))
        .commit()
        .unwrap();
    for change in changes.drain() {
        run.engine.handle_change(&mut run.tree, &change);
    }
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(
        run.engine.poll_transmit(),
        None,
        "passive starts no session"
    );
    // The periodic inform carries it.
    let due = run.engine.poll_timeout().unwrap() - run.now;
    assert_eq!(due, Duration::from_secs(600));
    run.advance(due);
    let inform = run.start();
    assert_eq!(events(&inform), [("2 PERIODIC".into(), String::new())]);
    assert!(parameter_names(&inform).contains(&"Device.WiFi.SSID.1.SSID".to_owned()));
}

#[test]
fn schedule_inform_fires_with_its_command_key() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(
        200,
        &acs(2, "si", "<cwmp:ScheduleInform><DelaySeconds>30</DelaySeconds><CommandKey>sched-1</CommandKey></cwmp:ScheduleInform>"),
    )
    .unwrap();
    run.respond(204, "");
    assert_eq!(
        run.engine.poll_timeout().unwrap() - run.now,
        Duration::from_secs(30)
    );
    run.advance(Duration::from_secs(30));
    let inform = run.start();
    assert_eq!(
        events(&inform),
        [
            ("3 SCHEDULED".into(), String::new()),
            ("M ScheduleInform".into(), "sched-1".into())
        ]
    );
}

#[test]
fn bad_or_unknown_requests_get_faults_and_the_session_goes_on() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let unknown = run
        .respond(200, &acs(2, "u", "<cwmp:Frobnicate/>"))
        .unwrap();
    assert!(unknown.contains("<FaultCode>9000</FaultCode>") && unknown.contains(">u</cwmp:ID>"));
    common::validate_message(&unknown, "Fault 9000");
    let broken = run.respond(200, "<soap-env:Envelope").unwrap();
    assert!(broken.contains("<FaultCode>9003</FaultCode>"));
    let must = acs(2, "m", "<cwmp:GetRPCMethods/>").replace(
        "</soap-env:Header>",
        r#"<x:Secret xmlns:x="urn:x" soap-env:mustUnderstand="1"/></soap-env:Header>"#,
    );
    let refused = run.respond(200, &must).unwrap();
    assert!(refused.contains("soap-env:MustUnderstand"));
    let methods = run
        .respond(200, &acs(2, "g", "<cwmp:GetRPCMethods/>"))
        .unwrap();
    common::validate_message(&methods, "GetRPCMethodsResponse");
    let vouchers = run
        .respond(200, &acs(2, "v", "<cwmp:SetVouchers><VoucherList><base64>AA==</base64></VoucherList></cwmp:SetVouchers>"))
        .unwrap();
    assert!(vouchers.contains("<FaultCode>9001</FaultCode>"));
    let queued = run
        .respond(200, &acs(2, "q", "<cwmp:GetAllQueuedTransfers/>"))
        .unwrap();
    common::validate_message(&queued, "GetAllQueuedTransfersResponse");
    assert_eq!(run.respond(204, ""), None);
    assert!(run.drain_events().contains(&EngineEvent::SessionEnded {
        ok: true,
        error: None
    }));
}

#[test]
fn spv_through_a_session_changes_the_tree_and_periodic_timer() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let answer = run
        .respond(
            200,
            &acs(2, "s", r#"<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformInterval</Name><Value xsi:type="xsd:unsignedInt" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">60</Value></ParameterValueStruct></ParameterList><ParameterKey>pk</ParameterKey></cwmp:SetParameterValues>"#),
        )
        .unwrap();
    common::validate_message(&answer, "SetParameterValuesResponse");
    run.respond(204, "");
    // The new interval takes effect at the end of the session.
    assert_eq!(
        run.engine.poll_timeout().unwrap() - run.now,
        Duration::from_secs(60)
    );
    let key = run
        .tree
        .read(
            Origin::Agent,
            &Path::resource(
                management_server::ID,
                InstanceId(0),
                management_server::PARAMETER_KEY,
            ),
        )
        .unwrap();
    assert_eq!(
        key,
        dm_core::ResourceValue::Single(Value::String("pk".into()))
    );
}

/// SetParameterValues of an SSID: NetworkManager must take the profile
/// first, so the engine hands the write to its driver and answers when
/// the driver reports; the tree is not changed before, and a refusal is
/// a fault with the tree left as it was.
#[test]
fn a_write_the_host_must_make_is_answered_once_made() {
    let network = Arc::new(MemoryNetwork::demo());
    let mut tree = tree_on(network.clone());
    let now = Instant::now();
    let engine = Engine::new(&mut tree, now, WALL, 7);
    let mut run = Run { tree, engine, now };
    run.start();
    run.respond(200, &inform_response(2));
    let ssid = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    let spv = |id: &str, name: &str| {
        acs(
            2,
            id,
            &format!(
                r#"<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.WiFi.SSID.1.SSID</Name><Value xsi:type="xsd:string" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{name}</Value></ParameterValueStruct></ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues>"#
            ),
        )
    };

    assert_eq!(run.respond(200, &spv("a", "office")), None);
    let work = run.engine.poll_host_work().expect("a host write");
    assert!(run.engine.poll_host_work().is_none(), "handed over once");
    assert_eq!(
        run.tree.read(Origin::Agent, &ssid).unwrap(),
        dm_core::ResourceValue::Single(Value::String("dmagent-demo".into()))
    );
    // Meanwhile the instance is the ACS's: another client waits.
    let busy = run
        .tree
        .begin(Origin::Server(1))
        .set(ssid, Value::String("other".into()))
        .commit()
        .unwrap_err();
    assert!(
        matches!(busy.faults[..], [dm_core::Error::Busy(_)]),
        "{busy}"
    );
    let outcome = work.run();
    assert!(run.engine.host_work_done(&mut run.tree, outcome).is_none());
    let answer = run.engine.poll_transmit().unwrap().to_text();
    common::validate_message(&answer, "SetParameterValuesResponse");
    assert!(
        answer.contains("<cwmp:ID soap-env:mustUnderstand=\"1\">a</cwmp:ID>"),
        "{answer}"
    );
    assert_eq!(
        dm_platform::Network::wifi_profiles(&*network)[0].ssid,
        "office"
    );
    assert_eq!(
        run.tree.read(Origin::Agent, &ssid).unwrap(),
        dm_core::ResourceValue::Single(Value::String("office".into()))
    );

    // The host refuses the next one: a fault, nothing changed.
    network.refuse_writes(Some(dm_platform::PlatformError::Failed(
        "NetworkManager said no".into(),
    )));
    assert_eq!(run.respond(200, &spv("b", "lab")), None);
    let outcome = run.engine.poll_host_work().unwrap().run();
    run.engine.host_work_done(&mut run.tree, outcome);
    let answer = run.engine.poll_transmit().unwrap().to_text();
    assert!(answer.contains("<FaultCode>9002</FaultCode>"), "{answer}");
    assert!(answer.contains("NetworkManager said no"), "{answer}");
    assert_eq!(
        run.tree.read(Origin::Agent, &ssid).unwrap(),
        dm_core::ResourceValue::Single(Value::String("office".into()))
    );
    assert!(run.respond(204, "").is_none());
}

#[test]
fn scheduled_informs_are_bounded() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let mut last = String::new();
    for n in 0..65 {
        last = run
            .respond(
                200,
                &acs(2, "si", &format!("<cwmp:ScheduleInform><DelaySeconds>{}</DelaySeconds><CommandKey>k{n}</CommandKey></cwmp:ScheduleInform>", 100 + n)),
            )
            .unwrap();
    }
    assert!(last.contains("<FaultCode>9004</FaultCode>"), "{last}");
}

#[test]
fn a_change_during_the_session_is_reported_in_the_next_one() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    let ssid = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    run.tree
        .set_notification(Origin::Acs, &ssid, Notification::Active)
        .unwrap();
    let changes = run.tree.subscribe(16);
    let change = |run: &mut Run, value: &str| {
        run.tree
            .begin(Origin::Cli)
            .set(ssid, Value::String(value.into()))
            .commit()
            .unwrap();
        for change in changes.drain() {
            run.engine.handle_change(&mut run.tree, &change);
        }
    };
    change(&mut run, "first");
    let inform = run.start();
    assert!(inform.contains(">first<"));
    // Changed again while the Inform is in flight.
    change(&mut run, "second");
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    let inform = run.start();
    assert_eq!(events(&inform), [("4 VALUE CHANGE".into(), String::new())]);
    assert!(inform.contains(">second<"), "{inform}");
}

#[test]
fn a_reboot_the_acs_was_promised_happens_even_if_the_session_fails() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(
        200,
        &acs(
            2,
            "rb",
            "<cwmp:Reboot><CommandKey>rk</CommandKey></cwmp:Reboot>",
        ),
    )
    .unwrap();
    run.drain_events();
    run.engine
        .handle_transport_error(&mut run.tree, run.now, "connection refused");
    assert_eq!(
        run.drain_events(),
        [
            EngineEvent::SessionEnded {
                ok: false,
                error: Some("connection refused".into())
            },
            EngineEvent::Reboot
        ]
    );
    let mut run = run.restart();
    let inform = run.start();
    assert!(events(&inform).contains(&("M Reboot".into(), "rk".into())));
}

#[test]
fn single_events_keep_room_when_scheduled_informs_fill_the_queue() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    for n in 0..70 {
        run.respond(
            200,
            &acs(2, "si", &format!("<cwmp:ScheduleInform><DelaySeconds>1</DelaySeconds><CommandKey>k{n}</CommandKey></cwmp:ScheduleInform>")),
        )
        .unwrap();
    }
    run.respond(204, "");
    run.drain_events();
    run.advance(Duration::from_secs(1));
    run.engine.handle_connection_request(&mut run.tree);
    let inform = run.start();
    let events = events(&inform);
    assert!(events.len() <= 64, "{}", events.len());
    assert!(events.contains(&("3 SCHEDULED".into(), String::new())));
    assert!(events.contains(&("6 CONNECTION REQUEST".into(), String::new())));
    // Every accepted ScheduleInform has its M ScheduleInform.
    let m = events
        .iter()
        .filter(|(c, _)| c == "M ScheduleInform")
        .count();
    assert!(m >= 40, "{m}");
}

#[test]
fn lost_changes_report_every_notified_parameter() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    let ssid = Path::resource(wlan::ID, InstanceId(1), wlan::SSID);
    run.tree
        .set_notification(Origin::Acs, &ssid, Notification::Active)
        .unwrap();
    // Changed, but the change never reached the engine (overflow).
    run.tree
        .begin(Origin::Cli)
        .set(ssid, Value::String("unseen".into()))
        .commit()
        .unwrap();
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None);
    run.engine.handle_lost_changes(&mut run.tree);
    let inform = run.start();
    assert_eq!(events(&inform), [("4 VALUE CHANGE".into(), String::new())]);
    assert!(inform.contains(">unseen<"));
}

/// FreeACS sets PeriodicInformInterval in every session (FreeACS issue
/// tracker): each session ends with the periodic timer re-armed, and the
/// write never starts another session by itself.
#[test]
fn an_acs_that_rewrites_the_periodic_interval_every_session_causes_no_loop() {
    let mut run = Run::new();
    let changes = run.tree.subscribe(64);
    for round in 0..3 {
        let inform = run.start();
        if round > 0 {
            assert_eq!(events(&inform), [("2 PERIODIC".into(), String::new())]);
        }
        run.respond(200, &inform_response(2));
        run.respond(
            200,
            &acs(2, "s", r#"<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformInterval</Name><Value xsi:type="xsd:unsignedInt" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">600</Value></ParameterValueStruct></ParameterList><ParameterKey>freeacs</ParameterKey></cwmp:SetParameterValues>"#),
        )
        .unwrap();
        run.respond(204, "");
        for change in changes.drain() {
            run.engine.handle_change(&mut run.tree, &change);
        }
        run.drain_events();
        // Nothing wanted now: the next session is the periodic one.
        run.engine.poll_start(&mut run.tree, WALL);
        assert_eq!(run.engine.poll_transmit(), None, "round {round}");
        let due = run.engine.poll_timeout().unwrap() - run.now;
        assert_eq!(due, Duration::from_secs(600), "round {round}");
        run.advance(due);
    }
}

fn download_request(key: &str, url: &str, delay: u32) -> String {
    acs(
        2,
        "dl",
        &format!(
            "<cwmp:Download><CommandKey>{key}</CommandKey><FileType>1 Firmware Upgrade Image</FileType>\
             <URL>{url}</URL><Username></Username><Password></Password><FileSize>1000</FileSize>\
             <TargetFileName>fw.bin</TargetFileName><DelaySeconds>{delay}</DelaySeconds>\
             <SuccessURL></SuccessURL><FailureURL></FailureURL></cwmp:Download>"
        ),
    )
}

#[test]
fn a_download_is_queued_performed_and_reported_in_a_new_session() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let answer = run
        .respond(
            200,
            &download_request("fw-1", "http://127.0.0.1:9/fw.bin", 5),
        )
        .unwrap();
    common::validate_message(&answer, "DownloadResponse");
    assert!(answer.contains("<Status>1</Status>"));
    // Refused: a protocol this device does not download with.
    let refused = run
        .respond(200, &download_request("fw-x", "tftp://127.0.0.1/fw.bin", 0))
        .unwrap();
    assert!(refused.contains("<FaultCode>9013</FaultCode>"), "{refused}");
    let queued = run
        .respond(200, &acs(2, "q", "<cwmp:GetAllQueuedTransfers/>"))
        .unwrap();
    common::validate_message(&queued, "GetAllQueuedTransfersResponse");
    assert!(
        queued.contains("<CommandKey>fw-1</CommandKey><State>1</State>"),
        "{queued}"
    );
    run.respond(204, "");
    run.drain_events();
    // Not before DelaySeconds.
    assert_eq!(run.engine.poll_transfer(&mut run.tree, WALL), None);
    let transfer = run
        .engine
        .poll_transfer(&mut run.tree, WALL + 5)
        .expect("due after 5 s");
    assert_eq!(transfer.url, "http://127.0.0.1:9/fw.bin");
    run.engine.transfer_complete(
        &mut run.tree,
        dm_cwmp::session::TransferResult {
            command_key: "fw-1".into(),
            fault_code: 0,
            fault_string: String::new(),
            start: WALL + 5,
            complete: WALL + 9,
            upload: false,
            scheduled: false,
            autonomous: None,
        },
    );
    let inform = run.start();
    let reported = events(&inform);
    assert!(reported.contains(&("7 TRANSFER COMPLETE".into(), String::new())));
    assert!(reported.contains(&("M Download".into(), "fw-1".into())));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&complete, "TransferComplete");
    assert!(complete.contains("<CommandKey>fw-1</CommandKey>"));
    assert!(complete.contains("<FaultCode>0</FaultCode>"));
    let empty = run
        .respond(200, &acs(2, "tc", "<cwmp:TransferCompleteResponse/>"))
        .unwrap();
    assert_eq!(empty, "", "then the empty POST");
    run.respond(204, "");
    // Reported once: the next session has no TransferComplete.
    run.engine
        .request_session(&mut run.tree, "2 PERIODIC")
        .unwrap();
    let inform = run.start();
    assert!(
        !events(&inform)
            .iter()
            .any(|(c, _)| c == "7 TRANSFER COMPLETE")
    );
    assert_eq!(run.respond(200, &inform_response(2)).unwrap(), "");
}

/// Field case (issue 8): the session carrying TransferComplete breaks
/// before TransferCompleteResponse (a dropped connection, then an ACS
/// error, then a restart of the agent): each retry's Inform announces
/// "7 TRANSFER COMPLETE" and "M Download" again and sends the same
/// TransferComplete, until the ACS acknowledges it; then never again.
#[test]
fn a_transfer_complete_whose_session_fails_is_sent_again() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(
        200,
        &download_request("fw-7", "http://127.0.0.1:9/fw.bin", 0),
    );
    run.respond(204, "");
    run.drain_events();
    run.engine
        .poll_transfer(&mut run.tree, WALL)
        .expect("due at once");
    run.engine.transfer_complete(
        &mut run.tree,
        dm_cwmp::session::TransferResult {
            command_key: "fw-7".into(),
            fault_code: 0,
            fault_string: String::new(),
            start: WALL,
            complete: WALL + 3,
            upload: false,
            scheduled: false,
            autonomous: None,
        },
    );
    let announced = |inform: &str| {
        let reported = events(inform);
        reported.contains(&("7 TRANSFER COMPLETE".into(), String::new()))
            && reported.contains(&("M Download".into(), "fw-7".into()))
    };
    // 1: the connection drops right after TransferComplete went out.
    let inform = run.start();
    assert!(announced(&inform), "{:?}", events(&inform));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    assert!(complete.contains("<CommandKey>fw-7</CommandKey>"));
    run.engine
        .handle_transport_error(&mut run.tree, run.now, "connection refused");
    run.drain_events();
    // 2: the retry (after the retry wait) says it again; the ACS fails.
    let wait = run.engine.poll_timeout().unwrap() - run.now;
    run.advance(wait);
    let inform = run.start();
    assert!(announced(&inform), "{:?}", events(&inform));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&complete, "TransferComplete");
    assert!(complete.contains("<CommandKey>fw-7</CommandKey>"));
    assert_eq!(run.respond(500, "Internal Server Error"), None);
    run.drain_events();
    // 3: the agent restarts before the next retry: still owed.
    let mut run = run.restart();
    let inform = run.start();
    assert!(announced(&inform), "{:?}", events(&inform));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    assert!(complete.contains("<CommandKey>fw-7</CommandKey>"));
    assert!(complete.contains("<FaultCode>0</FaultCode>"));
    // Acknowledged at last: the session goes on and it is not sent again.
    assert_eq!(
        run.respond(200, &acs(2, "tc", "<cwmp:TransferCompleteResponse/>"))
            .as_deref(),
        Some("")
    );
    run.respond(204, "");
    run.drain_events();
    run.engine
        .request_session(&mut run.tree, "2 PERIODIC")
        .unwrap();
    let inform = run.start();
    assert!(!announced(&inform), "{:?}", events(&inform));
    assert_eq!(run.respond(200, &inform_response(2)).as_deref(), Some(""));
}

#[test]
fn a_download_interrupted_by_a_restart_is_reported_failed_after_it() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(
        200,
        &download_request("fw-2", "https://127.0.0.1:9/fw.bin", 0),
    )
    .unwrap();
    run.respond(204, "");
    run.engine.poll_transfer(&mut run.tree, WALL).expect("due");
    // Killed while downloading: a new engine on the saved state.
    let mut run = run.restart();
    let inform = run.start();
    let reported = events(&inform);
    assert!(reported.contains(&("7 TRANSFER COMPLETE".into(), String::new())));
    assert!(reported.contains(&("M Download".into(), "fw-2".into())));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    assert!(
        complete.contains("<FaultCode>9010</FaultCode>"),
        "{complete}"
    );
}

/// A/B: a firmware image installed into the inactive slot is judged after
/// the reboot, by Device.DeviceInfo.SoftwareVersion: a new version is
/// success, the old one (the bootloader fell back) is 9010. Either way in
/// the first session after the reboot, with 1 BOOT, exactly once.
#[test]
fn a_download_applied_across_a_reboot_is_judged_by_the_version_after_it() {
    use dm_core::catalog::device;
    for (after, code) in [("2.0", "0"), ("1.0", "9010")] {
        let mut run = Run::new();
        let version = Path::resource(device::ID, InstanceId(0), device::FIRMWARE_VERSION);
        run.tree
            .begin(Origin::Platform)
            .set(version, Value::String("1.0".into()))
            .commit()
            .unwrap();
        run.start();
        run.respond(200, &inform_response(2));
        run.respond(200, &download_request("ab", "http://127.0.0.1:9/fw.bin", 0))
            .unwrap();
        run.respond(204, "");
        run.engine.poll_transfer(&mut run.tree, WALL).expect("due");
        run.engine
            .transfer_awaiting_reboot(&mut run.tree, "ab", "1.0".into());
        // Rebooted into whatever the bootloader chose: the version is
        // known (provisioned) before the engine starts.
        run.tree
            .begin(Origin::Platform)
            .set(version, Value::String(after.into()))
            .commit()
            .unwrap();
        let mut run = run.restart();
        let inform = run.start();
        let reported = events(&inform);
        assert!(reported.contains(&("1 BOOT".into(), String::new())));
        assert!(reported.contains(&("7 TRANSFER COMPLETE".into(), String::new())));
        assert!(reported.contains(&("M Download".into(), "ab".into())));
        let complete = run.respond(200, &inform_response(2)).unwrap();
        assert!(
            complete.contains(&format!("<FaultCode>{code}</FaultCode>")),
            "{after}: {complete}"
        );
        run.respond(200, &acs(2, "tc", "<cwmp:TransferCompleteResponse/>"));
        run.respond(204, "");
        // Once.
        let mut run = run.restart();
        let inform = run.start();
        assert!(
            !events(&inform)
                .iter()
                .any(|(c, _)| c == "7 TRANSFER COMPLETE")
        );
    }
}

#[test]
fn a_queued_download_can_be_cancelled_until_it_starts() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(200, &download_request("a", "http://127.0.0.1:9/a", 600))
        .unwrap();
    run.respond(200, &download_request("b", "http://127.0.0.1:9/b", 0))
        .unwrap();
    let cancel = |key: &str| {
        acs(
            2,
            "c",
            &format!("<cwmp:CancelTransfer><CommandKey>{key}</CommandKey></cwmp:CancelTransfer>"),
        )
    };
    let cancelled = run.respond(200, &cancel("a")).unwrap();
    common::validate_message(&cancelled, "CancelTransferResponse");
    let unknown = run.respond(200, &cancel("zz")).unwrap();
    assert!(unknown.contains("<FaultCode>9003</FaultCode>"), "{unknown}");
    run.respond(204, "");
    run.engine
        .poll_transfer(&mut run.tree, WALL)
        .expect("b starts");
    run.engine
        .request_session(&mut run.tree, "2 PERIODIC")
        .unwrap();
    run.start();
    run.respond(200, &inform_response(2));
    let in_progress = run.respond(200, &cancel("b")).unwrap();
    assert!(
        in_progress.contains("<FaultCode>9021</FaultCode>"),
        "{in_progress}"
    );
    let queued = run
        .respond(200, &acs(2, "q", "<cwmp:GetQueuedTransfers/>"))
        .unwrap();
    assert!(
        queued.contains("<CommandKey>b</CommandKey><State>2</State>"),
        "{queued}"
    );
    assert!(!queued.contains("<CommandKey>a</CommandKey>"), "{queued}");
}

#[test]
fn uploads_of_the_log_and_the_configuration_are_queued_and_others_refused() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let upload = |file_type: &str| {
        acs(
            2,
            "up",
            &format!(
                "<cwmp:Upload><CommandKey>u</CommandKey><FileType>{file_type}</FileType>\
                 <URL>http://127.0.0.1:9/up</URL><Username></Username><Password></Password>\
                 <DelaySeconds>0</DelaySeconds></cwmp:Upload>"
            ),
        )
    };
    for file_type in ["2 Vendor Log File", "1 Vendor Configuration File"] {
        let answer = run.respond(200, &upload(file_type)).unwrap();
        common::validate_message(&answer, "UploadResponse");
    }
    // Per-instance files (TR-069 Amendment 5), which this device does not
    // keep.
    let refused = run.respond(200, &upload("4 Vendor Log File 1")).unwrap();
    assert!(refused.contains("<FaultCode>9003</FaultCode>"), "{refused}");
    let queued = run
        .respond(200, &acs(2, "q", "<cwmp:GetAllQueuedTransfers/>"))
        .unwrap();
    common::validate_message(&queued, "GetAllQueuedTransfersResponse");
    assert!(queued.contains("<IsDownload>0</IsDownload>"), "{queued}");
    run.respond(204, "");
    let transfer = run.engine.poll_transfer(&mut run.tree, WALL).unwrap();
    assert!(transfer.upload);
}

fn schedule_download(key: &str, windows: &[(u32, u32, &str)]) -> String {
    let list: String = windows
        .iter()
        .map(|(start, end, mode)| {
            format!(
                "<TimeWindowStruct><WindowStart>{start}</WindowStart><WindowEnd>{end}</WindowEnd>\
                 <WindowMode>{mode}</WindowMode><UserMessage></UserMessage><MaxRetries>0</MaxRetries></TimeWindowStruct>"
            )
        })
        .collect();
    acs(
        2,
        "sd",
        &format!(
            "<cwmp:ScheduleDownload><CommandKey>{key}</CommandKey><FileType>1 Firmware Upgrade Image</FileType>\
             <URL>http://127.0.0.1:9/fw</URL><Username></Username><Password></Password><FileSize>0</FileSize>\
             <TargetFileName></TargetFileName>\
             <TimeWindowList soap-enc:arrayType=\"cwmp:TimeWindowStruct[{}]\" xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\">{list}</TimeWindowList>\
             </cwmp:ScheduleDownload>",
            windows.len()
        ),
    )
}

#[test]
fn a_scheduled_download_runs_in_its_window_or_fails_with_9020() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let accepted = run
        .respond(
            200,
            &schedule_download("sd-1", &[(60, 120, "1 At Any Time")]),
        )
        .unwrap();
    common::validate_message(&accepted, "ScheduleDownloadResponse");
    let late = run
        .respond(
            200,
            &schedule_download("sd-2", &[(10, 20, "2 Immediately")]),
        )
        .unwrap();
    common::validate_message(&late, "ScheduleDownloadResponse");
    let confirm = run
        .respond(
            200,
            &schedule_download("sd-3", &[(10, 20, "4 Confirmation Needed")]),
        )
        .unwrap();
    assert!(confirm.contains("<FaultCode>9001</FaultCode>"), "{confirm}");
    let disordered = run
        .respond(
            200,
            &schedule_download("sd-4", &[(50, 40, "1 At Any Time")]),
        )
        .unwrap();
    assert!(
        disordered.contains("<FaultCode>9003</FaultCode>"),
        "{disordered}"
    );
    run.respond(204, "");
    // Before the windows: nothing.
    assert_eq!(run.engine.poll_transfer(&mut run.tree, WALL + 5), None);
    // sd-2's window (10..20) and sd-1's start: at 60 s sd-2 has expired
    // (9020) and sd-1 starts.
    let started = run.engine.poll_transfer(&mut run.tree, WALL + 60).unwrap();
    assert_eq!(started.command_key, "sd-1");
    assert!(started.scheduled);
    let inform = run.start();
    let reported = events(&inform);
    assert!(
        reported.contains(&("M ScheduleDownload".into(), "sd-2".into())),
        "{reported:?}"
    );
    let complete = run.respond(200, &inform_response(2)).unwrap();
    assert!(complete.contains("<CommandKey>sd-2</CommandKey>"));
    assert!(
        complete.contains("<FaultCode>9020</FaultCode>"),
        "{complete}"
    );
}

/// Field case (issue 8): GetParameterNames of the whole tree with
/// NextLevel=false on a large tree (here over 10,000 parameters, from
/// 1,500 Wi-Fi instances) is answered in full within the session, as one
/// valid envelope, every name once. (Not a timing test: the ACS's session
/// timeout is what it must beat; the benchmark `paths` measures speed.)
#[test]
fn get_parameter_names_answers_a_tree_of_over_10000_parameters() {
    let mut run = Run::new();
    run.tree.set_instance_limit(2000);
    let mut tx = run.tree.begin(Origin::Cli);
    for _ in 0..1500 {
        tx.create(wlan::ID, None);
    }
    tx.commit().unwrap();
    run.start();
    run.respond(200, &inform_response(2));
    let gpn = acs(
        2,
        "gpn",
        "<cwmp:GetParameterNames><ParameterPath></ParameterPath><NextLevel>false</NextLevel></cwmp:GetParameterNames>",
    );
    let answer = run.respond_reading(200, &gpn).unwrap();
    common::validate_message(&answer, "GetParameterNamesResponse");
    let names: Vec<&str> = answer
        .split("<Name>")
        .skip(1)
        .map(|n| n.split('<').next().unwrap())
        .collect();
    assert!(names.len() > 10_000, "{} names", names.len());
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "every name once");
    assert!(names.contains(&"Device.WiFi.SSID.1500.SSID"));
    assert!(answer.contains(&format!("ParameterInfoStruct[{}]", names.len())));
    // In reading order: a table before its instances, 9 before 10.
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(at("Device.WiFi.SSID.") < at("Device.WiFi.SSID.1."));
    assert!(at("Device.WiFi.SSID.9.SSID") < at("Device.WiFi.SSID.10.SSID"));
    // The session goes on.
    assert_eq!(run.respond(204, ""), None);
}

/// HoldRequests (TR-069 §3.7.1.4): an InformResponse with HoldRequests=1
/// keeps our TransferComplete back (the empty POST goes instead); it is
/// sent in the next session, whose InformResponse does not hold.
#[test]
fn hold_requests_keeps_transfer_complete_for_a_later_session() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(
        200,
        &download_request("held", "http://127.0.0.1:9/fw.bin", 0),
    )
    .unwrap();
    run.respond(204, "");
    run.engine.poll_transfer(&mut run.tree, WALL).expect("due");
    run.engine.transfer_complete(
        &mut run.tree,
        dm_cwmp::session::TransferResult {
            command_key: "held".into(),
            fault_code: 0,
            fault_string: String::new(),
            start: WALL,
            complete: WALL + 1,
            upload: false,
            scheduled: false,
            autonomous: None,
        },
    );
    let inform = run.start();
    assert!(events(&inform).contains(&("7 TRANSFER COMPLETE".into(), String::new())));
    let holding = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">1</cwmp:ID><cwmp:HoldRequests soap-env:mustUnderstand="1">1</cwmp:HoldRequests></soap-env:Header><soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse></soap-env:Body></soap-env:Envelope>"#;
    assert_eq!(
        run.respond(200, holding).as_deref(),
        Some(""),
        "held: the empty POST, not TransferComplete"
    );
    run.respond(204, "");
    // Not delivered: the next session carries it.
    run.engine
        .request_session(&mut run.tree, "2 PERIODIC")
        .unwrap();
    let inform = run.start();
    assert!(events(&inform).contains(&("M Download".into(), "held".into())));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    assert!(complete.contains("<cwmp:TransferComplete>"), "{complete}");
    assert!(complete.contains("<CommandKey>held</CommandKey>"));
}

/// A transfer the ACS did not ask for (an LwM2M server updated the
/// firmware): a session with "10 AUTONOMOUS TRANSFER COMPLETE" only, and
/// AutonomousTransferComplete (XSD-valid) after the InformResponse, once.
#[test]
fn an_autonomous_transfer_is_reported_with_autonomous_transfer_complete() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    run.engine.autonomous_transfer_complete(
        &mut run.tree,
        dm_cwmp::session::TransferResult {
            command_key: String::new(),
            fault_code: 0,
            fault_string: String::new(),
            start: WALL,
            complete: WALL + 30,
            upload: false,
            scheduled: false,
            autonomous: Some(dm_cwmp::session::AutonomousTransfer {
                announce_url: String::new(),
                transfer_url: "coap://192.0.2.7/fw/image.bin".into(),
                is_download: true,
                file_type: "1 Firmware Upgrade Image".into(),
                file_size: 5_242_880,
                target_file_name: String::new(),
            }),
        },
    );
    let inform = run.start();
    assert_eq!(
        events(&inform),
        [("10 AUTONOMOUS TRANSFER COMPLETE".into(), String::new())]
    );
    let atc = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&atc, "AutonomousTransferComplete");
    assert!(
        atc.contains("<TransferURL>coap://192.0.2.7/fw/image.bin</TransferURL>"),
        "{atc}"
    );
    assert!(atc.contains("<IsDownload>1</IsDownload>"));
    assert!(atc.contains("<FileSize>5242880</FileSize>"));
    assert!(atc.contains("<FaultCode>0</FaultCode>"));
    let empty = run
        .respond(
            200,
            &acs(2, "atc", "<cwmp:AutonomousTransferCompleteResponse/>"),
        )
        .unwrap();
    assert_eq!(empty, "");
    run.respond(204, "");
    let mut run = run.restart();
    let inform = run.start();
    assert!(!events(&inform).iter().any(|(c, _)| c.starts_with("10 ")));
}

/// ChangeDUState (TR-069 §A.4.1.10): accepted with an empty response (a
/// malformed UUID is 9022 at once), handed to the driver, reported with
/// DUStateChangeComplete (XSD-valid) in a new session with
/// "11 DU STATE CHANGE COMPLETE" and "M ChangeDUState", once; one cut by a
/// restart is reported failed (9001).
#[test]
fn change_du_state_is_queued_performed_and_reported() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let bad = run
        .respond(
            200,
            &acs(
                2,
                "du0",
                "<cwmp:ChangeDUState><Operations><UninstallOpStruct><UUID>not-a-uuid</UUID></UninstallOpStruct></Operations><CommandKey>bad</CommandKey></cwmp:ChangeDUState>",
            ),
        )
        .unwrap();
    assert!(bad.contains("<FaultCode>9022</FaultCode>"), "{bad}");
    let accepted = run
        .respond(
            200,
            &acs(
                2,
                "du1",
                "<cwmp:ChangeDUState><Operations><InstallOpStruct><URL>http://127.0.0.1:9/app.ipk</URL><UUID></UUID></InstallOpStruct></Operations><CommandKey>apps-1</CommandKey></cwmp:ChangeDUState>",
            ),
        )
        .unwrap();
    common::validate_message(&accepted, "ChangeDUStateResponse");
    run.respond(204, "");
    let change = run
        .engine
        .poll_du_change(&mut run.tree)
        .expect("handed over");
    assert_eq!(change.command_key, "apps-1");
    assert_eq!(
        run.engine.poll_du_change(&mut run.tree),
        None,
        "one at a time"
    );
    run.engine.du_change_complete(
        &mut run.tree,
        "apps-1",
        vec![dm_cwmp::soap::DuResult {
            uuid: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            deployment_unit_ref: "Device.SoftwareModules.DeploymentUnit.1.".into(),
            version: "2.1".into(),
            current_state: "Installed".into(),
            resolved: true,
            start: WALL,
            complete: WALL + 3,
            fault_code: 0,
            fault_string: String::new(),
        }],
    );
    let inform = run.start();
    let reported = events(&inform);
    assert!(reported.contains(&("11 DU STATE CHANGE COMPLETE".into(), String::new())));
    assert!(reported.contains(&("M ChangeDUState".into(), "apps-1".into())));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&complete, "DUStateChangeComplete");
    assert!(
        complete.contains("<CurrentState>Installed</CurrentState>"),
        "{complete}"
    );
    assert!(complete.contains("<CommandKey>apps-1</CommandKey>"));
    let empty = run
        .respond(200, &acs(2, "ok", "<cwmp:DUStateChangeCompleteResponse/>"))
        .unwrap();
    assert_eq!(empty, "");
    run.respond(204, "");

    // Another, cut short by a restart.
    run.engine
        .request_session(&mut run.tree, "6 CONNECTION REQUEST")
        .unwrap();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(
        200,
        &acs(
            2,
            "du2",
            "<cwmp:ChangeDUState><Operations><UninstallOpStruct><UUID>0f8fad5b-d9cb-469f-a165-70867728950e</UUID></UninstallOpStruct></Operations><CommandKey>apps-2</CommandKey></cwmp:ChangeDUState>",
        ),
    )
    .unwrap();
    run.respond(204, "");
    run.engine
        .poll_du_change(&mut run.tree)
        .expect("handed over");
    let mut run = run.restart();
    let inform = run.start();
    assert!(events(&inform).contains(&("M ChangeDUState".into(), "apps-2".into())));
    assert!(!events(&inform).contains(&("M ChangeDUState".into(), "apps-1".into())));
    let complete = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&complete, "DUStateChangeComplete");
    assert!(
        complete.contains("<FaultCode>9001</FaultCode>"),
        "{complete}"
    );
    assert!(complete.contains("<CurrentState>Failed</CurrentState>"));
    // An ACS that refuses the report does not block every later session.
    let fault = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">9</cwmp:ID></soap-env:Header><soap-env:Body><soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8003</FaultCode><FaultString>Invalid arguments</FaultString></cwmp:Fault></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>"#;
    assert_eq!(run.respond(500, fault).as_deref(), Some(""));
    run.respond(204, "");
    let mut run = run.restart();
    let inform = run.start();
    assert!(!events(&inform).iter().any(|(c, _)| c.starts_with("11 ")));
}

/// An ACS that does not take AutonomousTransferComplete answers it with a
/// SOAP Fault: that report is dropped and the session goes on, instead of
/// failing every session after (review finding).
#[test]
fn a_refused_autonomous_transfer_complete_is_dropped_not_retried_forever() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    run.engine.autonomous_transfer_complete(
        &mut run.tree,
        dm_cwmp::session::TransferResult {
            command_key: String::new(),
            fault_code: 0,
            fault_string: String::new(),
            start: WALL,
            complete: WALL,
            upload: false,
            scheduled: false,
            autonomous: Some(dm_cwmp::session::AutonomousTransfer {
                is_download: true,
                file_type: "1 Firmware Upgrade Image".into(),
                ..Default::default()
            }),
        },
    );
    run.start();
    let atc = run.respond(200, &inform_response(2)).unwrap();
    assert!(atc.contains("<cwmp:AutonomousTransferComplete>"));
    let fault = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">2</cwmp:ID></soap-env:Header><soap-env:Body><soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8000</FaultCode><FaultString>Method not supported</FaultString></cwmp:Fault></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>"#;
    assert_eq!(
        run.respond(500, fault).as_deref(),
        Some(""),
        "the session goes on"
    );
    run.respond(204, "");
    let ended = run.drain_events();
    assert!(
        ended.contains(&EngineEvent::SessionEnded {
            ok: true,
            error: None
        }),
        "{ended:?}"
    );
    let mut run = run.restart();
    let inform = run.start();
    assert!(!events(&inform).iter().any(|(c, _)| c.starts_with("10 ")));
}

/// CPE-initiated requests: GetRPCMethods (icwmp's `inform GetRPCMethods`)
/// and RequestDownload with "9 REQUEST DOWNLOAD", each XSD-valid, sent
/// after the InformResponse, answered, then the empty POST; a refused one
/// (a Fault) is not asked again.
#[test]
fn the_cpe_asks_the_acs_for_its_methods_and_for_a_download() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    run.engine
        .request_session(&mut run.tree, "GetRPCMethods")
        .unwrap();
    run.engine
        .request_download(
            &mut run.tree,
            "1 Firmware Upgrade Image",
            vec![("Version".into(), "2.0".into())],
        )
        .unwrap();
    let inform = run.start();
    let reported = events(&inform);
    assert!(
        reported.contains(&("X 00D09E GetRPCMethods".into(), String::new())),
        "{reported:?}"
    );
    assert!(reported.contains(&("9 REQUEST DOWNLOAD".into(), String::new())));
    let ask = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&ask, "GetRPCMethods");
    let methods = acs(
        2,
        "m",
        "<cwmp:GetRPCMethodsResponse><MethodList soap-enc:arrayType=\"xsd:string[2]\" xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\"><string>Inform</string><string>TransferComplete</string></MethodList></cwmp:GetRPCMethodsResponse>",
    );
    let request = run.respond(200, &methods).unwrap();
    common::validate_message(&request, "RequestDownload");
    assert!(
        request.contains("<FileType>1 Firmware Upgrade Image</FileType>"),
        "{request}"
    );
    assert!(request.contains("<Name>Version</Name><Value>2.0</Value>"));
    let fault = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">3</cwmp:ID></soap-env:Header><soap-env:Body><soap-env:Fault><faultcode>Server</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8002</FaultCode><FaultString>Internal error</FaultString></cwmp:Fault></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>"#;
    assert_eq!(
        run.respond(500, fault).as_deref(),
        Some(""),
        "then the empty POST"
    );
    run.respond(204, "");
    let seen = run.drain_events();
    assert!(
        seen.contains(&EngineEvent::AcsMethods {
            methods: vec!["Inform".into(), "TransferComplete".into()]
        }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&EngineEvent::SessionEnded {
            ok: true,
            error: None
        }),
        "{seen:?}"
    );
    // Neither is asked again.
    run.engine
        .request_session(&mut run.tree, "2 PERIODIC")
        .unwrap();
    run.start();
    assert_eq!(run.respond(200, &inform_response(2)).as_deref(), Some(""));
}

/// Kicked (TR-069 §A.4.2.3): "5 KICKED" in the Inform, an XSD-valid
/// Kicked after the InformResponse, the ACS's NextURL handed back; it
/// survives a failed session and a restart, and one the ACS refuses is
/// reported as such and not sent again. Over-long arguments are refused
/// at once.
#[test]
fn a_kick_is_sent_with_5_kicked_and_its_next_url_comes_back() {
    let kick = dm_cwmp::soap::Kick {
        command: "setup".into(),
        referer: "http://acs.example/portal".into(),
        arg: "plan=gold&x=<1>".into(),
        next: "http://acs.example/done".into(),
    };
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    run.respond(204, "");
    run.drain_events();
    let long = dm_cwmp::soap::Kick {
        command: "c".repeat(33),
        ..kick.clone()
    };
    assert!(run.engine.kicked(&mut run.tree, long).is_err());
    run.engine.kicked(&mut run.tree, kick.clone()).unwrap();
    // The first try fails at the HTTP level: the kick waits, durable.
    run.start();
    run.respond(503, "");
    let mut run = run.restart();
    let inform = run.start();
    assert!(
        events(&inform).contains(&("5 KICKED".into(), String::new())),
        "{inform}"
    );
    let kicked = run.respond(200, &inform_response(2)).unwrap();
    common::validate_message(&kicked, "Kicked");
    assert!(
        kicked.contains(
            "<Command>setup</Command><Referer>http://acs.example/portal</Referer>\
             <Arg>plan=gold&amp;x=&lt;1&gt;</Arg><Next>http://acs.example/done</Next>"
        ),
        "{kicked}"
    );
    let answer = acs(
        2,
        "k",
        "<cwmp:KickedResponse><NextURL>http://acs.example/next?step=2</NextURL></cwmp:KickedResponse>",
    );
    assert_eq!(run.respond(200, &answer).as_deref(), Some(""));
    run.respond(204, "");
    let seen = run.drain_events();
    assert!(
        seen.contains(&EngineEvent::Kicked {
            kick: kick.clone(),
            next_url: Some("http://acs.example/next?step=2".into())
        }),
        "{seen:?}"
    );
    // Refused: said so, and not sent again.
    run.engine.kicked(&mut run.tree, kick.clone()).unwrap();
    run.start();
    run.respond(200, &inform_response(2));
    let fault = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">3</cwmp:ID></soap-env:Header><soap-env:Body><soap-env:Fault><faultcode>Server</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8000</FaultCode><FaultString>Method not supported</FaultString></cwmp:Fault></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>"#;
    assert_eq!(run.respond(500, fault).as_deref(), Some(""));
    run.respond(204, "");
    let seen = run.drain_events();
    assert!(
        seen.contains(&EngineEvent::Kicked {
            kick,
            next_url: None
        }),
        "{seen:?}"
    );
    run.engine
        .request_session(&mut run.tree, "2 PERIODIC")
        .unwrap();
    let inform = run.start();
    assert!(!events(&inform).iter().any(|(c, _)| c == "5 KICKED"));
    assert_eq!(run.respond(200, &inform_response(2)).as_deref(), Some(""));
}

/// A session that fails after its InformResponse has delivered its
/// events: the retry has nothing to report, and no Inform goes out with
/// an empty Event list (GenieACS crashes on one). The next event starts
/// a session as usual.
#[test]
fn no_inform_without_events_after_a_session_failed_past_its_inform() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    // The ACS breaks the session after the Inform was acknowledged.
    assert_eq!(run.respond(500, ""), None);
    assert!(run.drain_events().contains(&EngineEvent::SessionEnded {
        ok: false,
        error: Some("the ACS answered our POST with HTTP 500".into())
    }));
    let wait = run.engine.poll_timeout().unwrap() - run.now;
    run.advance(wait);
    run.engine.handle_timeout(&mut run.tree, run.now, WALL);
    run.engine.poll_start(&mut run.tree, WALL);
    assert_eq!(run.engine.poll_transmit(), None, "no empty Inform");
    assert!(!run.engine.in_session());
    run.engine.handle_connection_request(&mut run.tree);
    let inform = run.start();
    assert_eq!(
        events(&inform),
        [("6 CONNECTION REQUEST".into(), String::new())]
    );
    // The skipped retry ended the retrying: this is not a retry.
    assert_eq!(inform_field(&inform, "RetryCount"), "0");
}

/// A request of ours queued while a session runs goes in the next
/// session, the one its event announces, not in this one.
#[test]
fn a_kick_queued_during_a_session_waits_for_its_own_session() {
    let mut run = Run::new();
    run.start();
    run.engine
        .kicked(
            &mut run.tree,
            dm_cwmp::soap::Kick {
                command: "late".into(),
                ..Default::default()
            },
        )
        .unwrap();
    // This session's Inform had no 5 KICKED: the empty POST, no Kicked.
    assert_eq!(run.respond(200, &inform_response(2)).as_deref(), Some(""));
    assert_eq!(run.respond(204, "").as_deref(), None);
    assert!(!run.engine.in_session());
    let inform = run.start();
    assert!(
        events(&inform).contains(&("5 KICKED".into(), String::new())),
        "{inform}"
    );
    let kicked = run.respond(200, &inform_response(2)).unwrap();
    assert!(kicked.contains("<Command>late</Command>"), "{kicked}");
}

/// Hostile input: invalid UTF-8 in a SetParameterValues used to become
/// U+FFFD and be stored. A message that is not UTF-8 is not guessed at:
/// it is answered with 9003 and nothing changes; the session goes on.
#[test]
fn a_message_that_is_not_utf8_is_refused_not_guessed() {
    let mut run = Run::new();
    run.start();
    run.respond(200, &inform_response(2));
    let mut spv = acs(
        2,
        "spv-1",
        "<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.DeviceInfo.ProvisioningCode</Name><Value>ab@@cd</Value></ParameterValueStruct></ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues>",
    )
    .into_bytes();
    let at = spv.windows(2).position(|w| w == b"@@").unwrap();
    spv[at] = 0xff;
    spv[at + 1] = 0xfe;
    run.engine
        .handle_response(&mut run.tree, run.now, WALL, 200, &spv);
    let answer = run.engine.poll_transmit().unwrap().to_text();
    common::validate_message(&answer, "Fault");
    assert!(answer.contains("<FaultCode>9003</FaultCode>"), "{answer}");
    assert!(answer.contains("not UTF-8"), "{answer}");
    let code = dm_cwmp::rpc::get_parameter_values(
        &run.tree,
        &["Device.DeviceInfo.ProvisioningCode".into()],
    )
    .unwrap();
    assert_eq!(code[0].value, "");
    // The session goes on: the ACS's next request is served.
    let gpv = acs(
        2,
        "gpv-2",
        "<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.SerialNumber</string></ParameterNames></cwmp:GetParameterValues>",
    );
    assert!(run.respond(200, &gpv).unwrap().contains(">SN1</Value>"));
}

/// Each answered ACS request is reported once, with its RPC, how many
/// parameters it named and the answer listed, or its fault: what the
/// agent logs at info.
#[test]
fn each_answered_request_is_reported_for_the_log() {
    let mut run = Run::new();
    run.start();
    assert_eq!(run.respond(200, &inform_response(2)).as_deref(), Some(""));
    run.drain_events();
    let gpv = acs(
        2,
        "a",
        "<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.</string></ParameterNames></cwmp:GetParameterValues>",
    );
    run.respond_reading(200, &gpv).unwrap();
    let served: Vec<_> = run
        .drain_events()
        .into_iter()
        .filter(|e| matches!(e, EngineEvent::Served { .. }))
        .collect();
    let [
        EngineEvent::Served {
            rpc: "GetParameterValues",
            asked: 1,
            answered,
            fault: None,
        },
    ] = served.as_slice()
    else {
        panic!("{served:?}");
    };
    assert!(*answered > 5, "{answered}");
    let missing = acs(
        2,
        "b",
        "<cwmp:GetParameterValues><ParameterNames><string>Device.Nothing.Here</string><string>Device.DeviceInfo.SerialNumber</string></ParameterNames></cwmp:GetParameterValues>",
    );
    run.respond(200, &missing).unwrap();
    assert_eq!(
        run.drain_events(),
        [EngineEvent::Served {
            rpc: "GetParameterValues",
            asked: 2,
            answered: 0,
            fault: Some(9005),
        }]
    );
    // The session's end is not a request served.
    assert_eq!(run.respond(204, ""), None);
    assert!(
        !run.drain_events()
            .iter()
            .any(|e| matches!(e, EngineEvent::Served { .. }))
    );
}

/// An ACS that refuses the Inform with a SOAP Fault: the reason names it.
#[test]
fn a_refused_inform_says_which_fault() {
    let mut run = Run::new();
    run.start();
    let fault = acs(
        2,
        "1",
        "<soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8003</FaultCode><FaultString>Invalid arguments</FaultString></cwmp:Fault></detail></soap-env:Fault>",
    );
    assert_eq!(run.respond(500, &fault), None);
    assert!(run.drain_events().contains(&EngineEvent::SessionEnded {
        ok: false,
        error: Some(
            "the ACS answered the Inform with HTTP 500: SOAP Fault 8003 Invalid arguments".into()
        )
    }));
}

/// A GetParameterValues or GetParameterNames that lists a table the host
/// gives on demand (the processes) is answered once the table is read,
/// off the lock: the answer lists this very process, and names no
/// process that is gone.
#[test]
fn tables_read_on_demand_are_read_before_the_answer() {
    let mut run = Run::new();
    run.start();
    assert_eq!(run.respond(200, &inform_response(2)).as_deref(), Some(""));
    // Asked, the request waits for the table; the reads made, answered.
    fn ask(run: &mut Run, body: &str) -> String {
        assert_eq!(
            run.respond(200, &acs(2, "p", body)),
            None,
            "waits for the host"
        );
        let reads = run
            .engine
            .poll_host_reads()
            .expect("the table is read first");
        assert!(
            reads.describe().contains("the processes"),
            "{}",
            reads.describe()
        );
        let _ = run
            .engine
            .host_reads_done(&mut run.tree, reads.run_within(Duration::from_secs(5)));
        run.engine.poll_transmit().expect("then answered").to_text()
    }
    let values = ask(
        &mut run,
        "<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.ProcessStatus.</string></ParameterNames></cwmp:GetParameterValues>",
    );
    let me = format!(
        ".PID</Name><Value xsi:type=\"xsd:unsignedInt\">{}</Value>",
        std::process::id()
    );
    assert!(values.contains(&me), "this process is not listed");
    // A name inside one instance reads what the listing found, with no
    // new read: a process gone since would make it vanish under the ACS.
    let pid = values
        .split(".PID</Name>")
        .next()
        .and_then(|head| head.rsplit("<Name>").next())
        .unwrap()
        .to_owned();
    let one = run
        .respond(
            200,
            &acs(
                2,
                "q",
                &format!(
                    "<cwmp:GetParameterValues><ParameterNames><string>{pid}.PID</string></ParameterNames></cwmp:GetParameterValues>"
                ),
            ),
        )
        .unwrap_or_else(|| {
            panic!(
                "{pid}: not answered at once: {:?}",
                run.engine.poll_host_reads().map(|r| r.describe())
            )
        });
    assert!(one.contains(&format!("<Name>{pid}.PID</Name>")), "{one}");
    assert!(run.engine.poll_host_reads().is_none());
    assert!(values.contains("ProcessStatus.ProcessNumberOfEntries"));
    let names = ask(
        &mut run,
        "<cwmp:GetParameterNames><ParameterPath>Device.DeviceInfo.ProcessStatus.Process.</ParameterPath><NextLevel>1</NextLevel></cwmp:GetParameterNames>",
    );
    let listed = names.matches("<ParameterInfoStruct>").count();
    assert!(listed > 1, "{names}");
    // Counted from what was just read: the count GPV gives matches.
    let count = ask(
        &mut run,
        "<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.ProcessStatus.ProcessNumberOfEntries</string></ParameterNames></cwmp:GetParameterValues>",
    );
    let counted: usize = count
        .split("xsd:unsignedInt\">")
        .nth(1)
        .and_then(|v| v.split('<').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        counted > 1 && counted.abs_diff(listed) < 50,
        "{counted} vs {listed}"
    );
}
