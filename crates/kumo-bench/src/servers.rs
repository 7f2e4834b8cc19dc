//! Servers under test, each started as its own process pinned to one core, and the load
//! generator pinned to another, so every server gets the same single core.

use anyhow::{Context as _, bail};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The core the servers run on; the load generator and this harness use the other one.
pub(crate) const SERVER_CPU: usize = 0;
pub(crate) const CLIENT_CPU: usize = 1;

/// A running server process, killed when dropped.
pub(crate) struct Running {
    pub child: Child,
    pub addr: String,
}

impl Running {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory of the server process, from /proc (Linux).
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("no VmRSS in /proc status")?
            .parse()?;
        Ok(kib / 1024.0)
    }

    pub(crate) async fn stop(mut self) {
        // SIGKILL is fine here: no server under test keeps anything the benchmark needs.
        let _ = self.child.kill().await;
    }
}

/// Whether `taskset` can pin processes here; without it everything runs unpinned.
pub(crate) fn can_pin() -> bool {
    std::process::Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// A command for `program` that runs pinned to `cpu` when pinning works.
pub(crate) fn pinned(cpu: usize, program: &Path) -> Command {
    if can_pin() {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(cpu.to_string()).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Pins this process (the harness) to the client core, away from the servers.
pub(crate) fn pin_self() {
    if can_pin() {
        let _ = std::process::Command::new("taskset")
            .args([
                "-cp",
                &CLIENT_CPU.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }
}

/// A free loopback port (bound and released; a race with another program is unlikely here).
pub(crate) fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// Starts `command` (which must listen on `addr`) and waits until it accepts connections.
pub(crate) async fn start(
    mut command: Command,
    addr: String,
    what: &str,
) -> anyhow::Result<Running> {
    // Servers run as in production: no backtrace capture on every error value.
    command
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Ok(Running { child, addr });
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited before listening: {status}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on {addr} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
