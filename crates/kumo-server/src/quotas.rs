//! Namespace quotas on the server: what a namespace uses, and the check ahead of each write
//! that would take it past a quota (409 `quota_exceeded`, nothing written). Concurrency is
//! admission's (429). A check and its write are not one transaction: writers racing each
//! other may overshoot a quota by what they write at once.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::namespaces::Namespaces;
use kumo_core::{Adding, ErrorKind, NamespaceUse};
use kumo_store::Store;
use kumo_store::prelude::*;
use std::sync::Arc;

/// Checks writes against the quotas of the namespace they go to.
#[derive(Clone)]
pub(crate) struct QuotaCheck {
    pub(crate) store: Store,
    pub(crate) namespaces: Arc<Namespaces>,
}

impl QuotaCheck {
    /// `Ok` if `namespace` stays within its quotas after `adding`. Measures its use only when
    /// a quota bounds what is added, so namespaces without quotas cost a map lookup.
    pub(crate) async fn ensure(&self, namespace: &str, adding: Adding) -> ApiResult<()> {
        let Some(quotas) = self.namespaces.quotas(namespace) else {
            return Ok(());
        };
        if !quotas.bounds(adding) {
            return Ok(());
        }
        let used = self.store.namespace_use(namespace).await?;
        quotas
            .check(namespace, &used, adding)
            .map_err(|exceeded| ApiError::new(ErrorKind::QuotaExceeded, exceeded))
    }
}

/// What `namespace` uses now: the store's measure and the invocations running in it.
pub(crate) async fn in_use(state: &AppState, namespace: &str) -> ApiResult<NamespaceUse> {
    let mut used = state.store.namespace_use(namespace).await?;
    used.concurrency = state.invoker.admission.running_in(namespace) as u64;
    Ok(used)
}
