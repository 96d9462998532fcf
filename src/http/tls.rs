//! TLS for the listener: certificates and the client CA are read from files
//! and re-read when they change, without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;
use crate::telemetry::events::{Emit, FileReloaded};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read certificates: {message}")]
    Certs { path: String, message: String },
    #[error("{path}: cannot read private key: {message}")]
    Key { path: String, message: String },
    #[error("{path}: no certificate in the file")]
    Empty { path: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Certs {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Builds a rustls server config from the files as they are now.
pub fn build(config: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&config.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError::Key {
        path: config.key_file.display().to_string(),
        message: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &config.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| TlsError::Certs {
                    path: ca.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// The current server config, swapped when the files change.
pub struct Reloading {
    current: ArcSwap<ServerConfig>,
    config: TlsConfig,
}

impl Reloading {
    pub fn new(config: TlsConfig) -> Result<Arc<Reloading>, TlsError> {
        let server = build(&config)?;
        Ok(Arc::new(Reloading {
            current: ArcSwap::from_pointee(server),
            config,
        }))
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.config.cert_file.clone(), self.config.key_file.clone()];
        files.extend(self.config.client_ca_file.clone());
        files
    }

    /// Reloads when one of the files changes. A broken new file is logged
    /// and counted, and the previous config kept: a half-written renewal
    /// must not take the webhook down.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let this = Arc::clone(self);
        super::watch::spawn(self.files(), every, shutdown, move || {
            let path = &this.config.cert_file;
            match build(&this.config) {
                Ok(server) => {
                    this.current.store(Arc::new(server));
                    FileReloaded {
                        what: "tls",
                        path,
                        error: None,
                    }
                    .emit();
                }
                Err(e) => FileReloaded {
                    what: "tls",
                    path,
                    error: Some(&e),
                }
                .emit(),
            }
        });
    }
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}
