//! The CLI's credentials and `kumo login`, `kumo token create|ls|revoke`.
//!
//! The token a command sends: `--token` / `KUMO_TOKEN`, else the one `kumo login` stored for
//! the server in `credentials.json` of the user's config directory (`$KUMO_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/kumo`, else `~/.config/kumo`), a file only its owner may read.

use crate::commands::CmdResult;
use anyhow::Context as _;
use clap::Subcommand;
use kumo_api::{Client, Role};
use kumo_core::format_timestamp;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; its secret is printed once, alone on the last line.
    Create {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// How long it is valid, e.g. `30d`; without it, until revoked.
        #[arg(long)]
        expires: Option<String>,
        /// Give it an AWS access key too, for the Lambda API (boto3, the AWS CLI): the key id
        /// is printed, and the secret access key is the token's secret.
        #[arg(long)]
        access_key: bool,
    },
    /// List tokens (never their secrets).
    Ls,
    /// Revoke a token: refused from its next request on.
    Revoke { name: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not admin, developer, invoker or viewer"))
}

fn config_dir() -> anyhow::Result<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("KUMO_CONFIG_DIR")
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("kumo")))
        .or_else(|| var("HOME").map(|h| h.join(".config").join("kumo")))
        .context("no config directory: set KUMO_CONFIG_DIR or HOME")
}

fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

/// Tokens by server URL.
fn load_credentials() -> BTreeMap<String, String> {
    credentials_path()
        .ok()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn normalized(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

/// Stores `token` for `server`, in a file only the user may read.
pub(crate) fn save_credentials(server: &str, token: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let path = credentials_path()?;
    let dir = path.parent().context("credentials path has no folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut credentials = load_credentials();
    credentials.insert(normalized(server), token.to_string());
    let text = serde_json::to_string_pretty(&credentials)?;
    // Written beside and renamed: never a half-written file, never readable by others.
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The client for `server`, with the token given or stored for it (if any).
pub(crate) fn client(server: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let stored = load_credentials().remove(&normalized(server));
    let given = token.filter(|t| !t.is_empty()).map(str::to_string);
    match given.or(stored) {
        Some(token) => Ok(Client::with_token(server, &token)?),
        None => Ok(Client::new(server)),
    }
}

/// `kumo login`: the token (`--token`, or read from stdin) is checked against the server and
/// stored for it.
pub(crate) async fn login(server: &str, token: Option<&str>) -> CmdResult {
    let token = match token {
        Some(token) => token.to_string(),
        None => {
            eprintln!("paste the token, then end the input (Ctrl-D):");
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text.trim().to_string()
        }
    };
    anyhow::ensure!(!token.is_empty(), "no token given");
    // Any valid token may read the metrics: a check that needs no particular role.
    Client::with_token(server, &token)?
        .metrics_text()
        .await
        .context("the server did not take the token")?;
    let path = save_credentials(server, &token)?;
    println!(
        "logged in to {}; the token is in {}",
        normalized(server),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn token(
    client: &Client,
    command: TokenCommand,
    namespace: Option<&str>,
) -> CmdResult {
    match command {
        TokenCommand::Create {
            name,
            role,
            expires,
            access_key,
        } => {
            let created = client
                .create_token_with(&name, role, namespace, expires.as_deref(), access_key)
                .await?;
            let expires = created
                .token
                .expires_at
                .map_or_else(|| "never".to_string(), format_timestamp);
            let namespace = created
                .token
                .namespace
                .as_deref()
                .unwrap_or("every namespace");
            println!(
                "created token {} (role {}, in {namespace}, expires {expires}); its secret, shown only now:",
                created.token.name,
                created.token.role.as_str()
            );
            if let Some(id) = &created.token.access_key_id {
                println!(
                    "access key id {id} (AWS_ACCESS_KEY_ID; AWS_SECRET_ACCESS_KEY is the secret below)"
                );
            }
            println!("{}", created.secret);
        }
        TokenCommand::Ls => {
            println!(
                "{:<24} {:<10} {:<16} {:<24} {:<24} LAST USED",
                "NAME", "ROLE", "NAMESPACE", "CREATED", "EXPIRES"
            );
            for t in client.tokens().await? {
                let at = |ms: Option<i64>, none: &str| {
                    ms.map_or_else(|| none.to_string(), format_timestamp)
                };
                println!(
                    "{:<24} {:<10} {:<16} {:<24} {:<24} {}",
                    t.name,
                    t.role.as_str(),
                    t.namespace.as_deref().unwrap_or("*"),
                    format_timestamp(t.created_at),
                    at(t.expires_at, "never"),
                    at(t.last_used_at, "-")
                );
            }
        }
        TokenCommand::Revoke { name } => {
            client.revoke_token(&name).await?;
            println!("revoked token {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kumo audit`: one line per change, oldest first.
pub(crate) async fn audit(
    client: &Client,
    since: &str,
    namespace: Option<&str>,
    limit: u32,
) -> CmdResult {
    println!(
        "{:<24} {:<16} {:<7} {:<40} {:<16} STATUS",
        "AT", "TOKEN", "METHOD", "TARGET", "SOURCE"
    );
    for e in client.audit(since, namespace, limit).await? {
        println!(
            "{:<24} {:<16} {:<7} {:<40} {:<16} {}",
            format_timestamp(e.at),
            e.token.as_deref().unwrap_or("-"),
            e.method,
            e.target,
            e.source.as_deref().unwrap_or("-"),
            e.status
        );
    }
    Ok(ExitCode::SUCCESS)
}
