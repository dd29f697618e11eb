//! TR-181's `Device.DeviceInfo.FirmwareImage.{i}`: the images the agent
//! knows of, from the firmware pipeline both protocols share.
//!
//! - Row 1 is the running image (Status Active): /3's Firmware Version
//!   (`Device.DeviceInfo.SoftwareVersion`); `ActiveFirmwareImage` names it.
//! - Row 2 is the image the pipeline holds or failed with: /5's State and
//!   Update Result as TR-181's Status (Downloading, Available,
//!   DownloadFailed, ValidationFailed, InstallationFailed), NoImage when
//!   it holds none (TR-181: a static table, its rows are not deleted). Its
//!   Name and Version are /5's PkgName and PkgVersion, given only where
//!   TR-181 allows them (Name: Available and InstallationFailed; Version:
//!   the same).
//!
//! Which physical bank an image sits in is the integrator's update
//! program's business (the agent hands the image over); the rows say what
//! the agent knows. Reported: rebuilt from the saved /3 and /5 at each
//! start, never saved themselves.

use dm_core::catalog::{device, firmware, firmware_image};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Tree, Value,
};

use crate::{layout, stored};

struct FirmwareImage;

pub fn register(tree: &mut Tree) -> Result<(), Error> {
    tree.register(Box::new(FirmwareImage))
}

impl ObjectHandler for FirmwareImage {
    fn schema(&self) -> &'static ObjectSchema {
        &firmware_image::SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    /// The agent's facts: no client adds or removes an image.
    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        crate::ethernet::refuse_clients(origin, Path::instance(firmware_image::ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        crate::ethernet::refuse_clients(origin, Path::instance(firmware_image::ID, instance))
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        use firmware_image::*;
        Ok(layout(&SCHEMA, &[])
            .with(NAME, stored(Value::String(String::new())))
            .with(VERSION, stored(Value::String(String::new())))
            .with(AVAILABLE, stored(Value::Boolean(false)))
            .with(STATUS, stored(Value::String("NoImage".into())))
            .with(BOOT_FAILURE_LOG, stored(Value::String(String::new()))))
    }
}

/// The running image's row.
pub const ACTIVE: InstanceId = InstanceId(1);
/// The row of the image the pipeline holds.
pub const STAGED: InstanceId = InstanceId(2);

/// Whether a change may change the rows (/3 or /5).
pub fn concerns(path: &Path) -> bool {
    let object = path.object_id();
    object == device::ID || object == firmware::ID
}

/// TR-181's Status of the pipeline's image, from LwM2M /5's State and
/// Update Result (OMA-TS-LightweightM2M-Core §E.6); `None` when it holds
/// none (idle, or the update succeeded: the image runs).
fn staged_status(state: i64, result: i64) -> Option<(&'static str, bool)> {
    Some(match (state, result) {
        (1, _) => ("Downloading", false),
        // The update program failed: the image stays Downloaded (LwM2M
        // E.6) with result 8.
        (2, 8) => ("InstallationFailed", false),
        // Downloaded, or being installed: there, not yet running.
        (2 | 3, _) => ("Available", true),
        // Not enough storage or memory, connection lost, invalid URI,
        // unsupported protocol.
        (_, 2 | 3 | 4 | 7 | 9) => ("DownloadFailed", false),
        // Integrity check failure, unsupported package type.
        (_, 5 | 6) => ("ValidationFailed", false),
        (_, 8) => ("InstallationFailed", false),
        _ => return None,
    })
}

fn read(tree: &Tree, object: dm_core::ObjectId, resource: ResourceId) -> Option<Value> {
    match tree.read(
        Origin::Agent,
        &Path::resource(object, InstanceId(0), resource),
    ) {
        Ok(ResourceValue::Single(value)) => Some(value),
        _ => None,
    }
}

fn text(value: Option<Value>) -> String {
    match value {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn number(value: Option<Value>) -> i64 {
    match value {
        Some(Value::Integer(i)) => i,
        Some(Value::Unsigned(u)) => i64::try_from(u).unwrap_or(i64::MAX),
        _ => 0,
    }
}

/// Brings the rows in line with /3 and /5, as the platform (reported
/// facts: nothing is saved). Returns what could not be written.
pub fn follow(tree: &mut Tree) -> Vec<String> {
    use firmware_image::*;
    let version = text(read(tree, device::ID, device::FIRMWARE_VERSION));
    let staged = staged_status(
        number(read(tree, firmware::ID, firmware::STATE)),
        number(read(tree, firmware::ID, firmware::UPDATE_RESULT)),
    )
    .map(|(status, available)| {
        (
            status,
            available,
            text(read(tree, firmware::ID, firmware::PKGNAME)),
            text(read(tree, firmware::ID, firmware::PKGVERSION)),
        )
    });
    let rows = tree.instances(ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    if !rows.contains(&ACTIVE) {
        tx.create(ID, Some(ACTIVE));
    }
    let at = |instance, resource| Path::resource(ID, instance, resource);
    tx.set(at(ACTIVE, NAME), Value::String("running".into()))
        .set(at(ACTIVE, VERSION), Value::String(version))
        .set(at(ACTIVE, AVAILABLE), Value::Boolean(true))
        .set(at(ACTIVE, STATUS), Value::String("Active".into()));
    if !rows.contains(&STAGED) {
        tx.create(ID, Some(STAGED));
    }
    let (status, available, name, version) =
        staged.unwrap_or(("NoImage", false, String::new(), String::new()));
    // TR-181: Name and Version only of an image that is there.
    let named = matches!(status, "Available" | "InstallationFailed");
    let keep = |text: String| if named { text } else { String::new() };
    tx.set(at(STAGED, NAME), Value::String(keep(name)))
        .set(at(STAGED, VERSION), Value::String(keep(version)))
        .set(at(STAGED, AVAILABLE), Value::Boolean(available))
        .set(at(STAGED, STATUS), Value::String(status.into()));
    match tx.commit() {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("Device.DeviceInfo.FirmwareImage: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lwm2m_states_are_tr181_statuses() {
        assert_eq!(staged_status(0, 0), None);
        assert_eq!(staged_status(0, 1), None, "installed: it runs");
        assert_eq!(staged_status(1, 0), Some(("Downloading", false)));
        assert_eq!(staged_status(2, 0), Some(("Available", true)));
        assert_eq!(staged_status(0, 4), Some(("DownloadFailed", false)));
        assert_eq!(staged_status(0, 5), Some(("ValidationFailed", false)));
        assert_eq!(staged_status(0, 8), Some(("InstallationFailed", false)));
        assert_eq!(staged_status(2, 8), Some(("InstallationFailed", false)));
    }
}
