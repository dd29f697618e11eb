//! Work inside a network namespace a test made (`ip netns add`): a thread
//! enters it (setns(2) changes only the calling thread), so that sockets
//! it opens, and threads it starts, live there.

/// Runs `work` on a thread inside the named namespace and returns what it
/// returns; the caller's thread stays where it is.
pub fn run_in<T: Send + 'static>(netns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        work()
    })
    .join()
    .expect("the work in the namespace panicked")
}
