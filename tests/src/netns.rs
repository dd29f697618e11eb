//! Network namespaces a test makes ([`Netns`], `ip netns add`), and work
//! inside one: a thread enters it (setns(2) changes only the calling
//! thread), so that sockets it opens, and threads it starts, live there.

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

/// A network namespace the test made, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    /// Makes it (after deleting one a crashed run left).
    pub fn new(name: &str) -> Netns {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", name])
            .status();
        let made = std::process::Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip runs");
        assert!(made.success(), "ip netns add {name}");
        Netns(name.to_owned())
    }

    /// `ip -n NAME ARGS...` (the words of `args`), which must succeed.
    pub fn ip(&self, args: &str) {
        let status = std::process::Command::new("ip")
            .args(["-n", &self.0])
            .args(args.split_whitespace())
            .status()
            .expect("ip runs");
        assert!(status.success(), "ip -n {} {args}", self.0);
    }

    /// Sets one of the namespace's own sysctls (`net.ipv4.tcp_rmem`):
    /// /proc/sys/net shows the namespace of the thread that opens it.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        run_in(&self.0, move || {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"))
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}
