//! Running `deploy/local/cluster.sh` and cleaning up after it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A CLI or script run with the caller's DOCKYARD_* settings removed, with a time limit.
pub(crate) async fn run(program: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DOCKYARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish within {limit:?}", program.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Five consecutive free loopback ports (etcd, its peer port, S3, two coordinators).
pub(crate) fn free_base_port() -> u16 {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for i in 0..200u64 {
        let base = 20_000 + ((seed + i * 977) % 30_000) as u16;
        let all_free = (0..5).all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no 5 consecutive free ports found");
}

/// When the test fails half-way: prints the cluster's logs and stops it.
pub(crate) struct StopOnDrop {
    pub(crate) script: PathBuf,
    pub(crate) dir: PathBuf,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for f in dockyard_tests::files_under(&self.dir.join("logs")) {
            let t = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = t.lines().collect();
            eprintln!(
                "----- {} -----\n{}",
                f.display(),
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        let _ = std::process::Command::new("bash")
            .arg(&self.script)
            .args(["stop", "--timeout", "5", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
    }
}

pub(crate) const CLUSTER_PROCESSES: [&str; 4] = ["etcd", "s3s-fs", "dockyard-coordinator", "dockyard-agent"];
