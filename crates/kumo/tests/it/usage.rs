//! Metering through the real server: every record carries its trigger, version, billed time
//! and GB-seconds; `/api/v1/usage` and `kumo usage` group them with cost from the price table;
//! retention deletes what is older than `--retention`.

use crate::harness::{TestServer, config};
use kumo_api::{FunctionConfig, InvocationRecord, UsageReport};
use std::time::Duration;

async fn usage(server: &TestServer, by: kumo_core::UsageBy) -> UsageReport {
    server.client.usage("1h", by).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_metered_and_usage_is_priced() {
    // $1 per request and $1 per GB-second make the expected cost easy to compute.
    let server = TestServer::start_with(&[
        "--price-per-million-requests",
        "1000000",
        "--price-per-gb-second",
        "1",
    ])
    .await;
    let probe = FunctionConfig {
        memory_mb: 256,
        max_concurrency: Some(1),
        timeout: Duration::from_millis(600),
        ..config()
    };
    server
        .deploy("probe", test_programs::HTTP_PROBE, probe)
        .await;
    server
        .deploy("cmd", test_programs::COMMAND_PROBE, config())
        .await;

    for _ in 0..3 {
        assert_eq!(
            server.get("/fn/probe/echo").send().await.unwrap().status(),
            200
        );
    }
    server.client.invoke("cmd", b"hi".to_vec()).await.unwrap();
    let (id, _) = server
        .client
        .invoke_async("probe", Vec::new(), None)
        .await
        .unwrap();
    server.client.event(&id, Some("10s")).await.unwrap();
    // One request runs into its timeout while a second is throttled.
    let looping = server.get("/fn/probe/loop").send();
    let throttled = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.get("/fn/probe/echo").send().await.unwrap()
    };
    let (looped, throttled) = tokio::join!(looping, throttled);
    assert_eq!(looped.unwrap().status(), 504);
    assert_eq!(throttled.status(), 429);
    server.client.publish_version("probe", "").await.unwrap();
    server.get("/fn/probe:1/echo").send().await.unwrap();

    let records: Vec<InvocationRecord> = server.client.invocations(None, 100).await.unwrap();
    assert_eq!(records.len(), 8, "{records:?}");
    let triggers = |t: &str| records.iter().filter(|r| r.trigger.as_str() == t).count();
    assert_eq!(
        (triggers("http"), triggers("invoke"), triggers("async")),
        (6, 1, 1)
    );
    for r in &records {
        let expected = f64::from(r.memory_mb) / 1024.0 * r.billed_ms as f64 / 1000.0;
        assert!((r.gb_seconds - expected).abs() < 1e-12, "{r:?}");
        if r.outcome == kumo_api::Outcome::Throttled {
            assert_eq!((r.billed_ms, r.gb_seconds), (0, 0.0), "{r:?}");
        } else {
            assert!(r.billed_ms >= r.duration_ms.floor() as u64, "{r:?}");
        }
    }

    let report = usage(&server, kumo_core::UsageBy::Function).await;
    let row = |key: &str| {
        report
            .rows
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("{key}: {report:?}"))
    };
    let probe = row("probe");
    assert_eq!(
        (probe.requests, probe.errors, probe.throttles),
        (7, 2, 1),
        "{probe:?}"
    );
    let probe_gb_s: f64 = records
        .iter()
        .filter(|r| r.function == "probe")
        .map(|r| r.gb_seconds)
        .sum();
    assert!((probe.gb_seconds - probe_gb_s).abs() < 1e-9);
    assert!((probe.cost - (6.0 + probe_gb_s)).abs() < 1e-6, "{probe:?}");
    assert!(
        probe.p99_ms >= 600.0 && probe.p50_ms < probe.p99_ms,
        "{probe:?}"
    );
    assert_eq!(row("cmd").requests, 1);
    assert_eq!(report.total.requests, 8);
    assert!((report.total.cost - (7.0 + report.total.gb_seconds)).abs() < 1e-6);

    let by_version = usage(&server, kumo_core::UsageBy::Version).await;
    let keys: Vec<_> = by_version.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["cmd:$LATEST", "probe:$LATEST", "probe:1"]);
    let by_day = usage(&server, kumo_core::UsageBy::Day).await;
    let today = &kumo_core::format_timestamp(kumo_core::now_ms())[..10];
    assert_eq!(by_day.rows.len(), 1);
    assert_eq!(by_day.rows[0].key, today);

    let json = server.cli(&["usage", "--since", "1h", "--output", "json"]);
    let parsed: UsageReport = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed.total.requests, 8);
    let table = String::from_utf8(server.cli(&["usage", "--by", "version"]).stdout).unwrap();
    assert!(
        table.contains("probe:1") && table.contains("total"),
        "{table}"
    );
    let bad = server.get("/api/v1/usage?by=week").send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_records_and_logs() {
    let server = TestServer::start_with(&["--retention", "3s"]).await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    server.get("/fn/probe/log").send().await.unwrap();
    assert_eq!(server.client.invocations(None, 10).await.unwrap().len(), 1);
    assert!(
        !server
            .client
            .logs("probe", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !server
        .client
        .invocations(None, 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "records outlived retention"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server
            .client
            .logs("probe", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // New records are kept (until they, too, are old).
    server.get("/fn/probe/echo").send().await.unwrap();
    assert_eq!(server.client.invocations(None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_is_lost_on_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    const N: usize = 300;
    for _ in 0..N / 30 {
        let batch = (0..30).map(|_| server.get("/fn/probe/echo").send());
        for response in futures::future::join_all(batch).await {
            assert_eq!(response.unwrap().status(), 200);
        }
    }
    // Stopped right away: records still waiting in the recorder's batch are written first.
    server.stop();
    let server = TestServer::start_in(dir.path(), &[]);
    let records = server
        .client
        .invocations(Some("probe"), 1000)
        .await
        .unwrap();
    assert_eq!(records.len(), N);
}
