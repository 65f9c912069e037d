//! `dockyard top --once`: one plain-text frame of the live view, against a real cluster.

use std::process::Stdio;
use std::time::Duration;

use dockyard_tests::{
    binary, counts, describe_job, input, ligand_1iep, pb, read_shared, require_vina, sleep_request, state, vina_1iep_request, with_token,
    AgentOptions, TestCluster, WAIT,
};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn top_once(c: &TestCluster, extra: &[&str]) -> String {
    let mut args = vec!["top", "--once"];
    args.extend_from_slice(extra);
    let o = c.cli(&args).await;
    assert!(o.status.success(), "top --once failed ({}): {}", o.status, stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains('\x1b'), "--once must print no escape codes:\n{out}");
    out
}

/// The line of `out` that mentions `needle`, or a panic showing the whole frame.
fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line mentions {needle:?} in:\n{out}"))
}

#[tokio::test]
async fn top_once_shows_nodes_queue_and_jobs() {
    let c = TestCluster::builder().agents(2, AgentOptions::sleep(1)).start().await;

    let quick = c.submit_sleep(3, 10, 0).await;
    let j = c.wait_job_final(&quick, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));

    // Long enough that nothing finishes while the frame is taken: the figures are exact.
    let mut req = sleep_request(6, 60_000, 5);
    req.name = "long-sleep".into();
    let long = c.submit(req).await;
    c.wait_job(&long, |j| counts(j).running == 2, WAIT).await;

    let out = top_once(&c, &[]).await;
    for i in 0..2 {
        let node = line_with(&out, c.node_id(i));
        assert!(
            node.contains("ready") && node.contains("1/1"),
            "node {i} should be ready with 1/1 slots busy: {node}"
        );
        assert!(node.contains("sleep*"), "engines, test-only marked: {node}");
    }
    let queue = line_with(&out, "queued");
    assert!(queue.contains("4 queued (p5 4)") && queue.contains("2 running"), "{queue}");
    assert!(
        line_with(&out, "nodes").contains("2 ready, 0 draining, 0 lost; slots 2/2 busy"),
        "{out}"
    );
    assert!(line_with(&out, "throughput").contains("n/a"), "one sample has no rate:\n{out}");

    let running = line_with(&out, &long);
    for want in ["long-sleep", "running", "0/6", "[--------------------]   0%"] {
        assert!(running.contains(want), "{want:?} missing from the running job's line: {running}");
    }
    let done = line_with(&out, &quick);
    for want in ["succeeded", "3/3", "100%"] {
        assert!(done.contains(want), "{want:?} missing from the finished job's line: {done}");
    }
    // The sleep engine docks nothing, so there is no hit to rank.
    assert!(out.contains("BEST HITS"), "{out}");
    assert!(out.contains("none yet"), "{out}");
    c.cancel(&long).await;
}

#[tokio::test]
async fn top_once_ranks_the_best_hits_of_a_finished_job() {
    require_vina();
    let c = TestCluster::builder().agent(AgentOptions::vina(1)).start().await;
    let job = c
        .submit(vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]))
        .await;
    let j = c.wait_job_final(&job, Duration::from_secs(240)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    let score = c.results(&job).await.results.first().map(|r| r.score).expect("one result");

    let out = top_once(&c, &["--top", "5"]).await;
    let hits = out
        .split("BEST HITS")
        .nth(1)
        .unwrap_or_else(|| panic!("no BEST HITS section:\n{out}"));
    let row = line_with(hits, "1iep_ligand");
    assert!(
        row.contains(&format!("{score:.2}")) && row.contains(&job),
        "hit row {row:?} should show {score:.2} and {job}"
    );
}

#[tokio::test]
async fn top_once_with_an_organisation_token_shows_only_its_jobs() {
    let secrets = tempfile::tempdir().expect("temporary folder");
    let admin_file = secrets.path().join("admin.token");
    let join_file = secrets.path().join("join.token");
    std::fs::write(&admin_file, "admin-secret-for-the-top-test-01\n").expect("write token");
    std::fs::write(&join_file, "join-secret-for-the-top-test-0001\n").expect("write token");
    // No agents: the jobs stay queued, which is all this test looks at.
    let c = TestCluster::builder()
        .coordinator_arg("--admin-token-file")
        .coordinator_arg(admin_file.to_str().expect("utf-8 path"))
        .coordinator_arg("--join-token-file")
        .coordinator_arg(join_file.to_str().expect("utf-8 path"))
        .token("admin-secret-for-the-top-test-01")
        .start()
        .await;
    let mut tokens = Vec::new();
    for org in ["chem", "bio"] {
        let o = c.cli(&["admin", "token", "create", "--org", org]).await;
        assert!(o.status.success(), "token create: {}", stderr(&o));
        tokens.push(stdout(&o).trim().to_string());
    }
    let mut jobs = c.jobs().await;
    let mut ids = Vec::new();
    for t in &tokens {
        let r = jobs.submit_job(with_token(sleep_request(1, 10, 0), t)).await.expect("submit");
        ids.push(r.into_inner().job_id);
    }

    let out = top_once(&c, &["--token", &tokens[0]]).await;
    assert!(out.contains(&ids[0]), "chem's job missing:\n{out}");
    assert!(!out.contains(&ids[1]), "bio's job shown to chem:\n{out}");
    assert!(line_with(&out, "nodes").contains("needs an admin token"), "{out}");
    assert!(line_with(&out, "queue").contains("needs an admin token"), "{out}");

    let admin = top_once(&c, &[]).await;
    assert!(
        admin.contains(&ids[0]) && admin.contains(&ids[1]),
        "the admin sees every job:\n{admin}"
    );
}

fn dockyard(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("dockyard"))
        .args(args)
        .env_remove("DOCKYARD_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run dockyard: {e}"))
}

#[test]
fn top_rejects_bad_flags_with_a_clear_error() {
    for bad in ["0", "-1", "soon"] {
        let o = dockyard(&["top", "--once", "--interval", bad]);
        assert!(!o.status.success(), "--interval {bad} accepted");
        let e = stderr(&o);
        assert!(
            e.contains("--interval") && e.contains("seconds"),
            "--interval {bad}: unclear error {e:?}"
        );
    }
    // Without a terminal the live view refuses before it dials anyone, pointing at --once.
    let o = dockyard(&["--endpoint", "http://127.0.0.1:9", "top"]);
    assert!(!o.status.success(), "top without a terminal succeeded");
    assert!(stderr(&o).contains("--once"), "{:?}", stderr(&o));
}
