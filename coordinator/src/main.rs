//! `dockyard-coordinator` binary.

use clap::CommandFactory;
use tracing::{error, info};

use dockyard_coordinator::config::{CoordinatorArgs, CoordinatorConfig};

// sled copies B-tree nodes on every write; glibc malloc was a fifth of the dispatch profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Clap prints --help and usage errors itself; the file and the checks come after.
    let (cfg, log_format) = match CoordinatorArgs::load(&CoordinatorArgs::command().get_matches()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dockyard-coordinator: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = dockyard_common::telemetry::init_with_traces(&log_format, "info", "dockyard-coordinator");
    let code = serve(cfg).await;
    telemetry.shutdown().await;
    code
}

/// Runs the coordinator until it fails or a signal stops it.
async fn serve(cfg: CoordinatorConfig) -> std::process::ExitCode {
    let mut running = match dockyard_coordinator::start(cfg).await {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start: {e}");
            eprintln!("dockyard-coordinator: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    // Printed on stdout so scripts and the test harness can learn an ephemeral port.
    println!("listening on {}", running.addr);
    let token = running.shutdown_token();
    tokio::select! {
        r = running.wait() => {
            if let Err(f) = r {
                // The one place the process ends on an error found while running: 70 for
                // a failed write, 75 (EXIT_DEPOSED) for a deposed leader, 1 otherwise.
                error!(exit_code = f.exit_code(), "stopping: {f}");
                eprintln!("dockyard-coordinator: {f}");
                return std::process::ExitCode::from(f.exit_code());
            }
        }
        _ = shutdown_signal() => {
            info!("shutting down");
            token.cancel();
            running.shutdown().await;
        }
    }
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
