//! Long-lived streams (WatchJob, GetArtifact, an agent's Connect) outlive the check made
//! when they opened; this wrapper ends one with UNAUTHENTICATED as soon as the token that
//! opened it is revoked (on this coordinator, or on another one seen through etcd).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::Status;

use super::{Auth, Caller};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub fn until_revoked<T: Send + 'static>(inner: BoxStream<T>, auth: &Arc<Auth>, caller: &Caller) -> BoxStream<T> {
    // Secrets from files (admin, join token), certificates and auth-off cannot be revoked.
    let Some(id) = caller.token_id.clone() else {
        return inner;
    };
    let auth = Arc::clone(auth);
    let rx = auth.subscribe();
    Box::pin(futures::stream::unfold(Some((inner, rx)), move |state| {
        let auth = Arc::clone(&auth);
        let id = id.clone();
        async move {
            let (mut inner, mut rx) = state?;
            loop {
                tokio::select! {
                    item = inner.next() => return item.map(|i| (i, Some((inner, rx)))),
                    changed = rx.changed() => {
                        // The sender lives in `auth`, which we hold: `changed` cannot fail
                        // while this runs, but if it did, the stream would simply go on.
                        if changed.is_ok() && !auth.still_valid(&id) {
                            let st = Status::unauthenticated(format!("token {id} was revoked; this stream is closed"));
                            return Some((Err(st), None));
                        }
                        if changed.is_err() {
                            return inner.next().await.map(|i| (i, Some((inner, rx))));
                        }
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::{AuthConfig, QuotaTable, SledTokens};
    use dockyard_common::ids::OrgId;

    #[tokio::test]
    async fn a_revoked_token_ends_its_stream() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = sled::open(dir.path().join("db")).expect("sled");
        let store = Arc::new(SledTokens::new(db.open_tree("t").expect("tree")));
        let auth = Auth::open(&AuthConfig::default(), store, QuotaTable::default())
            .await
            .expect("auth");
        let (rec, _) = auth
            .create_token(Some(OrgId::parse("chem").expect("org")), false, "")
            .await
            .expect("token");
        let caller = Caller {
            role: crate::auth::Role::Org(OrgId::parse("chem").expect("org")),
            token_id: Some(rec.id.clone()),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        let inner: BoxStream<u32> = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut s = until_revoked(inner, &auth, &caller);
        tx.send(Ok(1)).await.expect("send");
        assert_eq!(s.next().await.map(|r| r.ok()), Some(Some(1)));
        auth.revoke_token(&rec.id).await.expect("revoke");
        let end = tokio::time::timeout(Duration::from_secs(2), s.next()).await.expect("ends promptly");
        assert_eq!(end.map(|r| r.err().map(|e| e.code())), Some(Some(tonic::Code::Unauthenticated)));
        assert!(s.next().await.is_none());
        drop(tx);
    }
}
