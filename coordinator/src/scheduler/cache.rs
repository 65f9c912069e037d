//! The result cache: the same docking (engine and version, receptor, box, parameters, seed,
//! ligand — inputs are content-addressed, so keys name content) is not done twice across
//! jobs unless a job asks for fresh runs.
//!
//! Lookups happen at submission with the engine version every connected node agrees on (no
//! agreement, or no node: no lookup), so cached ligands never become tasks and a retry can
//! never count them twice. Entries are written when a result is committed, keyed by the
//! version of the node that produced it.

use sha2::{Digest, Sha256};

use dockyard_common::ids::{JobId, NodeId};
use dockyard_common::spec::{EngineKind, JobSpec};

use super::core::Core;
use super::txn::Txn;
use crate::model::LigandResultRecord;

/// The digest of a docking's inputs: the cache entry's name.
pub(super) fn cache_key(spec: &JobSpec, version: &str, ligand_key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |s: &[u8]| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s);
    };
    part(spec.engine.name().as_bytes());
    part(version.as_bytes());
    part(spec.receptor.as_ref().map(|r| &*r.key).unwrap_or("").as_bytes());
    for v in spec.dock_box.center.iter().chain(spec.dock_box.size.iter()) {
        part(&v.to_bits().to_be_bytes());
    }
    let p = &spec.params;
    part(&p.exhaustiveness.to_be_bytes());
    part(&p.num_modes.to_be_bytes());
    part(&p.seed.to_be_bytes());
    part(&p.energy_range.to_bits().to_be_bytes());
    for s in p.extra.names() {
        part(s.as_bytes());
    }
    part(ligand_key.as_bytes());
    h.finalize().into()
}

impl Core {
    /// The version of `engine` that every connected node offering it reports.
    fn agreed_version(&self, engine: EngineKind) -> Option<String> {
        let mut versions = self
            .nodes
            .connected()
            .flat_map(|n| n.reg.engines.iter().filter(|e| e.name == engine.name()).map(|e| e.version.clone()));
        let first = versions.next()?;
        versions.all(|v| v == first).then_some(first)
    }

    pub(super) fn node_engine_version(&self, node: &NodeId, engine: EngineKind) -> Option<String> {
        self.nodes
            .nodes
            .get(node)?
            .reg
            .engines
            .iter()
            .find(|e| e.name == engine.name())
            .map(|e| e.version.clone())
    }

    /// Moves the ligands already in the cache to the end of `spec.ligands` (setting
    /// `spec.cached`) and writes their results for `job` now. Returns how many were served.
    pub(super) fn serve_from_cache(&mut self, tx: &mut Txn, job: &JobId, spec: &mut JobSpec) -> Vec<LigandResultRecord> {
        if spec.fresh || spec.engine == EngineKind::Sleep || spec.ligands.is_empty() || !self.serves_cache {
            return Vec::new();
        }
        let Some(version) = self.agreed_version(spec.engine) else {
            return Vec::new();
        };
        let mut found: Vec<(usize, LigandResultRecord)> = Vec::new();
        for (i, l) in spec.ligands.iter().enumerate() {
            if let Ok(Some(rec)) = self.store.cached(&cache_key(spec, &version, &l.content_id())) {
                found.push((i, rec));
            }
        }
        // A new library usually has no hits: its (possibly million-entry) list stays as it is.
        if found.is_empty() {
            return Vec::new();
        }
        let mut todo = Vec::with_capacity(spec.ligands.len() - found.len());
        let mut hits = Vec::with_capacity(found.len());
        let mut found = found.into_iter().peekable();
        for (i, l) in std::mem::take(&mut spec.ligands).into_iter().enumerate() {
            match found.next_if(|(at, _)| *at == i) {
                Some((_, rec)) => hits.push((l, rec)),
                None => todo.push(l),
            }
        }
        let base = todo.len();
        spec.cached = hits.len() as u32;
        spec.ligands = todo;
        let mut served = Vec::with_capacity(hits.len());
        for (i, (l, mut rec)) in hits.into_iter().enumerate() {
            let index = (base + i) as u32;
            rec.ligand = l.name.clone();
            rec.index = index;
            rec.cached = true;
            tx.batch.put_result(job, &rec);
            spec.ligands.push(l);
            served.push(rec);
        }
        served
    }

    /// Remembers a committed result for later jobs.
    pub(super) fn remember(tx: &mut Txn, spec: &JobSpec, version: &str, ligand_key: &str, rec: &LigandResultRecord) {
        if spec.engine == EngineKind::Sleep {
            return;
        }
        tx.batch.put_cached(&cache_key(spec, version, ligand_key), rec);
    }
}
