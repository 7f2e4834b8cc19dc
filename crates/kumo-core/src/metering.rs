//! Pay-per-use metering: where an invocation came from, GB-seconds, prices and the usage
//! report (`GET /api/v1/usage`, `kumo usage`).

use crate::Trigger;
use serde::{Deserialize, Serialize};

/// How an invocation reached the Invoker (the record's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The data plane: `/fn/NAME/...` or a custom route.
    Http,
    /// `POST /api/v1/functions/NAME/invoke` (synchronous).
    Invoke,
    /// Another function's `http://NAME.fn.internal/` request.
    Call,
    /// An attempt of an asynchronous event (async invoke, schedule, topic, ...).
    Event(Trigger),
    /// A task of a workflow's execution.
    Workflow,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Invoke => "invoke",
            Self::Call => "call",
            Self::Workflow => "workflow",
            Self::Event(trigger) => trigger.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(Self::Http),
            "invoke" => Some(Self::Invoke),
            "call" => Some(Self::Call),
            "workflow" => Some(Self::Workflow),
            _ => Trigger::parse(s).map(Self::Event),
        }
    }
}

/// As the record's `trigger` text (`http`, `async`, ...).
impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown trigger {text:?}")))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Memory × billed time, Lambda's unit of compute: 128 MB for 1000 ms is 0.125 GB-s.
pub fn gb_seconds(memory_mb: u32, billed_ms: u64) -> f64 {
    f64::from(memory_mb) / 1024.0 * (billed_ms as f64 / 1000.0)
}

/// What usage costs. The defaults are AWS Lambda's public x86 prices, and Step Functions
/// Standard's price of state transitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prices {
    /// Dollars per million requests.
    pub per_million_requests: f64,
    /// Dollars per GB-second.
    pub per_gb_second: f64,
    /// Dollars per thousand workflow state transitions.
    #[serde(default = "default_per_thousand_transitions")]
    pub per_thousand_transitions: f64,
}

fn default_per_thousand_transitions() -> f64 {
    0.025
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            per_million_requests: 0.20,
            per_gb_second: 0.000_016_666_7,
            per_thousand_transitions: default_per_thousand_transitions(),
        }
    }
}

impl Prices {
    pub fn cost(&self, billed_requests: u64, gb_seconds: f64) -> f64 {
        billed_requests as f64 / 1e6 * self.per_million_requests + gb_seconds * self.per_gb_second
    }

    /// What `transitions` workflow state transitions cost.
    pub fn transitions_cost(&self, transitions: u64) -> f64 {
        transitions as f64 / 1e3 * self.per_thousand_transitions
    }
}

/// Workflow executions in a usage report: those started in its window, with every transition
/// they made (their tasks are invocations, in the rows).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowUsage {
    pub executions: u64,
    pub transitions: u64,
    /// Dollars: the transitions' price.
    pub cost: f64,
}

/// How a usage report groups invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageBy {
    #[default]
    Function,
    /// `function:version`.
    Version,
    /// UTC day, `YYYY-MM-DD`.
    Day,
    /// The functions' namespace (chargeback).
    Namespace,
}

impl UsageBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Version => "version",
            Self::Day => "day",
            Self::Namespace => "namespace",
        }
    }
}

/// One group of a usage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// The function, `function:version`, or the day.
    pub key: String,
    /// Every invocation, throttled ones included.
    pub requests: u64,
    /// Invocations that did not end ok (throttles included).
    pub errors: u64,
    /// Refused for concurrency: not run and not billed.
    pub throttles: u64,
    pub gb_seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Dollars, from the server's price table.
    pub cost: f64,
}

/// `GET /api/v1/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// Unix epoch milliseconds: invocations started from then on are counted.
    pub since: i64,
    pub by: UsageBy,
    pub prices: Prices,
    pub rows: Vec<UsageRow>,
    /// All rows together (percentiles over every invocation).
    pub total: UsageRow,
    /// Workflows: executions started since `since`, their transitions and what they cost.
    #[serde(default)]
    pub workflows: WorkflowUsage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb_seconds_and_cost_follow_lambda() {
        assert_eq!(gb_seconds(128, 1000), 0.125);
        assert_eq!(gb_seconds(1024, 1), 0.001);
        let prices = Prices::default();
        // One million 1 GB-second invocations: $0.20 + $16.6667.
        let cost = prices.cost(1_000_000, 1_000_000.0);
        assert!((cost - 16.8667).abs() < 1e-9, "{cost}");
        assert_eq!(Source::Event(Trigger::Topic).as_str(), "topic");
        let transitions = Prices::default().transitions_cost(4_000);
        assert!((transitions - 0.1).abs() < 1e-12, "{transitions}");
        for by in [
            UsageBy::Function,
            UsageBy::Version,
            UsageBy::Day,
            UsageBy::Namespace,
        ] {
            let json = serde_json::to_string(&by).unwrap();
            assert_eq!(json, format!("\"{}\"", by.as_str()));
        }
        for source in [
            Source::Http,
            Source::Invoke,
            Source::Call,
            Source::Workflow,
            Source::Event(Trigger::Storage),
        ] {
            let json = serde_json::to_string(&source).unwrap();
            assert_eq!(serde_json::from_str::<Source>(&json).unwrap(), source);
        }
        assert!(serde_json::from_str::<Source>("\"carrier-pigeon\"").is_err());
    }
}
