//! Applying a new configuration to the running proxy (SIGHUP, `POST /reload` on the admin
//! listener, [`ProxyHandle::reload`](crate::ProxyHandle::reload)): validate the whole file;
//! if valid, install the pool set / slot map / placement it describes as a new slot table in
//! one `ArcSwap::store`, and report settings that only take effect at start (listener,
//! workers, limits, timeouts, cluster settings) as not reloaded. If invalid, nothing changes.
//! TLS certificate, key and CA files are re-read on every reload ([`TlsContext::reload`]);
//! one that cannot be used rejects the reload. `[commands.custom]` is start-only: sessions
//! keep the command specs they looked up (their `LookupCache`), and the specs are built once
//! per start; a change is reported as one `commands.custom`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::{BackendTlsConfig, Config, ConfigErrors};
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
        let same_moves = {
            let running = &self.lock_config().migration;
            next.migration.moves == running.moves
                && next.migration.version == running.version
                && next.migration.to_cluster == running.to_cluster
        };
        if !same_moves {
            let error = ReloadError::MovesChanged;
            tracing::error!("config reload rejected, running configuration unchanged: {error}");
            return Err(error);
        }
        self.apply(next)
    }

    /// [`Reloader::reload`] for a migration phase change: the moves may change (the
    /// controller has held their slots and settled the workers first), and pool mode may
    /// become cluster mode (every key moved from the pools onto the cluster: the move's end,
    /// or the fleet's state adopted by an instance that missed it).
    pub fn reload_phase(&self, next: Config) -> Result<Reloaded, ReloadError> {
        self.apply_with(next, true)
    }

    fn apply(&self, next: Config) -> Result<Reloaded, ReloadError> {
        self.apply_with(next, false)
    }

    fn apply_with(&self, next: Config, phase: bool) -> Result<Reloaded, ReloadError> {
        if let Err(errors) = next.validate() {
            log_rejected(&errors);
            return Err(ReloadError::Config(errors));
        }
        let mut current = self.lock_config();
        // Keys moved from pools onto a cluster: the configuration becomes a cluster-mode one
        // while running, by a phase change only.
        let pools_retired = phase && current.is_pool_mode() && !next.is_pool_mode();
        if current.is_pool_mode() != next.is_pool_mode() && !pools_retired {
            let error = ReloadError::ModeChange;
            tracing::error!("config reload rejected, running configuration unchanged: {error}");
            return Err(error);
        }
        // Read first, as it may still reject the reload; used only once nothing else can.
        let tls = match TlsContext::prepare(&next) {
            Ok(tls) => tls,
            Err(errors) => {
                log_rejected(&errors);
                return Err(ReloadError::Config(errors));
            }
        };
        let table_version = if next.is_pool_mode() || current.is_pool_mode() {
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
        self.tls.install(tls);
        if current.is_pool_mode() {
            // In pool mode `[cluster]` names only the cluster keys move onto (or would): its
            // seeds come with the phase change that starts the move, its login is read then.
            current.cluster.seeds.clone_from(&next.cluster.seeds);
            current.cluster.username.clone_from(&next.cluster.username);
            current.cluster.password.clone_from(&next.cluster.password);
        }
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
        current.migration = next.migration;
        current.fleet = next.fleet;
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
    /// `[[migration.moves]]` differ from the moves in force: they change only through a
    /// phase change (`slotgate migrate`, the admin API), which holds their slots first.
    #[error(
        "migration.moves differ from the moves in force: start, pause, resume or abort a move with `slotgate migrate` or the admin API, not by editing the file"
    )]
    MovesChanged,
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

/// Settings a reload applies (key paths; a path covers everything under it). Everything else
/// takes effect at start only.
const RELOADABLE: &[&str] = &[
    "pools",
    "slots",
    "placement",
    "migration",
    "fleet",
    "tls.cert_file",
    "tls.key_file",
    "tls.client_ca_file",
    "backend.tls.ca_file",
    "backend.tls.cert_file",
    "backend.tls.key_file",
    "backend.tls.server_name",
];

/// The key paths of settings that differ between `running` and `next` but only take effect
/// at start: every leaf of the configuration that changed, except those in [`RELOADABLE`]
/// (and, in pool mode, `backend.read_policy`, which each pool's policy defaults to); in
/// cluster mode, also the co-location rules.
fn not_reloadable_changes(running: &Config, next: &Config) -> Vec<String> {
    let as_value = |config: &Config| serde_json::to_value(config).unwrap_or_default();
    let mut changed = Vec::new();
    diff_paths("", &as_value(running), &as_value(next), &mut changed);
    changed.retain(|path| {
        let reloaded = |key: &&str| {
            path == key
                || path
                    .strip_prefix(*key)
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        let pool_policy = next.is_pool_mode() && path == "backend.read_policy";
        // Cluster mode stores grouped keys under their tags: the sessions keep the rules they
        // started with (new rules would hide the keys stored under the old ones).
        let cluster_rules = !next.is_pool_mode() && path.starts_with("placement.colocate");
        cluster_rules || (!RELOADABLE.iter().any(reloaded) && !pool_policy)
    });
    // Declared command names hold dots (`JSON.SET`): one entry for the whole section.
    for path in &mut changed {
        if path.starts_with("commands.custom.") {
            *path = "commands.custom".into();
        }
    }
    changed.dedup();
    changed
}

/// Push onto `out` the dotted path of every leaf where `a` and `b` differ (a key present on
/// one side only counts as a difference; arrays are leaves).
fn diff_paths(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_paths(&path, x, y, out),
                    _ => out.push(path),
                }
            }
        }
        (a, b) if a != b => out.push(prefix.to_string()),
        _ => {}
    }
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
        next.proxy.drain_timeout_ms = 1;
        next.admin.listen = "127.0.0.1:1".into();
        next.log.format = crate::config::LogFormat::Json;
        assert_eq!(
            not_reloadable_changes(&running, &next),
            [
                "admin.listen",
                "log.format",
                "proxy.client_idle_timeout_ms",
                "proxy.drain_timeout_ms",
                "proxy.max_pending_bytes",
                "proxy.max_request_bytes",
                "proxy.pubsub_output_hard_limit_bytes",
                "proxy.pubsub_output_soft_limit_bytes",
                "proxy.pubsub_output_soft_limit_ms",
            ]
        );
    }

    #[test]
    fn pool_map_and_certificate_files_reload() {
        let running = Config::default();
        let mut next = running.clone();
        next.slots.insert("0-16383".into(), "a".into());
        next.tls.cert_file = "/new.pem".into();
        next.backend.tls.ca_file = "/ca.pem".into();
        assert!(not_reloadable_changes(&running, &next).is_empty());
        next.backend.tls.enabled = true;
        next.tls.listen = "127.0.0.1:1".into();
        assert_eq!(
            not_reloadable_changes(&running, &next),
            ["backend.tls.enabled", "tls.listen"]
        );
    }

    #[test]
    fn cluster_credentials_are_start_only_and_pool_ones_reload() {
        let running = Config::default();
        let mut next = running.clone();
        next.cluster.password = Some(crate::config::Secret::new("new"));
        next.pools
            .insert("a".into(), crate::config::PoolConfig::default());
        assert_eq!(
            not_reloadable_changes(&running, &next),
            ["cluster.password"]
        );
    }

    #[test]
    fn colocation_rules_reload_in_pool_mode_only() {
        let running = Config::default();
        let mut next = running.clone();
        next.placement.colocate.push(crate::config::ColocateRule {
            name: "rq".into(),
            keys: vec!["rq:*".into()],
        });
        assert_eq!(
            not_reloadable_changes(&running, &next),
            ["placement.colocate"]
        );
        let mut running = running;
        running
            .pools
            .insert("a".into(), crate::config::PoolConfig::default());
        next.pools = running.pools.clone();
        assert!(not_reloadable_changes(&running, &next).is_empty());
    }

    #[test]
    fn custom_commands_are_start_only() {
        let running = Config::default();
        let mut next = running.clone();
        for name in ["JSON.SET", "JSON.GET"] {
            next.commands.custom.insert(
                name.into(),
                crate::config::CustomCommandConfig {
                    arity: Some(-2),
                    first_key: Some(1),
                    ..Default::default()
                },
            );
        }
        assert_eq!(not_reloadable_changes(&running, &next), ["commands.custom"]);
    }
}
