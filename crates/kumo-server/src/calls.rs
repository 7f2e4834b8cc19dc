//! Function-to-function calls: a guest's request to `http://NAME.fn.internal/...` arrives here
//! from the runtime's wasi:http hooks and goes through the Invoker in-process, never over the
//! network, one call deeper than its caller. The answer is what the data plane would send
//! (the function's response, or kumo's error with `x-kumo-error`).

use crate::AppState;
use crate::gateway::invoked_response;
use crate::invoker::InvocationRequest;
use bytes::Bytes;
use http_body_util::BodyExt;
use kumo_runtime::{CallFuture, FunctionCall, FunctionCalls};
use std::sync::Weak;

/// Holds the state weakly: the runtime that keeps this lives inside the state.
pub(crate) struct InternalCalls(pub Weak<AppState>);

impl FunctionCalls for InternalCalls {
    fn call(&self, call: FunctionCall) -> CallFuture {
        let state = self.0.clone();
        Box::pin(async move {
            let Some(state) = state.upgrade() else {
                let mut gone = http::Response::new(Bytes::from_static(b"kumo is stopping"));
                *gone.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                return gone;
            };
            let invoked = state
                .invoker
                .invoke(
                    &call.function,
                    InvocationRequest {
                        method: call.method,
                        path_and_query: call.path_and_query,
                        headers: call.headers,
                        body: call.body,
                        env: Vec::new(),
                        call_depth: call.depth,
                        source: kumo_core::Source::Call,
                        peer: None,
                        tail_logs: false,
                    },
                )
                .await;
            let (parts, body) = invoked_response(invoked).into_parts();
            // The body is already in memory (invocation responses are buffered).
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            http::Response::from_parts(parts, body)
        })
    }
}
