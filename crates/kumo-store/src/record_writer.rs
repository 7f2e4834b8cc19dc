//! The writer of invocation records and log lines: the one write that happens for every
//! invocation. It has its own SQLite connection (rusqlite, on the same database and the same
//! SQLite library as sqlx) and two prepared statements (invocation chunks, log chunks), because
//! sqlx's async layer (a bound value boxed and copied per column, a round trip to its worker
//! thread per statement) cost more than SQLite's own work at tens of thousands of records a
//! second. Everything else stays on sqlx. Blocking: call it from a blocking thread.

use anyhow::Context as _;
use kumo_core::{InvocationRecord, OutputLine};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::Duration;

pub struct RecordWriter {
    to: Target,
}

enum Target {
    Sqlite(Connection),
    /// sqlx is as fast as PostgreSQL's round trips allow: a batch is one multi-row insert
    /// per table (see [`crate::PgStore::write_records`]).
    Postgres(crate::PgStore),
}

impl RecordWriter {
    /// Opens the database the [`crate::Store`] at `path` created (its schema must exist).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let connection = Connection::open(path)
            .with_context(|| format!("opening database {} for records", path.display()))?;
        // The pool's settings (see `SqliteStore::open`): WAL, NORMAL sync, a bigger page cache.
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "cache_size", -16384)?;
        Ok(Self {
            to: Target::Sqlite(connection),
        })
    }

    /// The writer for `store`: a connection of its own to SQLite's database at `sqlite_path`,
    /// or the PostgreSQL store's pool.
    pub fn for_store(store: &crate::Store, sqlite_path: &Path) -> anyhow::Result<Self> {
        match store {
            crate::Store::Sqlite(_) => Self::open(sqlite_path),
            crate::Store::Postgres(pg) => Ok(Self {
                to: Target::Postgres(pg.clone()),
            }),
        }
    }

    /// Writes a batch in one transaction: all of it or, on error, none. Blocking; for
    /// PostgreSQL it must run on a blocking thread of a tokio runtime.
    pub fn write(&mut self, batch: &[(InvocationRecord, Vec<OutputLine>)]) -> anyhow::Result<()> {
        let connection = match &mut self.to {
            Target::Sqlite(connection) => connection,
            Target::Postgres(pg) => {
                return tokio::runtime::Handle::current().block_on(pg.write_records(batch));
            }
        };
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(crate::invocations::INSERT_CHUNK)?;
            for chunk in crate::invocations::chunks_of(batch.iter().map(|(r, _)| r)) {
                insert.execute(params![
                    chunk.function,
                    chunk.first_id,
                    chunk.last_id,
                    chunk.records,
                    chunk.data
                ])?;
            }
            let mut insert = tx.prepare_cached(crate::logs::INSERT_CHUNK)?;
            for chunk in crate::logs::chunks_of_batch(batch) {
                insert.execute(params![
                    chunk.function,
                    chunk.max_ts,
                    chunk.lines,
                    chunk.data
                ])?;
            }
        }
        tx.commit().context("writing invocation records")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::sqlite::SqliteStore;
    use kumo_core::Outcome;

    /// A record of function `f` whose request id says it started at `ms`.
    fn record(ms: i64, outcome: Outcome) -> InvocationRecord {
        let id = crate::invocations::tests::id_at(ms, 0);
        crate::invocations::tests::record(&id, "f", outcome)
    }

    #[tokio::test]
    async fn a_written_batch_reads_back_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mut writer = RecordWriter::open(&path).unwrap();
        let records = [record(1_000, Outcome::Ok), record(1_001, Outcome::Timeout)];
        let hello = OutputLine {
            stream: kumo_core::LogStream::Stderr,
            line: "hello".into(),
        };
        let batch = [
            (records[0].clone(), vec![]),
            (records[1].clone(), vec![hello]),
        ];
        writer.write(&batch).unwrap();

        for r in &records {
            let got = store.get_invocation(&r.request_id).await.unwrap();
            assert_eq!(got.as_ref(), Some(r));
        }
        let logs = crate::logs::tests::newest_lines(&store, "f").await;
        let got: Vec<_> = logs.iter().map(crate::logs::tests::fields).collect();
        let r2 = records[1].request_id.as_str();
        assert_eq!(got, [(r2, 1_001, "stderr", "hello")]);
        assert_eq!(logs[0].trace_id, records[1].trace_id);
        assert!(logs[0].id > 0);
    }

    #[tokio::test]
    async fn a_batch_that_fails_part_way_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mut writer = RecordWriter::open(&path).unwrap();
        // The invocation goes in first; the log line then has no table to go to.
        let Target::Sqlite(connection) = &writer.to else {
            unreachable!("opened on SQLite")
        };
        connection.execute_batch("DROP TABLE log_chunks").unwrap();
        let lost = OutputLine {
            stream: kumo_core::LogStream::Stderr,
            line: "lost".into(),
        };
        let r = record(1_000, Outcome::Ok);
        let written = writer.write(&[(r.clone(), vec![lost])]);
        assert!(written.is_err(), "{written:?}");
        assert_eq!(store.get_invocation(&r.request_id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_database_from_the_first_release_takes_records_after_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        // The records tables as the first release created them.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE invocations (request_id TEXT PRIMARY KEY, function TEXT NOT NULL,
                     started_at INTEGER NOT NULL, duration_ms REAL NOT NULL,
                     billed_ms INTEGER NOT NULL, memory_mb INTEGER NOT NULL,
                     outcome TEXT NOT NULL, error_code TEXT, error_message TEXT,
                     status INTEGER NOT NULL);
                 CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT,
                     function TEXT NOT NULL, request_id TEXT NOT NULL, ts INTEGER NOT NULL,
                     stream TEXT NOT NULL, line TEXT NOT NULL);",
            )
            .unwrap();
        let store = SqliteStore::open(&path).await.unwrap();
        let mut writer = RecordWriter::open(&path).unwrap();
        let r = record(1_000, Outcome::Ok);
        writer.write(&[(r.clone(), vec![])]).unwrap();
        assert_eq!(store.get_invocation(&r.request_id).await.unwrap(), Some(r));
    }
}
