//! The test-only `sleep` engine.

use std::time::Instant;

use async_trait::async_trait;
use dockyard_common::molecule::Pose;
use dockyard_common::spec::EngineKind;

use super::{DockedLigand, DockingEngine, EngineDescriptor, EngineError, EngineOutput, EngineRun, LigandDock};

/// A stand-in engine for exercising the cluster without a docking program. **It does no
/// docking**: it waits `sleep_ms` (cancellable, bounded by the run's timeout) and reports
/// one made-up pose per ligand.
///
/// The fake score is deterministic and differs per ligand index so that ranking code has
/// something to sort; it means nothing chemically. Each ligand gets a pose file in Vina's
/// output layout (`REMARK VINA RESULT` inside `MODEL`/`ENDMDL`, wrapping the input ligand)
/// so that code reading pose files behaves as it would with Vina.
pub struct SleepEngine {
    descriptor: EngineDescriptor,
}

impl SleepEngine {
    pub fn new() -> Self {
        Self {
            descriptor: EngineDescriptor {
                kind: EngineKind::Sleep,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        }
    }

    /// The made-up score: -1.00 for index 0, then -1.01, -1.02, ... repeating every 100.
    pub fn fake_score(index: u32) -> f64 {
        -1.0 - f64::from(index % 100) / 100.0
    }
}

impl Default for SleepEngine {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl DockingEngine for SleepEngine {
    fn descriptor(&self) -> &EngineDescriptor {
        &self.descriptor
    }

    async fn run(&self, run: EngineRun) -> Result<EngineOutput, EngineError> {
        let started = Instant::now();
        let nap = tokio::time::sleep(std::time::Duration::from_millis(u64::from(run.params.sleep_ms)));
        let limit = async {
            if run.timeout.is_zero() {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(run.timeout).await;
            }
        };
        tokio::select! {
            () = nap => {}
            () = run.cancel.cancelled() => return Err(EngineError::Cancelled),
            () = limit => return Err(EngineError::Timeout(run.timeout)),
        }

        let out_dir = run.work_dir.join("out");
        if !run.ligands.is_empty() {
            tokio::fs::create_dir_all(&out_dir).await?;
        }
        let mut ligands = Vec::with_capacity(run.ligands.len());
        for lig in &run.ligands {
            let score = Self::fake_score(lig.index);
            // An unreadable input only makes the fake pose file shorter; this engine must not
            // invent failures of its own.
            let body = tokio::fs::read_to_string(&lig.path).await.unwrap_or_default();
            let pose_file = out_dir.join(format!("lig_{}_out.pdbqt", lig.index));
            let text = format!(
                "MODEL 1\nREMARK VINA RESULT: {score:>9.3} {:>10.3} {:>10.3}\n\
                 REMARK sleep engine: no docking was done\n{body}{}ENDMDL\n",
                0.0,
                0.0,
                if body.is_empty() || body.ends_with('\n') { "" } else { "\n" },
            );
            tokio::fs::write(&pose_file, text).await?;
            ligands.push(LigandDock {
                index: lig.index,
                name: lig.name.clone(),
                result: Ok(DockedLigand {
                    poses: vec![Pose {
                        rank: 1,
                        affinity: score,
                        rmsd_lb: 0.0,
                        rmsd_ub: 0.0,
                    }],
                    best_score: score,
                    pose_file,
                    fields: Default::default(),
                    pose_fields: Vec::new(),
                }),
            });
        }
        // A log like a real engine's, so what reads and guards engine logs (the report, the
        // organisation boundary on artifacts) is exercised without docking.
        let log_file = if ligands.is_empty() {
            None
        } else {
            let path = out_dir.join("engine.log");
            let text: String = ligands
                .iter()
                .map(|l| format!("sleep engine: ligand {} ({}) not docked\n", l.index, l.name))
                .collect();
            tokio::fs::write(&path, text).await?;
            Some(path)
        };
        Ok(EngineOutput {
            ligands,
            log_file,
            cpu_seconds: 0.0,
            wall_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use dockyard_common::molecule::parse_vina_poses;
    use dockyard_common::spec::DockParams;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::engine::LigandFile;

    fn run(dir: &std::path::Path, ligands: Vec<LigandFile>, sleep_ms: u32) -> EngineRun {
        EngineRun {
            task_id: "t-1".into(),
            receptor: None,
            ligands,
            center: [0.0; 3],
            size: [20.0; 3],
            params: DockParams {
                sleep_ms,
                ..DockParams::default()
            },
            gpus: Vec::new(),
            work_dir: dir.to_path_buf(),
            cpu: 1,
            timeout: Duration::from_secs(10),
            cancel: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn sleeps_and_reports_one_result_per_ligand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lig_path = dir.path().join("a.pdbqt");
        std::fs::write(&lig_path, "ROOT\nENDROOT\nTORSDOF 0").expect("write");
        let ligands = vec![
            LigandFile {
                index: 4,
                name: "a".into(),
                path: lig_path,
            },
            LigandFile {
                index: 7,
                name: "missing".into(),
                path: PathBuf::from("/nonexistent.pdbqt"),
            },
        ];
        let engine = SleepEngine::new();
        assert_eq!(engine.descriptor().name(), "sleep");
        assert!(engine.descriptor().test_only());
        assert_eq!(engine.descriptor().version, env!("CARGO_PKG_VERSION"));

        let started = Instant::now();
        let out = engine.run(run(dir.path(), ligands, 200)).await.expect("runs");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(out.ligands.len(), 2);
        assert_eq!(out.ligands.iter().map(|l| l.index).collect::<Vec<_>>(), [4, 7]);
        for l in &out.ligands {
            let docked = l.result.as_ref().expect("ok");
            assert_eq!(docked.best_score, SleepEngine::fake_score(l.index));
            let text = std::fs::read_to_string(&docked.pose_file).expect("pose file");
            let poses = parse_vina_poses(&text).expect("vina layout");
            assert_eq!(poses, docked.poses);
        }
        assert!(out.ligands[0].result.as_ref().map(|d| d.best_score) != out.ligands[1].result.as_ref().map(|d| d.best_score));
    }

    #[tokio::test]
    async fn no_ligands_no_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = SleepEngine::new().run(run(dir.path(), vec![], 0)).await.expect("runs");
        assert!(out.ligands.is_empty());
    }

    #[tokio::test]
    async fn cancellable_and_bounded_by_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path(), vec![], 60_000);
        let cancel = r.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
        });
        let err = SleepEngine::new().run(r).await.expect_err("cancelled");
        assert!(matches!(err, EngineError::Cancelled));

        let mut r = run(dir.path(), vec![], 60_000);
        r.timeout = Duration::from_millis(100);
        let err = SleepEngine::new().run(r).await.expect_err("timeout");
        assert!(matches!(err, EngineError::Timeout(_)));
    }
}
