//! `HaCluster`: cluster mode for the tests — a real etcd, optionally a real S3 server,
//! several coordinators started with `--etcd`, and agents that find the leader through
//! etcd alone. Children are real processes (SIGKILL/SIGSTOP work on them) and their logs
//! are printed when a test fails, like [`crate::TestCluster`].

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::ha_secure::{SecureEtcd, COORDINATOR_USER};
use crate::pb;
use crate::pki::Pki;
use crate::proxy::Proxy;
use crate::servers::{free_port, EtcdServer, S3Server};
use crate::{binary, clean_command, tail};
use pb::admin_service_client::AdminServiceClient;
use pb::job_service_client::JobServiceClient;

pub const CLUSTER: &str = "test";

/// The etcd user `deploy/etcd/setup-auth.sh agent` makes for a node.
pub fn agent_user(node_id: &str) -> String {
    format!("dockyard-agent-{node_id}")
}

/// How the cluster is built.
#[derive(Clone, Debug)]
pub struct HaOptions {
    pub coordinators: usize,
    /// Artifacts in a real S3 server (s3s-fs) instead of a shared folder.
    pub s3: bool,
    /// The coordinators' stream lease and heartbeat (`--lease-ms`, `--heartbeat-ms`).
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub coordinator_args: Vec<String>,
    /// Run coordinators under a restart loop, as systemd's `Restart=` would: one that
    /// exits with 75 (deposed, or cannot lead) starts again as a standby.
    pub supervised: bool,
    /// etcd members (1 or 3).
    pub etcd_members: usize,
    /// One etcd member with TLS, client certificates and authentication on; coordinators
    /// and agents get their own etcd users (`deploy/etcd/setup-auth.sh`).
    pub etcd_secure: bool,
    /// S3 reached through a [`Proxy`] (`HaCluster::s3_proxy`), to slow or cut it.
    pub s3_proxy: bool,
}

impl Default for HaOptions {
    fn default() -> Self {
        HaOptions {
            coordinators: 2,
            s3: true,
            lease_ms: 3000,
            heartbeat_ms: 300,
            coordinator_args: Vec::new(),
            supervised: false,
            etcd_members: 1,
            etcd_secure: false,
            s3_proxy: false,
        }
    }
}

struct Child2 {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    supervised: bool,
}

impl Child2 {
    fn kill(&mut self) {
        if self.supervised {
            // The worker first, so the loop sees it die by signal (no restart), then the loop.
            self.signal("KILL");
        }
        if let Some(c) = self.child.as_ref() {
            // Each child leads its own process group: a wrapper's (faketime's) children go too.
            // `--` or kill(1) reads the negative process group as an option (and with
            // util-linux, signals every process it may: the test runner included).
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--"])
                .arg(format!("-{}", c.id()))
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// The process itself, or under a supervisor loop, the coordinator it runs now.
    fn pid(&self) -> Option<i32> {
        let pid = self.child.as_ref().map(|c| c.id() as i32)?;
        if !self.supervised {
            return Some(pid);
        }
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        kids.split_whitespace().next().and_then(|p| p.parse().ok())
    }
    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }
}

pub struct HaCluster {
    dir: Option<tempfile::TempDir>,
    pub etcd: Vec<EtcdServer>,
    pub s3: Option<S3Server>,
    /// Set with `HaOptions::s3_proxy`: everything S3 sees passes through it.
    pub s3_proxy: Option<Proxy>,
    /// Set with `HaOptions::etcd_secure`.
    pub secure: Option<SecureEtcd>,
    artifacts: String,
    coordinators: Vec<(String, Child2)>,
    agents: Vec<(String, Child2)>,
    opts: HaOptions,
}

impl HaCluster {
    pub async fn start(opts: HaOptions) -> HaCluster {
        let dir = tempfile::Builder::new().prefix("dockyard-ha-").tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
        let (etcd, secure) = if opts.etcd_secure {
            let pki = Pki::new();
            let e = EtcdServer::start_secure(dir.path(), &pki);
            let s = SecureEtcd::new(pki, dir.path(), &e.client_url);
            s.setup(CLUSTER, &["init"]);
            (vec![e], Some(s))
        } else {
            (EtcdServer::start_cluster(dir.path(), opts.etcd_members.max(1)), None)
        };
        let (s3, s3_proxy, artifacts) = if opts.s3 {
            let s = S3Server::start(dir.path());
            s.create_bucket("dockyard");
            let proxy = if opts.s3_proxy {
                let target = s.endpoint.trim_start_matches("http://").parse().expect("s3 address");
                Some(Proxy::start(target).await)
            } else {
                None
            };
            let endpoint = proxy.as_ref().map_or_else(|| s.endpoint.clone(), Proxy::endpoint);
            let uri = format!("s3://dockyard/cluster?endpoint={endpoint}&region=us-east-1&path_style=true");
            (Some(s), proxy, uri)
        } else {
            (None, None, format!("file://{}", dir.path().join("shared-artifacts").display()))
        };
        let mut c = HaCluster {
            dir: Some(dir),
            etcd,
            s3,
            s3_proxy,
            secure,
            artifacts,
            coordinators: Vec::new(),
            agents: Vec::new(),
            opts: opts.clone(),
        };
        for _ in 0..opts.coordinators {
            c.add_coordinator();
        }
        c.wait_leader(Duration::from_secs(30)).await;
        c
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    fn env(&self, cmd: &mut std::process::Command) {
        if let Some(s) = &self.s3 {
            for (k, v) in s.env() {
                cmd.env(k, v);
            }
        }
    }

    /// Starts one more coordinator (a standby if a leader exists); returns its index.
    pub fn add_coordinator(&mut self) -> usize {
        let i = self.coordinators.len();
        let child = self.spawn_coordinator(i, free_port(), &[]);
        self.coordinators.push(child);
        i
    }

    /// Starts coordinator `i` again (after a kill) on its address and data folder, with
    /// `extra` flags after the usual ones; its log goes on where it ended.
    pub fn start_coordinator_again(&mut self, i: usize, extra: &[String]) {
        let port = self.coordinators[i]
            .0
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a coordinator's port");
        self.coordinators[i].1.kill();
        self.coordinators[i] = self.spawn_coordinator(i, port, extra);
    }

    /// The data folder of coordinator `i`.
    pub fn coordinator_data_dir(&self, i: usize) -> PathBuf {
        self.dir().join(format!("coordinator-{i}"))
    }

    fn spawn_coordinator(&self, i: usize, port: u16, extra: &[String]) -> (String, Child2) {
        let endpoint = format!("http://127.0.0.1:{port}");
        let name = format!("coordinator-{i}");
        let log = self.dir().join("logs").join(format!("{name}.log"));
        let bin = binary("dockyard-coordinator");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            self.dir().join(&name).display().to_string(),
            "--etcd".into(),
            self.etcd_urls(),
            "--cluster".into(),
            CLUSTER.into(),
            "--artifacts".into(),
            self.artifacts.clone(),
            "--heartbeat-ms".into(),
            self.opts.heartbeat_ms.to_string(),
            "--lease-ms".into(),
            self.opts.lease_ms.to_string(),
            "--retry-base-ms".into(),
            "100".into(),
        ];
        if let Some(s) = &self.secure {
            args.extend(s.flags(Some(COORDINATOR_USER)));
        }
        args.extend(self.opts.coordinator_args.iter().cloned());
        args.extend(extra.iter().cloned());
        let supervised = self.opts.supervised;
        let mut cmd = if supervised {
            // What systemd's Restart= does for a deposed leader (exit 75); any other exit,
            // a kill included, ends the loop.
            let mut c = clean_command(Path::new("sh"));
            c.arg("-c")
                .arg(r#"while :; do "$0" "$@"; rc=$?; [ "$rc" -eq 75 ] || exit "$rc"; sleep 0.2; done"#)
                .arg(&bin)
                .args(&args);
            c
        } else {
            let mut c = clean_command(&bin);
            c.args(&args);
            c
        };
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log");
        cmd.stdout(Stdio::null()).stderr(out);
        self.env(&mut cmd);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start coordinator");
        (
            endpoint,
            Child2 {
                name,
                child: Some(child),
                log,
                supervised,
            },
        )
    }

    /// Deletes every key of the test cluster in etcd (an operator's mistaken
    /// `etcdctl del --prefix`).
    pub async fn wipe_etcd(&self) -> anyhow::Result<i64> {
        let mut client = match &self.secure {
            Some(s) => s.client("root").await?,
            None => etcd_client::Client::connect([self.etcd[0].client_url.as_str()], None).await?,
        };
        let r = client
            .delete(
                format!("/dockyard/{CLUSTER}/"),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await?;
        Ok(r.deleted())
    }

    /// Starts an agent that knows only etcd; returns its index.
    pub fn add_agent(&mut self, node_id: &str, slots: u32, extra: &[&str]) -> usize {
        let etcd = self.etcd_urls();
        let mut args: Vec<String> = vec!["--etcd".into(), etcd, "--cluster".into(), CLUSTER.into()];
        if let Some(s) = &self.secure {
            // Its own etcd user, as an operator makes one per agent host.
            s.setup(CLUSTER, &["agent", node_id]);
            args.extend(s.flags(Some(&agent_user(node_id))));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn_agent(node_id, slots, &args, &[])
    }

    /// Starts an agent that dials `coordinator` (e.g. through a fault-injecting proxy) and
    /// does not use etcd.
    pub fn add_static_agent(&mut self, node_id: &str, slots: u32, coordinator: &str, extra: &[&str]) -> usize {
        let mut args = vec!["--coordinator", coordinator];
        args.extend_from_slice(extra);
        self.spawn_agent(node_id, slots, &args, &[])
    }

    /// Starts an agent with arbitrary flags and environment (and no cluster flags added).
    pub fn spawn_agent(&mut self, node_id: &str, slots: u32, args: &[&str], env: &[(&str, &str)]) -> usize {
        self.spawn_agent_with(None, node_id, slots, args, env)
    }

    /// Like [`spawn_agent`](Self::spawn_agent), run through `wrapper` (e.g. `faketime`).
    pub fn spawn_agent_with(&mut self, wrapper: Option<&[&str]>, node_id: &str, slots: u32, args: &[&str], env: &[(&str, &str)]) -> usize {
        let i = self.agents.len();
        let name = format!("agent-{node_id}");
        let log = self.dir().join("logs").join(format!("{name}.log"));
        let mut cmd = match wrapper {
            Some(w) => {
                let mut c = clean_command(Path::new(w[0]));
                c.args(&w[1..]).arg(binary("dockyard-agent"));
                c
            }
            None => clean_command(&binary("dockyard-agent")),
        };
        // Executions are counted from the runner's "task finished" lines.
        cmd.env("RUST_LOG", "info,dockyard_agent::runner=debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .arg("--node-id")
            .arg(node_id)
            .arg("--slots")
            .arg(slots.to_string())
            .arg("--work-dir")
            .arg(self.dir().join("work").join(node_id))
            .args(["--gpus", "none", "--enable-sleep-engine"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        self.env(&mut cmd);
        let supervised = false;
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start agent");
        self.agents.push((
            node_id.to_string(),
            Child2 {
                name,
                child: Some(child),
                log,
                supervised,
            },
        ));
        i
    }

    pub fn etcd_urls(&self) -> String {
        self.etcd.iter().map(|e| e.client_url.clone()).collect::<Vec<_>>().join(",")
    }

    pub fn endpoints(&self) -> String {
        self.coordinators.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>().join(",")
    }

    pub fn coordinator_endpoint(&self, i: usize) -> &str {
        &self.coordinators[i].0
    }

    pub fn coordinator_alive(&mut self, i: usize) -> bool {
        match self.coordinators[i].1.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status of a coordinator that has exited by itself.
    pub fn coordinator_exit_code(&mut self, i: usize) -> Option<i32> {
        self.coordinators[i]
            .1
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .and_then(|s| s.code())
    }

    pub fn kill_coordinator(&mut self, i: usize) {
        self.coordinators[i].1.kill();
    }
    pub fn pause_coordinator(&self, i: usize) {
        self.coordinators[i].1.signal("STOP");
    }
    pub fn resume_coordinator(&self, i: usize) {
        self.coordinators[i].1.signal("CONT");
    }
    pub fn kill_agent(&mut self, i: usize) {
        self.agents[i].1.kill();
    }
    pub fn agent_pid(&self, i: usize) -> Option<i32> {
        self.agents[i].1.pid()
    }
    pub fn coordinator_pid(&self, i: usize) -> Option<i32> {
        self.coordinators[i].1.pid()
    }
    pub fn pause_agent(&self, i: usize) {
        self.agents[i].1.signal("STOP");
    }
    pub fn resume_agent(&self, i: usize) {
        self.agents[i].1.signal("CONT");
    }

    async fn admin_at(endpoint: &str) -> Option<AdminServiceClient<Channel>> {
        let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        Some(AdminServiceClient::new(ch))
    }

    /// `GetLeader` as coordinator `i` answers it.
    pub async fn leader_info(&self, i: usize) -> Option<pb::LeaderInfo> {
        let mut a = Self::admin_at(&self.coordinators[i].0).await?;
        a.get_leader(pb::GetLeaderRequest {}).await.ok().map(|r| r.into_inner())
    }

    /// Index of the coordinator that says it leads.
    pub async fn leader_index(&self) -> Option<usize> {
        for i in 0..self.coordinators.len() {
            if self.coordinators[i].1.child.is_none() {
                continue;
            }
            if self.leader_info(i).await.is_some_and(|l| l.this_is_leader) {
                return Some(i);
            }
        }
        None
    }

    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader_index().await {
                return i;
            }
            assert!(Instant::now() < deadline, "no coordinator became leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a leader other than `old`.
    pub async fn wait_new_leader(&self, old: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader_index().await.filter(|i| *i != old) {
                return i;
            }
            assert!(Instant::now() < deadline, "no new leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn jobs(&self, i: usize) -> JobServiceClient<Channel> {
        let ch = tonic::transport::Endpoint::from_shared(self.coordinators[i].0.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        JobServiceClient::new(ch).max_decoding_message_size(64 << 20)
    }

    pub async fn admin(&self, i: usize) -> AdminServiceClient<Channel> {
        Self::admin_at(&self.coordinators[i].0).await.expect("connect")
    }

    pub async fn stats(&self, i: usize) -> Option<pb::QueueStatsResponse> {
        let mut a = Self::admin_at(&self.coordinators[i].0).await?;
        a.queue_stats(pb::QueueStatsRequest {}).await.ok().map(|r| r.into_inner())
    }

    pub async fn wait_nodes(&self, leader: usize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connected = match Self::admin_at(&self.coordinators[leader].0).await {
                Some(mut a) => a
                    .list_nodes(pb::ListNodesRequest {})
                    .await
                    .map(|r| {
                        r.into_inner()
                            .nodes
                            .iter()
                            .filter(|n| n.state != pb::NodeState::Lost as i32)
                            .count()
                    })
                    .unwrap_or(0),
                None => 0,
            };
            if connected >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {connected} of {n} agents connected in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every commit record in etcd for `job`: (epoch, task indices).
    pub async fn commits(&self, job: &str) -> Vec<(u64, Vec<u32>)> {
        let r = self.etcd_prefix(format!("/dockyard/{CLUSTER}/commits/{job}/")).await;
        r.kvs()
            .iter()
            .map(|kv| {
                let v: serde_json::Value = serde_json::from_slice(kv.value()).expect("commit json");
                let epoch = v["epoch"].as_u64().expect("epoch");
                let tasks = v["tasks"]
                    .as_array()
                    .expect("tasks")
                    .iter()
                    .map(|t| t.as_u64().expect("index") as u32)
                    .collect();
                (epoch, tasks)
            })
            .collect()
    }

    /// Every key and value under `prefix`.
    pub async fn etcd_prefix_kv(&self, prefix: String) -> Vec<(Vec<u8>, Vec<u8>)> {
        let r = self.etcd_prefix(prefix).await;
        r.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect()
    }

    /// Whether `job` is in the cluster's job index in etcd (the leader replicated its creation).
    pub async fn job_indexed(&self, job: &str) -> bool {
        !self.etcd_prefix(format!("/dockyard/{CLUSTER}/jobs/{job}")).await.kvs().is_empty()
    }

    /// The keys under `prefix`, from whichever etcd member answers.
    async fn etcd_prefix(&self, prefix: String) -> etcd_client::GetResponse {
        // Asks each live member in turn: a scenario may have stopped some of them.
        let mut last = String::new();
        let mut found = None;
        for e in self.etcd.iter().cycle().take(3 * self.etcd.len()) {
            let conn = match &self.secure {
                Some(s) => s.client("root").await,
                None => etcd_client::Client::connect([e.client_url.as_str()], None).await,
            };
            let got = match conn {
                Ok(mut c) => c.get(prefix.clone(), Some(etcd_client::GetOptions::new().with_prefix())).await,
                Err(err) => Err(err),
            };
            match got {
                Ok(r) => {
                    found = Some(r);
                    break;
                }
                Err(err) => {
                    last = err.to_string();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        found.unwrap_or_else(|| panic!("no etcd member answered: {last}"))
    }

    pub fn log_tails(&self, n: usize) -> String {
        let mut s = String::new();
        for (_, c) in self.coordinators.iter().chain(self.agents.iter()) {
            s.push_str(&format!("----- {} -----\n{}\n", c.name, tail(&c.log, n)));
        }
        s
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== HaCluster logs ({}) =====\n{}", self.dir().display(), self.log_tails(40));
        }
        for (_, c) in self.coordinators.iter_mut().chain(self.agents.iter_mut()) {
            c.signal("CONT");
            c.kill();
        }
        if std::env::var_os("DOCKYARD_TEST_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

/// Counts, over all commits of a job: tasks committed more than once, and tasks of
/// `0..total` never committed.
pub fn audit(commits: &[(u64, Vec<u32>)], total: u32) -> (usize, usize) {
    let mut seen = std::collections::HashMap::<u32, usize>::new();
    for (_, tasks) in commits {
        for t in tasks {
            *seen.entry(*t).or_default() += 1;
        }
    }
    let doubles = seen.values().filter(|c| **c > 1).count();
    let lost = (0..total).filter(|i| !seen.contains_key(i)).count();
    (doubles, lost)
}

/// Completed executions per task id, from the agents' logs ("task finished" lines).
pub fn executions(logs_dir: &Path) -> std::collections::HashMap<String, usize> {
    let mut out = std::collections::HashMap::new();
    for f in crate::files_under(logs_dir) {
        if !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("agent-")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("task finished")) {
            if let Some(rest) = line.split("task=").nth(1) {
                let id: String = rest.chars().take_while(|c| !matches!(c, ' ' | '}' | ':')).collect();
                *out.entry(id).or_default() += 1;
            }
        }
    }
    out
}

/// When each task of `job` finished on an agent, in seconds since the Unix epoch, from the
/// agents' "task finished" log lines (their UTC timestamps).
pub fn finish_times(logs_dir: &Path, job: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for f in crate::files_under(logs_dir) {
        if !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("agent-")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains("task finished") && l.contains(&format!("task={job}.")))
        {
            if let Some(t) = line.split_whitespace().next().and_then(unix_seconds) {
                out.push(t);
            }
        }
    }
    out
}

/// `2026-12-06T04:48:09.043720Z` as seconds since the Unix epoch.
pub fn unix_seconds(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, sec) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// Resident memory of a process in KiB (Linux).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_timestamps_read_as_unix_seconds() {
        let t = super::unix_seconds("2026-12-06T04:48:09.500000Z").expect("parses");
        // date -u -d 2026-12-06T04:48:09Z +%s
        assert!((t - 1_796_532_489.5).abs() < 1e-6, "{t}");
        assert!(super::unix_seconds("2026-12-06 04:48:09").is_none());
    }
}
