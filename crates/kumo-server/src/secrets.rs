//! Function secrets: values sealed with AES-256-GCM under a key the database never holds
//! (`KUMO_SECRET_KEY`, 64 hex digits, or the file `DATA/secret-key`, made at first start,
//! readable by its owner only). Each value is bound to its name (the name is the additional
//! authenticated data), so a ciphertext copied to another name does not open.

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context as _;
use kumo_store::SealedSecret;
use std::path::Path;

/// The file in the data directory that holds the key when `KUMO_SECRET_KEY` is not set.
pub const SECRET_KEY_FILE: &str = "secret-key";
/// Where the key may come from instead of the file.
pub const SECRET_KEY_ENV: &str = "KUMO_SECRET_KEY";

pub(crate) struct Sealer(Aes256Gcm);

fn parse_key(hex_text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).context("the secret key is not hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the secret key must be 32 bytes (64 hex digits)"))
}

impl Sealer {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self(Aes256Gcm::new(&key.into()))
    }

    /// The key of `KUMO_SECRET_KEY`, else of `DATA/secret-key` (made now if missing).
    pub(crate) fn load_or_create(data: &Path) -> anyhow::Result<Self> {
        if let Some(text) = std::env::var(SECRET_KEY_ENV).ok().filter(|t| !t.is_empty()) {
            return Ok(Self::new(parse_key(&text).context(SECRET_KEY_ENV)?));
        }
        let path = data.join(SECRET_KEY_FILE);
        if !path.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| anyhow::anyhow!("no randomness for the secret key: {e}"))?;
            // Nodes sharing the data folder may race here: one key wins, all read it.
            if crate::auth::publish_private(&path, &format!("{}\n", hex::encode(key)))? {
                tracing::info!(file = %path.display(), "created the key that seals function secrets");
            }
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Self::new(
            parse_key(&text).with_context(|| path.display().to_string())?,
        ))
    }

    pub(crate) fn seal(&self, name: &str, value: &[u8]) -> anyhow::Result<SealedSecret> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce)
            .map_err(|e| anyhow::anyhow!("no randomness for a nonce: {e}"))?;
        let payload = Payload {
            msg: value,
            aad: name.as_bytes(),
        };
        let ciphertext = self
            .0
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| anyhow::anyhow!("sealing secret {name}"))?;
        Ok(SealedSecret {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// The value, if `sealed` was sealed under this key for this name.
    pub(crate) fn open(&self, name: &str, sealed: &SealedSecret) -> Option<Vec<u8>> {
        if sealed.nonce.len() != 12 {
            return None;
        }
        let payload = Payload {
            msg: &sealed.ciphertext,
            aad: name.as_bytes(),
        };
        self.0
            .decrypt(Nonce::from_slice(&sealed.nonce), payload)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_and_name_only() {
        let sealer = Sealer::new([7; 32]);
        let sealed = sealer.seal("DB_URL", b"postgres://secret").unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer.open("DB_URL", &sealed).unwrap(),
            b"postgres://secret"
        );
        assert_eq!(sealer.open("OTHER", &sealed), None, "bound to its name");
        assert_eq!(
            Sealer::new([8; 32]).open("DB_URL", &sealed),
            None,
            "bound to its key"
        );
        // A fresh nonce every time.
        assert_ne!(
            sealer.seal("DB_URL", b"x").unwrap().nonce,
            sealer.seal("DB_URL", b"x").unwrap().nonce
        );
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key("abcd").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
    }
}
