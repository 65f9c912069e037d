//! What Dockyard keeps in etcd, shared by coordinators and agents: the key layout, the
//! records stored under it, and a client that retries what a lost etcd member refuses.
//!
//! | key | value | written by |
//! |---|---|---|
//! | `/dockyard/<cluster>/leader/<lease>` | leader's gRPC endpoint | etcd election (coordinators) |
//! | `/dockyard/<cluster>/nodes/<node_id>` | [`NodeRecord`] under the agent's lease | agents |
//! | `/dockyard/<cluster>/drained/<node_id>` | empty: the operator drained the node | the leader, fenced |
//! | `/dockyard/<cluster>/jobs/<job_id>` | [`JobIndexRecord`] | the leader, fenced |
//! | `/dockyard/<cluster>/commits/<job_id>/<epoch>-<seq>` | [`CommitRecord`] | the leader, fenced |
//! | `/dockyard/<cluster>/tokens/<token_id>` | API token record (hash of the secret, org, revoked) | the leader's admin API |
//! | `/dockyard/<cluster>/quotas/<org>` | an organisation's limits | the leader's admin API |
//! | `/dockyard/<cluster>/usage/<org>` | bytes of inputs the organisation stored | the leader (compare-and-swap) |
//!
//! "Fenced" writes are etcd transactions that only succeed while the writer's election key
//! still exists with the create revision it won with (its epoch), so a leader that was
//! paused past its lease cannot write anything after a new one took over.

pub mod access;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

pub use access::{EtcdAccess, EtcdAccessFlags};
use serde::{Deserialize, Serialize};

use crate::error::DockyardError;

pub const DEFAULT_CLUSTER: &str = "default";

/// A cluster name becomes part of every key; keep it to a safe alphabet.
pub fn validate_cluster_name(name: &str) -> Result<(), DockyardError> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DockyardError::invalid(
            "cluster",
            format!("'{name}' is not a cluster name: use 1-64 letters, digits, '-' or '_'"),
        ))
    }
}

#[derive(Clone, Debug)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Self {
        Keys {
            root: format!("/dockyard/{cluster}/"),
        }
    }
    /// Every key of this cluster starts with it.
    pub fn root(&self) -> &str {
        &self.root
    }
    /// Added to the election's create revision to make the epoch: zero until a restore
    /// sets it above every epoch the restored records (and the agents) have seen.
    pub fn epoch_base(&self) -> String {
        format!("{}epoch_base", self.root)
    }
    /// The snapshot a restore wrote here (`partial:<id>` while it writes).
    pub fn restored_from(&self) -> String {
        format!("{}restored_from", self.root)
    }
    pub fn election(&self) -> String {
        format!("{}leader", self.root)
    }
    pub fn nodes_prefix(&self) -> String {
        format!("{}nodes/", self.root)
    }
    pub fn node(&self, node_id: &str) -> String {
        format!("{}nodes/{node_id}", self.root)
    }
    /// Present while an operator has the node drained.
    pub fn drained(&self, node_id: &str) -> String {
        format!("{}drained/{node_id}", self.root)
    }
    pub fn drained_prefix(&self) -> String {
        format!("{}drained/", self.root)
    }
    pub fn jobs_prefix(&self) -> String {
        format!("{}jobs/", self.root)
    }
    pub fn job(&self, job_id: &str) -> String {
        format!("{}jobs/{job_id}", self.root)
    }
    pub fn job_commits_prefix(&self, job_id: &str) -> String {
        format!("{}commits/{job_id}/", self.root)
    }
    pub fn tokens_prefix(&self) -> String {
        format!("{}tokens/", self.root)
    }
    pub fn token(&self, token_id: &str) -> String {
        format!("{}tokens/{token_id}", self.root)
    }
    pub fn quotas_prefix(&self) -> String {
        format!("{}quotas/", self.root)
    }
    pub fn quota(&self, org: &str) -> String {
        format!("{}quotas/{org}", self.root)
    }
    pub fn usage(&self, org: &str) -> String {
        format!("{}usage/{org}", self.root)
    }
    /// Zero-padded so commits list in the order they were made.
    pub fn commit(&self, job_id: &str, epoch: u64, seq: u64) -> String {
        format!("{}commits/{job_id}/{epoch:020}-{seq:012}", self.root)
    }
}

/// What an agent advertises about itself in etcd (also what `dockyard nodes` shows for a
/// node that is registered in etcd but has no stream to the leader).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub hostname: String,
    pub agent_version: String,
    pub slots: u32,
    pub memory_bytes: u64,
    pub gpus: u32,
    pub engines: Vec<String>,
    /// Where the agent can be reached for diagnostics; agents dial out, so informational.
    pub address: String,
    pub started_at_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobIndexState {
    Active,
    Cancelled,
    Finished,
}

/// The job index entry: enough to find the job's spec in the artifact store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobIndexRecord {
    pub org: String,
    pub spec_key: String,
    pub state: JobIndexState,
    #[serde(default)]
    pub reason: String,
    pub created_at_ms: i64,
}

/// One fenced commit of task outcomes for one job; the outcomes themselves are an artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub artifact_key: String,
    pub tasks: Vec<u32>,
    pub epoch: u64,
}

#[derive(Clone, Debug)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub cluster: String,
    /// TLS and etcd credentials; none by default.
    pub access: EtcdAccess,
}

impl EtcdSettings {
    /// `URLS` is a comma-separated list, as operators pass it to `--etcd`.
    pub fn parse(urls: &str, cluster: &str) -> Result<Self, DockyardError> {
        validate_cluster_name(cluster)?;
        let endpoints: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(DockyardError::invalid(
                "etcd",
                "give at least one etcd endpoint, e.g. http://127.0.0.1:2379",
            ));
        }
        Ok(EtcdSettings {
            endpoints,
            cluster: cluster.to_string(),
            access: EtcdAccess::default(),
        })
    }

    /// `parse`, then the `--etcd-ca/-cert/-key/-user/-password-file` files read.
    pub fn parse_with(urls: &str, cluster: &str, flags: &EtcdAccessFlags) -> Result<Self, DockyardError> {
        let mut s = Self::parse(urls, cluster)?;
        s.access = EtcdAccess::load(flags, &s.endpoints)?;
        Ok(s)
    }

    pub fn keys(&self) -> Keys {
        Keys::new(&self.cluster)
    }

    /// Connects with keepalive and a request timeout so a dead member cannot stall a caller.
    pub async fn connect(&self) -> Result<Client, DockyardError> {
        self.connect_with(Some(Duration::from_secs(5))).await
    }

    /// `request_timeout: None` is for calls that block by design (an election campaign).
    pub async fn connect_with(&self, request_timeout: Option<Duration>) -> Result<Client, DockyardError> {
        // etcd's server refuses pings more often than every 5 s, and pings on idle
        // connections (--grpc-keepalive-min-time, PermitWithoutStream), with GOAWAY.
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false);
        if let Some(t) = request_timeout {
            opts = opts.with_timeout(t);
        }
        opts = self.access.apply(opts);
        Client::connect(&self.endpoints, Some(opts)).await.map_err(|e| {
            let who = self.access.user().map(|u| format!(" as etcd user '{u}'")).unwrap_or_default();
            let msg = format!("etcd {}{who}: {}", self.endpoints.join(","), error_chain(&e));
            if is_refusal(&e) {
                DockyardError::Unauthenticated(msg)
            } else {
                DockyardError::Unavailable(msg)
            }
        })
    }
}

/// etcd (or its TLS layer) turned our credentials down: waiting will not change that, so
/// start-up fails at once with the reason instead of retrying as if etcd were still down.
pub fn is_refusal(e: &etcd_client::Error) -> bool {
    if let etcd_client::Error::GRpcStatus(s) = e {
        let m = s.message();
        if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
            || m.contains("authentication failed")
            || m.contains("user name is empty")
            || m.contains("invalid auth token")
        {
            return true;
        }
    }
    // A refused client certificate surfaces (TLS 1.3) as a fatal alert on the first call,
    // or as a closed connection: only the alert is evidence, so only it counts.
    let chain = format!("{}: {e:?}", error_chain(e)).to_ascii_lowercase();
    ["certificate", "handshake", "alert", "invalid peer", "unknownissuer"]
        .iter()
        .any(|w| chain.contains(w))
}

/// True for errors worth retrying: a member that is down or a request that timed out.
pub fn is_transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown | tonic::Code::Aborted
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// An error with its causes: a TLS refusal's reason is only in the innermost one.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let next = s.to_string();
        if !out.contains(&next) {
            out.push_str(": ");
            out.push_str(&next);
        }
        src = s.source();
    }
    out
}

pub fn etcd_err(what: &str, e: etcd_client::Error) -> DockyardError {
    DockyardError::Unavailable(format!("etcd {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_keys_sort_in_commit_order() {
        let k = Keys::new("c1");
        assert!(k.commit("j", 9, 10) < k.commit("j", 10, 1));
        assert!(k.commit("j", 10, 2) < k.commit("j", 10, 11));
        assert!(k.commit("j", 1, 1).starts_with(&k.job_commits_prefix("j")));
    }

    #[test]
    fn cluster_names_are_checked() {
        assert!(validate_cluster_name("prod-eu_1").is_ok());
        assert!(validate_cluster_name("a/b").is_err());
        assert!(validate_cluster_name("").is_err());
        assert!(EtcdSettings::parse(" , ", "c").is_err());
        let s = EtcdSettings::parse("http://a:1, http://b:2", "c").expect("parse");
        assert_eq!(s.endpoints, vec!["http://a:1", "http://b:2"]);
    }
}
