//! The snapshots under a backup location: which are complete (have a manifest), the newest,
//! and pruning the oldest beyond `--backup-keep`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};

use dockyard_common::artifact::{ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;

use super::format::MANIFEST;

#[derive(Debug, Default)]
pub struct Listing {
    /// Snapshot id -> its keys, for every folder named `snap-...`.
    pub folders: BTreeMap<String, Vec<ArtifactKey>>,
}

impl Listing {
    pub async fn read(target: &Arc<dyn ArtifactStore>) -> Result<Listing, DockyardError> {
        let mut l = Listing::default();
        for k in target.list("snap-").await? {
            if let Some((id, _)) = k.as_str().split_once('/') {
                l.folders.entry(id.to_string()).or_default().push(k);
            }
        }
        Ok(l)
    }

    pub fn complete(&self) -> Vec<&str> {
        self.folders
            .iter()
            .filter(|(id, keys)| keys.iter().any(|k| k.as_str() == format!("{id}/{MANIFEST}")))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    pub fn newest(&self) -> Option<&str> {
        self.complete().last().copied()
    }
}

/// Keeps the newest `keep` complete snapshots; deletes older ones (manifest first, so a
/// deletion cut short leaves an incomplete folder, never a snapshot with parts missing) and
/// the parts of backups that died before their manifest, when older than the newest one.
pub async fn prune(target: &Arc<dyn ArtifactStore>, keep: usize) -> Result<usize, DockyardError> {
    let l = Listing::read(target).await?;
    let complete = l.complete();
    let Some(newest) = complete.last().copied() else { return Ok(0) };
    let old: Vec<&str> = complete[..complete.len().saturating_sub(keep.max(1))].to_vec();
    let mut removed = 0;
    for (id, keys) in &l.folders {
        let unfinished = !complete.contains(&id.as_str()) && id.as_str() < newest;
        if !(old.contains(&id.as_str()) || unfinished) {
            continue;
        }
        let mut keys = keys.clone();
        keys.sort_by_key(|k| !k.as_str().ends_with(MANIFEST));
        for k in keys {
            if let Err(e) = target.delete(&k).await {
                warn!(key = %k, error = %e, "cannot delete an old snapshot's object; the next pruning retries");
                return Err(e);
            }
        }
        info!(snapshot = %id, unfinished, "old snapshot pruned");
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use dockyard_common::artifact::LocalStore;

    use super::*;

    #[tokio::test]
    async fn prune_keeps_the_newest_and_drops_unfinished_older_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn ArtifactStore> = Arc::new(LocalStore::open(dir.path()).expect("store"));
        let put = |k: String| {
            let store = Arc::clone(&store);
            async move {
                store
                    .put(&ArtifactKey::new(k).expect("key"), Bytes::from_static(b"x"))
                    .await
                    .expect("put")
            }
        };
        for (id, complete) in [
            ("snap-1", true),
            ("snap-2", false),
            ("snap-3", true),
            ("snap-4", true),
            ("snap-5", false),
        ] {
            put(format!("{id}/scheduler.kv.zst")).await;
            if complete {
                put(format!("{id}/{MANIFEST}")).await;
            }
        }
        assert_eq!(Listing::read(&store).await.expect("list").newest(), Some("snap-4"));
        assert_eq!(prune(&store, 2).await.expect("prune"), 2);
        let left: Vec<String> = Listing::read(&store).await.expect("list").folders.into_keys().collect();
        // snap-5 may be a backup still being written: newer than the newest, it stays.
        assert_eq!(left, ["snap-3", "snap-4", "snap-5"]);
    }
}
