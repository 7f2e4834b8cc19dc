//! `kumo top`: a live view of each function's traffic, refreshed every interval: requests per
//! second, errors, throttles and p50/p99 duration over a recent window (from the usage API, so
//! from the invocation records), and invocations running now (from `/metrics`).

use crate::commands::CmdResult;
use kumo_api::Client;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

/// Clear the screen and go home (ANSI), so each frame replaces the last.
const CLEAR: &str = "\x1b[2J\x1b[H";

pub(crate) async fn top(
    client: &Client,
    window: Duration,
    interval: Duration,
    once: bool,
) -> CmdResult {
    let window_text = kumo_core::format_duration(window);
    loop {
        let frame = frame(client, &window_text, window).await?;
        if once {
            print!("{frame}");
            return Ok(ExitCode::SUCCESS);
        }
        print!("{CLEAR}{frame}");
        tokio::time::sleep(interval).await;
    }
}

async fn frame(client: &Client, window_text: &str, window: Duration) -> anyhow::Result<String> {
    let (usage, metrics) = tokio::try_join!(
        client.usage(window_text, kumo_core::UsageBy::Function),
        client.metrics_text()
    )?;
    let running = running_by_function(&metrics);
    let seconds = window.as_secs_f64().max(0.001);
    let mut out = format!(
        "kumo top · {} · last {window_text}\n\n{:<32} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8}\n",
        kumo_core::format_timestamp(kumo_core::now_ms()),
        "FUNCTION",
        "REQ/S",
        "ERRORS",
        "THROTTLES",
        "P50 MS",
        "P99 MS",
        "RUNNING"
    );
    let mut rows = usage.rows;
    rows.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.key.cmp(&b.key)));
    for row in &rows {
        out.push_str(&format!(
            "{:<32} {:>9.1} {:>7} {:>9} {:>9.2} {:>9.2} {:>8}\n",
            row.key,
            row.requests as f64 / seconds,
            row.errors,
            row.throttles,
            row.p50_ms,
            row.p99_ms,
            running.get(&row.key).copied().unwrap_or(0)
        ));
    }
    // Functions running now without a finished invocation in the window yet.
    for (function, n) in running
        .iter()
        .filter(|(f, n)| **n > 0 && !rows.iter().any(|r| &r.key == *f))
    {
        out.push_str(&format!(
            "{function:<32} {:>9.1} {:>7} {:>9} {:>9} {:>9} {n:>8}\n",
            0.0, 0, 0, "-", "-"
        ));
    }
    if rows.is_empty() && running.values().all(|n| *n == 0) {
        out.push_str("(no invocations in the window)\n");
    }
    Ok(out)
}

/// `kumo_function_invocations_in_flight{function="f"} N` lines of the exposition.
fn running_by_function(metrics: &str) -> BTreeMap<String, i64> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("kumo_function_invocations_in_flight{function=\"")?;
            let (function, rest) = rest.split_once("\"}")?;
            Some((function.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_counts_are_read_from_the_exposition() {
        let text = "# TYPE kumo_function_invocations_in_flight gauge\n\
                    kumo_function_invocations_in_flight{function=\"a\"} 3\n\
                    kumo_function_invocations_in_flight{function=\"b\"} 0\n\
                    kumo_invocations_in_flight 3\n";
        let running = running_by_function(text);
        assert_eq!(running.get("a"), Some(&3));
        assert_eq!(running.get("b"), Some(&0));
        assert_eq!(running.len(), 2);
    }
}
