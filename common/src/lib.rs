//! Dockyard domain types shared by the coordinator, the agent and the CLI.
//!
//! Owns: ids, the priority key, job specs and their validation, errors and their gRPC codes,
//! molecule-format validation, the artifact-store port and adapters, config and telemetry set-up.

pub mod artifact;
#[cfg(feature = "cloud")]
pub mod cluster;
pub mod config;
pub mod digest;
pub mod error;
/// Checks shared by the cargo-fuzz targets in `fuzz/` and the replay of their findings.
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
#[cfg(feature = "metrics-http")]
pub mod metrics_http;
pub mod molecule;
pub mod queue_key;
pub mod results_export;
#[cfg(feature = "settings")]
pub mod settings;
pub mod spec;
pub mod state_names;
pub mod telemetry;
pub mod time;

pub use error::{DockyardError, Result};
pub use ids::{Attempt, Epoch, JobId, NodeId, OrgId, TaskId};
