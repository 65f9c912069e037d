use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child leave the agent's session and group (`setsid`: it leads a new group
/// whose id is its pid) and sets its resource limits, all before exec.
pub fn confine(cmd: &mut Command, address_space: Option<u64>, file_size: Option<u64>) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: setsid, getrlimit and setrlimit are plain
    // system calls, the limits are copied in by value, nothing allocates, and errors
    // are built from errno alone.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if let Some(bytes) = address_space {
                lower_limit(libc::RLIMIT_AS, bytes)?;
            }
            if let Some(bytes) = file_size {
                lower_limit(libc::RLIMIT_FSIZE, bytes)?;
            }
            Ok(())
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Sets both the soft and the hard limit to `bytes`, or to the current hard limit when
/// that is lower (raising it would need privileges). Async-signal-safe.
fn lower_limit(resource: Resource, bytes: u64) -> io::Result<()> {
    let want = libc::rlim_t::try_from(bytes).unwrap_or(libc::RLIM_INFINITY);
    // SAFETY: rlimit is plain old data; both calls only read/write the local.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(resource, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        // RLIM_INFINITY is the largest rlim_t, so this also covers an unlimited hard limit.
        let value = want.min(lim.rlim_max);
        lim.rlim_cur = value;
        lim.rlim_max = value;
        if libc::setrlimit(resource, &lim) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `sig` to the process group; a group that is already gone is not an error.
pub fn kill_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: killpg only reads its two integer arguments.
    let rc = unsafe { libc::killpg(pgid, sig) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, sig, error = %err, "killpg failed");
        }
    }
}

/// Sends `sig` to one process.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill only reads its two integer arguments.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A pidfd for `pid`: it keeps naming that process even if the pid is reused.
#[cfg(target_os = "linux")]
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: fd is a descriptor the kernel just opened for us and nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(target_os = "linux"))]
pub fn pidfd_open(_pid: libc::pid_t) -> io::Result<std::os::fd::OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Sends `sig` to the process behind a pidfd.
#[cfg(target_os = "linux")]
pub fn pidfd_send_signal(fd: &std::os::fd::OwnedFd, sig: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is valid for the call (borrowed); a null siginfo asks for
    // the same info as kill(2); flags must be 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn pidfd_send_signal(_fd: &std::os::fd::OwnedFd, _sig: libc::c_int) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Makes this process a child subreaper: orphaned descendants are re-parented to it
/// instead of to init, so the agent can reap them.
#[cfg(target_os = "linux")]
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument; the rest are unused.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_child_subreaper() -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// This process's session id.
pub fn session_id() -> libc::pid_t {
    // SAFETY: getsid(0) only reads the caller's session id.
    unsafe { libc::getsid(0) }
}

/// Reaps `pid` if it has exited; never blocks. Only for pids no one else waits for.
pub fn try_reap(pid: libc::pid_t) -> bool {
    let mut status: libc::c_int = 0;
    // SAFETY: status is a live local that waitpid only writes.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
}

/// Waits for `pid` to exit, leaving it a zombie.
pub fn wait_exited_no_reap(pid: libc::pid_t) -> io::Result<()> {
    let id = libc::id_t::try_from(pid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative pid"))?;
    loop {
        // SAFETY: siginfo_t is plain old data, so all-zero is a valid value; the pointer
        // is to a live local that waitid only writes within.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reaps `pid`, returning its wait status and user+system CPU seconds.
pub fn reap(pid: libc::pid_t) -> io::Result<(libc::c_int, f64)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data, so all-zero is a valid value; both pointers are
        // to live locals that wait4 only writes within.
        let (rc, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let rc = libc::wait4(pid, &mut status, 0, &mut usage);
            (rc, usage)
        };
        if rc == pid {
            let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
            return Ok((status, secs(usage.ru_utime) + secs(usage.ru_stime)));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
