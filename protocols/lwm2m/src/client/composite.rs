//! Read-, Observe- and Write-Composite (LwM2M Core §6.3.8, Transport
//! §6.4) and Send (§6.4.1.1).

use super::*;

impl Client {
    /// The values of several paths, named in full (Read-Composite). A path
    /// that does not exist is left out; 4.04 only when none exists.
    pub(super) fn read_composite(
        &self,
        tree: &Tree,
        paths: &[Lwm2mPath],
        format: ContentFormat,
    ) -> Result<Vec<u8>, Packet> {
        let mut items = Vec::new();
        let mut found = false;
        for path in paths {
            match self.items(tree, path) {
                Ok(mut more) => {
                    found = true;
                    items.append(&mut more);
                }
                Err(response) if code_of(&response) == Some(ResponseType::NotFound) => {}
                Err(response) => return Err(response),
            }
        }
        if !found {
            return Err(error(ResponseType::NotFound, "none of the paths exists"));
        }
        format::encode_composite(format, &items).map_err(|e| format_error(&e))
    }

    /// Read-Composite and Observe-Composite (FETCH), Write-Composite
    /// (iPATCH) on the root path (LwM2M Transport §6.4).
    pub(super) fn serve_composite(
        &mut self,
        tree: &mut Tree,
        now: Instant,
        request: &Packet,
    ) -> Packet {
        if request
            .get_option(CoapOption::UriPath)
            .is_some_and(|p| p.iter().any(|segment| !segment.is_empty()))
        {
            return error(
                ResponseType::MethodNotAllowed,
                "composite operations target /",
            );
        }
        let number = |option| {
            request
                .get_first_option(option)
                .map(|v| option_number(v))
                .map(|n| {
                    u16::try_from(n)
                        .ok()
                        .and_then(ContentFormat::from_number)
                        .ok_or(n)
                })
        };
        let content = match number(CoapOption::ContentFormat) {
            // LwM2M CBOR carries values, not bare names: iPATCH only.
            Some(Ok(ContentFormat::LwM2mCbor))
                if request.header.code == MessageClass::Request(RequestType::IPatch) =>
            {
                ContentFormat::LwM2mCbor
            }
            Some(Ok(f @ (ContentFormat::SenmlJson | ContentFormat::SenmlCbor))) => f,
            Some(Ok(f)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {} cannot name several paths", f.number()),
                );
            }
            Some(Err(n)) => {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    &format!("content format {n}"),
                );
            }
            None => {
                return error(
                    ResponseType::BadRequest,
                    "a composite needs a Content-Format",
                );
            }
        };
        let origin = Origin::Server(self.config.short_server_id);
        if request.header.code == MessageClass::Request(RequestType::IPatch) {
            let items =
                match format::decode_composite(content, &request.payload, &|p| type_in(tree, p)) {
                    Ok(items) => items,
                    Err(e) => return format_error(&e),
                };
            if let Some(refused) = items
                .iter()
                .find_map(|i| self.refused(tree, &i.path, Operation::Write))
            {
                return refused;
            }
            // All or nothing, like any write (LwM2M Core §6.3.8).
            let mut tx = tree.begin(origin);
            for item in &items {
                if let Ok(core) = mapping::to_core(&item.path) {
                    tx.set(core, item.value.clone());
                }
            }
            let prepared = tx.prepare();
            return self.commit_or_defer(
                tree,
                prepared,
                Then::Respond(status(ResponseType::Changed)),
            );
        }
        let accept = match number(CoapOption::Accept) {
            None => content,
            Some(Ok(
                f
                @ (ContentFormat::SenmlJson | ContentFormat::SenmlCbor | ContentFormat::LwM2mCbor),
            )) => f,
            Some(Ok(f)) => {
                return error(
                    ResponseType::NotAcceptable,
                    &format!("content format {} cannot carry a composite", f.number()),
                );
            }
            Some(Err(n)) => {
                return error(
                    ResponseType::NotAcceptable,
                    &format!("content format {n} is not served"),
                );
            }
        };
        let paths = match format::decode_names(content, &request.payload) {
            Ok(paths) if !paths.is_empty() => fold_paths(paths),
            Ok(_) => return error(ResponseType::BadRequest, "no path named"),
            Err(e) => return format_error(&e),
        };
        let payload = match self.read_composite(tree, &paths, accept) {
            Ok(payload) => payload,
            Err(response) => return response,
        };
        let mut response = status(ResponseType::Content);
        response.add_option(CoapOption::ContentFormat, content_format(accept));
        let token = request.get_token().to_vec();
        match request
            .get_first_option(CoapOption::Observe)
            .map(|v| option_number(v))
        {
            Some(0)
                if (self.observations.len() < MAX_OBSERVATIONS
                    || self.observations.iter().any(|o| o.token == token))
                    && !paths
                        .iter()
                        .any(|p| super::serve::reads_from_host(tree, origin, p)) =>
            {
                self.observations.retain(|o| o.token != token);
                self.observations.push(Observation {
                    token,
                    path: paths[0],
                    format: accept,
                    sequence: 0,
                    last_sent: now,
                    dirty: false,
                    last_value: None,
                    last_evaluated: now,
                    composite: Some(paths),
                });
                response.set_observe_value(0);
            }
            // Cancelled, or answered as a plain GET (no room, or host
            // reads): an earlier observation with this token ends.
            Some(0 | 1) => self.observations.retain(|o| o.token != token),
            _ => {}
        }
        response.payload = payload;
        response
    }

    /// Send (LwM2M Core §6.4.1.1): the values of `paths` to the server,
    /// unasked, as SenML CBOR in a POST to /dp. Refused while not
    /// registered or while the server's Mute Send (/1/x/23) is true.
    pub fn send(
        &mut self,
        tree: &Tree,
        now: Instant,
        paths: &[Lwm2mPath],
    ) -> Result<(), SendError> {
        if !self.is_registered() {
            return Err(SendError::NotRegistered);
        }
        if self.server_value(tree, dm_core::catalog::server::MUTE_SEND)
            == Some(Value::Boolean(true))
        {
            return Err(SendError::Muted);
        }
        let payload = self
            .read_composite(tree, paths, ContentFormat::SenmlCbor)
            .map_err(|response| {
                SendError::Unreadable(String::from_utf8_lossy(&response.payload).into_owned())
            })?;
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.add_option(CoapOption::UriPath, b"dp".to_vec());
        packet.add_option(
            CoapOption::ContentFormat,
            content_format(ContentFormat::SenmlCbor),
        );
        packet.payload = payload;
        self.awake_until = Some(now + AWAKE_WINDOW);
        let token = self.coap.request(now, packet);
        self.pending.insert(token, Pending::Send);
        Ok(())
    }
}

/// The paths of a composite request, each value named once: a path
/// named again, or under another path named in the same request, adds
/// nothing. A 1 MiB Read-Composite naming /3 a hundred thousand times
/// would otherwise read and encode the whole object as often. Order is
/// kept; linear in the number of paths.
pub(super) fn fold_paths(paths: Vec<Lwm2mPath>) -> Vec<Lwm2mPath> {
    let named: std::collections::HashSet<Lwm2mPath> = paths.iter().copied().collect();
    let mut kept = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter(|p| {
            let ancestors = [
                (p.instance.is_some()).then_some(Lwm2mPath {
                    instance: None,
                    resource: None,
                    index: None,
                    ..*p
                }),
                (p.resource.is_some()).then_some(Lwm2mPath {
                    resource: None,
                    index: None,
                    ..*p
                }),
                (p.index.is_some()).then_some(Lwm2mPath { index: None, ..*p }),
            ];
            !ancestors.into_iter().flatten().any(|a| named.contains(&a)) && kept.insert(*p)
        })
        .collect()
}
