//! Reading engine output: run logs (stdout and stderr in one file per run) and `--version`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// An engine that does not answer `--version` within this is treated as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Runs `program --version` and returns everything it printed; `parse` picks the version
/// out of it, and `what` names the engine in the error when it finds none.
pub(crate) async fn probe_version(program: &Path, what: &str, parse: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let output = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, output)
        .await
        .map_err(|_| format!("`{} --version` timed out", program.display()))?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text).ok_or_else(|| {
        let shown: String = text.trim().chars().take(200).collect();
        format!("`{} --version` did not report a {what} version: {shown:?}", program.display())
    })
}
