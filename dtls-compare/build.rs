//! The agent's release link (agent/build.rs): no unwind tables, packed
//! relocations; so the sizes compare with the agent's.

fn main() {
    let script = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../agent/link/no-unwind-tables.ld");
    println!("cargo::rerun-if-changed={}", script.display());
    println!("cargo::rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
    println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
