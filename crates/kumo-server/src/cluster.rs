//! kumo as one node of several sharing a PostgreSQL database (`--database`): the node writes
//! its heartbeat to the node registry, and brings its caches (routes, aliases, schedules,
//! subscriptions, namespaces, tokens, loaded functions) up to date whenever any node changes
//! the registry, as the database's change feed reports it.

use crate::AppState;
use kumo_core::{HEARTBEAT_INTERVAL, NodeRecord};
use kumo_store::prelude::*;
use kumo_store::{Change, PgStore};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// After a change, how long to gather the ones that follow it before refreshing once.
const SETTLE: Duration = Duration::from_millis(20);
/// Wait before trying again to follow changes when the database cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// This node.
pub(crate) struct Node {
    pub id: String,
    pub started_at: i64,
    /// Where it serves: known once the listener is bound.
    pub address: OnceLock<String>,
}

impl Node {
    pub(crate) fn new(id: Option<String>) -> Self {
        Self {
            id: id.unwrap_or_else(default_node_id),
            started_at: kumo_core::now_ms(),
            address: OnceLock::new(),
        }
    }
}

/// The host name and a random suffix, so nodes restarted on one host never share an id.
fn default_node_id() -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!("{host}-{}", &suffix[suffix.len() - 6..])
}

/// Runs the node's part in the cluster until `stop`, then leaves the registry.
pub(crate) async fn run(state: Arc<AppState>, pg: PgStore, mut stop: watch::Receiver<bool>) {
    let follower = tokio::spawn(follow_changes(state.clone(), pg.clone()));
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if let Err(e) = pg.heartbeat(&node_record(&state)).await {
            tracing::warn!("{e:#}");
        }
    }
    follower.abort();
    if let Err(e) = pg.remove_node(&state.node.id).await {
        tracing::warn!("{e:#}");
    }
}

/// What this node says about itself now.
pub(crate) fn node_record(state: &AppState) -> NodeRecord {
    NodeRecord {
        id: state.node.id.clone(),
        address: state.node.address.get().cloned().unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: state.node.started_at,
        heartbeat_at: kumo_core::now_ms(),
        running: state.invoker.admission.in_flight() as u64,
        loaded: state.invoker.loaded_keys(),
    }
}

/// Refreshes the caches after every change any node makes (and after the feed was lost,
/// when changes may have been missed).
async fn follow_changes(state: Arc<AppState>, pg: PgStore) {
    loop {
        let mut feed = match pg.changes().await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::warn!("following the cluster's changes: {e:#}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Whatever changed before the feed started.
        refresh(&state, true).await;
        loop {
            let secrets = match feed.next().await {
                Ok(Change::Table(table)) => table == "secrets",
                Ok(Change::Missed) => true,
                Err(e) => {
                    tracing::warn!("following the cluster's changes: {e:#}");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            };
            tokio::time::sleep(SETTLE).await;
            refresh(&state, secrets).await;
        }
    }
}

/// Reloads everything the node caches from the store; with `secrets`, also drops the loaded
/// functions that read secrets, so their next invocation reads them anew.
async fn refresh(state: &AppState, secrets: bool) {
    if let Err(e) = reload(state, secrets).await {
        tracing::warn!("refreshing from the cluster's changes: {e:#}");
    }
}

async fn reload(state: &AppState, secrets: bool) -> anyhow::Result<()> {
    let functions = state.store.list_functions().await?;
    state.functions_changed(&functions);
    crate::api::aliases_changed(state)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    state
        .invoker
        .forget_changed(&functions, &state.store)
        .await?;
    state.namespaces_changed(state.store.list_namespaces().await?);
    state.invoker.auth.load(state.store.list_tokens().await?);
    crate::workflows::reload_triggers(state).await?;
    if secrets {
        state.invoker.forget_secret_users();
    }
    Ok(())
}
