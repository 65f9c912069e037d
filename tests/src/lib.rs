//! `TestCluster`: the harness for Dockyard's cross-crate integration tests.
//!
//! It runs the REAL binaries as child processes — one `dockyard-coordinator` on
//! `127.0.0.1:0` with a temporary data folder, and any number of `dockyard-agent`s — so
//! the tests exercise exactly what operators run. The binaries are taken from the cargo
//! target folder next to the test executable (`target/debug/`); build them first with
//! `cargo build --workspace` (a plain `cargo test -p dockyard-tests` does not build other
//! packages' binaries).
//!
//! Every child's stderr (its log) goes to a file in the cluster's temporary folder; when a
//! test panics, the harness prints the tail of each log and kills every child (SIGKILL) as
//! the cluster is dropped. Set `DOCKYARD_TEST_KEEP=1` to keep the temporary folder.
//!
//! Timings default to short values (heartbeat 200 ms, lease 1000 ms, retry base 100 ms,
//! reconcile grace 3000 ms) so failure handling is exercised in seconds.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tonic::transport::Channel;

pub mod fault_engine;
pub mod faults;
pub mod ha;
pub mod pki;
pub mod proxy;
pub mod servers;

pub use dockyard_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::job_service_client::JobServiceClient;

/// Default time limit for waits that should take a few seconds at most.
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A file under the shared data folder that sits beside the repository
/// (`<repo>/../shared/data/<rel>`); never copied into the repository.
pub fn shared_data(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")).join(rel)
}

/// The 1iep receptor from the Vina examples.
pub fn receptor_1iep() -> PathBuf {
    shared_data("vina-examples/1iep/1iep_receptor.pdbqt")
}

/// The 1iep ligand (imatinib) from the Vina examples.
pub fn ligand_1iep() -> PathBuf {
    shared_data("vina-examples/1iep/1iep_ligand.pdbqt")
}

/// Reads a shared data file, with a clear message when the shared folder is missing.
pub fn read_shared(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); the tests expect the shared/ folder beside the repository",
            path.display()
        )
    })
}

/// The folder holding the workspace binaries: the parent of the test executable's folder
/// (`target/debug/deps/<test>` → `target/debug`), or `DOCKYARD_TEST_BIN_DIR` if set.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKYARD_TEST_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    let dir = exe.parent().expect("test executable has no parent folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps folder has no parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary; panics with a clear message when it has not been built.
pub fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    if !p.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace` first (cargo test -p dockyard-tests does not build it)",
            p.display()
        );
    }
    p
}

/// Every file under `dir`, recursively, sorted (an absent folder has none).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Newest modification time of the files under `dir` (recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// A hint when a binary is older than the sources it is built from (printed with the logs
/// of a failing test: a stale binary explains many surprises).
fn staleness_note(bin: &Path, crates: &[&str]) -> Option<String> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for c in crates {
        if newest_mtime(&root.join(c)).is_some_and(|src| src > built) {
            return Some(format!(
                "note: {} is older than the sources in {c}/; run `cargo build --workspace` to test the current code",
                bin.display()
            ));
        }
    }
    None
}

/// How an agent is started.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// `--node-id`; `None` = `agent-<index>`.
    pub node_id: Option<String>,
    /// `--slots`.
    pub slots: u32,
    /// `--enable-sleep-engine`.
    pub sleep_engine: bool,
    /// Read/write the coordinator's artifact folder directly (`--artifacts file://…`)
    /// instead of relaying through the coordinator.
    pub direct_artifacts: bool,
    /// `--shutdown-grace-s`; `None` = the agent's default.
    pub shutdown_grace_s: Option<u64>,
    /// `--fake-gpus N`: advertise N fake GPUs (a test double; no device behind them).
    pub fake_gpus: u32,
    /// More agent flags, as given.
    pub extra_args: Vec<String>,
    /// `--work-dir`; `None` = `<cluster dir>/work/<node id>`.
    pub work_dir: Option<PathBuf>,
}

impl AgentOptions {
    /// An agent offering the sleep engine (and vina, if it is installed).
    pub fn sleep(slots: u32) -> Self {
        AgentOptions {
            node_id: None,
            slots,
            sleep_engine: true,
            direct_artifacts: false,
            shutdown_grace_s: None,
            fake_gpus: 0,
            extra_args: Vec::new(),
            work_dir: None,
        }
    }

    /// An agent offering only the engines it finds (vina); no sleep engine.
    pub fn vina(slots: u32) -> Self {
        AgentOptions {
            node_id: None,
            slots,
            sleep_engine: false,
            direct_artifacts: false,
            shutdown_grace_s: None,
            fake_gpus: 0,
            extra_args: Vec::new(),
            work_dir: None,
        }
    }

    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    pub fn shutdown_grace_s(mut self, s: u64) -> Self {
        self.shutdown_grace_s = Some(s);
        self
    }

    pub fn direct_artifacts(mut self) -> Self {
        self.direct_artifacts = true;
        self
    }

    pub fn fake_gpus(mut self, n: u32) -> Self {
        self.fake_gpus = n;
        self
    }

    pub fn work_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(d.into());
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }
}

/// Builds a [`TestCluster`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    heartbeat_ms: u64,
    lease_ms: u64,
    retry_base_ms: u64,
    reconcile_grace_ms: u64,
    agents: Vec<AgentOptions>,
    /// More coordinator flags, as given (e.g. `--admin-token-file F`, `--tls-cert F`).
    coordinator_args: Vec<String>,
    /// Bearer token the harness's own calls (and `cli`, as DOCKYARD_TOKEN) carry.
    token: Option<String>,
    /// The coordinator serves TLS: endpoints are `https://`, verified against this CA.
    tls_ca: Option<PathBuf>,
    /// Environment variables of the coordinator and agent processes (e.g. `OTEL_*`).
    env: Vec<(String, String)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            heartbeat_ms: 200,
            lease_ms: 1000,
            retry_base_ms: 100,
            reconcile_grace_ms: 3000,
            agents: Vec::new(),
            coordinator_args: Vec::new(),
            token: None,
            tls_ca: None,
            env: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    pub fn heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat_ms = ms;
        self
    }

    /// Must be at least twice the heartbeat (the coordinator refuses to start otherwise).
    pub fn lease_ms(mut self, ms: u64) -> Self {
        self.lease_ms = ms;
        self
    }

    pub fn retry_base_ms(mut self, ms: u64) -> Self {
        self.retry_base_ms = ms;
        self
    }

    pub fn reconcile_grace_ms(mut self, ms: u64) -> Self {
        self.reconcile_grace_ms = ms;
        self
    }

    /// Adds a coordinator flag (or its value), as given.
    pub fn coordinator_arg(mut self, a: impl Into<String>) -> Self {
        self.coordinator_args.push(a.into());
        self
    }

    /// The bearer token the harness's own calls carry (with authentication on).
    pub fn token(mut self, t: impl Into<String>) -> Self {
        self.token = Some(t.into());
        self
    }

    /// The coordinator serves TLS (pass `--tls-cert/--tls-key` with `coordinator_arg`):
    /// endpoints become `https://`, and the harness's calls verify against `ca` (a PEM file).
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// Sets an environment variable of every coordinator and agent process.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Adds an agent started with the cluster.
    pub fn agent(mut self, a: AgentOptions) -> Self {
        self.agents.push(a);
        self
    }

    /// Adds `n` agents started with the cluster.
    pub fn agents(mut self, n: usize, a: AgentOptions) -> Self {
        self.agents.extend(std::iter::repeat_n(a, n));
        self
    }

    /// Starts the coordinator, then the agents, and waits until every agent is connected.
    pub async fn start(self) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("dockyard-test-")
            .tempdir()
            .expect("cannot create a temporary folder");
        let coordinator_bin = binary("dockyard-coordinator");
        let agent_bin = binary("dockyard-agent");
        let mut notes = Vec::new();
        notes.extend(staleness_note(&coordinator_bin, &["coordinator", "common", "proto"]));
        notes.extend(staleness_note(&agent_bin, &["node-agent", "common", "proto"]));
        for n in &notes {
            eprintln!("{n}");
        }
        let agents = self.agents.clone();
        let mut c = TestCluster {
            data_dir: dir.path().join("coordinator"),
            dir: Some(dir),
            settings: self,
            coordinator_bin,
            agent_bin,
            coordinator: None,
            addr: None,
            coordinator_starts: 0,
            agents: Vec::new(),
            notes,
        };
        c.start_coordinator("127.0.0.1:0").await;
        for a in agents {
            c.spawn_agent(a);
        }
        let n = c.agents.len();
        if n > 0 {
            c.wait_for_nodes(n).await;
        }
        c
    }
}

/// A child process of the cluster, killed (SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

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

/// Last `n` lines of a file (empty string if it cannot be read).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command with the environment cleaned of `DOCKYARD_*` settings the caller may have set.
pub(crate) fn clean_command(program: &Path) -> Command {
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

    // ----- gRPC -----

    /// Wraps a message in a request carrying the cluster's token (see [`ClusterBuilder::token`]).
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        match &self.settings.token {
            Some(t) => with_token(msg, t),
            None => tonic::Request::new(msg),
        }
    }

    /// One attempt at a channel (TLS when the cluster serves it).
    async fn try_channel(&self) -> Result<Channel, String> {
        let mut ep = Channel::from_shared(self.endpoint()).map_err(|e| e.to_string())?;
        if let Some(ca) = &self.settings.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            ep = ep.tls_config(tls).map_err(|e| e.to_string())?;
        }
        ep.connect().await.map_err(|e| e.to_string())
    }

    /// A fresh channel to the coordinator.
    pub async fn channel(&self) -> Channel {
        let ep = self.endpoint();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.try_channel().await;
            match r {
                Ok(ch) => return ch,
                Err(e) if Instant::now() >= deadline => panic!("cannot connect to {ep}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// Submits a job; panics unless it is accepted. Returns the job id.
    pub async fn submit(&self, req: pb::SubmitJobRequest) -> String {
        let r = self
            .jobs()
            .await
            .submit_job(self.req(req))
            .await
            .unwrap_or_else(|s| panic!("SubmitJob refused: {s:?}"))
            .into_inner();
        assert_eq!(r.job_id.len(), 20, "job id {:?}", r.job_id);
        r.job_id
    }

    /// Submits a sleep-engine job of `count` tasks of `sleep_ms` each.
    pub async fn submit_sleep(&self, count: u32, sleep_ms: u32, priority: i32) -> String {
        self.submit(sleep_request(count, sleep_ms, priority)).await
    }

    pub async fn get_job(&self, job: &str) -> pb::Job {
        self.jobs()
            .await
            .get_job(self.req(pb::GetJobRequest { job_id: job.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("GetJob {job}: {s:?}"))
            .into_inner()
    }

    /// All jobs (every page), newest first.
    pub async fn list_jobs(&self) -> Vec<pb::Job> {
        let mut c = self.jobs().await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let r = c
                .list_jobs(self.req(pb::ListJobsRequest {
                    page_size: 1000,
                    page_token: token,
                    org: String::new(),
                }))
                .await
                .unwrap_or_else(|s| panic!("ListJobs: {s:?}"))
                .into_inner();
            out.extend(r.jobs);
            if r.next_page_token.is_empty() {
                return out;
            }
            token = r.next_page_token;
        }
    }

    pub async fn results(&self, job: &str) -> pb::ListResultsResponse {
        self.jobs()
            .await
            .list_results(self.req(pb::ListResultsRequest {
                job_id: job.to_string(),
                page_size: 1000,
                page_token: String::new(),
            }))
            .await
            .unwrap_or_else(|s| panic!("ListResults {job}: {s:?}"))
            .into_inner()
    }

    pub async fn cancel(&self, job: &str) -> pb::Job {
        self.jobs()
            .await
            .cancel_job(self.req(pb::CancelJobRequest {
                job_id: job.to_string(),
                reason: "cancelled by test".into(),
            }))
            .await
            .unwrap_or_else(|s| panic!("CancelJob {job}: {s:?}"))
            .into_inner()
    }

    pub async fn stats(&self) -> pb::QueueStatsResponse {
        self.admin()
            .await
            .queue_stats(self.req(pb::QueueStatsRequest {}))
            .await
            .unwrap_or_else(|s| panic!("QueueStats: {s:?}"))
            .into_inner()
    }

    pub async fn nodes(&self) -> Vec<pb::Node> {
        self.admin()
            .await
            .list_nodes(self.req(pb::ListNodesRequest {}))
            .await
            .unwrap_or_else(|s| panic!("ListNodes: {s:?}"))
            .into_inner()
            .nodes
    }

    pub async fn node(&self, id: &str) -> Option<pb::Node> {
        self.nodes().await.into_iter().find(|n| n.node_id == id)
    }

    pub async fn drain(&self, id: &str) -> pb::Node {
        self.admin()
            .await
            .drain_node(self.req(pb::DrainNodeRequest { node_id: id.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("DrainNode {id}: {s:?}"))
            .into_inner()
    }

    pub async fn undrain(&self, id: &str) -> pb::Node {
        self.admin()
            .await
            .undrain_node(self.req(pb::DrainNodeRequest { node_id: id.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("UndrainNode {id}: {s:?}"))
            .into_inner()
    }

    // ----- waiting -----

    /// Waits until at least `n` nodes are connected (READY or DRAINING).
    pub async fn wait_for_nodes(&self, n: usize) -> Vec<pb::Node> {
        let deadline = Instant::now() + WAIT;
        let mut last: String;
        loop {
            match self.try_nodes().await {
                Ok(nodes) => {
                    let up = nodes.iter().filter(|x| x.state != pb::NodeState::Lost as i32).count();
                    if up >= n {
                        return nodes;
                    }
                    last = format!(
                        "{up} connected: {:?}",
                        nodes.iter().map(|x| (&x.node_id, x.state)).collect::<Vec<_>>()
                    );
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {WAIT:?} waiting for {n} connected node(s); last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn try_nodes(&self) -> Result<Vec<pb::Node>, String> {
        let ch = self.try_channel().await?;
        AdminServiceClient::new(ch)
            .list_nodes(self.req(pb::ListNodesRequest {}))
            .await
            .map(|r| r.into_inner().nodes)
            .map_err(|s| format!("{s:?}"))
    }

    /// Polls ListNodes until node `id` satisfies `pred`; panics after `timeout`.
    pub async fn wait_node(&self, id: &str, what: &str, pred: impl Fn(&pb::Node) -> bool, timeout: Duration) -> pb::Node {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.try_nodes().await {
                Ok(nodes) => match nodes.into_iter().find(|n| n.node_id == id) {
                    Some(n) if pred(&n) => return n,
                    Some(n) => last = format!("{n:?}"),
                    None => last = format!("node {id} not listed"),
                },
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for node {id} to be {what}; last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls GetJob until `pred` holds and returns that snapshot; panics after `timeout`
    /// with the last snapshot. Errors (e.g. while the coordinator restarts) are retried.
    pub async fn wait_job(&self, job: &str, pred: impl Fn(&pb::Job) -> bool, timeout: Duration) -> pb::Job {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            let r = async {
                let ch = self.try_channel().await?;
                JobServiceClient::new(ch)
                    .get_job(self.req(pb::GetJobRequest { job_id: job.to_string() }))
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| format!("{s:?}"))
            }
            .await;
            match r {
                Ok(j) if pred(&j) => return j,
                Ok(j) => last = describe_job(&j),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting on job {job}; last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the job is in a final state (succeeded, partial, failed, cancelled).
    pub async fn wait_job_final(&self, job: &str, timeout: Duration) -> pb::Job {
        self.wait_job(job, is_final, timeout).await
    }

    // ----- the `dockyard` CLI -----

    /// Runs the `dockyard` CLI against this cluster (`--endpoint` is added first).
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let bin = binary("dockyard");
        let mut cmd = tokio::process::Command::from(clean_command(&bin));
        cmd.arg("--endpoint").arg(self.endpoint()).args(args).kill_on_drop(true);
        // An environment variable, so a test's own `--token` still wins.
        if let Some(t) = &self.settings.token {
            cmd.env("DOCKYARD_TOKEN", t);
        }
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("dockyard {args:?} did not finish within 60 s"))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
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

// ----- request builders and predicates -----

/// `msg` in a request carrying `authorization: Bearer TOKEN`.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v = format!("Bearer {token}").parse().expect("a token is printable ASCII");
    r.metadata_mut().insert("authorization", v);
    r
}

/// A sleep-engine SubmitJob request.
pub fn sleep_request(count: u32, sleep_ms: u32, priority: i32) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        name: format!("sleep-{count}x{sleep_ms}ms-p{priority}"),
        engine: "sleep".into(),
        priority,
        sleep_task_count: count,
        params: Some(pb::EngineParams {
            sleep_ms,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An inline input file.
pub fn input(name: &str, content: impl Into<Vec<u8>>) -> pb::InputFile {
    pb::InputFile {
        name: name.to_string(),
        source: Some(pb::input_file::Source::Content(content.into())),
    }
}

pub fn vec3(x: f64, y: f64, z: f64) -> pb::Vec3 {
    pb::Vec3 { x, y, z }
}

/// A vina request docking `ligands` into the 1iep receptor with the example box.
pub fn vina_1iep_request(ligands: Vec<pb::InputFile>) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        name: "vina-1iep".into(),
        engine: "vina".into(),
        receptor: Some(input("1iep_receptor.pdbqt", read_shared(&receptor_1iep()))),
        ligands,
        r#box: Some(pb::DockingBox {
            center: Some(vec3(15.190, 53.903, 16.917)),
            size: Some(vec3(20.0, 20.0, 20.0)),
        }),
        params: Some(pb::EngineParams {
            exhaustiveness: 1,
            seed: 42,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn state(j: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap_or(pb::JobState::Unspecified)
}

pub fn counts(j: &pb::Job) -> pb::TaskCounts {
    j.tasks.unwrap_or_default()
}

pub fn is_final(j: &pb::Job) -> bool {
    matches!(
        state(j),
        pb::JobState::Succeeded | pb::JobState::Partial | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

pub fn node_state(n: &pb::Node) -> pb::NodeState {
    pb::NodeState::try_from(n.state).unwrap_or(pb::NodeState::Unspecified)
}

/// One line: state, counts, reason, error.
pub fn describe_job(j: &pb::Job) -> String {
    let c = counts(j);
    format!(
        "job {} {:?} tasks total={} queued={} running={} succeeded={} failed={} cancelled={} unschedulable={:?} error={:?}",
        j.job_id,
        state(j),
        c.total,
        c.queued,
        c.running,
        c.succeeded,
        c.failed,
        c.cancelled,
        j.unschedulable_reason,
        j.error
    )
}

/// Panics with an install hint unless `vina --version` runs.
pub fn require_vina() {
    match Command::new("vina").arg("--version").stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() || !o.stdout.is_empty() => {}
        Ok(o) => panic!("`vina --version` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("this test needs AutoDock Vina 1.2 on PATH ({e}); install it (Debian: apt-get install autodock-vina)"),
    }
}

/// Pids of live processes named `name` (argv[0]'s file name) whose command line mentions
/// `dir` — e.g. the engine runs of one cluster's agents. Linux only (reads /proc).
pub fn processes_mentioning(name: &str, dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
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
