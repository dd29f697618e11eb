//! Observations and notifications (LwM2M Core §6.4, RFC 7641): pmin,
//! pmax, epmin, epmax, gt/lt/st, values sampled when they have no change
//! events, notifications stored while offline.

use super::*;

impl Client {
    pub(super) fn attributes(&self, tree: &Tree, path: &Lwm2mPath) -> ObserveAttributes {
        let defaults = ObserveAttributes {
            pmin: match self.server_value(tree, dm_core::catalog::server::DEFAULT_MINIMUM_PERIOD) {
                Some(Value::Integer(v)) if v > 0 => u32::try_from(v).ok(),
                _ => None,
            },
            pmax: match self.server_value(tree, dm_core::catalog::server::DEFAULT_MAXIMUM_PERIOD) {
                Some(Value::Integer(v)) if v > 0 => u32::try_from(v).ok(),
                _ => None,
            },
            ..ObserveAttributes::default()
        };
        match mapping::to_core(path) {
            Ok(core) => tree
                .attributes()
                .effective_observe(self.config.short_server_id, &core)
                .inherit(&defaults),
            Err(_) => defaults,
        }
    }

    /// Sends the notifications that are due: changed and past pmin, or
    /// unchanged but at pmax (LwM2M Core §5.1.2, RFC 7641).
    pub(super) fn notify_due(&mut self, tree: &mut Tree, now: Instant) {
        if !self.is_registered() {
            // Offline: with Notification Storing (/1/x/6, default true)
            // each change is stored as the notification it would have
            // been, and all go out in order once registered again;
            // without it they are dropped (LwM2M Core §6.4.1).
            let storing = self.server_value(
                tree,
                dm_core::catalog::server::NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE,
            ) != Some(Value::Boolean(false));
            for i in 0..self.observations.len() {
                if !self.observations[i].dirty {
                    continue;
                }
                self.observations[i].dirty = false;
                if !storing {
                    continue;
                }
                let o = &self.observations[i];
                let (token, format) = (o.token.clone(), o.format);
                let read = match o.composite.clone() {
                    Some(paths) => self.read_composite(tree, &paths, format).ok(),
                    None => self
                        .read(tree, &o.path.clone(), Some(format))
                        .ok()
                        .map(|(p, _)| p),
                };
                if let Some(payload) = read {
                    self.stored_bytes += payload.len();
                    self.stored.push_back((token, format, payload));
                    while self.stored_bytes > MAX_STORED_BYTES {
                        match self.stored.pop_front() {
                            Some((_, _, old)) => self.stored_bytes -= old.len(),
                            None => break,
                        }
                    }
                }
            }
            return;
        }
        self.send_stored(now);
        let mut due = Vec::new();
        let mut unreported = Vec::new();
        let mut evaluated = Vec::new();
        let mut moved = Vec::new();
        for (i, o) in self.observations.iter().enumerate() {
            let attrs = self.observation_attributes(tree, o);
            let since = now.saturating_duration_since(o.last_sent);
            let secs = |s: u32| Duration::from_secs(s.into());
            let pmin_ok = since >= secs(attrs.pmin.unwrap_or(0));
            let pmax_due = attrs.pmax.is_some_and(|p| p > 0 && since >= secs(p));
            // LwM2M Core §5.1.2: epmin is the shortest time between two
            // samples of the value, epmax the longest. A value the platform
            // reads live (no change events) is sampled every epmax.
            let evaluated_since = now.saturating_duration_since(o.last_evaluated);
            let epmin_ok = evaluated_since >= secs(attrs.epmin.unwrap_or(0));
            // A value computed when read (Current Time, free memory) has no
            // change events: it is sampled every epmax, or at pmin (at
            // least every second), as Anjay samples it.
            let sample_every = sampling(&attrs, o, tree);
            let sampled = sample_every.is_some_and(|every| evaluated_since >= every);
            if pmax_due {
                due.push(i);
            } else if (o.dirty && epmin_ok || sampled) && pmin_ok {
                evaluated.push(i);
                let value = match o.composite {
                    Some(_) => None,
                    None => single_value(tree, &o.path),
                };
                // A sample without a change event is worth a notification
                // only if the value moved (and meets gt, lt, st).
                let moved = o.dirty || value != o.last_value;
                if moved && meets_change_conditions(&attrs, o.last_value.as_ref(), value.as_ref()) {
                    due.push(i);
                } else {
                    unreported.push(i);
                }
            } else if sampled {
                // Within pmin: a value that moved is a change, reported
                // once pmin allows.
                evaluated.push(i);
                if single_value(tree, &o.path) != o.last_value {
                    moved.push(i);
                }
            }
        }
        for i in evaluated {
            self.observations[i].last_evaluated = now;
        }
        for i in moved {
            self.observations[i].dirty = true;
        }
        // A change that meets none of gt, lt and st is not reported.
        for i in unreported {
            self.observations[i].dirty = false;
        }
        if due.is_empty() {
            return;
        }
        // Asleep in queue mode: wake the server with an Update first; the
        // notifications follow once it answers.
        if self.queue_mode && self.awake_until.is_none_or(|t| now >= t) {
            if !self.pending.values().any(|p| *p == Pending::Update) {
                self.update(tree, now);
            }
            return;
        }
        self.awake_until = Some(now + AWAKE_WINDOW);
        for i in due {
            let (path, format) = (self.observations[i].path, self.observations[i].format);
            let read = match self.observations[i].composite.clone() {
                Some(paths) => self
                    .read_composite(tree, &paths, format)
                    .map(|payload| (payload, format)),
                None => self.read(tree, &path, Some(format)),
            };
            let (payload, format) = match read {
                Ok(read) => read,
                // Unavailable for now (its provider is away): no
                // notification this time, the observation stays and is
                // tried again at its next pmax.
                Err(refused)
                    if refused.header.code
                        == MessageClass::Response(ResponseType::ServiceUnavailable) =>
                {
                    let o = &mut self.observations[i];
                    o.dirty = false;
                    o.last_sent = now;
                    continue;
                }
                Err(_) => {
                    // The observed thing is gone: end the observation with an
                    // error notification (RFC 7641 §3.2).
                    let o = self.observations.remove(i);
                    let mut packet = Packet::new();
                    packet.header.code = MessageClass::Response(ResponseType::NotFound);
                    packet.set_token(o.token);
                    self.coap.send_confirmable(now, packet);
                    return;
                }
            };
            let value = match self.observations[i].composite {
                Some(_) => None,
                None => single_value(tree, &path),
            };
            let o = &mut self.observations[i];
            o.last_value = value;
            o.sequence = o.sequence.wrapping_add(1) & 0x00ff_ffff;
            o.dirty = false;
            o.last_sent = now;
            let mut packet = Packet::new();
            packet.header.code = MessageClass::Response(ResponseType::Content);
            packet.set_token(o.token.clone());
            packet.set_observe_value(o.sequence);
            packet.add_option(CoapOption::ContentFormat, content_format(format));
            packet.payload = payload;
            // A notification larger than a block goes out as its first
            // block (RFC 7959 §2.6 with RFC 7641): the observer fetches the
            // rest with GETs, served from this same representation.
            let packet = if self.observations[i].composite.is_some() {
                packet
            } else {
                let request = get_request(&path);
                let key = format!(
                    "{:?} {}",
                    request.header.code,
                    options_text(&request, CoapOption::UriPath)
                );
                self.block2(&request, &key, packet)
            };
            self.coap.send_confirmable(now, packet);
        }
    }

    /// Sends the notifications stored while offline, oldest first, for the
    /// observations that still exist.
    pub(super) fn send_stored(&mut self, now: Instant) {
        if self.stored.is_empty() || (self.queue_mode && self.awake_until.is_none_or(|t| now >= t))
        {
            return;
        }
        self.stored_bytes = 0;
        for (token, format, payload) in std::mem::take(&mut self.stored) {
            let Some(o) = self.observations.iter_mut().find(|o| o.token == token) else {
                continue;
            };
            o.sequence = o.sequence.wrapping_add(1) & 0x00ff_ffff;
            o.last_sent = now;
            let mut packet = Packet::new();
            packet.header.code = MessageClass::Response(ResponseType::Content);
            packet.set_token(token);
            packet.set_observe_value(o.sequence);
            packet.add_option(CoapOption::ContentFormat, content_format(format));
            packet.payload = payload;
            self.coap.send_confirmable(now, packet);
        }
    }

    /// The attributes in force for an observation: a composite one uses
    /// the server's default periods (its paths may carry different ones).
    pub(super) fn observation_attributes(&self, tree: &Tree, o: &Observation) -> ObserveAttributes {
        match o.composite {
            Some(_) => self.attributes(
                tree,
                &Lwm2mPath {
                    object: dm_core::catalog::server::ID.0,
                    instance: None,
                    resource: None,
                    index: None,
                },
            ),
            None => self.attributes(tree, &o.path),
        }
    }
}

/// The value of a single resource (or one instance of a multiple one),
/// of any type: what a sample compares.
pub(super) fn single_value(tree: &Tree, path: &Lwm2mPath) -> Option<Value> {
    path.resource?;
    let core = mapping::to_core(&Lwm2mPath {
        index: None,
        ..*path
    })
    .ok()?;
    match tree.read(Origin::Agent, &core).ok()? {
        ResourceValue::Single(v) if path.index.is_none() => Some(v),
        ResourceValue::Multiple(values) => values.get(&path.index?).cloned(),
        ResourceValue::Single(_) => None,
    }
}

/// How often an observation's value is sampled without a change event:
/// every epmax when the server set it (its choice of evaluation period);
/// otherwise a value the tree computes at each read (no change events at
/// all) is sampled at pmin, never more than once a second nor more often
/// than epmin. `None`: it is not sampled (composites, stored values
/// without epmax).
pub(super) fn sampling(
    attrs: &ObserveAttributes,
    o: &Observation,
    tree: &Tree,
) -> Option<Duration> {
    if o.composite.is_some() {
        return None;
    }
    let secs = |s: u32| Duration::from_secs(s.into());
    let epmax = attrs.epmax.filter(|e| *e > 0).map(secs);
    let live = o.path.resource.is_some()
        && mapping::to_core(&Lwm2mPath {
            index: None,
            ..o.path
        })
        .ok()
        .and_then(|core| {
            let instance = tree.instance(core.object_id(), core.instance_id()?).ok()?;
            instance.slot(core.resource_id()?).cloned()
        })
        .is_some_and(|slot| slot == dm_core::Slot::Live);
    epmax.or_else(|| {
        live.then(|| {
            secs(attrs.pmin.unwrap_or(0))
                .max(secs(attrs.epmin.unwrap_or(0)))
                .max(Duration::from_secs(1))
        })
    })
}

pub(super) fn as_number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Integer(v) => Some(*v as f64),
        Value::Unsigned(v) => Some(*v as f64),
        Value::Float(v) => Some(*v),
        _ => None,
    }
}

/// Whether a change from `old` to `new` is to be notified under the
/// observation's change conditions (LwM2M Core §5.1.2): it crosses gt or
/// lt, or moves by at least st. With none of them set, every change is;
/// they apply to numbers only.
pub(super) fn meets_change_conditions(
    attrs: &ObserveAttributes,
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    if attrs.gt.is_none() && attrs.lt.is_none() && attrs.st.is_none() {
        return true;
    }
    let (Some(old), Some(new)) = (as_number(old), as_number(new)) else {
        // Not numeric: the conditions do not apply.
        return true;
    };
    let crosses = |t: f64| (old > t) != (new > t) || (old < t) != (new < t);
    attrs.gt.is_some_and(crosses)
        || attrs.lt.is_some_and(crosses)
        || attrs.st.is_some_and(|st| (new - old).abs() >= st)
}

/// Whether `outer` is `inner` or an ancestor of it.
pub(super) fn covers(outer: &Lwm2mPath, inner: &Lwm2mPath) -> bool {
    outer.object == inner.object
        && (outer.instance.is_none() || outer.instance == inner.instance)
        && (outer.resource.is_none() || outer.resource == inner.resource)
        && (outer.index.is_none() || outer.index == inner.index)
}

pub(super) fn attribute_text(a: &ObserveAttributes) -> String {
    let mut out = String::new();
    for (key, value) in [
        ("pmin", a.pmin),
        ("pmax", a.pmax),
        ("epmin", a.epmin),
        ("epmax", a.epmax),
    ] {
        if let Some(v) = value {
            out.push_str(&format!(";{key}={v}"));
        }
    }
    for (key, value) in [("gt", a.gt), ("lt", a.lt), ("st", a.st)] {
        if let Some(v) = value {
            out.push_str(&format!(";{key}={v}"));
        }
    }
    out
}
