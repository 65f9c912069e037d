//! Artifact keys and their layout.
//!
//! Every key the cluster writes is built here from ids, and every key a peer hands back is
//! read here, so the layout is written down once:
//!
//! | key | what |
//! |---|---|
//! | `orgs/<org>/inputs/sha256/<hex>` | an input (receptor, ligands, library pack), content-addressed |
//! | `orgs/<org>/jobs/<job>/spec.json` | a job's spec, replicated for a new leader (cluster mode) |
//! | `orgs/<org>/jobs/<job>/skipped.json` | the records `skip_invalid` left out, beside the spec (cluster mode) |
//! | `orgs/<org>/jobs/<job>/commits/<epoch:020>-<seq:012>.json` | committed task outcomes (cluster mode) |
//! | `orgs/<org>/jobs/<job>/tasks/<index>/a<attempt>e<epoch>/<file>` | what one attempt of a task wrote |
//!
//! Keys are also checked on their own ([`ArtifactKey::new`]) so no key can escape its
//! namespace: no `..`, no absolute paths, no odd bytes.

use std::fmt;

use crate::error::DockyardError;
use crate::ids::{Attempt, Epoch, JobId, OrgId, TaskId};

const ORGS: &str = "orgs";
const INPUTS: &str = "inputs";
const SHA256: &str = "sha256";
const JOBS: &str = "jobs";
const SPEC: &str = "spec.json";
const SKIPPED: &str = "skipped.json";
const COMMITS: &str = "commits";
const TASKS: &str = "tasks";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactKey(String);

impl ArtifactKey {
    pub fn new(key: impl Into<String>) -> Result<Self, DockyardError> {
        let key = key.into();
        let bad = |why: &str| DockyardError::invalid("artifact key", format!("'{key}': {why}"));
        if key.is_empty() || key.len() > 1024 {
            return Err(bad("must be 1-1024 bytes"));
        }
        for seg in key.split('/') {
            if seg.is_empty() {
                return Err(bad("empty path segment"));
            }
            if seg == "." || seg == ".." {
                return Err(bad("relative path segment"));
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
                return Err(bad("only letters, digits, '-', '_', '.' and '/' are allowed"));
            }
        }
        Ok(ArtifactKey(key))
    }

    /// A key assembled from validated ids and fixed names only, so it cannot be invalid.
    fn from_ids(key: String) -> Self {
        debug_assert!(ArtifactKey::new(key.as_str()).is_ok(), "{key}");
        ArtifactKey(key)
    }

    /// Content address of input bytes, under the organisation's namespace.
    pub fn input(org: &OrgId, sha256_hex: &str) -> Result<Self, DockyardError> {
        if !is_sha256_hex(sha256_hex) {
            return Err(DockyardError::invalid(
                "artifact key",
                format!("'{sha256_hex}' is not a SHA-256 (64 lowercase hex digits)"),
            ));
        }
        Ok(ArtifactKey::from_ids(format!("{ORGS}/{org}/{INPUTS}/{SHA256}/{sha256_hex}")))
    }

    /// A job's spec, as the leader replicates it.
    pub fn job_spec(org: &OrgId, job: &JobId) -> Self {
        ArtifactKey::from_ids(format!("{ORGS}/{org}/{JOBS}/{job}/{SPEC}"))
    }

    /// Version `version` of a spec that changes (a funnel stage fed while the stage before
    /// runs): each version is a new object, named by the fenced index entry that points at
    /// it, so a deposed leader's late write names nothing.
    pub fn job_spec_at(org: &OrgId, job: &JobId, version: u32) -> Self {
        if version == 0 {
            return Self::job_spec(org, job);
        }
        ArtifactKey::from_ids(format!("{ORGS}/{org}/{JOBS}/{job}/spec.{version}.json"))
    }

    /// The records `skip_invalid` left out of a job, written with its spec (the spec counts
    /// them in `skipped`, so a rebuild knows when to look).
    pub fn job_skipped(org: &OrgId, job: &JobId) -> Self {
        ArtifactKey::from_ids(format!("{ORGS}/{org}/{JOBS}/{job}/{SKIPPED}"))
    }

    /// One batch of committed outcomes of a job; the zero padding makes keys sort by commit.
    pub fn job_commit(org: &OrgId, job: &JobId, epoch: Epoch, seq: u64) -> Self {
        ArtifactKey::from_ids(format!("{ORGS}/{org}/{JOBS}/{job}/{COMMITS}/{epoch:020}-{seq:012}.json"))
    }

    /// A file one attempt of a task writes.
    pub fn task_output(org: &OrgId, task: &TaskId, attempt: Attempt, epoch: Epoch, file: TaskFile) -> Self {
        OutputPrefix::task(org, task, attempt, epoch).file(file)
    }

    /// A file under the output prefix an assignment carries. The prefix comes from the
    /// coordinator over the wire, so the result is checked like any other key.
    pub fn task_file(output_prefix: &str, file: TaskFile) -> Result<Self, DockyardError> {
        ArtifactKey::new(format!("{output_prefix}{file}"))
    }

    /// Is the key inside some organisation's namespace (rather than the cluster's own)?
    pub fn in_org_namespace(&self) -> bool {
        self.0.starts_with(ORGS) && self.0.as_bytes().get(ORGS.len()) == Some(&b'/')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The files one attempt of a task writes under its [`OutputPrefix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskFile {
    /// The engine's log for the whole task.
    EngineLog,
    /// One ligand's poses as the engine wrote them.
    PosesPdbqt(u32),
    /// One ligand's poses as SDF.
    PosesSdf(u32),
}

impl fmt::Display for TaskFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskFile::EngineLog => f.write_str("engine.log"),
            TaskFile::PosesPdbqt(i) => write!(f, "lig_{i}.pdbqt"),
            TaskFile::PosesSdf(i) => write!(f, "lig_{i}.sdf"),
        }
    }
}

/// Where one attempt of a task writes: `orgs/<org>/jobs/<job>/tasks/<index>/a<attempt>e<epoch>/`.
/// The epoch keeps two leaders' attempts of one task (after a failover) apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPrefix(String);

impl OutputPrefix {
    pub fn task(org: &OrgId, task: &TaskId, attempt: Attempt, epoch: Epoch) -> Self {
        OutputPrefix(format!(
            "{ORGS}/{org}/{JOBS}/{}/{TASKS}/{}/a{attempt}e{epoch}/",
            task.job, task.index
        ))
    }

    pub fn file(&self, file: TaskFile) -> ArtifactKey {
        ArtifactKey::from_ids(format!("{}{file}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<OutputPrefix> for String {
    fn from(p: OutputPrefix) -> String {
        p.0
    }
}

/// What a key under `orgs/` names, with its ids typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedKey {
    Input { org: OrgId, sha256: String },
    Job { org: OrgId, job: JobId, file: JobFile },
}

/// A file under a job's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobFile {
    Spec,
    Skipped,
    Commit {
        epoch: Epoch,
        seq: u64,
    },
    /// `epoch` is `None` for the attempt folders written before epochs were part of the
    /// prefix (`a<attempt>/`), which must still be found.
    TaskOutput {
        index: u32,
        attempt: Attempt,
        epoch: Option<Epoch>,
        name: String,
    },
    /// Anything else under the job's folder (the path below `jobs/<job>/`).
    Other(String),
}

impl ParsedKey {
    /// Checks `key` like [`ArtifactKey::new`], then reads its layout.
    pub fn parse(key: &str) -> Result<Self, DockyardError> {
        ParsedKey::of(&ArtifactKey::new(key)?)
    }

    pub fn of(key: &ArtifactKey) -> Result<Self, DockyardError> {
        let bad = |why: &str| DockyardError::invalid("artifact key", format!("'{key}': {why}"));
        let mut parts = key.as_str().splitn(4, '/');
        let (Some(ORGS), Some(org), Some(area), Some(rest)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not under orgs/<org>/inputs/ or orgs/<org>/jobs/"));
        };
        let org = OrgId::parse(org)?;
        match area {
            INPUTS => match rest.split_once('/') {
                Some((SHA256, hex)) if is_sha256_hex(hex) => Ok(ParsedKey::Input {
                    org,
                    sha256: hex.to_string(),
                }),
                _ => Err(bad("an input key ends in sha256/<64 lowercase hex digits>")),
            },
            JOBS => {
                let (job, path) = rest.split_once('/').ok_or_else(|| bad("no file under the job"))?;
                let job = JobId::parse(job)?;
                Ok(ParsedKey::Job {
                    org,
                    job,
                    file: JobFile::of(path),
                })
            }
            _ => Err(bad("not under orgs/<org>/inputs/ or orgs/<org>/jobs/")),
        }
    }

    pub fn org(&self) -> &OrgId {
        match self {
            ParsedKey::Input { org, .. } | ParsedKey::Job { org, .. } => org,
        }
    }

    /// The key this names, built back from its parts.
    pub fn key(&self) -> ArtifactKey {
        match self {
            ParsedKey::Input { org, sha256 } => ArtifactKey::from_ids(format!("{ORGS}/{org}/{INPUTS}/{SHA256}/{sha256}")),
            ParsedKey::Job { org, job, file } => match file {
                JobFile::Spec => ArtifactKey::job_spec(org, job),
                JobFile::Skipped => ArtifactKey::job_skipped(org, job),
                JobFile::Commit { epoch, seq } => ArtifactKey::job_commit(org, job, *epoch, *seq),
                JobFile::TaskOutput {
                    index,
                    attempt,
                    epoch,
                    name,
                } => {
                    let dir = match epoch {
                        Some(e) => format!("a{attempt}e{e}"),
                        None => format!("a{attempt}"),
                    };
                    ArtifactKey::from_ids(format!("{ORGS}/{org}/{JOBS}/{job}/{TASKS}/{index}/{dir}/{name}"))
                }
                JobFile::Other(path) => ArtifactKey::from_ids(format!("{ORGS}/{org}/{JOBS}/{job}/{path}")),
            },
        }
    }
}

impl JobFile {
    /// `path` is below `jobs/<job>/` of a key that passed `ArtifactKey::new`. Shapes this
    /// does not know (or numbers not written the way the builders write them) stay `Other`,
    /// so parsing and rebuilding gives back the same key.
    fn of(path: &str) -> JobFile {
        match path {
            SPEC => return JobFile::Spec,
            SKIPPED => return JobFile::Skipped,
            _ => {}
        }
        if let Some(c) = path.strip_prefix(COMMITS).and_then(|p| p.strip_prefix('/')) {
            if let Some((epoch, seq)) = c.strip_suffix(".json").and_then(|c| c.split_once('-')) {
                if epoch.len() == 20 && seq.len() == 12 && all_digits(epoch) && all_digits(seq) {
                    if let (Ok(epoch), Ok(seq)) = (epoch.parse(), seq.parse()) {
                        return JobFile::Commit { epoch, seq };
                    }
                }
            }
        }
        if let Some(t) = path.strip_prefix(TASKS).and_then(|p| p.strip_prefix('/')) {
            let mut parts = t.splitn(3, '/');
            if let (Some(index), Some(dir), Some(name)) = (parts.next(), parts.next(), parts.next()) {
                if let (Some(index), Some((attempt, epoch))) = (canonical::<u32>(index), attempt_dir(dir)) {
                    return JobFile::TaskOutput {
                        index,
                        attempt,
                        epoch,
                        name: name.to_string(),
                    };
                }
            }
        }
        JobFile::Other(path.to_string())
    }
}

/// `a<attempt>e<epoch>`, or `a<attempt>` from before epochs were in the prefix.
fn attempt_dir(dir: &str) -> Option<(Attempt, Option<Epoch>)> {
    let rest = dir.strip_prefix('a')?;
    match rest.split_once('e') {
        Some((attempt, epoch)) => Some((canonical(attempt)?, Some(canonical(epoch)?))),
        None => Some((canonical(rest)?, None)),
    }
}

/// A number written as `format!("{n}")` writes it: digits only, no sign, no leading zero.
fn canonical<T: std::str::FromStr>(s: &str) -> Option<T> {
    let ok = all_digits(s) && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).expect("org")
    }

    fn job() -> JobId {
        JobId::parse("018f2a3b4c5d0123abcd").expect("job")
    }

    #[test]
    fn traversal_and_absolute_keys_are_refused() {
        for k in ["../x", "/etc/passwd", "a//b", "a/./b", "a/b c", "", "a/../../b"] {
            assert!(ArtifactKey::new(k).is_err(), "{k}");
            assert!(ParsedKey::parse(k).is_err(), "{k}");
        }
        assert!(ArtifactKey::new("orgs/default/jobs/abc/t.0/lig_1.pdbqt").is_ok());
    }

    /// The strings stored data already lives under: a change here loses existing artifacts.
    #[test]
    fn builders_write_the_layout_existing_data_is_stored_under() {
        let (o, j) = (org("chem"), job());
        let t = TaskId::new(j.clone(), 7);
        assert_eq!(
            ArtifactKey::input(&o, SHA).expect("input").as_str(),
            format!("orgs/chem/inputs/sha256/{SHA}")
        );
        assert_eq!(
            ArtifactKey::job_spec(&o, &j).as_str(),
            "orgs/chem/jobs/018f2a3b4c5d0123abcd/spec.json"
        );
        assert_eq!(
            ArtifactKey::job_skipped(&o, &j).as_str(),
            "orgs/chem/jobs/018f2a3b4c5d0123abcd/skipped.json"
        );
        assert_eq!(
            ArtifactKey::job_commit(&o, &j, 3, 42).as_str(),
            "orgs/chem/jobs/018f2a3b4c5d0123abcd/commits/00000000000000000003-000000000042.json"
        );
        let p = OutputPrefix::task(&o, &t, 2, 5);
        assert_eq!(p.as_str(), "orgs/chem/jobs/018f2a3b4c5d0123abcd/tasks/7/a2e5/");
        assert_eq!(p.file(TaskFile::EngineLog).as_str(), format!("{}engine.log", p.as_str()));
        assert_eq!(p.file(TaskFile::PosesPdbqt(12)).as_str(), format!("{}lig_12.pdbqt", p.as_str()));
        assert_eq!(p.file(TaskFile::PosesSdf(12)).as_str(), format!("{}lig_12.sdf", p.as_str()));
        assert_eq!(
            ArtifactKey::task_output(&o, &t, 2, 5, TaskFile::PosesSdf(12)),
            p.file(TaskFile::PosesSdf(12))
        );
        assert_eq!(
            ArtifactKey::task_file(p.as_str(), TaskFile::PosesPdbqt(0)).expect("file"),
            p.file(TaskFile::PosesPdbqt(0))
        );
    }

    #[test]
    fn every_built_key_parses_back_to_its_parts_and_to_itself() {
        let (o, j) = (org("chem"), job());
        let t = TaskId::new(j.clone(), 7);
        let cases = [
            (
                ArtifactKey::input(&o, SHA).expect("input"),
                ParsedKey::Input {
                    org: o.clone(),
                    sha256: SHA.into(),
                },
            ),
            (
                ArtifactKey::job_spec(&o, &j),
                ParsedKey::Job {
                    org: o.clone(),
                    job: j.clone(),
                    file: JobFile::Spec,
                },
            ),
            (
                ArtifactKey::job_skipped(&o, &j),
                ParsedKey::Job {
                    org: o.clone(),
                    job: j.clone(),
                    file: JobFile::Skipped,
                },
            ),
            (
                ArtifactKey::job_commit(&o, &j, u64::MAX, 0),
                ParsedKey::Job {
                    org: o.clone(),
                    job: j.clone(),
                    file: JobFile::Commit { epoch: u64::MAX, seq: 0 },
                },
            ),
            (
                ArtifactKey::task_output(&o, &t, 1, 0, TaskFile::EngineLog),
                ParsedKey::Job {
                    org: o.clone(),
                    job: j.clone(),
                    file: JobFile::TaskOutput {
                        index: 7,
                        attempt: 1,
                        epoch: Some(0),
                        name: "engine.log".into(),
                    },
                },
            ),
        ];
        for (key, parts) in cases {
            let parsed = ParsedKey::of(&key).expect("parse");
            assert_eq!(parsed, parts, "{key}");
            assert_eq!(parsed.key(), key);
            assert_eq!(parsed.org(), &o);
        }
    }

    #[test]
    fn keys_from_older_layouts_are_still_job_files() {
        let legacy = "orgs/default/jobs/018f2a3b4c5d0123abcd/tasks/0/a1/lig_0.pdbqt";
        let p = ParsedKey::parse(legacy).expect("legacy prefix");
        assert!(
            matches!(&p, ParsedKey::Job { file: JobFile::TaskOutput { index: 0, attempt: 1, epoch: None, name }, .. } if name == "lig_0.pdbqt"),
            "{p:?}"
        );
        assert_eq!(p.key().as_str(), legacy);
        // Unknown shapes under a job, and numbers not written the builders' way, stay opaque
        // (and still round-trip) instead of being read as something they are not.
        for path in [
            "t.0/lig_1.pdbqt",
            "tasks/07/a1e1/x",
            "tasks/0/a1e01/x",
            "tasks/0/b1/x",
            "commits/1-2.json",
            "tasks/0/a1e1",
        ] {
            let k = format!("orgs/default/jobs/018f2a3b4c5d0123abcd/{path}");
            let p = ParsedKey::parse(&k).expect(&k);
            assert!(matches!(&p, ParsedKey::Job { file: JobFile::Other(o), .. } if o == path), "{p:?}");
            assert_eq!(p.key().as_str(), k);
        }
    }

    #[test]
    fn keys_outside_the_org_layout_or_with_bad_ids_are_refused() {
        for k in [
            "orgs",
            "orgs/chem",
            "orgs/chem/jobs",
            "orgs/chem/jobs/018f2a3b4c5d0123abcd",
            "orgs/Chem/jobs/018f2a3b4c5d0123abcd/spec.json",
            "orgs/chem/jobs/not-a-job/spec.json",
            "orgs/chem/libraries/x.sdf",
            "orgs/chem/inputs/sha256/aa",
            "orgs/chem/inputs/md5/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "cluster/orgs/chem/jobs/018f2a3b4c5d0123abcd/spec.json",
            "orgs/beta/../alpha/jobs/018f2a3b4c5d0123abcd/spec.json",
        ] {
            assert!(ParsedKey::parse(k).is_err(), "{k}");
        }
        assert!(ArtifactKey::input(&org("chem"), "AA").is_err());
        assert!(ArtifactKey::input(&org("chem"), &SHA.to_ascii_uppercase()).is_err());
    }

    #[test]
    fn a_key_names_the_org_whose_namespace_it_is_in() {
        let j = job();
        let beta = ArtifactKey::job_spec(&org("beta"), &j);
        assert_eq!(ParsedKey::of(&beta).expect("parse").org(), &org("beta"));
        assert_ne!(ParsedKey::of(&beta).expect("parse").org(), &org("alpha"));
        assert!(beta.in_org_namespace());
        assert!(!ArtifactKey::new("orgsx/a").expect("key").in_org_namespace());
        assert!(!ArtifactKey::new("cluster/orgs/a").expect("key").in_org_namespace());
    }

    #[test]
    fn task_files_under_a_peer_prefix_are_checked() {
        assert!(ArtifactKey::task_file("../", TaskFile::EngineLog).is_err());
        assert!(ArtifactKey::task_file("/abs/", TaskFile::EngineLog).is_err());
        assert_eq!(
            ArtifactKey::task_file("orgs/t/out/t1/", TaskFile::PosesSdf(3))
                .expect("key")
                .as_str(),
            "orgs/t/out/t1/lig_3.sdf"
        );
    }
}
