//! Trace context through the real server: a `traceparent` is continued (or a trace started)
//! by every invocation, passed to guests (header or `TRACEPARENT`), carried through function
//! calls and every attempt of an event, written on records and log lines, and exported as
//! spans over OTLP/HTTP to a receiver standing in for a collector.

use crate::harness::{Receiver, TestServer, config};
use kumo_api::FunctionConfig;
use std::collections::HashMap;

/// Every span the receiver got, by name (a name seen twice keeps both).
fn spans(receiver: &Receiver) -> Vec<serde_json::Value> {
    let mut spans = Vec::new();
    for body in receiver.bodies() {
        let export: serde_json::Value = serde_json::from_slice(&body).expect("OTLP JSON");
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    spans
}

fn attributes(span: &serde_json::Value) -> HashMap<String, serde_json::Value> {
    span["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_follow_calls_and_events_and_are_exported() {
    let collector = Receiver::start().await;
    let server = TestServer::start_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    server
        .deploy("caller", test_programs::CALL_PROBE, config())
        .await;
    server
        .deploy("echo", test_programs::EVENT_PROBE, config())
        .await;
    let retried = FunctionConfig {
        max_retries: 2,
        ..config()
    };
    server
        .deploy("events", test_programs::EVENT_PROBE, retried)
        .await;
    server
        .deploy("cmd", test_programs::COMMAND_PROBE, config())
        .await;

    // A call chain under the client's trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let called = server
        .post("/fn/caller")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body("http://echo.fn.internal/")
        .send()
        .await
        .unwrap();
    assert_eq!(called.status(), 200);

    // An event without a trace starts one; both attempts continue it.
    let (id, _) = server
        .client
        .invoke_async("events", b"fail-until:2".to_vec(), None)
        .await
        .unwrap();
    let event = server.client.event(&id, Some("15s")).await.unwrap();
    assert_eq!(event.attempts, 2, "{event:?}");
    let attempts = server.client.invocations(Some("events"), 10).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].trace_id, attempts[1].trace_id);
    assert_eq!(attempts[0].trace_id.len(), 32);

    // A command gets TRACEPARENT; its log lines carry the trace id.
    let printed = server
        .client
        .invoke("cmd", b"env:TRACEPARENT".to_vec())
        .await
        .unwrap();
    let printed = String::from_utf8(printed.body.to_vec()).unwrap();
    let record = &server.client.invocations(Some("cmd"), 1).await.unwrap()[0];
    assert!(
        printed.starts_with(&format!("00-{}-", record.trace_id)),
        "{printed}"
    );
    let logs = server.client.logs("cmd", None, 10).await.unwrap();
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|l| l.trace_id == record.trace_id));

    // Stopping flushes the spans still buffered.
    server.stop();
    let spans = spans(&collector);
    let named = |name: &str| -> Vec<&serde_json::Value> {
        spans.iter().filter(|s| s["name"] == name).collect()
    };
    let (caller, echo) = (named("invoke caller"), named("invoke echo"));
    assert_eq!((caller.len(), echo.len()), (1, 1), "{spans:?}");
    assert_eq!(caller[0]["traceId"], trace);
    assert_eq!(caller[0]["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(echo[0]["traceId"], trace);
    assert_eq!(
        echo[0]["parentSpanId"], caller[0]["spanId"],
        "echo is caller's child"
    );
    let echo_attributes = attributes(echo[0]);
    assert_eq!(echo_attributes["faas.name"]["stringValue"], "echo");
    assert_eq!(echo_attributes["faas.trigger"]["stringValue"], "call");
    assert_eq!(echo_attributes["faas.coldstart"]["boolValue"], true);
    let attempts_spans = named("invoke events");
    assert_eq!(attempts_spans.len(), 2);
    for span in attempts_spans {
        assert_eq!(span["traceId"], attempts[0].trace_id.as_str());
    }
}

/// The `traceparent` the guest behind `path` (an event probe, or a caller of one) was shown
/// ("" for none), after a request carrying `traceparent` if given.
async fn traceparent_seen(server: &TestServer, path: &str, traceparent: Option<&str>) -> String {
    let mut request = server.post(path).body("http://echo.fn.internal/");
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    echo["traceparent"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_kumo_starts_is_carried_by_the_host_and_shown_to_guests_only_when_continued() {
    // No exporter: a trace kumo starts goes no further than its records and logs.
    let server = TestServer::start().await;
    for (name, code) in [
        ("caller", test_programs::CALL_PROBE),
        ("echo", test_programs::EVENT_PROBE),
        ("cmd", test_programs::COMMAND_PROBE),
    ] {
        server.deploy(name, code, config()).await;
    }

    // A plain request: the guest is not shown the trace kumo started...
    assert_eq!(traceparent_seen(&server, "/fn/echo", None).await, "");
    let printed = server
        .client
        .invoke("cmd", b"env:TRACEPARENT".to_vec())
        .await
        .unwrap();
    assert_eq!(printed.body.as_ref(), b"<unset>");

    // ...but the host carries it into the guest's calls: the callee continues it.
    let seen = traceparent_seen(&server, "/fn/caller", None).await;
    let caller = &server.client.invocations(Some("caller"), 1).await.unwrap()[0];
    let callee = &server.client.invocations(Some("echo"), 1).await.unwrap()[0];
    assert_eq!(callee.trace_id, caller.trace_id);
    assert!(
        seen.starts_with(&format!("00-{}-", caller.trace_id)),
        "{seen}"
    );

    // A request that carries a trace: the guest is shown its own span in that trace.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let given = format!("00-{trace}-b7ad6b7169203331-01");
    let seen = traceparent_seen(&server, "/fn/echo", Some(&given)).await;
    assert!(
        seen.starts_with(&format!("00-{trace}-")) && !seen.contains("b7ad6b7169203331"),
        "{seen}"
    );
    // An invalid one starts a new trace, and the guest is not shown the invalid value.
    let invalid = traceparent_seen(&server, "/fn/echo", Some("00-not-a-trace-01")).await;
    assert_eq!(invalid, "");
}
