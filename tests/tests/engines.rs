//! Agents advertise only the engines they find, with their versions; `--smina`/`--gnina`
//! point at a binary off PATH (here the stand-in scripts, test doubles).

use std::time::Duration;

use dockyard_tests::{pb, vina_1iep_request, AgentOptions, TestCluster};

fn fixture(name: &str) -> String {
    format!("{}/../node-agent/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn engines_given_by_path_are_advertised_with_versions_and_make_jobs_schedulable() {
    let mut c = TestCluster::builder().agent(AgentOptions::vina(1).node_id("plain")).start().await;
    c.wait_for_nodes(1).await;
    let plain = c.node("plain").await.expect("node");
    assert!(
        plain.engines.iter().all(|e| e.name != "smina"),
        "smina advertised without a binary: {plain:?}"
    );

    let mut req = vina_1iep_request(Vec::new());
    req.engine = "smina".into();
    req.ligands = vec![dockyard_tests::input(
        "1iep_ligand.pdbqt",
        dockyard_tests::read_shared(&dockyard_tests::ligand_1iep()),
    )];
    let job = c.submit(req).await;
    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(10))
        .await;
    assert!(j.unschedulable_reason.contains("smina"), "{}", j.unschedulable_reason);

    c.add_agent_and_wait(
        AgentOptions::vina(1)
            .node_id("with-smina")
            .arg("--smina")
            .arg(fixture("fake_smina.sh")),
    )
    .await;
    let n = c.node("with-smina").await.expect("node");
    let smina: Vec<&pb::EngineInfo> = n.engines.iter().filter(|e| e.name == "smina").collect();
    assert_eq!(smina.len(), 1, "{n:?}");
    assert!(!smina[0].version.is_empty() && !smina[0].test_only, "{:?}", smina[0]);
    c.wait_job(&job, |j| j.unschedulable_reason.is_empty(), Duration::from_secs(10))
        .await;
}
