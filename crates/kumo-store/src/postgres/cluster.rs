//! What nodes sharing one PostgreSQL know of each other: the node registry (a row per node,
//! its heartbeat and load) and the change feed (a notification whenever the registry of
//! functions, versions, aliases, namespaces, tokens or secrets changes, from any node).

use super::PgStore;
use anyhow::Context as _;
use kumo_core::NodeRecord;
use sqlx::Row as _;
use sqlx::postgres::{PgListener, PgRow};

/// The channel the tables' triggers notify (see migration 5).
const CHANNEL: &str = "kumo_changes";

impl PgStore {
    /// Registers the node or refreshes its heartbeat and load.
    pub async fn heartbeat(&self, node: &NodeRecord) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO nodes (id, address, version, started_at, heartbeat_at, running, loaded)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                 version = excluded.version, started_at = excluded.started_at,
                 heartbeat_at = excluded.heartbeat_at, running = excluded.running,
                 loaded = excluded.loaded",
        )
        .bind(&node.id)
        .bind(&node.address)
        .bind(&node.version)
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .bind(i64::try_from(node.running).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(&node.loaded)?)
        .execute(&self.pool)
        .await
        .context("writing the node's heartbeat")?;
        Ok(())
    }

    /// Every registered node, by id; those down for an hour are forgotten first.
    pub async fn list_nodes(&self, now: i64) -> anyhow::Result<Vec<NodeRecord>> {
        sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
            .bind(now - 3_600_000)
            .execute(&self.pool)
            .await
            .context("forgetting old nodes")?;
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .context("listing nodes")?;
        rows.iter().map(node_from_row).collect()
    }

    /// Removes the node from the registry (it is stopping).
    pub async fn remove_node(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .context("removing the node")?;
        Ok(())
    }

    /// The feed of registry changes, from this moment on.
    pub async fn changes(&self) -> anyhow::Result<ChangeFeed> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("listening for changes")?;
        listener.listen(CHANNEL).await?;
        Ok(ChangeFeed { listener })
    }
}

/// Held while a node changes the registry in ways that need a check first (a deploy's route
/// conflicts and quota, an alias, a namespace): one node at a time. An advisory lock held by
/// an open transaction; dropping the guard rolls the transaction back, which releases it.
pub struct ClusterLock(Option<sqlx::Transaction<'static, sqlx::Postgres>>);

impl Drop for ClusterLock {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            // Now, not whenever the pool next uses the connection: others are waiting.
            tokio::spawn(async move {
                let _ = tx.rollback().await;
            });
        }
    }
}

impl PgStore {
    /// Waits until no other node holds the registry lock, then holds it.
    pub async fn lock_registry(&self) -> anyhow::Result<ClusterLock> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(1802858865)")
            .execute(&mut *tx)
            .await
            .context("locking the registry")?;
        Ok(ClusterLock(Some(tx)))
    }
}

fn node_from_row(row: &PgRow) -> anyhow::Result<NodeRecord> {
    let loaded: String = row.try_get("loaded")?;
    Ok(NodeRecord {
        id: row.try_get("id")?,
        address: row.try_get("address")?,
        version: row.try_get("version")?,
        started_at: row.try_get("started_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        running: u64::try_from(row.try_get::<i64, _>("running")?).unwrap_or(0),
        loaded: serde_json::from_str(&loaded).context("a node's loaded functions")?,
    })
}

/// What [`ChangeFeed::next`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// A table of the registry changed (its name).
    Table(String),
    /// The connection was lost and made again: changes may have been missed.
    Missed,
}

pub struct ChangeFeed {
    listener: PgListener,
}

impl ChangeFeed {
    /// Waits for the next change; an error when the database cannot be reached at all.
    pub async fn next(&mut self) -> anyhow::Result<Change> {
        match self.listener.try_recv().await? {
            Some(notification) => Ok(Change::Table(notification.payload().to_string())),
            None => Ok(Change::Missed),
        }
    }
}
