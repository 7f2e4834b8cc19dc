//! The Invoker: the one way into a function. Every trigger (gateway route, invoke API) builds an
//! [`InvocationRequest`] and calls [`Invoker::invoke`], which resolves, admits, executes and
//! records. Limits, metering and logs live here and nowhere else.

use crate::error::ApiError;
use crate::recorder::Recorder;
use bytes::Bytes;
use kumo_core::{ErrorKind, FunctionRecord, InvocationRecord, LogRecord, Target, billed_ms};
use kumo_runtime::{Invocation, Loaded, Response, Runtime};
use kumo_store::{Blobs, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

pub struct InvocationRequest {
    pub method: http::Method,
    /// Path and query the guest sees.
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub struct Invoked {
    pub request_id: String,
    pub result: Result<Response, ApiError>,
}

/// A function in memory: its record, its pre-instantiated code, its concurrency gate.
struct Entry {
    record: FunctionRecord,
    loaded: Loaded,
    slots: Option<Arc<Semaphore>>,
}

pub struct Invoker {
    store: Store,
    blobs: Blobs,
    runtime: Arc<Runtime>,
    recorder: Recorder,
    max_response_bytes: usize,
    /// Cache of the store; cleared per function on deploy and delete.
    loaded: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Invoker {
    pub fn new(
        store: Store,
        blobs: Blobs,
        runtime: Arc<Runtime>,
        recorder: Recorder,
        max_response_bytes: usize,
    ) -> Self {
        Self {
            store,
            blobs,
            runtime,
            recorder,
            max_response_bytes,
            loaded: Mutex::default(),
        }
    }

    pub async fn invoke(&self, target: &str, request: InvocationRequest) -> Invoked {
        let request_id = uuid::Uuid::now_v7().to_string();
        let result = match self.resolve(target).await {
            Ok(entry) => self.run(&entry, &request_id, request).await,
            Err(e) => Err(e),
        };
        Invoked { request_id, result }
    }

    /// Puts a freshly deployed function in the cache, replacing what was there.
    pub fn install(&self, record: FunctionRecord, loaded: Loaded) {
        let entry = Arc::new(Entry::new(record, loaded));
        self.cache().insert(entry.record.name.clone(), entry);
    }

    pub fn forget(&self, name: &str) {
        self.cache().remove(name);
    }

    pub fn loaded_count(&self) -> usize {
        self.cache().len()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        // The map is always consistent between statements, so a poisoned lock is still usable.
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn resolve(&self, target: &str) -> Result<Arc<Entry>, ApiError> {
        let target = Target::parse(target).map_err(|_| ApiError::not_found(target))?;
        if let Some(qualifier) = &target.qualifier {
            // Versions and aliases are not built yet: only $LATEST exists.
            return Err(ApiError::new(
                ErrorKind::FunctionNotFound,
                format!(
                    "function {:?} has no version or alias {qualifier:?}",
                    target.name
                ),
            ));
        }
        if let Some(entry) = self.cache().get(&target.name) {
            return Ok(entry.clone());
        }
        let record = self
            .store
            .get_function(&target.name)
            .await?
            .ok_or_else(|| ApiError::not_found(&target.name))?;
        let runtime = self.runtime.clone();
        let code_path = self.blobs.path(&record.code_sha256);
        let sha = record.code_sha256.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&sha, &code_path))
            .await
            .map_err(anyhow::Error::from)??;
        let entry = Arc::new(Entry::new(record, loaded));
        let mut cache = self.cache();
        // A deploy may have installed a newer entry while this one loaded; keep that one.
        Ok(cache.entry(target.name).or_insert(entry).clone())
    }

    async fn run(
        &self,
        entry: &Entry,
        request_id: &str,
        request: InvocationRequest,
    ) -> Result<Response, ApiError> {
        let config = &entry.record.config;
        let started_at = kumo_core::now_ms();
        let start = Instant::now();
        let permit = match &entry.slots {
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let error = ApiError::new(
                        ErrorKind::Throttled,
                        format!(
                            "function {:?} is at its max_concurrency of {}",
                            entry.record.name,
                            config.max_concurrency.unwrap_or_default()
                        ),
                    );
                    self.record(
                        entry,
                        request_id,
                        started_at,
                        start,
                        Err(&error),
                        Vec::new(),
                    )
                    .await;
                    return Err(error);
                }
            },
            None => None,
        };
        let invocation = Invocation {
            method: request.method,
            path_and_query: request.path_and_query,
            headers: request.headers,
            body: request.body,
            env: config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            memory_bytes: config.memory_bytes(),
            timeout: config.timeout,
            max_response_bytes: self.max_response_bytes,
        };
        let execution = self.runtime.execute(&entry.loaded, invocation).await;
        drop(permit);
        let result = execution
            .result
            .map_err(|f| ApiError::new(f.kind, f.message));
        let logs = execution
            .logs
            .into_iter()
            .map(|l| LogRecord {
                id: 0,
                function: entry.record.name.clone(),
                request_id: request_id.to_string(),
                ts: started_at,
                stream: l.stream.as_str().to_string(),
                line: l.line,
            })
            .collect();
        self.record(entry, request_id, started_at, start, result.as_ref(), logs)
            .await;
        result
    }

    async fn record(
        &self,
        entry: &Entry,
        request_id: &str,
        started_at: i64,
        start: Instant,
        result: Result<&Response, &ApiError>,
        logs: Vec<LogRecord>,
    ) {
        let elapsed = start.elapsed();
        let (outcome, status, error_code, error_message) = match result {
            Ok(response) => (kumo_core::Outcome::Ok, response.status.as_u16(), None, None),
            Err(e) => (
                e.kind.outcome(),
                e.kind.status(),
                Some(e.kind.code().to_string()),
                Some(e.message.clone()),
            ),
        };
        let record = InvocationRecord {
            request_id: request_id.to_string(),
            function: entry.record.name.clone(),
            started_at,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            billed_ms: billed_ms(elapsed),
            memory_mb: entry.record.config.memory_mb,
            outcome,
            error_code,
            error_message,
            status,
        };
        self.recorder.record(record, logs).await;
    }
}

impl Entry {
    fn new(record: FunctionRecord, loaded: Loaded) -> Self {
        let slots = record
            .config
            .max_concurrency
            .map(|n| Arc::new(Semaphore::new(n as usize)));
        Self {
            record,
            loaded,
            slots,
        }
    }
}
