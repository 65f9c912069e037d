//! `--restore-from`: a snapshot into an empty data folder, every part checked against its
//! manifest before anything is written.
//!
//! After the records are in, the epoch is raised to the wall clock in seconds (or one past
//! the snapshot's, if that is later): the coordinator that wrote the snapshot may have run
//! on, with epochs the snapshot does not know, and agents refuse an epoch older than one
//! they have seen; attempts the old coordinator made after the snapshot thereby cannot
//! collide with the new ones (output prefixes carry the epoch). Tasks that were running at
//! the snapshot are loaded like those of any restart: their agents may reclaim them, or they
//! are queued again after the reconcile grace; work committed after the snapshot is done
//! again, and results of attempts the restored state does not know are dropped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use dockyard_common::artifact::{self, sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::cluster::{etcd_err, EtcdSettings};
use dockyard_common::error::DockyardError;
use dockyard_common::time::now_ms;

use super::catalog::Listing;
use super::etcd_part;
use super::format::{decode_part, Manifest, ARTIFACTS_PART, ETCD_PART, MANIFEST, SCHEDULER_PART, TENANTS_PART};
use crate::store::{SnapshotTree, Store};

#[derive(Debug)]
pub struct Restored {
    pub id: String,
    pub records: u64,
    /// Artifact keys the state refers to that the artifact store does not hold.
    pub missing_artifacts: Vec<String>,
    pub epoch: u64,
    pub seconds: f64,
}

#[derive(Debug)]
pub enum Outcome {
    Restored(Restored),
    /// The data folder already holds this snapshot, restored by an earlier start.
    AlreadyRestored(String),
}

fn refuse(msg: String) -> DockyardError {
    DockyardError::FailedPrecondition(msg)
}

/// Finds the snapshot at `from` (a snapshot's own folder, or a backup location: its newest
/// complete snapshot) and returns it with the key prefix of its parts.
async fn locate(src: &Arc<dyn ArtifactStore>, from: &str) -> Result<(Manifest, String), DockyardError> {
    let bare = ArtifactKey::new(MANIFEST)?;
    let prefix = if src.head(&bare).await?.is_some() {
        String::new()
    } else {
        let listing = Listing::read(src).await?;
        let id = listing.newest().ok_or_else(|| {
            refuse(format!(
                "{from}: no complete snapshot here (no {MANIFEST}, and no snap-*/{MANIFEST})"
            ))
        })?;
        format!("{id}/")
    };
    let at = format!("{from}/{prefix}{MANIFEST}");
    let body = src.get(&ArtifactKey::new(format!("{prefix}{MANIFEST}"))?).await?;
    Ok((Manifest::parse(&body, &at)?, prefix))
}

/// Reads one part and checks it against the manifest; the error names the part.
async fn part(
    src: &Arc<dyn ArtifactStore>,
    m: &Manifest,
    prefix: &str,
    name: &str,
    fields: usize,
) -> Result<Vec<Vec<Vec<u8>>>, DockyardError> {
    let p = m.part(name)?;
    let bytes = src
        .get(&ArtifactKey::new(format!("{prefix}{name}"))?)
        .await
        .map_err(|e| refuse(format!("snapshot {}: part {name}: {e}", m.id)))?;
    if bytes.len() as u64 != p.bytes {
        return Err(refuse(format!(
            "snapshot {}: part {name} is {} bytes, its manifest says {}; refused",
            m.id,
            bytes.len(),
            p.bytes
        )));
    }
    let sha = sha256_hex(&bytes);
    if sha != p.sha256 {
        return Err(refuse(format!(
            "snapshot {}: part {name} fails its checksum (sha256 {sha}, the manifest says {}); refused",
            m.id, p.sha256
        )));
    }
    let (name, id, expect) = (name.to_string(), m.id.clone(), p.records);
    tokio::task::spawn_blocking(move || {
        let records = decode_part(&bytes, fields, &name)?;
        if records.len() as u64 != expect {
            return Err(refuse(format!(
                "snapshot {id}: part {name} holds {} records, its manifest says {expect}",
                records.len()
            )));
        }
        Ok(records)
    })
    .await
    .map_err(|e| DockyardError::Internal(e.to_string()))?
}

/// The snapshot's list of the artifact keys its state refers to.
async fn artifact_keys(src: &Arc<dyn ArtifactStore>, m: &Manifest, prefix: &str) -> Result<Vec<String>, DockyardError> {
    Ok(part(src, m, prefix, ARTIFACTS_PART, 1)
        .await?
        .into_iter()
        .filter_map(|mut r| r.pop())
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect())
}

fn pairs(records: Vec<Vec<Vec<u8>>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    records
        .into_iter()
        .filter_map(|mut r| {
            let v = r.pop()?;
            let k = r.pop()?;
            Some((k, v))
        })
        .collect()
}

pub async fn restore(from: &str, store: &Store, artifacts: &Arc<dyn ArtifactStore>) -> Result<Outcome, DockyardError> {
    let started = Instant::now();
    let src = artifact::open(from).await?;
    let (m, prefix) = locate(&src, from).await?;
    if let Some(cluster) = &m.cluster {
        return Err(refuse(format!(
            "snapshot {} was taken from cluster {cluster} (etcd): restore it with --etcd and --cluster {cluster}",
            m.id
        )));
    }
    match store.restore_marker()? {
        Some(done) if done == m.id => return Ok(Outcome::AlreadyRestored(m.id)),
        Some(partial) if partial == format!("partial:{}", m.id) => {
            warn!(snapshot = %m.id, "an earlier restore of this snapshot was cut short; starting it again");
            store.wipe()?;
        }
        _ => {
            if !store.is_blank()? {
                return Err(refuse(
                    "--restore-from needs an empty data folder, and this one holds state (restore into a new --data-dir, or move this one away)"
                        .to_string(),
                ));
            }
        }
    }
    // Every part is read and checked before the first record is written.
    let sched = pairs(part(&src, &m, &prefix, SCHEDULER_PART, 2).await?);
    let tenants = pairs(part(&src, &m, &prefix, TENANTS_PART, 2).await?);
    let keys = artifact_keys(&src, &m, &prefix).await?;
    let records = (sched.len() + tenants.len()) as u64;
    store.set_restore_marker(&format!("partial:{}", m.id)).await?;
    store.import(SnapshotTree::Scheduler, sched).await?;
    store.import(SnapshotTree::Tenants, tenants).await?;
    let epoch = store.raise_epoch(epoch_floor(&m)).await?;
    store.set_restore_marker(&m.id).await?;
    let missing = missing_artifacts(artifacts, &m.id, keys).await?;
    let seconds = started.elapsed().as_secs_f64();
    info!(snapshot = %m.id, from, records, epoch, commit_position = m.commit_position, seconds, "restored");
    Ok(Outcome::Restored(Restored {
        id: m.id,
        records,
        missing_artifacts: missing,
        epoch,
        seconds,
    }))
}

/// `--restore-from` in cluster mode: the snapshot's etcd keys into the cluster's prefix,
/// which must hold none (agents' membership and an election may be there), and an epoch
/// base above every epoch the old cluster can have handed out. The data folder is not
/// touched: a leader rebuilds its own from etcd and the artifact store.
///
/// Run it on one coordinator; the others start without the flag and stand by. The keys
/// are written only where absent, so a coordinator of the same cluster that wrote in the
/// meantime makes the restore fail rather than be overwritten.
pub async fn restore_cluster(from: &str, etcd: &EtcdSettings, artifacts: &Arc<dyn ArtifactStore>) -> Result<Outcome, DockyardError> {
    let started = Instant::now();
    let src = artifact::open(from).await?;
    let (m, prefix) = locate(&src, from).await?;
    let keys = etcd.keys();
    match (&m.cluster, m.etcd_revision) {
        (Some(c), Some(_)) if *c == etcd.cluster => {}
        (Some(c), Some(_)) => {
            return Err(refuse(format!(
                "snapshot {} is of cluster {c}, not {} (--cluster)",
                m.id, etcd.cluster
            )))
        }
        _ => {
            return Err(refuse(format!(
                "snapshot {} was taken from a single coordinator (no etcd): restore it without --etcd",
                m.id
            )))
        }
    }
    let mut client = etcd.connect().await?;
    let marker = client
        .get(keys.restored_from(), None)
        .await
        .map_err(|e| etcd_err("read the restore marker", e))?
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    match marker {
        Some(done) if done == m.id => return Ok(Outcome::AlreadyRestored(m.id)),
        Some(partial) if partial == format!("partial:{}", m.id) => {
            warn!(snapshot = %m.id, "an earlier restore of this snapshot was cut short; starting it again");
            etcd_part::clear(&mut client, &keys).await?;
        }
        _ => {
            let present = etcd_part::present(&mut client, &keys).await?;
            if let Some(k) = present.first() {
                return Err(refuse(format!(
                    "--restore-from needs an empty etcd prefix, and {} holds {} keys (the first: {}); restore into a new --cluster name, or delete them",
                    keys.root(),
                    present.len(),
                    String::from_utf8_lossy(k)
                )));
            }
        }
    }
    // Every part is read and checked before the first key is written.
    let kv = pairs(part(&src, &m, &prefix, ETCD_PART, 2).await?);
    let wanted = artifact_keys(&src, &m, &prefix).await?;
    put(&mut client, keys.restored_from(), format!("partial:{}", m.id)).await?;
    etcd_part::write(&mut client, &keys, &kv).await?;
    // Epochs of the old cluster are etcd revisions: far below the wall clock in seconds.
    let base = epoch_floor(&m).max(etcd_part::max_epoch(&kv) + 1);
    put(&mut client, keys.epoch_base(), base.to_string()).await?;
    put(&mut client, keys.restored_from(), m.id.clone()).await?;
    let missing = missing_artifacts(artifacts, &m.id, wanted).await?;
    let seconds = started.elapsed().as_secs_f64();
    info!(snapshot = %m.id, from, keys = kv.len(), epoch_base = base, etcd_revision = ?m.etcd_revision, seconds, "cluster state restored into etcd");
    Ok(Outcome::Restored(Restored {
        id: m.id,
        records: kv.len() as u64,
        missing_artifacts: missing,
        epoch: base,
        seconds,
    }))
}

async fn put(client: &mut etcd_client::Client, key: String, value: String) -> Result<(), DockyardError> {
    client
        .put(key.clone(), value, None)
        .await
        .map_err(|e| etcd_err(&format!("write {key}"), e))?;
    Ok(())
}

/// The lowest epoch a restored state may start at: the wall clock in seconds (which keeps
/// growing across restores), or one past the snapshot's if that is later.
fn epoch_floor(m: &Manifest) -> u64 {
    let wall = u64::try_from(now_ms() / 1000).unwrap_or(0);
    wall.max(m.epoch + 1)
}

/// The snapshot's artifact keys the store lacks, logged: one listing of the store (not a
/// HEAD per key: a million results would be a million requests).
async fn missing_artifacts(artifacts: &Arc<dyn ArtifactStore>, snapshot: &str, keys: Vec<String>) -> Result<Vec<String>, DockyardError> {
    let mut wanted: BTreeSet<String> = keys.into_iter().collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    for k in artifacts.list("orgs/").await? {
        wanted.remove(k.as_str());
    }
    let missing: Vec<String> = wanted.into_iter().collect();
    if !missing.is_empty() {
        warn!(
            snapshot,
            missing = missing.len(),
            first = ?missing.iter().take(5).collect::<Vec<_>>(),
            "the artifact store lacks objects the restored state refers to (restore them from the bucket's versions or the folder's snapshot); tasks that need a missing input fail"
        );
    }
    Ok(missing)
}
