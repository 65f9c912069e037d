//! The real AutoDock Vina through the whole cluster.

use std::time::Duration;

use dockyard_tests::{
    counts, describe_job, input, ligand_1iep, pb, read_shared, require_vina, shared_data, state, vina_1iep_request, AgentOptions,
    TestCluster,
};

#[tokio::test]
async fn vina_docks_1iep_end_to_end() {
    require_vina();
    let c = TestCluster::builder().agent(AgentOptions::vina(1)).start().await;
    let job = c
        .submit(vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]))
        .await;

    let j = c.wait_job_final(&job, Duration::from_secs(240)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    assert_eq!(
        (counts(&j).succeeded, j.ligands_docked, j.ligands_failed),
        (1, 1, 0),
        "{}",
        describe_job(&j)
    );

    let r = c.results(&job).await;
    assert_eq!(r.results.len(), 1, "{r:?}");
    assert_eq!(r.total, 1, "{r:?}");
    let row = &r.results[0];
    assert!(
        row.score < -5.0 && row.score > -20.0,
        "implausible score {} for imatinib in 1iep",
        row.score
    );
    assert!(!row.poses.is_empty(), "{row:?}");
    assert!(
        (row.poses[0].affinity - row.score).abs() < 1e-6,
        "best pose should carry the score: {row:?}"
    );
    assert_eq!(row.ligand, "1iep_ligand", "{row:?}");
    assert!(!row.pose_key.is_empty(), "{row:?}");
    assert!((j.best_score - row.score).abs() < 1e-6, "{}", describe_job(&j));

    // Stored compressed (the agent's default), and the same bytes through the API.
    let (pose, compressed) = c.stored(&row.pose_key);
    let text = String::from_utf8(pose.clone()).expect("UTF-8 poses");
    assert!(text.contains("REMARK VINA RESULT"), "not a Vina pose file: {}", row.pose_key);
    assert!(compressed, "{} was stored uncompressed", row.pose_key);
    assert_eq!(c.artifact(&row.pose_key).await.expect("GetArtifact"), pose);

    // The engine's CPU time is measured (rusage), and the watch stream carries the hits.
    assert!(j.cpu_seconds > 0.1, "engine CPU time not recorded: {}", j.cpu_seconds);
    let mut w = c
        .jobs()
        .await
        .watch_job(pb::WatchJobRequest { job_id: job.clone() })
        .await
        .expect("watch")
        .into_inner();
    let ev = w.message().await.expect("stream").expect("one event");
    assert!(ev.r#final, "{ev:?}");
    assert_eq!(ev.top_hits.len(), 1, "{ev:?}");
    assert_eq!(ev.top_hits[0].ligand, "1iep_ligand");
}

/// The same docking in a second job comes from the result cache; `fresh` docks again.
#[tokio::test]
async fn a_repeated_docking_is_served_from_the_result_cache() {
    require_vina();
    let c = TestCluster::builder().agent(AgentOptions::vina(1)).start().await;
    c.wait_for_nodes(1).await;
    let req = || vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    let first = c.submit(req()).await;
    let j1 = c.wait_job_final(&first, Duration::from_secs(240)).await;
    assert_eq!(state(&j1), pb::JobState::Succeeded, "{}", describe_job(&j1));
    let dispatched = c.stats().await.dispatched_total;

    let second = c.submit(req()).await;
    let j2 = c.wait_job_final(&second, Duration::from_secs(10)).await;
    assert_eq!(state(&j2), pb::JobState::Succeeded, "{}", describe_job(&j2));
    assert_eq!((j2.ligands_docked, counts(&j2).total), (1, 0), "{}", describe_job(&j2));
    assert_eq!(
        c.stats().await.dispatched_total,
        dispatched,
        "a cached docking was dispatched again"
    );
    let r1 = &c.results(&first).await.results[0];
    let r2 = &c.results(&second).await.results[0];
    assert!(r2.cached && !r1.cached, "{r1:?} {r2:?}");
    assert_eq!((r2.score, r2.ligand.as_str()), (r1.score, "1iep_ligand"));

    // The same ligand in another library lands in another pack of records: still a hit.
    let other = read_shared(&shared_data("ligands/pdbqt-meeko/MOSES_TEST_003929.pdbqt"));
    let mut mixed = vina_1iep_request(vec![
        input("MOSES_TEST_003929.pdbqt", other),
        input("1iep_ligand.pdbqt", read_shared(&ligand_1iep())),
    ]);
    // One ligand per task: a miss would make two tasks.
    mixed.batch_size = 1;
    let mixed = c.submit(mixed).await;
    let j4 = c.get_job(&mixed).await;
    assert_eq!(
        (counts(&j4).total, j4.ligands_docked),
        (1, 1),
        "only the new ligand is docked: {}",
        describe_job(&j4)
    );

    let mut fresh = req();
    fresh.fresh = true;
    let third = c.submit(fresh).await;
    assert_eq!(counts(&c.get_job(&third).await).total, 1, "fresh must dock again");
}
