//! Content-addressed blobs (deployed code): `blobs/<sha256>` on disk, written once, never
//! changed. In a cluster whose nodes do not share a folder, each blob is also in an
//! S3-compatible bucket (`--objects`), and a node fetches into its own folder what another
//! node deployed.

use anyhow::Context as _;
use futures::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
    /// Where every node finds every blob, when the nodes share no folder.
    remote: Option<Arc<dyn ObjectStore>>,
}

impl Blobs {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            remote: None,
        })
    }

    /// Blobs kept in `dir` and in `remote` (a bucket's `code/` prefix).
    pub fn open_with_remote(dir: &Path, remote: Arc<dyn ObjectStore>) -> anyhow::Result<Self> {
        Ok(Self {
            remote: Some(remote),
            ..Self::open(dir)?
        })
    }

    pub fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Where the blob is on this node's disk once it is there (see [`Self::local_path`]).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The blob's file on this node's disk, fetched from the bucket first if another node
    /// stored it.
    pub async fn local_path(&self, sha256: &str) -> anyhow::Result<PathBuf> {
        let path = self.path(sha256);
        let Some(remote) = &self.remote else {
            return Ok(path);
        };
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let bytes = remote
            .get(&ObjectPath::from(sha256))
            .await
            .with_context(|| format!("fetching code {sha256}"))?
            .bytes()
            .await
            .with_context(|| format!("fetching code {sha256}"))?;
        anyhow::ensure!(
            Self::sha256(&bytes) == sha256,
            "the bucket's copy of code {sha256} does not hash to its name"
        );
        self.write_local(sha256, &bytes).await?;
        Ok(path)
    }

    /// Stores `bytes` under their sha256 (a no-op when already there) and returns the hash.
    pub async fn put(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let sha = Self::sha256(bytes);
        if let Some(remote) = &self.remote {
            let payload = PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
            remote
                .put(&ObjectPath::from(sha.as_str()), payload)
                .await
                .with_context(|| format!("storing code {sha} in the bucket"))?;
        }
        if !tokio::fs::try_exists(self.path(&sha))
            .await
            .unwrap_or(false)
        {
            self.write_local(&sha, bytes).await?;
        }
        Ok(sha)
    }

    /// Write then rename: a crash never leaves a truncated blob under its hash. Unique per
    /// write: concurrent deploys of the same new code each write their own file.
    async fn write_local(&self, sha: &str, bytes: &[u8]) -> anyhow::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{sha}.{}-{n}.tmp", std::process::id()));
        let path = self.path(sha);
        tokio::fs::write(&tmp, bytes)
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Deletes from the bucket the blobs no function or version uses (`in_use`) and not
    /// written for `min_age`; how many.
    pub async fn sweep_remote(
        &self,
        in_use: &HashSet<String>,
        min_age: Duration,
    ) -> anyhow::Result<usize> {
        let Some(remote) = &self.remote else {
            return Ok(0);
        };
        let cutoff = chrono::Utc::now() - min_age;
        let mut listing = remote.list(None);
        let mut removed = 0;
        while let Some(meta) = listing.try_next().await.context("listing code")? {
            let name = meta.location.as_ref().to_string();
            if meta.last_modified <= cutoff && !in_use.contains(&name) {
                remote.delete(&meta.location).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
