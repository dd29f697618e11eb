//! The device-management operations a server asks for (LwM2M Core §6.3):
//! Read, Discover, Write, Write-Attributes, Execute, Create, Delete,
//! Observe, under Access Control.

use super::*;

impl Client {
    /// Serves one request from the server, and says so
    /// ([`ClientEvent::Served`]) unless the answer waits for the host
    /// (then [`Client::host_work_done`] says it).
    pub(super) fn serve(&mut self, tree: &mut Tree, now: Instant, request: &Packet) -> Packet {
        // Named first: a Bootstrap-Finish ends the bootstrap.
        let operation = operation_name(request, self.bootstrapping);
        let before = self.events.len();
        let response = self.serve_one(tree, now, request);
        if self.deferring.is_none() {
            // Ahead of what serving it caused (BootstrapFinished, on which
            // the driver stops reading events).
            let served = self.served_event(operation, request, &response);
            self.events.insert(before, served);
        }
        response
    }

    pub(super) fn served(&mut self, operation: &'static str, request: &Packet, response: &Packet) {
        let served = self.served_event(operation, request, response);
        self.events.push(served);
    }

    fn served_event(
        &self,
        operation: &'static str,
        request: &Packet,
        response: &Packet,
    ) -> ClientEvent {
        ClientEvent::Served {
            operation,
            path: format!("/{}", options_text(request, CoapOption::UriPath)),
            code: response.header.code.to_string(),
        }
    }

    fn serve_one(&mut self, tree: &mut Tree, now: Instant, request: &Packet) -> Packet {
        if self.bootstrapping {
            // The first operation of a server-initiated bootstrap: no
            // Bootstrap-Request goes out now, and what is there is kept to
            // roll back to, as for one we asked for.
            if !self
                .pending
                .values()
                .any(|p| *p == Pending::BootstrapRequest)
                && self.bootstrap_deadline.is_none()
            {
                self.retry_at = None;
                if self.bootstrap_saved.is_none() {
                    self.bootstrap_saved = Some(crate::bootstrap::save(tree));
                }
                self.events.push(ClientEvent::BootstrapStarted);
            }
            let served = crate::bootstrap::serve(tree, request, self.trust_anchors);
            // Each bootstrap operation shows the server is still at it.
            self.bootstrap_deadline = Some(now + self.coap.parameters().exchange_lifetime());
            if served.finished {
                self.bootstrap_deadline = None;
                self.bootstrap_saved = None;
                self.bootstrapping = false;
                self.failures = 0;
                self.events.push(ClientEvent::BootstrapFinished);
            }
            return served.response;
        }
        let origin = Origin::Server(self.config.short_server_id);
        if matches!(
            request.header.code,
            MessageClass::Request(RequestType::Fetch | RequestType::IPatch)
        ) {
            return self.serve_composite(tree, now, request);
        }
        let path = match request_path(request) {
            Ok(path) => path,
            Err(response) => return response,
        };
        if path.object == dm_core::catalog::security::ID.0 {
            return security_hidden();
        }
        let method = match request.header.code {
            MessageClass::Request(method) => method,
            _ => return error(ResponseType::BadRequest, "not a request"),
        };
        let accept = request
            .get_first_option(CoapOption::Accept)
            .map(|v| option_number(v))
            .map(|n| {
                u16::try_from(n)
                    .ok()
                    .and_then(ContentFormat::from_number)
                    .ok_or(n)
            });
        let content = request
            .get_first_option(CoapOption::ContentFormat)
            .map(|v| option_number(v))
            .map(|n| {
                u16::try_from(n)
                    .ok()
                    .and_then(ContentFormat::from_number)
                    .ok_or(n)
            });
        let observe = request
            .get_first_option(CoapOption::Observe)
            .map(|v| option_number(v));
        // Access Control (LwM2M Core §7.3.3): reads are checked per
        // instance where the values are gathered (object-level reads leave
        // out what the server may not read); the rest here.
        let needed = match method {
            RequestType::Put
                if request.payload.is_empty()
                    && request.get_option(CoapOption::UriQuery).is_some() =>
            {
                Some(Operation::Read)
            }
            RequestType::Put => Some(Operation::Write),
            RequestType::Post if path.instance.is_none() => Some(Operation::Create),
            RequestType::Post if path.resource.is_none() => Some(Operation::Write),
            RequestType::Post => Some(Operation::Execute),
            RequestType::Delete => Some(Operation::Delete),
            _ => None,
        };
        if let Some(operation) = needed
            && let Some(refused) = self.refused(tree, &path, operation)
        {
            return refused;
        }
        match method {
            RequestType::Get if accept == Some(Ok(ContentFormat::LinkFormat)) => {
                self.discover(tree, &path)
            }
            RequestType::Get => {
                let accept = match accept {
                    Some(Err(n)) => {
                        return error(
                            ResponseType::NotAcceptable,
                            &format!("content format {n} is not served"),
                        );
                    }
                    Some(Ok(f)) => Some(f),
                    None => None,
                };
                match self.read(tree, &path, accept) {
                    Ok((payload, format)) => {
                        let mut response = Packet::new();
                        response.header.code = MessageClass::Response(ResponseType::Content);
                        response.add_option(CoapOption::ContentFormat, content_format(format));
                        match observe {
                            // RFC 7641 §4.1: a client that cannot keep
                            // one more observation answers as to a plain GET.
                            Some(0)
                                if self.observations.len() >= MAX_OBSERVATIONS
                                    && !self
                                        .observations
                                        .iter()
                                        .any(|o| o.token == request.get_token()) => {}
                            // Values read from the host on request (the
                            // system log) change with no event to notify,
                            // and each read moves "since the last read":
                            // answered as a plain GET too, so the server
                            // knows it is not observing (and an earlier
                            // observation with this token ends, §3.3.1).
                            Some(0) if reads_from_host(tree, origin, &path) => {
                                self.observations.retain(|o| o.token != request.get_token());
                            }
                            Some(0) => {
                                self.observations.retain(|o| o.token != request.get_token());
                                self.observations.push(Observation {
                                    token: request.get_token().to_vec(),
                                    path,
                                    format,
                                    sequence: 0,
                                    last_sent: now,
                                    dirty: false,
                                    last_value: single_value(tree, &path),
                                    last_evaluated: now,
                                    composite: None,
                                });
                                response.set_observe_value(0);
                            }
                            Some(1) => self.observations.retain(|o| o.token != request.get_token()),
                            _ => {}
                        }
                        response.payload = payload;
                        response
                    }
                    Err(response) => response,
                }
            }
            RequestType::Put
                if request.payload.is_empty()
                    && request.get_option(CoapOption::UriQuery).is_some() =>
            {
                self.write_attributes(tree, &path, request)
            }
            RequestType::Put => self.write(tree, origin, &path, request, content, true),
            RequestType::Post if path.instance.is_none() => {
                self.create(tree, origin, &path, request, content)
            }
            RequestType::Post if path.resource.is_none() => {
                self.write(tree, origin, &path, request, content, false)
            }
            RequestType::Post => {
                let Ok(core) = mapping::to_core(&path) else {
                    return not_found(&path);
                };
                let arguments = String::from_utf8_lossy(&request.payload).into_owned();
                match tree.execute(origin, &core, &arguments) {
                    Ok(()) => status(ResponseType::Changed),
                    Err(e) => core_error(&e),
                }
            }
            RequestType::Delete => {
                let (Ok(core), Some(instance), None) =
                    (mapping::to_core(&path), path.instance, path.resource)
                else {
                    return error(
                        ResponseType::MethodNotAllowed,
                        "Delete takes an object instance",
                    );
                };
                let prepared = tree
                    .begin(origin)
                    .delete(core.object_id(), InstanceId(instance))
                    .prepare();
                self.commit_or_defer(
                    tree,
                    prepared,
                    Then::Deleted {
                        object: core.object_id(),
                        instance: InstanceId(instance),
                        response: status(ResponseType::Deleted),
                    },
                )
            }
            _ => error(ResponseType::MethodNotAllowed, "method not allowed"),
        }
    }

    /// Reads `path` in `accept` or the default format: text/plain (or
    /// octet-stream) for one resource, TLV otherwise.
    pub(super) fn read(
        &self,
        tree: &Tree,
        path: &Lwm2mPath,
        accept: Option<ContentFormat>,
    ) -> Result<(Vec<u8>, ContentFormat), Packet> {
        let items = self.items(tree, path)?;
        // One value: a single resource, or one instance of a multiple one.
        let single_value = path.resource.is_some()
            && items.len() == 1
            && (items[0].path.index.is_none() || path.index.is_some());
        let format = match accept {
            Some(f) => f,
            None if single_value && matches!(items[0].value, Value::Opaque(_)) => {
                ContentFormat::Opaque
            }
            None if single_value => ContentFormat::Text,
            None => ContentFormat::Tlv,
        };
        let payload = format::encode(format, path, &items).map_err(|e| format_error(&e))?;
        Ok((payload, format))
    }

    /// The values at `path`, as this server may read them: an instance it
    /// has no Read right on is 4.01, and left out of an object-level read.
    pub(super) fn items(&self, tree: &Tree, path: &Lwm2mPath) -> Result<Vec<Item>, Packet> {
        let origin = Origin::Server(self.config.short_server_id);
        let core = mapping::to_core(path).map_err(|_| not_found(path))?;
        if let Some(refused) = self.refused(tree, path, Operation::Read) {
            return Err(refused);
        }
        let mut items = Vec::new();
        let mut failure = None;
        if let Some(resource) = core.resource_id() {
            let Some(instance) = core.instance_id() else {
                return Err(not_found(path));
            };
            let whole = Path::resource(core.object_id(), instance, resource);
            match tree.read(origin, &whole) {
                Ok(value) => push_items(&mut items, path, value),
                Err(e) => return Err(core_error(&e)),
            }
            if let Some(index) = path.index {
                items.retain(|i: &Item| i.path.index == Some(index));
                if items.is_empty() {
                    return Err(not_found(path));
                }
            }
        } else {
            let walked = tree.walk(origin, &core, &mut |p, value| match value {
                Ok(value) => {
                    if let Some(lwm2m) = mapping::from_core(&p) {
                        push_items(&mut items, &lwm2m, value);
                    }
                }
                Err(e) => failure = Some(e),
            });
            if let Err(e) = walked {
                return Err(core_error(&e));
            }
            if let Some(e) = failure {
                return Err(core_error(&e));
            }
            if path.instance.is_none() {
                let ssid = self.config.short_server_id;
                let before = items.len();
                // Judged once per instance, not per value.
                let mut verdicts = HashMap::new();
                items.retain(|i| {
                    *verdicts.entry(i.path.instance).or_insert_with(|| {
                        access::allowed(
                            tree,
                            ssid,
                            core.object_id(),
                            i.path.instance.map(InstanceId),
                            Operation::Read,
                        )
                    })
                });
                if before > 0 && items.is_empty() {
                    return Err(error(
                        ResponseType::Unauthorized,
                        &format!("no instance of {path} may be read by server {ssid}"),
                    ));
                }
            }
        }
        Ok(items)
    }

    /// 4.01 when the Access Control object denies `operation` on `path`'s
    /// instance (or, without one, Create on its object) to this server.
    pub(super) fn refused(
        &self,
        tree: &Tree,
        path: &Lwm2mPath,
        operation: Operation,
    ) -> Option<Packet> {
        if path.object == dm_core::catalog::security::ID.0 {
            return Some(security_hidden());
        }
        let core = mapping::to_core(path).ok()?;
        // An object-level read is filtered per instance instead.
        if path.instance.is_none() && operation != Operation::Create {
            return None;
        }
        let ssid = self.config.short_server_id;
        (!access::allowed(
            tree,
            ssid,
            core.object_id(),
            path.instance.map(InstanceId),
            operation,
        ))
        .then(|| {
            error(
                ResponseType::Unauthorized,
                &format!("server {ssid} has no {operation:?} right on {path}"),
            )
        })
    }

    pub(super) fn discover(&self, tree: &Tree, path: &Lwm2mPath) -> Packet {
        let Ok(core) = mapping::to_core(path) else {
            return not_found(path);
        };
        let mut links = Vec::new();
        let attrs = |p: &Lwm2mPath| {
            let a = mapping::to_core(p)
                .map(|c| tree.attributes().observe(self.config.short_server_id, &c))
                .unwrap_or_default();
            attribute_text(&a)
        };
        let instances = match core.instance_id() {
            Some(i) => vec![i],
            None => tree.instances(core.object_id()).unwrap_or_default(),
        };
        if path.instance.is_none() {
            links.push(format!("</{}>{}", path.object, attrs(path)));
        }
        if let Some(refused) = self.refused(tree, path, Operation::Read) {
            return refused;
        }
        for instance in instances {
            if !access::allowed(
                tree,
                self.config.short_server_id,
                core.object_id(),
                Some(instance),
                Operation::Read,
            ) {
                continue;
            }
            let Ok(inst) = tree.instance(core.object_id(), instance) else {
                return not_found(path);
            };
            let inst_path = Lwm2mPath {
                instance: Some(instance.0),
                ..*path
            };
            if path.resource.is_none() {
                links.push(format!("<{inst_path}>{}", attrs(&inst_path)));
            }
            for resource in inst.resources() {
                let Some(lwm2m) =
                    mapping::from_core(&Path::resource(core.object_id(), instance, resource))
                        .and_then(|p| p.resource)
                else {
                    continue;
                };
                if path.resource.is_some_and(|want| want != lwm2m) {
                    continue;
                }
                let res_path = Lwm2mPath {
                    resource: Some(lwm2m),
                    ..inst_path
                };
                // A multiple resource says how many instances it has
                // (Core §5.4.2, the dim attribute).
                let dim = match inst.slot(resource) {
                    Some(dm_core::Slot::Stored(ResourceValue::Multiple(values))) => {
                        format!(";dim={}", values.len())
                    }
                    _ => String::new(),
                };
                links.push(format!("<{res_path}>{dim}{}", attrs(&res_path)));
            }
        }
        let mut response = status(ResponseType::Content);
        response.add_option(
            CoapOption::ContentFormat,
            content_format(ContentFormat::LinkFormat),
        );
        response.payload = links.join(",").into_bytes();
        response
    }

    pub(super) fn write(
        &mut self,
        tree: &mut Tree,
        origin: Origin,
        path: &Lwm2mPath,
        request: &Packet,
        content: Option<Result<ContentFormat, u64>>,
        replace: bool,
    ) -> Packet {
        let format = match content {
            Some(Ok(f)) => f,
            Some(Err(n)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {n}"),
                );
            }
            None => return error(ResponseType::BadRequest, "a Write needs a Content-Format"),
        };
        if path.instance.is_none() {
            return error(
                ResponseType::MethodNotAllowed,
                "Write targets an instance or resource",
            );
        }
        let items = match format::decode(format, path, &request.payload, &|p| type_in(tree, p)) {
            Ok(items) => items,
            Err(e) => return format_error(&e),
        };
        let held = if replace && path.resource.is_none() {
            held_multiples(tree, origin, path)
        } else {
            Vec::new()
        };
        let mut tx = tree.begin(origin);
        stage_items(&mut tx, path, &items, replace.then_some(&held[..]));
        let prepared = tx.prepare();
        self.commit_or_defer(tree, prepared, Then::Respond(status(ResponseType::Changed)))
    }

    /// Ends a request's transaction: answered now, or, when it must wait
    /// for host writes, later (`Client::host_work_done`) with a separate
    /// response. One request waits at a time; another meanwhile is 5.03.
    pub(super) fn commit_or_defer(
        &mut self,
        tree: &mut Tree,
        prepared: Result<dm_core::Prepared, dm_core::TransactionError>,
        then: Then,
    ) -> Packet {
        match prepared {
            Ok(dm_core::Prepared::Committed(_)) => self.then(tree, then),
            Ok(dm_core::Prepared::Pending(pending)) => {
                if self.host.is_some() || self.deferring.is_some() {
                    let path = pending
                        .created()
                        .first()
                        .copied()
                        .unwrap_or(Path::object(dm_core::ObjectId(0)));
                    let _ = tree.complete(pending, Err(Error::Busy(path)));
                    return error(
                        ResponseType::ServiceUnavailable,
                        "another change is being carried to the host; try again",
                    );
                }
                self.deferring = Some(HostWait {
                    pending,
                    then,
                    request: None,
                });
                // Replaced by an empty ACK (see `process`).
                status(ResponseType::Changed)
            }
            Err(e) => e
                .faults
                .first()
                .map_or_else(|| status(ResponseType::InternalServerError), core_error),
        }
    }

    /// What follows a transaction that went through, and its response.
    pub(super) fn then(&mut self, tree: &mut Tree, then: Then) -> Packet {
        match then {
            Then::Respond(response) => response,
            Then::Deleted {
                object,
                instance,
                response,
            } => {
                access::forget(tree, object, instance);
                response
            }
            Then::Created {
                object,
                instance,
                response,
            } => {
                // The creator owns the new instance (LwM2M Core §7.3.3).
                if let Err(e) = access::claim(tree, self.config.short_server_id, object, instance) {
                    // Not left without its owner: the Create fails whole.
                    let _ = tree.begin(Origin::Agent).delete(object, instance).commit();
                    return error(
                        ResponseType::InternalServerError,
                        &format!("the new instance's access control: {e}"),
                    );
                }
                response
            }
        }
    }

    /// The host reads a request waits for, once: the driver makes them off
    /// the tree's lock (`HostReads::run_within`) and reports with
    /// [`Client::host_reads_done`].
    pub fn poll_host_reads(&mut self) -> Option<dm_core::HostReads> {
        self.host_reads.take()
    }

    /// What the reads [`Client::poll_host_reads`] gave brought back: the
    /// tree keeps it for this server, and the waiting request is served
    /// and gets its separate response.
    pub fn host_reads_done(&mut self, tree: &mut Tree, now: Instant, fetched: dm_core::Fetched) {
        tree.supply(fetched);
        if let Some(request) = self.reading.take() {
            let response = self.serve_blockwise(tree, now, &request);
            self.coap.respond_later(now, &request, response);
        }
        tree.forget_fetched(Origin::Server(self.config.short_server_id));
    }

    /// The host writes a request waits for, once: the driver makes them
    /// off the tree's lock and reports with [`Client::host_work_done`].
    pub fn poll_host_work(&mut self) -> Option<dm_core::HostWork> {
        self.host_work.take()
    }

    /// The outcome of the host writes [`Client::poll_host_work`] gave: the
    /// transaction completes or not, and the waiting request gets its
    /// separate response. Returns the writes' undo when the tree could not
    /// take them (for the driver to run, off the lock).
    pub fn host_work_done(
        &mut self,
        tree: &mut Tree,
        now: Instant,
        outcome: Result<dm_core::HostWork, Error>,
    ) -> Option<dm_core::HostWork> {
        // No request waits any more (the engine was replaced, a new
        // session began): the writes are taken back, the tree never took
        // them.
        let Some(wait) = self.host.take() else {
            return outcome.ok();
        };
        let completion = tree.complete(wait.pending, outcome);
        let response = match completion.result {
            Ok(_) => self.then(tree, wait.then),
            Err(e) => e
                .faults
                .first()
                .map_or_else(|| status(ResponseType::InternalServerError), core_error),
        };
        if let Some(request) = &wait.request {
            self.served(operation_name(request, false), request, &response);
            self.coap.respond_later(now, request, response);
        }
        completion.undo
    }

    pub(super) fn create(
        &mut self,
        tree: &mut Tree,
        origin: Origin,
        path: &Lwm2mPath,
        request: &Packet,
        content: Option<Result<ContentFormat, u64>>,
    ) -> Packet {
        let Ok(core) = mapping::to_core(path) else {
            return not_found(path);
        };
        let format = match content {
            Some(Ok(f)) => f,
            Some(Err(n)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {n}"),
                );
            }
            None if request.payload.is_empty() => ContentFormat::Tlv,
            None => return error(ResponseType::BadRequest, "a Create needs a Content-Format"),
        };
        // The payload names the new instance (a TLV object instance, SenML
        // names with an instance) or holds bare resources (LwM2M Core
        // §5.4.5 allows both); then the tree chooses the number.
        let (items, chosen) =
            match format::decode(format, path, &request.payload, &|p| type_in(tree, p)) {
                Ok(items) => {
                    let chosen = items.iter().find_map(|i| i.path.instance);
                    (items, chosen)
                }
                Err(first) => {
                    let placeholder = Lwm2mPath {
                        instance: Some(0),
                        ..*path
                    };
                    match format::decode(format, &placeholder, &request.payload, &|p| {
                        type_in(tree, p)
                    }) {
                        Ok(items) => (items, None),
                        Err(_) => return format_error(&first),
                    }
                }
            };
        // One transaction, the new instance with its values: all or
        // nothing (and all or nothing with the host for a mirrored object).
        let instance = match chosen {
            Some(n) => InstanceId(n),
            None => match tree.free_instance(core.object_id()) {
                Ok(id) => id,
                Err(e) => return core_error(&e),
            },
        };
        let base = Lwm2mPath {
            instance: Some(instance.0),
            ..*path
        };
        let items: Vec<Item> = items
            .into_iter()
            .map(|i| Item {
                path: Lwm2mPath {
                    instance: Some(instance.0),
                    ..i.path
                },
                value: i.value,
            })
            .collect();
        let mut tx = tree.begin(origin);
        tx.create(core.object_id(), Some(instance));
        stage_items(&mut tx, &base, &items, None);
        let prepared = tx.prepare();
        let mut response = status(ResponseType::Created);
        response.add_option(
            CoapOption::LocationPath,
            path.object.to_string().into_bytes(),
        );
        response.add_option(
            CoapOption::LocationPath,
            instance.0.to_string().into_bytes(),
        );
        self.commit_or_defer(
            tree,
            prepared,
            Then::Created {
                object: core.object_id(),
                instance,
                response,
            },
        )
    }

    pub(super) fn write_attributes(
        &mut self,
        tree: &mut Tree,
        path: &Lwm2mPath,
        request: &Packet,
    ) -> Packet {
        let Ok(core) = mapping::to_core(path) else {
            return not_found(path);
        };
        let mut attrs = mapping::to_core(path)
            .map(|c| tree.attributes().observe(self.config.short_server_id, &c))
            .unwrap_or_default();
        for query in request
            .get_option(CoapOption::UriQuery)
            .into_iter()
            .flatten()
        {
            let query = String::from_utf8_lossy(query);
            let (key, value) = query.split_once('=').unwrap_or((&query, ""));
            let bad = || {
                error(
                    ResponseType::BadRequest,
                    &format!("bad attribute {query:?}"),
                )
            };
            let int = |v: &str| {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.parse::<u32>().map(Some)
                }
            };
            let float = |v: &str| {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.parse::<f64>().map(Some)
                }
            };
            let result = match key {
                "pmin" => int(value).map(|v| attrs.pmin = v).map_err(|_| ()),
                "pmax" => int(value).map(|v| attrs.pmax = v).map_err(|_| ()),
                "epmin" => int(value).map(|v| attrs.epmin = v).map_err(|_| ()),
                "epmax" => int(value).map(|v| attrs.epmax = v).map_err(|_| ()),
                "gt" => float(value).map(|v| attrs.gt = v).map_err(|_| ()),
                "lt" => float(value).map(|v| attrs.lt = v).map_err(|_| ()),
                "st" => float(value).map(|v| attrs.st = v).map_err(|_| ()),
                _ => Err(()),
            };
            if result.is_err() {
                return bad();
            }
        }
        // LwM2M Core §5.1.2: pmin must not exceed pmax.
        if let (Some(pmin), Some(pmax)) = (attrs.pmin, attrs.pmax)
            && pmax > 0
            && pmin > pmax
        {
            return error(ResponseType::BadRequest, "pmin is greater than pmax");
        }
        match tree.set_observe_attributes(self.config.short_server_id, &core, attrs) {
            Ok(()) => status(ResponseType::Changed),
            Err(e) => core_error(&e),
        }
    }
}

/// The writable multiple resources of an instance that hold values now.
pub(super) fn held_multiples(tree: &Tree, origin: Origin, instance: &Lwm2mPath) -> Vec<Lwm2mPath> {
    let Ok(core) = mapping::to_core(instance) else {
        return Vec::new();
    };
    let (Some(schema), Some(id)) = (tree.schema(core.object_id()), core.instance_id()) else {
        return Vec::new();
    };
    schema
        .resources
        .iter()
        .filter(|r| r.multiple && r.access.writable())
        .map(|r| Path::resource(core.object_id(), id, r.id))
        .filter(|p| matches!(tree.read(origin, p), Ok(ResourceValue::Multiple(v)) if !v.is_empty()))
        .filter_map(|p| mapping::from_core(&p))
        .collect()
}

/// Stages written items (LwM2M Core §5.4.3). Replace (PUT): a multiple
/// resource written is replaced whole, and on an instance every writable
/// multiple resource the payload leaves out is emptied. Partial update
/// (POST): resource instances are added or changed one by one and the
/// others stay. `replace` holds, for a Replace, the multiple resources
/// that have values now (emptied unless the payload writes them).
pub(super) fn stage_items(
    tx: &mut dm_core::tree::Transaction<'_>,
    base: &Lwm2mPath,
    items: &[Item],
    replace: Option<&[Lwm2mPath]>,
) {
    let mut multiple: HashMap<Lwm2mPath, std::collections::BTreeMap<u16, Value>> = HashMap::new();
    for item in items {
        let Ok(core) = mapping::to_core(&Lwm2mPath {
            index: None,
            ..item.path
        }) else {
            continue;
        };
        match item.path.index {
            Some(index) if base.index.is_none() && replace.is_some() => {
                multiple
                    .entry(Lwm2mPath {
                        index: None,
                        ..item.path
                    })
                    .or_default()
                    .insert(index, item.value.clone());
            }
            Some(index) => {
                if let (Some(i), Some(r)) = (core.instance_id(), core.resource_id()) {
                    tx.set(
                        Path::resource_instance(core.object_id(), i, r, index),
                        item.value.clone(),
                    );
                }
            }
            None => {
                tx.set(core, item.value.clone());
            }
        }
    }
    if let Some(held) = replace {
        for path in held {
            multiple.entry(*path).or_default();
        }
    }
    for (path, values) in multiple {
        if let Ok(core) = mapping::to_core(&path) {
            tx.set_multiple(core, values);
        }
    }
}

pub(super) fn push_items(items: &mut Vec<Item>, path: &Lwm2mPath, value: ResourceValue) {
    match value {
        ResourceValue::Single(value) => items.push(Item {
            path: Lwm2mPath {
                index: None,
                ..*path
            },
            value,
        }),
        ResourceValue::Multiple(values) => {
            for (index, value) in values {
                items.push(Item {
                    path: Lwm2mPath {
                        index: Some(index),
                        ..*path
                    },
                    value,
                });
            }
        }
    }
}

/// Whether reading `path` needs host reads (see `Tree::host_reads`).
pub(super) fn reads_from_host(tree: &Tree, origin: Origin, path: &Lwm2mPath) -> bool {
    mapping::to_core(path).is_ok_and(|core| !tree.host_reads(origin, &[core]).is_empty())
}

/// The paths whose values a request reads (Read, Observe,
/// Read-Composite; not a later block, which is cut from the first, nor
/// Discover, which reads no values): the host reads it needs come first.
pub(super) fn read_targets(request: &Packet) -> Vec<Lwm2mPath> {
    let option = |o| {
        request
            .get_first_option(o)
            .map(|v| option_number(v))
            .and_then(|n| u16::try_from(n).ok())
            .and_then(ContentFormat::from_number)
    };
    let later_block = request
        .get_first_option(CoapOption::Block2)
        .and_then(|v| Block::decode(v))
        .is_some_and(|b| b.number > 0);
    if later_block {
        return Vec::new();
    }
    let paths = match request.header.code {
        MessageClass::Request(RequestType::Get)
            if option(CoapOption::Accept) != Some(ContentFormat::LinkFormat) =>
        {
            request_path(request).map(|p| vec![p]).unwrap_or_default()
        }
        MessageClass::Request(RequestType::Fetch) => option(CoapOption::ContentFormat)
            .and_then(|f| format::decode_names(f, &request.payload).ok())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    paths
        .into_iter()
        .filter(|p| p.object != dm_core::catalog::security::ID.0)
        .collect()
}

/// The LwM2M operation a request is (LwM2M Core §6.3, §6.4, Table:
/// "Operation to CoAP method mapping").
fn operation_name(request: &Packet, bootstrapping: bool) -> &'static str {
    let path_len = request
        .get_option(CoapOption::UriPath)
        .map_or(0, |segments| segments.len());
    let link_format = request
        .get_first_option(CoapOption::Accept)
        .is_some_and(|v| option_number(v) == 40);
    match request.header.code {
        MessageClass::Request(RequestType::Get) if link_format => "Discover",
        MessageClass::Request(RequestType::Get) => {
            match request
                .get_first_option(CoapOption::Observe)
                .map(|v| option_number(v))
            {
                Some(0) => "Observe",
                Some(1) => "Cancel Observation",
                _ => "Read",
            }
        }
        MessageClass::Request(RequestType::Fetch) => "Read-Composite",
        MessageClass::Request(RequestType::IPatch) => "Write-Composite",
        MessageClass::Request(RequestType::Put) if bootstrapping => "Bootstrap-Write",
        MessageClass::Request(RequestType::Put)
            if request.payload.is_empty() && request.get_option(CoapOption::UriQuery).is_some() =>
        {
            "Write-Attributes"
        }
        MessageClass::Request(RequestType::Put) => "Write",
        MessageClass::Request(RequestType::Post) if bootstrapping && path_len <= 1 => {
            "Bootstrap-Finish"
        }
        MessageClass::Request(RequestType::Post) if path_len == 1 => "Create",
        MessageClass::Request(RequestType::Post) if path_len == 2 => "Write (partial update)",
        MessageClass::Request(RequestType::Post) => "Execute",
        MessageClass::Request(RequestType::Delete) if bootstrapping => "Bootstrap-Delete",
        MessageClass::Request(RequestType::Delete) => "Delete",
        _ => "(not an operation)",
    }
}

pub(super) fn request_path(request: &Packet) -> Result<Lwm2mPath, Packet> {
    let segments: Vec<String> = request
        .get_option(CoapOption::UriPath)
        .map(|values| {
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default();
    format!("/{}", segments.join("/"))
        .parse()
        .map_err(|_| error(ResponseType::NotFound, "not an LwM2M path"))
}

/// What a management server hears of the Security object (/0): it "MUST
/// NOT be accessible by any other LwM2M Server" than the bootstrap server
/// (object 0's definition), so for a server it is not there, as Leshan's
/// client answers it (4.04), whatever the operation and however many
/// server accounts the client holds.
pub(super) fn security_hidden() -> Packet {
    error(
        ResponseType::NotFound,
        "/0 is served to the bootstrap server only",
    )
}
