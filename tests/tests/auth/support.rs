//! Helpers of the auth tests: secrets files, a cluster with authentication on, and calls
//! made as one organisation's token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dockyard_tests::{pb, with_token, AgentOptions, ClusterBuilder, TestCluster};
use tonic::Code;

pub(crate) const ADMIN: &str = "admin-secret-for-the-tests-0001";
pub(crate) const JOIN: &str = "join-secret-for-the-tests-0001";
pub(crate) const MISSING_JOB: &str = "0123456789abcdef0123";

pub(crate) fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("cannot write a test file");
    p
}

pub(crate) fn arg(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// The secrets folder (kept alive by the caller) and a builder with authentication on:
/// the admin token file, the join token file, and agents that present the join token.
pub(crate) fn auth_on(secrets: &Path) -> (ClusterBuilder, PathBuf) {
    let admin = write(secrets, "admin.token", &format!("{ADMIN}\n"));
    let join = write(secrets, "join.token", JOIN);
    let b = TestCluster::builder()
        .coordinator_arg("--admin-token-file")
        .coordinator_arg(arg(&admin))
        .coordinator_arg("--join-token-file")
        .coordinator_arg(arg(&join))
        .token(ADMIN);
    (b, join)
}

pub(crate) fn sleep_agent(slots: u32, join: &Path) -> AgentOptions {
    AgentOptions::sleep(slots).arg("--join-token-file").arg(arg(join))
}

/// `dockyard admin token create --org ORG` with the admin token: stdout is the token alone.
pub(crate) async fn create_token(c: &TestCluster, org: &str) -> String {
    let o = c.cli(&["admin", "token", "create", "--org", org, "--description", "test"]).await;
    assert!(o.status.success(), "token create failed: {}", err(&o));
    let stdout = out(&o);
    assert_eq!(stdout.lines().count(), 1, "stdout must be the token alone: {stdout:?}");
    let token = stdout.trim().to_string();
    assert!(token.starts_with("dyk_"), "{token}");
    token
}

pub(crate) async fn submit_as(c: &TestCluster, token: &str, req: pb::SubmitJobRequest) -> Result<String, tonic::Status> {
    c.jobs()
        .await
        .submit_job(with_token(req, token))
        .await
        .map(|r| r.into_inner().job_id)
}

pub(crate) async fn get_as(c: &TestCluster, token: &str, job: &str) -> Result<pb::Job, tonic::Status> {
    c.jobs()
        .await
        .get_job(with_token(pb::GetJobRequest { job_id: job.into() }, token))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn list_as(c: &TestCluster, token: &str, org: &str) -> Vec<String> {
    let r = c
        .jobs()
        .await
        .list_jobs(with_token(
            pb::ListJobsRequest {
                page_size: 100,
                page_token: String::new(),
                org: org.into(),
            },
            token,
        ))
        .await
        .expect("ListJobs")
        .into_inner();
    r.jobs.into_iter().map(|j| j.job_id).collect()
}

pub(crate) fn code_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("the call must fail");
    (e.code(), e.message().to_string())
}

/// The logs of the agent processes started for node `id`.
pub(crate) fn agent_log(c: &TestCluster, id: &str) -> String {
    dockyard_tests::files_under(&c.dir().join("logs"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(id)) && p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// Waits for the refusal itself (the agent logs a failed attempt naming `reason`), then
/// checks `id` is not registered: a wait on the event, not a sleep then an absence.
pub(crate) async fn never_registers(c: &TestCluster, id: &str, reason: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = agent_log(c, id);
        let refused = log
            .lines()
            .any(|l| (l.contains("WARN") || l.contains("ERROR")) && l.to_lowercase().contains(&reason.to_lowercase()));
        if refused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent {id} logged no refusal naming {reason:?} in 30 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes = c.nodes().await;
    assert!(nodes.iter().all(|n| n.node_id != id), "{id} registered: {nodes:?}");
}
