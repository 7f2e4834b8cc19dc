//! What the listener serves: function paths (`/fn/{target}[/...]`) go straight to the
//! gateway, everything else (the control API, health, metrics, custom routes) through axum's
//! router. Routing every request through the router cost ~4% of a warm invocation (path
//! matching, path parameters and the request extensions it adds and drops again).

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures::future::Either;
use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

/// What serves a function path. A trait with the future's type, rather than a boxed future,
/// so that hyper keeps a request's future (an `async` block's, which has no name to write)
/// in the connection's own allocation: boxing it per request cost a 6.5 KB allocation, past
/// the sizes glibc's malloc serves from its fast per-thread cache.
pub trait FunctionHandler: Clone + Send + 'static {
    type Future: Future<Output = Result<Response, Infallible>> + Send + 'static;
    fn handle(&self, request: Request) -> Self::Future;
}

impl<F, Fut> FunctionHandler for F
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    type Future = Fut;

    fn handle(&self, request: Request) -> Fut {
        self(request)
    }
}

#[derive(Clone)]
pub struct Frontend<F> {
    functions: F,
    router: Router,
}

impl<F: FunctionHandler> Frontend<F> {
    pub fn new(functions: F, router: Router) -> Self {
        Self { functions, router }
    }
}

impl<F: FunctionHandler> tower_service::Service<Request> for Frontend<F> {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<F::Future, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Neither side ever waits: the router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if crate::gateway::is_function_path(request.uri().path()) {
            Either::Left(self.functions.handle(request))
        } else {
            Either::Right(self.router.call(crate::namespaces::enter(request)))
        }
    }
}
