//! The queue of asynchronous invocations (events) in SQLite: submit (with idempotency keys),
//! claim with a lease, complete, dead letters and redrive, and schedule ticks. Every change
//! of an event is one statement or one transaction, so a crash leaves each event in a state
//! it can go on from.

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::{EventError, EventErrorCode, EventRecord, EventResult, EventStatus, Trigger};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id               TEXT PRIMARY KEY,
    function         TEXT NOT NULL,
    trigger          TEXT NOT NULL,
    status           TEXT NOT NULL,
    payload          BLOB NOT NULL,
    content_type     TEXT,
    traceparent      TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,   -- unix ms
    enqueued_at      INTEGER NOT NULL,   -- max_event_age counts from here; a redrive resets it
    updated_at       INTEGER NOT NULL,
    due_at           INTEGER NOT NULL,   -- queued/failed: next attempt; running: lease end
    request_id       TEXT,               -- of the latest attempt
    result_status    INTEGER,
    result_body      BLOB,
    result_truncated INTEGER,
    error_code       TEXT,
    error_message    TEXT
);
CREATE INDEX IF NOT EXISTS events_pending ON events (due_at)
    WHERE status IN ('queued', 'failed', 'running');
-- Only dead events are listed by function (dead letters, redrive): indexing just those keeps
-- the hot path (queued -> running -> succeeded) from rewriting a second index each time.
CREATE INDEX IF NOT EXISTS events_dead ON events (function, updated_at) WHERE status = 'dead';
CREATE TABLE IF NOT EXISTS idempotency_keys (
    function   TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (function, key)
);
CREATE TABLE IF NOT EXISTS schedule_ticks (
    function  TEXT PRIMARY KEY,
    last_tick INTEGER NOT NULL       -- unix ms of the latest tick fired or counted as missed
);
"#;

/// The unfinished events of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub function: String,
    pub depth: i64,
    /// Unix ms.
    pub oldest_enqueued_at: i64,
}

/// How long an `Idempotency-Key` maps to its first event.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub function: &'a str,
    pub trigger: Trigger,
    pub payload: &'a [u8],
    pub content_type: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub now: i64,
}

/// An event taken by a worker for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    pub id: String,
    pub function: String,
    pub trigger: Trigger,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub created_at: i64,
    pub enqueued_at: i64,
}

/// How an attempt ended, as the queue keeps it.
pub enum Completion {
    Succeeded {
        request_id: String,
        result: EventResult,
    },
    /// Failed; the next attempt is due at `due_at`.
    Retry {
        request_id: Option<String>,
        error: EventError,
        due_at: i64,
    },
    /// Failed for good.
    Dead {
        request_id: Option<String>,
        error: EventError,
    },
    /// Not run (no capacity): not an attempt; try again at `due_at`.
    Deferred { due_at: i64 },
}

impl crate::EventQueue for SqliteStore {
    /// Stores new events in one transaction (one commit for many submitters), committed
    /// before this returns. With an idempotency key, an earlier event submitted with the same
    /// key to the same function within 24 h (in this batch too) is returned instead: `(id,
    /// true)`, nothing new stored.
    async fn submit_events_once(
        &self,
        events: &[(NewEvent<'_>, Option<&str>)],
    ) -> anyhow::Result<Vec<(String, bool)>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut submitted = Vec::with_capacity(events.len());
        for (event, idempotency_key) in events {
            if let Some(key) = idempotency_key {
                let earlier: Option<String> = sqlx::query_scalar(
                    "SELECT event_id FROM idempotency_keys
                     WHERE function = ? AND key = ? AND created_at > ?",
                )
                .bind(event.function)
                .bind(key)
                .bind(event.now - IDEMPOTENCY_WINDOW_MS)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = earlier {
                    submitted.push((id, true));
                    continue;
                }
                sqlx::query(
                    "INSERT OR REPLACE INTO idempotency_keys (function, key, event_id, created_at)
                     VALUES (?, ?, ?, ?)",
                )
                .bind(event.function)
                .bind(key)
                .bind(event.id)
                .bind(event.now)
                .execute(&mut *tx)
                .await?;
            }
            insert_event(&mut tx, event).await?;
            submitted.push((event.id.to_string(), false));
        }
        tx.commit().await.context("storing events")?;
        Ok(submitted)
    }

    /// [`Self::submit_events_once`] for one event.
    async fn submit_event(
        &self,
        event: &NewEvent<'_>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(String, bool)> {
        let mut submitted = self
            .submit_events_once(&[(event.clone(), idempotency_key)])
            .await?;
        submitted.pop().context("one event in, one answer out")
    }

    /// Stores several events in one transaction: all or none (a topic's fan-out).
    async fn submit_events(&self, events: &[NewEvent<'_>]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for event in events {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.context("storing events")
    }

    /// Takes up to `limit` events whose attempt is due (or whose lease ran out: the worker
    /// holding it is gone) for one attempt each, leased until `lease_end`.
    async fn claim_events(
        &self,
        now: i64,
        lease_end: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<ClaimedEvent>> {
        let rows = sqlx::query(
            "UPDATE events SET status = 'running', attempts = attempts + 1, due_at = ?2,
                 updated_at = ?1
             WHERE id IN (
                 SELECT id FROM events
                 WHERE status IN ('queued', 'failed', 'running') AND due_at <= ?1
                 ORDER BY due_at LIMIT ?3)
             RETURNING id, function, trigger, payload, content_type, traceparent, attempts,
                 created_at, enqueued_at",
        )
        .bind(now)
        .bind(lease_end)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("claiming events")?;
        rows.iter().map(claimed_from_row).collect()
    }

    async fn extend_leases(&self, leases: &[(String, u32)], lease_end: i64) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut extended = 0;
        for (id, attempt) in leases {
            extended += sqlx::query(
                "UPDATE events SET due_at = max(due_at, ?1)
                 WHERE id = ?2 AND attempts = ?3 AND status = 'running'",
            )
            .bind(lease_end)
            .bind(id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await.context("extending event leases")?;
        Ok(extended)
    }

    async fn admit_attempt(
        &self,
        _id: &str,
        _attempt: u32,
        _function: &str,
        _cap: usize,
        _now: i64,
    ) -> anyhow::Result<bool> {
        Ok(true)
    }

    /// When the next event becomes due, if any is pending.
    async fn next_due(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(due_at) FROM events WHERE status IN ('queued', 'failed', 'running')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records how attempt `attempt` of event `id` ended, and stores `follow_up` (a
    /// destination's event) in the same transaction. False when the attempt no longer owns
    /// the event (its lease ran out and another attempt took it): nothing is changed.
    async fn complete_event(
        &self,
        id: &str,
        attempt: u32,
        completion: &Completion,
        now: i64,
        follow_up: Option<&NewEvent<'_>>,
    ) -> anyhow::Result<bool> {
        let query = match completion {
            Completion::Succeeded { request_id, result } => sqlx::query(
                "UPDATE events SET status = 'succeeded', updated_at = ?3, request_id = ?4,
                     result_status = ?5, result_body = ?6, result_truncated = ?7,
                     error_code = NULL, error_message = NULL
                 WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(request_id)
            .bind(result.status)
            .bind(result.body.as_bytes())
            .bind(result.truncated),
            Completion::Retry {
                request_id,
                error,
                due_at,
            } => sqlx::query(
                "UPDATE events SET status = 'failed', updated_at = ?3, request_id = ?4,
                     error_code = ?5, error_message = ?6, due_at = ?7
                 WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(request_id)
            .bind(error.code.as_str())
            .bind(&error.message)
            .bind(due_at),
            Completion::Dead { request_id, error } => sqlx::query(
                "UPDATE events SET status = 'dead', updated_at = ?3,
                     request_id = COALESCE(?4, request_id), error_code = ?5, error_message = ?6
                 WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(request_id)
            .bind(error.code.as_str())
            .bind(&error.message),
            Completion::Deferred { due_at } => sqlx::query(
                "UPDATE events SET status = CASE WHEN attempts > 1 THEN 'failed' ELSE 'queued' END,
                     attempts = attempts - 1, updated_at = ?3, due_at = ?4
                 WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(due_at),
        };
        let Some(event) = follow_up else {
            // One statement commits by itself: no transaction round trips.
            return Ok(query.execute(&self.pool).await?.rows_affected() == 1);
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let owned = query.execute(&mut *tx).await?.rows_affected() == 1;
        if owned {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.context("completing the event")?;
        Ok(owned)
    }

    /// After a restart: attempts that were running when the server stopped will never
    /// finish. They become failed attempts, due now.
    async fn release_interrupted_events(&self, now: i64) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE events SET status = 'failed', updated_at = ?1, due_at = ?1,
                 error_code = 'interrupted',
                 error_message = 'the server stopped while the attempt was running'
             WHERE status = 'running'",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .context("releasing interrupted events")?;
        Ok(done.rows_affected())
    }

    async fn get_event(&self, id: &str) -> anyhow::Result<Option<EventRecord>> {
        let row = sqlx::query("SELECT * FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// A function's dead events (its dead letters), oldest first. The literal status lets
    /// SQLite use the partial index of dead events.
    async fn list_dead_events(
        &self,
        function: &str,
        limit: u32,
    ) -> anyhow::Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE (function = ?1 OR function LIKE ?1 || ':%')
                 AND status = 'dead'
             ORDER BY updated_at, id LIMIT ?2",
        )
        .bind(function)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing events")?;
        rows.iter().map(event_from_row).collect()
    }

    /// Puts a function's dead events (or the one with `id`) back in the queue with fresh
    /// attempts and age; returns their ids.
    async fn redrive(
        &self,
        function: &str,
        id: Option<&str>,
        now: i64,
    ) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE events SET status = 'queued', attempts = 0, enqueued_at = ?3,
                 updated_at = ?3, due_at = ?3
             WHERE (function = ?1 OR function LIKE ?1 || ':%') AND status = 'dead'
                 AND (?2 IS NULL OR id = ?2)
             RETURNING id",
        )
        .bind(function)
        .bind(id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .context("redriving events")
    }

    /// Events not finished (queued, failed and waiting for a retry, running), by function,
    /// with the oldest one's enqueue time.
    async fn queue_depths(&self) -> anyhow::Result<Vec<QueueDepth>> {
        let rows = sqlx::query(
            "SELECT function, COUNT(*) AS depth, MIN(enqueued_at) AS oldest FROM events
             WHERE status IN ('queued', 'failed', 'running') GROUP BY function",
        )
        .fetch_all(&self.pool)
        .await
        .context("reading queue depths")?;
        rows.iter()
            .map(|row| {
                Ok(QueueDepth {
                    function: row.try_get("function")?,
                    depth: row.try_get("depth")?,
                    oldest_enqueued_at: row.try_get("oldest")?,
                })
            })
            .collect()
    }
}

impl crate::ScheduleStore for SqliteStore {
    /// The latest tick of a function's schedule that was fired or counted as missed.
    async fn last_tick(&self, function: &str) -> anyhow::Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT last_tick FROM schedule_ticks WHERE function = ?")
                .bind(function)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Moves a schedule to `tick` and stores that tick's event, in one transaction: a tick
    /// is fired exactly once, whatever crashes around it. False (nothing stored) when the
    /// schedule is already at or past `tick`.
    async fn fire_tick(
        &self,
        function: &str,
        tick: i64,
        event: Option<&NewEvent<'_>>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let moved = sqlx::query(
            "INSERT INTO schedule_ticks (function, last_tick) VALUES (?1, ?2)
             ON CONFLICT (function) DO UPDATE SET last_tick = ?2 WHERE last_tick < ?2",
        )
        .bind(function)
        .bind(tick)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved && let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.context("firing a schedule tick")?;
        Ok(moved)
    }

    /// Forgets a schedule's progress (its function was deleted or its schedule changed).
    async fn forget_schedule(&self, function: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM schedule_ticks WHERE function = ?")
            .bind(function)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub(crate) async fn insert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    e: &NewEvent<'_>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (id, function, trigger, status, payload, content_type, traceparent,
             created_at, enqueued_at, updated_at, due_at)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?7, ?7, ?7)",
    )
    .bind(e.id)
    .bind(e.function)
    .bind(e.trigger.as_str())
    .bind(e.payload)
    .bind(e.content_type)
    .bind(e.traceparent)
    .bind(e.now)
    .execute(&mut **tx)
    .await
    .context("storing an event")?;
    Ok(())
}

fn trigger_from_row(row: &SqliteRow) -> anyhow::Result<Trigger> {
    let trigger: String = row.try_get("trigger")?;
    Trigger::parse(&trigger).with_context(|| format!("unknown trigger {trigger:?}"))
}

fn claimed_from_row(row: &SqliteRow) -> anyhow::Result<ClaimedEvent> {
    Ok(ClaimedEvent {
        id: row.try_get("id")?,
        function: row.try_get("function")?,
        trigger: trigger_from_row(row)?,
        payload: row.try_get("payload")?,
        content_type: row.try_get("content_type")?,
        traceparent: row.try_get("traceparent")?,
        attempt: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        enqueued_at: row.try_get("enqueued_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> anyhow::Result<EventRecord> {
    let status: String = row.try_get("status")?;
    let status =
        EventStatus::parse(&status).with_context(|| format!("unknown status {status:?}"))?;
    let result = match row.try_get::<Option<u16>, _>("result_status")? {
        Some(code) => Some(EventResult {
            status: code,
            body: String::from_utf8_lossy(
                &row.try_get::<Option<Vec<u8>>, _>("result_body")?
                    .unwrap_or_default(),
            )
            .into_owned(),
            truncated: row
                .try_get::<Option<bool>, _>("result_truncated")?
                .unwrap_or(false),
        }),
        None => None,
    };
    let error = match row.try_get::<Option<String>, _>("error_code")? {
        Some(code) => Some(EventError {
            code: EventErrorCode::parse(&code)
                .with_context(|| format!("unknown event error code {code:?}"))?,
            message: row
                .try_get::<Option<String>, _>("error_message")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(EventRecord {
        id: row.try_get("id")?,
        function: row.try_get("function")?,
        status,
        trigger: trigger_from_row(row)?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        next_attempt_at: matches!(status, EventStatus::Queued | EventStatus::Failed)
            .then(|| row.try_get("due_at"))
            .transpose()?,
        request_id: row.try_get("request_id")?,
        result,
        error,
    })
}
