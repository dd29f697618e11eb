//! Bearer Selection (/13): the Preferred Communications Bearer list
//! (/13/0/0) says which bearers to use, best first. When LwM2M
//! registration keeps failing on the bearer in use, the next preferred
//! bearer that is available is brought up through the platform, as the
//! IG60 client does; a registration resets the walk.

use dm_core::catalog::bearer_selection::{ID, PREFERRED_COMMUNICATIONS_BEARER};
use dm_core::{InstanceId, Origin, Path, ResourceValue, Tree, Value};
use dm_platform::{BearerKind, NetworkState};

/// Registration failures in a row on one bearer before the next is tried.
const FAILURES_PER_BEARER: u64 = 2;

/// The bearer a /13/0/0 value names (LwM2M object 13); `None` for
/// "auto connect" and bearers this device has no kind for.
fn kind_of(value: i64) -> Option<BearerKind> {
    match value {
        2 => Some(BearerKind::Gsm),
        3 => Some(BearerKind::Wcdma),
        1 | 4 | 12 | 13 | 16 => Some(BearerKind::LteFdd),
        14 | 15 => Some(BearerKind::NbIot),
        7 => Some(BearerKind::Wlan),
        8 => Some(BearerKind::Ethernet),
        _ => None,
    }
}

/// The preferred bearers, best first (the order of the resource instances).
pub fn preferred(tree: &Tree) -> Vec<BearerKind> {
    let path = Path::resource(ID, InstanceId(0), PREFERRED_COMMUNICATIONS_BEARER);
    match tree.read(Origin::Agent, &path) {
        Ok(ResourceValue::Multiple(values)) => values
            .values()
            .filter_map(|v| match v {
                Value::Integer(n) => kind_of(*n),
                Value::Unsigned(n) => i64::try_from(*n).ok().and_then(kind_of),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Where the walk down the preference list stands.
#[derive(Debug, Default)]
pub struct Fallback {
    /// The failure count when the current bearer was last judged.
    judged_at: u64,
    /// Bearers the platform could not bring up since the last
    /// registration: not tried again until then.
    refused: Vec<BearerKind>,
}

impl Fallback {
    /// Given whether any server is registered and the registration
    /// failures so far, the bearer to switch to, if it is time to.
    pub fn observe(
        &mut self,
        registered: bool,
        failures: u64,
        preferred: &[BearerKind],
        network: &NetworkState,
    ) -> Option<BearerKind> {
        if registered || failures < self.judged_at {
            self.judged_at = failures;
            self.refused.clear();
            return None;
        }
        if failures < self.judged_at + FAILURES_PER_BEARER {
            return None;
        }
        self.judged_at = failures;
        let usable: Vec<BearerKind> = preferred
            .iter()
            .copied()
            .filter(|k| network.available.contains(k) && !self.refused.contains(k))
            .collect();
        // The next usable one after the bearer in use. The walk stops at
        // the end of the list: a server that is down is not a reason to
        // cycle through every bearer (metered ones included).
        let next = match network
            .bearer
            .and_then(|b| usable.iter().position(|k| *k == b))
        {
            Some(i) => usable.get(i + 1),
            None => usable.first(),
        }
        .copied()?;
        (Some(next) != network.bearer).then_some(next)
    }

    /// The platform could not bring `kind` up.
    pub fn refused(&mut self, kind: BearerKind) {
        self.refused.push(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(bearer: BearerKind, available: &[BearerKind]) -> NetworkState {
        NetworkState {
            bearer: Some(bearer),
            available: available.to_vec(),
            ..NetworkState::default()
        }
    }

    #[test]
    fn failing_registrations_walk_down_the_preferences() {
        use BearerKind::*;
        let preferred = [Ethernet, Wlan, LteFdd];
        let all = [Ethernet, Wlan, LteFdd];
        let mut walk = Fallback::default();
        let on = |b| network(b, &all);
        assert_eq!(walk.observe(false, 1, &preferred, &on(Ethernet)), None);
        assert_eq!(
            walk.observe(false, 2, &preferred, &on(Ethernet)),
            Some(Wlan),
            "two failures on Ethernet: Wi-Fi next"
        );
        assert_eq!(walk.observe(false, 3, &preferred, &on(Wlan)), None);
        // Cellular could not be brought up: skipped, and the walk ends
        // there (no wrapping back round the list).
        walk.refused(LteFdd);
        assert_eq!(walk.observe(false, 4, &preferred, &on(Wlan)), None);
        assert_eq!(walk.observe(false, 9, &preferred, &on(Wlan)), None);
        // A registration resets the walk and what was refused.
        assert_eq!(walk.observe(true, 9, &preferred, &on(Wlan)), None);
        assert_eq!(walk.observe(false, 11, &preferred, &on(Wlan)), Some(LteFdd));
        // Nothing preferred, or only the bearer in use: nothing to do.
        assert_eq!(walk.observe(false, 20, &[], &on(Ethernet)), None);
        assert_eq!(walk.observe(false, 30, &[Ethernet], &on(Ethernet)), None);
        // Not available: not chosen.
        let mut walk = Fallback::default();
        assert_eq!(
            walk.observe(
                false,
                2,
                &preferred,
                &network(Ethernet, &[Ethernet, LteFdd])
            ),
            Some(LteFdd)
        );
    }

    #[test]
    fn values_name_bearers_as_object_13_does() {
        assert_eq!(kind_of(0), None, "auto connect");
        assert_eq!(kind_of(7), Some(BearerKind::Wlan));
        assert_eq!(kind_of(8), Some(BearerKind::Ethernet));
        assert_eq!(kind_of(4), Some(BearerKind::LteFdd));
        assert_eq!(kind_of(99), None);
    }
}
