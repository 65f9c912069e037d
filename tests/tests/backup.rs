//! Backups from the operator's side: `dockyard admin backup` and the scheduled snapshots
//! with their pruning. (Restoring after the data folder is lost, and refusing a corrupt
//! snapshot, are fault-suite scenarios: tests/src/faults/backup.rs.)

use std::time::{Duration, Instant};

use dockyard_tests::{files_under, AgentOptions, TestCluster};

/// Snapshot folders under `dir` that have their manifest.
fn complete_snapshots(dir: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
        .filter_map(|p| p.parent()?.file_name()?.to_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn admin_backup_writes_a_snapshot_whose_manifest_matches_its_parts() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let job = c.submit_sleep(5, 10, 0).await;
    c.wait_job_final(&job, Duration::from_secs(60)).await;
    let dir = c.dir().join("backups");
    let to = format!("file://{}", dir.display());
    let out = c.cli(&["admin", "backup", "--to", &to, "--format", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["uri"].as_str(), Some(format!("{to}/{id}").as_str()), "{v}");
    assert!(v["records"].as_u64().expect("records") > 0, "{v}");
    assert_eq!(complete_snapshots(&dir), vec![id.clone()]);

    // The manifest's sizes and checksums are those of the files, hashed here.
    let snap = dir.join(&id);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(snap.join("manifest.json")).expect("manifest")).expect("JSON");
    let parts = m["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 3, "{m}");
    for p in parts {
        let bytes = std::fs::read(snap.join(p["name"].as_str().expect("name"))).expect("part");
        assert_eq!(p["bytes"].as_u64(), Some(bytes.len() as u64), "{p}");
        use sha2::Digest;
        assert_eq!(
            p["sha256"].as_str(),
            Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()),
            "{p}"
        );
    }

    // A location that is not one is refused with the field named, and writes nothing.
    let out = c.cli(&["admin", "backup", "--to", "ftp://elsewhere"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ftp://elsewhere"), "{err}");
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_few() {
    let keep_dir = tempfile::tempdir().expect("tmp");
    let to = format!("file://{}", keep_dir.path().display());
    let c = TestCluster::builder()
        .coordinator_arg("--backup-every")
        .coordinator_arg("300ms")
        .coordinator_arg("--backup-to")
        .coordinator_arg(&to)
        .coordinator_arg("--backup-keep")
        .coordinator_arg("2")
        .start()
        .await;
    let _job = c.submit_sleep(3, 10, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Pruning runs after each backup: past the third, at most the newest two remain and
    // the oldest ones are gone.
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let now = complete_snapshots(keep_dir.path());
        seen.extend(now.iter().cloned());
        if seen.len() >= 4 {
            let now = complete_snapshots(keep_dir.path());
            assert!(now.len() <= 3, "kept {now:?}");
            let oldest = seen.iter().next().expect("one").clone();
            assert!(!now.contains(&oldest), "{oldest} not pruned: {now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scheduled backups: {seen:?} within 30 s\n{}",
            c.log_tails(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
