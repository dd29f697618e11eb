//! `cargo xtask codegen`: generates the core catalog and both protocol
//! mappings from `model/model.toml` and the standards' XML in `model/`,
//! and USP's protobuf messages from the .proto files in `model/usp/`.
//! `cargo xtask codegen --check` fails when the committed files differ.
//! `cargo xtask dist DIR` writes the man pages (`DIR/dmagent.1`, one
//! `DIR/dmagent-VERB.1` per verb) and the
//! bash and zsh completions (`DIR/dmagent.bash`, `DIR/_dmagent`) from the
//! agent's command line, for `scripts/build-deb.sh`.

// The agent's command line, as clap defines it (only clap and std).
#[path = "../../agent/src/args.rs"]
#[allow(dead_code)]
mod args;
mod codegen;
// The agent's own reader of OMA object definitions: the built-in objects
// are read as declared ones are (`dm_lwm2m::declare`).
#[path = "../../protocols/lwm2m/src/object_xml.rs"]
mod object_xml;
mod usp;
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
        ["dist", dir] => match dist(Path::new(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dist: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask codegen [--check] | cargo xtask dist DIR");
            ExitCode::from(2)
        }
    }
}

/// The man page and completions of `dmagent`, into `dir`.
fn dist(dir: &Path) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    std::fs::create_dir_all(dir)?;
    let command = args::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(dir.join("dmagent.1"), page)?;
    // A page per verb for its own arguments: dmagent-run(1), ...
    let mut built = command.clone();
    built.build();
    for verb in built.get_subcommands().filter(|v| v.get_name() != "help") {
        let name = format!("dmagent-{}", verb.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(verb.clone())
            .title(name.clone())
            .render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "dmagent.bash"),
        (clap_complete::Shell::Zsh, "_dmagent"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "dmagent", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    Ok(())
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
