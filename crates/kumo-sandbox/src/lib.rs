//! Linux sandboxes for native processes. Knows Linux, not kumo: a caller describes a program,
//! the folders it sees and its limits ([`Spec`], [`Limits`]); [`Sandbox::start`] runs it in
//! its own execution environment and hands back its pipes, its loopback listeners and controls
//! (freeze, kill, memory use).
//!
//! An environment is started through a helper process (the caller's binary re-executed with
//! [`HELPER_ARG`], which calls [`helper_main`]), never by `pre_exec` in a threaded process. The
//! helper joins the environment's cgroup, unshares mount, PID, network, IPC, UTS and cgroup
//! namespaces, brings up the namespace's loopback and opens the listeners the caller asked
//! for (passed back over its control socket), then forks the program as PID 1 of the new PID
//! namespace. The program gets a fresh tmpfs root with read-only binds of the runtime root,
//! its code read-only at `/var/task`, a size-limited `/tmp`, `/proc` and a minimal `/dev`
//! (`pivot_root`), an unprivileged user, no capabilities, `no_new_privs`, a seccomp deny-list
//! and Landlock (where the kernel has it). [`probe`] reports which layers this machine has.

mod cgroup;
mod helper;
mod mounts;
mod probe;
mod sandbox;
mod seccomp;
mod spec;
mod sys;

pub use cgroup::{CgroupVersion, Cgroups};
pub use helper::helper_main;
pub use probe::{Isolation, Layer, probe};
pub use sandbox::{Exit, Sandbox, StartError};
pub use spec::{Limits, Spec};

/// The first argument that turns the caller's binary into the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";

/// With a user namespace, uid and gid 0 inside are this on the host, and the range goes on
/// for [`USER_NS_SIZE`] ids: far above any real user (and the usual subordinate id ranges).
pub const USER_NS_BASE: u32 = 0x7000_0000;
pub const USER_NS_SIZE: u32 = 65_536;
