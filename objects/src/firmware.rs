//! Firmware Update (/5).
//!
//! State and Update Result follow the LwM2M state diagram (Core E.6):
//! Idle (0) → Downloading (1) → Downloaded (2) → Updating (3). The object
//! enforces which Executes each state allows; the LwM2M engine moves the
//! state as a pushed package arrives (to a file, through its package
//! sink) and the agent as the update program runs (`agent/src/firmware.rs`).
//! A Package URI written by a server is pulled by the agent over HTTP(S)
//! (`agent/src/firmware.rs`), streamed to the same file.

use dm_core::catalog::firmware::{self, *};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId, Tree, Value,
};

use crate::layout;

use dm_core::enums::firmware::{
    DOWNLOADED as STATE_DOWNLOADED, DOWNLOADING as STATE_DOWNLOADING, IDLE as STATE_IDLE,
};

struct Firmware;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(Firmware))
}

impl ObjectHandler for Firmware {
    fn schema(&self) -> &'static ObjectSchema {
        &firmware::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(layout(
            &SCHEMA,
            &[
                PKGNAME,
                PKGVERSION,
                FIRMWARE_UPDATE_PROTOCOL_SUPPORT,
                CANCEL,
            ],
        ))
    }

    fn execute(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
        _arguments: &str,
        state: &Instance,
    ) -> Result<(), Error> {
        let current = match state.value(STATE) {
            Some(Value::Integer(s)) => *s,
            _ => STATE_IDLE,
        };
        let path = Path::resource(ID, instance, resource);
        match resource {
            // LwM2M Core E.6: Update is only valid in Downloaded.
            UPDATE if current == STATE_DOWNLOADED => Ok(()),
            UPDATE => Err(Error::Rejected {
                path,
                reason: "no firmware image has been downloaded".into(),
            }),
            // Object 5 v1.1, Cancel: a download or a downloaded image
            // (Update Result 10, State Idle, done by whoever acts on the
            // Execute); once installing, "Method Not Allowed".
            CANCEL if current == STATE_DOWNLOADING || current == STATE_DOWNLOADED => Ok(()),
            CANCEL if current > STATE_DOWNLOADED => Err(Error::NotExecutable(path)),
            CANCEL => Err(Error::Rejected {
                path,
                reason: "no firmware download to cancel".into(),
            }),
            _ => Err(Error::NotSupported(path)),
        }
    }
}

/// The pipeline's State and Update Result now (LwM2M /5/0/3, /5/0/5).
pub fn status(tree: &Tree) -> (i64, i64) {
    let read =
        |resource| match tree.read(Origin::Agent, &Path::resource(ID, InstanceId(0), resource)) {
            Ok(dm_core::ResourceValue::Single(Value::Integer(v))) => v,
            _ => 0,
        };
    (read(STATE), read(UPDATE_RESULT))
}

/// Whether a change is of the pipeline's State, Update Result or
/// Package URI.
pub fn concerns(change: &dm_core::Change) -> bool {
    change.path.object_id() == ID
        && matches!(
            change.path.resource_id(),
            Some(STATE) | Some(UPDATE_RESULT) | Some(PACKAGE_URI)
        )
}

/// A client asks for the package at `uri` (the agent pulls it, as for an
/// LwM2M server's Package URI): written as `origin`; refused while the
/// pipeline is busy (Downloading, Updating: it is another request's). The
/// same URI as the one held is written empty first, so that it is a
/// change and the pull starts again.
pub fn request(tree: &mut Tree, origin: Origin, uri: &str) -> Result<(), String> {
    let (state, result) = status(tree);
    if state != STATE_IDLE && state != STATE_DOWNLOADED {
        return Err(format!(
            "the firmware pipeline is busy (State {state}: downloading or updating)"
        ));
    }
    // LwM2M /5: Update Result goes back to its initial value when an
    // update process starts; so a failure seen from here on is this one's.
    if result != 0 {
        tree.begin(Origin::Agent)
            .set(
                Path::resource(ID, InstanceId(0), UPDATE_RESULT),
                Value::Integer(0),
            )
            .commit()
            .map_err(|e| e.to_string())?;
    }
    let at = Path::resource(ID, InstanceId(0), PACKAGE_URI);
    let held = tree.read(Origin::Agent, &at);
    if held
        == Ok(dm_core::ResourceValue::Single(Value::String(
            uri.to_owned(),
        )))
    {
        tree.begin(origin)
            .set(at, Value::String(String::new()))
            .commit()
            .map_err(|e| e.to_string())?;
    }
    tree.begin(origin)
        .set(at, Value::String(uri.to_owned()))
        .commit()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A client asks for the downloaded image to be applied (/5 Update), or
/// for the download to stop (/5 Cancel), as `origin`; refused in a state
/// that does not allow it.
pub fn execute(tree: &mut Tree, origin: Origin, update: bool) -> Result<(), Error> {
    let resource = if update { UPDATE } else { CANCEL };
    tree.execute(origin, &Path::resource(ID, InstanceId(0), resource), "")
}
