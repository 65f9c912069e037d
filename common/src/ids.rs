//! Newtype ids, so a job id can never be passed where a node id is expected.
//!
//! ```compile_fail
//! use dockyard_common::ids::{JobId, NodeId};
//! fn drain(_: &NodeId) {}
//! let job = JobId::parse("0123456789abcdef0123").unwrap();
//! drain(&job);
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DockyardError;

/// A job id: 12 hex digits of creation time (ms) then 8 random hex digits, so ids sort by age
/// and two coordinators (after a failover) do not hand out the same id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(String);

impl JobId {
    pub const LEN: usize = 20;

    pub fn generate(now_ms: i64) -> Self {
        let r: u32 = rand::random();
        JobId(format!("{:012x}{:08x}", now_ms.max(0) as u64 & 0xffff_ffff_ffff, r))
    }

    pub fn parse(s: &str) -> Result<Self, DockyardError> {
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            Ok(JobId(s.to_string()))
        } else {
            Err(DockyardError::invalid(
                "job_id",
                format!("'{s}' is not a job id (20 lowercase hex digits)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of stage `stage` (0-based; 0 is this job itself) of the funnel this job is:
    /// derived, not drawn, so a coordinator that crosses a stage boundary twice (a restart,
    /// a failover) finds the stage it already created instead of making a second one.
    pub fn stage(&self, stage: u32) -> JobId {
        if stage == 0 {
            return self.clone();
        }
        let (time, rand) = self.0.split_at(12);
        let r = u32::from_str_radix(rand, 16).unwrap_or(0);
        JobId(format!("{time}{:08x}", r.wrapping_add(stage.wrapping_mul(0x9e37_79b9))))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task is one batch of a job's ligands: `<job>.<index>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    pub job: JobId,
    pub index: u32,
}

impl TaskId {
    pub fn new(job: JobId, index: u32) -> Self {
        TaskId { job, index }
    }

    pub fn parse(s: &str) -> Result<Self, DockyardError> {
        let bad = || DockyardError::invalid("task_id", format!("'{s}' is not a task id (<job>.<index>)"));
        let (job, idx) = s.split_once('.').ok_or_else(bad)?;
        let job = JobId::parse(job).map_err(|_| bad())?;
        let index = idx.parse::<u32>().map_err(|_| bad())?;
        Ok(TaskId { job, index })
    }

    /// Fixed-width, byte-sortable form used as a sled key.
    pub fn to_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(JobId::LEN + 4);
        k.extend_from_slice(self.job.0.as_bytes());
        k.extend_from_slice(&self.index.to_be_bytes());
        k
    }

    pub fn from_key(k: &[u8]) -> Option<Self> {
        if k.len() != JobId::LEN + 4 {
            return None;
        }
        let job = JobId::parse(std::str::from_utf8(&k[..JobId::LEN]).ok()?).ok()?;
        let index = u32::from_be_bytes(k[JobId::LEN..].try_into().ok()?);
        Some(TaskId { job, index })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.job, self.index)
    }
}

/// A node id, chosen by the operator or derived from the host name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    pub fn parse(s: &str) -> Result<Self, DockyardError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(NodeId(s.to_string()))
        } else {
            Err(DockyardError::invalid(
                "node_id",
                format!("'{s}' must be 1-128 characters of letters, digits, '-', '_', '.', ':'"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organisation (tenant). Until auth lands every call belongs to `default`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrgId(String);

impl OrgId {
    pub fn default_org() -> Self {
        OrgId("default".to_string())
    }

    pub fn parse(s: &str) -> Result<Self, DockyardError> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(OrgId(s.to_string()))
        } else {
            Err(DockyardError::invalid("org", format!("'{s}' must be 1-64 of [a-z0-9-]")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attempt number of a task, starting at 1.
pub type Attempt = u32;

/// Leadership epoch: grows every time a coordinator takes over; assignments carry it.
pub type Epoch = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids_are_valid_distinct_and_stable() {
        let j = JobId::parse("0123456789abffffffff").expect("id");
        assert_eq!(j.stage(0), j);
        let ids: Vec<JobId> = (0..5).map(|k| j.stage(k)).collect();
        for (k, id) in ids.iter().enumerate() {
            assert_eq!(&JobId::parse(id.as_str()).expect("a stage id parses"), id, "stage {k}");
            assert!(id.as_str().starts_with("0123456789ab"), "keeps the creation time: {id}");
            assert_eq!(j.stage(k as u32), *id, "derived the same way every time");
        }
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 5);
    }

    #[test]
    fn task_id_round_trips_through_text_and_key() {
        let t = TaskId::new(JobId::generate(1_700_000_000_000), 42);
        assert_eq!(TaskId::parse(&t.to_string()).expect("parse"), t);
        assert_eq!(TaskId::from_key(&t.to_key()).expect("key"), t);
    }

    #[test]
    fn job_ids_sort_by_creation_time() {
        let a = JobId::generate(1000);
        let b = JobId::generate(2000);
        assert!(a < b);
    }

    #[test]
    fn bad_ids_are_rejected_with_the_field() {
        let e = JobId::parse("../etc").expect_err("must fail");
        assert!(e.to_string().contains("job_id"));
        assert!(NodeId::parse("a b").is_err());
        assert!(OrgId::parse("Org").is_err());
        assert!(TaskId::parse("x.1").is_err());
    }
}
