//! The environment's file system: a fresh tmpfs root holding read-only binds of the runtime
//! root and the code, a bounded `/tmp`, `/proc` and a minimal `/dev`, made the root with
//! `pivot_root`. Runs in the program's process (PID 1 of the new PID namespace, so its
//! `/proc` shows only the environment), inside the helper's private mount namespace.

use crate::Spec;
use anyhow::{Context as _, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// Device nodes bound from the host's `/dev` (harmless, and what runtimes expect).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// Makes every mount of this (new) mount namespace private: nothing mounted from now on
/// propagates back to the host.
pub(crate) fn make_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making mounts private")
}

pub(crate) fn build_root(spec: &Spec) -> Result<()> {
    make_private()?;
    let root = &spec.scratch;
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        NOSUID_NODEV,
        Some("size=1m,mode=0755"),
    )
    .with_context(|| format!("mounting the new root on {}", root.display()))?;

    for host in &spec.runtime_root {
        let inside = root.join(host.strip_prefix("/").unwrap_or(host));
        match std::fs::read_link(host) {
            Ok(target) => symlink(&target, &inside)
                .with_context(|| format!("linking {}", inside.display()))?,
            Err(_) => bind_read_only(host, &inside)?,
        }
    }
    for (host, at) in &spec.binds {
        bind_read_only(host, &root.join(at.strip_prefix("/").unwrap_or(at)))?;
    }
    bind_read_only(&spec.code_dir, &root.join("var/task"))?;

    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        NOSUID_NODEV,
        Some(format!("size={},mode=1777", spec.tmp_bytes.max(4096)).as_str()),
    )
    .context("mounting /tmp")?;

    let proc = root.join("proc");
    std::fs::create_dir_all(&proc)?;
    mount(
        Some("proc"),
        &proc,
        Some("proc"),
        NOSUID_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting /proc")?;

    build_dev(&root.join("dev"))?;

    let old = root.join(".old-root");
    std::fs::create_dir_all(&old)?;
    nix::unistd::pivot_root(root, &old).context("pivot_root")?;
    std::env::set_current_dir("/")?;
    umount2("/.old-root", MntFlags::MNT_DETACH).context("detaching the host's root")?;
    std::fs::remove_dir("/.old-root")?;
    // The root itself (a tmpfs holding mount points) is read-only too.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | NOSUID_NODEV,
        None::<&str>,
    )
    .context("making the root read-only")?;
    Ok(())
}

fn build_dev(dev: &Path) -> Result<()> {
    std::fs::create_dir_all(dev)?;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("size=64k,mode=0755"),
    )
    .context("mounting /dev")?;
    for name in DEVICES {
        let host = PathBuf::from("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let inside = dev.join(name);
        std::fs::File::create(&inside)?;
        mount(
            Some(&host),
            &inside,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("binding {}", host.display()))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link))?;
    }
    let shm = dev.join("shm");
    std::fs::create_dir_all(&shm)?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        NOSUID_NODEV,
        Some("size=1m,mode=1777"),
    )
    .context("mounting /dev/shm")?;
    mount(
        None::<&str>,
        dev,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
        Some("size=64k,mode=0755"),
    )
    .context("making /dev read-only")?;
    Ok(())
}

/// The flags of the mount at `path` a remount must keep: in a user namespace the host's
/// `noexec` and access-time flags of a bind are locked, and a remount without them is refused.
fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(stat) = statvfs(path) else {
        return MsFlags::empty();
    };
    [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(fs, _)| stat.flags().contains(*fs))
    .fold(MsFlags::empty(), |all, (_, ms)| all | ms)
}

/// Binds `host` at `inside` read-only, without set-user-id programs or device files.
fn bind_read_only(host: &Path, inside: &Path) -> Result<()> {
    if host.is_dir() {
        std::fs::create_dir_all(inside)?;
    } else {
        if let Some(parent) = inside.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::create(inside)?;
    }
    mount(
        Some(host),
        inside,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("binding {}", host.display()))?;
    // A bind takes the read-only flag only on a remount.
    mount(
        None::<&str>,
        inside,
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | NOSUID_NODEV
            | locked_flags(inside),
        None::<&str>,
    )
    .with_context(|| format!("making {} read-only", inside.display()))?;
    Ok(())
}
