//! The harness's own calls to a running cluster: gRPC, waits and the `dockyard` CLI.

use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::{TestCluster, POLL, WAIT};
use crate::paths::binary;
use crate::pb;
use crate::pb::admin_service_client::AdminServiceClient;
use crate::pb::job_service_client::JobServiceClient;
use crate::process::clean_command;
use crate::requests::{describe_job, is_final, sleep_request, with_token};

impl TestCluster {
    // ----- gRPC -----

    /// Wraps a message in a request carrying the cluster's token (see [`ClusterBuilder::token`]).
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        match &self.settings.token {
            Some(t) => with_token(msg, t),
            None => tonic::Request::new(msg),
        }
    }

    /// One attempt at a channel (TLS when the cluster serves it).
    async fn try_channel(&self) -> Result<Channel, String> {
        let mut ep = Channel::from_shared(self.endpoint()).map_err(|e| e.to_string())?;
        if let Some(ca) = &self.settings.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            ep = ep.tls_config(tls).map_err(|e| e.to_string())?;
        }
        ep.connect().await.map_err(|e| e.to_string())
    }

    /// A fresh channel to the coordinator.
    pub async fn channel(&self) -> Channel {
        let ep = self.endpoint();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.try_channel().await;
            match r {
                Ok(ch) => return ch,
                Err(e) if Instant::now() >= deadline => panic!("cannot connect to {ep}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// Submits a job; panics unless it is accepted. Returns the job id.
    pub async fn submit(&self, req: pb::SubmitJobRequest) -> String {
        let r = self
            .jobs()
            .await
            .submit_job(self.req(req))
            .await
            .unwrap_or_else(|s| panic!("SubmitJob refused: {s:?}"))
            .into_inner();
        assert_eq!(r.job_id.len(), 20, "job id {:?}", r.job_id);
        r.job_id
    }

    /// Submits a sleep-engine job of `count` tasks of `sleep_ms` each.
    pub async fn submit_sleep(&self, count: u32, sleep_ms: u32, priority: i32) -> String {
        self.submit(sleep_request(count, sleep_ms, priority)).await
    }

    pub async fn get_job(&self, job: &str) -> pb::Job {
        self.jobs()
            .await
            .get_job(self.req(pb::GetJobRequest { job_id: job.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("GetJob {job}: {s:?}"))
            .into_inner()
    }

    /// All jobs (every page), newest first.
    pub async fn list_jobs(&self) -> Vec<pb::Job> {
        let mut c = self.jobs().await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let r = c
                .list_jobs(self.req(pb::ListJobsRequest {
                    page_size: 1000,
                    page_token: token,
                    org: String::new(),
                }))
                .await
                .unwrap_or_else(|s| panic!("ListJobs: {s:?}"))
                .into_inner();
            out.extend(r.jobs);
            if r.next_page_token.is_empty() {
                return out;
            }
            token = r.next_page_token;
        }
    }

    pub async fn results(&self, job: &str) -> pb::ListResultsResponse {
        self.jobs()
            .await
            .list_results(self.req(pb::ListResultsRequest {
                job_id: job.to_string(),
                page_size: 1000,
                page_token: String::new(),
                ..Default::default()
            }))
            .await
            .unwrap_or_else(|s| panic!("ListResults {job}: {s:?}"))
            .into_inner()
    }

    /// The first page of `job`'s results as the holder of `token` lists them.
    pub async fn results_as(&self, job: &str, token: &str) -> Result<Vec<pb::LigandResult>, tonic::Status> {
        let req = pb::ListResultsRequest {
            job_id: job.to_string(),
            page_size: 100,
            ..Default::default()
        };
        Ok(self
            .jobs()
            .await
            .list_results(crate::with_token(req, token))
            .await?
            .into_inner()
            .results)
    }

    /// The whole artifact `key` as the holder of `token` reads it through GetArtifact; the
    /// status of the call or of the stream's first failing message.
    pub async fn artifact_as(&self, key: &str, token: &str) -> Result<Vec<u8>, tonic::Status> {
        self.read_artifact(crate::with_token(pb::GetArtifactRequest { key: key.to_string() }, token))
            .await
    }

    /// The whole artifact `key` through GetArtifact, with this client's credentials.
    pub async fn artifact(&self, key: &str) -> Result<Vec<u8>, tonic::Status> {
        self.read_artifact(self.req(pb::GetArtifactRequest { key: key.to_string() })).await
    }

    async fn read_artifact(&self, req: tonic::Request<pb::GetArtifactRequest>) -> Result<Vec<u8>, tonic::Status> {
        let mut stream = self.jobs().await.get_artifact(req).await?.into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    pub async fn report(&self, job: &str) -> pb::JobReport {
        self.jobs()
            .await
            .get_job_report(self.req(pb::GetJobRequest { job_id: job.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("GetJobReport {job}: {s:?}"))
            .into_inner()
    }

    pub async fn cancel(&self, job: &str) -> pb::Job {
        self.jobs()
            .await
            .cancel_job(self.req(pb::CancelJobRequest {
                job_id: job.to_string(),
                reason: "cancelled by test".into(),
            }))
            .await
            .unwrap_or_else(|s| panic!("CancelJob {job}: {s:?}"))
            .into_inner()
    }

    pub async fn stats(&self) -> pb::QueueStatsResponse {
        self.admin()
            .await
            .queue_stats(self.req(pb::QueueStatsRequest {}))
            .await
            .unwrap_or_else(|s| panic!("QueueStats: {s:?}"))
            .into_inner()
    }

    pub async fn nodes(&self) -> Vec<pb::Node> {
        self.admin()
            .await
            .list_nodes(self.req(pb::ListNodesRequest {}))
            .await
            .unwrap_or_else(|s| panic!("ListNodes: {s:?}"))
            .into_inner()
            .nodes
    }

    pub async fn node(&self, id: &str) -> Option<pb::Node> {
        self.nodes().await.into_iter().find(|n| n.node_id == id)
    }

    pub async fn drain(&self, id: &str) -> pb::Node {
        self.admin()
            .await
            .drain_node(self.req(pb::DrainNodeRequest { node_id: id.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("DrainNode {id}: {s:?}"))
            .into_inner()
    }

    pub async fn undrain(&self, id: &str) -> pb::Node {
        self.admin()
            .await
            .undrain_node(self.req(pb::DrainNodeRequest { node_id: id.to_string() }))
            .await
            .unwrap_or_else(|s| panic!("UndrainNode {id}: {s:?}"))
            .into_inner()
    }

    // ----- waiting -----

    /// Waits until at least `n` nodes are connected (READY or DRAINING).
    pub async fn wait_for_nodes(&self, n: usize) -> Vec<pb::Node> {
        let deadline = Instant::now() + WAIT;
        let mut last: String;
        loop {
            match self.try_nodes().await {
                Ok(nodes) => {
                    let up = nodes.iter().filter(|x| x.state != pb::NodeState::Lost as i32).count();
                    if up >= n {
                        return nodes;
                    }
                    last = format!(
                        "{up} connected: {:?}",
                        nodes.iter().map(|x| (&x.node_id, x.state)).collect::<Vec<_>>()
                    );
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {WAIT:?} waiting for {n} connected node(s); last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn try_nodes(&self) -> Result<Vec<pb::Node>, String> {
        let ch = self.try_channel().await?;
        AdminServiceClient::new(ch)
            .list_nodes(self.req(pb::ListNodesRequest {}))
            .await
            .map(|r| r.into_inner().nodes)
            .map_err(|s| format!("{s:?}"))
    }

    /// Polls ListNodes until node `id` satisfies `pred`; panics after `timeout`.
    pub async fn wait_node(&self, id: &str, what: &str, pred: impl Fn(&pb::Node) -> bool, timeout: Duration) -> pb::Node {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.try_nodes().await {
                Ok(nodes) => match nodes.into_iter().find(|n| n.node_id == id) {
                    Some(n) if pred(&n) => return n,
                    Some(n) => last = format!("{n:?}"),
                    None => last = format!("node {id} not listed"),
                },
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for node {id} to be {what}; last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls GetJob until `pred` holds and returns that snapshot; panics after `timeout`
    /// with the last snapshot. Errors (e.g. while the coordinator restarts) are retried.
    pub async fn wait_job(&self, job: &str, pred: impl Fn(&pb::Job) -> bool, timeout: Duration) -> pb::Job {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            let r = async {
                let ch = self.try_channel().await?;
                JobServiceClient::new(ch)
                    .get_job(self.req(pb::GetJobRequest { job_id: job.to_string() }))
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| format!("{s:?}"))
            }
            .await;
            match r {
                Ok(j) if pred(&j) => return j,
                Ok(j) => last = describe_job(&j),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting on job {job}; last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the job is in a final state (succeeded, partial, failed, cancelled).
    pub async fn wait_job_final(&self, job: &str, timeout: Duration) -> pb::Job {
        self.wait_job(job, is_final, timeout).await
    }

    // ----- the `dockyard` CLI -----

    /// Runs the `dockyard` CLI against this cluster (`--endpoint` is added first).
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let bin = binary("dockyard");
        let mut cmd = tokio::process::Command::from(clean_command(&bin));
        cmd.arg("--endpoint").arg(self.endpoint()).args(args).kill_on_drop(true);
        // An environment variable, so a test's own `--token` still wins.
        if let Some(t) = &self.settings.token {
            cmd.env("DOCKYARD_TOKEN", t);
        }
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("dockyard {args:?} did not finish within 60 s"))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
    }
}
