//! Invocation records and log lines leave the hot path through a channel; one task gathers
//! them into batches and the [`RecordWriter`] writes each batch in one transaction, on a
//! blocking thread. A batch the store refuses (a full disk) is kept and tried again; while
//! too many wait, new invocations are refused (see [`Recorder::is_full`]).

use kumo_core::{InvocationRecord, OutputLine};
use kumo_store::RecordWriter;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most records written in one transaction.
const MAX_BATCH: usize = 512;
/// Records waiting in the channel before senders wait: backpressure rather than loss.
const CHANNEL_CAPACITY: usize = 8192;
/// How long a batch gathers records before it is written: under load, one transaction per
/// window instead of one per handful of records. A flush ends the window at once.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

enum Message {
    Record(Box<(InvocationRecord, Vec<OutputLine>)>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

/// How long the writer waits before trying a failed batch again, doubling up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

type Recorded = (InvocationRecord, Vec<OutputLine>);

#[derive(Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Message>,
    /// Records sent and not yet committed: the channel's and those kept while the store
    /// refuses them (a full disk).
    backlog: Arc<AtomicUsize>,
    max_backlog: usize,
    /// Whether invocations are being refused for the backlog (for the log line).
    refusing: Arc<AtomicBool>,
}

impl Recorder {
    pub(crate) fn start(writer: RecordWriter, max_backlog: usize) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let backlog = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_batches(writer, rx, backlog.clone()));
        Self {
            tx,
            backlog,
            max_backlog,
            refusing: Arc::default(),
        }
    }

    pub(crate) async fn record(&self, invocation: InvocationRecord, output: Vec<OutputLine>) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self
            .tx
            .send(Message::Record(Box::new((invocation, output))))
            .await
            .is_err()
        {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("the recorder has stopped; an invocation record was lost");
        }
    }

    /// Records waiting to be written.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Whether so many records wait (the store refusing them) that new invocations must be
    /// refused rather than run unrecorded. The change either way is logged once.
    pub(crate) fn is_full(&self) -> bool {
        let full = self.backlog() >= self.max_backlog;
        if full != self.refusing.load(Ordering::Relaxed)
            && full != self.refusing.swap(full, Ordering::Relaxed)
        {
            if full {
                tracing::error!(
                    waiting = self.backlog(),
                    "invocation records cannot be stored: new invocations are refused (503) until they can"
                );
            } else {
                tracing::info!("invocation records are stored again: invocations are taken");
            }
        }
        full
    }

    /// Waits until every record sent so far is in the store, or the store has refused them
    /// (they are kept and tried again): readers call it first, so `kumo logs` right after an
    /// invocation sees it.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writer task: gathers records into batches and writes them; a batch the store refuses
/// is kept, in order, and tried again with backoff while new records keep arriving, so a
/// full disk delays records and loses none.
async fn write_batches(
    writer: RecordWriter,
    mut rx: mpsc::Receiver<Message>,
    backlog: Arc<AtomicUsize>,
) {
    let writer = Arc::new(Mutex::new(writer));
    let mut pending: VecDeque<Recorded> = VecDeque::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    // While the store refuses writes: when to try again, and the wait after that.
    let mut retry: Option<(Instant, Duration)> = None;
    let mut open = true;
    loop {
        if pending.is_empty() {
            answer(&mut flushes);
            if !open {
                return;
            }
            match rx.recv().await {
                Some(message) => take(message, &mut pending, &mut flushes),
                None => return,
            }
        }
        // Gather until the batch window closes, the batch is full or a flush asks; while
        // retrying, until the retry is due.
        let until = retry.map_or_else(|| Instant::now() + BATCH_WINDOW, |(at, _)| at);
        while open && (retry.is_some() || (pending.len() < MAX_BATCH && flushes.is_empty())) {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(message)) => take(message, &mut pending, &mut flushes),
                Ok(None) => open = false,
                Err(_) => break,
            }
            if retry.is_some() {
                // Readers need not wait for a store that refuses writes.
                answer(&mut flushes);
            }
        }
        while let Ok(message) = rx.try_recv() {
            take(message, &mut pending, &mut flushes);
        }
        if pending.is_empty() {
            // Only flushes came: answered at the top.
            continue;
        }
        let batch: Vec<Recorded> = pending.drain(..pending.len().min(MAX_BATCH)).collect();
        let count = batch.len();
        let batch_writer = writer.clone();
        let written = tokio::task::spawn_blocking(move || {
            // Only this task writes, one batch at a time: the lock is never contended.
            let mut writer = batch_writer.lock().unwrap_or_else(|p| p.into_inner());
            let result = writer.write(&batch);
            (batch, result)
        })
        .await;
        match written {
            Ok((_, Ok(()))) => {
                backlog.fetch_sub(count, Ordering::Relaxed);
                if retry.take().is_some() {
                    tracing::info!(
                        waiting = pending.len(),
                        "invocation records are written again"
                    );
                }
            }
            Ok((batch, Err(e))) => {
                for recorded in batch.into_iter().rev() {
                    pending.push_front(recorded);
                }
                let wait = retry.map_or(RETRY_FIRST, |(_, wait)| (wait * 2).min(RETRY_MAX));
                if retry.is_none() || wait == RETRY_MAX {
                    tracing::error!(
                        waiting = pending.len(),
                        "writing invocation records failed; they are kept and tried again: {e:#}"
                    );
                }
                retry = Some((Instant::now() + wait, wait));
                if !open && wait == RETRY_MAX {
                    // Stopping, and the store still refuses: say what is lost.
                    tracing::error!(
                        lost = pending.len(),
                        "stopping with invocation records the store would not take"
                    );
                    answer(&mut flushes);
                    return;
                }
                answer(&mut flushes);
                if !open {
                    // Nothing more arrives to gather while waiting.
                    tokio::time::sleep(wait).await;
                }
            }
            Err(e) => {
                // The blocking task panicked: the batch is gone with it.
                backlog.fetch_sub(count, Ordering::Relaxed);
                tracing::error!("writing {count} invocation records failed: {e}");
            }
        }
        // A flush waits for every record sent before it, not only this batch.
        if retry.is_none() && pending.is_empty() {
            answer(&mut flushes);
        }
    }
}

fn take(
    message: Message,
    pending: &mut VecDeque<Recorded>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) {
    match message {
        Message::Record(recorded) => pending.push_back(*recorded),
        Message::Flush(done) => flushes.push(done),
    }
}

fn answer(flushes: &mut Vec<oneshot::Sender<()>>) {
    for done in flushes.drain(..) {
        let _ = done.send(());
    }
}
