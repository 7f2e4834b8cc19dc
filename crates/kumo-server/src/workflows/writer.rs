//! Group commit of the drivers' transitions: one writer takes whatever is waiting (up to a
//! batch) and writes it in one transaction.

use super::*;

/// One execution's transition for the writer, and where its outcome goes.
pub(super) struct SaveRequest {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) save: ExecutionSave,
    pub(super) done: oneshot::Sender<anyhow::Result<bool>>,
}

/// The most transitions one commit writes.
const MAX_BATCH: usize = 64;

/// Writes the drivers' transitions: whatever is waiting (up to a batch) in one transaction.
pub(super) async fn write_saves(
    state: Arc<AppState>,
    mut requests: mpsc::UnboundedReceiver<SaveRequest>,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let items: Vec<(&str, &str, &ExecutionSave)> = batch
            .iter()
            .map(|r| (r.id.as_str(), r.owner.as_str(), &r.save))
            .collect();
        match state.store.save_executions(&items).await {
            Ok(saved) => {
                for (request, saved) in batch.into_iter().zip(saved) {
                    let _ = request.done.send(Ok(saved));
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
