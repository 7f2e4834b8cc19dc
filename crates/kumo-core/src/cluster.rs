//! Nodes of a cluster: what each says about itself, and when it counts as gone.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often a node writes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// A node whose last heartbeat is older than this is listed as down.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// A node as it registered itself, with its latest heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// Unique among live nodes (`--node-id`, else host name and a random suffix).
    pub id: String,
    /// Where it serves (its listener's address).
    pub address: String,
    /// kumo's version on it.
    pub version: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub heartbeat_at: i64,
    /// Invocations running on it at the heartbeat.
    pub running: u64,
    /// Functions (and versions) it had in memory at the heartbeat.
    pub loaded: Vec<String>,
}

impl NodeRecord {
    /// Whether the node's heartbeat is recent enough at `now` (unix ms).
    pub fn is_alive(&self, now: i64) -> bool {
        now - self.heartbeat_at <= NODE_TIMEOUT.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_alive_until_its_heartbeat_is_too_old() {
        let node = NodeRecord {
            id: "n".into(),
            address: "127.0.0.1:1".into(),
            version: "0".into(),
            started_at: 0,
            heartbeat_at: 1_000,
            running: 0,
            loaded: vec![],
        };
        assert!(node.is_alive(1_000));
        assert!(node.is_alive(11_000));
        assert!(!node.is_alive(11_001));
    }
}
