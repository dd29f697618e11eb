//! The object tree: instances, values, transactions.
//!
//! Design note. The [`Tree`] is the one source of truth both protocol
//! adapters, the CLI and the platform read and write. It is synchronous and
//! does no I/O; a driver holds it behind a mutex and keeps calls short.
//!
//! Writes go through a [`Transaction`]: operations are staged, then
//! [`Transaction::commit`] checks every one (schema, access, value, the
//! object's own rules), and only when all pass applies them, saves the new
//! state through the [`StateStore`] and publishes the changes. A failure at
//! any step leaves the tree exactly as it was: SetParameterValues and LwM2M
//! composite writes are all-or-nothing (TR-069 §A.3.2.1, LwM2M Core §6.3.3).
//!
//! Effects on the host (a Wi-Fi profile written to NetworkManager, a
//! reboot) are not performed inside a commit: the objects' bridges act on the
//! published changes. A commit therefore means "accepted and durable", which
//! is what CWMP Status 1 and LwM2M 2.04 promise.

use std::collections::BTreeMap;

use crate::attributes::{Attributes, Notification, ObserveAttributes};
use crate::error::{Error, TransactionError};
use crate::events::{ChangeBus, ChangeKind, Subscription};
pub use crate::host::{
    Fetched, HOST_READ_LIMIT, HOST_WRITE_LIMIT, HostRead, HostReads, HostRows, HostWork, HostWrite,
    Row,
};
use crate::path::{Origin, Path};
use crate::schema::{Access, InstanceId, ObjectId, ObjectSchema, ResourceId, ResourceSchema};
use crate::snapshot::{InstanceState, ObjectState, Snapshot, StateStore};
use crate::value::Value;

/// One resource's new TR-069 attributes: a notification level and an
/// access list, each left as it is when `None`.
pub type AttributeChange = (Path, Option<Notification>, Option<Vec<String>>);

/// The value of a resource: one value, or the values of a multiple
/// resource by index.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ResourceValue {
    Single(Value),
    Multiple(BTreeMap<u16, Value>),
}

/// How an instance holds a resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// The tree stores the value; it is persisted.
    Stored(ResourceValue),
    /// The handler computes the value at read time (uptime, free memory).
    Live,
    /// An executable resource.
    Executable,
}

/// The resources of one instance, as a handler sees them in `validate` and
/// `execute`: the state the instance would have after the transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Instance {
    slots: BTreeMap<ResourceId, Slot>,
}

impl Instance {
    pub fn new() -> Instance {
        Instance::default()
    }

    /// Adds or replaces a resource; for building instances in `create`.
    pub fn with(mut self, resource: ResourceId, slot: Slot) -> Instance {
        self.slots.insert(resource, slot);
        self
    }

    pub fn slot(&self, resource: ResourceId) -> Option<&Slot> {
        self.slots.get(&resource)
    }

    /// Stores a single value; for `ObjectHandler::adjust`, whose changes
    /// the transaction then checks and applies as its own.
    pub fn set_value(&mut self, resource: ResourceId, value: Value) {
        self.slots
            .insert(resource, Slot::Stored(ResourceValue::Single(value)));
    }

    /// The stored single value of a resource.
    pub fn value(&self, resource: ResourceId) -> Option<&Value> {
        match self.slots.get(&resource) {
            Some(Slot::Stored(ResourceValue::Single(v))) => Some(v),
            _ => None,
        }
    }

    pub fn resources(&self) -> impl Iterator<Item = ResourceId> + '_ {
        self.slots.keys().copied()
    }
}

/// The behaviour of one object type. Every method has a default meaning
/// "nothing special": implement only what the object serves.
pub trait ObjectHandler: Send + Sync {
    /// The value of a [`Slot::Live`] resource, read on behalf of
    /// `origin`: a value that is "since the last read" (new log lines, CPU
    /// usage) is so for that reader, not for whoever read last.
    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        Err(Error::NotReadable(Path::resource(
            self.schema().id,
            instance,
            resource,
        )))
    }

    /// [`ObjectHandler::read`] for a handler whose live value depends on
    /// the instance's stored resources (a Wi-Fi profile's counters are its
    /// interface's while it is active); by default, `read`.
    fn read_in(
        &self,
        origin: Origin,
        instance: InstanceId,
        _state: &Instance,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        self.read(origin, instance, resource)
    }

    /// The schema this handler serves.
    fn schema(&self) -> &'static ObjectSchema;

    /// Whether the object's instances are facts the platform reports
    /// again at every start (the host's links, routes, name servers):
    /// never saved, and the platform making or removing them writes
    /// nothing (flash wear).
    fn reported(&self) -> bool {
        false
    }

    /// Whether management clients may read the object now: an object
    /// whose values another process serves (a provider that is not
    /// running) answers [`Error::PlatformUnavailable`] for every read of a
    /// client, rather than values nobody stands behind. The agent's own
    /// reads are served regardless.
    fn available(&self) -> Result<(), Error> {
        Ok(())
    }

    /// The resources of a new instance: the handler decides which optional
    /// resources exist and their initial values. The default holds every
    /// mandatory resource at its type's zero value.
    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let mut instance = Instance::new();
        for resource in self.schema().resources.iter().filter(|r| r.mandatory) {
            instance = instance.with(resource.id, default_slot(resource));
        }
        Ok(instance)
    }

    /// Checks an instance as it would be after a transaction, for rules
    /// spanning resources. Only [`Error::Rejected`] and value errors are
    /// expected here.
    fn validate(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        _state: &Instance,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Rules by which writing some resources changes others of the same
    /// instance in the same transaction (TR-181: changing a diagnostic
    /// test's input while it is requested sets its DiagnosticsState back
    /// to None). `written` are the resources the transaction wrote
    /// (whatever their values); `state` is the instance as it will be,
    /// before [`ObjectHandler::validate`] sees it. Returns the resources
    /// whose write is published as a change even where their value stays
    /// (a test asked for again while it is requested must start again).
    /// An error refuses the transaction, as one of `validate`'s does.
    fn adjust(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        _written: &[ResourceId],
        _state: &mut Instance,
    ) -> Result<Vec<ResourceId>, Error> {
        Ok(Vec::new())
    }

    /// The most instances clients may make of the object (a table whose
    /// capacity the object itself announces, as BulkData's
    /// MaxNumberOfProfiles); `None`: the tree's limit alone
    /// ([`Tree::set_instance_limit`]).
    fn max_instances(&self) -> Option<usize> {
        None
    }

    /// Whether `origin` may delete the instance.
    fn delete(&self, _origin: Origin, _instance: InstanceId) -> Result<(), Error> {
        Ok(())
    }

    /// The host write that carries a validated change of one instance to
    /// what the object mirrors (a NetworkManager profile, an oFono
    /// context) before the tree takes it: `old` → `new`, `None` for an
    /// instance that does not exist on that side; `None` when there is
    /// nothing to carry. Checks that need no host are made here, at once;
    /// the write itself runs later, off the tree's lock (see
    /// [`Transaction::prepare`]) and returns the write that takes it back
    /// (see [`HostWrite`]). Changes the platform
    /// itself reports come with [`Origin::Platform`] and are not carried
    /// back to it.
    fn host_write(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        _old: Option<&Instance>,
        _new: Option<&Instance>,
    ) -> Result<Option<HostWrite>, Error> {
        Ok(None)
    }

    /// For a table whose rows the host gives on demand (the processes,
    /// the neighbour table; no event says when they change): the read
    /// that fetches them, made off the tree's lock before a request that
    /// lists the table is served ([`Tree::host_reads`]), its rows then
    /// committed as the platform's ([`Tree::supply`]). Asked once at
    /// registration whether there is one. The table's changes are not
    /// published on the change stream.
    fn host_rows(&self) -> Option<HostRows> {
        None
    }

    /// For a live resource whose value needs slow host I/O (a process to
    /// run, a provider to ask): the read to make, off the tree's lock,
    /// before a request of `origin` that wants it is served
    /// ([`Tree::host_reads`]). Its value is then what `origin` reads
    /// ([`Tree::supply`]) until the request is served
    /// ([`Tree::forget_fetched`]); `read` answers every other read and
    /// must not do that I/O itself.
    fn host_read(
        &self,
        _origin: Origin,
        _instance: InstanceId,
        _resource: ResourceId,
    ) -> Option<HostRead> {
        None
    }

    /// Accepts or refuses an Execute. The action itself is performed by
    /// whoever acts on the published [`ChangeKind::Executed`].
    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        _state: &Instance,
    ) -> Result<(), Error> {
        Err(Error::NotSupported(Path::resource(
            self.schema().id,
            instance,
            resource,
        )))
    }
}

/// The slot a fresh instance gets for a resource: executable, an empty
/// multiple resource, or the type's zero value.
pub fn default_slot(resource: &ResourceSchema) -> Slot {
    if resource.access == Access::Execute {
        Slot::Executable
    } else if resource.multiple {
        Slot::Stored(ResourceValue::Multiple(BTreeMap::new()))
    } else {
        match Value::default_for(resource.value_type) {
            Some(v) => Slot::Stored(ResourceValue::Single(v)),
            None => Slot::Executable,
        }
    }
}

struct ObjectEntry {
    schema: &'static ObjectSchema,
    handler: Box<dyn ObjectHandler>,
    instances: BTreeMap<InstanceId, Instance>,
    /// The next instance number to hand out. Numbers below it are not
    /// reused until the space above it is exhausted, so a client that
    /// deleted an instance never sees its number come back for another.
    next_instance: u16,
}

/// The default of [`Tree::set_instance_limit`]: far above what a gateway
/// holds in any table (TR-181 leaves the tables the agent serves
/// unbounded), far below what makes each state write costly.
pub const DEFAULT_INSTANCE_LIMIT: usize = 1024;

/// The first number handed out: TR-181 numbers instances from 1 and LwM2M
/// single-instance objects live at 0.
fn first_instance(schema: &ObjectSchema) -> u16 {
    if schema.multiple { 1 } else { 0 }
}

/// The object tree.
pub struct Tree {
    /// The most instances a client may make an object hold.
    instance_limit: usize,
    /// Instances a prepared transaction is carrying to the host: clients'
    /// changes of them wait (Error::Busy). Held by the PendingCommit: one
    /// dropped without being completed (its engine replaced) frees them.
    busy: BTreeMap<(ObjectId, InstanceId), std::sync::Weak<()>>,
    /// Values host reads fetched for an origin ([`Tree::supply`]): what
    /// that origin reads of those resources, until its next fetch.
    fetched: std::collections::HashMap<(Origin, Path), Result<ResourceValue, Error>>,
    objects: BTreeMap<ObjectId, ObjectEntry>,
    /// The objects read on demand ([`ObjectHandler::host_rows`]), known
    /// at registration.
    on_demand: std::collections::BTreeSet<ObjectId>,
    attributes: Attributes,
    pending: BTreeMap<String, String>,
    bus: ChangeBus,
    store: Option<Box<dyn StateStore>>,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            instance_limit: DEFAULT_INSTANCE_LIMIT,
            busy: BTreeMap::new(),
            fetched: std::collections::HashMap::new(),
            objects: BTreeMap::new(),
            on_demand: std::collections::BTreeSet::new(),
            attributes: Attributes::default(),
            pending: BTreeMap::new(),
            bus: ChangeBus::default(),
            store: None,
        }
    }

    /// The most instances of one object a management client may create
    /// (default [`DEFAULT_INSTANCE_LIMIT`]): beyond it a Create is
    /// [`Error::TooManyInstances`]. The state file is written whole, so an
    /// unbounded table would make every write slower and the file grow
    /// without end. The platform and the agent are not held to it: what
    /// the host has, the tree shows.
    pub fn set_instance_limit(&mut self, limit: usize) {
        self.instance_limit = limit;
    }

    /// Saves the state through `store` after every change from now on.
    pub fn set_store(&mut self, store: Box<dyn StateStore>) {
        self.store = Some(store);
    }

    /// Registers an object type. Fails if it is registered already.
    pub fn register(&mut self, handler: Box<dyn ObjectHandler>) -> Result<(), Error> {
        let schema = handler.schema();
        if self.objects.contains_key(&schema.id) {
            return Err(Error::Rejected {
                path: Path::object(schema.id),
                reason: "object registered twice".into(),
            });
        }
        if handler.host_rows().is_some() {
            self.on_demand.insert(schema.id);
        }
        self.objects.insert(
            schema.id,
            ObjectEntry {
                schema,
                handler,
                instances: BTreeMap::new(),
                next_instance: first_instance(schema),
            },
        );
        Ok(())
    }

    /// Subscribes to the change stream.
    pub fn subscribe(&mut self, capacity: usize) -> Subscription {
        self.bus.subscribe(capacity)
    }

    /// The sequence number of the last change published: a subscriber
    /// that has seen it has seen every change committed so far.
    pub fn last_sequence(&self) -> u64 {
        self.bus.sequence()
    }

    pub fn schema(&self, object: ObjectId) -> Option<&'static ObjectSchema> {
        self.objects.get(&object).map(|e| e.schema)
    }

    /// Registered object types in id order.
    pub fn objects(&self) -> impl Iterator<Item = &'static ObjectSchema> + '_ {
        self.objects.values().map(|e| e.schema)
    }

    /// Instances of an object in number order.
    pub fn instances(&self, object: ObjectId) -> Result<Vec<InstanceId>, Error> {
        Ok(self.entry(object)?.instances.keys().copied().collect())
    }

    /// The number a Create with none chosen would give a new instance of
    /// `object` now, so that a caller can stage the new instance's values
    /// in the same transaction.
    pub fn free_instance(&self, object: ObjectId) -> Result<InstanceId, Error> {
        let entry = self.entry(object)?;
        let first = first_instance(entry.schema);
        let next = entry.next_instance;
        (next..=InstanceId::MAX.0)
            .chain(first..next)
            .map(InstanceId)
            .find(|id| !entry.instances.contains_key(id) && !self.is_busy(object, *id))
            .ok_or(Error::InstancesExhausted(object))
    }

    /// Whether `object`'s instances are the platform's reported facts
    /// ([`ObjectHandler::reported`]): a client neither adds nor deletes
    /// them.
    pub fn is_reported(&self, object: ObjectId) -> bool {
        self.objects
            .get(&object)
            .is_some_and(|entry| entry.handler.reported())
    }

    /// Whether a transaction waiting for host writes holds an instance
    /// of `object`: a refresh from the platform waits until it ends, or it
    /// would read the host half-written (the write made, the tree not yet
    /// told) and take the instance for one it does not know.
    pub fn has_pending(&self, object: ObjectId) -> bool {
        self.busy
            .range((object, InstanceId(0))..=(object, InstanceId(u16::MAX)))
            .any(|(_, token)| token.strong_count() > 0)
    }

    /// Whether a pending transaction holds the instance.
    fn is_busy(&self, object: ObjectId, instance: InstanceId) -> bool {
        self.busy
            .get(&(object, instance))
            .is_some_and(|token| token.strong_count() > 0)
    }

    /// The resources an instance has.
    pub fn instance(&self, object: ObjectId, instance: InstanceId) -> Result<&Instance, Error> {
        self.entry(object)?
            .instances
            .get(&instance)
            .ok_or(Error::InstanceNotFound(Path::instance(object, instance)))
    }

    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// Reads one resource, or one value of a multiple resource.
    pub fn read(&self, origin: Origin, path: &Path) -> Result<ResourceValue, Error> {
        let (entry, instance, resource) = self.locate(path)?;
        if origin.is_client() && !resource.access.readable() {
            return Err(Error::NotReadable(*path));
        }
        if origin.is_client() {
            entry.handler.available()?;
        }
        let value = match instance.slot(resource.id) {
            // One value of a stored multiple resource: that one cloned,
            // not the whole map (a table of rows read row by row).
            Some(Slot::Stored(ResourceValue::Multiple(values))) if path.index().is_some() => {
                return path
                    .index()
                    .and_then(|index| values.get(&index))
                    .cloned()
                    .map(ResourceValue::Single)
                    .ok_or(Error::ResourceNotFound(*path));
            }
            Some(Slot::Stored(value)) => value.clone(),
            Some(Slot::Live) => {
                // Unwrap-free: locate() checked both ids are present.
                let (inst, res) = (path.instance_id(), path.resource_id());
                match (inst, res) {
                    (Some(i), Some(r)) => self.live(entry, origin, i, r)?,
                    _ => return Err(Error::ResourceNotFound(*path)),
                }
            }
            Some(Slot::Executable) => return Err(Error::NotReadable(*path)),
            None => return Err(Error::ResourceNotFound(*path)),
        };
        match (path.index(), value) {
            (None, value) => Ok(value),
            (Some(index), ResourceValue::Multiple(values)) => values
                .get(&index)
                .cloned()
                .map(ResourceValue::Single)
                .ok_or(Error::ResourceNotFound(*path)),
            (Some(_), ResourceValue::Single(_)) => Err(Error::ResourceNotFound(*path)),
        }
    }

    /// Visits every readable value at or below `prefix`, in path order.
    /// Executables and, for clients, write-only resources are skipped; a
    /// live value that fails to read is passed as its error.
    pub fn walk(
        &self,
        origin: Origin,
        prefix: &Path,
        visit: &mut dyn FnMut(Path, Result<ResourceValue, Error>),
    ) -> Result<(), Error> {
        let entry = self.entry(prefix.object_id())?;
        let instances: Box<dyn Iterator<Item = (&InstanceId, &Instance)>> =
            match prefix.instance_id() {
                Some(i) => Box::new(entry.instances.get_key_value(&i).into_iter()),
                None => Box::new(entry.instances.iter()),
            };
        let mut found = prefix.instance_id().is_none();
        let available = if origin.is_client() {
            entry.handler.available()
        } else {
            Ok(())
        };
        for (&id, instance) in instances {
            found = true;
            for (&resource_id, slot) in &instance.slots {
                if prefix.resource_id().is_some_and(|r| r != resource_id) {
                    continue;
                }
                let Some(schema) = entry.schema.resource(resource_id) else {
                    continue;
                };
                if origin.is_client() && !schema.access.readable() {
                    continue;
                }
                let path = Path::resource(entry.schema.id, id, resource_id);
                match (slot, &available) {
                    (Slot::Executable, _) => {}
                    (_, Err(e)) => visit(path, Err(e.clone())),
                    (Slot::Stored(value), Ok(())) => visit(path, Ok(value.clone())),
                    (Slot::Live, Ok(())) => visit(path, self.live(entry, origin, id, resource_id)),
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(Error::InstanceNotFound(*prefix))
        }
    }

    /// A live resource's value for `origin`: what its last host read
    /// fetched, else the handler's.
    fn live(
        &self,
        entry: &ObjectEntry,
        origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let path = Path::resource(entry.schema.id, instance, resource);
        match self.fetched.get(&(origin, path)) {
            Some(fetched) => fetched.clone(),
            None => match entry.instances.get(&instance) {
                Some(state) => entry.handler.read_in(origin, instance, state, resource),
                None => entry.handler.read(origin, instance, resource),
            },
        }
    }

    /// The host reads a request of `origin` for `paths` (objects,
    /// instances or resources) needs before it is served: none for most;
    /// the live values under the paths that need host I/O, and the rows of
    /// each table read on demand that `paths` names as a whole object.
    pub fn host_reads(&self, origin: Origin, paths: &[Path]) -> HostReads {
        let mut reads = HostReads::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut tables = std::collections::BTreeSet::new();
        for prefix in paths {
            let Ok(entry) = self.entry(prefix.object_id()) else {
                continue;
            };
            // A table read on demand is read when the request names it
            // whole (its object): one naming an instance reads what the
            // last listing found (the adapter chooses, `tables_listed`).
            if prefix.instance_id().is_none()
                && tables.insert(entry.schema.id)
                && let Some(rows) = entry.handler.host_rows()
            {
                reads.push_rows(entry.schema.id, rows);
            }
            for (&id, instance) in &entry.instances {
                if prefix.instance_id().is_some_and(|i| i != id) {
                    continue;
                }
                for (&resource, slot) in &instance.slots {
                    if !matches!(slot, Slot::Live)
                        || prefix.resource_id().is_some_and(|r| r != resource)
                    {
                        continue;
                    }
                    let readable = entry
                        .schema
                        .resource(resource)
                        .is_some_and(|r| r.access.readable());
                    let path = Path::resource(entry.schema.id, id, resource);
                    if (origin.is_client() && !readable) || !seen.insert(path) {
                        continue;
                    }
                    if let Some(read) = entry.handler.host_read(origin, id, resource) {
                        reads.push(origin, path, read);
                    }
                }
            }
        }
        reads
    }

    /// Drops what host reads fetched for `origin`, once the request they
    /// were fetched for is served: a later read (a notification) gets no
    /// stale copy, and nothing is kept between requests.
    pub fn forget_fetched(&mut self, origin: Origin) {
        self.fetched.retain(|(o, _), _| *o != origin);
    }

    /// The objects whose rows the host gives on demand
    /// ([`ObjectHandler::host_rows`]): a request that lists one of them
    /// names it to [`Tree::host_reads`] even when it has no instance yet.
    pub fn tables_read_on_demand(&self) -> Vec<ObjectId> {
        self.on_demand.iter().copied().collect()
    }

    /// Keeps what host reads fetched: each origin's values replace that
    /// origin's earlier ones; tables' rows are committed as the
    /// platform's (a table the host could not read stays as it was; the
    /// commit is not published, see [`ObjectHandler::host_rows`]).
    /// Returns what did not fit, for the log.
    pub fn supply(&mut self, fetched: Fetched) -> Vec<String> {
        let origins: Vec<Origin> = fetched.values.iter().map(|(o, _, _)| *o).collect();
        self.fetched
            .retain(|(origin, _), _| !origins.contains(origin));
        for (origin, path, value) in fetched.values {
            self.fetched.insert((origin, path), value);
        }
        let mut warnings = Vec::new();
        for (object, key, rows) in fetched.rows {
            let (Ok(rows), Ok(entry)) = (rows, self.entry(object)) else {
                continue;
            };
            let schema = entry.schema;
            let held = crate::facts::held_keys(self, object, key);
            // New rows take numbers from the object's counter on: the
            // number of a row that just went is not given to another at
            // once.
            let first_new = self.free_instance(object).map_or(1, |i| i.0);
            let mut tx = self.begin(Origin::Platform);
            crate::facts::fill(&held, &mut tx, schema, key, rows, first_new, &mut warnings);
            if let Err(e) = tx.commit() {
                warnings.push(e.to_string());
            }
        }
        warnings
    }

    /// Starts a transaction on behalf of `origin`.
    pub fn begin(&mut self, origin: Origin) -> Transaction<'_> {
        Transaction {
            tree: self,
            origin,
            operations: Vec::new(),
        }
    }

    /// Executes a resource. The handler checks that it may run now; the
    /// action is published as [`ChangeKind::Executed`].
    pub fn execute(&mut self, origin: Origin, path: &Path, arguments: &str) -> Result<(), Error> {
        let (entry, instance, resource) = self.locate(path)?;
        if path.index().is_some() || resource.access != Access::Execute {
            return Err(Error::NotExecutable(*path));
        }
        if !matches!(instance.slot(resource.id), Some(Slot::Executable)) {
            return Err(Error::NotSupported(*path));
        }
        let (Some(instance_id), Some(resource_id)) = (path.instance_id(), path.resource_id())
        else {
            return Err(Error::NotExecutable(*path));
        };
        entry
            .handler
            .execute(origin, instance_id, resource_id, arguments, instance)?;
        self.bus.publish(vec![(
            origin,
            *path,
            ChangeKind::Executed(arguments.to_owned()),
        )]);
        Ok(())
    }

    /// Publishes the progress of a transfer into `path` (a firmware
    /// package): an event for whoever shows it, not a change of value.
    pub fn publish_progress(&mut self, origin: Origin, path: &Path, done: u64, total: Option<u64>) {
        self.bus
            .publish(vec![(origin, *path, ChangeKind::Progress { done, total })]);
    }

    /// Sets the TR-069 notification level of a resource and saves it.
    pub fn set_notification(
        &mut self,
        origin: Origin,
        path: &Path,
        level: Notification,
    ) -> Result<(), Error> {
        self.check_attribute_target(origin, path)?;
        let before = self.attributes.clone();
        self.attributes.set_notification(*path, level);
        self.save_or_restore_attributes(before)
    }

    /// Sets the TR-069 access list of a resource and saves it.
    pub fn set_access_list(
        &mut self,
        origin: Origin,
        path: &Path,
        list: Vec<String>,
    ) -> Result<(), Error> {
        self.check_attribute_target(origin, path)?;
        let before = self.attributes.clone();
        self.attributes.set_access_list(*path, list);
        self.save_or_restore_attributes(before)
    }

    /// Sets the TR-069 notification levels and access lists of several
    /// resources at once (SetParameterAttributes): every target is checked
    /// first, then all are applied and saved once, or none is.
    pub fn set_attributes(
        &mut self,
        origin: Origin,
        changes: &[AttributeChange],
    ) -> Result<(), Error> {
        for (path, _, _) in changes {
            self.check_attribute_target(origin, path)?;
        }
        let before = self.attributes.clone();
        for (path, level, list) in changes {
            if let Some(level) = level {
                self.attributes.set_notification(*path, *level);
            }
            if let Some(list) = list {
                self.attributes.set_access_list(*path, list.clone());
            }
        }
        if self.attributes == before {
            return Ok(());
        }
        self.save_or_restore_attributes(before)
    }

    /// Sets a server's LwM2M notification attributes at an object, instance
    /// or resource level and saves them.
    pub fn set_observe_attributes(
        &mut self,
        server: u16,
        path: &Path,
        attrs: ObserveAttributes,
    ) -> Result<(), Error> {
        let entry = self.entry(path.object_id())?;
        if let Some(i) = path.instance_id()
            && !entry.instances.contains_key(&i)
        {
            return Err(Error::InstanceNotFound(Path::instance(path.object_id(), i)));
        }
        if let Some(r) = path.resource_id()
            && entry.schema.resource(r).is_none()
        {
            return Err(Error::ResourceNotFound(*path));
        }
        let before = self.attributes.clone();
        self.attributes.set_observe(server, *path, attrs);
        self.save_or_restore_attributes(before)
    }

    /// State an adapter keeps across restarts (pending CWMP events, LwM2M
    /// registrations), opaque to the core.
    pub fn pending_state(&self, key: &str) -> Option<&str> {
        self.pending.get(key).map(String::as_str)
    }

    /// Replaces an adapter's pending state and saves it before returning,
    /// so a caller may act as if it is durable.
    pub fn set_pending_state(&mut self, key: &str, state: Option<String>) -> Result<(), Error> {
        // The same state again is durable already: no write (flash wear).
        if self.pending.get(key) == state.as_ref() {
            return Ok(());
        }
        let before = match state {
            Some(s) => self.pending.insert(key.to_owned(), s),
            None => self.pending.remove(key),
        };
        if let Err(e) = self.save() {
            match before {
                Some(s) => self.pending.insert(key.to_owned(), s),
                None => self.pending.remove(key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// The persistent part of the state: stored values, instance numbers,
    /// attributes and pending adapter state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self
                .objects
                .values()
                // Reported again at the next start: not kept.
                .filter(|entry| !entry.handler.reported())
                .map(|entry| ObjectState {
                    object: entry.schema.id,
                    next_instance: entry.next_instance,
                    instances: entry
                        .instances
                        .iter()
                        .map(|(&id, instance)| InstanceState {
                            instance: id,
                            values: instance
                                .slots
                                .iter()
                                .filter_map(|(&r, slot)| match slot {
                                    Slot::Stored(v) => Some((r, v.clone())),
                                    _ => None,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            notification: self
                .attributes
                .notification
                .iter()
                .map(|(p, n)| (*p, *n))
                .collect(),
            access_list: self
                .attributes
                .access_list
                .iter()
                .map(|(p, l)| (*p, l.clone()))
                .collect(),
            observe: self
                .attributes
                .observe
                .iter()
                .map(|((s, p), a)| (*s, *p, *a))
                .collect(),
            pending: self.pending.clone(),
        }
    }

    /// Loads a saved state into a tree whose objects are registered and
    /// that holds no instances yet. The saved instance set of each object
    /// is authoritative: an instance a client deleted stays deleted.
    ///
    /// Values that no longer fit the schema (the agent was upgraded) are
    /// dropped, each with a warning; nothing is published. Returns the
    /// warnings and the ids of the objects the snapshot covered, so the
    /// caller populates only the others with their defaults.
    pub fn restore(&mut self, snapshot: Snapshot) -> (Vec<String>, Vec<ObjectId>) {
        let mut warnings = Vec::new();
        let mut covered = Vec::new();
        for object in snapshot.objects {
            let Some(entry) = self.objects.get_mut(&object.object) else {
                warnings.push(format!(
                    "/{}: unknown object, saved state dropped",
                    object.object
                ));
                continue;
            };
            covered.push(object.object);
            entry.next_instance = object.next_instance;
            for saved in object.instances {
                let mut instance = match entry.handler.create(saved.instance) {
                    Ok(i) => i,
                    Err(e) => {
                        warnings.push(format!("{e}; saved instance dropped"));
                        continue;
                    }
                };
                for (resource, value) in saved.values {
                    let path = Path::resource(object.object, saved.instance, resource);
                    let Some(schema) = entry.schema.resource(resource) else {
                        warnings.push(format!("{path}: unknown resource, saved value dropped"));
                        continue;
                    };
                    if matches!(instance.slot(resource), Some(Slot::Live | Slot::Executable)) {
                        continue;
                    }
                    match check_restored(schema, value) {
                        Ok(value) => {
                            instance.slots.insert(resource, Slot::Stored(value));
                        }
                        Err(e) => warnings.push(format!("{path}: saved value dropped: {e}")),
                    }
                }
                entry.instances.insert(saved.instance, instance);
            }
        }
        let exists = |tree: &Tree, p: &Path| tree.locate_prefix(p).is_ok();
        for (path, level) in snapshot.notification {
            if exists(self, &path) {
                self.attributes.set_notification(path, level);
            }
        }
        for (path, list) in snapshot.access_list {
            if exists(self, &path) {
                self.attributes.set_access_list(path, list);
            }
        }
        for (server, path, attrs) in snapshot.observe {
            if exists(self, &path) {
                self.attributes.set_observe(server, path, attrs);
            }
        }
        self.pending = snapshot.pending;
        (warnings, covered)
    }

    fn entry(&self, object: ObjectId) -> Result<&ObjectEntry, Error> {
        self.objects
            .get(&object)
            .ok_or(Error::ObjectNotFound(object))
    }

    /// Finds the object, instance and resource schema of a resource path.
    fn locate(
        &self,
        path: &Path,
    ) -> Result<(&ObjectEntry, &Instance, &'static ResourceSchema), Error> {
        let entry = self.entry(path.object_id())?;
        let (Some(instance_id), Some(resource_id)) = (path.instance_id(), path.resource_id())
        else {
            return Err(Error::ResourceNotFound(*path));
        };
        let instance = entry
            .instances
            .get(&instance_id)
            .ok_or(Error::InstanceNotFound(Path::instance(
                path.object_id(),
                instance_id,
            )))?;
        let schema = entry
            .schema
            .resource(resource_id)
            .ok_or(Error::ResourceNotFound(path.without_index()))?;
        Ok((entry, instance, schema))
    }

    /// Checks that an object, instance or resource path names something
    /// that exists.
    fn locate_prefix(&self, path: &Path) -> Result<(), Error> {
        let entry = self.entry(path.object_id())?;
        if let Some(i) = path.instance_id() {
            let instance = entry
                .instances
                .get(&i)
                .ok_or(Error::InstanceNotFound(Path::instance(path.object_id(), i)))?;
            if let Some(r) = path.resource_id()
                && instance.slot(r).is_none()
            {
                return Err(Error::ResourceNotFound(*path));
            }
        }
        Ok(())
    }

    fn check_attribute_target(&self, origin: Origin, path: &Path) -> Result<(), Error> {
        if path.resource_id().is_none() || path.index().is_some() {
            return Err(Error::Rejected {
                path: *path,
                reason: "attributes are set on resources".into(),
            });
        }
        let (_, _, schema) = self.locate(path)?;
        if origin.is_client() && !schema.access.readable() {
            return Err(Error::NotReadable(*path));
        }
        Ok(())
    }

    fn save_or_restore_attributes(&mut self, before: Attributes) -> Result<(), Error> {
        if let Err(e) = self.save() {
            self.attributes = before;
            return Err(e);
        }
        Ok(())
    }

    fn save(&mut self) -> Result<(), Error> {
        if self.store.is_none() {
            return Ok(());
        }
        let snapshot = self.snapshot();
        match self.store.as_mut() {
            Some(store) => store
                .save(&snapshot)
                .map_err(|e| Error::Storage(e.to_string())),
            None => Ok(()),
        }
    }
}

/// The type check a restored value goes through (see [`Value::check_type`]).
fn check_restored(
    schema: &ResourceSchema,
    value: ResourceValue,
) -> Result<ResourceValue, crate::value::ValueError> {
    Ok(match value {
        ResourceValue::Single(v) => ResourceValue::Single(v.check_type(schema)?),
        ResourceValue::Multiple(values) => ResourceValue::Multiple(
            values
                .into_iter()
                .map(|(i, v)| v.check_type(schema).map(|v| (i, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

enum Operation {
    Set(Path, ResourceValue),
    SetBy(Origin, Path, ResourceValue),
    Create(ObjectId, Option<InstanceId>),
    Delete(ObjectId, InstanceId),
}

/// Staged changes, applied together by [`Transaction::commit`] or not at
/// all. Dropping a transaction without committing discards it.
pub struct Transaction<'t> {
    tree: &'t mut Tree,
    origin: Origin,
    operations: Vec<Operation>,
}

/// What a successful commit did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    /// Instances created, in order, with the numbers they got.
    pub created: Vec<Path>,
    /// How many changes were published.
    pub changes: usize,
}

impl Transaction<'_> {
    /// Stages a write of a resource (single or multiple value) or of one
    /// value of a multiple resource.
    pub fn set(&mut self, path: Path, value: Value) -> &mut Self {
        self.operations
            .push(Operation::Set(path, ResourceValue::Single(value)));
        self
    }

    /// Stages a write checked as `origin` would be checked, for bookkeeping
    /// that must commit with a client's transaction or not at all (the
    /// CWMP ParameterKey set by a SetParameterValues, TR-069 §A.3.2.1).
    pub fn set_by(&mut self, origin: Origin, path: Path, value: Value) -> &mut Self {
        self.operations
            .push(Operation::SetBy(origin, path, ResourceValue::Single(value)));
        self
    }

    /// Stages a replacement of every value of a multiple resource.
    pub fn set_multiple(&mut self, path: Path, values: BTreeMap<u16, Value>) -> &mut Self {
        self.operations
            .push(Operation::Set(path, ResourceValue::Multiple(values)));
        self
    }

    /// Stages the creation of an instance, with a chosen number or the next
    /// free one.
    pub fn create(&mut self, object: ObjectId, instance: Option<InstanceId>) -> &mut Self {
        self.operations.push(Operation::Create(object, instance));
        self
    }

    pub fn delete(&mut self, object: ObjectId, instance: InstanceId) -> &mut Self {
        self.operations.push(Operation::Delete(object, instance));
        self
    }

    /// Checks and applies every staged operation, or none. The transaction
    /// is empty afterwards, whatever the outcome. Host writes it needs are
    /// made here, blocking the caller: protocol engines use
    /// [`Transaction::prepare`] instead and let their driver make them.
    pub fn commit(&mut self) -> Result<Committed, TransactionError> {
        match self.prepare()? {
            Prepared::Committed(committed) => Ok(committed),
            Prepared::Pending(mut pending) => {
                let outcome = pending.take_work().run();
                let completion = self.tree.complete(pending, outcome);
                if let Some(undo) = completion.undo {
                    undo.undo();
                }
                completion.result
            }
        }
    }

    /// Checks every staged operation. With nothing to carry to the host the
    /// transaction is applied, saved and published at once, as by
    /// [`Transaction::commit`]. Otherwise nothing changes yet: the host
    /// writes ([`PendingCommit::take_work`]) are made by the caller off the
    /// tree's lock, and [`Tree::complete`] applies the transaction, or
    /// nothing, with their outcome. Meanwhile the instances involved are
    /// busy for other clients ([`Error::Busy`]); reads see them as they
    /// were.
    ///
    /// All or nothing holds across tree and host: a host write that fails
    /// takes back those of the same transaction already made, and the tree
    /// keeps its state; a tree that cannot save takes the host writes back.
    pub fn prepare(&mut self) -> Result<Prepared, TransactionError> {
        let operations = std::mem::take(&mut self.operations);
        let staged = stage(self.tree, self.origin, operations)?;
        let work = host_work(self.tree, self.origin, &staged)?;
        if work.is_empty() {
            return apply(self.tree, self.origin, staged).map(Prepared::Committed);
        }
        let token = std::sync::Arc::new(());
        let mut base = BTreeMap::new();
        for key in staged.instances.keys() {
            self.tree
                .busy
                .insert(*key, std::sync::Arc::downgrade(&token));
            let now = self
                .tree
                .objects
                .get(&key.0)
                .and_then(|e| e.instances.get(&key.1))
                .cloned();
            base.insert(*key, now);
        }
        Ok(Prepared::Pending(PendingCommit {
            token,
            origin: self.origin,
            staged,
            base,
            work: Some(work),
        }))
    }
}

/// What [`Transaction::prepare`] left.
#[derive(Debug)]
pub enum Prepared {
    /// Applied, saved and published.
    Committed(Committed),
    /// Waiting for host writes.
    Pending(PendingCommit),
}

/// A checked transaction waiting for its host writes; give it back to
/// [`Tree::complete`] whatever happens.
pub struct PendingCommit {
    /// Keeps its instances busy while it lives.
    token: std::sync::Arc<()>,
    origin: Origin,
    staged: Staged,
    /// The touched instances as they were when prepared: what changed in
    /// them meanwhile (platform facts, the agent's own writes; clients
    /// were kept off) is kept when the transaction completes.
    base: BTreeMap<(ObjectId, InstanceId), Option<Instance>>,
    work: Option<HostWork>,
}

impl PendingCommit {
    /// The host writes to make, once (empty after the first call).
    /// The work holds the transaction's instances busy until it, and
    /// the undo it leaves, are gone: a host thread that outlives its
    /// caller keeps other clients off them.
    pub fn take_work(&mut self) -> HostWork {
        let mut work = self.work.take().unwrap_or_default();
        work.hold(std::sync::Arc::clone(&self.token));
        work
    }

    /// The instances the transaction creates, with their numbers.
    pub fn created(&self) -> &[Path] {
        &self.staged.created
    }
}

impl std::fmt::Debug for PendingCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCommit")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// How a pending transaction ended.
#[derive(Debug)]
pub struct Completion {
    pub result: Result<Committed, TransactionError>,
    /// Host writes to take back (the tree could not save): to run off the
    /// tree's lock, best effort.
    pub undo: Option<HostWork>,
}

/// The host writes the staged changes need, each with the write that
/// takes it back.
fn host_work(tree: &Tree, origin: Origin, staged: &Staged) -> Result<HostWork, TransactionError> {
    let mut work = HostWork::default();
    for ((object, id), new) in &staged.instances {
        let Ok(entry) = tree.entry(*object) else {
            continue;
        };
        let old = entry.instances.get(id);
        if old == new.as_ref() {
            continue;
        }
        let write = entry
            .handler
            .host_write(origin, *id, old, new.as_ref())
            .map_err(|e| TransactionError { faults: vec![e] })?;
        if let Some(write) = write {
            work.push(write);
        }
    }
    Ok(work)
}

impl Tree {
    /// Ends a pending transaction with the outcome of its host writes
    /// ([`HostWork::run`]): applies, saves and publishes it when they
    /// were made, or leaves the tree as it was.
    pub fn complete(
        &mut self,
        pending: PendingCommit,
        outcome: Result<HostWork, Error>,
    ) -> Completion {
        drop(pending.token);
        let completion = match outcome {
            Err(e) => Completion {
                result: Err(TransactionError { faults: vec![e] }),
                undo: None,
            },
            Ok(undo) => match apply(
                self,
                pending.origin,
                rebase(self, pending.staged, &pending.base),
            ) {
                Ok(committed) => Completion {
                    result: Ok(committed),
                    undo: None,
                },
                // The state could not be saved: the host goes back too.
                Err(e) => Completion {
                    result: Err(e),
                    undo: Some(undo),
                },
            },
        };
        // An undo dropped above released its hold: forget the tokens gone.
        self.busy.retain(|_, token| token.strong_count() > 0);
        completion
    }
}

/// A transaction prepared earlier, brought onto the tree as it is now: in
/// an instance that changed meanwhile, only the resources the transaction
/// changed are taken from it; instance counters never go back.
fn rebase(
    tree: &Tree,
    mut staged: Staged,
    base: &BTreeMap<(ObjectId, InstanceId), Option<Instance>>,
) -> Staged {
    for (key, new) in &mut staged.instances {
        let now = tree
            .objects
            .get(&key.0)
            .and_then(|e| e.instances.get(&key.1));
        let was = base.get(key).and_then(Option::as_ref);
        if now == was {
            continue;
        }
        if let (Some(was), Some(now), Some(new)) = (was, now, new.as_mut()) {
            let mut merged = now.clone();
            let touched: std::collections::BTreeSet<ResourceId> =
                was.resources().chain(new.resources()).collect();
            for resource in touched {
                let written = staged.written.contains(&(key.0, key.1, resource));
                if written || new.slot(resource) != was.slot(resource) {
                    match new.slot(resource) {
                        Some(slot) => {
                            merged.slots.insert(resource, slot.clone());
                        }
                        None => {
                            merged.slots.remove(&resource);
                        }
                    }
                }
            }
            *new = merged;
        }
    }
    for (object, next) in &mut staged.next_instance {
        if let Some(entry) = tree.objects.get(object) {
            *next = (*next).max(entry.next_instance);
        }
    }
    staged
}

/// The tree as the transaction would leave it, for the objects it touches.
struct Staged {
    /// `None`: the instance is deleted.
    instances: BTreeMap<(ObjectId, InstanceId), Option<Instance>>,
    next_instance: BTreeMap<ObjectId, u16>,
    created: Vec<Path>,
    /// The resources the transaction wrote (a value equal to the one
    /// before is still a write: see `rebase`).
    written: std::collections::BTreeSet<(ObjectId, InstanceId, ResourceId)>,
    /// Resources published as changed even where their value stays
    /// (`ObjectHandler::adjust`).
    republished: std::collections::BTreeSet<(ObjectId, InstanceId, ResourceId)>,
}

fn stage(
    tree: &Tree,
    origin: Origin,
    operations: Vec<Operation>,
) -> Result<Staged, TransactionError> {
    let mut staged = Staged {
        instances: BTreeMap::new(),
        next_instance: BTreeMap::new(),
        created: Vec::new(),
        written: std::collections::BTreeSet::new(),
        republished: std::collections::BTreeSet::new(),
    };
    let mut faults = Vec::new();
    for operation in operations {
        let result = match operation {
            Operation::Set(path, value) => stage_set(tree, origin, &mut staged, path, value),
            Operation::SetBy(by, path, value) => stage_set(tree, by, &mut staged, path, value),
            Operation::Create(object, instance) => {
                stage_create(tree, origin, &mut staged, object, instance)
            }
            Operation::Delete(object, instance) => {
                stage_delete(tree, origin, &mut staged, object, instance)
            }
        };
        if let Err(e) = result {
            faults.push(e);
        }
    }
    // Writes that change other resources of their instance.
    for ((object, id), instance) in &mut staged.instances {
        let (Some(instance), Ok(entry)) = (instance.as_mut(), tree.entry(*object)) else {
            continue;
        };
        let written: Vec<ResourceId> = staged
            .written
            .range((*object, *id, ResourceId(0))..=(*object, *id, ResourceId(u16::MAX)))
            .map(|(_, _, r)| *r)
            .collect();
        if written.is_empty() {
            continue;
        }
        match entry.handler.adjust(origin, *id, &written, instance) {
            Ok(republished) => staged
                .republished
                .extend(republished.into_iter().map(|r| (*object, *id, r))),
            Err(e) => faults.push(e),
        }
    }
    // The object's own rules see each touched instance whole, once.
    for ((object, id), instance) in &staged.instances {
        let (Some(instance), Ok(entry)) = (instance, tree.entry(*object)) else {
            continue;
        };
        if let Err(e) = entry.handler.validate(origin, *id, instance) {
            faults.push(e);
        }
    }
    if faults.is_empty() {
        Ok(staged)
    } else {
        Err(TransactionError { faults })
    }
}

/// The staged copy of an instance, taken from the tree on first touch.
fn staged_instance<'s>(
    tree: &Tree,
    staged: &'s mut Staged,
    object: ObjectId,
    id: InstanceId,
) -> Result<&'s mut Instance, Error> {
    let entry = tree.entry(object)?;
    staged
        .instances
        .entry((object, id))
        .or_insert_with(|| entry.instances.get(&id).cloned())
        .as_mut()
        .ok_or(Error::InstanceNotFound(Path::instance(object, id)))
}

fn stage_set(
    tree: &Tree,
    origin: Origin,
    staged: &mut Staged,
    path: Path,
    value: ResourceValue,
) -> Result<(), Error> {
    let entry = tree.entry(path.object_id())?;
    let (Some(id), Some(resource_id)) = (path.instance_id(), path.resource_id()) else {
        return Err(Error::ResourceNotFound(path));
    };
    let schema = entry
        .schema
        .resource(resource_id)
        .ok_or(Error::ResourceNotFound(path.without_index()))?;
    let allowed = match origin {
        // Bootstrap-Write may set any resource of any instance (LwM2M Core
        // §5.2.7.4), but executing stays an Execute.
        Origin::Bootstrap => schema.access != Access::Execute,
        _ if origin.is_client() => schema.access.writable(),
        _ => schema.access != Access::Execute,
    };
    if !allowed {
        return Err(Error::NotWritable(path));
    }
    if origin.is_client() && tree.is_busy(path.object_id(), id) {
        return Err(Error::Busy(Path::instance(path.object_id(), id)));
    }
    let instance = staged_instance(tree, staged, path.object_id(), id)?;
    if matches!(instance.slot(resource_id), Some(Slot::Live)) {
        return Err(Error::NotSupported(path));
    }
    let invalid = |source| Error::InvalidValue { path, source };
    // What a management client writes must be reportable by every
    // protocol: a string XML cannot carry is refused at the edge (CWMP
    // 9007, LwM2M 4.00). The platform reports facts as they are; encoders
    // make those safe.
    if origin.is_client() {
        match &value {
            ResourceValue::Single(v) => crate::value::check_characters(v),
            ResourceValue::Multiple(values) => {
                values.values().try_for_each(crate::value::check_characters)
            }
        }
        .map_err(invalid)?;
    }
    let new_value = match (path.index(), value, schema.multiple) {
        (None, ResourceValue::Single(v), false) => {
            ResourceValue::Single(v.check(schema).map_err(invalid)?)
        }
        (None, ResourceValue::Multiple(values), true) => ResourceValue::Multiple(
            values
                .into_iter()
                .map(|(i, v)| v.check(schema).map(|v| (i, v)))
                .collect::<Result<_, _>>()
                .map_err(invalid)?,
        ),
        (Some(index), ResourceValue::Single(v), true) => {
            let v = v.check(schema).map_err(invalid)?;
            let mut values = match instance.slot(resource_id) {
                Some(Slot::Stored(ResourceValue::Multiple(values))) => values.clone(),
                _ => BTreeMap::new(),
            };
            values.insert(index, v);
            ResourceValue::Multiple(values)
        }
        (_, value, multiple) => {
            return Err(Error::Rejected {
                path,
                reason: format!(
                    "a {} value does not fit a {} resource",
                    match value {
                        ResourceValue::Single(_) => "single",
                        ResourceValue::Multiple(_) => "multiple",
                    },
                    if multiple { "multiple" } else { "single" }
                ),
            });
        }
    };
    instance.slots.insert(resource_id, Slot::Stored(new_value));
    staged.written.insert((path.object_id(), id, resource_id));
    Ok(())
}

fn stage_create(
    tree: &Tree,
    origin: Origin,
    staged: &mut Staged,
    object: ObjectId,
    requested: Option<InstanceId>,
) -> Result<(), Error> {
    let entry = tree.entry(object)?;
    // A number a pending transaction is creating is taken already.
    let exists = |id: InstanceId, staged: &Staged| match staged.instances.get(&(object, id)) {
        Some(instance) => instance.is_some(),
        None => entry.instances.contains_key(&id) || tree.is_busy(object, id),
    };
    let any_instance = !entry.instances.is_empty()
        || staged
            .instances
            .iter()
            .any(|((o, _), i)| *o == object && i.is_some());
    if !entry.schema.multiple && any_instance && origin.is_client() {
        return Err(Error::FixedInstances(object));
    }
    if origin.is_client() {
        let staged_here = |keep: bool| {
            staged
                .instances
                .iter()
                .filter(|((o, id), i)| {
                    *o == object && i.is_some() == keep && {
                        // Only what changes the count: a staged creation of a
                        // number the tree lacks, a staged deletion of one it has.
                        entry.instances.contains_key(id) != keep
                    }
                })
                .count()
        };
        // Numbers other transactions reserved while their host writes are
        // made count too.
        let reserved = tree
            .busy
            .range((object, InstanceId(0))..=(object, InstanceId(u16::MAX)))
            .filter(|((_, id), token)| {
                token.strong_count() > 0
                    && !entry.instances.contains_key(id)
                    && !staged.instances.contains_key(&(object, *id))
            })
            .count();
        let count = entry.instances.len() + reserved + staged_here(true) - staged_here(false);
        let limit = entry
            .handler
            .max_instances()
            .map_or(tree.instance_limit, |own| own.min(tree.instance_limit));
        if count >= limit {
            return Err(Error::TooManyInstances { object, limit });
        }
    }
    let next = staged
        .next_instance
        .get(&object)
        .copied()
        .unwrap_or(entry.next_instance);
    let id = match requested {
        Some(id) if id > InstanceId::MAX => {
            return Err(Error::Rejected {
                path: Path::instance(object, id),
                reason: "instance number 65535 is reserved".into(),
            });
        }
        Some(id) if exists(id, staged) => {
            return Err(Error::InstanceExists(Path::instance(object, id)));
        }
        Some(id) => id,
        None => {
            // Numbers from `next` up first; only when those are used up
            // wrap around and take the lowest gap.
            let first = first_instance(entry.schema);
            (next..=InstanceId::MAX.0)
                .chain(first..next)
                .map(InstanceId)
                .find(|&id| !exists(id, staged))
                .ok_or(Error::InstancesExhausted(object))?
        }
    };
    let instance = entry.handler.create(id)?;
    let new_next = if id.0 >= next {
        id.0.saturating_add(1).min(InstanceId::MAX.0)
    } else {
        next
    };
    staged.next_instance.insert(object, new_next);
    staged.instances.insert((object, id), Some(instance));
    staged.created.push(Path::instance(object, id));
    Ok(())
}

fn stage_delete(
    tree: &Tree,
    origin: Origin,
    staged: &mut Staged,
    object: ObjectId,
    id: InstanceId,
) -> Result<(), Error> {
    let entry = tree.entry(object)?;
    if !entry.schema.multiple && origin.is_client() {
        return Err(Error::FixedInstances(object));
    }
    if origin.is_client() && tree.is_busy(object, id) {
        return Err(Error::Busy(Path::instance(object, id)));
    }
    staged_instance(tree, staged, object, id)?;
    entry.handler.delete(origin, id)?;
    staged.instances.insert((object, id), None);
    Ok(())
}

/// Applies a checked transaction, saves, and publishes; undoes everything
/// if the save fails.
fn apply(tree: &mut Tree, origin: Origin, staged: Staged) -> Result<Committed, TransactionError> {
    let mut changes = Vec::new();
    let mut undo = Vec::new();
    let attributes_before = tree.attributes.clone();
    let mut next_before = Vec::new();
    for (object, next) in &staged.next_instance {
        if let Some(entry) = tree.objects.get_mut(object) {
            next_before.push((*object, entry.next_instance));
            entry.next_instance = *next;
        }
    }
    for ((object, id), new) in staged.instances {
        let Some(entry) = tree.objects.get_mut(&object) else {
            continue;
        };
        let old = match &new {
            Some(instance) => entry.instances.insert(id, instance.clone()),
            None => entry.instances.remove(&id),
        };
        record_changes(&mut changes, origin, object, id, old.as_ref(), new.as_ref());
        for (_, _, resource) in staged
            .republished
            .range((object, id, ResourceId(0))..=(object, id, ResourceId(u16::MAX)))
        {
            let path = Path::resource(object, id, *resource);
            let unchanged = !changes.iter().any(|(_, p, _)| *p == path);
            if let (true, Some(Slot::Stored(value))) =
                (unchanged, new.as_ref().and_then(|n| n.slot(*resource)))
            {
                changes.push((origin, path, ChangeKind::Value(value.clone())));
            }
        }
        if new.is_none() {
            tree.attributes.remove_under(&Path::instance(object, id));
        }
        undo.push((object, id, old));
    }
    // Flash wear: a commit that changed nothing writes nothing, and
    // neither does one that only carries platform facts (a signal
    // strength, a link state): the platform reports them again after a
    // restart, so they are not worth a write. Facts stay in the tree and
    // reach the file with the next durable change.
    let reported = |object: &ObjectId| {
        tree.objects
            .get(object)
            .is_some_and(|e| e.handler.reported())
    };
    let structural = changes.iter().any(|(_, path, kind)| {
        matches!(kind, ChangeKind::Created | ChangeKind::Deleted) && !reported(&path.object_id())
    });
    let durable = !changes.is_empty() && (origin != Origin::Platform || structural)
        || !next_before.iter().all(|(object, next)| {
            reported(object) || tree.objects.get(object).map(|e| e.next_instance) == Some(*next)
        });
    if durable && let Err(e) = tree.save() {
        for (object, id, old) in undo.into_iter().rev() {
            if let Some(entry) = tree.objects.get_mut(&object) {
                match old {
                    Some(instance) => entry.instances.insert(id, instance),
                    None => entry.instances.remove(&id),
                };
            }
        }
        for (object, next) in next_before {
            if let Some(entry) = tree.objects.get_mut(&object) {
                entry.next_instance = next;
            }
        }
        tree.attributes = attributes_before;
        return Err(TransactionError { faults: vec![e] });
    }
    // Tables read on demand (the processes) change at every read and
    // nothing acts on them (no notification may be set on them): their
    // changes are not published, or one listing of a busy host would
    // flood every subscriber (the exception to the invariant of the
    // change stream, ARCHITECTURE.md).
    changes.retain(|(_, path, _)| !tree.on_demand.contains(&path.object_id()));
    let count = changes.len();
    tree.bus.publish(changes);
    Ok(Committed {
        created: staged.created,
        changes: count,
    })
}

/// The changes between the old and new state of one instance: created,
/// deleted, or each resource whose value differs.
fn record_changes(
    changes: &mut Vec<(Origin, Path, ChangeKind)>,
    origin: Origin,
    object: ObjectId,
    id: InstanceId,
    old: Option<&Instance>,
    new: Option<&Instance>,
) {
    match (old, new) {
        (None, None) => {}
        (Some(_), None) => changes.push((origin, Path::instance(object, id), ChangeKind::Deleted)),
        // A new instance is one change: its values are read with it.
        (None, Some(_)) => changes.push((origin, Path::instance(object, id), ChangeKind::Created)),
        (Some(old), Some(new)) => {
            for (&resource, slot) in &new.slots {
                let Slot::Stored(value) = slot else { continue };
                if old.slot(resource) != Some(slot) {
                    changes.push((
                        origin,
                        Path::resource(object, id, resource),
                        ChangeKind::Value(value.clone()),
                    ));
                }
            }
        }
    }
}
