//! Bad input and bad callers: refused with a clear error, nothing stored or queued.

use std::time::{Duration, Instant};

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::{Report, Size};
use crate::pki::Pki;
use crate::{files_under, input, pb, sleep_request, vina_1iep_request, with_token, AgentOptions, TestCluster};

/// Scenario 14: Malformed molecule files (truncated, binary noise, wrong format, bad coordinates):
/// each submission is INVALID_ARGUMENT naming the file, and nothing is stored or queued.
pub async fn malformed(_size: Size) -> Result<Report> {
    let mut r = Report::new("malformed_molecules");
    let c = TestCluster::builder().agent(AgentOptions::vina(1)).start().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.pdbqt", b"ROOT\nATOM      1  C   LIG A   1      1.0".to_vec()),
        (
            "noise.sdf",
            (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect(),
        ),
        (
            "coords.pdbqt",
            b"ROOT\nATOM      1  C   LIG A   1     nan     1.000   1.000  0.00  0.00    +0.000 C\nENDROOT\nTORSDOF 0\n".to_vec(),
        ),
        ("smiles.smi", b"C1CC(\n".to_vec()),
        // No record at all: the error is about the library as a whole.
        ("empty.mol2", Vec::new()),
    ];
    let before = files_under(&c.artifacts_dir()).len();
    let t = Instant::now();
    let mut jobs = c.jobs().await;
    for (name, body) in cases {
        let err = jobs
            .submit_job(vina_1iep_request(vec![input(name, body)]))
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("{name} was accepted"))?;
        ensure!(
            err.code() == tonic::Code::InvalidArgument,
            "{name}: {:?} {}",
            err.code(),
            err.message()
        );
        ensure!(
            name == "empty.mol2" || err.message().contains(name),
            "{name}: the error does not name the file: {}",
            err.message()
        );
    }
    r.detect_s = t.elapsed().as_secs_f64();
    let after = files_under(&c.artifacts_dir()).len();
    // The receptor of the refused jobs may be stored once (content-addressed); ligands never.
    ensure!(
        after <= before + 1,
        "refused submissions left {} files in the store",
        after - before
    );
    let stats = c.stats().await;
    ensure!(stats.queued == 0 && stats.running == 0, "something was queued: {stats:?}");
    let listed = c.list_jobs().await;
    ensure!(listed.is_empty(), "refused jobs are listed: {}", listed.len());
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(r)
}

/// Scenario 15: Oversized input: an upload over the limit, and a gzip bomb; refused with errors
/// that name the limit, with no partial upload or artifact left behind.
pub async fn oversized(_size: Size) -> Result<Report> {
    let mut r = Report::new("oversized_input");
    let c = TestCluster::builder()
        .coordinator_arg("--max-upload-bytes")
        .coordinator_arg("1000000")
        .agent(AgentOptions::vina(1))
        .start()
        .await;
    let before = files_under(&c.artifacts_dir()).len() + files_under(&c.data_dir().join("uploads")).len();
    let t = Instant::now();
    let mut msgs = vec![pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Name("huge.sdf".into())),
    }];
    for _ in 0..40 {
        msgs.push(pb::UploadInputChunk {
            part: Some(pb::upload_input_chunk::Part::Data(vec![b'C'; 64 * 1024])),
        });
    }
    let st = c
        .jobs()
        .await
        .upload_input(tokio_stream::iter(msgs))
        .await
        .err()
        .context("a 2.6 MB upload passed a 1 MB limit")?;
    ensure!(
        st.message().contains("max-upload-bytes") || st.message().contains("1000000"),
        "the refusal does not name the limit: {st:?}"
    );
    // 64 MB of zeros gzip to ~64 KB: a ratio of ~1000, refused by the ratio guard.
    let tmp = tempfile::tempdir()?;
    let raw = tmp.path().join("bomb.pdbqt");
    std::fs::write(&raw, vec![0u8; 64 << 20])?;
    ensure!(
        std::process::Command::new("gzip").arg("-9").arg(&raw).status()?.success(),
        "gzip failed"
    );
    let bomb = std::fs::read(tmp.path().join("bomb.pdbqt.gz"))?;
    let st = c
        .jobs()
        .await
        .submit_job(vina_1iep_request(vec![input("bomb.pdbqt.gz", bomb)]))
        .await
        .err()
        .context("a gzip bomb was accepted")?;
    r.detect_s = t.elapsed().as_secs_f64();
    ensure!(st.code() == tonic::Code::InvalidArgument, "bomb: {:?} {}", st.code(), st.message());
    ensure!(
        st.message().contains("bomb.pdbqt.gz"),
        "the refusal does not name the file: {}",
        st.message()
    );
    let after = files_under(&c.artifacts_dir()).len() + files_under(&c.data_dir().join("uploads")).len();
    // The receptor of the refused job may stay (content-addressed, shared); nothing else.
    ensure!(after <= before + 1, "refused inputs left {} files behind", after - before);
    r.note = format!("bomb refused: {}", st.message());
    Ok(r)
}

const ADMIN: &str = "fault-suite-admin-secret-000001";
const JOIN: &str = "fault-suite-join-secret-0000001";

/// A coordinator with authentication on and one sleep agent holding the join token.
async fn auth_cluster(secrets: &Path) -> TestCluster {
    std::fs::write(secrets.join("admin.token"), ADMIN).expect("admin token file");
    std::fs::write(secrets.join("join.token"), JOIN).expect("join token file");
    let join = secrets.join("join.token").display().to_string();
    TestCluster::builder()
        .coordinator_arg("--admin-token-file")
        .coordinator_arg(secrets.join("admin.token").display().to_string())
        .coordinator_arg("--join-token-file")
        .coordinator_arg(join.clone())
        .token(ADMIN)
        .agent(AgentOptions::sleep(2).arg("--join-token-file").arg(join))
        .start()
        .await
}

async fn org_token(c: &TestCluster, org: &str) -> Result<(String, String)> {
    org_token_ttl(c, org, 0).await
}

async fn org_token_ttl(c: &TestCluster, org: &str, ttl_s: u64) -> Result<(String, String)> {
    let r = c
        .admin()
        .await
        .create_token(with_token(
            pb::CreateTokenRequest {
                org: org.into(),
                description: "fault suite".into(),
                admin: false,
                ttl_s,
            },
            ADMIN,
        ))
        .await?
        .into_inner();
    Ok((r.token_id, r.token))
}

/// Scenario 16: Another organisation's job, results and artifacts are NOT_FOUND, exactly as a job
/// that does not exist; path-traversal keys are refused.
pub async fn wrong_org(_size: Size) -> Result<Report> {
    let mut r = Report::new("wrong_org_and_traversal");
    let secrets = tempfile::tempdir()?;
    let c = auth_cluster(secrets.path()).await;
    let (_, a) = org_token(&c, "alpha").await?;
    let (_, b) = org_token(&c, "beta").await?;
    let mut jobs = c.jobs().await;
    let id = jobs.submit_job(with_token(sleep_request(2, 10, 0), &a)).await?.into_inner().job_id;
    let missing = "0123456789abcdef0123";
    let t = Instant::now();
    let not_found = |st: tonic::Status, what: &str| -> Result<String> {
        ensure!(st.code() == tonic::Code::NotFound, "{what}: {:?} {}", st.code(), st.message());
        Ok(st.message().to_string())
    };
    let theirs = not_found(
        jobs.get_job(with_token(pb::GetJobRequest { job_id: id.clone() }, &b))
            .await
            .err()
            .context("beta read alpha's job")?,
        "get",
    )?;
    let nobody = not_found(
        jobs.get_job(with_token(pb::GetJobRequest { job_id: missing.into() }, &b))
            .await
            .err()
            .context("a missing job was found")?,
        "get missing",
    )?;
    ensure!(
        theirs.replace(&id, missing) == nobody,
        "another org's job is told apart from a missing one: {theirs:?} vs {nobody:?}"
    );
    not_found(
        jobs.cancel_job(with_token(
            pb::CancelJobRequest {
                job_id: id.clone(),
                reason: "x".into(),
            },
            &b,
        ))
        .await
        .err()
        .context("beta cancelled alpha's job")?,
        "cancel",
    )?;
    not_found(
        jobs.list_results(with_token(
            pb::ListResultsRequest {
                job_id: id.clone(),
                ..Default::default()
            },
            &b,
        ))
        .await
        .err()
        .context("beta listed alpha's results")?,
        "results",
    )?;
    // Objects that exist: alpha's poses and engine log, read by alpha, refused to beta as
    // NOT_FOUND exactly (as if they did not exist).
    let docked = jobs
        .submit_job(with_token(crate::sleep_docking_request(3), &a))
        .await?
        .into_inner()
        .job_id;
    let dj = c.wait_job_final(&docked, Duration::from_secs(60)).await;
    ensure!(
        dj.state == pb::JobState::Succeeded as i32,
        "alpha's docking: {}",
        crate::describe_job(&dj)
    );
    let rows = c.results_as(&docked, &a).await?;
    let row = rows.first().context("alpha's docking has no result")?;
    for key in [&row.pose_key, &row.log_key] {
        ensure!(!key.is_empty(), "a result without a pose or log key: {row:?}");
        let own = c.artifact_as(key, &a).await;
        ensure!(
            own.as_ref().is_ok_and(|b| !b.is_empty()),
            "alpha cannot read its own {key}: {own:?}"
        );
        match c.artifact_as(key, &b).await {
            Err(st) if st.code() == tonic::Code::NotFound => {}
            other => anyhow::bail!("beta read alpha's {key}: {:?}", other.map(|b| b.len())),
        }
    }
    for key in [
        "orgs/beta/../alpha/jobs/x/spec.json",
        "../../etc/passwd",
        "orgs/beta/jobs/%2e%2e/alpha",
    ] {
        let res = jobs.get_artifact(with_token(pb::GetArtifactRequest { key: key.into() }, &b)).await;
        let refused = match res {
            Err(st) => matches!(st.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound),
            Ok(mut stream) => stream.get_mut().message().await.is_err(),
        };
        ensure!(refused, "the key {key:?} was served");
    }
    r.detect_s = t.elapsed().as_secs_f64();
    // Alpha's job was not touched by any of it.
    let j = c.wait_job_final(&id, Duration::from_secs(30)).await;
    ensure!(
        j.state == pb::JobState::Succeeded as i32,
        "alpha's job: {}",
        crate::describe_job(&j)
    );
    Ok(r)
}

/// Scenario 17: A revoked token, an expired one, no token, a forged token, a coordinator certificate from the wrong
/// CA, and an agent without a client certificate: all refused.
pub async fn bad_credentials(_size: Size) -> Result<Report> {
    let mut r = Report::new("bad_credentials");
    let secrets = tempfile::tempdir()?;
    let c = auth_cluster(secrets.path()).await;
    let (tid, tok) = org_token(&c, "gamma").await?;
    let mut jobs = c.jobs().await;
    let id = jobs
        .submit_job(with_token(sleep_request(1, 10, 0), &tok))
        .await?
        .into_inner()
        .job_id;
    c.admin()
        .await
        .revoke_token(with_token(pb::RevokeTokenRequest { token_id: tid }, ADMIN))
        .await?;
    let t = Instant::now();
    let st = jobs
        .get_job(with_token(pb::GetJobRequest { job_id: id.clone() }, &tok))
        .await
        .err()
        .context("a revoked token still works")?;
    r.detect_s = t.elapsed().as_secs_f64();
    ensure!(
        st.code() == tonic::Code::Unauthenticated,
        "revoked: {:?} {}",
        st.code(),
        st.message()
    );
    let st = jobs
        .get_job(pb::GetJobRequest { job_id: id.clone() })
        .await
        .err()
        .context("no token accepted")?;
    ensure!(st.code() == tonic::Code::Unauthenticated, "no token: {:?}", st.code());
    // A token that expires one second after it is made: it works, then it does not.
    let (_, short) = org_token_ttl(&c, "gamma", 1).await?;
    jobs.get_job(with_token(pb::GetJobRequest { job_id: id.clone() }, &short))
        .await
        .context("a fresh short-lived token was refused")?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let st = jobs
        .get_job(with_token(pb::GetJobRequest { job_id: id.clone() }, &short))
        .await
        .err()
        .context("an expired token still works")?;
    ensure!(
        st.code() == tonic::Code::Unauthenticated && st.message().contains("expired"),
        "expired: {:?} {}",
        st.code(),
        st.message()
    );
    let forged = format!("{}{}", &tok[..tok.len() - 4], "0000");
    let st = jobs
        .get_job(with_token(pb::GetJobRequest { job_id: id }, &forged))
        .await
        .err()
        .context("a forged token accepted")?;
    ensure!(st.code() == tonic::Code::Unauthenticated, "forged: {:?}", st.code());

    // TLS: a client that trusts another CA refuses the coordinator; an agent without a
    // client certificate is not let in where certificates are required.
    let pki = Pki::new();
    let mut t = pki
        .tls_cluster()
        .coordinator_arg("--tls-client-ca")
        .coordinator_arg(pki.path("ca.pem"))
        .start()
        .await;
    let o = t.cli(&["--tls-ca", &pki.path("other-ca.pem"), "jobs"]).await;
    ensure!(!o.status.success(), "the CLI trusted a coordinator certified by another CA");
    t.add_agent(AgentOptions::sleep(1).node_id("no-cert").arg("--tls-ca").arg(pki.path("ca.pem")));
    // Waits on the refusal itself: the agent logs the coordinator turning it away.
    let logs = t.dir().join("logs");
    let refusal = super::wait_for("the agent's refusal", Duration::from_secs(30), || async {
        files_under(&logs)
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("no-cert")))
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .find(|l| (l.contains("WARN") || l.contains("ERROR")) && l.to_lowercase().contains("certificate"))
    })
    .await?;
    r.note = format!(
        "no-cert agent: {}",
        refusal
            .chars()
            .rev()
            .take(120)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    ensure!(
        t.nodes().await.iter().all(|n| n.node_id != "no-cert"),
        "an agent without a client certificate registered"
    );
    Ok(r)
}
