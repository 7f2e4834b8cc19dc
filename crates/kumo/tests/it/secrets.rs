//! Function secrets: set from stdin, given to guests as environment variables, rotated
//! without a redeploy (versions keep the reference), never returned or stored in the clear.

use crate::harness::{TestServer, config, error_code};
use kumo_api::FunctionConfig;
use std::io::Write as _;

fn set_secret(server: &TestServer, name: &str, value: &str) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["secret", "set", name])
        .env("KUMO_SERVER", &server.url)
        .env("KUMO_TOKEN", &server.admin_token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn using(secrets: &[&str]) -> FunctionConfig {
    FunctionConfig {
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        ..config()
    }
}

#[tokio::test]
async fn secrets_reach_guests_rotate_without_a_redeploy_and_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    let first = "postgres://app:first-pw@db/orders";
    assert!(set_secret(&server, "DB_URL", first).starts_with("created"));
    server
        .deploy("probe", test_programs::HTTP_PROBE, using(&["DB_URL"]))
        .await;
    assert_eq!(server.get_text("/fn/probe/env/DB_URL").await, first);

    // Bad names and values are refused, nothing stored: a name that is no variable name, a
    // value over 64 KiB, a value that is not text.
    let put = |name: &str, value: Vec<u8>| {
        server
            .http
            .put(format!("{}/api/v1/secrets/{name}", server.url))
            .body(value)
    };
    let bad_name = put("db-url", b"x".to_vec()).send().await.unwrap();
    assert_eq!(error_code(bad_name).await, "invalid_request");
    let too_big = put("BIG", vec![b'x'; 64 * 1024 + 1]).send().await.unwrap();
    assert_eq!(error_code(too_big).await, "payload_too_large");
    let binary = put("BIN", vec![0xff, 0xfe]).send().await.unwrap();
    assert_eq!(error_code(binary).await, "invalid_request");
    assert_eq!(server.client.secrets().await.unwrap().len(), 1);

    // A deploy naming a secret that is not set is refused.
    let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let refused = server.client.deploy("other", code, &using(&["NOPE"])).await;
    assert!(refused.unwrap_err().to_string().contains("NOPE"));

    // Versions keep the name: a rotated value reaches $LATEST and published versions alike.
    server.client.publish_version("probe", "v1").await.unwrap();
    let second = "postgres://app:second-pw@db/orders";
    assert!(set_secret(&server, "DB_URL", second).starts_with("replaced"));
    assert_eq!(server.get_text("/fn/probe/env/DB_URL").await, second);
    assert_eq!(server.get_text("/fn/probe:1/env/DB_URL").await, second);

    // Listed by name only; the value is in no answer, no file in the clear.
    let listed = server.get_text("/api/v1/secrets").await;
    assert!(
        listed.contains("DB_URL") && !listed.contains("pw@"),
        "{listed}"
    );
    let ls = String::from_utf8(server.cli(&["secret", "ls"]).stdout).unwrap();
    assert!(ls.contains("DB_URL") && !ls.contains("pw@"), "{ls}");
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.path().join("secret-key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for file in ["kumo.db", "kumo.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(9).any(|w| w == b"second-pw"),
            "{file} holds the value"
        );
    }

    // A restart opens them with the same key; another key opens nothing, and says so.
    server.stop();
    let server = TestServer::start_in(dir.path(), &[]);
    assert_eq!(server.get_text("/fn/probe/env/DB_URL").await, second);
    server.stop();
    let other_key = "ab".repeat(32);
    let server = TestServer::start_in_with_env(dir.path(), &[("KUMO_SECRET_KEY", &other_key)]);
    let sealed_elsewhere = server.get("/fn/probe/env/DB_URL").send().await.unwrap();
    assert_eq!(sealed_elsewhere.status(), 502);
    let body: serde_json::Value = sealed_elsewhere.json().await.unwrap();
    assert_eq!(body["error"]["code"], "function_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DB_URL")
    );
    drop(server);

    // Deleted: the function fails, naming what is missing.
    let server = TestServer::start_in(dir.path(), &[]);
    assert!(server.cli(&["secret", "rm", "DB_URL"]).status.success());
    let missing = server.get("/fn/probe/env/DB_URL").send().await.unwrap();
    assert_eq!(error_code(missing).await, "function_error");
}
