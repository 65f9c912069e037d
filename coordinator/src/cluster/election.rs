//! Leadership through an etcd election. The winner's epoch is its election key's create
//! revision plus the cluster's epoch base (zero until a restore sets it): it grows with
//! every new leader. Fenced writes compare against the revision itself.
//!
//! Losing the lease (keep-alive refused, or not renewed within its TTL) cancels
//! `Leadership::lost`, which ends the process (exit code 75, `fatal::EXIT_DEPOSED`): a
//! deposed leader must not act on stale state, and a supervisor (systemd, Kubernetes,
//! deploy/local) restarts it as a standby with a clean slate.

use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use dockyard_common::cluster::{etcd_err, EtcdSettings};
use dockyard_common::error::DockyardError;

#[derive(Clone, Debug)]
pub struct Leadership {
    /// What assignments and commit records carry: `base + revision`.
    pub epoch: u64,
    /// The election key's create revision, which fenced writes compare.
    pub revision: u64,
    pub key: Vec<u8>,
    pub lease: i64,
    /// Cancelled once the lease is gone: from then on this process must not act.
    pub lost: CancellationToken,
}

/// What standbys and the leader know about who leads, for `GetLeader` and the gate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaderView {
    pub endpoint: String,
    pub epoch: u64,
    pub this_is_leader: bool,
}

/// Campaigns until elected (or shut down), keeping `view` up to date meanwhile with the
/// current leader's endpoint. Once elected, a background task keeps the lease alive.
pub async fn campaign(
    etcd: &EtcdSettings,
    advertise: &str,
    ttl: Duration,
    view: watch::Sender<LeaderView>,
    shutdown: CancellationToken,
) -> Result<Option<Leadership>, DockyardError> {
    let keys = etcd.keys();
    // etcd may be down when a (restarted) coordinator starts: wait for it, as a standby.
    let mut client = loop {
        match etcd.connect().await {
            Ok(c) => break c,
            Err(e @ DockyardError::Unauthenticated(_)) => return Err(e),
            Err(e) => {
                warn!(error = %e, "cannot reach etcd; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let ttl_s = ttl.as_secs().max(1) as i64;
    let lease = loop {
        match client.lease_grant(ttl_s, None).await {
            Ok(l) => break l.id(),
            Err(e) => {
                warn!(error = %e, "cannot get an etcd lease; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let lost = CancellationToken::new();
    tokio::spawn(keep_alive(client.clone(), lease, ttl, lost.clone(), shutdown.clone()));
    tokio::spawn(observe(
        client.clone(),
        keys.election(),
        keys.epoch_base(),
        view.clone(),
        shutdown.clone(),
    ));
    info!(lease, "standing by: campaigning for leadership");
    let resp = loop {
        // A campaign blocks until elected: it needs a client without a request timeout.
        let attempt = async {
            let mut campaigner = etcd.connect_with(None).await?;
            campaigner
                .campaign(keys.election(), advertise, lease)
                .await
                .map_err(|e| etcd_err("campaign", e))
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = client.lease_revoke(lease).await;
                return Ok(None);
            }
            _ = lost.cancelled() => {
                return Err(DockyardError::Unavailable("etcd lease lost while standing by".into()));
            }
            r = attempt => match r {
                Ok(r) => break r,
                // The campaign is idempotent for one lease: retrying re-attaches to our key.
                Err(e) => {
                    warn!(error = %e, "campaign interrupted; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            },
        }
    };
    let leader = resp
        .leader()
        .ok_or_else(|| DockyardError::Internal("etcd campaign answered without a leader key".into()))?;
    let revision = leader.rev() as u64;
    let base = epoch_base(&mut client, &keys.epoch_base()).await?;
    let l = Leadership {
        epoch: base + revision,
        revision,
        key: leader.key().to_vec(),
        lease,
        lost,
    };
    view.send_replace(LeaderView {
        endpoint: advertise.to_string(),
        epoch: l.epoch,
        this_is_leader: true,
    });
    info!(epoch = l.epoch, "elected leader");
    Ok(Some(l))
}

/// Renews the lease at a third of its TTL; declares it lost once a full TTL passed without
/// a successful renewal or etcd says it is gone.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: CancellationToken, shutdown: CancellationToken) {
    let mut last_ok = Instant::now();
    let every = (ttl / 3).max(Duration::from_millis(200));
    'outer: loop {
        let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "etcd keep-alive stream failed; retrying");
                if last_ok.elapsed() >= ttl {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            if shutdown.is_cancelled() {
                let _ = client.lease_revoke(lease).await;
                return;
            }
            if last_ok.elapsed() >= ttl {
                break 'outer;
            }
            if keeper.keep_alive().await.is_err() {
                continue 'outer;
            }
            let answer = tokio::time::timeout(every, stream.message()).await;
            match answer {
                Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = Instant::now(),
                Ok(Ok(Some(_))) => {
                    error!(lease, "etcd says our lease has expired");
                    break 'outer;
                }
                Ok(Ok(None)) | Ok(Err(_)) => continue 'outer,
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
    lost.cancel();
}

/// Polls who leads, for standbys' `GetLeader` answers and redirects.
async fn observe(mut client: Client, name: String, base_key: String, view: watch::Sender<LeaderView>, shutdown: CancellationToken) {
    loop {
        if view.borrow().this_is_leader {
            return;
        }
        let base = epoch_base(&mut client, &base_key).await.unwrap_or(0);
        let next = match client.leader(name.clone()).await {
            Ok(r) => r.kv().map(|kv| LeaderView {
                endpoint: String::from_utf8_lossy(kv.value()).into_owned(),
                epoch: base + kv.create_revision() as u64,
                this_is_leader: false,
            }),
            Err(_) => None,
        };
        let next = next.unwrap_or_default();
        view.send_if_modified(|v| {
            if v.this_is_leader || *v == next {
                false
            } else {
                *v = next;
                true
            }
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The cluster's epoch base (absent: zero).
pub async fn epoch_base(client: &mut Client, key: &str) -> Result<u64, DockyardError> {
    let r = client.get(key, None).await.map_err(|e| etcd_err("read the epoch base", e))?;
    match r.kvs().first() {
        None => Ok(0),
        Some(kv) => std::str::from_utf8(kv.value())
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| DockyardError::Internal(format!("{key} holds {:?}, not a number", kv.value()))),
    }
}
