//! etcd with TLS (`--client-cert-auth`) and authentication on, set up the way an operator
//! does it: `deploy/etcd/setup-auth.sh` makes the root, coordinator and per-agent users.
//! [`crate::ha::HaCluster`] uses it when `HaOptions::etcd_secure` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pki::Pki;

pub const COORDINATOR_USER: &str = "dockyard-coordinator";

pub struct SecureEtcd {
    pub pki: Pki,
    pub secrets: PathBuf,
    pub url: String,
}

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/etcd/setup-auth.sh")
}

impl SecureEtcd {
    pub fn new(pki: Pki, dir: &Path, url: &str) -> SecureEtcd {
        SecureEtcd {
            pki,
            secrets: dir.join("etcd-secrets"),
            url: url.to_string(),
        }
    }

    /// Runs the operator's script with the admin's TLS identity; panics with its output.
    pub fn setup(&self, cluster: &str, args: &[&str]) {
        let out = Command::new("bash")
            .arg(setup_script())
            .arg(args[0])
            .arg(cluster)
            .arg(&self.secrets)
            .args(&args[1..])
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", &self.url)
            .env("ETCDCTL_CACERT", self.pki.path("ca.pem"))
            .env("ETCDCTL_CERT", self.pki.path("client.pem"))
            .env("ETCDCTL_KEY", self.pki.path("client.key"))
            .output()
            .expect("cannot run deploy/etcd/setup-auth.sh");
        assert!(
            out.status.success(),
            "setup-auth.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.secrets.join(user)).unwrap_or_else(|e| panic!("no password for {user}: {e}"))
    }

    pub fn password_file(&self, user: &str) -> String {
        self.secrets.join(user).display().to_string()
    }

    /// TLS flags (CA and the client certificate etcd demands), then the user's.
    pub fn flags(&self, user: Option<&str>) -> Vec<String> {
        let mut v = vec![
            "--etcd-ca".to_string(),
            self.pki.path("ca.pem"),
            "--etcd-cert".into(),
            self.pki.path("client.pem"),
            "--etcd-key".into(),
            self.pki.path("client.key"),
        ];
        if let Some(u) = user {
            v.extend([
                "--etcd-user".into(),
                u.to_string(),
                "--etcd-password-file".into(),
                self.password_file(u),
            ]);
        }
        v
    }

    /// A client as `user` (TLS with the client certificate).
    pub async fn client(&self, user: &str) -> Result<etcd_client::Client, etcd_client::Error> {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.pki.path("ca.pem"))))
            .identity(etcd_client::Identity::from_pem(
                read(&self.pki.path("client.pem")),
                read(&self.pki.path("client.key")),
            ));
        let opts = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_user(user, self.password(user))
            .with_connect_timeout(std::time::Duration::from_secs(3))
            .with_timeout(std::time::Duration::from_secs(5));
        etcd_client::Client::connect([self.url.as_str()], Some(opts)).await
    }
}

fn read(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}
