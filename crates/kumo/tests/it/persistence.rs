//! State survives a restart, and a restart never recompiles.

use crate::harness::{TestServer, config, request_id};

async fn compilations(server: &TestServer) -> u64 {
    server.metric("kumo_compilations_total").await
}

#[tokio::test]
async fn functions_records_and_logs_survive_restart_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    let mut cfg = config();
    cfg.routes = vec!["/greet/*".parse().unwrap()];
    cfg.env.insert("GREETING".into(), "hello again".into());
    server.deploy("hello", test_programs::HELLO, cfg).await;
    server
        .deploy("cmd", test_programs::COMMAND_PROBE, config())
        .await;
    assert_eq!(compilations(&server).await, 2);
    let before = server.get("/greet/Ada").send().await.unwrap();
    let id = request_id(&before);
    assert_eq!(before.text().await.unwrap(), "hello again, Ada!\n");
    server.stop();

    let server = TestServer::start_in(dir.path(), &[]);
    let names: Vec<String> = server
        .client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["cmd", "hello"]);
    let after = server.get("/greet/Bob").send().await.unwrap();
    assert_eq!(after.text().await.unwrap(), "hello again, Bob!\n");
    let echoed = server.client.invoke("cmd", b"x".to_vec()).await.unwrap();
    assert_eq!(&echoed.body[..], b"x");
    assert_eq!(
        compilations(&server).await,
        0,
        "loaded from the compile cache"
    );

    // What was recorded before the restart is still there.
    assert_eq!(
        server.client.invocation(&id).await.unwrap().function,
        "hello"
    );
    let logs = server.client.logs("hello", Some(&id), 10).await.unwrap();
    assert_eq!(logs[0].line, "greeting Ada");
}
