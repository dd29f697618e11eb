//! Exponential back-off, the doubling kind: the first wait, doubled after
//! each failure, up to a cap.

use std::time::Duration;

/// The wait after `failures` consecutive failures (1 for the first):
/// `first`, then twice as long each time, never more than `cap`. 0
/// failures wait nothing.
pub fn doubling(first: Duration, failures: u32, cap: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    // 2^31 times any first wait is past every cap in use; bounded shift.
    let factor = 1u32 << (failures - 1).min(31);
    first.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let s = Duration::from_secs;
        let waits: Vec<u64> = (0..10)
            .map(|n| doubling(s(30), n, s(3600)).as_secs())
            .collect();
        assert_eq!(waits, [0, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let waits: Vec<u64> = (1..9).map(|n| doubling(s(1), n, s(60)).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(doubling(s(30), u32::MAX, s(3600)), s(3600));
    }
}
