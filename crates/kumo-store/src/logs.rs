//! Log lines, stored in chunks: one row per function per written batch, its lines encoded
//! in one blob. A row per line (a table insert, an index insert and an AUTOINCREMENT update
//! for every line) was the largest part of the records writer's work; a chunk costs one
//! row however many lines a function prints.
//!
//! A line's id is its chunk's id shifted left by [`ID_SHIFT`] plus its index in the chunk:
//! ids still grow with every line written, so they stay cursors for paging and following.

use crate::codec::{Reader, group_by_function, put_str};
use crate::sqlite::SqliteStore;
use anyhow::{Context as _, bail};
use kumo_core::{InvocationRecord, LogRecord, LogStream, OutputLine};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection as _, Row};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS log_chunks (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,   -- AUTOINCREMENT: line ids never go back
    function TEXT NOT NULL,
    max_ts   INTEGER NOT NULL,                    -- the newest line's ts, for retention
    lines    INTEGER NOT NULL,
    data     BLOB NOT NULL                        -- see `encode`
);
CREATE INDEX IF NOT EXISTS log_chunks_by_function ON log_chunks (function, id);
"#;

pub(crate) const INSERT_CHUNK: &str =
    "INSERT INTO log_chunks (function, max_ts, lines, data) VALUES (?1, ?2, ?3, ?4)";

/// Bits of a line id that number the line within its chunk.
const ID_SHIFT: u32 = 16;
const LINES_PER_CHUNK: usize = 1 << ID_SHIFT;
/// The first byte of every chunk's data: its encoding.
const FORMAT: u8 = 1;
/// Chunks read per query while looking for lines, newest first.
pub(crate) const CHUNKS_PER_PAGE: i64 = 16;
/// Chunks deleted per retention statement, so it never holds the write lock for long.
pub(crate) const DELETE_BATCH: i64 = 500;

/// The newest `limit` matching chunks of a function below a chunk id, through
/// log_chunks_by_function.
pub(crate) const CHUNKS_PAGE: &str = "SELECT id, data FROM log_chunks
    WHERE function = ?1 AND id < ?2 AND id >= ?3 AND max_ts >= ?4
    ORDER BY id DESC LIMIT ?5";

/// One function's lines of a batch, ready to insert.
pub(crate) struct Chunk<'a> {
    pub function: &'a str,
    pub max_ts: i64,
    pub lines: i64,
    pub data: Vec<u8>,
}

/// The lines of a batch of invocations, as chunks.
pub(crate) fn chunks_of_batch(batch: &[(InvocationRecord, Vec<OutputLine>)]) -> Vec<Chunk<'_>> {
    chunks(batch.iter().flat_map(|(invocation, lines)| {
        lines.iter().map(move |l| {
            let line = Line {
                ts: invocation.started_at,
                request_id: &invocation.request_id,
                trace_id: &invocation.trace_id,
                stream: l.stream,
                line: &l.line,
            };
            (invocation.function.as_str(), line)
        })
    }))
}

/// Groups `(function, line)`s by function, keeping their order, into chunks.
fn chunks<'a>(lines: impl IntoIterator<Item = (&'a str, Line<'a>)>) -> Vec<Chunk<'a>> {
    group_by_function(lines)
        .into_iter()
        .flat_map(|(function, lines)| {
            lines
                .chunks(LINES_PER_CHUNK)
                .map(|lines| Chunk {
                    function,
                    max_ts: lines.iter().map(|l| l.ts).max().unwrap_or(0),
                    lines: lines.len() as i64,
                    data: encode(lines),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Per line: ts (i64 LE); 1 and the request id and trace id when they differ from the
/// previous line's, else 0; the stream; the line. Strings are a u32 LE length and UTF-8.
fn encode(lines: &[Line]) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + lines.iter().map(|l| l.line.len() + 32).sum::<usize>());
    data.push(FORMAT);
    let mut previous: Option<&Line> = None;
    for line in lines {
        data.extend_from_slice(&line.ts.to_le_bytes());
        let same_request = previous
            .is_some_and(|p| p.request_id == line.request_id && p.trace_id == line.trace_id);
        if same_request {
            data.push(0);
        } else {
            data.push(1);
            put_str(&mut data, line.request_id);
            put_str(&mut data, line.trace_id);
        }
        put_str(&mut data, line.stream.as_str());
        put_str(&mut data, line.line);
        previous = Some(line);
    }
    data
}

/// A decoded line, borrowing from its chunk's data.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    ts: i64,
    request_id: &'a str,
    trace_id: &'a str,
    stream: LogStream,
    line: &'a str,
}

impl<'a> Line<'a> {
    fn of(record: &'a LogRecord) -> Self {
        Self {
            ts: record.ts,
            request_id: &record.request_id,
            trace_id: &record.trace_id,
            stream: record.stream,
            line: &record.line,
        }
    }

    fn to_record(&self, id: i64, function: &str) -> LogRecord {
        LogRecord {
            id,
            function: function.into(),
            request_id: self.request_id.into(),
            ts: self.ts,
            stream: self.stream,
            line: self.line.into(),
            trace_id: self.trace_id.into(),
        }
    }

    fn matches(&self, q: &crate::LogQuery) -> bool {
        q.request_id.as_ref().is_none_or(|r| r == self.request_id)
            && q.since_ms.is_none_or(|since| self.ts >= since)
            && q.grep
                .as_ref()
                .is_none_or(|g| self.line.contains(g.as_str()))
    }
}

fn decode(data: &[u8]) -> anyhow::Result<Vec<Line<'_>>> {
    let mut reader = Reader(data);
    if reader.u8()? != FORMAT {
        bail!("log chunk in an unknown format");
    }
    let mut lines = Vec::new();
    let (mut request_id, mut trace_id) = ("", "");
    while !reader.is_empty() {
        let ts = reader.i64()?;
        if reader.u8()? == 1 {
            request_id = reader.str()?;
            trace_id = reader.str()?;
        }
        let stream = reader.str()?;
        let stream = LogStream::parse(stream)
            .with_context(|| format!("a log line of unknown stream {stream:?}"))?;
        let line = reader.str()?;
        lines.push(Line {
            ts,
            request_id,
            trace_id,
            stream,
            line,
        });
    }
    Ok(lines)
}

/// The newest `q.limit` lines that match `q`, gathered chunk by chunk. A backend reads pages
/// of [`CHUNKS_PER_PAGE`] of the function's chunks by id, descending, below [`Self::below`],
/// at or above [`Self::lowest_chunk`], with `max_ts` at or after `q.since_ms`, and feeds each
/// chunk in order until `below` says it is done.
pub(crate) struct NewestLines<'q> {
    q: &'q crate::LogQuery,
    after: i64,
    found: Vec<LogRecord>,
    below: i64,
    done: bool,
}

impl<'q> NewestLines<'q> {
    pub(crate) fn new(q: &'q crate::LogQuery) -> Self {
        Self {
            q,
            after: q.after_id.unwrap_or(0).max(0),
            found: Vec::new(),
            below: i64::MAX,
            done: q.limit == 0,
        }
    }

    /// The chunk id that the next page's chunks lie below; None once done.
    pub(crate) fn below(&self) -> Option<i64> {
        (!self.done).then_some(self.below)
    }

    /// The lowest chunk id that may hold a line after the query's cursor.
    pub(crate) fn lowest_chunk(&self) -> i64 {
        self.after >> ID_SHIFT
    }

    pub(crate) fn add_chunk(&mut self, chunk: i64, data: &[u8]) -> anyhow::Result<()> {
        if self.done {
            return Ok(());
        }
        self.below = chunk;
        let lines = decode(data).with_context(|| format!("reading log chunk {chunk}"))?;
        for (index, line) in lines.iter().enumerate().rev() {
            let id = (chunk << ID_SHIFT) + index as i64;
            if id <= self.after {
                self.done = true;
                return Ok(());
            }
            if line.matches(self.q) {
                self.found.push(line.to_record(id, &self.q.function));
                if self.found.len() == self.q.limit as usize {
                    self.done = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Ends a page of `chunks` chunks: a short page was the last.
    pub(crate) fn end_page(&mut self, chunks: usize) {
        if chunks < CHUNKS_PER_PAGE as usize {
            self.done = true;
        }
    }

    /// The lines, oldest first.
    pub(crate) fn into_lines(mut self) -> Vec<LogRecord> {
        self.found.reverse();
        self.found
    }
}

impl crate::LogStore for SqliteStore {
    /// The newest `q.limit` lines that match `q`, oldest first.
    async fn list_logs(&self, q: &crate::LogQuery) -> anyhow::Result<Vec<LogRecord>> {
        let mut newest = NewestLines::new(q);
        while let Some(below) = newest.below() {
            let rows = sqlx::query(CHUNKS_PAGE)
                .bind(&q.function)
                .bind(below)
                .bind(newest.lowest_chunk())
                .bind(q.since_ms.unwrap_or(i64::MIN))
                .bind(CHUNKS_PER_PAGE)
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

impl SqliteStore {
    /// Deletes the log lines older than `cutoff`, a chunk at a time (a chunk goes once its
    /// newest line is old); returns how many lines went.
    pub(crate) async fn delete_old_logs(&self, cutoff: i64) -> anyhow::Result<u64> {
        let below = self.old_chunks_bound(cutoff).await?;
        let mut deleted = 0;
        loop {
            let lines: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM log_chunks WHERE id IN (
                     SELECT id FROM log_chunks WHERE id < ?1 ORDER BY id LIMIT ?2)
                 RETURNING lines",
            )
            .bind(below)
            .bind(DELETE_BATCH)
            .fetch_all(&self.pool)
            .await
            .context("deleting old log lines")?;
            deleted += lines.iter().sum::<i64>() as u64;
            if (lines.len() as i64) < DELETE_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// The chunk id below which every chunk is older than `cutoff`. Chunk ids grow with
    /// time: the first young chunk's id or, without one, the next id as of now, so chunks
    /// written while the sweep runs are never taken for old ones.
    async fn old_chunks_bound(&self, cutoff: i64) -> anyhow::Result<i64> {
        let bound = sqlx::query_scalar(
            "SELECT COALESCE(
                 (SELECT id FROM log_chunks WHERE max_ts >= ?1 ORDER BY id LIMIT 1),
                 (SELECT IFNULL(MAX(id), 0) + 1 FROM log_chunks))",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await?;
        Ok(bound)
    }
}

/// Moves the lines of the one-row-per-line `logs` table of older kumos into chunks, in one
/// transaction, and drops that table. Line ids change; their order does not.
pub(crate) async fn convert_line_table(connection: &mut SqliteConnection) -> anyhow::Result<()> {
    let columns = crate::sqlite::columns_of(connection, "logs").await?;
    if columns.is_empty() {
        return Ok(());
    }
    // The first release had no trace ids.
    let trace_id = if columns.iter().any(|c| c == "trace_id") {
        "trace_id"
    } else {
        "''"
    };
    let select = format!(
        "SELECT id, function, request_id, ts, stream, line, {trace_id} AS trace_id
         FROM logs WHERE id > ?1 ORDER BY id LIMIT 10000"
    );
    let mut tx = connection.begin().await?;
    let mut last = 0;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
            .bind(last)
            .fetch_all(&mut *tx)
            .await
            .context("reading the old log lines")?;
        let Some(row) = rows.last() else { break };
        last = row.try_get("id")?;
        let lines = rows
            .iter()
            .map(|r| {
                Ok(LogRecord {
                    id: r.try_get("id")?,
                    function: r.try_get("function")?,
                    request_id: r.try_get("request_id")?,
                    ts: r.try_get("ts")?,
                    // Old tables held only these three streams; anything else is
                    // kept as stderr rather than lose the line in the conversion.
                    stream: {
                        let stream: String = r.try_get("stream")?;
                        LogStream::parse(&stream).unwrap_or(LogStream::Stderr)
                    },
                    line: r.try_get("line")?,
                    trace_id: r.try_get("trace_id")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let views = lines.iter().map(|l| (l.function.as_str(), Line::of(l)));
        for chunk in chunks(views) {
            sqlx::query(INSERT_CHUNK)
                .bind(chunk.function)
                .bind(chunk.max_ts)
                .bind(chunk.lines)
                .bind(chunk.data)
                .execute(&mut *tx)
                .await
                .context("writing log chunks")?;
        }
    }
    sqlx::raw_sql("DROP TABLE logs").execute(&mut *tx).await?;
    tx.commit().await.context("converting the log table")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{LogQuery, RecordWriter};

    fn line(function: &str, request_id: &str, ts: i64, text: &str) -> LogRecord {
        LogRecord {
            id: 0,
            function: function.into(),
            request_id: request_id.into(),
            ts,
            stream: LogStream::Stderr,
            line: text.into(),
            trace_id: format!("trace-{request_id}"),
        }
    }

    /// An invocation that printed `l` (its function, request, trace and time are l's).
    fn printed(l: &LogRecord) -> (InvocationRecord, Vec<OutputLine>) {
        let invocation = InvocationRecord {
            request_id: l.request_id.clone(),
            function: l.function.clone(),
            started_at: l.ts,
            duration_ms: 1.0,
            billed_ms: 1,
            memory_mb: 128,
            outcome: kumo_core::Outcome::Ok,
            error_code: None,
            error_message: None,
            status: 200,
            cold: false,
            init_ms: None,
            version: kumo_core::RanVersion::Latest,
            trigger: kumo_core::Source::Http,
            gb_seconds: 0.0,
            trace_id: l.trace_id.clone(),
        };
        let line = OutputLine {
            stream: l.stream,
            line: l.line.clone(),
        };
        (invocation, vec![line])
    }

    #[test]
    fn chunks_group_by_function_and_decode_to_what_was_encoded() {
        let logs = [
            line("f", "r1", 1, "one"),
            line("g", "r2", 2, "two"),
            line("f", "r1", 1, ""),
            line("f", "r3", 4, "ünïcode"),
        ];
        let batch: Vec<_> = logs.iter().map(printed).collect();
        let chunks = chunks_of_batch(&batch);
        assert_eq!(chunks.len(), 2);
        let f = &chunks[0];
        assert_eq!((f.function, f.max_ts, f.lines), ("f", 4, 3));
        let decoded = decode(&f.data).unwrap();
        let expected: Vec<Line> = [&logs[0], &logs[2], &logs[3]].map(Line::of).into();
        assert_eq!(decoded, expected);
        // Cut anywhere, a chunk is an error, never a panic.
        for end in 0..f.data.len() {
            let _ = decode(&f.data[..end]);
        }
        assert!(decode(&f.data[..f.data.len() - 1]).is_err());
        let mut unknown = f.data.clone();
        unknown[0] = FORMAT + 1;
        assert!(decode(&unknown).is_err());
    }

    #[test]
    fn a_function_with_more_lines_than_a_chunk_holds_gets_more_chunks() {
        let many = line("f", "r", 1, "x");
        let lines = (0..=LINES_PER_CHUNK).map(|_| ("f", Line::of(&many)));
        let chunks = chunks(lines);
        let sizes: Vec<i64> = chunks.iter().map(|c| c.lines).collect();
        assert_eq!(sizes, [LINES_PER_CHUNK as i64, 1]);
        let decoded = decode(&chunks[0].data).unwrap();
        assert_eq!(decoded.len(), LINES_PER_CHUNK);
    }

    async fn store_with(lines: &[LogRecord]) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mut writer = RecordWriter::open(&path).unwrap();
        // One batch per line: lines in several chunks.
        for l in lines {
            writer.write(&[printed(l)]).unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn queries_page_through_chunks_newest_first() {
        let mut lines: Vec<LogRecord> = (0..40)
            .map(|i| line("f", &format!("r{}", i % 3), 1_000 + i, &format!("line {i}")))
            .collect();
        lines.push(line("other", "r0", 2_000, "line 99"));
        let (_dir, store) = store_with(&lines).await;
        let query = |q: LogQuery| {
            let store = store.clone();
            async move { store.list_logs(&q).await.unwrap() }
        };
        let text = |got: &[LogRecord]| got.iter().map(|l| l.line.clone()).collect::<Vec<_>>();

        let newest = query(LogQuery {
            function: "f".into(),
            limit: 3,
            ..LogQuery::default()
        })
        .await;
        assert_eq!(text(&newest), ["line 37", "line 38", "line 39"]);
        assert!(newest.windows(2).all(|w| w[0].id < w[1].id));
        // Following from a cursor: what came after it, oldest first.
        let after = query(LogQuery {
            function: "f".into(),
            after_id: Some(newest[0].id),
            limit: 100,
            ..LogQuery::default()
        })
        .await;
        assert_eq!(text(&after), ["line 38", "line 39"]);
        let of_request = query(LogQuery {
            function: "f".into(),
            request_id: Some("r1".into()),
            since_ms: Some(1_030),
            limit: 100,
            ..LogQuery::default()
        })
        .await;
        assert_eq!(text(&of_request), ["line 31", "line 34", "line 37"]);
        assert_eq!(of_request[0].trace_id, "trace-r1");
        let grep = query(LogQuery {
            function: "f".into(),
            grep: Some("line 9".into()),
            limit: 100,
            ..LogQuery::default()
        })
        .await;
        assert_eq!(text(&grep), ["line 9"]);
    }

    #[tokio::test]
    async fn retention_deletes_old_chunks_and_not_those_written_after_its_bound() {
        let (dir, store) = store_with(&[line("f", "r", 1_000, "old")]).await;
        // Only old chunks: the bound takes them all, and nothing written later.
        let bound = store.old_chunks_bound(5_000).await.unwrap();
        let mut writer = RecordWriter::open(&dir.path().join("kumo.db")).unwrap();
        writer
            .write(&[printed(&line("f", "r", 9_000, "new"))])
            .unwrap();
        assert_eq!(store.delete_old_logs(5_000).await.unwrap(), 1);
        let left = newest_lines(&store, "f").await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].line, "new");
        assert!(left[0].id >> ID_SHIFT >= bound, "{} < {bound}", left[0].id);
    }

    /// A line's request id, ts, stream and text.
    pub(crate) fn fields(l: &LogRecord) -> (&str, i64, &str, &str) {
        (&l.request_id, l.ts, l.stream.as_str(), &l.line)
    }

    /// The newest ten lines of `function`, oldest first.
    pub(crate) async fn newest_lines(store: &SqliteStore, function: &str) -> Vec<LogRecord> {
        let query = LogQuery {
            function: function.into(),
            limit: 10,
            ..LogQuery::default()
        };
        store.list_logs(&query).await.unwrap()
    }

    #[tokio::test]
    async fn a_line_table_of_an_older_kumo_becomes_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kumo.db");
        // The logs table as the first release created it (no trace ids).
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT,
                     function TEXT NOT NULL, request_id TEXT NOT NULL, ts INTEGER NOT NULL,
                     stream TEXT NOT NULL, line TEXT NOT NULL);
                 INSERT INTO logs (function, request_id, ts, stream, line) VALUES
                     ('f', 'r1', 1, 'stdout', 'a'), ('g', 'r2', 2, 'stderr', 'b'),
                     ('f', 'r1', 3, 'stdout', 'c');",
            )
            .unwrap();
        let store = SqliteStore::open(&path).await.unwrap();
        let f = newest_lines(&store, "f").await;
        let got: Vec<_> = f.iter().map(fields).collect();
        assert_eq!(got, [("r1", 1, "stdout", "a"), ("r1", 3, "stdout", "c")]);
        let table: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = 'logs'")
                .fetch_optional(&store.pool)
                .await
                .unwrap();
        assert_eq!(table, None);
    }
}
