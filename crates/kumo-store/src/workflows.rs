//! Workflows (ASL state machines) and their executions: each execution's row, its threads
//! (one JSON document each, as the engine's pure core shapes them), its history, and the
//! signals (callbacks, stops) waiting for the node that drives it. The engine changes an
//! execution only while it holds the execution's lease, one transaction per transition;
//! signals come from anywhere and wake it.

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use sqlx::Row as _;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS workflows (
    name       TEXT PRIMARY KEY,     -- the namespace's key, as functions'
    definition TEXT NOT NULL,        -- the ASL document as deployed
    triggers   TEXT NOT NULL DEFAULT '{}',  -- WorkflowTriggers as JSON
    created_at INTEGER NOT NULL,     -- unix ms
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id          TEXT PRIMARY KEY,    -- UUIDv7
    workflow    TEXT NOT NULL,
    name        TEXT NOT NULL,       -- unique per workflow (an idempotent start)
    definition  TEXT NOT NULL,       -- what it runs: a redeploy changes only later executions
    status      TEXT NOT NULL,       -- running | succeeded | failed | timed_out | aborted
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    cause       TEXT,
    trace_id    TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    stopped_at  INTEGER,
    deadline    INTEGER,             -- the machine's TimeoutSeconds
    due_at      INTEGER,             -- when the engine must look at it next
    owner       TEXT,                -- the node driving it
    lease_until INTEGER,
    transitions INTEGER NOT NULL DEFAULT 0,
    history_len INTEGER NOT NULL DEFAULT 0,
    redrives    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (workflow, name)
);
CREATE INDEX IF NOT EXISTS executions_due ON executions (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS executions_of ON executions (workflow, id);
CREATE TABLE IF NOT EXISTS execution_threads (
    execution TEXT NOT NULL,
    thread    TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (execution, thread)
);
CREATE TABLE IF NOT EXISTS execution_history (
    execution TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    thread    TEXT NOT NULL,
    state     TEXT NOT NULL,
    detail    TEXT NOT NULL,
    PRIMARY KEY (execution, seq)
);
CREATE TABLE IF NOT EXISTS execution_signals (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    execution TEXT NOT NULL,
    thread    TEXT NOT NULL,
    kind      TEXT NOT NULL,         -- success | failure | heartbeat | stop
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS execution_signals_of ON execution_signals (execution, id);
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub name: String,
    pub definition: String,
    /// `kumo_core::WorkflowTriggers` as JSON.
    pub triggers: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub id: String,
    pub workflow: String,
    pub name: String,
    pub definition: String,
    pub status: String,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub trace_id: String,
    pub started_at: i64,
    pub stopped_at: Option<i64>,
    pub deadline: Option<i64>,
    pub transitions: i64,
    pub redrives: i64,
}

/// One entry of an execution's history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub thread: String,
    pub state: String,
    /// JSON.
    pub detail: String,
}

/// A callback or a stop for an execution, waiting for the node that drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub id: i64,
    pub thread: String,
    pub kind: String,
    /// JSON.
    pub body: String,
}

/// One write of a batch ([`crate::WorkflowStore::write_executions`]).
#[derive(Debug, Clone)]
pub enum ExecutionWrite<'a> {
    /// A new execution with its first transition (as `create_execution`).
    Create {
        execution: &'a ExecutionRecord,
        save: &'a ExecutionSave,
        owner: &'a str,
        lease_until: i64,
    },
    /// A transition of an execution `owner` drives (as `save_execution`).
    Save {
        id: &'a str,
        owner: &'a str,
        save: &'a ExecutionSave,
    },
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionEnd {
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub at: i64,
}

/// One transition of an execution, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ExecutionSave {
    /// Threads to write (their JSON) or, with None, to delete.
    pub threads: Vec<(String, Option<String>)>,
    /// (at, kind, thread, state, detail JSON), appended in order.
    pub history: Vec<(i64, String, String, String, String)>,
    /// States entered.
    pub transitions: u32,
    /// The execution ends.
    pub end: Option<ExecutionEnd>,
    /// When the engine must look at it next (None: only a signal wakes it).
    pub due_at: Option<i64>,
    /// Give up the lease: the node no longer drives the execution.
    pub release: bool,
    /// Signals handled: those up to this id are deleted.
    pub signals_done: Option<i64>,
}

/// A row both backends can decode: text and integer columns by name.
pub(crate) trait Decoded: sqlx::Row
where
    for<'c> &'c str: sqlx::ColumnIndex<Self>,
{
    fn text(&self, column: &str) -> anyhow::Result<String>;
    fn int(&self, column: &str) -> anyhow::Result<i64>;
    fn maybe_text(&self, column: &str) -> anyhow::Result<Option<String>>;
    fn maybe_int(&self, column: &str) -> anyhow::Result<Option<i64>>;
}

impl<R: sqlx::Row> Decoded for R
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, column: &str) -> anyhow::Result<String> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> anyhow::Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn maybe_text(&self, column: &str) -> anyhow::Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn maybe_int(&self, column: &str) -> anyhow::Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
}

/// An execution's row (the columns of `columns!`), on either backend.
pub(crate) fn execution<R: Decoded>(row: &R) -> anyhow::Result<ExecutionRecord>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    Ok(ExecutionRecord {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        name: row.text("name")?,
        definition: row.text("definition")?,
        status: row.text("status")?,
        input: row.text("input")?,
        output: row.maybe_text("output")?,
        error: row.maybe_text("error")?,
        cause: row.maybe_text("cause")?,
        trace_id: row.text("trace_id")?,
        started_at: row.int("started_at")?,
        stopped_at: row.maybe_int("stopped_at")?,
        deadline: row.maybe_int("deadline")?,
        transitions: row.int("transitions")?,
        redrives: row.int("redrives")?,
    })
}

pub(crate) fn workflow<R: Decoded>(row: &R) -> anyhow::Result<WorkflowRecord>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    Ok(WorkflowRecord {
        name: row.text("name")?,
        definition: row.text("definition")?,
        triggers: row.text("triggers")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(crate) fn history_entry<R: Decoded>(row: &R) -> anyhow::Result<HistoryEntry>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    Ok(HistoryEntry {
        seq: row.int("seq")?,
        at: row.int("at")?,
        kind: row.text("kind")?,
        thread: row.text("thread")?,
        state: row.text("state")?,
        detail: row.text("detail")?,
    })
}

pub(crate) fn signal<R: Decoded>(row: &R) -> anyhow::Result<Signal>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    Ok(Signal {
        id: row.int("id")?,
        thread: row.text("thread")?,
        kind: row.text("kind")?,
        body: row.text("body")?,
    })
}

/// An execution's columns, as [`execution`] reads them.
macro_rules! columns {
    () => {
        "id, workflow, name, definition, status, input, output, error, cause, trace_id, \
         started_at, stopped_at, deadline, transitions, redrives"
    };
}

impl crate::WorkflowStore for SqliteStore {
    async fn put_workflow(
        &self,
        name: &str,
        definition: &str,
        triggers: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "INSERT INTO workflows (name, definition, triggers, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (name) DO UPDATE SET definition = ?2, triggers = ?3, updated_at = ?4
             RETURNING created_at = updated_at AS created",
        )
        .bind(name)
        .bind(definition)
        .bind(triggers)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .context("saving a workflow")?;
        Ok(row.try_get::<bool, _>("created")?)
    }

    async fn get_workflow(&self, name: &str) -> anyhow::Result<Option<WorkflowRecord>> {
        sqlx::query("SELECT * FROM workflows WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .context("reading a workflow")?
            .as_ref()
            .map(workflow)
            .transpose()
    }

    async fn list_workflows(&self) -> anyhow::Result<Vec<WorkflowRecord>> {
        sqlx::query("SELECT * FROM workflows ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context("listing workflows")?
            .iter()
            .map(workflow)
            .collect()
    }

    async fn delete_workflow(&self, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM workflows WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting a workflow")?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_execution(
        &self,
        e: &ExecutionRecord,
        save: &ExecutionSave,
        owner: &str,
        lease_until: i64,
    ) -> anyhow::Result<bool> {
        let create = ExecutionWrite::Create {
            execution: e,
            save,
            owner,
            lease_until,
        };
        Ok(self.write_executions(&[create]).await?[0])
    }

    async fn get_execution(&self, id: &str) -> anyhow::Result<Option<ExecutionRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM executions WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .context("reading an execution")?
        .as_ref()
        .map(execution)
        .transpose()
    }

    async fn find_execution(
        &self,
        workflow: &str,
        name: &str,
    ) -> anyhow::Result<Option<ExecutionRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM executions WHERE workflow = ? AND name = ?"
        ))
        .bind(workflow)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .context("reading an execution")?
        .as_ref()
        .map(execution)
        .transpose()
    }

    async fn list_executions(
        &self,
        workflow: &str,
        status: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<ExecutionRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM executions WHERE workflow = ?1 AND (?2 IS NULL OR status = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))
        .bind(workflow)
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing executions")?
        .iter()
        .map(execution)
        .collect()
    }

    async fn execution_threads(&self, id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT thread, doc FROM execution_threads WHERE execution = ?")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .context("reading an execution's threads")?;
        rows.iter()
            .map(|row| Ok((row.try_get("thread")?, row.try_get("doc")?)))
            .collect()
    }

    async fn execution_history(
        &self,
        id: &str,
        after: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, thread, state, detail FROM execution_history
             WHERE execution = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading an execution's history")?;
        rows.iter().map(history_entry).collect()
    }

    async fn save_execution(
        &self,
        id: &str,
        owner: &str,
        save: &ExecutionSave,
    ) -> anyhow::Result<bool> {
        let saved = self
            .write_executions(&[ExecutionWrite::Save { id, owner, save }])
            .await?;
        Ok(saved[0])
    }

    async fn write_executions(&self, batch: &[ExecutionWrite<'_>]) -> anyhow::Result<Vec<bool>> {
        let mut tx = self.pool.begin().await?;
        let mut written = Vec::with_capacity(batch.len());
        for write in batch {
            written.push(match write {
                ExecutionWrite::Create {
                    execution,
                    save,
                    owner,
                    lease_until,
                } => insert(&mut tx, execution, save, owner, *lease_until).await?,
                ExecutionWrite::Save { id, owner, save } => apply(&mut tx, id, owner, save).await?,
            });
        }
        tx.commit().await.context("writing executions")?;
        Ok(written)
    }

    async fn redrive_execution(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        deadline: Option<i64>,
        save: &ExecutionSave,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "UPDATE executions SET status = 'running', output = NULL, error = NULL, cause = NULL,
                 stopped_at = NULL, redrives = redrives + 1, owner = ?, lease_until = ?,
                 deadline = ?
             WHERE id = ? AND status IN ('failed', 'timed_out', 'aborted')",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(deadline)
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("redriving an execution")?;
        if taken.rows_affected() == 0 {
            return Ok(false);
        }
        anyhow::ensure!(
            apply(&mut tx, id, owner, save).await?,
            "a redriven execution is its redriver's"
        );
        tx.commit().await.context("redriving an execution")?;
        Ok(true)
    }

    async fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<ExecutionRecord>> {
        sqlx::query(concat!("UPDATE executions SET owner = ?1, lease_until = ?2
             WHERE id IN (SELECT id FROM executions
                 WHERE due_at <= ?3 AND status = 'running' AND (lease_until IS NULL OR lease_until < ?3)
                 ORDER BY due_at LIMIT ?4)
             RETURNING ", columns!(), ""))
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("claiming executions")?
        .iter()
        .map(execution)
        .collect()
    }

    async fn extend_execution_leases(
        &self,
        owner: &str,
        ids: &[String],
        lease_until: i64,
    ) -> anyhow::Result<u64> {
        let mut moved = 0;
        let mut tx = self.pool.begin().await?;
        for id in ids {
            moved += sqlx::query(
                "UPDATE executions SET lease_until = MAX(lease_until, ?) WHERE id = ? AND owner = ?",
            )
            .bind(lease_until)
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .context("renewing execution leases")?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(moved)
    }

    async fn release_executions(&self, owner: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE executions SET owner = NULL, lease_until = NULL,
                 due_at = CASE WHEN status = 'running' THEN COALESCE(due_at, 0) ELSE NULL END
             WHERE owner = ?",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        .context("releasing execution leases")?;
        Ok(done.rows_affected())
    }

    async fn signal_execution(
        &self,
        id: &str,
        thread: &str,
        kind: &str,
        body: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let woken = sqlx::query(
            "UPDATE executions SET due_at = MIN(COALESCE(due_at, ?1), ?1)
             WHERE id = ?2 AND status = 'running'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("signalling an execution")?;
        if woken.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO execution_signals (execution, thread, kind, body) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(thread)
        .bind(kind)
        .bind(body)
        .execute(&mut *tx)
        .await
        .context("signalling an execution")?;
        tx.commit().await?;
        Ok(true)
    }

    async fn execution_signals(&self, id: &str) -> anyhow::Result<Vec<Signal>> {
        let rows = sqlx::query(
            "SELECT id, thread, kind, body FROM execution_signals WHERE execution = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .context("reading an execution's signals")?;
        rows.iter().map(signal).collect()
    }

    async fn workflow_usage(
        &self,
        since: i64,
        namespace: Option<&str>,
    ) -> anyhow::Result<(u64, u64)> {
        // A key of namespace NS is `NS/NAME`, or a bare name in `default`.
        let (executions, transitions): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(transitions), 0) FROM executions
             WHERE started_at >= ?2 AND (?1 IS NULL OR CASE WHEN ?1 = 'default'
                 THEN instr(workflow, '/') = 0
                 ELSE substr(workflow, 1, length(?1) + 1) = ?1 || '/' END)",
        )
        .bind(namespace)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .context("summing workflow usage")?;
        Ok((executions as u64, transitions as u64))
    }

    async fn next_execution_due(&self) -> anyhow::Result<Option<i64>> {
        let due: Option<i64> = sqlx::query_scalar(
            // Claimable once it is due and no lease holds it.
            "SELECT MIN(MAX(due_at, COALESCE(lease_until, 0))) FROM executions
             WHERE due_at IS NOT NULL AND status = 'running'",
        )
        .fetch_one(&self.pool)
        .await
        .context("finding the next execution due")?;
        Ok(due)
    }
}

/// Stores a new execution with its first transition, leased to `owner`; false (nothing
/// stored) when its workflow has an execution of that name.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: &ExecutionRecord,
    save: &ExecutionSave,
    owner: &str,
    lease_until: i64,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO executions (id, workflow, name, definition, status, input, trace_id,
             started_at, deadline, due_at, owner, lease_until)
         VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (workflow, name) DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.workflow)
    .bind(&e.name)
    .bind(&e.definition)
    .bind(&e.input)
    .bind(&e.trace_id)
    .bind(e.started_at)
    .bind(e.deadline)
    .bind(save.due_at)
    .bind(owner)
    .bind(lease_until)
    .execute(&mut **tx)
    .await
    .context("starting an execution")?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    anyhow::ensure!(
        apply(tx, &e.id, owner, save).await?,
        "a new execution is its starter's"
    );
    Ok(true)
}

/// Writes one transition of execution `id`, only while `owner` holds its lease (false: it
/// does not, and nothing was written). The first statement writes, so the transaction takes
/// SQLite's write lock (waiting its turn) before it reads anything.
async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    owner: &str,
    save: &ExecutionSave,
) -> anyhow::Result<bool> {
    let context = || format!("saving execution {id}");
    // A signal that came after the driver read its signals makes the execution due at once,
    // whatever the driver thought its next time was.
    let first: Option<i64> = sqlx::query_scalar(
        "UPDATE executions SET history_len = history_len + ?1, transitions = transitions + ?2,
             due_at = CASE WHEN EXISTS (SELECT 1 FROM execution_signals
                     WHERE execution = ?4 AND id > COALESCE(?7, 0))
                 THEN 0 ELSE ?3 END,
             owner = CASE WHEN ?5 THEN NULL ELSE owner END,
             lease_until = CASE WHEN ?5 THEN NULL ELSE lease_until END
         WHERE id = ?4 AND owner = ?6
         RETURNING history_len - ?1",
    )
    .bind(save.history.len() as i64)
    .bind(save.transitions)
    .bind(save.due_at)
    .bind(id)
    .bind(save.release)
    .bind(owner)
    .bind(save.signals_done)
    .fetch_optional(&mut **tx)
    .await
    .with_context(context)?;
    let Some(first) = first else {
        return Ok(false);
    };
    if let Some(done) = save.signals_done {
        sqlx::query("DELETE FROM execution_signals WHERE execution = ? AND id <= ?")
            .bind(id)
            .bind(done)
            .execute(&mut **tx)
            .await
            .with_context(context)?;
    }
    for (thread, doc) in &save.threads {
        match doc {
            Some(doc) => {
                sqlx::query(
                    "INSERT INTO execution_threads (execution, thread, doc) VALUES (?1, ?2, ?3)
                     ON CONFLICT (execution, thread) DO UPDATE SET doc = ?3",
                )
                .bind(id)
                .bind(thread)
                .bind(doc)
                .execute(&mut **tx)
                .await
                .with_context(context)?;
            }
            None => {
                sqlx::query("DELETE FROM execution_threads WHERE execution = ? AND thread = ?")
                    .bind(id)
                    .bind(thread)
                    .execute(&mut **tx)
                    .await
                    .with_context(context)?;
            }
        }
    }
    // Entries in multi-row statements (SQLite takes at most 32,766 parameters).
    for (chunk_index, chunk) in save.history.chunks(500).enumerate() {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO execution_history (execution, seq, at, kind, thread, state, detail) ",
        );
        insert.push_values(chunk.iter().enumerate(), |mut row, (i, entry)| {
            let (at, kind, thread, state, detail) = entry;
            row.push_bind(id)
                .push_bind(first + (chunk_index * 500 + i) as i64 + 1)
                .push_bind(*at)
                .push_bind(kind)
                .push_bind(thread)
                .push_bind(state)
                .push_bind(detail);
        });
        insert
            .build()
            .execute(&mut **tx)
            .await
            .with_context(context)?;
    }
    if let Some(end) = &save.end {
        sqlx::query(
            "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stopped_at = ?,
                 due_at = NULL, owner = NULL, lease_until = NULL
             WHERE id = ?",
        )
        .bind(&end.status)
        .bind(&end.output)
        .bind(&end.error)
        .bind(&end.cause)
        .bind(end.at)
        .bind(id)
        .execute(&mut **tx)
        .await
        .with_context(context)?;
        // A failed execution keeps its threads: a redrive starts again where it failed.
        if end.status == "succeeded" {
            sqlx::query("DELETE FROM execution_threads WHERE execution = ?")
                .bind(id)
                .execute(&mut **tx)
                .await
                .with_context(context)?;
        }
    }
    Ok(true)
}
