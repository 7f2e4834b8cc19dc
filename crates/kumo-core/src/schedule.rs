//! Schedules: a cron expression (5 fields, or 6 with seconds first; UTC) or `rate(N unit)`.
//! Both answer one question: the first tick after a given instant. Rate ticks fall on whole
//! multiples of the period since the Unix epoch, so they are the same before and after a
//! restart.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<Cron>),
    Rate(Duration),
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return parse_rate(inner)
                .map(Self::Rate)
                .map_err(|why| format!("{s:?}: {why}"));
        }
        Cron::from_str(s)
            .map(|c| Self::Cron(Box::new(c)))
            .map_err(|e| format!("{s:?} is not a cron expression or rate(...): {e}"))
    }

    /// The first tick strictly after `after_ms` (Unix epoch milliseconds); None when there is
    /// none (a cron date that never comes).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Self::Rate(period) => {
                let period = i64::try_from(period.as_millis()).ok()?.max(1);
                Some((after_ms.div_euclid(period) + 1) * period)
            }
            Self::Cron(cron) => {
                let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
                cron.find_next_occurrence(&after, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }
}

/// `1 minute`, `5 minutes`, `2 hours`, `1 day`, and (kumo's addition, for fast schedules)
/// `10 seconds`.
fn parse_rate(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .trim()
        .split_once(' ')
        .ok_or("rate needs a number and a unit, e.g. rate(5 minutes)")?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{n:?} is not a whole number"))?;
    if n == 0 {
        return Err("the rate must be at least 1".into());
    }
    let unit_secs = match unit.trim().trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        other => {
            return Err(format!(
                "unknown unit {other:?} (second, minute, hour, day)"
            ));
        }
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| "the rate is too large".into())
}

impl crate::ParseText for Schedule {
    const WHAT: &'static str = "schedule";
    fn parse_text(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_tick_on_multiples_of_the_period() {
        let s = Schedule::parse("rate(1 minute)").unwrap();
        assert_eq!(s.next_after(0), Some(60_000));
        assert_eq!(s.next_after(59_999), Some(60_000));
        assert_eq!(s.next_after(60_000), Some(120_000));
        let s = Schedule::parse("rate(10 seconds)").unwrap();
        assert_eq!(s.next_after(25_000), Some(30_000));
    }

    #[test]
    fn cron_finds_the_next_tick_in_utc() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        // 2026-11-22T00:01:00Z -> 00:05:00Z
        let t = 1_795_305_660_000;
        assert_eq!(s.next_after(t), Some(1_795_305_900_000));
        assert_eq!(s.next_after(1_795_305_900_000), Some(1_795_306_200_000));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "rate(0 minutes)",
            "rate(5 fortnights)",
            "rate(minute)",
            "61 * * * *",
            "",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
