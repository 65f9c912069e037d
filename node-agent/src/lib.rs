//! The Dockyard node agent: probes its capacity and engines, dials the coordinator, runs
//! assigned tasks concurrently up to its slots, and reports results.

pub mod artifacts;
pub mod capacity;
pub mod config;
pub mod engine;
pub mod link;
pub mod metrics;
pub mod prepare;
pub mod runner;
pub mod sandbox;

pub use config::AgentConfig;
pub use link::connection::run;
