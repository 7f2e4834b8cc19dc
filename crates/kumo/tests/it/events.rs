//! Asynchronous invocations through the real server: submit, status (long-poll, SSE),
//! retries with backoff, dead letters and redrive, idempotency keys, destinations, the share
//! kept for synchronous requests, and the limits.

use crate::harness::{Receiver, TestServer, config, error_code};
use kumo_api::{EventRecord, EventStatus, FunctionConfig};
use std::time::Duration;

/// Retries come fast in tests.
const FAST_RETRIES: &[&str] = &["--retry-base-delay", "20ms"];

async fn server_with(name: &str, config: FunctionConfig) -> TestServer {
    let server = TestServer::start_with(FAST_RETRIES).await;
    server
        .deploy(name, test_programs::EVENT_PROBE, config)
        .await;
    server
}

async fn submit(server: &TestServer, name: &str, payload: &str) -> String {
    let (id, replayed) = server
        .client
        .invoke_async(name, payload.as_bytes().to_vec(), None)
        .await
        .unwrap();
    assert!(!replayed);
    id
}

async fn final_state(server: &TestServer, id: &str) -> EventRecord {
    let event = server.client.event(id, Some("20s")).await.unwrap();
    assert!(
        event.status.is_final(),
        "still {:?} after 20s",
        event.status
    );
    event
}

#[tokio::test]
async fn an_async_invocation_is_accepted_then_runs_with_its_event_id() {
    let server = server_with("worker", config()).await;
    let response = server
        .post("/api/v1/functions/worker/invoke?mode=async")
        .header("content-type", "text/plain")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/invocations/{id}"));

    let event = final_state(&server, &id).await;
    assert_eq!(event.status, EventStatus::Succeeded);
    assert_eq!(event.attempts, 1);
    let result = event.result.expect("a succeeded event keeps its result");
    assert_eq!(result.status, 200);
    let echo: serde_json::Value = serde_json::from_str(&result.body).unwrap();
    assert_eq!(echo["event_id"], id.as_str());
    assert_eq!(echo["attempt"], 1);
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["content_type"], "text/plain");
    // The submitter's trace, with the attempt's own span as the guest's parent.
    let seen = echo["traceparent"].as_str().unwrap();
    assert!(
        seen.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && !seen.contains("b7ad6b71"),
        "{seen}"
    );
    // The attempt is an invocation like any other: recorded, with its logs.
    let request_id = event.request_id.expect("the attempt's request id");
    let record = server.client.invocation(&request_id).await.unwrap();
    assert_eq!(record.function, "worker");

    // The same through the CLI.
    let out = server.cli(&["invoke", "worker", "--async", "-d", "from the cli"]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = server.cli(&["event", &id, "--wait", "20s"]);
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "succeeded");
}

#[tokio::test]
async fn events_through_one_warm_instance_each_see_their_own_id() {
    let reuse = FunctionConfig {
        instances: kumo_core::Instances::Reuse,
        ..config()
    };
    let server = server_with("warm", reuse).await;
    for payload in ["first", "second", "third"] {
        // One after the other, so every event after the first runs in the warm instance.
        let id = submit(&server, "warm", payload).await;
        let event = final_state(&server, &id).await;
        let echo: serde_json::Value = serde_json::from_str(&event.result.unwrap().body).unwrap();
        assert_eq!(echo["event_id"], id.as_str(), "the header names this event");
        // The environment is the instance's: it holds no event's id, least of all an earlier one.
        assert_eq!(echo["env_event_id"], "", "event {payload}: {echo}");
    }
    // They ran in one instance, kept warm between them.
    assert_eq!(server.metric("kumo_warm_instances").await, 1);
}

#[tokio::test]
async fn failed_attempts_are_retried_with_backoff_until_one_succeeds() {
    let server = server_with("flaky", config()).await;
    let id = submit(&server, "flaky", "fail-until:3").await;
    let event = final_state(&server, &id).await;
    assert_eq!(event.status, EventStatus::Succeeded);
    assert_eq!(
        event.attempts, 3,
        "default max_retries is 2: three attempts"
    );
    assert_eq!(event.result.unwrap().body, "succeeded on attempt 3");
}

#[tokio::test]
async fn events_out_of_retries_go_to_the_dead_letters_and_can_be_redriven() {
    let server = server_with(
        "broken",
        FunctionConfig {
            max_retries: 1,
            ..config()
        },
    )
    .await;
    let id = submit(&server, "broken", "fail").await;
    let event = final_state(&server, &id).await;
    assert_eq!(event.status, EventStatus::Dead);
    assert_eq!(event.attempts, 2);
    let error = event.error.unwrap();
    assert_eq!(error.code.as_str(), "error_status");
    assert!(
        error.message.contains("failing on purpose"),
        "{}",
        error.message
    );

    let dead = server.client.dead_letters("broken", 10).await.unwrap();
    assert_eq!(dead.iter().map(|e| &e.id).collect::<Vec<_>>(), [&id]);
    let out = server.cli(&["dlq", "broken"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains(&id) && listed.contains("error_status"),
        "{listed}"
    );

    // Fix the function (a version that answers 200), then redrive.
    server
        .deploy("broken", test_programs::HTTP_PROBE, config())
        .await;
    let out = server.cli(&["dlq", "redrive", "broken"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8(out.stdout).unwrap().contains(&id));
    let event = final_state(&server, &id).await;
    assert_eq!(event.status, EventStatus::Succeeded);
    assert_eq!(event.attempts, 1, "a redrive starts the attempts over");
    assert!(
        server
            .client
            .dead_letters("broken", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_event_older_than_max_event_age_is_not_tried_again() {
    let server = server_with(
        "old",
        FunctionConfig {
            max_retries: 10,
            max_event_age: Duration::from_secs(1),
            ..config()
        },
    )
    .await;
    let id = submit(&server, "old", "fail").await;
    let event = final_state(&server, &id).await;
    assert_eq!(event.status, EventStatus::Dead);
    assert_eq!(event.error.unwrap().code.as_str(), "event_too_old");
    assert!(event.attempts < 11, "stopped by age, not by retries");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_id() {
    let server = server_with("once", config()).await;
    let submit_with_key = |key: &'static str| {
        let client = server.client.clone();
        async move {
            client
                .invoke_async("once", b"x".to_vec(), Some(key))
                .await
                .unwrap()
        }
    };
    let (first, replayed) = submit_with_key("order-17").await;
    assert!(!replayed);
    let (again, replayed) = submit_with_key("order-17").await;
    assert!(replayed);
    assert_eq!(again, first);
    let (other, _) = submit_with_key("order-18").await;
    assert_ne!(other, first);
    final_state(&server, &first).await;
    final_state(&server, &other).await;
    let records = server.client.invocations(Some("once"), 10).await.unwrap();
    assert_eq!(records.len(), 2, "the replayed submit ran nothing");
}

#[tokio::test]
async fn a_long_poll_answers_when_the_event_is_final() {
    let server = server_with("slow", config()).await;
    let id = submit(&server, "slow", "sleep:700").await;
    let now = server.client.event(&id, None).await.unwrap();
    assert!(!now.status.is_final(), "without wait: answered at once");
    let waited = server.client.event(&id, Some("20s")).await.unwrap();
    assert_eq!(waited.status, EventStatus::Succeeded);
    assert_eq!(waited.result.unwrap().body, "slept 700 ms");
    // A bad wait is a clear error.
    let response = server
        .get(&format!("/api/v1/invocations/{id}?wait=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn status_changes_stream_as_server_sent_events() {
    let server = server_with("flaky", config()).await;
    let id = submit(&server, "flaky", "fail-until:2").await;
    let response = server
        .get(&format!("/api/v1/invocations/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The stream ends by itself once the event is final.
    let text = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream ends")
        .unwrap();
    let statuses: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| {
            let e: serde_json::Value = serde_json::from_str(d.trim()).unwrap();
            e["status"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(text.contains("event: status"), "{text}");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("succeeded"),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s == "failed"),
        "the failed first attempt shows: {statuses:?}"
    );
    let unknown = server
        .get("/api/v1/invocations/nope/events")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_reach_their_destinations() {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(FAST_RETRIES).await;
    server
        .deploy("sink", test_programs::EVENT_PROBE, config())
        .await;
    server
        .deploy(
            "worker",
            test_programs::EVENT_PROBE,
            FunctionConfig {
                max_retries: 0,
                on_success: Some("sink".parse().unwrap()),
                on_failure: Some(format!("{}/failures", receiver.url).parse().unwrap()),
                ..config()
            },
        )
        .await;
    // A failure goes to the URL, as a CloudEvent.
    let failed = submit(&server, "worker", "fail").await;
    final_state(&server, &failed).await;
    let outcomes = receiver.json_when(1, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert_eq!(outcome["specversion"], "1.0");
    assert_eq!(outcome["type"], "dev.kumo.invocation.failed");
    assert_eq!(outcome["subject"], failed.as_str());
    assert_eq!(outcome["data"]["event_id"], failed.as_str());
    assert_eq!(outcome["data"]["condition"], "error_status");
    assert_eq!(outcome["data"]["request_payload"], "fail");

    // A success goes to the function `sink`, as an asynchronous invocation of it.
    let succeeded = submit(&server, "worker", "work").await;
    final_state(&server, &succeeded).await;
    let mut sink_runs = Vec::new();
    for _ in 0..200 {
        sink_runs = server.client.invocations(Some("sink"), 10).await.unwrap();
        if !sink_runs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink_runs.len(), 1, "sink ran once");
    let logs = server
        .client
        .logs("sink", Some(&sink_runs[0].request_id), 10)
        .await
        .unwrap();
    assert!(
        logs.iter().any(|l| l.line.starts_with("event ")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn async_work_leaves_a_share_of_the_concurrency_to_sync_requests() {
    // max_concurrency 5, 20% kept for sync: at most 4 async attempts at once.
    let server = server_with(
        "busy",
        FunctionConfig {
            max_concurrency: Some(5),
            ..config()
        },
    )
    .await;
    let ids =
        futures::future::join_all((0..8).map(|_| submit(&server, "busy", "sleep:1500"))).await;
    assert_eq!(
        server
            .metric_eventually("kumo_invocations_in_flight", 4)
            .await,
        4
    );
    for _ in 0..5 {
        let response = server
            .post("/api/v1/functions/busy/invoke")
            .body("sync")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "sync is never starved by async");
        assert!(server.metric("kumo_invocations_in_flight").await <= 5);
    }
    for id in ids {
        assert_eq!(
            final_state(&server, &id).await.status,
            EventStatus::Succeeded
        );
    }
}

#[tokio::test]
async fn async_submits_are_checked() {
    let server = TestServer::start_with(&["--max-async-payload-bytes", "1000"]).await;
    server
        .deploy("f", test_programs::EVENT_PROBE, config())
        .await;
    let post = |path: &str, body: Vec<u8>| server.post(path).body(body).send();
    let too_big = post("/api/v1/functions/f/invoke?mode=async", vec![b'x'; 1001])
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    assert_eq!(error_code(too_big).await, "payload_too_large");
    let unknown = post("/api/v1/functions/nope/invoke?mode=async", vec![])
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown).await, "function_not_found");
    let bad_mode = post("/api/v1/functions/f/invoke?mode=later", vec![])
        .await
        .unwrap();
    assert_eq!(bad_mode.status(), 400);
    let bad_key = server
        .post("/api/v1/functions/f/invoke?mode=async")
        .header("idempotency-key", "k".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 400);
    let unknown_event = server.get("/api/v1/invocations/nope").send().await.unwrap();
    assert_eq!(unknown_event.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_event_follows_the_retry_policy_of_the_version_that_ran() {
    let server = TestServer::start_with(FAST_RETRIES).await;
    // Version 1 never retries; version 2 retries three times. A 50/50 alias between them.
    for max_retries in [0, 3] {
        let settings = FunctionConfig {
            max_retries,
            ..config()
        };
        server
            .deploy("split", test_programs::EVENT_PROBE, settings)
            .await;
        server.client.publish_version("split", "").await.unwrap();
    }
    let canary = kumo_api::Canary {
        version: 2,
        weight: 50,
    };
    server
        .client
        .set_alias("split", "live", 1, Some(canary))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(submit(&server, "split:live", "fail").await);
    }
    for id in ids {
        let event = final_state(&server, &id).await;
        assert_eq!(event.status, EventStatus::Dead);
        let error = event.error.clone().expect("a dead event says why");
        if error.code.as_str() == "retries_exhausted" {
            // The attempt picked version 1 after version 2 had run: out of attempts by
            // version 1's rule, not run.
            assert!(event.attempts >= 2, "{event:?}");
            continue;
        }
        // The last attempt ran and failed; the rule of the version that ran ended the event:
        // version 1 gives up at once, version 2 only after its fourth attempt.
        assert_eq!(error.code.as_str(), "error_status", "{event:?}");
        let last = event
            .request_id
            .clone()
            .expect("the last attempt's request id");
        let record = server.client.invocation(&last).await.unwrap();
        match record.version.to_string().as_str() {
            "1" => {}
            "2" => assert_eq!(event.attempts, 4, "version 2 ran last: {event:?}"),
            other => panic!("version {other} ran"),
        }
    }
}
