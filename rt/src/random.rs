//! The OS's randomness, through `ring` (already linked for TLS and
//! DTLS): nonces, UUIDs and the engines' seeds.

use ring::rand::{SecureRandom as _, SystemRandom};

/// The OS gave no random bytes (getrandom failed: on Linux only before
/// the kernel's pool was ever ready).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

/// Fills `bytes` from the OS.
pub fn fill(bytes: &mut [u8]) -> Result<(), RandomError> {
    SystemRandom::new().fill(bytes).map_err(|_| RandomError)
}

/// `n` random bytes as lower-case hex (2n digits).
pub fn hex(n: usize) -> Result<String, RandomError> {
    let mut bytes = vec![0; n];
    fill(&mut bytes)?;
    Ok(dm_core::support::hex::encode(&bytes))
}

/// A version 4 (random) UUID, RFC 9562 §5.4, in its 8-4-4-4-12 form.
pub fn uuid_v4() -> Result<String, RandomError> {
    let mut b = [0u8; 16];
    fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = dm_core::support::hex::encode(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// A seed for an engine's generator (message IDs, jitter: variety, not
/// secrecy). Falls back on the clock's nanoseconds if the OS fails.
pub fn seed() -> u64 {
    let mut b = [0u8; 8];
    match fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(RandomError) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let a = uuid_v4().unwrap();
        let b = uuid_v4().unwrap();
        assert_ne!(a, b);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{a}");
        assert!("89ab".contains(&groups[3][..1]), "{a}");
        assert_eq!(hex(16).unwrap().len(), 32);
        assert_ne!(seed(), seed());
    }
}
