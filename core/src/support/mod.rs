//! Small helpers every crate shares, each written once (rust-analyzer's
//! `stdx` in spirit): hex, exponential back-off, a seeded generator, a
//! mutex lock that survives poisoning, Unix time of a `SystemTime`.
//! Pure: nothing here reads a clock, a file or the OS's entropy.

pub mod backoff;
pub mod hex;
pub mod rng;

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks `mutex`, recovering it if a panicking thread poisoned it: every
/// mutex of the agent guards state that a panic between two statements
/// leaves consistent (each change is one assignment or a commit that
/// publishes only when whole), and a panic aborts the release build
/// anyway.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds since the Unix epoch of `time` (the caller reads the clock);
/// 0 for a time before 1970, which only a broken clock gives.
pub fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_seconds_of_times_before_and_after_the_epoch() {
        assert_eq!(
            unix_seconds(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            1_700_000_000
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_poisoned_mutex_is_still_locked() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let poisoner = std::sync::Arc::clone(&mutex);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 2);
    }
}
