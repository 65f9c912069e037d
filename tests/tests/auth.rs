//! Tenants and authentication: tokens, organisation scoping, admin-only calls, revocation
//! reaching open streams, quotas, TLS for clients and agents, join tokens and mTLS.

// In a folder, so cargo makes no test binary of it; a crate root's `mod x;` looks beside
// the root file, hence the path.
#[path = "auth/support.rs"]
mod support;

use std::time::{Duration, Instant};

use dockyard_tests::pki::Pki;
use dockyard_tests::{counts, describe_job, is_final, pb, sleep_request, state, with_token, AgentOptions, TestCluster, WAIT};
use tonic::Code;

use crate::support::{
    agent_log, arg, auth_on, code_of, create_token, err, get_as, list_as, never_registers, out, sleep_agent, submit_as, write, ADMIN, JOIN,
    MISSING_JOB,
};

#[tokio::test]
async fn auth_off_is_todays_zero_config() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(1)).start().await;
    let job = c.submit_sleep(1, 10, 0).await;
    assert_eq!(c.get_job(&job).await.org, "default");
    let j = c.wait_job_final(&job, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    // Admin calls need nothing either.
    assert_eq!(c.nodes().await.len(), 1);
    let o = c.cli(&["admin", "quota", "get", "--org", "default"]).await;
    assert!(o.status.success(), "{}", err(&o));
}

#[tokio::test]
async fn organisations_see_only_their_own_jobs() {
    let secrets = tempfile::tempdir().expect("tmp");
    let (b, join) = auth_on(secrets.path());
    let c = b.agent(sleep_agent(2, &join)).start().await;

    // No token, or a bad one: UNAUTHENTICATED, saying what to send. Finding the leader is open.
    let mut jobs = c.jobs().await;
    let (code, msg) = code_of(jobs.submit_job(sleep_request(1, 10, 0)).await);
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("authorization: Bearer"), "{msg}");
    let (code, _) = code_of(c.admin().await.list_nodes(pb::ListNodesRequest {}).await);
    assert_eq!(code, Code::Unauthenticated);
    let (code, msg) = code_of(get_as(&c, "dyk_0123456789abcdef_nope", MISSING_JOB).await);
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    c.admin()
        .await
        .get_leader(pb::GetLeaderRequest {})
        .await
        .expect("GetLeader stays open");
    let o = c.cli(&["--token", "wrong-token", "jobs"]).await;
    assert!(!o.status.success() && err(&o).contains("not authenticated"), "{}", err(&o));

    let chem = create_token(&c, "chem").await;
    let bio = create_token(&c, "bio").await;
    let ja = submit_as(&c, &chem, sleep_request(2, 10, 0)).await.expect("chem submits");
    let jb = submit_as(&c, &bio, sleep_request(2, 10, 0)).await.expect("bio submits");
    assert_eq!(get_as(&c, &chem, &ja).await.expect("own job").org, "chem");
    c.wait_job_final(&jb, WAIT).await;

    // Another organisation's job is exactly as missing as a job that does not exist.
    let (code, missing) = code_of(get_as(&c, &chem, MISSING_JOB).await);
    assert_eq!(code, Code::NotFound);
    let same = |m: &str| m.replace(&jb, "ID") == missing.replace(MISSING_JOB, "ID");
    let (code, m) = code_of(get_as(&c, &chem, &jb).await);
    assert!(code == Code::NotFound && same(&m), "GetJob: {code:?} {m}");
    let (code, m) = code_of(
        jobs.cancel_job(with_token(
            pb::CancelJobRequest {
                job_id: jb.clone(),
                reason: String::new(),
            },
            &chem,
        ))
        .await,
    );
    assert!(code == Code::NotFound && same(&m), "CancelJob: {code:?} {m}");
    let (code, m) = code_of(
        jobs.list_results(with_token(
            pb::ListResultsRequest {
                job_id: jb.clone(),
                page_size: 10,
                page_token: String::new(),
                ..Default::default()
            },
            &chem,
        ))
        .await,
    );
    assert!(code == Code::NotFound && same(&m), "ListResults: {code:?} {m}");
    let (code, m) = code_of(
        jobs.get_job_report(with_token(pb::GetJobRequest { job_id: jb.clone() }, &chem))
            .await,
    );
    assert!(code == Code::NotFound && same(&m), "GetJobReport: {code:?} {m}");
    let (code, m) = code_of(jobs.watch_job(with_token(pb::WatchJobRequest { job_id: jb.clone() }, &chem)).await);
    assert!(code == Code::NotFound && same(&m), "WatchJob: {code:?} {m}");
    // bio's poses and engine log exist and bio reads them; chem gets NOT_FOUND exactly.
    let docked = submit_as(&c, &bio, dockyard_tests::sleep_docking_request(3))
        .await
        .expect("bio docks");
    assert_eq!(state(&c.wait_job_final(&docked, WAIT).await), pb::JobState::Succeeded);
    let rows = c.results_as(&docked, &bio).await.expect("bio lists its results");
    let row = rows.first().expect("a result");
    for key in [&row.pose_key, &row.log_key] {
        let own = c
            .artifact_as(key, &bio)
            .await
            .unwrap_or_else(|s| panic!("bio reads its {key}: {s:?}"));
        assert!(!own.is_empty(), "{key} is empty");
        match c.artifact_as(key, &chem).await {
            Err(s) => assert_eq!(s.code(), Code::NotFound, "chem reading bio's {key}: {s:?}"),
            Ok(b) => panic!("chem read {} bytes of bio's {key}", b.len()),
        }
    }
    let (code, m) = code_of(
        jobs.get_artifact(with_token(
            pb::GetArtifactRequest {
                key: format!("orgs/chem/jobs/../../bio/jobs/{jb}/x"),
            },
            &chem,
        ))
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{m}");
    // Nothing happened to bio's job.
    assert_eq!(state(&c.get_job(&jb).await), pb::JobState::Succeeded);

    assert_eq!(list_as(&c, &chem, "").await, vec![ja.clone()]);
    assert!(list_as(&c, &chem, "bio").await.is_empty());
    let all = list_as(&c, ADMIN, "").await;
    assert!(all.contains(&ja) && all.contains(&jb), "{all:?}");
    assert_eq!(list_as(&c, ADMIN, "bio").await, vec![docked.clone(), jb.clone()], "newest first");

    // Admin calls with an organisation token: PERMISSION_DENIED, naming the admin token.
    let (code, m) = code_of(c.admin().await.list_nodes(with_token(pb::ListNodesRequest {}, &chem)).await);
    assert!(code == Code::PermissionDenied && m.contains("admin token"), "{code:?} {m}");
    let o = c.cli(&["--token", &chem, "admin", "token", "create", "--org", "chem"]).await;
    assert!(!o.status.success() && err(&o).contains("permission denied"), "{}", err(&o));
    assert!(out(&o).is_empty(), "no token may be printed: {}", out(&o));
    let o = c.cli(&["--token", &chem, "drain", c.node_id(0)]).await;
    assert!(!o.status.success(), "an organisation drained a node");

    // Listing shows ids and organisations, never secrets.
    let o = c.cli(&["admin", "token", "list", "--format", "json"]).await;
    assert!(o.status.success(), "{}", err(&o));
    let listed = out(&o);
    let secret = chem.rsplit('_').next().expect("secret part");
    assert!(
        listed.contains("\"chem\"") && listed.contains("\"bio\"") && !listed.contains(secret),
        "{listed}"
    );

    // The CLI as an organisation sees its own jobs.
    let o = c.cli(&["--token", &chem, "jobs", "--format", "json"]).await;
    assert!(o.status.success() && out(&o).contains(&ja) && !out(&o).contains(&jb), "{}", out(&o));
}

#[tokio::test]
async fn a_token_stops_working_when_it_expires() {
    let secrets = tempfile::tempdir().expect("tmp");
    let (b, join) = auth_on(secrets.path());
    let c = b.agent(sleep_agent(1, &join)).start().await;
    let o = c.cli(&["admin", "token", "create", "--org", "chem", "--ttl-s", "1"]).await;
    assert!(o.status.success(), "token create failed: {}", err(&o));
    let tok = out(&o).trim().to_string();
    let job = submit_as(&c, &tok, sleep_request(1, 10, 0)).await.expect("a fresh token works");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, m) = code_of(get_as(&c, &tok, &job).await);
    assert!(code == Code::Unauthenticated && m.contains("expired"), "{code:?} {m}");
}

#[tokio::test]
async fn revoking_a_token_ends_its_calls_and_open_streams() {
    let secrets = tempfile::tempdir().expect("tmp");
    let (b, join) = auth_on(secrets.path());
    let c = b.agent(sleep_agent(1, &join)).start().await;
    let mut admin = c.admin().await;
    let r = admin
        .create_token(with_token(
            pb::CreateTokenRequest {
                org: "chem".into(),
                description: "to be revoked".into(),
                admin: false,
                ttl_s: 0,
            },
            ADMIN,
        ))
        .await
        .expect("CreateToken")
        .into_inner();
    let tok = r.token;
    let job = submit_as(&c, &tok, sleep_request(1, 60_000, 0)).await.expect("submit");
    let mut stream = c
        .jobs()
        .await
        .watch_job(with_token(pb::WatchJobRequest { job_id: job.clone() }, &tok))
        .await
        .expect("WatchJob")
        .into_inner();
    stream.message().await.expect("first event").expect("an event");

    let o = c.cli(&["admin", "token", "revoke", &r.token_id]).await;
    assert!(o.status.success(), "{}", err(&o));
    let revoked_at = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(s) => return Some(s),
            }
        }
    })
    .await
    .expect("the WatchJob stream must end within seconds of the revocation");
    let st = ended.expect("the stream must end with an error, not a clean end");
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");
    assert!(revoked_at.elapsed() < Duration::from_secs(2), "took {:?}", revoked_at.elapsed());

    let (code, m) = code_of(get_as(&c, &tok, &job).await);
    assert!(code == Code::Unauthenticated && m.contains("revoked"), "{code:?} {m}");
    let o = c.cli(&["admin", "token", "list"]).await;
    assert!(out(&o).contains("revoked"), "{}", out(&o));
    c.cancel(&job).await;
}

#[tokio::test]
async fn quotas_refuse_work_over_the_limit_and_queue_nothing() {
    let secrets = tempfile::tempdir().expect("tmp");
    let (b, _join) = auth_on(secrets.path());
    // No agents: whatever is accepted stays queued.
    let c = b.start().await;
    let chem = create_token(&c, "chem").await;
    let o = c
        .cli(&[
            "admin",
            "quota",
            "set",
            "--org",
            "chem",
            "--max-queued-tasks",
            "3",
            "--max-bytes",
            "1000",
        ])
        .await;
    assert!(o.status.success(), "{}", err(&o));

    let first = submit_as(&c, &chem, sleep_request(2, 10, 0)).await.expect("2 of 3 queued tasks");
    let (code, m) = code_of(submit_as(&c, &chem, sleep_request(2, 10, 0)).await);
    assert_eq!(code, Code::ResourceExhausted, "{m}");
    assert!(
        m.contains("max_queued_tasks") && m.contains("2 tasks queued") && m.contains("limit 3"),
        "{m}"
    );
    assert_eq!(list_as(&c, &chem, "").await, vec![first], "the refused job must not be queued");
    // Other organisations are not limited by chem's quota.
    let bio = create_token(&c, "bio").await;
    submit_as(&c, &bio, sleep_request(5, 10, 0)).await.expect("bio is unlimited");

    let upload = |data: Vec<u8>| {
        let msgs = vec![
            pb::UploadInputChunk {
                part: Some(pb::upload_input_chunk::Part::Name("big.pdbqt".into())),
            },
            pb::UploadInputChunk {
                part: Some(pb::upload_input_chunk::Part::Data(data)),
            },
        ];
        let chem = chem.clone();
        let c = &c;
        async move {
            c.jobs()
                .await
                .upload_input(with_token(tokio_stream::iter(msgs), &chem))
                .await
                .map(|r| r.into_inner())
        }
    };
    upload(vec![b'a'; 600]).await.expect("600 of 1000 bytes");
    let (code, m) = code_of(upload(vec![b'b'; 600]).await);
    assert_eq!(code, Code::ResourceExhausted, "{m}");
    assert!(m.contains("max_bytes_stored") && m.contains("600 bytes stored"), "{m}");

    let o = c.cli(&["admin", "quota", "get", "--org", "chem", "--format", "json"]).await;
    assert!(o.status.success(), "{}", err(&o));
    let q: serde_json::Value = serde_json::from_str(&out(&o)).expect("json");
    assert_eq!(
        (q["queued_tasks"].as_u64(), q["bytes_stored"].as_u64()),
        (Some(2), Some(600)),
        "{q}"
    );
    assert_eq!(q["max_queued_tasks"].as_u64(), Some(3), "{q}");
    // Setting one limit keeps the others.
    let o = c
        .cli(&["admin", "quota", "set", "--org", "chem", "--max-running", "4", "--format", "json"])
        .await;
    let q: serde_json::Value = serde_json::from_str(&out(&o)).expect("json");
    assert_eq!(
        (q["max_running_tasks"].as_u64(), q["max_bytes_stored"].as_u64()),
        (Some(4), Some(1000)),
        "{q}"
    );
}

#[tokio::test]
async fn a_running_cap_holds_one_organisation_while_another_runs() {
    let secrets = tempfile::tempdir().expect("tmp");
    let (b, join) = auth_on(secrets.path());
    let c = b.agent(sleep_agent(4, &join)).start().await;
    let chem = create_token(&c, "chem").await;
    let bio = create_token(&c, "bio").await;
    let o = c.cli(&["admin", "quota", "set", "--org", "chem", "--max-running", "1"]).await;
    assert!(o.status.success(), "{}", err(&o));

    // chem first and at a higher priority: without the cap it would take every slot.
    let ja = submit_as(&c, &chem, sleep_request(4, 700, 5)).await.expect("chem");
    let jb = submit_as(&c, &bio, sleep_request(4, 700, 0)).await.expect("bio");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut chem_max, mut bio_max) = (0, 0);
    loop {
        let (a, b) = (c.get_job(&ja).await, c.get_job(&jb).await);
        chem_max = chem_max.max(counts(&a).running);
        bio_max = bio_max.max(counts(&b).running);
        assert!(counts(&a).running <= 1, "chem runs more than its cap: {}", describe_job(&a));
        if is_final(&a) && is_final(&b) {
            assert_eq!(state(&a), pb::JobState::Succeeded, "{}", describe_job(&a));
            assert_eq!(state(&b), pb::JobState::Succeeded, "{}", describe_job(&b));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not finish: {} / {}",
            describe_job(&a),
            describe_job(&b)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chem_max, 1);
    assert!(bio_max >= 2, "bio should have used the slots chem could not: max {bio_max}");
}

// ----- TLS -----

#[tokio::test]
async fn tls_for_clients_and_agents() {
    let pki = Pki::new();
    let mut c = pki
        .tls_cluster()
        .agent(AgentOptions::sleep(1).node_id("trusting").arg("--tls-ca").arg(pki.path("ca.pem")))
        .start()
        .await;
    assert!(c.endpoint().starts_with("https://"));
    let job = c.submit_sleep(1, 10, 0).await;
    c.wait_job_final(&job, WAIT).await;

    let o = c.cli(&["--tls-ca", &pki.path("ca.pem"), "nodes", "--format", "json"]).await;
    assert!(o.status.success() && out(&o).contains("trusting"), "{}", err(&o));
    // Without the CA the certificate is not trusted, and the CLI says what to pass.
    let o = c.cli(&["nodes"]).await;
    assert!(!o.status.success(), "{}", out(&o));
    assert!(err(&o).contains("not trusted") && err(&o).contains("--tls-ca"), "{}", err(&o));
    // Plain HTTP against a TLS coordinator fails too.
    let o = c.cli(&["--endpoint", &format!("http://{}", c.addr()), "nodes"]).await;
    assert!(!o.status.success(), "{}", out(&o));

    // An agent that trusts another CA never gets in.
    c.add_agent(
        AgentOptions::sleep(1)
            .node_id("suspicious")
            .arg("--tls-ca")
            .arg(pki.path("other-ca.pem")),
    );
    never_registers(&c, "suspicious", "certificate").await;
    let log = agent_log(&c, "suspicious");
    assert!(log.to_lowercase().contains("certificate"), "the agent should log why: {log}");
}

#[tokio::test]
async fn agents_need_the_join_token_when_one_is_set() {
    let secrets = tempfile::tempdir().expect("tmp");
    let join = write(secrets.path(), "join.token", JOIN);
    let wrong = write(secrets.path(), "wrong.token", "not-the-join-token-at-all");
    let mut c = TestCluster::builder()
        .coordinator_arg("--join-token-file")
        .coordinator_arg(arg(&join))
        .start()
        .await;
    c.add_agent(AgentOptions::sleep(1).node_id("stranger"));
    c.add_agent(AgentOptions::sleep(1).node_id("impostor").arg("--join-token-file").arg(arg(&wrong)));
    never_registers(&c, "stranger", "join token").await;
    never_registers(&c, "impostor", "join token").await;
    assert!(agent_log(&c, "stranger").contains("join token"), "{}", agent_log(&c, "stranger"));
    c.add_agent_and_wait(AgentOptions::sleep(1).node_id("member").arg("--join-token-file").arg(arg(&join)))
        .await;
    // Relayed artifacts (AgentService) carry the token too: a job runs end to end.
    let job = c.submit_sleep(2, 10, 0).await;
    let j = c.wait_job_final(&job, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
}

#[tokio::test]
async fn agents_can_authenticate_with_client_certificates() {
    let pki = Pki::new();
    let mut c = pki
        .tls_cluster()
        .coordinator_arg("--tls-client-ca")
        .coordinator_arg(pki.path("ca.pem"))
        .start()
        .await;
    c.add_agent(AgentOptions::sleep(1).node_id("anonymous").arg("--tls-ca").arg(pki.path("ca.pem")));
    c.add_agent_and_wait(
        AgentOptions::sleep(1)
            .node_id("certified")
            .arg("--tls-ca")
            .arg(pki.path("ca.pem"))
            .arg("--tls-cert")
            .arg(pki.path("client.pem"))
            .arg("--tls-key")
            .arg(pki.path("client.key")),
    )
    .await;
    never_registers(&c, "anonymous", "certificate").await;
    // Clients share the port without a certificate (client auth is optional at the TLS level).
    let o = c.cli(&["--tls-ca", &pki.path("ca.pem"), "jobs"]).await;
    assert!(o.status.success(), "{}", err(&o));
    let job = c.submit_sleep(1, 10, 0).await;
    let j = c.wait_job_final(&job, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
}

// ----- cluster mode -----

/// Tokens, revocations and quotas live in etcd: a standby that takes over honours them all.
#[tokio::test]
async fn tokens_and_quotas_survive_a_failover() {
    use dockyard_tests::ha::{HaCluster, HaOptions};
    let secrets = tempfile::tempdir().expect("tmp");
    let admin_file = write(secrets.path(), "admin.token", ADMIN);
    let join_file = write(secrets.path(), "join.token", JOIN);
    let mut c = HaCluster::start(HaOptions {
        coordinators: 2,
        s3: false,
        coordinator_args: vec![
            "--admin-token-file".into(),
            arg(&admin_file),
            "--join-token-file".into(),
            arg(&join_file),
        ],
        ..HaOptions::default()
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    let mut admin = c.admin(leader).await;
    let create = |org: &str| {
        let req = with_token(
            pb::CreateTokenRequest {
                org: org.into(),
                description: String::new(),
                admin: false,
                ttl_s: 0,
            },
            ADMIN,
        );
        let mut a = admin.clone();
        async move { a.create_token(req).await.expect("CreateToken").into_inner() }
    };
    let keep = create("chem").await;
    let gone = create("chem").await;
    admin
        .revoke_token(with_token(
            pb::RevokeTokenRequest {
                token_id: gone.token_id.clone(),
            },
            ADMIN,
        ))
        .await
        .expect("RevokeToken");
    admin
        .set_quota(with_token(
            pb::SetQuotaRequest {
                org: "chem".into(),
                max_queued_tasks: 7,
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .expect("SetQuota");
    let job = c
        .jobs(leader)
        .await
        .submit_job(with_token(sleep_request(2, 10, 0), &keep.token))
        .await
        .expect("submit as chem")
        .into_inner()
        .job_id;

    c.kill_coordinator(leader);
    let next = c.wait_new_leader(leader, Duration::from_secs(30)).await;
    let mut jobs = c.jobs(next).await;
    let j = jobs
        .get_job(with_token(pb::GetJobRequest { job_id: job.clone() }, &keep.token))
        .await
        .expect("the token still works after the failover")
        .into_inner();
    assert_eq!(j.org, "chem");
    let (code, m) = code_of(
        jobs.get_job(with_token(pb::GetJobRequest { job_id: job.clone() }, &gone.token))
            .await,
    );
    assert!(code == Code::Unauthenticated && m.contains("revoked"), "{code:?} {m}");
    let q = c
        .admin(next)
        .await
        .get_quota(with_token(pb::GetQuotaRequest { org: "chem".into() }, ADMIN))
        .await
        .expect("GetQuota")
        .into_inner();
    assert_eq!(q.max_queued_tasks, 7, "{q:?}");
    // The limit the old leader stored is the new leader's (8 tasks can never fit in 7).
    let (code, m) = code_of(jobs.submit_job(with_token(sleep_request(8, 10, 0), &keep.token)).await);
    assert_eq!(code, Code::ResourceExhausted, "{m}");
}

#[tokio::test]
async fn a_submission_stream_needs_a_token_and_files_jobs_under_its_organisation() {
    let secrets = tempfile::tempdir().expect("tmp");
    let (b, join) = auth_on(secrets.path());
    let c = b.agent(sleep_agent(1, &join)).start().await;
    let stream = || tokio_stream::iter(vec![sleep_request(1, 10, 0), sleep_request(1, 10, 0)]);
    let (code, msg) = code_of(c.jobs().await.submit_jobs(stream()).await);
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(c.list_jobs().await.is_empty(), "a refused stream queued jobs");

    let chem = create_token(&c, "chem").await;
    let mut answers = c
        .jobs()
        .await
        .submit_jobs(with_token(stream(), &chem))
        .await
        .expect("chem opens a stream")
        .into_inner();
    let mut ids = Vec::new();
    while let Some(a) = answers.message().await.expect("answers") {
        match a.outcome {
            Some(pb::submit_jobs_response::Outcome::Submitted(s)) => ids.push(s.job_id),
            other => panic!("refused: {other:?}"),
        }
    }
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert_eq!(get_as(&c, &chem, id).await.expect("chem sees its job").org, "chem");
    }
}
