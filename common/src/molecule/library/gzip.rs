//! Gunzipping under caps: a few kilobytes of gzip can expand to gigabytes (a "gzip bomb"),
//! so the decompressed size and the compression ratio are checked while reading, and the
//! read fails with a [`FileLimit`] as soon as either is exceeded.

use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::bufread::MultiGzDecoder;

use super::{FileLimit, ReadLimits, GZIP_RATIO_GRACE_BYTES};

/// Counts the compressed bytes the decoder has taken from the file.
struct Counted<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // Counted when the decoder consumes them, so buffered-but-unread input does not count.
        self.consumed.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.consume(amt);
    }
}

/// The decompressed stream of a gzip file (all members: bgzip and `cat a.gz b.gz` write
/// several), failing once it breaks `limits`.
pub(super) struct GuardedGzip<R: BufRead> {
    decoder: MultiGzDecoder<Counted<R>>,
    consumed: Arc<AtomicU64>,
    produced: u64,
    limits: ReadLimits,
    /// Once tripped, every later read fails the same way (a reader may retry).
    tripped: Option<FileLimit>,
}

impl<R: BufRead> GuardedGzip<R> {
    pub(super) fn new(reader: R, limits: ReadLimits) -> Self {
        let consumed = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: reader,
            consumed: Arc::clone(&consumed),
        };
        GuardedGzip {
            decoder: MultiGzDecoder::new(counted),
            consumed,
            produced: 0,
            limits,
            tripped: None,
        }
    }

    fn check(&self) -> Option<FileLimit> {
        if self.produced > self.limits.max_decompressed_bytes {
            return Some(FileLimit::DecompressedBytes(self.limits.max_decompressed_bytes));
        }
        let consumed = self.consumed.load(Ordering::Relaxed).max(1);
        if self.produced > GZIP_RATIO_GRACE_BYTES && self.produced > consumed.saturating_mul(self.limits.max_gzip_ratio) {
            return Some(FileLimit::GzipRatio(self.limits.max_gzip_ratio));
        }
        None
    }
}

impl<R: BufRead> Read for GuardedGzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(limit) = self.tripped {
            return Err(io::Error::other(limit));
        }
        // Never hand out more than the size cap allows plus one byte, so a single large
        // read cannot overshoot it by much before the check.
        let room = self.limits.max_decompressed_bytes.saturating_sub(self.produced).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.decoder.read(&mut buf[..want])?;
        self.produced += n as u64;
        if let Some(limit) = self.check() {
            self.tripped = Some(limit);
            return Err(io::Error::other(limit));
        }
        Ok(n)
    }
}
