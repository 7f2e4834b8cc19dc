//! What starts a workflow's executions besides the API: a schedule and topics (each tick or
//! message starts one execution, with the tick or the message as its input).

use crate::{Schedule, Spec, validate_topic};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowTriggers {
    /// `rate(...)` or a cron expression: one execution per tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Spec<Schedule>>,
    /// Topics of the workflow's namespace: one execution per message published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
}

impl WorkflowTriggers {
    pub fn validate(&self) -> Result<(), String> {
        self.topics.iter().try_for_each(|t| validate_topic(t))
    }

    pub fn is_empty(&self) -> bool {
        self.schedule.is_none() && self.topics.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse_and_check_their_topics() {
        let t: WorkflowTriggers =
            serde_json::from_str(r#"{"schedule": "rate(1 minute)", "topics": ["orders"]}"#)
                .unwrap();
        assert!(t.validate().is_ok() && !t.is_empty());
        assert_eq!(t.schedule.as_ref().unwrap().as_str(), "rate(1 minute)");
        let bad: WorkflowTriggers = serde_json::from_str(r#"{"topics": ["Not A Topic"]}"#).unwrap();
        assert!(bad.validate().unwrap_err().contains("invalid topic"));
        assert!(serde_json::from_str::<WorkflowTriggers>(r#"{"schedule": "often"}"#).is_err());
        assert!(serde_json::from_str::<WorkflowTriggers>(r#"{"routes": []}"#).is_err());
    }
}
