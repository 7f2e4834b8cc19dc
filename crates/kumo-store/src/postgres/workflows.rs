//! Workflows and their executions on PostgreSQL: the tables and contract of the SQLite
//! backend (`crate::workflows`). Claims skip rows other nodes are claiming (`SKIP LOCKED`),
//! and a save checks the lease in the statement that writes the execution's row.

use super::PgStore;
use crate::workflows::{execution, history_entry, signal, workflow};
use crate::{ExecutionRecord, ExecutionSave, ExecutionWrite, HistoryEntry, Signal, WorkflowRecord};
use anyhow::Context as _;

/// An execution's columns, as [`execution`] reads them.
macro_rules! columns {
    () => {
        "id, workflow, name, definition, status, input, output, error, cause, trace_id, \
         started_at, stopped_at, deadline, transitions, redrives"
    };
}

impl crate::WorkflowStore for PgStore {
    async fn put_workflow(
        &self,
        name: &str,
        definition: &str,
        triggers: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let created: bool = sqlx::query_scalar(
            "INSERT INTO workflows (name, definition, triggers, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (name) DO UPDATE SET definition = $2, triggers = $3, updated_at = $4
             RETURNING (xmax = 0)",
        )
        .bind(name)
        .bind(definition)
        .bind(triggers)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .context("saving a workflow")?;
        Ok(created)
    }

    async fn get_workflow(&self, name: &str) -> anyhow::Result<Option<WorkflowRecord>> {
        sqlx::query("SELECT * FROM workflows WHERE name = $1")
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
        let done = sqlx::query("DELETE FROM workflows WHERE name = $1")
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
            " FROM executions WHERE id = $1"
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
            " FROM executions WHERE workflow = $1 AND name = $2"
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
            " FROM executions
             WHERE workflow = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(workflow)
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("listing executions")?
        .iter()
        .map(execution)
        .collect()
    }

    async fn execution_threads(&self, id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT thread, doc FROM execution_threads WHERE execution = $1")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .context("reading an execution's threads")?;
        Ok(rows)
    }

    async fn execution_history(
        &self,
        id: &str,
        after: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, thread, state, detail FROM execution_history
             WHERE execution = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(i64::from(limit))
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
                 stopped_at = NULL, redrives = redrives + 1, owner = $1, lease_until = $2,
                 deadline = $4
             WHERE id = $3 AND status IN ('failed', 'timed_out', 'aborted')",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(id)
        .bind(deadline)
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
        sqlx::query(concat!(
            "UPDATE executions SET owner = $1, lease_until = $2
             WHERE id IN (SELECT id FROM executions
                 WHERE due_at <= $3 AND status = 'running'
                     AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            columns!(),
            ""
        ))
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(limit))
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
        let done = sqlx::query(
            "UPDATE executions SET lease_until = GREATEST(lease_until, $1)
             WHERE id = ANY($2) AND owner = $3",
        )
        .bind(lease_until)
        .bind(ids)
        .bind(owner)
        .execute(&self.pool)
        .await
        .context("renewing execution leases")?;
        Ok(done.rows_affected())
    }

    async fn release_executions(&self, owner: &str) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE executions SET owner = NULL, lease_until = NULL,
                 due_at = CASE WHEN status = 'running' THEN COALESCE(due_at, 0) ELSE NULL END
             WHERE owner = $1",
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
            "UPDATE executions SET due_at = LEAST(COALESCE(due_at, $1), $1)
             WHERE id = $2 AND status = 'running'",
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
            "INSERT INTO execution_signals (execution, thread, kind, body) VALUES ($1, $2, $3, $4)",
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
            "SELECT id, thread, kind, body FROM execution_signals WHERE execution = $1 ORDER BY id",
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
            "SELECT COUNT(*), COALESCE(SUM(transitions), 0)::bigint FROM executions
             WHERE started_at >= $2 AND ($1::text IS NULL OR CASE WHEN $1 = 'default'
                 THEN strpos(workflow, '/') = 0 ELSE starts_with(workflow, $1 || '/') END)",
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
            "SELECT MIN(GREATEST(due_at, COALESCE(lease_until, 0))) FROM executions
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    e: &ExecutionRecord,
    save: &ExecutionSave,
    owner: &str,
    lease_until: i64,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO executions (id, workflow, name, definition, status, input, trace_id,
             started_at, deadline, due_at, owner, lease_until)
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9, $10, $11)
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
/// does not, and the caller rolls back; the row stays locked to the end of the transaction,
/// so no claim slips in between).
async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &str,
    owner: &str,
    save: &ExecutionSave,
) -> anyhow::Result<bool> {
    let context = || format!("saving execution {id}");
    // A signal that came after the driver read its signals makes the execution due at once.
    let first: Option<i64> = sqlx::query_scalar(
        "UPDATE executions SET history_len = history_len + $1, transitions = transitions + $2,
             due_at = CASE WHEN EXISTS (SELECT 1 FROM execution_signals
                     WHERE execution = $4 AND id > COALESCE($7, 0))
                 THEN 0 ELSE $3 END,
             owner = CASE WHEN $5 THEN NULL ELSE owner END,
             lease_until = CASE WHEN $5 THEN NULL ELSE lease_until END
         WHERE id = $4 AND owner = $6
         RETURNING history_len - $1",
    )
    .bind(save.history.len() as i64)
    .bind(i64::from(save.transitions))
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
        sqlx::query("DELETE FROM execution_signals WHERE execution = $1 AND id <= $2")
            .bind(id)
            .bind(done)
            .execute(&mut **tx)
            .await
            .with_context(context)?;
    }
    let (written, removed): (Vec<_>, Vec<_>) = save.threads.iter().partition(|(_, d)| d.is_some());
    if !written.is_empty() {
        let threads: Vec<&str> = written.iter().map(|(t, _)| t.as_str()).collect();
        let docs: Vec<&str> = written.iter().filter_map(|(_, d)| d.as_deref()).collect();
        sqlx::query(
            "INSERT INTO execution_threads (execution, thread, doc)
             SELECT $1, * FROM unnest($2::text[], $3::text[])
             ON CONFLICT (execution, thread) DO UPDATE SET doc = EXCLUDED.doc",
        )
        .bind(id)
        .bind(threads)
        .bind(docs)
        .execute(&mut **tx)
        .await
        .with_context(context)?;
    }
    if !removed.is_empty() {
        let threads: Vec<&str> = removed.iter().map(|(t, _)| t.as_str()).collect();
        sqlx::query("DELETE FROM execution_threads WHERE execution = $1 AND thread = ANY($2)")
            .bind(id)
            .bind(threads)
            .execute(&mut **tx)
            .await
            .with_context(context)?;
    }
    if !save.history.is_empty() {
        let seqs: Vec<i64> = (1..=save.history.len() as i64).map(|i| first + i).collect();
        let column = |f: fn(&(i64, String, String, String, String)) -> &str| -> Vec<&str> {
            save.history.iter().map(f).collect()
        };
        let ats: Vec<i64> = save.history.iter().map(|h| h.0).collect();
        sqlx::query(
            "INSERT INTO execution_history (execution, seq, at, kind, thread, state, detail)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[],
                 $6::text[], $7::text[])",
        )
        .bind(id)
        .bind(seqs)
        .bind(ats)
        .bind(column(|h| &h.1))
        .bind(column(|h| &h.2))
        .bind(column(|h| &h.3))
        .bind(column(|h| &h.4))
        .execute(&mut **tx)
        .await
        .with_context(context)?;
    }
    if let Some(end) = &save.end {
        sqlx::query(
            "UPDATE executions SET status = $1, output = $2, error = $3, cause = $4,
                 stopped_at = $5, due_at = NULL, owner = NULL, lease_until = NULL
             WHERE id = $6",
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
            sqlx::query("DELETE FROM execution_threads WHERE execution = $1")
                .bind(id)
                .execute(&mut **tx)
                .await
                .with_context(context)?;
        }
    }
    Ok(true)
}
