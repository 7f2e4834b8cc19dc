//! Instance reuse: `fresh` instances share nothing between requests; `reuse` keeps an
//! instance warm and replaces it after a failure, after `max_instance_requests`, or when idle.
//! The probe's `/counter` answers how many requests its instance has served.

use crate::harness::{TestServer, config, error_code};
use kumo_api::FunctionConfig;
use kumo_core::Instances;
use std::time::Duration;

fn reuse(max_instance_requests: u32) -> FunctionConfig {
    FunctionConfig {
        instances: Instances::Reuse,
        max_instance_requests,
        timeout: Duration::from_millis(500),
        ..config()
    }
}

async fn counters(server: &TestServer, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(server.get_text("/fn/probe/counter").await);
    }
    seen
}

#[tokio::test]
async fn fresh_instances_share_nothing_between_requests() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    assert_eq!(counters(&server, 3).await, ["1", "1", "1"]);
    assert_eq!(server.metric("kumo_warm_instances").await, 0);
}

#[tokio::test]
async fn reused_instances_are_replaced_after_their_requests_and_after_failures() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, reuse(3))
        .await;
    // One instance serves three requests, then a new one takes over.
    assert_eq!(counters(&server, 5).await, ["1", "2", "3", "1", "2"]);
    assert_eq!(server.metric("kumo_warm_instances").await, 1);

    // A trap: the instance is dropped, the next request gets a new one.
    let panic = server.get("/fn/probe/panic").send().await.unwrap();
    assert_eq!(error_code(panic).await, "function_error");
    assert_eq!(counters(&server, 2).await, ["1", "2"]);

    // A timeout too.
    let looping = server.get("/fn/probe/loop").send().await.unwrap();
    assert_eq!(error_code(looping).await, "timeout");
    assert_eq!(counters(&server, 1).await, ["1"]);

    // A redeploy starts over with new instances.
    server
        .deploy("probe", test_programs::HTTP_PROBE, reuse(100))
        .await;
    assert_eq!(counters(&server, 3).await, ["1", "2", "3"]);
}

#[tokio::test]
async fn idle_warm_instances_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--keep-alive", "300ms"]);
    server
        .deploy("probe", test_programs::HTTP_PROBE, reuse(100))
        .await;
    assert_eq!(counters(&server, 2).await, ["1", "2"]);
    let warm = server.metric_eventually("kumo_warm_instances", 0).await;
    assert_eq!(
        warm, 0,
        "an idle warm instance is dropped after the keep-alive"
    );
    assert_eq!(counters(&server, 1).await, ["1"]);
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_instance() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, reuse(1000))
        .await;
    // Requests in flight at once never share an instance; afterwards the warm ones wait.
    let requests = (0..8).map(|_| server.get("/fn/probe/counter").send());
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let warm = server.metric("kumo_warm_instances").await;
    assert!((1..=8).contains(&warm), "{warm} warm instances");
}

#[tokio::test]
async fn code_that_cannot_serve_twice_falls_back_to_fresh_instances() {
    let server = TestServer::start().await;
    server
        .deploy("once", test_programs::SERVE_ONCE, reuse(100))
        .await;
    // Its second request on a warm instance gets no answer; the caller never sees that: the
    // request runs again in a fresh instance, and every later one gets a fresh instance.
    for i in 0..5 {
        let response = server.get("/fn/once/").send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.text().await.unwrap(), "served");
    }
    assert_eq!(server.metric("kumo_warm_instances").await, 0);
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("kumo_reuse_fallbacks_total{function=\"once\"} 1"),
        "{metrics}"
    );
    // The function's info and `kumo ls` say so.
    let info = server.client.get("once").await.unwrap();
    assert!(info.reuse_fell_back);
    let ls = String::from_utf8(server.cli(&["ls"]).stdout).unwrap();
    let line = ls.lines().find(|l| l.starts_with("once ")).expect("listed");
    assert!(line.contains("fresh (fallback)"), "{ls}");
    // The failed attempt's output is in the logs of the request it retried, with kumo's note.
    let logs = server.client.logs("once", None, 100).await.unwrap();
    assert!(
        logs.iter().any(|l| l.stream == kumo_core::LogStream::Kumo
            && l.line.contains("fresh instances from now on")),
        "{logs:?}"
    );

    // Code that serves twice keeps its warm instances.
    server
        .deploy("probe", test_programs::HTTP_PROBE, reuse(100))
        .await;
    assert_eq!(counters(&server, 3).await, ["1", "2", "3"]);
    assert!(!server.client.get("probe").await.unwrap().reuse_fell_back);
}
