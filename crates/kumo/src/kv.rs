//! `kumo kv`: the key-value store from the command line.

use anyhow::bail;
use kumo_api::{Client, KvCondition};
use std::io::Write as _;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum KvCommand {
    /// Print a key's value (raw bytes) on stdout; with --etag, its etag on stderr.
    Get {
        bucket: String,
        key: String,
        #[arg(long)]
        etag: bool,
    },
    /// Write a key; prints the new etag.
    Put {
        bucket: String,
        key: String,
        /// The value: text, or @path to read a file.
        #[arg(short, long)]
        data: String,
        /// Only if the key still holds the write with this etag.
        #[arg(long, conflicts_with = "if_absent")]
        if_match: Option<String>,
        /// Only if the key does not exist yet.
        #[arg(long)]
        if_absent: bool,
    },
    /// Delete a key.
    Rm {
        bucket: String,
        key: String,
        /// Only if the key still holds the write with this etag.
        #[arg(long)]
        if_match: Option<String>,
    },
    /// List a bucket's keys (all of them, page after page, unless --limit).
    Ls {
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys (one page).
        #[arg(long)]
        limit: Option<u32>,
    },
}

pub(crate) async fn run(client: &Client, command: KvCommand) -> anyhow::Result<ExitCode> {
    match command {
        KvCommand::Get { bucket, key, etag } => {
            let entry = client.kv_get(&bucket, &key).await?;
            std::io::stdout().write_all(&entry.value)?;
            if etag {
                eprintln!("etag: {}", entry.etag);
            }
        }
        KvCommand::Put {
            bucket,
            key,
            data,
            if_match,
            if_absent,
        } => {
            let condition = match (&if_match, if_absent) {
                (Some(etag), _) => KvCondition::IfMatch(etag),
                (None, true) => KvCondition::IfAbsent,
                (None, false) => KvCondition::Always,
            };
            let value = crate::commands::read_payload(&data)?;
            println!("{}", client.kv_put(&bucket, &key, value, condition).await?);
        }
        KvCommand::Rm {
            bucket,
            key,
            if_match,
        } => {
            let condition = if_match
                .as_deref()
                .map_or(KvCondition::Always, KvCondition::IfMatch);
            client.kv_delete(&bucket, &key, condition).await?;
        }
        KvCommand::Ls {
            bucket,
            prefix,
            limit,
        } => {
            if limit == Some(0) {
                bail!("--limit must be at least 1");
            }
            let mut cursor: Option<String> = None;
            loop {
                let page = client
                    .kv_list(&bucket, &prefix, cursor.as_deref(), limit)
                    .await?;
                for key in &page.keys {
                    println!("{key}");
                }
                cursor = page.cursor;
                if cursor.is_none() || limit.is_some() {
                    break;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
