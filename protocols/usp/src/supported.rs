//! GetSupportedDM (TR-369 §GetSupportedDM): the data model the agent
//! serves, from the TR-181 mapping's templates, in USP's supported-path
//! form (`Device.WiFi.SSID.{i}.`), with the commands and events the agent
//! carries out.

use std::collections::BTreeMap;

use dm_core::Tree;
use dm_cwmp::mapping::{ActiveNotify, ObjectPath, ParameterMap, Resolver, Syntax, generic_path};

use crate::proto::usp::get_supported_dm_resp::{
    ObjAccessType, ParamAccessType, ParamValueType, RequestedObjectResult, SupportedCommandResult,
    SupportedEventResult, SupportedObjectResult, SupportedParamResult, SupportedUniqueKeySet,
    ValueChangeType,
};
use crate::proto::usp::{self, get_supported_dm_resp::CmdType};

/// The synchronous commands the agent carries out, by object, with their
/// inputs.
const COMMANDS: &[(&str, &str, &[&str])] = &[
    ("Device.", "Reboot()", &[]),
    ("Device.", "FactoryReset()", &[]),
    ("Device.LocalAgent.Request.{i}.", "Cancel()", &[]),
    (
        "Device.LocalAgent.Controller.{i}.",
        "SendOnBoardRequest()",
        &[],
    ),
    (
        "Device.SoftwareModules.ExecutionUnit.{i}.",
        "SetRequestedState()",
        &["RequestedState"],
    ),
];

/// Asynchronous commands carried out by the firmware pipeline and the
/// package program, with the inputs the agent takes
/// (`engine::firmware_action`, `engine::software_action`).
const PIPELINES: &[(&str, &str, &[&str])] = &[
    (
        "Device.SoftwareModules.",
        "InstallDU()",
        &["URL", "UUID", "Username", "Password", "ExecutionEnvRef"],
    ),
    (
        "Device.SoftwareModules.DeploymentUnit.{i}.",
        "Update()",
        &["URL", "Username", "Password"],
    ),
    (
        "Device.SoftwareModules.DeploymentUnit.{i}.",
        "Uninstall()",
        &[],
    ),
    (
        "Device.DeviceInfo.FirmwareImage.{i}.",
        "Download()",
        &["URL", "AutoActivate", "FileSize"],
    ),
    (
        "Device.DeviceInfo.FirmwareImage.{i}.",
        "Activate()",
        &[
            "TimeWindow.{i}.Start",
            "TimeWindow.{i}.End",
            "TimeWindow.{i}.Mode",
            "TimeWindow.{i}.UserMessage",
            "TimeWindow.{i}.MaxRetries",
        ],
    ),
];

/// The commands of a supported object: the synchronous ones above and
/// the asynchronous ones of [`crate::commands::ASYNC`], with their
/// arguments.
fn commands_of(object: &str) -> Vec<SupportedCommandResult> {
    let names = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let sync = COMMANDS
        .iter()
        .filter(|(at, ..)| *at == object)
        .map(|(_, name, inputs)| SupportedCommandResult {
            command_name: (*name).to_owned(),
            input_arg_names: names(inputs),
            output_arg_names: Vec::new(),
            command_type: CmdType::CmdSync as i32,
        });
    let asynchronous = crate::commands::ASYNC.iter().filter_map(|c| {
        let dot = c.command.rfind('.')? + 1;
        (&c.command[..dot] == object).then(|| SupportedCommandResult {
            command_name: c.command[dot..].to_owned(),
            input_arg_names: names(c.inputs),
            output_arg_names: {
                let mut outputs = vec!["Status".to_owned()];
                outputs.extend(names(c.outputs));
                outputs
            },
            command_type: CmdType::CmdAsync as i32,
        })
    });
    let firmware = PIPELINES
        .iter()
        .filter(|(at, ..)| *at == object)
        .map(|(_, name, inputs)| SupportedCommandResult {
            command_name: (*name).to_owned(),
            input_arg_names: names(inputs),
            output_arg_names: Vec::new(),
            command_type: CmdType::CmdAsync as i32,
        });
    // Those of declared objects, carried out by their providers (but
    // where the agent has one of the same path).
    let declared = dm_cwmp::mapping::commands().iter().filter_map(|c| {
        let dot = c.path.rfind('.')? + 1;
        (&c.path[..dot] == object && !is_built_in(&c.path)).then(|| SupportedCommandResult {
            command_name: c.path[dot..].to_owned(),
            input_arg_names: c.inputs.clone(),
            output_arg_names: Vec::new(),
            command_type: CmdType::CmdSync as i32,
        })
    });
    sync.chain(asynchronous)
        .chain(firmware)
        .chain(declared)
        .collect()
}

/// Whether `command` (with instance numbers or `{i}`) is one the agent
/// carries out itself.
pub fn is_built_in(command: &str) -> bool {
    let generic = dm_cwmp::mapping::generic_path(command);
    let Some(dot) = generic.rfind('.') else {
        return false;
    };
    let (object, name) = generic.split_at(dot + 1);
    COMMANDS.iter().any(|(o, n, _)| *o == object && *n == name)
        || PIPELINES.iter().any(|(o, n, _)| *o == object && *n == name)
        || crate::commands::ASYNC.iter().any(|c| c.command == generic)
}

/// The events the agent sends, by object, with their arguments.
const EVENTS: &[(&str, &str, &[&str])] = &[
    (
        "Device.",
        "Boot!",
        &["CommandKey", "Cause", "FirmwareUpdated", "ParameterMap"],
    ),
    (
        "Device.SoftwareModules.",
        "DUStateChange!",
        &[
            "UUID",
            "DeploymentUnitRef",
            "Version",
            "CurrentState",
            "Resolved",
            "ExecutionUnitRefList",
            "StartTime",
            "CompleteTime",
            "OperationPerformed",
            "Fault.FaultCode",
            "Fault.FaultString",
        ],
    ),
];

/// One supported object, as it is built.
#[derive(Default)]
struct Object {
    multi: bool,
    access: Option<ObjAccessType>,
    params: BTreeMap<String, SupportedParamResult>,
}

fn value_type(syntax: Syntax) -> ParamValueType {
    match syntax {
        Syntax::String => ParamValueType::ParamString,
        Syntax::Int => ParamValueType::ParamInt,
        Syntax::UnsignedInt => ParamValueType::ParamUnsignedInt,
        Syntax::Long => ParamValueType::ParamLong,
        Syntax::UnsignedLong => ParamValueType::ParamUnsignedLong,
        Syntax::Boolean => ParamValueType::ParamBoolean,
        Syntax::DateTime => ParamValueType::ParamDateTime,
        Syntax::Base64 => ParamValueType::ParamBase64,
        Syntax::HexBinary => ParamValueType::ParamHexBinary,
    }
}

/// Every supported object, each with its parameters.
fn objects(tree: &Tree) -> BTreeMap<String, Object> {
    let mut objects: BTreeMap<String, Object> = BTreeMap::new();
    let resolver = Resolver::global();
    let add_param = |objects: &mut BTreeMap<String, Object>, map: &ParameterMap| {
        let Some(dot) = map.path.rfind('.') else {
            return;
        };
        let object = generic_path(&map.path[..=dot]);
        let name = &map.path[dot + 1..];
        // Every object on the way, and the tables' counts.
        let mut end = 0;
        while let Some(offset) = object[end..].find('.') {
            end += offset + 1;
            let prefix = &object[..end];
            // A table's own path is its `{i}.` object, not an object of
            // its own.
            if object[end..].starts_with("{i}.") {
                continue;
            }
            let entry = objects.entry(prefix.to_owned()).or_default();
            if let Some(table) = prefix.strip_suffix("{i}.") {
                entry.multi = true;
                let table = table.trim_end_matches('.');
                if let Some((parent, leaf)) = table.rsplit_once('.') {
                    objects
                        .entry(format!("{parent}."))
                        .or_default()
                        .params
                        .entry(format!("{leaf}NumberOfEntries"))
                        .or_insert(SupportedParamResult {
                            param_name: format!("{leaf}NumberOfEntries"),
                            access: ParamAccessType::ParamReadOnly as i32,
                            value_type: ParamValueType::ParamUnsignedInt as i32,
                            value_change: ValueChangeType::ValueChangeAllowed as i32,
                        });
                }
            }
        }
        objects.entry(object.clone()).or_default().params.insert(
            name.to_owned(),
            SupportedParamResult {
                param_name: name.to_owned(),
                access: if map.writable {
                    ParamAccessType::ParamReadWrite
                } else {
                    ParamAccessType::ParamReadOnly
                } as i32,
                value_type: value_type(map.syntax) as i32,
                value_change: if map.active_notify == ActiveNotify::CanDeny {
                    ValueChangeType::ValueChangeWillIgnore
                } else {
                    ValueChangeType::ValueChangeAllowed
                } as i32,
            },
        );
        // A table's access: whether clients add and delete its rows; the
        // innermost table the parameter is in.
        let rows = map.path.rfind(".{j}.");
        let instances = map.path.rfind(".{i}.");
        let (at, addable) = match (instances, rows) {
            // A `{j}` table: rows where a column is written.
            (i, Some(j)) if i.is_none_or(|i| j > i) => (j, map.writable),
            (Some(i), _) => {
                let table = &map.path[..i + 5];
                let addable = match resolver.object(&table.replace("{i}", "1")) {
                    Some(ObjectPath::Instance(object, _)) => !tree.is_reported(object),
                    _ => false,
                };
                (i, addable)
            }
            _ => return,
        };
        // `Device.WiFi.SSID.{i}.`
        let table = generic_path(&map.path[..at + 5]);
        if addable {
            objects.entry(table).or_default().access = Some(ObjAccessType::ObjAddDelete);
        }
    };
    for map in dm_cwmp::mapping::parameters() {
        add_param(&mut objects, map);
    }
    objects
}

/// Answers GetSupportedDM.
pub fn answer(
    tree: &Tree,
    request: &usp::GetSupportedDm,
    allowed: &crate::Permissions,
) -> usp::GetSupportedDmResp {
    use crate::permissions::{Kind, Op};
    let all = objects(tree);
    let req_obj_results = request
        .obj_paths
        .iter()
        .map(|requested| {
            let wanted = generic_path(requested);
            let mut result = RequestedObjectResult {
                req_obj_path: requested.clone(),
                ..Default::default()
            };
            if !wanted.ends_with('.') || !all.contains_key(&wanted) {
                result.err_code = crate::Code::INVALID_PATH.0;
                result.err_msg = format!("{requested}: not an object of the data model");
                return result;
            }
            let depth = |path: &str| path.trim_end_matches('.').split('.').count();
            let base = depth(&wanted);
            result.supported_objs = all
                .iter()
                .filter(|(path, _)| path.starts_with(wanted.as_str()))
                // What the role does not let it see is not there for it.
                .filter(|(path, _)| allowed.allows(path, Kind::Obj, Op::Read))
                .filter(|(path, _)| {
                    // Below a table's `{i}.`, one level further is still
                    // the first (the instance is not a level of its own).
                    let extra = usize::from(path.ends_with("{i}.") && *path != &wanted);
                    !request.first_level_only || depth(path) <= base + 1 + extra
                })
                .map(|(path, object)| SupportedObjectResult {
                    supported_obj_path: path.clone(),
                    access: object.access.unwrap_or(ObjAccessType::ObjReadOnly) as i32,
                    is_multi_instance: object.multi,
                    supported_commands: if request.return_commands {
                        commands_of(path)
                            .into_iter()
                            .filter(|c| {
                                let at = format!("{path}{}", c.command_name);
                                allowed.allows(&at, Kind::CommandEvent, Op::Read)
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                    supported_events: if request.return_events {
                        EVENTS
                            .iter()
                            .filter(|(at, ..)| at == path)
                            .filter(|(at, name, _)| {
                                allowed.allows(&format!("{at}{name}"), Kind::CommandEvent, Op::Read)
                            })
                            .map(|(_, name, args)| SupportedEventResult {
                                event_name: (*name).to_owned(),
                                arg_names: args.iter().map(|a| (*a).to_owned()).collect(),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                    supported_params: if request.return_params {
                        object
                            .params
                            .values()
                            .filter(|p| {
                                allowed.allows(
                                    &format!("{path}{}", p.param_name),
                                    Kind::Param,
                                    Op::Read,
                                )
                            })
                            .cloned()
                            .collect()
                    } else {
                        Vec::new()
                    },
                    divergent_paths: Vec::new(),
                    unique_key_sets: if request.return_unique_key_sets && object.multi {
                        dm_cwmp::mapping::unique_keys(path.trim_end_matches("{i}."))
                            .iter()
                            .map(|set| SupportedUniqueKeySet {
                                key_names: set.iter().map(|k| (*k).to_owned()).collect(),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            result
        })
        .collect();
    usp::GetSupportedDmResp { req_obj_results }
}
