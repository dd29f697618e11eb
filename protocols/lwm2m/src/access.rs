//! LwM2M Access Control (Core 1.1 §7.3.3, object /2): which operations a
//! server may perform on which object instances, when the client serves
//! more than one server.
//!
//! The rules, as the spec gives them: with a single server account every
//! operation is allowed (the object is then not needed). Otherwise the
//! Access Control instance for the target (Object ID, Object Instance ID;
//! 65535 for Create on an object) decides: the ACL entry for the server's
//! Short Server ID, else the default entry (ACL instance 0), else full
//! rights for its Access Control Owner and none for anyone else.
//!
//! Access Control instances are read by anyone and changed only by their
//! owner, so a server cannot grant itself rights; a server reaches only
//! its own Server (/1) instance.
//!
//! Where no Access Control instance names the target, access is allowed.
//! The spec would refuse it; but bootstrap servers commonly provision two
//! accounts and no ACLs, and the Leshan and Wakaama clients serve every
//! server fully. Deployments that do provision ACLs get them enforced.

use dm_core::catalog::{access_control as aco, server};
use dm_core::{InstanceId, ObjectId, Origin, Path, ResourceValue, Tree, Value};

/// The ACL bits (LwM2M Core E.3, resource 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Read, Observe, Discover, Write-Attributes.
    Read = 1,
    Write = 2,
    Execute = 4,
    Delete = 8,
    Create = 16,
}

/// The Object Instance ID an Access Control instance uses for Create.
const ANY_INSTANCE: i64 = 65535;

fn single(tree: &Tree, path: Path) -> Option<Value> {
    match tree.read(Origin::Agent, &path) {
        Ok(ResourceValue::Single(v)) => Some(v),
        _ => None,
    }
}

fn integer(value: Option<Value>) -> Option<i64> {
    match value? {
        Value::Integer(n) => Some(n),
        Value::Unsigned(n) => i64::try_from(n).ok(),
        _ => None,
    }
}

/// Access Control applies only with more than one server account.
fn several_servers(tree: &Tree) -> bool {
    tree.instances(server::ID).map_or(0, |i| i.len()) > 1
}

fn at(control: InstanceId, resource: dm_core::ResourceId) -> Path {
    Path::resource(aco::ID, control, resource)
}

/// The Access Control instances naming `object`/`target` (an instance
/// number, or [`ANY_INSTANCE`] for Create), in order.
fn controls_naming(tree: &Tree, object: ObjectId, target: i64) -> Vec<InstanceId> {
    tree.instances(aco::ID)
        .unwrap_or_default()
        .into_iter()
        .filter(|&i| {
            integer(single(tree, at(i, aco::OBJECT_ID))) == Some(i64::from(object.0))
                && integer(single(tree, at(i, aco::OBJECT_INSTANCE_ID))) == Some(target)
        })
        .collect()
}

fn owned_by(tree: &Tree, control: InstanceId, ssid: u16) -> bool {
    integer(single(tree, at(control, aco::ACCESS_CONTROL_OWNER))) == Some(i64::from(ssid))
}

/// Whether server `ssid` may perform `operation` on `instance` of
/// `object` (`None`: on the object, for Create).
pub fn allowed(
    tree: &Tree,
    ssid: u16,
    object: ObjectId,
    instance: Option<InstanceId>,
    operation: Operation,
) -> bool {
    // Server accounts are made and removed by a bootstrap server (or the
    // client itself), never by a management server, however many
    // accounts there are: a server that deleted its own /1 instance
    // would leave the client registered nowhere (Core §E.2, and Leshan's
    // and Anjay's clients refuse it too). Access Control instances are
    // the client's to make (§7.3.3). Security (/0) never reaches here: the
    // engine answers 4.04 for it first.
    if (object == server::ID && matches!(operation, Operation::Create | Operation::Delete))
        || (object == aco::ID && operation == Operation::Create)
    {
        return false;
    }
    if !several_servers(tree) {
        return true;
    }
    // Access Control instances themselves: readable, changed only by
    // their owner, and made only by the client or a bootstrap server.
    if object == aco::ID {
        return match (operation, instance) {
            (Operation::Read, _) => true,
            (Operation::Write | Operation::Delete, Some(i)) => owned_by(tree, i, ssid),
            _ => false,
        };
    }
    // Server accounts: each server has its own /1 instance and no other
    // (none may Disable, rewrite or delete another's); accounts are made
    // by bootstrap servers, not created by management servers.
    if object == server::ID {
        return instance.is_some_and(|i| {
            integer(single(
                tree,
                Path::resource(server::ID, i, server::SHORT_SERVER_ID),
            )) == Some(i64::from(ssid))
        }) && operation != Operation::Create;
    }
    let target = instance.map_or(ANY_INSTANCE, |i| i64::from(i.0));
    let Some(&control) = controls_naming(tree, object, target).first() else {
        return true;
    };
    let acl = match tree.read(Origin::Agent, &at(control, aco::ACL)) {
        Ok(ResourceValue::Multiple(entries)) => entries,
        _ => Default::default(),
    };
    match acl.get(&ssid).or_else(|| acl.get(&0)).cloned() {
        Some(bits) => integer(Some(bits)).is_some_and(|b| b & operation as i64 != 0),
        None => owned_by(tree, control, ssid),
    }
}

/// After server `ssid` created `instance` of `object`, with more than one
/// server: an Access Control instance making it the owner (full rights
/// for it; the others get what a default ACL entry grants, here none).
pub fn claim(
    tree: &mut Tree,
    ssid: u16,
    object: ObjectId,
    instance: InstanceId,
) -> Result<(), dm_core::TransactionError> {
    if !several_servers(tree) || object == aco::ID || object == dm_core::catalog::security::ID {
        return Ok(());
    }
    let control = InstanceId(
        tree.instances(aco::ID)
            .unwrap_or_default()
            .iter()
            .map(|i| i.0.saturating_add(1))
            .max()
            .unwrap_or(0),
    );
    let mut tx = tree.begin(Origin::Agent);
    tx.create(aco::ID, Some(control));
    for (resource, value) in [
        (aco::OBJECT_ID, i64::from(object.0)),
        (aco::OBJECT_INSTANCE_ID, i64::from(instance.0)),
        (aco::ACCESS_CONTROL_OWNER, i64::from(ssid)),
    ] {
        tx.set(at(control, resource), Value::Integer(value));
    }
    tx.commit().map(drop)
}

/// An instance is gone: so are the Access Control instances that name it.
/// Unless it is back by now: a bootstrap server deletes and rewrites
/// instances with their Access Control, and a deletion's change may be
/// handled after the rewrite.
pub fn forget(tree: &mut Tree, object: ObjectId, instance: InstanceId) {
    if tree.instance(object, instance).is_ok() {
        return;
    }
    let stale = controls_naming(tree, object, i64::from(instance.0));
    if stale.is_empty() {
        return;
    }
    let mut tx = tree.begin(Origin::Agent);
    for control in stale {
        tx.delete(aco::ID, control);
    }
    let _ = tx.commit();
}
