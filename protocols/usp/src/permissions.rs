//! Roles and permissions (TR-369 §"Roles (Access Control)", TR-181 2.16
//! `Device.LocalAgent.ControllerTrust.Role.{i}.Permission.{i}`): what a
//! controller may do to a path, from the role its Controller row is
//! assigned (`AssignedRole`).
//!
//! A permission names its targets (paths: a partial path covers what is
//! below it, `*` or `{i}` stands for any instance number) and four
//! strings of `rwxn`: for parameters (read, write, notify), objects
//! (read: supported, write: Add, notify: creation), instances (read:
//! GetInstances, write: Delete, notify: deletion), and commands and
//! events (read: supported, execute: Operate, notify). Where targets
//! overlap, the permission of higher Order decides; a path no enabled
//! permission targets is refused, and so is everything to a controller
//! without a role (7006).

use dm_core::{Origin, Tree};
use dm_cwmp::rpc;

/// The agent's built-in roles (TR-369 §"Roles (Access Control)"): Full
/// Access, and Untrusted, for a controller whose identity is not trusted,
/// which reads what the device and the agent are and nothing else (a
/// higher Order wins where targets overlap).
pub const BUILT_IN_ROLES: [Role; 2] = [
    (
        "Full Access",
        &[(1, "Device.", ["rw-n", "rw-n", "rw-n", "r-xn"])],
    ),
    (
        "Untrusted",
        &[
            (1, "Device.", ["----", "----", "----", "----"]),
            (
                2,
                "Device.DeviceInfo.,Device.LocalAgent.",
                ["r---", "r---", "r---", "----"],
            ),
        ],
    ),
];

/// A role: its name and permissions, each (Order, Targets, and the `rwxn`
/// strings of Param, Obj, InstantiatedObj, CommandEvent), as
/// `ControllerTrust.Role.{i}` holds them.
pub type Role = (
    &'static str,
    &'static [(u64, &'static str, [&'static str; 4])],
);

/// What a permission string is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Param,
    Obj,
    InstantiatedObj,
    CommandEvent,
}

/// The four letters of a permission string, in their place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Execute,
    Notify,
}

/// One enabled permission.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    order: u64,
    targets: Vec<String>,
    /// Param, Obj, InstantiatedObj, CommandEvent: each `rwxn` letter
    /// present.
    flags: [[bool; 4]; 4],
}

/// A controller's permissions (none: everything refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    rules: Vec<Rule>,
    /// Not a controller (the agent itself, the tests of the engine):
    /// nothing is refused.
    unrestricted: bool,
}

/// The most permissions of a role looked at.
const MAX_RULES: usize = 256;

impl Permissions {
    /// Everything allowed.
    pub fn unrestricted() -> Permissions {
        Permissions {
            rules: Vec::new(),
            unrestricted: true,
        }
    }

    /// The permissions of `origin`: a controller's are its assigned
    /// role's (none when the row, its role or the role's Enable is
    /// missing, or its permissions cannot be read: refused, not
    /// allowed); any other origin's are unrestricted. Where permissions
    /// of the same Order overlap, the first (lowest row) decides.
    pub fn of(tree: &Tree, origin: Origin) -> Permissions {
        let Origin::Controller(n) = origin else {
            return Permissions::unrestricted();
        };
        let read = |path: &str| rpc::value_as(tree, Origin::Agent, path);
        let Some(role) = read(&format!("Device.LocalAgent.Controller.{n}.AssignedRole"))
            .filter(|r| !r.is_empty())
        else {
            return Permissions::default();
        };
        if read(&format!("{role}.Enable")).as_deref() != Some("true") {
            return Permissions::default();
        }
        let prefix = format!("{role}.Permission.");
        let values = rpc::existing_values_as(
            tree,
            Origin::Agent,
            std::slice::from_ref(&prefix),
            9 * MAX_RULES,
        )
        .unwrap_or_default();
        // Rows by number: name → value.
        let mut rows: std::collections::BTreeMap<u16, std::collections::HashMap<String, String>> =
            std::collections::BTreeMap::new();
        for value in values {
            let Some((number, name)) = value
                .name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('.'))
            else {
                continue;
            };
            let Ok(number) = number.parse::<u16>() else {
                continue;
            };
            rows.entry(number)
                .or_default()
                .insert(name.to_owned(), value.value);
        }
        let rules = rows
            .into_values()
            .filter(|row| row.get("Enable").map(String::as_str) == Some("true"))
            .map(|row| {
                let text = |name: &str| row.get(name).map(String::as_str).unwrap_or_default();
                Rule {
                    order: text("Order").parse().unwrap_or(0),
                    targets: text("Targets")
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    flags: [
                        flags(text("Param")),
                        flags(text("Obj")),
                        flags(text("InstantiatedObj")),
                        flags(text("CommandEvent")),
                    ],
                }
            })
            .collect();
        Permissions {
            rules,
            unrestricted: false,
        }
    }

    /// Whether some parameter at or below `path` may be read: a readable
    /// permission covers it, or targets something below it.
    pub fn may_read_at_or_below(&self, path: &str) -> bool {
        if self.unrestricted || self.allows(path, Kind::Param, Op::Read) {
            return true;
        }
        self.rules.iter().any(|rule| {
            rule.flags[Kind::Param as usize][Op::Read as usize]
                && rule.targets.iter().any(|t| below(t, path))
        })
    }

    /// Whether `op` on `path` (a parameter's, object's, instance's or
    /// command's path) is allowed for `kind`.
    pub fn allows(&self, path: &str, kind: Kind, op: Op) -> bool {
        if self.unrestricted {
            return true;
        }
        let mut decided: Option<(u64, bool)> = None;
        for rule in &self.rules {
            if !rule.targets.iter().any(|t| covers(t, path)) {
                continue;
            }
            if decided.is_none_or(|(order, _)| rule.order > order) {
                decided = Some((rule.order, rule.flags[kind as usize][op as usize]));
            }
        }
        decided.is_some_and(|(_, allowed)| allowed)
    }
}

/// The letters of a `rwxn` string, each in its place (`-` or anything
/// else there: not given).
fn flags(text: &str) -> [bool; 4] {
    let mut out = [false; 4];
    for (at, (c, letter)) in text.chars().zip(['r', 'w', 'x', 'n']).enumerate() {
        out[at] = c == letter;
    }
    out
}

/// Whether `target` names something at or below `path`: each of the
/// path's segments matches the target's in turn, `*` or `{i}` on either
/// side standing for an instance number.
fn below(target: &str, path: &str) -> bool {
    let target: Vec<&str> = target.trim_end_matches('.').split('.').collect();
    let path: Vec<&str> = path.trim_end_matches('.').split('.').collect();
    let number = |s: &str| {
        s == "*" || s == "{i}" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    let wild = |s: &str| s == "*" || s == "{i}";
    target.len() >= path.len()
        && path
            .iter()
            .zip(&target)
            .all(|(p, t)| p == t || ((wild(p) || wild(t)) && number(p) && number(t)))
}

/// Whether `target` covers `path`: a partial path (ending in `.`) what
/// is below it, another path itself; `*` or `{i}` in the target stands for
/// any instance number (or `{i}` in a supported object's path).
fn covers(target: &str, path: &str) -> bool {
    let partial = target.ends_with('.');
    let target: Vec<&str> = target.trim_end_matches('.').split('.').collect();
    let path: Vec<&str> = path.trim_end_matches('.').split('.').collect();
    if path.len() < target.len() || (!partial && path.len() != target.len()) {
        return false;
    }
    target.iter().zip(&path).all(|(t, p)| {
        t == p
            || ((*t == "*" || *t == "{i}")
                && (*p == "{i}" || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(order: u64, targets: &[&str], param: &str, command: &str) -> Rule {
        Rule {
            order,
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            flags: [flags(param), flags(param), flags(param), flags(command)],
        }
    }

    #[test]
    fn targets_cover_what_is_below_them() {
        assert!(covers("Device.", "Device.WiFi.SSID.1.SSID"));
        assert!(covers("Device.WiFi.SSID.*.", "Device.WiFi.SSID.12.SSID"));
        assert!(covers("Device.WiFi.SSID.*.", "Device.WiFi.SSID.{i}."));
        assert!(covers("Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.1.SSID"));
        assert!(covers("Device.Reboot()", "Device.Reboot()"));
        assert!(!covers("Device.WiFi.SSID.1.", "Device.WiFi.SSID.2.SSID"));
        assert!(!covers("Device.WiFi.SSID.1.", "Device.WiFi.SSID.{i}."));
        assert!(!covers(
            "Device.WiFi.SSID.1.SSID",
            "Device.WiFi.SSID.1.SSIDx"
        ));
        assert!(!covers("Device.WiFi.", "Device."));
        assert!(!covers("Device.WiFi.SSID.*.", "Device.WiFi.SSID.x.SSID"));
        assert!(!covers(
            "Device.DeviceInfo",
            "Device.DeviceInfo.SerialNumber"
        ));
    }

    /// The higher Order decides where targets overlap; what no rule
    /// targets is refused; a controller with no role may do nothing.
    #[test]
    fn the_higher_order_decides() {
        let p = Permissions {
            rules: vec![
                rule(1, &["Device."], "----", "----"),
                rule(
                    2,
                    &["Device.DeviceInfo.", "Device.LocalAgent."],
                    "r---",
                    "----",
                ),
                rule(3, &["Device.DeviceInfo.SerialNumber"], "----", "----"),
            ],
            unrestricted: false,
        };
        assert!(p.allows("Device.DeviceInfo.Manufacturer", Kind::Param, Op::Read));
        assert!(!p.allows("Device.DeviceInfo.Manufacturer", Kind::Param, Op::Write));
        assert!(!p.allows("Device.DeviceInfo.SerialNumber", Kind::Param, Op::Read));
        assert!(!p.allows("Device.WiFi.SSID.1.SSID", Kind::Param, Op::Read));
        assert!(!p.allows("Device.Reboot()", Kind::CommandEvent, Op::Execute));
        assert!(!Permissions::default().allows("Device.DeviceInfo.", Kind::Obj, Op::Read));
        assert!(Permissions::unrestricted().allows(
            "Device.Reboot()",
            Kind::CommandEvent,
            Op::Execute
        ));
        let full = Permissions {
            rules: vec![rule(1, &["Device."], "rw-n", "r-xn")],
            unrestricted: false,
        };
        assert!(full.allows("Device.Reboot()", Kind::CommandEvent, Op::Execute));
        assert!(!full.allows("Device.Reboot()", Kind::CommandEvent, Op::Write));
    }

    /// Host reads are made for what some readable permission covers or
    /// targets below.
    #[test]
    fn reads_are_made_only_where_something_may_be_read() {
        let p = Permissions {
            rules: vec![
                rule(1, &["Device."], "----", "----"),
                rule(2, &["Device.DeviceInfo."], "r---", "----"),
            ],
            unrestricted: false,
        };
        assert!(p.may_read_at_or_below("Device."));
        assert!(p.may_read_at_or_below("Device.DeviceInfo.ProcessStatus."));
        assert!(!p.may_read_at_or_below("Device.WiFi."));
        assert!(!Permissions::default().may_read_at_or_below("Device."));
        // A wildcard target below an instance's path.
        let hosts = Permissions {
            rules: vec![rule(
                1,
                &["Device.Hosts.Host.*.PhysAddress"],
                "r---",
                "----",
            )],
            unrestricted: false,
        };
        assert!(hosts.may_read_at_or_below("Device.Hosts.Host.1."));
        assert!(hosts.may_read_at_or_below("Device.Hosts."));
        assert!(!hosts.may_read_at_or_below("Device.Hosts.Host.1.IPAddress"));
    }

    #[test]
    fn letters_count_in_their_place_only() {
        assert_eq!(flags("rw-n"), [true, true, false, true]);
        assert_eq!(flags("wrnx"), [false; 4]);
        assert_eq!(flags(""), [false; 4]);
        assert_eq!(flags("r"), [true, false, false, false]);
    }
}
