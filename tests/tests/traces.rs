//! Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, the coordinator and the agents export one
//! trace per job over OTLP/gRPC, the agents' task spans under the coordinator's attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use dockyard_tests::{describe_job, pb, state, AgentOptions, TestCluster, WAIT};

/// One span as the collector received it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attrs: HashMap<String, String>,
}

/// An in-process OTLP collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Collector {
    fn spans(&self) -> Vec<Got> {
        self.spans.lock().expect("collector lock").clone()
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            let resource = rs.resource.map(|r| attrs(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Got {
                        service: service.clone(),
                        name: s.name,
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent: s.parent_span_id,
                        attrs: attrs(&s.attributes),
                    });
                }
            }
        }
        self.spans.lock().expect("collector lock").extend(got);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Starts the collector on a free loopback port; returns it and its endpoint URL.
async fn start_collector() -> (Collector, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (collector, format!("http://{addr}"))
}

/// What the test expects of one job's trace, checked against everything received so far.
/// `Err` says what is still missing (the exporters send in batches).
fn check_job_trace(spans: &[Got], job: &str, tasks: usize) -> Result<(), String> {
    let job_span = spans
        .iter()
        .find(|s| s.name == "job" && s.attrs.get("job.id").map(String::as_str) == Some(job))
        .ok_or("no `job` span for the job yet")?;
    if job_span.service != "dockyard-coordinator" {
        return Err(format!("the job span came from {:?}", job_span.service));
    }
    if job_span.attrs.get("job.tasks").map(String::as_str) != Some(&tasks.to_string()) {
        return Err(format!("job span attributes: {:?}", job_span.attrs));
    }
    let trace = &job_span.trace_id;
    let in_trace: Vec<&Got> = spans.iter().filter(|s| &s.trace_id == trace).collect();
    let attempts: Vec<&Got> = in_trace
        .iter()
        .copied()
        .filter(|s| s.service == "dockyard-coordinator" && s.name == "task.attempt")
        .collect();
    if attempts.len() < tasks {
        return Err(format!(
            "{} of {tasks} coordinator task.attempt spans in the job's trace",
            attempts.len()
        ));
    }
    for a in &attempts {
        if a.parent != job_span.span_id {
            return Err(format!("task.attempt span not under the job span: {a:?}"));
        }
        for k in ["job.id", "task.index", "task.attempt", "node.id"] {
            if !a.attrs.contains_key(k) {
                return Err(format!("task.attempt span without {k}: {a:?}"));
            }
        }
    }
    let runs: Vec<&Got> = in_trace
        .iter()
        .copied()
        .filter(|s| s.service == "dockyard-agent" && s.name == "task")
        .collect();
    if runs.len() < tasks {
        return Err(format!("{} of {tasks} agent task spans in the job's trace", runs.len()));
    }
    for r in &runs {
        if !attempts.iter().any(|a| a.span_id == r.parent) {
            return Err(format!("agent task span whose parent is no coordinator attempt: {r:?}"));
        }
        if !in_trace
            .iter()
            .any(|s| s.service == "dockyard-agent" && s.name == "task.engine" && s.parent == r.span_id)
        {
            return Err(format!("no task.engine span under the agent's task span {r:?}"));
        }
    }
    if !in_trace.iter().any(|s| s.name == "submit_job") {
        return Err("no submit_job span in the job's trace".into());
    }
    // Trace ids come from job ids: another job's spans never land here.
    if let Some(stray) = in_trace.iter().find(|s| s.attrs.get("job.id").is_some_and(|j| j != job)) {
        return Err(format!("a span of another job in this trace: {stray:?}"));
    }
    Ok(())
}

/// One job's spans from the coordinator and the agent form one trace: the job span, an
/// attempt span per task, and under each attempt the agent's task span with its phases.
#[tokio::test]
async fn a_job_is_one_trace_across_coordinator_and_agent() {
    let (collector, endpoint) = start_collector().await;
    let c = TestCluster::builder()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .agent(AgentOptions::sleep(2))
        .start()
        .await;
    let tasks = 3;
    let job = c.submit_sleep(tasks, 50, 0).await;
    let j = c.wait_job_final(&job, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let spans = collector.spans();
        match check_job_trace(&spans, &job, tasks as usize) {
            Ok(()) => break,
            Err(why) if Instant::now() >= deadline => {
                let names: Vec<(&str, &str)> = spans.iter().map(|s| (s.service.as_str(), s.name.as_str())).collect();
                panic!("{why}\nspans received: {names:?}\n{}", c.log_tails(20));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
