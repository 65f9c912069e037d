//! Child processes: how they are started, killed and looked for.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process of the cluster, killed (SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Last `n` lines of a file (empty string if it cannot be read).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    // Lossy: one byte that is not UTF-8 (a line cut by a kill) must not blank the whole dump.
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command with the environment cleaned of `DOCKYARD_*` settings the caller may have set.
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DOCKYARD_") {
            cmd.env_remove(k);
        }
    }
    // Plain logs in the files the harness prints on failure.
    cmd.env("NO_COLOR", "1");
    cmd.stdin(Stdio::null());
    cmd
}

/// Pids of live processes named `name` (argv[0]'s file name) whose command line mentions
/// `dir` — e.g. the engine runs of one cluster's agents. Linux only (reads /proc).
pub fn processes_mentioning(name: &str, dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for (pid, proc_dir) in live_pids() {
        let Ok(raw) = std::fs::read(proc_dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_name = args.first().is_some_and(|a0| Path::new(a0).file_name().is_some_and(|f| f == name));
        // A zombie has an empty command line; it is not running anything.
        if is_name && args.iter().any(|a| a.contains(&needle)) {
            out.push(pid);
        }
    }
    out
}

/// Pids of live processes (other than this one) whose environment holds `entry` exactly
/// (`KEY=VALUE`). Linux only (reads /proc).
pub fn pids_with_env(entry: &str) -> Vec<u32> {
    let me = std::process::id();
    live_pids()
        .filter(|(pid, dir)| {
            *pid != me && std::fs::read(dir.join("environ")).is_ok_and(|raw| raw.split(|b| *b == 0).any(|v| v == entry.as_bytes()))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// (pid, /proc/PID) of every process now.
fn live_pids() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
}
