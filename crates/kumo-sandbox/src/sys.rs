//! The few system calls that need `unsafe`: fork, an interface ioctl and closing a range of
//! descriptors. They run in the helper, which is single-threaded.
#![allow(
    unsafe_code,
    reason = "fork and ioctl have no safe wrapper; each use says why it is sound"
)]

use nix::unistd::{ForkResult, fork};
use std::io;

/// Forks the helper. Sound because the helper has one thread (it starts none before this), so
/// the child cannot inherit a lock another thread held.
pub(crate) fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: single-threaded caller, see above.
    unsafe { fork() }
}

/// Sets the `lo` interface up in the current network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    use std::os::fd::AsRawFd as _;
    // SAFETY: the descriptor is open and `request` is a valid ifreq for these two requests.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every descriptor from `first` up but `keep`, so the program inherits only its
/// standard three (and `keep`, which closes on exec).
pub(crate) fn close_from_except(first: u32, keep: u32) -> io::Result<()> {
    for (low, high) in [(first, keep.saturating_sub(1)), (keep + 1, u32::MAX)] {
        if low > high {
            continue;
        }
        // SAFETY: close_range takes no pointers; the descriptors it closes are not used
        // afterwards (the caller execs next).
        let result = unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one message of up to `buffer.len()` bytes and the descriptors sent with it.
pub(crate) fn receive_with_fds(
    socket: &impl std::os::fd::AsRawFd,
    buffer: &mut [u8],
) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd as _;
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let mut iov = [io::IoSliceMut::new(buffer)];
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: descriptors passed with SCM_RIGHTS are new entries in this process's
            // table, owned by nothing else yet.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((message.bytes, fds))
}

/// A descriptor that becomes readable when process `pid` (a child) exits.
pub(crate) fn pidfd_open(pid: nix::unistd::Pid) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: no pointers; on success the result is a new descriptor this function owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}
