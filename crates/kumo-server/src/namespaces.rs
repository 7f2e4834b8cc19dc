//! Namespaces on the server: a cache of the store's namespaces (and their quotas), the step
//! that takes `/api/v1/namespaces/{ns}/...` to the path the router serves, and the extractor
//! that tells a handler its namespace.

use crate::error::{ApiError, ApiResult};
use axum::extract::{FromRequestParts, Request};
use http::request::Parts;
use kumo_core::{ApiScope, DEFAULT_NAMESPACE, NamespaceRecord, Quotas};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::RwLock;

/// Cache of the store: every namespace, by name, replaced whole after each change.
#[derive(Default)]
pub(crate) struct Namespaces {
    known: RwLock<HashMap<String, NamespaceRecord>>,
}

impl Namespaces {
    pub(crate) fn load(&self, namespaces: Vec<NamespaceRecord>) {
        let known = namespaces
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        *self.known.write().unwrap_or_else(|p| p.into_inner()) = known;
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// The namespace, as the store last said.
    pub(crate) fn get(&self, name: &str) -> Option<NamespaceRecord> {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The namespace's quotas; none when it does not exist.
    pub(crate) fn quotas(&self, name: &str) -> Option<Quotas> {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|n| n.quotas.clone())
    }
}

/// A control-API request made inside a namespace by its path (`/namespaces/{ns}/...`): the
/// namespace and the path as the client sent it (for the audit trail).
#[derive(Debug, Clone)]
pub(crate) struct Entered {
    pub(crate) namespace: String,
    pub(crate) path: String,
}

/// Takes `/api/v1/namespaces/{ns}/REST` to `/api/v1/REST`, the path the router serves for
/// every namespace, and notes the namespace in the request's extensions. Done before routing
/// (a middleware behind the router could not change where a request goes).
pub(crate) fn enter(mut request: Request) -> Request {
    let Some(below) = request.uri().path().strip_prefix("/api/v1") else {
        return request;
    };
    if !below.starts_with("/namespaces/") {
        return request;
    }
    let ApiScope::Namespace { namespace, rest } = kumo_core::api_scope(below) else {
        return request;
    };
    let entered = Entered {
        namespace: namespace.to_string(),
        path: below.to_string(),
    };
    let path_and_query = match request.uri().query() {
        Some(q) => format!("/api/v1{rest}?{q}"),
        None => format!("/api/v1{rest}"),
    };
    let mut parts = request.uri().clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return request,
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(entered);
    }
    request
}

/// The namespace a control-API request acts in: the one its path named, else `default`.
/// The authorisation layer has checked that it exists and that the token may act in it.
#[derive(Debug, Clone)]
pub(crate) struct Ns(pub(crate) String);

impl Ns {
    /// The store's key of `name` in this namespace. A name with a `/` (sent as `%2F`) would
    /// be a key of another namespace: refused, whatever the endpoint checks of names.
    pub(crate) fn key(&self, name: &str) -> ApiResult<String> {
        if name.contains('/') {
            return Err(ApiError::bad_request(format!(
                "invalid name {name:?}: '/' is not allowed"
            )));
        }
        Ok(kumo_core::scoped(&self.0, name))
    }

    /// Whether a stored key belongs to this namespace.
    pub(crate) fn holds(&self, key: &str) -> bool {
        kumo_core::in_namespace(key, &self.0)
    }
}

/// The namespace of a request (as [`Ns`] tells handlers).
pub(crate) fn of_request(extensions: &http::Extensions) -> &str {
    extensions
        .get::<Entered>()
        .map_or(DEFAULT_NAMESPACE, |e| e.namespace.as_str())
}

impl<S: Send + Sync> FromRequestParts<S> for Ns {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Ns(of_request(&parts.extensions).to_string()))
    }
}
