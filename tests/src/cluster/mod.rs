//! [`TestCluster`]: a coordinator and its agents as child processes, started, killed,
//! paused and restarted by the tests.

mod builder;
mod client;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use builder::{AgentOptions, ClusterBuilder};

use crate::pb;
use crate::process::{clean_command, tail, Proc};

/// Default time limit for waits that should take a few seconds at most.
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct AgentSlot {
    opts: AgentOptions,
    node_id: String,
    proc: Option<Proc>,
}

/// A coordinator and its agents, as child processes. See the crate documentation.
pub struct TestCluster {
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    settings: ClusterBuilder,
    coordinator_bin: PathBuf,
    agent_bin: PathBuf,
    coordinator: Option<Proc>,
    addr: Option<SocketAddr>,
    coordinator_starts: u32,
    agents: Vec<AgentSlot>,
    notes: Vec<String>,
}

impl TestCluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The cluster's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temporary folder").path()
    }

    /// The coordinator's `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The coordinator's artifact folder (`<data-dir>/artifacts`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// The object at `key` as stored in the artifact folder, decoded by zstd itself when it
    /// was stored compressed (frame magic), and whether it was.
    pub fn stored(&self, key: &str) -> (Vec<u8>, bool) {
        let path = self.artifacts_dir().join(key);
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("stored object {}: {e}", path.display()));
        if raw.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            let text = zstd::stream::decode_all(&raw[..]).unwrap_or_else(|e| panic!("{}: not a zstd frame: {e}", path.display()));
            (text, true)
        } else {
            (raw, false)
        }
    }

    /// The stored object at `key` as text (decoded from zstd where it was compressed).
    pub fn stored_text(&self, key: &str) -> String {
        String::from_utf8(self.stored(key).0).unwrap_or_else(|e| panic!("{key}: not UTF-8: {e}"))
    }

    /// `host:port` the coordinator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("coordinator address")
    }

    /// `http://host:port`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.settings.tls_ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// Node id of agent `i`.
    pub fn node_id(&self, i: usize) -> &str {
        &self.agents[i].node_id
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join("logs").join(format!("{name}.log"))
    }

    async fn start_coordinator(&mut self, listen: &str) {
        self.coordinator_starts += 1;
        let name = format!("coordinator-{}", self.coordinator_starts);
        let log = self.log_path(&name);
        std::fs::create_dir_all(log.parent().expect("log folder")).expect("cannot create the log folder");
        let s = &self.settings;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stderr = std::fs::File::create(&log).expect("cannot create a log file");
            let mut cmd = clean_command(&self.coordinator_bin);
            cmd.arg("--listen")
                .arg(listen)
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--heartbeat-ms")
                .arg(s.heartbeat_ms.to_string())
                .arg("--lease-ms")
                .arg(s.lease_ms.to_string())
                .arg("--retry-base-ms")
                .arg(s.retry_base_ms.to_string())
                .arg("--reconcile-grace-ms")
                .arg(s.reconcile_grace_ms.to_string())
                .args(&s.coordinator_args)
                .envs(s.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::piped())
                .stderr(stderr);
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.coordinator_bin.display()));
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
            let out_path = self.dir().join("logs").join(format!("{name}.stdout"));
            // Reads "listening on ADDR", then keeps draining stdout so the child never blocks.
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                let mut out = std::fs::File::create(out_path).ok();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(f) = out.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    if let Some(a) = line.trim().strip_prefix("listening on ").and_then(|a| a.trim().parse().ok()) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(a);
                        }
                    }
                }
            });
            let mut proc = Proc { name: name.clone(), child };
            match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), rx).await {
                Ok(Ok(addr)) => {
                    self.addr = Some(addr);
                    self.coordinator = Some(proc);
                    return;
                }
                outcome => {
                    proc.kill();
                    let why = tail(&log, 30);
                    // After a SIGKILL the port can take a moment to be free again.
                    if why.contains("cannot listen") && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    let what = if outcome.is_err() {
                        "did not print `listening on ADDR` in time"
                    } else {
                        "exited before listening"
                    };
                    panic!("{name} (attempt {attempt}) {what}; its log:\n{why}");
                }
            }
        }
    }

    /// SIGKILLs the coordinator, then starts it again on the same port and data folder.
    pub async fn restart_coordinator(&mut self) {
        self.kill_coordinator();
        let listen = self.addr().to_string();
        self.start_coordinator(&listen).await;
    }

    /// Starts the coordinator again after [`kill_coordinator`](Self::kill_coordinator), on
    /// the same port and data folder.
    pub async fn start_coordinator_again(&mut self) {
        assert!(self.coordinator.is_none(), "the coordinator is still running; kill it first");
        let listen = self.addr().to_string();
        self.start_coordinator(&listen).await;
    }

    /// Like [`start_coordinator_again`](Self::start_coordinator_again), with more flags,
    /// kept for later restarts too (e.g. `--restore-from URI`).
    pub async fn start_coordinator_again_with(&mut self, args: &[String]) {
        self.settings.coordinator_args.extend(args.iter().cloned());
        self.start_coordinator_again().await;
    }

    /// SIGKILLs the coordinator (no restart). Agents keep running and keep retrying.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut p) = self.coordinator.take() {
            p.kill();
        }
    }

    fn spawn_agent(&mut self, opts: AgentOptions) -> usize {
        let i = self.agents.len();
        let node_id = opts.node_id.clone().unwrap_or_else(|| format!("agent-{i}"));
        let proc = self.spawn_agent_proc(&opts, &node_id, i);
        self.agents.push(AgentSlot {
            opts,
            node_id,
            proc: Some(proc),
        });
        i
    }

    fn spawn_agent_proc(&self, opts: &AgentOptions, node_id: &str, i: usize) -> Proc {
        let mut n = 1;
        let name = loop {
            let name = format!("agent-{i}-{node_id}-{n}");
            if !self.log_path(&name).exists() {
                break name;
            }
            n += 1;
        };
        let log = self.log_path(&name);
        let stderr = std::fs::File::create(&log).expect("cannot create a log file");
        let stdout = std::fs::File::create(self.dir().join("logs").join(format!("{name}.stdout"))).expect("cannot create a log file");
        let mut cmd = clean_command(&self.agent_bin);
        cmd.arg("--coordinator")
            .arg(self.endpoint())
            .arg("--node-id")
            .arg(node_id)
            .arg("--slots")
            .arg(opts.slots.to_string())
            .arg("--work-dir")
            .arg(opts.work_dir.clone().unwrap_or_else(|| self.dir().join("work").join(node_id)))
            .envs(self.settings.env.iter().map(|(k, v)| (k, v)))
            .stdout(stdout)
            .stderr(stderr);
        if opts.sleep_engine {
            cmd.arg("--enable-sleep-engine");
        }
        if let Some(g) = opts.shutdown_grace_s {
            cmd.arg("--shutdown-grace-s").arg(g.to_string());
        }
        cmd.args(&opts.extra_args);
        if opts.fake_gpus > 0 {
            cmd.arg("--fake-gpus").arg(opts.fake_gpus.to_string());
        }
        if opts.direct_artifacts {
            cmd.arg("--artifacts").arg(format!("file://{}", self.artifacts_dir().display()));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.agent_bin.display()));
        Proc { name, child }
    }

    /// Starts one more agent; returns its index. Does not wait for it to connect.
    pub fn add_agent(&mut self, opts: AgentOptions) -> usize {
        self.spawn_agent(opts)
    }

    /// Starts one more agent and waits until the coordinator lists it as connected.
    pub async fn add_agent_and_wait(&mut self, opts: AgentOptions) -> usize {
        let i = self.spawn_agent(opts);
        let id = self.agents[i].node_id.clone();
        self.wait_node(&id, "connected", |n| n.state != pb::NodeState::Lost as i32, WAIT)
            .await;
        i
    }

    /// SIGKILLs agent `i` and reaps it.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut p) = self.agents[i].proc.take() {
            p.kill();
        }
    }

    /// Starts agent `i` again (after [`kill_agent`](Self::kill_agent)) with the same node id
    /// and options.
    pub fn restart_agent(&mut self, i: usize) {
        self.kill_agent(i);
        let opts = self.agents[i].opts.clone();
        let id = self.agents[i].node_id.clone();
        let p = self.spawn_agent_proc(&opts, &id, i);
        self.agents[i].proc = Some(p);
    }

    /// SIGSTOPs agent `i`: it stays connected at the TCP level but goes silent.
    pub fn pause_agent(&mut self, i: usize) {
        self.signal_agent(i, "-STOP");
    }

    /// SIGTERMs agent `i`: it finishes (or, after its grace, hands back) its tasks and exits.
    pub fn terminate_agent(&mut self, i: usize) {
        self.signal_agent(i, "-TERM");
    }

    /// SIGCONTs agent `i` after [`pause_agent`](Self::pause_agent).
    pub fn resume_agent(&mut self, i: usize) {
        self.signal_agent(i, "-CONT");
    }

    fn signal_agent(&mut self, i: usize, sig: &str) {
        let pid = self.agents[i].proc.as_ref().expect("agent is not running").child.id();
        let st = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("cannot run kill");
        assert!(st.success(), "kill {sig} {pid} failed: {st}");
    }

    /// Is agent `i` still running (not killed, not exited)?
    pub fn agent_alive(&mut self, i: usize) -> bool {
        self.agents[i].proc.as_mut().is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// The tail of every child's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.notes {
            let _ = writeln!(out, "{n}");
        }
        let Ok(rd) = std::fs::read_dir(self.dir().join("logs")) else {
            return out;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        for f in files {
            let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = writeln!(
                out,
                "----- last {lines} lines of {name} ({}) -----\n{}",
                f.display(),
                tail(&f, lines)
            );
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!("===== TestCluster logs ({}) =====\n{}", self.dir().display(), self.log_tails(40));
        }
        for a in &mut self.agents {
            if let Some(mut p) = a.proc.take() {
                p.kill();
            }
        }
        self.kill_coordinator();
        if std::env::var_os("DOCKYARD_TEST_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let procs: Vec<&str> = self
            .coordinator
            .iter()
            .chain(self.agents.iter().filter_map(|a| a.proc.as_ref()))
            .map(|p| p.name.as_str())
            .collect();
        f.debug_struct("TestCluster")
            .field("addr", &self.addr)
            .field("dir", &self.dir.as_ref().map(|d| d.path()))
            .field("procs", &procs)
            .finish()
    }
}
