//! Faults and floods (issue 21's fault-injection suite): a noisy neighbour, a memory budget,
//! a connection flood, slow clients. Each asserts the documented status and code, that
//! nothing acknowledged is lost, and that the server is healthy after.

use crate::harness::{TestServer, config, error_code};
use kumo_api::FunctionConfig;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn looping(timeout_secs: u64) -> FunctionConfig {
    FunctionConfig {
        timeout: Duration::from_secs(timeout_secs),
        ..config()
    }
}

/// Starts `n` requests to a looping guest and waits until the server counts `n` in flight.
async fn hold(server: &TestServer, path: &str, n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    let held: Vec<_> = (0..n)
        .map(|_| {
            let request = server.get(path).send();
            tokio::spawn(async move { request.await.unwrap().status().as_u16() })
        })
        .collect();
    let in_flight = server
        .metric_eventually("kumo_invocations_in_flight", n as u64)
        .await;
    assert_eq!(in_flight, n as u64, "{n} invocations of {path} are running");
    held
}

#[tokio::test]
async fn a_slow_function_holds_no_more_than_its_share_of_the_server() {
    let server = TestServer::start_with(&["--max-concurrency", "4"]).await;
    server
        .deploy("slow", test_programs::HTTP_PROBE, looping(3))
        .await;
    server.deploy("other", test_programs::HELLO, config()).await;

    // Half of the server's 4 slots by default: the third request is throttled, and names
    // the share, not the server's limit.
    let held = hold(&server, "/fn/slow/loop", 2).await;
    let third = server.get("/fn/slow/loop").send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: serde_json::Value = third.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("fair share"), "{message}");
    // The other function is served meanwhile.
    for _ in 0..3 {
        let response = server.get("/fn/other/hi").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    for h in held {
        assert_eq!(h.await.unwrap(), 504);
    }
    assert_eq!(server.get("/fn/slow/").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_function_can_be_given_more_than_the_default_share() {
    let server = TestServer::start_with(&["--max-concurrency", "4"]).await;
    let wide = FunctionConfig {
        max_concurrency: Some(3),
        ..looping(2)
    };
    server.deploy("wide", test_programs::HTTP_PROBE, wide).await;
    let held = hold(&server, "/fn/wide/loop", 3).await;
    for h in held {
        assert_eq!(h.await.unwrap(), 504);
    }
}

#[tokio::test]
async fn the_memory_budget_throttles_invocations_and_refuses_what_cannot_fit() {
    let server = TestServer::start_with(&["--max-memory", "256MiB"]).await;
    let too_big = FunctionConfig {
        memory_mb: 512,
        ..config()
    };
    let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let refused = server
        .client
        .deploy("big", code, &too_big)
        .await
        .unwrap_err();
    let refused = refused.to_string();
    assert!(
        refused.contains("invalid_function") && refused.contains("memory budget of 256 MiB"),
        "{refused}"
    );
    assert_eq!(
        server
            .get("/api/v1/functions/big")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let half = FunctionConfig {
        memory_mb: 128,
        ..looping(3)
    };
    server.deploy("half", test_programs::HTTP_PROBE, half).await;
    server.deploy("small", test_programs::HELLO, config()).await;
    let held = hold(&server, "/fn/half/loop", 2).await;
    assert_eq!(server.metric("kumo_memory_reserved_bytes").await, 256 << 20);
    assert_eq!(server.metric("kumo_memory_budget_bytes").await, 256 << 20);
    // Spent: any function is throttled, whatever its size.
    let response = server.get("/fn/small/hi").send().await.unwrap();
    assert_eq!(response.status(), 429);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("memory budget of 256 MiB"), "{message}");
    for h in held {
        assert_eq!(h.await.unwrap(), 504);
    }
    assert_eq!(server.metric("kumo_memory_reserved_bytes").await, 0);
    assert_eq!(
        server.get("/fn/small/hi").send().await.unwrap().status(),
        200
    );
}

/// The header line that carries the server's admin token.
fn bearer(server: &TestServer) -> String {
    format!("authorization: Bearer {}\r\n", server.admin_token)
}

/// The server's host:port.
fn address(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Writes `request` on a new connection and reads until the server closes it (at most 10 s).
async fn exchange(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_and_closed_while_the_others_go_on() {
    let server = TestServer::start_with(&["--max-connections", "8"]).await;
    let addr = address(&server);
    // Eight idle connections take every place (the test has made no other).
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Give the accept loop time to take them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Past the cap, 8 / 8 + 16 = 17 more are each given a moment to ask; one further is closed
    // unanswered at once.
    let mut waiting = Vec::new();
    for _ in 0..17 {
        waiting.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut beyond = TcpStream::connect(&addr).await.unwrap();
    let _ = beyond
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: kumo\r\n\r\n")
        .await;
    let started = Instant::now();
    assert_eq!(
        read_to_close(&mut beyond).await,
        "",
        "closed without an answer"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = exchange(
        &addr,
        "GET /api/v1/functions HTTP/1.1\r\nhost: kumo\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("\"unavailable\""), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    let health = exchange(&addr, "GET /healthz HTTP/1.1\r\nhost: kumo\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // A connection under the cap is served as usual.
    let mut first = idle.remove(0);
    first
        .write_all(
            format!(
                "GET /api/v1/functions HTTP/1.1\r\nhost: kumo\r\n{}connection: close\r\n\r\n",
                bearer(&server)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let served = read_to_close(&mut first).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(idle);
    // Places come back as connections close; the refusals were counted.
    let mut refusals = 0;
    for _ in 0..50 {
        let metrics = server.get("/metrics").send().await;
        if let Ok(m) = metrics
            && m.status() == 200
        {
            let text = m.text().await.unwrap();
            refusals = text
                .lines()
                .find_map(|l| l.strip_prefix("kumo_connections_refused_total "))
                .unwrap()
                .parse()
                .unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refusals >= 2, "refusals counted: {refusals}");
    let listed = server.get("/api/v1/functions").send().await.unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_by_the_header_read_timeout() {
    let server = TestServer::start_with(&["--header-read-timeout", "1s"]).await;
    let addr = address(&server);
    // One header byte every 100 ms: the connection is closed about a second in, long
    // before the headers could be complete.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nhost: kumo\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for byte in request {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let rest = read_to_close(&mut slow).await;
    assert!(
        cut || !rest.contains("200"),
        "a slow request's headers were still read: {rest}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // A keep-alive connection idle after its response is closed too.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: kumo\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_stalled_request_body_fails_with_408_and_the_server_goes_on() {
    let server = TestServer::start_with(&["--body-idle-timeout", "1s"]).await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let addr = address(&server);
    for request in [
        "POST /fn/probe/echo HTTP/1.1",
        "PUT /api/v1/objects/b/k HTTP/1.1",
    ] {
        let started = Instant::now();
        let request = format!(
            "{request}\r\nhost: kumo\r\n{}content-length: 100\r\n\r\nten bytes.",
            bearer(&server)
        );
        let answer = exchange(&addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Nothing was stored, and the server serves.
    let object = server.get("/api/v1/objects/b/k").send().await.unwrap();
    assert_eq!(error_code(object).await, "object_not_found");
    let echoed = server
        .post("/fn/probe/echo")
        .body("whole")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "whole");
}

#[tokio::test]
async fn every_refusal_has_the_one_error_shape_and_the_right_code() {
    let server = TestServer::start().await;
    let addr = address(&server);
    let cases = [
        // The router's own rejections: a key that is not UTF-8, unknown methods.
        ("GET /api/v1/kv/b/%ff HTTP/1.1", 400, "invalid_request"),
        ("POST /healthz HTTP/1.1", 405, "method_not_allowed"),
        ("DELETE /metrics HTTP/1.1", 405, "method_not_allowed"),
        (
            "PATCH /api/v1/functions HTTP/1.1",
            405,
            "method_not_allowed",
        ),
        ("GET /api/v1/nothing-here HTTP/1.1", 404, "not_found"),
        // Unknown things are named for what they are.
        (
            "GET /api/v1/invocations/0190a4c1-0000-7000-8000-000000000000 HTTP/1.1",
            404,
            "invocation_not_found",
        ),
        (
            "GET /api/v1/invocations/nope/events HTTP/1.1",
            404,
            "invocation_not_found",
        ),
        (
            "GET /api/v1/functions/nope/logs HTTP/1.1",
            404,
            "function_not_found",
        ),
        (
            "GET /api/v1/functions/nope/dlq HTTP/1.1",
            404,
            "function_not_found",
        ),
    ];
    for (line, status, code) in cases {
        let answer = exchange(
            &addr,
            &format!(
                "{line}\r\nhost: kumo\r\n{}connection: close\r\n\r\n",
                bearer(&server)
            ),
        )
        .await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{line}: {head}"
        );
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/json"),
            "{line}: {head}"
        );
        assert!(
            head.contains(&format!("x-kumo-error: {code}")),
            "{line}: {head}"
        );
        let json: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{line}: {e}: {body}"));
        assert_eq!(json["error"]["code"], code, "{line}");
        assert!(!json["error"]["message"].as_str().unwrap().is_empty());
    }

    // A look back past the epoch starts at the epoch; one too long to count is refused.
    let usage: serde_json::Value = server
        .get("/api/v1/usage?since=100000000d")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["since"], 0);
    let too_long = server
        .get("/api/v1/usage?since=999999999999999999d")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(too_long).await, "invalid_request");

    // A deploy naming a part twice is refused, not half taken.
    let code = std::fs::read(test_programs::HELLO).unwrap();
    for twice in ["code", "config"] {
        let mut form = reqwest::multipart::Form::new()
            .part("code", reqwest::multipart::Part::bytes(code.clone()))
            .text("config", "{}");
        form = match twice {
            "code" => form.part("code", reqwest::multipart::Part::bytes(code.clone())),
            _ => form.text("config", "{\"memory_mb\": 64}"),
        };
        let response = server
            .http
            .put(format!("{}/api/v1/functions/twice", server.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "invalid_request");
    }
    assert_eq!(
        server
            .get("/api/v1/functions/twice")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_data_directory_kumo_cannot_write_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Root writes through permissions: a read-only bind mount stops it too.
    let mounted = crate::disk::is_root()
        && std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(&data)
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    if mounted {
        let _ = std::process::Command::new("umount").arg(&data).status();
    }
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not writable") && stderr.contains(data.to_str().unwrap()),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_by_the_write_timeout() {
    let server = TestServer::start_with(&["--write-timeout", "1s"]).await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let addr: std::net::SocketAddr = address(&server).parse().unwrap();
    // A small receive window, and nothing read: the server's writes stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let size = 5_000_000;
    stream
        .write_all(
            format!("GET /fn/probe/big?bytes={size} HTTP/1.1\r\nhost: kumo\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What was in flight arrives, then the end: the server gave up on the response.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stays open");
    assert!(
        received < size,
        "the whole response was sent: {received} bytes"
    );
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
}
