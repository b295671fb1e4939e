//! TLS with rustls (the `ring` provider): the client listener's acceptor, optionally requiring
//! client certificates (mutual TLS), and the backend connector (CA, server name verification,
//! optional client certificate).
//!
//! ```text
//!  config files ──TlsContext::build──► TlsContext { listener: acceptor, backend: connector }
//!                                          │ ArcSwap: loaded once per new connection
//!  reload ──TlsContext::reload (files re-read)──► stored only if every file is usable
//! ```
//!
//! Owns: reading PEM files and turning them into rustls configurations; the stream types
//! ([`MaybeTls`] and its halves) that let the plaintext and TLS paths share code.
//! Does not own: sockets' lifetimes, timeouts or retries (the callers keep theirs).
//!
//! Reload: certificate and key files are read again on every [`TlsContext::reload`]; new
//! connections (client and backend) use what was read last, established ones keep their
//! session. Whether a listener or backend TLS exists at all is decided at start.

mod stream;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{BackendTlsConfig, Config, ConfigError, ConfigErrors, TlsConfig};

pub use stream::{MaybeTls, ReadHalf, WriteHalf};

/// The TLS material in force: the listener's acceptor and the backend connector, each
/// `None` when that side has no TLS. Shared by every thread; swapped whole on reload.
#[derive(Default)]
pub struct TlsContext {
    listener: ArcSwapOption<TlsAcceptor>,
    backend: ArcSwapOption<BackendTls>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("listener", &self.listener.load().is_some())
            .field("backend", &self.backend.load().is_some())
            .finish()
    }
}

impl TlsContext {
    /// Read the files `config` names and build both sides. Every unreadable or unusable file
    /// is reported with its key path.
    pub fn build(config: &Config) -> Result<TlsContext, ConfigErrors> {
        let (listener, backend) = load(config)?;
        Ok(TlsContext {
            listener: ArcSwapOption::new(listener.map(Arc::new)),
            backend: ArcSwapOption::new(backend.map(Arc::new)),
        })
    }

    /// A context without TLS on either side.
    pub fn plaintext() -> TlsContext {
        TlsContext::default()
    }

    /// Re-read the files `next` names and, if all are usable, use them for new connections.
    /// A side that had no TLS at start keeps none (and one that had keeps it): listeners and
    /// backend connection modes are start-only. On error nothing changes.
    pub fn reload(&self, next: &Config) -> Result<(), ConfigErrors> {
        let loaded = TlsContext::prepare(next)?;
        self.install(loaded);
        Ok(())
    }

    /// Read and check the files `next` names without using them yet (see
    /// [`TlsContext::install`]), so a reload can still be rejected for other reasons.
    pub fn prepare(next: &Config) -> Result<LoadedTls, ConfigErrors> {
        let (listener, backend) = load(next)?;
        Ok(LoadedTls { listener, backend })
    }

    /// Use what [`TlsContext::prepare`] read for new connections, side by side as
    /// [`TlsContext::reload`] describes.
    pub fn install(&self, loaded: LoadedTls) {
        if self.listener.load().is_some() {
            if let Some(acceptor) = loaded.listener {
                self.listener.store(Some(Arc::new(acceptor)));
            }
        }
        if self.backend.load().is_some() {
            if let Some(connector) = loaded.backend {
                self.backend.store(Some(Arc::new(connector)));
            }
        }
    }

    /// The listener's acceptor as of now (`None`: no TLS listener).
    pub fn acceptor(&self) -> Option<Arc<TlsAcceptor>> {
        self.listener.load_full()
    }

    /// The backend connector as of now (`None`: backends are plaintext).
    pub fn backend(&self) -> Option<Arc<BackendTls>> {
        self.backend.load_full()
    }
}

/// Certificates and keys read for a reload, not yet in use.
pub struct LoadedTls {
    listener: Option<TlsAcceptor>,
    backend: Option<BackendTls>,
}

/// Build both sides from `config`, collecting every problem.
fn load(config: &Config) -> Result<(Option<TlsAcceptor>, Option<BackendTls>), ConfigErrors> {
    let mut errors = Vec::new();
    let listener = if config.tls.listen.is_empty() {
        None
    } else {
        server_config(&config.tls, &mut errors).map(|c| TlsAcceptor::from(Arc::new(c)))
    };
    let backend = if config.backend.tls.enabled {
        backend_tls(&config.backend.tls, &mut errors)
    } else {
        None
    };
    if errors.is_empty() {
        Ok((listener, backend))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The crypto provider every configuration uses: ring (no aws-lc, so no cmake build).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn problem(errors: &mut Vec<ConfigError>, path: &str, message: String) {
    errors.push(ConfigError {
        path: path.into(),
        message,
    });
}

/// Every certificate in the PEM file at `path` (at least one).
fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {path:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path:?} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(Path::new(path))
        .map_err(|e| format!("cannot read a private key from {path:?}: {e}"))
}

/// A root store of every certificate in the PEM file at `path`.
fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{path:?}: unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// A certificate chain and its key, read from two files (errors under `cert_key`/`key_key`).
fn read_identity(
    cert_file: &str,
    key_file: &str,
    (cert_key, key_key): (&str, &str),
    errors: &mut Vec<ConfigError>,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = read_certs(cert_file).map_err(|m| problem(errors, cert_key, m));
    let key = read_key(key_file).map_err(|m| problem(errors, key_key, m));
    Some((certs.ok()?, key.ok()?))
}

/// The listener's rustls configuration; mutual TLS when `client_ca_file` is set.
fn server_config(tls: &TlsConfig, errors: &mut Vec<ConfigError>) -> Option<ServerConfig> {
    let identity = read_identity(
        &tls.cert_file,
        &tls.key_file,
        ("tls.cert_file", "tls.key_file"),
        errors,
    );
    let verifier = if tls.client_ca_file.is_empty() {
        None
    } else {
        let roots = read_roots(&tls.client_ca_file)
            .map_err(|m| problem(errors, "tls.client_ca_file", m))
            .ok()?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| problem(errors, "tls.client_ca_file", e.to_string()))
            .ok()?;
        Some(verifier)
    };
    let (certs, key) = identity?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(errors, "tls", e.to_string()))
        .ok()?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| {
            problem(
                errors,
                "tls.key_file",
                format!("does not fit tls.cert_file: {e}"),
            )
        })
        .ok()
}

/// The backend connector: nodes verified against `ca_file`, optional client certificate.
fn backend_tls(tls: &BackendTlsConfig, errors: &mut Vec<ConfigError>) -> Option<BackendTls> {
    let roots = read_roots(&tls.ca_file).map_err(|m| problem(errors, "backend.tls.ca_file", m));
    let identity = if tls.cert_file.is_empty() {
        None
    } else {
        Some(read_identity(
            &tls.cert_file,
            &tls.key_file,
            ("backend.tls.cert_file", "backend.tls.key_file"),
            errors,
        )?)
    };
    let server_name = if tls.server_name.is_empty() {
        None
    } else {
        match ServerName::try_from(tls.server_name.clone()) {
            Ok(name) => Some(name),
            Err(e) => {
                problem(errors, "backend.tls.server_name", e.to_string());
                return None;
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(errors, "backend.tls", e.to_string()))
        .ok()?
        .with_root_certificates(roots.ok()?);
    let config = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                problem(
                    errors,
                    "backend.tls.key_file",
                    format!("does not fit backend.tls.cert_file: {e}"),
                )
            })
            .ok()?,
        None => builder.with_no_client_auth(),
    };
    Some(BackendTls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// How to open TLS to a backend node: the rustls client configuration and the name to verify.
pub struct BackendTls {
    connector: TlsConnector,
    /// `backend.tls.server_name`; `None`: each node's own host.
    server_name: Option<ServerName<'static>>,
}

impl BackendTls {
    /// Run the TLS handshake on `tcp`, a fresh connection to `addr` (`HOST:PORT`), verifying
    /// the node's certificate against the configured CA and server name. `Err` says why it
    /// failed (the caller names the node).
    pub async fn wrap(&self, addr: &str, tcp: TcpStream) -> Result<MaybeTls, String> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => host_name(addr)?,
        };
        let stream = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(MaybeTls::Tls(Box::new(stream.into())))
    }
}

/// The host part of `HOST:PORT` (brackets of an IPv6 literal removed) as a server name.
fn host_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        format!("{host:?} cannot be verified as a server name ({e}); set backend.tls.server_name")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_from_addresses() {
        assert!(matches!(
            host_name("127.0.0.1:6379"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            host_name("[::1]:6379"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            host_name("redis.internal:6379"),
            Ok(ServerName::DnsName(_))
        ));
    }

    #[test]
    fn missing_files_are_reported_with_their_keys() {
        let mut config = Config::default();
        config.tls.listen = "127.0.0.1:0".into();
        config.tls.cert_file = "/nonexistent/cert.pem".into();
        config.tls.key_file = "/nonexistent/key.pem".into();
        config.tls.client_ca_file = "/nonexistent/ca.pem".into();
        config.backend.tls.enabled = true;
        config.backend.tls.ca_file = "/nonexistent/backend-ca.pem".into();
        let errors = TlsContext::build(&config).unwrap_err();
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        for key in [
            "tls.cert_file",
            "tls.key_file",
            "tls.client_ca_file",
            "backend.tls.ca_file",
        ] {
            assert!(paths.contains(&key), "{key} not in {errors}");
        }
    }

    /// A self-signed certificate for 127.0.0.1 written to `dir` as `name.crt` / `name.key`.
    fn identity(dir: &Path, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    #[test]
    fn reload_swaps_only_usable_material_and_only_for_sides_that_have_tls() {
        let dir = std::env::temp_dir().join(format!("slotgate-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = identity(&dir, "a");
        let mut config = Config::default();
        config.tls.listen = "127.0.0.1:0".into();
        config.tls.cert_file = cert.clone();
        config.tls.key_file = key.clone();
        let context = TlsContext::build(&config).unwrap();
        let first = context.acceptor().unwrap();

        // Same files: a fresh acceptor (re-read), backends still plaintext even if asked.
        let mut next = config.clone();
        next.backend.tls.enabled = true;
        next.backend.tls.ca_file = cert.clone();
        context.reload(&next).unwrap();
        let second = context.acceptor().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(
            context.backend().is_none(),
            "backend TLS is decided at start"
        );

        // A key that does not parse: rejected, nothing changes.
        std::fs::write(&key, "garbage").unwrap();
        let errors = context.reload(&config).unwrap_err();
        assert_eq!(errors.0[0].path, "tls.key_file", "{errors}");
        assert!(Arc::ptr_eq(&second, &context.acceptor().unwrap()));
        // A key from another certificate: rejected too.
        let (_, other_key) = identity(&dir, "b");
        std::fs::copy(&other_key, &key).unwrap();
        assert!(context.reload(&config).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn no_tls_configured_builds_an_empty_context() {
        let context = TlsContext::build(&Config::default()).unwrap();
        assert!(context.acceptor().is_none());
        assert!(context.backend().is_none());
    }
}
