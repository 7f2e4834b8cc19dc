//! `kumo namespace create|ls|rm`: namespaces and their quotas (admin).

use crate::commands::CmdResult;
use clap::Subcommand;
use kumo_api::{Client, Quotas};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum NamespaceCommand {
    /// Create a namespace, or replace the quotas of one (a quota not given: none).
    Create {
        name: String,
        #[arg(long)]
        max_functions: Option<u64>,
        /// Invocations running at once, all its functions together (past it: 429).
        #[arg(long)]
        max_concurrency: Option<u64>,
        /// Keys and values of its key-value buckets, e.g. `100MiB`.
        #[arg(long, value_parser = kumo_core::parse_size)]
        max_kv_bytes: Option<u64>,
        /// Objects of its buckets, e.g. `10GiB`.
        #[arg(long, value_parser = kumo_core::parse_size)]
        max_object_bytes: Option<u64>,
        /// Events waiting to run (async invocations, topic messages, retries).
        #[arg(long)]
        max_queued_events: Option<u64>,
    },
    /// List namespaces: what each uses against its quotas.
    Ls,
    /// Delete an empty namespace.
    Rm { name: String },
}

pub(crate) async fn run(client: &Client, command: NamespaceCommand) -> CmdResult {
    match command {
        NamespaceCommand::Create {
            name,
            max_functions,
            max_concurrency,
            max_kv_bytes,
            max_object_bytes,
            max_queued_events,
        } => {
            let quotas = Quotas {
                max_functions,
                max_concurrency,
                max_kv_bytes,
                max_object_bytes,
                max_queued_events,
            };
            let created = client.put_namespace(&name, &quotas).await?;
            let done = if created { "created" } else { "updated" };
            println!("{done} namespace {name}");
        }
        NamespaceCommand::Ls => {
            println!(
                "{:<20} {:<12} {:<12} {:<24} {:<24} QUEUED EVENTS",
                "NAME", "FUNCTIONS", "RUNNING", "KV BYTES", "OBJECT BYTES"
            );
            for n in client.namespaces().await? {
                let (q, u) = (&n.namespace.quotas, &n.used);
                let of = |used: u64, quota: Option<u64>| match quota {
                    Some(quota) => format!("{used}/{quota}"),
                    None => used.to_string(),
                };
                println!(
                    "{:<20} {:<12} {:<12} {:<24} {:<24} {}",
                    n.namespace.name,
                    of(u.functions, q.max_functions),
                    of(u.concurrency, q.max_concurrency),
                    of(u.kv_bytes, q.max_kv_bytes),
                    of(u.object_bytes, q.max_object_bytes),
                    of(u.queued_events, q.max_queued_events),
                );
            }
        }
        NamespaceCommand::Rm { name } => {
            client.delete_namespace(&name).await?;
            println!("deleted namespace {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
