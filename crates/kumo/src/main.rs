//! The `kumo` binary: the server (`serve`, `up`) and the CLI that talks to it.

mod auth;
mod commands;
mod kv;
mod manifest;
mod namespaces;
mod secrets;
mod top;
mod versions;
mod workflows;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kumo",
    version,
    about = "Self-hosted serverless functions on WebAssembly"
)]
struct Cli {
    /// The kumo server the CLI talks to.
    #[arg(
        long,
        global = true,
        env = "KUMO_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The token the CLI sends; without it, the one `kumo login` stored for the server.
    #[arg(long, global = true, env = "KUMO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The namespace the command acts in (functions, buckets, topics, secrets, records);
    /// `default` when not given. For `token create`, the token's namespace; for `audit`, the
    /// namespace whose changes to show.
    #[arg(short = 'n', long, global = true, env = "KUMO_NAMESPACE")]
    namespace: Option<String>,
    /// How kumo writes its own log lines to stderr: `text` or `json` (one object per line).
    #[arg(long, global = true, env = "KUMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Address of the HTTP listener (data plane and control API).
    #[arg(long, env = "KUMO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where kumo keeps its database, code blobs and compile cache.
    #[arg(long, env = "KUMO_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Limit of invocation request and response bodies, in bytes.
    #[arg(long, env = "KUMO_MAX_BODY_BYTES", default_value_t = kumo_server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Invocations running at once across all functions; more are throttled (429).
    #[arg(long, env = "KUMO_MAX_CONCURRENCY", default_value_t = kumo_server::DEFAULT_MAX_CONCURRENCY, value_parser = clap::value_parser!(usize))]
    max_concurrency: usize,
    /// How long a function stays loaded without invocations (then it scales to zero).
    #[arg(long, env = "KUMO_KEEP_ALIVE", default_value = "10m", value_parser = kumo_core::parse_duration)]
    keep_alive: std::time::Duration,
    /// How wasm instances get memory: `pooling` (pre-reserved slots, copy-on-write images) or
    /// `on-demand` (mmap per instance).
    #[arg(long, env = "KUMO_ALLOCATOR", value_enum, default_value_t = AllocatorArg::Pooling)]
    allocator: AllocatorArg,
    /// Asynchronous attempts running at once, across all functions.
    #[arg(long, env = "KUMO_ASYNC_WORKERS", default_value_t = kumo_server::AsyncConfig::default().workers)]
    async_workers: usize,
    /// Wait before the first retry of a failed asynchronous invocation; doubles for each next
    /// one (with jitter), up to 5 minutes.
    #[arg(long, env = "KUMO_RETRY_BASE_DELAY", default_value = "1s", value_parser = kumo_core::parse_duration)]
    retry_base_delay: std::time::Duration,
    /// Percent of each function's concurrency (and of the server's) that asynchronous
    /// invocations leave to synchronous requests.
    #[arg(long, env = "KUMO_SYNC_RESERVE_PERCENT", default_value_t = kumo_server::AsyncConfig::default().sync_reserve_percent, value_parser = clap::value_parser!(u8).range(0..=90))]
    sync_reserve_percent: u8,
    /// Largest payload of an asynchronous invocation or topic message, in bytes.
    #[arg(long, env = "KUMO_MAX_ASYNC_PAYLOAD_BYTES", default_value_t = kumo_server::AsyncConfig::default().max_payload_bytes)]
    max_async_payload_bytes: usize,
    /// Consecutive failures (errors, timeouts, 5xx) after which guests' requests to one
    /// outbound destination fail fast.
    #[arg(long, env = "KUMO_OUTBOUND_BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    outbound_breaker_failures: u32,
    /// How long an open circuit fails fast before one probe request is let through.
    #[arg(long, env = "KUMO_OUTBOUND_BREAKER_COOLDOWN", default_value = "30s", value_parser = kumo_core::parse_duration)]
    outbound_breaker_cooldown: std::time::Duration,
    /// The largest object the object storage accepts, in bytes.
    #[arg(long, env = "KUMO_MAX_OBJECT_BYTES", default_value_t = 1 << 30)]
    max_object_bytes: u64,
    /// Dollars per million requests, for usage reports (default: AWS Lambda's x86 price).
    #[arg(long, env = "KUMO_PRICE_PER_MILLION_REQUESTS", default_value_t = kumo_core::Prices::default().per_million_requests)]
    price_per_million_requests: f64,
    /// Dollars per GB-second, for usage reports (default: AWS Lambda's x86 price).
    #[arg(long, env = "KUMO_PRICE_PER_GB_SECOND", default_value_t = kumo_core::Prices::default().per_gb_second)]
    price_per_gb_second: f64,
    /// Dollars per thousand workflow state transitions (default: Step Functions Standard's).
    #[arg(long, env = "KUMO_PRICE_PER_THOUSAND_TRANSITIONS", default_value_t = kumo_core::Prices::default().per_thousand_transitions)]
    price_per_thousand_transitions: f64,
    /// How long invocation records, logs and finished events are kept.
    #[arg(long, env = "KUMO_RETENTION", default_value = "7d", value_parser = kumo_core::parse_duration)]
    retention: std::time::Duration,
    /// Memory all invocations running at once may ask for (their `memory_mb` summed), e.g.
    /// `6GiB`; past it invocations are throttled (429). Default: the machine's or cgroup's
    /// memory less an eighth (at least 256 MiB) for the server itself.
    #[arg(long, env = "KUMO_MAX_MEMORY", value_parser = kumo_core::parse_size)]
    max_memory: Option<u64>,
    /// Percent of the server's slots one function without its own `max_concurrency` may hold,
    /// so one slow function cannot throttle the others.
    #[arg(long, env = "KUMO_FUNCTION_SHARE_PERCENT", default_value_t = kumo_server::DEFAULT_FUNCTION_SHARE_PERCENT, value_parser = clap::value_parser!(u8).range(1..=100))]
    function_share_percent: u8,
    /// Below this much free space in the data directory, new data (uploads, deploys, writes,
    /// events) is refused with 507 while reads, deletes and invocations go on.
    #[arg(long, env = "KUMO_MIN_FREE_DISK", default_value = "256MiB", value_parser = kumo_core::parse_size)]
    min_free_disk: u64,
    /// Invocation records kept in memory while the database cannot take them (a full disk);
    /// past it new invocations are refused (503) rather than run unrecorded.
    #[arg(long, env = "KUMO_MAX_PENDING_RECORDS", default_value_t = kumo_server::DEFAULT_MAX_PENDING_RECORDS)]
    max_pending_records: usize,
    /// Open connections at most; past it a new connection gets one 503 (or its /healthz) and
    /// is closed. Default: three quarters of the open-files limit, at most 10,000.
    #[arg(long, env = "KUMO_MAX_CONNECTIONS", value_parser = clap::value_parser!(usize))]
    max_connections: Option<usize>,
    /// How long a connection has to deliver a request's headers whole, counted from when it
    /// is ready for one (accepted, or the previous response sent): also the keep-alive idle
    /// timeout.
    #[arg(long, env = "KUMO_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = kumo_core::parse_duration)]
    header_read_timeout: std::time::Duration,
    /// How long a request body may stall between two pieces before the request fails (408).
    #[arg(long, env = "KUMO_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = kumo_core::parse_duration)]
    body_idle_timeout: std::time::Duration,
    /// How long a response may wait for a client that stopped reading before the connection
    /// is closed.
    #[arg(long, env = "KUMO_WRITE_TIMEOUT", default_value = "30s", value_parser = kumo_core::parse_duration)]
    write_timeout: std::time::Duration,
    /// `token`: every API request needs a token (the first start writes an admin token to
    /// DATA/admin-token). `none`: nothing is checked; only on a loopback address.
    #[arg(long, env = "KUMO_AUTH", value_enum, default_value_t = AuthArg::Token)]
    auth: AuthArg,
    /// A second address serving only `/metrics`, without a token, for a Prometheus scraper
    /// (keep it off public networks).
    #[arg(long, env = "KUMO_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate chain (PEM); read again
    /// when the file changes, so a renewed certificate needs no restart.
    #[arg(long, env = "KUMO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "KUMO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Lambda functions' execution environments: `strict` refuses to start unless every
    /// isolation layer (namespaces, pivot_root, cgroups, seccomp, Landlock, capability drop)
    /// works here; `best-effort` runs with those that do and logs the missing ones.
    #[arg(long, env = "KUMO_ISOLATION", value_enum, default_value_t = IsolationArg::BestEffort)]
    isolation: IsolationArg,
    /// Where `scripts/lambda-runtimes.sh` installed the runtimes kumo provides Lambda
    /// functions (python3: awslambdaric). Default: DATA/lambda/runtimes.
    #[arg(long, env = "KUMO_LAMBDA_RUNTIMES")]
    lambda_runtimes: Option<PathBuf>,
    /// Run as one node of a cluster on this PostgreSQL database
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`); every node given the same database and the
    /// same --data-dir (a shared folder) serves the same functions. Default: SQLite in
    /// --data-dir, one node.
    #[arg(long, env = "KUMO_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// This node's id in the cluster, unique among its live nodes. Default: the host name
    /// and a random suffix.
    #[arg(long, env = "KUMO_NODE_ID")]
    node_id: Option<String>,
    /// Keep object bytes in an S3-compatible bucket, `s3://BUCKET[/PREFIX]` (credentials,
    /// region and endpoint from the AWS_* environment: AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL for a store that is not AWS).
    /// Default: DATA_DIR/objects.
    #[arg(long, env = "KUMO_OBJECTS")]
    objects: Option<String>,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Every node: id, address, alive or down, invocations running, functions loaded.
    Status,
}

/// `--auth`.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum AuthArg {
    Token,
    None,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    /// One JSON object per line.
    Json,
}

/// `--allocator`: how wasm instances get their memory.
#[derive(clap::ValueEnum, Clone, Copy)]
pub enum AllocatorArg {
    Pooling,
    OnDemand,
}

impl From<AllocatorArg> for kumo_server::Allocator {
    fn from(arg: AllocatorArg) -> Self {
        match arg {
            AllocatorArg::Pooling => Self::Pooling,
            AllocatorArg::OnDemand => Self::OnDemand,
        }
    }
}

/// `kumo usage --by`.
#[derive(clap::ValueEnum, Clone, Copy)]
pub enum Grouping {
    Function,
    /// `function:version`.
    Version,
    /// UTC day.
    Day,
    /// Namespace (chargeback).
    Namespace,
}

impl From<Grouping> for kumo_core::UsageBy {
    fn from(by: Grouping) -> Self {
        match by {
            Grouping::Function => Self::Function,
            Grouping::Version => Self::Version,
            Grouping::Day => Self::Day,
            Grouping::Namespace => Self::Namespace,
        }
    }
}

/// `--output`.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// For people.
    Table,
    /// For machines.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the platform.
    Serve(ServeArgs),
    /// Check a token against the server and store it for the CLI (from --token, or stdin).
    Login,
    /// API tokens (admin): create, list, revoke.
    #[command(subcommand)]
    Token(auth::TokenCommand),
    /// Namespaces (admin): create or change quotas, list with use against quota, remove.
    #[command(subcommand)]
    Namespace(namespaces::NamespaceCommand),
    /// Function secrets: set (value from stdin), list, remove.
    #[command(subcommand)]
    Secret(secrets::SecretCommand),
    /// Workflows (Amazon States Language state machines): deploy, start, follow, stop,
    /// redrive, and answer callback tasks.
    #[command(subcommand)]
    Workflow(workflows::WorkflowCommand),
    /// The server: its version and the isolation Lambda functions get on its machine.
    Info,
    /// Moves a single node's database (stopped) into an empty PostgreSQL database, for a
    /// cluster: functions, versions, aliases, tokens, secrets, namespaces, key-value, object
    /// metadata, queued events, schedules, records and logs. The nodes then run with
    /// `--database URL --data-dir DATA_DIR` (the same folder, shared, or a copy of it: code,
    /// compiled artifacts, objects and the secrets key stay there).
    Migrate {
        /// The single node's data folder.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database (`postgres://USER:PASSWORD@HOST:PORT/DB`).
        #[arg(long, env = "KUMO_DATABASE", hide_env_values = true)]
        to: String,
        /// Also copy the object files into this S3-compatible bucket (`s3://BUCKET[/PREFIX]`,
        /// the nodes' --objects).
        #[arg(long)]
        objects: Option<String>,
    },
    /// The cluster (admin): `kumo cluster status` lists the nodes, their load and what they
    /// have loaded.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The audit trail (admin): changes to functions, tokens and secrets, refused attempts
    /// included.
    Audit {
        /// How far back, e.g. `24h` or `7d`.
        #[arg(long, default_value = "24h")]
        since: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Start the platform, then build and deploy the manifest's functions.
    Up {
        #[command(flatten)]
        serve: ServeArgs,
        /// The manifest.
        #[arg(short = 'f', long = "file", default_value = "kumo.toml")]
        manifest: PathBuf,
    },
    /// Deploy one .wasm file, or (without FILE) every function of ./kumo.toml.
    Deploy(Box<commands::DeployArgs>),
    /// Invoke a function and print its response (or, with --async, the event's id).
    Invoke {
        name: String,
        /// The payload: text, or @path to read a file.
        #[arg(short, long, default_value = "")]
        data: String,
        /// Queue the invocation and return at once (retried on failure; see `kumo event`).
        #[arg(long = "async")]
        is_async: bool,
        /// With --async: a second submit with the same key within 24 h returns the first id.
        #[arg(long, requires = "is_async")]
        idempotency_key: Option<String>,
    },
    /// Show an asynchronous invocation's status.
    Event {
        id: String,
        /// Wait until it is final (succeeded or dead), at most this long (e.g. 30s).
        #[arg(long)]
        wait: Option<String>,
    },
    /// A function's dead letters (asynchronous invocations out of retries), and redrive.
    Dlq(commands::DlqArgs),
    /// Freeze the function's current code and config into a new, immutable version.
    Publish {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a function's published versions.
    Versions { name: String },
    /// Aliases (`NAME:prod`) that point at versions: set, ls, rm.
    #[command(subcommand)]
    Alias(versions::AliasCommand),
    /// Topics: publish a message (every subscribed function gets it).
    #[command(subcommand)]
    Topic(TopicCommand),
    /// List routes, schedules and topic subscriptions of all functions.
    Triggers,
    /// The key-value store: get, put, rm, ls.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// List deployed functions.
    Ls,
    /// Delete a function (NAME) or one of its versions (NAME:N).
    Rm { name: String },
    /// Show a function's log lines, oldest first.
    Logs {
        name: String,
        #[arg(long)]
        request_id: Option<String>,
        /// Only lines this recent (e.g. 10m, 2h).
        #[arg(long)]
        since: Option<String>,
        /// Only lines containing this text.
        #[arg(long)]
        grep: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Keep printing new lines as they are written (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
    },
    /// Requests, errors, GB-seconds, p50/p99 duration and cost per function, version, day or
    /// namespace.
    Usage {
        /// How far back (e.g. 1h, 24h, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Group by function, version, day or namespace (every namespace the token sees).
        #[arg(long, value_enum, default_value_t = Grouping::Function)]
        by: Grouping,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// A live view per function: requests/s, errors, throttles, p50/p99 and running now.
    Top {
        /// The recent window the rates and percentiles cover.
        #[arg(long, default_value = "10s", value_parser = kumo_core::parse_duration)]
        window: std::time::Duration,
        /// How often the view refreshes.
        #[arg(long, default_value = "1s", value_parser = kumo_core::parse_duration)]
        interval: std::time::Duration,
        /// Print one frame and exit (for scripts).
        #[arg(long)]
        once: bool,
    },
    /// List a function's latest invocations.
    Invocations {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Publish a message to a topic: every subscribed function gets it.
    Publish {
        topic: String,
        /// The message: text, or @path to read a file.
        #[arg(short, long, default_value = "")]
        data: String,
    },
}

fn main() -> std::process::ExitCode {
    // Building a Lambda execution environment: before any thread starts (kumo-sandbox).
    if std::env::args().nth(1).as_deref() == Some(kumo_sandbox::HELPER_ARG) {
        kumo_sandbox::helper_main();
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kumo=info,kumo_server=info,kumo_runtime=info".into()),
        )
        .with_writer(std::io::stderr);
    if cli.log_format == LogFormat::Json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    let client = match auth::client(&cli.server, cli.token.as_deref()) {
        Ok(client) => match &cli.namespace {
            Some(namespace) => client.in_namespace(namespace),
            None => client,
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => commands::serve(args).await,
        Command::Login => auth::login(&cli.server, cli.token.as_deref()).await,
        Command::Token(command) => auth::token(&client, command, cli.namespace.as_deref()).await,
        Command::Namespace(command) => namespaces::run(&client, command).await,
        Command::Secret(command) => secrets::run(&client, command).await,
        Command::Workflow(command) => workflows::run(&client, command).await,
        Command::Info => commands::info(&client).await,
        Command::Migrate { from, to, objects } => {
            commands::migrate(&from, &to, objects.as_deref()).await
        }
        Command::Cluster {
            command: ClusterCommand::Status,
        } => commands::cluster_status(&client).await,
        Command::Audit { since, limit } => {
            auth::audit(&client, &since, cli.namespace.as_deref(), limit).await
        }
        Command::Up { serve, manifest } => commands::up(serve, &manifest).await,
        Command::Deploy(args) => commands::deploy(&client, *args).await,
        Command::Invoke {
            name,
            data,
            is_async,
            idempotency_key,
        } => {
            if is_async {
                commands::invoke_async(&client, &name, &data, idempotency_key.as_deref()).await
            } else {
                commands::invoke(&client, &name, &data).await
            }
        }
        Command::Event { id, wait } => commands::event(&client, &id, wait.as_deref()).await,
        Command::Dlq(args) => commands::dlq(&client, args).await,
        Command::Publish { name, description } => {
            versions::publish(&client, &name, &description).await
        }
        Command::Versions { name } => versions::versions(&client, &name).await,
        Command::Alias(command) => versions::alias(&client, command).await,
        Command::Topic(TopicCommand::Publish { topic, data }) => {
            commands::send_to_topic(&client, &topic, &data).await
        }
        Command::Triggers => commands::triggers(&client).await,
        Command::Kv(command) => kv::run(&client, command).await,
        Command::Ls => commands::ls(&client).await,
        Command::Rm { name } => commands::rm(&client, &name).await,
        Command::Logs {
            name,
            request_id,
            since,
            grep,
            limit,
            follow,
        } => {
            let filter = kumo_api::LogFilter {
                request_id,
                since,
                grep,
                limit: Some(limit),
            };
            commands::logs(&client, &name, &filter, follow).await
        }
        Command::Usage { since, by, output } => {
            commands::usage(&client, &since, by.into(), output).await
        }
        Command::Top {
            window,
            interval,
            once,
        } => top::top(&client, window, interval, once).await,
        Command::Invocations { name, limit } => commands::invocations(&client, &name, limit).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IsolationArg {
    Strict,
    BestEffort,
}

impl From<IsolationArg> for kumo_lambda::IsolationMode {
    fn from(arg: IsolationArg) -> Self {
        match arg {
            IsolationArg::Strict => Self::Strict,
            IsolationArg::BestEffort => Self::BestEffort,
        }
    }
}
