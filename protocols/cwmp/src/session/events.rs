//! What starts a session and what an Inform reports (TR-069 §3.7.1.5): event
//! codes from requests, connection requests and value changes, the CPE's
//! own requests queued durably.

use super::*;

impl Engine {
    /// A connection request was accepted (TR-069 §3.2.2).
    /// A session asked for locally (the agent's control API, as icwmp's
    /// `ubus call tr069 inform`): `event` is the EventCode to report, a
    /// standard single one ("2 PERIODIC", "6 CONNECTION REQUEST", ...) or
    /// a vendor one ("X OUI name", TR-069 §3.7.1.5).
    pub fn request_session(&mut self, tree: &mut Tree, event: &str) -> Result<(), RequestError> {
        // icwmp's `inform GetRPCMethods`: a session that asks the ACS
        // which methods it serves, with a vendor event that says why (no
        // standard event does).
        if event == "GetRPCMethods" {
            return self.queue_request(tree, CpeRequest::GetRpcMethods);
        }
        let code = EventCode::parse(event);
        let allowed = matches!(
            code,
            EventCode::Boot
                | EventCode::Periodic
                | EventCode::Scheduled
                | EventCode::ValueChange
                | EventCode::ConnectionRequest
                | EventCode::DiagnosticsComplete
        ) || code.is_vendor();
        if !allowed {
            return Err(RequestError::UnknownEvent(event.to_owned()));
        }
        self.add_event(code, "");
        self.save(tree);
        self.wanted = true;
        Ok(())
    }

    /// RequestDownload (TR-069 §A.4.2.1): asks the ACS for a file of
    /// `file_type` in a session with "9 REQUEST DOWNLOAD".
    pub fn request_download(
        &mut self,
        tree: &mut Tree,
        file_type: &str,
        args: Vec<(String, String)>,
    ) -> Result<(), RequestError> {
        let request = CpeRequest::RequestDownload {
            file_type: file_type.to_owned(),
            args,
        };
        self.queue_request(tree, request)
    }

    /// Kicked (TR-069 §A.4.2.3), in a session with "5 KICKED"; the ACS's
    /// NextURL comes back as [`EngineEvent::Kicked`].
    pub fn kicked(&mut self, tree: &mut Tree, kick: soap::Kick) -> Result<(), RequestError> {
        kick.check()?;
        self.queue_request(tree, CpeRequest::Kicked(kick))
    }

    pub(super) fn queue_request(
        &mut self,
        tree: &mut Tree,
        request: CpeRequest,
    ) -> Result<(), RequestError> {
        if self.durable.cpe_requests.len() >= MAX_CPE_REQUESTS {
            return Err(RequestError::QueueFull);
        }
        let event = request_event(tree, &request);
        if !self.durable.cpe_requests.contains(&request) {
            self.durable.cpe_requests.push(request);
        }
        self.add_event(event, "");
        self.save(tree);
        self.wanted = true;
        Ok(())
    }

    /// A connection request: a session within 30 s (TR-069 §3.2.2), even
    /// while a failed session waits for its retry: the ACS just showed it
    /// is there (the retry count goes on, it is reset only by a session
    /// that succeeds).
    pub fn handle_connection_request(&mut self, tree: &mut Tree) {
        self.add_event(EventCode::ConnectionRequest, "");
        self.save(tree);
        self.wanted = true;
        self.next_retry = None;
    }

    /// A change on the tree. Changes made by the ACS itself are never
    /// reported back (TR-069 §A.3.2.4); others are reported per the
    /// parameter's notification attribute: active starts a session,
    /// passive waits for the next one.
    pub fn handle_change(&mut self, tree: &mut Tree, change: &Change) {
        self.follow_diagnostics(tree, change);
        if change.origin == Origin::Acs {
            return;
        }
        if change.kind == ChangeKind::Created {
            self.handle_created(tree, change);
            return;
        }
        let ChangeKind::Value(value) = &change.kind else {
            return;
        };
        let (Some(resource), Some(instance)) =
            (change.path.resource_id(), change.path.instance_id())
        else {
            return;
        };
        let object = change.path.object_id();
        let level = tree.attributes().notification(&change.path.without_index());
        let mut any = false;
        let mut active = false;
        for map in Resolver::global().parameters_for(object, resource) {
            // TR-181 tables number from 1: instance 0 (a declared object's
            // LwM2M-only instance) has no name.
            if map.has_instance() && instance.0 == 0 {
                continue;
            }
            let level = if map.active_notify == ActiveNotify::ForceEnabled {
                Notification::Active
            } else {
                level
            };
            if level == Notification::Off {
                continue;
            }
            let names: Vec<String> = match value {
                ResourceValue::Single(_) => vec![map.render(instance, change.path.index())],
                ResourceValue::Multiple(values) => values
                    .keys()
                    .map(|i| map.render(instance, Some(*i)))
                    .collect(),
            };
            for name in names {
                if self.in_flight_changed.contains(&name) {
                    self.changed_again.insert(name.clone());
                }
                self.durable.changed.insert(name);
            }
            any = true;
            active |= level == Notification::Active;
        }
        if active {
            self.add_event(EventCode::ValueChange, "");
            self.wanted = true;
        }
        if any {
            self.save(tree);
        }
    }

    /// A diagnostic test the ACS requested (its DiagnosticsState set to
    /// Requested) is remembered; when the agent ends it (Complete or an
    /// Error state), "8 DIAGNOSTICS COMPLETE" is queued and a session
    /// wanted; back to None (an input changed) or Canceled, it is
    /// forgotten.
    fn follow_diagnostics(&mut self, tree: &mut Tree, change: &Change) {
        let (
            ChangeKind::Value(ResourceValue::Single(Value::String(state))),
            Some(resource),
            Some(instance),
        ) = (
            &change.kind,
            change.path.resource_id(),
            change.path.instance_id(),
        )
        else {
            return;
        };
        for map in Resolver::global().parameters_for(change.path.object_id(), resource) {
            if !map.path.ends_with(".DiagnosticsState") {
                continue;
            }
            let name = map.render(instance, None);
            let changed = match (change.origin, state.as_str()) {
                (Origin::Acs, "Requested") => self.durable.diagnostics.insert(name),
                (_, "Requested") => false,
                // An input changed, or the test was canceled: no report.
                (_, "None" | "Canceled") => self.durable.diagnostics.remove(&name),
                (_, _) => {
                    if self.durable.diagnostics.remove(&name) {
                        self.add_event(EventCode::DiagnosticsComplete, "");
                        self.wanted = true;
                        true
                    } else {
                        false
                    }
                }
            };
            if changed {
                self.save(tree);
            }
        }
    }

    /// SetParameterAttributes on a partial path sets the level of the
    /// parameters there now; it is also kept for instances created later
    /// (a field case from GenieACS users: new Hosts.Host entries were never
    /// reported). Level 0 forgets it.
    pub(super) fn remember_table_notifications(
        &mut self,
        tree: &mut Tree,
        changes: &[AttributeChange],
    ) {
        let mut any = false;
        for change in changes {
            let (Some(level), true) = (change.notification, change.name.ends_with('.')) else {
                continue;
            };
            any = true;
            if level == 0 {
                self.durable.table_notifications.remove(&change.name);
            } else {
                self.durable
                    .table_notifications
                    .insert(change.name.clone(), level);
            }
        }
        if any {
            self.save(tree);
        }
    }

    /// An instance created by someone other than the ACS, under a partial
    /// path with a notification level: its parameters get that level and
    /// are reported as changed (active: "4 VALUE CHANGE" at once).
    pub(super) fn handle_created(&mut self, tree: &mut Tree, change: &Change) {
        if self.durable.table_notifications.is_empty() {
            return;
        }
        let object = change.path.object_id();
        let Some(instance) = change.path.instance_id() else {
            return;
        };
        let resources: Vec<_> = match tree.instance(object, instance) {
            Ok(state) => state.resources().collect(),
            Err(_) => return,
        };
        let mut any = false;
        let mut active = false;
        for resource in resources {
            for map in Resolver::global().parameters_for(object, resource) {
                if !map.has_instance() || map.path.contains("{j}") || instance.0 == 0 {
                    continue;
                }
                let name = map.render(instance, None);
                let Some(level) = self
                    .durable
                    .table_notifications
                    .iter()
                    .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())
                    .and_then(|(_, level)| Notification::from_level(*level))
                else {
                    continue;
                };
                let path = Path::resource(object, instance, resource);
                let live = matches!(
                    tree.instance(object, instance)
                        .ok()
                        .and_then(|i| i.slot(resource)),
                    Some(dm_core::Slot::Live)
                );
                if !(live && level == Notification::Active)
                    && map.active_notify != ActiveNotify::ForceEnabled
                {
                    let _ = tree.set_notification(Origin::Acs, &path, level);
                }
                self.durable.changed.insert(name);
                any = true;
                active |= level == Notification::Active;
            }
        }
        if active {
            self.add_event(EventCode::ValueChange, "");
            self.wanted = true;
        }
        if any {
            self.save(tree);
        }
    }

    /// Changes were lost (the change stream overflowed): every parameter
    /// with notification on is reported as changed, the active ones with
    /// "4 VALUE CHANGE". Reporting an unchanged value is better than
    /// missing a change.
    pub fn handle_lost_changes(&mut self, tree: &mut Tree) {
        let notified: Vec<Path> = tree
            .attributes()
            .notified()
            .map(|(path, _)| *path)
            .filter(|path| path.resource_id().is_some())
            .collect();
        for path in notified {
            let Ok(value) = tree.read(Origin::Agent, &path) else {
                continue;
            };
            let change = Change {
                sequence: 0,
                origin: Origin::Agent,
                path,
                kind: ChangeKind::Value(value),
            };
            self.handle_change(tree, &change);
        }
    }

    pub(super) fn add_event(&mut self, code: EventCode, command_key: &str) {
        // A single event already waiting is not repeated; one already in
        // the Inform in flight is, since it happened again after.
        let waiting = &self.durable.events[self.in_flight.len().min(self.durable.events.len())..];
        if code.is_single() && waiting.iter().any(|(c, _)| *c == code) {
            return;
        }
        // cwmp-1-4.xsd allows 64 EventStructs in an Inform: an ACS that
        // floods ScheduleInform cannot grow the list past what can be sent.
        // Room is kept for the single events (at most one of each code).
        if !code.is_single() && self.multiple_events() >= MAX_MULTIPLE_EVENTS {
            return;
        }
        self.durable.events.push((code, command_key.to_owned()));
    }

    /// "M …" events waiting, and ScheduleInforms that will add one.
    pub(super) fn multiple_events(&self) -> usize {
        self.durable
            .events
            .iter()
            .filter(|(c, _)| !c.is_single())
            .count()
            + self.durable.scheduled.len()
    }

    /// A request of ours the ACS would not take: dropped, and said so.
    pub(super) fn refused_request(&mut self, dropped: CpeRequest) {
        if let CpeRequest::Kicked(kick) = &dropped {
            self.events.push_back(EngineEvent::Kicked {
                kick: kick.clone(),
                next_url: None,
            });
        }
        self.events.push_back(EngineEvent::ReportRefused {
            what: format!("{dropped:?}"),
        });
    }
}

pub(super) fn transfer_event(result: &TransferResult) -> EventCode {
    if result.autonomous.is_some() {
        return EventCode::AutonomousTransferComplete;
    }
    match (result.upload, result.scheduled) {
        (true, _) => EventCode::MUpload,
        (false, true) => EventCode::MScheduleDownload,
        (false, false) => EventCode::MDownload,
    }
}

/// The vendor event of a GetRPCMethods the CPE asks (icwmp's `inform
/// GetRPCMethods`): "X <OUI> GetRPCMethods", no standard event saying why.
pub(super) fn get_rpc_methods_event(tree: &Tree) -> EventCode {
    let oui = match tree.read(
        Origin::Agent,
        &Path::resource(device::ID, InstanceId(0), device::MANUFACTURER_OUI),
    ) {
        Ok(ResourceValue::Single(Value::String(oui))) if !oui.is_empty() => oui,
        _ => "000000".to_owned(),
    };
    EventCode::vendor(&oui, "GetRPCMethods")
}

/// The event a request of ours is announced with.
pub(super) fn request_event(tree: &Tree, request: &CpeRequest) -> EventCode {
    match request {
        CpeRequest::GetRpcMethods => get_rpc_methods_event(tree),
        CpeRequest::RequestDownload { .. } => EventCode::RequestDownload,
        CpeRequest::Kicked(_) => EventCode::Kicked,
    }
}
