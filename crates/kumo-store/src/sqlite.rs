//! The SQLite database: schema, and one method per query the platform makes.

use anyhow::Context as _;
use futures::TryStreamExt as _;
use kumo_core::{FunctionKind, FunctionRecord};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS functions (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   INTEGER NOT NULL,
    config      TEXT NOT NULL,      -- FunctionConfig as JSON
    created_at  INTEGER NOT NULL,   -- unix ms
    updated_at  INTEGER NOT NULL
);
"#;

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

/// Which log lines to return: the newest `limit` lines (oldest first), optionally of one
/// request, only those after the cursor `after_id`, written at `since_ms` or later, or
/// containing `grep`.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub function: String,
    pub request_id: Option<String>,
    pub after_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub grep: Option<String>,
    pub limit: u32,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last transactions on power loss, never integrity.
            .synchronous(SqliteSynchronous::Normal)
            // 16 MiB of page cache per connection (SQLite's default is 2 MiB): the indexes of
            // the records tables are written all the time and should not be re-read.
            .pragma("cache_size", "-16384")
            .busy_timeout(Duration::from_secs(5));
        // The schema is brought up to date on one connection before the pool opens any: a
        // pooled connection that had read the old schema re-prepares a `SELECT *` after an
        // `ALTER TABLE` with more columns than sqlx described, and sqlx panics.
        let mut connection = options
            .connect()
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        crate::migrations::migrate(&mut connection).await?;
        connection.close().await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(|connection, _| Box::pin(still_usable(connection)))
            .connect_with(options)
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        Ok(Self { pool })
    }

    /// The code (sha256) of every function and version: what blobs and compiled artifacts
    /// must be kept.
    pub async fn code_in_use(&self) -> anyhow::Result<std::collections::HashSet<String>> {
        let rows =
            sqlx::query("SELECT code_sha256 FROM functions UNION SELECT code_sha256 FROM versions")
                .fetch_all(&self.pool)
                .await
                .context("listing the code in use")?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// The newest schema migration the database has had.
    pub async fn schema_version(&self) -> anyhow::Result<i64> {
        crate::migrations::schema_version(&mut *self.pool.acquire().await?).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a connection given back to the pool may be used again. A transaction whose COMMIT
/// failed (SQLITE_FULL on a full disk) can be rolled back by SQLite itself; sqlx's rollback on
/// drop then fails and leaves it counting an open transaction, so every later `begin` on that
/// connection failed ("non-zero transaction depth") until a restart. Such a connection is
/// closed instead; the pool opens a fresh one.
async fn still_usable(connection: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    if !connection.is_in_transaction() {
        return Ok(true);
    }
    // The rollback of a dropped transaction is queued to the connection's worker: a statement
    // after it runs once the rollback has.
    sqlx::query("SELECT 1").execute(&mut *connection).await?;
    Ok(!connection.is_in_transaction())
}

impl crate::FunctionStore for SqliteStore {
    /// Inserts or replaces a function; true when it was created.
    async fn upsert_function(&self, f: &FunctionRecord) -> anyhow::Result<bool> {
        let config = serde_json::to_string(&f.config)?;
        let row = sqlx::query(
            "INSERT INTO functions (name, kind, code_sha256, code_size, config, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (name) DO UPDATE SET kind = ?2, code_sha256 = ?3, code_size = ?4,
                 config = ?5, updated_at = ?6
             RETURNING created_at = updated_at AS created",
        )
        .bind(&f.name)
        .bind(f.kind.as_str())
        .bind(&f.code_sha256)
        .bind(i64::try_from(f.code_size).unwrap_or(i64::MAX))
        .bind(config)
        .bind(f.updated_at)
        .fetch_one(&self.pool)
        .await
        .context("saving function")?;
        Ok(row.try_get::<bool, _>("created")?)
    }

    async fn get_function(&self, name: &str) -> anyhow::Result<Option<FunctionRecord>> {
        let row = sqlx::query("SELECT * FROM functions WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .context("reading function")?;
        row.as_ref().map(function_from_row).transpose()
    }

    async fn list_functions(&self) -> anyhow::Result<Vec<FunctionRecord>> {
        // Row by row: `fetch_all` held every row's values at once (at start-up with 10,000
        // functions a 24 MiB peak, which glibc then kept as the server's idle memory).
        let mut rows = sqlx::query("SELECT * FROM functions ORDER BY name").fetch(&self.pool);
        let mut functions = Vec::new();
        while let Some(row) = rows.try_next().await.context("listing functions")? {
            functions.push(function_from_row(&row)?);
        }
        Ok(functions)
    }

    /// Deletes a function with its versions and aliases; its invocation records and logs stay
    /// until retention removes them.
    async fn delete_function(&self, name: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query("DELETE FROM functions WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for table in ["versions", "version_numbers", "aliases"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE function = ?"
            )))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("deleting function")?;
        Ok(done.rows_affected() > 0)
    }
}

/// Adds the `(table, column, declaration)`s a table does not have yet.
pub(crate) async fn add_columns(
    connection: &mut SqliteConnection,
    added: &[(&str, &str, &str)],
) -> anyhow::Result<()> {
    let mut tables: Vec<&str> = added.iter().map(|(table, _, _)| *table).collect();
    tables.dedup();
    for table in tables {
        let columns = columns_of(connection, table).await?;
        let missing = added
            .iter()
            .filter(|(t, column, _)| *t == table && !columns.iter().any(|c| c == column));
        for (_, column, declaration) in missing {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            )))
            .execute(&mut *connection)
            .await
            .with_context(|| format!("adding {table}.{column}"))?;
        }
    }
    Ok(())
}

/// The column names of `table`; none when there is no such table.
pub(crate) async fn columns_of(
    connection: &mut SqliteConnection,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    let columns = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(&mut *connection)
        .await?;
    Ok(columns)
}

fn function_from_row(row: &SqliteRow) -> anyhow::Result<FunctionRecord> {
    let kind: String = row.try_get("kind")?;
    let config: String = row.try_get("config")?;
    Ok(FunctionRecord {
        name: row.try_get("name")?,
        kind: FunctionKind::parse(&kind).with_context(|| format!("unknown kind {kind:?}"))?,
        code_sha256: row.try_get("code_sha256")?,
        code_size: u64::try_from(row.try_get::<i64, _>("code_size")?)?,
        config: serde_json::from_str(&config).context("stored config")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        reuse_fell_back: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use kumo_core::FunctionConfig;

    fn function(name: &str, at: i64) -> FunctionRecord {
        FunctionRecord {
            name: name.into(),
            kind: FunctionKind::WasiHttp,
            code_sha256: "ab".into(),
            code_size: 3,
            config: FunctionConfig::default(),
            created_at: at,
            updated_at: at,
            reuse_fell_back: false,
        }
    }

    #[tokio::test]
    async fn functions_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(store.upsert_function(&function("a", 1)).await.unwrap());
        assert!(!store.upsert_function(&function("a", 2)).await.unwrap());
        store.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        let got = store.get_function("a").await.unwrap().unwrap();
        assert_eq!((got.created_at, got.updated_at), (1, 2));
        assert!(store.delete_function("a").await.unwrap());
        assert!(store.get_function("a").await.unwrap().is_none());
    }

    /// What SQLite plans for `sql` (one line per step, e.g. "SEARCH t USING INDEX i (a=?)").
    async fn plan(store: &SqliteStore, sql: &str, binds: &[&str]) -> String {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for b in binds {
            query = query.bind(*b);
        }
        let rows = query.fetch_all(&store.pool).await.unwrap();
        let steps: Vec<String> = rows.iter().map(|r| r.get("detail")).collect();
        steps.join("\n")
    }

    #[tokio::test]
    async fn record_queries_use_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("kumo.db"))
            .await
            .unwrap();
        use crate::invocations::{
            CHUNKS_BELOW, CHUNKS_HOLDING, CHUNKS_OF_FUNCTION_BELOW, CHUNKS_SINCE,
        };
        let of_function = plan(&store, CHUNKS_OF_FUNCTION_BELOW, &["f", "~", "16"]).await;
        assert!(
            of_function.contains("USING INDEX invocation_chunks_by_function"),
            "{of_function}"
        );
        let id = "019a0000-0000-7000-8000-000000000000";
        for (sql, binds) in [
            (CHUNKS_BELOW, &["~", "16"][..]),
            (CHUNKS_HOLDING, &[id, id]),
            (CHUNKS_SINCE, &[id]),
        ] {
            let steps = plan(&store, sql, binds).await;
            assert!(
                steps.contains("USING INDEX invocation_chunks_by_last_id"),
                "{steps}"
            );
            assert!(!steps.contains("TEMP B-TREE"), "{steps}");
        }
        assert!(!of_function.contains("TEMP B-TREE"), "{of_function}");
        let logs = plan(
            &store,
            crate::logs::CHUNKS_PAGE,
            &["f", "9", "0", "0", "16"],
        )
        .await;
        assert!(
            logs.contains("USING INDEX log_chunks_by_function"),
            "{logs}"
        );
        assert!(!logs.contains("TEMP B-TREE"), "{logs}");
    }
}
