//! The agent's side of USP (TR-369 §Messages): records in, requests
//! answered on the tree, records out. Sans-IO: the driver hands in the
//! bytes an MTP received and sends the bytes it is given; writes that
//! need the host come back as [`Step::Host`], made off the tree's lock
//! by the driver and handed back with [`Pending::resume`].

use std::collections::{BTreeMap, VecDeque};

use dm_core::{Origin, Path, Tree};
use dm_cwmp::rpc::{self, WriteResult, Written};
use dm_cwmp::soap::ParameterValueIn;
use prost::Message as _;

use crate::error::{Code, UspError};
use crate::path;
use crate::permissions::{Kind, Op, Permissions};
use crate::proto::usp::{self, header::MsgType, request::ReqType, response::RespType};
use crate::proto::usp_record::{self, record::RecordType};

/// The record version the agent writes.
pub const VERSION: &str = "1.4";
/// The versions whose messages the agent reads and answers
/// (GetSupportedProtocol): 1.4's messages are a superset of the earlier
/// ones'.
pub const SUPPORTED_VERSIONS: &str = "1.0,1.1,1.2,1.3,1.4";
/// The most paths (or objects) one request may name: a Get of 100,000
/// paths is refused (7005), not worked through.
pub const MAX_REQUEST_PATHS: usize = 1024;
/// The most parameters one Set writes (its objects times their
/// settings).
pub const MAX_SETTINGS: usize = 4096;

/// The agent's endpoint.
#[derive(Clone, Debug)]
pub struct Agent {
    endpoint_id: String,
}

/// What a received record asks of the agent.
#[derive(Debug)]
pub enum Incoming {
    /// A request from a controller: answer it ([`Request::start`]).
    Request(Request),
    /// Answered at once: a record for `to` (an Error message).
    Reply {
        to: String,
        record: Vec<u8>,
        why: String,
    },
    /// A controller acknowledged a Notify sent with `send_resp`.
    NotifyResp { from: String, msg_id: String },
    /// Nothing to answer (a response, a connect record, a record not for
    /// this agent, one that cannot be read): why, for the log.
    Nothing(String),
}

/// A controller's request.
#[derive(Debug)]
pub struct Request {
    /// The controller's endpoint ID, the record's `from_id`.
    pub from: String,
    pub msg_id: String,
    body: ReqType,
}

/// Where answering a request stands.
#[derive(Debug)]
pub enum Step {
    /// The response (or Error) message, to send in a record to the
    /// controller ([`Agent::record`]).
    Done(usp::Msg),
    /// Host writes to make first, off the tree's lock.
    Host(Box<Pending>),
    /// A command for the driver to carry out (its answer first).
    Command(Command),
}

/// What a command asks: of the device (TR-181 2.16's `Device.Reboot()`
/// and `Device.FactoryReset()`), or an asynchronous command to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Reboot,
    FactoryReset,
    /// Its object's inputs written ([`Command::writes`]), a row in
    /// `Device.LocalAgent.Request.` while it runs, its end an
    /// OperationComplete ([`crate::commands`]).
    Start(&'static crate::commands::AsyncCommand),
    /// `Device.LocalAgent.Request.{i}.Cancel()` (TR-181 2.16): the
    /// asynchronous command of that row stopped, its OperationComplete a
    /// failure (7023). The driver answers ([`operate_done`] or an error):
    /// only it knows which commands run.
    Cancel(u16),
    /// A synchronous command the tree has carried out (an Execute: an
    /// Execution Unit's SetRequestedState(), a declared object's
    /// command): the driver only sends `response`, when the controller
    /// asked for one.
    Executed,
    /// `Device.LocalAgent.Controller.{i}.SendOnBoardRequest()` (TR-181
    /// 2.16): the agent answers, then sends that controller an
    /// OnBoardRequest Notify ([`crate::Notifier::on_board`]).
    OnBoard(u16),
    /// `Device.DeviceInfo.FirmwareImage.2.Download()` (TR-181 2.16,
    /// asynchronous): the image at `url` fetched by the firmware pipeline
    /// (as an LwM2M server's Package URI is), applied after with
    /// `activate` (AutoActivate). Its end, the pipeline's.
    FirmwareDownload {
        url: String,
        activate: bool,
    },
    /// `Device.DeviceInfo.FirmwareImage.2.Activate()`: the downloaded
    /// image applied now.
    FirmwareActivate,
    /// `Device.SoftwareModules.InstallDU()`, `DeploymentUnit.{i}.Update()`
    /// or `.Uninstall()` (TR-181 2.16, asynchronous): the same operation
    /// as CWMP's ChangeDUState, carried out by the same handler; its
    /// result is the OperationComplete. `command` is the command's path.
    Software {
        command: String,
        operation: Box<dm_cwmp::soap::DuOperation>,
    },
}

/// The software command an Operate names, checked, with the unit's UUID
/// and version read for Update() and Uninstall() (TR-181 2.16's inputs;
/// those the package program cannot honour are 7027).
fn software_action(tree: &Tree, operate: &usp::Operate) -> Option<Result<Action, UspError>> {
    use dm_cwmp::soap::DuOperation;
    let bad = |why: String| Err(UspError::new(Code::INVALID_COMMAND_ARGUMENTS, why));
    let command = operate.command.as_str();
    let units = "Device.SoftwareModules.DeploymentUnit.";
    let (row, kind) = if command == "Device.SoftwareModules.InstallDU()" {
        (None, "InstallDU()")
    } else if let Some(row) = row_command(command, units, ".Update()") {
        (Some(row), "Update()")
    } else if let Some(row) = row_command(command, units, ".Uninstall()") {
        (Some(row), "Uninstall()")
    } else {
        return None;
    };
    let inputs = &operate.input_args;
    let taken: &[&str] = match kind {
        "InstallDU()" => &["URL", "UUID", "Username", "Password", "ExecutionEnvRef"],
        "Update()" => &["URL", "Username", "Password"],
        _ => &[],
    };
    for (name, value) in inputs {
        // RetainData false is what the agent does (TR-181's default).
        let harmless = value.is_empty() || (name == "RetainData" && value == "false");
        if !taken.contains(&name.as_str()) && !harmless {
            return Some(bad(format!(
                "{kind} input {name:?} is not supported by the package program"
            )));
        }
    }
    let input = |name: &str| inputs.get(name).cloned().unwrap_or_default();
    let operation = match row {
        None => {
            if input("URL").is_empty() {
                return Some(bad("InstallDU() needs the input \"URL\"".into()));
            }
            DuOperation::Install {
                url: input("URL"),
                uuid: input("UUID"),
                username: input("Username"),
                password: input("Password"),
                execution_env: input("ExecutionEnvRef"),
            }
        }
        Some(row) => {
            let read =
                |name: &str| rpc::value_as(tree, Origin::Agent, &format!("{units}{row}.{name}"));
            let Some(uuid) = read("UUID") else {
                return Some(Err(UspError::new(
                    Code::INVALID_PATH,
                    format!("{units}{row}. is no deployment unit"),
                )));
            };
            let version = read("Version").unwrap_or_default();
            if kind == "Update()" {
                DuOperation::Update {
                    uuid,
                    version,
                    url: input("URL"),
                    username: input("Username"),
                    password: input("Password"),
                }
            } else {
                DuOperation::Uninstall {
                    uuid,
                    version,
                    execution_env: String::new(),
                }
            }
        }
    };
    Some(Ok(Action::Software {
        command: operate.command.clone(),
        operation: Box::new(operation),
    }))
}

/// The FirmwareImage row downloads go to and activations come from: the
/// firmware pipeline's one slot (row 1 is the running image).
pub const FIRMWARE_SLOT: u16 = 2;

/// The firmware command an Operate names, checked: Download() with its
/// URL and AutoActivate, Activate() now (TR-181 2.16's inputs; what the
/// pipeline cannot honour is 7027, not ignored).
fn firmware_action(operate: &usp::Operate) -> Option<Result<Action, UspError>> {
    let bad = |why: String| Err(UspError::new(Code::INVALID_COMMAND_ARGUMENTS, why));
    let prefix = "Device.DeviceInfo.FirmwareImage.";
    let (row, download) = match (
        row_command(&operate.command, prefix, ".Download()"),
        row_command(&operate.command, prefix, ".Activate()"),
    ) {
        (Some(row), _) => (row, true),
        (_, Some(row)) => (row, false),
        _ => return None,
    };
    if row != FIRMWARE_SLOT {
        return Some(Err(UspError::new(
            Code::COMMAND_FAILURE,
            format!(
                "{prefix}{row}. is not the image the firmware pipeline holds: \
                 download into and activate {prefix}{FIRMWARE_SLOT}."
            ),
        )));
    }
    let inputs = &operate.input_args;
    if !download {
        // Only at once: TimeWindow's other modes wait for what the agent
        // cannot tell (idle, a user's confirmation).
        for (name, value) in inputs {
            let at_once = match name.rsplit_once('.').map(|(_, leaf)| leaf) {
                Some("Mode") => matches!(value.as_str(), "AnyTime" | "Immediately"),
                Some("Start") => value == "0",
                Some("End" | "UserMessage" | "MaxRetries") => true,
                _ => false,
            };
            if !name.starts_with("TimeWindow.") || !at_once {
                return Some(bad(format!(
                    "Activate() input {name:?} = {value:?}: only activation at once \
                     (TimeWindow Mode AnyTime or Immediately, Start 0) is supported"
                )));
            }
        }
        return Some(Ok(Action::FirmwareActivate));
    }
    for (name, value) in inputs {
        match name.as_str() {
            "URL" | "AutoActivate" | "FileSize" => {}
            "Username" | "Password" | "CheckSumAlgorithm" | "CheckSum" if value.is_empty() => {}
            _ => {
                return Some(bad(format!(
                    "Download() input {name:?} is not supported (the pipeline fetches \
                     without credentials and checks no checksum given here)"
                )));
            }
        }
    }
    let Some(url) = inputs.get("URL").filter(|u| !u.is_empty()) else {
        return Some(bad("Download() needs the input \"URL\"".into()));
    };
    // What the pipeline pulls (LwM2M /5/0/8's protocols); another scheme
    // would fail at once, with no change of state to see it by.
    if !matches!(
        url.split_once("://").map(|(scheme, _)| scheme),
        Some("http" | "https" | "coap" | "coaps")
    ) {
        return Some(bad(format!(
            "Download() URL {url:?}: http, https, coap and coaps are fetched"
        )));
    }
    let activate = match inputs.get("AutoActivate").map(String::as_str) {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        _ => {
            return Some(bad(
                "Download() needs the input \"AutoActivate\" (true or false)".into(),
            ));
        }
    };
    Some(Ok(Action::FirmwareDownload {
        url: url.clone(),
        activate,
    }))
}

/// A command accepted. Reboot and FactoryReset: the driver sends
/// `response` (when the controller asked for one, `send_resp`), then has
/// the device act, the other protocols ended first as for theirs. Start:
/// the driver writes `writes` (host writes off the lock), makes the
/// Request row and answers with [`operate_started`].
#[derive(Debug)]
pub struct Command {
    pub action: Action,
    pub msg_id: String,
    pub command_key: String,
    pub send_resp: bool,
    pub response: Option<usp::Msg>,
    pub writes: Vec<ParameterValueIn>,
}

/// A synchronous command that is an Execute on the tree, checked: the
/// resource to execute and its arguments, or `None` when the command asks
/// for what already is (and does nothing).
type TreeExecute = Option<(Path, String)>;

/// `Device.SoftwareModules.ExecutionUnit.{i}.SetRequestedState()` (TR-181
/// 2.16, synchronous): a package's unit started or stopped by /9's
/// Activate or Deactivate, which the package program carries out in the
/// package's queue, as for an LwM2M server's Execute. The answer says the
/// request was taken; the unit's Status is Starting or Stopping while the
/// program runs, then Active or Idle. As TR-181 says: Idle stops a Starting or Active
/// unit, Active starts an Idle one and is refused for a Stopping one,
/// anything else is ignored.
fn execution_unit_action(
    tree: &Tree,
    operate: &usp::Operate,
) -> Option<Result<TreeExecute, UspError>> {
    use dm_core::catalog::software;
    let units = "Device.SoftwareModules.ExecutionUnit.";
    let row = row_command(&operate.command, units, ".SetRequestedState()")?;
    let bad = |why: String| Some(Err(UspError::new(Code::INVALID_COMMAND_ARGUMENTS, why)));
    if let Some(name) = operate.input_args.keys().find(|n| *n != "RequestedState") {
        return bad(format!("SetRequestedState() has no input {name:?}"));
    }
    let Some(status) = rpc::value_as(tree, Origin::Agent, &format!("{units}{row}.Status")) else {
        return Some(Err(UspError::new(
            Code::INVALID_PATH,
            format!("{units}{row}. is no execution unit"),
        )));
    };
    let resource = match (
        operate.input_args.get("RequestedState").map(String::as_str),
        status.as_str(),
    ) {
        (Some("Idle"), "Starting" | "Active") => software::DEACTIVATE,
        (Some("Active"), "Idle") => software::ACTIVATE,
        (Some("Active"), "Stopping") => {
            return Some(Err(UspError::new(
                Code::COMMAND_FAILURE,
                format!("{units}{row}. is stopping"),
            )));
        }
        (Some("Idle" | "Active"), _) => return Some(Ok(None)),
        (Some(other), _) => {
            return bad(format!(
                "SetRequestedState() input \"RequestedState\" = {other:?}: Idle or Active"
            ));
        }
        (None, _) => return bad("SetRequestedState() needs the input \"RequestedState\"".into()),
    };
    Some(Ok(Some((
        Path::resource(software::ID, dm_core::InstanceId(row), resource),
        String::new(),
    ))))
}

/// A command of a declared TR-181 object (a `<command>` of its DM
/// document, [`dm_cwmp::mapping::commands`]): an Execute of its resource,
/// which the tree hands to the object's provider with the inputs as a
/// JSON object (`{"Delay":"5"}`, empty without inputs). The answer says
/// the provider took it, as LwM2M's 2.04 Changed does; a provider that is
/// not running refuses it (7022).
fn declared_action(operate: &usp::Operate) -> Option<Result<TreeExecute, UspError>> {
    let (binding, instance) = dm_cwmp::mapping::commands()
        .iter()
        .find_map(|c| Some((c, c.instance_of(&operate.command)?)))?;
    if let Some(name) = operate
        .input_args
        .keys()
        .find(|name| !binding.inputs.contains(name))
    {
        return Some(Err(UspError::new(
            Code::INVALID_COMMAND_ARGUMENTS,
            format!("{} has no input {name:?}", operate.command),
        )));
    }
    let arguments = if operate.input_args.is_empty() {
        String::new()
    } else {
        let inputs: BTreeMap<&String, &String> = operate.input_args.iter().collect();
        serde_json::to_string(&inputs).unwrap_or_default()
    };
    Some(Ok(Some((
        Path::resource(binding.object, instance, binding.resource),
        arguments,
    ))))
}

/// The OperateResp of a synchronous command done: no output arguments.
pub fn operate_done(msg_id: String, command: &str) -> usp::Msg {
    use usp::operate_resp::operation_result::{OperationResp, OutputArgs};
    response(
        msg_id,
        MsgType::OperateResp,
        RespType::OperateResp(usp::OperateResp {
            operation_results: vec![usp::operate_resp::OperationResult {
                executed_command: command.to_owned(),
                operation_resp: Some(OperationResp::ReqOutputArgs(OutputArgs::default())),
            }],
        }),
    )
}

/// The instance number of `Device.LocalAgent.Request.N.Cancel()`.
fn request_to_cancel(command: &str) -> Option<u16> {
    row_command(command, "Device.LocalAgent.Request.", ".Cancel()")
}

/// The instance number N of `PREFIX` N `SUFFIX`.
fn row_command(command: &str, prefix: &str, suffix: &str) -> Option<u16> {
    let number = command.strip_prefix(prefix)?.strip_suffix(suffix)?;
    dm_cwmp::mapping::instance_number(number)
}

/// The OperateResp of an asynchronous command started: the Request row
/// that stands for it (TR-369 §Operate, `req_obj_path`).
pub fn operate_started(msg_id: String, command: &str, request: &str) -> usp::Msg {
    use usp::operate_resp::operation_result::OperationResp;
    response(
        msg_id,
        MsgType::OperateResp,
        RespType::OperateResp(usp::OperateResp {
            operation_results: vec![usp::operate_resp::OperationResult {
                executed_command: command.to_owned(),
                operation_resp: Some(OperationResp::ReqObjPath(request.to_owned())),
            }],
        }),
    )
}

/// A write request waiting for its host writes.
#[derive(Debug)]
pub struct Pending {
    host: rpc::HostRpc,
    writes: Writes,
}

/// Whether `bytes` are a USP record (the WebSocket MTP closes the
/// connection on a message that is not, R-WS.16).
pub fn is_record(bytes: &[u8]) -> bool {
    usp_record::Record::decode(bytes).is_ok()
}

impl Agent {
    /// The WebSocket connect record (R-MTP.6: sent on every new
    /// connection).
    pub fn websocket_connect_record(&self, to: &str) -> Vec<u8> {
        self.encode(
            to,
            RecordType::WebsocketConnect(usp_record::WebSocketConnectRecord {}),
        )
    }

    pub fn new(endpoint_id: impl Into<String>) -> Agent {
        Agent {
            endpoint_id: endpoint_id.into(),
        }
    }

    pub fn endpoint_id(&self) -> &str {
        &self.endpoint_id
    }

    /// Reads a record an MTP received. Never panics, whatever the bytes.
    pub fn receive(&self, bytes: &[u8]) -> Incoming {
        let record = match usp_record::Record::decode(bytes) {
            Ok(record) => record,
            // Nobody to answer: the sender is in the record (TR-369: a
            // record that cannot be parsed is dropped).
            Err(e) => return Incoming::Nothing(format!("not a USP record: {e}")),
        };
        // A record for another endpoint is not answered (R-MTP.? / §E2E:
        // the to_id names this agent).
        if record.to_id != self.endpoint_id {
            return Incoming::Nothing(format!(
                "a record for {:?}, not for this agent",
                record.to_id
            ));
        }
        let from = record.from_id.clone();
        if from.is_empty() {
            return Incoming::Nothing("a record with no from_id".into());
        }
        let reply = |code: Code, why: String| Incoming::Reply {
            to: from.clone(),
            record: self.disconnect_record(&from, code, &why),
            why,
        };
        if record.payload_security != usp_record::record::PayloadSecurity::Plaintext as i32 {
            return reply(
                Code::SECURE_SESSION_NOT_SUPPORTED,
                "the agent does not support secure message exchange (TLS12 payload security)"
                    .into(),
            );
        }
        let payload = match record.record_type {
            Some(RecordType::NoSessionContext(no_session)) => no_session.payload,
            Some(RecordType::SessionContext(_)) => {
                return reply(
                    Code::SESSION_CONTEXT_NOT_ALLOWED,
                    "the agent does not support session context records".into(),
                );
            }
            Some(RecordType::Disconnect(d)) => {
                return Incoming::Nothing(format!(
                    "{from} disconnected: {} ({})",
                    d.reason, d.reason_code
                ));
            }
            Some(_) => return Incoming::Nothing(format!("a connect record from {from}")),
            None => {
                return reply(
                    Code::INVALID_RECORD_VALUE,
                    "a record with no record type".into(),
                );
            }
        };
        let msg = match usp::Msg::decode(payload.as_slice()) {
            Ok(msg) => msg,
            Err(e) => {
                let why = format!("the payload is not a USP message: {e}");
                let error = error_msg(
                    String::new(),
                    &UspError::new(Code::MESSAGE_FAILED, why.clone()),
                );
                return Incoming::Reply {
                    to: from.clone(),
                    record: self.record(&from, &error),
                    why,
                };
            }
        };
        let msg_id = msg.header.map(|h| h.msg_id).unwrap_or_default();
        match msg.body.and_then(|b| b.msg_body) {
            Some(usp::body::MsgBody::Request(usp::Request {
                req_type: Some(body),
            })) => Incoming::Request(Request { from, msg_id, body }),
            Some(usp::body::MsgBody::Request(_)) | None => {
                let why = format!("message {msg_id:?} has no request");
                let error = error_msg(msg_id, &UspError::new(Code::MESSAGE_FAILED, why.clone()));
                Incoming::Reply {
                    to: from.clone(),
                    record: self.record(&from, &error),
                    why,
                }
            }
            Some(usp::body::MsgBody::Response(usp::Response {
                resp_type: Some(RespType::NotifyResp(_)),
            })) => Incoming::NotifyResp { from, msg_id },
            Some(usp::body::MsgBody::Response(_)) => {
                Incoming::Nothing(format!("a response from {from} ({msg_id})"))
            }
            Some(usp::body::MsgBody::Error(e)) => Incoming::Nothing(format!(
                "an error from {from} ({msg_id}): {} {}",
                e.err_code, e.err_msg
            )),
        }
    }

    /// `msg` in a record to `to`, encoded.
    pub fn record(&self, to: &str, msg: &usp::Msg) -> Vec<u8> {
        self.encode(
            to,
            RecordType::NoSessionContext(usp_record::NoSessionContextRecord {
                payload: msg.encode_to_vec(),
            }),
        )
    }

    /// The MQTT connect record (R-MTP.6: sent on every new connection):
    /// which topic the agent listens on.
    pub fn mqtt_connect_record(&self, to: &str, subscribed_topic: &str) -> Vec<u8> {
        self.encode(
            to,
            RecordType::MqttConnect(usp_record::MqttConnectRecord {
                version: usp_record::mqtt_connect_record::MqttVersion::V5 as i32,
                subscribed_topic: subscribed_topic.to_owned(),
            }),
        )
    }

    fn disconnect_record(&self, to: &str, code: Code, reason: &str) -> Vec<u8> {
        self.encode(
            to,
            RecordType::Disconnect(usp_record::DisconnectRecord {
                reason: reason.to_owned(),
                reason_code: code.0,
            }),
        )
    }

    fn encode(&self, to: &str, record_type: RecordType) -> Vec<u8> {
        usp_record::Record {
            version: VERSION.into(),
            to_id: to.to_owned(),
            from_id: self.endpoint_id.clone(),
            payload_security: usp_record::record::PayloadSecurity::Plaintext as i32,
            mac_signature: Vec::new(),
            sender_cert: Vec::new(),
            record_type: Some(record_type),
        }
        .encode_to_vec()
    }
}

fn msg(msg_id: String, msg_type: MsgType, body: usp::body::MsgBody) -> usp::Msg {
    usp::Msg {
        header: Some(usp::Header {
            msg_id,
            msg_type: msg_type as i32,
        }),
        body: Some(usp::Body {
            msg_body: Some(body),
        }),
    }
}

fn response(msg_id: String, msg_type: MsgType, resp: RespType) -> usp::Msg {
    msg(
        msg_id,
        msg_type,
        usp::body::MsgBody::Response(usp::Response {
            resp_type: Some(resp),
        }),
    )
}

/// An Error message.
pub fn error_msg(msg_id: String, error: &UspError) -> usp::Msg {
    msg(
        msg_id,
        MsgType::Error,
        usp::body::MsgBody::Error(usp::Error {
            err_code: error.code.0,
            err_msg: error.message.clone(),
            param_errs: error
                .params
                .iter()
                .map(|(path, code, message)| usp::error::ParamError {
                    param_path: path.clone(),
                    err_code: code.0,
                    err_msg: message.clone(),
                })
                .collect(),
        }),
    )
}

impl Request {
    /// The request's type, for the log.
    pub fn kind(&self) -> &'static str {
        kind_of(&self.body)
    }

    /// The tree paths whose values a Get reads from the host (live
    /// values), to fetch off the tree's lock before [`Request::start`].
    pub fn reads(&self, tree: &Tree, origin: Origin) -> Vec<Path> {
        let ReqType::Get(get) = &self.body else {
            return Vec::new();
        };
        if get.param_paths.len() > MAX_REQUEST_PATHS {
            return Vec::new();
        }
        let allowed = Permissions::of(tree, origin);
        let names: Vec<String> = get
            .param_paths
            .iter()
            .filter_map(|text| {
                let expression = path::parse(text).ok()?;
                path::resolve(tree, origin, text, &expression).ok()
            })
            .flatten()
            // Nothing is read from the host for what the role does not
            // let the controller read.
            .filter(|name| allowed.may_read_at_or_below(name))
            .collect();
        // The values, and the tables read on demand (processes,
        // neighbours) the names list.
        let mut paths = rpc::existing_paths(tree, &names);
        paths.extend(rpc::tables_listed(tree, &names));
        paths
    }

    /// Answers the request on behalf of `origin`: at once, or after host
    /// writes ([`Step::Host`]).
    pub fn start(self, tree: &mut Tree, origin: Origin) -> Step {
        let msg_id = self.msg_id;
        // What the controller's role lets it do (TR-369 §Access control),
        // read afresh for each request.
        let allowed = Permissions::of(tree, origin);
        let too_many = |n: usize| {
            (n > MAX_REQUEST_PATHS).then(|| {
                UspError::new(
                    Code::RESOURCES_EXCEEDED,
                    format!("{n} paths in one request; at most {MAX_REQUEST_PATHS}"),
                )
            })
        };
        match self.body {
            ReqType::Get(get) => Step::Done(match too_many(get.param_paths.len()) {
                Some(error) => error_msg(msg_id, &error),
                None => response(
                    msg_id,
                    MsgType::GetResp,
                    RespType::GetResp(answer_get(tree, origin, &get, &allowed)),
                ),
            }),
            ReqType::GetInstances(get) => Step::Done(match too_many(get.obj_paths.len()) {
                Some(error) => error_msg(msg_id, &error),
                None => response(
                    msg_id,
                    MsgType::GetInstancesResp,
                    RespType::GetInstancesResp(answer_get_instances(tree, origin, &get, &allowed)),
                ),
            }),
            ReqType::GetSupportedProtocol(_) => Step::Done(response(
                msg_id,
                MsgType::GetSupportedProtoResp,
                RespType::GetSupportedProtocolResp(usp::GetSupportedProtocolResp {
                    agent_supported_protocol_versions: SUPPORTED_VERSIONS.into(),
                }),
            )),
            ReqType::Set(set) => match too_many(set.update_objs.len()) {
                Some(error) => Step::Done(error_msg(msg_id, &error)),
                None => Writes::set(tree, msg_id, origin, set, &allowed).run(tree),
            },
            ReqType::Add(add) => match too_many(add.create_objs.len()) {
                Some(error) => Step::Done(error_msg(msg_id, &error)),
                None => Writes::add(tree, msg_id, origin, add, &allowed).run(tree),
            },
            ReqType::Delete(delete) => match too_many(delete.obj_paths.len()) {
                Some(error) => Step::Done(error_msg(msg_id, &error)),
                None => Writes::delete(tree, msg_id, origin, delete, &allowed).run(tree),
            },
            ReqType::Operate(operate) => {
                if !allowed.allows(&operate.command, Kind::CommandEvent, Op::Execute) {
                    return Step::Done(error_msg(msg_id, &denied(&operate.command, "operate")));
                }
                answer_operate(tree, origin, msg_id, operate)
            }
            ReqType::GetSupportedDm(get) => Step::Done(match too_many(get.obj_paths.len()) {
                Some(error) => error_msg(msg_id, &error),
                None => response(
                    msg_id,
                    MsgType::GetSupportedDmResp,
                    RespType::GetSupportedDmResp(crate::supported::answer(tree, &get, &allowed)),
                ),
            }),
            other => {
                let kind = kind_of(&other);
                Step::Done(error_msg(
                    msg_id,
                    &UspError::new(
                        Code::MESSAGE_NOT_SUPPORTED,
                        format!("the agent does not answer {kind} yet"),
                    ),
                ))
            }
        }
    }
}

impl Pending {
    /// The host writes to make (once), off the tree's lock.
    pub fn take_work(&mut self) -> dm_core::HostWork {
        self.host.take_work()
    }

    /// Goes on with the outcome of the host writes: the next step, and
    /// the writes' undo to run off the lock when the tree could not take
    /// the change.
    pub fn resume(
        self: Box<Self>,
        tree: &mut Tree,
        outcome: Result<dm_core::HostWork, dm_core::Error>,
    ) -> (Step, Option<dm_core::HostWork>) {
        let Pending { host, mut writes } = *self;
        let (result, undo) = host.complete(tree, outcome);
        writes.settle(result.map_err(|f| UspError::from_fault(&f)));
        (writes.run(tree), undo)
    }
}

/// A request type's name, for the log and errors.
fn kind_of(body: &ReqType) -> &'static str {
    match body {
        ReqType::Get(_) => "Get",
        ReqType::GetSupportedDm(_) => "GetSupportedDM",
        ReqType::GetInstances(_) => "GetInstances",
        ReqType::Set(_) => "Set",
        ReqType::Add(_) => "Add",
        ReqType::Delete(_) => "Delete",
        ReqType::Operate(_) => "Operate",
        ReqType::Notify(_) => "Notify",
        ReqType::GetSupportedProtocol(_) => "GetSupportedProtocol",
        ReqType::Register(_) => "Register",
        ReqType::Deregister(_) => "Deregister",
    }
}

// --- Operate ---

/// Operate (TR-369 §Operate) of the commands the agent carries out:
/// which it is and what it takes, checked; the driver carries it out
/// ([`Step::Command`]), answering at once for the synchronous ones with
/// a `response`.
fn answer_operate(tree: &mut Tree, origin: Origin, msg_id: String, operate: usp::Operate) -> Step {
    let command = operate.command.as_str();
    // The agent's own commands first: a declared one of the same path
    // never shadows them.
    let on_tree = execution_unit_action(tree, &operate).or_else(|| {
        (!crate::supported::is_built_in(command))
            .then(|| declared_action(&operate))
            .flatten()
    });
    if let Some(execute) = on_tree {
        let done = execute.and_then(|execute| match execute {
            Some((path, arguments)) => tree
                .execute(origin, &path, &arguments)
                .map_err(|e| executed_error(command, e)),
            None => Ok(()),
        });
        return match done {
            Ok(()) => Step::Command(Command {
                action: Action::Executed,
                response: operate
                    .send_resp
                    .then(|| operate_done(msg_id.clone(), command)),
                msg_id,
                command_key: operate.command_key,
                send_resp: operate.send_resp,
                writes: Vec::new(),
            }),
            Err(error) => Step::Done(error_msg(msg_id, &error)),
        };
    }
    // (the action, its object's writes, whether it answers at once)
    let accepted: Result<(Action, Vec<ParameterValueIn>, bool), UspError> =
        if let Some(action) = software_action(tree, &operate) {
            action.map(|a| (a, Vec::new(), false))
        } else if let Some(request) = request_to_cancel(command) {
            Ok((Action::Cancel(request), Vec::new(), false))
        } else if let Some(controller) = row_command(
            command,
            "Device.LocalAgent.Controller.",
            ".SendOnBoardRequest()",
        ) {
            Ok((Action::OnBoard(controller), Vec::new(), true))
        } else if let Some(action) = firmware_action(&operate) {
            action.map(|a| (a, Vec::new(), false))
        } else if let Some(test) = crate::commands::find(command) {
            test.start(&operate.input_args)
                .map(|writes| (Action::Start(test), writes, false))
        } else {
            // Both synchronous in TR-181 2.16: the OperateResp is their
            // result, with no output arguments.
            match command {
                "Device.Reboot()" => Ok((Action::Reboot, Vec::new(), true)),
                "Device.FactoryReset()" => Ok((Action::FactoryReset, Vec::new(), true)),
                other if other.ends_with("()") => Err(UspError::new(
                    Code::INVALID_PATH,
                    format!("{other}: the agent has no such command"),
                )),
                other => Err(UspError::new(
                    Code::INVALID_PATH,
                    format!("{other}: not a command (it ends in `()`)"),
                )),
            }
        };
    match accepted {
        Err(error) => Step::Done(error_msg(msg_id, &error)),
        Ok((action, writes, at_once)) => {
            let response = (at_once && operate.send_resp)
                .then(|| operate_done(msg_id.clone(), &operate.command));
            Step::Command(Command {
                action,
                msg_id,
                command_key: operate.command_key,
                send_resp: operate.send_resp,
                response,
                writes,
            })
        }
    }
}

/// The error of an Execute the tree refused, for `command`.
fn executed_error(command: &str, error: dm_core::Error) -> UspError {
    use dm_core::Error;
    let code = match &error {
        Error::ObjectNotFound(_)
        | Error::InstanceNotFound(_)
        | Error::ResourceNotFound(_)
        | Error::NotSupported(_)
        | Error::NotExecutable(_) => Code::INVALID_PATH,
        Error::AccessDenied { .. } => Code::PERMISSION_DENIED,
        Error::Storage(_) => Code::INTERNAL_ERROR,
        _ => Code::COMMAND_FAILURE,
    };
    let why = match error {
        Error::Rejected { reason, .. } => reason,
        other => other.to_string(),
    };
    UspError::new(code, format!("{command}: {why}"))
}

// --- Get ---

/// The most parameter values one Get answers, over all its paths (a
/// record of them stays well under the MTP's packet size).
pub const MAX_GET_VALUES: usize = 16_384;

/// 7006: the controller's role does not let it `what` `path`.
fn denied(path: &str, what: &str) -> UspError {
    UspError::new(
        Code::PERMISSION_DENIED,
        format!("{path}: the controller's role does not let it {what} this"),
    )
}

fn answer_get(tree: &Tree, origin: Origin, get: &usp::Get, allowed: &Permissions) -> usp::GetResp {
    use usp::get_resp::{RequestedPathResult, ResolvedPathResult};
    let max_depth = get.max_depth as usize;
    let mut budget = MAX_GET_VALUES;
    let req_path_results = get
        .param_paths
        .iter()
        .map(|requested| {
            let mut result = RequestedPathResult {
                requested_path: requested.clone(),
                ..Default::default()
            };
            // Parameters the role does not let it read are left out; a
            // path naming one parameter only is refused.
            let readable =
                get_values(tree, origin, requested, budget).and_then(|(roots, values)| {
                    let total = values.len();
                    let values: Vec<(String, String)> = values
                        .into_iter()
                        .filter(|(name, _)| allowed.allows(name, Kind::Param, Op::Read))
                        .collect();
                    // TR-369: a parameter named exactly is refused; what a
                    // wildcard or a search finds is left out.
                    let exact = !requested.ends_with('.') && !requested.contains(['*', '[']);
                    if total > 0 && values.is_empty() && exact {
                        return Err(denied(requested, "read"));
                    }
                    Ok((roots, values, total))
                });
            match readable {
                Err(error) => {
                    result.err_code = error.code.0;
                    result.err_msg = error.message;
                }
                Ok((roots, values, total)) => {
                    budget -= total;
                    // One result per object, its parameters relative to
                    // it (TR-369 §Get: resolved_path is an object path).
                    let mut by_object: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                    for (name, value) in values {
                        let Some(dot) = name.rfind('.') else { continue };
                        let (parent, leaf) = (&name[..=dot], &name[dot + 1..]);
                        // max_depth counts from the object the path
                        // resolved to (1: its own parameters only).
                        if max_depth > 0
                            && let Some(root) = root_of(&roots, parent)
                            && depth_below(root, parent) >= max_depth
                        {
                            continue;
                        }
                        by_object
                            .entry(parent.to_owned())
                            .or_default()
                            .insert(leaf.to_owned(), value);
                    }
                    result.resolved_path_results = by_object
                        .into_iter()
                        .map(|(resolved_path, result_params)| ResolvedPathResult {
                            resolved_path,
                            result_params,
                        })
                        .collect();
                }
            }
            result
        })
        .collect();
    usp::GetResp { req_path_results }
}

/// How many objects `object` is below `root` (0: itself).
fn depth_below(root: &str, object: &str) -> usize {
    let segments = |s: &str| s.trim_end_matches('.').split('.').count();
    segments(object).saturating_sub(segments(root))
}

/// The resolved object `object` is at or below: the longest of `roots`
/// it starts with.
fn root_of<'r>(roots: &'r std::collections::HashSet<String>, object: &str) -> Option<&'r str> {
    let mut end = object.len();
    loop {
        if let Some(root) = roots.get(&object[..end]) {
            return Some(root);
        }
        end = object[..end.checked_sub(1)?].rfind('.')? + 1;
    }
}

/// The values a requested path names, by full name, at most `budget`;
/// and the objects it resolved to (for max_depth).
#[allow(clippy::type_complexity)]
fn get_values(
    tree: &Tree,
    origin: Origin,
    requested: &str,
    budget: usize,
) -> Result<(std::collections::HashSet<String>, Vec<(String, String)>), UspError> {
    let expression = path::parse(requested)?;
    let resolved = path::resolve(tree, origin, requested, &expression)?;
    // One walk of the tree for all of them; an instance number that
    // names no instance now finds nothing there.
    let values = rpc::existing_values_as(tree, origin, &resolved, budget).map_err(|fault| {
        if fault.code == 9004 {
            UspError::new(
                Code::RESOURCES_EXCEEDED,
                format!("{requested}: the Get would answer more than {MAX_GET_VALUES} parameters"),
            )
        } else {
            UspError::from_fault(&fault)
        }
    })?;
    let roots = resolved.into_iter().filter(|r| r.ends_with('.')).collect();
    Ok((
        roots,
        values.into_iter().map(|p| (p.name, p.value)).collect(),
    ))
}

// --- GetInstances ---

/// The values of an instance's unique keys (TR-181 `uniqueKey`, the
/// sets whose parameters are all served), read as `origin`: what
/// GetInstances and Add answer with each instance.
pub fn unique_keys_of(tree: &Tree, origin: Origin, instance: &str) -> BTreeMap<String, String> {
    let Some(table) = instance
        .strip_suffix('.')
        .and_then(|p| p.rsplit_once('.'))
        .map(|(table, _)| format!("{table}."))
    else {
        return BTreeMap::new();
    };
    // Each key read on its own, through the mapping: no walk of the
    // tree per instance.
    dm_cwmp::mapping::unique_keys(&table)
        .iter()
        .flat_map(|set| set.iter())
        .filter_map(|key| {
            let value = rpc::value_as(tree, origin, &format!("{instance}{key}"))?;
            Some(((*key).to_owned(), value))
        })
        .collect()
}

fn answer_get_instances(
    tree: &Tree,
    origin: Origin,
    get: &usp::GetInstances,
    allowed: &Permissions,
) -> usp::GetInstancesResp {
    use usp::get_instances_resp::{CurrInstance, RequestedPathResult};
    let req_path_results = get
        .obj_paths
        .iter()
        .map(|requested| {
            let mut result = RequestedPathResult {
                requested_path: requested.clone(),
                ..Default::default()
            };
            match instances_below(tree, origin, requested, get.first_level_only) {
                Ok(paths) => {
                    result.curr_insts = paths
                        .into_iter()
                        .filter(|p| allowed.allows(p, Kind::InstantiatedObj, Op::Read))
                        .map(|instantiated_obj_path| CurrInstance {
                            // Keys it may not read are not shown.
                            unique_keys: unique_keys_of(tree, origin, &instantiated_obj_path)
                                .into_iter()
                                .filter(|(key, _)| {
                                    let at = format!("{instantiated_obj_path}{key}");
                                    allowed.allows(&at, Kind::Param, Op::Read)
                                })
                                .collect(),
                            instantiated_obj_path,
                        })
                        .collect();
                }
                Err(error) => {
                    result.err_code = error.code.0;
                    result.err_msg = error.message;
                }
            }
            result
        })
        .collect();
    usp::GetInstancesResp { req_path_results }
}

/// The instances at and below what `requested` names (TR-369
/// §GetInstances): a table's instances, and with `first_level_only`
/// false, the instances of the tables inside them.
fn instances_below(
    tree: &Tree,
    origin: Origin,
    requested: &str,
    first_level_only: bool,
) -> Result<Vec<String>, UspError> {
    let expression = path::parse(requested)?;
    if !expression.object {
        return Err(UspError::new(
            Code::INVALID_PATH,
            format!("{requested}: not an object's path"),
        ));
    }
    let mut out = Vec::new();
    for object in path::resolve(tree, origin, requested, &expression)? {
        let names = match rpc::get_parameter_names_within(
            tree,
            &object,
            false,
            rpc::MAX_RESPONSE_ENTRIES,
        ) {
            Ok(names) => names,
            Err(fault) if fault.code == 9005 => continue,
            Err(fault) => return Err(UspError::from_fault(&fault)),
        };
        let base = object.trim_end_matches('.').split('.').count();
        for (name, _) in names {
            if !path::is_instance_path(&name) {
                continue;
            }
            let depth = name.trim_end_matches('.').split('.').count();
            // The object itself when it is an instance; then below it.
            if first_level_only && depth > base + 1 {
                continue;
            }
            if name == object && !path::is_instance_path(&object) {
                continue;
            }
            out.push(name);
        }
    }
    out.dedup();
    Ok(out)
}

// --- Set, Add, Delete ---

/// One parameter a Set or Add writes: its object, its name relative to
/// it, the value, and whether the object's update fails with it.
#[derive(Clone, Debug)]
struct Setting {
    object: String,
    param: String,
    value: String,
    required: bool,
}

impl Setting {
    fn full(&self) -> String {
        format!("{}{}", self.object, self.param)
    }
}

/// A requested path's part of a write: what it resolved to.
#[derive(Debug)]
struct Part {
    requested: String,
    /// Set: the objects updated; Add: the table; Delete: the instances.
    objects: Vec<String>,
    settings: Vec<Setting>,
    /// Settings left out because they failed and were not required.
    dropped: Vec<(String, Code, String)>,
    /// Resolution failed.
    failed: Option<UspError>,
    /// Add: the instance made; Delete: the instances deleted.
    made: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteKind {
    Set,
    Add,
    Delete,
}

/// A write request's run: its units of work (one transaction each), in
/// order.
#[derive(Debug)]
struct Writes {
    msg_id: String,
    kind: WriteKind,
    origin: Origin,
    allow_partial: bool,
    parts: Vec<Part>,
    /// Units still to run: each the parts it writes together.
    queue: VecDeque<Vec<usize>>,
    /// The unit running now, and whether it was retried without the
    /// optional settings that failed.
    running: Option<(Vec<usize>, bool)>,
    /// The first failure of an all-or-nothing request.
    failure: Option<UspError>,
    /// An all-or-nothing Add undoing the instances it made before one
    /// failed.
    undoing: bool,
}

impl Writes {
    fn new(msg_id: String, kind: WriteKind, origin: Origin, allow_partial: bool) -> Writes {
        Writes {
            msg_id,
            kind,
            origin,
            allow_partial,
            parts: Vec::new(),
            queue: VecDeque::new(),
            running: None,
            failure: None,
            undoing: false,
        }
    }

    fn part(requested: &str) -> Part {
        Part {
            requested: requested.to_owned(),
            objects: Vec::new(),
            settings: Vec::new(),
            dropped: Vec::new(),
            failed: None,
            made: Vec::new(),
        }
    }

    /// The units: each part alone with allow_partial, else all together
    /// (Add: one after the other, undone if one fails).
    fn plan(&mut self) {
        let ready: Vec<usize> = (0..self.parts.len())
            .filter(|&at| self.parts[at].failed.is_none())
            .collect();
        if let Some(failed) = self.parts.iter().find_map(|p| p.failed.clone())
            && !self.allow_partial
        {
            self.failure = Some(failed);
            return;
        }
        if self.allow_partial || self.kind == WriteKind::Add {
            self.queue = ready.into_iter().map(|at| vec![at]).collect();
        } else if !ready.is_empty() {
            self.queue.push_back(ready);
        }
    }

    fn set(
        tree: &Tree,
        msg_id: String,
        origin: Origin,
        set: usp::Set,
        allowed: &Permissions,
    ) -> Writes {
        let mut writes = Writes::new(msg_id, WriteKind::Set, origin, set.allow_partial);
        let mut total = 0;
        for update in &set.update_objs {
            let mut part = Writes::part(&update.obj_path);
            match resolve_objects(tree, origin, &update.obj_path) {
                Ok(objects) => {
                    'objects: for object in &objects {
                        for s in &update.param_settings {
                            // Bounded before anything is kept for it.
                            if total + part.settings.len() + part.dropped.len() >= MAX_SETTINGS {
                                total = MAX_SETTINGS + 1;
                                break 'objects;
                            }
                            // Not the role's to write: the object fails
                            // with it when required, else it is left out.
                            let full = format!("{object}{}", s.param);
                            if !allowed.allows(&full, Kind::Param, Op::Write) {
                                let error = denied(&full, "write");
                                if s.required {
                                    part.failed = Some(error);
                                } else {
                                    part.dropped.push((full, error.code, error.message));
                                }
                                continue;
                            }
                            part.settings.push(Setting {
                                object: object.clone(),
                                param: s.param.clone(),
                                value: s.value.clone(),
                                required: s.required,
                            });
                        }
                    }
                    part.objects = objects;
                }
                Err(error) => part.failed = Some(error),
            }
            total += part.settings.len() + part.dropped.len();
            if total > MAX_SETTINGS {
                part.settings.clear();
                part.dropped.clear();
                part.failed = Some(UspError::new(
                    Code::RESOURCES_EXCEEDED,
                    format!("the Set writes more than {MAX_SETTINGS} parameters"),
                ));
            }
            writes.parts.push(part);
        }
        writes.plan();
        writes
    }

    fn add(
        tree: &Tree,
        msg_id: String,
        origin: Origin,
        add: usp::Add,
        allowed: &Permissions,
    ) -> Writes {
        let mut writes = Writes::new(msg_id, WriteKind::Add, origin, add.allow_partial);
        for create in &add.create_objs {
            let mut part = Writes::part(&create.obj_path);
            match resolve_objects(tree, origin, &create.obj_path) {
                // The object as its supported path names it (`X.{i}.`), and
                // each parameter written in the new instance.
                Ok(tables)
                    if tables.len() == 1
                        && !allowed.allows(
                            &format!("{}{{i}}.", tables[0]),
                            Kind::Obj,
                            Op::Write,
                        ) =>
                {
                    part.failed = Some(denied(&tables[0], "add to"));
                }
                Ok(tables)
                    if tables.len() == 1
                        && let Some(s) = create.param_settings.iter().find(|s| {
                            let at = format!("{}{{i}}.{}", tables[0], s.param);
                            !allowed.allows(&at, Kind::Param, Op::Write)
                        }) =>
                {
                    part.failed = Some(denied(&format!("{}{{i}}.{}", tables[0], s.param), "write"));
                }
                Ok(tables) if tables.len() == 1 => {
                    part.settings = create
                        .param_settings
                        .iter()
                        .map(|s| Setting {
                            object: String::new(),
                            param: s.param.clone(),
                            value: s.value.clone(),
                            required: s.required,
                        })
                        .collect();
                    part.objects = tables;
                }
                Ok(tables) => {
                    part.failed = Some(UspError::new(
                        Code::OBJECT_NOT_CREATABLE,
                        format!(
                            "{} names {} tables; an Add names one",
                            create.obj_path,
                            tables.len()
                        ),
                    ));
                }
                Err(error) => part.failed = Some(error),
            }
            writes.parts.push(part);
        }
        writes.plan();
        writes
    }

    fn delete(
        tree: &Tree,
        msg_id: String,
        origin: Origin,
        delete: usp::Delete,
        allowed: &Permissions,
    ) -> Writes {
        let mut writes = Writes::new(msg_id, WriteKind::Delete, origin, delete.allow_partial);
        for requested in &delete.obj_paths {
            let mut part = Writes::part(requested);
            match resolve_objects(tree, origin, requested) {
                Ok(objects) => {
                    // An instance that is not there is deleted already
                    // (TR-369 §Delete: not an error).
                    part.objects = objects
                        .into_iter()
                        .filter(|o| instance_exists(tree, o))
                        .collect();
                    if let Some(table) = part.objects.iter().find(|o| !path::is_instance_path(o)) {
                        part.failed = Some(UspError::new(
                            Code::OBJECT_NOT_DELETABLE,
                            format!("{table} is not an instance"),
                        ));
                    } else if let Some(instance) = part
                        .objects
                        .iter()
                        .find(|o| !allowed.allows(o, Kind::InstantiatedObj, Op::Write))
                    {
                        part.failed = Some(denied(instance, "delete"));
                    }
                }
                Err(error) => part.failed = Some(error),
            }
            writes.parts.push(part);
        }
        writes.plan();
        writes
    }

    /// Runs units until one needs the host or all are done.
    fn run(mut self, tree: &mut Tree) -> Step {
        loop {
            if self.failure.is_some() && !self.allow_partial && !self.undoing {
                if self.kind == WriteKind::Add && self.start_undo() {
                    continue;
                }
                return Step::Done(self.answer(tree));
            }
            let Some((unit, retried)) = self
                .running
                .take()
                .or_else(|| self.queue.pop_front().map(|unit| (unit, false)))
            else {
                return Step::Done(self.answer(tree));
            };
            let written = self.prepare(tree, &unit);
            self.running = Some((unit, retried));
            match written {
                Written::Done(result) => self.settle(result.map_err(|f| UspError::from_fault(&f))),
                Written::Host(host) => {
                    return Step::Host(Box::new(Pending { host, writes: self }));
                }
            }
        }
    }

    /// The undo of an all-or-nothing Add that failed part way: the
    /// instances it made are deleted, in one transaction.
    fn start_undo(&mut self) -> bool {
        let made: Vec<usize> = (0..self.parts.len())
            .filter(|&at| !self.parts[at].made.is_empty())
            .collect();
        self.queue.clear();
        if made.is_empty() {
            return false;
        }
        self.undoing = true;
        self.running = Some((made, true));
        true
    }

    fn prepare(&mut self, tree: &mut Tree, unit: &[usize]) -> Written {
        if self.kind == WriteKind::Delete && !self.undoing {
            // What is there now, each once: an earlier unit may have
            // deleted some, and two paths may name the same instance.
            let mut seen = std::collections::HashSet::new();
            for &at in unit {
                self.parts[at]
                    .objects
                    .retain(|o| instance_exists(tree, o) && seen.insert(o.clone()));
            }
        }
        let parts = unit.iter().map(|&at| &self.parts[at]);
        if self.undoing {
            let made: Vec<String> = parts.flat_map(|p| p.made.clone()).collect();
            return rpc::delete_objects_prepared(tree, Origin::Agent, &made);
        }
        match self.kind {
            WriteKind::Set => {
                let values: Vec<ParameterValueIn> = parts
                    .flat_map(|p| p.settings.iter())
                    .map(|s| ParameterValueIn {
                        name: s.full(),
                        value: s.value.clone(),
                        xsd_type: None,
                    })
                    .collect();
                if values.is_empty() {
                    return Written::Done(Ok(WriteResult::Status(0)));
                }
                rpc::set_parameter_values_by_prepared(tree, self.origin, &values, None)
            }
            WriteKind::Add => {
                let part = &self.parts[unit[0]];
                let values: Vec<(String, String)> = part
                    .settings
                    .iter()
                    .map(|s| (s.param.clone(), s.value.clone()))
                    .collect();
                rpc::add_object_with_prepared(tree, self.origin, &part.objects[0], &values)
            }
            WriteKind::Delete => {
                let objects: Vec<String> = parts.flat_map(|p| p.objects.clone()).collect();
                if objects.is_empty() {
                    return Written::Done(Ok(WriteResult::Status(0)));
                }
                rpc::delete_objects_prepared(tree, self.origin, &objects)
            }
        }
    }

    /// The running unit's outcome.
    fn settle(&mut self, result: Result<WriteResult, UspError>) {
        let Some((unit, retried)) = self.running.take() else {
            return;
        };
        if self.undoing {
            self.undoing = false;
            for &at in &unit {
                self.parts[at].made.clear();
            }
            return;
        }
        match result {
            Ok(outcome) => {
                for &at in &unit {
                    let part = &mut self.parts[at];
                    match (self.kind, outcome) {
                        (WriteKind::Add, WriteResult::Added { instance, .. }) => {
                            part.made = vec![format!("{}{instance}.", part.objects[0])];
                        }
                        (WriteKind::Delete, _) => part.made = part.objects.clone(),
                        _ => {}
                    }
                }
            }
            Err(mut error) => {
                if self.kind == WriteKind::Add {
                    // Named in the new instance (`Table.5.Alias`): by
                    // their name relative to it, as the request has them.
                    let table = &self.parts[unit[0]].objects[0];
                    for (name, ..) in &mut error.params {
                        if let Some((_, relative)) = name
                            .strip_prefix(table.as_str())
                            .and_then(|rest| rest.split_once('.'))
                        {
                            *name = relative.to_owned();
                        }
                    }
                }
                // Settings that failed but were not required are left
                // out and the unit tried again, once (TR-369 §Set,
                // `required`).
                let failed_names: Vec<&str> =
                    error.params.iter().map(|(n, ..)| n.as_str()).collect();
                let optional_only = !retried
                    && !failed_names.is_empty()
                    && failed_names.iter().all(|name| {
                        unit.iter().any(|&at| {
                            self.parts[at]
                                .settings
                                .iter()
                                .any(|s| !s.required && self.full_name(s) == *name)
                        })
                    });
                if optional_only {
                    for &at in &unit {
                        let kind = self.kind;
                        let part = &mut self.parts[at];
                        let (keep, drop): (Vec<Setting>, Vec<Setting>) = part
                            .settings
                            .drain(..)
                            .partition(|s| !failed_names.contains(&full_name(kind, s).as_str()));
                        part.settings = keep;
                        for s in drop {
                            let name = full_name(kind, &s);
                            if let Some((_, code, message)) =
                                error.params.iter().find(|(n, ..)| *n == name)
                            {
                                part.dropped.push((name, *code, message.clone()));
                            }
                        }
                    }
                    self.running = Some((unit, true));
                    return;
                }
                for &at in &unit {
                    self.parts[at].failed = Some(error.clone());
                }
                if self.failure.is_none() {
                    self.failure = Some(error);
                }
            }
        }
    }

    fn full_name(&self, s: &Setting) -> String {
        full_name(self.kind, s)
    }

    /// The response, or the Error of an all-or-nothing request that
    /// failed.
    fn answer(self, tree: &Tree) -> usp::Msg {
        let msg_id = self.msg_id.clone();
        if !self.allow_partial
            && let Some(failure) = &self.failure
        {
            let mut error = failure.clone();
            if error.params.is_empty()
                && let Some(first) = self.parts.iter().find(|p| p.failed.is_some())
            {
                error.message = format!("{}: {}", first.requested, error.message);
            }
            return error_msg(msg_id, &error);
        }
        match self.kind {
            WriteKind::Set => {
                response(msg_id, MsgType::SetResp, RespType::SetResp(self.set_resp()))
            }
            WriteKind::Add => response(
                msg_id,
                MsgType::AddResp,
                RespType::AddResp(self.add_resp(tree)),
            ),
            WriteKind::Delete => response(
                msg_id,
                MsgType::DeleteResp,
                RespType::DeleteResp(self.delete_resp()),
            ),
        }
    }

    fn set_resp(&self) -> usp::SetResp {
        use usp::set_resp::updated_object_result::OperationStatus;
        use usp::set_resp::updated_object_result::operation_status::{
            OperStatus, OperationFailure, OperationSuccess,
        };
        use usp::set_resp::{
            ParameterError, UpdatedInstanceFailure, UpdatedInstanceResult, UpdatedObjectResult,
        };
        let param_errors = |errors: &mut dyn Iterator<Item = &(String, Code, String)>,
                            object: &str| {
            errors
                .filter_map(|(name, code, message)| {
                    Some(ParameterError {
                        param: name.strip_prefix(object)?.to_owned(),
                        err_code: code.0,
                        err_msg: message.clone(),
                    })
                })
                .collect::<Vec<_>>()
        };
        let updated_obj_results = self
            .parts
            .iter()
            .map(|part| {
                let status = match &part.failed {
                    Some(error) => OperStatus::OperFailure(OperationFailure {
                        err_code: error.code.0,
                        err_msg: error.message.clone(),
                        updated_inst_failures: part
                            .objects
                            .iter()
                            .map(|object| UpdatedInstanceFailure {
                                affected_path: object.clone(),
                                param_errs: param_errors(&mut error.params.iter(), object),
                            })
                            .filter(|f| !f.param_errs.is_empty() || error.params.is_empty())
                            .collect(),
                    }),
                    None => OperStatus::OperSuccess(OperationSuccess {
                        updated_inst_results: part
                            .objects
                            .iter()
                            .map(|object| UpdatedInstanceResult {
                                affected_path: object.clone(),
                                param_errs: param_errors(&mut part.dropped.iter(), object),
                                updated_params: part
                                    .settings
                                    .iter()
                                    .filter(|s| s.object == *object)
                                    .map(|s| (s.param.clone(), s.value.clone()))
                                    .collect(),
                            })
                            .collect(),
                    }),
                };
                UpdatedObjectResult {
                    requested_path: part.requested.clone(),
                    oper_status: Some(OperationStatus {
                        oper_status: Some(status),
                    }),
                }
            })
            .collect();
        usp::SetResp {
            updated_obj_results,
        }
    }

    fn add_resp(&self, tree: &Tree) -> usp::AddResp {
        use usp::add_resp::created_object_result::OperationStatus;
        use usp::add_resp::created_object_result::operation_status::{
            OperStatus, OperationFailure, OperationSuccess,
        };
        use usp::add_resp::{CreatedObjectResult, ParameterError};
        let created_obj_results = self
            .parts
            .iter()
            .map(|part| {
                let status = match (&part.failed, part.made.first()) {
                    (None, Some(made)) => OperStatus::OperSuccess(OperationSuccess {
                        instantiated_path: made.clone(),
                        param_errs: part
                            .dropped
                            .iter()
                            .map(|(name, code, message)| ParameterError {
                                param: name.strip_prefix(made.as_str()).unwrap_or(name).to_owned(),
                                err_code: code.0,
                                err_msg: message.clone(),
                            })
                            .collect(),
                        unique_keys: unique_keys_of(tree, self.origin, made),
                    }),
                    (failed, _) => {
                        let error = failed.clone().unwrap_or_else(|| {
                            UspError::new(Code::OBJECT_NOT_CREATABLE, "not created")
                        });
                        OperStatus::OperFailure(OperationFailure {
                            err_code: error.code.0,
                            err_msg: error.message,
                        })
                    }
                };
                CreatedObjectResult {
                    requested_path: part.requested.clone(),
                    oper_status: Some(OperationStatus {
                        oper_status: Some(status),
                    }),
                }
            })
            .collect();
        usp::AddResp {
            created_obj_results,
        }
    }

    fn delete_resp(&self) -> usp::DeleteResp {
        use usp::delete_resp::DeletedObjectResult;
        use usp::delete_resp::deleted_object_result::OperationStatus;
        use usp::delete_resp::deleted_object_result::operation_status::{
            OperStatus, OperationFailure, OperationSuccess,
        };
        let deleted_obj_results = self
            .parts
            .iter()
            .map(|part| {
                let status = match &part.failed {
                    Some(error) => OperStatus::OperFailure(OperationFailure {
                        err_code: error.code.0,
                        err_msg: error.message.clone(),
                    }),
                    None => OperStatus::OperSuccess(OperationSuccess {
                        affected_paths: part.made.clone(),
                        unaffected_path_errs: Vec::new(),
                    }),
                };
                DeletedObjectResult {
                    requested_path: part.requested.clone(),
                    oper_status: Some(OperationStatus {
                        oper_status: Some(status),
                    }),
                }
            })
            .collect();
        usp::DeleteResp {
            deleted_obj_results,
        }
    }
}

/// A setting's full name as the shared RPCs name it in their faults: an
/// Add's are relative to the new instance, whose number is not known
/// before; they are matched by their relative name.
fn full_name(kind: WriteKind, s: &Setting) -> String {
    match kind {
        WriteKind::Add => s.param.clone(),
        _ => s.full(),
    }
}

/// The objects an object path expression names now (ending in `.`).
fn resolve_objects(tree: &Tree, origin: Origin, requested: &str) -> Result<Vec<String>, UspError> {
    let expression = path::parse(requested)?;
    if !expression.object {
        return Err(UspError::new(
            Code::INVALID_PATH,
            format!("{requested}: not an object's path (it ends in `.`)"),
        ));
    }
    path::resolve(tree, origin, requested, &expression)
}

fn instance_exists(tree: &Tree, object: &str) -> bool {
    rpc::get_parameter_names_within(tree, object, true, rpc::MAX_RESPONSE_ENTRIES).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_row_is_canceled() {
        assert_eq!(
            request_to_cancel("Device.LocalAgent.Request.7.Cancel()"),
            Some(7)
        );
        for not in [
            "Device.LocalAgent.Request.07.Cancel()",
            "Device.LocalAgent.Request.*.Cancel()",
            "Device.LocalAgent.Request.Cancel()",
            "Device.LocalAgent.Request.70000.Cancel()",
            "Device.LocalAgent.Controller.1.Cancel()",
            "Device.LocalAgent.Request.1.Cancel",
        ] {
            assert_eq!(request_to_cancel(not), None, "{not}");
        }
    }

    #[test]
    fn firmware_commands_take_what_the_pipeline_honours() {
        let operate = |command: &str, inputs: &[(&str, &str)]| usp::Operate {
            command: command.into(),
            input_args: inputs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        };
        let code = |o: &usp::Operate| match firmware_action(o) {
            Some(Err(e)) => e.code.0,
            other => panic!("{other:?}"),
        };
        const DOWNLOAD: &str = "Device.DeviceInfo.FirmwareImage.2.Download()";
        assert_eq!(
            firmware_action(&operate(
                DOWNLOAD,
                &[("URL", "http://i"), ("AutoActivate", "1")]
            )),
            Some(Ok(Action::FirmwareDownload {
                url: "http://i".into(),
                activate: true
            }))
        );
        for inputs in [
            &[("URL", "http://i")][..],
            &[("URL", ""), ("AutoActivate", "true")],
            &[("URL", "http://i"), ("AutoActivate", "yes")],
            &[
                ("URL", "http://i"),
                ("AutoActivate", "true"),
                ("CheckSum", "ab"),
            ],
            &[("URL", "http://i"), ("AutoActivate", "true"), ("Bogus", "")],
            &[("URL", "ftp://i/image"), ("AutoActivate", "true")],
        ] {
            assert_eq!(code(&operate(DOWNLOAD, inputs)), 7027, "{inputs:?}");
        }
        const ACTIVATE: &str = "Device.DeviceInfo.FirmwareImage.2.Activate()";
        assert_eq!(
            firmware_action(&operate(
                ACTIVATE,
                &[
                    ("TimeWindow.1.Start", "0"),
                    ("TimeWindow.1.Mode", "AnyTime")
                ]
            )),
            Some(Ok(Action::FirmwareActivate))
        );
        assert_eq!(
            code(&operate(ACTIVATE, &[("TimeWindow.1.Mode", "WhenIdle")])),
            7027
        );
        assert_eq!(
            code(&operate(ACTIVATE, &[("TimeWindow.1.Start", "3600")])),
            7027
        );
        assert_eq!(
            code(&operate(
                "Device.DeviceInfo.FirmwareImage.1.Activate()",
                &[]
            )),
            7022
        );
        assert_eq!(firmware_action(&operate("Device.Reboot()", &[])), None);
    }
}
