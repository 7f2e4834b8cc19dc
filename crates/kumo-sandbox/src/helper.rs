//! The helper: the caller's binary re-executed (see [`crate::HELPER_ARG`]). Its standard
//! input is the control socket: it reads the [`Spec`], builds the environment, answers one
//! [`Reply`] (with the listeners' descriptors when ready), and exits with the program's
//! status (a signal `s` as `128 + s`). When the caller closes the control socket the program
//! is killed, so an environment never outlives the one that started it.

use crate::{Spec, mounts, seccomp, sys};
use anyhow::{Context as _, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{IoSlice, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};

/// The helper's exit code when the environment could not be built.
pub(crate) const SETUP_FAILED: i32 = 125;

/// The namespaces every environment gets.
pub(crate) const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWCGROUP);

/// What the helper answers once, on the control socket, as one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reply {
    /// The program runs (exec succeeded); `pid` is its process id in the caller's namespace.
    /// The listeners come with this message, in the order asked for.
    Ready {
        pid: i32,
    },
    Failed {
        error: String,
    },
    /// The probe's findings (`__sandbox probe`).
    Probed {
        layers: Vec<crate::Layer>,
    },
}

/// Runs the helper; never returns. Call it first thing in `main` when the first argument is
/// [`crate::HELPER_ARG`], before any thread starts.
pub fn helper_main() -> ! {
    if std::env::args().nth(2).as_deref() == Some("probe") {
        let layers = crate::probe::probe_here();
        let _ = reply(&Reply::Probed { layers }, &[]);
        std::process::exit(0);
    }
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            let _ = reply(
                &Reply::Failed {
                    error: format!("{e:#}"),
                },
                &[],
            );
            SETUP_FAILED
        }
    };
    std::process::exit(code)
}

fn run() -> Result<i32> {
    let spec = read_spec().context("reading the environment's spec")?;
    if spec.user_namespace {
        enter_user_namespace().context("creating the user namespace")?;
    }
    nix::sched::unshare(NAMESPACES).context("creating namespaces")?;
    sys::loopback_up().context("bringing up the loopback interface")?;
    let listeners = spec
        .listen
        .iter()
        .map(|port| {
            std::net::TcpListener::bind(("127.0.0.1", *port))
                .with_context(|| format!("listening on 127.0.0.1:{port}"))
        })
        .collect::<Result<Vec<_>>>()?;
    nix::unistd::sethostname(&spec.hostname).context("setting the host name")?;
    // Closed by the program's exec on success; carries the reason on failure.
    let (errors_in, errors_out) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("making a pipe")?;

    match sys::fork_single_threaded().context("forking the program")? {
        ForkResult::Child => {
            drop(errors_in);
            drop(listeners);
            let error = start_program(&spec, &errors_out).unwrap_err();
            let mut out = std::fs::File::from(errors_out);
            let _ = write!(out, "{error:#}");
            std::process::exit(127)
        }
        ForkResult::Parent { child } => {
            drop(errors_out);
            let mut failure = String::new();
            std::fs::File::from(errors_in).read_to_string(&mut failure)?;
            if !failure.is_empty() {
                let _ = waitpid(child, None);
                anyhow::bail!("{failure}");
            }
            let fds: Vec<i32> = listeners.iter().map(|l| l.as_raw_fd()).collect();
            reply(
                &Reply::Ready {
                    pid: child.as_raw(),
                },
                &fds,
            )?;
            drop(listeners);
            kill_if_control_closes(child)?;
            Ok(wait_exit_code(child))
        }
    }
}

/// Moves this process into a new user namespace whose ids 0.. are [`crate::USER_NS_BASE`]..
/// on the host, and becomes its root. The maps of a range can only be written from the parent
/// namespace, so a forked child (still there, and root) writes them once this process has
/// unshared. The namespaces made after this one belong to it.
pub(crate) fn enter_user_namespace() -> Result<()> {
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let this = nix::unistd::getpid();
    match sys::fork_single_threaded().context("forking the id mapper")? {
        ForkResult::Child => {
            drop(go_write);
            let mut byte = [0u8; 1];
            let unshared = matches!(nix::unistd::read(&go_read, &mut byte), Ok(1));
            let map = format!("0 {} {}\n", crate::USER_NS_BASE, crate::USER_NS_SIZE);
            let mapped = unshared
                && std::fs::write(format!("/proc/{this}/uid_map"), &map).is_ok()
                && std::fs::write(format!("/proc/{this}/gid_map"), &map).is_ok();
            std::process::exit(if mapped { 0 } else { 1 })
        }
        ForkResult::Parent { child } => {
            drop(go_read);
            let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
            if unshared.is_ok() {
                nix::unistd::write(&go_write, b"u")?;
            }
            drop(go_write);
            let mapped = matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)));
            unshared.context("unshare(CLONE_NEWUSER)")?;
            anyhow::ensure!(mapped, "the user namespace's id maps could not be written");
            let root_gid = Gid::from_raw(0);
            nix::unistd::setresgid(root_gid, root_gid, root_gid).context("setresgid")?;
            let root = Uid::from_raw(0);
            nix::unistd::setresuid(root, root, root).context("setresuid")?;
            Ok(())
        }
    }
}

fn read_spec() -> Result<Spec> {
    let mut length = [0u8; 4];
    let mut stdin = std::io::stdin().lock();
    stdin.read_exact(&mut length)?;
    let mut json = vec![0u8; u32::from_le_bytes(length) as usize];
    stdin.read_exact(&mut json)?;
    Ok(serde_json::from_slice(&json)?)
}

/// Sends `message` on the control socket (standard input), with descriptors `fds`.
fn reply(message: &Reply, fds: &[i32]) -> Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<UnixAddr>(0, &[IoSlice::new(&line)], cmsgs, MsgFlags::empty(), None)
        .context("answering on the control socket")?;
    Ok(())
}

/// Waits until the program exits or the caller closes the control socket (or exits); in the
/// second case the program (PID 1 of its namespace, so everything it started with it) is
/// killed. (No thread: a process that unshared its PID namespace cannot start one.)
fn kill_if_control_closes(child: Pid) -> Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd as _;
    let exited = sys::pidfd_open(child).context("pidfd_open")?;
    let stdin = std::io::stdin();
    loop {
        let mut fds = [
            PollFd::new(exited.as_fd(), PollFlags::POLLIN),
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(());
        }
        if fds[1].any().unwrap_or(false) {
            let mut sink = [0u8; 64];
            if matches!(nix::unistd::read(stdin.as_fd(), &mut sink), Ok(0) | Err(_)) {
                let _ = kill(child, Signal::SIGKILL);
                return Ok(());
            }
        }
    }
}

fn wait_exit_code(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return SETUP_FAILED,
        }
    }
}

/// In the forked child (PID 1 of the new PID namespace): builds the root, drops every
/// privilege and execs the program. Returns only on failure.
fn start_program(spec: &Spec, keep: &OwnedFd) -> Result<std::convert::Infallible> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    mounts::build_root(spec)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    restrict_file_access()?;
    drop_privileges(spec)?;
    seccomp::apply()?;
    std::env::set_current_dir("/var/task").context("entering /var/task")?;

    nix::unistd::dup2_stdin(&null).context("replacing standard input")?;
    drop(null);
    let keep = keep.as_raw_fd() as u32;
    sys::close_from_except(3, keep).context("closing inherited descriptors")?;

    let program = CString::new(spec.program.as_os_str().as_encoded_bytes())?;
    let args = std::iter::once(program.clone())
        .chain(
            spec.args
                .iter()
                .map(|a| CString::new(a.as_str()))
                .collect::<Result<Vec<_>, _>>()?,
        )
        .collect::<Vec<_>>();
    let env = spec
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let error = nix::unistd::execve(&program, &args, &env).unwrap_err();
    Err(anyhow::anyhow!(
        "cannot run {}: {error}",
        spec.program.display()
    ))
}

/// Landlock, where the kernel has it: everything readable and executable, writable only
/// under `/tmp`, `/dev/shm` and the harmless devices.
fn restrict_file_access() -> Result<()> {
    use landlock::{ABI, Access, AccessFs, Ruleset, RulesetAttr as _, RulesetCreatedAttr as _};
    let abi = ABI::V5;
    let writable = [
        "/tmp",
        "/dev/shm",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/tty",
    ];
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(landlock::path_beneath_rules(
            ["/"],
            AccessFs::from_read(abi),
        ))?
        .add_rules(landlock::path_beneath_rules(
            writable,
            AccessFs::from_all(abi),
        ))?
        .restrict_self()
        .context("applying Landlock")?;
    Ok(())
}

/// No capabilities in any set, the unprivileged user, no new privileges, and death with
/// the helper.
fn drop_privileges(spec: &Spec) -> Result<()> {
    use caps::CapSet;
    caps::clear(None, CapSet::Bounding).context("dropping the capability bounding set")?;
    caps::clear(None, CapSet::Ambient).context("dropping ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("dropping inheritable capabilities")?;
    let gid = Gid::from_raw(spec.gid);
    nix::unistd::setgroups(&[gid]).context("setgroups")?;
    nix::unistd::setgid(gid).context("setgid")?;
    nix::unistd::setuid(Uid::from_raw(spec.uid)).context("setuid")?;
    anyhow::ensure!(
        caps::read(None, CapSet::Effective)?.is_empty()
            && caps::read(None, CapSet::Permitted)?.is_empty(),
        "capabilities are left after setuid"
    );
    nix::sys::prctl::set_no_new_privs().context("no_new_privs")?;
    // After setuid, which clears it.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    Ok(())
}
