//! A task attempt's scratch folder, removed whatever happens to the attempt.

use std::path::PathBuf;

use tracing::warn;

/// A task attempt's scratch folder; removed by [`Scratch::remove`], or when dropped.
pub(super) struct Scratch {
    pub path: PathBuf,
    /// Whether there is anything to remove.
    pub armed: bool,
}

impl Scratch {
    pub async fn remove(mut self) {
        if !std::mem::take(&mut self.armed) {
            return;
        }
        match tokio::fs::remove_dir_all(&self.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(error = %e, dir = %self.path.display(), "cannot remove scratch folder"),
        }
    }
}

impl Drop for Scratch {
    /// The task's future was dropped (the agent is shutting down) before `remove`: a
    /// blocking removal, as nothing can be awaited here.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(error = %e, dir = %self.path.display(), "cannot remove scratch folder"),
        }
    }
}

/// The message of a caught panic.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
