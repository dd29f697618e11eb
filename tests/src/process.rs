//! Child processes in tests and the demo: killed when dropped, and their
//! output as a channel of lines, so a test waits for what a peer says
//! instead of sleeping.

use std::io::{BufRead as _, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;

/// A child process, killed (and reaped) when dropped: a failing test
/// leaves nothing behind.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each line `output` (a child's stdout or stderr) gives, as it comes.
pub fn lines(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
