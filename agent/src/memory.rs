//! Free heap pages given back to the kernel when the agent goes idle (the
//! footprint issue).
//!
//! glibc gives back the top of its heap on `free`, but not the free
//! chunks below memory still in use: what start-up, a CWMP session or a
//! large request freed stays resident. heaptrack of the idle default
//! agent put its live heap at about 350 KB in a heap of 600 KB resident.
//! The runtime calls [`release_when_idle`] each time it parks (it has
//! nothing to run), so no timer wakes the agent for it; it trims only
//! when at least [`GROWTH`] more is free than after the last trim, so a
//! busy agent does not trim at every park. The main heap's top does not
//! count: the padding glibc adds when it grows again after a trim would
//! otherwise call for the next trim. (The tops of the arenas of other
//! threads, `spawn_blocking`'s, do count, and a trim does not shrink
//! them; the baseline taken after each trim keeps that from repeating.)

/// Free bytes (the main heap's top aside), beyond those after the last
/// trim, worth a trim: each trim follows at least this much freed, so
/// its cost (a walk of the free chunks, `madvise`, the pages faulted in
/// again when reused) follows the work the agent did. Footprint bench,
/// idle default set, one run each: RssAnon 956 and 1,012 kB at 16 KiB,
/// 1,064 kB twice at 64 KiB (runs differ by up to about 50 kB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const GROWTH: usize = 16 * 1024;

/// Trims glibc's heaps if at least [`GROWTH`] more bytes are free (the
/// main heap's top aside) than after the last trim (`malloc_trim(3)`: free whole pages
/// are given back with `MADV_DONTNEED`, in every arena). `mallinfo`
/// rather than `mallinfo2`: the latter needs glibc 2.33, and the agent's
/// heap is far below the 2 GiB where the former's `int`s wrap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_when_idle() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Free bytes (the main heap's top aside) after the last trim,
    // lowered as free memory is reused.
    static BASELINE: AtomicUsize = AtomicUsize::new(0);
    let free_below_top = || {
        // SAFETY: mallinfo takes no argument and returns a plain struct;
        // glibc locks each arena while it reads it.
        let info = unsafe { libc::mallinfo() };
        usize::try_from(info.fordblks.saturating_sub(info.keepcost)).unwrap_or(0)
    };
    let free = free_below_top();
    let baseline = BASELINE.load(Ordering::Relaxed);
    if free < baseline.saturating_add(GROWTH) {
        BASELINE.store(baseline.min(free), Ordering::Relaxed);
        return;
    }
    // SAFETY: malloc_trim takes an integer and locks each arena itself.
    unsafe { libc::malloc_trim(0) };
    BASELINE.store(free_below_top(), Ordering::Relaxed);
}

/// Other C libraries (musl) have no trim: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_when_idle() {}
