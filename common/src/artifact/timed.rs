//! A decorator that times every call of the store it wraps and tells an observer, so the
//! binaries can feed their metrics without this crate knowing any metrics library.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ArtifactKey, ArtifactStore, ObjectMeta};
use crate::error::DockyardError;

/// The store operation a timing belongs to; a closed set, so observers can keep one
/// pre-made handle per operation instead of building label strings per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    Put,
    PutFile,
    Get,
    GetToFile,
    Head,
    List,
    Delete,
}

impl StoreOp {
    pub const ALL: [StoreOp; 7] = [
        StoreOp::Put,
        StoreOp::PutFile,
        StoreOp::Get,
        StoreOp::GetToFile,
        StoreOp::Head,
        StoreOp::List,
        StoreOp::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::PutFile => "put_file",
            StoreOp::Get => "get",
            StoreOp::GetToFile => "get_to_file",
            StoreOp::Head => "head",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
        }
    }

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Told about every finished call; runs on the caller's task, so it must be quick.
pub trait StoreObserver: Send + Sync + 'static {
    fn observe(&self, op: StoreOp, elapsed: Duration, ok: bool);
}

pub struct TimedStore {
    inner: Arc<dyn ArtifactStore>,
    observer: Arc<dyn StoreObserver>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn ArtifactStore>, observer: Arc<dyn StoreObserver>) -> Self {
        TimedStore { inner, observer }
    }

    async fn timed<T>(&self, op: StoreOp, f: impl std::future::Future<Output = Result<T, DockyardError>>) -> Result<T, DockyardError> {
        let started = Instant::now();
        let r = f.await;
        self.observer.observe(op, started.elapsed(), r.is_ok());
        r
    }
}

#[async_trait]
impl ArtifactStore for TimedStore {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError> {
        self.timed(StoreOp::Put, self.inner.put(key, data)).await
    }

    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError> {
        self.timed(StoreOp::PutFile, self.inner.put_file(key, path)).await
    }

    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError> {
        self.timed(StoreOp::Get, self.inner.get(key)).await
    }

    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError> {
        self.timed(StoreOp::GetToFile, self.inner.get_to_file(key, path)).await
    }

    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError> {
        self.timed(StoreOp::Head, self.inner.head(key)).await
    }

    async fn get_prefix(&self, key: &ArtifactKey, len: usize) -> Result<Bytes, DockyardError> {
        self.timed(StoreOp::Get, self.inner.get_prefix(key, len)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError> {
        self.timed(StoreOp::List, self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError> {
        self.timed(StoreOp::Delete, self.inner.delete(key)).await
    }

    fn uri(&self) -> String {
        self.inner.uri()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::LocalStore;
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(StoreOp, bool)>>);

    impl StoreObserver for Seen {
        fn observe(&self, op: StoreOp, _elapsed: Duration, ok: bool) {
            self.0.lock().expect("lock").push((op, ok));
        }
    }

    #[test]
    fn indices_follow_all() {
        for (i, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
    }

    #[tokio::test]
    async fn every_call_is_reported_with_its_outcome() {
        let dir = tempfile::tempdir().expect("tmp");
        let seen = Arc::new(Seen::default());
        let inner: Arc<dyn ArtifactStore> = Arc::new(LocalStore::open(dir.path()).expect("store"));
        let store = TimedStore::new(inner, seen.clone());
        let key = ArtifactKey::new("a/b").expect("key");
        store.put(&key, Bytes::from_static(b"x")).await.expect("put");
        assert_eq!(store.get(&key).await.expect("get"), Bytes::from_static(b"x"));
        let missing = ArtifactKey::new("a/missing").expect("key");
        assert!(store.get(&missing).await.is_err());
        assert!(store.uri().starts_with("file://"));
        let got = seen.0.lock().expect("lock").clone();
        assert_eq!(got, vec![(StoreOp::Put, true), (StoreOp::Get, true), (StoreOp::Get, false)]);
    }
}
