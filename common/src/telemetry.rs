//! Logging set-up shared by every binary, and OpenTelemetry traces (feature `otel`) when an
//! OTLP endpoint is configured.

use tracing_subscriber::EnvFilter;

/// Text logs to stderr by default; `json` for log shippers. `RUST_LOG` overrides the level.
pub fn init(format: &str, default_level: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter(default_level))
        .with_ansi(stderr_is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Colours only for a person at a terminal: a log file (a Slurm job's output, a systemd
/// journal, a test's log) gets plain text that grep and log shippers read as written.
fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn env_filter(default_level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level))
}

#[cfg(feature = "otel")]
pub use self::otel::{init_with_traces, Telemetry};

/// Traces of jobs across the coordinator and the agents; every function here is a no-op
/// (one atomic load) unless [`init_with_traces`] found an OTLP endpoint.
#[cfg(feature = "otel")]
pub mod trace {
    pub use super::otel::{
        enabled, record_job, set_job_parent, set_remote_parent, span_if_exporting, start_attempt, AttemptSpan, JobSummary,
    };
}

#[cfg(feature = "otel")]
mod otel {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, SystemTime};

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider,
    };
    use opentelemetry::{Context, InstrumentationScope, KeyValue};
    use opentelemetry_otlp::WithTonicConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::runtime::Tokio;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanProcessor};
    use opentelemetry_sdk::Resource;
    use sha2::{Digest, Sha256};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry};

    use super::env_filter;

    /// The instrumentation scope of every span Dockyard records itself.
    const SCOPE: &str = "dockyard";
    /// How long exit may wait for the last spans to reach the collector.
    const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

    struct Exporting {
        tracer: SdkTracer,
        /// The provider's batch processor, for spans recorded after the fact with ids and
        /// times of our choosing (the job span), which the SDK's span builder cannot take.
        sink: Arc<BatchSpanProcessor<Tokio>>,
    }

    /// Set once by `init_with_traces` when an endpoint is configured; read on every dispatch.
    static EXPORTING: OnceLock<Exporting> = OnceLock::new();

    /// Holds the tracer provider until exit; [`Telemetry::shutdown`] sends what is still
    /// buffered. Without an endpoint it holds nothing.
    #[must_use = "call shutdown() before exit, or the last spans are lost"]
    pub struct Telemetry {
        provider: Option<SdkTracerProvider>,
    }

    impl Telemetry {
        /// Flushes buffered spans and stops the exporter, waiting at most a few seconds for
        /// an unreachable collector.
        pub async fn shutdown(self) {
            let Some(provider) = self.provider else { return };
            // The batch processor's shutdown blocks until its task (on this runtime) has
            // exported, so it must not run on a runtime worker.
            let done = tokio::task::spawn_blocking(move || provider.shutdown());
            match tokio::time::timeout(SHUTDOWN_WAIT, done).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => eprintln!("traces: the last spans were not sent: {e}"),
                Ok(Err(e)) => eprintln!("traces: shutdown: {e}"),
                Err(_) => eprintln!("traces: the collector did not take the last spans in {SHUTDOWN_WAIT:?}"),
            }
        }
    }

    /// [`super::init`]'s logs, plus traces over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The service name is
    /// `OTEL_SERVICE_NAME`, else `default_service`; the `OTEL_BSP_*` and
    /// `OTEL_EXPORTER_OTLP_*` variables tune the exporter as the SDK documents. Call it
    /// inside a multi-threaded tokio runtime: the batch exporter runs on it.
    pub fn init_with_traces(format: &str, default_level: &str, default_service: &str) -> Telemetry {
        if !configured() {
            super::init(format, default_level);
            return Telemetry { provider: None };
        }
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default_service.to_string());
        let built = build_provider(&service);
        let fmt = fmt_layer(format).with_filter(env_filter(default_level));
        let otel = built.as_ref().ok().map(|(provider, _)| {
            // Only Dockyard's own spans: the exporter's gRPC client (tonic, h2, hyper) would
            // otherwise trace its own exports. The scheduler's per-event spans are left out
            // too: it records its job and attempt spans through `trace` directly.
            let targets = Targets::new()
                .with_target("dockyard_coordinator", LevelFilter::INFO)
                .with_target("dockyard_coordinator::scheduler", LevelFilter::OFF)
                .with_target("dockyard_agent", LevelFilter::INFO)
                .with_target("dockyard_cli", LevelFilter::INFO);
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SCOPE))
                .with_filter(targets)
        });
        let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
        match built {
            Ok((provider, sink)) => {
                let _ = EXPORTING.set(Exporting {
                    tracer: provider.tracer(SCOPE),
                    sink,
                });
                tracing::info!(service = %service, "exporting traces over OTLP");
                Telemetry { provider: Some(provider) }
            }
            Err(e) => {
                // A bad endpoint must not keep the service from starting: it runs untraced.
                tracing::warn!(error = %e, "traces: cannot set up the OTLP exporter; running without traces");
                Telemetry { provider: None }
            }
        }
    }

    /// Whether the environment asks for trace export (the standard OTel variables).
    fn configured() -> bool {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        let off = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
        !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    }

    fn build_provider(service: &str) -> Result<(SdkTracerProvider, Arc<BatchSpanProcessor<Tokio>>), String> {
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .unwrap_or_default();
        if endpoint.trim_start().starts_with("https://") {
            // The exporter's own TLS default has no trust roots; a collector behind a
            // publicly signed certificate is what an https endpoint usually means.
            builder = builder.with_tls_config(opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_native_roots());
        }
        let exporter = builder.build().map_err(|e| e.to_string())?;
        let resource = Resource::builder().with_service_name(service.to_string()).build();
        let mut batch = BatchSpanProcessor::builder(exporter, Tokio).build();
        // Set here, as the provider cannot reach into the shared processor below.
        batch.set_resource(&resource);
        let sink = Arc::new(batch);
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(SharedProcessor(Arc::clone(&sink)))
            .build();
        Ok((provider, sink))
    }

    fn fmt_layer(format: &str) -> Box<dyn Layer<Registry> + Send + Sync> {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(super::stderr_is_terminal())
            .with_writer(std::io::stderr);
        if format == "json" {
            layer.json().boxed()
        } else {
            layer.boxed()
        }
    }

    /// The provider's processor, shared with [`Exporting::sink`].
    #[derive(Debug)]
    struct SharedProcessor(Arc<BatchSpanProcessor<Tokio>>);

    impl SpanProcessor for SharedProcessor {
        fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
            self.0.on_start(span, cx);
        }

        fn on_end(&self, span: SpanData) {
            self.0.on_end(span);
        }

        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.force_flush()
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.shutdown_with_timeout(timeout)
        }
    }

    /// Whether spans are exported; callers skip building trace data when not.
    pub fn enabled() -> bool {
        EXPORTING.get().is_some()
    }

    /// `make()` when exporting, else a disabled span: for spans that only traces need.
    pub fn span_if_exporting(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
        if enabled() {
            make()
        } else {
            tracing::Span::none()
        }
    }

    /// A job's trace id and the id of its `job` span, both derived from the job id alone:
    /// every process, and every leader after a failover, puts the job's spans in one trace
    /// without keeping a span open for the job's lifetime.
    fn job_ids(job_id: &str) -> (TraceId, SpanId) {
        let digest = Sha256::new()
            .chain_update(b"dockyard job\0")
            .chain_update(job_id.as_bytes())
            .finalize();
        let mut trace = [0u8; 16];
        let mut span = [0u8; 8];
        trace.copy_from_slice(&digest[..16]);
        span.copy_from_slice(&digest[16..24]);
        // All-zero ids are invalid in W3C trace context; one in 2^64 hashes needs this.
        trace[15] |= u8::from(trace == [0; 16]);
        span[7] |= u8::from(span == [0; 8]);
        (TraceId::from_bytes(trace), SpanId::from_bytes(span))
    }

    /// The job's span as a (remote) parent context.
    fn job_context(job_id: &str) -> Context {
        let (trace_id, span_id) = job_ids(job_id);
        let sc = SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default());
        Context::new().with_remote_span_context(sc)
    }

    /// Puts a `tracing` span (the submit request's) under the job's span.
    pub fn set_job_parent(span: &tracing::Span, job_id: &str) {
        if enabled() {
            let _ = span.set_parent(job_context(job_id));
        }
    }

    /// The coordinator's span for one task attempt, from dispatch until the node gives
    /// the slot back (a result, a lost node); it ends when dropped.
    pub struct AttemptSpan(opentelemetry_sdk::trace::Span);

    impl AttemptSpan {
        /// Marks the attempt failed (it still ends on drop).
        pub fn fail(&mut self, reason: &str) {
            use opentelemetry::trace::Span as _;
            self.0.set_status(Status::error(reason.to_string()));
        }
    }

    impl std::fmt::Debug for AttemptSpan {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            use opentelemetry::trace::Span as _;
            write!(f, "AttemptSpan({})", self.0.span_context().span_id())
        }
    }

    /// Starts attempt `attempt` of task `index` of `job_id` on `node` as a child of the
    /// job's span. Returns the span and the W3C context for the agent; `None` when not
    /// exporting.
    pub fn start_attempt(
        job_id: &str,
        index: u32,
        attempt: u32,
        node: &str,
        engine: &str,
    ) -> Option<(AttemptSpan, HashMap<String, String>)> {
        use opentelemetry::trace::Span as _;
        let ex = EXPORTING.get()?;
        let span = ex
            .tracer
            .span_builder("task.attempt")
            .with_kind(SpanKind::Producer)
            .with_attributes([
                KeyValue::new("job.id", job_id.to_string()),
                KeyValue::new("task.index", i64::from(index)),
                KeyValue::new("task.attempt", i64::from(attempt)),
                KeyValue::new("node.id", node.to_string()),
                KeyValue::new("engine", engine.to_string()),
            ])
            .start_with_context(&ex.tracer, &job_context(job_id));
        let mut carrier = HashMap::with_capacity(2);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        Some((AttemptSpan(span), carrier))
    }

    /// Makes `span` a child of the W3C context an assignment carried. A missing or
    /// malformed context (it comes from the peer) leaves the span where it was.
    pub fn set_remote_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
        if carrier.is_empty() || !enabled() {
            return;
        }
        let cx = TraceContextPropagator::new().extract(carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }

    /// What the `job` span says about a finished job.
    pub struct JobSummary<'a> {
        pub job_id: &'a str,
        pub org: &'a str,
        pub engine: &'a str,
        pub tasks: u32,
        /// The final state, as the API names it ("succeeded", "partial", ...).
        pub state: &'a str,
        /// Set when the job failed or was cancelled.
        pub error: Option<&'a str>,
        pub ligands_docked: u32,
        pub ligands_failed: u32,
        pub submitted_ms: i64,
        pub finished_ms: i64,
    }

    /// Records the job's root span, submit to finish, once the job is final. Its ids are
    /// the job's derived ones, so the attempts recorded earlier (by this or another
    /// coordinator) hang under it.
    pub fn record_job(job: &JobSummary<'_>) {
        let Some(ex) = EXPORTING.get() else { return };
        let (trace_id, span_id) = job_ids(job.job_id);
        let at = |ms: i64| SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        let end = at(job.finished_ms);
        let start = if job.submitted_ms > 0 { at(job.submitted_ms).min(end) } else { end };
        let status = match job.error {
            Some(e) => Status::error(e.to_string()),
            None => Status::Ok,
        };
        ex.sink.on_end(SpanData {
            span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "job".into(),
            start_time: start,
            end_time: end,
            attributes: vec![
                KeyValue::new("job.id", job.job_id.to_string()),
                KeyValue::new("job.org", job.org.to_string()),
                KeyValue::new("job.engine", job.engine.to_string()),
                KeyValue::new("job.tasks", i64::from(job.tasks)),
                KeyValue::new("job.state", job.state.to_string()),
                KeyValue::new("job.ligands_docked", i64::from(job.ligands_docked)),
                KeyValue::new("job.ligands_failed", i64::from(job.ligands_failed)),
            ],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status,
            instrumentation_scope: InstrumentationScope::builder(SCOPE).build(),
        });
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn job_ids_are_stable_and_distinct() {
            let (t1, s1) = job_ids("0000000000000000000a");
            let (t2, s2) = job_ids("0000000000000000000a");
            let (t3, _) = job_ids("0000000000000000000b");
            assert_eq!((t1, s1), (t2, s2));
            assert_ne!(t1, t3);
            assert_ne!(t1, TraceId::INVALID);
            assert_ne!(s1, SpanId::INVALID);
        }

        #[test]
        fn nothing_is_built_when_not_exporting() {
            assert!(!enabled());
            assert!(start_attempt("j", 0, 1, "n", "sleep").is_none());
            assert!(span_if_exporting(|| tracing::info_span!("x")).is_none());
        }
    }
}
