//! Starting and stopping a real kumo server process, and small helpers around it.

use kumo_api::{Client, FunctionConfig};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) struct TestServer {
    pub url: String,
    /// The API client, with the first admin token.
    pub client: Client,
    /// Plain HTTP, sending the first admin token (`anonymous()` sends none).
    pub http: reqwest::Client,
    /// The first admin token's secret (empty with `--auth none`).
    pub admin_token: String,
    /// What the server prints after its address, line by line.
    output: std::sync::Mutex<mpsc::Receiver<String>>,
    child: Child,
    // Kept so the directory lives as long as the server (None when the caller owns it).
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut server = Self::start_in(&dir, &[]);
        server._temp = Some(temp);
        server
    }

    /// A fresh server started with extra `kumo serve` arguments.
    pub(crate) async fn start_with(extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut server = Self::start_in(&dir, extra);
        server._temp = Some(temp);
        server
    }

    /// Stops the server abruptly (SIGKILL: no graceful anything), as a crash would.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// A fresh server with the probes deployed as `probe` (wasi-http) and `cmd` (command).
    pub(crate) async fn with_probes() -> Self {
        let server = Self::start().await;
        server
            .deploy("probe", test_programs::HTTP_PROBE, config())
            .await;
        server
            .deploy("cmd", test_programs::COMMAND_PROBE, config())
            .await;
        server
    }

    /// Starts `kumo serve` on 127.0.0.1:0 with `data_dir`, and waits for its address.
    pub(crate) fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn("serve", data_dir, extra, None, &[])
    }

    /// A server on `data_dir` with extra environment variables.
    pub(crate) fn start_in_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn("serve", data_dir, &[], None, env)
    }

    /// A server on `data_dir` with extra arguments and environment variables.
    pub(crate) fn start_in_with(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn("serve", data_dir, extra, None, env)
    }

    /// A fresh server with extra environment variables.
    pub(crate) async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut server = Self::spawn("serve", &dir, &[], None, env);
        server._temp = Some(temp);
        server
    }

    /// Starts `kumo up -f MANIFEST` and waits until it says the functions are deployed.
    pub(crate) fn up(data_dir: &Path, manifest: &Path) -> Self {
        let manifest = manifest.to_str().unwrap();
        Self::spawn("up", data_dir, &["-f", manifest], Some("ready"), &[])
    }

    fn spawn(
        command: &str,
        data_dir: &Path,
        extra: &[&str],
        ready: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args([command, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            // `kumo up` logs the CLI in: into the test's folder, not the user's.
            .env("KUMO_CONFIG_DIR", data_dir.join("cli-config"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kumo starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let next_line = || {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("kumo answers within 60s")
        };
        let url = loop {
            if let Some(url) = next_line().strip_prefix("kumo listening on ") {
                break url.to_string();
            }
        };
        if let Some(ready) = ready {
            while !next_line().starts_with(ready) {}
        }
        let admin_token = std::fs::read_to_string(data_dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        let (client, http) = match admin_token.as_str() {
            "" => (Client::new(&url), reqwest::Client::new()),
            token => (Client::with_token(&url, token).unwrap(), authorized(token)),
        };
        Self {
            client,
            http,
            admin_token,
            output: std::sync::Mutex::new(rx),
            url,
            child,
            _temp: None,
        }
    }

    /// The next line the server prints (within 10 s).
    pub(crate) fn next_line(&self) -> String {
        self.output
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10))
            .expect("kumo prints another line")
    }

    /// Stops the server with SIGTERM (a graceful shutdown) and waits for it to exit.
    pub(crate) fn stop(mut self) {
        // The shell's builtin `kill`: no extra package needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "kumo exited with {exit} after SIGTERM");
    }

    pub(crate) async fn deploy(&self, name: &str, wasm_path: &str, config: FunctionConfig) {
        let code = std::fs::read(wasm_path).unwrap();
        self.client
            .deploy(name, code, &config)
            .await
            .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    /// GET `path` and return the body as text, whatever the status.
    pub(crate) async fn get_text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    /// The value of an unlabelled metric in `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let metrics = self.get_text("/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} is exported"))
            .parse()
            .unwrap()
    }

    /// Polls a metric until it equals `want` (up to 10 s) and returns its last value, so a
    /// test can assert on it.
    pub(crate) async fn metric_eventually(&self, name: &str, want: u64) -> u64 {
        let mut value = self.metric(name).await;
        for _ in 0..200 {
            if value == want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            value = self.metric(name).await;
        }
        value
    }

    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    /// Runs the kumo CLI against this server, with the first admin token.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(args)
            .env("KUMO_SERVER", &self.url)
            .env("KUMO_TOKEN", &self.admin_token)
            .output()
            .expect("the CLI runs")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that sends `token` with every request.
pub(crate) fn authorized(token: &str) -> reqwest::Client {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    value.set_sensitive(true);
    reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            value,
        )]))
        .build()
        .unwrap()
}

pub(crate) fn config() -> FunctionConfig {
    FunctionConfig::default()
}

/// The JSON error body's code, checking it agrees with `x-kumo-error` when that is present.
pub(crate) async fn error_code(response: reqwest::Response) -> String {
    let header = response
        .headers()
        .get("x-kumo-error")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = response.json().await.expect("an error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message is set: {body}"
    );
    if let Some(h) = header {
        assert_eq!(h, code);
    }
    code
}

pub(crate) fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-kumo-request-id")
        .expect("every data-plane response has x-kumo-request-id")
        .to_str()
        .unwrap()
        .to_string()
}

/// An HTTP endpoint for the server to call (destinations, guests' outbound requests): it
/// answers 200 to every POST and keeps the bodies.
pub(crate) struct Receiver {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<bytes::Bytes>>>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// A receiver on a given address (e.g. one a test first saw refuse connections).
    pub(crate) async fn start_on(addr: &str) -> Self {
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let app = axum::Router::new().fallback(axum::routing::post(
            move |body: bytes::Bytes| async move {
                kept.lock().unwrap().push(body);
                "ok"
            },
        ));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    /// host:port, as `allow_outbound` grants it.
    pub(crate) fn host_port(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub(crate) fn bodies(&self) -> Vec<bytes::Bytes> {
        self.bodies.lock().unwrap().clone()
    }

    /// How many times each body (as text) came, once every one of `ids` has (up to
    /// `timeout`; the caller checks what is missing).
    pub(crate) async fn counts_when_all(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> std::collections::HashMap<String, usize> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut seen = std::collections::HashMap::new();
            for body in self.bodies() {
                *seen
                    .entry(String::from_utf8(body.to_vec()).unwrap())
                    .or_default() += 1;
            }
            if ids.iter().all(|id| seen.contains_key(id)) || std::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bodies as JSON, once there are at least `n` of them (up to `timeout`).
    pub(crate) async fn json_when(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        while self.bodies().len() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.bodies()
            .iter()
            .map(|b| serde_json::from_slice(b).expect("a JSON body"))
            .collect()
    }
}
