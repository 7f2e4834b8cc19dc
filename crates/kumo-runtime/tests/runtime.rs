//! The runtime on its own: detection, the compile cache, and the outcome of each guest behaviour.
//! (The server's end-to-end tests cover the same paths through HTTP.)

use bytes::Bytes;
use kumo_core::{ErrorKind, FunctionKind};
use kumo_runtime::{Execution, Invocation, Loaded, Runtime, RuntimeConfig};
use std::path::Path;
use std::time::Duration;

fn invocation(path: &str, body: &str) -> Invocation {
    Invocation {
        method: http::Method::POST,
        path_and_query: path.to_string(),
        headers: http::HeaderMap::new(),
        traceparent: None,
        body: Bytes::from(body.to_string()),
        env: vec![("GREETING".into(), "hi".into())].into(),
        invocation_env: Vec::new(),
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
        allow_outbound: Vec::new().into(),
        namespace: kumo_core::DEFAULT_NAMESPACE.into(),
        kv: Default::default(),
        objects: Vec::new().into(),
        call_depth: 0,
    }
}

/// Prepares the code at `path`, cached under its content hash as the server does.
fn prepare(rt: &Runtime, path: &str) -> Loaded {
    let code = std::fs::read(path).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&code));
    rt.prepare(&sha, &code).unwrap()
}

async fn run(rt: &Runtime, loaded: &Loaded, inv: Invocation) -> Execution {
    rt.execute(loaded, None, inv).await
}

#[tokio::test]
async fn kinds_are_detected_and_guests_run() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
    let http = prepare(&rt, test_programs::HTTP_PROBE);
    assert_eq!(http.kind(), FunctionKind::WasiHttp);
    let out = run(&rt, &http, invocation("/env/GREETING", "")).await;
    assert_eq!(out.result.unwrap().body, "hi");

    let cmd = prepare(&rt, test_programs::COMMAND_PROBE);
    assert_eq!(cmd.kind(), FunctionKind::WasiCommand);
    let out = run(&rt, &cmd, invocation("/", "ping")).await;
    assert_eq!(out.result.unwrap().body, "ping");
    assert!(out.logs.iter().any(|l| l.line == "command got 4 bytes"));
}

#[tokio::test]
async fn limits_and_failures_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
    let http = prepare(&rt, test_programs::HTTP_PROBE);
    let cmd = prepare(&rt, test_programs::COMMAND_PROBE);
    let mut short = invocation("/loop", "loop");
    short.timeout = Duration::from_millis(200);
    let kind = |e: Execution| e.result.unwrap_err().kind;
    assert_eq!(kind(run(&rt, &http, short).await), ErrorKind::Timeout);
    assert_eq!(
        kind(run(&rt, &http, invocation("/oom", "")).await),
        ErrorKind::OutOfMemory
    );
    assert_eq!(
        kind(run(&rt, &cmd, invocation("/", "oom")).await),
        ErrorKind::OutOfMemory
    );
    assert_eq!(
        kind(run(&rt, &http, invocation("/panic", "")).await),
        ErrorKind::FunctionError
    );
    assert_eq!(
        kind(run(&rt, &cmd, invocation("/", "exit:3")).await),
        ErrorKind::FunctionError
    );
    assert!(
        run(&rt, &cmd, invocation("/", "exit:0"))
            .await
            .result
            .is_ok()
    );
    let no_response = prepare(&rt, test_programs::NO_RESPONSE);
    assert_eq!(
        kind(run(&rt, &no_response, invocation("/", "")).await),
        ErrorKind::FunctionError
    );
}

#[tokio::test]
async fn cached_artifacts_are_not_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let code = std::fs::read(test_programs::WORDCOUNT).unwrap();
    let rt = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
    rt.prepare("wc", &code).unwrap();
    assert_eq!(rt.compilations(), 1);
    // A second deploy of the same code (another name, a config change) compiles nothing.
    rt.prepare("wc", &code).unwrap();
    assert_eq!(rt.compilations(), 1);
    let again = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
    let loaded = again.load("wc", Path::new("/nonexistent")).unwrap();
    assert_eq!(again.compilations(), 0);
    let out = run(&again, &loaded, invocation("/", "a b\nc")).await;
    assert_eq!(
        out.result.unwrap().body,
        r#"{"lines":2,"words":3,"bytes":5}"#.to_owned() + "\n"
    );
}

/// Polls of `fut` until it completes.
async fn polls_until_done<F: std::future::Future>(fut: F) -> (F::Output, u32) {
    let mut fut = std::pin::pin!(fut);
    let mut polls = 0;
    let out = std::future::poll_fn(|cx| {
        polls += 1;
        fut.as_mut().poll(cx)
    })
    .await;
    (out, polls)
}

#[tokio::test]
async fn a_warm_instance_does_not_yield_for_the_ticks_it_sat_idle() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
    let http = prepare(&rt, test_programs::HTTP_PROBE);
    let warm = rt.warm_pool(1000);
    // A short request on an instance idle for several epoch ticks runs to its end in one poll
    // (it yields only if a tick falls while it runs, so a few tries allow for a slow one).
    let mut single_poll_runs = 0;
    for _ in 0..10 {
        let (out, polls) =
            polls_until_done(rt.execute(&http, Some(&warm), invocation("/echo", "x"))).await;
        assert_eq!(out.result.unwrap().body, "x");
        assert_eq!(warm.len(), 1, "the instance went back to the pool");
        single_poll_runs += u32::from(polls == 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        single_poll_runs >= 5,
        "{single_poll_runs} of 10 ran in one poll"
    );
}
