//! `dockyard-agent` binary.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::error;

use dockyard_agent::config::AgentArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (cfg, log_format) = match AgentArgs::parse().resolve() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dockyard-agent: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    dockyard_common::telemetry::init(&log_format, "info");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        token.cancel();
    });
    match dockyard_agent::run(cfg, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("dockyard-agent: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
