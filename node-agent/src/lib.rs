//! The Dockyard node agent: probes its capacity and engines, dials the coordinator, runs
//! assigned tasks concurrently up to its slots, and reports results.

pub mod capacity;
pub mod config;
pub mod connection;
pub mod dial;
pub mod engine;
pub mod leader;
pub mod membership;
pub mod metrics;
pub mod prepare;
pub mod remote_store;
pub mod runner;
pub mod sandbox;
pub mod swap_store;

pub use config::AgentConfig;
pub use connection::run;
