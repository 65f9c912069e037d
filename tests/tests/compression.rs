//! Artifacts stored compressed (`--artifact-compression`): what each side writes, as found
//! on disk and decoded by zstd itself, and that every reader takes both forms, whichever
//! side compressed and whichever path (relay or direct) the agent uses.

use std::time::Duration;

use dockyard_tests::{
    describe_job, input, ligand_1iep, pb, read_shared, receptor_1iep, require_vina, state, vina_1iep_request, AgentOptions, TestCluster,
};
use sha2::{Digest, Sha256};

fn receptor_key() -> String {
    format!(
        "orgs/default/inputs/sha256/{}",
        hex::encode(Sha256::digest(read_shared(&receptor_1iep())))
    )
}

/// Docks the 1iep ligand; returns its result row.
async fn dock(c: &TestCluster) -> pb::LigandResult {
    let job = c
        .submit(vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]))
        .await;
    let j = c.wait_job_final(&job, Duration::from_secs(240)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    let r = c.results(&job).await;
    assert_eq!(r.results.len(), 1, "{r:?}");
    r.results[0].clone()
}

#[tokio::test]
async fn coordinator_writes_plain_agent_compresses_through_the_relay() {
    require_vina();
    let c = TestCluster::builder()
        .coordinator_arg("--artifact-compression")
        .coordinator_arg("off")
        .agent(AgentOptions::vina(1))
        .start()
        .await;
    let row = dock(&c).await;
    let (receptor, compressed) = c.stored(&receptor_key());
    assert!(!compressed, "the coordinator was told not to compress");
    assert_eq!(receptor, read_shared(&receptor_1iep()));
    for key in [&row.pose_key, &row.sdf_key].into_iter().filter(|k| !k.is_empty()) {
        let (text, compressed) = c.stored(key);
        assert!(compressed, "{key}: the agent compresses by default");
        assert_eq!(c.artifact(key).await.expect("GetArtifact"), text, "{key}");
    }
}

#[tokio::test]
async fn agent_writes_plain_and_reads_the_coordinators_compressed_inputs_directly() {
    require_vina();
    let c = TestCluster::builder()
        .agent(AgentOptions::vina(1).direct_artifacts().arg("--artifact-compression").arg("off"))
        .start()
        .await;
    let row = dock(&c).await;
    let (receptor, compressed) = c.stored(&receptor_key());
    assert!(compressed, "the coordinator compresses inputs by default");
    assert_eq!(receptor, read_shared(&receptor_1iep()));
    let (pose, compressed) = c.stored(&row.pose_key);
    assert!(!compressed, "the agent was told not to compress");
    assert!(String::from_utf8_lossy(&pose).contains("REMARK VINA RESULT"));
    assert_eq!(c.artifact(&row.pose_key).await.expect("GetArtifact"), pose);
}
