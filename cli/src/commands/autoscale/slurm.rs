//! Slurm adapter of [`Provisioner`]: agents are batch jobs named
//! `dockyard-<cluster>-<pool>`, submitted with `sbatch`, listed with `squeue` and stopped
//! with `scancel`. The job name is the whole record of what was asked for, so Slurm itself
//! is the autoscaler's memory.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use super::config::Pool;
use super::plan::JobPhase;
use super::provisioner::{ProvisionedJob, Provisioner};

/// A Slurm command that takes longer than this is treated as failed; the next tick retries.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Slurm {
    pub cluster: String,
    /// What agents dial, handed to the batch script as DOCKYARD_COORDINATOR.
    pub agent_coordinator: String,
}

impl Slurm {
    pub fn job_name(&self, pool: &Pool) -> String {
        format!("dockyard-{}-{}", self.cluster, pool.name)
    }
}

async fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.kill_on_drop(true).output())
        .await
        .with_context(|| format!("{what} did not answer within {} s", COMMAND_TIMEOUT.as_secs()))?
        .with_context(|| format!("cannot run {what} (is Slurm installed and on PATH?)"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `squeue --format=%i|%T` lines; finished states (which squeue lists for a while) are left out.
pub fn parse_squeue(text: &str) -> Vec<ProvisionedJob> {
    text.lines()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once('|')?;
            let phase = match state.trim() {
                "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "RESIZING" => JobPhase::Pending,
                "RUNNING" | "SUSPENDED" | "STOPPED" => JobPhase::Running,
                "COMPLETING" | "SIGNALING" | "STAGE_OUT" => JobPhase::Ending,
                _ => return None,
            };
            Some(ProvisionedJob {
                id: id.trim().to_string(),
                phase,
            })
        })
        .collect()
}

impl Provisioner for Slurm {
    async fn list(&self, pool: &Pool) -> Result<Vec<ProvisionedJob>> {
        let text = output(
            Command::new("squeue")
                .arg("--noheader")
                .arg(format!("--name={}", self.job_name(pool)))
                .arg("--format=%i|%T"),
            "squeue",
        )
        .await?;
        Ok(parse_squeue(&text))
    }

    async fn submit(&self, pool: &Pool) -> Result<String> {
        // Through the environment (sbatch exports it), not --export=: a list of
        // coordinators has commas, which --export would split.
        let text = output(
            Command::new("sbatch")
                .arg("--parsable")
                .arg(format!("--job-name={}", self.job_name(pool)))
                .args(&pool.sbatch_args)
                .arg(&pool.script)
                .env("DOCKYARD_COORDINATOR", &self.agent_coordinator)
                .env("DOCKYARD_POOL", &pool.name),
            "sbatch",
        )
        .await?;
        let id = text.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            bail!("sbatch answered '{}', not a job id", text.trim());
        }
        Ok(id)
    }

    async fn cancel(&self, job: &str) -> Result<()> {
        output(Command::new("scancel").arg(job), "scancel").await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_states_map_to_phases_and_finished_jobs_are_dropped() {
        let jobs = parse_squeue("12|PENDING\n13|RUNNING\n14|COMPLETING\n15|CONFIGURING\n16|CANCELLED\n\ngarbage\n");
        let got: Vec<(&str, JobPhase)> = jobs.iter().map(|j| (j.id.as_str(), j.phase)).collect();
        assert_eq!(
            got,
            vec![
                ("12", JobPhase::Pending),
                ("13", JobPhase::Running),
                ("14", JobPhase::Ending),
                ("15", JobPhase::Pending)
            ]
        );
    }
}
