//! The Lambda API (`/2015-03-31`, as boto3 and the AWS CLI call it), as pure rules: which
//! operation a request is, what a `FunctionName` names, how a request's settings become a
//! kumo function's config, the shapes of AWS's answers, and which AWS error each kumo error
//! is. No I/O: the server's `lambda_api` module wires it to the store and the Invoker.

use kumo_core::{
    Action, AliasRecord, Canary, ErrorKind, FunctionConfig, FunctionKind, FunctionRecord,
    LambdaRuntimeName, VersionRecord,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The region Lambda functions are told they run in (`AWS_REGION`) and their ARNs name.
pub const REGION: &str = "us-east-1";
/// The account in ARNs: kumo has no AWS accounts.
pub const ACCOUNT: &str = "000000000000";
/// What `Role` reads back: kumo has no IAM; a function reaches what its config grants.
pub const ROLE: &str = "arn:aws:iam::000000000000:role/kumo-function";
/// Lambda's default timeout when a function is created without one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes of log kept for `X-Amz-Log-Type: Tail` (Lambda's).
pub const TAIL_BYTES: usize = 4096;

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
pub fn function_arn(name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:{q}"),
        None => format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"),
    }
}

/// What a `FunctionName` names: a name, `NAME:QUALIFIER`, or an ARN (full or partial,
/// `ACCOUNT:function:NAME`), as Lambda takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionName {
    pub name: String,
    pub qualifier: Option<String>,
}

pub fn parse_function_name(text: &str) -> Result<FunctionName, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (name, qualifier) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        ["arn", "aws", "lambda", _region, _account, "function", name] => (*name, None),
        [
            "arn",
            "aws",
            "lambda",
            _region,
            _account,
            "function",
            name,
            q,
        ] => (*name, Some(*q)),
        [_account, "function", name] => (*name, None),
        [_account, "function", name, q] => (*name, Some(*q)),
        _ => return Err(format!("{text:?} is not a function name or ARN")),
    };
    kumo_core::validate_name(name).map_err(|e| e.to_string())?;
    if let Some(q) = qualifier {
        kumo_core::Qualifier::parse(q)?;
    }
    Ok(FunctionName {
        name: name.to_string(),
        qualifier: qualifier.map(str::to_string),
    })
}

/// One operation of the Lambda API, with the (percent-decoded) names its path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    CreateFunction,
    ListFunctions,
    GetFunction(String),
    GetFunctionConfiguration(String),
    UpdateFunctionCode(String),
    UpdateFunctionConfiguration(String),
    DeleteFunction(String),
    PublishVersion(String),
    ListVersionsByFunction(String),
    CreateAlias(String),
    ListAliases(String),
    GetAlias(String, String),
    UpdateAlias(String, String),
    DeleteAlias(String, String),
    Invoke(String),
}

impl Operation {
    /// What a token must be allowed to do for it.
    pub fn action(&self) -> Action {
        match self {
            Self::ListFunctions
            | Self::GetFunction(_)
            | Self::GetFunctionConfiguration(_)
            | Self::ListVersionsByFunction(_)
            | Self::ListAliases(_)
            | Self::GetAlias(..) => Action::Read,
            Self::Invoke(_) => Action::Invoke,
            _ => Action::Write,
        }
    }
}

/// The operation `method` on `path` (as sent, below the host) is, or none.
pub fn operation(method: &str, path: &str) -> Option<Operation> {
    let rest = path.strip_prefix("/2015-03-31/functions")?;
    let decoded: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let f = |name: &str| name.to_string();
    Some(match (method, segments.as_slice()) {
        ("POST", []) => Operation::CreateFunction,
        ("GET", []) => Operation::ListFunctions,
        ("GET", [name]) => Operation::GetFunction(f(name)),
        ("DELETE", [name]) => Operation::DeleteFunction(f(name)),
        ("GET", [name, "configuration"]) => Operation::GetFunctionConfiguration(f(name)),
        ("PUT", [name, "configuration"]) => Operation::UpdateFunctionConfiguration(f(name)),
        ("PUT", [name, "code"]) => Operation::UpdateFunctionCode(f(name)),
        ("POST", [name, "versions"]) => Operation::PublishVersion(f(name)),
        ("GET", [name, "versions"]) => Operation::ListVersionsByFunction(f(name)),
        ("POST", [name, "aliases"]) => Operation::CreateAlias(f(name)),
        ("GET", [name, "aliases"]) => Operation::ListAliases(f(name)),
        ("GET", [name, "aliases", alias]) => Operation::GetAlias(f(name), f(alias)),
        ("PUT", [name, "aliases", alias]) => Operation::UpdateAlias(f(name), f(alias)),
        ("DELETE", [name, "aliases", alias]) => Operation::DeleteAlias(f(name), f(alias)),
        ("POST", [name, "invocations"]) => Operation::Invoke(f(name)),
        _ => return None,
    })
}

/// `{"ZipFile": base64}`; the other ways Lambda takes code (S3, images) are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CodeInput {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
}

impl CodeInput {
    /// The package's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        if self.s3_bucket.is_some() || self.image_uri.is_some() {
            return Err("kumo takes code as Code.ZipFile only (not S3 or an image)".into());
        }
        let text = self.zip_file.as_deref().ok_or("Code.ZipFile is missing")?;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("Code.ZipFile is not base64: {e}"))
    }
}

/// The settings CreateFunction and UpdateFunctionConfiguration share (others are accepted
/// and ignored, as kumo has nothing they would change: Role, Tags, VpcConfig...).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Settings {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub timeout: Option<u64>,
    pub memory_size: Option<u32>,
    pub environment: Option<EnvironmentInput>,
    pub package_type: Option<String>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub layers: Option<Vec<String>>,
    pub architectures: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    /// MiB.
    pub size: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentInput {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFunction {
    pub function_name: String,
    #[serde(default)]
    pub code: CodeInput,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCode {
    #[serde(flatten)]
    pub code: CodeInput,
    #[serde(default)]
    pub publish: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublishVersion {
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasInput {
    pub name: Option<String>,
    pub function_version: Option<String>,
    pub routing_config: Option<RoutingConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoutingConfig {
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
}

/// The architecture this server runs functions on, as Lambda names it.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    }
}

impl Settings {
    /// Applies these settings to `config` (a new function's defaults, or its current one).
    pub fn apply(&self, config: &mut FunctionConfig) -> Result<(), String> {
        if let Some(kind) = self.package_type.as_deref().filter(|k| *k != "Zip") {
            return Err(format!(
                "PackageType {kind:?} is not supported: kumo runs zip packages"
            ));
        }
        if self.layers.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err("Layers are not supported: put what they hold in the package".into());
        }
        if let Some(arch) = self
            .architectures
            .iter()
            .flatten()
            .find(|a| a.as_str() != architecture())
        {
            return Err(format!(
                "Architectures: this server runs {} functions, not {arch}",
                architecture()
            ));
        }
        if let Some(runtime) = &self.runtime {
            config.runtime = Some(LambdaRuntimeName::parse(runtime)?);
        }
        if let Some(handler) = &self.handler {
            config.handler = Some(handler.clone());
        }
        if let Some(seconds) = self.timeout {
            if seconds == 0 {
                return Err("Timeout must be at least 1 second".into());
            }
            config.timeout = Duration::from_secs(seconds);
        }
        if let Some(mb) = self.memory_size {
            config.memory_mb = mb;
        }
        if let Some(environment) = &self.environment {
            config.env = environment.variables.clone();
        }
        if let Some(storage) = &self.ephemeral_storage {
            config.ephemeral_storage_mb = Some(storage.size);
        }
        Ok(())
    }
}

/// A new function's config under the Lambda API: Lambda's defaults (3 s), then `settings`.
pub fn new_config(settings: &Settings) -> Result<FunctionConfig, String> {
    let mut config = FunctionConfig {
        timeout: DEFAULT_TIMEOUT,
        ..FunctionConfig::default()
    };
    settings.apply(&mut config)?;
    if config.runtime.is_none() {
        return Err("Runtime is missing (provided.al2023, python3.12, ...)".into());
    }
    Ok(config)
}

/// A function (or one of its versions) as the Lambda API shows it.
pub struct Shown<'a> {
    /// The name in the caller's namespace.
    pub name: &'a str,
    pub kind: FunctionKind,
    pub config: &'a FunctionConfig,
    pub code_sha256: &'a str,
    pub code_size: u64,
    pub updated_at: i64,
    /// None: `$LATEST`.
    pub version: Option<u32>,
    pub description: &'a str,
}

impl<'a> Shown<'a> {
    pub fn latest(name: &'a str, record: &'a FunctionRecord) -> Self {
        Self {
            name,
            kind: record.kind,
            config: &record.config,
            code_sha256: &record.code_sha256,
            code_size: record.code_size,
            updated_at: record.updated_at,
            version: None,
            description: "",
        }
    }

    pub fn version(name: &'a str, record: &'a VersionRecord) -> Self {
        Self {
            name,
            kind: record.kind,
            config: &record.config,
            code_sha256: &record.code_sha256,
            code_size: record.code_size,
            updated_at: record.created_at,
            version: Some(record.version),
            description: &record.description,
        }
    }

    /// The `FunctionConfiguration` document. States are always `Active` and `Successful`:
    /// a kumo deploy is done when it answers, so SDK waiters pass at once.
    pub fn configuration(&self) -> Value {
        let version = self
            .version
            .map_or_else(|| kumo_core::LATEST.to_string(), |n| n.to_string());
        let qualifier = self.version.map(|n| n.to_string());
        let mut document = json!({
            "FunctionName": self.name,
            "FunctionArn": function_arn(self.name, qualifier.as_deref()),
            "Role": ROLE,
            "CodeSize": self.code_size,
            "CodeSha256": sha256_base64(self.code_sha256),
            "Description": self.description,
            "Timeout": self.config.timeout.as_secs().max(1),
            "MemorySize": self.config.memory_mb,
            "LastModified": last_modified(self.updated_at),
            "Version": version,
            "Environment": {"Variables": self.config.env},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": [architecture()],
            "RevisionId": revision_id(self.code_sha256, self.updated_at),
            "EphemeralStorage": {
                "Size": self.config.ephemeral_storage_bytes() / (1024 * 1024),
            },
        });
        if let Some(runtime) = self.config.runtime {
            document["Runtime"] = json!(runtime_shown(runtime));
        }
        if let Some(handler) = &self.config.handler {
            document["Handler"] = json!(handler);
        }
        if self.kind != FunctionKind::Lambda {
            // Not one of Lambda's: says what it is to a reader of the document.
            document["KumoKind"] = json!(self.kind.as_str());
        }
        document
    }
}

/// The runtime name a Lambda user knows (`provided.al2023`, `python3.12`...) is kept only as
/// kumo's family; this is what reads back.
fn runtime_shown(runtime: LambdaRuntimeName) -> &'static str {
    match runtime {
        LambdaRuntimeName::Provided => "provided.al2023",
        LambdaRuntimeName::Python3 => "python3.11",
    }
}

/// Lambda's `CodeSha256` is the digest in base64; kumo keeps it in hex.
fn sha256_base64(hex_digest: &str) -> String {
    use base64::Engine as _;
    let bytes = hex::decode(hex_digest).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lambda's `LastModified`: `2024-05-01T12:00:00.000+0000`.
fn last_modified(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// Changes whenever the code or the config does (a deploy moves `updated_at`).
fn revision_id(sha: &str, updated_at: i64) -> String {
    let short = sha.get(..20).unwrap_or(sha);
    format!("{short}-{updated_at:x}")
}

/// An alias as Lambda shows it (`AliasConfiguration`); its canary is `RoutingConfig`.
pub fn alias_configuration(name: &str, alias: &AliasRecord) -> Value {
    let mut document = json!({
        "AliasArn": function_arn(name, Some(&alias.name)),
        "Name": alias.name,
        "FunctionVersion": alias.version.to_string(),
        "Description": "",
        "RevisionId": format!("{:x}", alias.updated_at),
    });
    if let Some(canary) = alias.canary {
        let weight = f64::from(canary.weight) / 100.0;
        document["RoutingConfig"] =
            json!({"AdditionalVersionWeights": {canary.version.to_string(): weight}});
    }
    document
}

impl AliasInput {
    /// The alias's version and canary. `current` is the version an update keeps when the
    /// request names none.
    pub fn target(&self, current: Option<u32>) -> Result<(u32, Option<Canary>), String> {
        let version = match self.function_version.as_deref() {
            Some(text) => published_version(text)?,
            None => current.ok_or("FunctionVersion is missing")?,
        };
        let weights = self
            .routing_config
            .as_ref()
            .map(|r| &r.additional_version_weights);
        let canary = match weights.map(|w| w.iter().collect::<Vec<_>>()).as_deref() {
            None | Some([]) => None,
            Some([(canary, weight)]) => {
                let percent = (**weight * 100.0).round();
                if !(1.0..=99.0).contains(&percent) {
                    return Err(format!(
                        "the weight {weight} of version {canary} is not between 0.01 and 0.99 (kumo routes in whole percent)"
                    ));
                }
                let canary = Canary {
                    version: published_version(canary)?,
                    weight: percent as u8,
                };
                kumo_core::validate_canary(version, &canary)?;
                Some(canary)
            }
            Some(_) => return Err("AdditionalVersionWeights may name one version".into()),
        };
        Ok((version, canary))
    }
}

/// A version an alias may point at (kumo's aliases point at published versions only).
fn published_version(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a published version number (kumo's aliases point at published versions)"
        )),
    }
}

/// The AWS error a kumo error is: its status and `x-amzn-ErrorType`.
pub fn aws_error(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::FunctionNotFound
        | ErrorKind::NotFound
        | ErrorKind::InvocationNotFound
        | ErrorKind::KeyNotFound
        | ErrorKind::ObjectNotFound => (404, "ResourceNotFoundException"),
        ErrorKind::InvalidFunction | ErrorKind::InvalidRequest => {
            (400, "InvalidParameterValueException")
        }
        ErrorKind::MethodNotAllowed => (405, "InvalidParameterValueException"),
        ErrorKind::Conflict => (409, "ResourceConflictException"),
        ErrorKind::PreconditionFailed => (412, "PreconditionFailedException"),
        ErrorKind::PayloadTooLarge => (413, "RequestEntityTooLargeException"),
        ErrorKind::Throttled | ErrorKind::QuotaExceeded => (429, "TooManyRequestsException"),
        ErrorKind::Unauthorized => (403, "UnrecognizedClientException"),
        ErrorKind::Forbidden => (403, "AccessDeniedException"),
        ErrorKind::RequestTimeout => (408, "RequestTimeoutException"),
        ErrorKind::CallDepthExceeded => (400, "InvalidRequestContentException"),
        ErrorKind::Unavailable | ErrorKind::InsufficientStorage => {
            (503, "ServiceUnavailableException")
        }
        ErrorKind::Timeout
        | ErrorKind::OutOfMemory
        | ErrorKind::FunctionError
        | ErrorKind::Internal => (500, "ServiceException"),
    }
}

/// Whether an invocation's error is the function's own (Invoke answers 200 with
/// `X-Amz-Function-Error: Unhandled` and the error document), not the platform's.
pub fn is_function_error(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::FunctionError | ErrorKind::Timeout | ErrorKind::OutOfMemory
    )
}

/// The error document of a function error that has none of the runtime's own (a
/// WebAssembly function's, a timeout's, an out-of-memory's).
pub fn error_document(kind: ErrorKind, message: &str) -> Value {
    let error_type = match kind {
        ErrorKind::Timeout => "Sandbox.Timedout",
        ErrorKind::OutOfMemory => "Runtime.OutOfMemory",
        _ => "Runtime.Unhandled",
    };
    json!({"errorType": error_type, "errorMessage": message})
}

/// The header an invocation carries its client context in to the Invoker (set by the Lambda
/// API only; decoded JSON).
pub const CLIENT_CONTEXT_HEADER: &str = "x-kumo-lambda-client-context";
/// Lambda's limit on `X-Amz-Client-Context` (base64).
const MAX_CLIENT_CONTEXT: usize = 3583;

/// `X-Amz-Client-Context` (base64 of a JSON object) as the runtime gets it: the JSON, on one
/// line.
pub fn client_context(header: &str) -> Result<String, String> {
    if header.len() > MAX_CLIENT_CONTEXT {
        return Err(format!(
            "X-Amz-Client-Context is longer than {MAX_CLIENT_CONTEXT} characters"
        ));
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header)
        .map_err(|_| "X-Amz-Client-Context is not base64")?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(context @ Value::Object(_)) => Ok(context.to_string()),
        _ => Err("X-Amz-Client-Context is not base64 of a JSON object".into()),
    }
}

/// The last [`TAIL_BYTES`] of `lines` (whole characters), as `X-Amz-Log-Result` carries
/// them before base64.
pub fn log_tail(lines: &[String]) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let mut cut = text.len().saturating_sub(TAIL_BYTES);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.split_off(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_and_arns() {
        let plain = parse_function_name("hello").unwrap();
        assert_eq!((plain.name.as_str(), plain.qualifier), ("hello", None));
        for text in [
            "hello:live",
            "arn:aws:lambda:us-east-1:123456789012:function:hello:live",
            "123456789012:function:hello:live",
        ] {
            let parsed = parse_function_name(text).unwrap();
            assert_eq!(parsed.name, "hello", "{text}");
            assert_eq!(parsed.qualifier.as_deref(), Some("live"), "{text}");
        }
        let arn = parse_function_name("arn:aws:lambda:eu-west-1:1:function:f").unwrap();
        assert_eq!((arn.name.as_str(), arn.qualifier), ("f", None));
        for bad in [
            "",
            "Hello",
            "a:b:c",
            "a/b",
            "hello:0",
            "x:function:",
            "hello:-x",
        ] {
            assert!(parse_function_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            function_arn("f", Some("2")),
            "arn:aws:lambda:us-east-1:000000000000:function:f:2"
        );
    }

    #[test]
    fn operations_from_method_and_path() {
        use Operation::*;
        let cases = [
            ("POST", "/2015-03-31/functions", Some(CreateFunction)),
            ("GET", "/2015-03-31/functions/", Some(ListFunctions)),
            (
                "GET",
                "/2015-03-31/functions/f",
                Some(GetFunction("f".into())),
            ),
            (
                "GET",
                "/2015-03-31/functions/f%3Alive/configuration",
                Some(GetFunctionConfiguration("f:live".into())),
            ),
            (
                "PUT",
                "/2015-03-31/functions/f/code",
                Some(UpdateFunctionCode("f".into())),
            ),
            (
                "POST",
                "/2015-03-31/functions/f/versions",
                Some(PublishVersion("f".into())),
            ),
            (
                "PUT",
                "/2015-03-31/functions/f/aliases/live",
                Some(UpdateAlias("f".into(), "live".into())),
            ),
            (
                "POST",
                "/2015-03-31/functions/f/invocations",
                Some(Invoke("f".into())),
            ),
            (
                "DELETE",
                "/2015-03-31/functions/f",
                Some(DeleteFunction("f".into())),
            ),
            ("PATCH", "/2015-03-31/functions/f", None),
            ("GET", "/2015-03-31/functionsx", None),
            ("GET", "/2015-03-31/functions/f/unknown", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(operation(method, path), want, "{method} {path}");
        }
        assert_eq!(Invoke("f".into()).action(), Action::Invoke);
        assert_eq!(GetAlias("f".into(), "a".into()).action(), Action::Read);
        assert_eq!(CreateAlias("f".into()).action(), Action::Write);
    }

    #[test]
    fn settings_become_config_and_refuse_what_kumo_cannot_do() {
        let settings: Settings = serde_json::from_value(json!({
            "Runtime": "python3.12", "Handler": "app.handler", "Timeout": 7,
            "MemorySize": 256, "Role": "arn:aws:iam::1:role/x",
            "Environment": {"Variables": {"A": "1"}}
        }))
        .unwrap();
        let config = new_config(&settings).unwrap();
        assert_eq!(config.runtime, Some(LambdaRuntimeName::Python3));
        assert_eq!(config.handler.as_deref(), Some("app.handler"));
        assert_eq!(config.timeout, Duration::from_secs(7));
        assert_eq!(config.memory_mb, 256);
        assert_eq!(config.env["A"], "1");
        let defaults = new_config(&Settings {
            runtime: Some("provided.al2023".into()),
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(defaults.timeout, DEFAULT_TIMEOUT);
        for bad in [
            json!({"Runtime": "nodejs20.x"}),
            json!({"Runtime": "provided", "PackageType": "Image"}),
            json!({"Runtime": "provided", "Layers": ["arn:x"]}),
            json!({"Runtime": "provided", "Architectures": ["mips"]}),
            json!({"Runtime": "provided", "Timeout": 0}),
            json!({"Handler": "x"}),
        ] {
            let settings: Settings = serde_json::from_value(bad.clone()).unwrap();
            assert!(new_config(&settings).is_err(), "{bad}");
        }
    }

    #[test]
    fn code_is_base64_zip_only() {
        let code: CodeInput = serde_json::from_value(json!({"ZipFile": "UEsFBg=="})).unwrap();
        assert_eq!(code.bytes().unwrap(), b"PK\x05\x06");
        for bad in [
            json!({}),
            json!({"ZipFile": "not base64!"}),
            json!({"S3Bucket": "b", "S3Key": "k"}),
        ] {
            let code: CodeInput = serde_json::from_value(bad.clone()).unwrap();
            assert!(code.bytes().is_err(), "{bad}");
        }
    }

    #[test]
    fn configuration_document() {
        let record = FunctionRecord {
            name: "default/f".into(),
            kind: FunctionKind::Lambda,
            code_sha256: "00ff".repeat(16),
            code_size: 10,
            config: FunctionConfig {
                runtime: Some(LambdaRuntimeName::Provided),
                handler: Some("h".into()),
                ..FunctionConfig::default()
            },
            created_at: 0,
            updated_at: 1_700_000_000_123,
            reuse_fell_back: false,
        };
        let document = Shown::latest("f", &record).configuration();
        assert_eq!(document["FunctionName"], "f");
        assert_eq!(document["Version"], "$LATEST");
        assert_eq!(document["Runtime"], "provided.al2023");
        assert_eq!(document["Timeout"], 30);
        assert_eq!(document["State"], "Active");
        assert_eq!(document["LastModified"], "2023-11-14T22:13:20.123+0000");
        assert_eq!(
            document["CodeSha256"],
            "AP8A/wD/AP8A/wD/AP8A/wD/AP8A/wD/AP8A/wD/AP8="
        );
    }

    #[test]
    fn aliases_routing_config_is_a_canary_in_whole_percent() {
        let input: AliasInput = serde_json::from_value(json!({
            "Name": "live", "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}}
        }))
        .unwrap();
        let (version, canary) = input.target(None).unwrap();
        assert_eq!(version, 1);
        assert_eq!(
            canary,
            Some(Canary {
                version: 2,
                weight: 10
            })
        );
        let alias = AliasRecord {
            function: "default/f".into(),
            name: "live".into(),
            version,
            canary,
            updated_at: 1,
        };
        let shown = alias_configuration("f", &alias);
        assert_eq!(shown["RoutingConfig"]["AdditionalVersionWeights"]["2"], 0.1);
        assert_eq!(shown["FunctionVersion"], "1");
        for bad in [
            json!({"FunctionVersion": "$LATEST"}),
            json!({"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.001}}}),
            json!({"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}),
            json!({"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}}),
            json!({}),
        ] {
            let input: AliasInput = serde_json::from_value(bad.clone()).unwrap();
            assert!(input.target(None).is_err(), "{bad}");
        }
        let keep: AliasInput = serde_json::from_value(json!({})).unwrap();
        assert_eq!(keep.target(Some(4)).unwrap(), (4, None));
    }

    #[test]
    fn errors_map_to_aws_names() {
        assert_eq!(
            aws_error(ErrorKind::FunctionNotFound),
            (404, "ResourceNotFoundException")
        );
        assert_eq!(
            aws_error(ErrorKind::Throttled),
            (429, "TooManyRequestsException")
        );
        assert_eq!(
            aws_error(ErrorKind::PayloadTooLarge),
            (413, "RequestEntityTooLargeException")
        );
        assert!(is_function_error(ErrorKind::Timeout));
        assert!(!is_function_error(ErrorKind::Throttled));
        assert_eq!(
            error_document(ErrorKind::Timeout, "late")["errorType"],
            "Sandbox.Timedout"
        );
    }

    #[test]
    fn a_client_context_is_base64_of_a_json_object() {
        use base64::Engine as _;
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            client_context(&encode("{\n\"custom\": {\"a\": 1}}")),
            Ok(r#"{"custom":{"a":1}}"#.to_string())
        );
        for bad in [
            encode("[1]"),
            encode("nope"),
            "%%%".into(),
            "A".repeat(4000),
        ] {
            assert!(client_context(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_log_tail_is_the_last_4_kb_on_a_character_boundary() {
        let lines = vec!["é".repeat(3000), "last".to_string()];
        let tail = log_tail(&lines);
        assert!(tail.len() <= TAIL_BYTES);
        assert!(tail.ends_with("last\n"));
        assert_eq!(log_tail(&["a".into()]), "a\n");
    }
}
