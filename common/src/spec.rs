//! Job specifications: validated domain types built from client requests.

mod engine;
mod funnel;
mod ligand_table;
mod params;
mod prepare;
mod rank;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::error::DockyardError;
use crate::ids::OrgId;
use crate::queue_key::{MAX_PRIORITY, MIN_PRIORITY};

pub use engine::{EngineKind, EngineTraits};
pub use funnel::{carry, validate_stage_name, Funnel, Keep, StagePlan};
pub use params::{CnnModel, CnnScoring, DockMode, DockParams, EngineOptions, OptionName, Scoring, SearchMode, DEFAULT_SEED};
pub use prepare::{prep_steps, PrepStep, PrepTool, PrepTools, Preparation, MEEKO, MOLSCRUB, OBABEL, PROTONATION_PH};
pub use rank::{RankKey, ResultFields};

/// Search box in Angstrom.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DockBox {
    pub center: [f64; 3],
    pub size: [f64; 3],
}

/// Vina refuses boxes over ~27,000 Å^3 with a warning and they cost gigabytes of grid maps;
/// 126 Å per side is the edge at which maps no longer fit a typical node.
pub const MAX_BOX_EDGE: f64 = 126.0;

impl DockBox {
    pub fn validate(&self) -> Result<(), DockyardError> {
        for (i, axis) in ["x", "y", "z"].iter().enumerate() {
            let c = self.center[i];
            if !c.is_finite() || c.abs() > 10_000.0 {
                return Err(DockyardError::invalid(
                    format!("box.center.{axis}"),
                    format!("{c} is not a usable coordinate"),
                ));
            }
            let s = self.size[i];
            if !s.is_finite() || s <= 0.0 {
                return Err(DockyardError::invalid(
                    format!("box.size.{axis}"),
                    format!("{s} must be greater than 0 Å"),
                ));
            }
            if s > MAX_BOX_EDGE {
                return Err(DockyardError::invalid(
                    format!("box.size.{axis}"),
                    format!("{s} Å is larger than the {MAX_BOX_EDGE} Å limit"),
                ));
            }
        }
        Ok(())
    }

    pub fn to_proto(&self) -> dockyard_proto::v1::DockingBox {
        let v = |a: [f64; 3]| dockyard_proto::v1::Vec3 { x: a[0], y: a[1], z: a[2] };
        dockyard_proto::v1::DockingBox {
            center: Some(v(self.center)),
            size: Some(v(self.size)),
        }
    }

    pub fn volume(&self) -> f64 {
        self.size.iter().product()
    }
}

/// A stored input file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub name: String,
    /// Shared (not copied) by the records of one pack: a million-ligand spec holds a few
    /// hundred keys, not a million.
    pub key: Arc<str>,
    pub size: u64,
    /// pdbqt, sdf, mol2, smi or pdb; empty (records from before formats) means pdbqt.
    #[serde(default)]
    pub format: Arc<str>,
    /// Set for a ligand stored in a pack (one object holding thousands of records): the
    /// record is the `size` bytes from here. A million one-record objects cost a million
    /// store writes at submission; packs cost a few hundred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// SHA-256 of a packed record's own bytes: the same ligand in another library lands in
    /// another pack, and the result cache must still recognise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_sha: Option<Sha256>,
}

impl InputRef {
    pub fn is_pdbqt(&self) -> bool {
        self.format.is_empty() || &*self.format == "pdbqt"
    }

    /// What identifies this input's bytes (the result cache's key). For a packed record it
    /// is the key the record would have on its own (`orgs/<org>/inputs/<sha>`, the pack's
    /// folder), so the cache recognises a ligand whatever library brought it, and results
    /// cached before packs existed still count.
    pub fn content_id(&self) -> String {
        match (self.offset, self.key.rsplit_once('/'), self.record_sha) {
            (Some(_), Some((folder, _)), Some(sha)) => format!("{folder}/{sha}"),
            (Some(o), _, _) => format!("{}@{o}+{}", self.key, self.size),
            (None, _, _) => self.key.to_string(),
        }
    }
}

pub const DEFAULT_BATCH_SIZE: u32 = 8;
pub const MAX_BATCH_SIZE: u32 = 10_000;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_TIMEOUT_S: u32 = 3600;
pub const MAX_SLEEP_TASKS: u32 = 10_000_000;
/// More cores than any one machine a task could run on has.
pub const MAX_CPUS_PER_TASK: u32 = 1024;

/// Everything needed to run a job; persisted with the job and shipped (per task) to agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub org: OrgId,
    pub engine: EngineKind,
    pub priority: i32,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub timeout_s: u32,
    pub gpus_per_task: u32,
    /// Cores (agent slots) each task holds; its engine gets as many threads.
    #[serde(default = "one_cpu", skip_serializing_if = "is_one_cpu")]
    pub cpus_per_task: u32,
    pub dock_box: DockBox,
    pub params: DockParams,
    /// How non-PDBQT ligands are prepared; specs stored before it used obabel.
    #[serde(default, skip_serializing_if = "Preparation::is_default")]
    pub preparation: Preparation,
    pub receptor: Option<InputRef>,
    /// Written as a pack table plus one short row per ligand (see `ligand_table`).
    #[serde(with = "ligand_table")]
    pub ligands: Vec<InputRef>,
    /// Sleep engine: tasks to create.
    pub sleep_tasks: u32,
    /// Invalid library records skipped at submission (`skip_invalid`).
    #[serde(default)]
    pub skipped: u32,
    /// Bypass the result cache.
    #[serde(default)]
    pub fresh: bool,
    /// Trailing ligands served from the result cache (not part of any task).
    #[serde(default)]
    pub cached: u32,
    pub labels: BTreeMap<String, String>,
    pub created_at_ms: i64,
    /// Set when the job is a funnel (its first stage, holding the plan) or one of a
    /// funnel's later stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funnel: Option<Funnel>,
}

/// Jobs stored before `cpus_per_task` ran each task on one core.
fn one_cpu() -> u32 {
    1
}

fn is_one_cpu(n: &u32) -> bool {
    *n == 1
}

impl JobSpec {
    /// The stages of the funnel this job is the first stage of (empty for any other job).
    pub fn plan(&self) -> &[StagePlan] {
        self.funnel.as_ref().map_or(&[], |f| f.plan.as_slice())
    }

    /// The funnel a later stage's job belongs to.
    pub fn funnel_root(&self) -> Option<&crate::ids::JobId> {
        self.funnel.as_ref().and_then(|f| f.root.as_ref())
    }

    /// Whether more ligands may still be appended (a funnel stage fed while the one before runs).
    pub fn is_open(&self) -> bool {
        self.funnel.as_ref().is_some_and(|f| f.open)
    }

    /// How many times the spec was rewritten since the job was created.
    pub fn version(&self) -> u32 {
        self.funnel.as_ref().map_or(0, |f| f.version)
    }

    /// Task positions to set aside in the queue: more than `task_count` for an open stage.
    pub fn reserved_tasks(&self) -> u32 {
        self.task_count().max(self.funnel.as_ref().map_or(0, |f| f.reserve))
    }

    /// What earlier stages of a funnel measured for ligand `index` (empty outside funnels).
    pub fn carried(&self, index: usize) -> Option<&BTreeMap<String, f64>> {
        self.funnel.as_ref().and_then(|f| f.carried.get(index))
    }

    /// Number of tasks this job splits into.
    pub fn task_count(&self) -> u32 {
        if self.engine == EngineKind::Sleep && self.ligands.is_empty() {
            return self.sleep_tasks;
        }
        let n = self.docked_ligands() as u32;
        n.div_ceil(self.batch_size.max(1))
    }

    /// Ligands that need docking: the first `ligands.len() - cached`; the rest were served
    /// from the result cache at submission.
    pub fn docked_ligands(&self) -> usize {
        self.ligands.len().saturating_sub(self.cached as usize)
    }

    /// Ligand index range `[start, end)` of task `index`.
    pub fn task_ligands(&self, index: u32) -> std::ops::Range<usize> {
        let n = self.docked_ligands();
        let b = self.batch_size.max(1) as usize;
        let start = (index as usize).saturating_mul(b).min(n);
        let end = start.saturating_add(b).min(n);
        start..end
    }

    /// Whether some input must be converted (to PDBQT) on the agent before the engine can read it.
    pub fn needs_preparation(&self) -> bool {
        self.prep_tools().any()
    }

    /// The preparation tools an agent needs for this job's tasks: obabel for a non-PDBQT
    /// receptor, the job's ligand tool(s) for non-PDBQT ligands, none for engines that read
    /// the files themselves.
    pub fn prep_tools(&self) -> PrepTools {
        if !self.engine.traits().needs_pdbqt {
            return PrepTools::NONE;
        }
        let mut tools = PrepTools::NONE;
        if self.receptor.as_ref().is_some_and(|r| !r.is_pdbqt()) {
            tools.obabel = true;
        }
        if self.ligands.iter().any(|l| !l.is_pdbqt()) {
            tools = tools.union(self.preparation.ligand_tools());
        }
        tools
    }

    /// Memory a task is expected to hold. Vina keeps one grid map per atom type at 0.375 Å
    /// spacing: measured ~570 MB for a 20 Å cube (engine-facts.md), so scale with volume.
    pub fn task_memory_bytes(&self) -> u64 {
        if !self.engine.traits().grid_memory {
            return 0;
        }
        let per_a3 = 470.0e6 / 8000.0;
        (100.0e6 + per_a3 * self.dock_box.volume()) as u64
    }

    /// Cores per task from the request: unset is one, 0 and more than
    /// [`MAX_CPUS_PER_TASK`] are refused.
    pub fn validate_cpus(cpus_per_task: Option<u32>) -> Result<u32, DockyardError> {
        match cpus_per_task {
            None => Ok(1),
            Some(n @ 1..=MAX_CPUS_PER_TASK) => Ok(n),
            Some(n) => Err(DockyardError::invalid(
                "cpus_per_task",
                format!("{n} must be 1-{MAX_CPUS_PER_TASK} (cores each task takes on an agent)"),
            )),
        }
    }

    pub fn validate_scalars(priority: i32, batch_size: u32, max_attempts: u32, timeout_s: u32) -> Result<(), DockyardError> {
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
            return Err(DockyardError::invalid(
                "priority",
                format!("{priority} must be {MIN_PRIORITY}-{MAX_PRIORITY}"),
            ));
        }
        if batch_size > MAX_BATCH_SIZE {
            return Err(DockyardError::invalid(
                "batch_size",
                format!("{batch_size} must be 1-{MAX_BATCH_SIZE}"),
            ));
        }
        if max_attempts > 20 {
            return Err(DockyardError::invalid("max_attempts", format!("{max_attempts} must be 1-20")));
        }
        if timeout_s > 7 * 24 * 3600 {
            return Err(DockyardError::invalid("timeout_s", "must be at most 7 days"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_record_is_known_by_the_key_it_would_have_alone() {
        let org = OrgId::default_org();
        let sha = Sha256::of(b"CCO ethanol");
        let pack = crate::artifact::ArtifactKey::input(&org, &crate::artifact::sha256_hex(b"CCO ethanol\nCCN x")).expect("key");
        let mut l = InputRef {
            name: "ethanol".into(),
            key: pack.to_string().into(),
            size: 11,
            format: "smi".into(),
            offset: Some(0),
            record_sha: Some(sha),
        };
        assert_eq!(
            l.content_id(),
            crate::artifact::ArtifactKey::input(&org, &sha.to_hex()).expect("key").to_string()
        );
        l.record_sha = None;
        assert_eq!(l.content_id(), format!("{pack}@0+11"));
        l.offset = None;
        assert_eq!(l.content_id(), pack.to_string());
    }

    fn spec(ligands: usize, batch: u32) -> JobSpec {
        JobSpec {
            name: "t".into(),
            org: OrgId::default_org(),
            engine: EngineKind::Vina,
            priority: 0,
            batch_size: batch,
            max_attempts: 3,
            timeout_s: 10,
            gpus_per_task: 0,
            cpus_per_task: 1,
            dock_box: DockBox {
                center: [0.0; 3],
                size: [20.0; 3],
            },
            params: DockParams::from_request(0, 0, 0, 0.0, 0).expect("defaults"),
            preparation: Preparation::default(),
            receptor: None,
            ligands: (0..ligands)
                .map(|i| InputRef {
                    name: format!("l{i}"),
                    key: format!("k{i}").into(),
                    size: 1,
                    format: "".into(),
                    offset: None,
                    record_sha: None,
                })
                .collect(),
            sleep_tasks: 0,
            skipped: 0,
            fresh: false,
            cached: 0,
            labels: BTreeMap::new(),
            created_at_ms: 0,
            funnel: None,
        }
    }

    #[test]
    fn ligands_split_into_batches() {
        let s = spec(10, 4);
        assert_eq!(s.task_count(), 3);
        assert_eq!(s.task_ligands(0), 0..4);
        assert_eq!(s.task_ligands(2), 8..10);
    }

    #[test]
    fn box_of_size_zero_is_rejected_naming_the_axis() {
        let b = DockBox {
            center: [0.0; 3],
            size: [20.0, 0.0, 20.0],
        };
        let e = b.validate().expect_err("size 0");
        assert!(e.to_string().contains("box.size.y"), "{e}");
    }

    #[test]
    fn cpus_per_task_defaults_to_one_and_refuses_zero_and_absurd_counts() {
        assert_eq!(JobSpec::validate_cpus(None).expect("unset"), 1);
        assert_eq!(JobSpec::validate_cpus(Some(4)).expect("four"), 4);
        for bad in [0, MAX_CPUS_PER_TASK + 1] {
            let e = JobSpec::validate_cpus(Some(bad)).expect_err("refused");
            assert!(
                e.to_string().contains("cpus_per_task") && e.to_string().contains(&bad.to_string()),
                "{e}"
            );
        }
        // Specs stored before the field existed read back as one core each; one core is
        // not written, so such specs keep their bytes.
        let mut json = serde_json::to_value(spec(1, 1)).expect("json");
        assert!(json.get("cpus_per_task").is_none(), "{json}");
        json["cpus_per_task"] = 3.into();
        let s: JobSpec = serde_json::from_value(json).expect("read");
        assert_eq!(s.cpus_per_task, 3);
        let mut json = serde_json::to_value(spec(1, 1)).expect("json");
        json.as_object_mut().expect("object").remove("cpus_per_task");
        assert_eq!(serde_json::from_value::<JobSpec>(json).expect("read").cpus_per_task, 1);
    }

    #[test]
    fn preparation_tools_follow_the_inputs_and_old_specs_read_as_obabel() {
        let mut s = spec(2, 1);
        assert!(!s.needs_preparation(), "all PDBQT");
        s.ligands[1].format = "smi".into();
        assert_eq!(s.prep_tools().names(), ["obabel"]);
        s.preparation = Preparation {
            tool: PrepTool::Meeko,
            protonate: true,
        };
        assert_eq!(s.prep_tools().names(), ["meeko", "molscrub"]);
        s.receptor = Some(InputRef {
            format: "pdb".into(),
            ..s.ligands[0].clone()
        });
        assert_eq!(s.prep_tools().names(), ["obabel", "meeko", "molscrub"]);
        s.engine = EngineKind::Smina;
        assert!(!s.needs_preparation(), "smina reads SDF and PDB itself");

        let json = serde_json::to_value(spec(1, 1)).expect("json");
        assert!(json.get("preparation").is_none(), "the default is not written: {json}");
        let mut json = serde_json::to_value(spec(1, 1)).expect("json");
        json["preparation"] = serde_json::json!({"tool": "meeko", "protonate": true});
        let back: JobSpec = serde_json::from_value(json).expect("read");
        assert_eq!(back.preparation.tool, PrepTool::Meeko);
    }

    #[test]
    fn memory_estimate_matches_measured_vina_grid() {
        let s = spec(1, 1);
        let mb = s.task_memory_bytes() / 1_000_000;
        assert!((500..700).contains(&mb), "{mb}");
    }
}
