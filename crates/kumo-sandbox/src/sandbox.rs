//! The caller's side of an environment: starting the helper, handing it the spec, taking its
//! listeners, and controlling the environment until it is dropped (which kills it).

use crate::cgroup::Cgroup;
use crate::helper::Reply;
use crate::{Cgroups, Limits, Spec, sys};
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why an environment did not start.
#[derive(Debug)]
pub enum StartError {
    /// The program could not be run (not found, not executable, bad format): its fault.
    Program(String),
    /// The machine could not build the environment.
    Sandbox(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Program(e) | Self::Sandbox(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StartError {}

fn sandbox_error(context: &str) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |e| StartError::Sandbox(format!("{context}: {e}"))
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The kernel killed a process of the environment for exceeding its memory limit.
    pub oom_killed: bool,
}

/// One running environment. Dropping it kills everything in it.
pub struct Sandbox {
    /// The helper's process id; the program's (PID 1 of its namespace) is `pid`.
    helper_pid: i32,
    pid: i32,
    listeners: Vec<std::net::TcpListener>,
    /// The program's standard output and error, merged (taken once).
    pub output: Option<tokio::net::unix::pipe::Receiver>,
    cgroup: Option<Arc<Cgroup>>,
    /// Closing it makes the helper kill the program.
    control: Mutex<Option<UnixStream>>,
    /// Set once the program has ended.
    exit: tokio::sync::watch::Receiver<Option<Exit>>,
}

/// How long the helper may take to build an environment.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

impl Sandbox {
    /// Starts `spec`'s program through `helper` (a binary that calls
    /// [`crate::helper_main`] when given [`crate::HELPER_ARG`]). With `cgroups`, the
    /// environment gets cgroup `id` with `limits`; without, it runs unlimited.
    pub async fn start(
        helper: &Path,
        spec: &Spec,
        limits: &Limits,
        cgroups: Option<&Cgroups>,
        id: &str,
    ) -> Result<Self, StartError> {
        let cgroup = cgroups
            .map(|c| c.create(id, limits).map(Arc::new))
            .transpose()
            .map_err(sandbox_error("creating the cgroup"))?;
        let (ours, theirs) = UnixStream::pair().map_err(sandbox_error("socketpair"))?;
        let (output_in, output) =
            tokio::net::unix::pipe::pipe().map_err(sandbox_error("making the output pipe"))?;
        let output_in = output_in
            .into_blocking_fd()
            .map_err(sandbox_error("making the output pipe"))?;
        let errors_in = output_in
            .try_clone()
            .map_err(sandbox_error("making the output pipe"))?;
        let mut child = tokio::process::Command::new(helper)
            .arg(crate::HELPER_ARG)
            .env_clear()
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                theirs,
            )))
            .stdout(std::process::Stdio::from(output_in))
            .stderr(std::process::Stdio::from(errors_in))
            .kill_on_drop(true)
            .spawn()
            .map_err(sandbox_error("starting the sandbox helper"))?;
        let helper_pid = child.id().map_or(0, |p| p as i32);
        if let Some(cgroup) = &cgroup {
            // The helper waits for the spec, so it is in the cgroup before it forks.
            cgroup
                .add(helper_pid as u32)
                .map_err(sandbox_error("joining the cgroup"))?;
        }
        let (exit_tx, exit) = tokio::sync::watch::channel(None);
        let watched = cgroup.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let oom_killed = watched.as_ref().is_some_and(|c| c.oom_kills() > 0);
            let _ = exit_tx.send(Some(Exit::of(status, oom_killed)));
        });
        let mut sandbox = Self {
            helper_pid,
            pid: 0,
            listeners: Vec::new(),
            output: Some(output),
            cgroup,
            control: Mutex::new(None),
            exit,
        };
        let json = serde_json::to_vec(spec).map_err(|e| StartError::Sandbox(e.to_string()))?;
        let mut message = (json.len() as u32).to_le_bytes().to_vec();
        message.extend(json);
        (&ours)
            .write_all(&message)
            .map_err(sandbox_error("sending the spec"))?;
        let (reply, fds, ours) = tokio::task::spawn_blocking(move || read_reply(ours))
            .await
            .map_err(|e| StartError::Sandbox(e.to_string()))??;
        match reply {
            Reply::Ready { pid } => {
                sandbox.pid = pid;
                sandbox.listeners = fds.into_iter().map(std::net::TcpListener::from).collect();
                *sandbox.control() = Some(ours);
                Ok(sandbox)
            }
            Reply::Failed { error } if error.starts_with("cannot run ") => {
                Err(StartError::Program(error))
            }
            Reply::Failed { error } => Err(StartError::Sandbox(error)),
            Reply::Probed { .. } => Err(StartError::Sandbox("unexpected reply".into())),
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Option<UnixStream>> {
        // An Option: consistent between statements, so a poisoned lock is still usable.
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The listeners asked for in [`Spec::listen`], in that order (taken once).
    pub fn take_listeners(&mut self) -> Vec<std::net::TcpListener> {
        std::mem::take(&mut self.listeners)
    }

    /// Stops every process of the environment until [`Self::thaw`] (no-op without cgroups).
    pub fn freeze(&self) -> std::io::Result<()> {
        self.cgroup.as_deref().map_or(Ok(()), Cgroup::freeze)
    }

    pub fn thaw(&self) -> std::io::Result<()> {
        self.cgroup.as_deref().map_or(Ok(()), Cgroup::thaw)
    }

    /// The most memory the environment used at once, in bytes (None without cgroups).
    pub fn memory_peak(&self) -> Option<u64> {
        self.cgroup.as_deref().and_then(Cgroup::memory_peak)
    }

    /// Kills every process of the environment.
    pub fn kill(&self) {
        self.control().take();
        match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(),
            // PID 1 of the namespace: the kernel kills the rest of it.
            None => signal_kill(self.pid),
        }
        signal_kill(self.helper_pid);
    }

    /// Waits for the program to end (any number of callers).
    pub async fn exited(&self) -> Exit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(done) => done.unwrap_or(Exit::UNKNOWN),
            Err(_) => Exit::UNKNOWN,
        }
    }
}

fn signal_kill(pid: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Exit {
    const UNKNOWN: Self = Self {
        code: None,
        signal: None,
        oom_killed: false,
    };

    /// From the helper's status: the program's code, or `128 + signal`.
    fn of(status: std::io::Result<std::process::ExitStatus>, oom_killed: bool) -> Self {
        use std::os::unix::process::ExitStatusExt as _;
        let (code, signal) = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) if (129..128 + 65).contains(&c) => (None, Some(c - 128)),
                (Some(c), _) => (Some(c), None),
                (None, signal) => (None, signal),
            },
            Err(_) => (None, None),
        };
        Self {
            code,
            signal,
            oom_killed,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_reply(
    ours: UnixStream,
) -> Result<(Reply, Vec<std::os::fd::OwnedFd>, UnixStream), StartError> {
    ours.set_read_timeout(Some(SETUP_TIMEOUT))
        .map_err(sandbox_error("control socket"))?;
    let mut buffer = vec![0u8; 64 * 1024];
    let (length, fds) = sys::receive_with_fds(&ours, &mut buffer)
        .map_err(sandbox_error("waiting for the sandbox helper"))?;
    if length == 0 {
        return Err(StartError::Sandbox(
            "the sandbox helper exited without answering".into(),
        ));
    }
    let reply = serde_json::from_slice(buffer[..length].trim_ascii_end())
        .map_err(|e| StartError::Sandbox(format!("the sandbox helper's answer: {e}")))?;
    Ok((reply, fds, ours))
}
