//! The control API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives, served at `/api/v1/openapi.json`.
//! Every namespaced path also exists below `/api/v1/namespaces/{namespace}`; the document
//! lists each once, as it means `default`.

use super::{
    audit, cluster, events, functions, kv, namespaces, objects, records, secrets, tokens, versions,
    workflows,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "kumo control API",
        description = "Deploy and run functions, read their records, logs and usage, and keep their key-value data, objects, topics, secrets, tokens and namespaces, and run workflows (Amazon States Language state machines). Every path but /namespaces, /tokens, /audit and /cluster also exists below /api/v1/namespaces/{namespace}; the paths here act in `default`."
    ),
    paths(
        functions::list,
        functions::deploy,
        functions::get,
        functions::delete,
        functions::invoke,
        versions::publish,
        versions::list_versions,
        versions::get_version,
        versions::delete_version,
        versions::list_aliases,
        versions::get_alias,
        versions::set_alias,
        versions::delete_alias,
        records::logs,
        records::list_invocations,
        records::usage,
        events::get_invocation,
        events::invocation_events,
        events::dead_letters,
        events::redrive,
        events::publish,
        events::triggers,
        secrets::list,
        secrets::set,
        secrets::delete,
        kv::list_keys,
        kv::get_key,
        kv::put_key,
        kv::delete_key,
        objects::list_objects,
        objects::get_object,
        objects::head_object,
        objects::put_object,
        objects::delete_object,
        tokens::list,
        tokens::create,
        tokens::revoke,
        audit::list,
        cluster::status,
        namespaces::list,
        namespaces::put,
        namespaces::get,
        namespaces::delete,
        workflows::list,
        workflows::deploy,
        workflows::get,
        workflows::delete,
        workflows::start,
        workflows::list_executions,
        workflows::describe,
        workflows::history,
        workflows::stop,
        workflows::redrive,
        workflows::answer_task,
    ),
    modifiers(&BearerTokens),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every request carries `Authorization: Bearer <token>`.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, as JSON.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json` (no token needed: it describes every kumo alike).
pub(super) async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    /// The document and the router come from the same table: every path is in both.
    #[test]
    fn the_document_lists_every_path_of_the_router() {
        let document = super::document();
        let mut documented: Vec<String> = document.paths.paths.keys().cloned().collect();
        let mut served: Vec<String> = super::super::PATHS
            .iter()
            .filter(|p| **p != "/openapi.json")
            .map(|p| format!("/api/v1{}", p.replace("{*key}", "{key}")))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
        assert!(document.openapi == utoipa::openapi::OpenApiVersion::Version31);
    }
}
