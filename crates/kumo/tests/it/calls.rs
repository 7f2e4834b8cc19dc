//! Guests calling out through the real server: function-to-function calls
//! (`http://NAME.fn.internal/`, in-process, trace context carried, depth limit against loops)
//! and the circuit breaker of outbound destinations (opens, fails fast, probes, closes).

use crate::harness::{Receiver, TestServer, config};
use kumo_api::FunctionConfig;
use std::time::Duration;

async fn call(server: &TestServer, function: &str, url: &str) -> (u16, String, String) {
    let response = server
        .post(&format!("/fn/{function}"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(url.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let error = response
        .headers()
        .get("x-callee-error")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, error, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_call_functions_in_process_up_to_a_depth_limit() {
    let server = TestServer::start().await;
    server
        .deploy("caller", test_programs::CALL_PROBE, config())
        .await;
    server
        .deploy("echo", test_programs::EVENT_PROBE, config())
        .await;

    // No allow_outbound needed; the callee sees the path, the body and the caller's trace.
    let (status, _, body) = call(&server, "caller", "http://echo.fn.internal/some/path").await;
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["body"], "http://echo.fn.internal/some/path");
    // Same trace; the parent span is the caller's invocation (not the outside client's).
    let seen = echo["traceparent"].as_str().unwrap();
    assert!(
        seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !seen.contains("00f067aa"),
        "{seen}"
    );
    let records = server.client.invocations(Some("echo"), 10).await.unwrap();
    assert_eq!(records[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(records.len(), 1, "the callee's invocation is recorded");

    // A call to a function that does not exist answers like the data plane would.
    let (status, error, _) = call(&server, "caller", "http://nope.fn.internal/").await;
    assert_eq!((status, error.as_str()), (404, "function_not_found"));

    // A function calling itself: 9 invocations (depths 0 to 8), then the 9th call is refused
    // and the refusal travels back out through every level.
    server
        .deploy("loop", test_programs::CALL_PROBE, config())
        .await;
    let (status, error, body) = call(&server, "loop", "http://loop.fn.internal/").await;
    assert_eq!(status, 508, "{body}");
    assert_eq!(error, "call_depth_exceeded");
    assert!(body.contains("call loop"), "{body}");
    let records = server.client.invocations(Some("loop"), 100).await.unwrap();
    assert_eq!(records.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_fails_fast_and_closes_after_a_probe() {
    let server = TestServer::start_with(&[
        "--outbound-breaker-failures",
        "3",
        "--outbound-breaker-cooldown",
        "400ms",
    ])
    .await;
    // A port nothing listens on (for now): connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    server
        .deploy(
            "caller",
            test_programs::CALL_PROBE,
            FunctionConfig {
                allow_outbound: vec![addr.clone()],
                ..config()
            },
        )
        .await;
    let url = format!("http://{addr}/");
    let circuit = |state: &str, value: u8| {
        format!("kumo_outbound_circuit_open{{destination=\"{addr}\",state=\"{state}\"}} {value}")
    };

    for _ in 0..3 {
        let (status, _, body) = call(&server, "caller", &url).await;
        assert_eq!(status, 502);
        // Refused, as a rule; while other tests run, the freed port can be some other
        // socket's for a moment, and the connection is reset instead. Both count.
        assert!(
            body.contains("ConnectionRefused") || body.contains("connection reset"),
            "{body}"
        );
    }
    // Open: the next request fails fast without trying to connect.
    let (status, _, body) = call(&server, "caller", &url).await;
    assert_eq!(status, 502);
    assert!(body.contains("DestinationUnavailable"), "{body}");
    assert!(
        server
            .get_text("/metrics")
            .await
            .contains(&circuit("open", 1))
    );

    // The destination comes back; after the cool-down one probe goes through and closes it.
    let receiver = Receiver::start_on(&addr).await;
    let (status, _, body) = call(&server, "caller", &url).await;
    assert!(
        body.contains("DestinationUnavailable"),
        "still open: {body}"
    );
    assert_eq!(status, 502);
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..2 {
        let (status, _, body) = call(&server, "caller", &url).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(receiver.bodies().len(), 2);
    assert!(
        server
            .get_text("/metrics")
            .await
            .contains(&circuit("closed", 0))
    );
}
