//! Triggers through the real server: schedules (each tick one asynchronous invocation, across
//! restarts neither skipped nor doubled), topics (fan-out to every subscriber), the list of
//! triggers, and guests' outbound HTTP grants.

use crate::harness::{Receiver, TestServer, config};
use kumo_api::FunctionConfig;
use std::collections::HashSet;
use std::time::Duration;

/// The CloudEvent a function received, from the outcome its destination got.
pub(crate) fn received_event(outcome: &serde_json::Value) -> serde_json::Value {
    let body = outcome["data"]["result"]["body"]
        .as_str()
        .expect("a result body");
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["content_type"], "application/cloudevents+json");
    serde_json::from_str(echo["body"].as_str().unwrap()).unwrap()
}

fn reporting_to(receiver: &Receiver) -> FunctionConfig {
    FunctionConfig {
        on_success: Some(receiver.url.parse().unwrap()),
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_tick_once_and_catches_up_once_after_a_restart() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    server
        .deploy(
            "tick",
            test_programs::EVENT_PROBE,
            FunctionConfig {
                schedule: Some("rate(1 second)".parse().unwrap()),
                ..reporting_to(&receiver)
            },
        )
        .await;
    let outcomes = receiver.json_when(2, Duration::from_secs(10)).await;
    assert!(outcomes.len() >= 2, "two ticks within 10 s");
    let tick = received_event(&outcomes[0]);
    assert_eq!(tick["specversion"], "1.0");
    assert_eq!(tick["type"], "dev.kumo.schedule.tick");
    assert_eq!(tick["source"], "kumo/schedules/tick");
    assert_eq!(tick["data"]["schedule"], "rate(1 second)");

    let out = server.cli(&["triggers"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains("tick") && listed.contains("rate(1 second)"),
        "{listed}"
    );

    // Down for a few ticks: on start, one catch-up tick that counts the ones missed.
    server.stop();
    let before = receiver.bodies().len();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let server = TestServer::start_in(dir.path(), &[]);
    let outcomes = receiver
        .json_when(before + 1, Duration::from_secs(10))
        .await;
    let catch_up = received_event(&outcomes[before]);
    assert!(
        catch_up["data"]["missed_ticks"].as_u64().unwrap() >= 2,
        "{catch_up}"
    );
    // Wait for a couple more ticks, then check no tick ran twice.
    let all = receiver
        .json_when(before + 3, Duration::from_secs(10))
        .await;
    let times: Vec<String> = all
        .iter()
        .map(|o| {
            received_event(o)["data"]["scheduled_time"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let distinct: HashSet<&String> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "a tick fired twice: {times:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_message_fans_out_to_every_subscriber() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    for name in ["billing", "shipping"] {
        let config = FunctionConfig {
            topics: vec!["orders".into()],
            ..reporting_to(&receiver)
        };
        server
            .deploy(name, test_programs::EVENT_PROBE, config)
            .await;
    }
    server
        .deploy("other", test_programs::EVENT_PROBE, reporting_to(&receiver))
        .await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = server
        .post("/api/v1/topics/orders")
        .header("traceparent", traceparent)
        .body(r#"{"order":17}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let published: serde_json::Value = response.json().await.unwrap();
    let mut subscribers: Vec<&str> = published["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["function"].as_str().unwrap())
        .collect();
    subscribers.sort();
    assert_eq!(subscribers, ["billing", "shipping"]);

    let outcomes = receiver.json_when(2, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 2);
    let mut functions = Vec::new();
    for outcome in &outcomes {
        functions.push(outcome["data"]["function"].as_str().unwrap().to_string());
        let message = received_event(outcome);
        assert_eq!(message["id"], published["id"], "one message id for all");
        assert_eq!(message["type"], "dev.kumo.topic.message");
        assert_eq!(message["data"]["order"], 17);
        assert_eq!(message["traceparent"], traceparent);
    }
    functions.sort();
    assert_eq!(functions, ["billing", "shipping"]);

    // A topic nobody listens to takes the message and delivers it to no one.
    let response = server
        .post("/api/v1/topics/empty")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let bad = server
        .post("/api/v1/topics/Bad%20Topic")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let out = server.cli(&["triggers"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains("billing") && listed.contains("orders"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_reaches_granted_hosts_only() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let report = format!("report:{}/", receiver.url);
    server
        .deploy("denied", test_programs::EVENT_PROBE, config())
        .await;
    server
        .deploy(
            "granted",
            test_programs::EVENT_PROBE,
            FunctionConfig {
                allow_outbound: vec![receiver.host_port().to_string()],
                ..config()
            },
        )
        .await;
    let denied = server
        .client
        .invoke("denied", report.clone().into_bytes())
        .await
        .unwrap();
    assert_eq!(denied.status, 502);
    let why = String::from_utf8_lossy(&denied.body);
    assert!(
        why.contains("report failed") && why.contains("HttpRequestDenied"),
        "{why}"
    );
    assert!(receiver.bodies().is_empty());
    let granted = server
        .client
        .invoke("granted", report.into_bytes())
        .await
        .unwrap();
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(receiver.bodies().len(), 1);
}
