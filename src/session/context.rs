//! What the sessions of one worker share: the worker's router (its way to the nodes), the
//! settings every session obeys, its counters, client users and command policy, the drain
//! signal, and the process's operator views. Built once per worker thread (`crate::worker`);
//! sessions hold it in an `Rc`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::lifecycle::SessionDrain;
use crate::placement::{Colocation, KeySpace};
use crate::resp::Limits;
use crate::router::Router;
use crate::stats::{ProxyStats, WorkerStats};
use crate::tls::TlsContext;

/// What every session of a worker obeys, from the configuration (start-only settings).
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// Request parsing limits.
    pub limits: Limits,
    /// Replies one client may have outstanding before it is no longer read.
    pub max_pipeline_depth: usize,
    /// Pending bytes, idle timeout and subscriber output limits of each client.
    pub client_limits: super::ClientLimits,
    /// Time a request has, from its arrival, to be answered (retries included).
    pub request_timeout: Duration,
    /// FLUSHALL / FLUSHDB are served.
    pub allow_flush: bool,
    /// Writes across slots are served, in steps (`commands.non_atomic_cross_slot_writes`).
    pub cross_slot_writes: bool,
    /// Key-less admin commands sent to every master (`commands.allow_admin`, table names).
    pub allow_admin: Vec<String>,
    /// The node key-less scripts run on (`None`: a random master).
    pub keyless_scripts: Option<Arc<str>>,
    /// Time a TLS client has to complete its handshake.
    pub handshake_timeout: Duration,
    /// Cluster mode with co-location rules or emulated databases: the rules by which grouped
    /// keys are stored under their group's tag, maybe none (`None`: neither, or pool mode,
    /// where the placement applies the rules and databases are the servers').
    pub key_tags: Option<Arc<Colocation>>,
    /// Where the databases clients select live.
    pub databases: Databases,
}

/// Where the databases clients select live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Databases {
    /// Pool mode: the servers' own, selected on the backend connections.
    Real,
    /// Cluster mode: database 0, and this many in all (`cluster.databases`; above 1 the
    /// others are emulated in key namespaces).
    Emulated(u32),
}

impl Databases {
    /// The key space of database `db`.
    pub fn space(self, db: u32) -> KeySpace {
        KeySpace::of(db, matches!(self, Databases::Emulated(n) if n > 1))
    }
}

impl SessionSettings {
    /// The settings `config` gives.
    pub fn from_config(config: &Config) -> SessionSettings {
        SessionSettings {
            limits: Limits {
                max_request_len: config.proxy.max_request_bytes,
                ..config.protocol.limits()
            },
            max_pipeline_depth: config.proxy.max_pipeline_depth,
            client_limits: super::ClientLimits::from_config(&config.proxy),
            request_timeout: Duration::from_millis(config.backend.request_timeout_ms),
            allow_flush: config.commands.allow_flush,
            cross_slot_writes: config.commands.non_atomic_cross_slot_writes,
            allow_admin: config.commands.allowed_admin_names(),
            keyless_scripts: config.commands.keyless_scripts_node().map(Arc::from),
            handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
            key_tags: if config.is_pool_mode() {
                None
            } else {
                // A config that fails here fails validation first.
                Colocation::new(&config.placement.colocate)
                    .ok()
                    .filter(|c| !c.is_empty() || config.cluster.databases > 1)
                    .map(Arc::new)
            },
            databases: if config.is_pool_mode() {
                Databases::Real
            } else {
                Databases::Emulated(config.cluster.databases)
            },
        }
    }
}

/// What the sessions of one worker share: its router (the way to the nodes), its settings,
/// counters, client users and command policy, drain signal, and the process's operator views.
pub struct WorkerContext {
    index: usize,
    router: Rc<Router>,
    settings: SessionSettings,
    proxy: Arc<ProxyStats>,
    users: crate::auth::Users,
    command_policy: Option<crate::command_policy::CommandPolicy>,
    drain: SessionDrain,
    tls: Arc<TlsContext>,
    ops: Arc<crate::ops::Ops>,
    hot: Option<crate::ops::hotkeys::Sampler>,
    custom: Option<&'static crate::command::custom::CustomCommands>,
    /// Tells this worker's sessions to move to a successor process at their next boundary.
    moving: SessionDrain,
    outbox: Option<Arc<crate::upgrade::Outbox>>,
}

impl WorkerContext {
    /// The context of worker `index` by `config`: `router` its way to the nodes, `proxy`
    /// the process counters, `tls` the TLS material, `ops` the operator views, `custom` the
    /// `[commands.custom]` commands (built once per proxy).
    pub fn new(
        index: usize,
        config: &Config,
        router: Rc<Router>,
        proxy: Arc<ProxyStats>,
        tls: Arc<TlsContext>,
        ops: Arc<crate::ops::Ops>,
        custom: Option<&'static crate::command::custom::CustomCommands>,
    ) -> WorkerContext {
        WorkerContext {
            index,
            router,
            settings: SessionSettings::from_config(config),
            proxy,
            users: crate::auth::Users::from_config(&config.auth),
            command_policy: crate::command_policy::CommandPolicy::from_config(&config.commands),
            drain: SessionDrain::default(),
            tls,
            hot: ops.hotkeys.as_ref().map(|h| h.sampler()),
            ops,
            custom,
            moving: SessionDrain::default(),
            outbox: None,
        }
    }

    /// With `proxy.upgrade_socket`: the way sessions hand themselves over to a successor.
    pub fn with_outbox(mut self, outbox: Option<Arc<crate::upgrade::Outbox>>) -> WorkerContext {
        self.outbox = outbox;
        self
    }

    /// Tells this worker's sessions a successor takes them (an upgrade in place).
    pub fn moving(&self) -> &SessionDrain {
        &self.moving
    }

    /// Where sessions hand themselves over (`None`: no upgrade socket).
    pub fn outbox(&self) -> Option<&crate::upgrade::Outbox> {
        self.outbox.as_deref()
    }

    /// This worker's own counters.
    pub fn stats(&self) -> &WorkerStats {
        self.proxy.worker(self.index)
    }

    /// Index of this worker, `0..workers`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What every session of this worker obeys.
    #[inline]
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Process-wide counters and facts, for INFO.
    pub fn proxy(&self) -> &Arc<ProxyStats> {
        &self.proxy
    }

    /// Who clients may authenticate as.
    pub fn users(&self) -> &crate::auth::Users {
        &self.users
    }

    /// The deny list and rename map, when configured.
    pub fn command_policy(&self) -> Option<&crate::command_policy::CommandPolicy> {
        self.command_policy.as_ref()
    }

    /// Tells this worker's sessions to finish what they owe and close (graceful shutdown).
    pub fn drain(&self) -> &SessionDrain {
        &self.drain
    }

    /// TLS material (listener acceptor, backend connector), re-read on reload.
    pub fn tls(&self) -> &TlsContext {
        &self.tls
    }

    /// Client registry, slow log, hot keys (shared by all workers).
    pub fn ops(&self) -> &crate::ops::Ops {
        &self.ops
    }

    /// The `[commands.custom]` commands (`None`: none declared).
    pub fn custom_commands(&self) -> Option<&'static crate::command::custom::CustomCommands> {
        self.custom
    }

    /// This worker's hot-key sampler (`None`: hot keys off).
    pub fn hot(&self) -> Option<&crate::ops::hotkeys::Sampler> {
        self.hot.as_ref()
    }

    /// The way to the nodes: slot table, routing, backend connections.
    #[inline]
    pub fn router(&self) -> &Router {
        &self.router
    }
}
