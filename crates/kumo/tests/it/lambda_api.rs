//! The Lambda API (`/2015-03-31`) through the real server, driven by the clients users have:
//! boto3 (aws/boto3_flow.py) and the AWS CLI, both installed by scripts/test.sh, signing with
//! kumo access keys. What they did is then checked through kumo's own API: the records, the
//! queued event and the audit trail.

use crate::harness::{TestServer, config};
use crate::lambda::{is_root, lambda_runtimes, shell_package};
use kumo_api::EventStatus;
use kumo_core::{Outcome, Role};
use std::process::Command;

/// A token of `role` with an access key: (key id, secret).
async fn access_key(server: &TestServer, name: &str, role: Role) -> (String, String) {
    let created = server
        .client
        .create_token_with(name, role, None, None, true)
        .await
        .unwrap();
    let id = created.token.access_key_id.expect("an access key id");
    assert!(id.starts_with("AKKUMO") && id.len() == 20, "{id}");
    (id, created.secret)
}

#[tokio::test]
async fn boto3_manages_and_invokes_functions_signed_with_kumo_access_keys() {
    if !is_root() {
        return;
    }
    let runtimes = lambda_runtimes();
    let server = TestServer::start_with(&["--lambda-runtimes", &runtimes]).await;
    server.deploy("hello", test_programs::HELLO, config()).await;
    let (dev_id, dev_secret) = access_key(&server, "dev", Role::Developer).await;
    let (invoker_id, invoker_secret) = access_key(&server, "caller", Role::Invoker).await;
    let work = tempfile::tempdir().unwrap();
    let app = std::fs::read(test_programs::LAMBDA_PYTHON_APP).unwrap();
    let python_zip = work.path().join("python.zip");
    std::fs::write(&python_zip, test_programs::zip(&[("app.py", &app, 0o644)])).unwrap();
    let shell_zip = work.path().join("shell.zip");
    std::fs::write(&shell_zip, shell_package()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/aws/boto3_flow.py");
    let output = Command::new("python3")
        .arg(script)
        .env("KUMO_URL", &server.url)
        .env("DEV_KEY_ID", &dev_id)
        .env("DEV_SECRET", &dev_secret)
        .env("INVOKER_KEY_ID", &invoker_id)
        .env("INVOKER_SECRET", &invoker_secret)
        .env("PYTHON_ZIP", &python_zip)
        .env("SHELL_ZIP", &shell_zip)
        .output()
        .expect("python3 runs (scripts/test.sh installs boto3)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the boto3 flow failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();

    // boto3's invocation is one of kumo's: recorded, metered, its trigger the invoke API.
    let record = server
        .client
        .invocation(ids["invoked"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.function, "py");
    assert!(record.gb_seconds > 0.0);
    // The Event invocation went through kumo's durable queue.
    let event = server
        .client
        .event(ids["event"].as_str().unwrap(), Some("30s"))
        .await
        .unwrap();
    assert_eq!(event.status, EventStatus::Succeeded);
    // Changes are in the audit trail, with the token that signed them; refusals too.
    let audit = server.client.audit("1h", None, 500).await.unwrap();
    let created = audit
        .iter()
        .find(|e| e.method == "POST" && e.target == "/2015-03-31/functions" && e.status == 201)
        .expect("CreateFunction is audited");
    assert_eq!(created.token.as_deref(), Some("dev"));
    assert!(
        audit.iter().any(|e| e.method == "DELETE"
            && e.status == 403
            && e.token.as_deref() == Some("caller")),
        "a refused delete is audited"
    );
}

#[tokio::test]
async fn the_aws_cli_deploys_and_invokes_with_tail_logs() {
    if !is_root() {
        return;
    }
    let server = TestServer::start().await;
    let (id, secret) = access_key(&server, "cli", Role::Developer).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("fn.zip"), shell_package()).unwrap();
    let aws = |args: &[&str]| {
        let output = Command::new("python3")
            .current_dir(work.path())
            .args(["-m", "awscli", "lambda"])
            .args(args)
            .args(["--endpoint-url", &server.url, "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", &id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", work.path().join("none"))
            .output()
            .expect("the AWS CLI runs (scripts/test.sh installs it)");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status.success(), stdout, stderr)
    };
    let (ok, created, err) = aws(&[
        "create-function",
        "--function-name",
        "sh",
        "--runtime",
        "provided.al2023",
        "--handler",
        "echo",
        "--role",
        "arn:aws:iam::000000000000:role/r",
        "--zip-file",
        "fileb://fn.zip",
    ]);
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["State"], "Active");
    assert_eq!(created["Timeout"], 3, "Lambda's default timeout");

    let (ok, invoked, err) = aws(&[
        "invoke",
        "--function-name",
        "sh",
        "--payload",
        r#"{"from": "cli"}"#,
        "--log-type",
        "Tail",
        "answer.json",
    ]);
    assert!(ok, "{err}");
    let invoked: serde_json::Value = serde_json::from_str(&invoked).unwrap();
    assert_eq!(invoked["StatusCode"], 200);
    assert_eq!(invoked["ExecutedVersion"], "$LATEST");
    use base64::Engine as _;
    let tail = base64::engine::general_purpose::STANDARD
        .decode(invoked["LogResult"].as_str().unwrap())
        .unwrap();
    let tail = String::from_utf8(tail).unwrap();
    assert!(
        tail.contains("START RequestId:") && tail.contains("Init Duration"),
        "{tail}"
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("answer.json")).unwrap()).unwrap();
    assert_eq!(answer["echo"], serde_json::json!({"from": "cli"}));

    // A timeout is the function's error, as Lambda reports it.
    let (ok, _, err) = aws(&[
        "update-function-configuration",
        "--function-name",
        "sh",
        "--timeout",
        "1",
    ]);
    assert!(ok, "{err}");
    let (ok, invoked, err) = aws(&[
        "invoke",
        "--function-name",
        "sh",
        "--payload",
        r#""sleep""#,
        "late.json",
    ]);
    assert!(ok, "{err}");
    let invoked: serde_json::Value = serde_json::from_str(&invoked).unwrap();
    assert_eq!(invoked["FunctionError"], "Unhandled");
    let late: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("late.json")).unwrap()).unwrap();
    assert_eq!(late["errorType"], "Sandbox.Timedout");

    let (ok, _, err) = aws(&["get-function", "--function-name", "missing"]);
    assert!(!ok && err.contains("ResourceNotFoundException"), "{err}");
    let (ok, _, err) = aws(&["delete-function", "--function-name", "sh"]);
    assert!(ok, "{err}");
}

/// Malformed Lambda API requests get AWS's error shape with a 4xx that says why, never a
/// 5xx; nothing is created by them.
#[tokio::test]
async fn malformed_lambda_api_requests_are_refused_in_aws_shape() {
    let server = TestServer::start_with(&["--auth", "none"]).await;
    server.deploy("hello", test_programs::HELLO, config()).await;
    let base = format!("{}/2015-03-31/functions", server.url);
    let http = reqwest::Client::new();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.get(format!("{base}/Bad_Name")),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.get(format!("{base}/%FF")),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.get(format!("{base}/hello?Qualifier=0")),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.get(format!("{base}/hello:live/configuration?Qualifier=other")),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.get(format!("{base}/missing")),
            404,
            "ResourceNotFoundException",
        ),
        (
            http.patch(format!("{base}/hello")),
            404,
            "ResourceNotFoundException",
        ),
        (
            http.post(&base).body("{"),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.post(&base)
                .body(r#"{"FunctionName": "x", "Code": {"ZipFile": "UEsFBg=="}}"#),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.post(&base)
                .body(r#"{"FunctionName": "x", "Runtime": "provided", "Code": {}}"#),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.post(format!("{base}/hello/invocations"))
                .header("x-amz-invocation-type", "Bogus"),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.post(format!("{base}/hello/invocations"))
                .header("x-amz-log-type", "All"),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.post(format!("{base}/hello/invocations"))
                .header("x-amz-client-context", "!!"),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.post(format!("{base}/hello/aliases"))
                .body(r#"{"Name": "Live"}"#),
            400,
            "InvalidParameterValueException",
        ),
        (
            http.put(format!("{base}/hello/configuration"))
                .body(r#"{"MemorySize": 1}"#),
            400,
            "InvalidParameterValueException",
        ),
        // Settings are at most 1 MiB (code and payloads have their own limits).
        (
            http.put(format!("{base}/hello/configuration"))
                .body(vec![b' '; 2 << 20]),
            413,
            "RequestEntityTooLargeException",
        ),
        (
            http.get(format!("{base}?MaxItems=many")),
            400,
            "InvalidParameterValueException",
        ),
    ];
    for (request, status, error_type) in cases {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = http.execute(request).await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(response.headers()["x-amzn-errortype"], error_type, "{what}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(!body["message"].as_str().unwrap().is_empty(), "{what}");
    }
    let functions = server.client.list().await.unwrap();
    assert_eq!(functions.len(), 1, "nothing was created");
    let config = server.client.get("hello").await.unwrap().config;
    assert_eq!(config.memory_mb, 128, "nothing was changed");
}

/// With authentication, a request whose access key kumo does not know is refused before its
/// body is read, whatever its size; so is one that is not signed.
#[tokio::test]
async fn unknown_access_keys_and_unsigned_requests_are_refused_up_front() {
    let server = TestServer::start().await;
    let url = format!("{}/2015-03-31/functions", server.url);
    let forged = format!(
        "AWS4-HMAC-SHA256 Credential=AKKUMOUNKNOWNKEY0000/20261207/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
        "0".repeat(64)
    );
    // Under the bound kumo reads (and drops) from a refused upload, so the client sees the
    // answer rather than a closed connection.
    let big = vec![b'x'; 12 << 20];
    let anonymous = reqwest::Client::new();
    for authorization in [Some(forged.as_str()), None, Some("Bearer nope")] {
        let mut request = anonymous.post(&url).body(big.clone());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{authorization:?}");
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "UnrecognizedClientException"
        );
    }
    assert!(server.client.list().await.unwrap().is_empty());
}
