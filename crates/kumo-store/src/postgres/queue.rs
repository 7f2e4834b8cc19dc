//! The queue of asynchronous events and the schedules' ticks on PostgreSQL, shared by every
//! node. Claims skip the rows another node is claiming (`FOR UPDATE SKIP LOCKED`) and name
//! the claiming node, so a node releases only its own attempts; every other change is one
//! guarded statement or one transaction, as on SQLite.

use super::PgStore;
use crate::queue::{ClaimedEvent, Completion, IDEMPOTENCY_WINDOW_MS, NewEvent, QueueDepth};
use anyhow::Context as _;
use kumo_core::{EventError, EventErrorCode, EventRecord, EventResult, EventStatus, Trigger};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

impl crate::EventQueue for PgStore {
    async fn submit_events_once(
        &self,
        events: &[(NewEvent<'_>, Option<&str>)],
    ) -> anyhow::Result<Vec<(String, bool)>> {
        let mut tx = self.pool.begin().await?;
        let mut submitted = Vec::with_capacity(events.len());
        let mut new = Vec::with_capacity(events.len());
        for (event, idempotency_key) in events {
            if let Some(key) = idempotency_key {
                // Takes the key unless a live one holds it; a concurrent submitter with the
                // same key waits on the row, then sees it held.
                let taken: Option<String> = sqlx::query_scalar(
                    "INSERT INTO idempotency_keys (function, key, event_id, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (function, key) DO UPDATE
                         SET event_id = excluded.event_id, created_at = excluded.created_at
                         WHERE idempotency_keys.created_at <= $5
                     RETURNING event_id",
                )
                .bind(event.function)
                .bind(key)
                .bind(event.id)
                .bind(event.now)
                .bind(event.now - IDEMPOTENCY_WINDOW_MS)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_none() {
                    let earlier: String = sqlx::query_scalar(
                        "SELECT event_id FROM idempotency_keys WHERE function = $1 AND key = $2",
                    )
                    .bind(event.function)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                    submitted.push((earlier, true));
                    continue;
                }
            }
            new.push(event.clone());
            submitted.push((event.id.to_string(), false));
        }
        insert_events(&mut tx, &new).await?;
        tx.commit().await.context("storing events")?;
        Ok(submitted)
    }

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

    async fn submit_events(&self, events: &[NewEvent<'_>]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await.context("storing events")
    }

    /// Due events, and running ones whose lease ran out (their node stopped renewing it),
    /// leased to this node; rows another node is claiming at the same moment are skipped.
    async fn claim_events(
        &self,
        now: i64,
        lease_end: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<ClaimedEvent>> {
        let rows = sqlx::query(
            "UPDATE events SET status = 'running', attempts = attempts + 1, due_at = $2,
                 updated_at = $1, lease_owner = $4, admitted = false
             WHERE id IN (
                 SELECT id FROM events
                 WHERE status IN ('queued', 'failed', 'running') AND due_at <= $1
                 ORDER BY due_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, function, trigger, payload, content_type, traceparent, attempts,
                 created_at, enqueued_at",
        )
        .bind(now)
        .bind(lease_end)
        .bind(i64::from(limit))
        .bind(&*self.node)
        .fetch_all(&self.pool)
        .await
        .context("claiming events")?;
        rows.iter().map(claimed_from_row).collect()
    }

    async fn extend_leases(&self, leases: &[(String, u32)], lease_end: i64) -> anyhow::Result<u64> {
        let (ids, attempts): (Vec<&str>, Vec<i64>) = leases
            .iter()
            .map(|(id, attempt)| (id.as_str(), i64::from(*attempt)))
            .unzip();
        let done = sqlx::query(
            "UPDATE events SET due_at = greatest(due_at, $1)
             FROM unnest($2::text[], $3::bigint[]) AS lease (id, attempt)
             WHERE events.id = lease.id AND events.attempts = lease.attempt
                 AND events.status = 'running' AND events.lease_owner = $4",
        )
        .bind(lease_end)
        .bind(&ids)
        .bind(&attempts)
        .bind(&*self.node)
        .execute(&self.pool)
        .await
        .context("extending event leases")?;
        Ok(done.rows_affected())
    }

    /// Under a lock of the function (held until this transaction ends, so nodes admitting
    /// its attempts take turns), counts its admitted attempts whose lease is live and admits
    /// this one if there is room.
    async fn admit_attempt(
        &self,
        id: &str,
        attempt: u32,
        function: &str,
        cap: usize,
        now: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('admit/' || $1, 0))")
            .bind(function)
            .execute(&mut *tx)
            .await?;
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events
             WHERE split_part(function, ':', 1) = $1 AND status = 'running' AND admitted
                 AND due_at > $2",
        )
        .bind(function)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if running >= i64::try_from(cap).unwrap_or(i64::MAX) {
            return Ok(false);
        }
        let admitted = sqlx::query(
            "UPDATE events SET admitted = true
             WHERE id = $1 AND attempts = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await.context("admitting an attempt")?;
        Ok(admitted)
    }

    async fn next_due(&self) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT min(due_at) FROM events WHERE status IN ('queued', 'failed', 'running')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn complete_event(
        &self,
        id: &str,
        attempt: u32,
        completion: &Completion,
        now: i64,
        follow_up: Option<&NewEvent<'_>>,
    ) -> anyhow::Result<bool> {
        let attempt = i64::from(attempt);
        let query = match completion {
            Completion::Succeeded { request_id, result } => sqlx::query(
                "UPDATE events SET status = 'succeeded', updated_at = $3, request_id = $4,
                     result_status = $5, result_body = $6, result_truncated = $7,
                     error_code = NULL, error_message = NULL, lease_owner = NULL
                 WHERE id = $1 AND attempts = $2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(request_id)
            .bind(i32::from(result.status))
            .bind(result.body.as_bytes())
            .bind(result.truncated),
            Completion::Retry {
                request_id,
                error,
                due_at,
            } => sqlx::query(
                "UPDATE events SET status = 'failed', updated_at = $3, request_id = $4,
                     error_code = $5, error_message = $6, due_at = $7, lease_owner = NULL
                 WHERE id = $1 AND attempts = $2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(request_id)
            .bind(error.code.as_str())
            .bind(&error.message)
            .bind(due_at),
            Completion::Dead { request_id, error } => sqlx::query(
                "UPDATE events SET status = 'dead', updated_at = $3,
                     request_id = coalesce($4, request_id), error_code = $5, error_message = $6,
                     lease_owner = NULL
                 WHERE id = $1 AND attempts = $2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(request_id)
            .bind(error.code.as_str())
            .bind(&error.message),
            Completion::Deferred { due_at } => sqlx::query(
                "UPDATE events SET status = CASE WHEN attempts > 1 THEN 'failed' ELSE 'queued' END,
                     attempts = attempts - 1, updated_at = $3, due_at = $4, lease_owner = NULL
                 WHERE id = $1 AND attempts = $2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .bind(now)
            .bind(due_at),
        };
        let Some(event) = follow_up else {
            return Ok(query.execute(&self.pool).await?.rows_affected() == 1);
        };
        let mut tx = self.pool.begin().await?;
        let owned = query.execute(&mut *tx).await?.rows_affected() == 1;
        if owned {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.context("completing the event")?;
        Ok(owned)
    }

    /// This node's running attempts (it stopped, or is stopping, before they finished)
    /// become failed attempts due now; other nodes' leases are theirs until they run out.
    async fn release_interrupted_events(&self, now: i64) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE events SET status = 'failed', updated_at = $1, due_at = $1,
                 error_code = 'interrupted', lease_owner = NULL,
                 error_message = 'the server stopped while the attempt was running'
             WHERE status = 'running' AND lease_owner = $2",
        )
        .bind(now)
        .bind(&*self.node)
        .execute(&self.pool)
        .await
        .context("releasing interrupted events")?;
        Ok(done.rows_affected())
    }

    async fn get_event(&self, id: &str) -> anyhow::Result<Option<EventRecord>> {
        let row = sqlx::query("SELECT * FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn list_dead_events(
        &self,
        function: &str,
        limit: u32,
    ) -> anyhow::Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE (function = $1 OR starts_with(function, $1 || ':'))
                 AND status = 'dead'
             ORDER BY updated_at, id LIMIT $2",
        )
        .bind(function)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("listing events")?;
        rows.iter().map(event_from_row).collect()
    }

    async fn redrive(
        &self,
        function: &str,
        id: Option<&str>,
        now: i64,
    ) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE events SET status = 'queued', attempts = 0, enqueued_at = $3,
                 updated_at = $3, due_at = $3
             WHERE (function = $1 OR starts_with(function, $1 || ':')) AND status = 'dead'
                 AND ($2::text IS NULL OR id = $2)
             RETURNING id",
        )
        .bind(function)
        .bind(id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .context("redriving events")
    }

    async fn queue_depths(&self) -> anyhow::Result<Vec<QueueDepth>> {
        let rows = sqlx::query(
            "SELECT function, count(*) AS depth, min(enqueued_at) AS oldest FROM events
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

impl crate::ScheduleStore for PgStore {
    async fn last_tick(&self, function: &str) -> anyhow::Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT last_tick FROM schedule_ticks WHERE function = $1")
                .bind(function)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// One guarded statement moves the schedule: of all the nodes firing the same tick at
    /// once, one moves it and stores the event; the others change nothing.
    async fn fire_tick(
        &self,
        function: &str,
        tick: i64,
        event: Option<&NewEvent<'_>>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "INSERT INTO schedule_ticks (function, last_tick) VALUES ($1, $2)
             ON CONFLICT (function) DO UPDATE SET last_tick = $2
                 WHERE schedule_ticks.last_tick < $2",
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

    async fn forget_schedule(&self, function: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM schedule_ticks WHERE function = $1")
            .bind(function)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub(super) async fn insert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    e: &NewEvent<'_>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (id, function, trigger, status, payload, content_type, traceparent,
             created_at, enqueued_at, updated_at, due_at)
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $7, $7, $7)",
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

/// Stores many events with one statement (one round trip however many there are).
async fn insert_events(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    events: &[NewEvent<'_>],
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO events (id, function, trigger, status, payload, content_type, traceparent,
             created_at, enqueued_at, updated_at, due_at)
         SELECT id, function, trigger, 'queued', payload, content_type, traceparent,
             at, at, at, at
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
             $7::bigint[]) AS e (id, function, trigger, payload, content_type, traceparent, at)",
    )
    .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.function).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.trigger.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.payload).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.content_type).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.traceparent).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.now).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .context("storing events")?;
    Ok(())
}

fn trigger_from_row(row: &PgRow) -> anyhow::Result<Trigger> {
    let trigger: String = row.try_get("trigger")?;
    Trigger::parse(&trigger).with_context(|| format!("unknown trigger {trigger:?}"))
}

fn attempts_of(row: &PgRow) -> anyhow::Result<u32> {
    Ok(u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX))
}

fn claimed_from_row(row: &PgRow) -> anyhow::Result<ClaimedEvent> {
    Ok(ClaimedEvent {
        id: row.try_get("id")?,
        function: row.try_get("function")?,
        trigger: trigger_from_row(row)?,
        payload: row.try_get("payload")?,
        content_type: row.try_get("content_type")?,
        traceparent: row.try_get("traceparent")?,
        attempt: attempts_of(row)?,
        created_at: row.try_get("created_at")?,
        enqueued_at: row.try_get("enqueued_at")?,
    })
}

fn event_from_row(row: &PgRow) -> anyhow::Result<EventRecord> {
    let status: String = row.try_get("status")?;
    let status =
        EventStatus::parse(&status).with_context(|| format!("unknown status {status:?}"))?;
    let result = match row.try_get::<Option<i32>, _>("result_status")? {
        Some(code) => Some(EventResult {
            status: u16::try_from(code).unwrap_or(0),
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
        attempts: attempts_of(row)?,
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
