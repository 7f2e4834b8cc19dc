//! Schema changes as numbered migrations, applied in order at start, each in its own
//! transaction together with the row in `schema_migrations` that records it. A database
//! therefore says which schema it has, and a change is a new entry at the end of
//! [`MIGRATIONS`], never an edit of an old one.
//!
//! Migration 1 is the schema of every table as kumo had it before migrations were numbered
//! (`CREATE TABLE IF NOT EXISTS`), so it also brings up to date a database of any earlier
//! release, which has no `schema_migrations` table; 2 and 3 convert the per-row record and log
//! tables of the oldest releases into chunks (nothing to do where they do not exist).

use anyhow::Context as _;
use futures::future::BoxFuture;
use sqlx::{Connection as _, SqliteConnection};

type Code = for<'c> fn(&'c mut SqliteConnection) -> BoxFuture<'c, anyhow::Result<()>>;

enum Step {
    Sql(&'static [&'static str]),
    Code(Code),
}

struct Migration {
    version: i64,
    name: &'static str,
    step: Step,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tables of kumo before numbered migrations",
        step: Step::Sql(&[
            crate::sqlite::SCHEMA,
            crate::queue::SCHEMA,
            crate::kv::SCHEMA,
            crate::objects::SCHEMA,
            crate::versions::SCHEMA,
            crate::logs::SCHEMA,
            crate::invocations::SCHEMA,
        ]),
    },
    Migration {
        version: 2,
        name: "invocation records of the invocations table into chunks",
        step: Step::Code(|c| Box::pin(crate::invocations::convert_record_table(c))),
    },
    Migration {
        version: 3,
        name: "log lines of the logs table into chunks",
        step: Step::Code(|c| Box::pin(crate::logs::convert_line_table(c))),
    },
    Migration {
        version: 4,
        name: "API tokens",
        step: Step::Sql(&[crate::tokens::SCHEMA]),
    },
    Migration {
        version: 5,
        name: "audit trail",
        step: Step::Sql(&[crate::audit::SCHEMA]),
    },
    Migration {
        version: 6,
        name: "function secrets (sealed)",
        step: Step::Sql(&[crate::secrets::SCHEMA]),
    },
    Migration {
        version: 7,
        name: "namespaces: their table, tokens' and audit entries' namespace",
        step: Step::Sql(&[crate::namespaces::SCHEMA]),
    },
    Migration {
        version: 8,
        name: "tokens' access keys (SigV4)",
        step: Step::Sql(&[crate::tokens::ACCESS_KEYS]),
    },
    Migration {
        version: 9,
        name: "workflows and their executions",
        step: Step::Sql(&[crate::workflows::SCHEMA]),
    },
];

/// The schema version this kumo writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const HISTORY: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL   -- unix ms
)";

/// Applies the migrations the database has not had yet; refuses a database written by a
/// newer kumo (its schema may mean something this one does not know).
pub(crate) async fn migrate(connection: &mut SqliteConnection) -> anyhow::Result<()> {
    sqlx::raw_sql(HISTORY).execute(&mut *connection).await?;
    let applied = schema_version(connection).await?;
    anyhow::ensure!(
        applied <= SCHEMA_VERSION,
        "the database has schema version {applied}, written by a newer kumo; this one knows \
         versions up to {SCHEMA_VERSION}"
    );
    for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
        let context = || {
            format!(
                "schema migration {} ({})",
                migration.version, migration.name
            )
        };
        let mut tx = connection.begin().await.with_context(context)?;
        match &migration.step {
            Step::Sql(statements) => {
                for sql in *statements {
                    sqlx::raw_sql(*sql)
                        .execute(&mut *tx)
                        .await
                        .with_context(context)?;
                }
            }
            Step::Code(code) => code(&mut tx).await.with_context(context)?,
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(kumo_core::now_ms())
            .execute(&mut *tx)
            .await
            .with_context(context)?;
        tx.commit().await.with_context(context)?;
        tracing::info!(
            version = migration.version,
            "database schema migrated: {}",
            migration.name
        );
    }
    Ok(())
}

/// The newest migration a database has had (0: none).
pub(crate) async fn schema_version(connection: &mut SqliteConnection) -> anyhow::Result<i64> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *connection)
        .await
        .context("reading the schema version")?;
    Ok(version.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }
}
