//! The workflow benchmark (`scripts/bench-workflows.sh`, BENCHMARKS.md "Workflows"): on one
//! kumo node (SQLite), in one run,
//! - the latency a 3-task workflow adds over calling the same function three times in a row
//!   through the invoke API (one client, alternating, p50 and p99);
//! - durable state transitions per second with many executions at once (each task's answer is
//!   its own transaction, written before the next task starts).
//!
//! The function is the `hello` example; nothing is pinned.

use crate::servers;
use crate::stats::Latencies;
use anyhow::{Context as _, ensure};
use kumo_api::{Client, FunctionConfig};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct WorkflowArgs {
    /// Where the JSON results go.
    #[arg(long)]
    out: PathBuf,
    /// The kumo binary.
    #[arg(long)]
    kumo: PathBuf,
    /// The hello wasi-http component.
    #[arg(long)]
    hello: PathBuf,
    /// Latency samples of each kind.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Executions running at once in the throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = kumo_core::parse_duration)]
    duration: Duration,
}

#[derive(Serialize)]
struct Report {
    cpus: usize,
    samples: usize,
    /// Three invoke-API calls in a row, µs.
    direct_p50_us: f64,
    direct_p99_us: f64,
    /// One execution of the 3-task workflow, started and waited for in one request, µs.
    workflow_p50_us: f64,
    workflow_p99_us: f64,
    /// What the workflow adds (goal at p50: ≤ 2 ms).
    added_p50_us: f64,
    added_p99_us: f64,
    concurrency: usize,
    duration_s: f64,
    executions: u64,
    transitions_per_execution: u64,
    /// Goal: ≥ 2,000.
    transitions_per_second: f64,
    /// The same clients calling the function three times in a row instead, in the same run:
    /// the tasks' own cost, without the workflow.
    direct_triples_per_second: f64,
    /// Executions per second over direct triples per second.
    throughput_ratio: f64,
}

const THREE_TASKS: &str = r#"{"StartAt": "One", "States": {
    "One": {"Type": "Task", "Resource": "kumo:function:hello", "ResultPath": "$.one", "Next": "Two"},
    "Two": {"Type": "Task", "Resource": "kumo:function:hello", "ResultPath": "$.two", "Next": "Three"},
    "Three": {"Type": "Task", "Resource": "kumo:function:hello", "ResultPath": "$.three", "End": true}
}}"#;

pub(crate) async fn run(args: WorkflowArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = servers::free_addr()?;
    let mut command = tokio::process::Command::new(&args.kumo);
    command
        .args(["serve", "--auth", "none", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    let server = servers::start(command, addr, "kumo").await?;
    let client = Client::new(&server.url(""));
    let hello = std::fs::read(&args.hello).context("reading hello")?;
    client
        .deploy("hello", hello, &FunctionConfig::default())
        .await?;
    client
        .put_workflow("three", THREE_TASKS.as_bytes().to_vec())
        .await?;

    // Warm both paths, then alternate so drift hits both alike.
    let (mut direct, mut workflow) = (Latencies::default(), Latencies::default());
    for i in 0..args.samples + 20 {
        let started = Instant::now();
        for _ in 0..3 {
            client.invoke("hello", b"{}".to_vec()).await?;
        }
        let three_calls = started.elapsed();
        let started = Instant::now();
        let execution = client
            .start_execution("three", json!({}), None, Some(30))
            .await?;
        let one_execution = started.elapsed();
        ensure!(execution["status"] == "succeeded", "{execution}");
        if i >= 20 {
            direct.push(three_calls);
            workflow.push(one_execution);
        }
    }
    let (direct_p50, direct_p99) = (direct.percentile(50.0), direct.percentile(99.0));
    let (workflow_p50, workflow_p99) = (workflow.percentile(50.0), workflow.percentile(99.0));

    // The same load as direct calls first: `concurrency` clients, three calls in a row each.
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let clients = (0..args.concurrency).map(|_| {
        let client = client.clone();
        async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                for _ in 0..3 {
                    client.invoke("hello", b"{}".to_vec()).await?;
                }
                done += 1;
            }
            anyhow::Ok(done)
        }
    });
    let mut triples = 0;
    for done in futures::future::join_all(clients).await {
        triples += done?;
    }
    let direct_triples_per_second = triples as f64 / started.elapsed().as_secs_f64();

    // Throughput: `concurrency` clients, each starting executions and waiting for them.
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let clients = (0..args.concurrency).map(|_| {
        let client = client.clone();
        async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let execution = client
                    .start_execution("three", json!({}), None, Some(60))
                    .await?;
                ensure!(execution["status"] == "succeeded", "{execution}");
                done += 1;
            }
            anyhow::Ok(done)
        }
    });
    let mut executions = 0;
    for done in futures::future::join_all(clients).await {
        executions += done?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let listed = client.executions("three", None, 1).await?;
    let transitions_per_execution = listed[0]["transitions"].as_u64().unwrap_or(0);
    let report = Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        samples: args.samples,
        direct_p50_us: direct_p50,
        direct_p99_us: direct_p99,
        workflow_p50_us: workflow_p50,
        workflow_p99_us: workflow_p99,
        added_p50_us: workflow_p50 - direct_p50,
        added_p99_us: workflow_p99 - direct_p99,
        concurrency: args.concurrency,
        duration_s: elapsed,
        executions,
        transitions_per_execution,
        transitions_per_second: (executions * transitions_per_execution) as f64 / elapsed,
        direct_triples_per_second,
        throughput_ratio: executions as f64 / elapsed / direct_triples_per_second,
    };
    server.stop().await;
    println!("## Workflows (one node, SQLite, {} cores)\n", report.cpus);
    println!("| | p50 | p99 |\n|---|---|---|");
    println!(
        "| three invoke-API calls in a row | {:.2} ms | {:.2} ms |",
        direct_p50 / 1e3,
        direct_p99 / 1e3
    );
    println!(
        "| one 3-task workflow execution (start and wait) | {:.2} ms | {:.2} ms |",
        workflow_p50 / 1e3,
        workflow_p99 / 1e3
    );
    println!(
        "| added by the workflow (goal at p50: ≤ 2 ms) | {:.2} ms | {:.2} ms |",
        report.added_p50_us / 1e3,
        report.added_p99_us / 1e3
    );
    println!(
        "\n{} executions in {:.1} s with {} at once, {} transitions each: **{:.0} durable transitions/s** (goal ≥ 2,000)",
        report.executions,
        elapsed,
        report.concurrency,
        report.transitions_per_execution,
        report.transitions_per_second
    );
    println!(
        "the same clients calling hello three times in a row: {:.0} triples/s; executions/s over triples/s: **{:.2}×**",
        report.direct_triples_per_second, report.throughput_ratio
    );
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
