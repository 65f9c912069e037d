//! Per-organisation limits and the table the scheduler reads them from.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tracing::info;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;

use super::Auth;

/// An organisation's limits; 0 means unlimited for each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub max_queued_tasks: u64,
    /// Tasks running at once: an absolute number of slots (not a share of the cluster, which
    /// would change meaning whenever a node joins or leaves).
    #[serde(default)]
    pub max_running_tasks: u64,
    #[serde(default)]
    pub max_bytes_stored: u64,
    /// Running tasks as a share of the cluster's connected slots, in percent; 0 = none.
    #[serde(default)]
    pub max_running_share_pct: u32,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }

    /// The running-task cap with `cluster_slots` connected: the lower of the absolute cap and
    /// the share (rounded down, at least one slot); `None` when neither is set.
    pub fn running_cap(&self, cluster_slots: u64) -> Option<u64> {
        let share = (self.max_running_share_pct > 0).then(|| (cluster_slots * u64::from(self.max_running_share_pct.min(100)) / 100).max(1));
        let abs = (self.max_running_tasks > 0).then_some(self.max_running_tasks);
        match (abs, share) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        }
    }
}

/// Every organisation's limits, shared by the admin API (writes) and the scheduler actor
/// (reads, synchronously, on every dispatch round).
#[derive(Clone, Default)]
pub struct QuotaTable(Arc<RwLock<HashMap<OrgId, Limits>>>);

impl fmt::Debug for QuotaTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuotaTable({} organisations)", self.read().len())
    }
}

impl QuotaTable {
    // A panic while holding the lock cannot leave a half-written map (inserts are atomic
    // from the reader's view), so a poisoned lock is still usable.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<OrgId, Limits>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, org: &OrgId) -> Limits {
        self.read().get(org).copied().unwrap_or_default()
    }

    pub fn set(&self, org: OrgId, l: Limits) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        if l.is_unlimited() {
            m.remove(&org);
        } else {
            m.insert(org, l);
        }
    }

    /// Organisations with a cap on running tasks, given the cluster's connected slots; empty
    /// (the usual case) costs dispatch nothing.
    pub fn running_caps(&self, cluster_slots: u64) -> HashMap<OrgId, u64> {
        self.read()
            .iter()
            .filter_map(|(o, l)| l.running_cap(cluster_slots).map(|c| (o.clone(), c)))
            .collect()
    }
}

impl Auth {
    /// Stores an organisation's limits and applies them at once (the scheduler reads the table).
    pub async fn set_limits(&self, org: &OrgId, l: Limits) -> Result<(), DockyardError> {
        self.store.put_limits(org, &l).await?;
        self.quotas.set(org.clone(), l);
        info!(org = %org, max_queued_tasks = l.max_queued_tasks, max_running_tasks = l.max_running_tasks, max_bytes_stored = l.max_bytes_stored, "quota set");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_of_the_absolute_cap_and_the_share_wins() {
        let share = Limits {
            max_running_share_pct: 25,
            ..Limits::default()
        };
        assert_eq!(share.running_cap(16), Some(4));
        assert_eq!(share.running_cap(2), Some(1), "at least one slot");
        let both = Limits {
            max_running_tasks: 3,
            ..share
        };
        assert_eq!(both.running_cap(16), Some(3));
        assert_eq!(both.running_cap(8), Some(2));
        assert_eq!(Limits::default().running_cap(16), None);
    }
}
