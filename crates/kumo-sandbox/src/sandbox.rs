//! The caller's side of an environment: starting the helper, handing it the spec, taking its
//! listeners, and controlling the environment until it is dropped (which kills it).

use crate::cgroup::Cgroup;
use crate::helper::Reply;
use crate::{Cgroups, Limits, Spec, sys};
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
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
    helper: tokio::process::Child,
    /// The program's process id (PID 1 of its namespace), in the caller's namespace.
    pid: i32,
    listeners: Vec<std::net::TcpListener>,
    pub stdout: Option<tokio::process::ChildStdout>,
    pub stderr: Option<tokio::process::ChildStderr>,
    cgroup: Option<Cgroup>,
    /// Closing it makes the helper kill the program.
    control: Option<UnixStream>,
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
            .map(|c| c.create(id, limits))
            .transpose()
            .map_err(sandbox_error("creating the cgroup"))?;
        let (ours, theirs) = UnixStream::pair().map_err(sandbox_error("socketpair"))?;
        let mut helper = tokio::process::Command::new(helper)
            .arg(crate::HELPER_ARG)
            .env_clear()
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                theirs,
            )))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(sandbox_error("starting the sandbox helper"))?;
        let mut sandbox = Self {
            pid: 0,
            listeners: Vec::new(),
            stdout: helper.stdout.take(),
            stderr: helper.stderr.take(),
            helper,
            cgroup,
            control: None,
        };
        if let (Some(cgroup), Some(pid)) = (&sandbox.cgroup, sandbox.helper.id()) {
            cgroup
                .add(pid)
                .map_err(sandbox_error("joining the cgroup"))?;
        }
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
                sandbox.control = Some(ours);
                Ok(sandbox)
            }
            Reply::Failed { error } if error.starts_with("cannot run ") => {
                Err(StartError::Program(error))
            }
            Reply::Failed { error } => Err(StartError::Sandbox(error)),
            Reply::Probed { .. } => Err(StartError::Sandbox("unexpected reply".into())),
        }
    }

    /// The listeners asked for in [`Spec::listen`], in that order (taken once).
    pub fn take_listeners(&mut self) -> Vec<std::net::TcpListener> {
        std::mem::take(&mut self.listeners)
    }

    /// The program's process id in the caller's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Stops every process of the environment until [`Self::thaw`] (no-op without cgroups).
    pub fn freeze(&self) -> std::io::Result<()> {
        self.cgroup.as_ref().map_or(Ok(()), Cgroup::freeze)
    }

    pub fn thaw(&self) -> std::io::Result<()> {
        self.cgroup.as_ref().map_or(Ok(()), Cgroup::thaw)
    }

    /// The most memory the environment used at once, in bytes (None without cgroups).
    pub fn memory_peak(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(Cgroup::memory_peak)
    }

    /// Kills every process of the environment.
    pub fn kill(&mut self) {
        self.control = None;
        match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(),
            None if self.pid > 0 => {
                // PID 1 of the namespace: the kernel kills the rest of it.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            None => {}
        }
        let _ = self.helper.start_kill();
    }

    /// Waits for the program to end.
    pub async fn wait(&mut self) -> Exit {
        let status = self.helper.wait().await;
        let oom_killed = self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        use std::os::unix::process::ExitStatusExt as _;
        let (code, signal) = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) if (129..128 + 65).contains(&c) => (None, Some(c - 128)),
                (Some(c), _) => (Some(c), None),
                (None, signal) => (None, signal),
            },
            Err(_) => (None, None),
        };
        Exit {
            code,
            signal,
            oom_killed,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
        if let Some(cgroup) = self.cgroup.take()
            && !cgroup.try_remove()
        {
            // Waits for the killed processes to leave it; not on the caller's thread.
            std::thread::spawn(move || cgroup.remove());
        }
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
