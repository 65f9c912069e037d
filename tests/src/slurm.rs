//! A one-node Slurm cluster on loopback for the Slurm tests: munged, slurmctld and slurmd
//! from Debian's `slurm-wlm` and `munge`, every file (key, state, spool, logs) in the
//! test's folder and the ports picked free, so nothing under /etc or /var is touched and two
//! runs never meet. Client commands find it through `SLURM_CONF` ([`SlurmCluster::command`]).
//! The node declares more cores than the machine has (`config_overrides`): agents here
//! sleep, they do not compute. Runs as root (slurmd starts jobs as their user).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{free_port, server_binary};

const INSTALL: &str = "apt-get install slurm-wlm munge";

pub struct SlurmCluster {
    dir: PathBuf,
    conf: PathBuf,
    /// munged, slurmctld, slurmd: started in that order, stopped in reverse.
    children: Vec<Child>,
}

/// The node's name in slurm.conf; slurmd is told it (`-N`), so the machine's host name
/// does not matter.
const NODE: &str = "n1";

fn spawn(bin: &str, args: &[&str], log: &Path, conf: Option<&Path>) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(server_binary(bin, INSTALL));
    // Slurm's daemons and every job process inherit SLURM_CONF: the mark the clean-up
    // looks for. munged must not carry it (it is stopped last, on its own).
    if let Some(conf) = conf {
        cmd.env("SLURM_CONF", conf);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

impl SlurmCluster {
    /// Starts the three daemons and waits until the node is idle (at most 60 s).
    pub fn start(dir: &Path, cpus: u32, memory_mb: u32) -> SlurmCluster {
        let dir = dir.join("slurm");
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("slurm folders");
        }
        use std::os::unix::fs::PermissionsExt;
        // munged refuses a key or socket folder others can write to.
        for d in [&dir, &dir.join("munge")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let key = dir.join("munge/munge.key");
        let bytes: Vec<u8> = (0..128).map(|_| rand::random::<u8>()).collect();
        std::fs::write(&key, bytes).expect("munge key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).expect("chmod key");
        let d = dir.display();
        let (ctld_port, slurmd_port) = (free_port(), free_port());
        let conf = dir.join("slurm.conf");
        std::fs::write(dir.join("plugstack.conf"), "").expect("plugstack.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=dockyardtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
PlugStackConfig={d}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
KillWait=30
MinJobAge=5
InactiveLimit=0
Waittime=0
OverTimeLimit=0
NodeName={NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"
            ),
        )
        .expect("slurm.conf");
        let mut s = SlurmCluster {
            dir: dir.clone(),
            conf: conf.clone(),
            children: Vec::new(),
        };
        let m = |f: &str| format!("{d}/munge/{f}");
        s.children.push(spawn(
            "munged",
            &[
                "-F",
                &format!("--key-file={}", m("munge.key")),
                &format!("--socket={}", m("munge.socket")),
                &format!("--pid-file={}", m("munged.pid")),
                &format!("--log-file={}", m("munged.log")),
                &format!("--seed-file={}", m("munged.seed")),
            ],
            &dir.join("log/munged.out"),
            None,
        ));
        s.wait("munged's socket", Duration::from_secs(10), |s| {
            s.dir.join("munge/munge.socket").exists()
        });
        let conf_s = conf.display().to_string();
        s.children.push(spawn(
            "slurmctld",
            &["-D", "-f", &conf_s],
            &dir.join("log/slurmctld.out"),
            Some(&conf),
        ));
        s.children.push(spawn(
            "slurmd",
            &["-D", "-N", NODE, "-f", &conf_s],
            &dir.join("log/slurmd.out"),
            Some(&conf),
        ));
        s.wait("the Slurm node to be idle", Duration::from_secs(60), |s| {
            s.output("sinfo", &["-h", "-N", "-o", "%T"]).is_some_and(|o| o.trim() == "idle")
        });
        s
    }

    fn wait(&mut self, what: &str, timeout: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            for c in &mut self.children {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("a Slurm daemon exited ({st}) while waiting for {what}; logs:\n{}", self.logs());
                }
            }
            assert!(Instant::now() < deadline, "no {what} within {timeout:?}; logs:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tails of the daemons' logs, for a failure message.
    pub fn logs(&self) -> String {
        [
            "log/slurmctld.log",
            "log/slurmd.log",
            "log/slurmctld.out",
            "log/slurmd.out",
            "munge/munged.log",
        ]
        .iter()
        .map(|f| format!("== {f}\n{}", crate::tail(&self.dir.join(f), 30)))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// A Slurm client command (`sbatch`, `squeue`, ...) pointed at this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Stdout of a client command that succeeded.
    pub fn output(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = self.command(program).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every job Slurm still lists: (id, name, state).
    pub fn jobs(&self) -> Vec<(String, String, String)> {
        self.output("squeue", &["--noheader", "--format=%i|%j|%T"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().splitn(3, '|');
                Some((f.next()?.to_string(), f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // Jobs first, killed outright (`--batch --signal=KILL`; a plain scancel waits out
        // KillWait): their processes belong to slurmstepd, which outlives slurmd.
        let _ = self.command("scancel").args(["--state=PENDING", "--user=root"]).status();
        let _ = self.command("scancel").args(["--batch", "--signal=KILL", "--user=root"]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.jobs().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.command("scontrol").arg("shutdown").status();
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in self.children.iter_mut().skip(1) {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Whatever still carries this cluster's SLURM_CONF (a slurmstepd, a job's process).
        let mark = format!("SLURM_CONF={}", self.conf.display());
        for pid in crate::process::pids_with_env(&mark) {
            kill_now(pid);
        }
        for mut c in self.children.drain(..).rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn kill_now(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
}
