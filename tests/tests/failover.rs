//! Cluster mode against a real etcd and a real S3 server (s3s-fs): membership leases,
//! live node addition, leader failover with nothing lost or committed twice, and fencing
//! of a paused leader.

use std::time::{Duration, Instant};

use dockyard_tests::ha::{audit, HaCluster, HaOptions};
use dockyard_tests::{pb, sleep_request};

async fn submit(c: &HaCluster, leader: usize, count: u32, sleep_ms: u32) -> String {
    let mut jobs = c.jobs(leader).await;
    jobs.submit_job(sleep_request(count, sleep_ms, 0))
        .await
        .expect("submit")
        .into_inner()
        .job_id
}

async fn job(c: &HaCluster, i: usize, id: &str) -> Option<pb::Job> {
    let mut jobs = c.jobs(i).await;
    jobs.get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .ok()
        .map(|r| r.into_inner())
}

fn succeeded(j: &pb::Job) -> bool {
    j.state == pb::JobState::Succeeded as i32
}

async fn wait_job(c: &HaCluster, i: usize, id: &str, timeout: Duration, pred: impl Fn(&pb::Job) -> bool) -> pb::Job {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(j) = job(c, i, id).await {
            if pred(&j) {
                return j;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not reach the expected state in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn done(j: &pb::Job) -> u32 {
    j.tasks.as_ref().map_or(0, |t| t.succeeded)
}

#[tokio::test]
async fn an_agents_expired_etcd_lease_requeues_its_tasks() {
    // The coordinator's own stream lease is 60 s: only the etcd lease (2 s) can explain a
    // requeue within seconds.
    let opts = HaOptions {
        coordinators: 1,
        s3: false,
        lease_ms: 60_000,
        heartbeat_ms: 1000,
        ..HaOptions::default()
    };
    let mut c = HaCluster::start(opts).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    c.add_agent("a0", 2, &["--etcd-ttl-ms", "2000"]);
    c.wait_nodes(leader, 1).await;
    let id = submit(&c, leader, 2, 60_000).await;
    wait_job(&c, leader, &id, Duration::from_secs(20), |j| {
        j.tasks.as_ref().is_some_and(|t| t.running == 2)
    })
    .await;
    c.pause_agent(0);
    let paused = Instant::now();
    let deadline = paused + Duration::from_secs(15);
    loop {
        let s = c.stats(leader).await.expect("stats");
        if s.requeued_total >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks of the paused agent were not requeued within 15 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detect = paused.elapsed();
    println!(
        "etcd lease expiry detected and tasks requeued in {:.1} s (etcd TTL 2 s)",
        detect.as_secs_f64()
    );
    assert!(detect < Duration::from_secs(15));
    let mut admin = c.admin(leader).await;
    let nodes = admin.list_nodes(pb::ListNodesRequest {}).await.expect("nodes").into_inner().nodes;
    let a0 = nodes.iter().find(|n| n.node_id == "a0").expect("a0 listed");
    assert_eq!(a0.state, pb::NodeState::Lost as i32, "{a0:?}");
    c.resume_agent(0);
}

#[tokio::test]
async fn a_node_added_live_finds_the_leader_through_etcd_and_receives_work() {
    let opts = HaOptions {
        s3: false,
        ..HaOptions::default()
    };
    let mut c = HaCluster::start(opts).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    c.add_agent("first", 1, &[]);
    c.wait_nodes(leader, 1).await;
    let id = submit(&c, leader, 30, 200).await;
    c.add_agent("late", 2, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admin = c.admin(leader).await;
    loop {
        let nodes = admin.list_nodes(pb::ListNodesRequest {}).await.expect("nodes").into_inner().nodes;
        if nodes.iter().any(|n| n.node_id == "late" && !n.running.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the live-added node got no task: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let j = wait_job(&c, leader, &id, Duration::from_secs(60), succeeded).await;
    assert_eq!(done(&j), 30);
}

#[tokio::test]
async fn a_leader_killed_mid_screen_is_replaced_with_nothing_lost_or_committed_twice() {
    let mut c = HaCluster::start(HaOptions::default()).await;
    let old = c.wait_leader(Duration::from_secs(20)).await;
    c.add_agent("a0", 2, &[]);
    c.add_agent("a1", 2, &[]);
    c.add_agent("drained", 1, &[]);
    c.wait_nodes(old, 3).await;
    c.admin(old)
        .await
        .drain_node(pb::DrainNodeRequest { node_id: "drained".into() })
        .await
        .expect("drain");
    // A finished job with results (ligands with poses), read from the old leader.
    let docked = c
        .jobs(old)
        .await
        .submit_job(dockyard_tests::sleep_docking_request(5))
        .await
        .expect("submit a docking")
        .into_inner()
        .job_id;
    wait_job(&c, old, &docked, Duration::from_secs(60), succeeded).await;
    let results_of = |r: pb::ListResultsResponse| -> Vec<(String, String)> {
        r.results.into_iter().map(|l| (l.ligand, format!("{:.3}", l.score))).collect()
    };
    let before = results_of(
        c.jobs(old)
            .await
            .list_results(pb::ListResultsRequest {
                job_id: docked.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("results before the failover")
            .into_inner(),
    );
    assert_eq!(before.len(), 5, "the docking's results before the failover: {before:?}");
    let total = 80;
    let id = submit(&c, old, total, 150).await;
    wait_job(&c, old, &id, Duration::from_secs(30), |j| done(j) >= 20).await;
    c.kill_coordinator(old);
    let killed = Instant::now();
    let new = c.wait_new_leader(old, Duration::from_secs(20)).await;
    let elected = killed.elapsed();
    // First dispatch by the new leader: its dispatched counter starts at 0.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.stats(new)
            .await
            .is_some_and(|s| s.dispatched_total > 0 || s.results_committed_total > 0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the new leader dispatched nothing within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_dispatch = killed.elapsed();
    let j = wait_job(&c, new, &id, Duration::from_secs(60), succeeded).await;
    assert_eq!(done(&j), total, "{j:?}");
    let commits = c.commits(&id).await;
    let (doubles, lost) = audit(&commits, total);
    let epochs: std::collections::BTreeSet<u64> = commits.iter().map(|(e, _)| *e).collect();
    println!(
        "failover: kill -9 -> new leader {:.2} s, -> first dispatch {:.2} s; tasks lost {lost}, committed twice {doubles}; commit epochs {epochs:?}",
        elected.as_secs_f64(),
        first_dispatch.as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(doubles, 0);
    assert!(epochs.len() >= 2, "both leaders should have committed: {epochs:?}");
    // The operator's drain survived the failover.
    let nodes = c
        .admin(new)
        .await
        .list_nodes(pb::ListNodesRequest {})
        .await
        .expect("nodes")
        .into_inner()
        .nodes;
    let d = nodes.iter().find(|n| n.node_id == "drained").expect("drained node listed");
    assert_eq!(d.state, pb::NodeState::Draining as i32, "{d:?}");
    // Results written before the failover are still served, from the rebuilt state.
    let mut jobs = c.jobs(new).await;
    let after = results_of(
        jobs.list_results(pb::ListResultsRequest {
            job_id: docked.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("results after the failover")
        .into_inner(),
    );
    assert_eq!(after, before, "the new leader serves other results than the old one did");
}

/// Records `bad` (0-based) of the first `n` in the 3D SDF library, each with a bond that
/// names atom 999.
fn library_with_bad_records(n: usize, bad: &[usize]) -> String {
    let text = String::from_utf8(dockyard_tests::read_shared(&dockyard_tests::shared_data(
        "ligands/ligands-20-3d.sdf",
    )))
    .expect("utf-8");
    text.split_inclusive("$$$$\n")
        .take(n)
        .enumerate()
        .map(|(i, rec)| {
            if !bad.contains(&i) {
                return rec.to_string();
            }
            let mut lines: Vec<String> = rec.lines().map(str::to_string).collect();
            let natoms: usize = lines[3][0..3].trim().parse().expect("counts line");
            let bond = &mut lines[4 + natoms];
            *bond = format!("{}999{}", &bond[..3], &bond[6..]);
            lines.join("\n") + "\n"
        })
        .collect()
}

/// Read from the file itself, not from what the coordinator said: the 1-based numbers of
/// the records with a bond to an atom the record does not have.
fn records_with_dangling_bonds(sdf: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, rec) in sdf.split_inclusive("$$$$\n").enumerate() {
        let lines: Vec<&str> = rec.lines().collect();
        let natoms: usize = lines[3][0..3].trim().parse().expect("counts line");
        let nbonds: usize = lines[3][3..6].trim().parse().expect("counts line");
        let dangling = lines[4 + natoms..4 + natoms + nbonds].iter().any(|b| {
            [&b[0..3], &b[3..6]]
                .iter()
                .any(|a| a.trim().parse::<usize>().map_or(true, |a| a == 0 || a > natoms))
        });
        if dangling {
            out.push(i as u32 + 1);
        }
    }
    out
}

#[tokio::test]
async fn records_skipped_at_submission_are_still_reported_after_a_failover() {
    let mut c = HaCluster::start(HaOptions {
        s3: false,
        ..HaOptions::default()
    })
    .await;
    let old = c.wait_leader(Duration::from_secs(20)).await;
    let lib = library_with_bad_records(12, &[1, 6, 10]);
    let expected = records_with_dangling_bonds(&lib);
    assert_eq!(expected.len(), 3, "the fixture should hold three broken records");
    let mut req = dockyard_tests::vina_1iep_request(vec![dockyard_tests::input("lib.sdf", lib)]);
    req.skip_invalid = true;
    // No agent: the job stays queued, and its report is all there is to compare.
    let id = c.jobs(old).await.submit_job(req).await.expect("submit").into_inner().job_id;
    let report = |r: pb::JobReport| {
        let mut records: Vec<u32> = r.skipped.iter().map(|s| s.record).collect();
        records.sort_unstable();
        (r.job.map_or(0, |j| j.ligands_skipped), records, r.skipped)
    };
    let before = report(
        c.jobs(old)
            .await
            .get_job_report(pb::GetJobRequest { job_id: id.clone() })
            .await
            .expect("report")
            .into_inner(),
    );
    assert_eq!((before.0 as usize, &before.1), (expected.len(), &expected), "{:?}", before.2);
    c.kill_coordinator(old);
    let new = c.wait_new_leader(old, Duration::from_secs(20)).await;
    let after = report(
        c.jobs(new)
            .await
            .get_job_report(pb::GetJobRequest { job_id: id.clone() })
            .await
            .expect("report on the new leader")
            .into_inner(),
    );
    assert_eq!((after.0 as usize, &after.1), (expected.len(), &expected), "{:?}", after.2);
    assert!(after.2.iter().all(|s| s.file == "lib.sdf" && !s.reason.is_empty()), "{:?}", after.2);
    assert_eq!(after.2, before.2, "the new leader reports the same skipped records");
}

#[tokio::test]
async fn a_paused_leader_commits_nothing_after_a_new_one_took_over() {
    let mut c = HaCluster::start(HaOptions::default()).await;
    let old = c.wait_leader(Duration::from_secs(20)).await;
    let old_epoch = c.leader_info(old).await.expect("info").epoch;
    c.add_agent("a0", 2, &[]);
    c.add_agent("a1", 2, &[]);
    c.wait_nodes(old, 2).await;
    let total = 60;
    let id = submit(&c, old, total, 150).await;
    wait_job(&c, old, &id, Duration::from_secs(30), |j| done(j) >= 10).await;
    c.pause_coordinator(old);
    let new = c.wait_new_leader(old, Duration::from_secs(30)).await;
    wait_job(&c, new, &id, Duration::from_secs(30), |j| done(j) >= 40).await;
    let before: usize = c.commits(&id).await.iter().filter(|(e, _)| *e == old_epoch).count();
    c.resume_coordinator(old);
    // The old leader wakes with stale state and buffered agent messages; it must find its
    // lease gone and exit without committing.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.coordinator_alive(old) {
        assert!(Instant::now() < deadline, "the deposed leader is still running 20 s after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = c.coordinator_exit_code(old);
    let j = wait_job(&c, new, &id, Duration::from_secs(60), succeeded).await;
    assert_eq!(done(&j), total);
    let commits = c.commits(&id).await;
    let after = commits.iter().filter(|(e, _)| *e == old_epoch).count();
    let (doubles, lost) = audit(&commits, total);
    println!(
        "paused leader: exit code {code:?}; commits in its epoch before resume {before}, after {after}; lost {lost}, double {doubles}"
    );
    assert_eq!(before, after, "the paused leader committed after a new leader took over");
    assert_eq!(code, Some(75), "a deposed leader exits with 75");
    assert_eq!((doubles, lost), (0, 0));
}

#[tokio::test]
async fn agents_read_and_write_the_s3_store_directly_in_cluster_mode() {
    dockyard_tests::require_vina();
    let mut c = HaCluster::start(HaOptions {
        coordinators: 1,
        ..HaOptions::default()
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    // No --artifacts: the agent learns the s3:// store from the leader and uses its own
    // AWS credentials (the harness's environment) to reach it.
    c.add_agent("dock0", 2, &[]);
    c.wait_nodes(leader, 1).await;
    let lig = dockyard_tests::read_shared(&dockyard_tests::ligand_1iep());
    let req = dockyard_tests::vina_1iep_request(vec![dockyard_tests::input("imatinib.pdbqt", lig)]);
    let mut jobs = c.jobs(leader).await;
    let id = jobs.submit_job(req).await.expect("submit").into_inner().job_id;
    let j = wait_job(&c, leader, &id, Duration::from_secs(180), dockyard_tests::is_final).await;
    assert!(succeeded(&j), "{j:?}");
    let log = std::fs::read_to_string(c.dir().join("logs/agent-dock0.log")).expect("agent log");
    assert!(
        log.contains("using the coordinator's object store directly"),
        "agent did not switch to S3:\n{log}"
    );
    // Poses and logs are objects in the S3 server's bucket, under the server-built prefix.
    let root = c.s3.as_ref().expect("s3").root.join("dockyard/cluster/orgs/default/jobs").join(&id);
    let files = dockyard_tests::files_under(&root);
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".pdbqt") && p.to_string_lossy().contains("/tasks/")),
        "{files:?}"
    );
    assert!(files.iter().any(|p| p.ends_with("spec.json")), "spec replicated to S3: {files:?}");
}
