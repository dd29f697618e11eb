//! Time zones as TR-181 and the host name them. TR-181's
//! `Device.Time.LocalTimeZone` is a POSIX TZ string (IEEE 1003.1 §8.3,
//! e.g. `CET-1CEST,M3.5.0,M10.5.0/3`); systemd-timedated sets an IANA
//! zone (`Europe/Paris`). Every TZif file of version 2 or later ends with
//! its zone's rules as a POSIX TZ string (RFC 8536 §3.3), which links the
//! two: a zone's string is its file's footer, and a string names the
//! zones whose footer it is.

use std::path::Path;

use crate::PlatformError;

/// Where tzdata puts the zones.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The POSIX TZ string at the end of a TZif file (RFC 8536 §3.3: a
/// newline, the string, a newline), version 2 and later.
pub fn posix_footer(tzif: &[u8]) -> Option<String> {
    if !tzif.starts_with(b"TZif") || tzif.get(4).is_none_or(|v| *v < b'2') {
        return None;
    }
    let body = tzif.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|b| *b == b'\n')? + 1;
    let footer = std::str::from_utf8(&body[start..]).ok()?;
    (!footer.is_empty() && footer.is_ascii()).then(|| footer.to_owned())
}

/// The system's time zone by IANA name, read without loading a zone
/// database (jiff's lists every zone under /usr/share/zoneinfo, about
/// 150 kB held for the agent's life, to name one): see [`zone_name_from`].
pub fn system_zone_name() -> Option<String> {
    let link = std::fs::read_link("/etc/localtime").ok();
    zone_name_from(
        std::env::var("TZ").ok().as_deref(),
        link.as_ref().and_then(|l| l.to_str()),
        std::fs::read_to_string("/etc/timezone").ok().as_deref(),
    )
}

/// The zone name `TZ` gives (`Europe/Paris`, `:Europe/Paris`, or a path
/// into a zoneinfo directory; rules name no zone), else the one the
/// target of /etc/localtime gives (`../usr/share/zoneinfo/Europe/Paris`),
/// else /etc/timezone's (Debian's).
pub fn zone_name_from(
    tz: Option<&str>,
    localtime_target: Option<&str>,
    etc_timezone: Option<&str>,
) -> Option<String> {
    fn under_zoneinfo(path: &str) -> Option<&str> {
        path.rfind("zoneinfo/")
            .map(|at| &path[at + "zoneinfo/".len()..])
    }
    let named = |name: &str| is_zone_name(name).then(|| name.to_owned());
    if let Some(tz) = tz.filter(|tz| !tz.is_empty()) {
        let tz = tz.strip_prefix(':').unwrap_or(tz);
        return under_zoneinfo(tz).map_or_else(
            // A name, not rules: rules have digits after the letters.
            || named(tz).filter(|_| jiff::tz::TimeZone::posix(tz).is_err()),
            named,
        );
    }
    localtime_target
        .and_then(under_zoneinfo)
        .and_then(named)
        .or_else(|| etc_timezone.and_then(|text| named(text.trim())))
}

/// The POSIX TZ string of the IANA zone `zone` under `root`.
pub fn posix_of(root: &Path, zone: &str) -> Option<String> {
    if !is_zone_name(zone) {
        return None;
    }
    posix_footer(&std::fs::read(root.join(zone)).ok()?)
}

/// Whether `name` can be an IANA zone name: relative, no `..`, the
/// characters tzdata uses.
pub fn is_zone_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
}

/// Whether `value` reads as a zone name or as POSIX rules: checked when a
/// client writes it, before the host is asked.
pub fn is_zone_or_rules(value: &str) -> bool {
    is_zone_name(value) || jiff::tz::TimeZone::posix(value).is_ok()
}

/// The IANA zone to set for what a client wrote: a zone of the host by
/// name, or the zone whose rules a POSIX TZ string gives (`current` if it
/// does, so that rewriting the same rules changes nothing; else the first
/// by name, outside `posix/` and `right/`).
pub fn zone_for(root: &Path, wanted: &str, current: Option<&str>) -> Result<String, PlatformError> {
    if is_zone_name(wanted) && posix_of(root, wanted).is_some() {
        return Ok(wanted.to_owned());
    }
    if jiff::tz::TimeZone::posix(wanted).is_err() {
        return Err(PlatformError::InvalidArgument(format!(
            "{wanted:?} is neither a time zone of this host nor a POSIX TZ string"
        )));
    }
    if let Some(current) = current
        && posix_of(root, current).as_deref() == Some(wanted)
    {
        return Ok(current.to_owned());
    }
    let mut zones = Vec::new();
    collect_zones(root, root, 0, &mut zones);
    zones.sort();
    zones
        .into_iter()
        .find(|zone| posix_of(root, zone).as_deref() == Some(wanted))
        .ok_or_else(|| {
            PlatformError::InvalidArgument(format!(
                "no time zone of this host has the rules {wanted:?} (an IANA name such as \
                 Europe/Paris is accepted too)"
            ))
        })
}

/// The zone files under `dir`, as names relative to `root`; tzdata's
/// alternative trees (`posix/`, `right/`) and its tables are left out,
/// and the depth is bounded (tzdata nests two levels).
fn collect_zones(root: &Path, dir: &Path, depth: usize, zones: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(name) = path.strip_prefix(root) else {
            continue;
        };
        let Some(name) = name.to_str() else {
            continue;
        };
        if depth == 0 && (name == "posix" || name == "right" || name.contains('.')) {
            continue;
        }
        match entry.file_type() {
            Ok(kind) if kind.is_dir() && depth < 3 => collect_zones(root, &path, depth + 1, zones),
            Ok(_) if is_zone_name(name) => zones.push(name.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_system_zone_is_named_from_tz_the_link_or_etc_timezone() {
        use super::zone_name_from as name;
        let paris = Some("Europe/Paris".to_owned());
        assert_eq!(name(Some("Europe/Paris"), None, None), paris);
        assert_eq!(name(Some(":Europe/Paris"), None, None), paris);
        assert_eq!(
            name(Some(":/usr/share/zoneinfo/Europe/Paris"), None, None),
            paris
        );
        // Rules name no zone, and TZ is what the process uses.
        assert_eq!(
            name(
                Some("CET-1CEST,M3.5.0,M10.5.0/3"),
                Some("x/zoneinfo/UTC"),
                None
            ),
            None
        );
        assert_eq!(
            name(None, Some("../usr/share/zoneinfo/Europe/Paris"), None),
            paris
        );
        assert_eq!(
            name(None, Some("/etc/somewhere/else"), Some("Europe/Paris\n")),
            paris
        );
        assert_eq!(
            name(Some(""), None, Some("Asia/Tokyo\n")),
            Some("Asia/Tokyo".into())
        );
        assert_eq!(name(None, None, Some("../../etc/passwd")), None);
        assert_eq!(name(None, None, None), None);
    }

    use super::*;

    fn tzif(version: u8, footer: &str) -> Vec<u8> {
        let mut data = b"TZif".to_vec();
        data.push(version);
        data.extend_from_slice(&[0; 40]);
        data.extend_from_slice(format!("\n{footer}\n").as_bytes());
        data
    }

    #[test]
    fn the_footer_is_the_zones_rules() {
        assert_eq!(
            posix_footer(&tzif(b'2', "CET-1CEST,M3.5.0,M10.5.0/3")).as_deref(),
            Some("CET-1CEST,M3.5.0,M10.5.0/3")
        );
        assert_eq!(
            posix_footer(&tzif(b'3', "<+0530>-5:30")).as_deref(),
            Some("<+0530>-5:30")
        );
        // Version 1 has no footer; neither has garbage.
        assert_eq!(posix_footer(&tzif(0, "UTC0")), None);
        assert_eq!(posix_footer(b"TZi"), None);
        assert_eq!(posix_footer(b"not a zone\nUTC0\n"), None);
        assert_eq!(posix_footer(&tzif(b'2', "")), None);
    }

    #[test]
    fn zone_names_stay_under_the_zone_directory() {
        assert!(is_zone_name("Europe/Paris"));
        assert!(is_zone_name("Etc/GMT+5"));
        assert!(is_zone_name("America/Port-au-Prince"));
        assert!(!is_zone_name("../etc/passwd"));
        assert!(!is_zone_name("/etc/localtime"));
        assert!(!is_zone_name("Europe//Paris"));
        assert!(!is_zone_name("CET-1CEST,M3.5.0,M10.5.0/3"));
        assert!(!is_zone_name(""));
        assert!(is_zone_or_rules("CET-1CEST,M3.5.0,M10.5.0/3"));
        assert!(is_zone_or_rules("Europe/Paris"));
        assert!(!is_zone_or_rules("not a zone!"));
    }

    #[test]
    fn a_name_or_the_rules_find_a_zone() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("Europe")).unwrap();
        std::fs::create_dir_all(root.path().join("posix/Europe")).unwrap();
        let cet = "CET-1CEST,M3.5.0,M10.5.0/3";
        for zone in ["Europe/Paris", "Europe/Berlin", "posix/Europe/Amsterdam"] {
            std::fs::write(root.path().join(zone), tzif(b'2', cet)).unwrap();
        }
        std::fs::write(root.path().join("UTC"), tzif(b'2', "UTC0")).unwrap();
        std::fs::write(root.path().join("zone.tab"), "not a zone").unwrap();
        let root = root.path();
        assert_eq!(
            zone_for(root, "Europe/Paris", None).unwrap(),
            "Europe/Paris"
        );
        // The rules: the current zone if it has them, else the first.
        assert_eq!(
            zone_for(root, cet, Some("Europe/Paris")).unwrap(),
            "Europe/Paris"
        );
        assert_eq!(zone_for(root, cet, Some("UTC")).unwrap(), "Europe/Berlin");
        assert_eq!(zone_for(root, "UTC0", None).unwrap(), "UTC");
        // Valid rules no zone has; not rules at all; a name not there.
        assert!(matches!(
            zone_for(root, "EST5EDT,M3.2.0,M11.1.0", None),
            Err(PlatformError::InvalidArgument(m)) if m.contains("no time zone")
        ));
        assert!(matches!(
            zone_for(root, "not a zone!", None),
            Err(PlatformError::InvalidArgument(_))
        ));
        assert!(zone_for(root, "Europe/Rome", None).is_err());
        assert!(zone_for(root, "../../etc/passwd", None).is_err());
    }
}
