//! Invocation records, stored in chunks: one row per function per written batch, its
//! records encoded in one blob. A row per invocation (a table row, plus index entries for
//! the 36-byte request id and for the function) was the records writer's largest cost, about
//! a tenth of the server's core at 40,000 requests a second; a chunk costs one row.
//!
//! Request ids are UUIDv7 (see [`crate::uuid_time`]): their text sorts by start time. A chunk
//! keeps its records sorted and its smallest and largest request id, and spans at most
//! [`SPAN_MS`] of them, which is all the reads need:
//! - one record: the chunks whose last id lies in `[id, id + SPAN_MS]` and whose first id is
//!   at most `id` (one or two, among the few chunks written around that time);
//! - newest first: chunks by last id, descending, until the records found are newer than
//!   the next chunk's last id;
//! - usage since T, retention before T: chunks by last id against the floor of T.

use crate::codec::{Reader, group_by_function, put_opt_f64, put_opt_str, put_str};
use crate::sqlite::SqliteStore;
use crate::uuid_time::{uuid_floor, uuid_ms};
use anyhow::{Context as _, bail};
use futures::TryStreamExt as _;
use kumo_core::{ErrorKind, InvocationRecord, Outcome, RanVersion, Source};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection as _, Row};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS invocation_chunks (
    id       INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    first_id TEXT NOT NULL,   -- the smallest request id in the chunk
    last_id  TEXT NOT NULL,   -- the largest
    records  INTEGER NOT NULL,
    data     BLOB NOT NULL    -- see `encode`
);
CREATE INDEX IF NOT EXISTS invocation_chunks_by_last_id ON invocation_chunks (last_id);
CREATE INDEX IF NOT EXISTS invocation_chunks_by_function
    ON invocation_chunks (function, last_id);
"#;

pub(crate) const INSERT_CHUNK: &str = "INSERT INTO invocation_chunks
    (function, first_id, last_id, records, data) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The most time between the first and the last request id of a chunk: a lookup by id
/// reads the chunks that end within it.
const SPAN_MS: i64 = 1_000;
/// The most records in a chunk, so a lookup by id decodes little.
const RECORDS_PER_CHUNK: usize = 1_024;
/// The first byte of every chunk's data: its encoding.
const FORMAT: u8 = 1;
/// Chunks read per query while listing newest first.
pub(crate) const CHUNKS_PER_PAGE: i64 = 16;
/// Chunks deleted per retention statement, so it never holds the write lock for long.
pub(crate) const DELETE_BATCH: i64 = 500;
/// Greater than any request id (they are lower-case hex and dashes).
const ABOVE_ALL_IDS: &str = "~";

/// Chunks newest first below a last id: of all functions through
/// invocation_chunks_by_last_id, of one through invocation_chunks_by_function.
pub(crate) const CHUNKS_BELOW: &str = "SELECT id, function, last_id, data FROM invocation_chunks
    WHERE last_id < ?1 ORDER BY last_id DESC LIMIT ?2";
pub(crate) const CHUNKS_OF_FUNCTION_BELOW: &str = "SELECT id, function, last_id, data
    FROM invocation_chunks WHERE function = ?1 AND last_id < ?2 ORDER BY last_id DESC LIMIT ?3";
/// The chunks that may hold request id ?1; ?2 is the floor of its time plus [`SPAN_MS`] and 1.
pub(crate) const CHUNKS_HOLDING: &str = "SELECT id, function, data FROM invocation_chunks
    WHERE last_id >= ?1 AND last_id < ?2 AND first_id <= ?1";
/// The chunks that may hold requests started at or after the time whose floor is ?1.
pub(crate) const CHUNKS_SINCE: &str =
    "SELECT id, function, data FROM invocation_chunks WHERE last_id >= ?1";

/// Columns the `invocations` table of older kumos gained after its first release; added
/// before its rows are read into chunks.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("invocations", "cold", "INTEGER NOT NULL DEFAULT 0"),
    ("invocations", "init_ms", "REAL"),
    ("invocations", "version", "TEXT NOT NULL DEFAULT '$LATEST'"),
    ("invocations", "trigger", "TEXT NOT NULL DEFAULT 'http'"),
    ("invocations", "gb_seconds", "REAL NOT NULL DEFAULT 0"),
    ("invocations", "trace_id", "TEXT NOT NULL DEFAULT ''"),
];

/// One function's records of a batch, ready to insert.
pub(crate) struct Chunk<'a> {
    pub function: &'a str,
    pub first_id: &'a str,
    pub last_id: &'a str,
    pub records: i64,
    pub data: Vec<u8>,
}

/// Groups records by function, sorts each group by request id and cuts it into chunks of
/// at most [`RECORDS_PER_CHUNK`] records spanning at most [`SPAN_MS`].
pub(crate) fn chunks_of<'a>(
    records: impl IntoIterator<Item = &'a InvocationRecord>,
) -> Vec<Chunk<'a>> {
    let mut chunks = Vec::new();
    let by_function = records.into_iter().map(|r| (r.function.as_str(), r));
    for (function, mut records) in group_by_function(by_function) {
        records.sort_unstable_by(|a, b| a.request_id.cmp(&b.request_id));
        let mut rest = &records[..];
        while let Some(first) = rest.first() {
            let ends_by = uuid_ms(&first.request_id).map(|ms| ms + SPAN_MS);
            let n = rest
                .iter()
                .take(RECORDS_PER_CHUNK)
                .take_while(|r| {
                    r.request_id == first.request_id
                        || uuid_ms(&r.request_id)
                            .zip(ends_by)
                            .is_some_and(|(t, end)| t <= end)
                })
                .count();
            let (chunk, tail) = rest.split_at(n);
            chunks.push(Chunk {
                function,
                first_id: &chunk[0].request_id,
                last_id: &chunk[n - 1].request_id,
                records: n as i64,
                data: encode(chunk),
            });
            rest = tail;
        }
    }
    chunks
}

/// The format byte, then per record: request id, started_at, duration_ms, billed_ms,
/// memory_mb, outcome, error code and message, status, cold, init_ms, version, trigger,
/// gb_seconds, trace id (see [`crate::codec`]). The function is the chunk's.
fn encode(records: &[&InvocationRecord]) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + records.len() * 160);
    data.push(FORMAT);
    for r in records {
        put_str(&mut data, &r.request_id);
        data.extend_from_slice(&r.started_at.to_le_bytes());
        data.extend_from_slice(&r.duration_ms.to_le_bytes());
        data.extend_from_slice(&r.billed_ms.to_le_bytes());
        data.extend_from_slice(&r.memory_mb.to_le_bytes());
        put_str(&mut data, r.outcome.as_str());
        put_opt_str(&mut data, r.error_code.map(ErrorKind::code));
        put_opt_str(&mut data, r.error_message.as_deref());
        data.extend_from_slice(&r.status.to_le_bytes());
        data.push(u8::from(r.cold));
        put_opt_f64(&mut data, r.init_ms);
        match r.version {
            RanVersion::Latest => put_str(&mut data, kumo_core::LATEST),
            RanVersion::Published(n) => put_str(&mut data, &n.to_string()),
        }
        put_str(&mut data, r.trigger.as_str());
        data.extend_from_slice(&r.gb_seconds.to_le_bytes());
        put_str(&mut data, &r.trace_id);
    }
    data
}

/// A decoded record, borrowing from its chunk's data: reading usage copies nothing.
#[derive(Debug, PartialEq)]
pub(crate) struct RecordView<'a> {
    pub request_id: &'a str,
    pub started_at: i64,
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub outcome: Outcome,
    pub error_code: Option<ErrorKind>,
    pub error_message: Option<&'a str>,
    pub status: u16,
    pub cold: bool,
    pub init_ms: Option<f64>,
    pub version: RanVersion,
    pub trigger: Source,
    pub gb_seconds: f64,
    pub trace_id: &'a str,
}

impl RecordView<'_> {
    fn to_record(&self, function: &str) -> InvocationRecord {
        InvocationRecord {
            request_id: self.request_id.into(),
            function: function.into(),
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            billed_ms: self.billed_ms,
            memory_mb: self.memory_mb,
            outcome: self.outcome,
            error_code: self.error_code,
            error_message: self.error_message.map(Into::into),
            status: self.status,
            cold: self.cold,
            init_ms: self.init_ms,
            version: self.version,
            trigger: self.trigger,
            gb_seconds: self.gb_seconds,
            trace_id: self.trace_id.into(),
        }
    }
}

pub(crate) fn decode(data: &[u8]) -> anyhow::Result<Vec<RecordView<'_>>> {
    let mut reader = Reader(data);
    if reader.u8()? != FORMAT {
        bail!("invocation chunk in an unknown format");
    }
    let mut records = Vec::new();
    while !reader.is_empty() {
        let request_id = reader.str()?;
        let started_at = reader.i64()?;
        let duration_ms = reader.f64()?;
        let billed_ms = reader.u64()?;
        let memory_mb = reader.u32()?;
        let outcome = reader.str()?;
        let outcome =
            Outcome::parse(outcome).with_context(|| format!("unknown outcome {outcome:?}"))?;
        let error_code = reader.opt_str()?.map(error_kind).transpose()?;
        let error_message = reader.opt_str()?;
        let status = reader.u16()?;
        let cold = reader.u8()? != 0;
        let init_ms = reader.opt_f64()?;
        let version = ran_version(reader.str()?)?;
        let trigger = source(reader.str()?)?;
        records.push(RecordView {
            request_id,
            started_at,
            duration_ms,
            billed_ms,
            memory_mb,
            outcome,
            error_code,
            error_message,
            status,
            cold,
            init_ms,
            version,
            trigger,
            gb_seconds: reader.f64()?,
            trace_id: reader.str()?,
        });
    }
    Ok(records)
}

fn error_kind(code: &str) -> anyhow::Result<ErrorKind> {
    ErrorKind::parse(code).with_context(|| format!("unknown error code {code:?}"))
}

fn ran_version(text: &str) -> anyhow::Result<RanVersion> {
    RanVersion::parse(text).with_context(|| format!("unknown version {text:?}"))
}

fn source(trigger: &str) -> anyhow::Result<Source> {
    Source::parse(trigger).with_context(|| format!("unknown trigger {trigger:?}"))
}

/// The records of chunk `id`; a chunk that does not decode is an error that names it.
fn decode_chunk(id: i64, data: &[u8]) -> anyhow::Result<Vec<RecordView<'_>>> {
    decode(data).with_context(|| format!("reading invocation chunk {id}"))
}

/// The lowest last id of the chunks that may hold `request_id`, and the bound above them
/// (see [`CHUNKS_HOLDING`]); None for an id that is not kumo's.
pub(crate) fn chunk_range_of(request_id: &str) -> Option<String> {
    uuid_ms(request_id).map(|ms| uuid_floor(ms + SPAN_MS + 1))
}

/// The record of `request_id` in a chunk of `function`, if it holds it.
pub(crate) fn find_in_chunk(
    request_id: &str,
    id: i64,
    function: &str,
    data: &[u8],
) -> anyhow::Result<Option<InvocationRecord>> {
    let records = decode_chunk(id, data)?;
    Ok(records
        .iter()
        .find(|r| r.request_id == request_id)
        .map(|r| r.to_record(function)))
}

/// The newest `limit` records (by request id, so by start), gathered chunk by chunk. A
/// backend reads pages of [`CHUNKS_PER_PAGE`] chunks by last id, descending, below
/// [`Self::below`], and feeds each chunk in order until `below` says it is done.
pub(crate) struct NewestRecords<'a> {
    limit: usize,
    namespace: Option<&'a str>,
    /// Kept sorted newest first and at most `limit` long after each chunk.
    found: Vec<InvocationRecord>,
    below: String,
    done: bool,
}

impl<'a> NewestRecords<'a> {
    pub(crate) fn new(limit: u32, namespace: Option<&'a str>) -> Self {
        Self {
            limit: limit as usize,
            namespace,
            found: Vec::new(),
            below: ABOVE_ALL_IDS.to_string(),
            done: limit == 0,
        }
    }

    /// The last id that the next page's chunks lie below; None once done.
    pub(crate) fn below(&self) -> Option<&str> {
        (!self.done).then_some(self.below.as_str())
    }

    pub(crate) fn add_chunk(
        &mut self,
        id: i64,
        function: &str,
        last_id: &str,
        data: &[u8],
    ) -> anyhow::Result<()> {
        if self.done {
            return Ok(());
        }
        self.below = last_id.to_string();
        let limit = self.limit;
        // This chunk and those after it hold nothing newer than `last_id`.
        let oldest_kept =
            (self.found.len() == limit).then(|| self.found[limit - 1].request_id.clone());
        if oldest_kept
            .as_deref()
            .is_some_and(|oldest| oldest > last_id)
        {
            self.done = true;
            return Ok(());
        }
        if self
            .namespace
            .is_some_and(|ns| !kumo_core::in_namespace(function, ns))
        {
            return Ok(());
        }
        for r in decode_chunk(id, data)? {
            if oldest_kept
                .as_deref()
                .is_none_or(|oldest| r.request_id > oldest)
            {
                self.found.push(r.to_record(function));
            }
        }
        self.found
            .sort_unstable_by(|a, b| b.request_id.cmp(&a.request_id));
        self.found.truncate(limit);
        Ok(())
    }

    /// Ends a page of `chunks` chunks: a short page was the last.
    pub(crate) fn end_page(&mut self, chunks: usize) {
        if chunks < CHUNKS_PER_PAGE as usize {
            self.done = true;
        }
    }

    pub(crate) fn into_records(self) -> Vec<InvocationRecord> {
        self.found
    }
}

impl crate::RecordStore for SqliteStore {
    /// The record of one invocation. Request ids are kumo's UUIDv7s: any other id names
    /// no invocation.
    async fn get_invocation(&self, request_id: &str) -> anyhow::Result<Option<InvocationRecord>> {
        let Some(above) = chunk_range_of(request_id) else {
            return Ok(None);
        };
        let rows = sqlx::query(CHUNKS_HOLDING)
            .bind(request_id)
            .bind(above)
            .fetch_all(&self.pool)
            .await
            .context("reading an invocation")?;
        for row in &rows {
            let found = find_in_chunk(
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

    /// The newest `limit` invocations (by request id, so by start), of one function or of
    /// all, newest first.
    async fn list_invocations(
        &self,
        function: Option<&str>,
        namespace: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<InvocationRecord>> {
        let mut newest = NewestRecords::new(limit, namespace);
        while let Some(below) = newest.below() {
            let rows = match function {
                Some(function) => {
                    sqlx::query(CHUNKS_OF_FUNCTION_BELOW)
                        .bind(function)
                        .bind(below)
                        .bind(CHUNKS_PER_PAGE)
                        .fetch_all(&self.pool)
                        .await
                }
                None => {
                    sqlx::query(CHUNKS_BELOW)
                        .bind(below)
                        .bind(CHUNKS_PER_PAGE)
                        .fetch_all(&self.pool)
                        .await
                }
            }
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

impl SqliteStore {
    /// Feeds `tally` every chunk that may hold invocations started at its `since` or later.
    pub(crate) async fn tally_usage(
        &self,
        tally: &mut crate::usage::Tally<'_>,
    ) -> anyhow::Result<()> {
        let floor = uuid_floor(tally.since());
        let mut rows = sqlx::query(CHUNKS_SINCE).bind(&floor).fetch(&self.pool);
        while let Some(row) = rows.try_next().await.context("reading invocations")? {
            tally.add_chunk(
                row.try_get("id")?,
                row.try_get("function")?,
                row.try_get("data")?,
            )?;
        }
        Ok(())
    }

    /// Deletes the records of invocations started before `cutoff`, a chunk at a time (a
    /// chunk goes once its newest record is old); returns how many records went.
    pub(crate) async fn delete_old_invocations(&self, cutoff: i64) -> anyhow::Result<u64> {
        let floor = uuid_floor(cutoff);
        let mut deleted = 0;
        loop {
            let records: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM invocation_chunks WHERE id IN (
                     SELECT id FROM invocation_chunks WHERE last_id < ?1 LIMIT ?2)
                 RETURNING records",
            )
            .bind(&floor)
            .bind(DELETE_BATCH)
            .fetch_all(&self.pool)
            .await
            .context("deleting old invocation records")?;
            deleted += records.iter().sum::<i64>() as u64;
            if (records.len() as i64) < DELETE_BATCH {
                return Ok(deleted);
            }
        }
    }
}

/// Moves the one-row-per-invocation `invocations` table of older kumos into chunks, in one
/// transaction, and drops that table.
pub(crate) async fn convert_record_table(connection: &mut SqliteConnection) -> anyhow::Result<()> {
    if crate::sqlite::columns_of(connection, "invocations")
        .await?
        .is_empty()
    {
        return Ok(());
    }
    crate::sqlite::add_columns(connection, ADDED_COLUMNS).await?;
    let mut tx = connection.begin().await?;
    let mut last = String::new();
    loop {
        let rows = sqlx::query(
            "SELECT * FROM invocations WHERE request_id > ?1 ORDER BY request_id LIMIT 10000",
        )
        .bind(&last)
        .fetch_all(&mut *tx)
        .await
        .context("reading the old invocation records")?;
        let Some(row) = rows.last() else { break };
        last = row.try_get("request_id")?;
        let records = rows
            .iter()
            .map(invocation_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        for chunk in chunks_of(&records) {
            sqlx::query(INSERT_CHUNK)
                .bind(chunk.function)
                .bind(chunk.first_id)
                .bind(chunk.last_id)
                .bind(chunk.records)
                .bind(chunk.data)
                .execute(&mut *tx)
                .await
                .context("writing invocation chunks")?;
        }
    }
    sqlx::raw_sql("DROP TABLE invocations")
        .execute(&mut *tx)
        .await?;
    tx.commit().await.context("converting the invocation table")
}

/// A row of the old `invocations` table.
fn invocation_from_row(row: &SqliteRow) -> anyhow::Result<InvocationRecord> {
    let outcome: String = row.try_get("outcome")?;
    Ok(InvocationRecord {
        request_id: row.try_get("request_id")?,
        function: row.try_get("function")?,
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        billed_ms: u64::try_from(row.try_get::<i64, _>("billed_ms")?)?,
        memory_mb: row.try_get("memory_mb")?,
        outcome: Outcome::parse(&outcome)
            .with_context(|| format!("unknown outcome {outcome:?}"))?,
        error_code: row
            .try_get::<Option<String>, _>("error_code")?
            .as_deref()
            .map(error_kind)
            .transpose()?,
        error_message: row.try_get("error_message")?,
        status: row.try_get("status")?,
        cold: row.try_get("cold")?,
        init_ms: row.try_get("init_ms")?,
        version: ran_version(&row.try_get::<String, _>("version")?)?,
        trigger: source(&row.try_get::<String, _>("trigger")?)?,
        gb_seconds: row.try_get("gb_seconds")?,
        trace_id: row.try_get("trace_id")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::RecordWriter;
    use crate::prelude::*;
    use kumo_core::{UsageBy, UsageRow};

    /// The `n`-th UUIDv7 of millisecond `ms`.
    pub(crate) fn id_at(ms: i64, n: u64) -> String {
        format!("{:08x}-{:04x}-7000-8000-{n:012x}", ms >> 16, ms & 0xffff)
    }

    /// A record of `function` started when its request id says.
    pub(crate) fn record(request_id: &str, function: &str, outcome: Outcome) -> InvocationRecord {
        InvocationRecord {
            request_id: request_id.into(),
            function: function.into(),
            started_at: uuid_ms(request_id).unwrap_or(1_000),
            duration_ms: 2.5,
            billed_ms: 3,
            memory_mb: 128,
            outcome,
            error_code: (outcome != Outcome::Ok).then_some(kumo_core::ErrorKind::Timeout),
            error_message: (outcome != Outcome::Ok).then(|| "ünïcode".into()),
            status: 200,
            cold: true,
            init_ms: Some(0.75),
            version: kumo_core::RanVersion::Published(2),
            trigger: kumo_core::Source::Http,
            gb_seconds: 0.000375,
            trace_id: "ab".repeat(16),
        }
    }

    async fn store_with(batches: &[Vec<InvocationRecord>]) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mut writer = RecordWriter::open(&path).unwrap();
        for batch in batches {
            let batch: Vec<_> = batch.iter().map(|r| (r.clone(), vec![])).collect();
            writer.write(&batch).unwrap();
        }
        (dir, store)
    }

    #[test]
    fn chunks_hold_one_function_sorted_within_a_span_and_decode_to_what_was_encoded() {
        let t = 1_795_379_033_000;
        let records = [
            record(&id_at(t + 5, 0), "f", Outcome::Ok),
            record(&id_at(t, 0), "f", Outcome::Timeout),
            record(&id_at(t + 1, 0), "g", Outcome::Ok),
            // Started longer than a span before the others: a chunk of its own.
            record(&id_at(t - SPAN_MS - 1, 0), "f", Outcome::Error),
        ];
        let chunks = chunks_of(&records);
        let summary: Vec<_> = chunks
            .iter()
            .map(|c| (c.function, c.first_id, c.last_id, c.records))
            .collect();
        let (early, first, last, g) = (
            &records[3].request_id,
            &records[1].request_id,
            &records[0].request_id,
            &records[2].request_id,
        );
        assert_eq!(
            summary,
            [
                ("f", early.as_str(), early.as_str(), 1),
                ("f", first.as_str(), last.as_str(), 2),
                ("g", g.as_str(), g.as_str(), 1)
            ]
        );
        let decoded: Vec<_> = decode(&chunks[1].data)
            .unwrap()
            .iter()
            .map(|r| r.to_record("f"))
            .collect();
        assert_eq!(decoded, [records[1].clone(), records[0].clone()]);
        // Cut anywhere, a chunk is an error, never a panic.
        let data = &chunks[1].data;
        for end in 0..data.len() {
            let _ = decode(&data[..end]);
        }
        assert!(decode(&data[..data.len() - 1]).is_err());
        let mut unknown = data.clone();
        unknown[0] = FORMAT + 1;
        assert!(decode(&unknown).is_err());
    }

    #[test]
    fn a_function_with_more_records_than_a_chunk_holds_gets_more_chunks() {
        let t = 1_795_379_033_000;
        let records: Vec<_> = (0..=RECORDS_PER_CHUNK as u64)
            .map(|n| record(&id_at(t, n), "f", Outcome::Ok))
            .collect();
        let sizes: Vec<i64> = chunks_of(&records).iter().map(|c| c.records).collect();
        assert_eq!(sizes, [RECORDS_PER_CHUNK as i64, 1]);
    }

    #[tokio::test]
    async fn records_are_found_by_id_and_listed_newest_first_across_chunks() {
        let t = 1_795_379_033_000;
        let at = |ms: i64, function: &str| record(&id_at(t + ms, 0), function, Outcome::Ok);
        // Batches as the writer gets them: a long invocation finishes after newer ones.
        let batches = vec![
            vec![at(0, "f"), at(10, "g")],
            vec![at(20, "f"), at(30, "f")],
            vec![at(40, "g"), at(5, "f")],
            (0..40).map(|i| at(2_000 + i, "h")).collect(),
        ];
        let (_dir, store) = store_with(&batches).await;

        for r in batches.iter().flatten() {
            let got = store.get_invocation(&r.request_id).await.unwrap();
            assert_eq!(got.as_ref(), Some(r));
        }
        for unknown in [id_at(t + 15, 0), "r1".into(), id_at(t, 0).to_uppercase()] {
            assert_eq!(store.get_invocation(&unknown).await.unwrap(), None);
        }

        let ids = |records: Vec<InvocationRecord>| {
            records
                .iter()
                .map(|r| uuid_ms(&r.request_id).unwrap() - t)
                .collect::<Vec<_>>()
        };
        let of_f = store.list_invocations(Some("f"), None, 3).await.unwrap();
        assert_eq!(ids(of_f), [30, 20, 5]);
        let all = store.list_invocations(None, None, 44).await.unwrap();
        let mut expected: Vec<i64> = (2_000..2_040).rev().collect();
        expected.extend([40, 30, 20, 10]);
        assert_eq!(ids(all), expected);
        let everything = store.list_invocations(None, None, 1_000).await.unwrap();
        assert_eq!(everything.len(), 46);
        assert_eq!(ids(everything)[40..], [40, 30, 20, 10, 5, 0]);
        assert!(
            store
                .list_invocations(None, None, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .list_invocations(Some("x"), None, 9)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_chunk_that_does_not_decode_is_an_error_naming_it() {
        let t = 1_795_379_033_000;
        let r = record(&id_at(t, 0), "f", Outcome::Ok);
        let (_dir, store) = store_with(&[vec![r.clone()]]).await;
        sqlx::query("UPDATE invocation_chunks SET data = substr(data, 1, 10)")
            .execute(&store.pool)
            .await
            .unwrap();
        let lookup = store.get_invocation(&r.request_id).await.unwrap_err();
        let listing = store.list_invocations(None, None, 10).await.unwrap_err();
        let usage = store.usage(t, None, UsageBy::Function).await.unwrap_err();
        for error in [lookup, listing, usage] {
            let error = format!("{error:#}");
            assert!(error.contains("reading invocation chunk 1"), "{error}");
        }
    }

    #[tokio::test]
    async fn usage_groups_counts_and_ranks_durations() {
        let day = 1_795_392_000_000; // 2026-11-23T00:00:00Z
        let timed = |ms: i64, n: u64, function: &str, outcome: Outcome, duration: f64| {
            let mut r = record(&id_at(day + ms, n), function, outcome);
            r.duration_ms = duration;
            r
        };
        let mut batch: Vec<_> = (1..=100)
            .map(|n| timed(1_000, n, "f", Outcome::Ok, n as f64))
            .collect();
        batch.push(timed(2_000, 0, "g", Outcome::Throttled, 0.0));
        batch.push(timed(-1, 0, "g", Outcome::Error, 7.0));
        // Too old for the window: not counted, though in a chunk that is read.
        batch.push(timed(-5_000, 0, "f", Outcome::Ok, 1.0));
        let (_dir, store) = store_with(&[batch]).await;

        let (rows, total) = store.usage(day - 1, None, UsageBy::Function).await.unwrap();
        let summary = |r: &UsageRow| {
            (
                r.key.clone(),
                r.requests,
                r.errors,
                r.throttles,
                r.p50_ms,
                r.p99_ms,
            )
        };
        let got: Vec<_> = rows.iter().map(summary).collect();
        assert_eq!(
            got,
            [
                ("f".into(), 100, 0, 0, 50.0, 99.0),
                ("g".into(), 2, 2, 1, 0.0, 7.0)
            ]
        );
        // 0, 1..=6, 7, 7, 8..=100: the 51st is 49, the 101st is 99.
        assert_eq!(summary(&total), ("total".into(), 102, 2, 1, 49.0, 99.0));
        assert!((total.gb_seconds - 102.0 * 0.000375).abs() < 1e-12);

        let (by_day, _) = store.usage(day - 1, None, UsageBy::Day).await.unwrap();
        let days: Vec<_> = by_day
            .iter()
            .map(|r| (r.key.as_str(), r.requests))
            .collect();
        assert_eq!(days, [("2026-11-22", 1), ("2026-11-23", 101)]);
        let (by_version, _) = store.usage(day, None, UsageBy::Version).await.unwrap();
        let versions: Vec<_> = by_version
            .iter()
            .map(|r| (r.key.as_str(), r.requests))
            .collect();
        assert_eq!(versions, [("f:2", 100), ("g:2", 1)]);
        let (none, total) = store
            .usage(day + 3_000, None, UsageBy::Function)
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(summary(&total), ("total".into(), 0, 0, 0, 0.0, 0.0));
    }

    #[tokio::test]
    async fn retention_deletes_chunks_whose_newest_record_is_old() {
        let t = 1_795_379_033_000;
        let at = |ms: i64| record(&id_at(t + ms, 0), "f", Outcome::Ok);
        let (_dir, store) = store_with(&[vec![at(0), at(10)], vec![at(20), at(30)]]).await;
        // The first chunk is all older than t + 15; the second is not, so it stays whole.
        assert_eq!(store.delete_old_invocations(t + 15).await.unwrap(), 2);
        let left = store.list_invocations(None, None, 10).await.unwrap();
        assert_eq!(left, [at(30), at(20)]);
        assert_eq!(store.delete_old_invocations(t + 31).await.unwrap(), 2);
        assert!(
            store
                .list_invocations(None, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_record_table_of_an_older_kumo_becomes_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        let id = id_at(1_795_379_033_000, 0);
        // The invocations table as the first release created it.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE invocations (request_id TEXT PRIMARY KEY, function TEXT NOT NULL,
                     started_at INTEGER NOT NULL, duration_ms REAL NOT NULL,
                     billed_ms INTEGER NOT NULL, memory_mb INTEGER NOT NULL,
                     outcome TEXT NOT NULL, error_code TEXT, error_message TEXT,
                     status INTEGER NOT NULL);
                 INSERT INTO invocations VALUES
                     ('{id}', 'f', 5, 1.5, 2, 128, 'timeout', 'timeout', 'slow', 504);"
            ))
            .unwrap();
        let store = SqliteStore::open(&path).await.unwrap();
        let got = store.get_invocation(&id).await.unwrap().unwrap();
        let expected = InvocationRecord {
            request_id: id.clone(),
            function: "f".into(),
            started_at: 5,
            duration_ms: 1.5,
            billed_ms: 2,
            memory_mb: 128,
            outcome: Outcome::Timeout,
            error_code: Some(kumo_core::ErrorKind::Timeout),
            error_message: Some("slow".into()),
            status: 504,
            cold: false,
            init_ms: None,
            version: kumo_core::RanVersion::Latest,
            trigger: kumo_core::Source::Http,
            gb_seconds: 0.0,
            trace_id: String::new(),
        };
        assert_eq!(got, expected);
        assert!(
            crate::sqlite::columns_of(&mut store.pool.acquire().await.unwrap(), "invocations")
                .await
                .unwrap()
                .is_empty()
        );
        // Records written after the conversion land beside the converted ones.
        let mut writer = RecordWriter::open(&path).unwrap();
        let newer = record(&id_at(1_795_379_034_000, 0), "f", Outcome::Ok);
        writer.write(&[(newer.clone(), vec![])]).unwrap();
        let listed = store.list_invocations(Some("f"), None, 10).await.unwrap();
        assert_eq!(listed, [newer, expected]);
    }
}
