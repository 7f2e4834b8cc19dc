//! The cluster benchmark (`scripts/bench-cluster.sh`, BENCHMARKS.md "A cluster on
//! PostgreSQL"): in one run, on this machine, kumo on SQLite beside kumo on PostgreSQL (one
//! node, then three sharing the database and a folder):
//! - warm synchronous throughput of one node on each store (interleaved rounds, median);
//! - asynchronous events accepted per second and how fast they all completed;
//! - CPU per 1,000 invocations of kumo's processes and of PostgreSQL's, at the same offered
//!   load (the load generator's connections spread over the nodes).
//!
//! Nothing is pinned: the nodes and PostgreSQL share the machine's cores, as they would
//! share a small host.

use crate::load::LoadResult;
use crate::run::{load_once, metric};
use crate::servers::{self, Running};
use anyhow::{Context as _, ensure};
use kumo_api::{Client, FunctionConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct ClusterArgs {
    /// Where the JSON results go.
    #[arg(long)]
    out: PathBuf,
    /// The kumo binary.
    #[arg(long)]
    kumo: PathBuf,
    /// The hello wasi-http component.
    #[arg(long)]
    hello: PathBuf,
    /// A PostgreSQL server the benchmark may create databases on
    /// (`postgres://USER@HOST:PORT/postgres`).
    #[arg(long)]
    postgres: String,
    #[arg(long, default_value = "5s", value_parser = kumo_core::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = kumo_core::parse_duration)]
    warmup: Duration,
    /// Connections of the load generator (spread over the nodes).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Serialize)]
struct Report {
    cpus: usize,
    duration_s: f64,
    concurrency: usize,
    /// Every warm round of each store.
    warm: Vec<Run>,
    /// Median warm req/s, PostgreSQL over SQLite (goal ≥ 0.9).
    warm_ratio: f64,
    async_events: Vec<AsyncRun>,
    cpu: Vec<CpuRun>,
    locality: Locality,
}

/// Requests that found their function cold, with the nodes behind a plain round-robin
/// balancer, against one node.
#[derive(Serialize)]
struct Locality {
    functions: usize,
    requests_per_function: usize,
    cold_one_node: usize,
    cold_three_nodes: usize,
    cold_p50_us: f64,
    warm_p50_us: f64,
}

#[derive(Serialize)]
struct Run {
    setup: String,
    round: usize,
    #[serde(flatten)]
    load: LoadResult,
}

#[derive(Serialize)]
struct AsyncRun {
    setup: String,
    accepted: u64,
    accepted_per_sec: f64,
    submit_p99_us: f64,
    errors: u64,
    /// From the first submit until every event had finished.
    completed_per_sec: f64,
}

#[derive(Serialize)]
struct CpuRun {
    setup: String,
    requests: u64,
    requests_per_sec: f64,
    /// CPU milliseconds per 1,000 invocations.
    kumo_cpu_ms_per_1000: f64,
    postgres_cpu_ms_per_1000: f64,
}

const SQLITE: &str = "1 node, SQLite";
const PG_ONE: &str = "1 node, PostgreSQL";
const PG_THREE: &str = "3 nodes, PostgreSQL";

pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let hello = std::fs::read(&args.hello).context("reading the hello component")?;
    let mut warm = Vec::new();
    let mut async_events = Vec::new();
    let mut cpu = Vec::new();
    for round in 1..=args.rounds {
        for setup in [SQLITE, PG_ONE] {
            let nodes = Nodes::start(&args, setup, 1, &hello).await?;
            let load = nodes.load(&args, "GET", "/fn/hello/bench").await?;
            eprintln!("{setup}, round {round}: {:.0} req/s", load.requests_per_sec);
            warm.push(Run {
                setup: setup.into(),
                round,
                load,
            });
            nodes.stop().await;
        }
    }
    let mut locality = None;
    for (setup, count) in [(SQLITE, 1), (PG_ONE, 1), (PG_THREE, 3)] {
        let nodes = Nodes::start(&args, setup, count, &hello).await?;
        async_events.push(nodes.async_events(&args, setup).await?);
        cpu.push(nodes.cpu(&args, setup).await?);
        if setup == PG_THREE {
            locality = Some(nodes.locality(&hello).await?);
        }
        nodes.stop().await;
    }
    let median = |setup: &str| {
        let mut rates: Vec<f64> = warm
            .iter()
            .filter(|r| r.setup == setup)
            .map(|r| r.load.requests_per_sec)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    };
    let (sqlite, pg) = (median(SQLITE), median(PG_ONE));
    let report = Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        duration_s: args.duration.as_secs_f64(),
        concurrency: args.concurrency,
        warm_ratio: pg / sqlite,
        warm,
        async_events,
        cpu,
        locality: locality.context("the three-node setup ran")?,
    };
    print_report(&report, sqlite, pg);
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}

/// kumo nodes on one store, with hello deployed.
struct Nodes {
    nodes: Vec<Running>,
    _dir: tempfile::TempDir,
}

impl Nodes {
    async fn start(
        args: &ClusterArgs,
        setup: &str,
        count: usize,
        hello: &[u8],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = match setup {
            SQLITE => None,
            _ => Some(fresh_database(&args.postgres).await?),
        };
        let mut nodes = Vec::new();
        for _ in 0..count {
            let addr = servers::free_addr()?;
            let mut command = tokio::process::Command::new(&args.kumo);
            command
                .args(["serve", "--auth", "none", "--listen", &addr, "--data-dir"])
                .arg(dir.path())
                .env("RUST_LOG", "warn");
            if let Some(database) = &database {
                command.args(["--database", database]);
            }
            nodes.push(servers::start(command, addr, "kumo").await?);
        }
        let client = Client::new(&nodes[0].url(""));
        let config = FunctionConfig {
            env: [("GREETING".to_string(), "hello".to_string())].into(),
            ..FunctionConfig::default()
        };
        client.deploy("hello", hello.to_vec(), &config).await?;
        // Every node has seen the deploy (the change feed) and loaded hello once.
        for node in &nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while status_of(&node.addr, "/fn/hello/bench").await != Some(200) {
                ensure!(
                    Instant::now() < deadline,
                    "{} never served hello",
                    node.addr
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(Self { nodes, _dir: dir })
    }

    /// One load run with the connections spread over the nodes (one load generator each);
    /// the results summed.
    async fn load(
        &self,
        args: &ClusterArgs,
        method: &str,
        path: &str,
    ) -> anyhow::Result<LoadResult> {
        self.load_for(args, method, path, args.warmup, args.duration)
            .await
    }

    async fn load_for(
        &self,
        args: &ClusterArgs,
        method: &str,
        path: &str,
        warmup: Duration,
        duration: Duration,
    ) -> anyhow::Result<LoadResult> {
        let share = args.concurrency.div_ceil(self.nodes.len()).max(1);
        let runs = self.nodes.iter().map(|node| {
            let url = node.url(path);
            async move { load_once(&url, method, share, warmup, duration).await }
        });
        let results = futures_join(runs).await?;
        Ok(LoadResult {
            concurrency: share * self.nodes.len(),
            requests: results.iter().map(|r| r.requests).sum(),
            errors: results.iter().map(|r| r.errors).sum(),
            requests_per_sec: results.iter().map(|r| r.requests_per_sec).sum(),
            p50_us: results.iter().map(|r| r.p50_us).fold(0.0, f64::max),
            p99_us: results.iter().map(|r| r.p99_us).fold(0.0, f64::max),
        })
    }

    async fn async_events(&self, args: &ClusterArgs, setup: &str) -> anyhow::Result<AsyncRun> {
        let start = Instant::now();
        let load = self
            .load(args, "POST", "/api/v1/functions/hello/invoke?mode=async")
            .await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        // The queue's depth is the store's: any node answers for all.
        while metric(&self.nodes[0], "kumo_events_pending").await? > 0 {
            ensure!(
                Instant::now() < deadline,
                "the queue did not drain in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let completed = start.elapsed().as_secs_f64();
        eprintln!(
            "{setup}: {:.0} events/s accepted, all done at {:.0}/s",
            load.requests_per_sec,
            load.requests as f64 / completed
        );
        Ok(AsyncRun {
            setup: setup.into(),
            accepted: load.requests,
            accepted_per_sec: load.requests_per_sec,
            submit_p99_us: load.p99_us,
            errors: load.errors,
            completed_per_sec: load.requests as f64 / completed,
        })
    }

    /// CPU of kumo's and of PostgreSQL's processes over a warm synchronous run.
    async fn cpu(&self, args: &ClusterArgs, setup: &str) -> anyhow::Result<CpuRun> {
        let pids: Vec<u32> = self.nodes.iter().filter_map(|n| n.child.id()).collect();
        // Warmed up first, so the CPU measured is that of the requests counted.
        let path = "/fn/hello/bench";
        self.load_for(args, "GET", path, Duration::ZERO, args.warmup)
            .await?;
        let before = (cpu_ms(&pids), postgres_cpu_ms());
        let load = self
            .load_for(args, "GET", path, Duration::ZERO, args.duration)
            .await?;
        let after = (cpu_ms(&pids), postgres_cpu_ms());
        let per_1000 = |ms: f64| ms * 1000.0 / load.requests.max(1) as f64;
        let run = CpuRun {
            setup: setup.into(),
            requests: load.requests,
            requests_per_sec: load.requests_per_sec,
            kumo_cpu_ms_per_1000: per_1000(after.0 - before.0),
            postgres_cpu_ms_per_1000: per_1000(after.1 - before.1),
        };
        eprintln!(
            "{setup}: {:.0} req/s, CPU per 1,000: kumo {:.0} ms, PostgreSQL {:.0} ms",
            run.requests_per_sec, run.kumo_cpu_ms_per_1000, run.postgres_cpu_ms_per_1000
        );
        Ok(run)
    }

    /// Deploys `FUNCTIONS` copies of hello and asks each `REQUESTS` times, first through one
    /// node only, then with each function's successive requests on successive nodes (a
    /// round-robin balancer); counts the answers that say `x-kumo-cold: 1`.
    async fn locality(&self, hello: &[u8]) -> anyhow::Result<Locality> {
        const FUNCTIONS: usize = 30;
        const REQUESTS: usize = 10;
        let client = Client::new(&self.nodes[0].url(""));
        let mut cold_latencies = Vec::new();
        let mut warm_latencies = Vec::new();
        let mut cold = [0, 0];
        for (pass, spread) in [(0, 1), (1, self.nodes.len())] {
            for f in 0..FUNCTIONS {
                let name = format!("l{pass}-{f}");
                client
                    .deploy(&name, hello.to_vec(), &FunctionConfig::default())
                    .await?;
            }
            // Every node has the functions (the change feed) before the first request.
            tokio::time::sleep(Duration::from_millis(500)).await;
            for i in 0..REQUESTS {
                for f in 0..FUNCTIONS {
                    let node = &self.nodes[(i + f) % spread];
                    let mut connection = crate::load::Connection::open(&node.addr).await?;
                    let (response, took) =
                        connection.get(&format!("/fn/l{pass}-{f}/bench")).await?;
                    ensure!(response.status() == 200, "{}", response.status());
                    if response.headers().get("x-kumo-cold").is_some() {
                        cold[pass] += 1;
                        cold_latencies.push(took.as_secs_f64() * 1e6);
                    } else {
                        warm_latencies.push(took.as_secs_f64() * 1e6);
                    }
                }
            }
        }
        let p50 = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        Ok(Locality {
            functions: FUNCTIONS,
            requests_per_function: REQUESTS,
            cold_one_node: cold[0],
            cold_three_nodes: cold[1],
            cold_p50_us: p50(cold_latencies),
            warm_p50_us: p50(warm_latencies),
        })
    }

    async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

/// Runs the futures together (each starts its own load-generator process when polled).
async fn futures_join<T>(
    runs: impl Iterator<Item = impl std::future::Future<Output = anyhow::Result<T>>>,
) -> anyhow::Result<Vec<T>> {
    futures::future::join_all(runs).await.into_iter().collect()
}

/// The status of `GET path` at `addr`; None when it cannot be asked.
async fn status_of(addr: &str, path: &str) -> Option<u16> {
    let mut connection = crate::load::Connection::open(addr).await.ok()?;
    let (response, _) = connection.get(path).await.ok()?;
    Some(response.status().as_u16())
}

/// A database of its own on the benchmark's PostgreSQL.
async fn fresh_database(server: &str) -> anyhow::Result<String> {
    let (base, _) = server
        .rsplit_once('/')
        .context("--postgres is postgres://USER@HOST:PORT/DB")?;
    let name = format!("kumo_bench_{}", uuid::Uuid::now_v7().simple());
    let admin = sqlx::PgPool::connect(server)
        .await
        .context("connecting to --postgres")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(format!("{base}/{name}"))
}

/// User and system CPU of processes, in ms (from /proc; a process gone counts 0).
fn cpu_ms(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| process_cpu_ms(*pid)).sum()
}

fn process_cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command (which may hold spaces), from the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks * 1000.0 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // Linux's USER_HZ is 100 on every architecture kumo runs on.
    100.0
}

/// The CPU of every PostgreSQL process on the machine (the benchmark's server only, here).
fn postgres_cpu_ms() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(process_cpu_ms)
        .sum()
}

fn print_report(r: &Report, sqlite: f64, pg: f64) {
    println!(
        "## A cluster on PostgreSQL ({} cores, c={})\n",
        r.cpus, r.concurrency
    );
    println!(
        "| warm sync, 1 node | req/s (median of {} rounds) |",
        r.warm.len() / 2
    );
    println!("|---|---|");
    println!("| SQLite | {sqlite:.0} |");
    println!("| PostgreSQL | {pg:.0} |");
    println!("| ratio | **{:.2}×** |\n", r.warm_ratio);
    println!("| async events | accepted/s | submit p99 | completed/s | errors |");
    println!("|---|---|---|---|---|");
    for a in &r.async_events {
        println!(
            "| {} | {:.0} | {:.1} ms | {:.0} | {} |",
            a.setup,
            a.accepted_per_sec,
            a.submit_p99_us / 1000.0,
            a.completed_per_sec,
            a.errors
        );
    }
    println!("\n| warm sync | req/s | kumo CPU ms / 1,000 | PostgreSQL CPU ms / 1,000 |");
    println!("|---|---|---|---|");
    for c in &r.cpu {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            c.setup, c.requests_per_sec, c.kumo_cpu_ms_per_1000, c.postgres_cpu_ms_per_1000
        );
    }
    let l = &r.locality;
    let total = l.functions * l.requests_per_function;
    println!(
        "\nWarm locality: {} functions x {} requests; cold through one node {} of {total}, \
         round-robin over three {} of {total}; a cold request p50 {:.0} µs, a warm one {:.0} µs.",
        l.functions,
        l.requests_per_function,
        l.cold_one_node,
        l.cold_three_nodes,
        l.cold_p50_us,
        l.warm_p50_us
    );
}
