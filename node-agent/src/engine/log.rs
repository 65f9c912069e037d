//! Reading engine logs: engines write stdout and stderr to one file per run.

use std::path::Path;

/// The log from byte `offset` on (a batch re-run appends to the same file).
pub(crate) async fn read_log_from(path: &Path, offset: u64) -> String {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(_) => String::new(),
    }
}

/// The last `max` bytes of `text`, starting at a line boundary when possible.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(nl) if nl + 1 < cut.len() => cut[nl + 1..].to_string(),
        _ => cut.to_string(),
    }
}
