//! Cluster mode (`--etcd`): leader election, the fenced journal that lets a standby take
//! over, agent membership, and the gate that redirects calls made to a standby.

pub mod election;
pub mod gate;
pub mod journal;
pub mod membership;
pub mod outcome;
pub mod rebuild;
pub mod replication;

use std::time::Duration;

use dockyard_common::cluster::EtcdSettings;

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub etcd: EtcdSettings,
    /// The endpoint other processes use to reach this coordinator (`http://host:port`).
    pub advertise: String,
    /// Election lease TTL: how long a dead leader keeps its key.
    pub election_ttl: Duration,
    /// After a takeover, how long tasks without a committed outcome wait to be claimed by
    /// reconnecting agents before they are queued again.
    pub takeover_grace: Duration,
}
