//! `kumo secret set|ls|rm`: function secrets (values never come back from the server).

use crate::commands::CmdResult;
use clap::Subcommand;
use kumo_api::Client;
use kumo_core::format_timestamp;
use std::io::Read as _;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum SecretCommand {
    /// Set a secret; its value is read from stdin (a final newline is dropped).
    Set { name: String },
    /// List secrets: names and times, never values.
    Ls,
    /// Delete a secret; functions that use it fail to load until it is set again.
    Rm { name: String },
}

pub(crate) async fn run(client: &Client, command: SecretCommand) -> CmdResult {
    match command {
        SecretCommand::Set { name } => {
            let mut value = Vec::new();
            std::io::stdin().read_to_end(&mut value)?;
            if value.ends_with(b"\n") {
                value.pop();
            }
            let created = client.set_secret(&name, value).await?;
            println!(
                "{} secret {name}",
                if created { "created" } else { "replaced" }
            );
        }
        SecretCommand::Ls => {
            println!("{:<32} {:<24} UPDATED", "NAME", "CREATED");
            for s in client.secrets().await? {
                println!(
                    "{:<32} {:<24} {}",
                    s.name,
                    format_timestamp(s.created_at),
                    format_timestamp(s.updated_at)
                );
            }
        }
        SecretCommand::Rm { name } => {
            client.delete_secret(&name).await?;
            println!("deleted secret {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
