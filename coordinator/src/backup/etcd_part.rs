//! A cluster's state in etcd, read for a snapshot as of one revision and written back by a
//! restore. Carried: the job index, commit records, drains, tokens, quotas and usage.
//! Not carried: the election, agents' membership (both bound to leases of processes that
//! no longer exist after a disaster), the epoch base and the restore marker (a restore
//! writes its own).

use std::collections::BTreeSet;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use dockyard_common::cluster::{etcd_err, CommitRecord, JobIndexRecord, Keys};
use dockyard_common::error::DockyardError;

/// etcd refuses transactions with more operations than `--max-txn-ops` (128 by default).
const TXN_OPS: usize = 100;
const PAGE: i64 = 1000;

/// Whether a key (relative to the cluster's root) belongs in a snapshot.
pub fn carried(rel: &[u8]) -> bool {
    const SKIP: [&[u8]; 4] = [b"leader", b"nodes/", b"epoch_base", b"restored_from"];
    !SKIP.iter().any(|p| rel.starts_with(p))
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Every carried key under the cluster's root as of `revision`, relative to the root.
pub async fn read(client: &mut Client, keys: &Keys, revision: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DockyardError> {
    let root = keys.root().as_bytes();
    let end = prefix_end(root);
    let mut from = root.to_vec();
    let mut out = Vec::new();
    loop {
        let opts = GetOptions::new()
            .with_range(end.clone())
            .with_revision(revision as i64)
            .with_limit(PAGE);
        let r = client
            .get(from.clone(), Some(opts))
            .await
            .map_err(|e| etcd_err(&format!("read the cluster's keys as of revision {revision}"), e))?;
        let kvs = r.kvs();
        for kv in kvs {
            let rel = &kv.key()[root.len()..];
            if carried(rel) {
                out.push((rel.to_vec(), kv.value().to_vec()));
            }
        }
        match kvs.last() {
            Some(last) if r.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// The artifact-store keys the etcd records point at: job specs and commit files.
pub fn referenced(records: &[(Vec<u8>, Vec<u8>)]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (k, v) in records {
        if k.starts_with(b"jobs/") {
            if let Ok(r) = serde_json::from_slice::<JobIndexRecord>(v) {
                keys.insert(r.spec_key);
            }
        } else if k.starts_with(b"commits/") {
            if let Ok(r) = serde_json::from_slice::<CommitRecord>(v) {
                keys.insert(r.artifact_key);
            }
        }
    }
    keys
}

/// The largest epoch in the commit records (their keys and bodies both carry it).
pub fn max_epoch(records: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    records
        .iter()
        .filter(|(k, _)| k.starts_with(b"commits/"))
        .filter_map(|(_, v)| serde_json::from_slice::<CommitRecord>(v).ok())
        .map(|r| r.epoch)
        .max()
        .unwrap_or(0)
}

/// The carried keys now under the root; empty for a cluster never used or wiped.
pub async fn present(client: &mut Client, keys: &Keys) -> Result<Vec<Vec<u8>>, DockyardError> {
    let root = keys.root().as_bytes();
    let r = client
        .get(root, Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .map_err(|e| etcd_err("list the cluster's keys", e))?;
    Ok(r.kvs()
        .iter()
        .map(|kv| kv.key()[root.len()..].to_vec())
        .filter(|k| carried(k))
        .collect())
}

/// Deletes every carried key (what a cut-short restore of the same snapshot left).
pub async fn clear(client: &mut Client, keys: &Keys) -> Result<(), DockyardError> {
    let root = keys.root().as_bytes().to_vec();
    for k in present(client, keys).await? {
        let mut full = root.clone();
        full.extend_from_slice(&k);
        client
            .delete(full, None)
            .await
            .map_err(|e| etcd_err("clear a cut-short restore", e))?;
    }
    Ok(())
}

/// Writes `records` under the root, `TXN_OPS` to a transaction, each only where the key
/// does not exist: a coordinator of the same cluster that started meanwhile cannot be
/// overwritten.
pub async fn write(client: &mut Client, keys: &Keys, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DockyardError> {
    let root = keys.root().as_bytes();
    for chunk in records.chunks(TXN_OPS) {
        let mut when = Vec::with_capacity(chunk.len());
        let mut ops = Vec::with_capacity(chunk.len());
        for (k, v) in chunk {
            let mut full = root.to_vec();
            full.extend_from_slice(k);
            when.push(Compare::version(full.clone(), CompareOp::Equal, 0));
            ops.push(TxnOp::put(full, v.clone(), None));
        }
        let r = client
            .txn(Txn::new().when(when).and_then(ops))
            .await
            .map_err(|e| etcd_err("write the restored keys", e))?;
        if !r.succeeded() {
            return Err(DockyardError::FailedPrecondition(format!(
                "{}: keys appeared under the cluster's prefix while the restore wrote them; stop the cluster's other coordinators and restore again",
                keys.root()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_and_markers_stay_out() {
        for k in ["leader/694d9", "nodes/a0", "epoch_base", "restored_from"] {
            assert!(!carried(k.as_bytes()), "{k}");
        }
        for k in [
            "jobs/j1",
            "commits/j1/00000000000000000007-000000000003",
            "tokens/t",
            "quotas/o",
            "usage/o",
            "drained/n",
        ] {
            assert!(carried(k.as_bytes()), "{k}");
        }
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/dockyard/c/"), b"/dockyard/c0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }

    #[test]
    fn epochs_and_artifacts_come_from_the_records() {
        let commit = |e: u64| {
            serde_json::to_vec(&CommitRecord {
                artifact_key: format!("orgs/o/jobs/j/commits/{e}"),
                tasks: vec![1],
                epoch: e,
            })
            .expect("json")
        };
        let recs = vec![
            (b"commits/j/a".to_vec(), commit(7)),
            (b"commits/j/b".to_vec(), commit(41)),
            (b"tokens/x".to_vec(), b"{}".to_vec()),
        ];
        assert_eq!(max_epoch(&recs), 41);
        let keys = referenced(&recs);
        assert!(keys.contains("orgs/o/jobs/j/commits/41") && keys.len() == 2, "{keys:?}");
    }
}
