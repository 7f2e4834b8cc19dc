//! Who may do what: roles, what a control-API request needs, and tokens' shape. No I/O; the
//! server's one authorisation layer asks [`required`] and [`Role::allows`] for every request.

use serde::{Deserialize, Serialize};

/// What a token may do (in its namespace; `admin` everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Deploy, publish, aliases, delete, key-value, objects, events, logs, records.
    Developer,
    /// Invoke (sync and async) and read the status of invocations.
    Invoker,
    /// Read-only.
    Viewer,
}

impl Role {
    pub const ALL: [Self; 4] = [Self::Admin, Self::Developer, Self::Invoker, Self::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Invoker => "invoker",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may take `action`.
    pub fn allows(self, action: Action) -> bool {
        match (self, action) {
            (Self::Admin, _) => true,
            (_, Action::Manage) => false,
            (Self::Developer, _) => true,
            (Self::Invoker, Action::Invoke | Action::InvocationStatus | Action::Metrics) => true,
            (Self::Viewer, Action::Read | Action::InvocationStatus | Action::Metrics) => true,
            (Self::Invoker | Self::Viewer, _) => false,
        }
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read anything (functions, records, logs, key-value, objects, usage).
    Read,
    /// Read one invocation's status (`/invocations/{id}`).
    InvocationStatus,
    /// Run a function.
    Invoke,
    /// Change anything but tokens.
    Write,
    /// Tokens.
    Manage,
    /// `/metrics`.
    Metrics,
}

/// What a control-API request needs, from its method and its path below `/api/v1`.
pub fn required(method: &str, path: &str) -> Action {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = matches!(method, "GET" | "HEAD" | "OPTIONS");
    match segments.as_slice() {
        ["tokens" | "audit" | "namespaces" | "cluster", ..] => Action::Manage,
        ["invocations", _id] | ["invocations", _id, "events"] if read => Action::InvocationStatus,
        ["functions", _name, "invoke"] => Action::Invoke,
        // Starting an execution runs functions; so does answering a callback task.
        ["workflows", _, "executions"] | ["tasks", _] if !read => Action::Invoke,
        _ if read => Action::Read,
        _ => Action::Write,
    }
}

/// Whether a control-API request changes the control plane, and so goes to the audit trail:
/// writes to functions (deploys, deletes, versions, aliases, redrives), workflows (deploys,
/// deletes) and tokens. Invocations, executions and the data kept for functions (key-value,
/// objects, topic messages) are not changes to it.
pub fn audited(method: &str, path: &str) -> bool {
    let path = match crate::api_scope(path) {
        crate::ApiScope::Namespace { rest, .. } => rest,
        _ => path,
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = matches!(method, "GET" | "HEAD" | "OPTIONS");
    match segments.as_slice() {
        _ if read => false,
        ["functions", _name, "invoke"] => false,
        ["functions" | "tokens" | "secrets" | "namespaces", ..] => true,
        ["workflows", _name] => true,
        _ => false,
    }
}

/// What a Lambda function may do through kumo's API from its own execution environment (its
/// requests come in on a listener inside the environment, so they carry who sent them): invoke
/// functions of its namespace, and use the key-value and object buckets its config grants.
/// `path` is below `/api/v1`, without the namespace's prefix.
pub fn function_may(kv: &[String], objects: &[String], method: &str, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let granted = |buckets: &[String], bucket: &str| buckets.iter().any(|b| b == bucket);
    match segments.as_slice() {
        ["functions", _name, "invoke"] => method == "POST",
        ["kv", bucket, ..] => granted(kv, bucket),
        ["objects", bucket, ..] => granted(objects, bucket),
        _ => false,
    }
}

/// The prefix of every token secret, so a leaked one is recognisable (and scannable).
pub const TOKEN_PREFIX: &str = "kumo_";

/// Whether `secret` has the shape of the secrets kumo makes: the prefix and 64 lower-case hex
/// digits (256 random bits), as a secret given to kumo (`KUMO_ADMIN_TOKEN`) must.
pub fn is_token_secret(secret: &str) -> bool {
    secret.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Token names: 1 to 64 of `[a-z0-9-_.]`, starting with a letter or digit.
pub fn validate_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid token name {name:?}: 1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )),
    }
}

/// Secret names are environment variable names: `[A-Z_][A-Z0-9_]*`, at most 128 long.
pub fn validate_secret_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid secret name {name:?}: an environment variable name (A-Z, 0-9, _; not starting with a digit)"
        )),
    }
}

/// A secret as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The token a request carries in `Authorization: Bearer ...`, if any.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// One change to the control plane (or an attempt at one), as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Unix ms.
    pub at: i64,
    /// The token's name; none without auth (`--auth none`) or when no valid token came.
    pub token: Option<String>,
    /// The HTTP method: `PUT`, `POST`, `DELETE`.
    pub method: String,
    /// The path below `/api/v1`, e.g. `/functions/hello`.
    pub target: String,
    /// The namespace it changed; none for tokens and namespaces themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The client's address.
    pub source: Option<String>,
    /// The answer's status: what came of it.
    pub status: u16,
}

/// A token as stored and listed: never its secret, only the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// The namespace it acts in; none for an admin, which acts in every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; none: never expires.
    pub expires_at: Option<i64>,
    /// Unix ms; none: never used.
    pub last_used_at: Option<i64>,
    /// Its AWS access key id, when it signs AWS API requests (SigV4) too; the secret access
    /// key is the token's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
}

impl TokenRecord {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

#[cfg(test)]
mod secret_tests {
    use super::is_token_secret;

    #[test]
    fn a_token_secret_is_the_prefix_and_64_hex_digits() {
        let good = format!("kumo_{}", "0123456789abcdef".repeat(4));
        assert!(is_token_secret(&good));
        assert!(!is_token_secret(&good[..good.len() - 1]));
        assert!(!is_token_secret(&good.to_uppercase()));
        assert!(!is_token_secret(&good.replace("kumo_", "")));
        assert!(!is_token_secret(&format!("kumo_{}", "g".repeat(64))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_are_for() {
        use Action::*;
        let table = [
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Developer, [true, true, true, true, false, true]),
            (Role::Invoker, [false, true, true, false, false, true]),
            (Role::Viewer, [true, true, false, false, false, true]),
        ];
        for (role, allowed) in table {
            let actions = [Read, InvocationStatus, Invoke, Write, Manage, Metrics];
            for (action, want) in actions.into_iter().zip(allowed) {
                assert_eq!(role.allows(action), want, "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn requests_need_what_they_do() {
        assert_eq!(required("GET", "/functions"), Action::Read);
        assert_eq!(required("PUT", "/functions/f"), Action::Write);
        assert_eq!(required("DELETE", "/functions/f"), Action::Write);
        assert_eq!(required("POST", "/functions/f/invoke"), Action::Invoke);
        assert_eq!(
            required("GET", "/invocations/abc"),
            Action::InvocationStatus
        );
        assert_eq!(
            required("GET", "/invocations/abc/events"),
            Action::InvocationStatus
        );
        assert_eq!(required("GET", "/invocations"), Action::Read);
        assert_eq!(required("POST", "/tokens"), Action::Manage);
        assert_eq!(required("GET", "/tokens"), Action::Manage);
        assert_eq!(required("GET", "/audit"), Action::Manage);
        assert_eq!(required("GET", "/cluster"), Action::Manage);
        assert_eq!(required("GET", "/namespaces"), Action::Manage);
        assert_eq!(required("PUT", "/namespaces/shop"), Action::Manage);
        assert_eq!(required("POST", "/topics/t"), Action::Write);
        assert_eq!(required("HEAD", "/objects/b/k"), Action::Read);
        assert_eq!(required("POST", "/functions/f/dlq/redrive"), Action::Write);
    }

    #[test]
    fn changes_to_functions_and_tokens_are_audited() {
        assert!(audited("PUT", "/functions/f"));
        assert!(audited("DELETE", "/functions/f/aliases/live"));
        assert!(audited("POST", "/functions/f/dlq/redrive"));
        assert!(audited("POST", "/tokens"));
        assert!(audited("PUT", "/workflows/w") && audited("DELETE", "/workflows/w"));
        assert!(!audited("POST", "/workflows/w/executions"));
        assert_eq!(required("POST", "/workflows/w/executions"), Action::Invoke);
        assert_eq!(required("POST", "/tasks/success"), Action::Invoke);
        assert_eq!(required("GET", "/workflows/w/executions"), Action::Read);
        assert_eq!(required("POST", "/executions/x/stop"), Action::Write);
        assert!(!audited("GET", "/functions/f"));
        assert!(!audited("POST", "/functions/f/invoke"));
        assert!(!audited("PUT", "/kv/b/k"));
        assert!(!audited("POST", "/topics/t"));
        assert!(audited("PUT", "/namespaces/shop"));
        assert!(audited("PUT", "/namespaces/shop/functions/f"));
        assert!(!audited("PUT", "/namespaces/shop/kv/b/k"));
    }

    #[test]
    fn bearer_tokens_are_taken_from_the_header() {
        assert_eq!(bearer("Bearer kumo_abc"), Some("kumo_abc"));
        assert_eq!(bearer("bearer  kumo_abc "), Some("kumo_abc"));
        assert_eq!(bearer("Basic xyz"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("kumo_abc"), None);
    }

    #[test]
    fn secret_names_are_environment_variable_names() {
        assert!(validate_secret_name("DB_URL").is_ok());
        assert!(validate_secret_name("_X1").is_ok());
        assert!(validate_secret_name("db_url").is_err());
        assert!(validate_secret_name("1X").is_err());
        assert!(validate_secret_name("").is_err());
        assert!(validate_secret_name("A-B").is_err());
        assert!(audited("PUT", "/secrets/DB_URL"));
    }

    #[test]
    fn token_names_are_checked() {
        assert!(validate_token_name("ci-deploy.1").is_ok());
        assert!(validate_token_name("").is_err());
        assert!(validate_token_name("-x").is_err());
        assert!(validate_token_name("Admin").is_err());
        assert!(validate_token_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn roles_serialize_as_their_names() {
        for role in Role::ALL {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }

    #[test]
    fn a_function_may_invoke_and_use_its_granted_buckets_only() {
        let (kv, objects) = (vec!["carts".to_string()], vec!["uploads".to_string()]);
        let may = |method: &str, path: &str| function_may(&kv, &objects, method, path);
        assert!(may("POST", "/functions/other/invoke"));
        assert!(may("GET", "/kv/carts/k1") && may("PUT", "/kv/carts/a/b"));
        assert!(may("GET", "/kv/carts"));
        assert!(may("DELETE", "/objects/uploads/x.png"));
        for (method, path) in [
            ("GET", "/kv/other/k"),
            ("GET", "/objects/carts/k"),
            ("GET", "/functions/other/invoke"),
            ("PUT", "/functions/f"),
            ("GET", "/functions"),
            ("GET", "/invocations"),
            ("GET", "/secrets"),
            ("POST", "/tokens"),
            ("GET", "/kv/carts%2F..%2Fx/k"),
        ] {
            assert!(!may(method, path), "{method} {path}");
        }
    }
}
