//! Asynchronous commands (TR-369 §Operate, TR-181 2.16's `async="true"`
//! commands) carried out by the objects the other protocols drive: a
//! diagnostic test is its TR-181 object's inputs written with
//! DiagnosticsState `Requested`, as an ACS would; the agent's runner does
//! the test; its end (DiagnosticsState Complete or an error) is the
//! command's OperationComplete, with the object's results as the output
//! arguments.

use std::collections::BTreeMap;

use dm_core::{Change, ChangeKind, Origin, ResourceValue, Tree, Value};
use dm_cwmp::mapping::Resolver;
use dm_cwmp::rpc;
use dm_cwmp::soap::ParameterValueIn;

use crate::error::{Code, UspError};
use crate::proto::usp::notify::{OperationComplete, operation_complete};

/// An asynchronous command and the TR-181 object that carries it out.
#[derive(Debug, PartialEq, Eq)]
pub struct AsyncCommand {
    /// `Device.IP.Diagnostics.IPPing()`.
    pub command: &'static str,
    /// `Device.IP.Diagnostics.IPPing.`: inputs and outputs are its
    /// parameters of the same names.
    pub object: &'static str,
    pub inputs: &'static [&'static str],
    /// The inputs TR-181 marks mandatory (a command without one is
    /// 7027); the others are written with their default when not given,
    /// so that nothing of an earlier run (the ACS's) carries over.
    pub mandatory: &'static [&'static str],
    pub defaults: &'static [(&'static str, &'static str)],
    pub outputs: &'static [&'static str],
}

/// The asynchronous commands the agent carries out: TR-181 2.16's
/// diagnostics commands, inputs and outputs as its USP XML names them,
/// the mandatory ones as it marks them. An optional input not given is
/// written with the value the object starts with. Outputs in a table
/// (`RouteHops.{i}.Host`) are reported one per row (`RouteHops.1.Host`);
/// TR-181's time-based incremental results, which the agent does not
/// measure, are neither taken nor given.
pub const ASYNC: &[AsyncCommand] = &[
    AsyncCommand {
        command: "Device.IP.Diagnostics.IPPing()",
        object: "Device.IP.Diagnostics.IPPing.",
        inputs: &[
            "Interface",
            "ProtocolVersion",
            "Host",
            "NumberOfRepetitions",
            "Timeout",
            "DataBlockSize",
            "DSCP",
        ],
        mandatory: &[
            "ProtocolVersion",
            "Host",
            "NumberOfRepetitions",
            "Timeout",
            "DataBlockSize",
        ],
        defaults: &[("Interface", ""), ("DSCP", "0")],
        outputs: &[
            "IPAddressUsed",
            "SuccessCount",
            "FailureCount",
            "AverageResponseTime",
            "MinimumResponseTime",
            "MaximumResponseTime",
            "AverageResponseTimeDetailed",
            "MinimumResponseTimeDetailed",
            "MaximumResponseTimeDetailed",
        ],
    },
    AsyncCommand {
        command: "Device.IP.Diagnostics.TraceRoute()",
        object: "Device.IP.Diagnostics.TraceRoute.",
        inputs: &[
            "Interface",
            "ProtocolVersion",
            "Host",
            "NumberOfTries",
            "Timeout",
            "DataBlockSize",
            "DSCP",
            "MaxHopCount",
        ],
        mandatory: &["ProtocolVersion", "Host"],
        defaults: &[
            ("Interface", ""),
            ("NumberOfTries", "3"),
            ("Timeout", "5000"),
            ("DataBlockSize", "32"),
            ("DSCP", "0"),
            ("MaxHopCount", "30"),
        ],
        outputs: &[
            "IPAddressUsed",
            "ResponseTime",
            "RouteHops.{i}.Host",
            "RouteHops.{i}.HostAddress",
            "RouteHops.{i}.ErrorCode",
            "RouteHops.{i}.RTTimes",
        ],
    },
    AsyncCommand {
        command: "Device.IP.Diagnostics.DownloadDiagnostics()",
        object: "Device.IP.Diagnostics.DownloadDiagnostics.",
        inputs: &[
            "Interface",
            "DownloadURL",
            "DSCP",
            "EthernetPriority",
            "TimeBasedTestDuration",
            "ProtocolVersion",
            "NumberOfConnections",
            "EnablePerConnectionResults",
        ],
        mandatory: &["DownloadURL"],
        defaults: &[
            ("Interface", ""),
            ("DSCP", "0"),
            ("EthernetPriority", "0"),
            ("TimeBasedTestDuration", "0"),
            ("ProtocolVersion", "Any"),
            ("NumberOfConnections", "1"),
            ("EnablePerConnectionResults", "false"),
        ],
        outputs: &[
            "IPAddressUsed",
            "ROMTime",
            "BOMTime",
            "EOMTime",
            "TestBytesReceived",
            "TotalBytesReceived",
            "TotalBytesSent",
            "TestBytesReceivedUnderFullLoading",
            "TotalBytesReceivedUnderFullLoading",
            "TotalBytesSentUnderFullLoading",
            "PeriodOfFullLoading",
            "TCPOpenRequestTime",
            "TCPOpenResponseTime",
            "PerConnectionResult.{i}.ROMTime",
            "PerConnectionResult.{i}.BOMTime",
            "PerConnectionResult.{i}.EOMTime",
            "PerConnectionResult.{i}.TestBytesReceived",
            "PerConnectionResult.{i}.TotalBytesReceived",
            "PerConnectionResult.{i}.TotalBytesSent",
            "PerConnectionResult.{i}.TCPOpenRequestTime",
            "PerConnectionResult.{i}.TCPOpenResponseTime",
        ],
    },
    AsyncCommand {
        command: "Device.IP.Diagnostics.UploadDiagnostics()",
        object: "Device.IP.Diagnostics.UploadDiagnostics.",
        inputs: &[
            "Interface",
            "UploadURL",
            "DSCP",
            "EthernetPriority",
            "TestFileLength",
            "TimeBasedTestDuration",
            "ProtocolVersion",
            "NumberOfConnections",
            "EnablePerConnectionResults",
        ],
        mandatory: &["UploadURL"],
        defaults: &[
            ("Interface", ""),
            ("DSCP", "0"),
            ("EthernetPriority", "0"),
            ("TestFileLength", "0"),
            ("TimeBasedTestDuration", "0"),
            ("ProtocolVersion", "Any"),
            ("NumberOfConnections", "1"),
            ("EnablePerConnectionResults", "false"),
        ],
        outputs: &[
            "IPAddressUsed",
            "ROMTime",
            "BOMTime",
            "EOMTime",
            "TestBytesSent",
            "TotalBytesReceived",
            "TotalBytesSent",
            "TestBytesSentUnderFullLoading",
            "TotalBytesReceivedUnderFullLoading",
            "TotalBytesSentUnderFullLoading",
            "PeriodOfFullLoading",
            "TCPOpenRequestTime",
            "TCPOpenResponseTime",
            "PerConnectionResult.{i}.ROMTime",
            "PerConnectionResult.{i}.BOMTime",
            "PerConnectionResult.{i}.EOMTime",
            "PerConnectionResult.{i}.TestBytesSent",
            "PerConnectionResult.{i}.TotalBytesReceived",
            "PerConnectionResult.{i}.TotalBytesSent",
            "PerConnectionResult.{i}.TCPOpenRequestTime",
            "PerConnectionResult.{i}.TCPOpenResponseTime",
        ],
    },
    AsyncCommand {
        command: "Device.IP.Diagnostics.UDPEchoDiagnostics()",
        object: "Device.IP.Diagnostics.UDPEchoDiagnostics.",
        inputs: &[
            "Interface",
            "Host",
            "Port",
            "NumberOfRepetitions",
            "Timeout",
            "DataBlockSize",
            "DSCP",
            "InterTransmissionTime",
            "ProtocolVersion",
            "EnableIndividualPacketResults",
        ],
        mandatory: &["Host", "Port", "Timeout"],
        defaults: &[
            ("Interface", ""),
            ("NumberOfRepetitions", "1"),
            ("DataBlockSize", "24"),
            ("DSCP", "0"),
            ("InterTransmissionTime", "1000"),
            ("ProtocolVersion", "Any"),
            ("EnableIndividualPacketResults", "false"),
        ],
        outputs: &[
            "IPAddressUsed",
            "SuccessCount",
            "FailureCount",
            "AverageResponseTime",
            "MinimumResponseTime",
            "MaximumResponseTime",
            "IndividualPacketResult.{i}.PacketSuccess",
            "IndividualPacketResult.{i}.PacketSendTime",
            "IndividualPacketResult.{i}.PacketReceiveTime",
            "IndividualPacketResult.{i}.TestGenSN",
            "IndividualPacketResult.{i}.TestRespSN",
            "IndividualPacketResult.{i}.TestRespRcvTimeStamp",
            "IndividualPacketResult.{i}.TestRespReplyTimeStamp",
            "IndividualPacketResult.{i}.TestRespReplyFailureCount",
        ],
    },
    AsyncCommand {
        command: "Device.IP.Diagnostics.ServerSelectionDiagnostics()",
        object: "Device.IP.Diagnostics.ServerSelectionDiagnostics.",
        inputs: &[
            "Interface",
            "ProtocolVersion",
            "Protocol",
            "HostList",
            "NumberOfRepetitions",
            "Timeout",
        ],
        mandatory: &[
            "ProtocolVersion",
            "Protocol",
            "HostList",
            "NumberOfRepetitions",
            "Timeout",
        ],
        defaults: &[("Interface", "")],
        outputs: &[
            "FastestHost",
            "MinimumResponseTime",
            "AverageResponseTime",
            "MaximumResponseTime",
            "IPAddressUsed",
        ],
    },
    AsyncCommand {
        command: "Device.DNS.Diagnostics.NSLookupDiagnostics()",
        object: "Device.DNS.Diagnostics.NSLookupDiagnostics.",
        inputs: &[
            "Interface",
            "HostName",
            "DNSServer",
            "Timeout",
            "NumberOfRepetitions",
        ],
        mandatory: &["HostName", "Timeout", "NumberOfRepetitions"],
        defaults: &[("Interface", ""), ("DNSServer", "")],
        outputs: &[
            "SuccessCount",
            "Result.{i}.Status",
            "Result.{i}.AnswerType",
            "Result.{i}.HostNameReturned",
            "Result.{i}.IPAddresses",
            "Result.{i}.DNSServerIP",
            "Result.{i}.ResponseTime",
        ],
    },
];

/// The most output arguments one OperationComplete carries (a trace of
/// 64 hops, 4 each; a download's connections).
const MAX_OUTPUTS: usize = 1024;

/// The asynchronous command `command` names.
pub fn find(command: &str) -> Option<&'static AsyncCommand> {
    ASYNC.iter().find(|c| c.command == command)
}

impl AsyncCommand {
    /// What starting it writes: the inputs given, DiagnosticsState
    /// Requested. An input the command does not take is 7027.
    pub fn start(
        &self,
        inputs: &BTreeMap<String, String>,
    ) -> Result<Vec<ParameterValueIn>, UspError> {
        if let Some(missing) = self.mandatory.iter().find(|m| !inputs.contains_key(**m)) {
            return Err(UspError::new(
                Code::INVALID_COMMAND_ARGUMENTS,
                format!("{} needs the input {missing:?}", self.command),
            ));
        }
        let mut values = Vec::with_capacity(inputs.len() + self.defaults.len() + 1);
        for (name, value) in self.defaults {
            if !inputs.contains_key(*name) {
                values.push(ParameterValueIn {
                    name: format!("{}{name}", self.object),
                    value: (*value).to_owned(),
                    xsd_type: None,
                });
            }
        }
        for (name, value) in inputs {
            if !self.inputs.contains(&name.as_str()) {
                return Err(UspError::new(
                    Code::INVALID_COMMAND_ARGUMENTS,
                    format!("{} takes no input {name:?}", self.command),
                ));
            }
            values.push(ParameterValueIn {
                name: format!("{}{name}", self.object),
                value: value.clone(),
                xsd_type: None,
            });
        }
        values.push(ParameterValueIn {
            name: format!("{}DiagnosticsState", self.object),
            value: "Requested".into(),
            xsd_type: None,
        });
        Ok(values)
    }

    /// The object path and command name of an OperationComplete
    /// (`Device.IP.Diagnostics.`, `IPPing()`).
    fn split(&self) -> (&'static str, &'static str) {
        let dot = self.command.rfind('.').map_or(0, |d| d + 1);
        (&self.command[..dot], &self.command[dot..])
    }

    /// Whether `change` ends the run the command started with the
    /// commit numbered `started` (the tree's sequence then): a later
    /// write of its DiagnosticsState, to an end (Complete, an error), to
    /// None or Canceled, or to Requested again by another request that
    /// supersedes it. Returns the state.
    pub fn ended_by(&self, change: &Change, started: u64) -> Option<String> {
        if change.sequence <= started {
            return None;
        }
        let ChangeKind::Value(ResourceValue::Single(Value::String(state))) = &change.kind else {
            return None;
        };
        let resource = change.path.resource_id()?;
        let instance = change.path.instance_id()?;
        let named = Resolver::global()
            .parameters_for(change.path.object_id(), resource)
            .iter()
            .any(|map| {
                map.render(instance, change.path.index())
                    == format!("{}DiagnosticsState", self.object)
            });
        named.then(|| state.clone())
    }

    /// The state of the command's object now (after missed changes).
    pub fn state(&self, tree: &Tree) -> Option<String> {
        rpc::value_as(
            tree,
            Origin::Agent,
            &format!("{}DiagnosticsState", self.object),
        )
    }

    /// The OperationComplete of a run that ended in `state`: the outputs
    /// (read as `reader`) and Status, or the failure when it did not
    /// complete (canceled, or its inputs changed: TR-181 None).
    pub fn complete(
        &self,
        tree: &Tree,
        reader: Origin,
        command_key: &str,
        state: &str,
    ) -> OperationComplete {
        let (obj_path, command_name) = self.split();
        let operation_resp = if state == "Complete" || state.starts_with("Error") {
            // A table's outputs are read as its rows (`RouteHops.`),
            // each row's values named by its number.
            let mut names: Vec<String> = Vec::with_capacity(self.outputs.len());
            for output in self.outputs {
                let name = match output.split_once("{i}.") {
                    Some((table, _)) => format!("{}{table}", self.object),
                    None => format!("{}{output}", self.object),
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            let mut output_args: BTreeMap<String, String> =
                rpc::existing_values_as(tree, reader, &names, MAX_OUTPUTS)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| Some((p.name.strip_prefix(self.object)?.to_owned(), p.value)))
                    .collect();
            output_args.insert("Status".into(), state.to_owned());
            operation_complete::OperationResp::ReqOutputArgs(operation_complete::OutputArgs {
                output_args,
            })
        } else {
            let why = if state == "Requested" {
                "another request of the test superseded it".to_owned()
            } else {
                format!("the test ended {state}: canceled or its inputs changed")
            };
            operation_complete::OperationResp::CmdFailure(operation_complete::CommandFailure {
                err_code: Code::COMMAND_CANCELED.0,
                err_msg: why,
            })
        };
        OperationComplete {
            obj_path: obj_path.to_owned(),
            command_name: command_name.to_owned(),
            command_key: command_key.to_owned(),
            operation_resp: Some(operation_resp),
        }
    }
}

/// The OperationComplete of a command that is not a TR-181 test (a
/// firmware image's Download() or Activate(), a deployment unit's
/// operation): no output arguments when it succeeded, the failure
/// otherwise.
pub fn finished(
    command: &str,
    command_key: &str,
    outcome: Result<(), UspError>,
) -> OperationComplete {
    let dot = command.rfind('.').map_or(0, |d| d + 1);
    let operation_resp = match outcome {
        Ok(()) => operation_complete::OperationResp::ReqOutputArgs(
            operation_complete::OutputArgs::default(),
        ),
        Err(error) => {
            operation_complete::OperationResp::CmdFailure(operation_complete::CommandFailure {
                err_code: error.code.0,
                err_msg: error.message,
            })
        }
    };
    OperationComplete {
        obj_path: command[..dot].to_owned(),
        command_name: command[dot..].to_owned(),
        command_key: command_key.to_owned(),
        operation_resp: Some(operation_resp),
    }
}
