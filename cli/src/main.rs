//! `dockyard`: the command-line client, the embedded all-in-one `run`, the demo and benchmarks.

mod client;
mod commands;
mod output;
mod output_stages;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{Deserialize, Serialize};

// `dockyard run` embeds the coordinator (sled copies B-tree nodes on every write), and as a
// client it allocates per request: the same allocator as dockyard-coordinator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use commands::bench::{CompressionArgs, DispatchArgs, DockingArgs, FunnelArgs, RedockArgs, ScaleArgs, REDOCK_HELP};
use commands::results::{Export, ResultsFormat};
use commands::run::EmbeddedArgs;
use commands::submit::SubmitArgs;
use output::Format;

const EXAMPLES: &str = "Examples:
  dockyard demo                                   # dock the bundled examples, no services needed
  dockyard run --receptor rec.pdbqt --ligands ligs/ --center 15.2,53.9,16.9 --size 20,20,20
  dockyard submit --receptor rec.pdbqt --ligands ligs/ --center 15.2,53.9,16.9 --size 20,20,20 --wait
  dockyard watch JOB            dockyard results JOB --top 20 --format csv
  dockyard jobs --format json   dockyard job JOB    dockyard nodes      dockyard drain NODE
  TOKEN=$(dockyard --token \"$ADMIN\" admin token create --org chem)
  dockyard --endpoint https://coord:50051 --tls-ca ca.pem --token \"$TOKEN\" jobs

Global settings come from flags, then DOCKYARD_ENDPOINT / DOCKYARD_TOKEN / DOCKYARD_TLS_CA,
then the --config TOML file (keys: endpoint, token, tls_ca).";

#[derive(Parser, Debug)]
#[command(name = "dockyard", version, about = "Dockyard: molecular docking at cluster scale.", after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    client: ClientSettings,
    /// TOML config file with `endpoint`, `token` and `tls_ca`.
    #[arg(long, global = true, env = "DOCKYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the client finds the coordinator and how it proves who it is: each setting declared
/// once, as a flag, a `DOCKYARD_*` variable and a `--config` key, with its default
/// (`dockyard_common::settings`).
#[derive(clap::Args, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
struct ClientSettings {
    /// Coordinator URL, or several comma-separated (the leader is found among them).
    #[arg(
        long,
        global = true,
        env = "DOCKYARD_ENDPOINT",
        visible_alias = "coordinator",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Bearer token sent with every call.
    #[arg(long, global = true, env = "DOCKYARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA that signed the coordinator's TLS certificate (for https:// endpoints)
    /// [default: the system's roots].
    #[arg(long, global = true, env = "DOCKYARD_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        dockyard_common::settings::declared_defaults()
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Submit a docking job; prints the job id on the first line of stdout.
    #[command(after_help = "Examples:
  dockyard submit --receptor 1iep_receptor.pdbqt --ligands ligands/ --center 15.19,53.903,16.917 --size 20,20,20 --priority 5 --wait
  dockyard submit --engine sleep --count 1000 --sleep-ms 10        # test-only engine, no docking")]
    Submit {
        #[command(flatten)]
        args: SubmitArgs,
        /// Follow progress, then print a summary; exit non-zero unless the job succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Follow a job with a live progress bar until it finishes.
    #[command(after_help = "Example:\n  dockyard watch 0192f3a1b2c3d4e5f6a7")]
    Watch { job: String },
    /// List jobs, newest first.
    #[command(after_help = "Example:\n  dockyard jobs --format json | jq '.[0]'")]
    Jobs {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// How many of the newest jobs to list (stderr says when more exist).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// List every job, page by page.
        #[arg(long, conflicts_with = "limit")]
        all: bool,
        /// Only this organisation's jobs (an admin sees every organisation's otherwise).
        #[arg(long)]
        org: Option<String>,
    },
    /// One job's state, counts and, if any, its error or why it waits.
    #[command(after_help = "Example:\n  dockyard job 0192f3a1b2c3d4e5f6a7 --format json | jq .state")]
    Job {
        job: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Ranked hits of a job, best score first.
    #[command(after_help = "Examples:
  dockyard results JOB --top 20 --format csv > hits.csv
  dockyard results JOB --all --format sdf --out hits.sdf    # every result, streamed")]
    Results {
        job: String,
        /// How many of the best results (0: all of them, written as they are paged in).
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Every result (as --top 0).
        #[arg(long, conflicts_with = "top")]
        all: bool,
        /// sdf: poses with scores as data fields (needs --out).
        #[arg(long, value_enum, default_value = "table")]
        format: ResultsFormat,
        /// Write to this file instead of stdout (required for sdf).
        #[arg(long)]
        out: Option<PathBuf>,
        /// score (lowest first), cnn_score or cnn_affinity (highest first) [default: the
        /// engine's own ranking: cnn_score for gnina and rustina, score for the others].
        #[arg(long, value_parser = ["score", "cnn_score", "cnn_affinity"])]
        rank_by: Option<String>,
        /// A funnel's stage to list, 1-based (its own results, by its own key) [default: the
        /// last stage so far, with each earlier stage's score as a column].
        #[arg(long, value_name = "N")]
        stage: Option<u32>,
    },
    /// Job report: counts, failures grouped by reason, engine CPU time.
    #[command(after_help = "Example:\n  dockyard report JOB --format json")]
    Report {
        job: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Cancel a job: queued tasks are dropped, running engines are killed.
    #[command(after_help = "Example:\n  dockyard cancel JOB")]
    Cancel {
        job: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List nodes with their state, capacity and engines.
    #[command(after_help = "Example:\n  dockyard nodes --format json")]
    Nodes {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Stop giving a node new tasks; running ones finish.
    #[command(after_help = "Example:\n  dockyard drain gpu-node-7")]
    Drain {
        node: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Let a drained node take tasks again.
    #[command(after_help = "Example:\n  dockyard undrain gpu-node-7")]
    Undrain {
        node: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Queue depth and dispatch counters.
    Stats,
    /// Live view: nodes, queue depth, throughput, running jobs and the best hits so far.
    #[command(after_help = "Examples:
  dockyard top                  # q, Esc or Ctrl-C to quit
  dockyard top --interval 5 --top 20
  dockyard top --once           # one frame as plain text, for scripts
Nodes, queue depth and cluster throughput need the admin token; an organisation token sees
its own jobs and hits.")]
    Top(commands::top::TopArgs),
    /// Start and stop agents from the queue: Slurm agent jobs per pool, within bounds.
    #[command(after_help = "Examples:
  dockyard autoscale --pools deploy/slurm/autoscale.toml --dry-run --once
  dockyard autoscale --pools deploy/slurm/autoscale.toml --interval-s 10 --cooldown-s 120 --metrics-listen 0.0.0.0:9102
Needs the admin token when authentication is on (it reads the queue and drains nodes).
Run one autoscaler per cluster; see deploy/slurm/README.md.")]
    Autoscale(commands::autoscale::AutoscaleArgs),
    /// Tokens and quotas (needs the admin token when authentication is on).
    #[command(
        subcommand,
        after_help = "Examples:
  TOKEN=$(dockyard --token \"$ADMIN\" admin token create --org chem)
  dockyard admin token list          dockyard admin token revoke ID
  dockyard admin quota set --org chem --max-queued-tasks 1000 --max-running 8 --max-bytes 10000000000
  dockyard admin quota get --org chem"
    )]
    Admin(commands::admin::AdminCmd),
    /// Run one job on a cluster embedded in this process (no services needed).
    #[command(after_help = "Example:
  dockyard run --receptor examples/receptor.pdbqt --ligands examples/ligands --box examples/box.toml --exhaustiveness 2")]
    Run {
        #[command(flatten)]
        args: SubmitArgs,
        #[command(flatten)]
        embedded: EmbeddedArgs,
    },
    /// Dock the bundled example ligands with the real Vina, embedded, and print the hits.
    #[command(after_help = "Example:\n  dockyard demo")]
    Demo {
        /// The examples folder [default: ./examples or the source tree's].
        #[arg(long)]
        examples: Option<PathBuf>,
        /// Override the exhaustiveness set in examples/box.toml.
        #[arg(long)]
        exhaustiveness: Option<u32>,
        #[command(flatten)]
        embedded: EmbeddedArgs,
    },
    /// Benchmarks (not tests).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Funnel: the full screen at high effort against a funnel (a cheap stage over the
    /// library, the high effort on the best of it), with CPU-s for each and how many of the
    /// full screen's top hits the funnel found.
    #[command(after_help = "Example:
  target/release/dockyard bench funnel --receptor ../shared/data/vina-examples/1iep/1iep_receptor.pdbqt \\
      --ligands ../shared/data/ligands-100.smi --center 15.190,53.903,16.917 --size 20,20,20 --high 16 --cheap 1 --keep 10%")]
    Funnel(FunnelArgs),
    /// Dispatch throughput: real coordinator + K agent processes, N sleep tasks at 0 ms.
    #[command(after_help = "Example:\n  cargo build --release && target/release/dockyard bench dispatch --tasks 100000 --agents 2")]
    Dispatch(DispatchArgs),
    /// Docking: a screen through a real cluster (--engine vina, smina or rustina) vs a plain
    /// sequential vina loop (and the engine's own loop), with ligands per CPU-hour for each.
    #[command(
        after_help = "CPU-hours: the engine processes' user+system CPU time (the cluster's from the job report,
the loops' from the finished children), not the cores' wall time.

Examples:
  target/release/dockyard bench docking --receptor ../shared/data/vina-examples/1iep/1iep_receptor.pdbqt \\
      --ligands ../shared/data/ligands/pdbqt-meeko --center 15.190,53.903,16.917 --size 20,20,20 --exhaustiveness 1
  target/release/dockyard bench docking --engine rustina --rustina-python python3 --exhaustiveness 8 \\
      --receptor ../shared/data/vina-examples/1iep/1iep_receptor.pdbqt --ligands ../shared/data/ligands-100.smi \\
      --center 15.190,53.903,16.917 --size 20,20,20"
    )]
    Docking(DockingArgs),
    /// Scale: a million-ligand screen submitted, the coordinator killed and restarted with it
    /// queued, and a priority-9 task behind it.
    #[command(after_help = "Example:
  target/release/dockyard bench scale --ligands 1000000 --receptor ../shared/data/vina-examples/1iep/1iep_receptor.pdbqt \\
      --center 15.190,53.903,16.917 --size 20,20,20")]
    Scale(ScaleArgs),
    /// Compressed artifacts: the same screen with --artifact-compression off and zstd, each
    /// on a fresh coordinator and agent, with the bytes each stored (counted on disk) and the
    /// CPU each spent.
    #[command(after_help = "Example (a generated fragment library; see examples/fragments):
  python3 examples/fragments/make_fragments.py --count 1000 --out /tmp/frag1k
  target/release/dockyard bench compression --receptor examples/receptor.pdbqt --ligands /tmp/frag1k \\
      --center 15.851,14.647,3.904 --size 30,30,30")]
    Compression(CompressionArgs),
    /// Redocking: engines side by side on complexes with crystal poses (top-pose RMSD by obrms, CPU-s).
    #[command(after_help = REDOCK_HELP)]
    Redock(RedockArgs),
}

async fn main_inner(cli: Cli, settings: ClientSettings) -> Result<bool> {
    let ClientSettings { endpoint, token, tls_ca } = settings;
    let connect = || client::Client::connect_tls(&endpoint, token.clone(), tls_ca.as_deref());
    match cli.cmd {
        Cmd::Submit { args, wait } => {
            let c = connect().await?;
            let r = commands::submit::submit(&c, &args).await?;
            println!("{}", r.job_id);
            if let Some(j) = &r.job {
                if !j.unschedulable_reason.is_empty() {
                    eprintln!("warning: unschedulable for now: {}", j.unschedulable_reason);
                }
            }
            if wait {
                let j = commands::watch::watch(&c, &r.job_id, false).await?;
                output::print_jobs(std::slice::from_ref(&j), Format::Table);
                return Ok(output::job_state(j.state) == "succeeded");
            }
            Ok(true)
        }
        Cmd::Watch { job } => {
            let c = connect().await?;
            let j = commands::watch::watch(&c, &job, false).await?;
            Ok(matches!(output::job_state(j.state), "succeeded" | "partial"))
        }
        Cmd::Jobs { format, limit, all, org } => {
            let limit = (!all).then_some(limit.max(1) as usize);
            commands::query::jobs(&connect().await?, limit, org.unwrap_or_default(), format)
                .await
                .map(|_| true)
        }
        Cmd::Job { job, format } => commands::query::job(&connect().await?, &job, format).await.map(|_| true),
        Cmd::Admin(cmd) => commands::admin::run(&connect().await?, cmd).await.map(|_| true),
        Cmd::Results {
            job,
            top,
            all,
            format,
            out,
            rank_by,
            stage,
        } => {
            let export = Export::new(top, all, format, out);
            export.check()?;
            let c = connect().await?;
            let (rank_by, stage) = (rank_by.unwrap_or_default(), stage.unwrap_or(0));
            commands::results::export(&c, &job, &rank_by, stage, &export).await.map(|_| true)
        }
        Cmd::Report { job, format } => commands::query::report(&connect().await?, &job, format).await.map(|_| true),
        Cmd::Cancel { job, format } => commands::query::cancel(&connect().await?, &job, format).await.map(|_| true),
        Cmd::Nodes { format } => commands::query::nodes(&connect().await?, format).await.map(|_| true),
        Cmd::Drain { node, format } => commands::query::drain(&connect().await?, &node, true, format).await.map(|_| true),
        Cmd::Undrain { node, format } => commands::query::drain(&connect().await?, &node, false, format).await.map(|_| true),
        Cmd::Top(args) => commands::top::run(connect, &endpoint, &args).await.map(|_| true),
        Cmd::Autoscale(args) => commands::autoscale::run(connect, &endpoint, &args).await.map(|_| true),
        Cmd::Stats => {
            let s = commands::query::stats(&connect().await?).await?;
            println!(
                "queued={} delayed={} running={} dispatched_total={} committed_total={} duplicates_dropped={} requeued_total={} epoch={} p50_ms={:.1} p99_ms={:.1}",
                s.queued, s.delayed, s.running, s.dispatched_total, s.results_committed_total, s.duplicate_results_dropped, s.requeued_total, s.epoch, s.dispatch_latency_p50_ms, s.dispatch_latency_p99_ms
            );
            for p in s.by_priority {
                println!("  priority {}: {} queued", p.priority, p.queued);
            }
            Ok(true)
        }
        Cmd::Run { args, embedded } => commands::run::run_embedded(&args, &embedded).await,
        Cmd::Demo {
            examples,
            exhaustiveness,
            embedded,
        } => commands::run::demo(examples.as_deref(), &embedded, exhaustiveness).await,
        Cmd::Bench(BenchCmd::Dispatch(a)) => commands::bench::dispatch(&a).await.map(|_| true),
        Cmd::Bench(BenchCmd::Docking(a)) => commands::bench::docking(&a).await.map(|_| true),
        Cmd::Bench(BenchCmd::Funnel(a)) => commands::bench::funnel(&a).await.map(|_| true),
        Cmd::Bench(BenchCmd::Compression(a)) => commands::bench::compression(&a).await.map(|_| true),
        Cmd::Bench(BenchCmd::Scale(a)) => commands::bench::scale(&a).await.map(|_| true),
        Cmd::Bench(BenchCmd::Redock(a)) => commands::bench::redock(&a).await.map(|_| true),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    let settings = match dockyard_common::settings::load::<ClientSettings>(&matches) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dockyard: {e}");
            return ExitCode::from(2);
        }
    };
    // `run` and `demo` host a coordinator and an agent, so they export traces as those do;
    // the exporter needs the runtime, hence the set-up after it.
    let hosts_services = matches!(cli.cmd, Cmd::Run { .. } | Cmd::Demo { .. });
    if !hosts_services {
        // The autoscaler's log is its record of decisions.
        let level = if matches!(cli.cmd, Cmd::Autoscale(_)) { "info" } else { "warn" };
        dockyard_common::telemetry::init("text", level);
    }
    let rt = match tokio::runtime::Runtime::new().context("cannot start the async runtime") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dockyard: {e:#}");
            return ExitCode::from(1);
        }
    };
    let telemetry = hosts_services.then(|| {
        let _rt = rt.enter();
        dockyard_common::telemetry::init_with_traces("text", "warn", "dockyard")
    });
    let code = match rt.block_on(main_inner(cli, settings)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dockyard: {e:#}");
            ExitCode::from(1)
        }
    };
    if let Some(t) = telemetry {
        rt.block_on(t.shutdown());
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> ClientSettings {
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("dockyard").chain(args.iter().copied()))
            .expect("arguments parse");
        dockyard_common::settings::load(&m).expect("settings load")
    }

    /// `--search-mode` (rustina) and `--cnn-scoring` reach the submitted engine options.
    #[test]
    fn submit_takes_rustinas_search_mode() {
        let m = Cli::command()
            .try_get_matches_from([
                "dockyard",
                "submit",
                "--engine",
                "rustina",
                "--search-mode",
                "qvina2",
                "--cnn-scoring",
                "none",
            ])
            .expect("arguments parse");
        let cli = Cli::from_arg_matches(&m).expect("cli");
        let Cmd::Submit { args, .. } = cli.cmd else {
            panic!("not submit: {cli:?}")
        };
        assert_eq!(
            (args.search_mode.as_deref(), args.cnn_scoring.as_deref()),
            (Some("qvina2"), Some("none"))
        );
    }

    /// Flags win over the file, the file over the default, wherever the flags sit on the line.
    #[test]
    fn client_settings_layer_flags_over_file_over_default() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "endpoint = \"http://file:1\"\ntls_ca = \"/ca.pem\"\n").expect("write");
        let f = file.to_str().expect("utf-8 path");
        let s = settings(&["jobs", "--config", f]);
        assert_eq!(s.endpoint, "http://file:1");
        assert_eq!(s.tls_ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        let s = settings(&["--config", f, "jobs", "--endpoint", "http://flag:2", "--token", "t"]);
        assert_eq!((s.endpoint.as_str(), s.token.as_deref()), ("http://flag:2", Some("t")));
        assert_eq!(settings(&["jobs"]).endpoint, "http://127.0.0.1:50051");
    }
}
