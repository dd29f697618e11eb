//! The ACS's requests answered (TR-069 Annex A): the data-model RPCs on
//! the tree, transfers queued, host actions after the session.

use super::*;

impl Engine {
    /// The answer to an ACS request. The lists of GetParameterValues and
    /// GetParameterNames are written out as they are sent ([`soap::Body`]).
    /// `None`: a write that waits for the host; the answer comes with
    /// [`Engine::host_work_done`].
    pub(super) fn answer(
        &mut self,
        tree: &mut Tree,
        id: Option<&str>,
        request: AcsRequest,
        wall: i64,
    ) -> Option<soap::Body> {
        let e = Encoder::new(self.version);
        let fault = |f: soap::Fault| e.fault(id, f.code, &f.message, &f.parameters).into();
        let (written, kind) = match request {
            AcsRequest::SetParameterValues {
                parameters,
                parameter_key,
            } => (
                rpc::set_parameter_values_prepared(tree, &parameters, &parameter_key),
                HostAnswer::SetParameterValues,
            ),
            AcsRequest::AddObject {
                object,
                parameter_key,
            } => (
                rpc::add_object_prepared(tree, Origin::Acs, &object, Some(&parameter_key)),
                HostAnswer::AddObject,
            ),
            AcsRequest::DeleteObject {
                object,
                parameter_key,
            } => (
                rpc::delete_object_prepared(tree, Origin::Acs, &object, Some(&parameter_key)),
                HostAnswer::DeleteObject,
            ),
            AcsRequest::GetParameterValues { ref names } => {
                // Values that need slow host I/O first (a provider's
                // volatile value) and tables the host gives on demand
                // (the processes): fetched off the lock, then answered
                // (`host_reads_done`).
                let mut paths = rpc::selected_paths(tree, names);
                paths.extend(rpc::tables_listed(tree, names));
                return self.read_first(tree, id, request, paths, wall, e, fault);
            }
            AcsRequest::GetParameterNames { ref path, .. } => {
                let paths = rpc::tables_listed(tree, std::slice::from_ref(path));
                return self.read_first(tree, id, request, paths, wall, e, fault);
            }
            other => return Some(self.answer_now(tree, id, other, wall, e, fault)),
        };
        match written {
            rpc::Written::Done(result) => Some(write_answer(&e, id, kind, result).into()),
            rpc::Written::Host(mut host) => {
                self.host_work = Some(host.take_work());
                self.host = Some((id.map(str::to_owned), kind, host));
                None
            }
        }
    }

    /// The host writes an ACS request waits for, once: the driver makes
    /// them off the tree's lock and reports with
    /// [`Engine::host_work_done`].
    pub fn poll_host_work(&mut self) -> Option<dm_core::HostWork> {
        self.host_work.take()
    }

    /// The outcome of the host writes [`Engine::poll_host_work`] gave: the
    /// request is answered (the answer is the next POST) and the tree
    /// changed or not. Returns the writes' undo when the tree could not
    /// take them (for the driver to run, off the lock).
    pub fn host_work_done(
        &mut self,
        tree: &mut Tree,
        outcome: Result<dm_core::HostWork, dm_core::Error>,
    ) -> Option<dm_core::HostWork> {
        // No request waits any more: the writes are taken back, the tree
        // never took them.
        let Some((id, kind, host)) = self.host.take() else {
            return outcome.ok();
        };
        let (result, undo) = host.complete(tree, outcome);
        let e = Encoder::new(self.version);
        let reply: soap::Body = write_answer(&e, id.as_deref(), kind, result).into();
        if matches!(self.phase, Phase::Exchanging { .. }) {
            self.queue_reply(reply);
        }
        undo
    }

    /// The host reads a GetParameterValues or GetParameterNames waits for
    /// (volatile values, tables read on demand), once: the driver makes
    /// them off the tree's lock and reports with
    /// [`Engine::host_reads_done`].
    pub fn poll_host_reads(&mut self) -> Option<dm_core::HostReads> {
        self.host_reads.take()
    }

    /// What the reads [`Engine::poll_host_reads`] gave brought back: the
    /// request is answered with them (the answer is the next POST), and
    /// they are forgotten. Returns what of them did not fit (skipped; the
    /// rest is served), for the log.
    pub fn host_reads_done(&mut self, tree: &mut Tree, fetched: dm_core::Fetched) -> Vec<String> {
        let Some((id, request)) = self.reading.take() else {
            return Vec::new();
        };
        let warnings = tree.supply(fetched);
        let e = Encoder::new(self.version);
        let reply = self.answer_now(
            tree,
            id.as_deref(),
            request,
            self.clock.1,
            e,
            |f: soap::Fault| {
                e.fault(id.as_deref(), f.code, &f.message, &f.parameters)
                    .into()
            },
        );
        tree.forget_fetched(Origin::Acs);
        if matches!(self.phase, Phase::Exchanging { .. }) {
            self.queue_reply(reply);
        }
        warnings
    }

    /// Answers `request` now, or once the host reads `paths` need are
    /// made (`host_reads_done`).
    #[allow(clippy::too_many_arguments)]
    fn read_first(
        &mut self,
        tree: &mut Tree,
        id: Option<&str>,
        request: AcsRequest,
        paths: Vec<Path>,
        wall: i64,
        e: Encoder,
        fault: impl Fn(soap::Fault) -> soap::Body,
    ) -> Option<soap::Body> {
        let reads = tree.host_reads(Origin::Acs, &paths);
        if reads.is_empty() {
            return Some(self.answer_now(tree, id, request, wall, e, fault));
        }
        self.reading = Some((id.map(str::to_owned), request));
        self.host_reads = Some(reads);
        None
    }

    fn answer_now(
        &mut self,
        tree: &mut Tree,
        id: Option<&str>,
        request: AcsRequest,
        wall: i64,
        e: Encoder,
        fault: impl Fn(soap::Fault) -> soap::Body,
    ) -> soap::Body {
        match request {
            AcsRequest::GetParameterValues { names } => {
                match rpc::get_parameter_values(tree, &names) {
                    Ok(values) => e.get_parameter_values_response(id, values),
                    Err(f) => fault(f),
                }
            }
            AcsRequest::GetParameterNames { path, next_level } => {
                match rpc::get_parameter_names(tree, &path, next_level) {
                    Ok(names) => e.get_parameter_names_response(id, names),
                    Err(f) => fault(f),
                }
            }
            other => self.answer_text(tree, id, other, wall).into(),
        }
    }

    /// The answer to any other ACS request: short, written whole.
    pub(super) fn answer_text(
        &mut self,
        tree: &mut Tree,
        id: Option<&str>,
        request: AcsRequest,
        wall: i64,
    ) -> String {
        let e = Encoder::new(self.version);
        let fault = |f: soap::Fault| e.fault(id, f.code, &f.message, &f.parameters);
        let plain = |code: FaultCode, detail: &str| {
            e.fault(id, code.code(), &format!("{}: {detail}", code.text()), &[])
        };
        match request {
            AcsRequest::GetRPCMethods => e.get_rpc_methods_response(id, SUPPORTED),
            AcsRequest::SetParameterAttributes { changes } => {
                match rpc::set_parameter_attributes(tree, &changes) {
                    Ok(()) => {
                        self.remember_table_notifications(tree, &changes);
                        e.empty_response(id, "SetParameterAttributes")
                    }
                    Err(f) => fault(f),
                }
            }
            AcsRequest::GetParameterAttributes { names } => {
                match rpc::get_parameter_attributes(tree, &names) {
                    Ok(attributes) => e.get_parameter_attributes_response(id, &attributes),
                    Err(f) => fault(f),
                }
            }
            AcsRequest::Reboot { command_key } => {
                // Saved before answering: "M Reboot" must follow the
                // reboot even if we are killed before it happens.
                self.durable.reboot_command_key = Some(command_key);
                self.save(tree);
                self.after_session = AfterSession::Reboot;
                e.empty_response(id, "Reboot")
            }
            AcsRequest::FactoryReset => {
                self.after_session = AfterSession::FactoryReset;
                e.empty_response(id, "FactoryReset")
            }
            AcsRequest::ScheduleInform {
                delay_seconds,
                command_key,
            } => {
                if self.multiple_events() >= MAX_MULTIPLE_EVENTS {
                    return plain(FaultCode::ResourcesExceeded, "too many scheduled informs");
                }
                if delay_seconds == 0 {
                    // TR-069 §A.4.1.4: DelaySeconds must be greater than 0.
                    return plain(
                        FaultCode::InvalidArguments,
                        "DelaySeconds must be at least 1",
                    );
                }
                // Kept in Unix time so that it survives a restart.
                self.durable
                    .scheduled
                    .push((wall.saturating_add(i64::from(delay_seconds)), command_key));
                self.save(tree);
                e.empty_response(id, "ScheduleInform")
            }
            AcsRequest::Download(transfer) => {
                if let Err((code, text)) = self.acceptable_download(&transfer) {
                    return plain(code, &text);
                }
                self.durable.transfers.push(QueuedDownload {
                    command_key: transfer.command_key,
                    file_type: transfer.file_type,
                    url: transfer.url,
                    username: transfer.username,
                    password: transfer.password,
                    file_size: transfer.file_size,
                    target_file_name: transfer.target_file_name,
                    due: wall.saturating_add(i64::from(transfer.delay_seconds)),
                    started: false,
                    upload: false,
                    scheduled: false,
                    deadline: None,
                    awaiting_reboot: None,
                });
                self.save(tree);
                e.download_response(id)
            }
            AcsRequest::ScheduleDownload { transfer, windows } => {
                // TR-069 §A.4.1.8: one or two windows, in order, each
                // ending after it starts. This device downloads at the
                // start of the first window whatever its mode, except
                // "4 Confirmation Needed", which needs a user it has not.
                let ordered = windows.windows(2).all(|w| w[0].end <= w[1].start);
                if windows.is_empty()
                    || windows.len() > 2
                    || !ordered
                    || windows.iter().any(|w| w.end <= w.start)
                {
                    return plain(
                        FaultCode::InvalidArguments,
                        "time windows out of order or empty",
                    );
                }
                if windows.iter().any(|w| w.mode.starts_with("4 ")) {
                    return plain(
                        FaultCode::RequestDenied,
                        "WindowMode 4 Confirmation Needed: this device has no user to ask",
                    );
                }
                if let Err((code, text)) = self.acceptable_download(&transfer) {
                    return plain(code, &text);
                }
                let last_end = windows.iter().map(|w| w.end).max().unwrap_or(0);
                self.durable.transfers.push(QueuedDownload {
                    command_key: transfer.command_key,
                    file_type: transfer.file_type,
                    url: transfer.url,
                    username: transfer.username,
                    password: transfer.password,
                    file_size: transfer.file_size,
                    target_file_name: transfer.target_file_name,
                    due: wall.saturating_add(i64::from(windows[0].start)),
                    started: false,
                    upload: false,
                    scheduled: true,
                    deadline: Some(wall.saturating_add(i64::from(last_end))),
                    awaiting_reboot: None,
                });
                self.save(tree);
                e.empty_response(id, "ScheduleDownload")
            }
            AcsRequest::Upload {
                command_key,
                file_type,
                url,
                username,
                password,
                delay_seconds,
            } => {
                if !TRANSFER_SCHEMES.iter().any(|s| url.starts_with(s)) {
                    return plain(
                        FaultCode::UnsupportedTransferProtocol,
                        &format!("{url}: only http://, https:// and ftp:// are uploaded to"),
                    );
                }
                if file_type != VENDOR_LOG && file_type != CONFIGURATION_UPLOAD {
                    return plain(
                        FaultCode::InvalidArguments,
                        &format!("file type {file_type:?} is not uploaded by this device"),
                    );
                }
                if self.durable.transfers.len() >= MAX_TRANSFERS {
                    return plain(FaultCode::ResourcesExceeded, "too many queued transfers");
                }
                self.durable.transfers.push(QueuedDownload {
                    command_key,
                    file_type,
                    url,
                    username,
                    password,
                    file_size: 0,
                    target_file_name: String::new(),
                    due: wall.saturating_add(i64::from(delay_seconds)),
                    started: false,
                    upload: true,
                    scheduled: false,
                    deadline: None,
                    awaiting_reboot: None,
                });
                self.save(tree);
                e.upload_response(id)
            }
            AcsRequest::CancelTransfer { command_key } => {
                // TR-069 §A.4.1.6: a transfer not yet started can be
                // cancelled; one in progress cannot (9021).
                match self
                    .durable
                    .transfers
                    .iter()
                    .position(|t| t.command_key == command_key)
                {
                    Some(i) if self.durable.transfers[i].started => plain(
                        FaultCode::CancelationNotPermitted,
                        "the transfer is in progress",
                    ),
                    Some(i) => {
                        self.durable.transfers.remove(i);
                        self.save(tree);
                        e.empty_response(id, "CancelTransfer")
                    }
                    None => plain(
                        FaultCode::InvalidArguments,
                        &format!("no queued transfer has CommandKey {command_key:?}"),
                    ),
                }
            }
            AcsRequest::GetQueuedTransfers => {
                e.queued_transfers_response(id, false, &self.queued())
            }
            AcsRequest::GetAllQueuedTransfers => {
                e.queued_transfers_response(id, true, &self.queued())
            }
            AcsRequest::ChangeDUState {
                command_key,
                operations,
            } => {
                // TR-069 §A.4.1.10: a malformed UUID is refused at once
                // (9022); the rest is found out while performing.
                for op in &operations {
                    let uuid = du_uuid(op);
                    if !is_uuid(uuid) {
                        return plain(FaultCode::InvalidUuidFormat, uuid);
                    }
                    if let soap::DuOperation::Install { url, .. } = op
                        && !TRANSFER_SCHEMES
                            .iter()
                            .chain(&["coap://", "coaps://"])
                            .any(|s| url.starts_with(s))
                    {
                        return plain(
                            FaultCode::UnsupportedTransferProtocol,
                            &format!("{url}: not http(s), ftp or coap(s)"),
                        );
                    }
                }
                if self.durable.du_changes.len() >= MAX_DU_CHANGES {
                    return plain(
                        FaultCode::ResourcesExceeded,
                        "too many queued ChangeDUState",
                    );
                }
                self.durable.du_changes.push(DuChange {
                    command_key,
                    operations,
                    started: false,
                });
                self.save(tree);
                e.empty_response(id, "ChangeDUState")
            }
            AcsRequest::SetVouchers { .. } => plain(
                FaultCode::RequestDenied,
                "this device has no options that vouchers could enable",
            ),
            other => plain(
                FaultCode::MethodNotSupported,
                &format!("{} is not served by this device yet", other.name()),
            ),
        }
    }
}

/// The answer to a write RPC from its outcome.
fn write_answer(
    e: &Encoder,
    id: Option<&str>,
    kind: HostAnswer,
    result: Result<rpc::WriteResult, soap::Fault>,
) -> String {
    match (kind, result) {
        (_, Err(f)) => e.fault(id, f.code, &f.message, &f.parameters),
        (HostAnswer::SetParameterValues, Ok(r)) => {
            e.set_parameter_values_response(id, status_of(r))
        }
        (HostAnswer::DeleteObject, Ok(r)) => e.delete_object_response(id, status_of(r)),
        (HostAnswer::AddObject, Ok(rpc::WriteResult::Added { instance, status })) => {
            e.add_object_response(id, instance, status)
        }
        (HostAnswer::AddObject, Ok(rpc::WriteResult::Status(status))) => {
            e.add_object_response(id, 0, status)
        }
    }
}

fn status_of(result: rpc::WriteResult) -> u8 {
    match result {
        rpc::WriteResult::Status(status) | rpc::WriteResult::Added { status, .. } => status,
    }
}
