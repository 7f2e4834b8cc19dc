//! kumo's HTTP API as Rust: the wire types (shared with the server through kumo-core) and a
//! typed client.

pub use kumo_core::{
    AliasRecord, AuditEntry, Canary, EventRecord, EventStatus, FunctionConfig, FunctionKind,
    FunctionRecord, InvocationRecord, KeyPage, LogRecord, NamespaceInfo, NamespaceRecord,
    NamespaceUse, Outcome, Prices, Quotas, Role, SecretInfo, TokenRecord, UsageBy, UsageReport,
    UsageRow, VersionRecord,
};

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub const REQUEST_ID_HEADER: &str = "x-kumo-request-id";
pub const ERROR_HEADER: &str = "x-kumo-error";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the kumo server")]
    Transport(#[from] reqwest::Error),
    #[error("{0}")]
    Usage(String),
}

/// A key-value entry as the API returns it.
#[derive(Debug)]
pub struct KvValue {
    pub value: Bytes,
    /// Without quotes.
    pub etag: String,
}

/// The condition of a key-value write.
#[derive(Debug, Clone, Copy)]
pub enum KvCondition<'a> {
    Always,
    /// `If-Match`: only if the key holds the write with this etag.
    IfMatch(&'a str),
    /// `If-None-Match: *`: only if the key does not exist.
    IfAbsent,
}

impl KvCondition<'_> {
    fn apply(self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Always => request,
            Self::IfMatch(etag) => request.header("if-match", format!("\"{etag}\"")),
            Self::IfAbsent => request.header("if-none-match", "*"),
        }
    }
}

fn etag_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_matches('"')
        .to_string()
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// What an invocation returned: the function's response, or kumo's error for it.
#[derive(Debug)]
pub struct InvokeResponse {
    pub status: u16,
    pub request_id: Option<String>,
    /// `x-kumo-error`, set when the invocation failed.
    pub error_code: Option<String>,
    pub body: Bytes,
}

/// A message published to a topic: its id and the event each subscriber got.
#[derive(Debug, Deserialize)]
pub struct Published {
    pub id: String,
    pub events: Vec<Delivery>,
}

#[derive(Debug, Deserialize)]
pub struct Delivery {
    pub function: String,
    pub id: String,
}

/// A route, schedule or topic subscription of a function.
#[derive(Debug, Deserialize)]
pub struct TriggerInfo {
    pub function: String,
    pub kind: String,
    pub source: String,
}

#[derive(Deserialize)]
struct Submitted {
    id: String,
}

#[derive(Deserialize)]
struct Redriven {
    redriven: Vec<String>,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The namespace of every namespaced request (none: the paths that mean `default`).
    namespace: Option<String>,
}

/// A token just created: its record and its secret (shown this once).
#[derive(Debug, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenRecord,
    pub secret: String,
}

impl Client {
    /// `server` is the base URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(server: &str) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            namespace: None,
        }
    }

    /// The same client, acting in `namespace` (functions, buckets, topics, secrets, records).
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// A client that sends `token` (`Authorization: Bearer`) with every request.
    pub fn with_token(server: &str, token: &str) -> Result<Self, ClientError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| {
                ClientError::Usage("the token has characters a header cannot carry".into())
            })?;
        value.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            http,
            namespace: None,
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Creates a token (admin only); the secret is in the answer and nowhere else.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        namespace: Option<&str>,
        expires: Option<&str>,
    ) -> Result<CreatedToken, ClientError> {
        self.create_token_with(name, role, namespace, expires, false)
            .await
    }

    /// Creates a token, with an access key when `access_key` (it signs AWS API requests
    /// too: the key id and the token's secret are an AWS key pair).
    pub async fn create_token_with(
        &self,
        name: &str,
        role: Role,
        namespace: Option<&str>,
        expires: Option<&str>,
        access_key: bool,
    ) -> Result<CreatedToken, ClientError> {
        let body = serde_json::json!({
            "name": name, "role": role, "namespace": namespace, "expires": expires,
            "access_key": access_key,
        });
        json(
            self.http
                .post(self.url("/tokens"))
                .json(&body)
                .send()
                .await?,
        )
        .await
    }

    /// The audit trail since `since` (e.g. `24h`), of one namespace or all, the newest
    /// `limit` entries, oldest first.
    pub async fn audit(
        &self,
        since: &str,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = vec![("since", since.to_string()), ("limit", limit.to_string())];
        if let Some(namespace) = namespace {
            query.push(("namespace", namespace.to_string()));
        }
        json(
            self.http
                .get(self.url("/audit"))
                .query(&query)
                .send()
                .await?,
        )
        .await
    }

    /// Sets a secret's value; true when it was created.
    pub async fn set_secret(&self, name: &str, value: Vec<u8>) -> Result<bool, ClientError> {
        let response = self
            .http
            .put(self.url(&format!("/secrets/{name}")))
            .body(value)
            .send()
            .await?;
        Ok(check(response).await?.status() == StatusCode::CREATED)
    }

    pub async fn secrets(&self) -> Result<Vec<SecretInfo>, ClientError> {
        json(self.http.get(self.url("/secrets")).send().await?).await
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        let response = self
            .http
            .delete(self.url(&format!("/secrets/{name}")))
            .send()
            .await?;
        check(response).await.map(drop)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, ClientError> {
        json(self.http.get(self.url("/tokens")).send().await?).await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let response = self
            .http
            .delete(self.url(&format!("/tokens/{name}")))
            .send()
            .await?;
        check(response).await.map(drop)
    }

    /// Creates a namespace, or replaces its quotas; true when it was created.
    pub async fn put_namespace(&self, name: &str, quotas: &Quotas) -> Result<bool, ClientError> {
        let response = self
            .http
            .put(self.url(&format!("/namespaces/{name}")))
            .json(quotas)
            .send()
            .await?;
        Ok(check(response).await?.status() == StatusCode::CREATED)
    }

    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, ClientError> {
        json(self.http.get(self.url("/namespaces")).send().await?).await
    }

    pub async fn delete_namespace(&self, name: &str) -> Result<(), ClientError> {
        let response = self
            .http
            .delete(self.url(&format!("/namespaces/{name}")))
            .send()
            .await?;
        check(response).await.map(drop)
    }

    /// Deploys a workflow's ASL definition; the workflow as the server has it, and whether it
    /// was created.
    pub async fn put_workflow(
        &self,
        name: &str,
        definition: Vec<u8>,
    ) -> Result<(serde_json::Value, bool), ClientError> {
        let response = self
            .http
            .put(self.url(&format!("/workflows/{name}")))
            .header("content-type", "application/json")
            .body(definition)
            .send()
            .await?;
        let response = check(response).await?;
        let created = response.status() == StatusCode::CREATED;
        Ok((response.json().await?, created))
    }

    pub async fn workflows(&self) -> Result<serde_json::Value, ClientError> {
        json(self.http.get(self.url("/workflows")).send().await?).await
    }

    pub async fn workflow(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        let url = self.url(&format!("/workflows/{name}"));
        json(self.http.get(url).send().await?).await
    }

    pub async fn delete_workflow(&self, name: &str) -> Result<(), ClientError> {
        let url = self.url(&format!("/workflows/{name}"));
        check(self.http.delete(url).send().await?).await.map(drop)
    }

    /// Starts an execution; with `wait` (seconds), answers once it ended.
    pub async fn start_execution(
        &self,
        workflow: &str,
        input: serde_json::Value,
        name: Option<&str>,
        wait: Option<u64>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut request = self
            .http
            .post(self.url(&format!("/workflows/{workflow}/executions")))
            .json(&serde_json::json!({"input": input, "name": name}));
        if let Some(seconds) = wait {
            request = request.query(&[("wait", seconds)]);
        }
        json(request.send().await?).await
    }

    pub async fn executions(
        &self,
        workflow: &str,
        status: Option<&str>,
        limit: u32,
    ) -> Result<serde_json::Value, ClientError> {
        let mut request = self
            .http
            .get(self.url(&format!("/workflows/{workflow}/executions")))
            .query(&[("limit", limit)]);
        if let Some(status) = status {
            request = request.query(&[("status", status)]);
        }
        json(request.send().await?).await
    }

    pub async fn execution(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        json(
            self.http
                .get(self.url(&format!("/executions/{id}")))
                .send()
                .await?,
        )
        .await
    }

    /// Every history entry of an execution, oldest first.
    pub async fn execution_history(&self, id: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut all = Vec::new();
        loop {
            let after = all
                .last()
                .and_then(|e: &serde_json::Value| e["seq"].as_i64())
                .unwrap_or(0);
            let request = self
                .http
                .get(self.url(&format!("/executions/{id}/history")))
                .query(&[("after", after)]);
            let page: Vec<serde_json::Value> = json(request.send().await?).await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    pub async fn stop_execution(&self, id: &str, cause: Option<&str>) -> Result<(), ClientError> {
        let request = self
            .http
            .post(self.url(&format!("/executions/{id}/stop")))
            .json(&serde_json::json!({"cause": cause}));
        check(request.send().await?).await.map(drop)
    }

    pub async fn redrive_execution(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        let url = self.url(&format!("/executions/{id}/redrive"));
        json(self.http.post(url).send().await?).await
    }

    /// Answers a callback task: `outcome` is `success` (with `output`), `failure` (with
    /// `error` and `cause`) or `heartbeat`.
    pub async fn answer_task(
        &self,
        outcome: &str,
        answer: &serde_json::Value,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!("/tasks/{outcome}"));
        check(self.http.post(url).json(answer).send().await?)
            .await
            .map(drop)
    }

    /// The URL of `path` below `/api/v1`, inside the client's namespace when it has one and
    /// the path is a namespace's.
    fn url(&self, path: &str) -> String {
        match (&self.namespace, kumo_core::api_scope(path)) {
            (Some(ns), kumo_core::ApiScope::Namespace { .. }) => {
                format!("{}/api/v1/namespaces/{ns}{path}", self.base)
            }
            _ => format!("{}/api/v1{path}", self.base),
        }
    }

    /// `/api/v1/kv/{bucket}/{key}` with every segment of the key percent-encoded.
    fn kv_url(&self, bucket: &str, key: &str) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(&self.url("/kv"))
            .map_err(|e| ClientError::Usage(format!("bad server URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| ClientError::Usage("bad server URL".into()))?
            .push(bucket)
            .extend(key.split('/'));
        Ok(url)
    }

    /// A key's value and etag.
    pub async fn kv_get(&self, bucket: &str, key: &str) -> Result<KvValue, ClientError> {
        let response = check(self.http.get(self.kv_url(bucket, key)?).send().await?).await?;
        let etag = etag_of(&response);
        Ok(KvValue {
            value: response.bytes().await?,
            etag,
        })
    }

    /// Writes a key if `condition` holds; returns the new etag.
    pub async fn kv_put(
        &self,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
        condition: KvCondition<'_>,
    ) -> Result<String, ClientError> {
        let request = condition.apply(self.http.put(self.kv_url(bucket, key)?));
        let response = check(request.body(value).send().await?).await?;
        Ok(etag_of(&response))
    }

    /// Deletes a key (no error if it is absent, unless `condition` names an etag).
    pub async fn kv_delete(
        &self,
        bucket: &str,
        key: &str,
        condition: KvCondition<'_>,
    ) -> Result<(), ClientError> {
        let request = condition.apply(self.http.delete(self.kv_url(bucket, key)?));
        check(request.send().await?).await?;
        Ok(())
    }

    /// One page of a bucket's keys that start with `prefix`, after `cursor`.
    pub async fn kv_list(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<KeyPage, ClientError> {
        let mut query = vec![("prefix", prefix.to_string())];
        query.extend(cursor.map(|c| ("cursor", c.to_string())));
        query.extend(limit.map(|l| ("limit", l.to_string())));
        let url = self.url(&format!("/kv/{bucket}"));
        json(self.http.get(url).query(&query).send().await?).await
    }

    /// Deploys (creates or updates) a function; true when it was created.
    pub async fn deploy(
        &self,
        name: &str,
        code: Vec<u8>,
        config: &FunctionConfig,
    ) -> Result<(FunctionRecord, bool), ClientError> {
        let config = serde_json::to_string(config).expect("a config always serializes");
        let form = reqwest::multipart::Form::new()
            .part(
                "code",
                reqwest::multipart::Part::bytes(code).file_name("code.wasm"),
            )
            .text("config", config);
        let response = self
            .http
            .put(self.url(&format!("/functions/{name}")))
            .multipart(form)
            .send()
            .await?;
        let created = response.status() == StatusCode::CREATED;
        Ok((json(response).await?, created))
    }

    pub async fn list(&self) -> Result<Vec<FunctionRecord>, ClientError> {
        json(self.http.get(self.url("/functions")).send().await?).await
    }

    pub async fn get(&self, name: &str) -> Result<FunctionRecord, ClientError> {
        json(
            self.http
                .get(self.url(&format!("/functions/{name}")))
                .send()
                .await?,
        )
        .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        let response = self
            .http
            .delete(self.url(&format!("/functions/{name}")))
            .send()
            .await?;
        check(response).await.map(drop)
    }

    /// Invokes synchronously. Never an `Err` for a failed invocation: that is in the response.
    pub async fn invoke(
        &self,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<InvokeResponse, ClientError> {
        let response = self
            .http
            .post(self.url(&format!("/functions/{name}/invoke")))
            .body(payload)
            .send()
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(InvokeResponse {
            status: response.status().as_u16(),
            request_id: header(REQUEST_ID_HEADER),
            error_code: header(ERROR_HEADER),
            body: response.bytes().await?,
        })
    }

    /// Submits an asynchronous invocation; returns its id and whether the idempotency key
    /// matched an earlier submit (whose id it is).
    pub async fn invoke_async(
        &self,
        name: &str,
        payload: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<(String, bool), ClientError> {
        let mut request = self
            .http
            .post(self.url(&format!("/functions/{name}/invoke")))
            .query(&[("mode", "async")])
            .body(payload);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = check(request.send().await?).await?;
        let replayed = response.headers().contains_key("idempotent-replayed");
        let submitted: Submitted = response.json().await?;
        Ok((submitted.id, replayed))
    }

    /// An asynchronous invocation's status; with `wait` (`30s`), once it is final or the
    /// time is up.
    pub async fn event(&self, id: &str, wait: Option<&str>) -> Result<EventRecord, ClientError> {
        let mut request = self.http.get(self.url(&format!("/invocations/{id}")));
        if let Some(wait) = wait {
            request = request.query(&[("wait", wait)]);
        }
        json(request.send().await?).await
    }

    pub async fn dead_letters(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let url = self.url(&format!("/functions/{name}/dlq"));
        json(self.http.get(url).query(&[("limit", limit)]).send().await?).await
    }

    /// Requeues the function's dead events (or only `id`); returns the ids requeued.
    pub async fn redrive(&self, name: &str, id: Option<&str>) -> Result<Vec<String>, ClientError> {
        let mut request = self
            .http
            .post(self.url(&format!("/functions/{name}/dlq/redrive")));
        if let Some(id) = id {
            request = request.query(&[("id", id)]);
        }
        let redriven: Redriven = json(request.send().await?).await?;
        Ok(redriven.redriven)
    }

    /// Publishes `$LATEST` as a new version; false when it had not changed since the newest
    /// version (which is returned).
    pub async fn publish_version(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(VersionRecord, bool), ClientError> {
        let url = self.url(&format!("/functions/{name}/versions"));
        let body = serde_json::json!({ "description": description });
        let response = self.http.post(url).json(&body).send().await?;
        let created = response.status() == StatusCode::CREATED;
        Ok((json(response).await?, created))
    }

    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, ClientError> {
        let url = self.url(&format!("/functions/{name}/versions"));
        json(self.http.get(url).send().await?).await
    }

    pub async fn delete_version(&self, name: &str, version: u32) -> Result<(), ClientError> {
        let url = self.url(&format!("/functions/{name}/versions/{version}"));
        check(self.http.delete(url).send().await?).await.map(drop)
    }

    /// Points `alias` at `version` (and a share of requests at the canary's).
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        canary: Option<Canary>,
    ) -> Result<AliasRecord, ClientError> {
        let url = self.url(&format!("/functions/{name}/aliases/{alias}"));
        let body = serde_json::json!({ "version": version, "canary": canary });
        json(self.http.put(url).json(&body).send().await?).await
    }

    pub async fn aliases(&self, name: &str) -> Result<Vec<AliasRecord>, ClientError> {
        let url = self.url(&format!("/functions/{name}/aliases"));
        json(self.http.get(url).send().await?).await
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), ClientError> {
        let url = self.url(&format!("/functions/{name}/aliases/{alias}"));
        check(self.http.delete(url).send().await?).await.map(drop)
    }

    /// Usage since `since` ago (`24h`), grouped `by` `function`, `version` or `day`.
    pub async fn usage(&self, since: &str, by: UsageBy) -> Result<UsageReport, ClientError> {
        let request = self
            .http
            .get(self.url("/usage"))
            .query(&[("since", since), ("by", by.as_str())]);
        json(request.send().await?).await
    }

    /// The server's metrics exposition (`GET /metrics`), as text.
    /// The server's health as JSON: its version and the isolation of Lambda functions'
    /// execution environments (each layer, and why one is missing).
    /// The cluster's nodes (`GET /cluster`, admin).
    pub async fn cluster_status(&self) -> Result<serde_json::Value, ClientError> {
        json(self.http.get(self.url("/cluster")).send().await?).await
    }

    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/healthz", self.base);
        let request = self.http.get(url).header("accept", "application/json");
        json(request.send().await?).await
    }

    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let url = format!("{}/metrics", self.base);
        Ok(check(self.http.get(url).send().await?)
            .await?
            .text()
            .await?)
    }

    /// Publishes a message to a topic.
    pub async fn send_to_topic(
        &self,
        topic: &str,
        message: Vec<u8>,
    ) -> Result<Published, ClientError> {
        let url = self.url(&format!("/topics/{topic}"));
        json(self.http.post(url).body(message).send().await?).await
    }

    pub async fn triggers(&self) -> Result<Vec<TriggerInfo>, ClientError> {
        json(self.http.get(self.url("/triggers")).send().await?).await
    }

    pub async fn invocations(
        &self,
        function: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(f) = function {
            query.push(("function", f.to_string()));
        }
        json(
            self.http
                .get(self.url("/invocations"))
                .query(&query)
                .send()
                .await?,
        )
        .await
    }

    pub async fn invocation(&self, request_id: &str) -> Result<InvocationRecord, ClientError> {
        json(
            self.http
                .get(self.url(&format!("/invocations/{request_id}")))
                .send()
                .await?,
        )
        .await
    }

    pub async fn logs(
        &self,
        function: &str,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LogRecord>, ClientError> {
        let filter = LogFilter {
            request_id: request_id.map(str::to_string),
            limit: Some(limit),
            ..LogFilter::default()
        };
        self.logs_matching(function, &filter).await
    }

    /// The newest matching log lines, oldest first.
    pub async fn logs_matching(
        &self,
        function: &str,
        filter: &LogFilter,
    ) -> Result<Vec<LogRecord>, ClientError> {
        let url = self.url(&format!("/functions/{function}/logs"));
        json(self.http.get(url).query(&filter.query()).send().await?).await
    }

    /// The newest matching log lines, then every new one as it is written, until the
    /// server stops (a stream of server-sent events underneath).
    pub async fn follow_logs(
        &self,
        function: &str,
        filter: &LogFilter,
    ) -> Result<impl futures::Stream<Item = Result<LogRecord, ClientError>>, ClientError> {
        use futures::StreamExt as _;
        let url = self.url(&format!("/functions/{function}/logs"));
        let mut query = filter.query();
        query.push(("follow", "true".to_string()));
        let response = check(self.http.get(url).query(&query).send().await?).await?;
        let events = sse_data(response.bytes_stream());
        Ok(events.map(|data| {
            let data = data?;
            serde_json::from_str(&data)
                .map_err(|e| ClientError::Usage(format!("a log event that is not JSON: {e}")))
        }))
    }
}

/// Which log lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub request_id: Option<String>,
    /// How far back, e.g. `10m`.
    pub since: Option<String>,
    /// Only lines containing this text.
    pub grep: Option<String>,
    pub limit: Option<u32>,
}

impl LogFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let fields = [
            ("request_id", &self.request_id),
            ("since", &self.since),
            ("grep", &self.grep),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        query
    }
}

/// The `data` of each server-sent event of a byte stream (comments and keep-alives skipped).
fn sse_data(
    bytes: impl futures::Stream<Item = reqwest::Result<Bytes>> + Unpin,
) -> impl futures::Stream<Item = Result<String, ClientError>> {
    // Bytes, not text, are buffered: a character may be split between two chunks.
    futures::stream::unfold((bytes, Vec::new()), |(mut bytes, mut buffer)| async move {
        use futures::StreamExt as _;
        loop {
            if let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buffer.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block);
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some((Ok(data.join("\n")), (bytes, buffer)));
            }
            match bytes.next().await? {
                Ok(chunk) => buffer.extend_from_slice(&chunk),
                Err(e) => return Some((Err(ClientError::Transport(e)), (bytes, buffer))),
            }
        }
    })
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await?;
    let (code, message) = match serde_json::from_slice::<ErrorEnvelope>(&body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            "http_error".to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ),
    };
    Err(ClientError::Api {
        status: status.as_u16(),
        code,
        message,
    })
}

async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
    Ok(check(response).await?.json().await?)
}
