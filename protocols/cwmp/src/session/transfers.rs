//! The durable queue of transfers (Download, ScheduleDownload, Upload) and
//! ChangeDUState requests, and the reports that end them
//! (TransferComplete, AutonomousTransferComplete, DUStateChangeComplete).

use super::*;

impl Engine {
    /// The next download that is due (now `wall`), marked as started:
    /// the driver performs it and reports with [`Engine::transfer_complete`].
    pub fn poll_transfer(&mut self, tree: &mut Tree, wall: i64) -> Option<QueuedDownload> {
        // A scheduled download whose windows have all passed fails (9020).
        let expired: Vec<QueuedDownload> = self
            .durable
            .transfers
            .iter()
            .filter(|t| !t.started && t.deadline.is_some_and(|d| d <= wall))
            .cloned()
            .collect();
        for transfer in expired {
            self.durable
                .transfers
                .retain(|t| t.command_key != transfer.command_key || t.started);
            self.transfer_complete(
                tree,
                TransferResult {
                    command_key: transfer.command_key,
                    fault_code: FaultCode::OutsideTimeWindows.code(),
                    fault_string: "Download failure: unable to complete download within specified time windows".into(),
                    start: wall,
                    complete: wall,
                    upload: false,
                    scheduled: true,
                    autonomous: None,
                },
            );
        }
        let transfer = self
            .durable
            .transfers
            .iter_mut()
            .find(|t| !t.started && t.due <= wall)?;
        transfer.started = true;
        let transfer = transfer.clone();
        self.save(tree);
        Some(transfer)
    }

    /// A download was installed into the inactive slot and the device is
    /// about to reboot into it: its outcome is decided at the next start,
    /// by the software version then.
    pub fn transfer_awaiting_reboot(&mut self, tree: &mut Tree, command_key: &str, before: String) {
        if let Some(transfer) = self
            .durable
            .transfers
            .iter_mut()
            .find(|t| t.started && t.command_key == command_key)
        {
            transfer.awaiting_reboot = Some(before);
        }
        self.save(tree);
    }

    /// A transfer the ACS did not ask for ended (TR-069 §A.3.3.3): it is
    /// reported with AutonomousTransferComplete in a session whose Inform
    /// says "10 AUTONOMOUS TRANSFER COMPLETE", started now.
    pub fn autonomous_transfer_complete(&mut self, tree: &mut Tree, result: TransferResult) {
        if result.autonomous.is_none() {
            return self.transfer_complete(tree, result);
        }
        self.add_event(EventCode::AutonomousTransferComplete, "");
        self.durable.completed.push(result);
        self.save(tree);
        self.wanted = true;
    }

    /// The next ChangeDUState to perform, if one waits and none runs; the
    /// driver performs it and reports with [`Engine::du_change_complete`].
    pub fn poll_du_change(&mut self, tree: &mut Tree) -> Option<DuChange> {
        if self.durable.du_changes.iter().any(|c| c.started) {
            return None;
        }
        let change = self.durable.du_changes.first_mut()?;
        change.started = true;
        let change = change.clone();
        self.save(tree);
        Some(change)
    }

    /// A ChangeDUState finished: DUStateChangeComplete goes out in a new
    /// session with "11 DU STATE CHANGE COMPLETE" and "M ChangeDUState".
    pub fn du_change_complete(
        &mut self,
        tree: &mut Tree,
        command_key: &str,
        results: Vec<soap::DuResult>,
    ) {
        if let Some(i) = self
            .durable
            .du_changes
            .iter()
            .position(|c| c.started && c.command_key == command_key)
        {
            self.durable.du_changes.remove(i);
        }
        self.add_event(EventCode::DuStateChangeComplete, "");
        self.add_event(EventCode::MChangeDuState, command_key);
        self.durable.du_completed.push(DuCompleted {
            command_key: command_key.to_owned(),
            results,
        });
        self.save(tree);
        self.wanted = true;
    }

    /// A download ended: its TransferComplete goes out in a new session
    /// with "7 TRANSFER COMPLETE" and "M Download" (TR-069 §A.3.3.2).
    pub fn transfer_complete(&mut self, tree: &mut Tree, result: TransferResult) {
        self.durable
            .transfers
            .retain(|t| t.command_key != result.command_key || !t.started);
        self.add_event(EventCode::TransferComplete, "");
        self.add_event(transfer_event(&result), &result.command_key);
        self.durable.completed.push(result);
        self.save(tree);
        self.wanted = true;
    }

    /// Only what can be carried out is accepted (TR-069 §A.3.2.8):
    /// firmware images over HTTP(S) or FTP, while the queue has room.
    pub(super) fn acceptable_download(
        &self,
        transfer: &soap::Transfer,
    ) -> Result<(), (FaultCode, String)> {
        if !TRANSFER_SCHEMES.iter().any(|s| transfer.url.starts_with(s)) {
            return Err((
                FaultCode::UnsupportedTransferProtocol,
                format!(
                    "{}: only http://, https:// and ftp:// are downloaded",
                    transfer.url
                ),
            ));
        }
        if transfer.file_type != FIRMWARE_IMAGE && transfer.file_type != CONFIGURATION_DOWNLOAD {
            return Err((
                FaultCode::InvalidArguments,
                format!(
                    "file type {:?} is not downloaded by this device",
                    transfer.file_type
                ),
            ));
        }
        if self.durable.transfers.len() >= MAX_TRANSFERS {
            return Err((
                FaultCode::ResourcesExceeded,
                "too many queued transfers".into(),
            ));
        }
        Ok(())
    }

    /// The queued downloads as GetQueuedTransfers reports them.
    pub(super) fn queued(&self) -> Vec<soap::QueuedTransfer> {
        self.durable
            .transfers
            .iter()
            .map(|t| soap::QueuedTransfer {
                command_key: t.command_key.clone(),
                state: if t.started { 2 } else { 1 },
                is_download: !t.upload,
                file_type: t.file_type.clone(),
                file_size: t.file_size,
                target_file_name: t.target_file_name.clone(),
            })
            .collect()
    }
}

/// The UUID an operation names, for its result. An Install may leave the
/// choice to the CPE; one that failed before choosing reports the nil UUID
/// (OpResultStruct requires one).
pub fn du_uuid(op: &soap::DuOperation) -> &str {
    match op {
        soap::DuOperation::Install { uuid, .. }
        | soap::DuOperation::Update { uuid, .. }
        | soap::DuOperation::Uninstall { uuid, .. }
            if !uuid.is_empty() =>
        {
            uuid
        }
        _ => "00000000-0000-0000-0000-000000000000",
    }
}

/// 8-4-4-4-12 hexadecimal digits (TR-069 DeploymentUnitUUID).
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}
