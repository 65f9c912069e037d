//! Local-folder adapter: one file per key, written to a temporary name, fsynced, renamed.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ArtifactKey, ArtifactStore, ObjectMeta};
use crate::error::DockyardError;

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DockyardError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| DockyardError::Storage(format!("cannot create artifact folder {}: {e}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(|e| DockyardError::Storage(format!("{}: {e}", root.display())))?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &ArtifactKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn tmp_path(&self, final_path: &Path) -> PathBuf {
        let r: u64 = rand::random();
        let name = final_path.file_name().and_then(|n| n.to_str()).unwrap_or("obj");
        final_path.with_file_name(format!(".{name}.{r:016x}.tmp"))
    }

    async fn commit(&self, tmp: &Path, dst: &Path) -> Result<(), DockyardError> {
        tokio::fs::rename(tmp, dst).await.map_err(|e| storage(dst, e))?;
        // The rename is durable only once the directory entry is; a crash must not lose a
        // result that was already reported as stored.
        if let Some(dir) = dst.parent() {
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }
}

/// Removes a temporary file when dropped. A put whose caller goes away (a request future
/// dropped at an `.await`) never reaches its own cleanup; without this, a half-written
/// `.tmp` file would stay in the store. After the rename there is nothing left to remove.
struct TmpFile(PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn storage(p: &Path, e: std::io::Error) -> DockyardError {
    DockyardError::Storage(format!("{}: {e}", p.display()))
}

#[async_trait]
impl ArtifactStore for LocalStore {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError> {
        let dst = self.path(key);
        if let Some(dir) = dst.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| storage(dir, e))?;
        }
        let tmp = self.tmp_path(&dst);
        let _tmp_guard = TmpFile(tmp.clone());
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| storage(&tmp, e))?;
            f.write_all(&data).await.map_err(|e| storage(&tmp, e))?;
            f.sync_all().await.map_err(|e| storage(&tmp, e))?;
            self.commit(&tmp, &dst).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result?;
        Ok(ObjectMeta {
            size: data.len() as u64,
            sha256: super::sha256_hex(&data),
        })
    }

    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError> {
        let dst = self.path(key);
        if let Some(dir) = dst.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| storage(dir, e))?;
        }
        let tmp = self.tmp_path(&dst);
        let _tmp_guard = TmpFile(tmp.clone());
        let result = async {
            let mut src = tokio::fs::File::open(path).await.map_err(|e| storage(path, e))?;
            let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| storage(&tmp, e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = src.read(&mut buf).await.map_err(|e| storage(path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).await.map_err(|e| storage(&tmp, e))?;
                size += n as u64;
            }
            out.sync_all().await.map_err(|e| storage(&tmp, e))?;
            self.commit(&tmp, &dst).await?;
            Ok(ObjectMeta {
                size,
                sha256: hex::encode(hasher.finalize()),
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError> {
        let p = self.path(key);
        match tokio::fs::read(&p).await {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DockyardError::not_found(format!("artifact {key}"))),
            Err(e) => Err(storage(&p, e)),
        }
    }

    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError> {
        // A file copy, not a read into memory: libraries can be gigabytes.
        let src = self.path(key);
        let tmp = self.tmp_path(path);
        match tokio::fs::copy(&src, &tmp).await {
            Ok(n) => {
                tokio::fs::rename(&tmp, path).await.map_err(|e| storage(path, e))?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                if e.kind() == std::io::ErrorKind::NotFound {
                    Err(DockyardError::not_found(format!("artifact {key}")))
                } else {
                    Err(storage(&src, e))
                }
            }
        }
    }

    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(ObjectMeta {
                size: b.len() as u64,
                sha256: super::sha256_hex(&b),
            })),
            Err(DockyardError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_prefix(&self, key: &ArtifactKey, len: usize) -> Result<Bytes, DockyardError> {
        let p = self.path(key);
        let f = match tokio::fs::File::open(&p).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(DockyardError::not_found(format!("artifact {key}"))),
            Err(e) => return Err(storage(&p, e)),
        };
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf).await.map_err(|e| storage(&p, e))?;
        Ok(Bytes::from(buf))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&dir) else { continue };
                for entry in rd.flatten() {
                    let p = entry.path();
                    if p.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    let Ok(rel) = p.strip_prefix(&root) else { continue };
                    let Some(rel) = rel.to_str() else { continue };
                    if rel.starts_with(&prefix) {
                        if let Ok(k) = ArtifactKey::new(rel) {
                            out.push(k);
                        }
                    }
                }
            }
            out.sort();
            out
        })
        .await
        .map_err(|e| DockyardError::Internal(e.to_string()))
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError> {
        let p = self.path(key);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(&p, e)),
        }
    }

    fn uri(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_head_list_delete() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = LocalStore::open(dir.path()).expect("open");
        let k = ArtifactKey::new("orgs/default/x/a.txt").expect("key");
        let meta = s.put(&k, Bytes::from_static(b"hello")).await.expect("put");
        assert_eq!(meta.size, 5);
        assert_eq!(&s.get(&k).await.expect("get")[..], b"hello");
        assert_eq!(s.head(&k).await.expect("head"), Some(meta));
        assert_eq!(s.list("orgs/default/").await.expect("list"), vec![k.clone()]);
        s.delete(&k).await.expect("delete");
        assert!(matches!(s.get(&k).await, Err(DockyardError::NotFound { .. })));
        assert_eq!(s.head(&k).await.expect("head"), None);
    }

    #[tokio::test]
    async fn put_file_streams_and_hashes() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = LocalStore::open(dir.path().join("store")).expect("open");
        let src = dir.path().join("in.bin");
        std::fs::write(&src, vec![7u8; 200_000]).expect("write");
        let k = ArtifactKey::new("a/b.bin").expect("key");
        let meta = s.put_file(&k, &src).await.expect("put_file");
        assert_eq!(meta.size, 200_000);
        assert_eq!(meta.sha256, crate::artifact::sha256_hex(&[7u8; 200_000]));
        let out = dir.path().join("out.bin");
        assert_eq!(s.get_to_file(&k, &out).await.expect("get_to_file"), 200_000);
    }
}
