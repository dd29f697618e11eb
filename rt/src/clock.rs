//! The drivers' one clock adapter: monotonic time from tokio's clock (so
//! that pausing it in a test pauses the drivers) and wall-clock seconds.

use std::time::{Duration, Instant, SystemTime};

/// Now, on tokio's clock (the real one unless a test paused it).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Seconds since the Unix epoch, now.
pub fn wall() -> i64 {
    dm_core::unix_seconds(SystemTime::now())
}

/// Microseconds since the Unix epoch, now (TR-143's times are to the
/// microsecond).
pub fn wall_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The Unix time of a monotonic `deadline` (for status reports): now's
/// wall time plus what is left until it; a past deadline is now.
pub fn wall_at(deadline: Instant) -> i64 {
    let left = deadline.saturating_duration_since(now());
    wall().saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
}

/// How long ago `then` was, on the same clock.
pub fn since(then: Instant) -> Duration {
    now().saturating_duration_since(then)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokios_clock_when_paused() {
        let start = now();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(since(start), Duration::from_secs(90));
        let deadline = now() + Duration::from_secs(30);
        let at = wall_at(deadline);
        assert!((wall() + 29..=wall() + 30).contains(&at), "{at}");
        assert_eq!(wall_at(start), wall());
    }
}
