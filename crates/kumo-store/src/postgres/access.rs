//! Who may do what, on PostgreSQL: API tokens (secret hashes, and the sealed secret of a token
//! with an access key), the audit trail and function secrets (sealed).

use super::PgStore;
use crate::{SealedSecret, StoredToken};
use anyhow::Context as _;
use kumo_core::{AuditEntry, Role, SecretInfo, TokenRecord};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

fn token_from_row(row: &PgRow) -> anyhow::Result<StoredToken> {
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
            (Some(nonce), Some(ciphertext)) => Some(SealedSecret { nonce, ciphertext }),
            _ => None,
        },
    })
}

impl crate::TokenStore for PgStore {
    async fn create_token(&self, token: &StoredToken) -> anyhow::Result<bool> {
        let t = &token.record;
        let done = sqlx::query(
            "INSERT INTO tokens (name, role, namespace, secret_hash, created_at, expires_at,
                                 last_used_at, access_key_id, key_nonce, key_ciphertext)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (name) DO NOTHING",
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
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("revoking a token")?;
        Ok(done.rows_affected() == 1)
    }

    async fn token_used(&self, name: &str, at: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE tokens SET last_used_at = greatest(coalesce(last_used_at, 0), $1)
             WHERE name = $2",
        )
        .bind(at)
        .bind(name)
        .execute(&self.pool)
        .await
        .context("noting a token's use")?;
        Ok(())
    }
}

impl crate::AuditStore for PgStore {
    async fn append_audit(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, token, method, target, namespace, source, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(entry.at)
        .bind(&entry.token)
        .bind(&entry.method)
        .bind(&entry.target)
        .bind(&entry.namespace)
        .bind(&entry.source)
        .bind(i32::from(entry.status))
        .execute(&self.pool)
        .await
        .context("writing the audit trail")?;
        Ok(())
    }

    async fn list_audit(
        &self,
        since: i64,
        namespace: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM audit
                            WHERE at >= $1 AND ($2::text IS NULL OR namespace = $2)
                            ORDER BY id DESC LIMIT $3) newest
             ORDER BY id",
        )
        .bind(since)
        .bind(namespace)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("reading the audit trail")?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at: row.try_get("at")?,
                    token: row.try_get("token")?,
                    method: row.try_get("method")?,
                    target: row.try_get("target")?,
                    namespace: row.try_get("namespace")?,
                    source: row.try_get("source")?,
                    status: u16::try_from(row.try_get::<i32, _>("status")?).unwrap_or(0),
                })
            })
            .collect()
    }
}

impl crate::SecretStore for PgStore {
    async fn put_secret(&self, name: &str, sealed: &SealedSecret, at: i64) -> anyhow::Result<bool> {
        let created: bool = sqlx::query_scalar(
            "INSERT INTO secrets (name, nonce, ciphertext, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (name) DO UPDATE SET nonce = $2, ciphertext = $3, updated_at = $4
             RETURNING (xmax = 0)",
        )
        .bind(name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .context("saving a secret")?;
        Ok(created)
    }

    async fn get_secret(&self, name: &str) -> anyhow::Result<Option<SealedSecret>> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .context("reading a secret")?;
        row.map(|row| {
            Ok(SealedSecret {
                nonce: row.try_get("nonce")?,
                ciphertext: row.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    async fn list_secrets(&self) -> anyhow::Result<Vec<SecretInfo>> {
        let rows = sqlx::query("SELECT name, created_at, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context("listing secrets")?;
        rows.iter()
            .map(|row| {
                Ok(SecretInfo {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn delete_secret(&self, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting a secret")?;
        Ok(done.rows_affected() == 1)
    }
}
