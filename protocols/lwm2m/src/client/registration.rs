//! Registration (LwM2M Core §6.2): Register, Update with what changed,
//! De-register, Bootstrap-Request, their answers and the back-off.

use super::*;

impl Client {
    /// Sends a Bootstrap-Request (LwM2M Core §6.1.3) to the bootstrap
    /// server this engine talks to, announcing SenML JSON as the preferred
    /// content format.
    pub fn bootstrap_request(&mut self, now: Instant) {
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.add_option(CoapOption::UriPath, b"bs".to_vec());
        packet.add_option(
            CoapOption::UriQuery,
            format!("ep={}", self.config.endpoint).into_bytes(),
        );
        packet.add_option(
            CoapOption::UriQuery,
            format!("pct={}", ContentFormat::SenmlJson.number()).into_bytes(),
        );
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::BootstrapRequest);
        self.bootstrapping = true;
        self.retry_at = None;
    }

    /// Waits `hold_off` for the bootstrap server to start a bootstrap of
    /// its own (server-initiated, LwM2M Core §6.1.3: Client Hold Off Time,
    /// /0/x/11), serving its operations meanwhile; a Bootstrap-Request goes
    /// out only when it has not begun by then.
    pub fn await_bootstrap(&mut self, now: Instant, hold_off: Duration) {
        if hold_off.is_zero() {
            return self.bootstrap_request(now);
        }
        self.bootstrapping = true;
        // A hold-off too large for the clock is "a year".
        self.retry_at = Some(
            now.checked_add(hold_off)
                .unwrap_or(now + Duration::from_secs(365 * 86_400)),
        );
    }

    /// Sends the Register request (LwM2M Core §6.2.1).
    pub fn register(&mut self, tree: &Tree, now: Instant) {
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.add_option(CoapOption::UriPath, b"rd".to_vec());
        let lifetime = self.lifetime(tree);
        let binding = self.binding(tree);
        // LwM2M 1.1 §6.2.1.1: queue mode is the "Q" parameter, no longer a
        // letter of the binding.
        self.queue_mode = binding.contains('Q');
        let transport: String = binding.chars().filter(|c| *c != 'Q').collect();
        let mut queries = vec![
            format!("ep={}", self.config.endpoint),
            format!("lt={lifetime}"),
            "lwm2m=1.1".to_owned(),
            format!("b={transport}"),
        ];
        if self.queue_mode {
            queries.push("Q".to_owned());
        }
        self.told_lifetime = lifetime;
        self.told_binding = binding;
        for query in queries {
            packet.add_option(CoapOption::UriQuery, query.into_bytes());
        }
        self.awake_until = Some(now + AWAKE_WINDOW);
        packet.add_option(
            CoapOption::ContentFormat,
            content_format(ContentFormat::LinkFormat),
        );
        packet.payload = object_links(tree).into_bytes();
        self.links_changed = false;
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Register);
        self.state = State::Registering;
        self.retry_at = None;
    }

    /// Sends De-register (LwM2M Core §6.2.3), e.g. at shutdown.
    pub fn deregister(&mut self, now: Instant) {
        let State::Registered { location } = &self.state else {
            return;
        };
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Delete);
        for segment in location.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Deregister);
        self.next_update = None;
    }

    pub(super) fn update(&mut self, tree: &Tree, now: Instant) {
        let State::Registered { location } = &self.state else {
            return;
        };
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        for segment in location.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        // LwM2M Core §6.2.2: an Update carries what changed since the last
        // registration message: the lifetime (a server that wrote /1/x/1
        // keeps its old one until told, and expires the registration), the
        // binding and queue mode, and the object links when instances
        // came or went.
        let lifetime = self.lifetime(tree);
        if lifetime != self.told_lifetime {
            packet.add_option(CoapOption::UriQuery, format!("lt={lifetime}").into_bytes());
            self.told_lifetime = lifetime;
        }
        let binding = self.binding(tree);
        if binding != self.told_binding {
            let transport: String = binding.chars().filter(|c| *c != 'Q').collect();
            packet.add_option(CoapOption::UriQuery, format!("b={transport}").into_bytes());
            let queue = binding.contains('Q');
            if queue {
                packet.add_option(CoapOption::UriQuery, b"Q".to_vec());
            }
            self.queue_mode = queue;
            self.told_binding = binding;
        }
        if std::mem::take(&mut self.links_changed) {
            packet.add_option(
                CoapOption::ContentFormat,
                content_format(ContentFormat::LinkFormat),
            );
            packet.payload = object_links(tree).into_bytes();
        }
        self.awake_until = Some(now + AWAKE_WINDOW);
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Update);
    }

    pub(super) fn on_response(
        &mut self,
        tree: &Tree,
        now: Instant,
        kind: Pending,
        packet: &Packet,
    ) {
        let code = match packet.header.code {
            MessageClass::Response(code) => code,
            _ => return,
        };
        match (kind, code) {
            (Pending::Register, ResponseType::Created) => {
                let location: Vec<String> = packet
                    .get_option(CoapOption::LocationPath)
                    .map(|values| {
                        values
                            .iter()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let location = format!("/{}", location.join("/"));
                self.failures = 0;
                self.state = State::Registered {
                    location: location.clone(),
                };
                self.schedule_update(tree, now);
                self.events.push(ClientEvent::Registered { location });
            }
            (Pending::Update, ResponseType::Changed) => {
                self.schedule_update(tree, now);
                self.events.push(ClientEvent::Updated);
            }
            // LwM2M Core §6.2.2: the server no longer knows this
            // registration: register again.
            (Pending::Update, ResponseType::NotFound) => {
                self.state = State::Idle;
                self.register(tree, now);
            }
            (Pending::Deregister, _) => {
                self.state = State::Deregistered;
                self.events.push(ClientEvent::Deregistered);
            }
            (Pending::Send, ResponseType::Changed) => self.events.push(ClientEvent::Sent),
            (Pending::BootstrapRequest, ResponseType::Changed) => {
                // Not a success yet: a bootstrap server that accepts every
                // request and never finishes must meet a growing back-off,
                // so the failure count ends only with Bootstrap-Finish.
                self.bootstrap_deadline = Some(now + self.coap.parameters().exchange_lifetime());
                if self.bootstrap_saved.is_none() {
                    self.bootstrap_saved = Some(crate::bootstrap::save(tree));
                }
                self.events.push(ClientEvent::BootstrapStarted);
            }
            (kind, code) => self.on_failure(tree, now, kind, &format!("{code:?}")),
        }
    }

    pub(super) fn on_failure(&mut self, tree: &Tree, now: Instant, kind: Pending, reason: &str) {
        match kind {
            Pending::Deregister => {
                self.state = State::Deregistered;
                self.events.push(ClientEvent::Deregistered);
            }
            Pending::Send => self.events.push(ClientEvent::SendFailed {
                reason: reason.to_owned(),
            }),
            Pending::Register | Pending::Update | Pending::BootstrapRequest => {
                self.state = State::Idle;
                self.failures = self.failures.saturating_add(1);
                let wait = retry_wait(self.failures);
                self.retry_at = Some(now + wait);
                self.events.push(ClientEvent::RegistrationFailed {
                    reason: reason.to_owned(),
                    failures: self.failures,
                    retry_in: wait,
                });
                let _ = tree;
            }
        }
    }

    /// The next Update: half the lifetime (well before it, as Leshan and
    /// Wakaama clients do), or sooner to keep a NAT binding open.
    pub(super) fn schedule_update(&mut self, tree: &Tree, now: Instant) {
        let lifetime = u64::from(self.lifetime(tree)).max(2);
        let mut interval = Duration::from_secs(lifetime / 2);
        if let Some(nat) = self.config.nat_timeout {
            interval = interval.min((nat * 3 / 4).max(Duration::from_secs(1)));
        }
        self.next_update = Some(now + interval);
    }

    pub(super) fn server_value(&self, tree: &Tree, resource: dm_core::ResourceId) -> Option<Value> {
        let path = Path::resource(
            dm_core::catalog::server::ID,
            InstanceId(self.config.server_instance),
            resource,
        );
        match tree.read(Origin::Agent, &path) {
            Ok(ResourceValue::Single(v)) => Some(v),
            _ => None,
        }
    }

    pub(super) fn lifetime(&self, tree: &Tree) -> u32 {
        match self.server_value(tree, dm_core::catalog::server::LIFETIME) {
            Some(Value::Integer(l)) if l > 0 => u32::try_from(l).unwrap_or(u32::MAX),
            _ => 86400,
        }
    }

    pub(super) fn binding(&self, tree: &Tree) -> String {
        match self.server_value(tree, dm_core::catalog::server::BINDING) {
            Some(Value::String(b)) if !b.is_empty() => b,
            _ => "U".to_owned(),
        }
    }
}

/// How long to wait after the `failures`-th failed registration or
/// bootstrap in a row: 30 s, doubling, at most an hour.
pub fn retry_wait(failures: u32) -> Duration {
    dm_core::support::backoff::doubling(
        Duration::from_secs(30),
        failures.max(1),
        Duration::from_secs(3600),
    )
}

/// The version an object is announced with in a registration with
/// `lwm2m=1.1`: the object versions that belong to that enabler version
/// (those Leshan's and Wakaama's 1.1 models have), not the newest ones the
/// catalog's resources come from. A server that does not know the
/// announced version of an object types its values as opaque (Leshan
/// read every /1 and /5 TLV value so when they were announced as 1.2). A
/// registration with `lwm2m=1.2` would announce the catalog's versions.
pub(super) fn version_for_1_1(object: u16, catalog: &'static str) -> &'static str {
    match object {
        // Security and Server 1.1, Access Control 1.0, Device 1.1,
        // Connectivity Monitoring 1.2, Firmware Update 1.0.
        0 | 1 | 3 => "1.1",
        2 | 5 => "1.0",
        4 => "1.2",
        _ => catalog,
    }
}

/// The object links of a Register: every object the client serves except
/// Security (LwM2M Core §6.2.1), with versions other than 1.0, and their
/// instances.
pub fn object_links(tree: &Tree) -> String {
    let mut links = vec![format!(
        "</>;rt=\"oma.lwm2m\";ct={}",
        ContentFormat::SenmlJson.number()
    )];
    for (lwm2m, object, version) in mapping::served(tree) {
        if object == dm_core::catalog::security::ID {
            continue;
        }
        let instances = tree.instances(object).unwrap_or_default();
        let version = match version_for_1_1(lwm2m, version) {
            "1.0" => String::new(),
            version => format!(";ver={version}"),
        };
        links.push(format!("</{lwm2m}>{version}"));
        for instance in instances {
            links.push(format!("</{lwm2m}/{}>", instance.0));
        }
    }
    links.join(",")
}
