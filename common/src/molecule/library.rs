//! Streaming readers for molecule libraries (SDF, MOL2, SMILES, PDB, PDBQT, optionally gzipped).
//!
//! A library can hold millions of molecules, so records are produced one at a time and only
//! the current record is ever held in memory. One bad molecule must not sink a screening
//! campaign: each record is validated on its own and a broken one becomes an `Err` item,
//! after which reading resumes at the next record boundary the format offers.

mod gzip;
mod mol2;
mod pdb;
mod pdbqt_records;
mod sdf;
mod smiles;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::clip;

/// Longest accepted line. Real molecule files have short lines; the cap keeps a binary
/// file without newlines from being buffered whole.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Largest accepted record by default; above this a single "molecule" is garbage or not a ligand.
pub const MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;

/// Longest record name kept (characters). Names come from the file (an SDF title line can
/// be a megabyte of junk) and end up in job specs, reports and gRPC status messages.
pub const MAX_NAME_CHARS: usize = 200;

/// Longest error reason kept (characters); a backstop for reasons that quote the file.
const MAX_REASON_CHARS: usize = 500;

/// Below this many decompressed bytes the gzip ratio is not checked: a tiny file of
/// repetitive text has a high ratio and is harmless, and a bomb is caught at this size.
pub const GZIP_RATIO_GRACE_BYTES: u64 = 1 << 20;

/// What reading one library file may cost. Record size is a property of one molecule (an
/// oversized record is an invalid record and reading goes on); the gzip caps are about the
/// file as a whole (reading stops: see [`RecordErrorKind::Limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest record, in bytes of text.
    pub max_record_bytes: usize,
    /// Most bytes a gzip file may expand to.
    pub max_decompressed_bytes: u64,
    /// Most decompressed bytes per compressed byte of a gzip file, checked once
    /// [`GZIP_RATIO_GRACE_BYTES`] have come out. Molecule text compresses 3-10 fold; a
    /// file of zeros, 1000 fold.
    pub max_gzip_ratio: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_record_bytes: MAX_RECORD_BYTES,
            max_decompressed_bytes: 32 << 30,
            max_gzip_ratio: 100,
        }
    }
}

/// A cap on a whole file that reading ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileLimit {
    /// [`ReadLimits::max_decompressed_bytes`].
    #[error("gzip data expands to more than {0} bytes")]
    DecompressedBytes(u64),
    /// [`ReadLimits::max_gzip_ratio`].
    #[error("gzip data expands more than {0} times its compressed size (a gzip bomb?)")]
    GzipRatio(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LibraryFormat {
    Pdbqt,
    Sdf,
    Mol2,
    Smiles,
    Pdb,
}

impl LibraryFormat {
    /// Picks the format from a file name, ignoring case and a trailing `.gz`.
    pub fn from_name(file_name: &str) -> Option<Self> {
        let lower = file_name.to_ascii_lowercase();
        let base = lower.strip_suffix(".gz").unwrap_or(&lower);
        let (_, ext) = base.rsplit_once('.')?;
        match ext {
            "sdf" | "sd" | "mol" => Some(Self::Sdf),
            "mol2" => Some(Self::Mol2),
            "smi" | "smiles" => Some(Self::Smiles),
            "pdb" | "ent" => Some(Self::Pdb),
            "pdbqt" => Some(Self::Pdbqt),
            _ => None,
        }
    }

    /// Conventional extension (no dot), for writing a record out as its own file.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Pdbqt => "pdbqt",
            Self::Sdf => "sdf",
            Self::Mol2 => "mol2",
            Self::Smiles => "smi",
            Self::Pdb => "pdb",
        }
    }
}

/// One molecule of a library.
#[derive(Debug, Clone, PartialEq)]
pub struct MolRecord {
    /// 0-based position in the file, counting bad records too, so indices stay stable.
    pub index: usize,
    /// Title from the file, or `<stem>_<index+1>` when the file has none.
    pub name: String,
    /// 1-based line where the record starts.
    pub line: usize,
    pub format: LibraryFormat,
    /// The record's own text, newline-terminated, ready to write as a one-record file.
    pub text: String,
    pub smiles: Option<String>,
    pub atoms: usize,
}

/// A record that failed validation, or a read failure (which ends the iteration).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {} '{}' line {}: {}", .index + 1, .name, .line, .reason)]
pub struct RecordError {
    /// 0-based, like [`MolRecord::index`].
    pub index: usize,
    pub name: String,
    /// 1-based line of the problem where known, else the record's first line.
    pub line: usize,
    pub reason: String,
    pub kind: RecordErrorKind,
}

/// Whether reading goes on after a [`RecordError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordErrorKind {
    /// A malformed record; reading goes on with the next one.
    #[default]
    Invalid,
    /// A record over [`ReadLimits::max_record_bytes`]; reading goes on with the next one.
    TooLarge,
    /// The file cannot be read on (I/O error, corrupt gzip data); the iteration ends.
    Unreadable,
    /// The file breaks a cap on the whole file; the iteration ends.
    Limit(FileLimit),
}

impl RecordError {
    /// True when this error ends the iteration: the rest of the file was never read, so
    /// skipping this "record" would silently drop an unknown part of the library.
    pub fn ends_file(&self) -> bool {
        matches!(self.kind, RecordErrorKind::Unreadable | RecordErrorKind::Limit(_))
    }
}

/// Reads `reader` record by record. `stem` names untitled records (`<stem>_<n>`).
///
/// A bad record yields `Err` and reading goes on with the next record; an I/O error yields
/// one `Err` and ends the iteration.
pub fn read_library<R: BufRead>(reader: R, format: LibraryFormat, stem: &str) -> impl Iterator<Item = Result<MolRecord, RecordError>> {
    LibraryReader::new(reader, format, stem, ReadLimits::default())
}

/// [`read_library`] with a record size cap other than [`MAX_RECORD_BYTES`] (the gzip caps
/// of `limits` apply where the caller gunzips: [`library_from_reader`]).
pub fn read_library_with<R: BufRead>(
    reader: R,
    format: LibraryFormat,
    stem: &str,
    limits: ReadLimits,
) -> impl Iterator<Item = Result<MolRecord, RecordError>> {
    LibraryReader::new(reader, format, stem, limits)
}

/// The boxed iterator returned by [`open_library`].
pub type RecordIter = Box<dyn Iterator<Item = Result<MolRecord, RecordError>> + Send>;

/// Opens a library file, picking the format from its name and gunzipping `.gz` files.
pub fn open_library(path: &Path) -> io::Result<(LibraryFormat, RecordIter)> {
    open_library_with(path, ReadLimits::default())
}

/// [`open_library`] under `limits`.
pub fn open_library_with(path: &Path, limits: ReadLimits) -> io::Result<(LibraryFormat, RecordIter)> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    // Checked before opening, so an unknown extension is reported as such even for a missing file.
    format_of(path, file_name)?;
    library_from_reader(File::open(path)?, file_name, limits)
}

/// Reads a library from `reader`, with the format (and gzip) taken from `file_name` as
/// [`open_library`] does.
pub fn library_from_reader<R: Read + Send + 'static>(
    reader: R,
    file_name: &str,
    limits: ReadLimits,
) -> io::Result<(LibraryFormat, RecordIter)> {
    let format = format_of(Path::new(file_name), file_name)?;
    let stem = library_stem(file_name);
    let iter: RecordIter = if file_name.to_ascii_lowercase().ends_with(".gz") {
        let guarded = gzip::GuardedGzip::new(BufReader::new(reader), limits);
        Box::new(read_library_with(BufReader::new(guarded), format, &stem, limits))
    } else {
        Box::new(read_library_with(BufReader::new(reader), format, &stem, limits))
    };
    Ok((format, iter))
}

fn format_of(path: &Path, file_name: &str) -> io::Result<LibraryFormat> {
    LibraryFormat::from_name(file_name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: unknown molecule library extension (expected .sdf, .mol2, .smi, .pdb, .pdbqt, optionally .gz)",
                path.display()
            ),
        )
    })
}

/// File name without directory, `.gz` and the format extension: `lib.sdf.gz` -> `lib`.
fn library_stem(file_name: &str) -> String {
    let lower = file_name.to_ascii_lowercase();
    let mut end = file_name.len();
    if lower.ends_with(".gz") {
        end -= 3;
    }
    let base = &file_name[..end];
    match base.rfind('.') {
        Some(dot) if dot > 0 => base[..dot].to_string(),
        _ => base.to_string(),
    }
}

/// One physical line; bad lines are kept as markers so line numbers stay exact.
enum LineText {
    Text(String),
    TooLong,
    NotText(&'static str),
}

struct LineReader<R> {
    reader: R,
    line_no: usize,
    /// Longest line kept: [`MAX_LINE_BYTES`], or less when records are capped lower.
    max_line: usize,
}

impl<R: BufRead> LineReader<R> {
    fn next_line(&mut self) -> io::Result<Option<LineText>> {
        let mut buf: Vec<u8> = Vec::new();
        let mut too_long = false;
        let mut any = false;
        loop {
            let (take, found) = {
                let avail = match self.reader.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if avail.is_empty() {
                    break;
                }
                let (take, found) = match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (avail.len(), false),
                };
                if !too_long {
                    // +2 leaves room for the "\r\n" that is stripped below.
                    if buf.len() + take > self.max_line + 2 {
                        too_long = true;
                        buf = Vec::new();
                    } else {
                        buf.extend_from_slice(&avail[..take]);
                    }
                }
                (take, found)
            };
            any = true;
            self.reader.consume(take);
            if found {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        if too_long {
            return Ok(Some(LineText::TooLong));
        }
        // A UTF-8 byte-order mark (Windows editors) is not part of the first record.
        if self.line_no == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
            buf.drain(..3);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.len() > self.max_line {
            return Ok(Some(LineText::TooLong));
        }
        if buf.contains(&0) {
            return Ok(Some(LineText::NotText("NUL byte (binary file?)")));
        }
        Ok(Some(match String::from_utf8(buf) {
            Ok(s) => LineText::Text(s),
            Err(_) => LineText::NotText("not UTF-8 text (binary or compressed file?)"),
        }))
    }
}

/// The lines of one record, collected before validation.
pub(crate) struct Chunk {
    /// 1-based file line of `lines[0]`.
    pub first_line: usize,
    pub lines: Vec<String>,
    bytes: usize,
    /// First unreadable line or size overflow: the record is an error whatever it holds.
    problem: Option<Problem>,
}

/// Why a record is an error before it is parsed.
struct Problem {
    line: usize,
    reason: String,
    kind: RecordErrorKind,
}

impl Chunk {
    fn new(first_line: usize) -> Self {
        Self {
            first_line,
            lines: Vec::new(),
            bytes: 0,
            problem: None,
        }
    }

    fn push(&mut self, line_no: usize, text: LineText, max_record_bytes: usize) {
        if self.lines.is_empty() && self.problem.is_none() {
            self.first_line = line_no;
        }
        if self.problem.is_some() {
            // Once broken, only the boundary matters; storing more would defeat the size cap.
            return;
        }
        let too_large = || Problem {
            line: line_no,
            reason: format!("record larger than the {max_record_bytes}-byte limit"),
            kind: RecordErrorKind::TooLarge,
        };
        match text {
            LineText::Text(s) => {
                self.bytes += s.len() + 1;
                if self.bytes > max_record_bytes {
                    self.problem = Some(too_large());
                } else {
                    self.lines.push(s);
                }
            }
            // The line cap is the record cap when that is lower: then the record is too large.
            LineText::TooLong if max_record_bytes <= MAX_LINE_BYTES => self.problem = Some(too_large()),
            LineText::TooLong => {
                self.problem = Some(Problem {
                    line: line_no,
                    reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
                    kind: RecordErrorKind::Invalid,
                })
            }
            LineText::NotText(why) => {
                self.problem = Some(Problem {
                    line: line_no,
                    reason: why.to_string(),
                    kind: RecordErrorKind::Invalid,
                })
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.problem.is_none()
    }

    /// 1-based file line of `lines[i]`.
    pub fn line_no(&self, i: usize) -> usize {
        self.first_line + i
    }

    /// The record text, newline-terminated.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.bytes);
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    pub fn is_blank(&self) -> bool {
        self.problem.is_none() && self.lines.iter().all(|l| l.trim().is_empty())
    }
}

/// Where a line falls relative to record boundaries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Boundary {
    Inside,
    /// The line starts a new record (ignored when the current record is still empty).
    Starts,
    /// The line is the last of the current record.
    Ends,
}

/// What a format reader extracts from a valid record.
pub(crate) struct Parsed {
    pub name: Option<String>,
    pub text: String,
    pub smiles: Option<String>,
    pub atoms: usize,
}

/// A validation failure: 1-based file line (0 for "the record's first line") and reason.
pub(crate) type Failure = (usize, String);

pub(crate) trait RecordFormat {
    /// Classifies a line; `text` is empty for unreadable lines.
    fn boundary(&mut self, text: &str) -> Boundary;
    /// Forgets per-record state when a new record begins.
    fn reset(&mut self);
    /// Chunks that are not records at all (blank separators, comments, trailers).
    fn skip(&self, chunk: &Chunk) -> bool {
        chunk.is_blank()
    }
    /// Best-effort title, also used to name failed records.
    fn title(&self, chunk: &Chunk) -> Option<String>;
    fn parse(&self, chunk: &Chunk) -> Result<Parsed, Failure>;
}

struct LibraryReader<R> {
    lines: LineReader<R>,
    limits: ReadLimits,
    format: LibraryFormat,
    splitter: Box<dyn RecordFormat + Send>,
    stem: String,
    chunk: Chunk,
    pending: Option<(usize, LineText)>,
    index: usize,
    done: bool,
}

impl<R: BufRead> LibraryReader<R> {
    fn new(reader: R, format: LibraryFormat, stem: &str, limits: ReadLimits) -> Self {
        let splitter: Box<dyn RecordFormat + Send> = match format {
            LibraryFormat::Sdf => Box::new(sdf::SdfFormat),
            LibraryFormat::Mol2 => Box::new(mol2::Mol2Format),
            LibraryFormat::Smiles => Box::new(smiles::SmilesFormat),
            LibraryFormat::Pdb => Box::new(pdb::PdbFormat::default()),
            LibraryFormat::Pdbqt => Box::new(pdbqt_records::PdbqtFormat::default()),
        };
        Self {
            lines: LineReader {
                reader,
                line_no: 0,
                max_line: MAX_LINE_BYTES.min(limits.max_record_bytes),
            },
            limits,
            format,
            splitter,
            stem: stem.to_string(),
            chunk: Chunk::new(1),
            pending: None,
            index: 0,
            done: false,
        }
    }

    fn default_name(&self) -> String {
        format!("{}_{}", self.stem, self.index + 1)
    }

    /// Turns the finished chunk into an item, or `None` when it is not a record.
    fn finish(&mut self) -> Option<Result<MolRecord, RecordError>> {
        let chunk = std::mem::replace(&mut self.chunk, Chunk::new(self.lines.line_no + 1));
        self.splitter.reset();
        if chunk.is_empty() || self.splitter.skip(&chunk) {
            return None;
        }
        let title = self.splitter.title(&chunk).filter(|t| !t.is_empty());
        let name = title.map(|t| clip(&t, MAX_NAME_CHARS)).unwrap_or_else(|| self.default_name());
        let result = match &chunk.problem {
            Some(p) => Err(RecordError {
                index: self.index,
                name,
                line: p.line,
                reason: p.reason.clone(),
                kind: p.kind,
            }),
            None => match self.splitter.parse(&chunk) {
                Ok(parsed) => Ok(MolRecord {
                    index: self.index,
                    name: parsed
                        .name
                        .filter(|n| !n.is_empty())
                        .map(|n| clip(&n, MAX_NAME_CHARS))
                        .unwrap_or(name),
                    line: chunk.first_line,
                    format: self.format,
                    text: parsed.text,
                    smiles: parsed.smiles,
                    atoms: parsed.atoms,
                }),
                Err((line, reason)) => Err(RecordError {
                    index: self.index,
                    name,
                    line: if line == 0 { chunk.first_line } else { line },
                    reason: clip(&reason, MAX_REASON_CHARS),
                    kind: RecordErrorKind::Invalid,
                }),
            },
        };
        self.index += 1;
        Some(result)
    }
}

impl<R: BufRead> Iterator for LibraryReader<R> {
    type Item = Result<MolRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let (line_no, text) = match self.pending.take() {
                Some(p) => p,
                None => match self.lines.next_line() {
                    Ok(Some(text)) => (self.lines.line_no, text),
                    Ok(None) => {
                        self.done = true;
                        return self.finish();
                    }
                    Err(e) => {
                        self.done = true;
                        let limit = e.get_ref().and_then(|inner| inner.downcast_ref::<FileLimit>()).copied();
                        let (kind, reason) = match limit {
                            Some(l) => (RecordErrorKind::Limit(l), l.to_string()),
                            None => (RecordErrorKind::Unreadable, format!("read error: {e}")),
                        };
                        return Some(Err(RecordError {
                            index: self.index,
                            name: self.default_name(),
                            line: self.lines.line_no + 1,
                            reason,
                            kind,
                        }));
                    }
                },
            };
            let s = match &text {
                LineText::Text(s) => s.as_str(),
                _ => "",
            };
            match self.splitter.boundary(s) {
                Boundary::Starts if !self.chunk.is_empty() => {
                    self.pending = Some((line_no, text));
                    if let Some(item) = self.finish() {
                        return Some(item);
                    }
                }
                Boundary::Ends => {
                    self.chunk.push(line_no, text, self.limits.max_record_bytes);
                    if let Some(item) = self.finish() {
                        return Some(item);
                    }
                }
                Boundary::Starts | Boundary::Inside => self.chunk.push(line_no, text, self.limits.max_record_bytes),
            }
        }
    }
}

/// Record keyword of a PDB-style line: columns 1-6, trimmed.
pub(crate) fn pdb_keyword(line: &str) -> &str {
    line.get(..6).unwrap_or(line).trim()
}

pub(crate) fn parse_f64(field: Option<&str>) -> Option<f64> {
    field.map(str::trim).and_then(|f| f.parse::<f64>().ok()).filter(|v| v.is_finite())
}
