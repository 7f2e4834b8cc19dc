//! Instance lifecycle: lazy loading, cold and warm invocations, scale to zero.

use crate::harness::{TestServer, config, request_id};
use std::time::Duration;

#[tokio::test]
async fn deploy_loads_nothing_and_the_first_request_is_cold() {
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    assert_eq!(server.metric("kumo_functions_loaded").await, 0);

    let first = server.get("/fn/probe/echo").send().await.unwrap();
    assert_eq!(first.headers()["x-kumo-cold"], "1");
    let first_id = request_id(&first);
    let second = server.get("/fn/probe/echo").send().await.unwrap();
    assert!(second.headers().get("x-kumo-cold").is_none());
    let second_id = request_id(&second);
    assert_eq!(server.metric("kumo_functions_loaded").await, 1);

    let cold = server.client.invocation(&first_id).await.unwrap();
    assert!(
        cold.cold && cold.init_ms.is_some_and(|ms| ms > 0.0),
        "{cold:?}"
    );
    let warm = server.client.invocation(&second_id).await.unwrap();
    assert!(!warm.cold && warm.init_ms.is_none(), "{warm:?}");

    // A redeploy unloads the old code: the next request is cold again and runs the new code.
    server.deploy("probe", test_programs::HELLO, config()).await;
    let after = server.get("/fn/probe/Ada").send().await.unwrap();
    assert_eq!(after.headers()["x-kumo-cold"], "1");
    assert_eq!(after.text().await.unwrap(), "hello, Ada!\n");
}

#[tokio::test]
async fn idle_functions_scale_to_zero_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--keep-alive", "200ms"]);
    server
        .deploy("a", test_programs::HTTP_PROBE, config())
        .await;
    server
        .deploy("b", test_programs::COMMAND_PROBE, config())
        .await;
    server.get("/fn/a/echo").send().await.unwrap();
    server.client.invoke("b", b"x".to_vec()).await.unwrap();

    let loaded = server.metric_eventually("kumo_functions_loaded", 0).await;
    assert_eq!(
        loaded, 0,
        "idle functions are unloaded after the keep-alive"
    );

    let again = server.get("/fn/a/echo").body("back").send().await.unwrap();
    assert_eq!(again.headers()["x-kumo-cold"], "1");
    assert_eq!(again.text().await.unwrap(), "back");
    assert_eq!(
        server.metric("kumo_compilations_total").await,
        2,
        "reloads compile nothing"
    );
}

#[tokio::test]
async fn provisioned_functions_are_never_cold_nor_unloaded() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--keep-alive", "100ms"];
    let server = TestServer::start_in(dir.path(), &args);
    let mut provisioned = config();
    provisioned.provisioned_concurrency = Some(1);
    server
        .deploy("warm", test_programs::HTTP_PROBE, provisioned)
        .await;
    server.deploy("lazy", test_programs::HELLO, config()).await;

    let first = server.get("/fn/warm/echo").send().await.unwrap();
    assert!(
        first.headers().get("x-kumo-cold").is_none(),
        "loaded at deploy"
    );
    server.get("/fn/lazy/x").send().await.unwrap();
    // The lazy one scales to zero; the provisioned one stays.
    let mut loaded = u64::MAX;
    for _ in 0..100 {
        loaded = server.metric("kumo_functions_loaded").await;
        if loaded == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(loaded, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = server.get("/fn/warm/echo").send().await.unwrap();
    assert!(
        later.headers().get("x-kumo-cold").is_none(),
        "never unloaded"
    );
    server.stop();

    // After a restart it is loaded again before the first request.
    let server = TestServer::start_in(dir.path(), &args);
    assert_eq!(server.metric("kumo_functions_loaded").await, 1);
    let restarted = server.get("/fn/warm/echo").send().await.unwrap();
    assert!(restarted.headers().get("x-kumo-cold").is_none());
}

#[tokio::test]
async fn both_instance_allocators_run_functions() {
    let pooled = TestServer::start().await;
    assert_eq!(pooled.metric("kumo_pooling_allocator").await, 1);
    let dir = tempfile::tempdir().unwrap();
    let on_demand = TestServer::start_in(dir.path(), &["--allocator", "on-demand"]);
    assert_eq!(on_demand.metric("kumo_pooling_allocator").await, 0);
    for server in [&pooled, &on_demand] {
        server.deploy("hello", test_programs::HELLO, config()).await;
        for _ in 0..3 {
            let response = server.get("/fn/hello/Ada").send().await.unwrap();
            assert_eq!(response.text().await.unwrap(), "hello, Ada!\n");
        }
    }
}
