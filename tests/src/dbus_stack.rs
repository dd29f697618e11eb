//! The real NetworkManager and oFono for a test: `tests/peers/dbus-stack.sh`
//! on a private system bus in a network namespace, stopped (by the script's
//! own cleanup, by pid) when the [`Stack`] is dropped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The stack, stopped (by its own cleanup) when its input closes.
pub struct Stack {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    /// The D-Bus address of the private system bus.
    pub bus: String,
    /// NetworkManager's keyfile profile directory.
    pub keyfiles: PathBuf,
}

impl Stack {
    /// Starts the stack; panics with the script's reason when it cannot.
    pub fn start() -> Stack {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/dbus-stack.sh");
        let mut child = Command::new(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("tests/peers/dbus-stack.sh starts");
        let input = child.stdin.take();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        let ready = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the stack did not start: {line:?} (see its stderr)"));
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap()
                .to_owned()
        };
        Stack {
            bus: field("bus="),
            keyfiles: PathBuf::from(field("keyfiles=")),
            child,
            input,
            output,
        }
    }

    /// Sends a command to the stack and returns its answer.
    pub fn command(&mut self, command: &str) -> String {
        let input = self.input.as_mut().unwrap();
        writeln!(input, "{command}").unwrap();
        input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    /// The text of the profile keyfile that contains `needle`.
    pub fn keyfile_with(&self, needle: &str) -> Option<String> {
        std::fs::read_dir(&self.keyfiles)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .find(|text| text.contains(needle))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        drop(self.input.take());
        let _ = self.child.wait();
    }
}
