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
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Invoke => "invoke",
            Self::Call => "call",
            Self::Event(trigger) => trigger.as_str(),
        }
    }
}

/// Memory × billed time, Lambda's unit of compute: 128 MB for 1000 ms is 0.125 GB-s.
pub fn gb_seconds(memory_mb: u32, billed_ms: u64) -> f64 {
    f64::from(memory_mb) / 1024.0 * (billed_ms as f64 / 1000.0)
}

/// What usage costs. The defaults are AWS Lambda's public x86 prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// Dollars per million requests.
    pub per_million_requests: f64,
    /// Dollars per GB-second.
    pub per_gb_second: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            per_million_requests: 0.20,
            per_gb_second: 0.000_016_666_7,
        }
    }
}

impl Prices {
    pub fn cost(&self, billed_requests: u64, gb_seconds: f64) -> f64 {
        billed_requests as f64 / 1e6 * self.per_million_requests + gb_seconds * self.per_gb_second
    }
}

/// How a usage report groups invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UsageBy {
    #[default]
    Function,
    /// `function:version`.
    Version,
    /// UTC day, `YYYY-MM-DD`.
    Day,
}

impl UsageBy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "function" => Ok(Self::Function),
            "version" => Ok(Self::Version),
            "day" => Ok(Self::Day),
            _ => Err(format!("{s:?}: group by function, version or day")),
        }
    }
}

/// One group of a usage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Unix epoch milliseconds: invocations started from then on are counted.
    pub since: i64,
    pub by: UsageBy,
    pub prices: Prices,
    pub rows: Vec<UsageRow>,
    /// All rows together (percentiles over every invocation).
    pub total: UsageRow,
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
        assert_eq!(UsageBy::parse("day"), Ok(UsageBy::Day));
        assert!(UsageBy::parse("week").is_err());
    }
}
