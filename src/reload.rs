//! Applying a new configuration to the running proxy (SIGHUP, `POST /reload` on the admin
//! listener, [`ProxyHandle::reload`](crate::ProxyHandle::reload)): validate the whole file;
//! if valid, install the pool set / slot map / placement it describes as a new slot table in
//! one `ArcSwap::store`, and report settings that only take effect at start (listener,
//! workers, limits, timeouts, cluster settings) as not reloaded. If invalid, nothing changes.
//! TLS certificate, key and CA files are re-read on every reload ([`TlsContext::reload`]);
//! one that cannot be used rejects the reload.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::{BackendConfig, BackendTlsConfig, Config, ConfigErrors};
use crate::tls::TlsContext;
use crate::topology::Topology;

/// Where a reload gets the configuration from (the config file plus the command line, for
/// `slotgate run`).
type Source = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// The configuration in force and the means to change it; shared by the proxy handle and the
/// admin listener.
pub struct Reloader {
    config: Mutex<Config>,
    topology: Arc<Topology>,
    tls: Arc<TlsContext>,
    source: Mutex<Option<Source>>,
}

impl Reloader {
    /// A reloader for a proxy started with `config`, publishing tables through `topology`
    /// and re-reading certificate files into `tls`.
    pub fn new(config: Config, topology: Arc<Topology>, tls: Arc<TlsContext>) -> Arc<Reloader> {
        Arc::new(Reloader {
            config: Mutex::new(config),
            topology,
            tls,
            source: Mutex::new(None),
        })
    }

    /// A copy of the configuration in force (reloaded parts included).
    pub fn config(&self) -> Config {
        self.lock_config().clone()
    }

    /// Set where [`Reloader::reload_from_source`] reads the configuration.
    pub fn set_source(
        &self,
        source: impl Fn() -> Result<Config, ConfigErrors> + Send + Sync + 'static,
    ) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(source));
    }

    /// Read the configuration from the source set with [`Reloader::set_source`] and reload it.
    pub fn reload_from_source(&self) -> Result<Reloaded, ReloadError> {
        let next = {
            let source = self.source.lock().unwrap_or_else(|e| e.into_inner());
            let Some(source) = source.as_ref() else {
                return Err(ReloadError::NoSource);
            };
            source()
        };
        match next {
            Ok(next) => self.reload(next),
            Err(errors) => {
                log_rejected(&errors);
                Err(ReloadError::Config(errors))
            }
        }
    }

    /// Re-read `path` and [`Reloader::reload`] it.
    pub fn reload_from_file(&self, path: &Path) -> Result<Reloaded, ReloadError> {
        let config = Config::load(path).map_err(|errors| {
            log_rejected(&errors);
            ReloadError::Config(errors)
        })?;
        self.reload(config)
    }

    /// Apply `next` to the running proxy: validate it; if valid, re-read the TLS files it
    /// names (for new connections) and install the slot table its pools describe (pool mode)
    /// atomically, while clients stay connected and in-flight
    /// requests finish on the backends they were sent to. Settings that cannot change while
    /// running are left as they are, named in [`Reloaded::not_reloaded`] and logged. If
    /// invalid, nothing changes and every problem is logged with its key path.
    pub fn reload(&self, next: Config) -> Result<Reloaded, ReloadError> {
        if let Err(errors) = next.validate() {
            log_rejected(&errors);
            return Err(ReloadError::Config(errors));
        }
        let mut current = self.lock_config();
        if current.is_pool_mode() != next.is_pool_mode() {
            let error = ReloadError::ModeChange;
            tracing::error!("config reload rejected, running configuration unchanged: {error}");
            return Err(error);
        }
        // First, as it may still reject the reload: nothing has changed yet.
        if let Err(errors) = self.tls.reload(&next) {
            log_rejected(&errors);
            return Err(ReloadError::Config(errors));
        }
        let table_version = if next.is_pool_mode() {
            match self.topology.install_config(&next) {
                Ok(version) => version,
                Err(message) => {
                    let errors = ConfigErrors::one("pools", message);
                    log_rejected(&errors);
                    return Err(ReloadError::Config(errors));
                }
            }
        } else {
            None
        };
        let not_reloaded = not_reloadable_changes(&current, &next);
        for key in &not_reloaded {
            tracing::warn!("config reload: {key} changed but cannot be reloaded; restart to apply");
        }
        if next.is_pool_mode() {
            // Pool mode: the read policy is part of the table just installed.
            current.backend.read_policy = next.backend.read_policy;
        }
        current.pools = next.pools;
        current.slots = next.slots;
        current.placement = next.placement;
        // The TLS files were re-read above; what they name is now in force.
        current.tls.cert_file = next.tls.cert_file;
        current.tls.key_file = next.tls.key_file;
        current.tls.client_ca_file = next.tls.client_ca_file;
        current.backend.tls = BackendTlsConfig {
            enabled: current.backend.tls.enabled,
            ..next.backend.tls
        };
        tracing::info!(
            "config reloaded: {}",
            match table_version {
                Some(v) => format!("slot table version {v} installed"),
                None => "routing unchanged".to_string(),
            }
        );
        Ok(Reloaded {
            table_version,
            not_reloaded,
        })
    }

    fn lock_config(&self) -> std::sync::MutexGuard<'_, Config> {
        // A panic while holding the lock cannot leave the config half-written: every update
        // is a few plain assignments after all checks.
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a successful [`Reloader::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The version of the slot table installed, or `None` when routing did not change.
    pub table_version: Option<u64>,
    /// Key paths whose new values were not applied because they only take effect at start.
    pub not_reloaded: Vec<String>,
}

/// Why a reload was rejected; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid (every problem, with its key path).
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    /// The new configuration switches between cluster mode and pool mode.
    #[error("cannot switch between cluster mode and pool mode while running; restart instead")]
    ModeChange,
    /// No configuration source was set (a proxy embedded without a config file).
    #[error("no configuration source to reload from (slotgate was not started from a file)")]
    NoSource,
}

fn log_rejected(errors: &ConfigErrors) {
    tracing::error!(
        "config reload rejected, running configuration unchanged:\n{}",
        errors
    );
}

/// The key paths of settings that differ between `running` and `next` but only take effect
/// at start.
fn not_reloadable_changes(running: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            out.push(key.to_string());
        }
    };
    check("proxy.listen", running.proxy.listen != next.proxy.listen);
    check(
        "proxy.pid_file",
        running.proxy.pid_file != next.proxy.pid_file,
    );
    check(
        "proxy.max_clients",
        running.proxy.max_clients != next.proxy.max_clients,
    );
    check("tls.listen", running.tls.listen != next.tls.listen);
    check(
        "tls.handshake_timeout_ms",
        running.tls.handshake_timeout_ms != next.tls.handshake_timeout_ms,
    );
    check(
        "backend.tls.enabled",
        running.backend.tls.enabled != next.backend.tls.enabled,
    );
    check("auth", running.auth != next.auth);
    check("commands", running.commands != next.commands);
    check("proxy.workers", running.proxy.workers != next.proxy.workers);
    check(
        "proxy.max_pipeline_depth",
        running.proxy.max_pipeline_depth != next.proxy.max_pipeline_depth,
    );
    let (rp, np) = (&running.proxy, &next.proxy);
    check(
        "proxy.max_request_bytes",
        rp.max_request_bytes != np.max_request_bytes,
    );
    check(
        "proxy.max_pending_bytes",
        rp.max_pending_bytes != np.max_pending_bytes,
    );
    check(
        "proxy.client_idle_timeout_ms",
        rp.client_idle_timeout_ms != np.client_idle_timeout_ms,
    );
    check(
        "proxy.pubsub_output_hard_limit_bytes",
        rp.pubsub_output_hard_limit_bytes != np.pubsub_output_hard_limit_bytes,
    );
    check(
        "proxy.pubsub_output_soft_limit_bytes",
        rp.pubsub_output_soft_limit_bytes != np.pubsub_output_soft_limit_bytes,
    );
    check(
        "proxy.pubsub_output_soft_limit_ms",
        rp.pubsub_output_soft_limit_ms != np.pubsub_output_soft_limit_ms,
    );
    check("cluster", running.cluster != next.cluster);
    check("slowlog", running.slowlog != next.slowlog);
    check("hotkeys", running.hotkeys != next.hotkeys);
    let mut backend = next.backend.clone();
    if next.is_pool_mode() {
        // Reloaded with the pools: each pool's read policy defaults to it.
        backend.read_policy = running.backend.read_policy;
    }
    // backend.tls: its files are reloaded, `enabled` is checked above.
    let without_tls = |b: &BackendConfig| BackendConfig {
        tls: BackendTlsConfig::default(),
        ..b.clone()
    };
    check(
        "backend",
        without_tls(&running.backend) != without_tls(&backend),
    );
    check("health", running.health != next.health);
    check("protocol", running.protocol != next.protocol);
    check("log.level", running.log.level != next.log.level);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_limits_take_effect_at_start_only() {
        let running = Config::default();
        let mut next = running.clone();
        next.proxy.max_request_bytes /= 2;
        next.proxy.max_pending_bytes /= 2;
        next.proxy.client_idle_timeout_ms = 300_000;
        next.proxy.pubsub_output_hard_limit_bytes = 0;
        next.proxy.pubsub_output_soft_limit_bytes = 0;
        next.proxy.pubsub_output_soft_limit_ms = 1;
        assert_eq!(
            not_reloadable_changes(&running, &next),
            [
                "proxy.max_request_bytes",
                "proxy.max_pending_bytes",
                "proxy.client_idle_timeout_ms",
                "proxy.pubsub_output_hard_limit_bytes",
                "proxy.pubsub_output_soft_limit_bytes",
                "proxy.pubsub_output_soft_limit_ms",
            ]
        );
    }
}
