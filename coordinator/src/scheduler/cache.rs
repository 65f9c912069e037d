//! The result cache: the same docking (engine and version, receptor, box, parameters, seed,
//! ligand — inputs are content-addressed, so keys name content) is not done twice across
//! jobs unless a job asks for fresh runs.
//!
//! Lookups happen at submission with the engine version every connected node agrees on (no
//! agreement, or no node: no lookup), so cached ligands never become tasks and a retry can
//! never count them twice. Entries are written when a result is committed, keyed by the
//! version of the node that produced it. An input converted on the agent (a SMILES, an SDF,
//! a PDB receptor) also keys by the preparation tool, how it was used and its version.

use sha2::{Digest, Sha256};

use dockyard_common::ids::{JobId, NodeId};
use dockyard_common::spec::{prep_steps, EngineKind, InputRef, JobSpec};

use super::core::Core;
use super::txn::Txn;
use crate::model::LigandResultRecord;

/// What a docking's result depends on besides its inputs and parameters: the engine's
/// version and those of the preparation tools (by advertised name) that convert its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Versions {
    pub engine: String,
    pub tools: Vec<(String, String)>,
}

impl Versions {
    fn tool(&self, name: &str) -> Option<&str> {
        self.tools.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The digest of a docking's inputs: the cache entry's name. `None` when a tool that
/// prepares this ligand (or the receptor) has no known version: such a result is neither
/// looked up nor stored, since another version could prepare it differently.
pub(super) fn cache_key(spec: &JobSpec, v: &Versions, ligand: &InputRef) -> Option<[u8; 32]> {
    let steps = prep_steps(spec.engine, spec.preparation, spec.receptor.as_ref(), ligand);
    let mut prepared = Vec::with_capacity(steps.len());
    for s in &steps {
        prepared.push(format!("{} {} {}", s.role, s.tool, v.tool(s.tool)?));
    }
    let mut h = Sha256::new();
    let mut part = |s: &[u8]| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s);
    };
    part(spec.engine.name().as_bytes());
    part(v.engine.as_bytes());
    part(spec.receptor.as_ref().map(|r| &*r.key).unwrap_or("").as_bytes());
    for x in spec.dock_box.center.iter().chain(spec.dock_box.size.iter()) {
        part(&x.to_bits().to_be_bytes());
    }
    let p = &spec.params;
    part(&p.exhaustiveness.to_be_bytes());
    part(&p.num_modes.to_be_bytes());
    part(&p.seed.to_be_bytes());
    part(&p.energy_range.to_bits().to_be_bytes());
    for s in p.extra.names() {
        part(s.as_bytes());
    }
    part(ligand.content_id().as_bytes());
    // Only conversions add parts, so the keys of dockings that convert nothing (PDBQT
    // inputs) stay those written before preparation was part of the key.
    for s in &prepared {
        part(s.as_bytes());
    }
    Some(h.finalize().into())
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

    /// The version of preparation tool `name` that every connected node having it reports.
    fn agreed_tool_version(&self, name: &str) -> Option<String> {
        let mut versions = self.nodes.connected().filter_map(|n| n.tool_version(name));
        let first = versions.next()?;
        versions.all(|v| v == first).then(|| first.to_string())
    }

    /// The versions results committed by `node` for a job with `engine` were made with.
    pub(super) fn node_versions(&self, node: &NodeId, engine: EngineKind) -> Option<Versions> {
        let n = self.nodes.nodes.get(node)?;
        let engine = n.reg.engines.iter().find(|e| e.name == engine.name())?.version.clone();
        let tools = n.reg.tools.iter().map(|t| (t.name.clone(), t.version.clone())).collect();
        Some(Versions { engine, tools })
    }

    /// Moves the ligands already in the cache to the end of `spec.ligands` (setting
    /// `spec.cached`) and writes their results for `job` now. Returns how many were served.
    pub(super) fn serve_from_cache(&mut self, tx: &mut Txn, job: &JobId, spec: &mut JobSpec) -> Vec<LigandResultRecord> {
        if spec.fresh || spec.engine == EngineKind::Sleep || spec.ligands.is_empty() || !self.serves_cache {
            return Vec::new();
        }
        let Some(engine) = self.agreed_version(spec.engine) else {
            return Vec::new();
        };
        let tools = spec
            .prep_tools()
            .names()
            .into_iter()
            .filter_map(|t| Some((t.to_string(), self.agreed_tool_version(t)?)))
            .collect();
        let versions = Versions { engine, tools };
        let mut found: Vec<(usize, LigandResultRecord)> = Vec::new();
        for (i, l) in spec.ligands.iter().enumerate() {
            let Some(key) = cache_key(spec, &versions, l) else { continue };
            if let Ok(Some(rec)) = self.store.cached(&key) {
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
        // A funnel stage's per-ligand lists move with their ligands.
        let (mut carried, mut origin) = match spec.funnel.as_mut() {
            Some(f) => (
                std::mem::take(&mut f.carried).into_iter(),
                std::mem::take(&mut f.origin).into_iter(),
            ),
            None => (Vec::new().into_iter(), Vec::new().into_iter()),
        };
        let mut todo_extra = Vec::new();
        let mut hit_extra = Vec::new();
        for (i, l) in std::mem::take(&mut spec.ligands).into_iter().enumerate() {
            let extra = (carried.next(), origin.next());
            match found.next_if(|(at, _)| *at == i) {
                Some((_, rec)) => {
                    hits.push((l, rec));
                    hit_extra.push(extra);
                }
                None => {
                    todo.push(l);
                    todo_extra.push(extra);
                }
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
            if let Some((Some(c), _)) = hit_extra.get(i) {
                rec.fields.extend(c.iter().map(|(k, v)| (k.clone(), *v)));
            }
            tx.batch.put_result(job, &rec);
            spec.ligands.push(l);
            served.push(rec);
        }
        if let Some(f) = spec.funnel.as_mut() {
            for (c, o) in todo_extra.into_iter().chain(hit_extra) {
                if let (Some(c), Some(o)) = (c, o) {
                    f.carried.push(c);
                    f.origin.push(o);
                }
            }
        }
        served
    }

    /// Remembers a committed result for later jobs.
    pub(super) fn remember(tx: &mut Txn, spec: &JobSpec, versions: &Versions, ligand: &InputRef, rec: &LigandResultRecord) {
        if spec.engine == EngineKind::Sleep {
            return;
        }
        if let Some(key) = cache_key(spec, versions, ligand) {
            if rec.fields.keys().any(|k| k.contains('.')) {
                // What earlier funnel stages carried belongs to this job, not to the docking.
                let mut own = rec.clone();
                own.fields.retain(|k, _| !k.contains('.'));
                tx.batch.put_cached(&key, &own);
            } else {
                tx.batch.put_cached(&key, rec);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dockyard_common::spec::{PrepTool, Preparation};

    use super::super::tests::sleep_job;
    use super::*;

    fn input(key: &str, format: &str) -> InputRef {
        InputRef {
            name: key.into(),
            key: key.into(),
            size: 1,
            format: Arc::from(format),
            offset: None,
            record_sha: None,
        }
    }

    fn versions(tools: &[(&str, &str)]) -> Versions {
        Versions {
            engine: "1.2.3".into(),
            tools: tools.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn prepared_ligands_key_by_tool_and_version_and_pdbqt_ones_do_not() {
        let mut spec = sleep_job("o", 1, 0);
        spec.engine = EngineKind::Vina;
        spec.receptor = Some(input("rec", "pdbqt"));
        let smi = input("lig", "smi");
        let pdbqt = input("lig", "pdbqt");
        let obabel_311 = versions(&[("obabel", "3.1.1"), ("meeko", "0.8.0")]);
        let obabel_320 = versions(&[("obabel", "3.2.0"), ("meeko", "0.8.0")]);
        let a = cache_key(&spec, &obabel_311, &smi).expect("obabel known");
        assert_ne!(Some(a), cache_key(&spec, &obabel_320, &smi), "obabel's version is part of the key");
        assert_eq!(cache_key(&spec, &versions(&[]), &smi), None, "no obabel version: no key");
        // Nothing converts a PDBQT ligand: the tools do not matter.
        assert_eq!(cache_key(&spec, &obabel_311, &pdbqt), cache_key(&spec, &versions(&[]), &pdbqt));

        spec.preparation = Preparation {
            tool: PrepTool::Meeko,
            protonate: false,
        };
        let m = cache_key(&spec, &obabel_311, &smi).expect("meeko known");
        assert_ne!(m, a, "meeko and obabel preparations are different dockings");
        assert_eq!(Some(m), cache_key(&spec, &obabel_320, &smi), "obabel plays no part");
        let meeko_090 = versions(&[("obabel", "3.1.1"), ("meeko", "0.9.0")]);
        assert_ne!(Some(m), cache_key(&spec, &meeko_090, &smi));
        spec.preparation.protonate = true;
        assert_eq!(cache_key(&spec, &obabel_311, &smi), None, "protonating needs molscrub's version");
        let scrub = versions(&[("meeko", "0.8.0"), ("molscrub", "0.3.2")]);
        assert_ne!(cache_key(&spec, &scrub, &smi), Some(m));

        // A PDB receptor goes through obabel whatever prepares the ligands.
        spec.receptor = Some(input("rec", "pdb"));
        assert_eq!(cache_key(&spec, &scrub, &pdbqt), None);
        assert!(cache_key(&spec, &obabel_311, &pdbqt).is_some());
    }
}
