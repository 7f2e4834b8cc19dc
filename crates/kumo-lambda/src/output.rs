//! An environment's output (standard output and error, merged as Lambda does), split into
//! lines. Lines are taken per invocation: what the runtime wrote before it answered is in
//! the pipe already, so a drain at the answer gets all of it.

use std::sync::Mutex;
use tokio::net::unix::pipe::Receiver;

/// Output kept per invocation; more is dropped with a note.
const CAP_BYTES: usize = 1024 * 1024;

pub(crate) struct Output {
    pipe: Receiver,
    state: Mutex<Lines>,
}

#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    lines: Vec<String>,
    bytes: usize,
    dropped: bool,
    closed: bool,
}

impl Output {
    pub(crate) fn new(pipe: Receiver) -> Self {
        Self {
            pipe,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Lines> {
        // Appends leave the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads until the program's side closes (run as a task).
    pub(crate) async fn follow(&self) {
        while !self.state().closed {
            if self.pipe.readable().await.is_err() {
                break;
            }
            self.drain();
        }
    }

    /// Reads what is in the pipe now, without waiting.
    pub(crate) fn drain(&self) {
        let mut state = self.state();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match self.pipe.try_read(&mut buffer) {
                Ok(0) => {
                    state.closed = true;
                    break;
                }
                Ok(n) => state.push(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    state.closed = true;
                    break;
                }
            }
        }
    }

    /// The complete lines so far (and a last partial one), emptied.
    pub(crate) fn take(&self) -> Vec<String> {
        self.drain();
        let mut state = self.state();
        if !state.partial.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut state.partial)).into_owned();
            state.lines.push(line);
        }
        if std::mem::take(&mut state.dropped) {
            state
                .lines
                .push(format!("(output over {CAP_BYTES} bytes was dropped)"));
        }
        state.bytes = 0;
        std::mem::take(&mut state.lines)
    }
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&bytes[..end]);
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            self.keep(line);
            bytes = &bytes[end + 1..];
        }
        if self.partial.len() + bytes.len() <= CAP_BYTES {
            self.partial.extend_from_slice(bytes);
        } else {
            self.dropped = true;
        }
    }

    fn keep(&mut self, line: String) {
        if self.bytes + line.len() > CAP_BYTES {
            self.dropped = true;
            return;
        }
        self.bytes += line.len();
        self.lines.push(line);
    }
}
