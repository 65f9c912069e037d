//! `faults`: runs the fault-injection scenarios and prints one line per scenario:
//! `scenario=NAME lost=N double_commits=N dup_exec=N detect_s=X recover_s=Y`.
//! Exits non-zero if any scenario fails. `--short`: small sizes (CI); `--only NAME,...`.

use std::time::Instant;

use dockyard_tests::faults::{all, verdict, Size};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let short = args.iter().any(|a| a == "--short");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect());
    let size = Size { short };
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, run) in all() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let t = Instant::now();
        match run(size).await.and_then(|r| verdict(&r).map(|_| r)) {
            Ok(r) => {
                println!("{}", r.line());
                if !r.note.is_empty() {
                    eprintln!("  {name}: {} ({:.1} s)", r.note, t.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                println!("scenario={name} FAILED: {e:#}");
                failed.push(name);
            }
        }
    }
    eprintln!("faults: {} failed, {:.0} s in all", failed.len(), started.elapsed().as_secs_f64());
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("failed: {}", failed.join(", "));
        std::process::ExitCode::FAILURE
    }
}
