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
