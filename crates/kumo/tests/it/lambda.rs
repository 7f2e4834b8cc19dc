//! Lambda functions (a zip package run by a sandboxed native process) through the real
//! server: deploy, the HTTP gateway (API Gateway 2.0 events), the invoke API (raw payloads),
//! records and Lambda's log lines, errors, timeouts and refused packages. Needs root, as CI
//! runs; elsewhere the tests say so and return.

use crate::harness::{TestServer, config, request_id};
use kumo_api::FunctionConfig;
use kumo_core::{LambdaRuntimeName, Outcome};

pub(crate) fn is_root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("skipped: Lambda execution environments need root");
    }
    root
}

pub(crate) fn shell_package() -> Vec<u8> {
    let bootstrap = std::fs::read(test_programs::LAMBDA_SHELL_BOOTSTRAP).unwrap();
    test_programs::zip(&[
        ("bootstrap", &bootstrap, 0o755),
        ("data/note.txt", b"hi", 0o644),
    ])
}

fn provided(handler: &str) -> FunctionConfig {
    FunctionConfig {
        runtime: Some(LambdaRuntimeName::Provided),
        handler: Some(handler.into()),
        ..config()
    }
}

#[tokio::test]
async fn a_provided_function_serves_http_and_invoke_with_lambda_logs() {
    if !is_root() {
        return;
    }
    let server = TestServer::start().await;
    let mut cfg = provided("echo");
    cfg.routes = vec!["/shell/*".parse().unwrap()];
    cfg.ephemeral_storage_mb = Some(600);
    let (record, _) = server
        .client
        .deploy("shell", shell_package(), &cfg)
        .await
        .unwrap();
    assert_eq!(record.kind, kumo_api::FunctionKind::Lambda);

    // An HTTP request arrives as an API Gateway 2.0 event; the bare JSON answer is a 200.
    let response = server
        .post("/shell/items?id=7")
        .header("x-test", "yes")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = request_id(&response);
    let answer: serde_json::Value = response.json().await.unwrap();
    let event = &answer["echo"];
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["rawPath"], "/shell/items");
    assert_eq!(event["queryStringParameters"]["id"], "7");
    assert_eq!(event["headers"]["x-test"], "yes");
    assert_eq!(event["body"], "payload");
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert_eq!(event["requestContext"]["requestId"], id.as_str());
    assert_eq!(answer["fn"], "shell");
    // Its /tmp is the ephemeral storage asked for.
    assert_eq!(answer["tmp_kb"], (600 * 1024).to_string());
    // Its users are an unprivileged range of the host's (a user namespace).
    assert_eq!(answer["uid_map"], " 0 1879048192 65536");

    let record = server.client.invocation(&id).await.unwrap();
    assert_eq!(record.outcome, Outcome::Ok);
    assert!(record.cold, "the first invocation started an environment");
    assert!(record.init_ms.unwrap() > 0.0);

    // The invoke API passes the payload as it is; the environment is warm now.
    let invoked = server
        .client
        .invoke("shell", br#"{"n": 1}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(invoked.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&invoked.body).unwrap();
    assert_eq!(answer["echo"], serde_json::json!({"n": 1}));
    let id = invoked.request_id.unwrap();
    let record = server.client.invocation(&id).await.unwrap();
    assert!(!record.cold, "a warm environment");

    // Records and their lines are written in the background.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = server.client.logs("shell", Some(&id), 100).await.unwrap();
        if lines.iter().any(|l| l.line.starts_with("REPORT")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let lines: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(
        lines[0],
        format!("START RequestId: {id} Version: $LATEST"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("handling {id}").as_str()),
        "{lines:?}"
    );
    assert_eq!(lines[lines.len() - 2], format!("END RequestId: {id}"));
    let report = lines[lines.len() - 1];
    assert!(
        report.starts_with(&format!("REPORT RequestId: {id}\tDuration: ")),
        "{report}"
    );
    assert!(
        report.contains("Memory Size: 128 MB\tMax Memory Used: "),
        "{report}"
    );
}

#[tokio::test]
async fn lambda_errors_timeouts_and_bad_packages_are_reported() {
    if !is_root() {
        return;
    }
    let server = TestServer::start().await;
    let mut cfg = provided("echo");
    cfg.timeout = std::time::Duration::from_millis(500);
    server
        .client
        .deploy("shell", shell_package(), &cfg)
        .await
        .unwrap();

    let failed = server
        .client
        .invoke("shell", br#""fail""#.to_vec())
        .await
        .unwrap();
    assert_eq!(failed.error_code.as_deref(), Some("function_error"));
    assert!(String::from_utf8_lossy(&failed.body).contains("ValueError: it failed"));

    let slow = server
        .client
        .invoke("shell", br#""sleep""#.to_vec())
        .await
        .unwrap();
    assert_eq!(slow.error_code.as_deref(), Some("timeout"));
    let record = server
        .client
        .invocation(&slow.request_id.unwrap())
        .await
        .unwrap();
    assert_eq!(record.outcome, Outcome::Timeout);

    let exited = server
        .client
        .invoke("shell", br#""exit""#.to_vec())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&exited.body).contains("Runtime.ExitError"));
    // A new environment serves the next one.
    let ok = server.client.invoke("shell", b"{}".to_vec()).await.unwrap();
    assert_eq!(ok.status, 200);

    server
        .client
        .deploy("init", shell_package(), &provided("init-error"))
        .await
        .unwrap();
    let refused = server.client.invoke("init", b"{}".to_vec()).await.unwrap();
    assert!(
        String::from_utf8_lossy(&refused.body)
            .contains("Runtime.InitError: InitFailed: cannot init")
    );

    // Packages that cannot run are refused at deploy, and nothing is stored.
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("not-a-zip", b"hello".to_vec(), "not a readable zip"),
        (
            "escapes",
            test_programs::zip(&[("../evil", b"x", 0o644), ("bootstrap", b"#!/bin/sh", 0o755)]),
            "outside the package",
        ),
        (
            "no-bootstrap",
            test_programs::zip(&[("app.py", b"", 0o644)]),
            "bootstrap",
        ),
        (
            "not-executable",
            test_programs::zip(&[("bootstrap", b"#!/bin/sh", 0o644)]),
            "executable",
        ),
    ];
    for (name, package, why) in cases {
        let response = server
            .client
            .deploy(name, package, &provided("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&response, kumo_api::ClientError::Api { status: 400, code, message }
                if code == "invalid_function" && message.contains(why)),
            "{name}: {response}"
        );
        assert!(server.client.get(name).await.is_err());
    }
    let mut python_without_handler = provided("x");
    python_without_handler.runtime = Some(LambdaRuntimeName::Python3);
    python_without_handler.handler = None;
    let refused = server
        .client
        .deploy("py", shell_package(), &python_without_handler)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("needs a handler"), "{refused}");
}

/// Where scripts/test.sh installed awslambdaric (its KUMO_LAMBDA_RUNTIMES, else the
/// workspace's target/lambda-runtimes).
pub(crate) fn lambda_runtimes() -> String {
    let dir = std::env::var("KUMO_LAMBDA_RUNTIMES").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/lambda-runtimes").to_string()
    });
    assert!(
        std::path::Path::new(&dir)
            .join("python3/awslambdaric")
            .is_dir(),
        "awslambdaric is not installed in {dir}: run scripts/test.sh (or scripts/lambda-runtimes.sh)"
    );
    dir
}

#[tokio::test]
async fn a_python_handler_runs_on_awslambdaric() {
    if !is_root() {
        return;
    }
    let runtimes = lambda_runtimes();
    let server = TestServer::start_with(&["--lambda-runtimes", &runtimes]).await;
    let app = std::fs::read(test_programs::LAMBDA_PYTHON_APP).unwrap();
    let package = test_programs::zip(&[("app.py", &app, 0o644)]);
    let cfg = FunctionConfig {
        runtime: Some(LambdaRuntimeName::Python3),
        handler: Some("app.handler".into()),
        memory_mb: 256,
        ..config()
    };
    server.client.deploy("py", package, &cfg).await.unwrap();

    let invoked = server
        .client
        .invoke("py", br#"{"a": 1}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(
        invoked.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&invoked.body)
    );
    let answer: serde_json::Value = serde_json::from_slice(&invoked.body).unwrap();
    assert_eq!(answer["event"], serde_json::json!({"a": 1}));
    assert_eq!(answer["function"], "py");
    assert_eq!(answer["memory"], "256");
    assert!(answer["remaining_ms"].as_i64().unwrap() > 0);

    let response = server.post("/fn/py/orders").body("x").send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-py"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"path": "/orders", "method": "POST"})
    );

    let failed = server
        .client
        .invoke("py", br#""fail""#.to_vec())
        .await
        .unwrap();
    assert_eq!(failed.error_code.as_deref(), Some("function_error"));
    assert!(String::from_utf8_lossy(&failed.body).contains("ValueError: bad input"));
}

#[tokio::test]
async fn provisioned_environments_start_at_deploy_and_restart_and_a_broken_one_hurts_nothing() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    let warm = FunctionConfig {
        provisioned_concurrency: Some(1),
        ..provided("echo")
    };
    let broken = FunctionConfig {
        provisioned_concurrency: Some(1),
        ..provided("init-error")
    };
    server
        .client
        .deploy("warm", shell_package(), &warm)
        .await
        .unwrap();
    // Its init fails: deployed all the same, and its invocations say why.
    server
        .client
        .deploy("broken", shell_package(), &broken)
        .await
        .unwrap();
    let first = server.client.invoke("warm", b"{}".to_vec()).await.unwrap();
    let record = server
        .client
        .invocation(&first.request_id.unwrap())
        .await
        .unwrap();
    assert!(!record.cold, "the deploy started its environment");
    server.stop();

    // A restart starts them again (from the unpacked packages), and the broken one does not
    // keep the server from starting.
    let server = TestServer::start_in(dir.path(), &[]);
    let first = server.client.invoke("warm", b"{}".to_vec()).await.unwrap();
    assert_eq!(first.status, 200);
    let record = server
        .client
        .invocation(&first.request_id.unwrap())
        .await
        .unwrap();
    assert!(!record.cold, "started with the server");
    let failed = server
        .client
        .invoke("broken", b"{}".to_vec())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&failed.body).contains("Runtime.InitError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_topics_and_object_changes_arrive_in_aws_event_shapes() {
    if !is_root() {
        return;
    }
    let receiver = crate::harness::Receiver::start().await;
    let server = TestServer::start().await;
    let reporting = |cfg: FunctionConfig| FunctionConfig {
        on_success: Some(receiver.url.parse().unwrap()),
        ..cfg
    };
    let functions = [
        (
            "ticks",
            FunctionConfig {
                schedule: Some("rate(1 second)".parse().unwrap()),
                ..provided("echo")
            },
        ),
        (
            "orders",
            FunctionConfig {
                topics: vec!["orders".into()],
                ..provided("echo")
            },
        ),
        (
            "uploads",
            FunctionConfig {
                on_object: Some(kumo_core::ObjectTrigger {
                    bucket: "uploads".into(),
                    events: vec![kumo_core::ObjectEvent::Put],
                }),
                ..provided("echo")
            },
        ),
    ];
    for (name, cfg) in functions {
        server
            .client
            .deploy(name, shell_package(), &reporting(cfg))
            .await
            .unwrap();
    }
    server
        .client
        .send_to_topic("orders", br#"{"order": 7}"#.to_vec())
        .await
        .unwrap();
    let put = server
        .http
        .put(format!("{}/api/v1/objects/uploads/in/a b.txt", server.url))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // What each function received (the shell runtime echoes its event), by function.
    let received = |outcomes: &[serde_json::Value], function: &str| {
        outcomes.iter().find_map(|o| {
            let body = o["data"]["result"]["body"].as_str()?;
            let answer: serde_json::Value = serde_json::from_str(body).ok()?;
            (answer["fn"] == function).then(|| answer["echo"].clone())
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let outcomes = loop {
        let outcomes = receiver
            .json_when(3, std::time::Duration::from_secs(1))
            .await;
        let all = ["ticks", "orders", "uploads"]
            .iter()
            .all(|f| received(&outcomes, f).is_some());
        if all || std::time::Instant::now() > deadline {
            break outcomes;
        }
    };
    let tick = received(&outcomes, "ticks").expect("a schedule tick arrived");
    assert_eq!(tick["detail-type"], "Scheduled Event");
    assert_eq!(tick["source"], "aws.events");
    assert_eq!(
        tick["resources"][0],
        "arn:aws:events:us-east-1:000000000000:rule/ticks"
    );
    let sns = received(&outcomes, "orders").expect("a topic message arrived");
    let sns = &sns["Records"][0];
    assert_eq!(sns["EventSource"], "aws:sns");
    assert_eq!(
        sns["Sns"]["TopicArn"],
        "arn:aws:sns:us-east-1:000000000000:orders"
    );
    assert_eq!(sns["Sns"]["Message"], r#"{"order":7}"#);
    let s3 = received(&outcomes, "uploads").expect("an object change arrived");
    let s3 = &s3["Records"][0];
    assert_eq!(s3["eventSource"], "aws:s3");
    assert_eq!(s3["eventName"], "ObjectCreated:Put");
    assert_eq!(s3["s3"]["bucket"]["name"], "uploads");
    assert_eq!(s3["s3"]["object"]["key"], "in/a+b.txt");
    assert_eq!(s3["s3"]["object"]["size"], 3);
}

#[tokio::test]
async fn a_rust_function_on_lambda_runtime_runs_unchanged() {
    if !is_root() {
        return;
    }
    let server = TestServer::start().await;
    let bootstrap = std::fs::read(test_programs::LAMBDA_RUST_BOOTSTRAP).unwrap();
    let package = test_programs::zip(&[("bootstrap", &bootstrap, 0o755)]);
    server
        .client
        .deploy("rusty", package, &provided("unused"))
        .await
        .unwrap();
    let invoked = server
        .client
        .invoke("rusty", br#"{"n": 1}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(invoked.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&invoked.body).unwrap();
    assert_eq!(answer["echo"], serde_json::json!({"n": 1}));
    assert_eq!(answer["function"], "rusty");
    assert_eq!(
        answer["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:rusty"
    );
    let id = invoked.request_id.clone().unwrap();
    assert_eq!(answer["request_id"], id.as_str());
    let record = server.client.invocation(&id).await.unwrap();
    assert!(record.cold && record.init_ms.is_some());

    let failed = server
        .client
        .invoke("rusty", br#""fail""#.to_vec())
        .await
        .unwrap();
    assert_eq!(failed.error_code.as_deref(), Some("function_error"));
    assert!(String::from_utf8_lossy(&failed.body).contains("bad input"));
    // The error did not end the environment: the next invocation is warm.
    let again = server.client.invoke("rusty", b"2".to_vec()).await.unwrap();
    let id = again.request_id.unwrap();
    assert!(!server.client.invocation(&id).await.unwrap().cold);
}

/// Every isolation layer exists on the machines CI runs on (root in a VM), so the report
/// must show all of them, through `/healthz` and `kumo info`; probes still get plain `ok`.
#[tokio::test]
async fn the_server_reports_the_isolation_lambda_functions_get() {
    if !is_root() {
        return;
    }
    let server = TestServer::start().await;
    assert_eq!(server.get_text("/healthz").await, "ok\n");
    let health = server.client.health().await.unwrap();
    assert_eq!(health["status"], "ok");
    let layers = health["isolation"]["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().filter_map(|l| l["name"].as_str()).collect();
    for layer in ["cgroups", "seccomp", "landlock", "user namespace"] {
        assert!(
            names.iter().any(|n| n.contains(layer)),
            "{layer} in {names:?}"
        );
    }
    let missing: Vec<&serde_json::Value> =
        layers.iter().filter(|l| !l["missing"].is_null()).collect();
    assert!(missing.is_empty(), "missing layers: {missing:?}");
    let info = server.cli(&["info"]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "{text}");
    assert!(
        text.contains("seccomp") && !text.contains("MISSING"),
        "{text}"
    );
}

/// The only way out of an environment is the egress proxy, to the hosts `allow_outbound`
/// grants: plain HTTP is forwarded, TLS tunnelled (CONNECT), anything else refused; a
/// function without grants has no way out at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_goes_through_the_proxy_to_granted_hosts_only() {
    if !is_root() {
        return;
    }
    // Not on 127.0.0.1: inside an environment that is its own loopback, never proxied.
    let receiver = crate::harness::Receiver::start_on("127.0.0.2:0").await;
    let server = TestServer::start().await;
    let granted = FunctionConfig {
        allow_outbound: vec![receiver.host_port().to_string()],
        ..provided("echo")
    };
    let deploy = |name: &'static str, cfg: FunctionConfig| {
        let client = &server.client;
        async move { client.deploy(name, shell_package(), &cfg).await.unwrap() }
    };
    deploy("out", granted).await;
    deploy("closed", provided("echo")).await;
    let fetch = |function: &'static str, url: String| {
        let client = &server.client;
        async move {
            let event = serde_json::json!({ "fetch": url }).to_string();
            let invoked = client.invoke(function, event.into_bytes()).await.unwrap();
            let answer: serde_json::Value = serde_json::from_slice(&invoked.body).unwrap();
            answer["got"].as_str().unwrap().to_string()
        }
    };
    // Granted, plain HTTP: forwarded, and the request arrives.
    assert_eq!(
        fetch("out", format!("{}/in", receiver.url)).await,
        "200 000"
    );
    assert_eq!(
        receiver.bodies(),
        vec![bytes::Bytes::from_static(b"fetched")]
    );
    // Granted, TLS: the tunnel is made (the receiver speaks no TLS, so that fails after).
    let tls = format!("https://{}/", receiver.host_port());
    assert_eq!(fetch("out", tls).await, "000 200");
    // Not granted: refused by the proxy, plain or tunnelled.
    assert_eq!(fetch("out", "http://127.0.0.2:9/x".into()).await, "403 000");
    assert_eq!(fetch("out", "https://example.com/".into()).await, "000 403");
    // No grants: no proxy, and no network to reach anything directly.
    assert_eq!(
        fetch("closed", format!("{}/in", receiver.url)).await,
        "000 000"
    );
    assert_eq!(receiver.bodies().len(), 1);
}

/// A function's own SDK calls reach kumo from its environment (`AWS_ENDPOINT_URL`,
/// `KUMO_API_URL`) as the function, with no secret to leak: it may invoke functions and use
/// the buckets its config grants, and nothing else, although the server requires tokens.
#[tokio::test]
async fn a_function_reaches_kumo_as_itself_with_only_what_it_is_granted() {
    if !is_root() {
        return;
    }
    let runtimes = lambda_runtimes();
    let server = TestServer::start_with(&["--lambda-runtimes", &runtimes]).await;
    let app = std::fs::read(test_programs::LAMBDA_PYTHON_APP).unwrap();
    let cfg = FunctionConfig {
        runtime: Some(LambdaRuntimeName::Python3),
        handler: Some("app.handler".into()),
        kv: vec!["carts".into()],
        memory_mb: 256,
        ..config()
    };
    let package = test_programs::zip(&[("app.py", &app, 0o644)]);
    server.client.deploy("py", package, &cfg).await.unwrap();
    server
        .client
        .deploy("shell", shell_package(), &provided("echo"))
        .await
        .unwrap();
    let run = |event: serde_json::Value| {
        let client = &server.client;
        async move {
            let invoked = client
                .invoke("py", event.to_string().into_bytes())
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&invoked.body).to_string();
            assert_eq!(invoked.status, 200, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    // boto3 in the function invokes another function through the Lambda API.
    let called = run(serde_json::json!({"call": "shell", "payload": {"x": 1}})).await;
    assert_eq!(
        called["called"]["echo"],
        serde_json::json!({"x": 1}),
        "{called}"
    );
    assert_eq!(called["version"], "$LATEST");
    // Its granted bucket, read and written through kumo's API.
    let put = run(serde_json::json!({"kumo": ["PUT", "/kv/carts/c1", "three apples"]})).await;
    assert!(put["status"].as_u64().unwrap() < 300, "{put}");
    let got = run(serde_json::json!({"kumo": ["GET", "/kv/carts/c1", null]})).await;
    assert_eq!(got["body"], "three apples");
    let stored = server.client.kv_get("carts", "c1").await.unwrap();
    assert_eq!(stored.value, b"three apples".to_vec());
    // Nothing else: another bucket, reading functions, tokens, another namespace.
    for (method, path) in [
        ("GET", "/kv/other/c1"),
        ("GET", "/functions"),
        ("PUT", "/secrets/X"),
        ("POST", "/tokens"),
    ] {
        let refused = run(serde_json::json!({"kumo": [method, path, null]})).await;
        assert_eq!(refused["status"], 403, "{method} {path}: {refused}");
    }
}

/// An idle (frozen) environment still holds its memory, so it stays counted in the server's
/// memory budget; an invocation that needs that memory stops idle environments to make room
/// rather than being throttled or overcommitting the machine.
#[tokio::test]
async fn idle_environments_count_against_the_memory_budget_and_make_room_when_needed() {
    if !is_root() {
        return;
    }
    let server = TestServer::start_with(&["--max-memory", "400MiB"]).await;
    let cfg = FunctionConfig {
        memory_mb: 256,
        ..provided("echo")
    };
    for name in ["a", "b"] {
        server
            .client
            .deploy(name, shell_package(), &cfg)
            .await
            .unwrap();
    }
    let cold = |function: &'static str| {
        let server = &server;
        async move {
            let invoked = server
                .client
                .invoke(function, b"{}".to_vec())
                .await
                .unwrap();
            assert_eq!(invoked.status, 200, "{function}");
            let id = invoked.request_id.unwrap();
            server.client.invocation(&id).await.unwrap().cold
        }
    };
    assert!(cold("a").await);
    assert_eq!(
        server.metric("kumo_memory_reserved_bytes").await,
        256 << 20,
        "a's idle environment is counted"
    );
    assert!(!cold("a").await, "and reused");
    // b needs 256 MiB of the 400: a's idle environment is stopped to make room.
    assert!(cold("b").await);
    assert_eq!(server.metric("kumo_memory_reserved_bytes").await, 256 << 20);
    assert!(cold("a").await, "a's environment was stopped for b");
}
