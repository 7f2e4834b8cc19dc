//! The audit trail: every change to the control plane, and every refused attempt at one.

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::AuditEntry;
use sqlx::Row as _;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,  -- unix ms
    token   TEXT,              -- the token's name (never its secret)
    method  TEXT NOT NULL,
    target  TEXT NOT NULL,     -- the path below /api/v1
    source  TEXT,              -- the client's address
    status  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"#;

impl crate::AuditStore for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, token, method, target, namespace, source, status)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entry.at)
        .bind(&entry.token)
        .bind(&entry.method)
        .bind(&entry.target)
        .bind(&entry.namespace)
        .bind(&entry.source)
        .bind(i64::from(entry.status))
        .execute(&self.pool)
        .await
        .context("writing the audit trail")?;
        Ok(())
    }

    async fn list_audit(
        &self,
        since: i64,
        namespace: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM audit WHERE at >= ?1 AND (?2 IS NULL OR namespace = ?2)
                            ORDER BY id DESC LIMIT ?3)
             ORDER BY id",
        )
        .bind(since)
        .bind(namespace)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading the audit trail")?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at: row.try_get("at")?,
                    token: row.try_get("token")?,
                    method: row.try_get("method")?,
                    target: row.try_get("target")?,
                    namespace: row.try_get("namespace")?,
                    source: row.try_get("source")?,
                    status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
                })
            })
            .collect()
    }
}

impl SqliteStore {
    /// Deletes audit entries older than `cutoff` (unix ms).
    pub(crate) async fn delete_old_audit(&self, cutoff: i64) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM audit WHERE at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .context("deleting old audit entries")?;
        Ok(done.rows_affected())
    }
}
