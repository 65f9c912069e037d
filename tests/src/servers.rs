//! Real etcd and S3 servers for the tests, one set per test on loopback ports, killed when
//! dropped. `etcd` comes from Debian's `etcd-server`; the S3 server is `s3s-fs` 0.14.1
//! (`cargo install s3s-fs@0.14.1 --features binary --locked`), started with an access key
//! and secret so every request is SigV4-checked. `.ci/run` installs both.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S3_ACCESS_KEY: &str = "dockyard-test";
pub const S3_SECRET_KEY: &str = "dockyard-test-secret";
pub const S3_REGION: &str = "us-east-1";

/// A loopback port that was free a moment ago (the child binds it right after).
///
/// Picked below the kernel's ephemeral range: a port from `bind(:0)` comes from that range,
/// where any outgoing connection (thousands, in a submit storm) may take it before the
/// child binds it, and etcd then exits with "address already in use". Ports are also never
/// handed out twice by one process.
pub fn free_port() -> u16 {
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<std::collections::HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(std::collections::HashSet::new()));
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let hi = first_ephemeral.max(2048);
    let lo = hi.saturating_sub(12_000).max(1024);
    for _ in 0..1000 {
        let port = rand::random_range(lo..hi);
        let Ok(mut g) = given.lock() else { break };
        if g.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            g.insert(port);
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

fn wait_tcp(addr: SocketAddr, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}) before listening on {addr}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within 20 s");
}

/// Finds a server binary on PATH or in ~/.cargo/bin, with install advice when missing.
pub fn server_binary(name: &str, install: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH: {install} (bash .ci/run installs it)"))
}

/// One etcd member on loopback with its own data folder.
pub struct EtcdServer {
    pub client_url: String,
    child: Option<Child>,
    args: Vec<String>,
    bin: PathBuf,
    log: PathBuf,
    client_addr: SocketAddr,
}

impl EtcdServer {
    pub fn start(dir: &Path) -> EtcdServer {
        let mut v = Self::start_cluster(dir, 1);
        v.remove(0)
    }

    /// `n` members forming one etcd cluster, started together.
    pub fn start_cluster(dir: &Path, n: usize) -> Vec<EtcdServer> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, pp))| format!("m{i}=http://127.0.0.1:{pp}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("dockyard-test-{}", ports[0].0);
        let mut members: Vec<EtcdServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (cp, pp))| EtcdServer::member(dir, &format!("m{i}"), *cp, *pp, &initial, &token))
            .collect();
        // Members wait for each other before serving: start all, then wait for each.
        for m in &mut members {
            m.spawn_nowait();
        }
        for m in &mut members {
            m.wait_ready();
        }
        members
    }

    /// One member serving clients over TLS only, with etcd's `--client-cert-auth`: a client
    /// needs a certificate signed by `pki`'s CA (then etcd's users, once auth is enabled).
    pub fn start_secure(dir: &Path, pki: &crate::pki::Pki) -> EtcdServer {
        let (cp, pp) = (free_port(), free_port());
        let mut m = EtcdServer::member(
            dir,
            "m0",
            cp,
            pp,
            &format!("m0=http://127.0.0.1:{pp}"),
            &format!("dockyard-tls-{cp}"),
        );
        m.client_url = format!("https://127.0.0.1:{cp}");
        for a in m.args.iter_mut() {
            if a.starts_with("http://127.0.0.1:") && a.ends_with(&format!(":{cp}")) {
                *a = m.client_url.clone();
            }
        }
        m.args.extend([
            "--cert-file".into(),
            pki.path("etcd-server.pem"),
            "--key-file".into(),
            pki.path("etcd-server.key"),
            "--trusted-ca-file".into(),
            pki.path("ca.pem"),
            "--client-cert-auth".into(),
        ]);
        m.spawn();
        m
    }

    fn member(dir: &Path, name: &str, cp: u16, pp: u16, initial_cluster: &str, token: &str) -> EtcdServer {
        let bin = server_binary("etcd", "apt-get install etcd-server");
        let data = dir.join(format!("etcd-{name}"));
        std::fs::create_dir_all(&data).expect("etcd data dir");
        let client_url = format!("http://127.0.0.1:{cp}");
        let peer_url = format!("http://127.0.0.1:{pp}");
        let args = vec![
            "--name".into(),
            name.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            initial_cluster.to_string(),
            "--initial-cluster-token".into(),
            token.to_string(),
            "--log-level".into(),
            "warn".into(),
        ];
        EtcdServer {
            client_url,
            child: None,
            args,
            bin,
            log: dir.join(format!("etcd-{name}.log")),
            client_addr: SocketAddr::from(([127, 0, 0, 1], cp)),
        }
    }

    fn spawn_nowait(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start etcd");
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        if let Some(c) = self.child.as_mut() {
            wait_tcp(self.client_addr, c, "etcd", &self.log);
        }
    }

    fn spawn(&mut self) {
        self.spawn_nowait();
        self.wait_ready();
    }

    /// Stops the member (SIGKILL); `restart` brings it back with the same data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `s3s-fs` serving a folder as S3 on loopback, SigV4 enforced with the test key pair.
pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    child: Option<Child>,
    bin: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
}

impl S3Server {
    pub fn start(dir: &Path) -> S3Server {
        let bin = server_binary("s3s-fs", "cargo install s3s-fs@0.14.1 --features binary --locked");
        let root = dir.join("s3-root");
        std::fs::create_dir_all(&root).expect("s3 root");
        let port = free_port();
        let mut s = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child: None,
            bin,
            log: dir.join("s3s-fs.log"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("s3 log");
        let mut child = Command::new(&self.bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
                "--access-key",
                S3_ACCESS_KEY,
                "--secret-key",
                S3_SECRET_KEY,
            ])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start s3s-fs");
        wait_tcp(self.addr, &mut child, "s3s-fs", &self.log);
        self.child = Some(child);
    }

    /// Creates a bucket: s3s-fs maps buckets to folders under its root.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).expect("bucket folder");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Environment for a Dockyard process that should use this server through the AWS chain.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
            ("AWS_REGION".into(), S3_REGION.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
