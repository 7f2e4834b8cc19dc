//! One function per CLI command. Each returns the process exit code.

use crate::ServeArgs;
use crate::manifest::Manifest;
use anyhow::{Context as _, bail};
use kumo_api::{Client, FunctionConfig, LogFilter, LogRecord};
use kumo_core::{
    Destination, Route, Schedule, Spec, format_duration, format_timestamp, parse_duration,
    validate_name,
};
use kumo_server::{Server, ServerConfig};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) type CmdResult = anyhow::Result<ExitCode>;

async fn bind(args: &ServeArgs) -> anyhow::Result<Server> {
    let args = args.clone();
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        max_body_bytes: args.max_body_bytes,
        keep_alive: args.keep_alive,
        max_concurrency: args.max_concurrency,
        allocator: args.allocator.into(),
        async_config: kumo_server::AsyncConfig {
            workers: args.async_workers,
            retry_base_delay: args.retry_base_delay,
            sync_reserve_percent: args.sync_reserve_percent,
            max_payload_bytes: args.max_async_payload_bytes,
        },
        max_object_bytes: args.max_object_bytes,
        prices: kumo_core::Prices {
            per_million_requests: args.price_per_million_requests,
            per_gb_second: args.price_per_gb_second,
            per_thousand_transitions: args.price_per_thousand_transitions,
        },
        retention: args.retention,
        breaker: kumo_server::BreakerConfig {
            failures: args.outbound_breaker_failures,
            cooldown: args.outbound_breaker_cooldown,
        },
        max_memory: args.max_memory,
        function_share_percent: args.function_share_percent,
        min_free_disk: args.min_free_disk,
        max_pending_records: args.max_pending_records,
        connections: kumo_server::ConnectionLimits {
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
            body_idle_timeout: args.body_idle_timeout,
            write_timeout: args.write_timeout,
        },
        metrics_listen: args.metrics_listen.clone(),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(kumo_server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        auth: match args.auth {
            crate::AuthArg::Token => kumo_server::AuthMode::Token,
            crate::AuthArg::None => kumo_server::AuthMode::None,
        },
        isolation: args.isolation.into(),
        lambda_runtimes: args.lambda_runtimes.clone(),
        database: args.database.clone(),
        node_id: args.node_id.clone(),
        objects: args.objects.clone(),
        sandbox_helper: std::env::current_exe().context("finding kumo's own binary")?,
    })
    .await?;
    // Tests and scripts read this line to learn the port (e.g. with --listen 127.0.0.1:0).
    let scheme = if server.is_tls() { "https" } else { "http" };
    println!("kumo listening on {scheme}://{}", server.local_addr()?);
    if let Some(addr) = server.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    Ok(server)
}

pub(crate) async fn serve(args: ServeArgs) -> CmdResult {
    bind(&args)
        .await?
        .run(kumo_server::shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn up(args: ServeArgs, manifest: &Path) -> CmdResult {
    let manifest = Manifest::load(manifest)?;
    let server = bind(&args).await?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    // Listening on every address (0.0.0.0): this machine reaches it, and its CLI talks to it,
    // on the loopback address.
    let mut local = server.local_addr()?;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("{scheme}://{local}");
    // The manifest is deployed with the first admin token, and the local CLI logged in with
    // it, so `kumo ls` and the tour work from another terminal.
    let admin = args.data_dir.join(kumo_server::ADMIN_TOKEN_FILE);
    let client = match args.auth {
        crate::AuthArg::None => Client::new(&url),
        crate::AuthArg::Token => match std::fs::read_to_string(&admin) {
            Ok(secret) => {
                let secret = secret.trim();
                let saved = crate::auth::save_credentials(&url, secret)?;
                println!(
                    "the CLI is logged in to {url} as admin ({})",
                    saved.display()
                );
                Client::with_token(&url, secret)?
            }
            // The first token was removed: the CLI's own credentials must do.
            Err(_) => crate::auth::client(&url, None)?,
        },
    };
    let running = tokio::spawn(server.run(kumo_server::shutdown_signal()));
    deploy_manifest(&client, &manifest).await?;
    println!("ready; Ctrl-C stops");
    running.await??;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub(crate) struct DeployArgs {
    /// The .wasm to deploy (with --runtime, a Lambda zip package); without it, every function
    /// of the manifest is built and deployed.
    file: Option<PathBuf>,
    /// The manifest used when no FILE is given.
    #[arg(short = 'f', long = "file", default_value = "kumo.toml")]
    manifest: PathBuf,
    /// Function name (default: the file name without its extension).
    #[arg(long)]
    name: Option<String>,
    /// Memory limit in MiB.
    #[arg(long)]
    memory: Option<u32>,
    /// Timeout, e.g. 500ms, 10s, 5m.
    #[arg(long)]
    timeout: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Custom route, e.g. /hello or /hello/* (repeatable).
    #[arg(long = "route")]
    routes: Vec<Spec<Route>>,
    /// The host the routes answer on (the request's `Host`), e.g. shop.example.com.
    #[arg(long)]
    host: Option<String>,
    /// Most invocations running at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Keep the function loaded (never a cold start) with this many concurrency slots reserved.
    #[arg(long)]
    provisioned_concurrency: Option<u32>,
    /// `fresh` (a new instance per request) or `reuse` (warm instances serve many requests).
    #[arg(long)]
    instances: Option<kumo_core::Instances>,
    /// With --instances reuse: requests one instance serves before it is replaced.
    #[arg(long)]
    max_instance_requests: Option<u32>,
    /// Asynchronous invocations: retries after a failed attempt.
    #[arg(long)]
    max_retries: Option<u32>,
    /// Asynchronous invocations: not tried again when older, e.g. 1h.
    #[arg(long)]
    max_event_age: Option<String>,
    /// Where successful async outcomes go: a function name or an http(s):// URL.
    #[arg(long)]
    on_success: Option<Spec<Destination>>,
    /// Where async events that failed for good go: a function name or an http(s):// URL.
    #[arg(long)]
    on_failure: Option<Spec<Destination>>,
    /// A cron expression (UTC) or rate(N unit): each tick is one async invocation.
    #[arg(long)]
    schedule: Option<Spec<Schedule>>,
    /// A topic whose messages the function receives (repeatable).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// A host (or host:port) the guest may send HTTP requests to (repeatable).
    #[arg(long = "allow-outbound", value_name = "HOST")]
    allow_outbound: Vec<String>,
    /// A key-value bucket the guest may open (repeatable).
    #[arg(long = "kv", value_name = "BUCKET")]
    kv: Vec<String>,
    /// An object bucket the guest may use (repeatable).
    #[arg(long = "objects", value_name = "BUCKET")]
    objects: Vec<String>,
    /// What routes, schedule, topics and object triggers invoke: a version or an alias
    /// (default: $LATEST).
    #[arg(long, value_name = "VERSION_OR_ALIAS")]
    triggers_use: Option<String>,
    /// Who may call it over HTTP: `public` (default) or `token` (a token that may invoke).
    #[arg(long, value_parser = parse_function_auth)]
    auth: Option<kumo_core::FunctionAuth>,
    /// A secret (`kumo secret set`) the guest gets as the environment variable of its name
    /// (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Deploy a Lambda function: FILE is its zip package, run by this runtime (`provided`:
    /// the package's `bootstrap`; `python3`: AWS's Python runtime client and --handler).
    #[arg(long, value_parser = kumo_core::LambdaRuntimeName::parse)]
    runtime: Option<kumo_core::LambdaRuntimeName>,
    /// A Lambda function's handler, e.g. `app.handler` (python3).
    #[arg(long)]
    handler: Option<String>,
}

fn parse_function_auth(text: &str) -> Result<kumo_core::FunctionAuth, String> {
    match text {
        "public" => Ok(kumo_core::FunctionAuth::Public),
        "token" => Ok(kumo_core::FunctionAuth::Token),
        _ => Err(format!("{text:?} is not public or token")),
    }
}

pub(crate) async fn deploy(client: &Client, args: DeployArgs) -> CmdResult {
    let Some(file) = &args.file else {
        let manifest = Manifest::load(&args.manifest)?;
        deploy_manifest(client, &manifest).await?;
        return Ok(ExitCode::SUCCESS);
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("cannot derive a name from the file; pass --name")?
            .to_string(),
    };
    validate_name(&name)?;
    let mut config = FunctionConfig {
        max_concurrency: args.max_concurrency,
        provisioned_concurrency: args.provisioned_concurrency,
        routes: args.routes.clone(),
        host: args.host.clone(),
        on_success: args.on_success.clone(),
        on_failure: args.on_failure.clone(),
        schedule: args.schedule.clone(),
        topics: args.topics.clone(),
        allow_outbound: args.allow_outbound.clone(),
        kv: args.kv.clone(),
        objects: args.objects.clone(),
        triggers_use: args.triggers_use.clone(),
        auth: args.auth.unwrap_or_default(),
        secrets: args.secrets.clone(),
        runtime: args.runtime,
        handler: args.handler.clone(),
        ..FunctionConfig::default()
    };
    if let Some(n) = args.max_retries {
        config.max_retries = n;
    }
    if let Some(age) = &args.max_event_age {
        config.max_event_age =
            parse_duration(age).map_err(|e| anyhow::anyhow!("--max-event-age: {e}"))?;
    }
    if let Some(m) = args.memory {
        config.memory_mb = m;
    }
    if let Some(i) = args.instances {
        config.instances = i;
    }
    if let Some(n) = args.max_instance_requests {
        config.max_instance_requests = n;
    }
    if let Some(t) = &args.timeout {
        config.timeout = parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    }
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        config.env.insert(k.to_string(), v.to_string());
    }
    config.validate()?;
    let code = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    deploy_one(client, &name, code, &config).await?;
    Ok(ExitCode::SUCCESS)
}

async fn deploy_one(
    client: &Client,
    name: &str,
    code: Vec<u8>,
    config: &FunctionConfig,
) -> anyhow::Result<()> {
    let (record, created) = client
        .deploy(name, code, config)
        .await
        .with_context(|| format!("deploying {name}"))?;
    println!(
        "{} {} ({}, {} KiB, sha256 {})",
        if created { "created" } else { "updated" },
        record.name,
        record.kind.as_str(),
        record.code_size.div_ceil(1024),
        &record.code_sha256[..12]
    );
    Ok(())
}

/// Runs each function's build command (once per distinct command), then deploys them all,
/// then the workflows.
async fn deploy_manifest(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    let mut built: Vec<&str> = Vec::new();
    for f in &manifest.functions {
        if let Some(cmd) = f.build.as_deref().filter(|c| !built.contains(c)) {
            println!("building: {cmd}");
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&manifest.dir)
                .status()
                .await
                .with_context(|| format!("running {cmd:?}"))?;
            if !status.success() {
                bail!(
                    "the build of {} failed: {cmd:?} exited with {status}",
                    f.name
                );
            }
            built.push(cmd);
        }
        let code = std::fs::read(&f.code)
            .with_context(|| format!("reading the code of {}: {}", f.name, f.code.display()))?;
        deploy_one(client, &f.name, code, &f.config).await?;
    }
    for w in &manifest.workflows {
        let definition = std::fs::read(&w.definition).with_context(|| {
            format!(
                "reading the definition of workflow {}: {}",
                w.name,
                w.definition.display()
            )
        })?;
        let definition = crate::workflows::with_triggers(&definition, &w.triggers)?;
        let (_, created) = client
            .put_workflow(&w.name, definition)
            .await
            .with_context(|| format!("deploying workflow {}", w.name))?;
        let verb = if created { "created" } else { "updated" };
        println!("{verb} workflow {}", w.name);
    }
    Ok(())
}

/// `text`, or the contents of the file named after `@`.
pub(crate) fn read_payload(data: &str) -> anyhow::Result<Vec<u8>> {
    Ok(match data.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {path}"))?,
        None => data.as_bytes().to_vec(),
    })
}

pub(crate) async fn invoke(client: &Client, name: &str, data: &str) -> CmdResult {
    let payload = read_payload(data)?;
    let response = client.invoke(name, payload).await?;
    if let Some(code) = &response.error_code {
        eprintln!(
            "error: {code} (HTTP {}, request id {}): {}",
            response.status,
            response.request_id.as_deref().unwrap_or("-"),
            String::from_utf8_lossy(&response.body).trim()
        );
        return Ok(ExitCode::FAILURE);
    }
    std::io::stdout().write_all(&response.body)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn ls(client: &Client) -> CmdResult {
    let functions = client.list().await?;
    println!(
        "{:<24} {:<13} {:<16} {:>7} {:>8}  {:<24} ROUTES",
        "NAME", "KIND", "INSTANCES", "MEMORY", "TIMEOUT", "UPDATED"
    );
    for f in functions {
        // Reuse asked for, but the code could not serve twice: fresh ones are used.
        let instances = if f.reuse_fell_back {
            "fresh (fallback)"
        } else {
            f.config.instances.as_str()
        };
        println!(
            "{:<24} {:<13} {:<16} {:>5}MB {:>8}  {:<24} {}",
            f.name,
            f.kind.as_str(),
            instances,
            f.config.memory_mb,
            format_duration(f.config.timeout),
            format_timestamp(f.updated_at),
            f.config
                .routes
                .iter()
                .map(Spec::as_str)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes a function (`NAME`) or one of its versions (`NAME:N`).
pub(crate) async fn rm(client: &Client, target: &str) -> CmdResult {
    match target.split_once(':') {
        Some((name, version)) => {
            let version = version
                .parse()
                .with_context(|| format!("{version:?} is not a version number"))?;
            client.delete_version(name, version).await?;
        }
        None => client.delete(target).await?,
    }
    println!("deleted {target}");
    Ok(ExitCode::SUCCESS)
}

/// Prints matching log lines; with `follow`, then every new one until interrupted.
pub(crate) async fn logs(
    client: &Client,
    name: &str,
    filter: &LogFilter,
    follow: bool,
) -> CmdResult {
    use futures::StreamExt as _;
    let print = |l: &LogRecord| {
        println!(
            "{} {} trace={} {:<6} {}",
            format_timestamp(l.ts),
            l.request_id,
            l.trace_id,
            l.stream,
            l.line
        );
    };
    if !follow {
        client
            .logs_matching(name, filter)
            .await?
            .iter()
            .for_each(print);
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines = std::pin::pin!(client.follow_logs(name, filter).await?);
    while let Some(line) = lines.next().await {
        print(&line?);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn invocations(client: &Client, name: &str, limit: u32) -> CmdResult {
    let records = client.invocations(Some(name), limit).await?;
    println!(
        "{:<36}  {:<24} {:>11} {:>9} {:>9}  OUTCOME",
        "REQUEST ID", "START", "DURATION MS", "BILLED MS", "MEMORY MB"
    );
    for r in records {
        println!(
            "{:<36}  {:<24} {:>11.3} {:>9} {:>9}  {}",
            r.request_id,
            format_timestamp(r.started_at),
            r.duration_ms,
            r.billed_ms,
            r.memory_mb,
            r.outcome.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn invoke_async(
    client: &Client,
    name: &str,
    data: &str,
    idempotency_key: Option<&str>,
) -> CmdResult {
    let (id, replayed) = client
        .invoke_async(name, read_payload(data)?, idempotency_key)
        .await?;
    if replayed {
        eprintln!("(the idempotency key was used before: this is the first submit's id)");
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn event(client: &Client, id: &str, wait: Option<&str>) -> CmdResult {
    let event = client.event(id, wait).await?;
    println!("{}", serde_json::to_string_pretty(&event)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DlqArgs {
    /// The function whose dead letters to list.
    name: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(subcommand)]
    action: Option<DlqAction>,
}

#[derive(clap::Subcommand)]
enum DlqAction {
    /// Put dead events back in the queue, with fresh attempts.
    Redrive {
        name: String,
        /// Only this event.
        #[arg(long)]
        id: Option<String>,
    },
}

pub(crate) async fn dlq(client: &Client, args: DlqArgs) -> CmdResult {
    match (args.action, args.name) {
        (Some(DlqAction::Redrive { name, id }), _) => {
            let ids = client.redrive(&name, id.as_deref()).await?;
            println!("{} event(s) requeued", ids.len());
            for id in ids {
                println!("{id}");
            }
        }
        (None, Some(name)) => {
            let dead = client.dead_letters(&name, args.limit).await?;
            println!("{:<36}  {:<24} {:>8}  LAST ERROR", "ID", "DIED", "ATTEMPTS");
            for e in dead {
                let error = e
                    .error
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default();
                println!(
                    "{:<36}  {:<24} {:>8}  {error}",
                    e.id,
                    format_timestamp(e.updated_at),
                    e.attempts
                );
            }
        }
        (None, None) => bail!("name a function: kumo dlq NAME, or kumo dlq redrive NAME"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn send_to_topic(client: &Client, topic: &str, data: &str) -> CmdResult {
    let published = client.send_to_topic(topic, read_payload(data)?).await?;
    println!("message {}", published.id);
    for e in published.events {
        println!("  -> {} (event {})", e.function, e.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn usage(
    client: &Client,
    since: &str,
    by: kumo_core::UsageBy,
    output: crate::Output,
) -> CmdResult {
    let report = client.usage(since, by).await?;
    match output {
        crate::Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        crate::Output::Table => {
            println!(
                "{:<32} {:>9} {:>7} {:>9} {:>12} {:>9} {:>9} {:>12}",
                "KEY",
                "REQUESTS",
                "ERRORS",
                "THROTTLES",
                "GB-SECONDS",
                "P50 MS",
                "P99 MS",
                "COST $"
            );
            for row in report.rows.iter().chain(std::iter::once(&report.total)) {
                println!(
                    "{:<32} {:>9} {:>7} {:>9} {:>12.4} {:>9.2} {:>9.2} {:>12.6}",
                    row.key,
                    row.requests,
                    row.errors,
                    row.throttles,
                    row.gb_seconds,
                    row.p50_ms,
                    row.p99_ms,
                    row.cost
                );
            }
            let w = report.workflows;
            if w.executions > 0 {
                println!(
                    "workflows: {} executions, {} state transitions, ${:.6} (their tasks are in the rows above)",
                    w.executions, w.transitions, w.cost
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn triggers(client: &Client) -> CmdResult {
    println!("{:<24} {:<9} SOURCE", "FUNCTION", "KIND");
    for t in client.triggers().await? {
        println!("{:<24} {:<9} {}", t.function, t.kind, t.source);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kumo info`: the server's version and each isolation layer of Lambda environments.
pub(crate) async fn migrate(from: &Path, to: &str, objects: Option<&str>) -> CmdResult {
    let copied = kumo_server::migrate_to_postgres(from, to, objects).await?;
    for (table, rows) in copied {
        println!("{table:<20} {rows:>10}");
    }
    println!(
        "migrated: start the nodes with --database and --data-dir {}",
        from.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cluster_status(client: &Client) -> CmdResult {
    let status = client.cluster_status().await?;
    println!(
        "store {}, answered by {}",
        status["store"].as_str().unwrap_or("?"),
        status["node"].as_str().unwrap_or("?")
    );
    println!(
        "{:<28} {:<22} {:<6} {:>7} {:<24} LOADED",
        "NODE", "ADDRESS", "STATE", "RUNNING", "HEARTBEAT"
    );
    for node in status["nodes"].as_array().into_iter().flatten() {
        let loaded: Vec<&str> = node["loaded"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .collect();
        println!(
            "{:<28} {:<22} {:<6} {:>7} {:<24} {}",
            node["id"].as_str().unwrap_or("?"),
            node["address"].as_str().unwrap_or("?"),
            if node["alive"].as_bool() == Some(true) {
                "up"
            } else {
                "down"
            },
            node["running"].as_u64().unwrap_or(0),
            format_timestamp(node["heartbeat_at"].as_i64().unwrap_or(0)),
            if loaded.is_empty() {
                "-".to_string()
            } else {
                loaded.join(",")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn info(client: &Client) -> CmdResult {
    let health = client.health().await?;
    println!("server    {}", client.server());
    println!("version   {}", health["version"].as_str().unwrap_or("?"));
    println!("node      {}", health["node"].as_str().unwrap_or("?"));
    println!("store     {}", health["store"].as_str().unwrap_or("?"));
    let isolation = &health["isolation"];
    println!(
        "cgroups   {}",
        isolation["cgroup"].as_str().unwrap_or("none")
    );
    println!("isolation of Lambda functions:");
    for layer in isolation["layers"].as_array().into_iter().flatten() {
        let name = layer["name"].as_str().unwrap_or("?");
        match layer["missing"].as_str() {
            None => println!("  {name:<20} yes"),
            Some(why) => println!("  {name:<20} MISSING: {why}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
