//! `--min-free-disk`: new data is refused (507 `insufficient_storage`) while the data
//! directory's filesystem has less free space than the threshold, so the last of the disk is
//! left for what must still be written: deletes, invocation records, the database's journal.
//! Reads, deletes and invocations go on; writes are taken again as soon as space returns.

use crate::error::{ApiResult, insufficient_storage};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Clone)]
pub(crate) struct DiskSpace(Arc<Inner>);

struct Inner {
    dir: PathBuf,
    min_free: u64,
    /// Free bytes at the last look.
    free: AtomicU64,
    low: AtomicBool,
}

impl DiskSpace {
    pub(crate) fn new(dir: PathBuf, min_free: u64) -> Self {
        Self(Arc::new(Inner {
            dir,
            min_free,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        }))
    }

    /// `Ok` when there is room for new data, else the 507 that says why.
    pub(crate) fn ensure_room(&self) -> ApiResult<()> {
        if !self.is_low() {
            return Ok(());
        }
        let free_mib = self.0.free.load(Ordering::Relaxed) >> 20;
        let mut refused = insufficient_storage();
        refused.message = format!(
            "{} ({free_mib} MiB free, --min-free-disk is {} MiB)",
            refused.message,
            self.0.min_free >> 20
        );
        Err(refused)
    }

    /// Whether free space is below the threshold. Looked at on every write (a `statvfs`, about
    /// a microsecond): a cached answer let a burst of fast writes run the disk full.
    pub(crate) fn is_low(&self) -> bool {
        let inner = &self.0;
        if inner.min_free == 0 {
            return false;
        }
        match crate::machine::free_disk_bytes(&inner.dir) {
            Ok(free) => {
                let low = free < inner.min_free;
                if low != inner.low.swap(low, Ordering::Relaxed) {
                    if low {
                        tracing::warn!(
                            free_mib = free >> 20,
                            "free disk space is below --min-free-disk: new data is refused"
                        );
                    } else {
                        tracing::info!(free_mib = free >> 20, "free disk space is back");
                    }
                }
                inner.free.store(free, Ordering::Relaxed);
                low
            }
            Err(e) => {
                tracing::warn!("cannot tell the free disk space: {e}");
                false
            }
        }
    }
}
