//! Tokens and roles through the real server: who may do what, refusals, revocation and
//! expiry, token-only functions, the CLI's credentials, `--auth none` on loopback only, and
//! secrets that never reach logs or the database.

use crate::harness::{TestServer, authorized, config, error_code};
use kumo_api::{FunctionConfig, Role};
use std::time::{Duration, Instant};

async fn token(server: &TestServer, name: &str, role: Role) -> reqwest::Client {
    let created = server
        .client
        .create_token(name, role, None, None)
        .await
        .unwrap();
    assert!(created.secret.starts_with("kumo_"));
    authorized(&created.secret)
}

#[tokio::test]
async fn the_first_start_writes_an_admin_token_only_its_owner_may_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    let file = dir.path().join("admin-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let listed = server.client.tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].role),
        ("admin", Role::Admin)
    );
    // A restart keeps it and makes no second one.
    let secret = server.admin_token.clone();
    server.stop();
    let server = TestServer::start_in(dir.path(), &[]);
    assert_eq!(server.admin_token, secret);
    assert_eq!(server.client.tokens().await.unwrap().len(), 1);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_and_public_paths_stay_open() {
    let server = TestServer::start().await;
    server.deploy("hello", test_programs::HELLO, config()).await;
    let anonymous = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.url);
    for path in ["/api/v1/functions", "/metrics", "/api/v1/tokens"] {
        let refused = anonymous.get(url(path)).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_code(refused).await, "unauthorized");
    }
    let forged =
        authorized("kumo_0000000000000000000000000000000000000000000000000000000000000000");
    let refused = forged.get(url("/api/v1/functions")).send().await.unwrap();
    assert_eq!(error_code(refused).await, "unauthorized");
    // Counted (this scrape itself has the admin token).
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("kumo_auth_refusals_total{code=\"unauthorized\"} 4"),
        "{metrics}"
    );
    // Health and public functions need nothing.
    assert_eq!(
        anonymous
            .get(url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        anonymous
            .get(url("/fn/hello/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn each_role_may_do_what_it_is_for_and_no_more() {
    let server = TestServer::start().await;
    server.deploy("hello", test_programs::HELLO, config()).await;
    let submitted: serde_json::Value = server
        .post("/api/v1/functions/hello/invoke?mode=async")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = submitted["id"].as_str().unwrap().to_string();
    let code = std::fs::read(test_programs::HELLO).unwrap();
    let url = |path: &str| format!("{}{path}", server.url);
    let developer = token(&server, "dev", Role::Developer).await;
    let invoker = token(&server, "inv", Role::Invoker).await;
    let viewer = token(&server, "view", Role::Viewer).await;

    // What each request needs, and the answer each role gets: allowed or 403.
    let deploy = |client: &reqwest::Client| {
        let form = reqwest::multipart::Form::new()
            .part("code", reqwest::multipart::Part::bytes(code.clone()));
        client.put(url("/api/v1/functions/other")).multipart(form)
    };
    type Request<'a> = Box<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + 'a>;
    let requests: Vec<(&str, Request)> = vec![
        ("list", Box::new(|c| c.get(url("/api/v1/functions")))),
        ("deploy", Box::new(deploy)),
        (
            "invoke",
            Box::new(|c| c.post(url("/api/v1/functions/hello/invoke"))),
        ),
        (
            "status",
            Box::new(|c| c.get(url(&format!("/api/v1/invocations/{event}")))),
        ),
        (
            "kv write",
            Box::new(|c| c.put(url("/api/v1/kv/b/k")).body("v")),
        ),
        ("tokens", Box::new(|c| c.get(url("/api/v1/tokens")))),
        ("metrics", Box::new(|c| c.get(url("/metrics")))),
    ];
    let expected = [
        (
            "developer",
            &developer,
            [true, true, true, true, true, false, true],
        ),
        (
            "invoker",
            &invoker,
            [false, false, true, true, false, false, true],
        ),
        (
            "viewer",
            &viewer,
            [true, false, false, true, false, false, true],
        ),
    ];
    for (role, client, allowed) in expected {
        for ((what, request), allowed) in requests.iter().zip(allowed) {
            let response = request(client).send().await.unwrap();
            if allowed {
                assert!(
                    response.status().is_success(),
                    "{role} {what}: {}",
                    response.status()
                );
            } else {
                assert_eq!(response.status(), 403, "{role} {what}");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "forbidden");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(role),
                    "the refusal names the role: {message}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_revoked_or_expired_token_is_refused_on_its_next_request() {
    let server = TestServer::start().await;
    let ci = token(&server, "ci", Role::Developer).await;
    let url = format!("{}/api/v1/functions", server.url);
    assert_eq!(ci.get(&url).send().await.unwrap().status(), 200);
    server.client.revoke_token("ci").await.unwrap();
    assert_eq!(ci.get(&url).send().await.unwrap().status(), 401);
    let gone = server.client.revoke_token("ci").await.unwrap_err();
    assert!(gone.to_string().contains("not_found"), "{gone}");

    let brief = server
        .client
        .create_token("brief", Role::Viewer, None, Some("3s"))
        .await
        .unwrap();
    let brief = authorized(&brief.secret);
    assert_eq!(brief.get(&url).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(brief.get(&url).send().await.unwrap().status(), 401);
    // Names are checked, and taken once.
    let bad = server
        .client
        .create_token("Bad Name", Role::Viewer, None, None)
        .await;
    assert!(bad.unwrap_err().to_string().contains("invalid_request"));
    let taken = server
        .client
        .create_token("brief", Role::Admin, None, None)
        .await;
    assert!(taken.unwrap_err().to_string().contains("conflict"));
}

#[tokio::test]
async fn a_token_function_needs_a_token_that_may_invoke_and_its_guest_never_sees_it() {
    let server = TestServer::start().await;
    let guarded = FunctionConfig {
        auth: kumo_core::FunctionAuth::Token,
        ..config()
    };
    server
        .deploy("guarded", test_programs::HTTP_PROBE, guarded)
        .await;
    let path = format!("{}/fn/guarded/echo?header=authorization", server.url);
    let anonymous = reqwest::Client::new().get(&path).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("x-kumo-request-id"));
    assert_eq!(error_code(anonymous).await, "unauthorized");
    // A refused caller does not even make kumo load the function.
    assert_eq!(server.metric("kumo_functions_loaded").await, 0);
    let viewer = token(&server, "view", Role::Viewer).await;
    let refused = viewer.get(&path).send().await.unwrap();
    assert_eq!(error_code(refused).await, "forbidden");
    let invoker = token(&server, "inv", Role::Invoker).await;
    let served = invoker.get(&path).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["x-probe-header"],
        "",
        "the guest saw the token"
    );
    // No record for a refused caller: only the one invocation that ran.
    let records = server
        .client
        .invocations(Some("guarded"), 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_slowed_down() {
    let server = TestServer::start().await;
    let forged = authorized("kumo_forged");
    let url = format!("{}/api/v1/functions", server.url);
    for _ in 0..9 {
        assert_eq!(forged.get(&url).send().await.unwrap().status(), 401);
    }
    let started = Instant::now();
    assert_eq!(forged.get(&url).send().await.unwrap().status(), 401);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the tenth failure is held back"
    );
    // A valid token from the same address is not held back.
    let started = Instant::now();
    assert_eq!(
        server
            .get("/api/v1/functions")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(started.elapsed() < Duration::from_millis(900));
    // A token-only function counts and holds back the same way.
    let guarded = FunctionConfig {
        auth: kumo_core::FunctionAuth::Token,
        ..config()
    };
    server
        .deploy("guarded", test_programs::HELLO, guarded)
        .await;
    let started = Instant::now();
    let refused = forged
        .get(format!("{}/fn/guarded/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held back on the data plane too"
    );
}

#[tokio::test]
async fn the_cli_creates_lists_and_revokes_tokens_and_logs_in() {
    let server = TestServer::start().await;
    let created = server.cli(&[
        "token",
        "create",
        "ci",
        "--role",
        "developer",
        "--expires",
        "30d",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let stdout = String::from_utf8(created.stdout).unwrap();
    let secret = stdout.lines().last().unwrap().to_string();
    assert!(
        secret.starts_with("kumo_") && !secret.contains(' '),
        "{stdout}"
    );
    let listed = String::from_utf8(server.cli(&["token", "ls"]).stdout).unwrap();
    assert!(
        listed.contains("ci") && listed.contains("developer"),
        "{listed}"
    );
    assert!(!listed.contains(&secret) && !listed.contains(&server.admin_token));

    // `kumo login` stores the token for the server, readable by its owner only; later
    // commands use it.
    let config = tempfile::tempdir().unwrap();
    let kumo = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"));
        command
            .args(args)
            .env("KUMO_SERVER", &server.url)
            .env("KUMO_CONFIG_DIR", config.path())
            .env_remove("KUMO_TOKEN");
        if let Some(token) = token {
            command.env("KUMO_TOKEN", token);
        }
        command.output().unwrap()
    };
    assert!(!kumo(&["ls"], None).status.success(), "no credentials yet");
    let login = kumo(&["login"], Some(&secret));
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    use std::os::unix::fs::PermissionsExt as _;
    let file = config.path().join("credentials.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(kumo(&["ls"], None).status.success());
    assert!(!kumo(&["login"], Some("kumo_wrong")).status.success());

    assert!(server.cli(&["token", "revoke", "ci"]).status.success());
    let after = kumo(&["ls"], None);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("unauthorized"));
}

#[tokio::test]
async fn auth_none_is_taken_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args([
            "serve",
            "--auth",
            "none",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    let server = TestServer::start_with(&["--auth", "none"]).await;
    assert!(
        server.admin_token.is_empty(),
        "no token is made without auth"
    );
    let open = reqwest::Client::new()
        .get(format!("{}/api/v1/functions", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
}

#[tokio::test]
async fn token_secrets_never_reach_the_log_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let url = first
        .trim()
        .strip_prefix("kumo listening on ")
        .unwrap()
        .to_string();
    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let admin = admin.trim();
    let client = kumo_api::Client::with_token(&url, admin).unwrap();
    let guarded = FunctionConfig {
        auth: kumo_core::FunctionAuth::Token,
        ..config()
    };
    let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    client.deploy("guarded", code, &guarded).await.unwrap();
    let made = client
        .create_token("ci", Role::Invoker, None, None)
        .await
        .unwrap();
    let ci = authorized(&made.secret);
    // Used where it is taken, where it is refused, and in a function's request.
    let _ = ci
        .get(format!("{url}/fn/guarded/log"))
        .send()
        .await
        .unwrap();
    let _ = ci
        .get(format!("{url}/api/v1/functions"))
        .send()
        .await
        .unwrap();
    let _ = ci
        .post(format!("{url}/api/v1/functions/guarded/invoke"))
        .send()
        .await
        .unwrap();
    client.revoke_token("ci").await.unwrap();
    let _ = ci
        .get(format!("{url}/fn/guarded/log"))
        .send()
        .await
        .unwrap();
    let _ = client.invocations(Some("guarded"), 10).await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("admin-token"), "the log names the file");
    for secret in [admin, made.secret.as_str()] {
        assert!(!text.contains(secret), "a secret is in the server log");
        let hex = &secret["kumo_".len()..];
        for file in ["kumo.db", "kumo.db-wal"] {
            let bytes = std::fs::read(data.join(file)).unwrap_or_default();
            let found = bytes.windows(hex.len()).any(|w| w == hex.as_bytes());
            assert!(!found, "a secret is in {file}");
        }
    }
}

#[tokio::test]
async fn metrics_listen_serves_a_scraper_without_a_token_and_nothing_else() {
    let server = TestServer::start_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let line = server.next_line();
    let url = line
        .strip_prefix("metrics on ")
        .unwrap_or_else(|| panic!("{line}"));
    let scraper = reqwest::Client::new();
    let metrics = scraper.get(url).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("kumo_invocations_in_flight")
    );
    let base = url.trim_end_matches("/metrics");
    let api = scraper
        .get(format!("{base}/api/v1/functions"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        404,
        "only /metrics is on the scraper's address"
    );
    // The main address still wants a token for it.
    let main = scraper
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 401);
}

#[tokio::test]
async fn changes_and_refused_attempts_are_in_the_audit_trail_without_secrets() {
    let server = TestServer::start().await;
    server.deploy("hello", test_programs::HELLO, config()).await;
    let made = server
        .client
        .create_token("view", Role::Viewer, None, None)
        .await
        .unwrap();
    let viewer = authorized(&made.secret);
    let refused = viewer
        .delete(format!("{}/api/v1/functions/hello", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    server.client.delete("hello").await.unwrap();
    // Not changes to the control plane: invocations, data, reads.
    let _ = server
        .post("/api/v1/functions/nope/invoke")
        .send()
        .await
        .unwrap();
    let _ = server
        .http
        .put(format!("{}/api/v1/kv/b/k", server.url))
        .body("v")
        .send()
        .await;
    server.client.list().await.unwrap();

    let trail = server.client.audit("1h", None, 100).await.unwrap();
    let seen: Vec<(Option<&str>, &str, &str, u16)> = trail
        .iter()
        .map(|e| {
            (
                e.token.as_deref(),
                e.method.as_str(),
                e.target.as_str(),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("admin"), "PUT", "/functions/hello", 201),
            (Some("admin"), "POST", "/tokens", 201),
            (Some("view"), "DELETE", "/functions/hello", 403),
            (Some("admin"), "DELETE", "/functions/hello", 204),
        ]
    );
    assert!(
        trail
            .iter()
            .all(|e| e.source.as_deref() == Some("127.0.0.1"))
    );
    // Admin only; and the CLI shows it.
    let forbidden = viewer
        .get(format!("{}/api/v1/audit", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let printed = server.cli(&["audit", "--since", "1h"]);
    let text = String::from_utf8(printed.stdout).unwrap();
    assert!(
        text.contains("/functions/hello") && text.contains("view"),
        "{text}"
    );
    assert!(!text.contains(&made.secret) && !text.contains(&server.admin_token));
}

/// A new self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

fn trusting(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn tls_serves_http2_and_http1_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (first_cert, first_key) = self_signed();
    std::fs::write(&cert_path, &first_cert).unwrap();
    std::fs::write(&key_path, &first_key).unwrap();
    let args = [
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ];
    let server = TestServer::start_with(&args).await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let health = format!("{}/healthz", server.url);

    // HTTP/2 by ALPN, HTTP/1.1 for a client that offers only it; tokens work as over HTTP.
    let h2 = trusting(&first_cert, false)
        .get(&health)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h2.status().as_u16(), h2.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let h1 = trusting(&first_cert, true)
        .get(&health)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h1.status().as_u16(), h1.version()),
        (200, reqwest::Version::HTTP_11)
    );
    let listed = trusting(&first_cert, false)
        .get(format!("{}/api/v1/functions", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    // Plain HTTP on the TLS port gets nothing served.
    let plain = reqwest::Client::new()
        .get(health.replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A renewed certificate is served from the next handshake on, without a restart.
    let (second_cert, second_key) = self_signed();
    std::fs::write(&key_path, &second_key).unwrap();
    std::fs::write(&cert_path, &second_cert).unwrap();
    let mut renewed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if trusting(&second_cert, false)
            .get(&health)
            .send()
            .await
            .is_ok()
        {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "the renewed certificate was not picked up");
    let old = trusting(&first_cert, false).get(&health).send().await;
    assert!(old.is_err(), "the old certificate is no longer served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_admin_token_is_the_first_one_and_a_malformed_one_stops_the_start() {
    let secret = format!("kumo_{}", "ab".repeat(32));
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in_with(dir.path(), &[], &[("KUMO_ADMIN_TOKEN", &secret)]);
    // No file: the secret is the one given.
    assert!(!dir.path().join("admin-token").exists());
    let listed = authorized(&secret)
        .get(format!("{}/api/v1/tokens", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert!(listed.text().await.unwrap().contains("\"admin\""));
    server.stop();

    // A malformed one stops the start, and the message names the variable, not its value.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(other.path())
        .env("KUMO_ADMIN_TOKEN", "kumo_not-a-real-secret-value")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("KUMO_ADMIN_TOKEN is not a kumo token secret"),
        "{error}"
    );
    assert!(!error.contains("not-a-real-secret-value"), "{error}");
}
