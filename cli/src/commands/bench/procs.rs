//! Processes of a benchmark: the release binaries beside this one, started on loopback,
//! and what /proc says about their CPU time and memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::Client;

pub(super) fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the dockyard binary")?;
    let p = exe.with_file_name(name);
    if !p.is_file() {
        bail!(
            "{} not found beside {}; build all binaries: cargo build --release",
            name,
            exe.display()
        );
    }
    Ok(p)
}

/// User+system CPU seconds of a live process, from /proc.
pub(super) fn cpu_seconds(pid: Option<u32>) -> f64 {
    pid.map_or(0.0, |pid| stat_seconds(&format!("/proc/{pid}/stat"), [11, 12]))
}

/// User+system CPU seconds of this process's children that have been waited for (every
/// finished child: tokio reaps them), from /proc: the CPU of the commands a benchmark ran.
pub(super) fn waited_children_cpu_seconds() -> f64 {
    stat_seconds("/proc/self/stat", [13, 14])
}

/// The sum of two clock-tick fields of a /proc stat file, counted from the field after the
/// command name (which may hold spaces), in seconds.
fn stat_seconds(path: &str, fields: [usize; 2]) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .iter()
        .map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        .sum();
    ticks / 100.0
}

/// Resident memory of a live process in bytes, from /proc.
pub(super) fn rss_bytes(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of every file under `dir`.
pub(super) fn du(dir: &Path) -> u64 {
    du_files(dir).0
}

/// Bytes and number of the files under `dir`.
pub(super) fn du_files(dir: &Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else { return (0, 0) };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du_files(&e.path()),
            _ => (e.metadata().map_or(0, |m| m.len()), 1),
        })
        .fold((0, 0), |(b, n), (eb, en)| (b + eb, n + en))
}

/// Starts `dockyard-coordinator` on `listen` (`127.0.0.1:0`: any free port); returns it and its endpoint.
pub(super) async fn coordinator(data_dir: &Path, listen: &str) -> Result<(Child, String)> {
    coordinator_with(data_dir, listen, &[]).await
}

/// [`coordinator`] with more flags.
pub(super) async fn coordinator_with(data_dir: &Path, listen: &str, extra: &[&str]) -> Result<(Child, String)> {
    let mut coord = Command::new(sibling("dockyard-coordinator")?)
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start dockyard-coordinator")?;
    let stdout = coord.stdout.take().context("coordinator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await? {
            if let Some(a) = l.strip_prefix("listening on ") {
                return Ok::<_, anyhow::Error>(a.to_string());
            }
        }
        bail!("coordinator exited before listening")
    })
    .await
    .context("coordinator did not start within 60 s")??;
    Ok((coord, format!("http://{addr}")))
}

/// Starts `dockyard-agent` with `slots` slots against `endpoint`.
pub(super) fn agent(endpoint: &str, id: &str, slots: u32, work_dir: &Path, extra: &[&str]) -> Result<Child> {
    Command::new(sibling("dockyard-agent")?)
        .args([
            "--coordinator",
            endpoint,
            "--node-id",
            id,
            "--slots",
            &slots.to_string(),
            "--work-dir",
        ])
        .arg(work_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("cannot start dockyard-agent")
}

/// Agent flags naming engine programs; only those given, so that an agent without an
/// engine's adapter is not handed its flag.
pub(super) fn engine_flags(smina: Option<&Path>, rustina_python: Option<&Path>) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(p) = smina {
        flags.extend(["--smina".to_string(), p.display().to_string()]);
    }
    if let Some(p) = rustina_python {
        flags.extend(["--rustina-python".to_string(), p.display().to_string()]);
    }
    flags
}

/// Waits until `n` agents have registered.
pub(super) async fn wait_for_nodes(client: &Client, n: u32) -> Result<()> {
    let ready = std::time::Instant::now();
    loop {
        let have = client
            .admin
            .clone()
            .list_nodes(client.req(dockyard_proto::v1::ListNodesRequest {}))
            .await?
            .into_inner()
            .nodes
            .len();
        if have as u32 >= n {
            return Ok(());
        }
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("only {have} of {n} agents registered within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_childs_cpu_is_counted() {
        let before = waited_children_cpu_seconds();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh");
        assert!(status.success());
        let spent = waited_children_cpu_seconds() - before;
        assert!(spent > 0.05, "a busy child's CPU was not counted: {spent} s");
        assert_eq!(cpu_seconds(None), 0.0);
    }
}
