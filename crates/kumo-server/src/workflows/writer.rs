//! Group commit: one writer takes whatever starts and transitions are waiting (up to a batch)
//! and writes them in one transaction.

use super::*;
use kumo_store::ExecutionWrite;

/// A start or a transition for the writer, and where its outcome goes.
pub(super) struct WriteRequest {
    /// The execution's record for a start; None for a transition of `id`.
    pub(super) start: Option<(ExecutionRecord, i64)>,
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) save: ExecutionSave,
    pub(super) done: oneshot::Sender<anyhow::Result<bool>>,
}

/// The most writes one commit takes.
const MAX_BATCH: usize = 64;

/// Writes whatever is waiting (up to a batch) in one transaction.
pub(super) async fn write_batches(
    state: Arc<AppState>,
    mut requests: mpsc::UnboundedReceiver<WriteRequest>,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let writes: Vec<ExecutionWrite> = batch
            .iter()
            .map(|r| match &r.start {
                Some((execution, lease_until)) => ExecutionWrite::Create {
                    execution,
                    save: &r.save,
                    owner: &r.owner,
                    lease_until: *lease_until,
                },
                None => ExecutionWrite::Save {
                    id: &r.id,
                    owner: &r.owner,
                    save: &r.save,
                },
            })
            .collect();
        match state.store.write_executions(&writes).await {
            Ok(written) => {
                for (request, written) in batch.into_iter().zip(written) {
                    let _ = request.done.send(Ok(written));
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for request in batch {
                    let _ = request.done.send(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
    }
}

/// Queues a start (`start`: the execution and its lease's end) or a transition of execution
/// `id` for the writer, and waits for its outcome.
pub(super) async fn write(
    state: &AppState,
    start: Option<(ExecutionRecord, i64)>,
    id: &str,
    owner: &str,
    save: ExecutionSave,
) -> anyhow::Result<bool> {
    let (done, outcome) = oneshot::channel();
    let request = WriteRequest {
        start,
        id: id.to_string(),
        owner: owner.to_string(),
        save,
        done,
    };
    let stopped = || anyhow::anyhow!("the workflow writer has stopped");
    state.workflows.saves.send(request).map_err(|_| stopped())?;
    outcome.await.map_err(|_| stopped())?
}
