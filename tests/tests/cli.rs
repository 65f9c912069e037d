//! The `dockyard` CLI as scripts use it: ids on stdout, JSON output, exit codes.

use std::time::Duration;

use dockyard_tests::{binary, clean_command, describe_job, ligand_1iep, pb, receptor_1iep, state, AgentOptions, TestCluster};

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

/// Each data row of a CSV, keyed by the header's names; the header must be the first line.
fn csv_rows(what: &str, text: &str) -> (Vec<String>, Vec<std::collections::HashMap<String, String>>) {
    assert!(text.starts_with("rank,"), "{what}: the first line is not the CSV header:\n{text}");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().expect("a CSV header").iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("{what}: not CSV ({e}):\n{text}"));
            header.iter().cloned().zip(rec.iter().map(String::from)).collect()
        })
        .collect();
    (header, rows)
}

/// The made-up library of `sleep_funnel_request`: ligand `Li` has the SMILES "C" x (i%5+1).
fn submitted_smiles(i: usize) -> String {
    "C".repeat(i % 5 + 1)
}

/// `dockyard run` (embedded, no cluster) over a SMILES library of `n` ligands.
async fn run_embedded(dir: &std::path::Path, n: usize, extra: &[&str]) -> std::process::Output {
    let lib = dir.join("lib.smi");
    let text: String = (0..n).map(|i| format!("{} L{i}\n", submitted_smiles(i))).collect();
    std::fs::write(&lib, text).expect("write the library");
    let data = tempfile::tempdir_in(dir).expect("data dir");
    let rec = receptor_1iep();
    let mut cmd = tokio::process::Command::from(clean_command(&binary("dockyard")));
    cmd.args(["run", "--engine", "sleep", "--receptor", rec.to_str().expect("utf-8 path")])
        .args([
            "--ligands",
            lib.to_str().expect("utf-8 path"),
            "--center",
            "15.19,53.9,16.9",
            "--size",
            "20,20,20",
        ])
        // The sleep engine takes ligands only in a funnel; the second stage keeps them all.
        .args(["--stage", "name=dock", "--stage", &format!("name=keep keep={n}")])
        .args(["--data-dir", data.path().to_str().expect("utf-8 path")])
        .args(extra)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("dockyard run finished within 120 s")
        .expect("dockyard runs")
}

/// A table row of a made-up ligand: "  12  L7  ...".
fn is_hit_row(line: &str) -> bool {
    let ligand = line.split_whitespace().nth(1).unwrap_or_default();
    ligand.strip_prefix('L').is_some_and(|i| i.parse::<usize>().is_ok())
}

fn is_job_id(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `run --format csv > hits.csv` gives a CSV and nothing else (the job id goes to stderr),
/// with the SMILES and the first stage's score of every ligand; `--out` writes the list to
/// a file and leaves stdout to the job id.
#[tokio::test]
async fn run_csv_on_stdout_is_only_csv_and_out_writes_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let n = 25;
    let o = run_embedded(dir.path(), n, &["--format", "csv", "--top", "0"]).await;
    assert!(o.status.success(), "run failed ({}): {}", o.status, stderr(&o));
    let (header, rows) = csv_rows("run --format csv", &stdout(&o));
    assert_eq!(rows.len(), n, "one row per submitted ligand:\n{}", stdout(&o));
    assert!(
        header.iter().any(|h| h == "smiles") && header.iter().any(|h| h == "dock.score"),
        "{header:?}"
    );
    for row in &rows {
        let i: usize = row["ligand"].trim_start_matches('L').parse().expect("ligand Li");
        assert_eq!(row["smiles"], submitted_smiles(i), "{row:?}");
        assert!(row["dock.score"].parse::<f64>().is_ok(), "{row:?}");
    }
    assert!(stderr(&o).lines().any(is_job_id), "the job id goes to stderr: {}", stderr(&o));

    let out = dir.path().join("hits.json");
    let o = run_embedded(dir.path(), n, &["--format", "json", "--out", out.to_str().expect("utf-8 path")]).await;
    assert!(o.status.success(), "run --out failed ({}): {}", o.status, stderr(&o));
    let printed = stdout(&o);
    assert!(
        printed.lines().count() == 1 && is_job_id(printed.trim()),
        "with --out stdout is the job id alone: {printed:?}"
    );
    let hits: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("--out file")).expect("JSON in --out");
    // run's default --top.
    assert_eq!(hits.as_array().map(Vec::len), Some(10), "{hits}");
}

/// `dockyard job` shows one job; `dockyard jobs` says on stderr when it cut the list.
#[tokio::test]
async fn job_shows_one_job_and_jobs_says_when_it_cut_the_list() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(4)).start().await;
    let submitted = 55;
    let mut ids = Vec::new();
    for _ in 0..submitted {
        ids.push(c.submit_sleep(1, 1, 0).await);
    }
    let last = ids.last().cloned().unwrap_or_default();
    c.wait_job_final(&last, Duration::from_secs(60)).await;

    let o = c.cli(&["job", &last, "--format", "json"]).await;
    assert!(o.status.success(), "job failed ({}): {}", o.status, stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("job --format json is one JSON object");
    assert_eq!(
        (j["job_id"].as_str(), j["state"].as_str()),
        (Some(last.as_str()), Some("succeeded")),
        "{j}"
    );
    let o = c.cli(&["job", &last]).await;
    assert!(stdout(&o).contains(&last) && stdout(&o).contains("succeeded"), "{}", stdout(&o));
    let o = c.cli(&["job", "0000"]).await;
    assert!(!o.status.success() && stderr(&o).contains("job_id"), "{o:?}");

    let o = c.cli(&["jobs", "--format", "json"]).await;
    assert_eq!(json_array("jobs", &o).len(), 50);
    assert!(
        stderr(&o).contains("showing the newest 50 jobs; more exist"),
        "stderr should say the list was cut: {:?}",
        stderr(&o)
    );
    let o = c.cli(&["jobs", "--all", "--format", "json"]).await;
    assert_eq!(json_array("jobs --all", &o).len(), submitted);
    assert!(!stderr(&o).contains("more exist"), "{}", stderr(&o));
    // Exactly as many as the limit: nothing was cut.
    let limit = submitted.to_string();
    let o = c.cli(&["jobs", "--limit", &limit, "--format", "json"]).await;
    assert_eq!(json_array("jobs --limit", &o).len(), submitted);
    assert!(!stderr(&o).contains("more exist"), "{}", stderr(&o));
    let o = c.cli(&["jobs"]).await;
    assert!(stderr(&o).contains("more exist"), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains("more exist"),
        "the note is not part of the table: {}",
        stdout(&o)
    );
}

/// `results --top 0` and `--all` export every result, past the default 20 and across the
/// coordinator's pages of 1000, in every format; the CSV carries SMILES and engine fields.
#[tokio::test]
async fn results_top_0_exports_every_result() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(4)).start().await;
    let n = 1005;
    let req = dockyard_tests::sleep_funnel_request(
        n,
        100,
        1,
        vec![
            dockyard_tests::stage("dock", |_| {}),
            dockyard_tests::stage("keep", |s| s.keep_top = n as u32),
        ],
    );
    let job = c.submit(req).await;
    let j = c.wait_job_final(&job, Duration::from_secs(120)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));

    let o = c.cli(&["results", &job, "--format", "csv"]).await;
    assert_eq!(csv_rows("results", &stdout(&o)).1.len(), 20, "the default --top");

    let o = c.cli(&["results", &job, "--top", "0", "--format", "csv"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = csv_rows("results --top 0", &stdout(&o));
    assert_eq!(rows.len(), n);
    assert!(
        header.iter().any(|h| h == "smiles") && header.iter().any(|h| h == "dock.score"),
        "{header:?}"
    );
    let ranks: Vec<usize> = rows.iter().map(|r| r["rank"].parse().expect("rank")).collect();
    assert_eq!(ranks, (1..=n).collect::<Vec<_>>());
    for row in &rows {
        let i: usize = row["ligand"].trim_start_matches('L').parse().expect("ligand Li");
        assert_eq!(row["smiles"], submitted_smiles(i), "{row:?}");
    }

    let all = json_array("results --all", &c.cli(&["results", &job, "--all", "--format", "json"]).await);
    assert_eq!(all.len(), n);
    let names: std::collections::HashSet<&str> = all.iter().filter_map(|r| r["ligand"].as_str()).collect();
    assert_eq!(names.len(), n, "every ligand once");

    let o = c.cli(&["results", &job, "--top", "0"]).await;
    let table = stdout(&o);
    assert_eq!(table.lines().filter(|l| is_hit_row(l)).count(), n, "{table}");

    let out = c.dir().join("all.csv");
    let o = c
        .cli(&[
            "results",
            &job,
            "--all",
            "--format",
            "csv",
            "--out",
            out.to_str().expect("utf-8 path"),
        ])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).expect("--out file");
    assert_eq!(csv_rows("results --out", &text).1.len(), n);
}
