//! Which isolation layers this machine gives: each is tried for real, in a throwaway child of
//! the helper, so the answer is what an environment would get.

use crate::helper::{NAMESPACES, Reply};
use crate::{CgroupVersion, Cgroups, sys};
use anyhow::{Context as _, Result};
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};
use std::io::{Read as _, Write as _};
use std::path::Path;

/// The name of the user namespace's layer (optional: environments get one where it works).
pub(crate) const USER_NAMESPACE: &str = "user namespace";

/// One layer and whether it works here (if not, why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    /// None: it works.
    pub missing: Option<String>,
}

/// What an environment started on this machine is isolated by.
#[derive(Debug, Clone, Serialize)]
pub struct Isolation {
    pub layers: Vec<Layer>,
    /// The cgroup hierarchy in use, if any.
    pub cgroup: Option<CgroupVersion>,
}

impl Isolation {
    /// Whether environments can have a user namespace here.
    pub fn user_namespace(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.name == USER_NAMESPACE && l.missing.is_none())
    }

    /// The layers that are missing, with their reasons.
    pub fn missing(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| l.missing.is_some())
    }
}

/// Probes through `helper` (the binary that runs [`crate::helper_main`]); `cgroups` is the
/// outcome of opening the cgroup hierarchy.
pub fn probe(helper: &Path, cgroups: &std::io::Result<Cgroups>) -> Isolation {
    let mut layers = match probe_in_helper(helper) {
        Ok(layers) => layers,
        Err(e) => vec![Layer {
            name: "sandbox helper".into(),
            missing: Some(format!("{e:#}")),
        }],
    };
    layers.push(Layer {
        name: "cgroups".into(),
        missing: cgroups.as_ref().err().map(|e| e.to_string()),
    });
    Isolation {
        layers,
        cgroup: cgroups.as_ref().ok().map(|c| c.version),
    }
}

fn probe_in_helper(helper: &Path) -> Result<Vec<Layer>> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let output = std::process::Command::new(helper)
        .args([crate::HELPER_ARG, "probe"])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("running {}", helper.display()))?;
    let mut answer = String::new();
    (&ours).read_to_string(&mut answer)?;
    match serde_json::from_str(answer.trim()) {
        Ok(Reply::Probed { layers }) => Ok(layers),
        _ => anyhow::bail!(
            "the helper did not answer ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// In the helper: tries each layer in a child of its own.
pub(crate) fn probe_here() -> Vec<Layer> {
    type Attempt = fn() -> Result<()>;
    let tries: [(&str, Attempt); 7] = [
        (
            "mount, pid, network, ipc, uts and cgroup namespaces",
            || Ok(nix::sched::unshare(NAMESPACES)?),
        ),
        (USER_NAMESPACE, || {
            crate::helper::enter_user_namespace()?;
            nix::sched::unshare(NAMESPACES)?;
            crate::mounts::make_private()
        }),
        ("pivot_root", try_pivot_root),
        ("loopback network", || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
            Ok(sys::loopback_up()?)
        }),
        ("capability drop", || {
            Ok(caps::clear(None, caps::CapSet::Bounding)?)
        }),
        ("seccomp", || {
            nix::sys::prctl::set_no_new_privs()?;
            crate::seccomp::apply()?;
            match nix::sched::unshare(CloneFlags::CLONE_NEWUTS) {
                Err(nix::errno::Errno::EPERM) => Ok(()),
                other => anyhow::bail!("the filter did not refuse unshare: {other:?}"),
            }
        }),
        ("landlock", try_landlock),
    ];
    let dir = pivot_dir(nix::unistd::getpid());
    let _ = std::fs::create_dir_all(&dir);
    let layers = tries
        .into_iter()
        .map(|(name, attempt)| Layer {
            name: name.into(),
            missing: in_child(attempt).err().map(|e| format!("{e:#}")),
        })
        .collect();
    let _ = std::fs::remove_dir(&dir);
    layers
}

/// The host folder the pivot_root attempt mounts over: made and removed by the helper (the
/// child cannot remove it: a mount covers it in the child's namespace).
fn pivot_dir(helper: nix::unistd::Pid) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kumo-probe-{helper}"))
}

fn try_pivot_root() -> Result<()> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    crate::mounts::make_private()?;
    let dir = pivot_dir(nix::unistd::getppid());
    mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k"),
    )?;
    std::fs::create_dir(dir.join("old"))?;
    nix::unistd::pivot_root(&dir, &dir.join("old"))?;
    Ok(())
}

fn try_landlock() -> Result<()> {
    use landlock::{ABI, Access, AccessFs, Ruleset, RulesetAttr as _, RulesetCreatedAttr as _};
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI::V1))?
        .create()?
        .add_rules(landlock::path_beneath_rules(
            ["/"],
            AccessFs::from_read(ABI::V1),
        ))?
        .restrict_self()?;
    match status.ruleset {
        landlock::RulesetStatus::NotEnforced => {
            anyhow::bail!("the kernel does not enforce Landlock")
        }
        _ => Ok(()),
    }
}

/// Runs `attempt` in a forked child; its error comes back through a pipe.
fn in_child(attempt: fn() -> Result<()>) -> Result<()> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match sys::fork_single_threaded()? {
        ForkResult::Child => {
            drop(read);
            let code = match attempt() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write!(std::fs::File::from(write), "{e:#}");
                    1
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(write);
            let mut error = String::new();
            std::fs::File::from(read).read_to_string(&mut error)?;
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                _ if !error.is_empty() => anyhow::bail!("{error}"),
                status => anyhow::bail!("the probe ended with {status:?}"),
            }
        }
    }
}
