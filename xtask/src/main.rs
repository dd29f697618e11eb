//! `cargo xtask codegen`: generates the core catalog and both protocol
//! mappings from `model/model.toml` and the standards' XML in `model/`.
//! `cargo xtask codegen --check` fails when the committed files differ.

mod codegen;
// The agent's own reader of OMA object definitions: the built-in objects
// are read as declared ones are (`dm_lwm2m::declare`).
#[path = "../../protocols/lwm2m/src/object_xml.rs"]
mod object_xml;
mod xml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["codegen"] => match codegen::generate(&root) {
            Ok(files) => {
                for (path, text) in files {
                    if let Err(e) = std::fs::write(root.join(&path), text) {
                        eprintln!("cannot write {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("codegen: {e}");
                ExitCode::FAILURE
            }
        },
        ["codegen", "--check"] => match codegen::stale_files(&root) {
            Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
            Ok(stale) => {
                for path in stale {
                    eprintln!("stale: {} (run `cargo xtask codegen`)", path.display());
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("codegen: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask codegen [--check]");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed catalog and mappings are exactly what the generator
    /// makes from the committed model and XML.
    #[test]
    fn generated_code_is_current() {
        let stale = codegen::stale_files(&workspace_root()).unwrap();
        assert!(
            stale.is_empty(),
            "stale generated files {stale:?}: run `cargo xtask codegen`"
        );
    }
}
