//! Funnel boundaries: when a stage's last task has committed, its survivors are chosen from
//! its committed results and the next stage's job is created, in one group commit.
//!
//! Exactly once: a boundary is crossed only in a batch after the one that committed the
//! stage's last task (so every result of the stage is on disk to choose from), and the next
//! stage's job id is derived from the funnel's. Its spec (which holds the survivors) and
//! status are the only record of the crossing: written in one sled batch, replicated as one
//! job index entry in the same journal commit. A coordinator killed before that batch is
//! durable crosses the boundary again after its restart (or its successor does); one killed
//! after it finds the stage there and goes on from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{error, info, warn};

use dockyard_common::error::DockyardError;
use dockyard_common::ids::JobId;
use dockyard_common::spec::{carry, Funnel, InputRef, JobSpec, Keep, RankKey, StagePlan};
use dockyard_common::time::now_ms;

use super::core::{class_of, Core};
use super::txn::Txn;
use crate::model::{JobState, JobStatus, LigandResultRecord};

/// Results read per page while choosing survivors.
const PAGE: usize = 4096;

/// The job a later stage runs as, before its ligands are chosen: the funnel's settings with
/// the stage's over them.
pub(super) fn stage_template(root: &JobSpec, plan: &StagePlan) -> JobSpec {
    JobSpec {
        name: if root.name.is_empty() {
            plan.name.clone()
        } else {
            format!("{} / {}", root.name, plan.name)
        },
        org: root.org.clone(),
        engine: plan.engine,
        priority: root.priority,
        batch_size: plan.batch_size,
        max_attempts: root.max_attempts,
        timeout_s: plan.timeout_s,
        gpus_per_task: plan.gpus_per_task,
        cpus_per_task: plan.cpus_per_task,
        dock_box: plan.dock_box.unwrap_or(root.dock_box),
        params: plan.params.clone(),
        preparation: root.preparation,
        receptor: plan.receptor.clone().or_else(|| root.receptor.clone()),
        ligands: Vec::new(),
        sleep_tasks: 0,
        skipped: 0,
        fresh: root.fresh,
        cached: 0,
        labels: root.labels.clone(),
        created_at_ms: now_ms(),
        funnel: None,
    }
}

/// What survivors take into their next stage, one entry per ligand.
#[derive(Default)]
pub(super) struct Entries {
    pub ligands: Vec<InputRef>,
    /// What earlier stages measured (`Funnel::carried`).
    pub carried: Vec<BTreeMap<String, f64>>,
    /// Places in the library (`Funnel::origin`).
    pub origin: Vec<u32>,
}

/// A stage's map from its ligands to the library's (`None`: stage 1, the library itself).
pub(super) struct Origins(Option<Arc<JobSpec>>);

impl Origins {
    /// The library index of the ligand result `r` is for; `u32::MAX` if the stage's spec
    /// does not say.
    pub fn of(&self, r: &LigandResultRecord) -> u32 {
        match &self.0 {
            None => r.index,
            Some(s) => s
                .funnel
                .as_ref()
                .and_then(|f| f.origin.get(r.index as usize).copied())
                .unwrap_or(u32::MAX),
        }
    }
}

/// The input a survivor takes into a rescoring stage: its pose file.
fn pose_input(r: &LigandResultRecord) -> InputRef {
    let (key, format) = if r.sdf_key.is_empty() {
        (r.pose_key.as_str(), "pdbqt")
    } else {
        (r.sdf_key.as_str(), "sdf")
    };
    InputRef {
        name: r.ligand.clone(),
        key: key.into(),
        size: 0,
        format: format.into(),
        offset: None,
        record_sha: None,
    }
}

impl Core {
    /// Refuses a funnel that cannot run: a stage whose tasks no connected node could take.
    pub(super) fn check_plan(&self, spec: &JobSpec) -> Result<(), DockyardError> {
        for (i, p) in spec.plan().iter().enumerate() {
            let mut t = stage_template(spec, p);
            if !p.rescores() {
                // The preparation tools a stage needs depend on its inputs' formats.
                t.ligands = spec
                    .ligands
                    .iter()
                    .find(|l| !l.is_pdbqt())
                    .or(spec.ligands.first())
                    .cloned()
                    .into_iter()
                    .collect();
            }
            if let Some(why) = self.nodes.unschedulable_reason(&class_of(&t)) {
                return Err(DockyardError::invalid(
                    format!("stages[{i}].engine"),
                    format!("stage '{}' could not run: {why}", p.name),
                ));
            }
        }
        Ok(())
    }

    /// Stage `root.stage(k)` of a funnel ended (or may have): the boundary is looked at in
    /// the next batch, once this one is durable.
    pub(super) fn stage_ended(&mut self, root: JobId) {
        self.funnels_due.insert(root);
    }

    /// Crosses the boundaries of every funnel whose current stage ended in an earlier batch.
    pub fn advance_funnels(&mut self, tx: &mut Txn) {
        for root in std::mem::take(&mut self.funnels_due) {
            if let Err(e) = self.advance(tx, &root) {
                // Left for the next batch: a read that failed now may not fail then.
                error!(job = %root, error = %e, "cannot cross a funnel stage boundary; retrying");
                self.funnels_retry.insert(root);
            }
        }
    }

    /// Funnels whose boundary failed wait a tick before they are tried again.
    pub(super) fn retry_funnels(&mut self) {
        let again = std::mem::take(&mut self.funnels_retry);
        self.funnels_due.extend(again);
    }

    fn advance(&mut self, tx: &mut Txn, root: &JobId) -> Result<(), DockyardError> {
        let Some(job) = self.jobs.get(root) else { return Ok(()) };
        if job.status.state.is_final() || job.spec.plan().is_empty() {
            return Ok(());
        }
        let k = job.stage;
        // A stage fed while the one before runs takes what waits for it first.
        if k > 0 && self.jobs.get(&root.stage(k)).is_some_and(|j| j.status.open) {
            return self.feed_open_stage(tx, root, k);
        }
        let stage_id = root.stage(k);
        let ended = if k == 0 {
            let c = &job.status.tasks;
            (c.finished() == c.total).then(|| job.status.clone())
        } else if self.jobs.contains_key(&stage_id) {
            None
        } else {
            self.store.status(&stage_id)?.filter(|s| s.state.is_final())
        };
        let Some(ended) = ended else {
            // Still running: a stage whose rule needs no ranking opens once a batch waits.
            return self.open_next_stage(tx, root, k);
        };
        // The boundary reads every survivor from the store; what waited in memory is in it.
        self.funnel_feed.remove(&(root.clone(), k));
        let plan = job.spec.plan().to_vec();
        let p = &plan[k as usize];
        if ended.state == JobState::Cancelled {
            let why = ended.error.clone().unwrap_or_else(|| "cancelled".into());
            return self.finish_funnel(tx, root, Some(format!("stage '{}' was cancelled: {why}", p.name)));
        }
        let Some(next) = plan.get(k as usize + 1) else {
            return self.finish_funnel(tx, root, None);
        };
        let keep = next.keep.unwrap_or(Keep::Percent(100.0));
        let chosen = self.survivors(&stage_id, p.rank_key(), keep, ended.ligands_total as usize)?;
        if chosen.is_empty() {
            let note = format!(
                "stage '{}' ({}) kept none of the {} ligands stage '{}' docked; the funnel ends there",
                next.name,
                keep.label(),
                ended.ligands_docked,
                p.name
            );
            info!(job = %root, "{note}");
            return self.finish_funnel(tx, root, Some(note));
        }
        let Some(job) = self.jobs.get(root) else { return Ok(()) };
        let mut spec = stage_template(&job.spec, next);
        let e = self.survivor_entries(root, k, next, &chosen)?;
        spec.ligands = e.ligands;
        spec.funnel = Some(Funnel {
            stage: k + 1,
            plan: Vec::new(),
            root: Some(root.clone()),
            carried: e.carried,
            origin: e.origin,
            ..Funnel::default()
        });
        self.start_stage(tx, root, k + 1, spec, &keep)
    }

    /// Queues stage `k`'s job (unless a crossing before this leader's rebuild made it) and
    /// moves the funnel on to it.
    pub(super) fn start_stage(&mut self, tx: &mut Txn, root: &JobId, k: u32, spec: JobSpec, keep: &Keep) -> Result<(), DockyardError> {
        let id = root.stage(k);
        if self.store.spec(&id)?.is_some() || self.jobs.contains_key(&id) {
            warn!(job = %root, stage = k + 1, "next stage already exists; not created again");
        } else {
            let (n, open) = (spec.ligands.len(), spec.is_open());
            self.accept(tx, id.clone(), spec, Vec::new());
            info!(job = %root, stage = k + 1, stage_job = %id, survivors = n, open, rule = %keep.label(), "funnel stage started");
        }
        if let Some(job) = self.jobs.get_mut(root) {
            job.stage = k;
        }
        tx.dirty_jobs.insert(root.clone());
        Ok(())
    }

    /// What the survivors `recs` of stage `k` take into stage `next`: their inputs (the
    /// library's molecules, or their poses for a rescoring stage), what they carry, and
    /// their places in the library.
    pub(super) fn survivor_entries(
        &self,
        root: &JobId,
        k: u32,
        next: &StagePlan,
        recs: &[LigandResultRecord],
    ) -> Result<Entries, DockyardError> {
        let Some(job) = self.jobs.get(root) else {
            return Ok(Entries::default());
        };
        let name = job.spec.plan().get(k as usize).map_or("", |p| p.name.as_str());
        let origins = self.origins(root, k)?;
        let mut out = Entries::default();
        for r in recs {
            let from = origins.of(r);
            let input = if next.rescores() {
                Some(pose_input(r))
            } else {
                job.spec.ligands.get(from as usize).cloned()
            };
            let Some(input) = input else {
                warn!(job = %root, ligand = %r.ligand, index = r.index, "survivor with no library entry; left out");
                continue;
            };
            out.ligands.push(input);
            out.carried.push(carry(name, r.score, &r.fields));
            out.origin.push(from);
        }
        Ok(out)
    }

    /// How stage `k`'s results map to the library: a later stage's spec says where each of
    /// its ligands came from; the spec is read from the store once that stage has ended.
    pub(super) fn origins(&self, root: &JobId, k: u32) -> Result<Origins, DockyardError> {
        let id = root.stage(k);
        Ok(Origins(match (k, self.jobs.get(&id)) {
            (0, _) => None,
            (_, Some(j)) => Some(Arc::clone(&j.spec)),
            (_, None) => self.store.spec(&id)?.map(Arc::new),
        }))
    }

    /// The results of `stage` that go on, best first, read from what is committed.
    fn survivors(&self, stage: &JobId, key: RankKey, keep: Keep, entered: usize) -> Result<Vec<LigandResultRecord>, DockyardError> {
        // Results are stored in score order: a score-ranked stage needs only its head.
        let want = match (key, keep) {
            (RankKey::Score, Keep::Top(n)) => Some(n as usize),
            (RankKey::Score, Keep::Percent(p)) => Some((((entered as f64) * p / 100.0).ceil() as usize).max(1)),
            _ => None,
        };
        let mut ranked = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (rows, more) = self.store.results(stage, after.as_deref(), PAGE)?;
            let done = rows
                .last()
                .is_some_and(|r| matches!(keep, Keep::MaxScore(m) if key == RankKey::Score && r.score > m));
            ranked.extend(rows);
            if want.is_some_and(|n| ranked.len() >= n) || done {
                break;
            }
            match more {
                Some(m) => after = Some(m),
                None => break,
            }
        }
        if key != RankKey::Score {
            ranked.sort_by(|a, b| key.compare((a.score, &a.fields), (b.score, &b.fields)).then(a.index.cmp(&b.index)));
        }
        let n = keep.survivors(&ranked, entered, key, |r| key.value(r.score, &r.fields));
        ranked.truncate(n);
        Ok(ranked)
    }

    /// Ends the funnel: its state from its stages' (a cancelled stage cancels it, a last stage
    /// whose every task failed fails it, any failure on the way makes it partial).
    fn finish_funnel(&mut self, tx: &mut Txn, root: &JobId, note: Option<String>) -> Result<(), DockyardError> {
        let Some(job) = self.jobs.get(root) else { return Ok(()) };
        let mut stages: Vec<JobStatus> = vec![job.status.clone()];
        for k in 1..=job.stage {
            if let Some(s) = self.store.status(&root.stage(k))? {
                stages.push(s);
            }
        }
        let last = stages.last().map(|s| s.tasks.final_state(s.ligands_failed));
        let state = if stages.iter().any(|s| s.state == JobState::Cancelled || s.tasks.cancelled > 0) {
            JobState::Cancelled
        } else if last == Some(JobState::Failed) {
            JobState::Failed
        } else if stages.iter().any(|s| s.tasks.failed > 0 || s.ligands_failed > 0) {
            JobState::Partial
        } else {
            JobState::Succeeded
        };
        let Some(job) = self.jobs.get_mut(root) else { return Ok(()) };
        job.status.state = state;
        job.status.finished_at_ms = now_ms();
        job.status.unschedulable_reason = None;
        if let Some(n) = note {
            job.status.error.get_or_insert(n);
        }
        info!(job = %root, state = ?state, stages = job.stage + 1, "funnel finished");
        self.finished_jobs.push(root.clone());
        tx.dirty_jobs.insert(root.clone());
        Ok(())
    }

    /// Cancels the stages a funnel runs (the one it is on, and the one feeding it) with it.
    pub(super) fn cancel_stage(&mut self, tx: &mut Txn, root: &JobId, reason: &str) {
        let Some(job) = self.jobs.get(root) else { return };
        if job.spec.plan().is_empty() {
            return;
        }
        for k in 1..=job.stage {
            let id = root.stage(k);
            if self.jobs.contains_key(&id) {
                self.cancel(tx, &id, reason);
            }
        }
        self.funnel_feed.retain(|(r, _), _| r != root);
        if let Some(job) = self.jobs.get_mut(root) {
            if !job.status.state.is_final() {
                job.status.state = JobState::Cancelled;
                job.status.finished_at_ms = now_ms();
                job.status.error.get_or_insert_with(|| reason.to_string());
                self.finished_jobs.push(root.clone());
                tx.dirty_jobs.insert(root.clone());
            }
        }
    }

    /// At load: which stage each active funnel is on (the last one created), and a look at
    /// its boundary in the first batch.
    pub(super) fn resume_funnels(&mut self) -> Result<(), DockyardError> {
        let roots: Vec<(JobId, usize)> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.spec.plan().is_empty())
            .map(|(id, j)| (id.clone(), j.spec.plan().len()))
            .collect();
        let mut stages: BTreeMap<JobId, u32> = BTreeMap::new();
        for (root, n) in roots {
            let mut k = 0;
            while (k + 1) < n as u32 && self.store.spec(&root.stage(k + 1))?.is_some() {
                k += 1;
            }
            stages.insert(root.clone(), k);
            self.funnels_due.insert(root);
        }
        for (root, k) in stages {
            if let Some(j) = self.jobs.get_mut(&root) {
                j.stage = k;
            }
            // The stage being fed (if open), and the stage it feeds in turn.
            if k > 0 {
                self.rebuild_feed(&root, k - 1)?;
            }
            self.rebuild_feed(&root, k)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio_util::sync::CancellationToken;

    use dockyard_common::spec::{DockParams, EngineKind};

    use super::super::tests::sleep_job;
    use super::super::{spawn, SchedulerConfig};
    use super::*;
    use crate::model::{JobState, TaskCounts};
    use crate::store::{Store, StoreBatch};

    fn plan(name: &str, keep: Option<Keep>) -> StagePlan {
        StagePlan {
            name: name.into(),
            engine: EngineKind::Sleep,
            params: DockParams::default(),
            gpus_per_task: 0,
            cpus_per_task: 1,
            batch_size: 2,
            timeout_s: 60,
            rank_by: "score".into(),
            receptor: None,
            dock_box: None,
            keep,
        }
    }

    /// A funnel whose first stage has committed every task (4 ligands, scores -5 .. -8) and
    /// whose coordinator stopped before it crossed the boundary.
    fn stopped_at_the_boundary(store: &Store, root: &JobId) {
        let mut spec = sleep_job("o", 0, 0);
        spec.batch_size = 2;
        spec.ligands = (0..4)
            .map(|i| InputRef {
                name: format!("L{i}"),
                key: format!("orgs/o/inputs/{i}").into(),
                size: 1,
                format: "smi".into(),
                offset: None,
                record_sha: None,
            })
            .collect();
        spec.funnel = Some(Funnel {
            stage: 0,
            plan: vec![plan("pre", None), plan("redock", Some(Keep::Top(2)))],
            ..Funnel::default()
        });
        let status = JobStatus {
            state: JobState::Running,
            tasks: TaskCounts {
                total: 2,
                succeeded: 2,
                ..TaskCounts::default()
            },
            ligands_total: 4,
            ligands_docked: 4,
            ligands_failed: 0,
            best_score: Some(-8.0),
            error: None,
            finished_at_ms: 0,
            unschedulable_reason: None,
            cpu_seconds: 4.0,
            cursor: 2,
            vtime0: 0,
            seq0: 1,
            flight: Default::default(),
            open: spec.is_open(),
        };
        let mut b = StoreBatch::default();
        b.put_spec(root, &spec);
        b.put_status(root, &status);
        for i in 0..4u32 {
            b.put_result(
                root,
                &LigandResultRecord {
                    ligand: format!("L{i}"),
                    index: i,
                    task: format!("{root}.{}", i / 2),
                    score: -5.0 - f64::from(i),
                    ..Default::default()
                },
            );
        }
        store.apply(b).expect("write");
    }

    async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_restart_at_a_stage_boundary_creates_the_next_stage_once_from_committed_results() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let root = JobId::parse("0123456789ab00000001").expect("id");
        stopped_at_the_boundary(&store, &root);
        let next = root.stage(1);
        assert!(store.spec(&next).expect("read").is_none());

        let stop = CancellationToken::new();
        let (_h, join) = spawn(store.clone(), SchedulerConfig::default(), stop.clone()).await.expect("spawn");
        let spec = until("stage 2", || store.spec(&next).ok().flatten()).await;
        let names: Vec<&str> = spec.ligands.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["L3", "L2"], "the best two of stage 1, best first");
        let f = spec.funnel.clone().expect("a funnel stage");
        assert_eq!((f.stage, f.root.as_ref(), f.origin.as_slice()), (1, Some(&root), &[3, 2][..]));
        assert_eq!(f.carried[0].get("pre.score"), Some(&-8.0));
        let status = store.status(&next).expect("read").expect("status");
        assert_eq!((status.tasks.total, status.ligands_total), (1, 2));
        stop.cancel();
        join.await.expect("joined").expect("clean stop");

        // Again: the stage is there, so nothing is created or rewritten.
        let stop = CancellationToken::new();
        let (_h, join) = spawn(store.clone(), SchedulerConfig::default(), stop.clone())
            .await
            .expect("respawn");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.spec(&next).expect("read").map(|s| s.created_at_ms), Some(spec.created_at_ms));
        assert!(store.spec(&root.stage(2)).expect("read").is_none());
        let root_status = store.status(&root).expect("read").expect("status");
        assert_eq!(root_status.state, JobState::Running, "the funnel goes on with stage 2");
        stop.cancel();
        join.await.expect("joined").expect("clean stop");
    }
}
