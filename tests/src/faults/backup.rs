//! Backup and restore: the coordinator's data folder lost mid-screen and brought back from a
//! snapshot, and snapshots that must be refused.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use dockyard_common::ids::JobId;
use dockyard_coordinator::store::Store;

use super::{wait_for, Report, Size};
use crate::fault_engine::Fault;
use crate::{input, ligand_1iep, pb, read_shared, vina_1iep_request, AgentOptions, TestCluster};

/// `(index, score, pose_key)` of every result of `job` in a snapshot's scheduler part,
/// decoded here (zstd, then length-prefixed key and value) rather than by the restore code.
fn snapshot_results(snapshot: &Path, job: &str) -> Result<Vec<(u32, f64, String)>> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(snapshot.join("manifest.json"))?)?;
    ensure!(manifest["format"] == 2, "unexpected manifest: {manifest}");
    let raw = zstd::stream::decode_all(&std::fs::read(snapshot.join("scheduler.kv.zst"))?[..])?;
    let mut fields = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let len = u32::from_be_bytes(raw.get(at..at + 4).context("a cut length")?.try_into()?) as usize;
        fields.push(raw.get(at + 4..at + 4 + len).context("a cut field")?);
        at += 4 + len;
    }
    ensure!(fields.len() % 2 == 0, "odd number of fields");
    let prefix = format!("r/{job}");
    let mut out = Vec::new();
    for kv in fields.chunks(2) {
        if kv[0].starts_with(prefix.as_bytes()) {
            let v: serde_json::Value = serde_json::from_slice(kv[1])?;
            let index = v["index"].as_u64().context("index")? as u32;
            out.push((
                index,
                v["score"].as_f64().context("score")?,
                v["pose_key"].as_str().context("pose_key")?.to_string(),
            ));
        }
    }
    Ok(out)
}

/// `AdminService/Backup` to `to`.
async fn backup(c: &TestCluster, to: &str) -> Result<pb::BackupResponse> {
    Ok(c.admin()
        .await
        .backup(c.req(pb::BackupRequest { to: to.to_string() }))
        .await
        .context("Backup")?
        .into_inner())
}

fn succeeded(j: &pb::Job) -> u32 {
    j.tasks.as_ref().map_or(0, |t| t.succeeded)
}

/// Scenario: a screen is backed up mid-run; more of it commits; the coordinator is killed
/// and its data folder deleted; a new one restores the snapshot and the screen finishes.
/// Every task is committed exactly once (from the restored sled's records), and every
/// result in the snapshot is there unchanged (same score, same pose object).
pub async fn restore_after_data_loss(size: Size) -> Result<Report> {
    let mut r = Report::new("backup_then_data_folder_lost");
    let keep = tempfile::tempdir()?;
    let artifacts = keep.path().join("artifacts");
    let backups = keep.path().join("backups");
    let backups_uri = format!("file://{}", backups.display());
    let mut c = TestCluster::builder()
        .coordinator_arg("--artifacts")
        .coordinator_arg(format!("file://{}", artifacts.display()))
        .reconcile_grace_ms(1500)
        .start()
        .await;
    let fault = Fault::new(c.dir());
    fault.set_mode("ok");
    c.add_agent_and_wait(
        AgentOptions::vina(2)
            .node_id("backup-host")
            .arg("--vina")
            .arg(fault.wrapper.display().to_string()),
    )
    .await;
    let n = size.tasks() * 2;
    let ligand = read_shared(&ligand_1iep());
    let mut req = vina_1iep_request((0..n).map(|i| input(&format!("lig{i}.pdbqt"), ligand.clone())).collect());
    req.fresh = true;
    req.batch_size = 1;
    let job = c.submit(req).await;
    let total = c.get_job(&job).await.tasks.as_ref().map_or(0, |t| t.total);
    ensure!(total == n, "{total} tasks for {n} ligands");

    let third = total / 3;
    wait_for("a third of the screen committed", Duration::from_secs(120), || {
        let c = &c;
        let job = &job;
        async move { (succeeded(&c.get_job(job).await) >= third).then_some(()) }
    })
    .await?;
    let b = backup(&c, &backups_uri).await?;
    let before = snapshot_results(&backups.join(&b.id), &job)?;
    ensure!(
        !before.is_empty() && (before.len() as u32) < total,
        "the snapshot should fall mid-screen: {} of {total} results",
        before.len()
    );
    // Work committed after the snapshot, which the restore loses and must redo.
    let after = before.len() as u32 + 4;
    wait_for("results committed after the snapshot", Duration::from_secs(60), || {
        let c = &c;
        let job = &job;
        async move {
            let j = c.get_job(job).await;
            (succeeded(&j) >= after || crate::is_final(&j)).then_some(())
        }
    })
    .await?;
    let lost_at = Instant::now();
    c.kill_coordinator();
    std::fs::remove_dir_all(c.data_dir()).context("delete the data folder")?;
    c.start_coordinator_again_with(&["--restore-from".to_string(), backups_uri.clone()])
        .await;
    r.detect_s = lost_at.elapsed().as_secs_f64();
    let j = c.wait_job_final(&job, Duration::from_secs(180)).await;
    ensure!(crate::state(&j) == pb::JobState::Succeeded, "{}", crate::describe_job(&j));
    r.recover_s = lost_at.elapsed().as_secs_f64();
    // The flag left in place (a unit file): the next start finds the snapshot restored and
    // keeps what happened since.
    c.restart_coordinator().await;
    ensure!(
        crate::is_final(&c.get_job(&job).await),
        "a restart with --restore-from still set lost the finished screen"
    );
    c.kill_coordinator();

    let (doubles, lost) = crate::sled_audit::audit_sled(c.data_dir(), &job, total)?;
    r.lost = Some(lost);
    r.double_commits = Some(doubles);
    let store = Store::open(c.data_dir())?;
    let (now, _) = store.results(&JobId::parse(&job)?, None, usize::MAX)?;
    let now: HashMap<u32, (f64, String)> = now.into_iter().map(|x| (x.index, (x.score, x.pose_key))).collect();
    for (index, score, key) in &before {
        match now.get(index) {
            Some((s, k)) if s == score && k == key => {}
            other => bail!("ligand {index}: {score} {key} in the snapshot, {other:?} after the restore"),
        }
    }
    r.note = format!(
        "snapshot at commit {} held {} of {total} results, dispatch held {:.1} ms",
        b.commit_position,
        before.len(),
        b.pause_ms
    );
    Ok(r)
}

/// Starts a coordinator on `data_dir` restoring from `from`; its exit status and log.
async fn restore_exit(data_dir: &Path, from: &str) -> Result<(std::process::ExitStatus, String)> {
    let out = tokio::process::Command::from(crate::clean_command(&crate::binary("dockyard-coordinator")))
        .args(["--listen", "127.0.0.1:0", "--restore-from", from])
        .arg("--data-dir")
        .arg(data_dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .context("the coordinator kept running with a bad snapshot")??;
    Ok((out.status, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// Scenario: a snapshot with one byte of a part changed, and one from a newer format, are
/// refused at start, naming what is wrong, and nothing is written to the data folder.
pub async fn corrupted_snapshot(_size: Size) -> Result<Report> {
    let mut r = Report::new("corrupted_snapshot_refused");
    let keep = tempfile::tempdir()?;
    let backups = keep.path().join("backups");
    let backups_uri = format!("file://{}", backups.display());
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let job = c.submit_sleep(6, 10, 0).await;
    c.wait_job_final(&job, Duration::from_secs(60)).await;
    let b = backup(&c, &backups_uri).await?;
    let snap = backups.join(&b.id);

    let part = snap.join("scheduler.kv.zst");
    let good = std::fs::read(&part)?;
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&part, &bad)?;
    let fresh = keep.path().join("fresh");
    let started = Instant::now();
    let (st, log) = restore_exit(&fresh, &backups_uri).await?;
    r.detect_s = started.elapsed().as_secs_f64();
    ensure!(!st.success(), "a corrupted snapshot was restored:\n{log}");
    ensure!(
        log.contains("scheduler.kv.zst") && log.contains("checksum"),
        "the refusal should name the part and its checksum:\n{log}"
    );
    ensure!(Store::open(&fresh)?.is_blank()?, "a refused restore wrote state");
    std::fs::write(&part, &good)?;

    let manifest = snap.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)?;
    std::fs::write(&manifest, text.replacen("\"format\": 2", "\"format\": 99", 1))?;
    let (st, log) = restore_exit(&fresh, &format!("file://{}", snap.display())).await?;
    ensure!(
        !st.success() && log.contains("format 99 is newer"),
        "a newer format was not refused:\n{log}"
    );
    ensure!(Store::open(&fresh)?.is_blank()?, "a refused restore wrote state");
    r.note = "a flipped byte (checksum) and a newer format, both refused by name".into();
    Ok(r)
}

/// The records of a snapshot's part `name` (key, value), decoded here (zstd, then
/// length-prefixed fields) rather than by the restore code.
fn snapshot_part(snapshot: &Path, name: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let raw = zstd::stream::decode_all(&std::fs::read(snapshot.join(name))?[..])?;
    let mut fields = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let len = u32::from_be_bytes(raw.get(at..at + 4).context("a cut length")?.try_into()?) as usize;
        fields.push(raw.get(at + 4..at + 4 + len).context("a cut field")?.to_vec());
        at += 4 + len;
    }
    ensure!(fields.len() % 2 == 0, "odd number of fields in {name}");
    Ok(fields.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect())
}

/// `AdminService/Backup` to `to`, asked of coordinator `l` of a cluster.
async fn leader_backup(c: &crate::ha::HaCluster, l: usize, to: &str) -> Result<pb::BackupResponse> {
    Ok(c.admin(l)
        .await
        .backup(pb::BackupRequest { to: to.to_string() })
        .await
        .context("Backup")?
        .into_inner())
}

/// Scenario: a screen on a cluster (etcd, two agents) is backed up mid-run through the
/// leader; more of it commits; the coordinator is killed, its data folder deleted and every
/// key of the cluster in etcd deleted; a coordinator restores the snapshot into the empty
/// prefix and the screen finishes. Every task is committed exactly once (counted from the
/// commit records in etcd), every commit record of the snapshot is back unchanged, and the
/// new leader's epoch is above every epoch the old cluster used.
pub async fn cluster_restore_after_etcd_loss(size: Size) -> Result<Report> {
    use crate::faults::{job, submit_sleep};
    use crate::ha::{audit, HaCluster, HaOptions, CLUSTER};
    let mut r = Report::new("cluster_backup_then_etcd_lost");
    let keep = tempfile::tempdir()?;
    let backups = keep.path().join("backups");
    let backups_uri = format!("file://{}", backups.display());
    let mut c = HaCluster::start(HaOptions {
        coordinators: 1,
        s3: false,
        coordinator_args: vec!["--reconcile-grace-ms".into(), "1500".into()],
        ..HaOptions::default()
    })
    .await;
    let l = c.wait_leader(Duration::from_secs(30)).await;
    let endpoint = c.coordinator_endpoint(l).to_string();
    // Agents that dial the coordinator's address, not etcd: their membership is not in the
    // keys the disaster deletes.
    c.add_static_agent("a0", 2, &endpoint, &[]);
    c.add_static_agent("a1", 2, &endpoint, &[]);
    c.wait_nodes(l, 2).await;
    let total = size.tasks() * 2;
    let id = submit_sleep(&c, total, size.task_ms()).await?;
    let old_epoch = c.leader_info(l).await.context("leader info")?.epoch;
    wait_for("a third of the screen committed", Duration::from_secs(120), || async {
        job(&c, &id).await.filter(|j| super::succeeded(j) >= total / 3)
    })
    .await?;
    let b = leader_backup(&c, l, &backups_uri).await?;
    let snap = backups.join(&b.id);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(snap.join("manifest.json"))?)?;
    ensure!(
        manifest["cluster"] == CLUSTER && manifest["etcd_revision"].as_u64().is_some(),
        "not a cluster snapshot: {manifest}"
    );
    let prefix = format!("commits/{id}/");
    let snapped: Vec<(Vec<u8>, Vec<u8>)> = snapshot_part(&snap, "etcd.kv.zst")?
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix.as_bytes()))
        .collect();
    let mut in_snapshot = std::collections::BTreeSet::new();
    for (_, v) in &snapped {
        let rec: serde_json::Value = serde_json::from_slice(v)?;
        for t in rec["tasks"].as_array().context("tasks")? {
            in_snapshot.insert(t.as_u64().context("index")?);
        }
    }
    ensure!(
        !in_snapshot.is_empty() && (in_snapshot.len() as u32) < total,
        "the snapshot should fall mid-screen: {} of {total} tasks committed in it",
        in_snapshot.len()
    );
    // Work committed after the snapshot, which the restore loses and must redo.
    let after = in_snapshot.len() as u32 + 4;
    wait_for("results committed after the snapshot", Duration::from_secs(60), || async {
        job(&c, &id).await.filter(|j| super::succeeded(j) >= after || crate::is_final(j))
    })
    .await?;
    let lost_at = Instant::now();
    c.kill_coordinator(l);
    std::fs::remove_dir_all(c.coordinator_data_dir(l)).context("delete the data folder")?;
    let deleted = c.wipe_etcd().await?;
    ensure!(c.commits(&id).await.is_empty() && deleted > 0, "etcd still holds the screen");
    c.start_coordinator_again(l, &["--restore-from".to_string(), backups_uri.clone()]);
    let l = c.wait_leader(Duration::from_secs(60)).await;
    r.detect_s = lost_at.elapsed().as_secs_f64();
    let new_epoch = c.leader_info(l).await.context("leader info after the restore")?.epoch;
    ensure!(
        new_epoch > old_epoch,
        "the restored leader's epoch {new_epoch} is not above the old one's {old_epoch}"
    );
    let j = wait_for("the screen to finish after the restore", Duration::from_secs(180), || async {
        job(&c, &id).await.filter(crate::is_final)
    })
    .await?;
    ensure!(crate::state(&j) == pb::JobState::Succeeded, "{}", crate::describe_job(&j));
    r.recover_s = lost_at.elapsed().as_secs_f64();
    // The flag left in place: the next start finds the snapshot restored and keeps what
    // happened since.
    c.start_coordinator_again(l, &["--restore-from".to_string(), backups_uri.clone()]);
    let l = c.wait_leader(Duration::from_secs(60)).await;
    let again = wait_for("the finished screen after a restart", Duration::from_secs(60), || async {
        job(&c, &id).await
    })
    .await?;
    ensure!(
        crate::state(&again) == pb::JobState::Succeeded,
        "a restart with --restore-from still set lost the finished screen: {}",
        crate::describe_job(&again)
    );
    // A second snapshot cannot be restored over the live cluster: the prefix holds keys.
    let b2 = leader_backup(&c, l, &backups_uri).await?;
    let fresh = keep.path().join("fresh");
    let out = tokio::process::Command::from(crate::clean_command(&crate::binary("dockyard-coordinator")))
        .args(["--listen", "127.0.0.1:0", "--etcd", &c.etcd_urls(), "--cluster", CLUSTER])
        .arg("--restore-from")
        .arg(format!("file://{}", backups.join(&b2.id).display()))
        .arg("--data-dir")
        .arg(&fresh)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .context("a restore over a live cluster kept running")??;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && log.contains("needs an empty etcd prefix"),
        "a restore over a live cluster was not refused as such:\n{log}"
    );

    let commits = c.commits(&id).await;
    let (doubles, lost) = audit(&commits, total);
    r.lost = Some(lost);
    r.double_commits = Some(doubles);
    let now = c.etcd_prefix_kv(format!("/dockyard/{CLUSTER}/{prefix}")).await;
    for (k, v) in &snapped {
        let full = format!("/dockyard/{CLUSTER}/{}", String::from_utf8_lossy(k));
        match now.iter().find(|(nk, _)| *nk == full.as_bytes()) {
            Some((_, nv)) if nv == v => {}
            Some(_) => bail!("{full} changed after the restore"),
            None => bail!("{full} is missing after the restore"),
        }
    }
    r.note = format!(
        "snapshot at etcd revision {} held {} of {total} tasks' commits, dispatch held {:.1} ms; epoch {old_epoch} -> {new_epoch}",
        manifest["etcd_revision"],
        in_snapshot.len(),
        b.pause_ms
    );
    Ok(r)
}
