//! The autoscaler's pools, read from a TOML file: which task classes each pool of agents
//! serves, what one of its agents offers, its bounds, and how a provisioner starts one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use dockyard_common::spec::EngineKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleFile {
    /// Names the provisioner's jobs (`dockyard-<cluster>-<pool>`), so two Dockyard
    /// clusters on one Slurm never count each other's agents.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The coordinator endpoints agents dial [default: the autoscaler's `--endpoint`]. On a
    /// compute node `127.0.0.1` is the node itself, so a real cluster names the host.
    #[serde(default)]
    pub agent_coordinator: Option<String>,
    #[serde(rename = "pool", default)]
    pub pools: Vec<Pool>,
}

fn default_cluster() -> String {
    "default".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    /// Engines this pool's agents have; tasks of other engines are another pool's.
    pub engines: Vec<String>,
    /// Slots (cores) one agent offers: the batch script's `--cpus-per-task`.
    pub slots: u32,
    /// Memory one agent offers, MB [default: no memory bound in the sizing].
    #[serde(default)]
    pub memory_mb: u64,
    /// GPUs one agent has; 0 serves CPU tasks only.
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub min: u32,
    pub max: u32,
    /// The batch script (Slurm) each agent runs as.
    pub script: PathBuf,
    /// Extra `sbatch` arguments (`--partition`, `--time`, `--cpus-per-task`, ...).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    #[serde(skip)]
    pub engine_kinds: Vec<EngineKind>,
}

impl Pool {
    pub fn serves(&self, engine: &str, gpus: u32, cpus: u32, memory_bytes: u64) -> bool {
        let Ok(kind) = EngineKind::parse(engine) else { return false };
        self.engine_kinds.contains(&kind)
            && gpus <= self.gpus
            && cpus <= self.slots
            && (self.memory_mb == 0 || memory_bytes <= self.memory_mb * 1_000_000)
    }
}

impl AutoscaleFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the autoscale config {}", path.display()))?;
        let mut f: AutoscaleFile = toml::from_str(&text).with_context(|| format!("{}: not a valid autoscale config", path.display()))?;
        f.check().with_context(|| format!("{}", path.display()))?;
        Ok(f)
    }

    fn check(&mut self) -> Result<()> {
        if !self.cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || self.cluster.is_empty() {
            bail!("cluster: '{}' must be letters, digits, '-' or '_'", self.cluster);
        }
        if self.pools.is_empty() {
            bail!("no [[pool]] given: name at least one pool of agents to scale");
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &mut self.pools {
            let at = format!("pool '{}'", p.name);
            if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                bail!("{at}: name must be letters, digits, '-' or '_'");
            }
            if !names.insert(p.name.clone()) {
                bail!("{at}: the name is used twice");
            }
            if p.engines.is_empty() {
                bail!("{at}: engines is empty; list what its agents run, e.g. [\"vina\"]");
            }
            p.engine_kinds = p
                .engines
                .iter()
                .map(|e| EngineKind::parse(e).map_err(|err| anyhow::anyhow!("{at}: engines: {err}")))
                .collect::<Result<_>>()?;
            if p.slots == 0 {
                bail!("{at}: slots must be at least 1 (the cores one agent offers)");
            }
            if p.max == 0 || p.min > p.max {
                bail!("{at}: need 0 <= min <= max and max >= 1 (min {}, max {})", p.min, p.max);
            }
            if p.script.as_os_str().is_empty() {
                bail!("{at}: script is empty; give the batch script agents run as");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AutoscaleFile> {
        let mut f: AutoscaleFile = toml::from_str(text)?;
        f.check()?;
        Ok(f)
    }

    const POOL: &str = "[[pool]]\nname = \"cpu\"\nengines = [\"vina\"]\nslots = 4\nmax = 3\nscript = \"a.sbatch\"\n";

    #[test]
    fn a_pool_serves_only_what_its_agents_offer() {
        let f = parse(&format!("{POOL}memory_mb = 2000\n")).expect("config");
        let p = &f.pools[0];
        assert!(p.serves("vina", 0, 4, 1_000_000_000));
        assert!(!p.serves("smina", 0, 1, 0), "another engine");
        assert!(!p.serves("vina", 1, 1, 0), "needs a GPU");
        assert!(!p.serves("vina", 0, 5, 0), "more cores than an agent has");
        assert!(!p.serves("vina", 0, 1, 3_000_000_000), "more memory than an agent has");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let f = parse(include_str!("../../../../deploy/slurm/autoscale.toml")).expect("deploy/slurm/autoscale.toml");
        assert_eq!(f.pools.len(), 2);
        assert!(f.pools[0].serves("vina", 0, 1, 0) && !f.pools[0].serves("gnina", 1, 1, 0));
        assert!(f.pools[1].serves("gnina", 1, 1, 0));
    }

    #[test]
    fn mistakes_name_the_pool_and_the_field() {
        let e = parse(&POOL.replace("\"vina\"", "\"vinna\"")).expect_err("bad engine");
        assert!(format!("{e:#}").contains("pool 'cpu': engines"), "{e:#}");
        let e = parse(&POOL.replace("max = 3", "max = 3\nmin = 4")).expect_err("min > max");
        assert!(format!("{e:#}").contains("min <= max"), "{e:#}");
        let e = parse(&POOL.replace("slots = 4", "slots = 0")).expect_err("no slots");
        assert!(format!("{e:#}").contains("slots"), "{e:#}");
        let e = parse("cluster = \"a b\"\n").expect_err("bad cluster");
        assert!(format!("{e:#}").contains("cluster"), "{e:#}");
        let e = parse(&format!("{POOL}{POOL}")).expect_err("twice");
        assert!(format!("{e:#}").contains("used twice"), "{e:#}");
        assert!(parse(&format!("{POOL}colour = 1\n")).is_err(), "unknown keys are refused");
    }
}
