//! The run tag (see the module docs of [`super`]): making one, and finding and signalling
//! every process that still carries it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{sys, RUN_TAG_VAR};

/// A tag no other run, of this agent or another, carries: pid, start of this agent, counter.
pub(super) fn new_run_tag() -> String {
    static STARTED: OnceLock<u128> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let started = *STARTED.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{}-{started:x}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Signals the run's group, and (off the async workers: it reads /proc) its tagged
/// processes outside the group.
pub(super) fn signal_run(pgid: libc::pid_t, tag: &str, sig: libc::c_int) {
    sys::kill_group(pgid, sig);
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || signal_tagged(&tag, sig));
}

/// SIGKILLs the processes carrying the run's tag until none is left (a process may fork
/// while it is being killed). Killed ones turn into zombies, which no longer show a tag.
pub(super) fn kill_tagged(tag: &str) {
    for _ in 0..50 {
        if signal_tagged(tag, libc::SIGKILL) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(tag, "processes of a finished engine run keep reappearing");
}

/// Sends `sig` to every live process whose environment carries `RUN_TAG_VAR=tag`; returns
/// how many were signalled. Each is pinned with a pidfd and checked again before the
/// signal, so a pid reused in between is never hit.
fn signal_tagged(tag: &str, sig: libc::c_int) -> usize {
    let entry = format!("{RUN_TAG_VAR}={tag}");
    let me = std::process::id();
    let mut n = 0;
    for pid in proc_pids() {
        if u32::try_from(pid).ok() == Some(me) || !has_env_entry(pid, entry.as_bytes()) {
            continue;
        }
        match sys::pidfd_open(pid) {
            Ok(fd) => {
                if has_env_entry(pid, entry.as_bytes()) && sys::pidfd_send_signal(&fd, sig).is_ok() {
                    n += 1;
                }
            }
            // Gone meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            // No pidfds (Linux < 5.3): a plain kill, with a tiny pid-reuse window.
            Err(_) => {
                if sys::kill(pid, sig).is_ok() {
                    n += 1;
                }
            }
        }
    }
    n
}

/// Every pid in /proc (empty where there is none).
pub(crate) fn proc_pids() -> Vec<libc::pid_t> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()))
        .collect()
}

/// Whether the process's initial environment holds exactly `entry` (`NAME=value`). A
/// zombie's, or another user's, reads as empty.
fn has_env_entry(pid: libc::pid_t, entry: &[u8]) -> bool {
    let path = Path::new("/proc").join(pid.to_string()).join("environ");
    std::fs::read(path).is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry))
}
