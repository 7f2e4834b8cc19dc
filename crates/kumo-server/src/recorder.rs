//! Invocation records and log lines leave the hot path through a channel; one task gathers
//! them into batches and the [`RecordWriter`] writes each batch in one transaction, on a
//! blocking thread.

use kumo_core::{InvocationRecord, OutputLine};
use kumo_store::RecordWriter;
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

#[derive(Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Message>,
}

impl Recorder {
    pub(crate) fn start(writer: RecordWriter) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(write_batches(writer, rx));
        Self { tx }
    }

    pub(crate) async fn record(&self, invocation: InvocationRecord, output: Vec<OutputLine>) {
        if self
            .tx
            .send(Message::Record(Box::new((invocation, output))))
            .await
            .is_err()
        {
            tracing::error!("the recorder has stopped; an invocation record was lost");
        }
    }

    /// Waits until every record sent so far is in the store: readers call it first, so
    /// `kumo logs` right after an invocation sees it.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(writer: RecordWriter, mut rx: mpsc::Receiver<Message>) {
    let writer = Arc::new(Mutex::new(writer));
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let window_end = Instant::now() + BATCH_WINDOW;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(recorded) => batch.push(*recorded),
                Message::Flush(done) => flushes.push(done),
            }
            next = if batch.len() >= MAX_BATCH {
                None
            } else if !flushes.is_empty() {
                rx.try_recv().ok()
            } else {
                // Wait for more until the window closes; None also when every sender is gone.
                tokio::time::timeout_at(window_end, rx.recv())
                    .await
                    .ok()
                    .flatten()
            };
        }
        let count = batch.len();
        let writer = writer.clone();
        let written = tokio::task::spawn_blocking(move || {
            // Only this task writes, one batch at a time: the lock is never contended.
            let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
            writer.write(&batch)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("writing {count} invocation records failed: {e:#}"),
            Err(e) => tracing::error!("writing {count} invocation records failed: {e}"),
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
