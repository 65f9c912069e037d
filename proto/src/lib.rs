//! Generated code for the `dockyard.v1` protocol.

/// `dockyard.v1`: job, agent and admin services.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("dockyard.v1");
}

/// Encoded file descriptor set, registered with gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dockyard_descriptor.bin"));

/// Bumped when the agent protocol changes incompatibly; checked at `Register`.
pub const PROTOCOL_VERSION: u32 = 1;
