//! Streaming a funnel's survivors: when the next stage's rule needs no ranking
//! (`max_score`), each ligand's fate is known from its own result, so the next stage opens
//! as soon as a whole batch of survivors waits and is fed batch by batch while the stage
//! before still runs; it closes, with the last partial batch, once that stage has ended.
//!
//! Only whole batches are appended while a stage is open, so the ligands of a task never
//! change once it exists. Each append rewrites the stage's spec (a new version, replicated
//! under its own artifact key and named by the fenced index entry) and its status in one
//! group commit. What waits is kept in memory and rebuilt at load from the committed results
//! (those that pass, less those the open stage already holds), so a restart feeds each
//! survivor exactly once.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::info;

use dockyard_common::cluster::JobIndexState;
use dockyard_common::error::DockyardError;
use dockyard_common::ids::JobId;
use dockyard_common::spec::{Funnel, Keep, RankKey};

use super::core::Core;
use super::funnel::stage_template;
use super::queue::Entry;
use super::txn::Txn;
use crate::cluster::outcome::JobChange;
use crate::model::LigandResultRecord;

/// Results read per page while rebuilding what waits.
const PAGE: usize = 4096;

impl Core {
    /// If the stage job `job` feeds a streaming stage: its funnel, its 0-based stage and the
    /// score at most which its results go on.
    pub(super) fn feed_rule(&self, job: &JobId) -> Option<(JobId, u32, f64)> {
        let spec = &self.jobs.get(job)?.spec;
        let (root, k) = match spec.funnel_root() {
            Some(r) => (r.clone(), spec.funnel.as_ref().map_or(0, |f| f.stage)),
            None if !spec.plan().is_empty() => (job.clone(), 0),
            None => return None,
        };
        let max = self.stream_max(&root, k)?;
        Some((root, k, max))
    }

    /// The threshold of the streaming stage after stage `k` of funnel `root`, if it streams.
    fn stream_max(&self, root: &JobId, k: u32) -> Option<f64> {
        let plan = self.jobs.get(root)?.spec.plan();
        let (here, next) = (plan.get(k as usize)?, plan.get(k as usize + 1)?);
        match next.keep {
            Some(Keep::MaxScore(m)) if here.rank_key() == RankKey::Score => Some(m),
            _ => None,
        }
    }

    /// Results just committed (or served from the cache) for `job`: those a streaming next
    /// stage keeps wait for it, and the funnel is looked at in the next batch.
    pub(super) fn feed(&mut self, job: &JobId, results: &[LigandResultRecord]) {
        let Some((root, k, max)) = self.feed_rule(job) else { return };
        let passing: Vec<LigandResultRecord> = results.iter().filter(|r| r.score <= max).cloned().collect();
        if !passing.is_empty() {
            self.funnel_feed.entry((root.clone(), k)).or_default().extend(passing);
            self.stage_ended(root);
        }
    }

    /// Stage `k` still runs: opens stage `k + 1` with the whole batches of survivors waiting.
    pub(super) fn open_next_stage(&mut self, tx: &mut Txn, root: &JobId, k: u32) -> Result<(), DockyardError> {
        let Some(job) = self.jobs.get(root) else { return Ok(()) };
        let Some(next) = job.spec.plan().get(k as usize + 1).cloned() else {
            return Ok(());
        };
        let Some(keep) = next.keep.filter(|r| r.streams()) else {
            return Ok(());
        };
        let b = next.batch_size.max(1) as usize;
        let key = (root.clone(), k);
        let waiting = self.funnel_feed.get(&key).map_or(0, Vec::len);
        let n = waiting / b * b;
        if n == 0 {
            return Ok(());
        }
        let entered = match k {
            0 => job.status.ligands_total,
            _ => self.jobs.get(&root.stage(k)).map_or(0, |j| j.status.ligands_total),
        };
        let mut spec = stage_template(&job.spec, &next);
        let recs: Vec<LigandResultRecord> = self.funnel_feed.get_mut(&key).map(|v| v.drain(..n).collect()).unwrap_or_default();
        let e = self.survivor_entries(root, k, &next, &recs)?;
        spec.ligands = e.ligands;
        // Its ligand list grows; the result cache, which moves cached ligands to its end, is
        // not used for it.
        spec.fresh = true;
        spec.funnel = Some(Funnel {
            stage: k + 1,
            root: Some(root.clone()),
            carried: e.carried,
            origin: e.origin,
            open: true,
            reserve: (entered as usize).div_ceil(b) as u32,
            ..Funnel::default()
        });
        self.start_stage(tx, root, k + 1, spec, &keep)
    }

    /// Appends the whole batches waiting to open stage `k`; once the stage before has
    /// ended, everything waiting, and closes it.
    pub(super) fn feed_open_stage(&mut self, tx: &mut Txn, root: &JobId, k: u32) -> Result<(), DockyardError> {
        let Some(root_job) = self.jobs.get(root) else { return Ok(()) };
        let Some(plan) = root_job.spec.plan().get(k as usize).cloned() else {
            return Ok(());
        };
        let before_ended = match k - 1 {
            0 => root_job.status.tasks.finished() == root_job.status.tasks.total,
            b => !self.jobs.contains_key(&root.stage(b)),
        };
        let id = root.stage(k);
        let b = plan.batch_size.max(1) as usize;
        let key = (root.clone(), k - 1);
        let waiting = self.funnel_feed.get(&key).map_or(0, Vec::len);
        let n = if before_ended { waiting } else { waiting / b * b };
        if n == 0 && !before_ended {
            return Ok(());
        }
        let recs: Vec<LigandResultRecord> = self.funnel_feed.get_mut(&key).map(|v| v.drain(..n).collect()).unwrap_or_default();
        let e = self.survivor_entries(root, k - 1, &plan, &recs)?;
        let Some(job) = self.jobs.get_mut(&id) else { return Ok(()) };
        let mut spec = (*job.spec).clone();
        spec.ligands.extend(e.ligands);
        if let Some(f) = spec.funnel.as_mut() {
            f.carried.extend(e.carried);
            f.origin.extend(e.origin);
            f.open = !before_ended;
            f.version += 1;
        }
        let total = spec.task_count();
        let added = total.saturating_sub(job.status.tasks.total);
        let had_fresh = job.has_fresh();
        job.status.tasks.total += added;
        job.status.tasks.queued += added;
        job.status.ligands_total = spec.ligands.len() as u32;
        job.status.open = spec.is_open();
        let spec = Arc::new(spec);
        job.spec = Arc::clone(&spec);
        if !had_fresh && job.has_fresh() {
            self.queue.push(job.class, job.fresh_key(job.status.cursor), Entry::Job(id.clone()));
        }
        tx.batch.put_spec(&id, &spec);
        tx.shared.job(
            &id,
            JobChange {
                org: spec.org.clone(),
                state: JobIndexState::Active,
                reason: String::new(),
                spec: Some(Arc::clone(&spec)),
                skipped: Vec::new(),
                created_at_ms: spec.created_at_ms,
                spec_version: spec.version(),
            },
        );
        tx.dirty_jobs.insert(id.clone());
        tx.dirty_jobs.insert(root.clone());
        info!(job = %root, stage = k + 1, added = n, ligands = spec.ligands.len(), closed = before_ended, "funnel stage fed");
        if before_ended {
            self.funnel_feed.remove(&key);
            // Every task it has may be done already; and what it committed while open may
            // be enough to open the stage after it.
            self.maybe_finish(&id);
            self.stage_ended(root.clone());
        }
        Ok(())
    }

    /// At load: what stage `from` of funnel `root` committed that waits for the streaming
    /// stage after it: its results that pass, less those that stage already holds.
    pub(super) fn rebuild_feed(&mut self, root: &JobId, from: u32) -> Result<(), DockyardError> {
        let from_id = root.stage(from);
        let Some(max) = self.stream_max(root, from) else {
            return Ok(());
        };
        let fed: HashSet<u32> = match self.jobs.get(&root.stage(from + 1)) {
            Some(j) => j
                .spec
                .funnel
                .as_ref()
                .map(|f| f.origin.iter().copied().collect())
                .unwrap_or_default(),
            // Not created, or ended: nothing fed, or nothing more to feed (ended stages
            // were closed, and a closed stage takes no more).
            None if self.store.status(&root.stage(from + 1))?.is_some() => return Ok(()),
            None => HashSet::new(),
        };
        // The feeding stage may have ended (and so not be loaded) before the stage it fed
        // was closed: `origins` reads its spec from the store then.
        let origins = self.origins(root, from)?;
        let mut waiting = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        'pages: loop {
            let (rows, more) = self.store.results(&from_id, after.as_deref(), PAGE)?;
            for r in rows {
                // Results are in score order: past the threshold nothing else passes.
                if r.score > max {
                    break 'pages;
                }
                if !fed.contains(&origins.of(&r)) {
                    waiting.push(r);
                }
            }
            match more {
                Some(m) => after = Some(m),
                None => break,
            }
        }
        if !waiting.is_empty() {
            info!(job = %root, stage = from + 1, waiting = waiting.len(), "survivors waiting for a streaming stage");
            self.funnel_feed.insert((root.clone(), from), waiting);
        }
        Ok(())
    }
}
