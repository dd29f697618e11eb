//! The session's phase machine (TR-069 §3.7): the Inform, our requests and
//! reports after the InformResponse, the ACS's requests, the end.

use super::*;

impl Engine {
    /// The final HTTP response to the last POST: its status and body.
    pub fn handle_response(
        &mut self,
        tree: &mut Tree,
        now: Instant,
        wall: i64,
        status: u16,
        body: &[u8],
    ) {
        self.clock = (now, wall);
        // CWMP messages are UTF-8 (TR-069 §3.4.1, SOAP 1.1 over HTTP):
        // anything else is not guessed at (a lossy decode would store
        // U+FFFD in place of what the ACS meant).
        let body = match std::str::from_utf8(body) {
            Ok(body) => body,
            Err(e) => return self.not_utf8(tree, now, e),
        };
        let empty = body.trim().is_empty();
        match self.phase {
            Phase::Idle => {}
            Phase::Informing => {
                if !(200..300).contains(&status) || empty {
                    return self.fail(tree, now, failure("the Inform", status, body));
                }
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        version,
                        header,
                        body: AcsMessage::Response(AcsResponse::Inform { .. }),
                    }) => {
                        self.version = version;
                        self.hold_requests = header.hold_requests.unwrap_or(false);
                        self.delivered(tree);
                        self.next_post(tree, wall);
                    }
                    // 8005: retry; any other fault or message: the
                    // session failed (TR-069 §3.7.1.5).
                    _ => self.fail(tree, now, failure("the Inform", status, body)),
                }
            }
            Phase::Requesting => {
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        body: AcsMessage::Response(response),
                        ..
                    }) if (200..300).contains(&status) => {
                        let answered = self.durable.cpe_requests.remove(0);
                        match (response, answered) {
                            (AcsResponse::GetRPCMethods { methods }, _) => {
                                self.events.push_back(EngineEvent::AcsMethods { methods });
                            }
                            (AcsResponse::Kicked { next_url }, CpeRequest::Kicked(kick)) => {
                                self.events.push_back(EngineEvent::Kicked {
                                    kick,
                                    next_url: Some(next_url),
                                });
                            }
                            // Answered with something else: no NextURL,
                            // and the caller hears so at once.
                            (_, CpeRequest::Kicked(kick)) => {
                                self.events.push_back(EngineEvent::Kicked {
                                    kick,
                                    next_url: None,
                                });
                            }
                            _ => {}
                        }
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    // Refused (a Fault other than 8005, "retry"): it is
                    // not asked again.
                    Ok(AcsEnvelope {
                        body: AcsMessage::Fault(fault),
                        ..
                    }) if fault.code != 8005 => {
                        let dropped = self.durable.cpe_requests.remove(0);
                        self.refused_request(dropped);
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    // An empty answer: the ACS ends the session without
                    // taking the request. It is best effort: not asked
                    // again, or it would stand before every later one.
                    _ if empty && (200..300).contains(&status) => {
                        let dropped = self.durable.cpe_requests.remove(0);
                        self.refused_request(dropped);
                        self.save(tree);
                        self.end(tree, now, wall);
                    }
                    _ => self.fail(tree, now, failure("our request", status, body)),
                }
            }
            Phase::CompletingDu => {
                // An ACS that refuses the report (a Fault other than 8005,
                // "retry") would refuse it in every session after, and no
                // session would get past it: it is dropped, and said so.
                if let Ok(AcsEnvelope {
                    body: AcsMessage::Fault(fault),
                    ..
                }) = soap::decode(body)
                    && fault.code != 8005
                {
                    let dropped = self.durable.du_completed.remove(0);
                    self.events.push_back(EngineEvent::ReportRefused {
                        what: format!(
                            "DUStateChangeComplete {} ({} {})",
                            dropped.command_key, fault.code, fault.message
                        ),
                    });
                    self.save(tree);
                    self.next_post(tree, wall);
                    return;
                }
                if !(200..300).contains(&status) {
                    return self.fail(tree, now, failure("DUStateChangeComplete", status, body));
                }
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        body: AcsMessage::Response(AcsResponse::DUStateChangeComplete),
                        ..
                    }) => {
                        self.durable.du_completed.remove(0);
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    _ if empty => self.end(tree, now, wall),
                    _ => self.fail(tree, now, failure("DUStateChangeComplete", status, body)),
                }
            }
            Phase::Completing => {
                // An ACS that does not take AutonomousTransferComplete
                // answers it with a SOAP Fault (HTTP 500, 8000 or 8005):
                // that report is dropped, or it would fail every session
                // after. TransferComplete is the ACS's own request: kept.
                let autonomous = self
                    .durable
                    .completed
                    .first()
                    .is_some_and(|c| c.autonomous.is_some());
                if autonomous
                    && matches!(
                        soap::decode(body),
                        Ok(AcsEnvelope {
                            body: AcsMessage::Fault(_),
                            ..
                        })
                    )
                {
                    let dropped = self.durable.completed.remove(0);
                    self.events.push_back(EngineEvent::ReportRefused {
                        what: format!(
                            "AutonomousTransferComplete for {}",
                            dropped
                                .autonomous
                                .map(|a| a.transfer_url)
                                .unwrap_or_default()
                        ),
                    });
                    self.save(tree);
                    self.next_post(tree, wall);
                    return;
                }
                if !(200..300).contains(&status) {
                    return self.fail(tree, now, failure("TransferComplete", status, body));
                }
                match soap::decode(body) {
                    Ok(AcsEnvelope {
                        body:
                            AcsMessage::Response(
                                AcsResponse::TransferComplete
                                | AcsResponse::AutonomousTransferComplete,
                            ),
                        ..
                    }) => {
                        self.durable.completed.remove(0);
                        self.save(tree);
                        self.next_post(tree, wall);
                    }
                    // An empty answer ends the session: the report waits
                    // for the next one. Anything else is a failed session.
                    _ if empty => self.end(tree, now, wall),
                    _ => self.fail(tree, now, failure("TransferComplete", status, body)),
                }
            }
            Phase::Exchanging { empty: sent_empty } => {
                if !(200..300).contains(&status) {
                    return self.fail(tree, now, failure("our POST", status, body));
                }
                if empty {
                    // The ACS has no more requests. If ours was the empty
                    // POST, or we have nothing left, the session is over.
                    let _ = sent_empty;
                    return self.end(tree, now, wall);
                }
                let reply = match soap::decode(body) {
                    Ok(envelope) => {
                        self.version = envelope.version;
                        if let Some(hold) = envelope.header.hold_requests {
                            self.hold_requests = hold;
                        }
                        let id = envelope.header.id.clone();
                        match envelope.body {
                            AcsMessage::Request(request) => {
                                self.serving = Some((request.name(), request.parameter_count()));
                                match self.answer(tree, id.as_deref(), request, wall) {
                                    Some(reply) => reply,
                                    // Answered once the host writes are
                                    // made (`host_work_done`).
                                    None => return,
                                }
                            }
                            // A response or fault to a request of ours:
                            // none is outstanding besides those handled
                            // above, so carry on.
                            AcsMessage::Response(_) | AcsMessage::Fault(_) => soap::Body::empty(),
                        }
                    }
                    Err(e) => self.decode_fault(&e).into(),
                };
                self.queue_reply(reply);
            }
        }
    }

    /// `reply` is the next POST, and says which request it answers.
    pub(super) fn queue_reply(&mut self, reply: soap::Body) {
        self.phase = Phase::Exchanging {
            empty: reply.is_empty(),
        };
        self.answered(&reply);
        self.outbox.push_back(reply);
    }

    /// Says which request `reply` answers (nothing for our empty POST).
    fn answered(&mut self, reply: &soap::Body) {
        // A message the decoder refused (an unknown method, bad
        // arguments, not a CWMP envelope) has no RPC to name.
        let (rpc, asked) = self
            .serving
            .take()
            .unwrap_or(("(request not understood)", 0));
        if reply.is_empty() {
            return;
        }
        self.events.push_back(EngineEvent::Served {
            rpc,
            asked,
            answered: reply.items(),
            fault: reply.fault_code(),
        });
    }

    /// A response body that is not UTF-8: a request in it is answered
    /// with 8003 (its ID cannot be read); anything else fails the session.
    pub(super) fn not_utf8(&mut self, tree: &mut Tree, now: Instant, error: std::str::Utf8Error) {
        if !matches!(self.phase, Phase::Exchanging { .. }) {
            return self.fail(
                tree,
                now,
                format!("the ACS's answer is not UTF-8 ({error})"),
            );
        }
        let reply: soap::Body = self
            .decode_fault(&soap::DecodeError {
                kind: soap::DecodeErrorKind::Malformed,
                id: None,
                version: self.version,
                detail: format!("the message is not UTF-8 ({error})"),
            })
            .into();
        self.queue_reply(reply);
    }

    /// The POST could not be completed (connection refused, timeout, TLS
    /// failure, authentication failure).
    pub fn handle_transport_error(&mut self, tree: &mut Tree, now: Instant, error: &str) {
        if self.phase != Phase::Idle {
            self.fail(tree, now, error.to_owned());
        }
    }

    /// After the InformResponse: our requests first (TransferComplete,
    /// unless the ACS holds requests), then the empty POST.
    pub(super) fn next_post(&mut self, tree: &mut Tree, _wall: i64) {
        // AutonomousTransferComplete came with CWMP 1.1: an ACS speaking
        // 1.0 cannot take it.
        if self.version == CwmpVersion(0) {
            self.durable.completed.retain(|c| c.autonomous.is_none());
        }
        if !self.hold_requests
            && let Some(result) = self.durable.completed.first()
        {
            self.inform_id += 1;
            let encoder = Encoder::new(self.version);
            let id = self.inform_id.to_string();
            let (start, complete) = (
                values::format_datetime(result.start),
                values::format_datetime(result.complete),
            );
            let message = match &result.autonomous {
                Some(transfer) => encoder.autonomous_transfer_complete(
                    &id,
                    transfer,
                    result.fault_code,
                    &result.fault_string,
                    &start,
                    &complete,
                ),
                None => encoder.transfer_complete(
                    &id,
                    &result.command_key,
                    result.fault_code,
                    &result.fault_string,
                    &start,
                    &complete,
                ),
            };
            self.phase = Phase::Completing;
            self.outbox.push_back(message.into());
            return;
        }
        if !self.hold_requests
            && let Some(done) = self.durable.du_completed.first()
        {
            self.inform_id += 1;
            let results: Vec<_> = done
                .results
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        values::format_datetime(r.start),
                        values::format_datetime(r.complete),
                    )
                })
                .collect();
            let message = Encoder::new(self.version).du_state_change_complete(
                &self.inform_id.to_string(),
                &done.command_key,
                &results,
            );
            self.phase = Phase::CompletingDu;
            self.outbox.push_back(message.into());
            return;
        }
        // A request queued during this session waits for the next one,
        // which it starts with its own event (TR-069 §3.7.1.5).
        if !self.hold_requests
            && let Some(request) = self.durable.cpe_requests.first()
            && self.announced.contains(&request_event(tree, request))
        {
            self.inform_id += 1;
            let encoder = Encoder::new(self.version);
            let id = self.inform_id.to_string();
            let message = match request {
                CpeRequest::GetRpcMethods => encoder.get_rpc_methods(&id),
                CpeRequest::RequestDownload { file_type, args } => {
                    encoder.request_download(&id, file_type, args)
                }
                CpeRequest::Kicked(kick) => encoder.kicked(&id, kick),
            };
            self.phase = Phase::Requesting;
            self.outbox.push_back(message.into());
            return;
        }
        self.phase = Phase::Exchanging { empty: true };
        self.outbox.push_back(soap::Body::empty());
    }

    pub(super) fn end(&mut self, tree: &mut Tree, now: Instant, wall: i64) {
        self.phase = Phase::Idle;
        // A read that was waiting for the host has nobody to answer now.
        self.reading = None;
        self.host_reads = None;
        self.serving = None;
        self.durable.retry_count = 0;
        self.save(tree);
        self.events.push_back(EngineEvent::SessionEnded {
            ok: true,
            error: None,
        });
        match std::mem::replace(&mut self.after_session, AfterSession::Nothing) {
            AfterSession::Nothing => {}
            AfterSession::Reboot => self.events.push_back(EngineEvent::Reboot),
            AfterSession::FactoryReset => self.events.push_back(EngineEvent::FactoryReset),
        }
        // Settings may have changed during the session.
        self.next_periodic = None;
        self.schedule_periodic(tree, now, wall);
    }

    /// A failed session: keep the events, count the retry and wait
    /// (TR-069 §3.2.1.1).
    pub(super) fn fail(&mut self, tree: &mut Tree, now: Instant, error: String) {
        self.phase = Phase::Idle;
        self.outbox.clear();
        self.reading = None;
        self.host_reads = None;
        self.serving = None;
        // Nothing was delivered: everything goes in the next Inform.
        self.in_flight.clear();
        self.in_flight_changed.clear();
        self.changed_again.clear();
        self.durable.retry_count = self.durable.retry_count.saturating_add(1);
        self.save(tree);
        let s = settings(tree);
        let wait = retry_wait(
            s.retry_minimum,
            s.retry_multiplier,
            self.durable.retry_count,
            self.random(),
        );
        self.next_retry = Some(now + wait);
        self.wanted = true;
        self.events.push_back(EngineEvent::SessionEnded {
            ok: false,
            error: Some(error),
        });
        // The ACS was told the Reboot or FactoryReset would happen: it
        // does, however the session ended (its "M Reboot" key is saved).
        match std::mem::replace(&mut self.after_session, AfterSession::Nothing) {
            AfterSession::Nothing => {}
            AfterSession::Reboot => self.events.push_back(EngineEvent::Reboot),
            AfterSession::FactoryReset => self.events.push_back(EngineEvent::FactoryReset),
        }
    }

    /// The InformResponse arrived: the Inform's events are delivered.
    /// `M Reboot` and `1 BOOT` are not repeated; events added during the
    /// session stay for the next one.
    pub(super) fn delivered(&mut self, tree: &mut Tree) {
        let sent = std::mem::take(&mut self.in_flight);
        for event in &sent {
            if let Some(i) = self.durable.events.iter().position(|e| e == event) {
                self.durable.events.remove(i);
            }
        }
        if sent.iter().any(|(c, _)| *c == EventCode::Bootstrap) {
            self.durable.bootstrapped_url = Some(settings(tree).url);
        }
        let changed = std::mem::take(&mut self.in_flight_changed);
        let again = std::mem::take(&mut self.changed_again);
        self.durable
            .changed
            .retain(|n| !changed.contains(n) || again.contains(n));
        self.durable.retry_count = 0;
        self.save(tree);
    }

    pub(super) fn inform(&mut self, tree: &Tree, wall: i64) -> String {
        let read = |r| match tree.read(Origin::Agent, &Path::resource(device::ID, InstanceId(0), r))
        {
            Ok(ResourceValue::Single(Value::String(s))) => s,
            _ => String::new(),
        };
        let device = DeviceId {
            manufacturer: read(device::MANUFACTURER),
            oui: read(device::MANUFACTURER_OUI),
            product_class: read(device::PRODUCT_CLASS),
            serial_number: read(device::SERIAL_NUMBER),
        };
        let events: Vec<Event> = self
            .in_flight
            .iter()
            .map(|(code, key)| Event {
                code: code.to_string(),
                command_key: key.clone(),
            })
            .collect();
        let mut names: Vec<String> = crate::mapping::parameters()
            .filter(|p| p.forced_inform)
            .map(|p| p.render(InstanceId(0), None))
            .collect();
        for name in &self.in_flight_changed {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        // A changed parameter whose instance is gone since is dropped, not
        // a reason to fail the Inform.
        let parameters: Vec<ParameterValue> = rpc::existing_parameter_values(tree, &names);
        Encoder::new(CwmpVersion::LATEST).inform(
            &self.inform_id.to_string(),
            &device,
            &events,
            1,
            &values::format_datetime(wall),
            self.durable.retry_count,
            &parameters,
        )
    }

    pub(super) fn decode_fault(&self, error: &DecodeError) -> String {
        let e = Encoder::new(error.version);
        let id = error.id.as_deref();
        match error.kind {
            soap::DecodeErrorKind::MustUnderstand => {
                e.soap_fault(id, "MustUnderstand", &error.detail)
            }
            soap::DecodeErrorKind::UnknownMethod => {
                let code = FaultCode::MethodNotSupported;
                e.fault(
                    id,
                    code.code(),
                    &format!("{}: {}", code.text(), error.detail),
                    &[],
                )
            }
            soap::DecodeErrorKind::InvalidArguments | soap::DecodeErrorKind::Malformed => {
                let code = FaultCode::InvalidArguments;
                e.fault(
                    id,
                    code.code(),
                    &format!("{}: {}", code.text(), error.detail),
                    &[],
                )
            }
        }
    }
}

/// Why an answer of the ACS failed the session, for the log and the
/// status: the HTTP status, and the SOAP fault when the body carries one.
fn failure(to: &str, status: u16, body: &str) -> String {
    let fault = match soap::decode(body) {
        Ok(AcsEnvelope {
            body: AcsMessage::Fault(fault),
            ..
        }) => format!(": SOAP Fault {} {}", fault.code, fault.message),
        _ => String::new(),
    };
    if !(200..300).contains(&status) {
        format!("the ACS answered {to} with HTTP {status}{fault}")
    } else if body.trim().is_empty() {
        format!("the ACS answered {to} with an empty body")
    } else if fault.is_empty() {
        format!("the ACS answered {to} with a message that does not fit")
    } else {
        format!("the ACS answered {to}{fault}")
    }
}
