//! What an environment is made of: sent by the caller to the helper as JSON.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The program, as a path inside the sandbox (`/var/task/bootstrap`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The program's whole environment (nothing of the helper's is passed on).
    pub env: Vec<(String, String)>,
    /// Host folder mounted read-only at `/var/task` (also the working directory).
    pub code_dir: PathBuf,
    /// Host folders bound read-only at the same place inside (`/usr`, `/lib`, `/etc`...). A
    /// folder that is a symbolic link on the host (`/bin` → `usr/bin`) is the same link inside.
    pub runtime_root: Vec<PathBuf>,
    /// More read-only binds: (host folder, where inside).
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// An empty host folder the helper mounts the new root over, in its own mount namespace.
    pub scratch: PathBuf,
    /// Bytes `/tmp` may hold.
    pub tmp_bytes: u64,
    /// The unprivileged user and group the program runs as.
    pub uid: u32,
    pub gid: u32,
    /// Ports to listen on at 127.0.0.1 inside the environment's network namespace; the
    /// listeners come back to the caller, in this order.
    pub listen: Vec<u16>,
    pub hostname: String,
    /// A user namespace too: the environment's users (its root, the program's user) are
    /// [`crate::USER_NS_BASE`] and up on the host, which are nobody there.
    #[serde(default)]
    pub user_namespace: bool,
}

/// What the environment's cgroup allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Processes and threads at once (a fork bomb stops here).
    pub pids: u32,
    /// CPU share relative to other environments (v2 `cpu.weight` 1..=10000; v1 shares are
    /// scaled from it).
    pub cpu_weight: u32,
}

impl Spec {
    /// The defaults for the host's runtime root: what a dynamically linked program needs.
    pub fn host_runtime_root() -> Vec<PathBuf> {
        ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.symlink_metadata().is_ok())
            .collect()
    }
}
