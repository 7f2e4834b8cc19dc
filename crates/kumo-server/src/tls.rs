//! TLS for the listener: rustls (ring) with the certificate chain and key of `--tls-cert` and
//! `--tls-key` (PEM), HTTP/2 and HTTP/1.1 offered by ALPN. The files are looked at every few
//! seconds and read again when they change, so a renewed certificate is served from the next
//! handshake on, without a restart; a pair that does not load is logged and the old one kept.

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// How often the files are looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Where the certificate and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    certificate: Arc<Certificate>,
}

/// The pair being served, and when its files were last changed.
#[derive(Debug)]
struct Certificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// When the certificate and key files were last changed.
fn stamp(files: &TlsFiles) -> Stamp {
    (modified(&files.cert), modified(&files.key))
}

impl Certificate {
    fn load(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading certificates from {}", files.cert.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "no certificate in {}",
            files.cert.display()
        );
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .with_context(|| format!("reading a private key from {}", files.key.display()))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .with_context(|| format!("using the private key of {}", files.key.display()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .context("the private key does not belong to the certificate")?;
        Ok(certified)
    }

    /// Reads the files again if they changed since the pair in use was read.
    fn reload_if_changed(&self) {
        let stamp = stamp(&self.files);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == stamp {
            return;
        }
        match Self::load(&self.files, &self.provider) {
            Ok(certified) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    (Arc::new(certified), stamp);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Keep serving the old pair; say so once per change of the files.
                self.current.write().unwrap_or_else(|p| p.into_inner()).1 = stamp;
                tracing::warn!(
                    "the changed TLS files do not load; the old certificate stays: {e:#}"
                );
            }
        }
    }
}

impl Tls {
    pub(crate) fn new(files: TlsFiles) -> anyhow::Result<Self> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        // Stamped before reading: a change made meanwhile is read again at the next look.
        let read_at = stamp(&files);
        let certified = Certificate::load(&files, &provider)?;
        let certificate = Arc::new(Certificate {
            current: RwLock::new((Arc::new(certified), read_at)),
            files,
            provider: provider.clone(),
        });
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// Looks at the files every few seconds, forever (aborted when the server stops).
    pub(crate) async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(RELOAD_CHECK);
        loop {
            ticks.tick().await;
            let certificate = self.certificate.clone();
            let _ = tokio::task::spawn_blocking(move || certificate.reload_if_changed()).await;
        }
    }
}
