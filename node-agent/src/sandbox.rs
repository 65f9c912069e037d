//! Node-wide containment of engine runs: the limits each run gets, the child subreaper and
//! its orphan reaper, and the claim on the work folder.
//!
//! Per-run containment (process group, run tag, output cap, limits applied between fork
//! and exec) lives in [`crate::engine::process`]; this module holds what is agent-wide.
//!
//! ## Reaping orphans without stealing exit statuses
//!
//! As a child subreaper (`PR_SET_CHILD_SUBREAPER`), the agent inherits every orphan among
//! its descendants: an engine's grandchild whose parent exited is re-parented to the agent,
//! not to init, and once it exits it stays a zombie until the agent waits for it. A blanket
//! `waitpid(-1)` would also take the exit statuses that `run_process` (engines),
//! `tokio::process` (`--version` probes, nvidia-smi) and `std::process` are waiting for, so
//! the reaper waits only for pids it can prove are adopted:
//!
//! - it lists the agent's children from `/proc/self/task/*/children` (a `/proc/*/stat` scan
//!   where that file does not exist);
//! - it skips every child still in the agent's session: whatever the agent spawns itself
//!   stays in it, except engines, which start their own session with `setsid`;
//! - it skips the engine leaders, which `run_process` registers in the same critical
//!   section as their fork and unregisters after reaping them (the reaper holds that lock
//!   while it reaps);
//! - what is left is an adopted descendant of an engine run; it is reaped with
//!   `waitpid(pid, WNOHANG)` once it is a zombie.
//!
//! Killing those orphans is the job of the run tag (see [`crate::engine::process`]): when a
//! run ends, every process carrying its tag is killed, whatever its parent. A live adopted
//! process while no engine runs at all can only be a leftover that shed its tag; the reaper
//! kills it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::AgentConfig;
use crate::engine::process::{self, sys, ProcessLimits, DEFAULT_GRACE};

/// Address space every limited run gets at least: the address space of a process is far
/// larger than what it uses (shared libraries, reserved but untouched heap).
pub const MIN_ADDRESS_SPACE: u64 = 1 << 30;

/// Extra address space per engine thread: glibc reserves a 64 MiB malloc arena and an 8 MiB
/// stack for each thread, none of which is memory in use.
pub const ADDRESS_SPACE_PER_THREAD: u64 = 128 << 20;

/// How often the reaper looks for orphans besides on SIGCHLD.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// The folder under the work folder that holds one scratch folder per task attempt.
pub const RUNS_DIR: &str = "runs";

/// The address-space limit of engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// Twice the task's memory estimate plus headroom (see [`address_space_for`]); none
    /// when the task has no estimate.
    FromTask,
    /// The same number of bytes for every run.
    Fixed(u64),
    Unlimited,
}

/// How the agent confines engine runs (`--engine-memory-limit-mb`, `--engine-max-file-mb`,
/// `--engine-grace-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxConfig {
    pub memory: MemoryLimit,
    /// `None` = no file-size limit.
    pub max_file_bytes: Option<u64>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            memory: MemoryLimit::FromTask,
            max_file_bytes: Some(crate::config::DEFAULT_ENGINE_MAX_FILE_MB << 20),
            grace: DEFAULT_GRACE,
        }
    }
}

impl SandboxConfig {
    pub fn from_agent(cfg: &AgentConfig) -> Self {
        SandboxConfig {
            memory: match cfg.engine_memory_limit {
                None => MemoryLimit::FromTask,
                Some(0) => MemoryLimit::Unlimited,
                Some(b) => MemoryLimit::Fixed(b),
            },
            max_file_bytes: (cfg.engine_max_file_bytes > 0).then_some(cfg.engine_max_file_bytes),
            grace: cfg.engine_grace,
        }
    }

    /// The limits of one task's engine runs. GPU engines get no address-space limit: CUDA
    /// maps device memory and a huge unified address range into the process, so any limit
    /// that lets it start limits nothing.
    pub fn limits_for(&self, task_memory_bytes: u64, threads: u32, gpu_engine: bool) -> ProcessLimits {
        let address_space = if gpu_engine {
            None
        } else {
            match self.memory {
                MemoryLimit::FromTask => address_space_for(task_memory_bytes, threads),
                MemoryLimit::Fixed(b) => Some(b),
                MemoryLimit::Unlimited => None,
            }
        };
        ProcessLimits {
            address_space,
            file_size: self.max_file_bytes,
            grace: Some(self.grace),
            threads: Some(threads),
        }
    }
}

/// The default address-space limit of a task estimated to need `task_memory_bytes`:
/// twice the estimate (at least [`MIN_ADDRESS_SPACE`]) plus [`ADDRESS_SPACE_PER_THREAD`]
/// per thread. Generous on purpose: it is there to stop a runaway engine before it takes
/// the node's memory, not to enforce the estimate. `None` when there is no estimate.
pub fn address_space_for(task_memory_bytes: u64, threads: u32) -> Option<u64> {
    if task_memory_bytes == 0 {
        return None;
    }
    let base = task_memory_bytes.saturating_mul(2).max(MIN_ADDRESS_SPACE);
    Some(base.saturating_add(ADDRESS_SPACE_PER_THREAD.saturating_mul(u64::from(threads.max(1)))))
}

static CONFIG: OnceLock<SandboxConfig> = OnceLock::new();

/// Sets the agent-wide configuration (once, at start); later calls are ignored.
pub fn configure(cfg: SandboxConfig) {
    if CONFIG.set(cfg).is_err() {
        tracing::debug!("sandbox already configured");
    }
}

/// The agent-wide configuration, or the defaults before [`configure`].
pub fn configured() -> SandboxConfig {
    CONFIG.get().copied().unwrap_or_default()
}

/// Makes the agent a child subreaper and starts the orphan reaper (see the module docs).
/// Returns false, and starts nothing, where the platform has no subreapers: orphans then
/// go to init, which reaps them. Needs a Tokio runtime.
pub fn start_reaper() -> bool {
    if let Err(e) = sys::set_child_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphaned engine processes go to init");
        return false;
    }
    let session = sys::session_id();
    tokio::spawn(async move {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        let mut tick = tokio::time::interval(REAP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match sigchld.as_mut() {
                Some(s) => {
                    tokio::select! {
                        _ = s.recv() => {}
                        _ = tick.tick() => {}
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            // Reads /proc: off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || reap_orphans(session)).await {
                tracing::warn!(error = %e, "orphan reaper failed");
            }
        }
    });
    true
}

/// One pass of the reaper (see the module docs). `session` is the agent's session id.
fn reap_orphans(session: libc::pid_t) {
    let children = children_of_self();
    if children.is_empty() {
        return;
    }
    let leaders = process::leaders();
    let idle = leaders.is_empty();
    for pid in children {
        if leaders.contains(&pid) {
            continue;
        }
        let Some(st) = proc_stat(pid) else { continue };
        if st.session == session {
            // Spawned by the agent itself: whoever spawned it waits for it.
            continue;
        }
        if st.state == 'Z' {
            if sys::try_reap(pid) {
                tracing::debug!(pid, "reaped an orphaned engine process");
            }
        } else if idle {
            tracing::warn!(pid, "killing a process left behind by a finished engine run");
            if let Err(e) = sys::kill(pid, libc::SIGKILL) {
                tracing::debug!(pid, error = %e, "kill failed");
            }
        }
    }
}

/// The agent's children: every thread's `children` list, or a scan of `/proc` where the
/// kernel does not provide those lists.
fn children_of_self() -> BTreeSet<libc::pid_t> {
    let mut out = BTreeSet::new();
    let mut listed = false;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                listed = true;
                out.extend(text.split_whitespace().filter_map(|p| p.parse::<libc::pid_t>().ok()));
            }
        }
    }
    if !listed {
        let me = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        out.extend(
            process::proc_pids()
                .into_iter()
                .filter(|&p| proc_stat(p).is_some_and(|s| s.ppid == me)),
        );
    }
    out
}

/// The fields of `/proc/<pid>/stat` the reaper needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub ppid: libc::pid_t,
    pub session: libc::pid_t,
}

pub(crate) fn proc_stat(pid: libc::pid_t) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `pid (comm) state ppid pgrp session ...`; `comm` may hold spaces and parentheses,
/// so the fields start after the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let session = f.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, session })
}

/// Held for the agent's lifetime: no other agent clears the run folders of this one.
#[derive(Debug)]
pub struct WorkDirClaim {
    _lock: File,
}

/// Claims the work folder (an exclusive lock on `<work>/.agent.lock`) and removes the run
/// folders a previous agent left behind (it was killed before it could). `Ok(None)` when
/// another live agent holds the folder: its runs are left alone.
pub fn claim_work_dir(work_dir: &Path) -> io::Result<Option<WorkDirClaim>> {
    std::fs::create_dir_all(work_dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(work_dir.join(".agent.lock"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let runs = runs_dir(work_dir);
    match std::fs::remove_dir_all(&runs) {
        Ok(()) => tracing::info!(dir = %runs.display(), "removed run folders left by a previous agent"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %runs.display(), error = %e, "cannot remove old run folders"),
    }
    Ok(Some(WorkDirClaim { _lock: lock }))
}

/// `<work>/runs`: the scratch folders of running task attempts, and nothing else.
pub fn runs_dir(work_dir: &Path) -> PathBuf {
    work_dir.join(RUNS_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_memory_limit_from_the_task_estimate() {
        let c = SandboxConfig::default();
        assert_eq!(c.limits_for(0, 1, false).address_space, None);
        // 400 MB estimate, 1 thread: the 1 GiB floor + 128 MiB.
        assert_eq!(c.limits_for(400_000_000, 1, false).address_space, Some((1 << 30) + (128 << 20)));
        // 570 MB (a 20 Å box), 8 threads: 1140 MB + 1 GiB.
        assert_eq!(c.limits_for(570_000_000, 8, false).address_space, Some(1_140_000_000 + (1 << 30)));
        // 2 GB estimate, 4 threads: 4 GB + 512 MiB.
        assert_eq!(
            c.limits_for(2_000_000_000, 4, false).address_space,
            Some(4_000_000_000 + (512 << 20))
        );
        assert_eq!(
            c.limits_for(2_000_000_000, 4, true).address_space,
            None,
            "GPU engines are not limited"
        );
        let l = c.limits_for(1, 1, false);
        assert_eq!(l.file_size, Some(1024 << 20));
        assert_eq!(l.grace, Some(DEFAULT_GRACE));
    }

    #[test]
    fn configured_limits() {
        let mut cfg = crate::config::AgentSettings {
            node_id: Some("n".into()),
            ..Default::default()
        }
        .resolve()
        .expect("the declared defaults");
        assert_eq!(SandboxConfig::from_agent(&cfg), SandboxConfig::default());
        cfg.engine_memory_limit = Some(0);
        cfg.engine_max_file_bytes = 0;
        cfg.engine_grace = Duration::from_millis(250);
        let s = SandboxConfig::from_agent(&cfg);
        assert_eq!(
            s.limits_for(1 << 30, 2, false),
            ProcessLimits {
                address_space: None,
                file_size: None,
                grace: Some(Duration::from_millis(250)),
                threads: Some(2),
            }
        );
        cfg.engine_memory_limit = Some(300 << 20);
        let s = SandboxConfig::from_agent(&cfg);
        assert_eq!(s.limits_for(0, 8, false).address_space, Some(300 << 20));
        assert_eq!(s.limits_for(0, 8, true).address_space, None);
    }

    #[test]
    fn limit_flags() {
        let cfg = crate::config::tests::load(&[
            "--node-id",
            "n",
            "--engine-memory-limit-mb",
            "256",
            "--engine-max-file-mb",
            "0",
            "--engine-grace-ms",
            "250",
        ])
        .expect("resolves");
        assert_eq!(
            SandboxConfig::from_agent(&cfg),
            SandboxConfig {
                memory: MemoryLimit::Fixed(256 << 20),
                max_file_bytes: None,
                grace: Duration::from_millis(250),
            }
        );
    }

    #[test]
    fn stat_parsing() {
        let s = parse_stat("4242 (we (ird) name) Z 1 4242 4242 0 -1 4194560 0").expect("parses");
        assert_eq!(
            s,
            ProcStat {
                state: 'Z',
                ppid: 1,
                session: 4242
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        let me = libc::pid_t::try_from(std::process::id()).expect("pid");
        let own = proc_stat(me).expect("own stat");
        assert_eq!(own.session, sys::session_id());
    }

    #[test]
    fn claim_clears_old_runs_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(runs_dir(&work).join("t1-a1/in")).expect("mkdir");
        std::fs::create_dir_all(work.join("cache")).expect("mkdir");
        let claim = claim_work_dir(&work).expect("claim").expect("free");
        assert!(!runs_dir(&work).exists());
        assert!(work.join("cache").exists(), "the receptor cache persists");
        // A second agent on the same folder leaves the first one's runs alone.
        std::fs::create_dir_all(runs_dir(&work).join("t2-a1")).expect("mkdir");
        assert!(claim_work_dir(&work).expect("claim").is_none());
        assert!(runs_dir(&work).join("t2-a1").exists());
        drop(claim);
        assert!(claim_work_dir(&work).expect("claim").is_some());
    }
}
