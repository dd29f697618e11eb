//! `cfg(dmagent_full)`: every cargo feature is built in (the default).
//! Code and tests that need all of them say so with it, rather than
//! with the list of seven features each time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(dmagent_full)");
    let features = ["CWMP", "LWM2M", "USP", "DTLS", "HTTPS", "FTP", "DBUS"];
    if features
        .iter()
        .all(|f| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some())
    {
        println!("cargo::rustc-cfg=dmagent_full");
    }
}
