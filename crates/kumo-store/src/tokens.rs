//! API tokens: a name, a role, and the sha256 of the secret (the secret itself is shown once,
//! at creation, and never stored).

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::{Role, TokenRecord};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tokens (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,  -- hex sha256 of the secret
    created_at   INTEGER NOT NULL,      -- unix ms
    expires_at   INTEGER,               -- unix ms; NULL: never
    last_used_at INTEGER                -- unix ms; NULL: never
);
"#;

/// Tokens with access keys (SigV4 needs the secret itself to check a signature, so it is
/// kept sealed, as function secrets are).
pub(crate) const ACCESS_KEYS: &str = r#"
ALTER TABLE tokens ADD COLUMN access_key_id TEXT;
ALTER TABLE tokens ADD COLUMN key_nonce BLOB;
ALTER TABLE tokens ADD COLUMN key_ciphertext BLOB;
CREATE UNIQUE INDEX IF NOT EXISTS tokens_access_key ON tokens (access_key_id)
    WHERE access_key_id IS NOT NULL;
"#;

/// A token with the hash its secret must match, and, when it has an access key
/// (`record.access_key_id`), its secret sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub record: TokenRecord,
    pub secret_hash: String,
    pub sealed_secret: Option<crate::SealedSecret>,
}

fn stored(row: &SqliteRow) -> anyhow::Result<StoredToken> {
    let role: String = row.try_get("role")?;
    Ok(StoredToken {
        record: TokenRecord {
            name: row.try_get("name")?,
            role: Role::parse(&role).with_context(|| format!("unknown role {role:?}"))?,
            namespace: row.try_get("namespace")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_used_at: row.try_get("last_used_at")?,
            access_key_id: row.try_get("access_key_id")?,
        },
        secret_hash: row.try_get("secret_hash")?,
        sealed_secret: match (row.try_get("key_nonce")?, row.try_get("key_ciphertext")?) {
            (Some(nonce), Some(ciphertext)) => Some(crate::SealedSecret { nonce, ciphertext }),
            _ => None,
        },
    })
}

impl crate::TokenStore for SqliteStore {
    async fn create_token(&self, token: &StoredToken) -> anyhow::Result<bool> {
        let t = &token.record;
        let done = sqlx::query(
            "INSERT INTO tokens (name, role, namespace, secret_hash, created_at, expires_at,
                                 last_used_at, access_key_id, key_nonce, key_ciphertext)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.namespace)
        .bind(&token.secret_hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.last_used_at)
        .bind(&t.access_key_id)
        .bind(token.sealed_secret.as_ref().map(|s| &s.nonce))
        .bind(token.sealed_secret.as_ref().map(|s| &s.ciphertext))
        .execute(&self.pool)
        .await
        .context("saving a token")?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_tokens(&self) -> anyhow::Result<Vec<StoredToken>> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context("listing tokens")?;
        rows.iter().map(stored).collect()
    }

    async fn revoke_token(&self, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("revoking a token")?;
        Ok(done.rows_affected() == 1)
    }

    async fn token_used(&self, name: &str, at: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE name = ?",
        )
        .bind(at)
        .bind(name)
        .execute(&self.pool)
        .await
        .context("noting a token's use")?;
        Ok(())
    }
}
