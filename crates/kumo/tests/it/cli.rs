//! The CLI as a user types it: deploy (file and manifest), invoke, ls, logs, invocations, rm.

use crate::harness::TestServer;

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "CLI failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn deploy_invoke_inspect_and_remove() {
    let server = TestServer::start().await;
    let deployed = server.cli(&[
        "deploy",
        test_programs::HELLO,
        "--name",
        "hello",
        "--memory",
        "64",
        "--timeout",
        "5s",
        "--env",
        "GREETING=hi",
        "--route",
        "/hello/*",
    ]);
    assert!(stdout(&deployed).starts_with("created hello (wasi-http"));
    let record = server.client.get("hello").await.unwrap();
    assert_eq!(record.config.memory_mb, 64);
    assert_eq!(record.config.routes, ["/hello/*"]);
    let routed = server.get_text("/hello/Ada").await;
    assert_eq!(routed, "hi, Ada!\n");

    assert_eq!(
        stdout(&server.cli(&["invoke", "hello", "--data", "x"])),
        "hi, world!\n"
    );
    let payload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(payload.path(), "from a file").unwrap();
    let cmd = server.cli(&["deploy", test_programs::COMMAND_PROBE, "--name", "cmd"]);
    stdout(&cmd);
    let at = format!("@{}", payload.path().display());
    assert_eq!(
        stdout(&server.cli(&["invoke", "cmd", "--data", &at])),
        "from a file"
    );
    let failed = server.cli(&["invoke", "cmd", "--data", "exit:2"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("function_error"));

    let ls = stdout(&server.cli(&["ls"]));
    assert!(
        ls.lines()
            .any(|l| l.starts_with("hello") && l.contains("wasi-http") && l.contains("64MB")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with("cmd") && l.contains("wasi-command")),
        "{ls}"
    );

    let invocations = stdout(&server.cli(&["invocations", "cmd"]));
    let rows: Vec<&str> = invocations.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{invocations}");
    assert!(
        rows[0].ends_with("error") && rows[1].ends_with("ok"),
        "{invocations}"
    );
    let failed_id = rows[0].split_whitespace().next().unwrap();
    let logs = stdout(&server.cli(&["logs", "cmd", "--request-id", failed_id]));
    assert!(
        logs.contains("command got 6 bytes") && logs.contains(failed_id),
        "{logs}"
    );
    assert!(
        !logs.contains("command got 11 bytes"),
        "only that request: {logs}"
    );

    assert_eq!(stdout(&server.cli(&["rm", "cmd"])), "deleted cmd\n");
    let missing = server.cli(&["rm", "cmd"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("function_not_found"));
    let bad = server.cli(&[
        "deploy",
        test_programs::HELLO,
        "--name",
        "x",
        "--memory",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("memory_mb"));
}

#[tokio::test]
async fn deploy_reads_the_manifest_and_runs_build_commands() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"
        [[function]]
        name = "hello"
        build = "echo built > build-ran.txt"
        code = "{hello}"
        timeout = "2s"
        routes = ["/hi/*"]
        env = {{ GREETING = "yo" }}

        [[function]]
        name = "wc"
        code = "{wc}"
        memory_mb = 32
        "#,
        hello = test_programs::HELLO,
        wc = test_programs::WORDCOUNT,
    );
    std::fs::write(dir.path().join("kumo.toml"), manifest).unwrap();
    let file = dir.path().join("kumo.toml");
    let out = stdout(&server.cli(&["deploy", "-f", file.to_str().unwrap()]));
    assert!(
        out.contains("created hello") && out.contains("created wc"),
        "{out}"
    );
    assert!(
        dir.path().join("build-ran.txt").exists(),
        "the build ran in the manifest's folder"
    );
    assert_eq!(server.get_text("/hi/Ada").await, "yo, Ada!\n");
    assert_eq!(server.client.get("wc").await.unwrap().config.memory_mb, 32);

    std::fs::write(
        &file,
        "[[function]]\nname = \"a\"\ncode = \"x\"\ntimeout = \"never\"\n",
    )
    .unwrap();
    let bad = server.cli(&["deploy", "-f", file.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("timeout"));
}

#[tokio::test]
async fn up_serves_and_deploys_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("kumo.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[function]]\nname = \"hello\"\ncode = \"{}\"\nroutes = [\"/hello/*\"]\nenv = {{ GREETING = \"up\" }}\n",
            test_programs::HELLO
        ),
    )
    .unwrap();
    let server = TestServer::up(&dir.path().join("data"), &manifest);
    let body = server.get_text("/hello/Ada").await;
    assert_eq!(body, "up, Ada!\n");
    server.stop();
}

#[tokio::test]
async fn deploy_sets_the_event_and_grant_options() {
    let server = TestServer::start().await;
    let out = server.cli(&[
        "deploy",
        test_programs::EVENT_PROBE,
        "--name",
        "ev",
        "--schedule",
        "rate(1 hour)",
        "--topic",
        "orders",
        "--max-retries",
        "1",
        "--max-event-age",
        "10m",
        "--on-failure",
        "alerts",
        "--allow-outbound",
        "127.0.0.1:9",
        "--kv",
        "orders",
    ]);
    assert!(out.status.success(), "{out:?}");
    let config = server.client.get("ev").await.unwrap().config;
    assert_eq!(config.schedule.unwrap(), "rate(1 hour)");
    assert_eq!(config.topics, ["orders"]);
    assert_eq!(config.max_retries, 1);
    assert_eq!(config.max_event_age, std::time::Duration::from_secs(600));
    assert_eq!(config.on_failure.unwrap(), "alerts");
    assert_eq!(config.allow_outbound, ["127.0.0.1:9"]);
    assert_eq!(config.kv, ["orders"]);
    let triggers = stdout(&server.cli(&["triggers"]));
    assert!(
        triggers.contains("schedule") && triggers.contains("rate(1 hour)"),
        "{triggers}"
    );
    assert!(
        triggers.contains("topic") && triggers.contains("orders"),
        "{triggers}"
    );
    let bad = server.cli(&[
        "deploy",
        test_programs::EVENT_PROBE,
        "--name",
        "ev",
        "--schedule",
        "often",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("schedule"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_logs_are_json_lines_with_log_format_json() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("kumo listening on ").unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let client = kumo_api::Client::with_token(url, token.trim()).unwrap();
    let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    client
        .deploy("probe", code, &crate::harness::config())
        .await
        .unwrap();
    child.kill().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let deployed = lines
        .iter()
        .find(|l| l["message"] == "deployed")
        .unwrap_or_else(|| panic!("no deploy line in {stderr}"));
    assert_eq!(deployed["level"], "INFO");
    assert_eq!(deployed["function"], "probe");
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_lines_matching_the_filters() {
    use std::io::{BufRead, BufReader};
    let server = TestServer::start().await;
    server
        .deploy("probe", test_programs::HTTP_PROBE, crate::harness::config())
        .await;
    server.get("/fn/probe/log").send().await.unwrap(); // before following: the backlog
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["--server", &server.url, "logs", "probe", "--follow"])
        .args(["--grep", "stderr 2", "--since", "1h"])
        .env("KUMO_TOKEN", &server.admin_token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    let backlog = next();
    assert!(backlog.ends_with("stderr to stderr 2"), "{backlog}");

    // New invocations' lines arrive live, filtered, with their request and trace ids.
    let response = server.get("/fn/probe/log").send().await.unwrap();
    let request_id = crate::harness::request_id(&response);
    let live = next();
    assert!(live.contains(&request_id), "{live}");
    assert!(
        live.contains(" trace=") && live.ends_with("to stderr 2"),
        "{live}"
    );
    let record = server.client.invocation(&request_id).await.unwrap();
    assert!(
        live.contains(&format!("trace={}", record.trace_id)),
        "{live}"
    );
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(600))
            .is_err(),
        "only matching lines"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();

    // Without --follow, the same filters apply to what is stored.
    let since = server
        .get("/api/v1/functions/probe/logs?grep=stdout&since=1h")
        .send()
        .await
        .unwrap();
    let lines: Vec<kumo_api::LogRecord> = since.json().await.unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let bad = server
        .get("/api/v1/functions/probe/logs?since=soon")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_rates_errors_and_what_is_running() {
    let server = TestServer::start().await;
    let slow = kumo_api::FunctionConfig {
        timeout: std::time::Duration::from_secs(3),
        ..crate::harness::config()
    };
    server
        .deploy("probe", test_programs::HTTP_PROBE, slow)
        .await;
    for _ in 0..4 {
        server.get("/fn/probe/echo").send().await.unwrap();
    }
    server.get("/fn/probe/panic").send().await.unwrap();
    // One invocation still running while the frame is taken.
    let looping = tokio::spawn(server.get("/fn/probe/loop").send());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (url, token) = (server.url.clone(), server.admin_token.clone());
    let frame = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["--server", &url, "top", "--once", "--window", "1m"])
            .env("KUMO_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let frame = stdout(&frame);
    let row = frame
        .lines()
        .find(|l| l.starts_with("probe "))
        .unwrap_or_else(|| panic!("{frame}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    // FUNCTION REQ/S ERRORS THROTTLES P50 P99 RUNNING: 5 finished in a 60 s window.
    assert_eq!(columns[1], "0.1", "{frame}");
    assert_eq!(
        (columns[2], columns[3], columns[6]),
        ("1", "0", "1"),
        "{frame}"
    );
    let _ = looping.await;
}
