//! `/metrics` through the real server, parsed with a Prometheus text-format parser: invocation
//! counts by function/outcome/trigger, durations, cold starts, throttles, retries, queue depth,
//! concurrency and loaded versions.

use crate::harness::{TestServer, config};
use kumo_api::FunctionConfig;
use prometheus_parse::{Sample, Scrape, Value};
use std::time::Duration;

async fn scrape(server: &TestServer) -> Scrape {
    let body = server.get_text("/metrics").await;
    // OpenMetrics ends with `# EOF`, which the parser reads as a comment.
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid exposition")
}

/// The value of the sample named `name` whose labels include all of `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches = |s: &&Sample| {
        s.metric == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|got| got == *v))
    };
    scrape.samples.iter().find(matches).map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => f64::NAN,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_happened() {
    let server = TestServer::start().await;
    let probe = FunctionConfig {
        max_concurrency: Some(1),
        timeout: Duration::from_millis(500),
        ..config()
    };
    server
        .deploy("probe", test_programs::HTTP_PROBE, probe)
        .await;
    let events = FunctionConfig {
        max_retries: 1,
        ..config()
    };
    server
        .deploy("events", test_programs::EVENT_PROBE, events)
        .await;

    server.get("/fn/probe/echo").send().await.unwrap();
    server.get("/fn/probe/echo").send().await.unwrap();
    server.get("/fn/probe/panic").send().await.unwrap();
    let (looped, throttled) = tokio::join!(server.get("/fn/probe/loop").send(), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.get("/fn/probe/echo").send().await.unwrap()
    });
    assert_eq!(looped.unwrap().status(), 504);
    assert_eq!(throttled.status(), 429);
    let (id, _) = server
        .client
        .invoke_async("events", b"fail".to_vec(), None)
        .await
        .unwrap();
    // While its retry waits (1 s), the event is in the queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let queued = loop {
        let m = scrape(&server).await;
        if value(&m, "kumo_retries_total", &[("function", "events")]) == Some(1.0) {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no retry counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        value(&queued, "kumo_queue_depth", &[("function", "events")]),
        Some(1.0)
    );
    let age = value(
        &queued,
        "kumo_queue_oldest_age_seconds",
        &[("function", "events")],
    );
    assert!(age.is_some_and(|a| (0.0..10.0).contains(&a)), "{age:?}");
    server.client.event(&id, Some("15s")).await.unwrap();

    let m = scrape(&server).await;
    let invocations = |outcome: &str, trigger: &str| {
        value(
            &m,
            "kumo_invocations_total",
            &[
                ("function", "probe"),
                ("outcome", outcome),
                ("trigger", trigger),
            ],
        )
    };
    assert_eq!(invocations("ok", "http"), Some(2.0));
    assert_eq!(invocations("error", "http"), Some(1.0));
    assert_eq!(invocations("timeout", "http"), Some(1.0));
    assert_eq!(invocations("throttled", "http"), Some(1.0));
    assert_eq!(
        value(
            &m,
            "kumo_invocations_total",
            &[
                ("function", "events"),
                ("outcome", "ok"),
                ("trigger", "async")
            ]
        ),
        Some(2.0),
        "two attempts, each answered (500 is the function's answer)"
    );
    assert_eq!(
        value(&m, "kumo_throttles_total", &[("function", "probe")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "kumo_cold_starts_total", &[("function", "probe")]),
        Some(1.0)
    );
    // Histograms: one observation per invocation that ran (4 of probe's 5).
    assert_eq!(
        value(
            &m,
            "kumo_invocation_duration_seconds_count",
            &[("function", "probe")]
        )
        .or_else(|| value(
            &m,
            "kumo_invocation_duration_seconds",
            &[("function", "probe")]
        )),
        Some(4.0)
    );
    assert_eq!(value(&m, "kumo_functions_loaded", &[]), Some(2.0));
    assert_eq!(value(&m, "kumo_invocations_in_flight", &[]), Some(0.0));
    assert_eq!(value(&m, "kumo_concurrency_limit", &[]), Some(1000.0));
    assert_eq!(
        value(&m, "kumo_queue_depth", &[("function", "events")]),
        None,
        "a drained queue has no depth sample"
    );
    assert_eq!(value(&m, "kumo_events_pending", &[]), Some(0.0));
}
