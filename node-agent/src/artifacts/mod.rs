//! Artifact-store adapters of the agent's own: the relay through the coordinator, and the
//! store that can be swapped once the coordinator says which one it uses.

pub mod relay;
pub mod swap;
