//! `dockyard-agent` binary.

use clap::CommandFactory;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use dockyard_agent::config::AgentArgs;
use dockyard_agent::sandbox::{self, SandboxConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Clap prints --help and usage errors itself; the file and the checks come after.
    let (cfg, log_format) = match AgentArgs::load(&AgentArgs::command().get_matches()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dockyard-agent: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = dockyard_common::telemetry::init_with_traces(&log_format, "info", "dockyard-agent");
    sandbox::configure(SandboxConfig::from_agent(&cfg));
    // Held until exit: the run folders under the work folder are this agent's to clear.
    let _claim = match sandbox::claim_work_dir(&cfg.work_dir) {
        Ok(Some(claim)) => Some(claim),
        Ok(None) => {
            warn!(dir = %cfg.work_dir.display(), "another agent uses this work folder; its run folders are left alone");
            None
        }
        Err(e) => {
            warn!(dir = %cfg.work_dir.display(), error = %e, "cannot claim the work folder");
            None
        }
    };
    // Before any engine starts, so that no orphan of one goes to init.
    sandbox::start_reaper();
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
    let code = match dockyard_agent::run(cfg, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("dockyard-agent: {e}");
            std::process::ExitCode::from(1)
        }
    };
    telemetry.shutdown().await;
    code
}
