//! When sessions start: periodic and scheduled Informs, retries with the
//! TR-069 back-off (§3.2.1.1), the ManagementServer settings they follow.

use super::*;

impl Engine {
    /// Timers: periodic inform, retries, scheduled informs.
    pub fn handle_timeout(&mut self, tree: &mut Tree, now: Instant, wall: i64) {
        self.clock = (now, wall);
        if self.next_periodic.is_some_and(|t| t <= now) {
            self.add_event(EventCode::Periodic, "");
            self.save(tree);
            self.wanted = true;
            self.next_periodic = None;
            self.schedule_periodic(tree, now, wall);
        }
        if self.next_retry.is_some_and(|t| t <= now) {
            self.next_retry = None;
            self.wanted = true;
        }
        let due: Vec<String> = self
            .durable
            .scheduled
            .iter()
            .filter(|(t, _)| *t <= wall)
            .map(|(_, key)| key.clone())
            .collect();
        self.durable.scheduled.retain(|(t, _)| *t > wall);
        if !due.is_empty() {
            self.add_event(EventCode::Scheduled, "");
            for key in due {
                self.add_event(EventCode::MScheduleInform, &key);
            }
            self.save(tree);
            self.wanted = true;
        }
    }

    /// Starts a session if one is wanted and none is open. `wall` is the
    /// Unix time, for the Inform's CurrentTime.
    pub fn poll_start(&mut self, tree: &mut Tree, wall: i64) {
        if self.phase != Phase::Idle || !self.wanted || self.next_retry.is_some() {
            return;
        }
        let s = settings(tree);
        let enabled = matches!(
            tree.read(Origin::Agent, &ms(management_server::ENABLE_CWMP)),
            Ok(ResourceValue::Single(Value::Boolean(true)))
        );
        if !enabled || s.url.is_empty() {
            return;
        }
        self.wanted = false;
        // TransferComplete may only go in a session whose Inform says
        // "7 TRANSFER COMPLETE" (with its "M Download"): after a session
        // that failed once its Inform was acknowledged, they are back.
        let completed: Vec<(EventCode, String)> = self
            .durable
            .completed
            .iter()
            .map(|c| (transfer_event(c), c.command_key.clone()))
            .collect();
        if completed
            .iter()
            .any(|(e, _)| *e != EventCode::AutonomousTransferComplete)
        {
            self.add_event(EventCode::TransferComplete, "");
        }
        // Requests of ours still waiting (a session that failed after its
        // Inform was acknowledged took their events with it).
        let requested: Vec<EventCode> = self
            .durable
            .cpe_requests
            .iter()
            .map(|r| request_event(tree, r))
            .collect();
        for event in requested {
            self.add_event(event, "");
        }
        let du_keys: Vec<String> = self
            .durable
            .du_completed
            .iter()
            .map(|c| c.command_key.clone())
            .collect();
        if !du_keys.is_empty() {
            self.add_event(EventCode::DuStateChangeComplete, "");
            for key in du_keys {
                if !self
                    .durable
                    .events
                    .iter()
                    .any(|(c, k)| *c == EventCode::MChangeDuState && *k == key)
                {
                    self.add_event(EventCode::MChangeDuState, &key);
                }
            }
        }
        if !completed.is_empty() {
            for (event, key) in completed {
                if event == EventCode::AutonomousTransferComplete {
                    self.add_event(EventCode::AutonomousTransferComplete, "");
                    continue;
                }
                if !self
                    .durable
                    .events
                    .iter()
                    .any(|(c, k)| *c == event && *k == key)
                {
                    self.add_event(event, &key);
                }
            }
        }
        if self.durable.events.is_empty() {
            // Nothing to report: the retry of a session whose Inform was
            // acknowledged (its events delivered) before it failed. No
            // event code stands for "again", and GenieACS crashes on an
            // Inform with an empty Event list; the ACS reaches us with a
            // connection request if it still wants the device. The retry
            // is over, so is its count.
            if self.durable.retry_count != 0 {
                self.durable.retry_count = 0;
                self.save(tree);
            }
            return;
        }
        self.in_flight = self.durable.events.clone();
        self.announced = self.in_flight.iter().map(|(c, _)| c.clone()).collect();
        self.in_flight_changed = self.durable.changed.clone();
        self.changed_again.clear();
        self.hold_requests = false;
        self.version = CwmpVersion::LATEST;
        self.inform_id += 1;
        let inform = self.inform(tree, wall);
        self.events.push_back(EngineEvent::SessionStarted {
            events: self.in_flight.iter().map(|(c, _)| c.to_string()).collect(),
        });
        self.outbox.push_back(inform.into());
        self.phase = Phase::Informing;
    }

    /// Arms the periodic timer from PeriodicInformInterval and, when it is
    /// known, PeriodicInformTime (TR-069 §3.2.1.1: informs happen at
    /// PeriodicInformTime + n × interval).
    pub(super) fn schedule_periodic(&mut self, tree: &Tree, now: Instant, wall: i64) {
        let s = settings(tree);
        if !s.periodic_enable || s.periodic_interval == 0 {
            self.next_periodic = None;
            return;
        }
        let interval = s.periodic_interval;
        let delay = if s.periodic_time > values::UNKNOWN_TIME && wall != wall_clock_unknown() {
            let since = (wall - s.periodic_time).rem_euclid(interval as i64) as u64;
            let delay = interval - since;
            if delay == 0 { interval } else { delay }
        } else {
            interval
        };
        self.next_periodic = Some(now + Duration::from_secs(delay));
    }

    pub(super) fn timeout(&self, with_transfers: bool) -> Option<Instant> {
        let (now, wall) = self.clock;
        let at =
            |t: i64| now + Duration::from_secs(u64::try_from(t.saturating_sub(wall)).unwrap_or(0));
        let scheduled = self.durable.scheduled.iter().map(|(t, _)| at(*t)).chain(
            self.durable
                .transfers
                .iter()
                .filter(|t| with_transfers && !t.started)
                .map(|t| at(t.due)),
        );
        [self.next_periodic, self.next_retry]
            .into_iter()
            .flatten()
            .chain(scheduled)
            .min()
    }
}

pub(super) fn wall_clock_unknown() -> i64 {
    i64::MIN
}

pub(super) fn settings(tree: &Tree) -> Settings {
    let read = |r| tree.read(Origin::Agent, &ms(r)).ok();
    let string = |r| match read(r) {
        Some(ResourceValue::Single(Value::String(s))) => s,
        _ => String::new(),
    };
    let unsigned = |r, default| match read(r) {
        Some(ResourceValue::Single(Value::Unsigned(u))) => u,
        _ => default,
    };
    Settings {
        url: string(management_server::URL),
        periodic_enable: matches!(
            read(management_server::PERIODIC_INFORM_ENABLE),
            Some(ResourceValue::Single(Value::Boolean(true)))
        ),
        periodic_interval: unsigned(management_server::PERIODIC_INFORM_INTERVAL, 3600),
        periodic_time: match read(management_server::PERIODIC_INFORM_TIME) {
            Some(ResourceValue::Single(Value::DateTime(t))) => t,
            _ => values::UNKNOWN_TIME,
        },
        retry_minimum: unsigned(management_server::CWMP_RETRY_MINIMUM_WAIT_INTERVAL, 5),
        retry_multiplier: unsigned(management_server::CWMP_RETRY_INTERVAL_MULTIPLIER, 2000),
    }
}
