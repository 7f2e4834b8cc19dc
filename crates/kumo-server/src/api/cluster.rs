//! `GET /cluster`: the nodes serving this kumo (admin only). On SQLite, the one node.

use crate::AppState;
use crate::error::ApiResult;
use axum::Json;
use axum::extract::State;
use kumo_core::NodeRecord;
use kumo_store::Store;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ClusterStatus {
    /// The node that answered.
    node: String,
    /// `sqlite` (one node) or `postgres`.
    store: &'static str,
    /// Every registered node, by id; a node is `alive` while its heartbeats keep coming.
    nodes: Vec<NodeStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct NodeStatus {
    #[serde(flatten)]
    node: NodeRecord,
    alive: bool,
}

#[utoipa::path(operation_id = "cluster_status", get, path = "/api/v1/cluster", responses((status = 200, body = ClusterStatus), (status = "default", description = "An error (see the error table)", body = crate::error::ErrorEnvelope)))]
pub(super) async fn status(State(state): State<Arc<AppState>>) -> ApiResult<Json<ClusterStatus>> {
    let now = kumo_core::now_ms();
    let mut nodes = match &state.store {
        Store::Postgres(pg) => pg.list_nodes(now).await?,
        Store::Sqlite(_) => Vec::new(),
    };
    // This node as it is now, whether or not its first heartbeat is written yet.
    nodes.retain(|n| n.id != state.node.id);
    nodes.push(crate::cluster::node_record(&state));
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(ClusterStatus {
        node: state.node.id.clone(),
        store: state.store.kind(),
        nodes: nodes
            .into_iter()
            .map(|node| NodeStatus {
                alive: node.is_alive(now),
                node,
            })
            .collect(),
    }))
}
