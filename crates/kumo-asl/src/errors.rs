//! `Retry` and `Catch`: which error names a retrier or catcher takes, and how long a retrier
//! waits before each attempt.
//!
//! Names as Step Functions has them: `States.ALL` matches every error but `States.Runtime`
//! and `States.DataLimitExceeded` (those always fail the execution); `States.TaskFailed`
//! matches every error of a task but `States.Timeout`; any other name matches itself.

use serde_json::Value;
use std::time::Duration;

/// Errors nothing catches or retries.
const TERMINAL: [&str; 2] = ["States.Runtime", "States.DataLimitExceeded"];

/// Whether a retrier's or catcher's `ErrorEquals` takes `error`.
pub fn takes(error_equals: &[String], error: &str) -> bool {
    if TERMINAL.contains(&error) {
        return false;
    }
    error_equals.iter().any(|name| match name.as_str() {
        "States.ALL" => true,
        "States.TaskFailed" => error != "States.Timeout",
        name => name == error,
    })
}

/// `Full` spreads the delays at random between 0 and the computed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: Jitter,
}

impl Retrier {
    /// A retrier from its JSON, with the spec's defaults (1 s, 3 attempts, rate 2.0).
    pub fn parse(value: &Value) -> Result<Self, String> {
        let error_equals = error_equals(value)?;
        let uint = |name: &str, default: u64| -> Result<u64, String> {
            match value.get(name) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| format!("{name} must be a whole number")),
            }
        };
        let interval_seconds = uint("IntervalSeconds", 1)?;
        if interval_seconds == 0 {
            return Err("IntervalSeconds must be at least 1".into());
        }
        let max_attempts = u32::try_from(uint("MaxAttempts", 3)?)
            .map_err(|_| "MaxAttempts is too large".to_string())?;
        let backoff_rate = match value.get("BackoffRate") {
            None => 2.0,
            Some(v) => v
                .as_f64()
                .filter(|r| *r >= 1.0)
                .ok_or("BackoffRate must be a number of at least 1.0")?,
        };
        let max_delay_seconds = match value.get("MaxDelaySeconds") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|s| *s > 0)
                    .ok_or("MaxDelaySeconds must be a positive whole number")?,
            ),
        };
        let jitter = match value.get("JitterStrategy").map(|v| v.as_str()) {
            None | Some(Some("NONE")) => Jitter::None,
            Some(Some("FULL")) => Jitter::Full,
            _ => return Err("JitterStrategy is FULL or NONE".into()),
        };
        Ok(Self {
            error_equals,
            interval_seconds,
            max_attempts,
            backoff_rate,
            max_delay_seconds,
            jitter,
        })
    }

    /// The wait before retry number `retry` (from 1) of this retrier, or None when its
    /// attempts are used up. `random` is in [0, 1) (the jitter).
    pub fn delay(&self, retry: u32, random: f64) -> Option<Duration> {
        if retry == 0 || retry > self.max_attempts {
            return None;
        }
        let seconds = self.interval_seconds as f64 * self.backoff_rate.powi(retry as i32 - 1);
        let capped = match self.max_delay_seconds {
            Some(max) => seconds.min(max as f64),
            None => seconds,
        };
        let waited = match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped * random,
        };
        Some(Duration::from_secs_f64(waited.min(86_400.0 * 365.0)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    /// Where the error output (`{"Error", "Cause"}`) goes in the state input; absent: `$`.
    pub result_path: Option<Option<String>>,
}

impl Catcher {
    pub fn parse(value: &Value) -> Result<Self, String> {
        let error_equals = error_equals(value)?;
        let next = value
            .get("Next")
            .and_then(Value::as_str)
            .ok_or("a catcher needs a Next")?
            .to_string();
        let result_path = match value.get("ResultPath") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(p)) => Some(Some(p.clone())),
            Some(_) => return Err("ResultPath must be a path or null".into()),
        };
        Ok(Self {
            error_equals,
            next,
            result_path,
        })
    }
}

/// `ErrorEquals`: a non-empty array of names, `States.ALL` alone.
fn error_equals(value: &Value) -> Result<Vec<String>, String> {
    let names: Vec<String> = value
        .get("ErrorEquals")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("ErrorEquals must be a non-empty array of error names")?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or("ErrorEquals holds error names (strings)")?;
    if names.len() > 1 && names.iter().any(|n| n == "States.ALL") {
        return Err("States.ALL must appear alone in ErrorEquals".into());
    }
    Ok(names)
}

/// `States.ALL` must be in the last retrier or catcher, if any.
pub fn all_is_last(lists: &[Vec<String>]) -> bool {
    lists
        .iter()
        .rev()
        .skip(1)
        .all(|names| !names.iter().any(|n| n == "States.ALL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn which_errors_a_list_takes() {
        assert!(takes(&names(&["States.ALL"]), "MyError"));
        assert!(takes(&names(&["States.ALL"]), "States.Timeout"));
        assert!(!takes(&names(&["States.ALL"]), "States.Runtime"));
        assert!(!takes(&names(&["States.Runtime"]), "States.Runtime"));
        assert!(takes(&names(&["States.TaskFailed"]), "Lambda.Unknown"));
        assert!(!takes(&names(&["States.TaskFailed"]), "States.Timeout"));
        assert!(takes(&names(&["A", "B"]), "B"));
        assert!(!takes(&names(&["A"]), "a"));
    }

    #[test]
    fn retry_delays_back_off_cap_and_jitter() {
        let retrier = Retrier::parse(&json!({
            "ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 4,
            "BackoffRate": 3.0, "MaxDelaySeconds": 10
        }))
        .unwrap();
        let delays: Vec<_> = (1..=5).map(|n| retrier.delay(n, 0.5)).collect();
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(delays, [secs(2), secs(6), secs(10), secs(10), None]);
        let jittered = Retrier {
            jitter: Jitter::Full,
            ..retrier
        };
        assert_eq!(jittered.delay(2, 0.5), secs(3));
        assert_eq!(jittered.delay(2, 0.0), secs(0));
        let defaults = Retrier::parse(&json!({"ErrorEquals": ["X"]})).unwrap();
        assert_eq!(
            (
                defaults.interval_seconds,
                defaults.max_attempts,
                defaults.backoff_rate
            ),
            (1, 3, 2.0)
        );
        assert_eq!(defaults.delay(3, 0.0), secs(4));
        let never = Retrier::parse(&json!({"ErrorEquals": ["X"], "MaxAttempts": 0})).unwrap();
        assert_eq!(never.delay(1, 0.0), None);
    }

    #[test]
    fn malformed_retriers_and_catchers_say_why() {
        for (value, why) in [
            (json!({}), "ErrorEquals"),
            (json!({"ErrorEquals": []}), "non-empty"),
            (json!({"ErrorEquals": ["States.ALL", "X"]}), "alone"),
            (
                json!({"ErrorEquals": ["X"], "BackoffRate": 0.5}),
                "at least 1.0",
            ),
            (
                json!({"ErrorEquals": ["X"], "IntervalSeconds": 0}),
                "at least 1",
            ),
            (
                json!({"ErrorEquals": ["X"], "JitterStrategy": "SOME"}),
                "FULL or NONE",
            ),
        ] {
            let error = Retrier::parse(&value).unwrap_err();
            assert!(error.contains(why), "{value}: {error}");
        }
        assert!(
            Catcher::parse(&json!({"ErrorEquals": ["X"]}))
                .unwrap_err()
                .contains("Next")
        );
        let catcher =
            Catcher::parse(&json!({"ErrorEquals": ["X"], "Next": "n", "ResultPath": null}))
                .unwrap();
        assert_eq!(catcher.result_path, Some(None));
        assert!(all_is_last(&[names(&["A"]), names(&["States.ALL"])]));
        assert!(!all_is_last(&[names(&["States.ALL"]), names(&["A"])]));
    }
}
