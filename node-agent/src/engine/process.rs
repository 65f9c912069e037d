//! Runs an engine binary as a supervised child process, contained so that nothing it does
//! can outlive its run or take the agent down with it.
//!
//! - **Session and group.** The child starts a new session (`setsid` between fork and
//!   exec), so it leads its own process group: a timeout or cancellation signals the whole
//!   group (SIGTERM, the grace period, SIGKILL), and whatever is left of the group is killed
//!   when the child exits.
//! - **Run tag.** Every run gets a unique value of [`RUN_TAG_VAR`] in the child's
//!   environment, inherited by everything it starts, including processes that leave the
//!   group with `setsid`. When the run ends, every process still carrying the tag is
//!   killed (the environment-cookie scheme of Jenkins' ProcessTreeKiller). Only a process
//!   that both leaves the group and clears its environment escapes this; the orphan reaper
//!   in [`crate::sandbox`] kills such leftovers once no engine is running.
//! - **Limits.** `RLIMIT_AS` and `RLIMIT_FSIZE`, set between fork and exec from the
//!   [`ProcessLimits`] in scope (see [`with_limits`]) and inherited by every descendant. A
//!   run that dies of them fails with [`EngineError::LimitExceeded`].
//! - **Output.** stdout and stderr share one pipe that the agent drains into the log file:
//!   the first [`OUTPUT_HEAD_BYTES`] are written as they come, the last
//!   [`OUTPUT_TAIL_BYTES`] are kept in memory and appended at the end, and anything in
//!   between is counted and dropped. An engine printing gigabytes costs the agent neither
//!   memory nor disk, and never blocks on a full pipe.
//! - **Reaping.** The child is waited for with `wait4` so that the kernel's CPU accounting
//!   comes back with the exit status. Its pid is registered (see [`leaders`]) from fork to
//!   reap, so the agent's orphan reaper never takes its exit status.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::EngineError;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The environment variable that tags every process of one run (see the module docs).
pub const RUN_TAG_VAR: &str = "DOCKYARD_ENGINE_RUN";

/// Engine output written to the log as it arrives.
pub const OUTPUT_HEAD_BYTES: usize = 64 * 1024;

/// Engine output kept (in memory, then in the log) from the end of a run.
pub const OUTPUT_TAIL_BYTES: usize = 1024 * 1024;

/// After the engine has exited and its processes are killed, how long the output pipe may
/// stay open (a process outside the run holding it) before the agent stops reading.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Log lines (lower case) that mean a process could not get memory.
const MEMORY_FAILURE_MARKERS: &[&str] = &[
    "bad_alloc",
    "cannot allocate",
    "out of memory",
    "memoryerror",
    "insufficient memory",
    "memory exhausted",
    "failed to allocate",
];

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// Opened in append mode: several runs of one task can share a log.
    pub log_path: PathBuf,
    /// `Duration::ZERO` means no limit.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL; [`ProcessLimits::grace`] overrides it.
    pub grace: Duration,
    pub cancel: CancellationToken,
    /// Extra environment for the child on top of the agent's own (e.g. `CUDA_VISIBLE_DEVICES`).
    pub env: Vec<(OsString, OsString)>,
}

/// Limits the agent puts on every process of a run. They travel in a task-local (see
/// [`with_limits`]) rather than in [`ProcessSpec`] because they are the node's policy for
/// one task, set by the runner, while each engine adapter builds its own specs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// `RLIMIT_AS` in bytes; `None` = unlimited.
    pub address_space: Option<u64>,
    /// `RLIMIT_FSIZE` in bytes; `None` = unlimited.
    pub file_size: Option<u64>,
    /// Replaces [`ProcessSpec::grace`].
    pub grace: Option<Duration>,
    /// Cores the task was given: OpenMP programs (obabel's force fields, for one) get as
    /// many threads, 1 outside a task. Unset, OpenMP takes every core of the node in each
    /// process, and with one task per core its spin-waiting workers fight each other: two
    /// SMILES preparations side by side on a 2-core node took 30-120 s each instead of
    /// 0.2 s. An `OMP_NUM_THREADS` the agent was started with, or the spec sets, wins.
    pub threads: Option<u32>,
}

tokio::task_local! {
    static LIMITS: ProcessLimits;
}

const OMP_THREADS_VAR: &str = "OMP_NUM_THREADS";

/// Runs `fut` with `limits` applied to every [`run_process`] it makes (in the same task).
pub async fn with_limits<F: Future>(limits: ProcessLimits, fut: F) -> F::Output {
    LIMITS.scope(limits, fut).await
}

fn current_limits() -> ProcessLimits {
    LIMITS.try_with(|l| *l).unwrap_or_default()
}

/// Bytes as whole MB (2^20 bytes), as the agent's limit flags count them.
pub fn mb(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl ExitKind {
    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }

    pub fn code(self) -> Option<i32> {
        match self {
            ExitKind::Code(c) => Some(c),
            ExitKind::Signal(_) => None,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            ExitKind::Code(_) => None,
            ExitKind::Signal(s) => Some(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessOutcome {
    pub exit: ExitKind,
    /// User + system time of the child (and any descendants it waited for).
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
}

/// Engine processes this agent started and has not reaped yet (group leaders, one per
/// run). The orphan reaper holds this lock while it reaps, and a leader is added under the
/// same lock as its fork, so a pid seen by the reaper is either registered or not ours.
static LEADERS: Mutex<BTreeSet<libc::pid_t>> = Mutex::new(BTreeSet::new());

pub(crate) fn leaders() -> MutexGuard<'static, BTreeSet<libc::pid_t>> {
    // The set stays consistent even if a holder panicked: every update is one insert/remove.
    LEADERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tag no other run, of this agent or another, carries: pid, start of this agent, counter.
fn new_run_tag() -> String {
    static STARTED: OnceLock<u128> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let started = *STARTED.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{}-{started:x}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs the process to completion, or stops it on timeout/cancellation: SIGTERM to its
/// group and tagged processes, the grace period, then SIGKILL. Whatever happens (including
/// the future being dropped), the child is reaped and every process of the run is killed.
pub async fn run_process(spec: ProcessSpec) -> Result<ProcessOutcome, EngineError> {
    let limits = current_limits();
    let grace = limits.grace.unwrap_or(spec.grace);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(|e| EngineError::Io(format!("open log {}: {e}", spec.log_path.display())))?;
    let mut header = format!("$ {}", spec.program.display());
    for arg in &spec.args {
        header.push(' ');
        header.push_str(&arg.to_string_lossy());
    }
    header.push('\n');
    log.write_all(header.as_bytes())
        .map_err(|e| EngineError::Io(format!("write log {}: {e}", spec.log_path.display())))?;

    let (reader, writer) = std::io::pipe().map_err(|e| EngineError::Spawn(format!("output pipe: {e}")))?;
    let output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(|e| EngineError::Spawn(format!("output pipe: {e}")))?;
    let stderr = writer.try_clone().map_err(|e| EngineError::Spawn(format!("output pipe: {e}")))?;
    let tag = new_run_tag();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(stderr)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(RUN_TAG_VAR, &tag);
    if std::env::var_os(OMP_THREADS_VAR).is_none() && !spec.env.iter().any(|(k, _)| k == OMP_THREADS_VAR) {
        cmd.env(OMP_THREADS_VAR, limits.threads.unwrap_or(1).max(1).to_string());
    }
    sys::confine(&mut cmd, limits.address_space, limits.file_size);

    let start = Instant::now();
    let pid = spawn(&mut cmd)
        .await
        .map_err(|e| EngineError::Spawn(format!("{}: {e}", spec.program.display())))?;
    // Closes the agent's copies of the pipe's write end: the output ends when the run's
    // processes have closed theirs.
    drop(cmd);

    let mut guard = GroupGuard { pgid: pid, armed: true };
    // A task of its own: it reaps the child and finishes the log even if this future is
    // dropped (the guard then kills the group, which ends the wait).
    let mut supervisor = tokio::spawn(supervise(pid, tag.clone(), output, log));

    let deadline = (!spec.timeout.is_zero()).then(|| tokio::time::Instant::from_std(start + spec.timeout));
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };

    let stop = tokio::select! {
        res = &mut supervisor => {
            guard.armed = false;
            return finish(res, &spec, &limits, start);
        }
        () = expired => EngineError::Timeout(spec.timeout),
        () = spec.cancel.cancelled() => EngineError::Cancelled,
    };

    tracing::debug!(pid, reason = %stop, "stopping engine process group");
    signal_run(pid, &tag, libc::SIGTERM);
    let res = match tokio::time::timeout(grace, &mut supervisor).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(pid, ?grace, "engine ignored SIGTERM; sending SIGKILL");
            signal_run(pid, &tag, libc::SIGKILL);
            supervisor.await
        }
    };
    guard.armed = false;
    if let Err(e) = finish(res, &spec, &limits, start) {
        tracing::debug!(pid, error = %e, "stopped engine");
    }
    Err(stop)
}

/// Signals the run's group, and (off the async workers: it reads /proc) its tagged
/// processes outside the group.
fn signal_run(pgid: libc::pid_t, tag: &str, sig: libc::c_int) {
    sys::kill_group(pgid, sig);
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || signal_tagged(&tag, sig));
}

/// Retries ETXTBSY: exec fails with it while any process still holds the binary open for
/// writing, e.g. a fork elsewhere in this process inheriting the descriptor of an engine
/// binary or wrapper script that was just written, or an upgrade replacing the binary.
/// The child is registered as a leader under the same lock as the fork (see [`LEADERS`]).
async fn spawn(cmd: &mut Command) -> std::io::Result<libc::pid_t> {
    let mut attempt = 0;
    loop {
        let res = {
            let mut leaders = leaders();
            cmd.spawn().map(|child| {
                // Linux pids are at most 2^22, so the cast is exact. The child is managed by
                // pid from here on (std's Child neither kills nor reaps on drop).
                let pid = child.id() as libc::pid_t;
                leaders.insert(pid);
                pid
            })
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// What the supervisor found once the run's processes are gone.
struct Finished {
    waited: std::io::Result<(ExitKind, f64)>,
    output: Captured,
}

/// Waits for the child (on a blocking thread) while draining its output, then gives the
/// output a moment to end.
async fn supervise(pid: libc::pid_t, tag: String, output: pipe::Receiver, log: File) -> Finished {
    let stop = CancellationToken::new();
    let drain = drain_output(output, log, stop.clone());
    tokio::pin!(drain);
    let mut waiter = tokio::task::spawn_blocking(move || wait_and_reap(pid, &tag));
    let mut captured = None;
    let waited = loop {
        tokio::select! {
            res = &mut waiter => break res,
            c = &mut drain, if captured.is_none() => captured = Some(c),
        }
    };
    let output = match captured {
        Some(c) => c,
        None => match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut drain).await {
            Ok(c) => c,
            Err(_) => {
                tracing::warn!(
                    pid,
                    "engine output still open after the run ended; a process outside the run holds it"
                );
                stop.cancel();
                drain.await
            }
        },
    };
    let waited = waited.unwrap_or_else(|e| Err(std::io::Error::other(format!("wait thread failed: {e}"))));
    Finished { waited, output }
}

/// The end of a run's output and how writing its log went.
#[derive(Debug, Default)]
struct Captured {
    /// The last [`OUTPUT_TAIL_BYTES`] (at most) of the output.
    recent: Vec<u8>,
    /// Bytes neither in the head written to the log nor in `recent`.
    omitted: u64,
    /// The first error writing the log (e.g. a full disk).
    write_error: Option<std::io::Error>,
}

/// Copies the output into the log: the head as it comes, the tail at the end (see the
/// module docs). Reads until the output ends or `stop`.
async fn drain_output(mut output: pipe::Receiver, mut log: File, stop: CancellationToken) -> Captured {
    let mut buf = vec![0u8; 64 * 1024];
    let mut c = Captured::default();
    let mut total: u64 = 0;
    loop {
        let n = tokio::select! {
            r = output.read(&mut buf) => match r {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading engine output failed");
                    break;
                }
            },
            () = stop.cancelled() => break,
        };
        let chunk = &buf[..n];
        let head_left = (OUTPUT_HEAD_BYTES as u64).saturating_sub(total);
        if head_left > 0 && c.write_error.is_none() {
            let k = chunk.len().min(usize::try_from(head_left).unwrap_or(usize::MAX));
            if let Err(e) = log.write_all(&chunk[..k]) {
                c.write_error = Some(e);
            }
        }
        total += n as u64;
        c.recent.extend_from_slice(chunk);
        // Trimmed in batches: amortised O(1) per byte, at most twice the tail in memory.
        if c.recent.len() >= 2 * OUTPUT_TAIL_BYTES {
            c.recent.drain(..c.recent.len() - OUTPUT_TAIL_BYTES);
        }
    }
    if c.recent.len() > OUTPUT_TAIL_BYTES {
        c.recent.drain(..c.recent.len() - OUTPUT_TAIL_BYTES);
    }
    // `recent` covers [total - recent.len(), total); the log already has [0, head).
    let head = total.min(OUTPUT_HEAD_BYTES as u64);
    let recent_from = total - c.recent.len() as u64;
    c.omitted = recent_from.saturating_sub(head);
    let unwritten = usize::try_from(head.saturating_sub(recent_from))
        .unwrap_or(usize::MAX)
        .min(c.recent.len());
    if c.write_error.is_none() {
        let mut rest = Vec::new();
        if c.omitted > 0 {
            rest.extend_from_slice(format!("\n[dockyard: {} bytes of engine output omitted]\n", c.omitted).as_bytes());
        }
        rest.extend_from_slice(&c.recent[unwritten..]);
        if let Err(e) = log.write_all(&rest) {
            c.write_error = Some(e);
        }
    }
    c
}

/// Turns what the supervisor found into the run's result.
fn finish(
    res: Result<Finished, tokio::task::JoinError>,
    spec: &ProcessSpec,
    limits: &ProcessLimits,
    start: Instant,
) -> Result<ProcessOutcome, EngineError> {
    let f = res.map_err(|e| EngineError::Io(format!("engine supervisor failed: {e}")))?;
    let (exit, cpu_seconds) = f.waited.map_err(|e| EngineError::Io(format!("wait for engine: {e}")))?;
    if let Some(reason) = limit_reason(exit, limits, &f.output.recent) {
        return Err(EngineError::LimitExceeded(reason));
    }
    if let Some(e) = f.output.write_error {
        // A full disk: the engine's own output files are unlikely to be complete either.
        return Err(EngineError::Io(format!("write log {}: {e}", spec.log_path.display())));
    }
    Ok(ProcessOutcome {
        exit,
        cpu_seconds,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Why the run failed, when it was one of the agent's limits.
fn limit_reason(exit: ExitKind, limits: &ProcessLimits, output: &[u8]) -> Option<String> {
    if let (ExitKind::Signal(libc::SIGXFSZ), Some(max)) = (exit, limits.file_size) {
        return Some(format!("engine exceeded the file-size limit of {} MB", mb(max)));
    }
    let max = limits.address_space?;
    if exit.success() {
        return None;
    }
    // The end of the output is where a failed allocation is reported.
    let end = &output[output.len().saturating_sub(64 * 1024)..];
    let text = String::from_utf8_lossy(end).to_lowercase();
    MEMORY_FAILURE_MARKERS
        .iter()
        .any(|m| text.contains(m))
        .then(|| format!("engine exceeded the memory limit of {} MB", mb(max)))
}

/// Blocks until the child exits, kills what is left of the run, then reaps the child.
///
/// The leader stays a zombie between the first wait and the reap, which keeps its pid (and
/// so the group id) from being reused while the group is signalled; it leaves the leader
/// set only once reaped.
fn wait_and_reap(pid: libc::pid_t, tag: &str) -> std::io::Result<(ExitKind, f64)> {
    let waited = sys::wait_exited_no_reap(pid);
    sys::kill_group(pid, libc::SIGKILL);
    kill_tagged(tag);
    let reaped = waited.and_then(|()| sys::reap(pid));
    leaders().remove(&pid);
    let (status, cpu_seconds) = reaped?;
    let exit = if libc::WIFSIGNALED(status) {
        ExitKind::Signal(libc::WTERMSIG(status))
    } else {
        ExitKind::Code(libc::WEXITSTATUS(status))
    };
    Ok((exit, cpu_seconds))
}

/// SIGKILLs the processes carrying the run's tag until none is left (a process may fork
/// while it is being killed). Killed ones turn into zombies, which no longer show a tag.
fn kill_tagged(tag: &str) {
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

/// Kills the group if the future running it is dropped before the child exits; the
/// supervisor then kills the tagged processes and reaps the child.
struct GroupGuard {
    pgid: libc::pid_t,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            sys::kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Every `unsafe` call of the agent: process control that std does not offer.
#[allow(unsafe_code)]
pub(crate) mod sys {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str, timeout: Duration) -> ProcessSpec {
        ProcessSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            log_path: dir.join("run.log"),
            timeout,
            grace: Duration::from_millis(500),
            cancel: CancellationToken::new(),
            env: Vec::new(),
        }
    }

    /// Gone, or a zombie waiting for init (it can no longer run).
    fn process_gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
        }
    }

    async fn wait_gone(pid: i32) -> bool {
        for _ in 0..50 {
            if process_gone(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn read_pid(path: &std::path::Path) -> i32 {
        let text = std::fs::read_to_string(path).expect("pid file");
        text.trim().parse().expect("pid")
    }

    #[tokio::test]
    async fn exit_codes_and_log_capture() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_process(spec(
            dir.path(),
            "echo to-stdout; echo to-stderr >&2; exit 3",
            Duration::from_secs(10),
        ))
        .await
        .expect("runs");
        assert_eq!(out.exit, ExitKind::Code(3));
        assert!(!out.exit.success());
        let log = std::fs::read_to_string(dir.path().join("run.log")).expect("log");
        assert!(log.starts_with("$ /bin/sh -c echo to-stdout"), "{log}");
        assert!(log.contains("to-stdout\n") && log.contains("to-stderr\n"), "{log}");

        let out = run_process(spec(dir.path(), "true", Duration::ZERO)).await.expect("runs");
        assert!(out.exit.success());

        let out = run_process(spec(dir.path(), "kill -SEGV $$", Duration::from_secs(10)))
            .await
            .expect("runs");
        assert_eq!(out.exit, ExitKind::Signal(libc::SIGSEGV));
    }

    #[tokio::test]
    async fn measures_cpu_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_process(spec(
            dir.path(),
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
            Duration::from_secs(60),
        ))
        .await
        .expect("runs");
        assert!(out.exit.success());
        assert!(out.cpu_seconds > 0.05, "{out:?}");
        assert!(out.cpu_seconds <= out.wall_seconds * 2.0 + 0.1, "{out:?}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let err = run_process(spec(
            dir.path(),
            "sleep 100 & echo $! > grandchild.pid; echo $$ > child.pid; sleep 100",
            Duration::from_millis(500),
        ))
        .await
        .expect_err("times out");
        assert!(matches!(err, EngineError::Timeout(d) if d == Duration::from_millis(500)));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let grandchild = read_pid(&dir.path().join("grandchild.pid"));
        let child = read_pid(&dir.path().join("child.pid"));
        assert!(wait_gone(grandchild).await, "grandchild {grandchild} survived");
        assert!(wait_gone(child).await, "child {child} survived");
    }

    #[tokio::test]
    async fn sigterm_ignored_escalates_to_sigkill() {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        // Ignored dispositions survive exec, so the whole group ignores SIGTERM.
        let err = run_process(spec(
            dir.path(),
            "trap '' TERM; sleep 100 & echo $! > grandchild.pid; sleep 100",
            Duration::from_millis(300),
        ))
        .await
        .expect_err("times out");
        assert!(matches!(err, EngineError::Timeout(_)));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(700), "grace skipped: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let grandchild = read_pid(&dir.path().join("grandchild.pid"));
        assert!(wait_gone(grandchild).await, "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn cancellation_stops_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = spec(dir.path(), "sleep 100 & echo $! > grandchild.pid; sleep 100", Duration::ZERO);
        let cancel = s.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        let err = run_process(s).await.expect_err("cancelled");
        assert!(matches!(err, EngineError::Cancelled), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let grandchild = read_pid(&dir.path().join("grandchild.pid"));
        assert!(wait_gone(grandchild).await, "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn leftovers_are_killed_after_a_normal_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_process(spec(
            dir.path(),
            "sleep 100 & echo $! > grandchild.pid; exit 0",
            Duration::from_secs(10),
        ))
        .await
        .expect("runs");
        assert!(out.exit.success());
        let grandchild = read_pid(&dir.path().join("grandchild.pid"));
        assert!(wait_gone(grandchild).await, "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = spec(dir.path(), "echo $$ > child.pid; sleep 100", Duration::ZERO);
        let task = tokio::spawn(run_process(s));
        let pid_file = dir.path().join("child.pid");
        for _ in 0..100 {
            if std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let child = read_pid(&pid_file);
        assert!(wait_gone(child).await, "child {child} survived");
    }

    #[tokio::test]
    async fn escaped_session_is_killed_after_a_normal_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_process(spec(
            dir.path(),
            "setsid sleep 100 & echo $! > escaped.pid; sleep 0.2; exit 0",
            Duration::from_secs(10),
        ))
        .await
        .expect("runs");
        assert!(out.exit.success());
        let escaped = read_pid(&dir.path().join("escaped.pid"));
        assert!(wait_gone(escaped).await, "escaped process {escaped} survived the run");
    }

    #[tokio::test]
    async fn escaped_session_is_killed_on_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = run_process(spec(
            dir.path(),
            "setsid sh -c 'trap \"\" TERM; sleep 100; :' & echo $! > escaped.pid; trap '' TERM; sleep 100",
            Duration::from_millis(300),
        ))
        .await
        .expect_err("times out");
        assert!(matches!(err, EngineError::Timeout(_)), "{err}");
        let escaped = read_pid(&dir.path().join("escaped.pid"));
        assert!(wait_gone(escaped).await, "escaped process {escaped} survived the run");
    }

    #[tokio::test]
    async fn every_process_of_a_run_carries_its_tag_and_the_leader_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = format!("echo \"tag=${RUN_TAG_VAR}\"; echo $$ > child.pid; sh -c 'echo \"inner=${RUN_TAG_VAR}\"'");
        let out = run_process(spec(dir.path(), &script, Duration::from_secs(10))).await.expect("runs");
        assert!(out.exit.success());
        let log = std::fs::read_to_string(dir.path().join("run.log")).expect("log");
        let tag = log.lines().find_map(|l| l.strip_prefix("tag=")).expect("tag line").to_string();
        assert!(tag.starts_with(&format!("{}-", std::process::id())), "{log}");
        assert!(log.contains(&format!("inner={tag}\n")), "{log}");
        let child = read_pid(&dir.path().join("child.pid"));
        assert!(!leaders().contains(&child), "a reaped leader stays registered");
    }

    #[tokio::test]
    async fn output_is_capped_to_head_and_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_process(spec(
            dir.path(),
            "echo FIRST-LINE; yes 0123456789 | head -c 22000000; echo LAST-LINE >&2",
            Duration::from_secs(60),
        ))
        .await
        .expect("runs");
        assert!(out.exit.success());
        let log = std::fs::read(dir.path().join("run.log")).expect("log");
        assert!(
            log.len() < OUTPUT_HEAD_BYTES + OUTPUT_TAIL_BYTES + 1000,
            "log of {} bytes is not capped",
            log.len()
        );
        let text = String::from_utf8_lossy(&log);
        assert!(text.starts_with("$ /bin/sh -c echo FIRST-LINE"), "{}", &text[..200]);
        assert!(text.contains("\nFIRST-LINE\n"));
        let omitted = 22_000_000 + "FIRST-LINE\nLAST-LINE\n".len() - OUTPUT_HEAD_BYTES - OUTPUT_TAIL_BYTES;
        assert!(
            text.contains(&format!("[dockyard: {omitted} bytes of engine output omitted]")),
            "no omission note for {omitted} bytes"
        );
        assert!(text.ends_with("0123456789\nLAST-LINE\n"), "{}", &text[text.len() - 200..]);
    }

    #[tokio::test]
    async fn file_size_limit_fails_the_run_with_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = ProcessLimits {
            file_size: Some(1 << 20),
            ..ProcessLimits::default()
        };
        let err = with_limits(
            limits,
            run_process(spec(
                dir.path(),
                "exec head -c 5000000 /dev/zero > big.bin",
                Duration::from_secs(30),
            )),
        )
        .await
        .expect_err("limit");
        assert!(
            matches!(err, EngineError::LimitExceeded(ref m) if m == "engine exceeded the file-size limit of 1 MB"),
            "{err}"
        );
        assert!(err.retryable());
        let size = std::fs::metadata(dir.path().join("big.bin")).expect("big.bin").len();
        assert_eq!(size, 1 << 20);
        // Without the limit (outside `with_limits`) the same run succeeds.
        let out = run_process(spec(
            dir.path(),
            "exec head -c 2000000 /dev/zero > big.bin",
            Duration::from_secs(30),
        ))
        .await
        .expect("runs");
        assert!(out.exit.success());
    }

    #[tokio::test]
    async fn openmp_gets_the_tasks_cores_and_one_outside_a_task() {
        if std::env::var_os(OMP_THREADS_VAR).is_some() {
            // The agent's own setting wins, so there is nothing to check here.
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let threads = |limits: Option<ProcessLimits>, env: Vec<(OsString, OsString)>| {
            let dir = dir.path().to_path_buf();
            async move {
                let mut s = spec(&dir, "echo \"omp=$OMP_NUM_THREADS\"", Duration::from_secs(30));
                s.env = env;
                let log = s.log_path.clone();
                let _ = std::fs::remove_file(&log);
                match limits {
                    Some(l) => with_limits(l, run_process(s)).await,
                    None => run_process(s).await,
                }
                .expect("runs");
                let text = std::fs::read_to_string(&log).expect("log");
                text.lines().find_map(|l| l.strip_prefix("omp=")).unwrap_or("").to_string()
            }
        };
        let task = ProcessLimits {
            threads: Some(3),
            ..ProcessLimits::default()
        };
        assert_eq!(threads(Some(task), Vec::new()).await, "3");
        assert_eq!(threads(None, Vec::new()).await, "1");
        let own = vec![(OsString::from(OMP_THREADS_VAR), OsString::from("7"))];
        assert_eq!(threads(Some(task), own).await, "7");
    }

    #[tokio::test]
    async fn memory_limit_fails_the_run_with_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = ProcessLimits {
            address_space: Some(200 << 20),
            ..ProcessLimits::default()
        };
        let mut s = spec(
            dir.path(),
            "x=$(head -c 400000000 /dev/zero | tr '\\0' x); echo ${#x}",
            Duration::from_secs(60),
        );
        s.program = PathBuf::from("/bin/bash");
        let err = with_limits(limits, run_process(s.clone())).await.expect_err("limit");
        assert!(
            matches!(err, EngineError::LimitExceeded(ref m) if m == "engine exceeded the memory limit of 200 MB"),
            "{err}"
        );
        // A run within the limit is not affected.
        s.args = vec!["-c".into(), "x=$(head -c 1000000 /dev/zero | tr '\\0' x); echo ${#x}".into()];
        let out = with_limits(limits, run_process(s)).await.expect("runs");
        assert!(out.exit.success());
    }

    #[test]
    fn limit_reasons() {
        let none = ProcessLimits::default();
        let both = ProcessLimits {
            address_space: Some(3 << 20),
            file_size: Some(5 << 20),
            grace: None,
            threads: None,
        };
        assert_eq!(limit_reason(ExitKind::Signal(libc::SIGXFSZ), &none, b""), None);
        assert_eq!(
            limit_reason(ExitKind::Signal(libc::SIGXFSZ), &both, b""),
            Some("engine exceeded the file-size limit of 5 MB".into())
        );
        let oom = b"terminate called after throwing an instance of 'std::bad_alloc'\n";
        assert_eq!(
            limit_reason(ExitKind::Signal(libc::SIGABRT), &both, oom),
            Some("engine exceeded the memory limit of 3 MB".into())
        );
        assert_eq!(limit_reason(ExitKind::Signal(libc::SIGABRT), &none, oom), None);
        assert_eq!(limit_reason(ExitKind::Code(0), &both, oom), None);
        assert_eq!(limit_reason(ExitKind::Code(1), &both, b"Parse error"), None);
    }

    #[tokio::test]
    async fn the_grace_in_scope_replaces_the_spec_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec(dir.path(), "trap '' TERM; sleep 100", Duration::from_millis(200));
        s.grace = Duration::from_secs(30);
        let limits = ProcessLimits {
            grace: Some(Duration::from_millis(100)),
            ..ProcessLimits::default()
        };
        let started = Instant::now();
        let err = with_limits(limits, run_process(s)).await.expect_err("times out");
        assert!(matches!(err, EngineError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn full_disk_for_the_log_is_a_retryable_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec(dir.path(), "echo hello", Duration::from_secs(10));
        // Writes to /dev/full fail with ENOSPC.
        s.log_path = PathBuf::from("/dev/full");
        let err = run_process(s).await.expect_err("disk full");
        assert!(
            matches!(err, EngineError::Io(ref m) if m.contains("No space left on device")),
            "{err}"
        );
        assert!(err.retryable());
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec(dir.path(), "", Duration::ZERO);
        s.program = PathBuf::from("/nonexistent/engine");
        let err = run_process(s).await.expect_err("no such program");
        assert!(
            matches!(err, EngineError::Spawn(ref m) if m.contains("/nonexistent/engine")),
            "{err}"
        );
        assert!(err.retryable());
    }
}
