//! The words clients show for job and node states (CLI tables and JSON, the web console).

use dockyard_proto::v1 as pb;

pub fn job_state(s: i32) -> &'static str {
    match pb::JobState::try_from(s) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Partial) => "partial",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

/// Whether a job in state `s` will change no more.
pub fn is_final(s: i32) -> bool {
    matches!(job_state(s), "succeeded" | "partial" | "failed" | "cancelled")
}

pub fn node_state(s: i32) -> &'static str {
    match pb::NodeState::try_from(s) {
        Ok(pb::NodeState::Ready) => "ready",
        Ok(pb::NodeState::Draining) => "draining",
        Ok(pb::NodeState::Lost) => "lost",
        _ => "unknown",
    }
}
