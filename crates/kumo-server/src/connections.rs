//! The accept loop: every connection is served by hyper (under TLS when configured) with a
//! header read timeout; a request body that stalls is cut off, and so is a client that stops
//! reading its response; open connections are capped. Past the cap a connection is answered
//! once (its `/healthz`, or 503 `unavailable`) and closed, so a flood of idle connections
//! cannot take the files the server needs; past a further margin it is closed unanswered.
//! Both are counted.

use crate::AppState;
use crate::error::ApiError;
use crate::slots::{Slot, Slots};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use kumo_core::ErrorKind;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the server treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once; `None`: from the open-files limit.
    pub max_connections: Option<usize>,
    /// Time for a request's headers to arrive whole, counted from when the connection is
    /// ready for a request: once accepted, and again after each response. A keep-alive
    /// connection idle this long is closed.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body (408 `request_timeout`).
    pub body_idle_timeout: Duration,
    /// Longest a response may wait for the client to read it; then the connection is closed.
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Header read timeout of a connection answered past the cap.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `listener` until `shutdown` resolves, then lets open requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    max_connections: usize,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let app = crate::app(state.clone());
    let open = Slots::new(max_connections);
    // Connections answered past the cap, each for at most a couple of seconds.
    let overflow = Slots::new(max_connections / 8 + 16);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut refusing = auto::Builder::new(TokioExecutor::new()).http1_only();
    refusing
        .http1()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let metrics = &state.invoker.metrics;
    metrics.watch_connections(open.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of files or memory: wait rather than spin; the connections
                    // being served are not affected.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let stream = WriteTimeout::new(stream, limits.write_timeout);
        if let Some(slot) = open.try_take() {
            let service = Connection {
                app: app.clone(),
                body_idle_timeout: limits.body_idle_timeout,
                peer,
                _slot: Arc::new(slot),
            };
            let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
            tokio::spawn(async move {
                let served = match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Some(tls) => {
                        let Some(stream) =
                            handshake(&tls, stream, limits.header_read_timeout).await
                        else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                };
                if let Err(e) = served {
                    tracing::trace!("connection: {e}");
                }
            });
        } else {
            metrics.connection_refused();
            if let Some(slot) = overflow.try_take() {
                let service = Refusal {
                    _slot: Arc::new(slot),
                };
                let (refusing, tls) = (refusing.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => {
                            let io = TokioIo::new(stream);
                            let _ = refusing.serve_connection(io, service).await;
                        }
                        Some(tls) => {
                            if let Some(stream) =
                                handshake(&tls, stream, OVERFLOW_HEADER_TIMEOUT).await
                            {
                                let io = TokioIo::new(stream);
                                let _ = refusing.serve_connection(io, service).await;
                            }
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The TLS handshake of an accepted connection, within `timeout` (a client that never
/// finishes it holds nothing for long).
async fn handshake(
    tls: &crate::tls::Tls,
    stream: Socket,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<Socket>> {
    match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake: {e}");
            None
        }
        Err(_) => None,
    }
}

/// An accepted connection, as served (plain, or under TLS).
type Socket = WriteTimeout<tokio::net::TcpStream>;

/// Serves one connection's requests through the app; holds its place under the cap.
#[derive(Clone)]
struct Connection<S> {
    app: S,
    body_idle_timeout: Duration,
    /// Who is at the other end: for the control API's refusals (failed tokens are slowed
    /// down per address). Function paths go without it (an extension costs an allocation).
    peer: Option<std::net::SocketAddr>,
    _slot: Arc<Slot>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for Connection<S>
where
    S: tower_service::Service<axum::extract::Request, Response = Response, Error = Infallible>
        + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let timeout = self.body_idle_timeout;
        let mut request = request.map(|body| Body::new(IdleTimeout::new(body, timeout)));
        // Function paths carry it only with credentials, to keep the others free of the
        // extension's allocation.
        if let Some(peer) = self.peer
            && (!crate::gateway::is_function_path(request.uri().path())
                || request.headers().contains_key(http::header::AUTHORIZATION))
        {
            request.extensions_mut().insert(crate::auth::Peer(peer));
        }
        self.app.clone().call(request)
    }
}

/// Answers a connection past the cap: `/healthz` still says the server is alive, anything
/// else is told to come back.
struct Refusal {
    _slot: Arc<Slot>,
}

impl hyper::service::Service<http::Request<Incoming>> for Refusal {
    type Response = Response;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response, Infallible>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let response = if request.uri().path() == "/healthz" {
            "ok\n".into_response()
        } else {
            let mut response = ApiError::new(
                ErrorKind::Unavailable,
                "the server is at its limit of open connections; try again",
            )
            .into_response();
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            response
        };
        std::future::ready(Ok(response))
    }
}

/// A request body that fails when the next piece takes longer than the timeout to arrive.
/// The timer exists only while the body waits, so a body that arrived with its headers
/// costs none.
struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// The error of a request body that stalled; read handlers answer it with 408.
#[derive(Debug)]
pub(crate) struct BodyStalled(pub(crate) Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled for {} (the body idle timeout)",
            kumo_core::format_duration(self.0)
        )
    }
}

impl std::error::Error for BodyStalled {}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read failed because the body stalled.
pub(crate) fn stalled<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(stalled) = e.downcast_ref::<BodyStalled>() {
            return Some(stalled);
        }
        next = e.source();
    }
    None
}

/// A connection whose writes fail when the client stops reading for longer than `timeout`
/// (its socket's buffers full): a client that asks for a response and never reads it would
/// otherwise hold its connection forever. The timer exists only while a write waits.
pub(crate) struct WriteTimeout<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner write's `poll`: progress clears the timer; waiting arms it, and past
    /// the timeout the write fails.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading (the write timeout)",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}
