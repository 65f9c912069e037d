//! The Dockyard coordinator: job API, agent stream server, durable priority scheduler.
//!
//! One scheduler actor owns all mutable state (queue, tasks, nodes) and applies events in
//! batches: every batch is written to sled in one atomic write and flushed before any reply
//! or assignment leaves the process (group commit). Handlers only convert and forward.

pub mod api;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod console;
pub mod fatal;
pub mod metrics;
pub mod model;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod submit;

pub use config::CoordinatorConfig;
pub use server::{start, RunningCoordinator};
