//! Function secrets, sealed: the store keeps each value only as AES-256-GCM ciphertext with
//! its nonce (the server seals and opens them with a key the database never holds).

use crate::sqlite::SqliteStore;
use anyhow::Context as _;
use kumo_core::SecretInfo;
use sqlx::Row as _;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS secrets (
    name       TEXT PRIMARY KEY,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,  -- unix ms
    updated_at INTEGER NOT NULL
);
"#;

/// A secret's value as stored: sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl crate::SecretStore for SqliteStore {
    async fn put_secret(&self, name: &str, sealed: &SealedSecret, at: i64) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "INSERT INTO secrets (name, nonce, ciphertext, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (name) DO UPDATE SET nonce = ?2, ciphertext = ?3, updated_at = ?4
             RETURNING created_at = updated_at AS created",
        )
        .bind(name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .context("saving a secret")?;
        Ok(row.try_get::<bool, _>("created")?)
    }

    async fn get_secret(&self, name: &str) -> anyhow::Result<Option<SealedSecret>> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM secrets WHERE name = ?")
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
        let done = sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("deleting a secret")?;
        Ok(done.rows_affected() == 1)
    }
}
