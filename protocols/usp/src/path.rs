//! USP path expressions (TR-369 §2.5 "Path Names" and §2.5.x "Searching"):
//! instance numbers, `*` for every instance, and search expressions in
//! brackets (`Device.IP.Interface.[Type=="Normal"&&Stats.ErrorsSent>0].`),
//! resolved on the tree through the TR-181 mapping into the concrete
//! paths they name now.

use dm_core::{Origin, Tree};
use dm_cwmp::rpc;

use crate::error::{Code, UspError};

/// The longest path expression accepted, and the most conditions in one
/// search: bounds on the work one request can ask for.
pub const MAX_PATH_LEN: usize = 4096;
pub const MAX_CONDITIONS: usize = 16;
/// The most paths one expression may resolve to.
pub const MAX_RESOLVED: usize = 4096;

/// One step of a path expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    Name(String),
    Instance(u32),
    /// `*`: every instance of the table.
    Every,
    /// `[...]`: the instances for which every condition holds.
    Search(Vec<Condition>),
}

/// `key op value` in a search expression; `key` is relative to the
/// instance (`Stats.BytesSent`).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub key: String,
    pub op: Op,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

/// A parsed path expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    pub segments: Vec<Segment>,
    /// Ends in `.`: names an object (and what is below it).
    pub object: bool,
}

fn syntax(path: &str, why: impl std::fmt::Display) -> UspError {
    UspError::new(Code::INVALID_PATH_SYNTAX, format!("{path:?}: {why}"))
}

/// Parses a path expression (never panics, whatever the text).
pub fn parse(path: &str) -> Result<Expression, UspError> {
    if path.is_empty() {
        return Err(syntax(path, "empty path"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(syntax(
            &path[..path.floor_char_boundary(64)],
            format!("longer than {MAX_PATH_LEN} bytes"),
        ));
    }
    let object = path.ends_with('.');
    let body = path.strip_suffix('.').unwrap_or(path);
    let mut segments = Vec::new();
    let mut rest = body;
    loop {
        let (segment, after) = if let Some(inner) = rest.strip_prefix('[') {
            let end = closing_bracket(inner).ok_or_else(|| syntax(path, "a `[` is not closed"))?;
            let conditions = parse_search(&inner[..end]).map_err(|why| syntax(path, why))?;
            (Segment::Search(conditions), &inner[end + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let word = &rest[..end];
            let segment = if word == "*" {
                Segment::Every
            } else if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
                Segment::Instance(
                    word.parse()
                        .map_err(|_| syntax(path, format!("{word}: not an instance number")))?,
                )
            } else if is_name(word) {
                Segment::Name(word.to_owned())
            } else {
                return Err(syntax(path, format!("{word:?} is not a name")));
            };
            (segment, &rest[end..])
        };
        segments.push(segment);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return Err(syntax(path, "a `]` is not followed by `.`")),
        }
    }
    match segments.first() {
        Some(Segment::Name(_)) => {}
        _ => return Err(syntax(path, "does not start with a name")),
    }
    if !object && !matches!(segments.last(), Some(Segment::Name(_))) {
        return Err(syntax(path, "an object's path ends in `.`"));
    }
    Ok(Expression { segments, object })
}

fn is_name(word: &str) -> bool {
    let mut bytes = word.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where the `]` closing a search is, outside quoted values.
fn closing_bracket(inner: &str) -> Option<usize> {
    let mut quoted = false;
    for (at, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ']' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

fn parse_search(text: &str) -> Result<Vec<Condition>, String> {
    let mut conditions = Vec::new();
    for part in split_and(text) {
        if conditions.len() == MAX_CONDITIONS {
            return Err(format!("more than {MAX_CONDITIONS} conditions"));
        }
        conditions.push(parse_condition(part)?);
    }
    Ok(conditions)
}

/// The conditions of `a&&b`, splitting outside quoted values.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => quoted = !quoted,
            b'&' if !quoted && bytes.get(at + 1) == Some(&b'&') => {
                parts.push(&text[start..at]);
                start = at + 2;
                at += 1;
            }
            _ => {}
        }
        at += 1;
    }
    parts.push(&text[start..]);
    parts
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    const OPS: [(&str, Op); 6] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (at, len, op) = OPS
        .iter()
        .filter_map(|(token, op)| text.find(token).map(|at| (at, token.len(), *op)))
        // The leftmost operator, the longer one where two start there.
        .min_by_key(|(at, len, _)| (*at, usize::MAX - len))
        .ok_or_else(|| format!("{text:?}: no operator (==, !=, <, >, <=, >=)"))?;
    let key = text[..at].trim();
    let raw = text[at + len..].trim();
    if key.is_empty() || !key.split('.').all(is_name) {
        return Err(format!("{key:?} is not a parameter's relative path"));
    }
    let value = match raw.strip_prefix('"') {
        Some(quoted) => quoted
            .strip_suffix('"')
            .filter(|v| !v.contains('"'))
            .ok_or_else(|| format!("{raw}: a quoted value is not closed"))?
            .to_owned(),
        None if !raw.is_empty() && !raw.contains(['"', ' ']) => raw.to_owned(),
        None => return Err(format!("{raw:?} is not a value")),
    };
    Ok(Condition {
        key: key.to_owned(),
        op,
        value,
    })
}

impl Condition {
    /// Whether the parameter's value satisfies it. Order compares
    /// numbers as numbers, other values (dateTime) as text, which
    /// orders TR-181's dateTime form.
    fn holds(&self, value: &str) -> bool {
        use std::cmp::Ordering;
        let order = match (value.parse::<f64>(), self.value.parse::<f64>()) {
            (Ok(a), Ok(b)) => a.partial_cmp(&b),
            _ => Some(value.cmp(self.value.as_str())),
        };
        match self.op {
            Op::Eq => value == self.value || order == Some(Ordering::Equal),
            Op::Ne => !(value == self.value || order == Some(Ordering::Equal)),
            Op::Lt => order == Some(Ordering::Less),
            Op::Gt => order == Some(Ordering::Greater),
            Op::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
            Op::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
        }
    }
}

/// Whether an object's path names an instance (`Device.IP.Interface.2.`).
pub fn is_instance_path(path: &str) -> bool {
    path.strip_suffix('.')
        .and_then(|p| p.rsplit('.').next())
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether the data model has what `path` (concrete or with `*`) names.
pub fn supported(path: &str) -> bool {
    rpc::in_schema(path)
}

/// The instance objects of `table` (`Device.IP.Interface.`) that exist
/// now, as paths (`Device.IP.Interface.1.`), in order; none when the
/// table is inside an instance that is not there.
pub fn instances(tree: &Tree, table: &str) -> Result<Vec<String>, UspError> {
    let names = match rpc::get_parameter_names_within(tree, table, true, MAX_RESOLVED) {
        Ok(names) => names,
        Err(fault) if fault.code == 9005 && rpc::in_schema(table) => return Ok(Vec::new()),
        Err(fault) => return Err(UspError::from_fault(&fault)),
    };
    let rows: Vec<String> = names
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.strip_prefix(table)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    if rows.is_empty() && !rpc::is_table(table) {
        return Err(UspError::new(
            Code::INVALID_PATH,
            format!("{table} is not a table"),
        ));
    }
    Ok(rows)
}

/// The concrete paths `expression` names now: objects end in `.`. A
/// literal instance number is kept even where no such instance exists
/// (the request then finds nothing there); `*` and searches expand to
/// the instances there are.
pub fn resolve(
    tree: &Tree,
    reader: Origin,
    text: &str,
    expression: &Expression,
) -> Result<Vec<String>, UspError> {
    // What the expression may name is the data model's business, not the
    // data's: checked once, whatever instances there are.
    let pattern = expression.pattern();
    if !supported(&pattern) {
        return Err(UspError::new(
            Code::INVALID_PATH,
            format!("{text}: not in the data model"),
        ));
    }
    // And each search's keys, on the table's pattern.
    let mut table = String::new();
    for segment in &expression.segments {
        if let Segment::Search(conditions) = segment {
            for condition in conditions {
                if !supported(&format!("{table}*.{}", condition.key)) {
                    return Err(UspError::new(
                        Code::INVALID_PATH,
                        format!("{text}: no parameter {:?} to search by", condition.key),
                    ));
                }
            }
        }
        match segment {
            Segment::Name(name) => table.push_str(name),
            Segment::Instance(n) => table.push_str(&n.to_string()),
            Segment::Every | Segment::Search(_) => table.push('*'),
        }
        table.push('.');
    }
    let mut current = vec![String::new()];
    let last = expression.segments.len() - 1;
    for (at, segment) in expression.segments.iter().enumerate() {
        let end = if at == last && !expression.object {
            ""
        } else {
            "."
        };
        let mut next = Vec::new();
        for prefix in &current {
            match segment {
                Segment::Name(name) => next.push(format!("{prefix}{name}{end}")),
                Segment::Instance(n) => next.push(format!("{prefix}{n}{end}")),
                Segment::Every => next.extend(instances(tree, prefix)?),
                Segment::Search(conditions) => {
                    next.extend(search(tree, reader, prefix, conditions)?);
                }
            }
            if next.len() > MAX_RESOLVED {
                return Err(UspError::new(
                    Code::RESOURCES_EXCEEDED,
                    format!("{text}: names more than {MAX_RESOLVED} paths"),
                ));
            }
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    Ok(current)
}

impl Expression {
    /// The expression as a pattern of the data model: instances, `*` and
    /// searches as `*`.
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for (at, segment) in self.segments.iter().enumerate() {
            if at > 0 {
                out.push('.');
            }
            match segment {
                Segment::Name(name) => out.push_str(name),
                Segment::Instance(n) => out.push_str(&n.to_string()),
                Segment::Every | Segment::Search(_) => out.push('*'),
            }
        }
        if self.object {
            out.push('.');
        }
        out
    }
}

/// The instances of `table` for which every condition holds.
fn search(
    tree: &Tree,
    reader: Origin,
    table: &str,
    conditions: &[Condition],
) -> Result<Vec<String>, UspError> {
    let rows = instances(tree, table)?;
    if rows.is_empty() {
        return Ok(rows);
    }
    let patterns: Vec<String> = conditions
        .iter()
        .map(|c| format!("{table}*.{}", c.key))
        .collect();
    let borrowed: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let (values, _) = rpc::matching_values_as(tree, reader, &borrowed, MAX_RESOLVED, &|_| false);
    let values: std::collections::HashMap<String, String> = values
        .into_iter()
        .map(|(_, value)| (value.name, value.value))
        .collect();
    Ok(rows
        .into_iter()
        .filter(|row| {
            conditions.iter().all(|c| {
                values
                    .get(&format!("{row}{}", c.key))
                    .is_some_and(|v| c.holds(v))
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_wildcards_and_searches() {
        let e = parse(r#"Device.IP.Interface.[Type=="Normal"&&Stats.ErrorsSent>0].IPv4Address.*."#)
            .unwrap();
        assert!(e.object);
        assert_eq!(e.segments.len(), 6);
        assert_eq!(
            e.segments[3],
            Segment::Search(vec![
                Condition {
                    key: "Type".into(),
                    op: Op::Eq,
                    value: "Normal".into()
                },
                Condition {
                    key: "Stats.ErrorsSent".into(),
                    op: Op::Gt,
                    value: "0".into()
                },
            ])
        );
        assert_eq!(e.segments[5], Segment::Every);
        let e = parse("Device.WiFi.SSID.2.SSID").unwrap();
        assert!(!e.object);
        assert_eq!(e.segments[3], Segment::Instance(2));
        // A value with a dot, a bracket and && inside quotes.
        let e = parse(r#"Device.X.[Name=="a.b]&&c"]."#).unwrap();
        assert_eq!(
            e.segments[2],
            Segment::Search(vec![Condition {
                key: "Name".into(),
                op: Op::Eq,
                value: "a.b]&&c".into()
            }])
        );
        let e = parse("Device.X.[N<=3&&M!=4].").unwrap();
        let Segment::Search(c) = &e.segments[2] else {
            panic!()
        };
        assert_eq!((c[0].op, c[1].op), (Op::Le, Op::Ne));
    }

    #[test]
    fn refuses_what_is_not_a_path() {
        for bad in [
            "",
            ".",
            "Device..X",
            "Device.X.[Name==\"a\"",
            "Device.X.[Name].",
            "Device.X.[==1].",
            "Device.X.[Name==\"a].",
            "Device.X.[A==1]B.",
            "1.Device.",
            "Device.X.*",
            "Device.X.99999999999.",
            "Device.$.",
            "Device.X.[A==1 2].",
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.code, Code::INVALID_PATH_SYNTAX, "{bad:?}");
        }
        let many = format!("Device.X.[{}].", vec!["A==1"; 17].join("&&"));
        assert!(parse(&many).is_err());
        assert!(parse(&"Device.".repeat(1000)).is_err());
    }

    #[test]
    fn conditions_compare_numbers_as_numbers() {
        let c = |op, value: &str| Condition {
            key: "K".into(),
            op,
            value: value.into(),
        };
        assert!(c(Op::Gt, "9").holds("10"));
        assert!(!c(Op::Gt, "10").holds("9"));
        assert!(c(Op::Eq, "1").holds("1.0"));
        assert!(c(Op::Ne, "eth0").holds("eth1"));
        assert!(c(Op::Le, "2026-01-02T00:00:00Z").holds("2026-01-01T00:00:00Z"));
        assert!(!c(Op::Lt, "x").holds("x"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_path_like_text(text in "[A-Za-z0-9.*\\[\\]=!<>&\" ]{0,120}") {
            let _ = parse(&text);
        }
    }
}
