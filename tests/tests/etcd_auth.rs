//! Cluster mode on an etcd with TLS (client certificates required) and authentication on,
//! with the users `deploy/etcd/setup-auth.sh` makes: the coordinator works with its own
//! user; an agent's etcd user can touch its membership key and read who leads, nothing a
//! coordinator trusts; an agent with no etcd access at all finds the leader through the
//! coordinators; a coordinator without the client certificate, or with a wrong password,
//! is refused at start and says why.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dockyard_tests::ha::{agent_user, audit, HaCluster, HaOptions, CLUSTER};
use dockyard_tests::ha_secure::COORDINATOR_USER;
use dockyard_tests::servers::free_port;
use dockyard_tests::{binary, clean_command, pb, sleep_request};

fn denied(r: Result<etcd_client::PutResponse, etcd_client::Error>, what: &str) {
    match r {
        Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::PermissionDenied => {}
        other => panic!("an agent's etcd user wrote {what}: {other:?}"),
    }
}

/// Waits for `child` to exit; its status and its log.
fn wait_exit(mut child: Child, log: &std::path::Path, within: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return (st, std::fs::read_to_string(log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the coordinator kept running for {within:?} with credentials etcd refuses:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_cluster_runs_on_etcd_with_tls_and_auth_and_agents_cannot_touch_what_coordinators_trust() {
    let mut c = HaCluster::start(HaOptions {
        coordinators: 2,
        s3: false,
        etcd_secure: true,
        ..HaOptions::default()
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    // One agent with its own etcd user, one with no etcd access (it asks the coordinators).
    c.add_agent("n1", 2, &[]);
    let endpoints = c.endpoints();
    c.add_static_agent("n2", 2, &endpoints, &[]);
    c.wait_nodes(leader, 2).await;

    let mut jobs = c.jobs(leader).await;
    let id = jobs
        .submit_job(sleep_request(12, 100, 0))
        .await
        .expect("submit")
        .into_inner()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = jobs
            .get_job(pb::GetJobRequest { job_id: id.clone() })
            .await
            .expect("get job")
            .into_inner();
        if j.state == pb::JobState::Succeeded as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "job did not finish: {j:?}\n{}", c.log_tails(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Counted from the fenced commit records the coordinator wrote as its etcd user.
    let commits = c.commits(&id).await;
    assert_eq!(audit(&commits, 12), (0, 0), "commits: {commits:?}");

    let s = c.secure.as_ref().expect("secure etcd");
    let mut agent = s.client(&agent_user("n1")).await.expect("the agent's user logs in");
    let root = format!("/dockyard/{CLUSTER}");
    let leader_key = agent
        .leader(format!("{root}/leader"))
        .await
        .expect("an agent reads who leads")
        .kv()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .expect("a leader key");
    denied(agent.put(format!("{root}/tokens/minted"), "{}", None).await, "a token record");
    denied(agent.put(leader_key.clone(), "http://attacker:1", None).await, "the leader key");
    denied(
        agent.put(format!("{root}/leader/0"), "http://attacker:1", None).await,
        "a new leader key",
    );
    denied(agent.put(format!("{root}/nodes/n2"), "{}", None).await, "another node's membership");
    denied(agent.put(format!("{root}/jobs/{id}"), "{}", None).await, "the job index");
    // The agent's own membership key is where it registered (with its own user).
    let own = agent.get(format!("{root}/nodes/n1"), None).await.expect("reads its own key");
    assert_eq!(own.kvs().len(), 1, "n1 registered under its etcd user");

    // A coordinator without the client certificate: etcd's TLS refuses it.
    let refused = |name: &str, flags: Vec<String>| {
        let port = free_port();
        let log = c.dir().join("logs").join(format!("{name}.log"));
        let child = clean_command(&binary("dockyard-coordinator"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(c.dir().join(name))
            .args(["--etcd", &s.url, "--cluster", CLUSTER])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start coordinator");
        wait_exit(child, &log, Duration::from_secs(30))
    };
    let pw = s.password_file(COORDINATOR_USER);
    let ca = s.pki.path("ca.pem");
    let (st, log) = refused(
        "no-client-cert",
        vec![
            "--etcd-ca".into(),
            ca.clone(),
            "--etcd-user".into(),
            COORDINATOR_USER.into(),
            "--etcd-password-file".into(),
            pw,
        ],
    );
    assert!(!st.success(), "exit {st:?}:\n{log}");
    assert!(
        log.contains("etcd") && log.to_ascii_lowercase().contains("certificate"),
        "the refusal names etcd and the certificate:\n{log}"
    );
    let wrong = c.dir().join("wrong-password.txt");
    std::fs::write(&wrong, "not-the-password").expect("write");
    let mut flags = s.flags(None);
    flags.extend([
        "--etcd-user".into(),
        COORDINATOR_USER.into(),
        "--etcd-password-file".into(),
        wrong.display().to_string(),
    ]);
    let (st, log) = refused("wrong-password", flags);
    assert!(!st.success(), "exit {st:?}:\n{log}");
    assert!(log.contains("authentication failed"), "the refusal says why:\n{log}");
}
