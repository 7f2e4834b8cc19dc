//! Reading records back as usage (grouped counts, GB-seconds, duration percentiles), and
//! retention: deleting records, logs and finished events older than a cutoff.
//!
//! Request ids and event ids are UUIDv7, whose text begins with the creation time in
//! milliseconds, so "older than T" is a range of the primary key: no extra index (and no
//! extra write per invocation) is needed to find old rows.

use crate::Store;
use anyhow::Context as _;
use kumo_core::{UsageBy, UsageRow};
use sqlx::Row;

/// Rows deleted per statement, so retention never holds the write lock for long.
const DELETE_BATCH: i64 = 5000;

/// The smallest UUIDv7 text created at `ms`: ids below it are older.
fn uuid_floor(ms: i64) -> String {
    let ms = ms.max(0) as u64 & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// What one retention sweep deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub invocations: u64,
    pub logs: u64,
    pub events: u64,
}

impl Store {
    /// Usage of the invocations started at `since` or later, grouped by `by`, and the total.
    /// Money is computed by the caller from `gb_seconds` and `requests - throttles`.
    pub async fn usage(
        &self,
        since: i64,
        by: UsageBy,
    ) -> anyhow::Result<(Vec<UsageRow>, UsageRow)> {
        let key = match by {
            UsageBy::Function => "function",
            UsageBy::Version => "function || ':' || version",
            UsageBy::Day => "strftime('%Y-%m-%d', started_at / 1000, 'unixepoch')",
        };
        let rows = self.usage_rows(since, key).await?;
        let total = self.usage_rows(since, "'total'").await?.pop();
        let total = total.unwrap_or(UsageRow {
            key: "total".into(),
            requests: 0,
            errors: 0,
            throttles: 0,
            gb_seconds: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            cost: 0.0,
        });
        Ok((rows, total))
    }

    async fn usage_rows(&self, since: i64, key: &str) -> anyhow::Result<Vec<UsageRow>> {
        // Percentiles by rank: the ceil(n * p / 100)-th smallest duration of each group.
        let sql = format!(
            "WITH ranked AS (
                 SELECT {key} AS key, outcome, gb_seconds, duration_ms,
                     ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY duration_ms) AS rn,
                     COUNT(*) OVER (PARTITION BY {key}) AS n
                 FROM invocations WHERE request_id >= ?1 AND started_at >= ?2
             )
             SELECT key, COUNT(*) AS requests,
                 SUM(outcome != 'ok') AS errors, SUM(outcome = 'throttled') AS throttles,
                 SUM(gb_seconds) AS gb_seconds,
                 MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN duration_ms END) AS p50,
                 MAX(CASE WHEN rn = (n * 99 + 99) / 100 THEN duration_ms END) AS p99
             FROM ranked GROUP BY key ORDER BY key"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid_floor(since))
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .context("reading usage")?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    key: row.try_get("key")?,
                    requests: u64::try_from(row.try_get::<i64, _>("requests")?)?,
                    errors: u64::try_from(row.try_get::<i64, _>("errors")?)?,
                    throttles: u64::try_from(row.try_get::<i64, _>("throttles")?)?,
                    gb_seconds: row.try_get("gb_seconds")?,
                    p50_ms: row.try_get::<Option<f64>, _>("p50")?.unwrap_or(0.0),
                    p99_ms: row.try_get::<Option<f64>, _>("p99")?.unwrap_or(0.0),
                    cost: 0.0,
                })
            })
            .collect()
    }

    /// Deletes invocation records and log lines from before `cutoff`, and events created
    /// before it that have finished (succeeded or dead), in small batches.
    pub async fn sweep(&self, cutoff: i64) -> anyhow::Result<Swept> {
        let floor = uuid_floor(cutoff);
        let invocations = self
            .delete_batches(
                "DELETE FROM invocations WHERE request_id IN (
                     SELECT request_id FROM invocations WHERE request_id < ?1 LIMIT ?2)",
                &floor,
            )
            .await
            .context("deleting old invocation records")?;
        let logs = self.delete_old_logs(cutoff).await?;
        let events = self
            .delete_batches(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE id < ?1
                         AND status IN ('succeeded', 'dead') LIMIT ?2)",
                &floor,
            )
            .await
            .context("deleting old events")?;
        Ok(Swept {
            invocations,
            logs,
            events,
        })
    }

    /// Runs a `DELETE ... LIMIT ?2` statement until it deletes nothing.
    async fn delete_batches(&self, sql: &'static str, bound: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        loop {
            let done = sqlx::query(sql)
                .bind(bound)
                .bind(DELETE_BATCH)
                .execute(&self.pool)
                .await?;
            total += done.rows_affected();
            if done.rows_affected() < DELETE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_floors_order_like_uuid_v7() {
        let at = 1_795_379_033_123;
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (at / 1000) as u64,
            ((at % 1000) * 1_000_000) as u32,
        ))
        .to_string();
        assert!(uuid_floor(at) <= id, "{} > {id}", uuid_floor(at));
        assert!(uuid_floor(at + 1) > id);
        assert!(uuid_floor(at - 1) < id);
    }
}
