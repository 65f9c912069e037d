//! The snapshot format: parts written first, the manifest last, all under one folder
//! (`<backup-to>/<id>/`) of an artifact-store URI. A snapshot without its manifest is not
//! a snapshot (a backup that died half-way), so readers start from the manifest.
//!
//! A part is a zstd frame over length-prefixed records (`u32` big-endian length, bytes), a
//! key and a value per record for the state trees, one key per record for the list of
//! artifact keys. The manifest gives each part's size and SHA-256 as stored.

use std::io::Read;

use serde::{Deserialize, Serialize};

use dockyard_common::error::DockyardError;

/// Bumped when a part's layout or a tree's records change incompatibly; a restore refuses a
/// snapshot from a newer format. 2: large job specs are stored in parts (`p/` records).
pub const FORMAT: u32 = 2;
pub const MANIFEST: &str = "manifest.json";
pub const SCHEDULER_PART: &str = "scheduler.kv.zst";
pub const TENANTS_PART: &str = "tenants.kv.zst";
pub const ARTIFACTS_PART: &str = "artifact-keys.zst";
/// Cluster mode only: the cluster's etcd keys (relative to `/dockyard/<cluster>/`) as of
/// `etcd_revision`.
pub const ETCD_PART: &str = "etcd.kv.zst";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub created_unix_ms: u64,
    pub coordinator_id: String,
    pub dockyard_version: String,
    /// Group commits included: the snapshot is the state right after this many.
    pub commit_position: u64,
    /// The epoch of the coordinator that took it; a restore starts above it.
    pub epoch: u64,
    /// How long dispatch stood still while the scheduler's records were copied.
    pub pause_ms: f64,
    pub parts: Vec<Part>,
    /// Artifact keys the state refers to (inputs, poses, SDF, logs), listed in
    /// `ARTIFACTS_PART`.
    pub artifact_keys: u64,
    /// The cluster (`--cluster`) of a snapshot taken in cluster mode; absent in embedded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The etcd revision `ETCD_PART` was read at: the one right after the same group commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_revision: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub name: String,
    pub records: u64,
    /// Size as stored (compressed).
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn part(&self, name: &str) -> Result<&Part, DockyardError> {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DockyardError::FailedPrecondition(format!("snapshot {}: the manifest lists no part {name}", self.id)))
    }

    pub fn parse(bytes: &[u8], at: &str) -> Result<Manifest, DockyardError> {
        // The format first, on its own: a newer manifest may not parse as this one.
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| DockyardError::FailedPrecondition(format!("{at}: not a snapshot manifest: {e}")))?;
        if head.format > FORMAT {
            return Err(DockyardError::FailedPrecondition(format!(
                "{at}: snapshot format {} is newer than this coordinator reads ({FORMAT}); restore it with the Dockyard that wrote it",
                head.format
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| DockyardError::FailedPrecondition(format!("{at}: corrupt manifest: {e}")))
    }
}

/// Encodes records as one part: each field length-prefixed, the whole zstd-compressed.
pub fn encode_part<'a>(fields_per_record: usize, records: impl Iterator<Item = Vec<&'a [u8]>>) -> Result<(Vec<u8>, u64), DockyardError> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).map_err(codec)?;
    let mut n = 0u64;
    for fields in records {
        debug_assert_eq!(fields.len(), fields_per_record);
        for f in fields {
            let len = u32::try_from(f.len()).map_err(|_| DockyardError::Internal("a record over 4 GiB".into()))?;
            std::io::Write::write_all(&mut enc, &len.to_be_bytes()).map_err(codec)?;
            std::io::Write::write_all(&mut enc, f).map_err(codec)?;
        }
        n += 1;
    }
    Ok((enc.finish().map_err(codec)?, n))
}

/// Decodes a part written by `encode_part` into records of `fields` fields each.
pub fn decode_part(bytes: &[u8], fields: usize, name: &str) -> Result<Vec<Vec<Vec<u8>>>, DockyardError> {
    let bad = |why: String| DockyardError::FailedPrecondition(format!("part {name}: {why}"));
    let mut dec = zstd::stream::read::Decoder::new(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    loop {
        let mut record = Vec::with_capacity(fields);
        for i in 0..fields {
            let mut len = [0u8; 4];
            match read_exact_or_eof(&mut dec, &mut len) {
                Ok(false) if i == 0 => return Ok(out),
                Ok(false) => return Err(bad("ends inside a record".into())),
                Ok(true) => {}
                Err(e) => return Err(bad(e.to_string())),
            }
            let mut field = vec![0u8; u32::from_be_bytes(len) as usize];
            dec.read_exact(&mut field).map_err(|e| bad(format!("ends inside a record: {e}")))?;
            record.push(field);
        }
        out.push(record);
    }
}

/// Fills `buf`; `false` on a clean end of input before its first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    Ok(true)
}

fn codec(e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Internal(format!("snapshot encoding: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_truncation_is_caught() {
        let recs: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![b'x'; i as usize % 7]))
            .collect();
        let (bytes, n) = encode_part(2, recs.iter().map(|(k, v)| vec![k.as_slice(), v.as_slice()])).expect("encode");
        assert_eq!(n, 1000);
        let back = decode_part(&bytes, 2, "p").expect("decode");
        assert_eq!(back.len(), 1000);
        assert_eq!(back[7], vec![recs[7].0.clone(), recs[7].1.clone()]);
        let e = decode_part(&bytes[..bytes.len() / 2], 2, "p").expect_err("truncated");
        assert!(e.to_string().contains("part p"), "{e}");
    }

    #[test]
    fn a_newer_format_is_refused_by_number() {
        let e = Manifest::parse(br#"{"format": 9, "whatever": true}"#, "s/manifest.json").expect_err("newer");
        assert!(e.to_string().contains("format 9 is newer"), "{e}");
        assert!(Manifest::parse(b"nonsense", "m").is_err());
    }
}
