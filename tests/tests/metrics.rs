//! `--metrics-listen`: a real coordinator and agent serve Prometheus text at `/metrics`
//! that follows a screen from queued to done.

use std::time::{Duration, Instant};

use dockyard_tests::metrics_scrape::{free_addr, scrape, value};
use dockyard_tests::{describe_job, pb, state, AgentOptions, TestCluster, WAIT};

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// Scrapes until `ok` holds (gauges follow the scheduler's 200 ms tick); the last text.
async fn scrape_until(addr: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr).await;
        if ok(&text) {
            return text;
        }
        if Instant::now() > deadline {
            panic!("metrics at {addr} never showed {what}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn coordinator_and_agent_metrics_follow_a_screen() {
    let coordinator_metrics = free_addr();
    let agent_metrics = free_addr();
    let mut c = TestCluster::builder()
        .coordinator_arg("--metrics-listen")
        .coordinator_arg(&coordinator_metrics)
        .start()
        .await;

    // No agent yet: the tasks wait, and the queue gauge says so.
    let tasks = 12;
    let job = c.submit_sleep(tasks, 20, 4).await;
    let depth = r#"dockyard_queue_depth{priority="4",org="default"}"#;
    scrape_until(&coordinator_metrics, "the queued tasks", |t| {
        value(t, depth) == Some(f64::from(tasks))
    })
    .await;

    let slots = 3;
    let i = c
        .add_agent_and_wait(AgentOptions::sleep(slots).arg("--metrics-listen").arg(&agent_metrics))
        .await;
    let node = c.node_id(i).to_string();
    let j = c.wait_job_final(&job, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));

    let busy = format!(r#"dockyard_node_slots_busy{{node="{node}"}}"#);
    let text = scrape_until(&coordinator_metrics, "a drained queue and idle slots", |t| {
        value(t, depth) == Some(0.0) && value(t, &busy) == Some(0.0)
    })
    .await;
    let n = f64::from(tasks);
    assert_eq!(must(&text, "dockyard_tasks_dispatched_total"), n, "{text}");
    assert_eq!(must(&text, "dockyard_tasks_succeeded_total"), n, "{text}");
    assert_eq!(must(&text, "dockyard_task_queued_seconds_count"), n, "{text}");
    assert_eq!(must(&text, "dockyard_task_running_seconds_count"), n, "{text}");
    assert!(must(&text, "dockyard_sled_write_seconds_count") > 0.0, "{text}");
    assert_eq!(
        must(&text, &format!(r#"dockyard_node_slots{{node="{node}"}}"#)),
        f64::from(slots),
        "{text}"
    );
    assert_eq!(must(&text, r#"dockyard_agent_stream_connects_total{kind="first"}"#), 1.0, "{text}");
    assert_eq!(
        must(&text, r#"dockyard_task_attempt_failures_total{reason="node_lost"}"#),
        0.0,
        "{text}"
    );
    assert!(
        value(&text, r#"dockyard_artifact_operation_seconds_count{op="get"}"#).is_some(),
        "{text}"
    );

    let text = scrape(&agent_metrics).await;
    assert_eq!(
        must(&text, r#"dockyard_agent_tasks_total{engine="sleep",outcome="succeeded"}"#),
        n,
        "{text}"
    );
    assert_eq!(must(&text, r#"dockyard_agent_task_run_seconds_count{engine="sleep"}"#), n, "{text}");
    assert_eq!(must(&text, "dockyard_agent_slots"), f64::from(slots), "{text}");
    assert_eq!(must(&text, "dockyard_agent_slots_busy"), 0.0, "{text}");
    assert_eq!(must(&text, "dockyard_agent_stream_connects_total"), 1.0, "{text}");
}

/// The codec counters against the bytes on disk: what the agent stored is the size of the
/// files under the job's folder, what it was given is their size decoded by zstd itself.
#[tokio::test]
async fn artifact_codec_counters_match_the_files_on_disk() {
    dockyard_tests::require_vina();
    let agent_metrics = free_addr();
    let c = TestCluster::builder()
        .agent(AgentOptions::vina(1).arg("--metrics-listen").arg(&agent_metrics))
        .start()
        .await;
    let job = c
        .submit(dockyard_tests::vina_1iep_request(vec![dockyard_tests::input(
            "1iep_ligand.pdbqt",
            dockyard_tests::read_shared(&dockyard_tests::ligand_1iep()),
        )]))
        .await;
    let j = c.wait_job_final(&job, Duration::from_secs(240)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    let dir = c.artifacts_dir();
    let (mut stored, mut given, mut compressed) = (0u64, 0u64, 0u64);
    for path in dockyard_tests::files_under(&dir.join(format!("orgs/default/jobs/{job}/tasks"))) {
        let rel = path.strip_prefix(&dir).expect("under the artifacts").to_string_lossy().into_owned();
        let (text, was) = c.stored(&rel);
        stored += std::fs::metadata(&path).expect("stat").len();
        given += text.len() as u64;
        compressed += u64::from(was);
    }
    assert!(compressed > 0, "no pose or log was stored compressed");
    let text = scrape(&agent_metrics).await;
    assert_eq!(must(&text, "dockyard_agent_artifact_stored_bytes_total"), stored as f64, "{text}");
    assert_eq!(must(&text, "dockyard_agent_artifact_written_bytes_total"), given as f64, "{text}");
    assert_eq!(
        must(&text, "dockyard_agent_artifact_compressed_objects_total"),
        compressed as f64,
        "{text}"
    );
    assert!(must(&text, "dockyard_agent_artifact_compress_cpu_seconds_total") > 0.0, "{text}");
}
