//! Taking one snapshot: the scheduler's records copied between two group commits (the only
//! moment dispatch waits), then encoded, checksummed and written outside the actor, parts
//! first and the manifest last.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::info;

use dockyard_common::artifact::{sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::cluster::EtcdSettings;
use dockyard_common::error::DockyardError;
use dockyard_common::time::now_ms;

use super::etcd_part;
use super::format::{encode_part, Manifest, Part, ARTIFACTS_PART, ETCD_PART, FORMAT, MANIFEST, SCHEDULER_PART, TENANTS_PART};
use crate::scheduler::{Command, SchedulerHandle, SchedulerSnapshot};
use crate::store::{referenced_artifacts, Store};

pub struct Source<'a> {
    pub scheduler: &'a SchedulerHandle,
    pub store: &'a Store,
    pub coordinator_id: &'a str,
    /// Cluster mode: where the rest of the state is.
    pub etcd: Option<&'a EtcdSettings>,
}

/// A snapshot id sorts by time: `snap-<unix ms>-c<commit position>`.
fn snapshot_id(at_ms: u64, commit: u64) -> String {
    format!("snap-{at_ms:013}-c{commit:012}")
}

pub fn key(id: &str, part: &str) -> Result<ArtifactKey, DockyardError> {
    ArtifactKey::new(format!("{id}/{part}"))
}

/// Takes a snapshot and writes it to `target`; returns its manifest and the seconds taken.
pub async fn take(src: Source<'_>, target: &Arc<dyn ArtifactStore>) -> Result<(Manifest, f64), DockyardError> {
    let started = Instant::now();
    let snap: SchedulerSnapshot = src.scheduler.ask(|reply| Command::Snapshot { reply }).await?;
    let tenants = src.store.export_tenants()?;
    let created = u64::try_from(now_ms()).unwrap_or(0);
    let id = snapshot_id(created, snap.commit_position);
    let SchedulerSnapshot {
        records,
        commit_position,
        etcd_revision,
        epoch,
        paused,
    } = snap;
    // etcd as of the revision right after the same commit: later writes (of this leader or
    // an operator's token) are not in it.
    let etcd = match (src.etcd, etcd_revision) {
        (Some(settings), Some(rev)) => {
            let mut client = settings.connect().await?;
            Some((
                settings.cluster.clone(),
                rev,
                etcd_part::read(&mut client, &settings.keys(), rev).await?,
            ))
        }
        (Some(_), None) => {
            return Err(DockyardError::Internal(
                "cluster mode, but the scheduler reported no etcd revision".into(),
            ))
        }
        _ => None,
    };
    let (cluster, etcd_revision) = match &etcd {
        Some((c, rev, _)) => (Some(c.clone()), Some(*rev)),
        None => (None, None),
    };
    let encoded = tokio::task::spawn_blocking(move || -> Result<_, DockyardError> {
        let mut keys = referenced_artifacts(&records)?;
        let mut parts = vec![
            (
                SCHEDULER_PART,
                encode_part(2, records.iter().map(|(k, v)| vec![k.as_ref(), v.as_ref()]))?,
            ),
            (
                TENANTS_PART,
                encode_part(2, tenants.iter().map(|(k, v)| vec![k.as_ref(), v.as_ref()]))?,
            ),
        ];
        if let Some((_, _, kv)) = &etcd {
            keys.extend(etcd_part::referenced(kv));
            parts.push((ETCD_PART, encode_part(2, kv.iter().map(|(k, v)| vec![k.as_slice(), v.as_slice()]))?));
        }
        parts.push((ARTIFACTS_PART, encode_part(1, keys.iter().map(|k| vec![k.as_bytes()]))?));
        Ok(parts)
    })
    .await
    .map_err(|e| DockyardError::Internal(format!("snapshot encoding task: {e}")))??;
    let mut parts = Vec::new();
    let mut artifact_keys = 0;
    for (name, (bytes, records)) in encoded {
        let part = Part {
            name: name.to_string(),
            records,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        if name == ARTIFACTS_PART {
            artifact_keys = records;
        }
        target.put(&key(&id, name)?, Bytes::from(bytes)).await?;
        parts.push(part);
    }
    let manifest = Manifest {
        format: FORMAT,
        id: id.clone(),
        created_unix_ms: created,
        coordinator_id: src.coordinator_id.to_string(),
        dockyard_version: env!("CARGO_PKG_VERSION").to_string(),
        commit_position,
        epoch,
        pause_ms: paused.as_secs_f64() * 1000.0,
        parts,
        artifact_keys,
        cluster,
        etcd_revision,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| DockyardError::Internal(e.to_string()))?;
    // Last: until this object exists the snapshot does not (a restore and the pruning
    // both start from manifests).
    target.put(&key(&id, MANIFEST)?, Bytes::from(body)).await?;
    let secs = started.elapsed().as_secs_f64();
    info!(
        snapshot = %id,
        to = %target.uri(),
        commit_position,
        pause_ms = manifest.pause_ms,
        bytes = manifest.parts.iter().map(|p| p.bytes).sum::<u64>(),
        seconds = secs,
        "backup written"
    );
    Ok((manifest, secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_sort_by_time() {
        let a = super::snapshot_id(999, 5);
        let b = super::snapshot_id(1_000, 1);
        assert!(a < b, "{a} {b}");
        assert!(dockyard_common::artifact::ArtifactKey::new(format!("{a}/manifest.json")).is_ok());
    }
}
