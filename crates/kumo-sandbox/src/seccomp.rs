//! The system calls a sandboxed program may not make: a deny-list (everything else is
//! allowed, as runtimes need a broad set). Denied calls fail with EPERM; `clone3` fails with
//! ENOSYS so C libraries fall back to `clone`, whose flags can be inspected.

use anyhow::{Context as _, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// Kernel-level operations no function needs: mounts and namespaces, tracing other
/// processes, loading code into the kernel, keyrings, clocks, swap, reboot.
const DENIED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_lookup_dcookie,
    libc::SYS_vhangup,
];

/// Every `CLONE_NEW*` flag: `clone` with any of them is refused.
const NEW_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The two filters to install, in order.
pub(crate) fn filters() -> Result<[BpfProgram; 2]> {
    let arch = std::env::consts::ARCH
        .try_into()
        .context("seccomp: unsupported architecture")?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|call| (*call, Vec::new())).collect();
    for flag in 0..64 {
        let bit = 1u64 << flag;
        if NEW_NAMESPACES & bit != 0 {
            denied
                .entry(libc::SYS_clone)
                .or_default()
                .push(SeccompRule::new(vec![SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(bit),
                    bit,
                )?])?);
        }
    }
    let deny = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok([deny.try_into()?, no_clone3.try_into()?])
}

/// Installs both filters on the calling thread (no_new_privs must be set).
pub(crate) fn apply() -> Result<()> {
    for filter in filters()? {
        seccompiler::apply_filter(&filter).context("installing the seccomp filter")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filters_compile_for_this_architecture() {
        let [deny, clone3] = super::filters().unwrap();
        assert!(deny.len() > super::DENIED.len());
        assert!(!clone3.is_empty());
    }
}
