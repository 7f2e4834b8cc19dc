//! Namespaces (tenants). Every function (with its versions, aliases, routes, schedules and
//! subscriptions), key-value bucket, object bucket, topic and secret belongs to one, and so do
//! the events, records, logs and usage of its functions.
//!
//! A resource is stored under its *key*: its bare name in `default`, `NS/NAME` elsewhere. Names
//! are DNS labels and never hold a `/`, so a key names one namespace and one name; every store
//! query that takes a name takes the namespace with it, and data written before namespaces
//! existed (all of it in `default`) keeps its keys. Records, logs and usage show the key.

use crate::name::validate_name;
use serde::{Deserialize, Serialize};

pub const DEFAULT_NAMESPACE: &str = "default";
const SEPARATOR: char = '/';

/// A namespace is named like a function: a DNS label.
pub fn validate_namespace(namespace: &str) -> Result<(), String> {
    validate_name(namespace).map_err(|e| format!("invalid namespace {namespace:?}: {}", e.why))
}

/// What a namespace may use at most; none: no limit but the server's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_functions: Option<u64>,
    /// Invocations running at once, all its functions together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// Keys and values of all its key-value buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kv_bytes: Option<u64>,
    /// Objects of all its buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_object_bytes: Option<u64>,
    /// Events waiting to run (asynchronous invocations, messages, schedule ticks, retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_events: Option<u64>,
}

/// A namespace as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamespaceRecord {
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    #[serde(default)]
    pub quotas: Quotas,
}

/// What a namespace uses of what its quotas bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamespaceUse {
    pub functions: u64,
    pub concurrency: u64,
    pub kv_bytes: u64,
    pub object_bytes: u64,
    pub queued_events: u64,
}

/// A namespace as the API shows it: with what it uses now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamespaceInfo {
    #[serde(flatten)]
    pub namespace: NamespaceRecord,
    pub used: NamespaceUse,
}

/// What a write adds to a namespace, as its quotas count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adding {
    Function,
    KvBytes(u64),
    ObjectBytes(u64),
    QueuedEvents(u64),
}

impl Quotas {
    /// Whether a quota bounds what `adding` adds (if not, nothing need be measured).
    pub fn bounds(&self, adding: Adding) -> bool {
        self.limit_of(adding).is_some()
    }

    fn limit_of(&self, adding: Adding) -> Option<(u64, &'static str)> {
        match adding {
            Adding::Function => self.max_functions.map(|m| (m, "max_functions")),
            Adding::KvBytes(_) => self.max_kv_bytes.map(|m| (m, "max_kv_bytes")),
            Adding::ObjectBytes(_) => self.max_object_bytes.map(|m| (m, "max_object_bytes")),
            Adding::QueuedEvents(_) => self.max_queued_events.map(|m| (m, "max_queued_events")),
        }
    }

    /// `Ok` if `namespace`, using `used`, stays within its quota after `adding`; else what
    /// would be exceeded.
    pub fn check(
        &self,
        namespace: &str,
        used: &NamespaceUse,
        adding: Adding,
    ) -> Result<(), String> {
        let Some((limit, quota)) = self.limit_of(adding) else {
            return Ok(());
        };
        let (now, added, unit) = match adding {
            Adding::Function => (used.functions, 1, "functions"),
            Adding::KvBytes(n) => (used.kv_bytes, n, "bytes of key-value data"),
            Adding::ObjectBytes(n) => (used.object_bytes, n, "bytes of objects"),
            Adding::QueuedEvents(n) => (used.queued_events, n, "queued events"),
        };
        match now.saturating_add(added) <= limit {
            true => Ok(()),
            false => Err(format!(
                "namespace {namespace:?} would exceed its {quota} quota: it has {now} {unit}, this adds {added}, the quota is {limit}"
            )),
        }
    }
}

/// The key `name` of `namespace` is stored under.
pub fn scoped(namespace: &str, name: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        name.to_string()
    } else {
        format!("{namespace}{SEPARATOR}{name}")
    }
}

/// A key's namespace and bare name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once(SEPARATOR)
        .unwrap_or((DEFAULT_NAMESPACE, key))
}

/// The namespace a key belongs to.
pub fn namespace_of(key: &str) -> &str {
    split_key(key).0
}

/// Whether the key belongs to `namespace`.
pub fn in_namespace(key: &str, namespace: &str) -> bool {
    namespace_of(key) == namespace
}

/// A key's name as the data plane spells it after `/fn/`: `NAME` in `default`, `NAME.NS`
/// elsewhere (OpenFaaS's `/function/NAME.NAMESPACE`; names never hold a `.`).
pub fn url_name(key: &str) -> String {
    match split_key(key) {
        (DEFAULT_NAMESPACE, name) => name.to_string(),
        (namespace, name) => format!("{name}.{namespace}"),
    }
}

/// The key a data-plane name (`NAME` or `NAME.NS`) stands for.
pub fn key_of_url_name(url_name: &str) -> String {
    match url_name.split_once('.') {
        Some((name, namespace)) => scoped(namespace, name),
        None => url_name.to_string(),
    }
}

/// Whether a token bound to `token_namespace` (none: every namespace) may act in `namespace`.
pub fn may_enter(token_namespace: Option<&str>, namespace: &str) -> bool {
    token_namespace.is_none_or(|own| own == namespace)
}

/// Where a control-API path (below `/api/v1`) points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiScope<'a> {
    /// Tokens, the audit trail and namespaces themselves: the whole server's.
    Global,
    /// A namespace's resources: `/namespaces/{ns}/REST`, or today's unprefixed paths, which
    /// mean `default`. `rest` is the path the router serves.
    Namespace { namespace: &'a str, rest: &'a str },
    /// A global endpoint asked for inside a namespace (`/namespaces/x/tokens`): no such thing.
    Nowhere,
}

/// Splits a control-API path (below `/api/v1`) into its namespace and the rest.
pub fn api_scope(path: &str) -> ApiScope<'_> {
    let is_global = |p: &str| {
        let first = p.trim_start_matches('/').split('/').next().unwrap_or("");
        matches!(
            first,
            "tokens" | "audit" | "namespaces" | "cluster" | "openapi.json"
        )
    };
    let Some(inside) = path.strip_prefix("/namespaces/") else {
        return match is_global(path) {
            true => ApiScope::Global,
            false => ApiScope::Namespace {
                namespace: DEFAULT_NAMESPACE,
                rest: path,
            },
        };
    };
    match inside.find('/') {
        // `/namespaces/{ns}` and `/namespaces/{ns}/`: the namespace itself.
        None => ApiScope::Global,
        Some(i) if inside[i..] == *"/" => ApiScope::Global,
        Some(i) => {
            let (namespace, rest) = inside.split_at(i);
            match is_global(rest) {
                true => ApiScope::Nowhere,
                false => ApiScope::Namespace { namespace, rest },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_namespace_outside_default() {
        assert_eq!(scoped("default", "hello"), "hello");
        assert_eq!(scoped("shop", "hello"), "shop/hello");
        assert_eq!(split_key("shop/hello"), ("shop", "hello"));
        assert_eq!(split_key("hello"), ("default", "hello"));
        assert!(in_namespace("hello", "default"));
        assert!(!in_namespace("shop/hello", "default"));
        assert!(in_namespace("shop/hello", "shop"));
        assert!(!in_namespace("shop/hello", "sho"));
    }

    #[test]
    fn quotas_bound_what_they_name() {
        let quotas = Quotas {
            max_functions: Some(2),
            max_kv_bytes: Some(100),
            ..Quotas::default()
        };
        let used = NamespaceUse {
            functions: 2,
            kv_bytes: 90,
            ..NamespaceUse::default()
        };
        let exceeded = quotas.check("shop", &used, Adding::Function).unwrap_err();
        assert!(exceeded.contains("max_functions"), "{exceeded}");
        assert!(quotas.check("shop", &used, Adding::KvBytes(10)).is_ok());
        assert!(quotas.check("shop", &used, Adding::KvBytes(11)).is_err());
        assert!(!quotas.bounds(Adding::ObjectBytes(1)));
        assert!(
            quotas
                .check("shop", &used, Adding::ObjectBytes(u64::MAX))
                .is_ok()
        );
        assert!(quotas.bounds(Adding::KvBytes(0)));
    }

    #[test]
    fn data_plane_names_carry_the_namespace_after_a_dot() {
        assert_eq!(url_name("shop/hello"), "hello.shop");
        assert_eq!(url_name("hello"), "hello");
        assert_eq!(key_of_url_name("hello.shop"), "shop/hello");
        assert_eq!(key_of_url_name("hello.default"), "hello");
        assert_eq!(key_of_url_name("hello"), "hello");
    }

    #[test]
    fn tokens_enter_their_own_namespace_only() {
        assert!(may_enter(None, "shop"));
        assert!(may_enter(Some("shop"), "shop"));
        assert!(!may_enter(Some("shop"), "default"));
        assert!(!may_enter(Some("default"), "shop"));
    }

    #[test]
    fn api_paths_name_their_namespace() {
        let ns = |namespace, rest| ApiScope::Namespace { namespace, rest };
        assert_eq!(api_scope("/functions/f"), ns("default", "/functions/f"));
        assert_eq!(
            api_scope("/namespaces/shop/functions/f"),
            ns("shop", "/functions/f")
        );
        assert_eq!(api_scope("/namespaces/shop/kv/b/k"), ns("shop", "/kv/b/k"));
        assert_eq!(api_scope("/tokens"), ApiScope::Global);
        assert_eq!(api_scope("/tokens/ci"), ApiScope::Global);
        assert_eq!(api_scope("/audit"), ApiScope::Global);
        assert_eq!(api_scope("/namespaces"), ApiScope::Global);
        assert_eq!(api_scope("/namespaces/shop"), ApiScope::Global);
        assert_eq!(api_scope("/namespaces/shop/"), ApiScope::Global);
        assert_eq!(api_scope("/namespaces/shop/tokens"), ApiScope::Nowhere);
        assert_eq!(
            api_scope("/namespaces/shop/namespaces/x/functions"),
            ApiScope::Nowhere
        );
    }
}
