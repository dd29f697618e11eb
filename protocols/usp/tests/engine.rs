//! The USP engine on a full tree (objects on the in-memory platform):
//! records in, answers out, as a controller sees them.

use dm_core::{Origin, Tree};
use dm_usp::proto::usp::{self, header::MsgType, request::ReqType, response::RespType};
use dm_usp::proto::usp_record::{self, record::RecordType};
use dm_usp::{Agent, Incoming, Step};
use prost::Message as _;

const AGENT: &str = "os::00D09E-SN0001";
const CONTROLLER: &str = "self::controller";

/// The tests' provisioned tree on the demo platform, with the controller
/// (row 1) given Full Access.
fn tree() -> Tree {
    let mut tree = dm_tests::tree(&dm_tests::platform().0);
    dm_objects::local_agent::provision(
        &mut tree,
        AGENT,
        &[(CONTROLLER.to_owned(), Default::default())],
        &dm_usp::permissions::BUILT_IN_ROLES,
    )
    .unwrap();
    tree
}

fn record(to: &str, payload: Vec<u8>) -> Vec<u8> {
    usp_record::Record {
        version: "1.3".into(),
        to_id: to.into(),
        from_id: CONTROLLER.into(),
        record_type: Some(RecordType::NoSessionContext(
            usp_record::NoSessionContextRecord { payload },
        )),
        ..Default::default()
    }
    .encode_to_vec()
}

fn request(body: ReqType) -> Vec<u8> {
    let msg = usp::Msg {
        header: Some(usp::Header {
            msg_id: "m1".into(),
            msg_type: MsgType::Get as i32,
        }),
        body: Some(usp::Body {
            msg_body: Some(usp::body::MsgBody::Request(usp::Request {
                req_type: Some(body),
            })),
        }),
    };
    record(AGENT, msg.encode_to_vec())
}

/// The message in a record the agent sent to the controller.
fn opened(bytes: &[u8]) -> usp::Msg {
    let record = usp_record::Record::decode(bytes).unwrap();
    assert_eq!(
        (record.to_id.as_str(), record.from_id.as_str()),
        (CONTROLLER, AGENT)
    );
    let Some(RecordType::NoSessionContext(r)) = record.record_type else {
        panic!("{record:?}")
    };
    usp::Msg::decode(r.payload.as_slice()).unwrap()
}

/// Sends `body` and runs the answer to its end (host writes made here,
/// as the driver makes them off the lock).
fn ask(agent: &Agent, tree: &mut Tree, body: ReqType) -> usp::Msg {
    let Incoming::Request(request) = agent.receive(&request(body)) else {
        panic!("not a request")
    };
    assert_eq!(request.from, CONTROLLER);
    let mut step = request.start(tree, Origin::Controller(1));
    loop {
        match step {
            Step::Done(msg) => {
                let bytes = agent.record(CONTROLLER, &msg);
                return opened(&bytes);
            }
            Step::Command(command) => {
                let msg = command.response.expect("send_resp asked for");
                return opened(&agent.record(CONTROLLER, &msg));
            }
            Step::Host(mut pending) => {
                let work = pending.take_work();
                let outcome = work.run_within(dm_core::tree::HOST_WRITE_LIMIT);
                step = pending.resume(tree, outcome).0;
            }
        }
    }
}

fn resp(msg: usp::Msg) -> RespType {
    match msg.body.and_then(|b| b.msg_body) {
        Some(usp::body::MsgBody::Response(r)) => r.resp_type.unwrap(),
        other => panic!("not a response: {other:?}"),
    }
}

fn error(msg: usp::Msg) -> usp::Error {
    match msg.body.and_then(|b| b.msg_body) {
        Some(usp::body::MsgBody::Error(e)) => e,
        other => panic!("not an error: {other:?}"),
    }
}

fn get(agent: &Agent, tree: &mut Tree, paths: &[&str], max_depth: u32) -> usp::GetResp {
    let body = ReqType::Get(usp::Get {
        param_paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        max_depth,
    });
    match resp(ask(agent, tree, body)) {
        RespType::GetResp(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A parameter's name, value and whether it is required.
type Setting<'a> = (&'a str, &'a str, bool);

fn set(paths: &[(&str, &[Setting])], allow_partial: bool) -> ReqType {
    ReqType::Set(usp::Set {
        allow_partial,
        update_objs: paths
            .iter()
            .map(|(path, settings)| usp::set::UpdateObject {
                obj_path: (*path).into(),
                param_settings: settings
                    .iter()
                    .map(|(param, value, required)| usp::set::UpdateParamSetting {
                        param: (*param).into(),
                        value: (*value).into(),
                        required: *required,
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn value(agent: &Agent, tree: &mut Tree, path: &str) -> String {
    let r = get(agent, tree, &[path], 0);
    let result = &r.req_path_results[0];
    assert_eq!(result.err_code, 0, "{result:?}");
    let leaf = path.rsplit('.').next().unwrap();
    result.resolved_path_results[0].result_params[leaf].clone()
}

#[test]
fn get_answers_parameters_objects_wildcards_and_searches() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let r = get(
        &agent,
        &mut tree,
        &["Device.DeviceInfo.SerialNumber", "Device.DeviceInfo."],
        1,
    );
    let serial = &r.req_path_results[0];
    assert_eq!(serial.err_code, 0);
    assert_eq!(serial.resolved_path_results.len(), 1);
    assert_eq!(
        serial.resolved_path_results[0].resolved_path,
        "Device.DeviceInfo."
    );
    assert_eq!(
        serial.resolved_path_results[0].result_params["SerialNumber"],
        "SN0001"
    );
    // max_depth 1: the object's own parameters, no sub-object.
    let info = &r.req_path_results[1];
    assert_eq!(info.resolved_path_results.len(), 1, "{info:?}");
    assert!(
        info.resolved_path_results[0]
            .result_params
            .contains_key("Manufacturer")
    );
    // The agent names both its MTPs.
    assert_eq!(
        value(&agent, &mut tree, "Device.LocalAgent.SupportedProtocols"),
        "MQTT,WebSocket"
    );
    // max_depth 0: everything below, one result per object.
    let all = get(&agent, &mut tree, &["Device.DeviceInfo."], 0);
    assert!(all.req_path_results[0].resolved_path_results.len() > 1);

    // `*` and a search pick the same SSID.
    let ssid = value(&agent, &mut tree, "Device.WiFi.SSID.1.SSID");
    let every = get(&agent, &mut tree, &["Device.WiFi.SSID.*.SSID"], 0);
    let found: Vec<_> = every.req_path_results[0]
        .resolved_path_results
        .iter()
        .map(|r| r.result_params["SSID"].clone())
        .collect();
    assert!(found.contains(&ssid), "{found:?}");
    let search = format!("Device.WiFi.SSID.[SSID==\"{ssid}\"].");
    let hit = get(&agent, &mut tree, &[&search], 0);
    assert_eq!(hit.req_path_results[0].err_code, 0, "{hit:?}");
    assert_eq!(
        hit.req_path_results[0].resolved_path_results[0].resolved_path,
        "Device.WiFi.SSID.1."
    );
    let miss = get(
        &agent,
        &mut tree,
        &["Device.WiFi.SSID.[SSID==\"nothing-here\"]."],
        0,
    );
    assert_eq!(miss.req_path_results[0].err_code, 0);
    assert!(miss.req_path_results[0].resolved_path_results.is_empty());

    // A path the model does not have, a broken one, an instance that is
    // not there (nothing, no error).
    let bad = get(
        &agent,
        &mut tree,
        &[
            "Device.NoSuchThing.",
            "Device.WiFi.SSID.[SSID==].",
            "Device.WiFi.SSID.77.",
            "Device.WiFi.SSID.[NoKey==1].",
        ],
        0,
    );
    let codes: Vec<u32> = bad.req_path_results.iter().map(|r| r.err_code).collect();
    assert_eq!(codes, [7026, 7008, 0, 7026]);
    assert!(bad.req_path_results[2].resolved_path_results.is_empty());
}

#[test]
fn get_instances_lists_a_tables_rows() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let body = ReqType::GetInstances(usp::GetInstances {
        obj_paths: vec!["Device.WiFi.SSID.".into(), "Device.DeviceInfo.X".into()],
        first_level_only: true,
    });
    let RespType::GetInstancesResp(r) = resp(ask(&agent, &mut tree, body)) else {
        panic!()
    };
    let paths: Vec<_> = r.req_path_results[0]
        .curr_insts
        .iter()
        .map(|i| i.instantiated_obj_path.as_str())
        .collect();
    assert_eq!(paths, ["Device.WiFi.SSID.1."]);
    assert_ne!(r.req_path_results[1].err_code, 0);
    // With its unique keys (TR-181: Name, and BSSID), as read.
    let keys = &r.req_path_results[0].curr_insts[0].unique_keys;
    assert_eq!(
        keys["Name"],
        value(&agent, &mut tree, "Device.WiFi.SSID.1.Name")
    );
    assert_eq!(
        keys["BSSID"],
        value(&agent, &mut tree, "Device.WiFi.SSID.1.BSSID")
    );
}

#[test]
fn set_is_all_or_nothing_unless_partial_and_optional_settings_may_fail() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let before = value(&agent, &mut tree, "Device.WiFi.SSID.1.SSID");
    // One bad value: nothing is written, the Error names it.
    let e = error(ask(
        &agent,
        &mut tree,
        set(
            &[(
                "Device.WiFi.SSID.1.",
                &[("SSID", "guest", true), ("Enable", "maybe", true)],
            )],
            false,
        ),
    ));
    assert_eq!(e.err_code, 7004, "{e:?}");
    assert_eq!(e.param_errs.len(), 1, "{e:?}");
    assert_eq!(e.param_errs[0].param_path, "Device.WiFi.SSID.1.Enable");
    assert_eq!(e.param_errs[0].err_code, 7012);
    assert_eq!(value(&agent, &mut tree, "Device.WiFi.SSID.1.SSID"), before);

    // The bad one optional: the good one is written, the bad one listed.
    let RespType::SetResp(r) = resp(ask(
        &agent,
        &mut tree,
        set(
            &[(
                "Device.WiFi.SSID.1.",
                &[("SSID", "guest", true), ("Enable", "maybe", false)],
            )],
            false,
        ),
    )) else {
        panic!()
    };
    use usp::set_resp::updated_object_result::operation_status::OperStatus;
    let Some(OperStatus::OperSuccess(ok)) = r.updated_obj_results[0]
        .oper_status
        .clone()
        .unwrap()
        .oper_status
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        ok.updated_inst_results[0].affected_path,
        "Device.WiFi.SSID.1."
    );
    assert_eq!(ok.updated_inst_results[0].updated_params["SSID"], "guest");
    assert_eq!(ok.updated_inst_results[0].param_errs[0].param, "Enable");
    assert_eq!(value(&agent, &mut tree, "Device.WiFi.SSID.1.SSID"), "guest");

    // allow_partial: the good object is written, the bad one fails alone.
    let RespType::SetResp(r) = resp(ask(
        &agent,
        &mut tree,
        set(
            &[
                ("Device.WiFi.SSID.*.", &[("SSID", "office", true)]),
                ("Device.DeviceInfo.", &[("Manufacturer", "x", true)]),
            ],
            true,
        ),
    )) else {
        panic!()
    };
    let statuses: Vec<bool> = r
        .updated_obj_results
        .iter()
        .map(|u| {
            matches!(
                u.oper_status.clone().unwrap().oper_status,
                Some(OperStatus::OperSuccess(_))
            )
        })
        .collect();
    assert_eq!(statuses, [true, false]);
    assert_eq!(
        value(&agent, &mut tree, "Device.WiFi.SSID.1.SSID"),
        "office"
    );
}

#[test]
fn add_makes_an_instance_with_its_values_and_delete_removes_it() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let add = |ssid: &str, required: bool| {
        ReqType::Add(usp::Add {
            allow_partial: false,
            create_objs: vec![usp::add::CreateObject {
                obj_path: "Device.WiFi.SSID.".into(),
                param_settings: vec![usp::add::CreateParamSetting {
                    param: "SSID".into(),
                    value: ssid.into(),
                    required,
                }],
            }],
        })
    };
    let RespType::AddResp(r) = resp(ask(&agent, &mut tree, add("lab", true))) else {
        panic!()
    };
    use usp::add_resp::created_object_result::operation_status::OperStatus;
    let Some(OperStatus::OperSuccess(ok)) = r.created_obj_results[0]
        .oper_status
        .clone()
        .unwrap()
        .oper_status
    else {
        panic!("{r:?}")
    };
    let made = ok.instantiated_path.clone();
    assert_eq!(value(&agent, &mut tree, &format!("{made}SSID")), "lab");
    assert!(ok.unique_keys.contains_key("Name"), "{ok:?}");

    // A value the parameter cannot take: no instance is made.
    let e = error(ask(&agent, &mut tree, add(&"x".repeat(40), true)));
    assert_eq!(e.err_code, 7012, "{e:?}");
    let body = ReqType::GetInstances(usp::GetInstances {
        obj_paths: vec!["Device.WiFi.SSID.".into()],
        first_level_only: true,
    });
    let RespType::GetInstancesResp(listed) = resp(ask(&agent, &mut tree, body)) else {
        panic!()
    };
    assert_eq!(listed.req_path_results[0].curr_insts.len(), 2, "{listed:?}");

    // Delete it, and again: the second finds nothing to delete.
    for expected in [vec![made.clone()], vec![]] {
        let RespType::DeleteResp(r) = resp(ask(
            &agent,
            &mut tree,
            ReqType::Delete(usp::Delete {
                allow_partial: false,
                obj_paths: vec![made.clone()],
            }),
        )) else {
            panic!()
        };
        use usp::delete_resp::deleted_object_result::operation_status::OperStatus;
        let Some(OperStatus::OperSuccess(ok)) = r.deleted_obj_results[0]
            .oper_status
            .clone()
            .unwrap()
            .oper_status
        else {
            panic!("{r:?}")
        };
        assert_eq!(ok.affected_paths, expected);
    }
}

#[test]
fn bad_records_and_requests_get_errors_not_panics() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    assert!(matches!(
        agent.receive(b"\xff\xff not protobuf"),
        Incoming::Nothing(_)
    ));
    let other = record("os::someone-else", Vec::new());
    assert!(matches!(agent.receive(&other), Incoming::Nothing(_)));
    // A payload that is not a message: an Error back.
    match agent.receive(&record(AGENT, b"\x0a\xff".to_vec())) {
        Incoming::Reply { to, record, .. } => {
            assert_eq!(to, CONTROLLER);
            assert_eq!(error(opened(&record)).err_code, 7000);
        }
        other => panic!("{other:?}"),
    }
    // Session context: a disconnect record saying why.
    let session = usp_record::Record {
        version: "1.3".into(),
        to_id: AGENT.into(),
        from_id: CONTROLLER.into(),
        record_type: Some(RecordType::SessionContext(Default::default())),
        ..Default::default()
    }
    .encode_to_vec();
    match agent.receive(&session) {
        Incoming::Reply { record, .. } => {
            let record = usp_record::Record::decode(record.as_slice()).unwrap();
            assert!(matches!(
                record.record_type,
                Some(RecordType::Disconnect(_))
            ));
        }
        other => panic!("{other:?}"),
    }
    // A request the agent does not answer yet, and one too big.
    let e = error(ask(
        &agent,
        &mut tree,
        ReqType::Register(usp::Register::default()),
    ));
    assert_eq!(e.err_code, 7001);
    let many: Vec<String> = (0..100_000)
        .map(|n| format!("Device.WiFi.SSID.{n}.SSID"))
        .collect();
    let e = error(ask(
        &agent,
        &mut tree,
        ReqType::Get(usp::Get {
            param_paths: many,
            max_depth: 0,
        }),
    ));
    assert_eq!(e.err_code, 7005);
    // GetSupportedProtocol.
    let RespType::GetSupportedProtocolResp(p) = resp(ask(
        &agent,
        &mut tree,
        ReqType::GetSupportedProtocol(usp::GetSupportedProtocol {
            controller_supported_protocol_versions: "1.3".into(),
        }),
    )) else {
        panic!()
    };
    assert!(
        p.agent_supported_protocol_versions
            .split(',')
            .any(|v| v == "1.4")
    );
}

proptest::proptest! {
    #[test]
    fn receive_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let agent = Agent::new(AGENT);
        let _ = agent.receive(&bytes);
        let _ = agent.receive(&record(AGENT, bytes));
    }
}

#[test]
fn subscriptions_turn_any_origins_changes_into_notify_messages() {
    use dm_usp::Notifier;
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    dm_objects::local_agent::provision(
        &mut tree,
        AGENT,
        &[(CONTROLLER.to_owned(), Default::default())],
        &dm_usp::permissions::BUILT_IN_ROLES,
    )
    .unwrap();
    let subscribe = |kind: &str, reference: &str| {
        ReqType::Add(usp::Add {
            allow_partial: false,
            create_objs: vec![usp::add::CreateObject {
                obj_path: "Device.LocalAgent.Subscription.".into(),
                param_settings: [
                    ("ID", kind),
                    ("NotifType", kind),
                    ("ReferenceList", reference),
                    ("Enable", "true"),
                ]
                .iter()
                .map(|(param, value)| usp::add::CreateParamSetting {
                    param: (*param).into(),
                    value: (*value).into(),
                    required: true,
                })
                .collect(),
            }],
        })
    };
    for (kind, reference) in [
        ("ValueChange", "Device.WiFi.SSID.*.SSID"),
        ("ObjectCreation", "Device.WiFi.SSID."),
        ("ObjectDeletion", "Device.WiFi.SSID."),
    ] {
        let RespType::AddResp(_) = resp(ask(&agent, &mut tree, subscribe(kind, reference))) else {
            panic!()
        };
    }
    // An enabled subscription with nothing to watch is refused.
    let e = error(ask(&agent, &mut tree, subscribe("ValueChange", "")));
    assert_eq!(e.err_code, 7012, "{e:?}");

    let changes = tree.subscribe(64);
    let mut notifier = Notifier::default();
    let mut notified = |tree: &Tree| -> Vec<(String, usp::notify::Notification)> {
        changes
            .drain()
            .iter()
            .flat_map(|change| notifier.on_change(tree, change))
            .map(|out| {
                assert_eq!(out.to, CONTROLLER);
                let Some(usp::body::MsgBody::Request(usp::Request {
                    req_type: Some(ReqType::Notify(notify)),
                })) = out.msg.body.and_then(|b| b.msg_body)
                else {
                    panic!()
                };
                (notify.subscription_id, notify.notification.unwrap())
            })
            .collect()
    };
    // An ACS's write.
    dm_cwmp::rpc::set_parameter_values(
        &mut tree,
        &[dm_cwmp::soap::ParameterValueIn {
            name: "Device.WiFi.SSID.1.SSID".into(),
            value: "acs-net".into(),
            xsd_type: None,
        }],
        "k",
    )
    .unwrap();
    let got = notified(&tree);
    assert_eq!(
        got,
        [(
            "ValueChange".to_owned(),
            usp::notify::Notification::ValueChange(usp::notify::ValueChange {
                param_path: "Device.WiFi.SSID.1.SSID".into(),
                param_value: "acs-net".into(),
            })
        )]
    );
    // An instance made and removed (by the CLI here).
    let (instance, _) =
        dm_cwmp::rpc::add_object_by(&mut tree, Origin::Cli, "Device.WiFi.SSID.", None).unwrap();
    let path = format!("Device.WiFi.SSID.{instance}.");
    let got = notified(&tree);
    let created = got
        .iter()
        .find_map(|(id, n)| match n {
            usp::notify::Notification::ObjCreation(c) if id == "ObjectCreation" => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(created.obj_path, path);
    // With the new instance's unique keys.
    assert!(created.unique_keys.contains_key("Name"), "{created:?}");
    dm_cwmp::rpc::delete_object_by(&mut tree, Origin::Cli, &path, None).unwrap();
    let got = notified(&tree);
    assert_eq!(
        got,
        [(
            "ObjectDeletion".to_owned(),
            usp::notify::Notification::ObjDeletion(usp::notify::ObjectDeletion { obj_path: path })
        )]
    );
    // Its role without notifications (Untrusted): nothing; given back
    // Full Access, told again.
    let assign = |tree: &mut Tree, role: u16| {
        use dm_core::catalog::{usp_controller, usp_role};
        tree.begin(Origin::Agent)
            .set(
                dm_core::Path::resource(
                    usp_controller::ID,
                    dm_core::InstanceId(1),
                    usp_controller::ASSIGNED_ROLE,
                ),
                dm_core::Value::ObjectLink(dm_core::ObjectLink {
                    object: usp_role::ID,
                    instance: role,
                }),
            )
            .commit()
            .unwrap();
    };
    let write = |tree: &mut Tree, ssid: &str| {
        dm_cwmp::rpc::set_parameter_values(
            tree,
            &[dm_cwmp::soap::ParameterValueIn {
                name: "Device.WiFi.SSID.1.SSID".into(),
                value: ssid.into(),
                xsd_type: None,
            }],
            "k",
        )
        .unwrap();
    };
    assign(&mut tree, 2);
    let _ = notified(&tree);
    write(&mut tree, "unseen");
    assert!(notified(&tree).is_empty());
    assign(&mut tree, 1);
    let _ = notified(&tree);
    write(&mut tree, "seen");
    assert_eq!(notified(&tree).len(), 1);

    // Disabled: nothing more.
    let body = set(
        &[(
            "Device.LocalAgent.Subscription.*.",
            &[("Enable", "false", true)],
        )],
        false,
    );
    let RespType::SetResp(_) = resp(ask(&agent, &mut tree, body)) else {
        panic!()
    };
    let _ = notified(&tree);
    dm_cwmp::rpc::set_parameter_values(
        &mut tree,
        &[dm_cwmp::soap::ParameterValueIn {
            name: "Device.WiFi.SSID.1.SSID".into(),
            value: "quiet".into(),
            xsd_type: None,
        }],
        "k",
    )
    .unwrap();
    assert!(notified(&tree).is_empty());
}

#[test]
fn get_supported_dm_lists_objects_parameters_commands_and_events() {
    use usp::get_supported_dm_resp::{ObjAccessType, ParamAccessType, ParamValueType};
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let body = ReqType::GetSupportedDm(usp::GetSupportedDm {
        obj_paths: vec![
            "Device.WiFi.".into(),
            "Device.".into(),
            "Device.Nope.".into(),
        ],
        first_level_only: false,
        return_commands: true,
        return_events: true,
        return_params: true,
        return_unique_key_sets: true,
    });
    let RespType::GetSupportedDmResp(r) = resp(ask(&agent, &mut tree, body)) else {
        panic!()
    };
    let wifi = &r.req_obj_results[0];
    assert_eq!(wifi.err_code, 0);
    let ssid = wifi
        .supported_objs
        .iter()
        .find(|o| o.supported_obj_path == "Device.WiFi.SSID.{i}.")
        .unwrap();
    assert!(ssid.is_multi_instance);
    assert_eq!(ssid.access, ObjAccessType::ObjAddDelete as i32);
    let keys: Vec<Vec<String>> = ssid
        .unique_key_sets
        .iter()
        .map(|set| set.key_names.clone())
        .collect();
    assert_eq!(keys, [vec!["Name".to_owned()], vec!["BSSID".to_owned()]]);
    let name = ssid
        .supported_params
        .iter()
        .find(|p| p.param_name == "SSID")
        .unwrap();
    assert_eq!(name.access, ParamAccessType::ParamReadWrite as i32);
    assert_eq!(name.value_type, ParamValueType::ParamString as i32);
    let top = wifi
        .supported_objs
        .iter()
        .find(|o| o.supported_obj_path == "Device.WiFi.")
        .unwrap();
    assert!(
        top.supported_params
            .iter()
            .any(|p| p.param_name == "SSIDNumberOfEntries")
    );
    // The reported facts' tables are read only.
    let device = &r.req_obj_results[1];
    let links = device
        .supported_objs
        .iter()
        .find(|o| o.supported_obj_path == "Device.Ethernet.Interface.{i}.")
        .unwrap();
    assert_eq!(links.access, ObjAccessType::ObjReadOnly as i32);
    let root = device
        .supported_objs
        .iter()
        .find(|o| o.supported_obj_path == "Device.")
        .unwrap();
    let commands: Vec<_> = root
        .supported_commands
        .iter()
        .map(|c| c.command_name.as_str())
        .collect();
    assert_eq!(commands, ["Reboot()", "FactoryReset()"]);
    assert_eq!(root.supported_events[0].event_name, "Boot!");
    let diagnostics = device
        .supported_objs
        .iter()
        .find(|o| o.supported_obj_path == "Device.IP.Diagnostics.")
        .unwrap();
    let ping = &diagnostics.supported_commands[0];
    assert_eq!(ping.command_name, "IPPing()");
    assert_eq!(
        ping.command_type,
        usp::get_supported_dm_resp::CmdType::CmdAsync as i32
    );
    assert!(ping.input_arg_names.iter().any(|a| a == "Host"));
    assert!(ping.output_arg_names.iter().any(|a| a == "SuccessCount"));
    // A table is its `{i}.` object only.
    assert!(
        !device
            .supported_objs
            .iter()
            .any(|o| o.supported_obj_path == "Device.WiFi.SSID."),
    );
    assert_eq!(r.req_obj_results[2].err_code, 7026);
    let units = device
        .supported_objs
        .iter()
        .find(|o| o.supported_obj_path == "Device.SoftwareModules.ExecutionUnit.{i}.")
        .unwrap();
    let set_state = &units.supported_commands[0];
    assert_eq!(set_state.command_name, "SetRequestedState()");
    assert_eq!(set_state.input_arg_names, ["RequestedState"]);
    assert_eq!(
        set_state.command_type,
        usp::get_supported_dm_resp::CmdType::CmdSync as i32
    );
}

/// SetRequestedState() of a package's Execution Unit is /9's Activate or
/// Deactivate: refused while the package is not installed (7022, the
/// tree's reason), checked for its input, 7026 for a row that is not.
#[test]
fn an_execution_unit_is_started_only_when_its_package_is_installed() {
    use dm_core::catalog::software;
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let mut tx = tree.begin(Origin::Agent);
    tx.create(software::ID, Some(dm_core::InstanceId(1)));
    tx.set(
        dm_core::Path::resource(software::ID, dm_core::InstanceId(1), software::PKGNAME),
        dm_core::Value::String("web".into()),
    );
    tx.commit().unwrap();
    let operate = |command: &str, state: &str| {
        ReqType::Operate(usp::Operate {
            command: command.into(),
            send_resp: true,
            input_args: [("RequestedState".to_owned(), state.to_owned())].into(),
            ..Default::default()
        })
    };
    let unit = "Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()";
    assert_eq!(
        value(
            &agent,
            &mut tree,
            "Device.SoftwareModules.ExecutionUnit.1.Status"
        ),
        "Idle"
    );
    let refused = error(ask(&agent, &mut tree, operate(unit, "Active")));
    assert_eq!(refused.err_code, 7022, "{refused:?}");
    assert!(refused.err_msg.contains("not installed"), "{refused:?}");
    // Idle is what it is: nothing to do.
    let RespType::OperateResp(done) = resp(ask(&agent, &mut tree, operate(unit, "Idle"))) else {
        panic!()
    };
    assert_eq!(done.operation_results[0].executed_command, unit);
    // Without send_resp, no OperateResp.
    let quiet = ReqType::Operate(usp::Operate {
        command: unit.into(),
        send_resp: false,
        input_args: [("RequestedState".to_owned(), "Idle".to_owned())].into(),
        ..Default::default()
    });
    let Incoming::Request(request) = agent.receive(&request(quiet)) else {
        panic!("not a request")
    };
    let Step::Command(command) = request.start(&mut tree, Origin::Controller(1)) else {
        panic!("not a command")
    };
    assert_eq!(command.action, dm_usp::Action::Executed);
    assert!(command.response.is_none());
    assert_eq!(
        error(ask(&agent, &mut tree, operate(unit, "Up"))).err_code,
        7027
    );
    let absent = "Device.SoftwareModules.ExecutionUnit.7.SetRequestedState()";
    assert_eq!(
        error(ask(&agent, &mut tree, operate(absent, "Active"))).err_code,
        7026
    );
}

#[test]
fn depth_counts_from_the_resolved_object_and_bounds_hold() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    // A search whose value has dots: max_depth 1 is still the SSID's own
    // parameters, not its Stats.
    let set_name = set(
        &[("Device.WiFi.SSID.1.", &[("SSID", "a.b.c", true)])],
        false,
    );
    let RespType::SetResp(_) = resp(ask(&agent, &mut tree, set_name)) else {
        panic!()
    };
    let r = get(
        &agent,
        &mut tree,
        &["Device.WiFi.SSID.[SSID==\"a.b.c\"]."],
        1,
    );
    let objects: Vec<_> = r.req_path_results[0]
        .resolved_path_results
        .iter()
        .map(|r| r.resolved_path.as_str())
        .collect();
    assert_eq!(objects, ["Device.WiFi.SSID.1."]);
    let mut stats = |depth| {
        let r = get(
            &agent,
            &mut tree,
            &["Device.WiFi.AccessPoint.[Security.ModeEnabled!=\"a.b.c\"]."],
            depth,
        );
        let paths: Vec<String> = r.req_path_results[0]
            .resolved_path_results
            .iter()
            .map(|r| r.resolved_path.clone())
            .collect();
        assert!(!paths.is_empty());
        paths.iter().any(|p| p.ends_with(".Security."))
    };
    assert!(!stats(1));
    assert!(stats(2));
    // Whether a path is valid does not depend on the instances there are.
    let r = get(
        &agent,
        &mut tree,
        &[
            "Device.WiFi.SSID.*.Bogus",
            "Device.WiFi.AccessPoint.9.Security.",
        ],
        0,
    );
    assert_eq!(r.req_path_results[0].err_code, 7026);
    assert_eq!(r.req_path_results[1].err_code, 0);
    // A whole-tree Get is answered; a Set of too many parameters is not.
    let all = get(&agent, &mut tree, &["Device."], 0);
    assert_eq!(all.req_path_results[0].err_code, 0);
    let many: Vec<(String, String)> = (0..5000)
        .map(|n| (format!("X{n}"), "1".to_owned()))
        .collect();
    let settings: Vec<Setting> = many
        .iter()
        .map(|(p, v)| (p.as_str(), v.as_str(), true))
        .collect();
    let e = error(ask(
        &agent,
        &mut tree,
        set(&[("Device.WiFi.SSID.1.", &settings)], false),
    ));
    assert_eq!(e.err_code, 7005, "{e:?}");
}

#[test]
fn overlapping_deletes_and_a_failed_add_leave_the_tree_consistent() {
    let agent = Agent::new(AGENT);
    let mut tree = tree();
    let create = |ssid: &str| usp::add::CreateObject {
        obj_path: "Device.WiFi.SSID.".into(),
        param_settings: vec![usp::add::CreateParamSetting {
            param: "SSID".into(),
            value: ssid.into(),
            required: true,
        }],
    };
    let count = |agent: &Agent, tree: &mut Tree| {
        let body = ReqType::GetInstances(usp::GetInstances {
            obj_paths: vec!["Device.WiFi.SSID.".into()],
            first_level_only: true,
        });
        let RespType::GetInstancesResp(r) = resp(ask(agent, tree, body)) else {
            panic!()
        };
        r.req_path_results[0].curr_insts.len()
    };
    let before = count(&agent, &mut tree);
    // All or nothing: the second cannot be made, so the first is undone.
    let e = error(ask(
        &agent,
        &mut tree,
        ReqType::Add(usp::Add {
            allow_partial: false,
            create_objs: vec![create("one"), create(&"x".repeat(40))],
        }),
    ));
    assert_eq!(e.err_code, 7012, "{e:?}");
    assert_eq!(count(&agent, &mut tree), before);
    // With allow_partial, the good one stays.
    let RespType::AddResp(r) = resp(ask(
        &agent,
        &mut tree,
        ReqType::Add(usp::Add {
            allow_partial: true,
            create_objs: vec![create("lab"), create(&"x".repeat(40))],
        }),
    )) else {
        panic!()
    };
    use usp::add_resp::created_object_result::operation_status::OperStatus;
    let statuses: Vec<_> = r
        .created_obj_results
        .iter()
        .map(|c| c.oper_status.clone().unwrap().oper_status.unwrap())
        .collect();
    let OperStatus::OperSuccess(made) = &statuses[0] else {
        panic!("{statuses:?}")
    };
    assert!(matches!(statuses[1], OperStatus::OperFailure(_)));
    assert_eq!(count(&agent, &mut tree), before + 1);
    // Two paths naming the same instance: deleted once, no failure.
    let RespType::DeleteResp(r) = resp(ask(
        &agent,
        &mut tree,
        ReqType::Delete(usp::Delete {
            allow_partial: false,
            obj_paths: vec![
                made.instantiated_path.clone(),
                "Device.WiFi.SSID.[SSID==\"lab\"].".into(),
            ],
        }),
    )) else {
        panic!()
    };
    use usp::delete_resp::deleted_object_result::operation_status::OperStatus as DeleteStatus;
    let affected: Vec<Vec<String>> = r
        .deleted_obj_results
        .iter()
        .map(
            |d| match d.oper_status.clone().unwrap().oper_status.unwrap() {
                DeleteStatus::OperSuccess(ok) => ok.affected_paths,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(affected, [vec![made.instantiated_path.clone()], vec![]]);
    assert_eq!(count(&agent, &mut tree), before);
}

/// A controller given the Untrusted role: it reads what the device and
/// the agent are, and nothing else; every write, add, delete and
/// command is 7006, and GetSupportedDM shows it only what it may read.
/// A controller with no row (no role) may do nothing at all.
#[test]
fn an_untrusted_controller_reads_the_device_and_nothing_more() {
    use dm_objects::local_agent::ControllerRole;
    let agent = Agent::new(AGENT);
    let mut tree = dm_tests::tree(&dm_tests::platform().0);
    dm_objects::local_agent::provision(
        &mut tree,
        AGENT,
        &[(CONTROLLER.to_owned(), ControllerRole::Untrusted)],
        &dm_usp::permissions::BUILT_IN_ROLES,
    )
    .unwrap();
    assert_eq!(
        value(&agent, &mut tree, "Device.DeviceInfo.SerialNumber"),
        "SN0001"
    );
    assert_eq!(
        value(
            &agent,
            &mut tree,
            "Device.LocalAgent.Controller.1.AssignedRole"
        ),
        "Device.LocalAgent.ControllerTrust.Role.2"
    );
    // An object it may not read: nothing there for it; one parameter:
    // refused.
    let wifi = get(
        &agent,
        &mut tree,
        &["Device.WiFi.", "Device.ManagementServer.URL"],
        0,
    );
    assert!(
        wifi.req_path_results[0].resolved_path_results.is_empty(),
        "{wifi:?}"
    );
    assert_eq!(wifi.req_path_results[1].err_code, 7006, "{wifi:?}");
    // The whole tree: only DeviceInfo's and LocalAgent's parameters.
    let all = get(&agent, &mut tree, &["Device."], 0);
    let objects: Vec<&str> = all.req_path_results[0]
        .resolved_path_results
        .iter()
        .map(|r| r.resolved_path.as_str())
        .collect();
    assert!(!objects.is_empty());
    assert!(
        objects
            .iter()
            .all(|o| o.starts_with("Device.DeviceInfo.") || o.starts_with("Device.LocalAgent.")),
        "{objects:?}"
    );
    // Writes of every kind.
    let before = value(&agent, &mut tree, "Device.DeviceInfo.ProvisioningCode");
    let e = error(ask(
        &agent,
        &mut tree,
        set(
            &[("Device.DeviceInfo.", &[("ProvisioningCode", "x", true)])],
            false,
        ),
    ));
    assert_eq!(e.err_code, 7006, "{e:?}");
    assert_eq!(
        value(&agent, &mut tree, "Device.DeviceInfo.ProvisioningCode"),
        before
    );
    let add = ReqType::Add(usp::Add {
        allow_partial: false,
        create_objs: vec![usp::add::CreateObject {
            obj_path: "Device.LocalAgent.Subscription.".into(),
            param_settings: Vec::new(),
        }],
    });
    assert_eq!(error(ask(&agent, &mut tree, add)).err_code, 7006);
    let delete = ReqType::Delete(usp::Delete {
        allow_partial: false,
        obj_paths: vec!["Device.WiFi.SSID.1.".into()],
    });
    assert_eq!(error(ask(&agent, &mut tree, delete)).err_code, 7006);
    let reboot = ReqType::Operate(usp::Operate {
        command: "Device.Reboot()".into(),
        send_resp: true,
        ..Default::default()
    });
    assert_eq!(error(ask(&agent, &mut tree, reboot)).err_code, 7006);
    // What it is shown of the data model.
    let body = ReqType::GetSupportedDm(usp::GetSupportedDm {
        obj_paths: vec!["Device.".into()],
        first_level_only: true,
        return_commands: true,
        return_events: true,
        return_params: true,
        return_unique_key_sets: false,
    });
    let RespType::GetSupportedDmResp(r) = resp(ask(&agent, &mut tree, body)) else {
        panic!()
    };
    let shown: Vec<&str> = r.req_obj_results[0]
        .supported_objs
        .iter()
        .map(|o| o.supported_obj_path.as_str())
        .collect();
    assert_eq!(shown, ["Device.DeviceInfo.", "Device.LocalAgent."], "{r:?}");

    // No controller row at all: not even the device's identity.
    let mut bare = dm_tests::tree(&dm_tests::platform().0);
    let r = get(&agent, &mut bare, &["Device.DeviceInfo.SerialNumber"], 0);
    assert_eq!(r.req_path_results[0].err_code, 7006, "{r:?}");
}

/// A role of the integrator's making: everything but writing one
/// parameter of subscriptions and reading the SSIDs' names. An Add that
/// writes the parameter is refused (7006), one that does not is made; a
/// wildcard Get of the names leaves them out rather than failing; the
/// SSID rows' unique key of that name is not shown by GetInstances.
#[test]
fn a_role_is_checked_on_the_parameters_an_add_writes_and_a_get_finds() {
    const ROLES: [dm_usp::permissions::Role; 1] = [(
        "Full Access",
        &[
            (1, "Device.", ["rw-n", "rw-n", "rw-n", "r-xn"]),
            (
                2,
                "Device.LocalAgent.Subscription.*.NotifRetry",
                ["r---", "r---", "r---", "r---"],
            ),
            (
                2,
                "Device.WiFi.SSID.*.Name",
                ["----", "----", "----", "----"],
            ),
        ],
    )];
    let agent = Agent::new(AGENT);
    let mut tree = dm_tests::tree(&dm_tests::platform().0);
    dm_objects::local_agent::provision(
        &mut tree,
        AGENT,
        &[(CONTROLLER.to_owned(), Default::default())],
        &ROLES,
    )
    .unwrap();
    let add = |with_retry: bool| {
        let mut settings = vec![
            ("NotifType", "ValueChange"),
            ("ReferenceList", "Device.WiFi.SSID.1.SSID"),
        ];
        if with_retry {
            settings.push(("NotifRetry", "true"));
        }
        ReqType::Add(usp::Add {
            allow_partial: false,
            create_objs: vec![usp::add::CreateObject {
                obj_path: "Device.LocalAgent.Subscription.".into(),
                param_settings: settings
                    .iter()
                    .map(|(param, value)| usp::add::CreateParamSetting {
                        param: (*param).into(),
                        value: (*value).into(),
                        required: true,
                    })
                    .collect(),
            }],
        })
    };
    assert_eq!(error(ask(&agent, &mut tree, add(true))).err_code, 7006);
    let RespType::AddResp(_) = resp(ask(&agent, &mut tree, add(false))) else {
        panic!()
    };
    let names = get(&agent, &mut tree, &["Device.WiFi.SSID.*.Name"], 0);
    assert_eq!(names.req_path_results[0].err_code, 0, "{names:?}");
    assert!(
        names.req_path_results[0].resolved_path_results.is_empty(),
        "{names:?}"
    );
    let body = ReqType::GetInstances(usp::GetInstances {
        obj_paths: vec!["Device.WiFi.SSID.".into()],
        first_level_only: true,
    });
    let RespType::GetInstancesResp(r) = resp(ask(&agent, &mut tree, body)) else {
        panic!()
    };
    let rows = &r.req_path_results[0].curr_insts;
    assert!(!rows.is_empty(), "{r:?}");
    assert!(
        rows.iter().all(|i| !i.unique_keys.contains_key("Name")),
        "{r:?}"
    );
}
