//! Workflows through the real server: ASL state machines whose tasks are real functions
//! (the step-probe guest), run durably, driven over the API and the CLI.

use crate::harness::{TestServer, config, error_code};
use kumo_api::FunctionConfig;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The step-probe as function `name`, with the `steps` bucket for its counts.
async fn deploy_step(server: &TestServer, name: &str) {
    let config = FunctionConfig {
        kv: vec!["steps".into()],
        env: BTreeMap::from([("STEP".into(), name.into())]),
        ..config()
    };
    server.deploy(name, test_programs::STEP_PROBE, config).await;
}

async fn deploy_workflow(server: &TestServer, name: &str, definition: Value) {
    server
        .client
        .put_workflow(name, definition.to_string().into_bytes())
        .await
        .unwrap_or_else(|e| panic!("deploying workflow {name}: {e}"));
}

/// How often the step-probe counted `key`.
async fn runs(server: &TestServer, key: &str) -> u64 {
    match server.client.kv_get("steps", key).await {
        Ok(v) => String::from_utf8_lossy(&v.value).parse().unwrap(),
        Err(_) => 0,
    }
}

async fn start_and_wait(server: &TestServer, workflow: &str, input: Value) -> Value {
    server
        .client
        .start_execution(workflow, input, None, Some(60))
        .await
        .unwrap()
}

async fn history(server: &TestServer, id: &str) -> Vec<Value> {
    server.client.execution_history(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_tasks_with_retries_maps_parallels_catches_and_choices() {
    let server = TestServer::start().await;
    deploy_step(&server, "step").await;
    let definition = json!({"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": "kumo:function:step",
            "Parameters": {"order.$": "$.order", "count": "reserve", "fail_until": 1},
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "ResultSelector": {"by.$": "$.step", "runs.$": "$.runs"},
            "ResultPath": "$.reserved", "Next": "Each"},
        "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
            "ItemSelector": {"item.$": "$$.Map.Item.Value", "count": "item"},
            "ItemProcessor": {"StartAt": "One", "States": {"One": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "arn:aws:lambda:eu-west-1:123456789012:function:step", "Payload.$": "$"},
                "OutputPath": "$.Payload.item", "End": true}}},
            "ResultPath": "$.done", "Next": "Both"},
        "Both": {"Type": "Parallel", "Next": "Decide", "ResultPath": "$.both",
            "Catch": [{"ErrorEquals": ["Broken"], "ResultPath": "$.caught", "Next": "Decide"}],
            "Branches": [
                {"StartAt": "Fine", "States": {"Fine": {"Type": "Pass", "Result": "fine", "End": true}}},
                {"StartAt": "Bad", "States": {"Bad": {"Type": "Task", "Resource": "kumo:function:step",
                    "Parameters": {"fail": "Broken", "cause": "on purpose"}, "End": true}}}
            ]},
        "Decide": {"Type": "Choice", "Default": "Oops",
            "Choices": [{"Variable": "$.caught.Error", "StringEquals": "Broken", "Next": "Done"}]},
        "Oops": {"Type": "Fail", "Error": "Unexpected"},
        "Done": {"Type": "Pass", "Parameters": {"order.$": "$.order", "reserved.$": "$.reserved",
            "done.$": "$.done", "cause.$": "$.caught.Cause", "id.$": "$$.Execution.Id"}, "End": true}
    }});
    deploy_workflow(&server, "checkout", definition).await;

    let execution =
        start_and_wait(&server, "checkout", json!({"order": 7, "items": [1, 2, 3]})).await;
    assert_eq!(execution["status"], "succeeded", "{execution}");
    let id = execution["id"].as_str().unwrap();
    assert_eq!(
        execution["output"],
        json!({"order": 7, "reserved": {"by": "step", "runs": 2}, "done": [1, 2, 3],
               "cause": "on purpose", "id": id})
    );
    assert_eq!(runs(&server, "reserve").await, 2, "one failure, one retry");
    assert_eq!(runs(&server, "item").await, 3);

    // The history tells what happened; the description, each state's status.
    let kinds: Vec<String> = history(&server, id)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "ExecutionStarted",
        "RetryScheduled",
        "BranchesStarted",
        "ErrorCaught",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let described = server.client.execution(id).await.unwrap();
    assert_eq!(described["states"]["Both"], "caught");
    assert_eq!(described["states"]["Done"], "succeeded");
    assert!(described["states"].get("Oops").is_none(), "never entered");
    assert!(described["transitions"].as_i64().unwrap() >= 10);

    // Each task was an ordinary invocation, recorded with trigger `workflow`.
    // Reserve twice, three items, the failing branch; records are written in batches.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = server.client.invocations(Some("step"), 100).await.unwrap();
        if records.len() >= 6 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r.trigger.as_str() == "workflow"));

    // Transitions are metered, and priced per thousand.
    let usage = server
        .client
        .usage("1h", kumo_core::UsageBy::Function)
        .await
        .unwrap();
    assert_eq!(usage.workflows.executions, 1);
    assert_eq!(
        usage.workflows.transitions as i64,
        described["transitions"].as_i64().unwrap()
    );
    let price = usage.prices.per_thousand_transitions;
    assert!(
        (usage.workflows.cost - usage.workflows.transitions as f64 / 1e3 * price).abs() < 1e-12
    );

    // The graph, for a UI.
    let workflow = server.client.workflow("checkout").await.unwrap();
    let states = workflow["graph"]["states"].as_array().unwrap();
    assert_eq!(states.len(), 9, "every state, nested ones too");
    assert!(
        workflow["graph"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "Catch.Next")
    );

    // Listing, by status; the same name twice is one execution.
    let listed = server
        .client
        .executions("checkout", Some("succeeded"), 10)
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let first = server
        .client
        .start_execution(
            "checkout",
            json!({"order": 8, "items": []}),
            Some("order-8"),
            None,
        )
        .await
        .unwrap();
    let again = server
        .client
        .start_execution(
            "checkout",
            json!({"order": 8, "items": []}),
            Some("order-8"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(first["id"], again["id"]);
    let clash = server
        .post("/api/v1/workflows/checkout/executions")
        .json(&json!({"name": "order-8", "input": {"order": 9}}))
        .send()
        .await
        .unwrap();
    assert_eq!(clash.status(), 409);

    // The CLI: the id alone on the last line, or with --wait the output.
    let out = server.cli(&[
        "workflow",
        "start",
        "checkout",
        "--input",
        r#"{"order": 1, "items": [5]}"#,
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let output: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(output["done"], json!([5]));
    let out = server.cli(&[
        "workflow",
        "start",
        "checkout",
        "--input",
        r#"{"order": 2, "items": []}"#,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.lines().last().unwrap();
    assert_eq!(id.len(), 36, "{stdout}");
    let out = server.cli(&["workflow", "history", id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ExecutionStarted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_and_unknown_names_get_clear_errors() {
    let server = TestServer::start().await;
    let bad = json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "kumo:function:x", "Next": "Missing"},
        "Lost": {"Type": "Task", "Resource": "arn:aws:sqs:nowhere", "End": true}
    }});
    let response = server
        .http
        .put(format!("{}/api/v1/workflows/bad", server.url))
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    for part in [
        "state \"A\", Next",
        "\"Missing\"",
        "state \"Lost\", Resource",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    let not_json = server
        .http
        .put(format!("{}/api/v1/workflows/bad", server.url))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(not_json).await, "invalid_request");
    for path in [
        "/api/v1/workflows/none",
        "/api/v1/executions/nope",
        "/api/v1/executions/nope/history",
    ] {
        let response = server.get(path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let start = server
        .post("/api/v1/workflows/none/executions")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 404);
    // Bad names and filters of executions are refused, naming the problem.
    deploy_workflow(
        &server,
        "named",
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}),
    )
    .await;
    for name in ["x".repeat(81), "two words".to_string()] {
        let response = server
            .post("/api/v1/workflows/named/executions")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_request", "{name}");
    }
    let not_json = server
        .post("/api/v1/workflows/named/executions")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(not_json).await, "invalid_request");
    let filter = server
        .get("/api/v1/workflows/named/executions?status=sleeping")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(filter).await, "invalid_request");
    let token = server
        .post("/api/v1/tasks/success")
        .json(&json!({"taskToken": "forged", "output": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 404);

    // Another namespace sees none of this one's executions.
    deploy_workflow(
        &server,
        "quick",
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}),
    )
    .await;
    let done = start_and_wait(&server, "quick", json!({"a": 1})).await;
    assert_eq!(done["output"], json!({"a": 1}));
    let id = done["id"].as_str().unwrap();
    server
        .client
        .put_namespace("other", &Default::default())
        .await
        .unwrap();
    let response = server
        .get(&format!("/api/v1/namespaces/other/executions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = server
        .get("/api/v1/namespaces/other/workflows")
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_timeouts_stops_and_redrives() {
    let server = TestServer::start().await;
    deploy_step(&server, "step").await;
    let approval = json!({"StartAt": "Ask", "TimeoutSeconds": 60, "States": {
        "Ask": {"Type": "Task", "Resource": "kumo:function:step.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"}, "HeartbeatSeconds": 30, "End": true}
    }});
    deploy_workflow(&server, "approval", approval).await;

    // The token reaches the task; SendTaskSuccess (through the CLI) ends it.
    let started = server
        .client
        .start_execution("approval", json!({}), None, None)
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let token = wait_for_token(&server, &id).await;
    let wrong = server.cli(&["workflow", "send-task-success", "not-a-token"]);
    assert!(!wrong.status.success());
    let out = server.cli(&["workflow", "send-task-heartbeat", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&[
        "workflow",
        "send-task-success",
        &token,
        "--output",
        r#"{"approved": true}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = wait_for_status(&server, &id, "succeeded").await;
    assert_eq!(ended["output"], json!({"approved": true}));
    let again = server
        .post("/api/v1/tasks/success")
        .json(&json!({"taskToken": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a token answers once");

    // A failure passes its error; no heartbeat in time is States.HeartbeatTimeout.
    let started = server
        .client
        .start_execution("approval", json!({}), None, None)
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let token = wait_for_token(&server, &id).await;
    server
        .client
        .answer_task(
            "failure",
            &json!({"taskToken": token, "error": "Rejected", "cause": "no"}),
        )
        .await
        .unwrap();
    let ended = wait_for_status(&server, &id, "failed").await;
    assert_eq!(
        (ended["error"].as_str(), ended["cause"].as_str()),
        (Some("Rejected"), Some("no"))
    );
    deploy_workflow(&server, "impatient", json!({"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "kumo:function:step.waitForTaskToken", "HeartbeatSeconds": 1, "End": true}}})).await;
    let ended = start_and_wait(&server, "impatient", json!({})).await;
    assert_eq!(ended["error"], "States.HeartbeatTimeout", "{ended}");

    // A task's TimeoutSeconds, caught; the execution's own TimeoutSeconds.
    deploy_workflow(&server, "slow", json!({"StartAt": "Slow", "States": {
        "Slow": {"Type": "Task", "Resource": "kumo:function:step", "TimeoutSeconds": 1,
            "Parameters": {"sleep_ms": 5000},
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "Late"}], "End": true},
        "Late": {"Type": "Pass", "End": true}}})).await;
    let ended = start_and_wait(&server, "slow", json!({})).await;
    assert_eq!(
        ended["output"]["timeout"]["Error"], "States.Timeout",
        "{ended}"
    );
    deploy_workflow(
        &server,
        "bounded",
        json!({"StartAt": "Nap", "TimeoutSeconds": 1, "States": {
        "Nap": {"Type": "Wait", "Seconds": 30, "End": true}}}),
    )
    .await;
    let ended = start_and_wait(&server, "bounded", json!({})).await;
    assert_eq!(ended["status"], "timed_out", "{ended}");

    // A stop ends a waiting execution as aborted.
    deploy_workflow(
        &server,
        "sleepy",
        json!({"StartAt": "Nap", "States": {
        "Nap": {"Type": "Wait", "Seconds": 60, "End": true}}}),
    )
    .await;
    let started = server
        .client
        .start_execution("sleepy", json!({}), None, None)
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let out = server.cli(&["workflow", "stop", &id, "--cause", "changed my mind"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = wait_for_status(&server, &id, "aborted").await;
    assert_eq!(ended["cause"], "changed my mind");

    // A redrive runs the failed state again, not the completed ones.
    deploy_workflow(&server, "flaky", json!({"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "first"}, "ResultPath": null, "Next": "Then"},
        "Then": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "then", "fail_until": 1}, "End": true}}})).await;
    let failed = start_and_wait(&server, "flaky", json!({})).await;
    assert_eq!(failed["error"], "Flaky");
    let id = failed["id"].as_str().unwrap().to_string();
    let out = server.cli(&["workflow", "redrive", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = wait_for_status(&server, &id, "succeeded").await;
    assert_eq!(ended["redrives"], 1);
    assert_eq!(
        (runs(&server, "first").await, runs(&server, "then").await),
        (1, 2)
    );
    let twice = server
        .post(&format!("/api/v1/executions/{id}/redrive"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 409);
}

/// The task token a callback task got, from its execution's history.
async fn wait_for_token(server: &TestServer, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = history(server, id).await.into_iter().find_map(|e| {
            (e["kind"] == "TaskScheduled")
                .then(|| e["detail"]["input"]["token"].as_str().map(str::to_string))
                .flatten()
        });
        if let Some(token) = found {
            return token;
        }
        assert!(Instant::now() < deadline, "no task was scheduled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_status(server: &TestServer, id: &str, status: &str) -> Value {
    wait_for_status_within(server, id, status, Duration::from_secs(30)).await
}

/// SIGKILL while a task runs: after a restart the execution resumes where it was. The task
/// that was running runs again (its Retry takes `States.TaskFailed`); the completed one
/// never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_executions_without_rerunning_completed_steps() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    deploy_step(&server, "step").await;
    deploy_workflow(&server, "durable", json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "a"}, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "b", "sleep_ms": 4000},
            "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "ResultPath": "$.b", "Next": "C"},
        "C": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "c"}, "ResultPath": "$.c", "End": true}
    }})).await;
    let started = server
        .client
        .start_execution("durable", json!({"n": 1}), None, None)
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs(&server, "b").await < 1 {
        assert!(Instant::now() < deadline, "B never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();

    let server = TestServer::start_in(dir.path(), &[]);
    let ended = wait_for_status(&server, &id, "succeeded").await;
    assert_eq!(ended["output"]["c"]["runs"], 1);
    assert_eq!(
        runs(&server, "a").await,
        1,
        "a completed step never runs again"
    );
    assert_eq!(
        runs(&server, "b").await,
        2,
        "the interrupted step ran again, once"
    );
    assert_eq!(runs(&server, "c").await, 1);
    let kinds: Vec<Value> = history(&server, &id)
        .await
        .into_iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert!(kinds.contains(&json!("RetryScheduled")));
}

/// The saga of examples/trip: a full booking, and a failed one whose compensations cancel
/// what was booked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_saga_compensates_what_a_failure_left_booked() {
    let server = TestServer::start().await;
    let config = FunctionConfig {
        kv: vec!["trips".into()],
        ..config()
    };
    server.deploy("trip", test_programs::TRIP, config).await;
    let asl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/trip/trip.asl.json"
    );
    let out = server.cli(&["workflow", "deploy", "trip", asl]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let booked = start_and_wait(&server, "trip", json!({"trip": "t1"})).await;
    assert_eq!(booked["status"], "succeeded", "{booked}");
    assert_eq!(booked["output"]["car"], json!({"booking": "car-t1"}));
    let keys = |prefix: &'static str| {
        let client = &server.client;
        async move {
            let page = client
                .kv_list("trips", prefix, None, Some(100))
                .await
                .unwrap();
            page.keys
        }
    };
    assert_eq!(
        keys("trip/t1/").await,
        ["trip/t1/car", "trip/t1/flight", "trip/t1/hotel"]
    );

    let failed = start_and_wait(&server, "trip", json!({"trip": "t2", "fail": "car"})).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "TripNotBooked");
    assert_eq!(failed["cause"], "no car is free for trip t2");
    assert!(
        keys("trip/t2/").await.is_empty(),
        "the flight and hotel were cancelled"
    );
    let id = failed["id"].as_str().unwrap();
    let entered: Vec<String> = history(&server, id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "StateEntered")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        entered,
        [
            "BookHotel",
            "BookFlight",
            "BookCar",
            "CancelFlight",
            "CancelHotel",
            "NotBooked"
        ]
    );
}

/// Two nodes on PostgreSQL: a callback sent through one node reaches an execution the other
/// started, and when the node driving an execution is killed, the other takes it over once
/// its lease runs out, re-running only the task that was running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_takes_over_the_executions_of_a_killed_one() {
    let Some(database) = crate::cluster::fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let one = crate::cluster::node(dir.path(), &database, &[]);
    let two = crate::cluster::node(dir.path(), &database, &[]);
    deploy_step(&one, "step").await;
    deploy_workflow(
        &one,
        "approval",
        json!({"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "kumo:function:step.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"}, "End": true}}}),
    )
    .await;
    let started = one
        .client
        .start_execution("approval", json!({}), None, None)
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let token = wait_for_token(&one, &id).await;
    two.client
        .answer_task(
            "success",
            &json!({"taskToken": token, "output": {"via": "two"}}),
        )
        .await
        .unwrap();
    let ended = wait_for_status(&two, &id, "succeeded").await;
    assert_eq!(ended["output"], json!({"via": "two"}));

    deploy_workflow(&one, "durable", json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "a"}, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "b", "sleep_ms": 30000},
            "TimeoutSeconds": 3,
            "Retry": [{"ErrorEquals": ["States.TaskFailed", "States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "ResultPath": "$.b", "Next": "C"},
        "C": {"Type": "Task", "Resource": "kumo:function:step", "Parameters": {"count": "c"}, "End": true}
    }})).await;
    let started = one
        .client
        .start_execution("durable", json!({}), None, None)
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs(&two, "b").await < 1 {
        assert!(Instant::now() < deadline, "B never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    one.kill();
    // The lease (15 s) runs out; the other node claims the execution and retries B, which
    // times out again (3 s) and is retried, then fails the execution: B ran three times
    // in all and A once.
    let ended = wait_for_status_within(&two, &id, "failed", Duration::from_secs(60)).await;
    assert_eq!(ended["error"], "States.Timeout", "{ended}");
    assert_eq!(
        runs(&two, "a").await,
        1,
        "the completed task never ran again"
    );
    assert_eq!(runs(&two, "b").await, 3);
    assert_eq!(runs(&two, "c").await, 0);
}

async fn wait_for_status_within(
    server: &TestServer,
    id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let execution = server.client.execution(id).await.unwrap();
        if execution["status"] == status {
            return execution;
        }
        assert!(Instant::now() < deadline, "still {execution}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every workflow limit, hit: the input size, the definition size, the transitions of one
/// execution, the size of a history entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_limits_refuse_or_end_with_a_clear_error() {
    let server = TestServer::start_with(&["--max-body-bytes", "20000"]).await;
    deploy_workflow(
        &server,
        "echo",
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}),
    )
    .await;
    let big = "x".repeat(30_000);
    let response = server
        .post("/api/v1/workflows/echo/executions")
        .json(&json!({"input": {"big": big}}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "payload_too_large");

    let comment = "z".repeat((1 << 20) + 1);
    let huge =
        json!({"Comment": comment, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})
            .to_string();
    assert!(huge.len() > 1 << 20);
    let response = server
        .http
        .put(format!("{}/api/v1/workflows/huge", server.url))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "payload_too_large");

    // A machine that loops without end fails after 25,000 transitions.
    deploy_workflow(&server, "forever", json!({"StartAt": "Spin", "States": {
        "Spin": {"Type": "Pass", "Next": "Again"},
        "Again": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": true, "Next": "Done"}], "Default": "Spin"},
        "Done": {"Type": "Succeed"}}})).await;
    let ended = start_and_wait(&server, "forever", json!({})).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"], "States.Runtime");
    assert!(
        ended["cause"].as_str().unwrap().contains("25000"),
        "{ended}"
    );

    // A history entry keeps its size, not a large input.
    let input = json!({"text": "y".repeat(10_000)});
    let ended = start_and_wait(&server, "echo", input.clone()).await;
    assert_eq!(ended["output"], input, "the data itself is whole");
    let id = ended["id"].as_str().unwrap();
    let entered = history(&server, id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "StateEntered")
        .unwrap();
    assert_eq!(entered["detail"]["truncated"], true, "{entered}");
}

/// A workflow starts on its topics' messages and on its schedule's ticks, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_schedules_start_executions() {
    let server = TestServer::start().await;
    let definition = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    let body =
        json!({"definition": definition, "topics": ["orders"], "schedule": "rate(1 second)"});
    let response = server
        .http
        .put(format!("{}/api/v1/workflows/react", server.url))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let workflow = server.client.workflow("react").await.unwrap();
    assert_eq!(workflow["triggers"]["topics"], json!(["orders"]));

    let published: Value = server
        .post("/api/v1/topics/orders")
        .body(r#"{"order": 7}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let started = &published["executions"][0];
    assert_eq!(started["workflow"], "react", "{published}");
    let id = started["execution"].as_str().unwrap();
    let ended = wait_for_status(&server, id, "succeeded").await;
    assert_eq!(ended["output"]["message"], json!({"order": 7}));
    assert_eq!(ended["output"]["topic"], "orders");
    assert_eq!(
        ended["name"],
        format!("topic-{}", published["id"].as_str().unwrap())
    );

    // Ticks: one execution each, named after the tick.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ticks = loop {
        let listed = server.client.executions("react", None, 100).await.unwrap();
        let ticks: Vec<Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"].as_str().unwrap().starts_with("schedule-"))
            .cloned()
            .collect();
        if ticks.len() >= 2 {
            break ticks;
        }
        assert!(Instant::now() < deadline, "no ticks: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ticks[0]["input"]["schedule"], "rate(1 second)");
    let names: std::collections::BTreeSet<&str> =
        ticks.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), ticks.len(), "each tick once");

    // Bad triggers are refused; a deleted workflow starts nothing more.
    let bad = json!({"definition": definition, "topics": ["Not A Topic"]});
    let response = server
        .http
        .put(format!("{}/api/v1/workflows/bad", server.url))
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "invalid_request");
    server.client.delete_workflow("react").await.unwrap();
    let published: Value = server
        .post("/api/v1/topics/orders")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(published.get("executions").is_none(), "{published}");
}
