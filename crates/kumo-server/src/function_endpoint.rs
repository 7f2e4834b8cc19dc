//! kumo's API, served to one Lambda function on a listener inside its execution environment
//! (`AWS_ENDPOINT_URL` / `KUMO_URL` there). Nothing else can connect to that listener, so
//! every request on it comes from that function: it is tagged [`FromFunction`], and the
//! authorisation layer (and the Lambda API) let it do what the function may
//! ([`kumo_core::function_may`]), whatever credentials it carries and whatever `--auth` says.
//! The connection is the credential: there is no secret for the function to leak.

use axum::body::Body;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Weak};
use tokio::net::TcpListener;
use tower_service::Service as _;

/// Who sent a request that came in on a function's own endpoint: the function's store key.
#[derive(Debug, Clone)]
pub(crate) struct FromFunction(pub(crate) Arc<str>);

/// Serves the app on environments' endpoint listeners. Holds the state weakly: the state
/// holds the Lambda runtime, which holds this.
pub(crate) struct FunctionEndpoint {
    pub(crate) state: Weak<crate::AppState>,
}

impl kumo_lambda::Endpoint for FunctionEndpoint {
    fn serve(&self, listener: TcpListener, identity: &str) -> tokio::task::JoinHandle<()> {
        let state = self.state.clone();
        let identity: Arc<str> = identity.into();
        tokio::spawn(async move {
            // Built at the first connection, not at the environment's start: most functions
            // never call kumo, and their cold starts should not pay for a router.
            let mut app = None;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if app.is_none() {
                    let Some(state) = state.upgrade() else {
                        return;
                    };
                    app = Some(crate::app(state));
                }
                let Some(app) = app.clone() else {
                    continue;
                };
                let from = FromFunction(identity.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let mut request = request.map(Body::new);
                            request.extensions_mut().insert(from.clone());
                            app.clone().call(request)
                        },
                    );
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = connection.await {
                        tracing::trace!("a function's endpoint connection: {e}");
                    }
                });
            }
        })
    }
}
