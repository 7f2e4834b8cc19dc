//! Invoking both kinds of function through the gateway and the invoke API; records and logs.

use crate::harness::{TestServer, config, error_code, request_id};
use kumo_core::Outcome;

#[tokio::test]
async fn wasi_http_sees_path_query_headers_and_body() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let response = server
        .http
        .put(format!("{}/fn/probe/echo?a=1&b=two", server.url))
        .header("x-probe", "header-value")
        .body("the body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let h = response.headers();
    assert_eq!(h["x-probe-method"], "PUT");
    assert_eq!(h["x-probe-path"], "/echo");
    assert_eq!(h["x-probe-query"], "a=1&b=two");
    assert_eq!(h["x-probe-header"], "header-value");
    assert_eq!(response.text().await.unwrap(), "the body");

    // The guest's status is passed through; the bare function path is `/`.
    let teapot = server.get("/fn/probe/status").send().await.unwrap();
    assert_eq!(teapot.status(), 418);
    let root = server.post("/fn/probe").body("root").send().await.unwrap();
    assert_eq!(root.headers()["x-probe-path"], "/");

    let record = server.client.invocation(&id).await.unwrap();
    assert_eq!(record.function, "probe");
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.status, 200);
    assert_eq!(record.memory_mb, 128);
    assert!(record.billed_ms >= 1 && record.billed_ms as f64 >= record.duration_ms);
}

#[tokio::test]
async fn the_invoke_api_runs_both_kinds() {
    let server = TestServer::start().await;
    let mut cfg = config();
    cfg.env.insert("GREETING".into(), "ahoy".into());
    server
        .deploy("hello", test_programs::HELLO, cfg.clone())
        .await;
    server
        .deploy("cmd", test_programs::COMMAND_PROBE, cfg)
        .await;

    let hello = server
        .client
        .invoke("hello", b"ignored".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (hello.status, &hello.body[..]),
        (200, &b"ahoy, world!\n"[..])
    );
    let echoed = server
        .client
        .invoke("cmd", b"payload on stdin".to_vec())
        .await
        .unwrap();
    assert_eq!(&echoed.body[..], b"payload on stdin");
    let env = server
        .client
        .invoke("cmd", b"env:GREETING".to_vec())
        .await
        .unwrap();
    assert_eq!(&env.body[..], b"ahoy");

    let wc = std::fs::read(test_programs::WORDCOUNT).unwrap();
    server.client.deploy("wc", wc, &config()).await.unwrap();
    let counted = server
        .client
        .invoke("wc", b"one two\nthree".to_vec())
        .await
        .unwrap();
    assert_eq!(
        &counted.body[..],
        b"{\"lines\":2,\"words\":3,\"bytes\":13}\n"
    );
}

#[tokio::test]
async fn wasip1_core_modules_run_as_commands() {
    let server = TestServer::start().await;
    let module = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "hello from wasip1\n")
            (func (export "_start")
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const 18))
                (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    let (record, created) = server.client.deploy("p1", module, &config()).await.unwrap();
    assert!(created);
    assert_eq!(record.kind, kumo_api::FunctionKind::WasiCommand);
    let out = server.client.invoke("p1", Vec::new()).await.unwrap();
    assert_eq!(&out.body[..], b"hello from wasip1\n");
}

#[tokio::test]
async fn logs_are_captured_per_request_id() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    let first = server.get("/fn/probe/log").send().await.unwrap();
    let first_id = request_id(&first);
    let second_id = request_id(&server.get("/fn/probe/log").send().await.unwrap());
    assert_ne!(first_id, second_id);

    let logs = server
        .client
        .logs("probe", Some(&first_id), 100)
        .await
        .unwrap();
    let lines: Vec<(&str, &str)> = logs
        .iter()
        .map(|l| (l.stream.as_str(), l.line.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("stdout", "to stdout"),
            ("stderr", "to stderr 1"),
            ("stderr", "to stderr 2")
        ]
    );
    assert!(logs.iter().all(|l| l.request_id == first_id));
    assert_eq!(
        server.client.logs("probe", None, 100).await.unwrap().len(),
        6
    );
    assert_eq!(server.client.logs("probe", None, 2).await.unwrap().len(), 2);
    let records = server.client.invocations(Some("probe"), 10).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].request_id, second_id, "newest first");
}

#[tokio::test]
async fn unknown_functions_versions_and_paths_are_404() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    for path in [
        "/fn/missing",
        "/fn/missing/x",
        "/fn/probe:prod/echo",
        "/fn/probe:3",
        "/nowhere",
    ] {
        let response = server.get(path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        request_id(&response);
        assert_eq!(error_code(response).await, "function_not_found", "{path}");
    }
    let invoke = server
        .post("/api/v1/functions/missing/invoke")
        .send()
        .await
        .unwrap();
    assert_eq!(invoke.status(), 404);
    let record = server.get("/api/v1/invocations/nope").send().await.unwrap();
    assert_eq!(record.status(), 404);
    let function = server
        .get("/api/v1/functions/missing")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(function).await, "function_not_found");
}

#[tokio::test]
async fn wasi_http_guests_of_any_0_2_version_run() {
    let server = TestServer::start().await;
    // Built against WASI 0.2.0 (older than this wasmtime) and 0.2.12 (newer) respectively.
    server
        .deploy("old", test_programs::HTTP_WASI_0_2_0, config())
        .await;
    server
        .deploy("new", test_programs::HTTP_PROBE, config())
        .await;
    let old = server.get("/fn/old/any").send().await.unwrap();
    assert_eq!(old.status(), 200);
    assert_eq!(old.text().await.unwrap(), "built against wasi 0.2.0");
    let new = server.get("/fn/new/echo").body("x").send().await.unwrap();
    assert_eq!(new.text().await.unwrap(), "x");
}
