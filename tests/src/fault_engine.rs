//! The stand-in engine that misbehaves on demand (node-agent/tests/fixtures/fault_engine.sh,
//! a test double for vina), and what tests need to check that nothing of it survives.

use std::path::{Path, PathBuf};

/// The stand-in engine, driven through a wrapper script that sets its mode file and pid log
/// (the harness gives the agent no environment of the test's own).
pub struct Fault {
    pub mode_file: PathBuf,
    pub pids_file: PathBuf,
    /// Give this to the agent as `--vina`.
    pub wrapper: PathBuf,
}

impl Fault {
    pub fn new(dir: &Path) -> Fault {
        let engine = format!("{}/../node-agent/tests/fixtures/fault_engine.sh", env!("CARGO_MANIFEST_DIR"));
        let f = Fault {
            mode_file: dir.join("fault-mode"),
            pids_file: dir.join("fault-pids"),
            wrapper: dir.join("vina-fault"),
        };
        let script = format!(
            "#!/bin/sh\nexport DOCKYARD_FAULT_MODE_FILE='{}'\nexport DOCKYARD_FAULT_PIDS='{}'\nexec '{engine}' \"$@\"\n",
            f.mode_file.display(),
            f.pids_file.display()
        );
        std::fs::write(&f.wrapper, script).expect("write the wrapper");
        let mut perm = std::fs::metadata(&f.wrapper).expect("wrapper").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&f.wrapper, perm).expect("chmod the wrapper");
        f.set_mode("ok");
        f
    }

    pub fn set_mode(&self, mode: &str) {
        std::fs::write(&self.mode_file, format!("{mode}\n")).expect("write the mode");
    }

    /// `(role, pid)` of every process the engine runs recorded so far.
    pub fn pids(&self) -> Vec<(String, i32)> {
        let text = std::fs::read_to_string(&self.pids_file).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (role, pid) = l.split_once(' ')?;
                Some((role.to_string(), pid.trim().parse().ok()?))
            })
            .collect()
    }

    pub fn count(&self, role: &str) -> usize {
        self.pids().iter().filter(|(r, _)| r == role).count()
    }
}

/// `(state, ppid)` from /proc/<pid>/stat.
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = text.rsplit_once(')')?.1.split_whitespace();
    Some((f.next()?.chars().next()?, f.next()?.parse().ok()?))
}

/// Whether `pid` is still one of the stand-in's processes: alive with the stand-in's
/// environment, or a zombie the agent has not reaped. (A pid reused by an unrelated
/// process is neither.)
pub fn lingering(pid: i32, fault: &Fault, agent: i32) -> Option<String> {
    let (st, ppid) = stat(pid)?;
    if st == 'Z' {
        return (ppid == agent).then(|| format!("{pid} is a zombie the agent did not reap"));
    }
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let marker = format!("DOCKYARD_FAULT_PIDS={}", fault.pids_file.display());
    env.split(|b| *b == 0)
        .any(|e| e == marker.as_bytes())
        .then(|| format!("{pid} (state {st}, parent {ppid}) is still running"))
}

/// Children of `agent` that exited and were not reaped.
pub fn zombie_children(agent: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat(p) == Some(('Z', agent)))
        .collect()
}

/// What the stand-in left behind under `agent`: its processes still running or unreaped,
/// and zombie children of the agent. Empty when everything is gone.
pub fn leftovers(fault: &Fault, agent: i32) -> Vec<String> {
    let mut left: Vec<String> = fault
        .pids()
        .iter()
        .filter_map(|(role, pid)| lingering(*pid, fault, agent).map(|w| format!("{role} {w}")))
        .collect();
    left.extend(
        zombie_children(agent)
            .into_iter()
            .map(|z| format!("{z} is an unreaped child of the agent")),
    );
    left
}
