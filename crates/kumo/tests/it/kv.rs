//! The key-value store through the real server: guests through `wasi:keyvalue` (grants, every
//! operation, compare-and-swap conflicts, limits), the HTTP API (etags, conditional writes,
//! listing), the CLI, durability across a restart, and the exactly-once example.

use crate::harness::{TestServer, config, error_code};
use kumo_api::{ClientError, FunctionConfig, KvCondition};
use reqwest::StatusCode;

fn granted(buckets: &[&str]) -> FunctionConfig {
    FunctionConfig {
        kv: buckets.iter().map(|b| b.to_string()).collect(),
        ..config()
    }
}

/// POSTs to the kv-probe deployed as `kv` and returns (status, body).
async fn probe(server: &TestServer, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = server
        .post(&format!("/fn/kv/{path}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_use_granted_buckets_and_the_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    server
        .deploy("kv", test_programs::KV_PROBE, granted(&["orders"]))
        .await;

    // Only granted buckets open; the error is the interface's own, never silent.
    assert_eq!(
        probe(&server, "open/orders", "").await,
        (200, "opened".into())
    );
    assert_eq!(
        probe(&server, "open/secrets", "").await,
        (403, "access-denied".into())
    );
    assert_eq!(probe(&server, "get/secrets/k", "").await.0, 403);

    assert_eq!(
        probe(&server, "get/orders/k", "").await,
        (404, "absent".into())
    );
    assert_eq!(probe(&server, "set/orders/k", "v1").await.0, 204);
    assert_eq!(probe(&server, "get/orders/k", "").await, (200, "v1".into()));
    assert_eq!(probe(&server, "exists/orders/k", "").await.1, "true");
    assert_eq!(probe(&server, "delete/orders/k", "").await.0, 204);
    assert_eq!(probe(&server, "exists/orders/k", "").await.1, "false");

    // Atomics: increment (negative deltas too) and compare-and-swap, with a conflicting write
    // landing between the read and the swap: the swap fails, the retry on the new cas wins.
    assert_eq!(probe(&server, "incr/orders/n?5", "").await.1, "5");
    assert_eq!(probe(&server, "incr/orders/n?-7", "").await.1, "-2");
    probe(&server, "set/orders/text", "abc").await;
    let (status, body) = probe(&server, "incr/orders/text?1", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("not a decimal integer"), "{body}");
    assert_eq!(
        probe(&server, "cas/orders/c", "first").await,
        (200, "swapped on try 1".into())
    );
    assert_eq!(
        probe(&server, "cas/orders/c?race", "second").await,
        (200, "swapped on try 2".into())
    );
    assert_eq!(probe(&server, "get/orders/c", "").await.1, "second");
    assert_eq!(
        probe(&server, "batch/orders", "").await.1,
        "a=1,b=2,c=second a=-,b=2"
    );

    // The value limit is the interface's error, and nothing is written.
    let (status, body) = probe(&server, "set/orders/big", vec![b'x'; (1 << 20) + 1]).await;
    assert_eq!(status, 500);
    assert!(body.contains("over the limit"), "{body}");
    assert_eq!(probe(&server, "exists/orders/big", "").await.1, "false");

    // What the guest wrote is what the API reads, and the other way round.
    let c = server.client.kv_get("orders", "c").await.unwrap();
    assert_eq!(&c.value[..], b"second");
    server
        .client
        .kv_put("orders", "from-api", b"hello".to_vec(), KvCondition::Always)
        .await
        .unwrap();
    assert_eq!(probe(&server, "get/orders/from-api", "").await.1, "hello");

    // list-keys pages through the cursor (1000 keys a page).
    let keys: Vec<String> = (0..1100).map(|i| format!("many/{i:04}")).collect();
    for chunk in keys.chunks(100) {
        let writes = chunk.iter().map(|key| {
            server
                .client
                .kv_put("orders", key, b"1".to_vec(), KvCondition::Always)
        });
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
    }
    let response = server.post("/fn/kv/list/orders").send().await.unwrap();
    assert_eq!(response.headers()["x-pages"], "2");
    let listed = response.text().await.unwrap();
    assert_eq!(
        listed.lines().filter(|k| k.starts_with("many/")).count(),
        1100
    );

    // Durable: a restart on the same data dir reads the same values.
    server.stop();
    let server = TestServer::start_in(dir.path(), &[]);
    assert_eq!(
        probe(&server, "get/orders/c", "").await,
        (200, "second".into())
    );
    assert_eq!(probe(&server, "incr/orders/n?2", "").await.1, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_writes_conditionally_and_lists_with_a_cursor() {
    let server = TestServer::start().await;
    let url = |key: &str| format!("{}/api/v1/kv/config/{key}", server.url);
    let put = |key: &str| server.http.put(url(key));

    let created = put("a/1").body("one").send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let first = created.headers()["etag"].to_str().unwrap().to_string();
    assert!(first.starts_with('"') && first.ends_with('"'), "{first}");

    // Create-only refuses an existing key; a stale If-Match refuses too; neither writes.
    let again = put("a/1")
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(again).await, "precondition_failed");
    let replaced = put("a/1")
        .header("if-match", &first)
        .body("two")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::NO_CONTENT);
    let second = replaced.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(first, second);
    let stale = put("a/1")
        .header("if-match", &first)
        .body("three")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let read = server.http.get(url("a/1")).send().await.unwrap();
    assert_eq!(read.headers()["etag"].to_str().unwrap(), second);
    assert_eq!(read.text().await.unwrap(), "two");
    let cached = server
        .http
        .get(url("a/1"))
        .header("if-none-match", &second)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    let missing_only = put("new")
        .header("if-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(missing_only.status(), StatusCode::PRECONDITION_FAILED);

    // Deletes: a stale etag is refused, a retried delete is fine, then the key is gone.
    let delete = |etag: Option<&str>| {
        let request = server.http.delete(url("a/1"));
        match etag {
            Some(etag) => request.header("if-match", etag),
            None => request,
        }
    };
    assert_eq!(
        delete(Some(&first)).send().await.unwrap().status(),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        delete(Some(&second)).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(None).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let gone = server.http.get(url("a/1")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(gone).await, "key_not_found");

    // Bad input: a bad bucket name, a value over 1 MiB, both conditions at once.
    let bad = server
        .http
        .put(format!("{}/api/v1/kv/Bad_Bucket/k", server.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let big = put("big")
        .body(vec![0u8; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(big).await, "payload_too_large");
    let both = put("k")
        .header("if-match", "*")
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);

    // Keys with spaces and slashes round-trip through the client (percent-encoded).
    let client = &server.client;
    for key in ["p/b", "p/a c", "p/c/d", "q"] {
        client
            .kv_put(
                "config",
                key,
                key.as_bytes().to_vec(),
                KvCondition::IfAbsent,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        &client.kv_get("config", "p/a c").await.unwrap().value[..],
        b"p/a c"
    );
    let page = client.kv_list("config", "p/", None, Some(2)).await.unwrap();
    assert_eq!(page.keys, ["p/a c", "p/b"]);
    let rest = client
        .kv_list("config", "p/", page.cursor.as_deref(), Some(2))
        .await
        .unwrap();
    assert_eq!((rest.keys, rest.cursor), (vec!["p/c/d".to_string()], None));
    let refused = client
        .kv_put("config", "q", b"x".to_vec(), KvCondition::IfAbsent)
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Api { status: 412, .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_writes_and_lists_keys() {
    let server = TestServer::start().await;
    let run = |args: &[&str]| {
        let out = server.cli(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, etag, _) = run(&["kv", "put", "notes", "day/1", "-d", "hello", "--if-absent"]);
    assert!(ok);
    let (ok, _, err) = run(&["kv", "put", "notes", "day/1", "-d", "x", "--if-absent"]);
    assert!(!ok && err.contains("precondition_failed"), "{err}");
    let (ok, value, err) = run(&["kv", "get", "notes", "day/1", "--etag"]);
    assert!(ok);
    assert_eq!(value, "hello");
    assert!(err.contains(etag.trim()), "{err}");
    run(&["kv", "put", "notes", "day/2", "-d", "x"]);
    assert_eq!(
        run(&["kv", "ls", "notes", "--prefix", "day/"]).1,
        "day/1\nday/2\n"
    );
    assert!(run(&["kv", "rm", "notes", "day/1", "--if-match", etag.trim()]).0);
    let (ok, _, err) = run(&["kv", "get", "notes", "day/1"]);
    assert!(!ok && err.contains("key_not_found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_example_records_each_event_exactly_once() {
    let server = TestServer::start_with(&["--retry-base-delay", "20ms"]).await;
    server
        .deploy("orders", test_programs::ORDERS, granted(&["orders"]))
        .await;
    let orders = [
        r#"{"amount": 1250}"#,
        r#"{"amount": 300, "fail_after_record": true}"#,
        r#"{"amount": 45}"#,
    ];
    let mut ids = Vec::new();
    for order in orders {
        let id = server
            .client
            .invoke_async("orders", order.as_bytes().to_vec(), None)
            .await
            .unwrap();
        ids.push(id.0);
    }
    for id in &ids {
        let event = server.client.event(id, Some("30s")).await.unwrap();
        assert_eq!(event.status, kumo_api::EventStatus::Succeeded, "{event:?}");
    }
    // The second order ran twice (its first attempt failed after storing it) and is counted
    // once; every delivery is counted in `deliveries`.
    let retried = server.client.event(&ids[1], None).await.unwrap();
    assert_eq!(retried.attempts, 2);
    let summary: serde_json::Value = server
        .get("/fn/orders/summary")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"orders": 3, "total": 1595, "deliveries": 4})
    );
    let direct = server.post("/fn/orders").body("{}").send().await.unwrap();
    assert_eq!(direct.status(), StatusCode::BAD_REQUEST);
}
