//! Every limit, hit: memory, time, payload sizes, concurrency; guest failures and the sandbox.

use crate::harness::{TestServer, config, error_code, request_id};
use kumo_api::FunctionConfig;
use kumo_core::Outcome;
use std::time::{Duration, Instant};

#[tokio::test]
async fn memory_limit_stops_the_guest_and_spares_the_others() {
    let server = TestServer::start().await;
    let mut small = config();
    small.memory_mb = 32;
    server
        .deploy("hog", test_programs::HTTP_PROBE, small.clone())
        .await;
    server
        .deploy("cmdhog", test_programs::COMMAND_PROBE, small)
        .await;
    server.deploy("hello", test_programs::HELLO, config()).await;

    let response = server.get("/fn/hog/oom").send().await.unwrap();
    assert_eq!(response.status(), 502);
    let id = request_id(&response);
    assert_eq!(error_code(response).await, "out_of_memory");
    let record = server.client.invocation(&id).await.unwrap();
    assert_eq!(record.outcome, Outcome::OutOfMemory);

    let cmd = server
        .client
        .invoke("cmdhog", b"oom".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (cmd.status, cmd.error_code.as_deref()),
        (502, Some("out_of_memory"))
    );

    // The same function and the others keep working.
    let ok = server
        .get("/fn/hog/echo")
        .body("still here")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "still here");
    let hello = server.get("/fn/hello/x").send().await.unwrap();
    assert_eq!(hello.status(), 200);
}

#[tokio::test]
async fn timeout_stops_a_looping_guest_and_the_server_carries_on() {
    let server = TestServer::start().await;
    let mut quick = config();
    quick.timeout = Duration::from_millis(300);
    server
        .deploy("spin", test_programs::HTTP_PROBE, quick.clone())
        .await;
    server
        .deploy("cmdspin", test_programs::COMMAND_PROBE, quick)
        .await;

    // More looping guests than the server has worker threads: none may be lost to them.
    let started = Instant::now();
    let loops: Vec<_> = (0..4)
        .map(|_| tokio::spawn(server.get("/fn/spin/loop").send()))
        .collect();
    for running in loops {
        let response = running.await.unwrap().unwrap();
        assert_eq!(response.status(), 504);
        assert_eq!(error_code(response).await, "timeout");
    }
    // Generous bound: it only has to show the guests were stopped, not run to completion.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let cmd = server
        .client
        .invoke("cmdspin", b"loop".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (cmd.status, cmd.error_code.as_deref()),
        (504, Some("timeout"))
    );
    let records = server.client.invocations(Some("spin"), 10).await.unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.outcome == Outcome::Timeout && r.duration_ms >= 300.0)
    );

    for _ in 0..8 {
        let ok = server
            .get("/fn/spin/echo")
            .body("alive")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.text().await.unwrap(), "alive");
    }
}

#[tokio::test]
async fn payloads_over_the_limit_are_413_both_ways() {
    let server = TestServer::with_probes().await;
    let limit = 6 * 1024 * 1024;

    let big = vec![b'a'; limit + 1];
    let response = server
        .post("/fn/probe/echo")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    let response = server
        .post("/api/v1/functions/cmd/invoke")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "payload_too_large");
    // Exactly at the limit is fine.
    let at_limit = server
        .post("/fn/probe/echo")
        .body(vec![b'a'; limit])
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.bytes().await.unwrap().len(), limit);

    let response = server
        .get(&format!("/fn/probe/big?bytes={}", limit + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    let out = server
        .client
        .invoke("cmd", format!("big:{}", limit + 1).into_bytes())
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.error_code.as_deref()),
        (413, Some("payload_too_large"))
    );
    let out = server
        .client
        .invoke("cmd", format!("big:{limit}").into_bytes())
        .await
        .unwrap();
    assert_eq!(out.body.len(), limit);
}

#[tokio::test]
async fn configured_body_limit_applies() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--max-body-bytes", "1000"]);
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let response = server
        .post("/fn/probe/echo")
        .body(vec![0u8; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let ok = server
        .post("/fn/probe/echo")
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn refusals_before_an_invocation_carry_a_request_id() {
    let server = TestServer::start_with(&[
        "--max-body-bytes",
        "1000",
        "--max-async-payload-bytes",
        "500",
    ])
    .await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            server.post("/fn/probe/echo").body(vec![0u8; 1001]),
            413,
            "payload_too_large",
        ),
        (server.post("/nowhere").body("x"), 404, "function_not_found"),
        (
            server
                .post("/api/v1/functions/probe/invoke")
                .body(vec![0u8; 1001]),
            413,
            "payload_too_large",
        ),
        (
            server
                .post("/api/v1/functions/probe/invoke?mode=async")
                .body(vec![0u8; 501]),
            413,
            "payload_too_large",
        ),
        (
            server.post("/api/v1/functions/probe/invoke?mode=later"),
            400,
            "invalid_request",
        ),
        (
            server.post("/api/v1/functions/missing/invoke"),
            404,
            "function_not_found",
        ),
        (
            server.post("/api/v1/functions/missing/invoke?mode=async"),
            404,
            "function_not_found",
        ),
        (
            server.get("/api/v1/functions/probe/invoke"),
            405,
            "method_not_allowed",
        ),
    ];
    let mut ids = std::collections::HashSet::new();
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        let what = format!("{} {}", response.status(), response.url());
        assert_eq!(response.status(), status, "{what}");
        assert!(
            response.headers().contains_key("x-kumo-request-id"),
            "{what} has a request id"
        );
        assert!(ids.insert(request_id(&response)), "a new id each: {what}");
        assert_eq!(error_code(response).await, code, "{what}");
    }
    // Accepted async submits have one too.
    let accepted = server
        .post("/api/v1/functions/probe/invoke?mode=async")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    request_id(&accepted);
}

#[tokio::test]
async fn traps_panics_exits_and_missing_responses_are_function_errors() {
    let server = TestServer::with_probes().await;
    server
        .deploy("silent", test_programs::NO_RESPONSE, config())
        .await;

    let response = server.get("/fn/probe/panic").send().await.unwrap();
    assert_eq!(response.status(), 502);
    let id = request_id(&response);
    assert_eq!(error_code(response).await, "function_error");
    let logs = server.client.logs("probe", Some(&id), 100).await.unwrap();
    let text: Vec<&str> = logs.iter().map(|l| l.line.as_str()).collect();
    assert!(text.contains(&"about to panic"), "{text:?}");
    assert!(
        text.iter().any(|l| l.contains("guest panicked on purpose")),
        "{text:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.stream == kumo_core::LogStream::Kumo && l.line.starts_with("function_error"))
    );
    assert_eq!(
        server.client.invocation(&id).await.unwrap().outcome,
        Outcome::Error
    );

    for payload in ["panic", "exit:3"] {
        let out = server
            .client
            .invoke("cmd", payload.as_bytes().to_vec())
            .await
            .unwrap();
        assert_eq!(
            (out.status, out.error_code.as_deref()),
            (502, Some("function_error")),
            "{payload}"
        );
    }
    let exit0 = server
        .client
        .invoke("cmd", b"exit:0".to_vec())
        .await
        .unwrap();
    assert_eq!(exit0.status, 200);

    let silent = server.get("/fn/silent").send().await.unwrap();
    assert_eq!(silent.status(), 502);
    let body: serde_json::Value = silent.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without sending a response")
    );
}

#[tokio::test]
async fn guests_cannot_reach_the_host_filesystem_or_network() {
    let server = TestServer::with_probes().await;
    for path in ["/fn/probe/fs", "/fn/probe/socket", "/fn/probe/outbound"] {
        let body = server.get_text(path).await;
        assert!(body.starts_with("denied"), "{path}: {body}");
    }
    let fs = server.client.invoke("cmd", b"fs".to_vec()).await.unwrap();
    assert!(fs.body.starts_with(b"denied"), "{:?}", fs.body);
}

#[tokio::test]
async fn max_concurrency_throttles_with_retry_after() {
    let server = TestServer::start().await;
    let mut one = config();
    one.max_concurrency = Some(1);
    one.timeout = Duration::from_secs(3);
    server
        .deploy("single", test_programs::HTTP_PROBE, one)
        .await;

    let busy = tokio::spawn(server.get("/fn/single/loop").send());
    let throttled = first_throttled(&server, "/fn/single/echo").await;
    assert_eq!(throttled.headers()["retry-after"], "1");
    let id = request_id(&throttled);
    assert_eq!(error_code(throttled).await, "throttled");
    assert_eq!(busy.await.unwrap().unwrap().status(), 504);
    assert_eq!(
        server.client.invocation(&id).await.unwrap().outcome,
        Outcome::Throttled
    );
    // The slot is free again.
    let ok = server.get("/fn/single/echo").send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn the_server_wide_limit_throttles_every_function() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--max-concurrency", "1"]);
    let mut slow = config();
    slow.timeout = Duration::from_secs(3);
    server.deploy("busy", test_programs::HTTP_PROBE, slow).await;
    server.deploy("other", test_programs::HELLO, config()).await;

    let busy = tokio::spawn(server.get("/fn/busy/loop").send());
    let throttled = first_throttled(&server, "/fn/other/x").await;
    assert_eq!(throttled.headers()["retry-after"], "1");
    let body: serde_json::Value = throttled.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server"),
        "{body}"
    );
    assert_eq!(busy.await.unwrap().unwrap().status(), 504);
    assert_eq!(
        server.get("/fn/other/x").send().await.unwrap().status(),
        200
    );
}

/// Requests `path` until one is throttled, i.e. until a looping invocation started just before
/// holds the only slot; fails after 2.5 s.
async fn first_throttled(server: &TestServer, path: &str) -> reqwest::Response {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = server.get(path).send().await.unwrap();
        if response.status() == 429 {
            return response;
        }
    }
    panic!("no request to {path} was throttled while the only slot was taken");
}

#[tokio::test]
async fn provisioned_concurrency_reserves_slots_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--max-concurrency", "2"]);
    let provisioned = FunctionConfig {
        provisioned_concurrency: Some(1),
        ..config()
    };
    server
        .deploy("reserved", test_programs::HTTP_PROBE, provisioned)
        .await;
    let busy = FunctionConfig {
        timeout: Duration::from_secs(2),
        ..config()
    };
    server
        .deploy("probe", test_programs::HTTP_PROBE, busy)
        .await;

    // Asking for more than is left unreserved is refused, and nothing changes.
    let greedy = FunctionConfig {
        provisioned_concurrency: Some(2),
        ..config()
    };
    let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let refused = server.client.deploy("greedy", code, &greedy).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("conflict")),
        "{refused:?}"
    );

    // One looping request fills the only shared slot: other functions are throttled, the
    // provisioned one still runs in its reserved slot.
    let looping = tokio::spawn(server.get("/fn/probe/loop").send());
    let throttled = first_throttled(&server, "/fn/probe/echo").await;
    assert_eq!(error_code(throttled).await, "throttled");
    assert_eq!(server.metric("kumo_invocations_in_flight").await, 1);
    let reserved = server.get("/fn/reserved/echo").send().await.unwrap();
    assert_eq!(reserved.status(), 200);
    assert_eq!(error_code(looping.await.unwrap().unwrap()).await, "timeout");
}

#[tokio::test]
async fn a_function_hogging_cpu_does_not_starve_the_others() {
    let server = TestServer::start().await;
    let hog = FunctionConfig {
        max_concurrency: Some(4),
        timeout: Duration::from_secs(5),
        ..config()
    };
    server.deploy("hog", test_programs::HTTP_PROBE, hog).await;
    server.deploy("other", test_programs::HELLO, config()).await;

    // Eight busy loops: four run (its max_concurrency), four are throttled at once.
    let loops: Vec<_> = (0..8)
        .map(|_| tokio::spawn(server.get("/fn/hog/loop").send()))
        .collect();
    let in_flight = server
        .metric_eventually("kumo_invocations_in_flight", 4)
        .await;
    assert_eq!(in_flight, 4, "the hog runs at its max_concurrency");
    // While all four spin, another function still answers, request after request.
    for _ in 0..10 {
        let response = server.get("/fn/other/Ada").send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "hello, Ada!\n");
    }
    assert_eq!(server.metric("kumo_invocations_in_flight").await, 4);
    let mut codes = Vec::new();
    for running in loops {
        codes.push(error_code(running.await.unwrap().unwrap()).await);
    }
    codes.sort();
    assert_eq!(
        codes,
        ["throttled"; 4]
            .into_iter()
            .chain(["timeout"; 4])
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_log_lines_stores_no_more_than_the_output_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let stored = || {
        ["kumo.db", "kumo.db-wal"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    // Load the function and let its first writes settle before measuring.
    assert_eq!(
        server.get("/fn/probe/log").send().await.unwrap().status(),
        200
    );
    server.client.logs("probe", None, 10).await.unwrap();
    let before = stored();
    const FLOODS: u64 = 4;
    let mut last = String::new();
    for _ in 0..FLOODS {
        // Two million two-byte lines: 4 MB of output, past the 1 MiB a stream keeps.
        let response = server
            .get("/fn/probe/flood?lines=2000000")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        last = request_id(&response);
    }
    // The truncation is marked, as the last line of the invocation.
    let logs = server.client.logs("probe", Some(&last), 1).await.unwrap();
    let note = &logs.last().expect("a line").line;
    assert!(note.contains("more stderr lines were dropped"), "{note}");
    // What the floods stored: bounded by the cap (1 MiB per invocation with per-line overhead
    // counted), where a line per two bytes of output stored over 12 MiB per invocation.
    let growth = stored() - before;
    assert!(
        growth < FLOODS * 2 * 1024 * 1024,
        "{growth} bytes stored for {FLOODS} floods"
    );
}

#[tokio::test]
async fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    // Started by a shell that lowered its soft limit first, as a default 1024 would be.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            r#"ulimit -Sn 256 && exec "$0" serve --listen 127.0.0.1:0 --data-dir "$1""#,
            env!("CARGO_BIN_EXE_kumo"),
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("kumo listening on")),
        "kumo starts"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the limit is listed");
    let fields: Vec<&str> = open_files.split_whitespace().collect();
    // "Max open files  SOFT  HARD  files"
    assert_eq!(fields[3], fields[4], "{open_files}");
    assert_ne!(fields[3], "256", "{open_files}");
}
