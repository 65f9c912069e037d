//! Runs an engine binary as a supervised child process.
//!
//! The child gets its own process group so that a timeout or cancellation can stop
//! everything it started, not just the direct child. Output goes straight to a log file
//! (no pipes: a chatty engine cannot block on a full pipe, and nothing has to drain it).
//! The child is waited for with `wait4` so that the kernel's CPU accounting comes back with
//! the exit status.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::EngineError;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// Opened in append mode: several runs of one task can share a log.
    pub log_path: PathBuf,
    /// `Duration::ZERO` means no limit.
    pub timeout: Duration,
    pub grace: Duration,
    pub cancel: CancellationToken,
    /// Extra environment for the child on top of the agent's own (e.g. `CUDA_VISIBLE_DEVICES`).
    pub env: Vec<(OsString, OsString)>,
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

/// Runs the process to completion, or stops its whole group on timeout/cancellation:
/// SIGTERM, `grace`, then SIGKILL. The child is always reaped, and any members of its group
/// still alive when it exits are killed, so nothing outlives the run.
pub async fn run_process(spec: ProcessSpec) -> Result<ProcessOutcome, EngineError> {
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
        .map_err(|e| EngineError::Io(format!("write log: {e}")))?;
    let stderr_log = log.try_clone().map_err(|e| EngineError::Io(format!("dup log: {e}")))?;

    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr_log))
        .process_group(0);
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));

    let start = Instant::now();
    let child = spawn(&mut cmd)
        .await
        .map_err(|e| EngineError::Spawn(format!("{}: {e}", spec.program.display())))?;
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| EngineError::Spawn(format!("pid {} out of range", child.id())))?;
    // std's Child neither kills nor reaps on drop; from here on the pid is managed by hand.
    drop(child);

    let mut guard = GroupGuard { pgid: pid, armed: true };
    let mut waiter = tokio::task::spawn_blocking(move || wait_and_reap(pid));

    let deadline = (!spec.timeout.is_zero()).then(|| tokio::time::Instant::from_std(start + spec.timeout));
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };

    let stop = tokio::select! {
        res = &mut waiter => {
            guard.armed = false;
            let (exit, cpu_seconds) = joined(res)?;
            return Ok(ProcessOutcome {
                exit,
                cpu_seconds,
                wall_seconds: start.elapsed().as_secs_f64(),
            });
        }
        () = expired => EngineError::Timeout(spec.timeout),
        () = spec.cancel.cancelled() => EngineError::Cancelled,
    };

    tracing::debug!(pid, reason = %stop, "stopping engine process group");
    sys::kill_group(pid, libc::SIGTERM);
    let res = match tokio::time::timeout(spec.grace, &mut waiter).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(pid, grace = ?spec.grace, "engine ignored SIGTERM; sending SIGKILL");
            sys::kill_group(pid, libc::SIGKILL);
            waiter.await
        }
    };
    guard.armed = false;
    if let Err(e) = joined(res) {
        tracing::warn!(pid, error = %e, "reaping stopped engine failed");
    }
    Err(stop)
}

/// Retries ETXTBSY: exec fails with it while any process still holds the binary open for
/// writing, e.g. a fork elsewhere in this process inheriting the descriptor of an engine
/// binary or wrapper script that was just written, or an upgrade replacing the binary.
async fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn joined(res: Result<std::io::Result<(ExitKind, f64)>, tokio::task::JoinError>) -> Result<(ExitKind, f64), EngineError> {
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EngineError::Io(format!("wait for engine: {e}"))),
        Err(e) => Err(EngineError::Io(format!("wait thread failed: {e}"))),
    }
}

/// Blocks until the child exits, kills what is left of its group, then reaps it.
///
/// The leader stays a zombie between the first wait and the reap, which keeps its pid (and
/// so the group id) from being reused while the group is signalled.
fn wait_and_reap(pid: libc::pid_t) -> std::io::Result<(ExitKind, f64)> {
    sys::wait_exited_no_reap(pid)?;
    sys::kill_group(pid, libc::SIGKILL);
    let (status, cpu_seconds) = sys::reap(pid)?;
    let exit = if libc::WIFSIGNALED(status) {
        ExitKind::Signal(libc::WTERMSIG(status))
    } else {
        ExitKind::Code(libc::WEXITSTATUS(status))
    };
    Ok((exit, cpu_seconds))
}

/// Kills the group if the future running it is dropped before the child exits; the
/// blocking waiter then reaps it.
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

#[allow(unsafe_code)]
mod sys {
    use std::io;

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
