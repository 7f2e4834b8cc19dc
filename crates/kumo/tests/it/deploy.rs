//! Deploying: create/update, validation of code, names, config and routes.

use crate::harness::{TestServer, config, error_code};
use kumo_api::FunctionKind;
use reqwest::multipart::{Form, Part};

fn form(code: Vec<u8>, config: Option<&str>) -> Form {
    let form = Form::new().part("code", Part::bytes(code).file_name("f.wasm"));
    match config {
        Some(c) => form.text("config", c.to_string()),
        None => form,
    }
}

async fn put(server: &TestServer, name: &str, form: Form) -> reqwest::Response {
    server
        .http
        .put(format!("{}/api/v1/functions/{name}", server.url))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn create_then_update_runs_the_new_code() {
    let server = TestServer::start().await;
    let health = server.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);

    let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let created = put(
        &server,
        "svc",
        form(code, Some(r#"{"env":{"WHO":"probe"}}"#)),
    )
    .await;
    assert_eq!(created.status(), 201);
    let record: kumo_api::FunctionRecord = created.json().await.unwrap();
    assert_eq!(record.kind, FunctionKind::WasiHttp);
    assert_eq!(record.config.env["WHO"], "probe");
    let body = server.get_text("/fn/svc/env/WHO").await;
    assert_eq!(body, "probe");

    let code = std::fs::read(test_programs::HELLO).unwrap();
    let updated = put(
        &server,
        "svc",
        form(code, Some(r#"{"env":{"GREETING":"hey"}}"#)),
    )
    .await;
    assert_eq!(updated.status(), 200);
    let body = server.get_text("/fn/svc/Ada").await;
    assert_eq!(body, "hey, Ada!\n");
    // The function name is decoded; the rest reaches the guest as sent.
    let body = server.get_text("/fn/svc:%24LATEST/Ada%20L").await;
    assert_eq!(body, "hey, Ada%20L!\n");

    let listed = server.client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        server.client.get("svc").await.unwrap().code_size,
        record_size(test_programs::HELLO)
    );
}

fn record_size(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn unusable_code_is_refused_with_the_reason() {
    let server = TestServer::start().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"hello, not wasm".to_vec(), "not a WebAssembly binary"),
        (
            b"\0asm\x01\0\0\0\xff\xff".to_vec(),
            "not a valid core module",
        ),
        (wat::parse_str("(module)").unwrap(), "no `_start`"),
        (wat::parse_str("(component)").unwrap(), "exports neither"),
        (
            wat::parse_str(r#"(module (import "env" "mystery" (func)) (func (export "_start")))"#)
                .unwrap(),
            "does not provide",
        ),
    ];
    for (code, why) in cases {
        let response = put(&server, "bad", form(code, None)).await;
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_function");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message:?} should say {why:?}");
    }
    // Nothing was stored by the refused deploys.
    assert!(server.client.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_names_configs_and_requests_are_400_naming_the_problem() {
    let server = TestServer::start().await;
    let code = || std::fs::read(test_programs::COMMAND_PROBE).unwrap();
    let cases = [
        (
            "Bad_Name",
            None,
            "invalid_function",
            "invalid function name",
        ),
        (
            "ok",
            Some(r#"{"memory_mb":8}"#),
            "invalid_function",
            "memory_mb",
        ),
        (
            "ok",
            Some(r#"{"memory_mb":4097}"#),
            "invalid_function",
            "memory_mb",
        ),
        (
            "ok",
            Some(r#"{"timeout":"16m"}"#),
            "invalid_function",
            "timeout",
        ),
        (
            "ok",
            Some(r#"{"timeout":"soon"}"#),
            "invalid_function",
            "timeout",
        ),
        (
            "ok",
            Some(r#"{"memroy_mb":64}"#),
            "invalid_function",
            "memroy_mb",
        ),
        (
            "ok",
            Some(r#"{"routes":["/api/x"]}"#),
            "invalid_function",
            "reserved",
        ),
        ("ok", Some("not json"), "invalid_function", "invalid config"),
    ];
    for (name, cfg, code_want, says) in cases {
        let response = put(&server, name, form(code(), cfg)).await;
        assert_eq!(response.status(), 400, "{name} {cfg:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code_want);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{message:?} should mention {says:?}"
        );
    }
    let no_code = put(&server, "ok", Form::new().text("config", "{}")).await;
    assert_eq!(no_code.status(), 400);
    let not_multipart = server
        .http
        .put(format!("{}/api/v1/functions/ok", server.url))
        .body("raw")
        .send()
        .await
        .unwrap();
    assert_eq!(not_multipart.status(), 400);
    assert_eq!(error_code(not_multipart).await, "invalid_request");
    let bad_query = server
        .get("/api/v1/invocations?limit=lots")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status(), 400);
    assert_eq!(error_code(bad_query).await, "invalid_request");
    assert!(server.client.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_route_belongs_to_one_function_and_delete_frees_it() {
    let server = TestServer::start().await;
    let mut cfg = config();
    cfg.routes = vec!["/echo/*".parse().unwrap()];
    server
        .deploy("shop", test_programs::HTTP_PROBE, cfg.clone())
        .await;
    let code = std::fs::read(test_programs::HELLO).unwrap();
    let err = server
        .client
        .deploy("other", code.clone(), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kumo_api::ClientError::Api { status: 409, code, .. } if code == "conflict"),
        "{err}"
    );
    // A custom route hands the guest the whole path, query included.
    let response = server.get("/echo?q=1").send().await.unwrap();
    assert_eq!(response.headers()["x-probe-path"], "/echo");
    assert_eq!(response.headers()["x-probe-query"], "q=1");

    server.client.delete("shop").await.unwrap();
    let gone = server.get("/echo").send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(gone).await, "function_not_found");
    let again = server
        .http
        .delete(format!("{}/api/v1/functions/shop", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    server.client.deploy("other", code, &cfg).await.unwrap();
}

#[tokio::test]
async fn concurrent_deploys_of_the_same_new_code_all_succeed_and_compile_once() {
    let server = TestServer::start().await;
    let code = std::fs::read(test_programs::HELLO).unwrap();
    let deploys = (0..8).map(|i| {
        let (client, code) = (server.client.clone(), code.clone());
        async move { client.deploy(&format!("h{i}"), code, &config()).await }
    });
    for result in futures::future::join_all(deploys).await {
        assert!(result.is_ok(), "{result:?}");
    }
    // Each concurrent first deploy may compile before the artifact is cached, but a later
    // deploy of the same code compiles nothing.
    let compiled = server.metric("kumo_compilations_total").await;
    assert!((1..=8).contains(&compiled), "{compiled}");
    server.client.deploy("h8", code, &config()).await.unwrap();
    assert_eq!(server.metric("kumo_compilations_total").await, compiled);
    for i in 0..9 {
        let hello = server.get(&format!("/fn/h{i}/Ada")).send().await.unwrap();
        assert_eq!(hello.text().await.unwrap(), "hello, Ada!\n");
    }
}
