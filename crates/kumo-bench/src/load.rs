//! The load generator: C keep-alive HTTP/1.1 connections, each sending one request (GET, or
//! an empty POST) after another for
//! a fixed time. It runs as its own process (pinned to its own core), on one thread, so the
//! server under test shares nothing with it.

use crate::stats::Latencies;
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoadResult {
    pub concurrency: usize,
    pub requests: u64,
    /// Responses that were not 2xx, and connection failures.
    pub errors: u64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// A header the load generator sends with every request.
pub(crate) type Header = (http::HeaderName, http::HeaderValue);

/// `NAME: VALUE`.
pub(crate) fn parse_header(text: &str) -> Result<Header, String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not NAME: VALUE"))?;
    let name = http::HeaderName::try_from(name.trim()).map_err(|e| e.to_string())?;
    let value = http::HeaderValue::try_from(value.trim()).map_err(|e| e.to_string())?;
    Ok((name, value))
}

/// Runs the load and returns what it measured. `warmup` runs first and is not counted.
pub(crate) async fn run(
    url: &str,
    method: http::Method,
    headers: &[Header],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let uri: http::Uri = url.parse().context("parsing the URL")?;
    let authority = uri
        .authority()
        .context("the URL has no host:port")?
        .to_string();
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), ToString::to_string);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (authority, path, method) = (authority.clone(), path.clone(), method.clone());
            let headers = headers.to_vec();
            tokio::task::spawn_local(connection(
                authority,
                method,
                path,
                headers,
                measure_from,
                end,
            ))
        })
        .collect();
    let mut latencies = Latencies::default();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await??;
        latencies.merge(l);
        errors += e;
    }
    let requests = latencies.len() as u64;
    Ok(LoadResult {
        concurrency,
        requests,
        errors,
        requests_per_sec: requests as f64 / duration.as_secs_f64(),
        p50_us: latencies.percentile(50.0),
        p99_us: latencies.percentile(99.0),
    })
}

/// One connection's loop; reconnects after an error. Returns its latencies and error count.
async fn connection(
    authority: String,
    method: http::Method,
    path: String,
    headers: Vec<Header>,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<(Latencies, u64)> {
    let mut latencies = Latencies::default();
    let mut errors = 0;
    'connect: while Instant::now() < end {
        let stream = match TcpStream::connect(&authority).await {
            Ok(stream) => stream,
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(conn);
        loop {
            let now = Instant::now();
            if now >= end {
                break 'connect;
            }
            if sender.ready().await.is_err() {
                continue 'connect;
            }
            let mut request = http::Request::builder()
                .method(method.clone())
                .uri(&path)
                .header(http::header::HOST, &authority);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let request = request.body(Empty::<Bytes>::new())?;
            let ok = match sender.send_request(request).await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    response.into_body().collect().await.is_ok() && ok
                }
                Err(_) => false,
            };
            if now >= measure_from {
                if ok {
                    latencies.push(now.elapsed());
                } else {
                    errors += 1;
                }
            }
            if !ok {
                continue 'connect;
            }
        }
    }
    Ok((latencies, errors))
}

/// One keep-alive HTTP/1.1 connection for requests made one at a time (cold-start probes).
pub(crate) struct Connection {
    authority: String,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Connection {
    pub(crate) async fn open(authority: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self {
            authority: authority.to_string(),
            sender,
        })
    }

    /// GETs `path`; returns the response and how long it took to the last body byte.
    pub(crate) async fn get(
        &mut self,
        path: &str,
    ) -> anyhow::Result<(http::Response<Bytes>, Duration)> {
        self.sender.ready().await?;
        let start = Instant::now();
        let request = http::Request::get(path)
            .header(http::header::HOST, &self.authority)
            .body(Empty::<Bytes>::new())?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((http::Response::from_parts(parts, body), start.elapsed()))
    }
}
