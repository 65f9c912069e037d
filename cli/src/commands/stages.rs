//! Funnel stages for `dockyard submit`: `--stage "key=value ..."` options or a `--plan`
//! TOML file with one `[[stage]]` table per stage, both read into SubmitJob's `stages`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use dockyard_proto::v1 as pb;

/// The keys a stage takes, as `dockyard submit` spells the job-level flags.
pub const KEYS: &[&str] = &[
    "name",
    "engine",
    "exhaustiveness",
    "num_modes",
    "seed",
    "scoring",
    "mode",
    "cnn_scoring",
    "cnn_model",
    "search_mode",
    "no_gpu",
    "gpus",
    "cpus_per_task",
    "batch_size",
    "timeout_s",
    "rank_by",
    "keep",
    "max_score",
    "receptor",
    "center",
    "size",
];

/// One stage as written: key to value, in the order of [`KEYS`].
pub type StageText = BTreeMap<String, String>;

/// Reads `--stage "engine=vina exhaustiveness=32 keep=5%"`.
pub fn parse_stage(s: &str) -> Result<StageText> {
    let mut out = StageText::new();
    for word in s.split_whitespace() {
        let (k, v) = word
            .split_once('=')
            .with_context(|| format!("--stage '{s}': '{word}' is not key=value (keys: {})", KEYS.join(", ")))?;
        let k = k.replace('-', "_");
        if !KEYS.contains(&k.as_str()) {
            bail!("--stage '{s}': unknown key '{k}' (keys: {})", KEYS.join(", "));
        }
        if out.insert(k.clone(), v.to_string()).is_some() {
            bail!("--stage '{s}': '{k}' is given twice");
        }
    }
    Ok(out)
}

/// Reads a plan file: `[[stage]]` tables with the same keys as `--stage`.
pub fn read_plan(path: &Path) -> Result<Vec<StageText>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --plan {}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text).with_context(|| format!("--plan {}: not valid TOML", path.display()))?;
    for key in doc.keys() {
        if key != "stage" {
            bail!("--plan {}: unknown table '{key}'; write one [[stage]] per stage", path.display());
        }
    }
    let Some(stages) = doc.get("stage").and_then(|s| s.as_array()) else {
        bail!("--plan {}: no [[stage]] tables", path.display());
    };
    let mut out = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        let t = s
            .as_table()
            .with_context(|| format!("--plan {}: stage {} is not a table", path.display(), i + 1))?;
        let mut st = StageText::new();
        for (k, v) in t {
            if !KEYS.contains(&k.as_str()) {
                bail!(
                    "--plan {}: stage {}: unknown key '{k}' (keys: {})",
                    path.display(),
                    i + 1,
                    KEYS.join(", ")
                );
            }
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(a) => a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
                other => bail!("--plan {}: stage {}: '{k}' = {other} is not a value", path.display(), i + 1),
            };
            st.insert(k.clone(), v);
        }
        out.push(st);
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(i: usize, k: &str, v: &str) -> Result<T> {
    v.parse().ok().with_context(|| format!("stage {}: {k}={v} is not a number", i + 1))
}

/// A stage as the request carries it; `receptor` is a path, uploaded by the caller.
pub fn to_proto(i: usize, t: &StageText) -> Result<(pb::Stage, Option<PathBuf>)> {
    let mut s = pb::Stage::default();
    let mut p = pb::EngineParams::default();
    let mut receptor = None;
    let (mut center, mut size) = (None, None);
    for (k, v) in t {
        match k.as_str() {
            "name" => s.name = v.clone(),
            "engine" => s.engine = v.clone(),
            "exhaustiveness" => p.exhaustiveness = number(i, k, v)?,
            "num_modes" => p.num_modes = number(i, k, v)?,
            "seed" => p.seed = number(i, k, v)?,
            "scoring" => p.scoring = v.clone(),
            "mode" => p.mode = v.clone(),
            "cnn_scoring" => p.cnn_scoring = v.clone(),
            "cnn_model" => p.cnn_model = v.clone(),
            "search_mode" => p.search_mode = v.clone(),
            "no_gpu" => p.no_gpu = number(i, k, v)?,
            "gpus" => s.gpus_per_task = Some(number(i, k, v)?),
            "cpus_per_task" => s.cpus_per_task = Some(number(i, k, v)?),
            "batch_size" => s.batch_size = number(i, k, v)?,
            "timeout_s" => s.timeout_s = number(i, k, v)?,
            "rank_by" => s.rank_by = v.clone(),
            "keep" => match v.strip_suffix('%') {
                Some(pct) => s.keep_percent = number(i, k, pct)?,
                None => {
                    s.keep_top = number(i, k, v)?;
                    if s.keep_top == 0 {
                        bail!(
                            "stage {}: keep=0 keeps nothing; keep a number of ligands (keep=500) or a share (keep=5%)",
                            i + 1
                        );
                    }
                }
            },
            "max_score" => s.max_score = Some(number(i, k, v)?),
            "receptor" => receptor = Some(PathBuf::from(v)),
            "center" => center = Some(super::submit::parse_vec3("center", v)?),
            "size" => size = Some(super::submit::parse_vec3("size", v)?),
            other => bail!("stage {}: unknown key '{other}'", i + 1),
        }
    }
    match (center, size) {
        (Some(c), Some(z)) => {
            s.r#box = Some(pb::DockingBox {
                center: Some(c),
                size: Some(z),
            })
        }
        (None, None) => {}
        _ => bail!("stage {}: give both center and size, or neither (the job's box)", i + 1),
    }
    if p != pb::EngineParams::default() {
        s.params = Some(p);
    }
    Ok((s, receptor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_options_and_plan_files_read_the_same() {
        let a = parse_stage("name=redock engine=vina exhaustiveness=32 num_modes=20 keep=5%").expect("stage");
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("plan.toml");
        std::fs::write(
            &f,
            "[[stage]]\nname = \"pre\"\nexhaustiveness = 1\n\n[[stage]]\nname = \"redock\"\nengine = \"vina\"\nexhaustiveness = 32\nnum_modes = 20\nkeep = \"5%\"\n",
        )
        .expect("write");
        let plan = read_plan(&f).expect("plan");
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1], a);
        let (s, _) = to_proto(1, &a).expect("proto");
        assert_eq!(s.keep_percent, 5.0);
        let p = s.params.expect("params");
        assert_eq!((p.exhaustiveness, p.num_modes), (32, 20));
        let (s, _) = to_proto(1, &parse_stage("keep=500 max_score=-8.5").expect("stage")).expect("proto");
        assert_eq!((s.keep_top, s.max_score), (500, Some(-8.5)));
    }

    #[test]
    fn a_bad_stage_says_what_to_fix() {
        for (s, says) in [
            ("engine", "not key=value"),
            ("colour=red", "unknown key 'colour'"),
            ("keep=5 keep=6", "given twice"),
        ] {
            let e = parse_stage(s).expect_err(s).to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
        for (s, says) in [
            ("keep=lots", "not a number"),
            ("keep=0", "keeps nothing"),
            ("center=1,2,3", "both center and size"),
        ] {
            let e = to_proto(1, &parse_stage(s).expect("parses")).expect_err(s).to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
