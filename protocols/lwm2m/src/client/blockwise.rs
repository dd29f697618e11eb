//! Block-wise transfers (RFC 7959): Block1 bodies assembled or streamed
//! to the firmware package sink (LwM2M Core E.6 push), Block2 responses
//! cut from one representation.

use super::*;

impl Client {
    /// Serves one request, assembling a Block1 body first and serving a
    /// large response in Block2 blocks (RFC 7959).
    pub(super) fn serve_blockwise(
        &mut self,
        tree: &mut Tree,
        now: Instant,
        request: &Packet,
    ) -> Packet {
        if self.package_sink.is_some()
            && !self.bootstrapping
            && matches!(
                request.header.code,
                MessageClass::Request(RequestType::Put | RequestType::Post)
            )
            && options_text(request, CoapOption::UriPath) == "5/0/0"
        {
            let package = Lwm2mPath {
                object: dm_core::catalog::firmware::ID.0,
                instance: Some(0),
                resource: Some(0),
                index: None,
            };
            let response = match self.refused(tree, &package, Operation::Write) {
                Some(refused) => refused,
                None => self.receive_package(tree, now, request),
            };
            // Said once per package (its last block or a refusal), not per
            // block.
            if response.header.code != MessageClass::Response(ResponseType::Continue) {
                self.served("Write (firmware package)", request, &response);
            }
            return response;
        }
        let key = format!(
            "{:?} {}",
            request.header.code,
            options_text(request, CoapOption::UriPath)
        );
        let mut assembled = None;
        if let Some(block1) = request
            .get_first_option(CoapOption::Block1)
            .map(|v| Block::decode(v))
        {
            let Some(block1) = block1 else {
                return error(ResponseType::BadOption, "malformed Block1");
            };
            let declared = request
                .get_first_option(CoapOption::Size1)
                .map(|v| option_number(v) as usize)
                .unwrap_or(0);
            if declared > MAX_BODY {
                return too_large();
            }
            let (expected, mut body) = match self.upload.take() {
                Some((k, body)) if k == key => (body.len() / block1.size(), body),
                _ => (0, Vec::new()),
            };
            if block1.number as usize != expected
                || body.len() != block1.number as usize * block1.size()
            {
                return error(
                    ResponseType::RequestEntityIncomplete,
                    "Block1 out of sequence",
                );
            }
            body.extend_from_slice(&request.payload);
            if body.len() > MAX_BODY {
                return too_large();
            }
            if block1.more {
                self.upload = Some((key, body));
                let mut response = status(ResponseType::Continue);
                response.add_option(CoapOption::Block1, block1.encode());
                return response;
            }
            let mut whole = request.clone();
            whole.payload = body;
            whole.clear_option(CoapOption::Block1);
            assembled = Some((whole, block1));
        }
        // A later block of a representation being served block-wise is cut
        // from the bytes the first block was cut from, without serving the
        // request again: a read has effects ("since the last read" log
        // lines), and a value changing mid-transfer must not tear it.
        let later_block = request
            .get_first_option(CoapOption::Block2)
            .and_then(|v| Block::decode(v))
            .is_some_and(|b| b.number > 0);
        if later_block
            && assembled.is_none()
            && let Some((_, _, first)) = self.download.as_ref().filter(|(k, _, _)| *k == key)
        {
            let response = first.clone();
            return self.block2(request, &key, response);
        }
        let mut response = match &assembled {
            Some((whole, _)) => self.serve(tree, now, whole),
            None => self.serve(tree, now, request),
        };
        if let Some((_, block1)) = assembled {
            response.add_option(CoapOption::Block1, block1.encode());
            // A response that waits for the host carries it too.
            if let Some(wait) = self.deferring.as_mut() {
                wait.then
                    .response_mut()
                    .add_option(CoapOption::Block1, block1.encode());
            }
        }
        self.block2(request, &key, response)
    }

    /// Slices a response into the block the request asks for (block 0
    /// when it asks for none) if it does not fit one block.
    pub(super) fn block2(&mut self, request: &Packet, key: &str, mut response: Packet) -> Packet {
        let asked = request
            .get_first_option(CoapOption::Block2)
            .map(|v| Block::decode(v));
        let (number, szx) = match asked {
            Some(Some(b)) => (b.number, b.szx),
            Some(None) => return error(ResponseType::BadOption, "malformed Block2"),
            None => (0, DEFAULT_BLOCK_SZX),
        };
        let size = 16usize << szx;
        // Later blocks come from the representation the first one was cut
        // from, so a value changing mid-transfer cannot tear it.
        let payload = match &self.download {
            Some((k, bytes, _)) if number > 0 && k == key => bytes.clone(),
            _ => response.payload.clone(),
        };
        if payload.len() <= size && number == 0 {
            return response;
        }
        let start = number as usize * size;
        if start >= payload.len() {
            return error(ResponseType::BadOption, "Block2 beyond the end");
        }
        let end = (start + size).min(payload.len());
        let more = end < payload.len();
        if number == 0 {
            // Kept for the later blocks: the response without its payload.
            let mut first = response.clone();
            first.payload = Vec::new();
            // Later blocks answer plain GETs, a notification's too
            // (RFC 7959 §2.6).
            first.clear_option(CoapOption::Observe);
            self.download = more.then(|| (key.to_owned(), payload.clone(), first));
        } else if !more {
            self.download = None;
        }
        response.payload = payload[start..end].to_vec();
        response.add_option(CoapOption::Block2, Block { number, more, szx }.encode());
        if number == 0 {
            response.add_option(CoapOption::Size2, encode_uint(payload.len() as u64));
        }
        response
    }

    /// A firmware package pushed to /5/0/0 (LwM2M Core E.6): each block
    /// goes to the sink as it comes; State goes Downloading, then
    /// Downloaded when the last block is stored, or back to Idle with the
    /// Update Result saying why. An empty package resets the state
    /// machine.
    pub(super) fn receive_package(
        &mut self,
        tree: &mut Tree,
        now: Instant,
        request: &Packet,
    ) -> Packet {
        use dm_core::catalog::firmware::{STATE, UPDATE_RESULT};
        self.package_deadline = None;
        let Some(sink) = self.package_sink.as_mut() else {
            return status(ResponseType::InternalServerError);
        };
        let block1 = match request
            .get_first_option(CoapOption::Block1)
            .map(|v| Block::decode(v))
        {
            Some(None) => return error(ResponseType::BadOption, "malformed Block1"),
            Some(Some(block)) => Some(block),
            None => None,
        };
        let set = |tree: &mut Tree, state: i64, result: i64| {
            let at = |r| Path::resource(dm_core::catalog::firmware::ID, InstanceId(0), r);
            let _ = tree
                .begin(Origin::Agent)
                .set(at(STATE), Value::Integer(state))
                .set(at(UPDATE_RESULT), Value::Integer(result))
                .commit();
        };
        if block1.is_none() && request.payload.is_empty() {
            sink.abort();
            self.package_next = None;
            set(tree, crate_state::IDLE, 0);
            return status(ResponseType::Changed);
        }
        let number = block1.map_or(0, |b| b.number);
        if number == 0 {
            if let Err(e) = sink.begin() {
                set(tree, crate_state::IDLE, package_result(&e));
                return package_failure(&e);
            }
            set(tree, crate_state::DOWNLOADING, 0);
            let total = request
                .get_first_option(CoapOption::Size1)
                .map(|v| option_number(v));
            self.package_progress = (0, total, 0);
        } else if self.package_next != Some(number) {
            return error(
                ResponseType::RequestEntityIncomplete,
                "Block1 out of sequence",
            );
        }
        if let Err(e) = sink.write(&request.payload) {
            sink.abort();
            self.package_next = None;
            set(tree, crate_state::IDLE, package_result(&e));
            return package_failure(&e);
        }
        // Progress on the change stream, as pulls have it: about every 2%
        // of an announced size, else every MiB, and at the end.
        let (done, total, published) = &mut self.package_progress;
        *done += request.payload.len() as u64;
        let step = total.map_or(1 << 20, |t| (t / 50).max(64 * 1024));
        let last = !block1.is_some_and(|b| b.more);
        if last || *done - *published >= step {
            *published = *done;
            let package = Path::resource(
                dm_core::catalog::firmware::ID,
                InstanceId(0),
                dm_core::catalog::firmware::PACKAGE,
            );
            let total = if last { Some(*done) } else { *total };
            tree.publish_progress(Origin::Agent, &package, *done, total);
        }
        if let Some(block) = block1.filter(|b| b.more) {
            self.package_next = Some(number + 1);
            // A server that stops sending blocks does not hold the image
            // store for ever.
            self.package_deadline = Some(now + self.coap.parameters().exchange_lifetime());
            let mut response = status(ResponseType::Continue);
            response.add_option(CoapOption::Block1, block.encode());
            return response;
        }
        self.package_next = None;
        if let Err(e) = sink.finish() {
            sink.abort();
            set(tree, crate_state::IDLE, package_result(&e));
            return package_failure(&e);
        }
        set(tree, crate_state::DOWNLOADED, 0);
        let mut response = status(ResponseType::Changed);
        if let Some(block) = block1 {
            response.add_option(CoapOption::Block1, block.encode());
        }
        response
    }

    /// Cancel (/5/0/10, object 5 v1.1) ends a push being received: its
    /// blocks are dropped and later ones are out of sequence (4.08). State
    /// and Update Result are set by whoever acts on the Execute.
    pub(super) fn cancel_push(&mut self, path: &Path) {
        let cancel = Path::resource(
            dm_core::catalog::firmware::ID,
            InstanceId(0),
            dm_core::catalog::firmware::CANCEL,
        );
        if *path != cancel || self.package_next.is_none() {
            return;
        }
        self.package_next = None;
        self.package_deadline = None;
        if let Some(sink) = self.package_sink.as_mut() {
            sink.abort();
        }
    }
}

/// /5/0/3 State values (LwM2M object 5).
pub(super) use dm_core::enums::firmware as crate_state;

/// /5/0/5 Update Result for a package that could not be kept: 2 (not
/// enough storage) or 8 (failed).
pub(super) fn package_result(e: &PackageError) -> i64 {
    match e {
        PackageError::NoSpace(_) => crate_state::result::NO_SPACE,
        PackageError::Failed(_) => crate_state::result::FAILED,
    }
}

pub(super) fn package_failure(e: &PackageError) -> Packet {
    match e {
        PackageError::NoSpace(m) => error(ResponseType::RequestEntityTooLarge, m),
        PackageError::Failed(m) => error(ResponseType::InternalServerError, m),
    }
}

pub(super) fn too_large() -> Packet {
    let mut response = error(
        ResponseType::RequestEntityTooLarge,
        "request body too large",
    );
    response.add_option(CoapOption::Size1, encode_uint(MAX_BODY as u64));
    response
}

/// A GET for `path`, as the server would send it.
pub(super) fn get_request(path: &Lwm2mPath) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Request(RequestType::Get);
    let segments = [Some(path.object), path.instance, path.resource, path.index];
    for segment in segments.into_iter().map_while(|s| s) {
        packet.add_option(CoapOption::UriPath, segment.to_string().into_bytes());
    }
    packet
}
