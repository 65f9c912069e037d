//! The agent's link to the coordinators: finding the leader, dialling it, the membership
//! record in etcd, and the stream that carries registrations, assignments and results.

pub mod connection;
pub mod dial;
pub mod leader;
pub mod membership;
