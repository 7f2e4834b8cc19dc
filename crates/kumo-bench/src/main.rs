//! `kumo-bench`: measures kumo side by side with `wasmtime serve` (the peer) and a bare hyper
//! server (the limit) in one run, and reports ratios. See BENCHMARKS.md and `scripts/bench.sh`.

mod cluster;
mod hello_server;
mod lambda;
mod load;
mod run;
mod servers;
mod stats;
mod workflow;

use clap::{Parser, Subcommand};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kumo-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole benchmark: prints a markdown report and writes the JSON results.
    Run(run::RunArgs),
    /// The load generator alone (the harness runs it as a separate, pinned process).
    Load {
        #[arg(long)]
        url: String,
        /// GET, or POST (with an empty body).
        #[arg(long, default_value = "GET")]
        method: http::Method,
        #[arg(long)]
        concurrency: usize,
        #[arg(long, value_parser = kumo_core::parse_duration)]
        warmup: Duration,
        #[arg(long, value_parser = kumo_core::parse_duration)]
        duration: Duration,
        /// A header sent with every request, `NAME: VALUE` (repeatable), e.g. a token.
        #[arg(long = "header", value_parser = load::parse_header)]
        headers: Vec<load::Header>,
    },
    /// Lambda functions: cold starts and warm overhead against a bare Runtime API exchange
    /// (needs root).
    Lambda(lambda::LambdaArgs),
    /// kumo on SQLite beside kumo on PostgreSQL, one node and three.
    Cluster(cluster::ClusterArgs),
    /// Workflows: the latency a 3-task workflow adds, and durable transitions per second.
    Workflow(workflow::WorkflowArgs),
    /// The bare hyper hello-world server (the limit).
    HyperHello {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

fn main() -> anyhow::Result<()> {
    // The Lambda benchmark's sandboxes re-execute this binary as their helper, before any
    // thread exists.
    if std::env::args().nth(1).as_deref() == Some(kumo_sandbox::HELPER_ARG) {
        kumo_sandbox::helper_main();
    }
    match Cli::parse().command {
        Command::Lambda(args) => tokio::runtime::Runtime::new()?.block_on(lambda::run(args)),
        Command::Cluster(args) => tokio::runtime::Runtime::new()?.block_on(cluster::run(args)),
        Command::Workflow(args) => tokio::runtime::Runtime::new()?.block_on(workflow::run(args)),
        Command::Run(args) => tokio::runtime::Runtime::new()?.block_on(run::run(args)),
        Command::Load {
            url,
            method,
            concurrency,
            warmup,
            duration,
            headers,
        } => {
            // One thread: the load generator gets one core and must not need more.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            let result = local.block_on(
                &rt,
                load::run(&url, method, &headers, concurrency, warmup, duration),
            )?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Command::HyperHello { listen } => {
            tokio::runtime::Runtime::new()?.block_on(hello_server::serve(&listen))
        }
    }
}
