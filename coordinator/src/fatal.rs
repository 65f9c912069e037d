//! Why a running coordinator must stop at once, and the exit code its supervisor sees.
//! Raised where it happens (the scheduler actor, the leadership task), carried up to
//! `main`, which logs it and exits with the code: nothing below calls `process::exit`.

use dockyard_common::error::DockyardError;

/// sysexits' EX_SOFTWARE: the state on disk can no longer be trusted to match memory.
pub const EXIT_WRITE_FAILED: u8 = 70;
/// sysexits' EX_TEMPFAIL: no longer the leader (or cannot lead); a supervisor restarts
/// the process as a standby with a clean slate.
pub const EXIT_DEPOSED: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Memory and disk have diverged; acknowledging anything now could lose it.
    #[error("cannot persist scheduler state: {0}")]
    WriteFailed(DockyardError),
    /// The scheduler actor ended without being asked to (a bug).
    #[error("the scheduler stopped unexpectedly: {0}")]
    SchedulerCrashed(String),
    /// Leadership lost, or leading failed: acting on this state could undo a newer leader's work.
    #[error("deposed: {0}")]
    Deposed(String),
    /// The gRPC server stopped on its own.
    #[error("server: {0}")]
    Server(String),
}

impl Fatal {
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::WriteFailed(_) | Fatal::SchedulerCrashed(_) => EXIT_WRITE_FAILED,
            Fatal::Deposed(_) => EXIT_DEPOSED,
            Fatal::Server(_) => 1,
        }
    }
}
