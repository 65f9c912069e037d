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

mod output;
mod tag;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::EngineError;
use output::{drain_output, Captured};
pub(crate) use tag::proc_pids;
use tag::{kill_tagged, new_run_tag, signal_run};

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
pub(crate) mod sys;

#[cfg(test)]
mod tests;
