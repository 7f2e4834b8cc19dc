//! `kumo migrate`: copies a single node's SQLite database into an empty PostgreSQL one, table
//! by table, in one transaction (all or nothing). Both schemas have the same tables and
//! column names; each value is read from SQLite as the type its PostgreSQL column has.

use super::PgStore;
use crate::sqlite::SqliteStore;
use anyhow::{Context as _, bail};
use futures::TryStreamExt as _;
use sqlx::Row as _;

/// Every table, in an order that needs no deferred checks (there are no foreign keys, but
/// the registry goes first all the same).
const TABLES: &[&str] = &[
    "namespaces",
    "functions",
    "versions",
    "version_numbers",
    "aliases",
    "tokens",
    "secrets",
    "audit",
    "kv",
    "objects",
    "events",
    "idempotency_keys",
    "schedule_ticks",
    "invocation_chunks",
    "log_chunks",
    "workflows",
    "executions",
    "execution_threads",
    "execution_history",
    "execution_signals",
];

/// Tables whose ids come from a sequence: it must continue after the copied ids (line ids
/// are log cursors, and must keep growing).
const SERIAL: &[&str] = &[
    "audit",
    "invocation_chunks",
    "log_chunks",
    "execution_signals",
];

/// A column's value, as its PostgreSQL type wants it.
enum Kind {
    Text,
    Int8,
    Int4,
    Int2,
    Bytes,
    Bool,
}

impl Kind {
    fn of(data_type: &str) -> anyhow::Result<Self> {
        Ok(match data_type {
            "text" => Self::Text,
            "bigint" => Self::Int8,
            "integer" => Self::Int4,
            "smallint" => Self::Int2,
            "bytea" => Self::Bytes,
            "boolean" => Self::Bool,
            other => bail!("no copy for PostgreSQL type {other}"),
        })
    }
}

impl PgStore {
    /// Copies everything in `source` into this database, which must be empty (as a fresh
    /// `kumo serve --database` leaves it); the rows copied per table.
    pub async fn import_sqlite(&self, source: &SqliteStore) -> anyhow::Result<Vec<(String, u64)>> {
        let mut tx = self.pool.begin().await?;
        // One importer at a time, and no node may be writing meanwhile.
        sqlx::query("LOCK TABLE functions, tokens, kv, events IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        for table in TABLES {
            let sql = format!("SELECT count(*) FROM {table}");
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *tx)
                .await?;
            let only_default = *table == "namespaces" && rows <= 1;
            if rows > 0 && !only_default {
                bail!("the target database already holds {table}: migrate into an empty one");
            }
        }
        // The source's namespaces, `default` included, replace the one a fresh schema has.
        sqlx::query("DELETE FROM namespaces")
            .execute(&mut *tx)
            .await?;
        let mut copied = Vec::new();
        for table in TABLES {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            let present =
                crate::sqlite::columns_of(&mut *source.pool.acquire().await?, table).await?;
            let columns: Vec<(String, Kind)> = columns
                .into_iter()
                .filter(|(name, _)| present.contains(name))
                .map(|(name, data_type)| Ok((name, Kind::of(&data_type)?)))
                .collect::<anyhow::Result<_>>()?;
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            let list = names.join(", ");
            let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let insert = format!(
                "INSERT INTO {table} ({list}) VALUES ({})",
                placeholders.join(", ")
            );
            let select = format!("SELECT {list} FROM {table}");
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&source.pool);
            let mut count = 0;
            while let Some(row) = rows
                .try_next()
                .await
                .with_context(|| format!("reading {table}"))?
            {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
                for (i, (_, kind)) in columns.iter().enumerate() {
                    query = match kind {
                        Kind::Text => query.bind(row.try_get::<Option<String>, _>(i)?),
                        Kind::Int8 => query.bind(row.try_get::<Option<i64>, _>(i)?),
                        Kind::Int4 => query.bind(row.try_get::<Option<i32>, _>(i)?),
                        Kind::Int2 => query.bind(row.try_get::<Option<i16>, _>(i)?),
                        Kind::Bytes => query.bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
                        Kind::Bool => query.bind(row.try_get::<Option<bool>, _>(i)?),
                    };
                }
                query
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("writing {table}"))?;
                count += 1;
            }
            if SERIAL.contains(table) {
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                         coalesce(max(id), 0) + 1, false) FROM {table}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
            }
            copied.push((table.to_string(), count));
        }
        tx.commit().await.context("committing the migration")?;
        Ok(copied)
    }
}
