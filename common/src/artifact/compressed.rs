//! A decorator that stores objects zstd-compressed where it pays and reads both forms, so
//! the stores behind it (a folder, S3) and everything written before compression was turned
//! on keep working unchanged.
//!
//! The stored form is told apart by the zstd frame magic at the start of the object. Every
//! object Dockyard writes uncompressed is text (PDBQT, SDF, SMILES, JSON, logs), and no UTF-8
//! text can start with those bytes (0xB5 is a continuation byte after an ASCII one). An
//! object whose own bytes start with the magic (a `.zst` a user uploaded) is always stored
//! compressed, so reading it back gives exactly what was written.
//!
//! Content hashes stay over the uncompressed bytes: `put` and `put_file` return the size and
//! SHA-256 of what the caller gave, and input keys are addressed by that hash. `head` gives
//! the size of the content `get` returns (from the frame header, which records it), and the
//! SHA-256 of the object as stored.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{ArtifactKey, ArtifactStore, ObjectMeta};
use crate::error::DockyardError;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Below this, a frame header and a syscall cost more than the bytes saved.
const MIN_SIZE: u64 = 512;
/// Kept compressed only when it saves at least a tenth: poses and logs save 70-80%, already
/// dense data (a `.gz` upload) would cost a decompression per read for nothing.
const MAX_RATIO: f64 = 0.9;
/// No object Dockyard writes comes near this; a stored frame that decodes past it is refused
/// rather than allowed to fill memory or the disk (a frame is small, its output need not be).
pub const MAX_DECODED_BYTES: u64 = 64 << 30;
/// zstd's default: about 300 MB/s per core on poses, the ratio within a few percent of level 9.
const LEVEL: i32 = 3;

/// What the decorator does with the objects it writes; it reads both forms either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "settings", derive(clap::ValueEnum))]
pub enum Compression {
    /// zstd level 3 where it saves at least 10% (objects of 512 bytes or more).
    #[default]
    Zstd,
    /// Write objects as given (reads still accept compressed ones).
    Off,
}

/// Running totals, for the binaries' metrics: bytes as given and as stored, and the CPU time
/// the codec took (thread CPU time, so waiting on the store is not counted).
#[derive(Default, Debug)]
pub struct CodecStats {
    pub written_bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub compressed_objects: AtomicU64,
    pub compress_cpu_ns: AtomicU64,
    pub decompress_cpu_ns: AtomicU64,
}

impl CodecStats {
    pub fn compress_cpu(&self) -> Duration {
        Duration::from_nanos(self.compress_cpu_ns.load(Ordering::Relaxed))
    }

    pub fn decompress_cpu(&self) -> Duration {
        Duration::from_nanos(self.decompress_cpu_ns.load(Ordering::Relaxed))
    }
}

pub struct CompressedStore {
    inner: Arc<dyn ArtifactStore>,
    mode: Compression,
    stats: Arc<CodecStats>,
}

impl CompressedStore {
    /// `stats` collects this store's totals (shared with a metrics collector).
    pub fn new(inner: Arc<dyn ArtifactStore>, mode: Compression, stats: Arc<CodecStats>) -> Self {
        CompressedStore { inner, mode, stats }
    }

    pub fn stats(&self) -> Arc<CodecStats> {
        Arc::clone(&self.stats)
    }

    fn count_write(&self, given: u64, stored: u64) {
        self.stats.written_bytes.fetch_add(given, Ordering::Relaxed);
        self.stats.stored_bytes.fetch_add(stored, Ordering::Relaxed);
        if given != stored {
            self.stats.compressed_objects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn is_compressed(head: &[u8]) -> bool {
    head.starts_with(&ZSTD_MAGIC)
}

/// Whether to keep the compressed form of `raw_len` bytes that compressed to `packed_len`.
fn pays(raw_len: u64, packed_len: u64, raw_has_magic: bool) -> bool {
    raw_has_magic || (raw_len >= MIN_SIZE && (packed_len as f64) <= raw_len as f64 * MAX_RATIO)
}

fn codec_error(what: &str, e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Storage(format!("{what}: {e}"))
}

fn timed<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let start = super::thread_cpu::now();
    let out = f();
    let spent = super::thread_cpu::now().saturating_sub(start);
    counter.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, DockyardError> + Send + 'static) -> Result<T, DockyardError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DockyardError::Internal(format!("codec task: {e}")))?
}

/// Decodes one stored object, refusing output past `MAX_DECODED_BYTES`.
fn decode_into(src: impl Read, mut out: impl Write) -> Result<u64, DockyardError> {
    let decoder = zstd::stream::read::Decoder::new(src).map_err(|e| codec_error("zstd", e))?;
    let n = std::io::copy(&mut decoder.take(MAX_DECODED_BYTES + 1), &mut out).map_err(|e| codec_error("corrupt zstd object", e))?;
    if n > MAX_DECODED_BYTES {
        return Err(DockyardError::Storage(format!(
            "a compressed object decodes to more than {MAX_DECODED_BYTES} bytes; refused"
        )));
    }
    Ok(n)
}

/// A temporary file beside `near` (same file system, so the rename is atomic), removed when
/// dropped unless it was renamed away.
struct Tmp(PathBuf);

impl Tmp {
    fn beside(near: &Path, tag: &str) -> Tmp {
        let r: u64 = rand::random();
        let name = near.file_name().and_then(|n| n.to_str()).unwrap_or("obj");
        Tmp(near.with_file_name(format!(".{name}.{tag}.{r:016x}.tmp")))
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn io(p: &Path, e: std::io::Error) -> DockyardError {
    DockyardError::Storage(format!("{}: {e}", p.display()))
}

/// Hashes `path` while compressing it into `into`; returns the raw size and hash, the
/// compressed size, and whether the raw bytes began with the zstd magic.
fn compress_file(path: &Path, into: &Path) -> Result<(ObjectMeta, u64, bool), DockyardError> {
    let mut src = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let len = src.metadata().map_err(|e| io(path, e))?.len();
    let out = std::fs::File::create(into).map_err(|e| io(into, e))?;
    let mut enc = zstd::stream::write::Encoder::new(std::io::BufWriter::new(out), LEVEL).map_err(|e| codec_error("zstd", e))?;
    // The size goes in the frame header, where `head` reads it.
    enc.set_pledged_src_size(Some(len)).map_err(|e| codec_error("zstd", e))?;
    enc.include_contentsize(true).map_err(|e| codec_error("zstd", e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut first = Vec::with_capacity(4);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        if first.len() < 4 {
            let want = (4 - first.len()).min(n);
            first.extend_from_slice(&buf[..want]);
        }
        hasher.update(&buf[..n]);
        enc.write_all(&buf[..n]).map_err(|e| io(into, e))?;
        size += n as u64;
    }
    let w = enc.finish().map_err(|e| io(into, e))?;
    let f = w.into_inner().map_err(|e| io(into, e.into_error()))?;
    let packed = f.metadata().map_err(|e| io(into, e))?.len();
    let meta = ObjectMeta {
        size,
        sha256: hex::encode(hasher.finalize()),
    };
    Ok((meta, packed, is_compressed(&first)))
}

fn file_starts_compressed(path: &Path) -> Result<bool, DockyardError> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        let n = f.read(&mut head[got..]).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(is_compressed(&head[..got]))
}

#[async_trait]
impl ArtifactStore for CompressedStore {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError> {
        let given = data.len() as u64;
        let magic = is_compressed(&data);
        if !magic && (self.mode == Compression::Off || given < MIN_SIZE) {
            let meta = self.inner.put(key, data).await?;
            self.count_write(given, given);
            return Ok(meta);
        }
        let stats = Arc::clone(&self.stats);
        let (meta, stored) = blocking(move || {
            let meta = ObjectMeta {
                size: data.len() as u64,
                sha256: super::sha256_hex(&data),
            };
            let packed = timed(&stats.compress_cpu_ns, || zstd::bulk::compress(&data, LEVEL)).map_err(|e| codec_error("zstd", e))?;
            let stored = if pays(data.len() as u64, packed.len() as u64, magic) {
                Bytes::from(packed)
            } else {
                data
            };
            Ok((meta, stored))
        })
        .await?;
        let stored_len = stored.len() as u64;
        self.inner.put(key, stored).await?;
        self.count_write(given, stored_len);
        Ok(meta)
    }

    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError> {
        let len = tokio::fs::metadata(path).await.map_err(|e| io(path, e))?.len();
        if self.mode == Compression::Off || len < MIN_SIZE {
            let p = path.to_path_buf();
            if !blocking(move || file_starts_compressed(&p)).await? {
                let meta = self.inner.put_file(key, path).await?;
                self.count_write(meta.size, meta.size);
                return Ok(meta);
            }
        }
        let tmp = Tmp::beside(path, "zst");
        let (src, into) = (path.to_path_buf(), tmp.0.clone());
        let stats = Arc::clone(&self.stats);
        let (meta, packed, magic) = blocking(move || timed(&stats.compress_cpu_ns, || compress_file(&src, &into))).await?;
        if pays(meta.size, packed, magic) {
            self.inner.put_file(key, &tmp.0).await?;
            self.count_write(meta.size, packed);
        } else {
            drop(tmp);
            self.inner.put_file(key, path).await?;
            self.count_write(meta.size, meta.size);
        }
        Ok(meta)
    }

    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError> {
        let stored = self.inner.get(key).await?;
        if !is_compressed(&stored) {
            return Ok(stored);
        }
        let stats = Arc::clone(&self.stats);
        let key = key.clone();
        blocking(move || {
            let mut out = Vec::with_capacity(stored.len() * 4);
            timed(&stats.decompress_cpu_ns, || decode_into(&stored[..], &mut out)).map_err(|e| codec_error(key.as_str(), e))?;
            Ok(Bytes::from(out))
        })
        .await
    }

    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError> {
        let n = self.inner.get_to_file(key, path).await?;
        let p = path.to_path_buf();
        if !blocking(move || file_starts_compressed(&p)).await? {
            return Ok(n);
        }
        let tmp = Tmp::beside(path, "raw");
        let (src, into) = (path.to_path_buf(), tmp.0.clone());
        let stats = Arc::clone(&self.stats);
        let key_name = key.to_string();
        blocking(move || {
            timed(&stats.decompress_cpu_ns, || {
                let f = std::fs::File::open(&src).map_err(|e| io(&src, e))?;
                let out = std::fs::File::create(&into).map_err(|e| io(&into, e))?;
                let mut w = std::io::BufWriter::new(out);
                let n = decode_into(std::io::BufReader::new(f), &mut w).map_err(|e| codec_error(&key_name, e))?;
                w.flush().map_err(|e| io(&into, e))?;
                std::fs::rename(&into, &src).map_err(|e| io(&src, e))?;
                Ok(n)
            })
        })
        .await
    }

    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError> {
        let Some(meta) = self.inner.head(key).await? else { return Ok(None) };
        if meta.size < ZSTD_MAGIC.len() as u64 {
            return Ok(Some(meta));
        }
        // A frame header is at most 18 bytes; ours always carry the content size.
        let header = self.inner.get_prefix(key, 18).await?;
        if !is_compressed(&header) {
            return Ok(Some(meta));
        }
        let size = match zstd::zstd_safe::get_frame_content_size(&header) {
            Ok(Some(n)) => n,
            // A frame written without its size (not by this decorator): count it.
            _ => self.get(key).await?.len() as u64,
        };
        Ok(Some(ObjectMeta { size, ..meta }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError> {
        self.inner.delete(key).await
    }

    fn uri(&self) -> String {
        self.inner.uri()
    }
}

#[cfg(test)]
mod tests {
    use super::super::LocalStore;
    use super::*;

    fn poses(n: usize) -> Vec<u8> {
        // PDBQT-like text: repetitive columns, as real poses are.
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!(
                "ATOM  {:5}  C   UNL     1      {:6.3}  {:6.3}  {:6.3}  0.00  0.00    +0.012 C \n",
                i % 99999,
                (i as f64 * 0.37) % 50.0,
                (i as f64 * 1.13) % 50.0,
                (i as f64 * 0.71) % 50.0
            ));
        }
        s.into_bytes()
    }

    fn stores(mode: Compression) -> (tempfile::TempDir, Arc<LocalStore>, CompressedStore) {
        let dir = tempfile::tempdir().expect("tmp");
        let raw = Arc::new(LocalStore::open(dir.path().join("s")).expect("store"));
        let c = CompressedStore::new(raw.clone(), mode, Arc::default());
        (dir, raw, c)
    }

    #[tokio::test]
    async fn text_is_stored_compressed_and_read_back_whole() {
        let (_d, raw, c) = stores(Compression::Zstd);
        let data = Bytes::from(poses(2000));
        let k = ArtifactKey::new("orgs/a/jobs/j/lig_0.pdbqt").expect("key");
        let meta = c.put(&k, data.clone()).await.expect("put");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.sha256, super::super::sha256_hex(&data), "hash over the uncompressed bytes");
        let stored = raw.get(&k).await.expect("raw get");
        assert!(is_compressed(&stored));
        assert!(stored.len() * 3 < data.len(), "{} of {}", stored.len(), data.len());
        // Decoded by zstd itself, not by the code under test.
        assert_eq!(zstd::stream::decode_all(&stored[..]).expect("zstd"), data.to_vec());
        assert_eq!(c.get(&k).await.expect("get"), data);
        assert_eq!(c.head(&k).await.expect("head").expect("there").size, data.len() as u64);
        let stats = c.stats();
        assert_eq!(stats.written_bytes.load(Ordering::Relaxed), data.len() as u64);
        assert_eq!(stats.stored_bytes.load(Ordering::Relaxed), stored.len() as u64);
    }

    #[tokio::test]
    async fn small_and_incompressible_objects_stay_as_given() {
        let (_d, raw, c) = stores(Compression::Zstd);
        let small = Bytes::from_static(b"REMARK tiny\n");
        let k = ArtifactKey::new("a/small").expect("key");
        c.put(&k, small.clone()).await.expect("put");
        assert_eq!(raw.get(&k).await.expect("raw"), small);
        let noise: Vec<u8> = (0..100_000).map(|_| rand::random::<u8>()).collect();
        let noise = Bytes::from(noise);
        let k = ArtifactKey::new("a/noise").expect("key");
        c.put(&k, noise.clone()).await.expect("put");
        assert_eq!(raw.get(&k).await.expect("raw"), noise, "not kept compressed: it saves under 10%");
        assert_eq!(c.get(&k).await.expect("get"), noise);
    }

    #[tokio::test]
    async fn an_object_that_is_itself_zstd_comes_back_as_written() {
        for mode in [Compression::Zstd, Compression::Off] {
            let (_d, _raw, c) = stores(mode);
            let inner = Bytes::from(zstd::bulk::compress(&poses(10), 3).expect("zstd"));
            let k = ArtifactKey::new("a/user.zst").expect("key");
            c.put(&k, inner.clone()).await.expect("put");
            assert_eq!(c.get(&k).await.expect("get"), inner, "{mode:?}");
        }
    }

    #[tokio::test]
    async fn off_writes_as_given_and_both_modes_read_both_forms() {
        let (d, raw, off) = stores(Compression::Off);
        let data = Bytes::from(poses(500));
        let k_plain = ArtifactKey::new("a/plain").expect("key");
        off.put(&k_plain, data.clone()).await.expect("put");
        assert_eq!(raw.get(&k_plain).await.expect("raw"), data);
        let on = CompressedStore::new(raw.clone(), Compression::Zstd, Arc::default());
        let k_packed = ArtifactKey::new("a/packed").expect("key");
        on.put(&k_packed, data.clone()).await.expect("put");
        for s in [&off, &on] {
            assert_eq!(s.get(&k_plain).await.expect("plain"), data);
            assert_eq!(s.get(&k_packed).await.expect("packed"), data);
            let f = d.path().join("out.pdbqt");
            assert_eq!(s.get_to_file(&k_packed, &f).await.expect("to file"), data.len() as u64);
            assert_eq!(std::fs::read(&f).expect("read"), data.to_vec());
        }
    }

    #[tokio::test]
    async fn files_are_compressed_on_the_way_in_and_out() {
        let (d, raw, c) = stores(Compression::Zstd);
        let data = poses(5000);
        let src = d.path().join("lig.pdbqt");
        std::fs::write(&src, &data).expect("write");
        let k = ArtifactKey::new("a/lig.pdbqt").expect("key");
        let meta = c.put_file(&k, &src).await.expect("put_file");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.sha256, super::super::sha256_hex(&data));
        let stored = raw.get(&k).await.expect("raw");
        assert!(is_compressed(&stored) && stored.len() * 3 < data.len());
        assert_eq!(
            c.head(&k).await.expect("head").expect("there").size,
            data.len() as u64,
            "from the header"
        );
        let dst = d.path().join("back.pdbqt");
        assert_eq!(c.get_to_file(&k, &dst).await.expect("get"), data.len() as u64);
        assert_eq!(std::fs::read(&dst).expect("read"), data);
        let left: Vec<_> = std::fs::read_dir(d.path())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        assert!(c.stats().compress_cpu() > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_corrupt_frame_is_a_storage_error() {
        let (_d, raw, c) = stores(Compression::Zstd);
        let mut bad = ZSTD_MAGIC.to_vec();
        bad.extend_from_slice(&[0xff; 64]);
        let k = ArtifactKey::new("a/bad").expect("key");
        raw.put(&k, Bytes::from(bad)).await.expect("put");
        let e = c.get(&k).await.expect_err("corrupt frame");
        assert!(matches!(e, DockyardError::Storage(_)), "{e:?}");
        assert!(e.to_string().contains("a/bad"), "{e}");
    }
}
