//! Draining a run's output into its log without letting it cost memory, disk or a full pipe.

use std::fs::File;
use std::io::Write;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::{OUTPUT_HEAD_BYTES, OUTPUT_TAIL_BYTES};

/// The end of a run's output and how writing its log went.
#[derive(Debug, Default)]
pub(super) struct Captured {
    /// The last [`OUTPUT_TAIL_BYTES`] (at most) of the output.
    pub(super) recent: Vec<u8>,
    /// Bytes neither in the head written to the log nor in `recent`.
    pub(super) omitted: u64,
    /// The first error writing the log (e.g. a full disk).
    pub(super) write_error: Option<std::io::Error>,
}

/// Copies the output into the log: the head as it comes, the tail at the end (see the
/// module docs). Reads until the output ends or `stop`.
pub(super) async fn drain_output(mut output: pipe::Receiver, mut log: File, stop: CancellationToken) -> Captured {
    let mut buf = vec![0u8; 64 * 1024];
    let mut c = Captured::default();
    let mut total: u64 = 0;
    loop {
        let n = tokio::select! {
            r = output.read(&mut buf) => match r {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading engine output failed");
                    break;
                }
            },
            () = stop.cancelled() => break,
        };
        let chunk = &buf[..n];
        let head_left = (OUTPUT_HEAD_BYTES as u64).saturating_sub(total);
        if head_left > 0 && c.write_error.is_none() {
            let k = chunk.len().min(usize::try_from(head_left).unwrap_or(usize::MAX));
            if let Err(e) = log.write_all(&chunk[..k]) {
                c.write_error = Some(e);
            }
        }
        total += n as u64;
        c.recent.extend_from_slice(chunk);
        // Trimmed in batches: amortised O(1) per byte, at most twice the tail in memory.
        if c.recent.len() >= 2 * OUTPUT_TAIL_BYTES {
            c.recent.drain(..c.recent.len() - OUTPUT_TAIL_BYTES);
        }
    }
    if c.recent.len() > OUTPUT_TAIL_BYTES {
        c.recent.drain(..c.recent.len() - OUTPUT_TAIL_BYTES);
    }
    // `recent` covers [total - recent.len(), total); the log already has [0, head).
    let head = total.min(OUTPUT_HEAD_BYTES as u64);
    let recent_from = total - c.recent.len() as u64;
    c.omitted = recent_from.saturating_sub(head);
    let unwritten = usize::try_from(head.saturating_sub(recent_from))
        .unwrap_or(usize::MAX)
        .min(c.recent.len());
    if c.write_error.is_none() {
        let mut rest = Vec::new();
        if c.omitted > 0 {
            rest.extend_from_slice(format!("\n[dockyard: {} bytes of engine output omitted]\n", c.omitted).as_bytes());
        }
        rest.extend_from_slice(&c.recent[unwritten..]);
        if let Err(e) = log.write_all(&rest) {
            c.write_error = Some(e);
        }
    }
    c
}
