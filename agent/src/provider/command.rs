//! Command providers: a program the agent starts (argv, no shell) that
//! serves a declared object (the contract: [`super`]), speaking
//! newline-delimited JSON on its stdin and stdout. Restarted with back-off
//! when it exits.
//!
//! The agent writes requests, one object per line, each with an `id`:
//!
//! ```json
//! {"id":1,"op":"set","instance":0,"values":{"5750":"kitchen"}}
//! {"id":2,"op":"add","instance":1,"values":{"5701":"Cel"}}
//! {"id":3,"op":"delete","instance":1}
//! {"id":4,"op":"execute","instance":0,"resource":5605,"arguments":""}
//! {"id":6,"op":"execute","instance":0,"resource":"Reset()","inputs":{"Greeting":"hi"}}
//! {"id":5,"op":"get","instance":0,"resources":["5700"]}
//! ```
//!
//! (an LwM2M Execute carries its argument string; a USP command of a
//! TR-181 object is named with its parentheses and carries its input
//! arguments by name) and the provider answers each with
//! `{"id":1,"ok":true}` (a get's with
//! `"values":{"5700":21.5}`) or `{"id":1,"error":"why"}`. At any time it
//! may push `{"op":"values","instance":0,"values":{"5700":22.5}}`,
//! `{"op":"added","instance":2,"values":{...}}` or
//! `{"op":"deleted","instance":2}`. A line the agent cannot use is logged
//! with the provider's name and skipped; a line over 64 KiB ends the
//! provider.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tracing::{info, warn};

use dm_core::{Error, InstanceId, ObjectSchema, ResourceId, ResourceValue, Tree, lock};
use dm_objects::declared::{Command, Provider, Request, VOLATILE_LIMIT};

use super::{CALL_LIMIT, Push};

/// An answer: what came with "ok" (a get's values), or the provider's
/// reason.
type Answer = Result<serde_json::Map<String, serde_json::Value>, String>;

/// The longest line read from a provider.
const MAX_LINE: u64 = 64 * 1024;

/// The first wait before starting a provider that exited again, and the
/// longest.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_CAP: Duration = Duration::from_secs(60);

/// The most requests waiting to be written to a provider: beyond, a
/// request is refused as temporarily unavailable.
const QUEUE: usize = 64;

/// Where a caller waits for its answer. `state` settles the race between
/// an answer and a caller giving up: whichever moves it from [`WAITING`]
/// first wins; a caller that gives up has the program started again, so
/// that what it holds comes back to the tree.
struct Waiter {
    answer: std::sync::mpsc::SyncSender<Answer>,
    state: Arc<std::sync::atomic::AtomicU8>,
}

const WAITING: u8 = 0;
const ANSWERED: u8 = 1;
const GAVE_UP: u8 = 2;

struct Outgoing {
    line: String,
    id: u64,
    answer: Option<Waiter>,
    /// A request its caller stopped waiting for is not sent (a restarted
    /// provider must not make a change whose transaction failed).
    deadline: std::time::Instant,
}

/// A request written to the provider and not answered yet.
struct Pending {
    answer: Option<Waiter>,
    deadline: std::time::Instant,
}

/// Aborts a task when dropped (the provider's output reader, with its
/// run).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A provider process and the requests on their way to it.
pub struct Process {
    name: String,
    command: Command,
    object: &'static ObjectSchema,
    up: AtomicBool,
    next_id: std::sync::atomic::AtomicU64,
    requests: tokio::sync::mpsc::Sender<Outgoing>,
    queue: Mutex<Option<tokio::sync::mpsc::Receiver<Outgoing>>>,
    /// A caller stopped waiting for an answer in this run of the program.
    gave_up: AtomicBool,
    restart: tokio::sync::Notify,
    /// The thread that runs the (current-thread) runtime, which a caller
    /// must not block.
    runtime_thread: std::thread::ThreadId,
}

impl Process {
    /// Call on the runtime's thread.
    pub fn new(command: Command, object: &'static ObjectSchema) -> Arc<Process> {
        let (requests, queue) = tokio::sync::mpsc::channel(QUEUE);
        Arc::new(Process {
            name: format!(
                "the provider program {} of object {}",
                command.argv.first().map_or("", String::as_str),
                object.id.0
            ),
            command,
            object,
            up: AtomicBool::new(false),
            next_id: std::sync::atomic::AtomicU64::new(1),
            requests,
            queue: Mutex::new(Some(queue)),
            gave_up: AtomicBool::new(false),
            restart: tokio::sync::Notify::new(),
            runtime_thread: std::thread::current().id(),
        })
    }

    /// The object it serves.
    pub fn object(&self) -> dm_core::ObjectId {
        self.object.id
    }

    /// Queues a line for the provider; refused when the queue is full.
    fn enqueue(&self, outgoing: Outgoing) -> Result<(), Error> {
        self.requests.try_send(outgoing).map_err(|e| {
            Error::PlatformUnavailable(format!(
                "{} ({})",
                self.name,
                match e {
                    tokio::sync::mpsc::error::TrySendError::Full(_) => "too many requests waiting",
                    tokio::sync::mpsc::error::TrySendError::Closed(_) => "not running",
                }
            ))
        })
    }

    /// Starts the provider and keeps it running (restarting it with
    /// back-off) until `stop`.
    pub async fn run(
        self: Arc<Self>,
        tree: Arc<Mutex<Tree>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(mut queue) = lock(&self.queue).take() else {
            return;
        };
        let mut failures = 0u32;
        loop {
            let started = dm_rt::clock::now();
            let outcome = tokio::select! {
                outcome = self.serve(&tree, &mut queue) => outcome,
                _ = stop.wait_for(|s| *s) => {
                    self.up.store(false, Ordering::SeqCst);
                    return;
                }
            };
            self.up.store(false, Ordering::SeqCst);
            // Ran a while: the next exit starts the back-off afresh.
            if dm_rt::clock::since(started) > RESTART_CAP {
                failures = 0;
            }
            failures += 1;
            let wait = dm_core::support::backoff::doubling(RESTART_FIRST, failures, RESTART_CAP);
            warn!(provider = %self.name, ?wait, "provider stopped: {outcome}; starting it again");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One run of the program: until it exits or breaks the protocol.
    async fn serve(
        &self,
        tree: &Mutex<Tree>,
        queue: &mut tokio::sync::mpsc::Receiver<Outgoing>,
    ) -> String {
        let Some((program, args)) = self.command.argv.split_first() else {
            return "no program to start".into();
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.command.dir {
            command.current_dir(dir);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return format!("cannot start it: {e}"),
        };
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return "no pipes".into();
        };
        // Lines are read by a task of their own: a read is never cut off
        // half way by a request to write.
        let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<Result<String, String>>(16);
        let reader = tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = (&mut stdout)
                    .take(MAX_LINE + 1)
                    .read_until(b'\n', &mut line)
                    .await;
                let next = match read {
                    Ok(0) => return,
                    Err(e) => Err(format!("its output broke: {e}")),
                    Ok(_) if !line.ends_with(b"\n") && line.len() as u64 > MAX_LINE => {
                        Err(format!("it wrote a line over {MAX_LINE} bytes"))
                    }
                    Ok(_) => Ok(String::from_utf8_lossy(&line).trim().to_owned()),
                };
                let last = next.is_err();
                if lines_tx.send(next).await.is_err() || last {
                    return;
                }
            }
        });
        let _reader = AbortOnDrop(reader);
        self.gave_up.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
        info!(provider = %self.name, pid = child.id(), "provider started");
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        loop {
            // A request unanswered a whole call limit after its caller
            // gave up: the provider hangs. Ended (and started again), it
            // will push what it holds then.
            let hung = pending.values().map(|p| p.deadline + CALL_LIMIT).min();
            tokio::select! {
                Some(request) = queue.recv() => {
                    if dm_rt::clock::now() >= request.deadline {
                        continue;
                    }
                    let mut text = request.line;
                    text.push('\n');
                    match tokio::time::timeout(CALL_LIMIT, stdin.write_all(text.as_bytes())).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return format!("its input closed: {e}"),
                        Err(_) => return format!("it read nothing for {} s", CALL_LIMIT.as_secs()),
                    }
                    pending.insert(request.id, Pending {
                        answer: request.answer,
                        deadline: request.deadline,
                    });
                }
                line = lines.recv() => match line {
                    None => {
                        // Its output closed: it is exiting (a child of
                        // its own may hold the pipe; the kill on drop
                        // ends it).
                        let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                        return match status {
                            Ok(Ok(status)) => format!("it exited ({status})"),
                            _ => "it closed its output".to_owned(),
                        };
                    }
                    Some(Err(why)) => return why,
                    Some(Ok(text)) if text.is_empty() => {}
                    Some(Ok(text)) => self.message(tree, &text, &mut pending),
                },
                status = child.wait() => {
                    return format!("it exited ({})", status.map_or_else(|e| e.to_string(), |s| s.to_string()));
                }
                () = self.restart.notified() => {
                    // A permit left from an earlier run wakes this once.
                    if self.gave_up.swap(false, Ordering::SeqCst) {
                        return format!(
                            "a caller stopped waiting after {} s: what it made is unknown",
                            CALL_LIMIT.as_secs()
                        );
                    }
                }
                () = dm_rt::sleep_until(hung), if hung.is_some() => {
                    return format!(
                        "it left a request unanswered for {} s",
                        (2 * CALL_LIMIT).as_secs()
                    );
                }
            }
        }
    }

    /// One line from the provider: an answer or pushed values.
    fn message(&self, tree: &Mutex<Tree>, text: &str, pending: &mut HashMap<u64, Pending>) {
        let skipped =
            |why: &str| warn!(provider = %self.name, line = %text, "provider line skipped: {why}");
        let Ok(serde_json::Value::Object(message)) = serde_json::from_str(text) else {
            return skipped("not a JSON object");
        };
        if let Some(id) = message.get("id").and_then(serde_json::Value::as_u64) {
            let answer = match (message.get("ok"), message.get("error")) {
                (Some(serde_json::Value::Bool(true)), None) => match message.get("values") {
                    None => Ok(serde_json::Map::new()),
                    Some(serde_json::Value::Object(values)) => Ok(values.clone()),
                    Some(_) => Err("its \"values\" are not an object".to_owned()),
                },
                (_, Some(error)) => Err(error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned)),
                _ => return skipped("an answer needs \"ok\": true or \"error\""),
            };
            let Some(request) = pending.remove(&id) else {
                return skipped("an answer to no request");
            };
            if let Err(e) = &answer {
                warn!(provider = %self.name, id, "provider refused: {e}");
            }
            if let Some(waiter) = request.answer
                && waiter
                    .state
                    .compare_exchange(WAITING, ANSWERED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                let _ = waiter.answer.send(answer);
            }
            return;
        }
        let op = message.get("op").and_then(serde_json::Value::as_str);
        let Some(instance) = message
            .get("instance")
            .and_then(serde_json::Value::as_u64)
            .and_then(|i| u16::try_from(i).ok())
            .map(InstanceId)
        else {
            return skipped("no \"instance\"");
        };
        let values = match (op, message.get("values")) {
            (Some("deleted"), _) => None,
            (Some("values" | "added"), Some(serde_json::Value::Object(values))) => Some(values),
            (Some("values" | "added"), _) => return skipped("no \"values\" object"),
            _ => {
                return skipped(
                    "neither an answer (\"id\") nor an \"op\" of \"values\", \"added\" or \"deleted\"",
                );
            }
        };
        let push = match (op, values) {
            (Some("added"), Some(values)) => Push::Added { instance, values },
            (_, Some(values)) => Push::Values { instance, values },
            (_, None) => Push::Deleted { instance },
        };
        if let Err(why) = super::apply(tree, self.object, push) {
            skipped(&why);
        }
    }
}

impl Process {
    /// Sends a request and waits `limit` for its answer; `restart`: a
    /// caller that gives up has the program started again.
    fn ask(
        &self,
        mut line: serde_json::Value,
        limit: Duration,
        restart: bool,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        if std::thread::current().id() == self.runtime_thread {
            // Blocking here would stop the runtime that talks to it.
            return Err(Error::PlatformUnavailable(format!(
                "{} (asked from the runtime's own thread)",
                self.name
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        line["id"] = id.into();
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let state = Arc::new(std::sync::atomic::AtomicU8::new(WAITING));
        let unavailable =
            |why: String| Error::PlatformUnavailable(format!("{} ({why})", self.name));
        self.enqueue(Outgoing {
            line: line.to_string(),
            id,
            answer: Some(Waiter {
                answer,
                state: Arc::clone(&state),
            }),
            deadline: dm_rt::clock::now() + limit,
        })?;
        let answer = match answered.recv_timeout(limit) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                if state
                    .compare_exchange(WAITING, GAVE_UP, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok() =>
            {
                if restart {
                    self.gave_up.store(true, Ordering::SeqCst);
                    self.restart.notify_one();
                }
                return Err(unavailable(format!(
                    "no answer within {} ms",
                    limit.as_millis()
                )));
            }
            // Answered as the time ran out: the answer is on its way.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => answered.recv().ok(),
            Ok(answer) => Some(answer),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
        };
        match answer {
            Some(Ok(values)) => Ok(values),
            Some(Err(why)) => Err(Error::PlatformInvalid(format!("{}: {why}", self.name))),
            None => Err(unavailable("it stopped before answering".into())),
        }
    }
}

impl Provider for Process {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    fn call(&self, request: Request, _undo: Option<&Request>) -> Result<(), Error> {
        let (op, instance, values) = super::parts(self.object, &request);
        let mut line = serde_json::json!({"op": op, "instance": instance.0});
        if let Some(values) = values {
            line["values"] = serde_json::Value::Object(values);
        }
        // Whether it made a change it did not answer in time is unknown:
        // it is started again, and pushes what it holds.
        self.ask(line, CALL_LIMIT, true).map(|_| ())
    }

    fn get(
        &self,
        instance: InstanceId,
        resources: &[ResourceId],
    ) -> Result<Vec<(ResourceId, ResourceValue)>, Error> {
        if !self.is_up() {
            return Err(Error::PlatformUnavailable(format!(
                "{} (not running)",
                self.name
            )));
        }
        let wanted: Vec<String> = resources
            .iter()
            .map(|r| super::key(self.object, *r))
            .collect();
        let line = serde_json::json!({"op": "get", "instance": instance.0, "resources": wanted});
        // A get changes nothing: one not answered in time is only late.
        let values = self.ask(line, VOLATILE_LIMIT, false)?;
        super::got(self.object, resources, &values)
            .map_err(|why| Error::Platform(format!("{}: {why}", self.name)))
    }

    fn execute(
        &self,
        instance: InstanceId,
        resource: ResourceId,
        arguments: &str,
    ) -> Result<(), Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = if super::is_tr181(self.object) {
            serde_json::json!({
                "id": id, "op": "execute", "instance": instance.0,
                "resource": super::key(self.object, resource),
                "inputs": super::command_inputs(arguments)?,
            })
        } else {
            serde_json::json!({
                "id": id, "op": "execute", "instance": instance.0,
                "resource": resource.0, "arguments": arguments,
            })
        };
        self.enqueue(Outgoing {
            line: line.to_string(),
            id,
            answer: None,
            deadline: dm_rt::clock::now() + CALL_LIMIT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_core::schema::Constraint;
    use dm_core::{Access, ObjectId, Origin, Path, ResourceSchema, Value, ValueType};

    static RESOURCES: [ResourceSchema; 1] = [ResourceSchema {
        id: ResourceId(1),
        name: "Level",
        value_type: ValueType::Long,
        access: Access::ReadWrite,
        multiple: false,
        mandatory: true,
        units: "",
        constraint: Constraint::None,
    }];
    static SCHEMA: ObjectSchema = ObjectSchema {
        id: ObjectId(32770),
        name: "Test",
        version: "1.0",
        multiple: false,
        mandatory: false,
        resources: &RESOURCES,
    };

    /// A provider that writes garbage, then pushes Level = 10 times the
    /// number of its runs (counted in the file it is given), answers the
    /// first request of its first run only after the caller's limit, and
    /// pushes each later
    /// request's Level back.
    const SCRIPT: &str = r#"
import json, sys, time
with open(sys.argv[1], "a+") as f:
    f.seek(0)
    runs = len(f.read()) + 1
    f.write("x")
print("not json", flush=True)
print(json.dumps({"op": "values", "instance": 0, "values": {"Level": "a string"}}), flush=True)
print(json.dumps({"op": "values", "instance": 0, "values": {"1": 10 * runs}}), flush=True)
first = runs == 1
for line in sys.stdin:
    request = json.loads(line)
    if first:
        time.sleep(5.5)
        first = False
    print(json.dumps({"id": request["id"], "ok": True}), flush=True)
    print(json.dumps({"op": "values", "instance": 0, "values": request["values"]}), flush=True)
"#;

    fn level(tree: &Mutex<Tree>) -> ResourceValue {
        lock(tree)
            .read(
                Origin::Agent,
                &Path::resource(SCHEMA.id, InstanceId(0), ResourceId(1)),
            )
            .unwrap()
    }

    #[tokio::test]
    async fn garbage_is_skipped_and_a_provider_that_answers_too_late_is_started_again() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let runs = tempfile::NamedTempFile::new().unwrap();
        let process = Process::new(
            Command {
                argv: vec![
                    python,
                    "-c".into(),
                    SCRIPT.into(),
                    runs.path().display().to_string(),
                ],
                dir: None,
            },
            &SCHEMA,
        );
        let mut tree = Tree::new();
        let provider: Arc<dyn Provider> = process.clone();
        let declared = [dm_objects::declared::Declaration {
            schema: &SCHEMA,
            instances: vec![InstanceId(0)],
            values: Vec::new(),
            provider: None,
            volatile: Vec::new(),
        }];
        dm_objects::declared::register(&mut tree, &declared, &|_| Some(Arc::clone(&provider)))
            .unwrap();
        tree.begin(Origin::Agent)
            .create(SCHEMA.id, Some(InstanceId(0)))
            .commit()
            .unwrap();
        let changes = tree.subscribe(16);
        let changed = Arc::new(tokio::sync::Notify::new());
        {
            let changed = Arc::clone(&changed);
            changes.set_waker(move || changed.notify_one());
        }
        let tree = Arc::new(Mutex::new(tree));
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(Arc::clone(&process).run(Arc::clone(&tree), stop));
        let wait_for = |wanted: i64| {
            let (tree, changed) = (Arc::clone(&tree), Arc::clone(&changed));
            async move {
                let reached = async {
                    while level(&tree) != ResourceValue::Single(Value::Integer(wanted)) {
                        changed.notified().await;
                    }
                };
                tokio::time::timeout(Duration::from_secs(30), reached)
                    .await
                    .unwrap_or_else(|_| panic!("Level never {wanted}: {:?}", level(&tree)));
            }
        };
        // "not json" and a string for an integer were skipped; the first
        // run's 10 was taken.
        wait_for(10).await;

        // The first request is not answered in time: the caller hears
        // "unavailable", and the provider, whose state is unknown now, is
        // started again and pushes it (20: its second run).
        let set = |value: i64| Request::Set {
            instance: InstanceId(0),
            values: vec![(ResourceId(1), ResourceValue::Single(Value::Integer(value)))],
        };
        let late = {
            let process = Arc::clone(&process);
            tokio::task::spawn_blocking(move || process.call(set(7), Some(&set(0))))
        };
        assert!(matches!(
            late.await.unwrap(),
            Err(Error::PlatformUnavailable(_))
        ));
        wait_for(20).await;
        // The new run answers in time.
        let process2 = Arc::clone(&process);
        let answered = tokio::task::spawn_blocking(move || process2.call(set(9), Some(&set(0))));
        assert_eq!(answered.await.unwrap(), Ok(()));
        wait_for(9).await;
        assert_eq!(std::fs::read_to_string(runs.path()).unwrap(), "xx");
    }
}
