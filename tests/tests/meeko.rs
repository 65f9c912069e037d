//! `--prepare meeko`: SMILES prepared with RDKit and Meeko on a real agent, docked with the
//! real Vina, and routed only to agents whose Python imports meeko.

use std::time::Duration;

use tonic::Code;

use dockyard_tests::{
    counts, describe_job, input, pb, read_shared, require_vina, shared_data, state, vina_1iep_request, AgentOptions, TestCluster,
};

fn meeko_request(smiles: &str) -> pb::SubmitJobRequest {
    let mut req = vina_1iep_request(vec![input("two.smi", smiles)]);
    req.prepare = "meeko".into();
    // One ligand per task: two tasks that either agent could take if routing allowed it.
    req.batch_size = 1;
    req
}

#[tokio::test]
async fn meeko_prepares_smiles_for_vina_on_meeko_agents_only() {
    require_vina();
    // This agent's Python does not exist: it has obabel but no meeko.
    let mut c = TestCluster::builder()
        .agent(
            AgentOptions::vina(2)
                .node_id("no-meeko")
                .arg("--prepare-python")
                .arg("/nonexistent/python3"),
        )
        .start()
        .await;
    let plain = c.node("no-meeko").await.expect("registered");
    let tools: Vec<&str> = plain.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["obabel"], "{plain:?}");

    // A bad value is refused, naming the field.
    let mut bad = meeko_request("CCO ethanol\n");
    bad.prepare = "corina".into();
    let err = c.jobs().await.submit_job(bad).await.expect_err("unknown tool accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("prepare") && err.message().contains("corina"),
        "{}",
        err.message()
    );

    let smi = String::from_utf8(read_shared(&shared_data("ligands/ligands-20.smi"))).expect("utf-8");
    let two: String = smi.lines().take(2).map(|l| format!("{l}\n")).collect();
    let job = c.submit(meeko_request(&two)).await;
    // Nobody can prepare it yet: it waits, saying what is missing, and nothing is dispatched.
    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(10))
        .await;
    assert!(j.unschedulable_reason.contains("meeko"), "{}", describe_job(&j));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let j = c.get_job(&job).await;
    assert_eq!((state(&j), counts(&j).queued), (pb::JobState::Queued, 2), "{}", describe_job(&j));
    assert_eq!(c.stats().await.dispatched_total, 0);

    // An agent with the default Python (which imports meeko) takes both tasks.
    c.add_agent_and_wait(AgentOptions::vina(2).node_id("with-meeko")).await;
    let node = c.node("with-meeko").await.expect("registered");
    let meeko = node
        .tools
        .iter()
        .find(|t| t.name == "meeko")
        .unwrap_or_else(|| panic!("python3 cannot import meeko (pip install 'meeko==0.8.*' rdkit molscrub): {node:?}"));
    // `dockyard nodes` shows it.
    let o = c.cli(&["nodes", "--format", "json"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let with = listed
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node_id"] == "with-meeko"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        with["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "meeko" && t["version"] == meeko.version.as_str())),
        "{with}"
    );
    let j = c.wait_job_final(&job, Duration::from_secs(300)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    assert_eq!((counts(&j).succeeded, j.ligands_docked), (2, 2), "{}", describe_job(&j));
    // A task sent to the agent without meeko would have failed there and been dispatched again.
    assert_eq!(c.stats().await.dispatched_total, 2, "a task went to the agent without meeko");

    let rows = c.results(&job).await.results;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert!(r.score < 0.0, "{r:?}");
        let expected = format!("meeko {} (rdkit ", meeko.version);
        assert!(r.preparation.starts_with(&expected), "expected '{expected}…': {r:?}");
        assert!(r.preparation.contains("smi -> pdbqt (ETKDGv3 seed 42, MMFF94)"), "{r:?}");
        assert!(!r.smiles.is_empty(), "{r:?}");
        let pose = c.stored_text(&r.pose_key);
        assert!(pose.contains("REMARK VINA RESULT"), "{pose}");
    }

    // The same dockings again come from the result cache (keyed with meeko's version).
    let again = c.submit(meeko_request(&two)).await;
    let j2 = c.wait_job_final(&again, Duration::from_secs(10)).await;
    assert_eq!((j2.ligands_docked, counts(&j2).total), (2, 0), "{}", describe_job(&j2));
    // Prepared by obabel instead, they are other dockings.
    let mut obabel = meeko_request(&two);
    obabel.prepare = String::new();
    let other = c.submit(obabel).await;
    assert_eq!(
        counts(&c.get_job(&other).await).total,
        2,
        "obabel's preparation was served from meeko's"
    );
    c.cancel(&other).await;
}
