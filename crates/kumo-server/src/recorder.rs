//! Invocation records and log lines leave the hot path through a channel; one task writes them
//! to the store in batches (one transaction per batch).

use kumo_core::{InvocationRecord, LogRecord};
use kumo_store::Store;
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
    Record(Box<InvocationRecord>, Vec<LogRecord>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
}

impl Recorder {
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(write_batches(store, rx));
        Self { tx }
    }

    pub async fn record(&self, invocation: InvocationRecord, logs: Vec<LogRecord>) {
        if self
            .tx
            .send(Message::Record(Box::new(invocation), logs))
            .await
            .is_err()
        {
            tracing::error!("the recorder has stopped; an invocation record was lost");
        }
    }

    /// Waits until every record sent so far is in the store: readers call it first, so
    /// `kumo logs` right after an invocation sees it.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Message>) {
    while let Some(first) = rx.recv().await {
        let mut invocations = Vec::new();
        let mut logs = Vec::new();
        let mut flushes = Vec::new();
        let window_end = Instant::now() + BATCH_WINDOW;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(r, l) => {
                    invocations.push(*r);
                    logs.extend(l);
                }
                Message::Flush(done) => flushes.push(done),
            }
            next = if invocations.len() >= MAX_BATCH {
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
        if let Err(e) = store.insert_batch(&invocations, &logs).await {
            tracing::error!(
                "writing {} invocation records failed: {e:#}",
                invocations.len()
            );
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
