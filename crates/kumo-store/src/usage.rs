//! Reading records back as usage (grouped counts, GB-seconds, duration percentiles), and
//! retention: deleting records, logs and finished events older than a cutoff.
//!
//! Event ids are UUIDv7 (see [`crate::uuid_time`]): "created before T" is a range of the
//! primary key, so no extra index is needed to find old events.

use crate::invocations::RecordView;
use crate::sqlite::SqliteStore;
use crate::uuid_time::uuid_floor;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use kumo_core::{Outcome, UsageBy, UsageRow};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Rows deleted per statement, so retention never holds the write lock for long.
pub(crate) const DELETE_BATCH: i64 = 5000;

/// What one retention sweep deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub invocations: u64,
    pub logs: u64,
    pub events: u64,
    pub audit: u64,
}

/// The records of one usage row, as they are read.
#[derive(Default)]
struct Group {
    requests: u64,
    errors: u64,
    throttles: u64,
    gb_seconds: f64,
    durations: Vec<f64>,
}

impl Group {
    fn add(&mut self, r: &RecordView) {
        self.requests += 1;
        self.errors += u64::from(r.outcome != Outcome::Ok);
        self.throttles += u64::from(r.outcome == Outcome::Throttled);
        self.gb_seconds += r.gb_seconds;
        self.durations.push(r.duration_ms);
    }

    /// Percentiles by rank: the ceil(n * p / 100)-th smallest duration.
    fn into_row(mut self, key: String) -> UsageRow {
        self.durations.sort_unstable_by(f64::total_cmp);
        let n = self.durations.len();
        let percentile = |p: usize| match (n * p).div_ceil(100) {
            0 => 0.0,
            rank => self.durations[rank - 1],
        };
        UsageRow {
            key,
            requests: self.requests,
            errors: self.errors,
            throttles: self.throttles,
            gb_seconds: self.gb_seconds,
            p50_ms: percentile(50),
            p99_ms: percentile(99),
            cost: 0.0,
        }
    }
}

/// Writes the key of `r`'s usage row into `key`.
fn usage_key(key: &mut String, by: UsageBy, function: &str, r: &RecordView) {
    key.clear();
    let _ = match by {
        UsageBy::Function => write!(key, "{function}"),
        UsageBy::Version => write!(key, "{function}:{}", r.version),
        // The UTC day the invocation started.
        UsageBy::Day => match DateTime::<Utc>::from_timestamp_millis(r.started_at) {
            Some(day) => write!(key, "{}", day.format("%Y-%m-%d")),
            None => write!(key, "?"),
        },
        UsageBy::Namespace => write!(key, "{}", kumo_core::namespace_of(function)),
    };
}

/// Usage of the invocations started at `since` or later, of one namespace's functions or of
/// all, grouped by `by`: a backend feeds it the chunks that may hold such invocations.
pub(crate) struct Tally<'a> {
    since: i64,
    namespace: Option<&'a str>,
    by: UsageBy,
    groups: BTreeMap<String, Group>,
    total: Group,
    key: String,
}

impl<'a> Tally<'a> {
    pub(crate) fn new(since: i64, namespace: Option<&'a str>, by: UsageBy) -> Self {
        Self {
            since,
            namespace,
            by,
            groups: BTreeMap::new(),
            total: Group::default(),
            key: String::new(),
        }
    }

    pub(crate) fn since(&self) -> i64 {
        self.since
    }

    /// Counts the records of chunk `id` of `function` that started at `since` or later.
    pub(crate) fn add_chunk(&mut self, id: i64, function: &str, data: &[u8]) -> anyhow::Result<()> {
        if self
            .namespace
            .is_some_and(|ns| !kumo_core::in_namespace(function, ns))
        {
            return Ok(());
        }
        let records = crate::invocations::decode(data)
            .with_context(|| format!("reading invocation chunk {id}"))?;
        for r in records.iter().filter(|r| r.started_at >= self.since) {
            usage_key(&mut self.key, self.by, function, r);
            match self.groups.get_mut(&self.key) {
                Some(group) => group.add(r),
                None => self.groups.entry(self.key.clone()).or_default().add(r),
            }
            self.total.add(r);
        }
        Ok(())
    }

    /// The rows, sorted by key, and the total. Money is computed by the caller from
    /// `gb_seconds` and `requests - throttles`.
    pub(crate) fn finish(self) -> (Vec<UsageRow>, UsageRow) {
        let rows = self
            .groups
            .into_iter()
            .map(|(key, group)| group.into_row(key))
            .collect();
        (rows, self.total.into_row("total".into()))
    }
}

impl crate::UsageStore for SqliteStore {
    async fn usage(
        &self,
        since: i64,
        namespace: Option<&str>,
        by: UsageBy,
    ) -> anyhow::Result<(Vec<UsageRow>, UsageRow)> {
        let mut tally = Tally::new(since, namespace, by);
        self.tally_usage(&mut tally)
            .await
            .context("reading usage")?;
        Ok(tally.finish())
    }

    /// Deletes invocation records and log lines from before `cutoff`, and events created
    /// before it that have finished (succeeded or dead), in small batches.
    async fn sweep(&self, cutoff: i64) -> anyhow::Result<Swept> {
        let floor = uuid_floor(cutoff);
        let invocations = self.delete_old_invocations(cutoff).await?;
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
        let audit = self.delete_old_audit(cutoff).await?;
        Ok(Swept {
            invocations,
            logs,
            events,
            audit,
        })
    }
}

impl SqliteStore {
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
