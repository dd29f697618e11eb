//! Notifications (TR-369 §Notify): the tree's committed changes, whoever
//! made them (a controller, an ACS, an LwM2M server, the platform),
//! matched against the subscriptions in `Device.LocalAgent.Subscription.`
//! and turned into Notify messages for their recipients.
//!
//! ValueChange, ObjectCreation, ObjectDeletion and Event (`Device.Boot!`)
//! are made here;
//! ReferenceList entries are paths with instance numbers or `*`, and for
//! values, events and completions search expressions too (resolved on the
//! tree when a notification may be due: what matches now).

use dm_core::catalog::{usp_controller, usp_subscription};
use dm_core::{
    Change, ChangeKind, InstanceId, ObjectLink, Origin, Path, ResourceValue, Tree, Value,
};
use dm_cwmp::mapping::Resolver;
use dm_cwmp::values;

use crate::proto::usp::{self, header::MsgType, notify, request::ReqType};

/// A Notify for a controller.
#[derive(Debug, PartialEq)]
pub struct Outgoing {
    /// The controller's endpoint ID.
    pub to: String,
    pub msg: usp::Msg,
    /// With the subscription's NotifRetry: sent again until the
    /// controller's NotifyResp, for at most this long (`None`: until
    /// delivered or the agent restarts; TR-181 NotifExpiration 0).
    pub retry: Option<Option<std::time::Duration>>,
}

/// Numbers the agent's Notify messages (msg_id `PREFIX-N`: a prefix per
/// start, so that a controller that tells retries apart by msg_id does not
/// take a new start's Notify for an old one).
#[derive(Debug)]
pub struct Notifier {
    prefix: String,
    sent: u64,
}

impl Default for Notifier {
    fn default() -> Notifier {
        Notifier::new("notify")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ValueChange,
    ObjectCreation,
    ObjectDeletion,
    Event,
    OperationComplete,
}

/// An enabled subscription, as the tree holds it.
#[derive(Debug)]
struct Subscription {
    id: String,
    kind: Kind,
    references: Vec<String>,
    recipient: String,
    send_resp: bool,
    /// NotifExpiration, seconds (0: none).
    expiration: u64,
    /// What the recipient's role lets it be told of (the `n` of its
    /// permissions).
    allowed: crate::Permissions,
}

impl Subscription {
    fn retry(&self) -> Option<Option<std::time::Duration>> {
        self.send_resp
            .then(|| (self.expiration > 0).then(|| std::time::Duration::from_secs(self.expiration)))
    }
}

impl Notifier {
    pub fn new(prefix: &str) -> Notifier {
        Notifier {
            prefix: prefix.to_owned(),
            sent: 0,
        }
    }

    /// The Notify messages `change` makes, in subscription order.
    pub fn on_change(&mut self, tree: &Tree, change: &Change) -> Vec<Outgoing> {
        let kind = match &change.kind {
            ChangeKind::Value(_) => Kind::ValueChange,
            ChangeKind::Created => Kind::ObjectCreation,
            ChangeKind::Deleted => Kind::ObjectDeletion,
            _ => return Vec::new(),
        };
        // Most changes concern no subscription: nothing is named or
        // rendered for them.
        let subscriptions = subscriptions(tree, kind);
        if subscriptions.is_empty() {
            return Vec::new();
        }
        let events: Vec<(String, notify::Notification)> = match &change.kind {
            ChangeKind::Value(value) => changed_values(change.path, value)
                .into_iter()
                .map(|(name, value)| {
                    let notification = notify::Notification::ValueChange(notify::ValueChange {
                        param_path: name.clone(),
                        param_value: value,
                    });
                    (name, notification)
                })
                .collect(),
            ChangeKind::Created => instance_paths(change.path)
                .into_iter()
                .map(|path| {
                    let notification = notify::Notification::ObjCreation(notify::ObjectCreation {
                        obj_path: path.clone(),
                        unique_keys: crate::engine::unique_keys_of(tree, Origin::Agent, &path),
                    });
                    (path, notification)
                })
                .collect(),
            _ => instance_paths(change.path)
                .into_iter()
                .map(|path| {
                    let notification = notify::Notification::ObjDeletion(notify::ObjectDeletion {
                        obj_path: path.clone(),
                    });
                    (path, notification)
                })
                .collect(),
        };
        let mut out = Vec::new();
        for subscription in &subscriptions {
            for (path, notification) in &events {
                out.extend(self.for_subscriber(tree, subscription, path, notification.clone()));
            }
        }
        out
    }

    /// The OperationComplete notifications of an asynchronous command
    /// (`Device.IP.Diagnostics.IPPing()`) for the subscriptions to it.
    pub fn operation_complete(
        &mut self,
        tree: &Tree,
        command: &str,
        complete: &notify::OperationComplete,
    ) -> Vec<Outgoing> {
        let notification = notify::Notification::OperComplete(complete.clone());
        subscriptions(tree, Kind::OperationComplete)
            .iter()
            .filter_map(|s| self.for_subscriber(tree, s, command, notification.clone()))
            .collect()
    }

    /// The OnBoardRequest of the agent for controller row `controller`
    /// (TR-369 §"OnBoardRequest": the device's OUI, product class and
    /// serial number, the USP versions it speaks), sent with send_resp
    /// and retried until answered; `None` for a row that is not there or
    /// is disabled.
    pub fn on_board(&mut self, tree: &Tree, controller: u16) -> Option<Outgoing> {
        let read = |path: &str| dm_cwmp::rpc::value_as(tree, Origin::Agent, path);
        let row = format!("Device.LocalAgent.Controller.{controller}.");
        let to = read(&format!("{row}EndpointID")).filter(|e| !e.is_empty())?;
        if read(&format!("{row}Enable")).as_deref() == Some("false") {
            return None;
        }
        let info = |name: &str| read(&format!("Device.DeviceInfo.{name}")).unwrap_or_default();
        let subscription = Subscription {
            // Not a subscription's (TR-369: an empty subscription_id).
            id: String::new(),
            kind: Kind::Event,
            references: Vec::new(),
            recipient: to.clone(),
            send_resp: true,
            expiration: 0,
            allowed: crate::Permissions::unrestricted(),
        };
        let notification = notify::Notification::OnBoardReq(notify::OnBoardRequest {
            oui: info("ManufacturerOUI"),
            product_class: info("ProductClass"),
            serial_number: info("SerialNumber"),
            agent_supported_protocol_versions: crate::engine::SUPPORTED_VERSIONS.to_owned(),
        });
        Some(Outgoing {
            to,
            msg: self.notify(&subscription, notification),
            retry: Some(None),
        })
    }

    /// The Event notifications of `event` (`Device.Boot!`) with its
    /// arguments, for the subscriptions to it.
    pub fn event(
        &mut self,
        tree: &Tree,
        event: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Outgoing> {
        let Some((object, name)) = event
            .rfind('.')
            .map(|dot| (&event[..=dot], &event[dot + 1..]))
        else {
            return Vec::new();
        };
        let notification = notify::Notification::Event(notify::Event {
            obj_path: object.to_owned(),
            event_name: name.to_owned(),
            params: params.clone(),
        });
        subscriptions(tree, Kind::Event)
            .iter()
            .filter_map(|s| self.for_subscriber(tree, s, event, notification.clone()))
            .collect()
    }

    /// `notification` of `path` for `subscription`, when its
    /// ReferenceList covers the path and its recipient's role lets it be
    /// told.
    fn for_subscriber(
        &mut self,
        tree: &Tree,
        subscription: &Subscription,
        path: &str,
        notification: notify::Notification,
    ) -> Option<Outgoing> {
        use crate::permissions::{Kind as Of, Op};
        let of = match subscription.kind {
            Kind::ValueChange => Of::Param,
            Kind::ObjectCreation => Of::Obj,
            Kind::ObjectDeletion => Of::InstantiatedObj,
            Kind::Event | Kind::OperationComplete => Of::CommandEvent,
        };
        // The role's check first: it is cheap, a search is not.
        (subscription.allowed.allows(path, of, Op::Notify)
            && subscription
                .references
                .iter()
                .any(|reference| covers(tree, reference, path, subscription.kind)))
        .then(|| Outgoing {
            to: subscription.recipient.clone(),
            msg: self.notify(subscription, notification),
            retry: subscription.retry(),
        })
    }

    fn notify(
        &mut self,
        subscription: &Subscription,
        notification: notify::Notification,
    ) -> usp::Msg {
        self.sent += 1;
        usp::Msg {
            header: Some(usp::Header {
                msg_id: format!("{}-{}", self.prefix, self.sent),
                msg_type: MsgType::Notify as i32,
            }),
            body: Some(usp::Body {
                msg_body: Some(usp::body::MsgBody::Request(usp::Request {
                    req_type: Some(ReqType::Notify(usp::Notify {
                        subscription_id: subscription.id.clone(),
                        send_resp: subscription.send_resp,
                        notification: Some(notification),
                    })),
                })),
            }),
        }
    }
}

/// The TR-181 parameters a value change names, with their new values as
/// USP writes them (secured ones empty, as a Get reads them).
fn changed_values(path: Path, value: &ResourceValue) -> Vec<(String, String)> {
    let (Some(resource), Some(instance)) = (path.resource_id(), path.instance_id()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for map in Resolver::global().parameters_for(path.object_id(), resource) {
        // TR-181 tables number from 1: instance 0 has no name there.
        if map.has_instance() && instance.0 == 0 {
            continue;
        }
        let shown = |v: &Value| {
            if map.secured {
                String::new()
            } else {
                values::render(v, map.syntax)
            }
        };
        match value {
            ResourceValue::Single(v) => out.push((map.render(instance, path.index()), shown(v))),
            ResourceValue::Multiple(values) => {
                for (index, v) in values {
                    out.push((map.render(instance, Some(*index)), shown(v)));
                }
            }
        }
    }
    out
}

/// The TR-181 object paths of a created or deleted instance
/// (`Device.WiFi.SSID.3.`).
fn instance_paths(path: Path) -> Vec<String> {
    let Some(instance) = path.instance_id().filter(|i| i.0 != 0) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = dm_cwmp::mapping::parameters()
        .filter(|map| map.object == path.object_id())
        .filter_map(|map| {
            let at = map.path.find(".{i}.")?;
            Some(format!("{}.{}.", &map.path[..at], instance.0))
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A path with each search expression (`[...]`) as `*`.
fn search_shape(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    let mut depth = 0usize;
    for c in reference.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push('*');
                }
                depth += 1;
            }
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether a ReferenceList entry covers `path`: for values, the
/// parameter itself or an object above it; for creations and deletions,
/// the table the instance is in (TR-369: a ReferenceList of table paths).
fn covers(tree: &Tree, reference: &str, path: &str, kind: Kind) -> bool {
    let reference = reference.trim();
    match kind {
        // A search expression: what it resolves to now, once its shape
        // (each search as `*`) says it may name the path at all.
        Kind::ValueChange | Kind::Event | Kind::OperationComplete if reference.contains('[') => {
            dm_cwmp::rpc::matches_pattern(&search_shape(reference), path)
                && crate::path::parse(reference)
                    .and_then(|expression| {
                        crate::path::resolve(tree, Origin::Agent, reference, &expression)
                    })
                    .is_ok_and(|resolved| {
                        resolved
                            .iter()
                            .any(|r| dm_cwmp::rpc::matches_pattern(r, path))
                    })
        }
        Kind::ValueChange | Kind::Event | Kind::OperationComplete => {
            dm_cwmp::rpc::matches_pattern(reference, path)
        }
        // The instance's table (`Device.WiFi.SSID.` for
        // `Device.WiFi.SSID.3.`), `*` for the instances above it.
        Kind::ObjectCreation | Kind::ObjectDeletion => {
            let table = path
                .trim_end_matches('.')
                .rsplit_once('.')
                .map_or("", |(table, _)| table);
            reference
                .strip_suffix('.')
                .is_some_and(|reference| dm_cwmp::rpc::matches_pattern(reference, table))
        }
    }
}

/// The enabled subscriptions of `kind` whose recipient is a configured
/// controller.
fn subscriptions(tree: &Tree, wanted: Kind) -> Vec<Subscription> {
    let read = |object, instance, resource| match tree
        .read(Origin::Agent, &Path::resource(object, instance, resource))
    {
        Ok(ResourceValue::Single(value)) => Some(value),
        _ => None,
    };
    let text = |object, instance, resource| match read(object, instance, resource) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let mut out = Vec::new();
    // Each recipient's role, read once.
    let mut roles: std::collections::HashMap<u16, crate::Permissions> =
        std::collections::HashMap::new();
    for instance in tree.instances(usp_subscription::ID).unwrap_or_default() {
        use usp_subscription::*;
        if read(ID, instance, ENABLE) != Some(Value::Boolean(true)) {
            continue;
        }
        let kind = match text(ID, instance, NOTIF_TYPE).as_str() {
            "ValueChange" => Kind::ValueChange,
            "ObjectCreation" => Kind::ObjectCreation,
            "ObjectDeletion" => Kind::ObjectDeletion,
            "Event" => Kind::Event,
            "OperationComplete" => Kind::OperationComplete,
            _ => continue,
        };
        if kind != wanted {
            continue;
        }
        let Some(Value::ObjectLink(ObjectLink {
            object: usp_controller::ID,
            instance: controller,
        })) = read(ID, instance, RECIPIENT)
        else {
            continue;
        };
        let controller = InstanceId(controller);
        if read(usp_controller::ID, controller, usp_controller::ENABLE)
            == Some(Value::Boolean(false))
        {
            continue;
        }
        let recipient = text(usp_controller::ID, controller, usp_controller::ENDPOINT_ID);
        if recipient.is_empty() {
            continue;
        }
        out.push(Subscription {
            id: text(ID, instance, IDENTIFIER),
            kind,
            references: text(ID, instance, REFERENCE_LIST)
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
            recipient,
            send_resp: read(ID, instance, NOTIF_RETRY) == Some(Value::Boolean(true)),
            expiration: match read(ID, instance, NOTIF_EXPIRATION) {
                Some(Value::Unsigned(seconds)) => seconds,
                _ => 0,
            },
            allowed: roles
                .entry(controller.0)
                .or_insert_with(|| crate::Permissions::of(tree, Origin::Controller(controller.0)))
                .clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_cover_parameters_objects_and_tables() {
        let tree = dm_tests::tree(&dm_tests::platform().0);
        let covers = |reference: &str, path: &str, kind| covers(&tree, reference, path, kind);
        let v = Kind::ValueChange;
        assert!(covers(
            "Device.WiFi.SSID.1.SSID",
            "Device.WiFi.SSID.1.SSID",
            v
        ));
        assert!(covers(
            "Device.WiFi.SSID.*.SSID",
            "Device.WiFi.SSID.7.SSID",
            v
        ));
        assert!(covers("Device.WiFi.", "Device.WiFi.SSID.7.SSID", v));
        assert!(!covers(
            "Device.WiFi.SSID.1.SSID",
            "Device.WiFi.SSID.2.SSID",
            v
        ));
        assert!(!covers(
            "Device.WiFi.SSID.1.SSID",
            "Device.WiFi.SSID.1.SSIDX",
            v
        ));
        assert!(!covers(
            "Device.WiFi.SSID.*.SSID",
            "Device.WiFi.SSID.x.SSID",
            v
        ));
        let c = Kind::ObjectCreation;
        assert!(covers("Device.WiFi.SSID.", "Device.WiFi.SSID.3.", c));
        assert!(!covers("Device.WiFi.", "Device.WiFi.SSID.3.", c));
        assert!(covers(
            "Device.IP.Interface.*.IPv4Address.",
            "Device.IP.Interface.2.IPv4Address.1.",
            c
        ));
        // A search: what matches now.
        let ssid = dm_cwmp::rpc::value_as(&tree, Origin::Agent, "Device.WiFi.SSID.1.SSID").unwrap();
        let search = format!("Device.WiFi.SSID.[SSID==\"{ssid}\"].SSID");
        assert!(covers(&search, "Device.WiFi.SSID.1.SSID", v));
        assert!(!covers(
            "Device.WiFi.SSID.[SSID==\"no such network\"].SSID",
            "Device.WiFi.SSID.1.SSID",
            v
        ));
        assert!(!covers(
            "Device.WiFi.SSID.[broken",
            "Device.WiFi.SSID.1.SSID",
            v
        ));
        assert_eq!(
            search_shape("Device.WiFi.SSID.[SSID==\"a.b\"&&Enable==true].SSID"),
            "Device.WiFi.SSID.*.SSID"
        );
    }
}
