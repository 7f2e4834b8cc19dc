//! `kumo publish`, `kumo versions`, `kumo alias set|ls|rm`: releases with versions and aliases.

use crate::commands::CmdResult;
use anyhow::Context as _;
use clap::Subcommand;
use kumo_api::{Canary, Client};
use kumo_core::format_timestamp;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum AliasCommand {
    /// Point an alias at a version, optionally sending a share of requests to a canary.
    Set {
        name: String,
        alias: String,
        version: u32,
        /// `VERSION=PERCENT%`, e.g. `4=10%`: that version gets that share of the requests.
        #[arg(long, value_parser = parse_canary)]
        canary: Option<Canary>,
    },
    /// List a function's aliases.
    Ls { name: String },
    /// Delete an alias.
    Rm { name: String, alias: String },
}

/// `4=10%` (the `%` is optional).
fn parse_canary(text: &str) -> Result<Canary, String> {
    let (version, weight) = text
        .split_once('=')
        .ok_or("expected VERSION=PERCENT%, e.g. 4=10%")?;
    let version = version
        .parse()
        .map_err(|_| format!("{version:?} is not a version number"))?;
    let weight = weight.trim_end_matches('%');
    let weight = weight
        .parse()
        .map_err(|_| format!("{weight:?} is not a percentage from 1 to 99"))?;
    Ok(Canary { version, weight })
}

pub(crate) async fn publish(client: &Client, name: &str, description: &str) -> CmdResult {
    let (version, created) = client.publish_version(name, description).await?;
    if created {
        println!("published {name}:{}", version.version);
    } else {
        println!(
            "{name} has not changed since version {}; nothing published",
            version.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn versions(client: &Client, name: &str) -> CmdResult {
    let versions = client.versions(name).await?;
    println!(
        "{:>7}  {:<24} {:<12} {:>7} {:>8}  DESCRIPTION",
        "VERSION", "CREATED", "CODE", "MEMORY", "TIMEOUT"
    );
    for v in versions {
        println!(
            "{:>7}  {:<24} {:<12} {:>5}MB {:>8}  {}",
            v.version,
            format_timestamp(v.created_at),
            &v.code_sha256[..12.min(v.code_sha256.len())],
            v.config.memory_mb,
            kumo_core::format_duration(v.config.timeout),
            v.description
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn alias(client: &Client, command: AliasCommand) -> CmdResult {
    match command {
        AliasCommand::Set {
            name,
            alias,
            version,
            canary,
        } => {
            let set = client
                .set_alias(&name, &alias, version, canary)
                .await
                .with_context(|| format!("setting {name}:{alias}"))?;
            println!("{name}:{alias} → {}", describe(set.version, set.canary));
        }
        AliasCommand::Ls { name } => {
            println!("{:<16} TARGET", "ALIAS");
            for a in client.aliases(&name).await? {
                println!("{:<16} {}", a.name, describe(a.version, a.canary));
            }
        }
        AliasCommand::Rm { name, alias } => {
            client.delete_alias(&name, &alias).await?;
            println!("deleted {name}:{alias}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `3` or `3 (90%), 4 (10%)`.
fn describe(version: u32, canary: Option<Canary>) -> String {
    match canary {
        Some(c) => format!(
            "{version} ({}%), {} ({}%)",
            100 - u32::from(c.weight),
            c.version,
            c.weight
        ),
        None => version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_parse() {
        let canary = parse_canary("4=10%").unwrap();
        assert_eq!((canary.version, canary.weight), (4, 10));
        assert_eq!(parse_canary("4=25").unwrap().weight, 25);
        assert!(parse_canary("4").is_err());
        assert!(parse_canary("x=10%").is_err());
        assert_eq!(describe(3, Some(canary)), "3 (90%), 4 (10%)");
    }
}
