//! Robustness checks on untrusted input, shared by the cargo-fuzz targets (`fuzz/`) and by
//! the unit test that replays their findings (`fuzz/regressions/<target>/`), so a plain
//! `cargo test` keeps every fixed crash fixed without a fuzzer or a nightly compiler.
//!
//! Each check feeds its bytes to the code that meets them in production and panics only
//! when that code misbehaves: a panic inside it, or an output that breaks an invariant the
//! callers rely on (gap-free record indices, bounded names and messages, records that read
//! back as themselves, keys that stay in their namespace).

use std::io::Cursor;

use prost::Message;

use crate::artifact::{ArtifactKey, ParsedKey, TaskFile};
use crate::ids::{JobId, OrgId, TaskId};
use crate::molecule::coords::atom_coords;
use crate::molecule::library::{MAX_NAME_CHARS, MAX_RECORD_BYTES};
use crate::molecule::{
    library_from_reader, parse_vina_poses, read_library_with, split_models, text_from_bytes, validate_ligand, validate_receptor,
    LibraryFormat, MolRecord, ReadLimits, RecordError, RecordErrorKind,
};
use crate::spec::{DockBox, DockParams, EngineKind, JobSpec};
use dockyard_proto::v1 as pb;

/// A check: feeds the bytes to the code under test, panics on misbehaviour.
pub type Check = fn(&[u8]);

/// Every fuzz target by name, as `fuzz/fuzz_targets/<name>.rs` calls it.
pub const TARGETS: &[(&str, Check)] = &[
    ("sdf", sdf),
    ("mol2", mol2),
    ("smiles", smiles),
    ("pdb", pdb),
    ("pdbqt", pdbqt),
    ("gzip_library", gzip_library),
    ("vina_poses", vina_poses),
    ("job_spec", job_spec),
    ("task_assignment", task_assignment),
];

/// Error reasons are generated text plus at most a short quote of the file.
const MAX_REASON_CHARS: usize = 600;

/// A small record cap, so that inputs of a few kilobytes reach the oversized-record path.
const SMALL_RECORD_BYTES: usize = 512;

pub fn sdf(data: &[u8]) {
    library(data, LibraryFormat::Sdf);
}

pub fn mol2(data: &[u8]) {
    library(data, LibraryFormat::Mol2);
}

pub fn smiles(data: &[u8]) {
    library(data, LibraryFormat::Smiles);
}

pub fn pdb(data: &[u8]) {
    library(data, LibraryFormat::Pdb);
}

/// The PDBQT library reader, and the receptor and ligand validators on the whole text.
pub fn pdbqt(data: &[u8]) {
    library(data, LibraryFormat::Pdbqt);
    if let Ok(text) = text_from_bytes(data) {
        for r in [validate_receptor(text).err(), validate_ligand(text).err()].into_iter().flatten() {
            check_reason(&r.reason);
        }
        for (name, body) in split_models(text) {
            assert!(name.is_none_or(|n| !n.is_empty()), "split_models: empty name");
            if let Err(e) = validate_ligand(&body) {
                check_reason(&e.reason);
            }
        }
        let _ = atom_coords(text, LibraryFormat::Pdbqt);
    }
}

/// One format byte, then a gzip stream read as `fuzz.<ext>.gz` under small caps.
pub fn gzip_library(data: &[u8]) {
    const FORMATS: [LibraryFormat; 5] = [
        LibraryFormat::Sdf,
        LibraryFormat::Mol2,
        LibraryFormat::Smiles,
        LibraryFormat::Pdb,
        LibraryFormat::Pdbqt,
    ];
    let Some((&pick, gz)) = data.split_first() else { return };
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let limits = ReadLimits {
        max_record_bytes: 64 * 1024,
        max_decompressed_bytes: 4 << 20,
        max_gzip_ratio: 100,
    };
    let name = format!("fuzz.{}.gz", format.extension());
    let (got, iter) = match library_from_reader(Cursor::new(gz.to_vec()), &name, limits) {
        Ok(x) => x,
        Err(e) => panic!("{name}: a known extension was refused: {e}"),
    };
    assert_eq!(got, format);
    let items: Vec<_> = iter.collect();
    check_items(&items, format, limits, true);
}

/// Vina output parsing, as the agent does on the engine's `--out` file.
pub fn vina_poses(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_vina_poses(text) {
        Ok(poses) => {
            assert!(!poses.is_empty(), "Ok without poses");
            for (i, p) in poses.iter().enumerate() {
                assert_eq!(p.rank as usize, i + 1, "ranks are 1-based and in file order");
                assert!(p.affinity.is_finite() && p.rmsd_lb.is_finite() && p.rmsd_ub.is_finite(), "{p:?}");
                let back = crate::molecule::Pose::from(&pb::Pose::from(p));
                assert_eq!(&back, p);
            }
        }
        Err(e) => check_reason(&e.reason),
    }
}

/// The JobSpec JSON the coordinator reads back from sled and (cluster mode) the artifact
/// store, then everything the scheduler derives from it.
pub fn job_spec(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<JobSpec>(data) else {
        return;
    };
    let tasks = spec.task_count();
    let docked = spec.docked_ligands();
    assert!(docked <= spec.ligands.len());
    let mut next = 0;
    // Bounded: a sleep job may claim ten million tasks.
    for i in 0..tasks.min(10_000) {
        let r = spec.task_ligands(i);
        assert!(r.start <= r.end && r.end <= docked, "task {i}: {r:?} of {docked}");
        if spec.engine != EngineKind::Sleep || !spec.ligands.is_empty() {
            assert_eq!(r.start, next, "task {i} does not follow the previous one");
            assert!(!r.is_empty(), "task {i} has no ligand");
            next = r.end;
        }
    }
    if tasks <= 10_000 && (spec.engine != EngineKind::Sleep || !spec.ligands.is_empty()) {
        assert_eq!(next, docked, "the tasks do not cover the docked ligands");
    }
    let _ = spec.needs_preparation();
    let _ = spec.task_memory_bytes();
    let _ = spec.dock_box.validate();
    let _ = spec.dock_box.to_proto();
    let _ = OrgId::parse(spec.org.as_str());
    let json = serde_json::to_vec(&spec).expect("a decoded spec serialises");
    let again: JobSpec = serde_json::from_slice(&json).expect("a serialised spec decodes");
    assert_eq!(again.ligands, spec.ligands);
    assert_eq!(again.task_count(), tasks);
}

/// What an agent receives: the stream envelope and a bare assignment, then the checks the
/// agent applies before running (ids, artifact keys it reads and writes, box and params).
pub fn task_assignment(data: &[u8]) {
    if let Ok(m) = pb::CoordinatorMessage::decode(data) {
        if let Some(pb::coordinator_message::Kind::Assign(a)) = &m.kind {
            a.tasks.iter().for_each(assignment);
        }
        reencodes_stably(&m);
    }
    if let Ok(a) = pb::TaskAssignment::decode(data) {
        assignment(&a);
        reencodes_stably(&a);
    }
}

/// A decoded message re-encodes to bytes that decode and re-encode to the same bytes.
/// Compared as bytes, not with `==`: a double field can be NaN, which is not equal to itself
/// (fuzz/regressions/task_assignment/nan-box.bin).
fn reencodes_stably<M: Message + Default>(m: &M) {
    let bytes = m.encode_to_vec();
    let again = M::decode(bytes.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), bytes, "re-encoding is not stable");
}

fn assignment(a: &pb::TaskAssignment) {
    if let Ok(t) = TaskId::parse(&a.task_id) {
        assert_eq!(t.to_string(), a.task_id);
        assert_eq!(TaskId::from_key(&t.to_key()), Some(t));
    }
    let _ = JobId::parse(&a.job_id);
    let _ = OrgId::parse(&a.org);
    let _ = EngineKind::parse(&a.engine);
    let refs = a.receptor.iter().chain(a.ligands.iter().filter_map(|l| l.artifact.as_ref()));
    for r in refs {
        key(&r.key);
        let _ = LibraryFormat::from_name(&format!("x.{}", r.format));
    }
    for l in &a.ligands {
        // The keys the agent writes its outputs under.
        for file in [TaskFile::PosesPdbqt(l.index), TaskFile::PosesSdf(l.index), TaskFile::EngineLog] {
            if let Ok(k) = ArtifactKey::task_file(&a.output_prefix, file) {
                key(k.as_str());
            }
        }
    }
    if let Some(b) = &a.r#box {
        let (c, s) = (b.center.unwrap_or_default(), b.size.unwrap_or_default());
        let _ = DockBox {
            center: [c.x, c.y, c.z],
            size: [s.x, s.y, s.z],
        }
        .validate();
    }
    // What the agent reads the engine and its parameters with; what it accepts must cross
    // the wire back unchanged.
    if let Ok(engine) = EngineKind::parse(&a.engine) {
        if let Ok(p) = DockParams::from_proto(engine, a.params.as_ref()) {
            let again = DockParams::from_proto(engine, Some(&p.to_proto()));
            assert!(again.as_ref().is_ok_and(|q| q.to_proto() == p.to_proto()), "{p:?} -> {again:?}");
        }
    }
}

/// A key that validates stays inside the store: no absolute path, no `..`, no odd bytes.
fn key(k: &str) {
    if let Ok(key) = ArtifactKey::new(k) {
        let s = key.as_str();
        assert!(!s.starts_with('/') && !s.ends_with('/') && s.len() <= 1024, "{s:?}");
        assert!(s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."), "{s:?}");
        assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{s:?}");
        // A key whose layout is read gives back exactly itself when rebuilt from its parts.
        if let Ok(parsed) = ParsedKey::of(&key) {
            assert_eq!(parsed.key(), key);
        }
    }
}

/// Reads `data` as an in-memory library with the default caps and with a small record cap.
fn library(data: &[u8], format: LibraryFormat) {
    for max_record_bytes in [MAX_RECORD_BYTES, SMALL_RECORD_BYTES] {
        let limits = ReadLimits {
            max_record_bytes,
            ..ReadLimits::default()
        };
        let items: Vec<_> = read_library_with(data, format, "fuzz", limits).collect();
        check_items(&items, format, limits, false);
    }
}

fn check_items(items: &[Result<MolRecord, RecordError>], format: LibraryFormat, limits: ReadLimits, gzip: bool) {
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(r) => {
                assert_eq!(r.index, i, "record indices have a gap");
                assert_eq!(r.format, format);
                assert!(r.line >= 1);
                check_name(&r.name);
                assert!(r.text.ends_with('\n'), "record text is not newline-terminated: {:?}", r.text);
                // SDF records at EOF get the "$$$$\n" terminator appended.
                assert!(
                    r.text.len() <= limits.max_record_bytes + 5,
                    "record over the cap: {} bytes",
                    r.text.len()
                );
                let _ = atom_coords(&r.text, format);
                reads_back_as_itself(r);
            }
            Err(e) => {
                assert_eq!(e.index, i, "record indices have a gap");
                assert!(e.line >= 1, "{e:?}");
                check_name(&e.name);
                check_reason(&e.reason);
                if e.ends_file() {
                    assert_eq!(i + 1, items.len(), "records after an error that ends the file");
                    assert!(gzip, "an in-memory read cannot fail: {e:?}");
                }
                if e.kind == RecordErrorKind::TooLarge {
                    assert!(e.reason.contains(&limits.max_record_bytes.to_string()), "{e}");
                }
            }
        }
    }
}

/// The coordinator stores each record as its own one-record file: that file must read
/// back as one valid record of the same size.
fn reads_back_as_itself(r: &MolRecord) {
    let again: Vec<_> = read_library_with(r.text.as_bytes(), r.format, "again", ReadLimits::default()).collect();
    match again.as_slice() {
        [Ok(back)] => assert_eq!(back.atoms, r.atoms, "record re-read with another atom count: {:?}", r.text),
        other => panic!("record does not read back as one record: {:?} -> {other:?}", r.text),
    }
}

fn check_name(name: &str) {
    assert!(!name.is_empty(), "empty record name");
    assert!(
        name.chars().count() <= MAX_NAME_CHARS + 3,
        "record name of {} characters",
        name.chars().count()
    );
}

fn check_reason(reason: &str) {
    assert!(!reason.is_empty(), "empty error reason");
    assert!(
        reason.chars().count() <= MAX_REASON_CHARS,
        "error reason of {} characters",
        reason.chars().count()
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::TARGETS;

    /// Replays every input kept under `fuzz/regressions/<target>/` (findings, fixed) and
    /// `fuzz/seeds/<target>/` (the starting corpus) through its check.
    #[test]
    fn fuzz_regressions_and_seeds_replay() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for (name, check) in TARGETS {
            for kind in ["regressions", "seeds"] {
                let dir = root.join(kind).join(name);
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let outcome = std::panic::catch_unwind(|| check(&data));
                    assert!(outcome.is_ok(), "{name}: {} fails again", path.display());
                    replayed += 1;
                }
            }
        }
        assert!(replayed > 0, "no input found under {}", root.display());
    }
}
