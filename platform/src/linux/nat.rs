//! Which interfaces the host translates addresses on (TR-181's
//! `NAT.InterfaceSetting`): the output interfaces of the nftables rules
//! that masquerade or source-NAT, from `nft -j list ruleset` (libnftables'
//! JSON, the stable interface of nftables; iptables-nft's rules are
//! nftables rules too). Read when a request lists the table, off the
//! tree's lock; bounded in time and size.
//!
//! Only the kernel's nftables rules are seen: rules of the legacy
//! iptables backend are not (it has no JSON interface), and `nft` needs
//! CAP_NET_ADMIN: without it, or without nft, the read fails and the table
//! stays as it was (empty), like any table the host cannot read.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::PlatformError;

/// How long `nft` may take, and the most output read from it (a
/// gateway's ruleset is a few KiB; a full firewall a few hundred).
const NFT_LIMIT: std::time::Duration = std::time::Duration::from_secs(4);
const NFT_BYTES: u64 = 4 << 20;

/// The interfaces some rule masquerades or source-NATs on, by name, in
/// order, each once. A rule with no output interface (all of them) names
/// none: TR-181's table is per interface.
pub fn masqueraded(program: &str) -> Result<Vec<String>, PlatformError> {
    let mut command = std::process::Command::new(program);
    command.args(["-j", "list", "ruleset"]);
    let deadline = std::time::Instant::now() + NFT_LIMIT;
    let out = super::bounded_output(&mut command, "nftables", NFT_BYTES, deadline)?;
    if out.len() as u64 >= NFT_BYTES {
        return Err(PlatformError::Failed(format!(
            "{program}: the ruleset is over {NFT_BYTES} bytes"
        )));
    }
    parse_ruleset(&out)
}

/// The output interfaces of the source-NAT rules of a `nft -j` ruleset.
pub fn parse_ruleset(json: &[u8]) -> Result<Vec<String>, PlatformError> {
    let ruleset: Value = serde_json::from_slice(json)
        .map_err(|e| PlatformError::Failed(format!("nft: not a JSON ruleset: {e}")))?;
    let items = ruleset
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| PlatformError::Failed("nft: no \"nftables\" array".into()))?;
    let mut out: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for expressions in items
        .iter()
        .filter_map(|item| item.get("rule")?.get("expr")?.as_array())
    {
        let translates = expressions
            .iter()
            .any(|e| e.get("masquerade").is_some() || e.get("snat").is_some());
        if !translates {
            continue;
        }
        for name in expressions.iter().flat_map(output_interfaces) {
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// The interface names a `match` on `meta oifname` (or `oif`, which nft
/// prints by name) accepts with `==`: one name, or a set of them.
fn output_interfaces(expression: &Value) -> Vec<String> {
    let Some(matched) = expression.get("match") else {
        return Vec::new();
    };
    let key = matched
        .get("left")
        .and_then(|l| l.get("meta"))
        .and_then(|m| m.get("key"))
        .and_then(Value::as_str);
    let op = matched.get("op").and_then(Value::as_str).unwrap_or("==");
    if !matches!(key, Some("oifname" | "oif")) || !matches!(op, "==" | "in") {
        return Vec::new();
    }
    let names = |v: &Value| -> Vec<String> {
        match v {
            // A wildcard ("eth*") names no one interface, nor does a named
            // set ("@wan_ifaces": its elements are not in the rule).
            Value::String(s) if !s.contains('*') && !s.is_empty() && !s.starts_with('@') => {
                vec![s.clone()]
            }
            _ => Vec::new(),
        }
    };
    match matched.get("right") {
        Some(Value::Object(set)) => set
            .get("set")
            .and_then(Value::as_array)
            .map(|a| a.iter().flat_map(names).collect())
            .unwrap_or_default(),
        Some(v) => names(v),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft -j list ruleset` prints for a gateway: masquerade out of
    /// wan0, source NAT out of a set of two, a filter rule on eth9 (no
    /// NAT), and a masquerade with no output interface.
    #[test]
    fn source_nat_rules_name_their_interfaces() {
        let json = br#"{"nftables": [
          {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
          {"table": {"family": "ip", "name": "nat", "handle": 1}},
          {"chain": {"family": "ip", "table": "nat", "name": "postrouting", "handle": 1,
                     "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
          {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "handle": 2,
                    "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}},
                             {"masquerade": null}]}},
          {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "handle": 3,
                    "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oif"}},
                                        "right": {"set": ["lte0", "wan0"]}}},
                             {"snat": {"addr": "198.51.100.1"}}]}},
          {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 4,
                    "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth9"}},
                             {"accept": null}]}},
          {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "handle": 5,
                    "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "lo"}},
                             {"masquerade": null}]}},
          {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "handle": 6,
                    "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "ppp*"}},
                             {"masquerade": null}]}},
          {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "handle": 7,
                    "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@wans"}},
                             {"masquerade": null}]}}
        ]}"#;
        assert_eq!(parse_ruleset(json).unwrap(), ["wan0", "lte0"]);
        assert!(
            parse_ruleset(br#"{"nftables": [{"metainfo": {}}]}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"not json"[..], b"{}", b"[]", b"{\"nftables\": 3}"] {
            assert!(parse_ruleset(bad).is_err(), "{bad:?}");
        }
        // Odd shapes inside a ruleset are skipped.
        let odd = br#"{"nftables": [{"rule": {"expr": 7}}, {"rule": {"expr": [{"match": 1}, {"masquerade": 2}]}}, 5]}"#;
        assert!(parse_ruleset(odd).unwrap().is_empty());
    }
}
