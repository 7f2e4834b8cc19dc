//! The OpenAPI document through the real server, and schemathesis against it: every
//! operation with generated requests (valid and not), no 5xx answer, no answer the document
//! does not allow.

use crate::harness::{TestServer, config};
use kumo_api::KvCondition;
use std::process::Command;

#[tokio::test]
async fn the_document_describes_every_endpoint_without_a_token() {
    let server = TestServer::start().await;
    let document: serde_json::Value = reqwest::get(format!("{}/api/v1/openapi.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    // The route table's paths but the document itself.
    assert_eq!(paths.len(), kumo_server::API_PATHS.len() - 1);
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}"));
    let schemes = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["scheme"], "bearer");
}

/// Schemathesis (installed by scripts/test.sh) runs every operation but token revocation
/// (revoking its own token would end the run; the auth tests cover it) with a bounded number
/// of examples and a fixed seed, so a failure replays. `KUMO_FUZZ_EXAMPLES` and
/// `KUMO_FUZZ_SEED` run it wider or elsewhere on demand.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let server = TestServer::start().await;
    // What the document's examples name exists, so requests built from them reach past
    // "not found" into the handlers (versions, aliases, logs, invocations, keys, objects).
    server.deploy("hello", test_programs::HELLO, config()).await;
    server.client.publish_version("hello", "").await.unwrap();
    server
        .client
        .set_alias("hello", "live", 1, None)
        .await
        .unwrap();
    server.client.invoke("hello", Vec::new()).await.unwrap();
    let c = &server.client;
    c.kv_put("bucket", "key", b"v".to_vec(), KvCondition::Always)
        .await
        .unwrap();
    let object = server
        .http
        .put(format!("{}/api/v1/objects/bucket/key", server.url));
    assert!(object.body("o").send().await.unwrap().status().is_success());
    c.set_secret("DB_URL", b"x".to_vec()).await.unwrap();
    let examples = std::env::var("KUMO_FUZZ_EXAMPLES").unwrap_or_else(|_| "10".into());
    let seed = std::env::var("KUMO_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let work = tempfile::tempdir().unwrap();
    // As a module of the Python that has it: its script may not be on PATH.
    let output = Command::new("python3")
        .current_dir(work.path())
        .args(["-m", "schemathesis.cli", "run", &format!("{}/api/v1/openapi.json", server.url)])
        .args(["-H", &format!("Authorization: Bearer {}", server.admin_token)])
        .args(["--max-examples", &examples, "--seed", &seed, "--workers", "1"])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        ])
        .args(["--exclude-operation-id", "tokens_revoke", "--no-color"])
        .output()
        .expect("schemathesis is installed (scripts/test.sh installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("Tested: 53"), "{report}");
}
