//! `dockyard bench docking`: the cluster against a plain `vina` loop on the same cores.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::commands::submit::SubmitArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct DockingArgs {
    /// Receptor PDBQT.
    #[arg(long)]
    pub receptor: PathBuf,
    /// Folder of ligand PDBQT files.
    #[arg(long)]
    pub ligands: PathBuf,
    /// Box center X,Y,Z.
    #[arg(long, allow_hyphen_values = true)]
    pub center: String,
    /// Box size X,Y,Z.
    #[arg(long)]
    pub size: String,
    #[arg(long, default_value_t = 1)]
    pub exhaustiveness: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// Cores for both sides [default: all].
    #[arg(long)]
    pub cores: Option<u32>,
}

/// The cluster (embedded coordinator + one agent with one slot per core, Vina batches)
/// against a plain sequential `vina` loop using the same cores, same seed and effort.
pub async fn docking(a: &DockingArgs) -> Result<()> {
    let cores = a.cores.unwrap_or_else(dockyard_agent::capacity::cpu_count).max(1);
    let ligands = crate::commands::submit::ligand_files(std::slice::from_ref(&a.ligands))?;
    let n = ligands.len() as u32;
    let center: Vec<&str> = a.center.split(',').collect();
    let size: Vec<&str> = a.size.split(',').collect();
    if center.len() != 3 || size.len() != 3 {
        bail!("--center and --size take X,Y,Z");
    }
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-docking-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    let t0 = Instant::now();
    for (i, l) in ligands.iter().enumerate() {
        let status = Command::new("vina")
            .arg("--receptor")
            .arg(&a.receptor)
            .arg("--ligand")
            .arg(l)
            .args(["--center_x", center[0], "--center_y", center[1], "--center_z", center[2]])
            .args(["--size_x", size[0], "--size_y", size[1], "--size_z", size[2]])
            .args([
                "--exhaustiveness",
                &a.exhaustiveness.to_string(),
                "--seed",
                &a.seed.to_string(),
                "--cpu",
                &cores.to_string(),
            ])
            .arg("--out")
            .arg(tmp.join(format!("loop_{i}.pdbqt")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("cannot run vina")?;
        if !status.success() {
            bail!("vina failed on {}", l.display());
        }
    }
    let loop_s = t0.elapsed().as_secs_f64();
    eprintln!("plain loop: {n} ligands in {loop_s:.1}s (vina --cpu {cores})");

    let sub = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![a.ligands.clone()],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: "vina".into(),
        exhaustiveness: Some(a.exhaustiveness),
        seed: Some(a.seed),
        // One batch per slot: grid maps are computed once per batch and every core is busy.
        batch_size: Some(n.div_ceil(cores)),
        name: Some("bench-docking".into()),
        ..SubmitArgs::default()
    };
    let emb = crate::commands::run::EmbeddedArgs {
        data_dir: tmp.join("cluster"),
        slots: Some(cores),
        top: 0,
        format: crate::output::Format::Csv,
    };
    let t1 = Instant::now();
    let ok = crate::commands::run::run_embedded(&sub, &emb).await?;
    let cluster_s = t1.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);
    if !ok {
        bail!("the cluster job did not succeed");
    }
    println!(
        "ligands={n} exhaustiveness={} cores={cores} cluster_s={cluster_s:.1} loop_s={loop_s:.1} speedup={:.2}",
        a.exhaustiveness,
        loop_s / cluster_s
    );
    Ok(())
}
