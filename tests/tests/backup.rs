//! Backups from the operator's side: `dockyard admin backup` and the scheduled snapshots
//! with their pruning. (Restoring after the data folder is lost, and refusing a corrupt
//! snapshot, are fault-suite scenarios: tests/src/faults/backup.rs.)

use std::time::{Duration, Instant};

use dockyard_tests::metrics_scrape::{free_addr, scrape, value};
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

#[tokio::test]
async fn a_failing_backup_is_counted_logged_with_its_reason_and_retried() {
    let metrics = free_addr();
    // No folder can be made under /proc, root or not.
    let c = TestCluster::builder()
        .coordinator_arg("--backup-every")
        .coordinator_arg("200ms")
        .coordinator_arg("--backup-to")
        .coordinator_arg("file:///proc/dockyard-backups")
        .coordinator_arg("--metrics-listen")
        .coordinator_arg(&metrics)
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failures = value(&scrape(&metrics).await, "dockyard_backup_failures_total").unwrap_or(0.0);
        let logged = c.log_tails(200).matches("scheduled backup failed").count();
        // Two failures: the first, and a retry after it.
        if failures >= 2.0 && logged >= 2 {
            let log = c.log_tails(200);
            assert!(log.contains("/proc/dockyard-backups"), "the reason names the location:\n{log}");
            assert_eq!(
                value(&scrape(&metrics).await, "dockyard_backup_last_success_timestamp_seconds"),
                Some(0.0)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failures {failures}, logged {logged}:\n{}",
            c.log_tails(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a coordinator restoring `from` with `artifacts` as its store, waits until it
/// serves, stops it; its log.
async fn restore_log(dir: &std::path::Path, name: &str, artifacts: &std::path::Path, from: &str) -> String {
    use tokio::io::AsyncBufReadExt;
    let log = dir.join(format!("{name}.log"));
    let mut child = tokio::process::Command::from(dockyard_tests::clean_command(&dockyard_tests::binary("dockyard-coordinator")))
        .args(["--listen", "127.0.0.1:0", "--restore-from", from])
        .arg("--data-dir")
        .arg(dir.join(name))
        .arg("--artifacts")
        .arg(format!("file://{}", artifacts.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("start the coordinator");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let serving = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("listening on ") {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(serving, Ok(true), "the restored coordinator did not serve:\n{text}");
    text
}

/// The number in `missing_artifacts=N` of the restore's log line.
fn missing(log: &str) -> usize {
    let line = log
        .lines()
        .find(|l| l.contains("state restored from a snapshot"))
        .unwrap_or_else(|| panic!("no restore line:\n{log}"));
    let at = line.find("missing_artifacts=").unwrap_or_else(|| panic!("{line}")) + "missing_artifacts=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[tokio::test]
async fn a_restore_counts_the_artifacts_its_state_refers_to_that_are_gone() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let job = c.submit(dockyard_tests::sleep_docking_request(3)).await;
    c.wait_job_final(&job, Duration::from_secs(60)).await;
    let dir = c.dir().join("restores");
    let to = format!("file://{}", dir.join("backups").display());
    let out = c.cli(&["admin", "backup", "--to", &to, "--format", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every object of the screen (inputs, poses, logs) is on disk in the old store.
    let objects = files_under(&c.artifacts_dir()).len();
    assert!(objects > 3, "{objects}");

    let whole = restore_log(&dir, "with-artifacts", &c.artifacts_dir(), &to).await;
    assert_eq!(missing(&whole), 0, "{whole}");
    let empty = dir.join("empty-store");
    let gone = restore_log(&dir, "without-artifacts", &empty, &to).await;
    let n = missing(&gone);
    assert!(n > 3 && n <= objects, "{n} missing of {objects} objects:\n{gone}");
}

/// The manifest of snapshot `id` under `dir`.
fn manifest(dir: &std::path::Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(id).join("manifest.json")).expect("manifest")).expect("JSON")
}

#[tokio::test]
async fn in_a_cluster_the_leader_takes_the_scheduled_backups_and_a_new_leader_goes_on() {
    use dockyard_tests::ha::{HaCluster, HaOptions, CLUSTER};
    let keep_dir = tempfile::tempdir().expect("tmp");
    let to = format!("file://{}", keep_dir.path().display());
    let mut c = HaCluster::start(HaOptions {
        coordinators: 2,
        s3: false,
        coordinator_args: ["--backup-every", "300ms", "--backup-to", &to, "--backup-keep", "50"]
            .map(String::from)
            .to_vec(),
        ..HaOptions::default()
    })
    .await;
    let l = c.wait_leader(Duration::from_secs(30)).await;
    let leader = format!("coordinator@{}", c.coordinator_endpoint(l).trim_start_matches("http://"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let now = complete_snapshots(keep_dir.path());
        if now.len() >= 3 {
            break now;
        }
        assert!(Instant::now() < deadline, "scheduled cluster backups: {now:?}\n{}", c.log_tails(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for id in &first {
        let m = manifest(keep_dir.path(), id);
        assert_eq!(m["coordinator_id"].as_str(), Some(leader.as_str()), "taken by a standby: {m}");
        assert_eq!(m["cluster"].as_str(), Some(CLUSTER), "{m}");
        assert!(m["etcd_revision"].as_u64().is_some(), "{m}");
        assert!(
            m["parts"].as_array().expect("parts").iter().any(|p| p["name"] == "etcd.kv.zst"),
            "{m}"
        );
    }
    c.kill_coordinator(l);
    let n = c.wait_new_leader(l, Duration::from_secs(30)).await;
    let next = format!("coordinator@{}", c.coordinator_endpoint(n).trim_start_matches("http://"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let by_next = complete_snapshots(keep_dir.path())
            .into_iter()
            .filter(|id| manifest(keep_dir.path(), id)["coordinator_id"].as_str() == Some(next.as_str()))
            .count();
        if by_next >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no backups from the new leader\n{}", c.log_tails(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
