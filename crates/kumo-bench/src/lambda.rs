//! `kumo-bench lambda`: Lambda functions' cold starts and warm overhead, in one run.
//!
//! - Cold start: a new execution environment per invocation through kumo's environment pool
//!   (sandbox, exec, the runtime's init, the first answer), with the sandbox's own start
//!   reported apart. Lambda's published init medians are the reference (15 ms for Rust,
//!   85 ms for Python).
//! - Warm: the same function answering one invocation after another in a kept environment
//!   (thaw, Runtime API exchange, freeze), against the limit: the same binary outside any
//!   sandbox, served by the same Runtime API code, with nothing between. Interleaved rounds.
//!
//! Needs root (sandboxes), as kumo does to run Lambda functions.

use crate::stats::Latencies;
use bytes::Bytes;
use kumo_core::LambdaRuntimeName;
use kumo_lambda::runtime_api::{self, Answer, Exchange, Job};
use kumo_lambda::{Function, Invocation, IsolationMode, LambdaRuntime, Pool};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct LambdaArgs {
    /// A `provided` function's `bootstrap` (the Rust `lambda_runtime` one from test-programs).
    #[arg(long)]
    bootstrap: PathBuf,
    /// Where awslambdaric is installed (scripts/lambda-runtimes.sh): a Python function (a
    /// handler that returns its event, as in Lambda's published init figures) is measured too.
    #[arg(long)]
    runtimes: Option<PathBuf>,
    /// Cold starts per function.
    #[arg(long, default_value_t = 40)]
    cold: usize,
    /// Warm invocations per round and side.
    #[arg(long, default_value_t = 2000)]
    warm: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub(crate) async fn run(args: LambdaArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755))?;
    let helper = std::env::current_exe()?;
    let runtime = LambdaRuntime::new(
        data.path(),
        helper,
        IsolationMode::Strict,
        args.runtimes.clone(),
    )?;
    let rust = package(
        data.path(),
        "rust",
        &[("bootstrap", &args.bootstrap, 0o755)],
    )?;
    let rust_function =
        |name: &str| function(name, rust.clone(), LambdaRuntimeName::Provided, None);

    println!("## Lambda functions\n");
    println!(
        "| function | cold p50 ms | cold p90 ms | sandbox start p50 ms | runtime init p50 ms |"
    );
    println!("|---|---|---|---|---|");
    cold_starts(&runtime, "Rust (lambda_runtime)", &rust_function, args.cold).await?;
    if args.runtimes.is_some() {
        let app = data.path().join("app.py");
        std::fs::write(&app, "def handler(event, context):\n    return event\n")?;
        let python = package(data.path(), "python", &[("app.py", &app, 0o644)])?;
        let python_function = |name: &str| {
            function(
                name,
                python.clone(),
                LambdaRuntimeName::Python3,
                Some("app.handler"),
            )
        };
        cold_starts(
            &runtime,
            "Python (awslambdaric)",
            &python_function,
            args.cold,
        )
        .await?;
    }

    // Warm: the pool's kept environment against the bare binary, round after round.
    let pool = Pool::new(runtime.clone(), rust_function("warm"));
    let bare = BareRuntime::start(&rust.join("bootstrap")).await?;
    let (mut kumo, mut limit) = (Latencies::default(), Latencies::default());
    pool.invoke(invocation(0), pool.check_out())
        .await
        .result
        .map_err(|f| anyhow::anyhow!(f.message))?;
    bare.invoke(0).await?;
    for _ in 0..args.rounds {
        for i in 0..args.warm {
            let clock = Instant::now();
            let outcome = pool.invoke(invocation(i), pool.check_out()).await;
            kumo.push(clock.elapsed());
            outcome.result.map_err(|f| anyhow::anyhow!(f.message))?;
        }
        for i in 0..args.warm {
            let clock = Instant::now();
            bare.invoke(i).await?;
            limit.push(clock.elapsed());
        }
    }
    let (k50, l50) = (kumo.percentile(50.0), limit.percentile(50.0));
    let (k99, l99) = (kumo.percentile(99.0), limit.percentile(99.0));
    println!("\n| warm invocation (Rust) | p50 µs | p99 µs |");
    println!("|---|---|---|");
    println!("| kumo environment (sandboxed, thaw + freeze) | {k50:.0} | {k99:.0} |");
    println!("| bare Runtime API exchange, no sandbox (the limit) | {l50:.0} | {l99:.0} |");
    println!("| **overhead** | **{:.0}** | {:.0} |", k50 - l50, k99 - l99);
    println!(
        "\n{} warm invocations per side in {} interleaved rounds; {} cold starts per function.",
        kumo.len(),
        args.rounds,
        args.cold
    );
    Ok(())
}

async fn cold_starts(
    runtime: &Arc<LambdaRuntime>,
    label: &str,
    function: &dyn Fn(&str) -> Function,
    count: usize,
) -> anyhow::Result<()> {
    let (mut total, mut sandbox, mut init) = (
        Latencies::default(),
        Latencies::default(),
        Latencies::default(),
    );
    for i in 0..count {
        // A new pool each time: no environment to reuse.
        let pool = Pool::new(runtime.clone(), function(&format!("cold{i}")));
        let clock = Instant::now();
        let outcome = pool.invoke(invocation(i), pool.check_out()).await;
        total.push(clock.elapsed());
        outcome
            .result
            .map_err(|f| anyhow::anyhow!("{label}: {}", f.message))?;
        let started = outcome.sandbox_start.unwrap_or_default();
        sandbox.push(started);
        init.push(outcome.init.unwrap_or_default().saturating_sub(started));
    }
    let ms = |us: f64| us / 1000.0;
    println!(
        "| {label} | {:.1} | {:.1} | {:.1} | {:.1} |",
        ms(total.percentile(50.0)),
        ms(total.percentile(90.0)),
        ms(sandbox.percentile(50.0)),
        ms(init.percentile(50.0)),
    );
    Ok(())
}

/// A package folder with `files` (name in the package, source, mode).
fn package(data: &Path, name: &str, files: &[(&str, &Path, u32)]) -> anyhow::Result<PathBuf> {
    let dir = data.join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for (file, source, mode) in files {
        let path = dir.join(file);
        std::fs::copy(source, &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(dir)
}

fn function(
    name: &str,
    package: PathBuf,
    runtime: LambdaRuntimeName,
    handler: Option<&str>,
) -> Function {
    Function {
        name: name.into(),
        identity: name.into(),
        version: "$LATEST".into(),
        memory_mb: 512,
        runtime,
        handler: handler.map(str::to_string),
        package,
        env: Vec::new(),
        region: kumo_lambda::api::REGION.into(),
        tmp_bytes: 16 << 20,
        egress: None,
    }
}

fn invocation(i: usize) -> Invocation {
    Invocation {
        request_id: format!("bench-{i}"),
        payload: Bytes::from_static(br#"{"n": 1}"#),
        timeout: Duration::from_secs(10),
        trace_id: None,
        client_context: None,
        memory: None,
    }
}

/// The limit: the function's binary as a plain child process, served by the same Runtime API
/// code on a host port; no sandbox, no pool, no logs.
struct BareRuntime {
    exchange: Arc<Exchange>,
    _child: tokio::process::Child,
}

impl BareRuntime {
    async fn start(bootstrap: &Path) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let exchange = Arc::new(Exchange::default());
        tokio::spawn(runtime_api::serve(listener, exchange.clone()));
        let child = tokio::process::Command::new(bootstrap)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bare")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self {
            exchange,
            _child: child,
        })
    }

    async fn invoke(&self, i: usize) -> anyhow::Result<()> {
        let answer = self.exchange.give(Job {
            request_id: format!("bare-{i}"),
            payload: Bytes::from_static(br#"{"n": 1}"#),
            deadline_ms: kumo_core::now_ms() + 10_000,
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:bare".into(),
            trace_id: None,
            client_context: None,
        });
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(Answer::Response(_))) => Ok(()),
            other => anyhow::bail!("the bare runtime did not answer: {other:?}"),
        }
    }
}
