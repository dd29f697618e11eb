//! `cfg(dmagent_full)`: every cargo feature is built in (the default).
//! Code and tests that need all of them say so with it, rather than
//! with the list of seven features each time.
//!
//! The release binary's link (the footprint issue; figures in
//! ARCHITECTURE.md), on Linux only, and for the `dmagent` binary only
//! (tests, examples and debug builds keep the defaults):
//! - `link/no-unwind-tables.ld` drops `.eh_frame` and `.eh_frame_hdr`:
//!   the release profile aborts on panic, so nothing unwinds, and a
//!   stripped binary's backtrace names nothing. A panic still prints its
//!   message and location, but gdb, perf or systemd-coredump on the
//!   device cannot walk the stack of the running agent or of its core
//!   dump. A profile with debug information (`bench`) keeps them: it is
//!   for profilers and debuggers. `DMAGENT_UNWIND_TABLES=1` keeps them
//!   too, for a field build that wants stack traces from core dumps, and
//!   must be set for a release build made with `panic = "unwind"`, which
//!   cannot unwind without them. (`PROFILE` and `DEBUG` are what a build
//!   script learns of the profile: `CARGO_CFG_PANIC` is the target's
//!   default, not the profile's.)
//! - `-z pack-relative-relocs` (RELR), for glibc targets: it stores the
//!   position-independent executable's relative relocations as a bitmap
//!   instead of 24 bytes each. It needs glibc 2.36 (Debian 12) on the
//!   device, whose loader refuses an older one by name
//!   (`GLIBC_ABI_DT_RELR`); `DMAGENT_RELR=0` builds without it. (musl
//!   1.2.4 reads RELR too, but an older musl would not refuse it: musl
//!   targets go without.)
//!
//! Both assume the linker is driven by `cc` (`-Wl,`), as for Rust's
//! Linux targets.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=link/no-unwind-tables.ld");
    println!("cargo::rerun-if-env-changed=DMAGENT_RELR");
    println!("cargo::rerun-if-env-changed=DMAGENT_UNWIND_TABLES");
    release_link();
    println!("cargo::rustc-check-cfg=cfg(dmagent_full)");
    let features = ["CWMP", "LWM2M", "USP", "DTLS", "HTTPS", "FTP", "DBUS"];
    if features
        .iter()
        .all(|f| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some())
    {
        println!("cargo::rustc-cfg=dmagent_full");
    }
}

fn release_link() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("PROFILE") != "release" || var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    if var("DEBUG") != "true" && var("DMAGENT_UNWIND_TABLES") != "1" {
        let script =
            std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/no-unwind-tables.ld");
        println!("cargo::rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
    if var("CARGO_CFG_TARGET_ENV") == "gnu" && var("DMAGENT_RELR") != "0" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
