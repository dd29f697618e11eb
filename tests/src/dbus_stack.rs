//! D-Bus peers for a test, each a script in `tests/peers/` that prints a
//! READY line, takes commands on stdin and cleans up after itself (by pid)
//! when its input closes, i.e. when the [`Stack`] is dropped:
//! [`Stack::start`] runs the real NetworkManager and oFono on a private
//! system bus in a network namespace (`dbus-stack.sh`), [`Stack::mock`]
//! python-dbusmock services on a private bus (`dbus-mock.sh`).

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
    /// NetworkManager's keyfile profile directory (real stack only).
    pub keyfiles: PathBuf,
    /// The network namespace the daemons run in (real stack only).
    pub netns: String,
}

impl Stack {
    /// The real daemons; panics with the script's reason when it cannot.
    pub fn start() -> Stack {
        Stack::spawn("dbus-stack.sh")
    }

    /// An empty private bus on which python-dbusmock services are
    /// started and stopped with `command("start logind")`.
    pub fn mock() -> Stack {
        Stack::spawn("dbus-mock.sh")
    }

    fn spawn(script: &str) -> Stack {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("peers")
            .join(script);
        let mut child = Command::new(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("tests/peers/{script} does not start: {e}"));
        let input = child.stdin.take();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        let ready = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("{script} did not start: {line:?} (see its stderr)"));
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap_or_default()
                .to_owned()
        };
        Stack {
            bus: field("bus="),
            keyfiles: PathBuf::from(field("keyfiles=")),
            netns: field("netns="),
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
