//! TR-143 diagnostics as TR-181 has them for CWMP
//! (`Device.IP.Diagnostics.IPPing.`, `TraceRoute.`,
//! `ServerSelectionDiagnostics.`, `Device.DNS.Diagnostics.
//! NSLookupDiagnostics.`): a client writes the inputs and
//! `DiagnosticsState` = `Requested`; the agent's diagnostics runner runs
//! the test beside the protocols and writes the results with the final
//! state (`Complete` or an `Error_` one), after which CWMP reports
//! `8 DIAGNOSTICS COMPLETE`.
//!
//! The rules the objects keep (TR-181 2.17, DiagnosticsState):
//! - a client may write only `Requested` (the previous results are
//!   cleared with it; written again, the test starts over) or `Canceled`
//!   (the test stops);
//! - writing any other input without it sets the state to `None` (a test
//!   that was requested is then canceled by the runner);
//! - results are the agent's (read-only to clients), kept and saved until
//!   the next request.

use std::collections::BTreeMap;

use dm_core::catalog::{
    download_diagnostics, ip_ping, ns_lookup, server_selection, trace_route, udp_echo,
    upload_diagnostics,
};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectLink, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};

use crate::{UNKNOWN_TIME, layout};

/// A kind of test: its object and which of its resources are what.
pub struct Kind {
    pub schema: &'static ObjectSchema,
    pub state: ResourceId,
    /// The results and the value each is cleared to.
    pub results: fn() -> Vec<(ResourceId, ResourceValue)>,
    /// The inputs' values for a new instance.
    pub inputs: fn() -> Vec<(ResourceId, Value)>,
}

/// Every kind of test the agent runs.
pub const KINDS: &[Kind] = &[
    Kind {
        schema: &ip_ping::SCHEMA,
        state: ip_ping::DIAGNOSTICS_STATE,
        results: ping_results,
        inputs: ping_inputs,
    },
    Kind {
        schema: &trace_route::SCHEMA,
        state: trace_route::DIAGNOSTICS_STATE,
        results: trace_results,
        inputs: trace_inputs,
    },
    Kind {
        schema: &ns_lookup::SCHEMA,
        state: ns_lookup::DIAGNOSTICS_STATE,
        results: lookup_results,
        inputs: lookup_inputs,
    },
    Kind {
        schema: &server_selection::SCHEMA,
        state: server_selection::DIAGNOSTICS_STATE,
        results: selection_results,
        inputs: selection_inputs,
    },
    Kind {
        schema: &download_diagnostics::SCHEMA,
        state: download_diagnostics::DIAGNOSTICS_STATE,
        results: download_results,
        inputs: download_inputs,
    },
    Kind {
        schema: &upload_diagnostics::SCHEMA,
        state: upload_diagnostics::DIAGNOSTICS_STATE,
        results: upload_results,
        inputs: upload_inputs,
    },
    Kind {
        schema: &udp_echo::SCHEMA,
        state: udp_echo::DIAGNOSTICS_STATE,
        results: echo_results,
        inputs: echo_inputs,
    },
];

/// The most connections a throughput test opens.
pub const MAX_CONNECTIONS: u64 = 4;
/// The most IndividualPacketResult rows a UDP echo test keeps.
pub const MAX_ECHO_RESULTS: u64 = 100;

fn empty_columns(columns: &[ResourceId]) -> Vec<(ResourceId, ResourceValue)> {
    columns
        .iter()
        .map(|&c| (c, ResourceValue::Multiple(BTreeMap::new())))
        .collect()
}

/// A throughput test's results (DownloadDiagnostics and
/// UploadDiagnostics share their shape): IPAddressUsed, ROMTime, BOMTime,
/// EOMTime, the test's bytes, the interface's bytes received and sent,
/// the same three under full loading, PeriodOfFullLoading,
/// TCPOpenRequestTime, TCPOpenResponseTime; then the PerConnectionResult
/// columns: ROMTime, BOMTime, EOMTime, the test's bytes, the interface's
/// bytes received and sent, TCPOpenRequestTime, TCPOpenResponseTime.
pub struct Throughput {
    pub results: [ResourceId; 13],
    pub connections: [ResourceId; 8],
}

pub const DOWNLOAD: Throughput = {
    use download_diagnostics::*;
    Throughput {
        results: [
            IP_ADDRESS_USED,
            ROM_TIME,
            BOM_TIME,
            EOM_TIME,
            TEST_BYTES_RECEIVED,
            TOTAL_BYTES_RECEIVED,
            TOTAL_BYTES_SENT,
            TEST_BYTES_RECEIVED_UNDER_FULL_LOADING,
            TOTAL_BYTES_RECEIVED_UNDER_FULL_LOADING,
            TOTAL_BYTES_SENT_UNDER_FULL_LOADING,
            PERIOD_OF_FULL_LOADING,
            TCP_OPEN_REQUEST_TIME,
            TCP_OPEN_RESPONSE_TIME,
        ],
        connections: [
            PER_CONNECTION_RESULT_ROM_TIME,
            PER_CONNECTION_RESULT_BOM_TIME,
            PER_CONNECTION_RESULT_EOM_TIME,
            PER_CONNECTION_RESULT_TEST_BYTES_RECEIVED,
            PER_CONNECTION_RESULT_TOTAL_BYTES_RECEIVED,
            PER_CONNECTION_RESULT_TOTAL_BYTES_SENT,
            PER_CONNECTION_RESULT_TCP_OPEN_REQUEST_TIME,
            PER_CONNECTION_RESULT_TCP_OPEN_RESPONSE_TIME,
        ],
    }
};

pub const UPLOAD: Throughput = {
    use upload_diagnostics::*;
    Throughput {
        results: [
            IP_ADDRESS_USED,
            ROM_TIME,
            BOM_TIME,
            EOM_TIME,
            TEST_BYTES_SENT,
            TOTAL_BYTES_RECEIVED,
            TOTAL_BYTES_SENT,
            TEST_BYTES_SENT_UNDER_FULL_LOADING,
            TOTAL_BYTES_RECEIVED_UNDER_FULL_LOADING,
            TOTAL_BYTES_SENT_UNDER_FULL_LOADING,
            PERIOD_OF_FULL_LOADING,
            TCP_OPEN_REQUEST_TIME,
            TCP_OPEN_RESPONSE_TIME,
        ],
        connections: [
            PER_CONNECTION_RESULT_ROM_TIME,
            PER_CONNECTION_RESULT_BOM_TIME,
            PER_CONNECTION_RESULT_EOM_TIME,
            PER_CONNECTION_RESULT_TEST_BYTES_SENT,
            PER_CONNECTION_RESULT_TOTAL_BYTES_RECEIVED,
            PER_CONNECTION_RESULT_TOTAL_BYTES_SENT,
            PER_CONNECTION_RESULT_TCP_OPEN_REQUEST_TIME,
            PER_CONNECTION_RESULT_TCP_OPEN_RESPONSE_TIME,
        ],
    }
};

impl Throughput {
    /// The results cleared: times unknown (TR-106's unknown time),
    /// counts 0, the address empty; no connection rows.
    fn cleared(&self, schema: &ObjectSchema) -> Vec<(ResourceId, ResourceValue)> {
        let mut results: Vec<_> = self
            .results
            .iter()
            .map(|&r| {
                let value = match schema.resource(r).map(|r| r.value_type) {
                    Some(dm_core::ValueType::DateTime) => Value::DateTime(UNKNOWN_TIME),
                    Some(other) => Value::default_for(other).unwrap_or(Value::Unsigned(0)),
                    None => Value::Unsigned(0),
                };
                (r, ResourceValue::Single(value))
            })
            .collect();
        results.extend(empty_columns(&self.connections));
        results
    }
}

fn download_results() -> Vec<(ResourceId, ResourceValue)> {
    DOWNLOAD.cleared(&download_diagnostics::SCHEMA)
}

fn download_inputs() -> Vec<(ResourceId, Value)> {
    use download_diagnostics::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (DOWNLOAD_URL, Value::String(String::new())),
        (DOWNLOAD_TRANSPORTS, Value::String("HTTP,FTP".into())),
        (DSCP, Value::Unsigned(0)),
        (ETHERNET_PRIORITY, Value::Unsigned(0)),
        (TIME_BASED_TEST_DURATION, Value::Unsigned(0)),
        (PROTOCOL_VERSION, Value::String("Any".into())),
        (NUMBER_OF_CONNECTIONS, Value::Unsigned(1)),
        (
            DOWNLOAD_DIAGNOSTIC_MAX_CONNECTIONS,
            Value::Unsigned(MAX_CONNECTIONS),
        ),
        (ENABLE_PER_CONNECTION_RESULTS, Value::Boolean(false)),
    ]
}

fn upload_results() -> Vec<(ResourceId, ResourceValue)> {
    UPLOAD.cleared(&upload_diagnostics::SCHEMA)
}

fn upload_inputs() -> Vec<(ResourceId, Value)> {
    use upload_diagnostics::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (UPLOAD_URL, Value::String(String::new())),
        (UPLOAD_TRANSPORTS, Value::String("HTTP,FTP".into())),
        (DSCP, Value::Unsigned(0)),
        (ETHERNET_PRIORITY, Value::Unsigned(0)),
        (TEST_FILE_LENGTH, Value::Unsigned(0)),
        (TIME_BASED_TEST_DURATION, Value::Unsigned(0)),
        (PROTOCOL_VERSION, Value::String("Any".into())),
        (NUMBER_OF_CONNECTIONS, Value::Unsigned(1)),
        (
            UPLOAD_DIAGNOSTICS_MAX_CONNECTIONS,
            Value::Unsigned(MAX_CONNECTIONS),
        ),
        (ENABLE_PER_CONNECTION_RESULTS, Value::Boolean(false)),
    ]
}

fn echo_results() -> Vec<(ResourceId, ResourceValue)> {
    use udp_echo::*;
    let zero = || Value::Unsigned(0);
    let mut results = single(vec![
        (IP_ADDRESS_USED, Value::String(String::new())),
        (SUCCESS_COUNT, zero()),
        (FAILURE_COUNT, zero()),
        (AVERAGE_RESPONSE_TIME, zero()),
        (MINIMUM_RESPONSE_TIME, zero()),
        (MAXIMUM_RESPONSE_TIME, zero()),
    ]);
    results.extend(empty_columns(&[
        INDIVIDUAL_PACKET_RESULT_PACKET_SUCCESS,
        INDIVIDUAL_PACKET_RESULT_PACKET_SEND_TIME,
        INDIVIDUAL_PACKET_RESULT_PACKET_RECEIVE_TIME,
        INDIVIDUAL_PACKET_RESULT_TEST_GEN_SN,
        INDIVIDUAL_PACKET_RESULT_TEST_RESP_SN,
        INDIVIDUAL_PACKET_RESULT_TEST_RESP_RCV_TIME_STAMP,
        INDIVIDUAL_PACKET_RESULT_TEST_RESP_REPLY_TIME_STAMP,
        INDIVIDUAL_PACKET_RESULT_TEST_RESP_REPLY_FAILURE_COUNT,
    ]));
    results
}

/// TR-143's example test: 1 s apart, 5 s to answer, 24 bytes (the UDP
/// Echo Plus header and 4 more).
fn echo_inputs() -> Vec<(ResourceId, Value)> {
    use udp_echo::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (HOST, Value::String(String::new())),
        (PORT, Value::Unsigned(0)),
        (NUMBER_OF_REPETITIONS, Value::Unsigned(1)),
        (TIMEOUT, Value::Unsigned(5000)),
        (DATA_BLOCK_SIZE, Value::Unsigned(24)),
        (DSCP, Value::Unsigned(0)),
        (INTER_TRANSMISSION_TIME, Value::Unsigned(1000)),
        (PROTOCOL_VERSION, Value::String("Any".into())),
        (ENABLE_INDIVIDUAL_PACKET_RESULTS, Value::Boolean(false)),
        (
            UDP_ECHO_DIAGNOSTICS_MAX_RESULTS,
            Value::Unsigned(MAX_ECHO_RESULTS),
        ),
    ]
}

fn selection_results() -> Vec<(ResourceId, ResourceValue)> {
    use server_selection::*;
    let zero = || Value::Unsigned(0);
    single(vec![
        (FASTEST_HOST, Value::String(String::new())),
        (MINIMUM_RESPONSE_TIME, zero()),
        (AVERAGE_RESPONSE_TIME, zero()),
        (MAXIMUM_RESPONSE_TIME, zero()),
        (IP_ADDRESS_USED, Value::String(String::new())),
    ])
}

fn selection_inputs() -> Vec<(ResourceId, Value)> {
    use server_selection::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (PROTOCOL_VERSION, Value::String("Any".into())),
        (PROTOCOL, Value::String("ICMP".into())),
        (HOST_LIST, Value::String(String::new())),
        (NUMBER_OF_REPETITIONS, Value::Unsigned(3)),
        (TIMEOUT, Value::Unsigned(1000)),
    ]
}

fn lookup_results() -> Vec<(ResourceId, ResourceValue)> {
    use ns_lookup::*;
    let mut results = single(vec![(SUCCESS_COUNT, Value::Unsigned(0))]);
    for column in [
        RESULT_STATUS,
        RESULT_ANSWER_TYPE,
        RESULT_HOST_NAME_RETURNED,
        RESULT_IP_ADDRESSES,
        RESULT_DNS_SERVER_IP,
        RESULT_RESPONSE_TIME,
    ] {
        results.push((column, ResourceValue::Multiple(BTreeMap::new())));
    }
    results
}

/// nslookup's: the resolver's server, 1 query of 5 s.
fn lookup_inputs() -> Vec<(ResourceId, Value)> {
    use ns_lookup::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (HOST_NAME, Value::String(String::new())),
        (DNS_SERVER, Value::String(String::new())),
        (TIMEOUT, Value::Unsigned(5000)),
        (NUMBER_OF_REPETITIONS, Value::Unsigned(1)),
    ]
}

fn single(values: Vec<(ResourceId, Value)>) -> Vec<(ResourceId, ResourceValue)> {
    values
        .into_iter()
        .map(|(r, v)| (r, ResourceValue::Single(v)))
        .collect()
}

fn trace_results() -> Vec<(ResourceId, ResourceValue)> {
    use trace_route::*;
    let empty = || ResourceValue::Multiple(BTreeMap::new());
    let mut results = single(vec![
        (IP_ADDRESS_USED, Value::String(String::new())),
        (RESPONSE_TIME, Value::Unsigned(0)),
    ]);
    for column in [
        ROUTE_HOPS_HOST,
        ROUTE_HOPS_HOST_ADDRESS,
        ROUTE_HOPS_ERROR_CODE,
        ROUTE_HOPS_RT_TIMES,
    ] {
        results.push((column, empty()));
    }
    results
}

/// traceroute(8)'s defaults: 3 probes per hop, 5 s each, 30 hops.
fn trace_inputs() -> Vec<(ResourceId, Value)> {
    use trace_route::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (PROTOCOL_VERSION, Value::String("Any".into())),
        (HOST, Value::String(String::new())),
        (NUMBER_OF_TRIES, Value::Unsigned(3)),
        (TIMEOUT, Value::Unsigned(5000)),
        (DATA_BLOCK_SIZE, Value::Unsigned(32)),
        (DSCP, Value::Unsigned(0)),
        (MAX_HOP_COUNT, Value::Unsigned(30)),
    ]
}

fn ping_results() -> Vec<(ResourceId, ResourceValue)> {
    use ip_ping::*;
    let zero = || Value::Unsigned(0);
    single(vec![
        (IP_ADDRESS_USED, Value::String(String::new())),
        (SUCCESS_COUNT, zero()),
        (FAILURE_COUNT, zero()),
        (AVERAGE_RESPONSE_TIME, zero()),
        (MINIMUM_RESPONSE_TIME, zero()),
        (MAXIMUM_RESPONSE_TIME, zero()),
        (AVERAGE_RESPONSE_TIME_DETAILED, zero()),
        (MINIMUM_RESPONSE_TIME_DETAILED, zero()),
        (MAXIMUM_RESPONSE_TIME_DETAILED, zero()),
    ])
}

/// `ping`'s own defaults where TR-181 gives none: 3 echoes of 64 bytes,
/// 1 s each.
fn ping_inputs() -> Vec<(ResourceId, Value)> {
    use ip_ping::*;
    vec![
        (INTERFACE, Value::ObjectLink(NO_ROW)),
        (PROTOCOL_VERSION, Value::String("Any".into())),
        (HOST, Value::String(String::new())),
        (NUMBER_OF_REPETITIONS, Value::Unsigned(3)),
        (TIMEOUT, Value::Unsigned(1000)),
        (DATA_BLOCK_SIZE, Value::Unsigned(64)),
        (DSCP, Value::Unsigned(0)),
    ]
}

/// The null reference.
pub const NO_ROW: ObjectLink = ObjectLink::NULL;

/// Which kind of test `object` is.
pub fn kind(object: dm_core::ObjectId) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.schema.id == object)
}

struct Diagnostic {
    kind: &'static Kind,
}

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    for kind in KINDS {
        tree.register(Box::new(Diagnostic { kind }))?;
    }
    Ok(())
}

impl ObjectHandler for Diagnostic {
    fn schema(&self) -> &'static ObjectSchema {
        self.kind.schema
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let values = single((self.kind.inputs)())
            .into_iter()
            .chain((self.kind.results)())
            .chain(single(vec![(
                self.kind.state,
                Value::String("None".into()),
            )]));
        Ok(
            values.fold(layout(self.kind.schema, &[]), |instance, (r, v)| {
                instance.with(r, Slot::Stored(v))
            }),
        )
    }

    fn adjust(
        &self,
        origin: Origin,
        instance: InstanceId,
        written: &[ResourceId],
        state: &mut Instance,
    ) -> Result<Vec<ResourceId>, Error> {
        if !origin.is_client() {
            return Ok(Vec::new());
        }
        // ServerSelection by UDP Echo needs a TR-143 UDP echo server at
        // each host, on a port TR-181 does not name: ICMP only.
        if self.kind.schema.id == server_selection::ID
            && written.contains(&server_selection::PROTOCOL)
            && state.value(server_selection::PROTOCOL) != Some(&Value::String("ICMP".into()))
        {
            return Err(Error::Rejected {
                path: Path::resource(server_selection::ID, instance, server_selection::PROTOCOL),
                reason: "only ICMP is supported".into(),
            });
        }
        check_throughput(self.kind.schema.id, instance, written, state)?;
        let path = Path::resource(self.kind.schema.id, instance, self.kind.state);
        if !written.contains(&self.kind.state) {
            // An input changed: the test that was asked for, or the
            // results of the one that ran, are no longer about it.
            state.set_value(self.kind.state, Value::String("None".into()));
            return Ok(Vec::new());
        }
        match state.value(self.kind.state) {
            // Asked for (again: a test that is requested starts over with
            // the inputs as they are now, so the write is published even
            // when the state stays Requested).
            Some(Value::String(s)) if s == "Requested" => {
                for (resource, value) in (self.kind.results)() {
                    *state = std::mem::take(state).with(resource, Slot::Stored(value));
                }
                Ok(vec![self.kind.state])
            }
            // TR-181 2.17: "the only allowed values are Requested and
            // Canceled" for a client; Canceled stops a test.
            Some(Value::String(s)) if s == "Canceled" => Ok(Vec::new()),
            other => Err(Error::Rejected {
                path,
                reason: format!(
                    "{other:?}: a client may only write Requested or Canceled (TR-181 DiagnosticsState)"
                ),
            }),
        }
    }
}

/// What a throughput test the agent can run takes: an http:// or ftp://
/// URL (the transports it announces), a file-based test (no TimeBasedTestDuration),
/// up to [`MAX_CONNECTIONS`] connections.
fn check_throughput(
    object: dm_core::ObjectId,
    instance: InstanceId,
    written: &[ResourceId],
    state: &Instance,
) -> Result<(), Error> {
    let (url, duration, connections) = if object == download_diagnostics::ID {
        use download_diagnostics::*;
        (
            DOWNLOAD_URL,
            TIME_BASED_TEST_DURATION,
            NUMBER_OF_CONNECTIONS,
        )
    } else if object == upload_diagnostics::ID {
        use upload_diagnostics::*;
        (UPLOAD_URL, TIME_BASED_TEST_DURATION, NUMBER_OF_CONNECTIONS)
    } else {
        return Ok(());
    };
    let refuse = |resource, reason: String| Error::Rejected {
        path: Path::resource(object, instance, resource),
        reason,
    };
    if written.contains(&url)
        && let Some(Value::String(text)) = state.value(url)
        && !text.is_empty()
        && !["http://", "ftp://"].iter().any(|scheme| {
            text.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        })
    {
        return Err(refuse(
            url,
            format!("{text:?}: an http:// or ftp:// URL (the transports are HTTP and FTP)"),
        ));
    }
    if written.contains(&duration) && state.value(duration) != Some(&Value::Unsigned(0)) {
        return Err(refuse(
            duration,
            "time-based tests are not offered: 0 (the file's size decides)".into(),
        ));
    }
    if written.contains(&connections)
        && let Some(Value::Unsigned(n)) = state.value(connections)
        && *n > MAX_CONNECTIONS
    {
        return Err(refuse(
            connections,
            format!("{n}: at most {MAX_CONNECTIONS} (the MaxConnections announced)"),
        ));
    }
    Ok(())
}
