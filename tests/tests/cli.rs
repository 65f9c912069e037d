//! The `dockyard` CLI as scripts use it: ids on stdout, JSON output, exit codes.

use std::time::Duration;

use dockyard_tests::{describe_job, ligand_1iep, pb, receptor_1iep, state, AgentOptions, TestCluster};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_array(what: &str, o: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{what} failed ({}): {}", o.status, stderr(o));
    let out = stdout(o);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("{what} printed JSON that is not an array:\n{out}"))
        .clone()
}

#[tokio::test]
async fn cli_submit_jobs_results_for_scripts() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;

    let o = c.cli(&["submit", "--engine", "sleep", "--count", "3", "--sleep-ms", "10"]).await;
    assert!(o.status.success(), "submit failed ({}): {}", o.status, stderr(&o));
    let out = stdout(&o);
    let job = out.lines().next().unwrap_or_default().trim().to_string();
    assert!(
        job.len() == 20 && job.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "first stdout line is not a 20-hex job id: {out:?}"
    );

    let jobs = json_array("jobs --format json", &c.cli(&["jobs", "--format", "json"]).await);
    assert!(jobs.iter().any(|j| j["job_id"] == job.as_str()), "job {job} not in {jobs:?}");

    let j = c.wait_job_final(&job, Duration::from_secs(30)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    let jobs = json_array("jobs --format json", &c.cli(&["jobs", "--format", "json"]).await);
    let row = jobs.iter().find(|j| j["job_id"] == job.as_str()).expect("job listed");
    assert_eq!(row["state"], "succeeded", "{row}");
    // The sleep engine docks nothing: an empty, but valid, JSON array.
    json_array("results --format json", &c.cli(&["results", &job, "--format", "json"]).await);

    // --wait follows the job and exits 0 once it succeeded; the id is still the first line.
    let o = c
        .cli(&["submit", "--engine", "sleep", "--count", "2", "--sleep-ms", "10", "--wait"])
        .await;
    assert!(o.status.success(), "submit --wait failed ({}): {}", o.status, stderr(&o));
    let waited = stdout(&o).lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(state(&c.get_job(&waited).await), pb::JobState::Succeeded);

    // Failures exit non-zero with a message on stderr.
    let o = c.cli(&["results", "0000", "--format", "json"]).await;
    assert!(!o.status.success(), "`results 0000` succeeded: {}", stdout(&o));
    assert!(stderr(&o).contains("job_id"), "stderr should explain the bad id: {:?}", stderr(&o));

    let (rec, lig) = (receptor_1iep(), ligand_1iep());
    let args = [
        "submit",
        "--engine",
        "autodock9",
        "--receptor",
        rec.to_str().expect("utf-8 path"),
        "--ligands",
        lig.to_str().expect("utf-8 path"),
        "--center",
        "15.19,53.9,16.9",
        "--size",
        "20,20,20",
    ];
    let o = c.cli(&args).await;
    assert!(!o.status.success(), "unknown engine accepted: {}", stdout(&o));
    assert!(
        stderr(&o).contains("engine"),
        "stderr should name the engine field: {:?}",
        stderr(&o)
    );
    assert!(
        stdout(&o).trim().is_empty(),
        "no job id may be printed for a refused job: {:?}",
        stdout(&o)
    );
    assert_eq!(c.list_jobs().await.len(), 2);
}
