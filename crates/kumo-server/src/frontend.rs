//! What the listener serves: function paths (`/fn/{target}[/...]`) go straight to the
//! gateway, everything else (the control API, health, metrics, custom routes) through axum's
//! router. Routing every request through the router cost ~4% of a warm invocation (path
//! matching, path parameters and the request extensions it adds and drops again).

use crate::AppState;
use crate::gateway;
use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

#[derive(Clone)]
pub struct Frontend {
    state: Arc<AppState>,
    router: Router,
}

impl Frontend {
    pub fn new(state: Arc<AppState>, router: Router) -> Self {
        Self { state, router }
    }
}

impl tower_service::Service<Request> for Frontend {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Neither side ever waits: the router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if gateway::is_function_path(request.uri().path()) {
            let state = self.state.clone();
            Box::pin(async move { Ok(gateway::function(&state, request).await) })
        } else {
            Box::pin(self.router.call(request))
        }
    }
}
