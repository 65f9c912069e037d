//! Reading the receptor and the ligand library record by record, storing the valid ligand
//! records in content-addressed packs while the file streams in.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use dockyard_common::artifact::{sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::digest::Sha256;
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::molecule::coords::atom_coords;
use dockyard_common::molecule::{
    open_library_with, read_library, validate_receptor, FileLimit, LibraryFormat, MolRecord, ReadLimits, RecordError, RecordErrorKind,
};
use dockyard_common::spec::InputRef;
use dockyard_proto::v1 as pb;

use super::{check_whole_file_size, display_name, flag_hint, input_size, materialise, SubmitLimits};

/// Errors listed in a rejection; the rest are counted.
const MAX_LISTED_ERRORS: usize = 5;
/// Skipped records kept for the job report; the rest are counted.
const MAX_KEPT_SKIPS: usize = 1000;
const FORMATS: &str = ".pdbqt, .sdf, .mol2, .smi, .pdb (optionally .gz)";

pub struct ReceptorInput {
    name: String,
    format: LibraryFormat,
    bytes: Bytes,
    pub coords: Vec<[f64; 3]>,
}

pub async fn read_receptor(
    f: &pb::InputFile,
    org: &OrgId,
    store: &dyn ArtifactStore,
    dir: &Path,
    limits: &SubmitLimits,
) -> Result<ReceptorInput, DockyardError> {
    let name = display_name(&f.name);
    let format = match LibraryFormat::from_name(&name) {
        Some(fmt @ (LibraryFormat::Pdbqt | LibraryFormat::Pdb)) if !name.to_ascii_lowercase().ends_with(".gz") => fmt,
        _ => {
            return Err(DockyardError::invalid(
                "receptor",
                format!("'{name}' must be a .pdbqt or .pdb file"),
            ))
        }
    };
    check_whole_file_size("receptor", f, org, store, limits).await?;
    let path = materialise("receptor", f, org, store, dir).await?;
    let bytes = Bytes::from(tokio::fs::read(&path).await?);
    let text = std::str::from_utf8(&bytes).map_err(|e| DockyardError::invalid("receptor", format!("'{name}' is not a text file ({e})")))?;
    match format {
        LibraryFormat::Pdbqt => {
            validate_receptor(text).map_err(|e| DockyardError::invalid("receptor", format!("'{name}' {e}")))?;
        }
        _ => match read_library(std::io::Cursor::new(text.as_bytes()), LibraryFormat::Pdb, "receptor").next() {
            Some(Ok(r)) if r.atoms > 0 => {}
            Some(Err(e)) => {
                return Err(DockyardError::invalid(
                    "receptor",
                    format!("'{name}' line {}: {}", e.line, e.reason),
                ))
            }
            _ => return Err(DockyardError::invalid("receptor", format!("'{name}' has no atoms"))),
        },
    }
    let coords = atom_coords(text, format);
    Ok(ReceptorInput {
        name,
        format,
        bytes,
        coords,
    })
}

pub async fn store_receptor(r: ReceptorInput, org: &OrgId, store: &dyn ArtifactStore) -> Result<InputRef, DockyardError> {
    let key = ArtifactKey::input(org, &sha256_hex(&r.bytes))?;
    let size = r.bytes.len() as u64;
    store.put(&key, r.bytes).await?;
    Ok(InputRef {
        name: r.name,
        key: key.to_string().into(),
        size,
        format: r.format.extension().into(),
        offset: None,
        record_sha: None,
    })
}

pub struct Stored {
    pub ligands: Vec<InputRef>,
    pub skipped: Vec<pb::SkippedRecord>,
    pub skipped_total: u32,
    /// The record objects this submission added to the store: the caller keeps them once
    /// the whole submission is valid, or deletes them.
    pub(crate) created: Created,
}

/// Objects a submission stored that did not exist before. Deleted again unless kept: on a
/// rejection right away, and when the request is abandoned midway (its future dropped at an
/// `.await`, so no code after it runs) from the drop, on a spawned task.
pub(crate) struct Created {
    store: Arc<dyn ArtifactStore>,
    keys: Vec<ArtifactKey>,
    /// The put under way, on its own task so that it is never dropped halfway (a store
    /// write cut off at an `.await` can leave a temporary file behind).
    in_flight: Option<tokio::task::JoinHandle<Result<(), DockyardError>>>,
}

impl Created {
    fn new(store: Arc<dyn ArtifactStore>) -> Self {
        Created {
            store,
            keys: Vec::new(),
            in_flight: None,
        }
    }

    /// Stores a new object, tracked before it is written: if the request is abandoned
    /// meanwhile, the drop waits for the put and then deletes what it wrote.
    async fn put(&mut self, key: ArtifactKey, body: Bytes) -> Result<(), DockyardError> {
        self.keys.push(key.clone());
        let store = Arc::clone(&self.store);
        let handle = self
            .in_flight
            .insert(tokio::spawn(async move { store.put(&key, body).await.map(|_| ()) }));
        let result = handle.await;
        self.in_flight = None;
        result.unwrap_or_else(|e| Err(DockyardError::Internal(format!("storing a ligand record: {e}"))))
    }

    /// The submission is complete: the objects stay.
    pub(crate) fn keep(mut self) {
        self.keys.clear();
    }

    pub(crate) async fn delete_all(mut self) {
        for k in std::mem::take(&mut self.keys) {
            let _ = self.store.delete(&k).await;
        }
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let in_flight = self.in_flight.take();
        if keys.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            rt.spawn(async move {
                if let Some(put) = in_flight {
                    let _ = put.await;
                }
                for k in keys {
                    let _ = store.delete(&k).await;
                }
            });
        }
    }
}

/// A pack is stored once it holds this many bytes or records: a few hundred objects for a
/// million-ligand screen, each small enough that an agent fetching it for one task of a
/// few ligands wastes little (it keeps the pack in its input cache for the next task).
const PACK_BYTES: usize = 1 << 20;
const PACK_RECORDS: usize = 4096;

/// The records read since the last pack was stored; the last `members` ligands of
/// `Stored::ligands` point into it, their keys still empty.
#[derive(Default)]
struct Pack {
    body: Vec<u8>,
    members: usize,
}

impl Pack {
    fn is_full(&self) -> bool {
        self.body.len() >= PACK_BYTES || self.members >= PACK_RECORDS
    }

    /// Stores the pack under its content hash (unless an identical one is stored already)
    /// and gives its members their key.
    async fn flush(
        &mut self,
        org: &OrgId,
        store: &Arc<dyn ArtifactStore>,
        seen: &mut HashSet<String>,
        out: &mut Stored,
    ) -> Result<(), DockyardError> {
        if self.members == 0 {
            return Ok(());
        }
        let body = Bytes::from(std::mem::take(&mut self.body));
        let key = ArtifactKey::input(org, &sha256_hex(&body))?;
        if seen.insert(key.to_string()) && store.head(&key).await?.is_none() {
            out.created.put(key.clone(), body).await?;
        }
        let from = out.ligands.len() - self.members;
        let key: Arc<str> = key.to_string().into();
        for l in &mut out.ligands[from..] {
            l.key = Arc::clone(&key);
        }
        self.members = 0;
        Ok(())
    }
}

enum Item {
    Record(usize, MolRecord),
    Bad(usize, RecordError),
    /// The file itself could not be read (unknown format, I/O error).
    File(usize, String),
}

/// Streams every ligand file record by record (on a blocking thread) and stores each valid
/// record as it arrives. Without `skip_invalid` the first invalid record rejects the job and
/// every object this call created is deleted again.
pub async fn store_ligands(
    files: &[pb::InputFile],
    skip_invalid: bool,
    org: &OrgId,
    store: Arc<dyn ArtifactStore>,
    dir: &Path,
    limits: &SubmitLimits,
) -> Result<Stored, DockyardError> {
    let mut names = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for (i, f) in files.iter().enumerate() {
        let name = display_name(&f.name);
        if LibraryFormat::from_name(&name).is_none() {
            return Err(DockyardError::invalid(
                format!("ligands[{i}]"),
                format!("'{name}': unknown format; use {FORMATS}"),
            ));
        }
        // Summed before anything is copied to the scratch folder.
        total = total.saturating_add(input_size(&format!("ligands[{i}]"), f, org, store.as_ref()).await?);
        if total > limits.max_library_bytes {
            return Err(DockyardError::invalid(
                "ligands",
                format!(
                    "the library files add up to more than the {}-byte limit (at '{name}', ligands[{i}]); split the screen into several jobs or raise {}",
                    limits.max_library_bytes,
                    flag_hint("max-library-bytes")
                ),
            ));
        }
        names.push(name);
    }
    let mut paths = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        paths.push(materialise(&format!("ligands[{i}]"), f, org, store.as_ref(), dir).await?);
    }
    let read_limits = ReadLimits {
        max_record_bytes: limits.max_record_bytes,
        max_decompressed_bytes: limits.max_decompressed_bytes,
        max_gzip_ratio: limits.max_gzip_ratio,
    };
    let (tx, mut rx) = mpsc::channel::<Item>(256);
    let reader = tokio::task::spawn_blocking(move || {
        for (i, path) in paths.iter().enumerate() {
            let iter = match open_library_with(path, read_limits) {
                Ok((_, iter)) => iter,
                Err(e) => {
                    let _ = tx.blocking_send(Item::File(i, e.to_string()));
                    return;
                }
            };
            for item in iter {
                let msg = match item {
                    Ok(r) => Item::Record(i, r),
                    Err(e) => Item::Bad(i, e),
                };
                if tx.blocking_send(msg).is_err() {
                    // The submission was rejected; stop reading.
                    return;
                }
            }
        }
    });

    let mut seen: HashSet<String> = HashSet::new();
    let unset: Arc<str> = Arc::from("");
    let mut pack = Pack::default();
    let mut out = Stored {
        ligands: Vec::new(),
        skipped: Vec::new(),
        skipped_total: 0,
        created: Created::new(Arc::clone(&store)),
    };
    // Per file: (first ligand position, records seen), to name a lone untitled record after its file.
    let mut per_file: Vec<(usize, usize)> = vec![(usize::MAX, 0); names.len()];
    let mut errors: Vec<String> = Vec::new();
    let mut failure: Option<DockyardError> = None;
    while let Some(item) = rx.recv().await {
        match item {
            Item::Record(i, r) => {
                let slot = &mut per_file[i];
                if slot.0 == usize::MAX {
                    slot.0 = out.ligands.len();
                }
                slot.1 += 1;
                let size = r.text.len() as u64;
                let format = match out.ligands.last() {
                    Some(l) if &*l.format == r.format.extension() => Arc::clone(&l.format),
                    _ => r.format.extension().into(),
                };
                out.ligands.push(InputRef {
                    name: r.name,
                    // Set when the pack is stored.
                    key: Arc::clone(&unset),
                    size,
                    format,
                    offset: Some(pack.body.len() as u64),
                    record_sha: Some(Sha256::of(r.text.as_bytes())),
                });
                pack.body.extend_from_slice(r.text.as_bytes());
                pack.members += 1;
                if pack.is_full() {
                    if let Err(e) = pack.flush(org, &store, &mut seen, &mut out).await {
                        failure = Some(e);
                        break;
                    }
                }
            }
            Item::Bad(i, e) if e.ends_file() => {
                // The rest of the file was never read: not a record that can be skipped.
                let hint = match e.kind {
                    RecordErrorKind::Limit(FileLimit::GzipRatio(_)) => {
                        format!("; refused (a genuine file needs {} raised)", flag_hint("max-gzip-ratio"))
                    }
                    RecordErrorKind::Limit(FileLimit::DecompressedBytes(_)) => {
                        format!("; refused (a larger file needs {} raised)", flag_hint("max-decompressed-bytes"))
                    }
                    _ => String::new(),
                };
                failure = Some(DockyardError::invalid(
                    format!("ligands[{i}]"),
                    format!("'{}' line {}: {}{hint}", names[i], e.line, e.reason),
                ));
                break;
            }
            Item::Bad(i, mut e) => {
                if e.kind == RecordErrorKind::TooLarge {
                    e.reason = format!("{} (set by {})", e.reason, flag_hint("max-record-bytes"));
                }
                let text = format!("'{}' line {}, record {} '{}': {}", names[i], e.line, e.index + 1, e.name, e.reason);
                if skip_invalid {
                    out.skipped_total += 1;
                    if out.skipped.len() < MAX_KEPT_SKIPS {
                        out.skipped.push(pb::SkippedRecord {
                            file: names[i].clone(),
                            record: (e.index + 1) as u32,
                            name: e.name,
                            line: e.line as u32,
                            reason: e.reason,
                        });
                    }
                } else {
                    errors.push(format!("ligands[{i}]: {text}"));
                    if errors.len() >= MAX_LISTED_ERRORS {
                        break;
                    }
                }
            }
            Item::File(i, e) => {
                failure = Some(DockyardError::invalid(format!("ligands[{i}]"), format!("'{}': {e}", names[i])));
                break;
            }
        }
    }
    drop(rx);
    let _ = reader.await;
    if failure.is_none() {
        if let Err(e) = pack.flush(org, &store, &mut seen, &mut out).await {
            failure = Some(e);
        }
    }
    if failure.is_none() && !errors.is_empty() {
        let field = errors[0].split(':').next().unwrap_or("ligands").to_string();
        let listed: Vec<String> = errors
            .iter()
            .map(|e| e.split_once(": ").map(|(_, r)| r.to_string()).unwrap_or_else(|| e.clone()))
            .collect();
        let more = if errors.len() >= MAX_LISTED_ERRORS {
            " (first errors shown; fix them or submit with skip_invalid)"
        } else {
            ""
        };
        failure = Some(DockyardError::invalid(field, format!("{}{more}", listed.join("; "))));
    }
    for (i, (first, count)) in per_file.iter().enumerate() {
        let stem = names[i].split('.').next().unwrap_or("");
        if *count == 1 && !stem.is_empty() {
            if let Some(l) = out.ligands.get_mut(*first) {
                if l.name == format!("{stem}_1") {
                    l.name = stem.to_string();
                }
            }
        }
    }
    if failure.is_none() && out.ligands.is_empty() {
        failure = Some(DockyardError::invalid(
            "ligands",
            format!("the library has no valid ligand ({} skipped)", out.skipped_total),
        ));
    }
    if let Some(e) = failure {
        // Nothing half-submitted is left behind.
        out.created.delete_all().await;
        return Err(e);
    }
    Ok(out)
}
