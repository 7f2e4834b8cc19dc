//! Content-addressed blobs on disk: `blobs/<sha256>`, written once, never changed.

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Stores `bytes` under their sha256 (a no-op when already there) and returns the hash.
    pub async fn put(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let sha = Self::sha256(bytes);
        let path = self.path(&sha);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(sha);
        }
        // Write then rename: a crash never leaves a truncated blob under its hash.
        // Unique per write: concurrent deploys of the same new code each write their own file.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{sha}.{}-{n}.tmp", std::process::id()));
        tokio::fs::write(&tmp, bytes)
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .with_context(|| format!("renaming to {}", path.display()))?;
        Ok(sha)
    }
}
