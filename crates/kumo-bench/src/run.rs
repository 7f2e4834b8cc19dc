//! The whole benchmark in one run: instantiation, cold starts, warm throughput of kumo beside
//! `wasmtime serve` and a bare hyper server, and the idle memory of many deployed functions.

use crate::load::{Connection, LoadResult};
use crate::servers::{self, CLIENT_CPU, Running, SERVER_CPU, pinned};
use crate::stats::Latencies;
use anyhow::{Context as _, bail, ensure};
use kumo_api::{Client, FunctionConfig};
use kumo_core::Instances;
use kumo_runtime::{Allocator, Runtime, RuntimeConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Where the JSON results go.
    #[arg(long)]
    out: PathBuf,
    /// The hello wasi-http component (examples/hello built for wasm32-wasip2).
    #[arg(long)]
    hello: PathBuf,
    /// The `wasmtime` CLI for the peer; without it the peer is left out.
    #[arg(long)]
    wasmtime: Option<PathBuf>,
    /// Measured time per load run (after the warm-up).
    #[arg(long, default_value = "5s", value_parser = kumo_core::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = kumo_core::parse_duration)]
    warmup: Duration,
    /// Connections of the load generator, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Distinct never-loaded functions whose first request is timed.
    #[arg(long, default_value_t = 200)]
    cold_functions: usize,
    /// Functions deployed for the idle-memory figure.
    #[arg(long, default_value_t = 10_000)]
    idle_functions: usize,
    /// Rounds of warm loads (every server in turn); the median round of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Instantiations timed in-process.
    #[arg(long, default_value_t = 5_000)]
    instantiations: usize,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    instantiate: Vec<Percentiles>,
    cold_start: ColdStart,
    warm: Vec<WarmRun>,
    async_events: AsyncEvents,
    idle_memory: IdleMemory,
    ratios: Vec<Ratio>,
    /// Every warm run of every round (`warm` holds the median ones).
    rounds: Vec<WarmRun>,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cpus: usize,
    kernel: String,
    pinned: bool,
    duration_s: f64,
    warmup_s: f64,
    rounds: usize,
}

#[derive(Serialize)]
struct Percentiles {
    what: String,
    samples: usize,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Serialize)]
struct ColdStart {
    functions: usize,
    first_request: Percentiles,
    second_request: Percentiles,
}

#[derive(Serialize, Clone)]
struct WarmRun {
    server: String,
    /// Which round (from 1) it was measured in.
    round: usize,
    #[serde(flatten)]
    load: LoadResult,
}

#[derive(Serialize)]
struct AsyncEvents {
    connections: usize,
    /// Submits answered 202 (the event committed to SQLite).
    accepted: u64,
    accepted_per_sec: f64,
    submit_p50_us: f64,
    submit_p99_us: f64,
    errors: u64,
    /// From the first submit until the queue was empty.
    drain_s: f64,
    drained_per_sec: f64,
}

#[derive(Serialize)]
struct IdleMemory {
    functions: usize,
    deploys_per_sec: f64,
    rss_empty_mib: f64,
    rss_after_deploys_mib: f64,
    rss_after_restart_mib: f64,
    loaded_after_restart: u64,
}

#[derive(Serialize)]
struct Ratio {
    figure: String,
    concurrency: usize,
    kumo: f64,
    other: String,
    value: f64,
}

const KUMO_FRESH: &str = "kumo (fresh)";
const KUMO_REUSE: &str = "kumo (reuse)";
const PEER_DEFAULT: &str = "wasmtime serve (default)";
const PEER_FASTEST: &str = "wasmtime serve (pooling, reuse 1000)";
/// The fastest configuration with a timeout, as every kumo function has: like for like, as
/// both then compile the guest with epoch interruption checks.
const PEER_FASTEST_TIMEOUT: &str = "wasmtime serve (pooling, reuse 1000, timeout)";
const LIMIT: &str = "bare hyper";

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let can_pin = servers::can_pin();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    servers::pin_self();
    let hello =
        std::fs::read(&args.hello).with_context(|| format!("reading {}", args.hello.display()))?;
    let kumo = sibling("kumo")?;
    eprintln!("instantiate-only ...");
    let instantiate = vec![
        time_instantiation(&hello, Allocator::Pooling, args.instantiations).await?,
        time_instantiation(&hello, Allocator::OnDemand, args.instantiations).await?,
    ];

    // Every server in turn, `rounds` times: drift of the machine over the minutes a round
    // takes then hits every server alike, and the median round of each is reported.
    let mut rounds = Vec::new();
    let mut kumo_extras = None;
    for round in 1..=args.rounds {
        eprintln!("round {round} of {}", args.rounds);
        let (runs, extras) = warm_round(&args, round, &kumo, &hello, kumo_extras.is_none()).await?;
        rounds.extend(runs);
        kumo_extras = kumo_extras.or(extras);
    }
    let (async_events, cold_start) = kumo_extras.context("no round ran (--rounds 0)")?;
    let warm = median_runs(&rounds);

    eprintln!("idle memory with {} functions ...", args.idle_functions);
    let idle_memory = idle_memory(&kumo, &hello, args.idle_functions).await?;

    let ratios = ratios(&warm, &args.concurrency);
    let report = Report {
        machine: machine(can_pin, cpus, &args),
        instantiate,
        cold_start,
        warm,
        rounds,
        async_events,
        idle_memory,
        ratios,
    };
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", markdown(&report));
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

/// One round of warm loads: kumo (fresh and reuse), the peer in its three configurations and
/// the bare hyper server, each at every concurrency level. With `extras`, kumo's asynchronous
/// invocations and cold starts are measured too (once per benchmark).
async fn warm_round(
    args: &RunArgs,
    round: usize,
    kumo: &Path,
    hello: &[u8],
    extras: bool,
) -> anyhow::Result<(Vec<WarmRun>, Option<(AsyncEvents, ColdStart)>)> {
    let mut warm = Vec::new();
    eprintln!("kumo: warm throughput ...");
    let dir = tempfile::tempdir()?;
    let server = start_kumo(kumo, dir.path()).await?;
    let client = Client::new(&server.url(""));
    deploy(&client, "hello", hello, Instances::Fresh).await?;
    deploy(&client, "hello-reuse", hello, Instances::Reuse).await?;
    for (label, function) in [(KUMO_FRESH, "hello"), (KUMO_REUSE, "hello-reuse")] {
        let url = server.url(&format!("/fn/{function}/bench"));
        warm.extend(load_all(label, &url, args, round).await?);
    }
    let extras = if extras {
        eprintln!("kumo: asynchronous invocations and cold starts ...");
        let async_events = async_events(&server, args).await?;
        let cold_start = cold_starts(&server, &client, hello, args.cold_functions).await?;
        Some((async_events, cold_start))
    } else {
        None
    };
    server.stop().await;

    if let Some(wasmtime) = &args.wasmtime {
        for (label, extra) in [
            (PEER_DEFAULT, &[][..]),
            (
                PEER_FASTEST,
                &[
                    "-O",
                    "pooling-allocator=y",
                    "--max-instance-reuse-count",
                    "1000",
                ][..],
            ),
            (
                PEER_FASTEST_TIMEOUT,
                &[
                    "-O",
                    "pooling-allocator=y",
                    "--max-instance-reuse-count",
                    "1000",
                    "-W",
                    "timeout=60s",
                ][..],
            ),
        ] {
            eprintln!("{label} ...");
            let addr = servers::free_addr()?;
            let mut command = pinned(SERVER_CPU, wasmtime);
            command
                .args(["serve", "--addr", &addr, "-Scli", "--env", "GREETING=hello"])
                .args(extra)
                .arg(&args.hello);
            let server = servers::start(command, addr, label).await?;
            warm.extend(load_all(label, &server.url("/bench"), args, round).await?);
            server.stop().await;
        }
    }

    eprintln!("{LIMIT} ...");
    let addr = servers::free_addr()?;
    let mut command = pinned(SERVER_CPU, &std::env::current_exe()?);
    command.args(["hyper-hello", "--listen", &addr]);
    let server = servers::start(command, addr, LIMIT).await?;
    warm.extend(load_all(LIMIT, &server.url("/bench"), args, round).await?);
    server.stop().await;
    Ok((warm, extras))
}

/// Per server and concurrency, the round with the median throughput (the lower middle one of
/// an even count), in the order the runs were made.
fn median_runs(rounds: &[WarmRun]) -> Vec<WarmRun> {
    let mut medians: Vec<WarmRun> = Vec::new();
    for run in rounds {
        if medians
            .iter()
            .any(|m| m.server == run.server && m.load.concurrency == run.load.concurrency)
        {
            continue;
        }
        let mut same: Vec<&WarmRun> = rounds
            .iter()
            .filter(|r| r.server == run.server && r.load.concurrency == run.load.concurrency)
            .collect();
        same.sort_by(|a, b| a.load.requests_per_sec.total_cmp(&b.load.requests_per_sec));
        medians.push(same[(same.len() - 1) / 2].clone());
    }
    medians
}

/// A binary built beside this one (target/release/kumo).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p kumo`",
        path.display()
    );
    Ok(path)
}

async fn time_instantiation(
    hello: &[u8],
    allocator: Allocator,
    n: usize,
) -> anyhow::Result<Percentiles> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(
        dir.path(),
        RuntimeConfig {
            allocator,
            ..RuntimeConfig::default()
        },
    )?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hello));
    let loaded = runtime
        .prepare(&sha, hello)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let memory = kumo_core::DEFAULT_MEMORY_MB as usize * 1024 * 1024;
    for _ in 0..n / 10 {
        runtime.time_instantiation(&loaded, memory).await?;
    }
    let mut latencies = Latencies::default();
    for _ in 0..n {
        latencies.push(runtime.time_instantiation(&loaded, memory).await?);
    }
    let what = match runtime.allocator() {
        Allocator::Pooling => "instantiate, pooling allocator",
        Allocator::OnDemand => "instantiate, on-demand allocator",
    };
    Ok(percentiles(what, latencies))
}

fn percentiles(what: &str, mut latencies: Latencies) -> Percentiles {
    Percentiles {
        what: what.to_string(),
        samples: latencies.len(),
        p50_us: latencies.percentile(50.0),
        p99_us: latencies.percentile(99.0),
    }
}

async fn start_kumo(kumo: &Path, data_dir: &Path) -> anyhow::Result<Running> {
    let addr = servers::free_addr()?;
    let mut command = pinned(SERVER_CPU, kumo);
    // Without tokens (loopback only): the harness deploys and reads metrics with plain
    // requests. The data plane it measures runs the same code either way (public functions).
    command
        .args(["serve", "--auth", "none", "--listen", &addr, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn");
    servers::start(command, addr, "kumo").await
}

async fn deploy(
    client: &Client,
    name: &str,
    code: &[u8],
    instances: Instances,
) -> anyhow::Result<()> {
    let config = FunctionConfig {
        instances,
        env: [("GREETING".to_string(), "hello".to_string())].into(),
        ..FunctionConfig::default()
    };
    client
        .deploy(name, code.to_vec(), &config)
        .await
        .with_context(|| format!("deploying {name}"))?;
    Ok(())
}

/// One load run per concurrency level, each by a load-generator process on the client core.
async fn load_all(
    label: &str,
    url: &str,
    args: &RunArgs,
    round: usize,
) -> anyhow::Result<Vec<WarmRun>> {
    let mut runs = Vec::new();
    for &concurrency in &args.concurrency {
        let load = load_once(url, "GET", concurrency, args.warmup, args.duration).await?;
        eprintln!(
            "  {label} c={concurrency}: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors",
            load.requests_per_sec, load.p50_us, load.p99_us, load.errors
        );
        runs.push(WarmRun {
            server: label.to_string(),
            round,
            load,
        });
    }
    Ok(runs)
}

/// One run of the load generator, as its own process on the client core.
pub(crate) async fn load_once(
    url: &str,
    method: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let output = pinned(CLIENT_CPU, &std::env::current_exe()?)
        .args(["load", "--url", url, "--method", method])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--warmup", &kumo_core::format_duration(warmup)])
        .args(["--duration", &kumo_core::format_duration(duration)])
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "the load generator failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Asynchronous invocations of hello: submits at 16 connections for the run's duration (the
/// workers drain the queue meanwhile, on the same core), then waits for the queue to empty.
async fn async_events(server: &Running, args: &RunArgs) -> anyhow::Result<AsyncEvents> {
    const CONNECTIONS: usize = 16;
    let url = server.url("/api/v1/functions/hello/invoke?mode=async");
    let start = Instant::now();
    let load = load_once(&url, "POST", CONNECTIONS, Duration::ZERO, args.duration).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric(server, "kumo_events_pending").await? > 0 {
        ensure!(
            Instant::now() < deadline,
            "the queue did not drain in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = start.elapsed();
    eprintln!(
        "  async: {:.0} events/s accepted, drained in {:.1} s, {} errors",
        load.requests_per_sec,
        drain.as_secs_f64(),
        load.errors
    );
    Ok(AsyncEvents {
        connections: CONNECTIONS,
        accepted: load.requests,
        accepted_per_sec: load.requests_per_sec,
        submit_p50_us: load.p50_us,
        submit_p99_us: load.p99_us,
        errors: load.errors,
        drain_s: drain.as_secs_f64(),
        drained_per_sec: load.requests as f64 / drain.as_secs_f64(),
    })
}

/// Deploys `n` functions, then times the first request of each (a cold start: the cached
/// artifact is loaded and pre-instantiated) and a second, warm one.
async fn cold_starts(
    server: &Running,
    client: &Client,
    hello: &[u8],
    n: usize,
) -> anyhow::Result<ColdStart> {
    for i in 0..n {
        deploy(client, &format!("cold-{i}"), hello, Instances::Fresh).await?;
    }
    let mut connection = Connection::open(&server.addr).await?;
    let (mut first, mut second) = (Latencies::default(), Latencies::default());
    for i in 0..n {
        let path = format!("/fn/cold-{i}/bench");
        let (response, took) = connection.get(&path).await?;
        ensure!(
            response.status().is_success() && response.headers().contains_key("x-kumo-cold"),
            "the first request of cold-{i} was not a successful cold start: {response:?}"
        );
        first.push(took);
        let (response, took) = connection.get(&path).await?;
        ensure!(response.status().is_success() && !response.headers().contains_key("x-kumo-cold"));
        second.push(took);
    }
    Ok(ColdStart {
        functions: n,
        first_request: percentiles("first request (cold)", first),
        second_request: percentiles("second request (warm)", second),
    })
}

/// Resident memory of a server with `n` deployed functions, before and after a restart
/// (after which none is loaded).
async fn idle_memory(kumo: &Path, hello: &[u8], n: usize) -> anyhow::Result<IdleMemory> {
    let dir = tempfile::tempdir()?;
    let server = start_kumo(kumo, dir.path()).await?;
    let rss_empty_mib = server.rss_mib()?;
    let client = Client::new(&server.url(""));
    let start = Instant::now();
    // A few deploys at once, as a CI pipeline would push them.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (client, hello) = (client.clone(), hello.to_vec());
            tokio::spawn(async move {
                for i in (w..n).step_by(4) {
                    deploy(&client, &format!("idle-{i}"), &hello, Instances::Fresh).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let deploys_per_sec = n as f64 / start.elapsed().as_secs_f64();
    let rss_after_deploys_mib = server.rss_mib()?;
    server.stop().await;

    let server = start_kumo(kumo, dir.path()).await?;
    // Let start-up settle before reading memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_restart_mib = server.rss_mib()?;
    let loaded_after_restart = metric(&server, "kumo_functions_loaded").await?;
    let listed = Client::new(&server.url("")).list().await?.len();
    ensure!(
        listed == n,
        "{listed} of {n} functions listed after the restart"
    );
    server.stop().await;
    Ok(IdleMemory {
        functions: n,
        deploys_per_sec,
        rss_empty_mib,
        rss_after_deploys_mib,
        rss_after_restart_mib,
        loaded_after_restart,
    })
}

/// An unlabelled metric of the server's /metrics.
pub(crate) async fn metric(server: &Running, name: &str) -> anyhow::Result<u64> {
    let mut connection = Connection::open(&server.addr).await?;
    let (response, _) = connection.get("/metrics").await?;
    let text = String::from_utf8_lossy(response.body()).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in /metrics"))?
        .parse()
        .with_context(|| format!("parsing {name}"))
}

fn ratios(warm: &[WarmRun], levels: &[usize]) -> Vec<Ratio> {
    let find = |server: &str, c: usize| {
        warm.iter()
            .find(|r| r.server == server && r.load.concurrency == c)
    };
    let mut ratios = Vec::new();
    for &c in levels {
        for kumo in [KUMO_FRESH, KUMO_REUSE] {
            let Some(k) = find(kumo, c) else { continue };
            for other in [PEER_DEFAULT, PEER_FASTEST, PEER_FASTEST_TIMEOUT, LIMIT] {
                let Some(o) = find(other, c) else { continue };
                let figures = [
                    (
                        "throughput",
                        k.load.requests_per_sec,
                        o.load.requests_per_sec,
                    ),
                    ("p50 latency", k.load.p50_us, o.load.p50_us),
                ];
                for (figure, kumo_value, other_value) in figures {
                    ratios.push(Ratio {
                        figure: figure.into(),
                        concurrency: c,
                        kumo: kumo_value,
                        other: format!("{kumo} / {other}"),
                        value: kumo_value / other_value,
                    });
                }
            }
        }
    }
    ratios
}

fn machine(pinned: bool, cpus: usize, args: &RunArgs) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpu,
        cpus,
        kernel,
        pinned,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        rounds: args.rounds,
    }
}

fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    out += &format!(
        "Machine: {} ({} CPUs), Linux {}; servers pinned to CPU {SERVER_CPU}, load generator to CPU {CLIENT_CPU}: {}. {} s per run after {} s warm-up; {} rounds of warm runs, every server in turn.\n\n",
        m.cpu, m.cpus, m.kernel, m.pinned, m.duration_s, m.warmup_s, m.rounds
    );
    out += "| start-up | samples | p50 (µs) | p99 (µs) |\n|---|---|---|---|\n";
    for p in r
        .instantiate
        .iter()
        .chain([&r.cold_start.first_request, &r.cold_start.second_request])
    {
        out += &format!(
            "| {} | {} | {:.0} | {:.0} |\n",
            p.what, p.samples, p.p50_us, p.p99_us
        );
    }
    out += "\nWarm runs: the median round of each server (by req/s), its p50 and p99; every round's req/s after it.\n\n";
    out += "| server | connections | req/s | p50 (µs) | p99 (µs) | errors | req/s by round |\n|---|---|---|---|---|---|---|\n";
    for w in &r.warm {
        let by_round: Vec<String> = r
            .rounds
            .iter()
            .filter(|o| o.server == w.server && o.load.concurrency == w.load.concurrency)
            .map(|o| format!("{:.0}", o.load.requests_per_sec))
            .collect();
        out += &format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
            w.server,
            w.load.concurrency,
            w.load.requests_per_sec,
            w.load.p50_us,
            w.load.p99_us,
            w.load.errors,
            by_round.join(" / ")
        );
    }
    out += "\n| ratio | connections | value |\n|---|---|---|\n";
    for ratio in &r.ratios {
        out += &format!(
            "| {} {} | {} | {:.2} |\n",
            ratio.figure, ratio.other, ratio.concurrency, ratio.value
        );
    }
    let a = &r.async_events;
    out += &format!(
        "\nAsynchronous invocations of hello ({} connections submitting while the workers drain, same core): {:.0} events/s accepted (202 after the SQLite commit; submit p50 {:.0} µs, p99 {:.0} µs, {} errors); all {} done after {:.1} s: {:.0} events/s end to end.\n",
        a.connections,
        a.accepted_per_sec,
        a.submit_p50_us,
        a.submit_p99_us,
        a.errors,
        a.accepted,
        a.drain_s,
        a.drained_per_sec
    );
    let i = &r.idle_memory;
    out += &format!(
        "\nIdle memory: {} functions deployed at {:.0} deploys/s; server RSS {:.1} MiB empty, {:.1} MiB after the deploys, {:.1} MiB after a restart with {} loaded.\n",
        i.functions,
        i.deploys_per_sec,
        i.rss_empty_mib,
        i.rss_after_deploys_mib,
        i.rss_after_restart_mib,
        i.loaded_after_restart
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, round: usize, concurrency: usize, requests_per_sec: f64) -> WarmRun {
        WarmRun {
            server: server.into(),
            round,
            load: LoadResult {
                concurrency,
                requests: 0,
                errors: 0,
                requests_per_sec,
                p50_us: round as f64,
                p99_us: 0.0,
            },
        }
    }

    #[test]
    fn the_median_round_of_each_server_and_level_is_kept() {
        let rounds = [
            run("a", 1, 1, 30.0),
            run("a", 1, 16, 5.0),
            run("b", 1, 1, 7.0),
            run("a", 2, 1, 10.0),
            run("a", 2, 16, 6.0),
            run("b", 2, 1, 8.0),
            run("a", 3, 1, 20.0),
            run("a", 3, 16, 4.0),
        ];
        let medians = median_runs(&rounds);
        let picked: Vec<(&str, usize, usize)> = medians
            .iter()
            .map(|m| (m.server.as_str(), m.load.concurrency, m.round))
            .collect();
        // a@1: 10, 20, 30 -> round 3; a@16: 4, 5, 6 -> round 1; b@1: 7, 8 -> the lower, round 1.
        assert_eq!(picked, [("a", 1, 3), ("a", 16, 1), ("b", 1, 1)]);
        // The median run keeps its own latencies.
        assert_eq!(medians[0].load.p50_us, 3.0);
    }
}
