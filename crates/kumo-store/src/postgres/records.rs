//! Invocation records and log lines on PostgreSQL: the same chunks as on SQLite (see
//! `crate::invocations` and `crate::logs`, whose pure parts decode and page them), written
//! a batch at a time by every node, and read, summed and swept by any.

use super::PgStore;
use crate::invocations::{self, NewestRecords};
use crate::logs::{self, NewestLines};
use crate::usage::{Swept, Tally};
use crate::uuid_time::uuid_floor;
use anyhow::Context as _;
use futures::TryStreamExt as _;
use kumo_core::{InvocationRecord, LogRecord, OutputLine, UsageBy, UsageRow};
use sqlx::Row as _;

impl PgStore {
    /// Writes a batch of records and their lines in one transaction, all or none: one
    /// multi-row statement per table, however big the batch.
    pub async fn write_records(
        &self,
        batch: &[(InvocationRecord, Vec<OutputLine>)],
    ) -> anyhow::Result<()> {
        let chunks = invocations::chunks_of(batch.iter().map(|(r, _)| r));
        let lines = logs::chunks_of_batch(batch);
        let mut tx = self.pool.begin().await?;
        if !chunks.is_empty() {
            sqlx::query(
                "INSERT INTO invocation_chunks (function, first_id, last_id, records, data)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                     $5::bytea[])",
            )
            .bind(chunks.iter().map(|c| c.function).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.first_id).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.last_id).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.records).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.data.as_slice()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !lines.is_empty() {
            // Line ids are cursors (`logs --follow` reads after the last one it saw), so they
            // must be visible in the order they are numbered: writers of log chunks take turns
            // from numbering to commit (a lock held until this transaction ends).
            sqlx::query("SELECT pg_advisory_xact_lock(1802858864)")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO log_chunks (function, max_ts, lines, data)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[])",
            )
            .bind(lines.iter().map(|c| c.function).collect::<Vec<_>>())
            .bind(lines.iter().map(|c| c.max_ts).collect::<Vec<_>>())
            .bind(lines.iter().map(|c| c.lines).collect::<Vec<_>>())
            .bind(lines.iter().map(|c| c.data.as_slice()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("writing invocation records")
    }

    /// Runs a `DELETE ... RETURNING count` statement over batches of `$2` rows until it
    /// deletes less than a batch; the sum of what it returned.
    async fn delete_batches<B>(
        &self,
        sql: &'static str,
        bound: B,
        batch: i64,
    ) -> anyhow::Result<u64>
    where
        B: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Copy,
    {
        let mut total = 0;
        loop {
            let counts: Vec<i64> = sqlx::query_scalar(sql)
                .bind(bound)
                .bind(batch)
                .fetch_all(&self.pool)
                .await?;
            total += counts.iter().sum::<i64>() as u64;
            if (counts.len() as i64) < batch {
                return Ok(total);
            }
        }
    }
}

impl crate::RecordStore for PgStore {
    async fn get_invocation(&self, request_id: &str) -> anyhow::Result<Option<InvocationRecord>> {
        let Some(above) = invocations::chunk_range_of(request_id) else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT id, function, data FROM invocation_chunks
             WHERE last_id >= $1 AND last_id < $2 AND first_id <= $1",
        )
        .bind(request_id)
        .bind(above)
        .fetch_all(&self.pool)
        .await
        .context("reading an invocation")?;
        for row in &rows {
            let found = invocations::find_in_chunk(
                request_id,
                row.try_get("id")?,
                row.try_get("function")?,
                row.try_get("data")?,
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn list_invocations(
        &self,
        function: Option<&str>,
        namespace: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<InvocationRecord>> {
        let mut newest = NewestRecords::new(limit, namespace);
        while let Some(below) = newest.below() {
            let rows = sqlx::query(
                "SELECT id, function, last_id, data FROM invocation_chunks
                 WHERE ($1::text IS NULL OR function = $1) AND last_id < $2
                 ORDER BY last_id DESC LIMIT $3",
            )
            .bind(function)
            .bind(below)
            .bind(invocations::CHUNKS_PER_PAGE)
            .fetch_all(&self.pool)
            .await
            .context("listing invocations")?;
            for row in &rows {
                newest.add_chunk(
                    row.try_get("id")?,
                    row.try_get("function")?,
                    row.try_get("last_id")?,
                    row.try_get("data")?,
                )?;
            }
            newest.end_page(rows.len());
        }
        Ok(newest.into_records())
    }
}

impl crate::LogStore for PgStore {
    async fn list_logs(&self, q: &crate::LogQuery) -> anyhow::Result<Vec<LogRecord>> {
        let mut newest = NewestLines::new(q);
        while let Some(below) = newest.below() {
            let rows = sqlx::query(
                "SELECT id, data FROM log_chunks
                 WHERE function = $1 AND id < $2 AND id >= $3 AND max_ts >= $4
                 ORDER BY id DESC LIMIT $5",
            )
            .bind(&q.function)
            .bind(below)
            .bind(newest.lowest_chunk())
            .bind(q.since_ms.unwrap_or(i64::MIN))
            .bind(logs::CHUNKS_PER_PAGE)
            .fetch_all(&self.pool)
            .await
            .context("listing logs")?;
            for row in &rows {
                newest.add_chunk(row.try_get("id")?, row.try_get("data")?)?;
            }
            newest.end_page(rows.len());
        }
        Ok(newest.into_lines())
    }
}

impl crate::UsageStore for PgStore {
    async fn usage(
        &self,
        since: i64,
        namespace: Option<&str>,
        by: UsageBy,
    ) -> anyhow::Result<(Vec<UsageRow>, UsageRow)> {
        let mut tally = Tally::new(since, namespace, by);
        let mut rows =
            sqlx::query("SELECT id, function, data FROM invocation_chunks WHERE last_id >= $1")
                .bind(uuid_floor(since))
                .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.context("reading usage")? {
            tally.add_chunk(
                row.try_get("id")?,
                row.try_get("function")?,
                row.try_get("data")?,
            )?;
        }
        Ok(tally.finish())
    }

    /// Chunks go once their newest record or line is older than `cutoff`; events once they
    /// have finished and were created before it.
    async fn sweep(&self, cutoff: i64) -> anyhow::Result<Swept> {
        let floor = uuid_floor(cutoff);
        let invocations = self
            .delete_batches(
                "DELETE FROM invocation_chunks WHERE id IN (
                     SELECT id FROM invocation_chunks WHERE last_id < $1 LIMIT $2)
                 RETURNING records",
                floor.as_str(),
                invocations::DELETE_BATCH,
            )
            .await
            .context("deleting old invocation records")?;
        let logs = self
            .delete_batches(
                "DELETE FROM log_chunks WHERE id IN (
                     SELECT id FROM log_chunks WHERE max_ts < $1 LIMIT $2)
                 RETURNING lines",
                cutoff,
                logs::DELETE_BATCH,
            )
            .await
            .context("deleting old log lines")?;
        let events = self
            .delete_batches(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE id < $1
                         AND status IN ('succeeded', 'dead') LIMIT $2)
                 RETURNING 1::bigint",
                floor.as_str(),
                crate::usage::DELETE_BATCH,
            )
            .await
            .context("deleting old events")?;
        let audit = sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .context("deleting old audit entries")?
            .rows_affected();
        Ok(Swept {
            invocations,
            logs,
            events,
            audit,
        })
    }
}
