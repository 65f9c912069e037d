//! Byte accounting: what each organisation has stored, charged against its
//! `max_bytes_stored`. The counter itself lives in the [`TokenStore`](super::TokenStore)
//! (sled or etcd), so every coordinator charges the same one.

use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;

use super::Auth;

/// What `add_usage` did: the new total, or (when it would pass the limit) the unchanged one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    Added(u64),
    OverLimit(u64),
}

/// New counter value for `cur + delta`, or `None` when it would pass `limit`.
pub(crate) fn next_usage(cur: u64, delta: i64, limit: u64) -> Option<u64> {
    if delta < 0 {
        return Some(cur.saturating_sub(delta.unsigned_abs()));
    }
    let next = cur.saturating_add(delta as u64);
    (limit == 0 || next <= limit).then_some(next)
}

impl Auth {
    /// Counts `bytes` of new inputs against the organisation's `max_bytes_stored`.
    pub async fn charge_bytes(&self, org: &OrgId, bytes: u64) -> Result<(), DockyardError> {
        if bytes == 0 {
            return Ok(());
        }
        let limit = self.quotas.get(org).max_bytes_stored;
        let delta = i64::try_from(bytes).unwrap_or(i64::MAX);
        match self.store.add_usage(org, delta, limit).await? {
            Charge::Added(_) => Ok(()),
            Charge::OverLimit(cur) => Err(DockyardError::ResourceExhausted(format!(
                "quota max_bytes_stored exceeded for organisation {org}: {cur} bytes stored + {bytes} new > limit {limit}"
            ))),
        }
    }

    /// Gives back a charge whose inputs were not kept (the submission failed).
    pub async fn refund_bytes(&self, org: &OrgId, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let delta = -i64::try_from(bytes).unwrap_or(i64::MAX);
        if let Err(e) = self.store.add_usage(org, delta, 0).await {
            tracing::warn!(org = %org, bytes, error = %e, "cannot refund stored bytes; the usage counter stays high");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::{AuthConfig, Limits, QuotaTable, SledTokens};

    #[test]
    fn usage_arithmetic_respects_the_limit_and_never_goes_negative() {
        assert_eq!(next_usage(10, 5, 15), Some(15));
        assert_eq!(next_usage(10, 6, 15), None);
        assert_eq!(next_usage(10, 1 << 40, 0), Some(10 + (1 << 40)));
        assert_eq!(next_usage(3, -10, 1), Some(0));
    }

    #[tokio::test]
    async fn stored_bytes_are_charged_against_the_limit() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = sled::open(dir.path().join("db")).expect("sled");
        let store = Arc::new(SledTokens::new(db.open_tree("t").expect("tree")));
        let a = Auth::open(&AuthConfig::default(), store, QuotaTable::default())
            .await
            .expect("open");
        let org = OrgId::parse("chem").expect("org");
        a.set_limits(
            &org,
            Limits {
                max_bytes_stored: 100,
                ..Limits::default()
            },
        )
        .await
        .expect("limits");
        a.charge_bytes(&org, 80).await.expect("fits");
        let e = a.charge_bytes(&org, 30).await.expect_err("over");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(
            e.to_string().contains("max_bytes_stored") && e.to_string().contains("80 bytes stored"),
            "{e}"
        );
        a.refund_bytes(&org, 80).await;
        a.charge_bytes(&org, 30).await.expect("fits after the refund");
    }
}
