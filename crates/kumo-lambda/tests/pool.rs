//! A `provided` function (shell and curl) through the environment pool: warm reuse, Lambda's
//! log lines, function errors, exits, timeouts, out of memory and init errors. Needs root.

use bytes::Bytes;
use kumo_core::{ErrorKind, LambdaRuntimeName};
use kumo_lambda::{Function, Invocation, IsolationMode, LambdaRuntime, Pool};
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

const HELPER: &str = env!("CARGO_BIN_EXE_kumo-lambda-test-helper");

fn pool(data: &std::path::Path, handler: &str, memory_mb: u32) -> Pool {
    let runtime = LambdaRuntime::new(data, HELPER.into(), IsolationMode::Strict, None)
        .expect("every layer is here");
    let package = data.join("package");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::set_permissions(&package, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bootstrap = package.join("bootstrap");
    std::fs::copy(test_programs::LAMBDA_SHELL_BOOTSTRAP, &bootstrap).unwrap();
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    Pool::new(
        runtime,
        Function {
            name: "shell".into(),
            identity: "shell".into(),
            version: "$LATEST".into(),
            memory_mb,
            runtime: LambdaRuntimeName::Provided,
            handler: Some(handler.into()),
            package,
            // Its own variables, a default it may override, and a reserved one it may not.
            env: vec![
                ("GREETING".into(), "hi".into()),
                ("TZ".into(), "Europe/Paris".into()),
                ("AWS_LAMBDA_FUNCTION_NAME".into(), "impostor".into()),
            ],
            region: "us-east-1".into(),
            tmp_bytes: 16 << 20,
            egress: None,
        },
    )
}

fn invocation(id: &str, payload: &'static str, timeout_ms: u64) -> Invocation {
    Invocation {
        request_id: id.into(),
        payload: Bytes::from_static(payload.as_bytes()),
        timeout: Duration::from_millis(timeout_ms),
        trace_id: None,
        client_context: None,
        memory: None,
    }
}

fn data_dir() -> Option<tempfile::TempDir> {
    if !nix_is_root() {
        eprintln!("skipped: sandboxes need root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(dir)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test]
async fn invocations_reuse_a_warm_environment_and_log_like_lambda() {
    let Some(data) = data_dir() else { return };
    let pool = pool(data.path(), "echo", 128);
    let first = pool
        .invoke(invocation("r1", r#"{"n": 1}"#, 5000), pool.check_out())
        .await;
    let body = first
        .result
        .as_ref()
        .map_err(|f| f.message.clone())
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(answer["echo"]["n"], 1);
    assert_eq!(answer["fn"], "shell");
    assert_eq!(answer["greeting"], "hi");
    assert_eq!(answer["tz"], "Europe/Paris");
    assert_eq!(answer["mem"], "128");
    assert!(answer["deadline"].as_str().unwrap().parse::<i64>().unwrap() > kumo_core::now_ms());
    assert!(first.init.is_some(), "a cold start");
    assert_eq!(first.logs[0], "init done", "{:?}", first.logs);
    assert!(first.logs[1].starts_with("START RequestId: r1 Version: $LATEST"));
    assert!(
        first.logs.iter().any(|l| l == "handling r1"),
        "{:?}",
        first.logs
    );
    let report = first.logs.last().unwrap();
    assert!(
        report.starts_with("REPORT RequestId: r1\tDuration: "),
        "{report}"
    );
    assert!(report.contains("Memory Size: 128 MB") && report.contains("Max Memory Used: "));
    assert!(report.contains("Init Duration: "), "{report}");
    assert_eq!(pool.idle_count(), 1);

    let second = pool
        .invoke(invocation("r2", r#"{"n": 2}"#, 5000), pool.check_out())
        .await;
    assert!(second.result.is_ok());
    assert!(second.init.is_none(), "the warm environment was reused");
    assert!(!second.logs.last().unwrap().contains("Init Duration"));

    // A function error is an answer: the environment stays.
    let failed = pool
        .invoke(invocation("r3", r#""fail""#, 5000), pool.check_out())
        .await;
    let failure = failed.result.unwrap_err();
    assert_eq!(failure.kind, ErrorKind::FunctionError);
    assert_eq!(failure.message, "ValueError: it failed");
    assert!(
        failure
            .detail
            .unwrap()
            .contains("\"errorType\":\"ValueError\"")
    );
    assert_eq!(pool.idle_count(), 1);

    // An exit loses the environment; the next invocation starts a new one.
    let exited = pool
        .invoke(invocation("r4", r#""exit""#, 5000), pool.check_out())
        .await;
    let failure = exited.result.unwrap_err();
    assert_eq!(
        failure.message,
        "Runtime.ExitError: the runtime exited with status 3"
    );
    assert_eq!(pool.idle_count(), 0);
    let again = pool
        .invoke(invocation("r5", "{}", 5000), pool.check_out())
        .await;
    assert!(again.result.is_ok() && again.init.is_some());

    // A response over Lambda's 6 MB: the runtime gets 413, the invocation fails.
    let big = pool
        .invoke(invocation("r6", r#""big""#, 10_000), pool.check_out())
        .await;
    let failure = big.result.unwrap_err();
    assert!(
        failure.message.contains("more than 6291456 bytes"),
        "{}",
        failure.message
    );
    assert!(
        big.logs.iter().any(|l| l.contains("RequestEntityTooLarge")),
        "{:?}",
        big.logs
    );
}

#[tokio::test]
async fn a_timeout_kills_the_environment_and_memory_over_the_limit_is_out_of_memory() {
    let Some(data) = data_dir() else { return };
    let pool = pool(data.path(), "echo", 64);
    let slow = pool
        .invoke(invocation("t1", r#""sleep""#, 300), pool.check_out())
        .await;
    assert_eq!(slow.result.unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(pool.idle_count(), 0);
    let hungry = pool
        .invoke(invocation("m1", r#""oom""#, 10_000), pool.check_out())
        .await;
    let failure = hungry.result.unwrap_err();
    assert_eq!(failure.kind, ErrorKind::OutOfMemory, "{}", failure.message);
    assert!(
        pool.invoke(invocation("ok", "{}", 5000), pool.check_out())
            .await
            .result
            .is_ok()
    );
}

#[tokio::test]
async fn an_init_error_fails_the_invocation_and_is_reported() {
    let Some(data) = data_dir() else { return };
    let pool = pool(data.path(), "init-error", 128);
    let outcome = pool
        .invoke(invocation("i1", "{}", 5000), pool.check_out())
        .await;
    let failure = outcome.result.unwrap_err();
    assert_eq!(
        failure.message,
        "Runtime.InitError: InitFailed: cannot init"
    );
    assert!(
        outcome.logs.iter().any(|l| l.starts_with("INIT_REPORT")),
        "{:?}",
        outcome.logs
    );
    assert_eq!(pool.idle_count(), 0);
}

/// Between invocations an environment is frozen: a background process of the function makes
/// no progress while it waits (it ticks 20 times a second when it runs).
#[tokio::test]
async fn an_idle_environment_is_frozen_until_its_next_invocation() {
    let Some(data) = data_dir() else { return };
    let pool = pool(data.path(), "ticker", 128);
    let ticks = |outcome: kumo_lambda::Outcome| {
        let body = outcome.result.map_err(|f| f.message).unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["ticks"]
            .as_u64()
            .unwrap()
    };
    let before = ticks(
        pool.invoke(invocation("t1", r#""ticks""#, 5000), pool.check_out())
            .await,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = ticks(
        pool.invoke(invocation("t2", r#""ticks""#, 5000), pool.check_out())
            .await,
    );
    assert!(
        after - before < 10,
        "{before} then {after}: the environment ran while idle"
    );
}

/// An init that does not finish within Lambda's 10 s fails the invocation; the environment
/// is gone and the next invocation starts a new one.
#[tokio::test]
async fn an_init_that_hangs_times_out() {
    let Some(data) = data_dir() else { return };
    let pool = pool(data.path(), "init-hang", 128);
    let outcome = pool
        .invoke(invocation("h1", "{}", 5000), pool.check_out())
        .await;
    let failure = outcome.result.unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Timeout);
    assert!(
        failure.message.starts_with("Runtime.InitTimeout"),
        "{}",
        failure.message
    );
    assert!(outcome.init.unwrap() >= Duration::from_secs(10));
    assert_eq!(pool.idle_count(), 0);
}
