//! Configuration: the TOML schema, its defaults, and validation.
//!
//! Every key has a default, so an empty file (or no file at all, for a sidecar driven by CLI
//! flags) is a valid configuration once a seed node (cluster mode) or a pool (pool mode) is
//! given. The two modes are exclusive: `[cluster] seeds` fronts a Redis Cluster, `[pools.NAME]`
//! fronts standalone servers placed by a slot map (`[slots]`) or by Twemproxy's ketama
//! (`[placement]`). Unknown keys are errors, and
//! validation reports *every* problem with its key path (`backend.request_timeout_ms: …`) rather
//! than stopping at the first. Pure: parsing and validation do no I/O beyond reading the file.
//! `SLOTGATE_<SECTION>__<KEY>` environment overrides are applied to the file's TOML tree before
//! it is parsed (`config/env.rs`), so they get the same unknown-key and type checks.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::placement::KeyHash;
use crate::slot::SLOT_COUNT;

mod auth;
mod env;
mod migration;

pub use env::EnvOverrides;
pub use migration::{MigrationConfig, MoveState, SlotMove};

/// The whole configuration tree.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// The client-facing side: listener and workers.
    pub proxy: ProxyConfig,
    /// The Redis Cluster behind the proxy (cluster mode).
    pub cluster: ClusterConfig,
    /// Standalone Redis pools by name (pool mode): each one master and optional replicas.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Pool mode, slot placement: slot ranges (`"0-8191"`, or one slot `"42"`) → pool name.
    /// Empty: the 16384 slots are split evenly across the pools in name order.
    pub slots: BTreeMap<String, String>,
    /// Pool mode: how keys are placed on pools.
    pub placement: PlacementConfig,
    /// Connections to backend nodes.
    pub backend: BackendConfig,
    /// Active health checks of backend nodes.
    pub health: HealthConfig,
    /// RESP parsing limits for client requests and backend replies.
    pub protocol: ProtocolConfig,
    /// Logging.
    pub log: LogConfig,
    /// The admin HTTP listener: health, topology, metrics, dashboard.
    pub admin: AdminConfig,
    /// How particular commands are served.
    pub commands: CommandsConfig,
    /// The TLS client listener (optionally mutual TLS).
    pub tls: TlsConfig,
    /// Client authentication and per-user permissions.
    pub auth: AuthConfig,
    /// The proxy's slow log (`SLOWLOG`, admin `/slowlog`).
    pub slowlog: SlowlogConfig,
    /// Sampling of the most requested keys (`INFO hotkeys`, admin `/hotkeys`).
    pub hotkeys: HotkeysConfig,
    /// Pool mode: slot ranges moving between pools, and the mover's pace.
    pub migration: MigrationConfig,
    /// The other slotgate instances in front of the same backends.
    pub fleet: FleetConfig,
}

/// The other slotgate instances in front of the same pools or cluster (a fleet, or one
/// sidecar per application pod). A migration phase change is carried out on all of them
/// together; one that cannot be reached stops it with an error. With `proxy.announce` set,
/// cluster-aware clients are shown the fleet (CLUSTER SLOTS / SHARDS / NODES spread the slots
/// over the instances that answer their peers' checks). Reloadable.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FleetConfig {
    /// The admin listeners (`admin.listen`, `HOST:PORT`) of the other instances.
    pub peers: Vec<String>,
    /// A DNS name that resolves to the fleet's instances, with their admin port
    /// (`NAME:ADMIN_PORT`, e.g. a Kubernetes headless Service): resolved again before every
    /// check, each address it gives (every A/AAAA record) checked as a peer of the fleet view,
    /// beside `peers`. This instance's own address among them is recognised by its answer.
    /// Empty (the default): none. Feeds the fleet view only (migration phase changes reach
    /// `peers`); needs `proxy.announce`.
    pub peers_dns: String,
    /// How often each peer's admin listener is asked for its announce address (`GET
    /// /fleet/self`): the fleet view's health check.
    pub check_interval_ms: u64,
    /// Time a peer has to answer one check.
    pub check_timeout_ms: u64,
    /// Consecutive failed checks after which a peer leaves the fleet view (it comes back at
    /// its first good answer; a draining peer leaves at once).
    pub failures: u32,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            peers: Vec::new(),
            peers_dns: String::new(),
            check_interval_ms: 1_000,
            check_timeout_ms: 500,
            failures: 2,
        }
    }
}

/// The TLS client listener. Certificate files are read at start and re-read on every reload;
/// new connections use what was read last, established ones keep their session.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TlsConfig {
    /// `HOST:PORT` of the TLS listener. Empty (the default): no TLS listener. It runs beside
    /// the plaintext `proxy.listen`; set `proxy.listen = ""` to serve TLS only.
    pub listen: String,
    /// PEM certificate chain presented to clients, leaf first.
    pub cert_file: String,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM CA certificate(s). Set: mutual TLS, every client must present a certificate
    /// signed by one of them or the handshake fails. Empty: no client certificate asked.
    pub client_ca_file: String,
    /// Time a client has to complete the TLS handshake before it is disconnected.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listen: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            handshake_timeout_ms: 5_000,
        }
    }
}

/// TLS to the backend nodes (pipelined and dedicated connections and topology discovery).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct BackendTlsConfig {
    /// Connect to every node with TLS (for `tls-port` servers; `tls-cluster yes` clusters).
    pub enabled: bool,
    /// PEM CA certificate(s) the nodes' certificates must chain to. Required when enabled.
    pub ca_file: String,
    /// The name node certificates are verified against (and sent as SNI). Empty: the host of
    /// each node's address (an IP address is matched against the certificate's IP SANs).
    pub server_name: String,
    /// PEM client certificate chain, for nodes that require one (`tls-auth-clients yes`).
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
}

/// Client authentication: a password for the default user and/or named users. Empty (the
/// default): no authentication, like Redis' `nopass` default user.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Password of the default user (`AUTH password`), like Redis' `requirepass`.
    pub password: Option<Secret>,
    /// Named users (`AUTH name password`).
    pub users: Vec<UserConfig>,
}

/// One named user.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct UserConfig {
    /// The user name.
    pub name: String,
    /// Its password.
    pub password: Secret,
    /// Command rules applied in order, as in Redis ACL: `+@all`, `-@dangerous`, `+get`,
    /// `-config|set`, `allcommands`, `nocommands`. Nothing is allowed until a rule allows it.
    pub commands: Vec<String>,
    /// Key prefixes the user may touch; empty = every key.
    pub key_prefixes: Vec<String>,
}

/// How particular commands are served.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CommandsConfig {
    /// Serve FLUSHALL and FLUSHDB (sent to every master). `false` refuses them with an error.
    pub allow_flush: bool,
    /// Where EVAL/EVALSHA/FCALL without keys run: `"random"` (a different master each time)
    /// or one node's `HOST:PORT`.
    pub keyless_scripts: String,
    /// Commands refused with an error, by their real name: a command (`"KEYS"`) or one
    /// subcommand (`"CLIENT KILL"`).
    pub deny: Vec<String>,
    /// Renamed commands: real name → the name clients must use (`""` disables it), like
    /// Redis' `rename-command`.
    pub rename: BTreeMap<String, String>,
    /// Key-less node-administration commands (`"CONFIG SET"`, `"CONFIG"` for every
    /// subcommand, `"DEBUG"`, `"SAVE"` …) to send to every master, replies merged (all
    /// must agree). Refused with an error unless listed here.
    pub allow_admin: Vec<String>,
    /// Serve commands that write keys of several slots (RENAME, SMOVE, LMOVE, MSETNX, COPY,
    /// the *STORE forms, PFMERGE, BITOP …) across slots, in steps that are not atomic; off:
    /// CROSSSLOT, as a cluster node answers. See README "Writes across slots".
    pub non_atomic_cross_slot_writes: bool,
    /// Commands the built-in Redis 7.0 table does not know (module commands such as
    /// `JSON.SET`, newer commands), by name: their arity, flags and key positions, so they
    /// are routed by key instead of refused. Start-only.
    pub custom: BTreeMap<String, CustomCommandConfig>,
}

/// One `[commands.custom."NAME"]` declaration: what `COMMAND INFO NAME` says of the command
/// on a server that has it. Keys are a fixed range (`first_key`, `last_key`, `step`) or
/// counted (`numkeys_index`); one of the two is required.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct CustomCommandConfig {
    /// `N`: exactly N arguments; `-N`: at least N (the command name counts). Required.
    pub arity: Option<i64>,
    /// Redis flags: `write` or `readonly` (readonly commands may be served by replicas under
    /// a replica read policy), `blocking` (served on a dedicated connection), `fast`,
    /// `denyoom`, `noscript`, `no_multi`, `loading`, `stale`, `allow_busy`,
    /// `skip_monitor`, `skip_slowlog`.
    pub flags: Vec<String>,
    /// Index of the first key (1 = the first argument after the name).
    pub first_key: Option<i64>,
    /// Index of the last key; negative counts from the end (-1 = the last argument).
    /// Default: `first_key`.
    pub last_key: Option<i64>,
    /// Distance between keys (2 for key/value pairs). Default 1.
    pub step: Option<i64>,
    /// Index of the argument that holds the number of keys, which follow it (EVAL-like);
    /// instead of `first_key`/`last_key`.
    pub numkeys_index: Option<i64>,
}

impl CustomCommandConfig {
    /// The declaration the command table checks and builds a spec from.
    pub fn declaration(&self) -> crate::command::custom::Declaration {
        crate::command::custom::Declaration {
            arity: self.arity,
            flags: self.flags.clone(),
            first_key: self.first_key,
            last_key: self.last_key,
            step: self.step,
            numkeys_index: self.numkeys_index,
        }
    }
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            allow_flush: true,
            keyless_scripts: "random".into(),
            deny: Vec::new(),
            rename: BTreeMap::new(),
            allow_admin: Vec::new(),
            non_atomic_cross_slot_writes: false,
            custom: BTreeMap::new(),
        }
    }
}

/// A configured command name (`"CONFIG SET"`) as the command table spells it (`config|set`).
fn table_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join("|")
        .to_ascii_lowercase()
}

/// The key path of a `[commands.custom]` declaration's field (`field: None`: the
/// declaration), its name quoted as TOML quotes it when it holds more than letters, digits,
/// `_` and `-` (`commands.custom."JSON.SET".arity`).
fn custom_path(name: &str, field: Option<&str>) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let name = if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    };
    match field {
        Some(field) => format!("commands.custom.{name}.{field}"),
        None => format!("commands.custom.{name}"),
    }
}

/// Commands no fan-out can serve: they turn the connection into a stream or a replication
/// link. `commands.allow_admin` cannot name them.
pub const NEVER_ADMIN_FAN_OUT: &[&str] = &["monitor", "sync", "psync", "replconf"];

impl CommandsConfig {
    /// `allow_admin` as command-table names: lower case, subcommands as `config|set`.
    pub fn allowed_admin_names(&self) -> Vec<String> {
        self.allow_admin.iter().map(|n| table_name(n)).collect()
    }

    /// `deny` as command-table names: lower case, subcommands as `client|kill`.
    pub fn denied_names(&self) -> Vec<String> {
        self.deny.iter().map(|n| table_name(n)).collect()
    }

    /// The `[commands.custom]` declarations, as the command table takes them.
    pub fn custom_declarations(&self) -> Vec<(&str, crate::command::custom::Declaration)> {
        self.custom
            .iter()
            .map(|(name, c)| (name.as_str(), c.declaration()))
            .collect()
    }

    /// The commands `[commands.custom]` declares, built (and leaked: call once per proxy
    /// start), or `None` when none is declared or the declarations are invalid (which
    /// [`Config::validate`] reports first).
    pub fn custom_commands(&self) -> Option<&'static crate::command::custom::CustomCommands> {
        if self.custom.is_empty() {
            return None;
        }
        let declarations = self.custom_declarations();
        let built = crate::command::custom::CustomCommands::build(
            declarations.iter().map(|(name, d)| (*name, d)),
        )
        .ok()?;
        Some(Box::leak(Box::new(built)))
    }

    /// The node key-less scripts are pinned to, if one is configured.
    pub fn keyless_scripts_node(&self) -> Option<&str> {
        (self.keyless_scripts != "random").then_some(self.keyless_scripts.as_str())
    }
}

/// The most `proxy.reply_hold_ms` may be: past it, holding replies is a latency bug, not a
/// trade-off.
pub const MAX_REPLY_HOLD_MS: u64 = 1000;

/// The client-facing side.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// Address clients connect to, `HOST:PORT`. Port 0 picks a free port (tests). Empty: no
    /// plaintext listener (then `tls.listen` must be set).
    pub listen: String,
    /// Worker threads, each owning its clients and backend connections. 0 = one per core.
    pub workers: usize,
    /// Replies a single client may have outstanding before slotgate stops reading from it
    /// (backpressure, not an error).
    pub max_pipeline_depth: usize,
    /// Clients connected at once, over both listeners. One more is told
    /// `-ERR max number of clients reached` and closed.
    pub max_clients: usize,
    /// On SIGTERM/SIGINT, time in-flight requests have to finish before the remaining clients
    /// are closed anyway.
    pub drain_timeout_ms: u64,
    /// Largest single request, in bytes as encoded on the wire. A bigger one is answered
    /// `-ERR Protocol error: request too large …` as soon as its headers say so, and the client
    /// is closed. Default 1 GiB, Redis' `client-query-buffer-limit`.
    pub max_request_bytes: usize,
    /// Bytes of one client's requests read but not yet answered plus replies not yet written
    /// to it, beyond which slotgate stops reading that client until it drains (backpressure,
    /// not an error). Also the most a transaction may queue between MULTI and EXEC.
    pub max_pending_bytes: usize,
    /// Close a client that sent nothing for this long while it is owed nothing (Redis'
    /// `timeout`). Subscribed and blocked clients are never closed for it. 0 = never.
    pub client_idle_timeout_ms: u64,
    /// A subscribed client whose unwritten output reaches this many bytes is disconnected
    /// (Redis' `client-output-buffer-limit pubsub` hard limit). 0 = no hard limit.
    pub pubsub_output_hard_limit_bytes: usize,
    /// A subscribed client whose unwritten output stays at or above this many bytes for
    /// `pubsub_output_soft_limit_ms` is disconnected (the soft limit). 0 = no soft limit.
    pub pubsub_output_soft_limit_bytes: usize,
    /// How long a subscriber may stay over the soft limit.
    pub pubsub_output_soft_limit_ms: u64,
    /// Longest a ready reply waits for the other replies to the same client read, so that a
    /// pipeline spread over several nodes comes back in one write (as Redis writes one read's
    /// replies at once). 0 = never wait: each reply is written as soon as it is ready.
    pub reply_hold_ms: u64,
    /// File the process id is written to once the listeners are bound, removed on a clean
    /// exit; start is refused while it names a live process. Empty (the default): none.
    pub pid_file: String,
    /// `HOST:PORT` cluster-aware clients are told to connect to for this instance (CLUSTER
    /// SLOTS / SHARDS / NODES / MYID), and which its fleet peers show. Empty (the default):
    /// the address the client connected to, as a one-node cluster. With `[fleet] peers`, the
    /// slots are spread over the live instances of the fleet. Start-only.
    pub announce: String,
    /// Unix socket path on which this process hands itself over to a successor started with
    /// `slotgate --take-over` (listening sockets, then each client connection with its
    /// session). Empty (the default): upgrades in place are off. Start-only.
    pub upgrade_socket: String,
    /// During a hand-over, how long a client session that cannot move yet (inside MULTI or
    /// WATCH, blocked, MONITOR, TLS …) is waited for; after it, such sessions are closed at a
    /// request boundary (as in a drain, within `drain_timeout_ms`).
    pub upgrade_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:6380".into(),
            workers: 0,
            max_pipeline_depth: 16 * 1024,
            max_clients: 10_000,
            drain_timeout_ms: 10_000,
            max_request_bytes: 1024 * 1024 * 1024,
            max_pending_bytes: 64 * 1024 * 1024,
            client_idle_timeout_ms: 0,
            pubsub_output_hard_limit_bytes: 32 * 1024 * 1024,
            pubsub_output_soft_limit_bytes: 8 * 1024 * 1024,
            pubsub_output_soft_limit_ms: 60_000,
            reply_hold_ms: 1,
            pid_file: String::new(),
            announce: String::new(),
            upgrade_socket: String::new(),
            upgrade_timeout_ms: 10_000,
        }
    }
}

impl ProxyConfig {
    /// The per-client resource limits: request size, pending bytes, subscriber output.
    fn validate_client_limits(&self, fail: &mut impl FnMut(&str, String)) {
        if self.max_request_bytes < 1024 {
            fail("proxy.max_request_bytes", "must be at least 1024".into());
        }
        if self.max_request_bytes > crate::resp::MAX_REQUEST_LEN {
            fail(
                "proxy.max_request_bytes",
                format!(
                    "must be at most {} (4 GiB - 1)",
                    crate::resp::MAX_REQUEST_LEN
                ),
            );
        }
        if self.max_pending_bytes < 1024 {
            fail("proxy.max_pending_bytes", "must be at least 1024".into());
        }
        if self.reply_hold_ms > MAX_REPLY_HOLD_MS {
            fail(
                "proxy.reply_hold_ms",
                format!("must be at most {MAX_REPLY_HOLD_MS} (0 = replies are never held)"),
            );
        }
        let (hard, soft) = (
            self.pubsub_output_hard_limit_bytes,
            self.pubsub_output_soft_limit_bytes,
        );
        if hard > 0 && soft > hard {
            fail(
                "proxy.pubsub_output_soft_limit_bytes",
                format!(
                    "{soft} is above proxy.pubsub_output_hard_limit_bytes ({hard}): \
                     the soft limit could never apply"
                ),
            );
        }
    }
}

/// The Redis Cluster behind the proxy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// Seed nodes, `HOST:PORT`. Start-up succeeds if any one of them answers.
    pub seeds: Vec<String>,
    /// Refuse to start (and refuse a refreshed table) unless all 16384 slots have a master.
    pub require_full_coverage: bool,
    /// How long start-up keeps trying when no seed answers yet (a name not in DNS yet, nodes
    /// still starting: Kubernetes), retrying with back-off and logging once, before giving up.
    /// 0 (the default): give up at the first failed discovery. Also bounds the first Sentinel
    /// resolution in pool mode. Start-only.
    pub startup_wait_ms: u64,
    /// Period of the background topology refresh.
    pub refresh_interval_ms: u64,
    /// Minimum gap between two on-demand refreshes (after MOVED or a backend failure).
    pub refresh_min_gap_ms: u64,
    /// MOVED/ASK redirects one request may follow before it fails (a loop guard).
    pub max_redirects: u8,
    /// What happens to requests for a node that is down: `hold` them until the node (or its
    /// promoted replica) answers, up to `backend.request_timeout_ms`; or `fail-fast`.
    pub when_node_down: WhenNodeDown,
    /// Redis 6 ACL user slotgate authenticates as on every cluster node (needs `password`).
    pub username: Option<String>,
    /// Password sent with `AUTH` on every new connection to a cluster node (the nodes'
    /// `requirepass`, or `username`'s password): discovery, requests, pinned connections,
    /// health checks. Never logged. Start-only in cluster mode; in pool mode (with `username`)
    /// the login of the cluster a move onto a cluster goes to (`migrate start --to-cluster`),
    /// read when the move starts (a reload may set it before).
    pub password: Option<Secret>,
    /// Databases clients may `SELECT` (`0..databases`). A cluster serves only database 0:
    /// the others are emulated, each in a key namespace of its own that clients never see.
    /// 1 (the default): only database 0, and `SELECT` of another is refused. Start-only.
    pub databases: u32,
}

/// Treatment of requests for a node that is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenNodeDown {
    /// Keep retrying until the request's deadline (rides out a failover).
    Hold,
    /// Answer with an error at once.
    FailFast,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seeds: Vec::new(),
            require_full_coverage: true,
            startup_wait_ms: 0,
            refresh_interval_ms: 10_000,
            refresh_min_gap_ms: 100,
            max_redirects: 5,
            when_node_down: WhenNodeDown::Hold,
            username: None,
            password: None,
            databases: 1,
        }
    }
}

/// One standalone pool: a master, its replicas, and how to reach them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PoolConfig {
    /// The master's `HOST:PORT`. Empty when the pool follows Sentinel (`sentinels`).
    pub master: String,
    /// The replicas' `HOST:PORT`: where reads go under a replica read policy.
    pub replicas: Vec<String>,
    /// Sentinels (`HOST:PORT`) that name this pool's master, instead of a fixed `master`.
    pub sentinels: Vec<String>,
    /// The master name the sentinels monitor (`sentinel monitor NAME …`); needs `sentinels`.
    pub master_name: Option<String>,
    /// Where this pool's read-only commands go; default `backend.read_policy`.
    pub read_policy: Option<ReadPolicy>,
    /// Ketama weight (Twemproxy's `host:port:weight`), at least 1.
    pub weight: u32,
    /// Ketama server name (Twemproxy's `host:port:weight name`). Without it the name is the
    /// master's `host:port` (just `host` for port 11211, as Twemproxy does).
    pub ketama_name: Option<String>,
    /// Redis 6 ACL user for backend connections (needs `password`).
    pub username: Option<String>,
    /// Password sent with `AUTH` on every new backend connection of this pool. Never logged.
    pub password: Option<Secret>,
    /// Redis 6 ACL user for connections to this pool's sentinels (needs `sentinel_password`).
    pub sentinel_username: Option<String>,
    /// Password sent with `AUTH` to this pool's sentinels (their `requirepass`). Never logged.
    pub sentinel_password: Option<Secret>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            master: String::new(),
            replicas: Vec::new(),
            sentinels: Vec::new(),
            master_name: None,
            read_policy: None,
            weight: 1,
            ketama_name: None,
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
        }
    }
}

impl PoolConfig {
    /// True when the pool's master is named by Sentinel rather than fixed in config.
    pub fn uses_sentinel(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// The name this pool has on a ketama continuum.
    pub fn ketama_server_name(&self) -> String {
        if let Some(name) = &self.ketama_name {
            return name.clone();
        }
        match self.master.rsplit_once(':') {
            Some((host, "11211")) => host.to_string(),
            _ => self.master.clone(),
        }
    }
}

/// A secret string: readable through [`Secret::expose`], shown as `***` by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How keys are placed on pools.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PlacementConfig {
    /// `slots` (hash slots and the slot map) or `ketama` (Twemproxy's consistent hashing).
    pub distribution: Distribution,
    /// Ketama key hash, Twemproxy's names (`fnv1a_64`, `md5`, `murmur`, `crc32a` …).
    pub hash: KeyHash,
    /// Two characters delimiting the hashed part of a key, Twemproxy's `hash_tag` (`"{}"`).
    /// Ketama: none unless set (as Twemproxy). Slots: always `{}`, the only value accepted.
    pub hash_tag: Option<String>,
    /// Co-location rules: keys matching a rule's patterns share one hash slot (both modes;
    /// see [`crate::placement::colocate`]).
    pub colocate: Vec<ColocateRule>,
}

/// One `[[placement.colocate]]` rule: every key matching one of `keys` lives in one hash slot,
/// as if it carried the hash tag `{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColocateRule {
    /// The group's name, which is also its hash tag (`{name}`).
    pub name: String,
    /// Glob patterns (Redis `KEYS` syntax, case-sensitive) of the group's keys.
    pub keys: Vec<String>,
}

/// Key distribution in pool mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// CRC16 hash slots, assigned to pools by `[slots]`.
    #[default]
    Slots,
    /// Twemproxy's ketama continuum over the pools.
    Ketama,
}

/// Connections to backend nodes.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct BackendConfig {
    /// Pipelined connections per node per worker. A client always uses the same one per node,
    /// so its commands to one node keep their order.
    pub connections_per_node: usize,
    /// Time allowed to establish a backend connection.
    pub connect_timeout_ms: u64,
    /// Time allowed for a backend to answer a request; past it the request fails with an error.
    pub request_timeout_ms: u64,
    /// After a failed connect, requests to that node fail fast for this long before the next try.
    pub reconnect_backoff_ms: u64,
    /// Nodes known by host name are resolved again this often (every connect resolves too):
    /// connections to an address the name no longer gives are replaced, so a node that comes
    /// back on a new IP under the same name is followed. 0: only on connect.
    pub resolve_interval_ms: u64,
    /// A script (EVAL, EVALSHA, FCALL and their `_RO` forms) still running when its reply is
    /// `request_timeout_ms` late is killed by slotgate (SCRIPT KILL or FUNCTION KILL on a
    /// connection of its own); its client gets Redis' error for a killed script. A script that
    /// wrote cannot be killed: its client then gets a timeout error saying so.
    pub kill_slow_scripts: bool,
    /// Where read-only commands go (both modes; a pool's own `read_policy` overrides it).
    pub read_policy: ReadPolicy,
    /// TLS to the nodes.
    pub tls: BackendTlsConfig,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            connections_per_node: 1,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            reconnect_backoff_ms: 100,
            resolve_interval_ms: 5_000,
            kill_slow_scripts: false,
            read_policy: ReadPolicy::Master,
            tls: BackendTlsConfig::default(),
        }
    }
}

/// Where a shard's read-only commands go. Writes always go to the master.
///
/// Any policy but `master` gives up read-your-writes: a replica applies a write only when
/// asynchronous replication brings it there, so a client may not see its own write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// Every command to the master.
    #[default]
    Master,
    /// Reads to a healthy replica (picked per client); the master when none is healthy, and
    /// for a read retried after its replica failed.
    PreferReplica,
    /// Reads to a healthy replica only; a clear error when none is healthy.
    Replica,
    /// Reads rotate over the master and the healthy replicas, request by request.
    RoundRobin,
}

impl ReadPolicy {
    /// The config spelling (`prefer-replica` …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPolicy::Master => "master",
            ReadPolicy::PreferReplica => "prefer-replica",
            ReadPolicy::Replica => "replica",
            ReadPolicy::RoundRobin => "round-robin",
        }
    }
}

/// Active health checks: a `PING` to every master and replica of the slot table each
/// `interval_ms`, from one task (not per worker).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Time between two checks of a node; 0 disables the checks (every node counts as up).
    pub interval_ms: u64,
    /// Time a node has to answer one check (connect, AUTH and PING).
    pub timeout_ms: u64,
    /// Consecutive failed checks after which an up node is marked down.
    pub failures: u32,
    /// Consecutive good checks after which a down node is marked up again.
    pub successes: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 1_000,
            timeout_ms: 500,
            failures: 3,
            successes: 2,
        }
    }
}

/// RESP parsing limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProtocolConfig {
    /// Largest bulk string accepted, in bytes (Redis' `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most elements in one multibulk request.
    pub max_multibulk_len: usize,
    /// Longest inline command line, in bytes.
    pub max_inline_len: usize,
    /// Deepest nesting of arrays in a backend reply (replies the proxy parses itself are
    /// capped at 64 levels whatever this says).
    pub max_nesting_depth: usize,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        let limits = crate::resp::Limits::default();
        ProtocolConfig {
            max_bulk_len: limits.max_bulk_len,
            max_multibulk_len: limits.max_multibulk_len,
            max_inline_len: limits.max_inline_len,
            max_nesting_depth: limits.max_depth,
        }
    }
}

impl ProtocolConfig {
    /// The decoder limits these settings describe (the request size limit is
    /// `proxy.max_request_bytes`, set by the worker for client decoders).
    pub fn limits(&self) -> crate::resp::Limits {
        crate::resp::Limits {
            max_bulk_len: self.max_bulk_len,
            max_multibulk_len: self.max_multibulk_len,
            max_inline_len: self.max_inline_len,
            max_depth: self.max_nesting_depth,
            ..crate::resp::Limits::default()
        }
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full `tracing` filter directive.
    pub level: String,
    /// Line format on stderr.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format (text, json)")),
        }
    }
}

/// The slow log: requests whose reply took longer than a threshold, from the proxy reading
/// the request to its reply being ready for the client. Start-only.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SlowlogConfig {
    /// Requests taking at least this many microseconds are logged; 0 logs every request, a
    /// negative value disables the slow log (Redis' `slowlog-log-slower-than`).
    pub log_slower_than_us: i64,
    /// Entries kept (Redis' `slowlog-max-len`); older ones are dropped.
    pub max_len: usize,
}

impl Default for SlowlogConfig {
    fn default() -> Self {
        SlowlogConfig {
            log_slower_than_us: 10_000,
            max_len: 128,
        }
    }
}

/// Hot keys: a sample of routed requests' keys counted per worker with bounded memory, the
/// top ones published every interval. Start-only.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HotkeysConfig {
    /// Sample keys at all. Off: one predictable branch per request.
    pub enabled: bool,
    /// One routed request in this many has its key counted.
    pub sample_rate: u32,
    /// Keys published per interval.
    pub top: usize,
    /// Length of one counting window, in milliseconds.
    pub interval_ms: u64,
}

impl Default for HotkeysConfig {
    fn default() -> Self {
        HotkeysConfig {
            enabled: false,
            sample_rate: 16,
            top: 10,
            interval_ms: 10_000,
        }
    }
}

/// The admin HTTP listener.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AdminConfig {
    /// `HOST:PORT` of the admin HTTP listener (`/healthz`, `/readyz`, `/topology`, `/config`,
    /// `/metrics`, `/stats`, and the dashboard at `/`). Empty (the default) disables it. It
    /// has no authentication: keep it on loopback or a private network.
    pub listen: String,
}

/// One problem in a configuration, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `backend.request_timeout_ms`; empty for whole-file problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single problem at `path`.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

impl Config {
    /// Parse TOML text. Unknown keys and type errors are reported with their key paths; this
    /// does not run [`Config::validate`].
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::deserialize_reporting(toml::Deserializer::new(text))
    }

    /// [`Config::parse`] for a TOML tree already parsed (the file with environment overrides
    /// applied): the same unknown-key and type checks.
    fn from_table(table: toml::Table) -> Result<Config, ConfigErrors> {
        Config::deserialize_reporting(toml::Value::Table(table))
    }

    /// Deserialize from a TOML deserializer, recording every unknown key and the key path of
    /// a type error.
    fn deserialize_reporting<'de, D>(de: D) -> Result<Config, ConfigErrors>
    where
        D: serde::Deserializer<'de, Error = toml::de::Error>,
    {
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignoring = serde_ignored::Deserializer::new(de, &mut record);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(ignoring);
        let mut errors: Vec<ConfigError> = unknown
            .into_iter()
            .map(|path| ConfigError {
                path,
                message: "unknown key".into(),
            })
            .collect();
        match parsed {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.into_inner().message().trim().to_string();
                errors.push(ConfigError {
                    path: if path == "." { String::new() } else { path },
                    message,
                });
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Read and parse a TOML file (without validating it).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::one("", format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Check every value; returns all problems found, each with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut fail = |path: &str, message: String| {
            errors.push(ConfigError {
                path: path.into(),
                message,
            })
        };

        if self.proxy.listen.is_empty() && self.tls.listen.is_empty() {
            fail(
                "proxy.listen",
                "is empty and so is tls.listen: no listener at all".into(),
            );
        } else if !self.proxy.listen.is_empty() {
            if let Err(m) = check_host_port(&self.proxy.listen) {
                fail("proxy.listen", m);
            }
        }
        self.validate_tls(&mut fail);
        for (i, peer) in self.fleet.peers.iter().enumerate() {
            if let Err(m) = check_host_port(peer) {
                fail(&format!("fleet.peers[{i}]"), m);
            }
        }
        if !self.fleet.peers.is_empty() && self.admin.listen.is_empty() {
            fail(
                "fleet.peers",
                "needs admin.listen: the instances of a fleet reach each other there".into(),
            );
        }
        if !self.fleet.peers_dns.is_empty() {
            if let Err(m) = check_host_port(&self.fleet.peers_dns) {
                fail("fleet.peers_dns", format!("{m} (NAME:ADMIN_PORT)"));
            }
            if self.admin.listen.is_empty() {
                fail(
                    "fleet.peers_dns",
                    "needs admin.listen: the instances of a fleet reach each other there".into(),
                );
            }
            if self.proxy.announce.is_empty() {
                fail(
                    "fleet.peers_dns",
                    "needs proxy.announce: the instances it finds make up the fleet view \
                     cluster-aware clients are shown, which an instance without an announce \
                     address has not"
                        .into(),
                );
            }
        }
        if !self.proxy.announce.is_empty() {
            if let Err(m) = check_host_port(&self.proxy.announce) {
                fail("proxy.announce", m);
            }
        }
        // sockaddr_un's sun_path: 108 bytes with the terminating NUL.
        if self.proxy.upgrade_socket.len() > 107 {
            fail(
                "proxy.upgrade_socket",
                "a Unix socket path is at most 107 bytes".into(),
            );
        }
        if !self.proxy.upgrade_socket.is_empty() && self.proxy.upgrade_timeout_ms == 0 {
            fail("proxy.upgrade_timeout_ms", "must be at least 1".into());
        }
        for (key, value) in [
            ("fleet.check_interval_ms", self.fleet.check_interval_ms),
            ("fleet.check_timeout_ms", self.fleet.check_timeout_ms),
            ("fleet.failures", u64::from(self.fleet.failures)),
        ] {
            if value == 0 {
                fail(key, "must be at least 1".into());
            }
        }
        if self.proxy.max_clients == 0 {
            fail("proxy.max_clients", "must be at least 1".into());
        }
        if let Some(node) = self.commands.keyless_scripts_node() {
            if let Err(m) = check_host_port(node) {
                fail("commands.keyless_scripts", format!("\"random\" or {m}"));
            }
        }
        if self.proxy.workers > 1024 {
            fail(
                "proxy.workers",
                "must be at most 1024 (0 = one per core)".into(),
            );
        }
        if !self.admin.listen.is_empty() {
            if let Err(m) = check_host_port(&self.admin.listen) {
                fail("admin.listen", m);
            }
        }
        if self.proxy.max_pipeline_depth == 0 {
            fail("proxy.max_pipeline_depth", "must be at least 1".into());
        }
        self.proxy.validate_client_limits(&mut fail);
        if let Err(e) = crate::placement::Colocation::new(&self.placement.colocate) {
            fail("placement.colocate", e.to_string());
        }
        if self.slowlog.max_len > 1_000_000 {
            fail("slowlog.max_len", "must be at most 1000000".into());
        }
        if self.hotkeys.sample_rate == 0 {
            fail("hotkeys.sample_rate", "must be at least 1".into());
        }
        if !(1..=1000).contains(&self.hotkeys.top) {
            fail("hotkeys.top", "must be between 1 and 1000".into());
        }
        if self.hotkeys.interval_ms < 100 {
            fail("hotkeys.interval_ms", "must be at least 100".into());
        }

        let pool_mode = self.is_pool_mode();
        // Pool mode may name a cluster only as the destination of a move onto it.
        let to_cluster = self.migration.to_cluster.is_some();
        if pool_mode && !to_cluster && !self.cluster.seeds.is_empty() {
            fail(
                "cluster.seeds",
                "cluster mode ([cluster] seeds) and pool mode ([pools]) are exclusive; keep one \
                 (pool mode names a cluster only while moving onto it: migration.to_cluster)"
                    .into(),
            );
        }
        if !pool_mode && self.cluster.seeds.is_empty() {
            fail(
                "cluster.seeds",
                "at least one seed node is required (or pass --cluster HOST:PORT, \
                 or declare standalone pools with [pools.NAME])"
                    .into(),
            );
        }
        self.validate_pools(&mut fail);
        for (i, seed) in self.cluster.seeds.iter().enumerate() {
            if let Err(m) = check_host_port(seed) {
                fail(&format!("cluster.seeds[{i}]"), m);
            }
        }
        if self.cluster.refresh_interval_ms == 0 {
            fail("cluster.refresh_interval_ms", "must be at least 1".into());
        }
        if self.cluster.max_redirects == 0 {
            fail("cluster.max_redirects", "must be at least 1".into());
        }
        if self.cluster.databases == 0 {
            fail(
                "cluster.databases",
                "must be at least 1 (database 0)".into(),
            );
        }
        if self.cluster.username.is_some() && self.cluster.password.is_none() {
            fail("cluster.username", "needs a password".into());
        }

        if !(1..=64).contains(&self.backend.connections_per_node) {
            fail(
                "backend.connections_per_node",
                "must be between 1 and 64".into(),
            );
        }
        for (key, value) in [
            (
                "backend.connect_timeout_ms",
                self.backend.connect_timeout_ms,
            ),
            (
                "backend.request_timeout_ms",
                self.backend.request_timeout_ms,
            ),
        ] {
            if value == 0 {
                fail(key, "must be at least 1".into());
            }
        }

        if self.health.interval_ms > 0 {
            for (key, value) in [
                ("health.timeout_ms", self.health.timeout_ms),
                ("health.failures", u64::from(self.health.failures)),
                ("health.successes", u64::from(self.health.successes)),
            ] {
                if value == 0 {
                    fail(key, "must be at least 1".into());
                }
            }
        }

        for (key, value) in [
            ("protocol.max_bulk_len", self.protocol.max_bulk_len),
            (
                "protocol.max_multibulk_len",
                self.protocol.max_multibulk_len,
            ),
            ("protocol.max_inline_len", self.protocol.max_inline_len),
            (
                "protocol.max_nesting_depth",
                self.protocol.max_nesting_depth,
            ),
        ] {
            if value == 0 {
                fail(key, "must be at least 1".into());
            }
        }
        if self.protocol.max_bulk_len > (i64::MAX as usize) {
            fail("protocol.max_bulk_len", "is too large".into());
        }

        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            fail(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter directive",
                    self.log.level
                ),
            );
        }

        errors.extend(auth::validate(&self.auth));
        errors.extend(migration::validate(self));
        let declarations = self.commands.custom_declarations();
        for e in crate::command::custom::check(declarations.iter().map(|(n, d)| (*n, d))) {
            errors.push(ConfigError {
                path: custom_path(&e.command, e.field),
                message: e.message,
            });
        }
        let custom = |name: &str| {
            self.commands
                .custom
                .keys()
                .any(|c| c.eq_ignore_ascii_case(name))
        };
        for (i, name) in self.commands.denied_names().iter().enumerate() {
            if crate::command::lookup_full_name(name.as_bytes()).is_none() && !custom(name) {
                errors.push(ConfigError {
                    path: format!("commands.deny[{i}]"),
                    message: format!("unknown command {:?}", self.commands.deny[i]),
                });
            }
        }
        for (i, name) in self.commands.allowed_admin_names().iter().enumerate() {
            let path = format!("commands.allow_admin[{i}]");
            let parent = name.split('|').next().unwrap_or_default();
            match crate::command::lookup_full_name(name.as_bytes()) {
                None => errors.push(ConfigError {
                    path,
                    message: format!("unknown command {:?}", self.commands.allow_admin[i]),
                }),
                Some(_) if NEVER_ADMIN_FAN_OUT.contains(&parent) => errors.push(ConfigError {
                    path,
                    message: format!("{name:?} cannot be sent to every master"),
                }),
                Some(spec) if !spec.key_specs.is_empty() => errors.push(ConfigError {
                    path,
                    message: format!("{name:?} has keys: it is routed by them, not allowed here"),
                }),
                Some(_) => {}
            }
        }
        let known = |name: &str| {
            let lower = name.to_ascii_lowercase();
            crate::command::all().iter().any(|c| c.name == lower) || custom(name)
        };
        for (from, to) in &self.commands.rename {
            if !known(from) {
                errors.push(ConfigError {
                    path: format!("commands.rename.{from}"),
                    message: format!("unknown command {from:?}"),
                });
            } else if !to.is_empty() && (known(to) || to.contains(char::is_whitespace)) {
                errors.push(ConfigError {
                    path: format!("commands.rename.{from}"),
                    message: format!("{to:?} is an existing command or not a valid name"),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// True when the config declares standalone pools (pool mode) rather than a cluster.
    pub fn is_pool_mode(&self) -> bool {
        !self.pools.is_empty()
    }

    /// Pool mode: each pool's slot ranges, pools in name order. From `[slots]`, or an even
    /// split of the 16384 slots when it is empty. Entries that do not parse are skipped
    /// ([`Config::validate`] reports them).
    pub fn pool_slot_ranges(&self) -> Vec<(&str, Vec<(u16, u16)>)> {
        let mut out: Vec<(&str, Vec<(u16, u16)>)> = self
            .pools
            .keys()
            .map(|name| (name.as_str(), Vec::new()))
            .collect();
        if self.slots.is_empty() {
            let n = out.len();
            for (i, (_, ranges)) in out.iter_mut().enumerate() {
                let first = i * SLOT_COUNT / n;
                let last = (i + 1) * SLOT_COUNT / n;
                if last > first {
                    ranges.push((first as u16, (last - 1) as u16));
                }
            }
            return out;
        }
        for (key, pool) in &self.slots {
            let Ok(range) = parse_slot_range(key) else {
                continue;
            };
            if let Some((_, ranges)) = out.iter_mut().find(|(name, _)| *name == pool) {
                ranges.push(range);
            }
        }
        out
    }

    /// Pool mode, slot placement: the pool `[slots]` (or the even split) assigns each slot
    /// to, indexed by slot.
    pub fn slot_owners(&self) -> Vec<Option<&str>> {
        let mut owner: Vec<Option<&str>> = vec![None; SLOT_COUNT];
        for (pool, ranges) in self.pool_slot_ranges() {
            for (first, last) in ranges {
                owner[first as usize..=last as usize].fill(Some(pool));
            }
        }
        owner
    }

    fn validate_pools(&self, fail: &mut impl FnMut(&str, String)) {
        let pool_mode = self.is_pool_mode();
        let ketama = self.placement.distribution == Distribution::Ketama;
        if self.pools.len() > SLOT_COUNT {
            fail("pools", format!("at most {SLOT_COUNT} pools"));
        }
        let mut masters: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, pool) in &self.pools {
            let at = |key: &str| format!("pools.{name}.{key}");
            if pool.uses_sentinel() {
                if !pool.master.is_empty() {
                    fail(
                        &at("master"),
                        "a pool names either a fixed master or sentinels, not both".into(),
                    );
                }
                if pool.master_name.as_deref().is_none_or(str::is_empty) {
                    fail(
                        &at("master_name"),
                        "is required with sentinels (the name in `sentinel monitor NAME …`)".into(),
                    );
                }
                for (i, sentinel) in pool.sentinels.iter().enumerate() {
                    if let Err(m) = check_host_port(sentinel) {
                        fail(&at(&format!("sentinels[{i}]")), m);
                    }
                }
                if ketama && pool.ketama_name.is_none() {
                    fail(
                        &at("ketama_name"),
                        "is required with sentinels and ketama placement: the continuum must \
                         not change when Sentinel promotes another server"
                            .into(),
                    );
                }
            } else if pool.master_name.is_some() {
                fail(&at("master_name"), "needs sentinels".into());
            } else if pool.master.is_empty() {
                fail(
                    &at("master"),
                    "is required (HOST:PORT), or sentinels and master_name".into(),
                );
            } else if let Err(m) = check_host_port(&pool.master) {
                fail(&at("master"), m);
            } else if let Some(other) = masters.insert(&pool.master, name) {
                fail(
                    &at("master"),
                    format!("{} is already the master of pool {other:?}", pool.master),
                );
            }
            for (i, replica) in pool.replicas.iter().enumerate() {
                if let Err(m) = check_host_port(replica) {
                    fail(&at(&format!("replicas[{i}]")), m);
                }
            }
            if pool.weight == 0 {
                fail(&at("weight"), "must be at least 1".into());
            }
            if pool.read_policy.unwrap_or(self.backend.read_policy) == ReadPolicy::Replica
                && pool.replicas.is_empty()
            {
                fail(
                    &at("replicas"),
                    "read_policy \"replica\" needs at least one replica".into(),
                );
            }
            if let Some(n) = &pool.ketama_name {
                if n.is_empty() || n.len() > crate::placement::ketama::MAX_NAME_LEN {
                    fail(&at("ketama_name"), "must be 1 to 80 bytes long".into());
                }
            }
            if pool.username.is_some() && pool.password.is_none() {
                fail(&at("username"), "needs a password".into());
            }
            if pool.sentinel_username.is_some() && pool.sentinel_password.is_none() {
                fail(&at("sentinel_username"), "needs a sentinel_password".into());
            }
            if pool.sentinel_password.is_some() && !pool.uses_sentinel() {
                fail(&at("sentinel_password"), "needs sentinels".into());
            }
        }

        if !pool_mode {
            if !self.slots.is_empty() {
                fail("slots", "a slot map needs pools ([pools.NAME])".into());
            }
            // Co-location rules apply in both modes; the rest places keys on pools.
            let pool_only = PlacementConfig {
                colocate: Vec::new(),
                ..self.placement.clone()
            };
            if pool_only != PlacementConfig::default() {
                fail(
                    "placement",
                    "placement settings other than colocate apply to pool mode only; a \
                     cluster places keys itself"
                        .into(),
                );
            }
            return;
        }

        match (&self.placement.hash_tag, ketama) {
            (Some(tag), true) if !(tag.is_empty() || tag.len() == 2) => fail(
                "placement.hash_tag",
                format!("{tag:?} must be two characters, e.g. \"{{}}\" (or empty for none)"),
            ),
            (Some(tag), false) if tag != "{}" => fail(
                "placement.hash_tag",
                "slot placement always uses \"{}\" hash tags, as Redis Cluster".into(),
            ),
            _ => {}
        }
        if ketama {
            if !self.slots.is_empty() {
                fail(
                    "slots",
                    "a slot map is not used with placement.distribution = \"ketama\"".into(),
                );
            }
            return;
        }

        let mut owner: Vec<Option<&str>> = vec![None; SLOT_COUNT];
        for (key, pool) in &self.slots {
            let at = format!("slots.{key}");
            let (first, last) = match parse_slot_range(key) {
                Ok(range) => range,
                Err(m) => {
                    fail(&at, m);
                    continue;
                }
            };
            if !self.pools.contains_key(pool) {
                fail(&at, format!("names pool {pool:?}, which is not declared"));
                continue;
            }
            for slot in first..=last {
                match &mut owner[slot as usize] {
                    Some(other) => {
                        fail(
                            &at,
                            format!("slot {slot} is already assigned to pool {other:?}"),
                        );
                        break;
                    }
                    entry => *entry = Some(pool),
                }
            }
        }
        if !self.slots.is_empty() {
            if let Some(first) = owner.iter().position(Option::is_none) {
                let last = owner[first..]
                    .iter()
                    .position(Option::is_some)
                    .map_or(SLOT_COUNT - 1, |n| first + n - 1);
                fail(
                    "slots",
                    format!(
                        "slots {first}-{last} are not assigned to any pool (all 16384 must be)"
                    ),
                );
            }
        }
    }

    fn validate_tls(&self, fail: &mut impl FnMut(&str, String)) {
        let tls = &self.tls;
        if !tls.listen.is_empty() {
            if let Err(m) = check_host_port(&tls.listen) {
                fail("tls.listen", m);
            }
            for (key, value) in [
                ("tls.cert_file", &tls.cert_file),
                ("tls.key_file", &tls.key_file),
            ] {
                if value.is_empty() {
                    fail(key, "is required with tls.listen (a PEM file)".into());
                }
            }
            if tls.handshake_timeout_ms == 0 {
                fail("tls.handshake_timeout_ms", "must be at least 1".into());
            }
        }
        let backend = &self.backend.tls;
        if backend.enabled && backend.ca_file.is_empty() {
            fail(
                "backend.tls.ca_file",
                "is required with backend.tls.enabled (the CA that signed the nodes' certificates)"
                    .into(),
            );
        }
        if backend.cert_file.is_empty() != backend.key_file.is_empty() {
            fail(
                "backend.tls.key_file",
                "backend.tls.cert_file and key_file go together: set both or neither".into(),
            );
        }
    }

    /// Listeners reachable from other machines while no client authentication is configured:
    /// one message per such listener, logged as a warning at start (Redis' protected mode
    /// idea). With `[auth]` (a password or users) nothing is named; a TLS listener with
    /// `tls.client_ca_file` authenticates its clients by certificate, so it is not named either.
    pub fn exposure_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        // The admin listener has no authentication of its own, whatever [auth] says.
        if !self.admin.listen.is_empty() && !is_loopback(&self.admin.listen) {
            out.push(format!(
                "admin.listen = {:?} is reachable from other machines and has no \
                 authentication: anyone who can reach it can read /config, /topology and \
                 /metrics and trigger POST /reload. Keep it on loopback or a private network.",
                self.admin.listen
            ));
        }
        if self.auth.password.is_some() || !self.auth.users.is_empty() {
            return out;
        }
        let mut check = |key: &str, addr: &str| {
            if !addr.is_empty() && !is_loopback(addr) {
                out.push(format!(
                    "{key} = {addr:?} is reachable from other machines and slotgate has no \
                     client authentication configured: anyone who can reach it can read and \
                     write every key. Listen on 127.0.0.1, set [auth] password or users, or \
                     use tls.listen with tls.client_ca_file (mutual TLS)."
                ));
            }
        };
        check("proxy.listen", &self.proxy.listen);
        if self.tls.client_ca_file.is_empty() {
            check("tls.listen", &self.tls.listen);
        }
        out
    }

    /// The number of worker threads to run: `proxy.workers`, or one per core when 0.
    pub fn effective_workers(&self) -> usize {
        match self.proxy.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        }
    }
}

/// Whether `addr` (`HOST:PORT`) listens on loopback only.
fn is_loopback(addr: &str) -> bool {
    match resolve(addr) {
        Ok(resolved) => resolved.ip().is_loopback(),
        Err(_) => addr.starts_with("localhost:"),
    }
}

/// `HOST:PORT` with a numeric port and a non-empty host. Names are not resolved here.
fn check_host_port(value: &str) -> Result<(), String> {
    if value.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{value:?} is not HOST:PORT")),
    }
}

/// A `[slots]` key: `"FIRST-LAST"` (inclusive) or a single slot `"N"`.
pub fn parse_slot_range(key: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{key:?} is not a slot range (FIRST-LAST or N, within 0-16383)");
    let (first, last) = match key.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (key.trim(), key.trim()),
    };
    let first: u16 = first.parse().map_err(|_| bad())?;
    let last: u16 = last.parse().map_err(|_| bad())?;
    if first > last || last as usize >= SLOT_COUNT {
        return Err(bad());
    }
    Ok((first, last))
}

/// Resolve `HOST:PORT` to its first socket address.
pub fn resolve(value: &str) -> std::io::Result<SocketAddr> {
    value.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{value} resolves to no address"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn reference_config_parses_and_validates() {
        let text = include_str!("../conf/slotgate.toml");
        let config = Config::parse(text).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_all_reported_with_paths() {
        let err = Config::parse("[proxy]\nlisten='127.0.0.1:1'\nlisten_typo=1\n[nope]\nx=1\n")
            .unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"proxy.listen_typo"), "{err}");
        assert!(paths.contains(&"nope"), "{err}");
    }

    #[test]
    fn the_fleet_view_settings_are_checked() {
        let config = Config::parse(
            "[proxy]\nannounce = \"nope\"\n[fleet]\ncheck_interval_ms = 0\nfailures = 0\n\
             peers_dns = \"no-port\"\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        for key in [
            "proxy.announce",
            "fleet.check_interval_ms",
            "fleet.failures",
            "fleet.peers_dns",
        ] {
            assert!(paths.contains(&key), "{key}: {err}");
        }
        // A DNS name needs the admin listener and an announce address.
        let config = Config::parse("[fleet]\npeers_dns = \"slotgate-fleet:9180\"\n").unwrap();
        let err = config.validate().unwrap_err();
        let said: Vec<_> = err
            .0
            .iter()
            .filter(|e| e.path == "fleet.peers_dns")
            .map(|e| e.message.as_str())
            .collect();
        assert!(said.iter().any(|m| m.contains("admin.listen")), "{err}");
        assert!(said.iter().any(|m| m.contains("proxy.announce")), "{err}");
        let config = Config::parse(
            "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n\
             [proxy]\nannounce = \"slotgate-0.slotgate:6380\"\n[admin]\nlisten = \"127.0.0.1:9180\"\n\
             [fleet]\npeers = [\"127.0.0.1:9181\"]\npeers_dns = \"slotgate-fleet.ns.svc:9180\"\n",
        )
        .unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn a_cluster_has_database_0_at_least() {
        let config =
            Config::parse("[cluster]\nseeds = ['127.0.0.1:7000']\ndatabases = 0\n").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.0.iter().any(|e| e.path == "cluster.databases"), "{err}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = Config::parse("[backend]\nrequest_timeout_ms = \"soon\"\n").unwrap_err();
        assert_eq!(err.0[0].path, "backend.request_timeout_ms", "{err}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut c = Config::default();
        c.proxy.listen = "nowhere".into();
        c.cluster.seeds = vec!["127.0.0.1:7000".into(), "bad".into()];
        c.backend.request_timeout_ms = 0;
        c.backend.connections_per_node = 0;
        c.log.level = "loud[".into();
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "proxy.listen",
                "cluster.seeds[1]",
                "backend.connections_per_node",
                "backend.request_timeout_ms",
                "log.level"
            ]
        );
    }

    #[test]
    fn custom_commands_parse_and_are_validated_with_paths() {
        let text = r#"
            [cluster]
            seeds = ["127.0.0.1:7000"]
            [commands.custom."JSON.SET"]
            arity = -4
            flags = ["write", "denyoom"]
            first_key = 1
            [commands.custom."MY.EVAL"]
            arity = -3
            flags = ["write"]
            numkeys_index = 2
            [commands]
            deny = ["my.eval"]
            rename = { "JSON.SET" = "JSET" }
        "#;
        let c = Config::parse(text).unwrap();
        c.validate().unwrap();
        let set = &c.commands.custom["JSON.SET"];
        assert_eq!((set.arity, set.first_key), (Some(-4), Some(1)));
        let custom = c.commands.custom_commands().unwrap();
        assert_eq!(custom.len(), 2);
        assert!(Config::default().commands.custom_commands().is_none());

        let err = Config::parse(
            "[commands.custom.X]
arity = 2
first_kye = 1
",
        )
        .unwrap_err();
        assert_eq!(err.0[0].path, "commands.custom.X.first_kye", "{err}");
        let mut c = Config::parse(text).unwrap();
        c.commands.custom.get_mut("JSON.SET").unwrap().arity = Some(0);
        c.commands.custom.insert(
            "GET".into(),
            CustomCommandConfig {
                arity: Some(2),
                first_key: Some(1),
                ..CustomCommandConfig::default()
            },
        );
        c.commands
            .custom
            .insert("plain".into(), CustomCommandConfig::default());
        c.commands.rename.insert("GET".into(), "my.eval".into());
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "commands.custom.GET",
                "commands.custom.\"JSON.SET\".arity",
                "commands.custom.plain.arity",
                "commands.custom.plain",
                "commands.rename.GET",
            ],
            "{err}"
        );
    }

    #[test]
    fn client_limits_are_validated_with_paths() {
        let mut c = Config::default();
        c.cluster.seeds = vec!["127.0.0.1:7000".into()];
        assert!(c.validate().is_ok());
        c.proxy.max_request_bytes = 10;
        c.proxy.max_pending_bytes = 0;
        c.proxy.pubsub_output_soft_limit_bytes = 2 << 20;
        c.proxy.pubsub_output_hard_limit_bytes = 1 << 20;
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "proxy.max_request_bytes",
                "proxy.max_pending_bytes",
                "proxy.pubsub_output_soft_limit_bytes"
            ],
            "{err}"
        );
        // No hard limit: any soft limit is fine.
        c.proxy.pubsub_output_hard_limit_bytes = 0;
        c.proxy.max_request_bytes = 1024;
        c.proxy.max_pending_bytes = 1024;
        assert!(c.validate().is_ok());
        // Requests keep 32-bit argument ranges: 4 GiB is one byte too many.
        c.proxy.max_request_bytes = 1 << 32;
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].path, "proxy.max_request_bytes", "{err}");
        assert!(err.0[0].to_string().contains("at most 4294967295"), "{err}");
        c.proxy.max_request_bytes = (1 << 32) - 1;
        assert!(c.validate().is_ok());
        // Holding replies for more than a second is refused; 0 (never hold) is fine.
        c.proxy.reply_hold_ms = 1001;
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].path, "proxy.reply_hold_ms", "{err}");
        for ok in [0, 1000] {
            c.proxy.reply_hold_ms = ok;
            assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn slowlog_and_hotkeys_parse_and_are_validated() {
        let c = Config::parse(
            "[cluster]\nseeds=[\"127.0.0.1:7000\"]\n[slowlog]\nlog_slower_than_us = -1\n\
             max_len = 2000000\n[hotkeys]\nenabled = true\nsample_rate = 0\ntop = 0\n\
             interval_ms = 10\n",
        )
        .unwrap();
        assert_eq!(c.slowlog.log_slower_than_us, -1);
        assert!(c.hotkeys.enabled);
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "slowlog.max_len",
                "hotkeys.sample_rate",
                "hotkeys.top",
                "hotkeys.interval_ms"
            ]
        );
        let defaults = Config::default();
        assert_eq!(defaults.slowlog.log_slower_than_us, 10_000);
        assert_eq!(defaults.slowlog.max_len, 128);
        assert!(!defaults.hotkeys.enabled);
    }

    #[test]
    fn tls_sections_are_validated_with_paths() {
        let c = Config::parse(
            "[cluster]\nseeds=[\"127.0.0.1:7000\"]\n[proxy]\nlisten = \"\"\nmax_clients = 0\n\
             [tls]\nlisten = \"127.0.0.1:6390\"\nhandshake_timeout_ms = 0\n\
             [backend.tls]\nenabled = true\ncert_file = \"c.pem\"\n",
        )
        .unwrap();
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        for key in [
            "proxy.max_clients",
            "tls.cert_file",
            "tls.key_file",
            "tls.handshake_timeout_ms",
            "backend.tls.ca_file",
            "backend.tls.key_file",
        ] {
            assert!(paths.contains(&key), "{key} missing in {err}");
        }
        assert!(!paths.contains(&"proxy.listen"), "TLS-only is fine: {err}");
        let mut none = Config::default();
        none.cluster.seeds = vec!["127.0.0.1:7000".into()];
        none.proxy.listen = String::new();
        let err = none.validate().unwrap_err();
        assert_eq!(err.0[0].path, "proxy.listen", "{err}");
    }

    #[test]
    fn listening_beyond_loopback_without_client_auth_is_warned_about() {
        let mut c = Config::default();
        assert!(c.exposure_warnings().is_empty(), "default is loopback");
        c.proxy.listen = "localhost:6380".into();
        assert!(c.exposure_warnings().is_empty());
        c.proxy.listen = "[::1]:6380".into();
        assert!(c.exposure_warnings().is_empty());
        c.proxy.listen = "0.0.0.0:6380".into();
        c.tls.listen = "0.0.0.0:6390".into();
        let warnings = c.exposure_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("proxy.listen"), "{warnings:?}");
        assert!(warnings[1].starts_with("tls.listen"), "{warnings:?}");
        // Mutual TLS authenticates clients: only the plaintext listener is named.
        c.tls.client_ca_file = "ca.pem".into();
        assert_eq!(c.exposure_warnings().len(), 1);
        c.proxy.listen = "192.0.2.7:6380".into();
        assert_eq!(c.exposure_warnings().len(), 1);
        // Client authentication configured: nothing to warn about.
        c.auth.password = Some(Secret::new("pw"));
        assert!(c.exposure_warnings().is_empty());
        // Except an exposed admin listener, which has no authentication of its own.
        c.admin.listen = "127.0.0.1:9180".into();
        assert!(c.exposure_warnings().is_empty());
        c.admin.listen = "0.0.0.0:9180".into();
        let warnings = c.exposure_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("admin.listen"), "{warnings:?}");
    }

    #[test]
    fn admin_and_log_sections() {
        let c = Config::parse(
            "[admin]\nlisten = \"127.0.0.1:9180\"\n[log]\nformat = \"json\"\n[proxy]\ndrain_timeout_ms = 5\n",
        )
        .unwrap();
        assert_eq!(c.admin.listen, "127.0.0.1:9180");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.proxy.drain_timeout_ms, 5);
        assert_eq!(
            Config::default().admin.listen,
            "",
            "admin is off by default"
        );
        let err = Config::parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert_eq!(err.0[0].path, "log.format", "{err}");
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());

        let mut c = Config::default();
        c.cluster.seeds = vec!["127.0.0.1:7000".into()];
        c.admin.listen = "9180".into();
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].path, "admin.listen", "{err}");
    }

    #[test]
    fn missing_seeds_is_an_error() {
        let err = Config::default().validate().unwrap_err();
        assert_eq!(err.0[0].path, "cluster.seeds");
    }

    fn pools(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn pool_config_parses_and_splits_evenly_in_name_order() {
        let c = pools(
            "[pools.b]\nmaster = \"127.0.0.1:7002\"\n[pools.a]\nmaster = \"127.0.0.1:7001\"\n\
             replicas = [\"127.0.0.1:7003\"]\n",
        );
        c.validate().unwrap();
        assert!(c.is_pool_mode());
        assert_eq!(
            c.pool_slot_ranges(),
            [("a", vec![(0, 8191)]), ("b", vec![(8192, 16383)])]
        );
    }

    #[test]
    fn slot_map_assigns_ranges() {
        let c = pools(
            "[pools.a]\nmaster = \"127.0.0.1:7001\"\n[pools.b]\nmaster = \"127.0.0.1:7002\"\n\
             [slots]\n\"0-99\" = \"b\"\n\"100-16383\" = \"a\"\n",
        );
        c.validate().unwrap();
        assert_eq!(
            c.pool_slot_ranges(),
            [("a", vec![(100, 16383)]), ("b", vec![(0, 99)])]
        );
    }

    #[test]
    fn pool_mode_problems_are_all_reported_with_paths() {
        let c = pools(
            "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n\
             [pools.a]\nmaster = \"nowhere\"\nreplicas = [\"x\"]\nweight = 0\nusername = \"u\"\n\
             [pools.b]\n\
             [slots]\n\"0-10\" = \"a\"\n\"5-20\" = \"a\"\n\"21-16383\" = \"zz\"\n\"9-x\" = \"a\"\n\
             [placement]\nhash_tag = \"<>\"\n",
        );
        let err = c.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "cluster.seeds",
            "pools.a.master",
            "pools.a.replicas[0]",
            "pools.a.weight",
            "pools.a.username",
            "pools.b.master",
            "placement.hash_tag",
            "slots.21-16383",
            "slots.5-20",
            "slots.9-x",
            "slots",
        ] {
            assert!(paths.contains(&want), "{want} missing from {err}");
        }
    }

    #[test]
    fn read_policy_and_sentinel_pools() {
        let c = pools(
            "[backend]\nread_policy = \"round-robin\"\n[health]\ninterval_ms = 200\n\
             [pools.a]\nmaster = \"127.0.0.1:7001\"\nreplicas = [\"127.0.0.1:7101\"]\n\
             read_policy = \"prefer-replica\"\n\
             [pools.b]\nsentinels = [\"127.0.0.1:26379\", \"127.0.0.1:26380\"]\n\
             master_name = \"mb\"\n",
        );
        c.validate().unwrap();
        assert_eq!(c.backend.read_policy, ReadPolicy::RoundRobin);
        assert_eq!(c.pools["a"].read_policy, Some(ReadPolicy::PreferReplica));
        assert!(c.pools["b"].uses_sentinel());
        assert!(Config::parse("[backend]\nread_policy = \"nearest\"\n").is_err());

        let bad = pools(
            "[health]\nfailures = 0\n\
             [pools.a]\nmaster = \"127.0.0.1:7001\"\nread_policy = \"replica\"\n\
             [pools.b]\nmaster = \"127.0.0.1:7002\"\nsentinels = [\"x\"]\n\
             [pools.c]\nmaster_name = \"mc\"\nsentinel_password = \"pw\"\n\
             [pools.d]\nsentinels = [\"127.0.0.1:26379\"]\nsentinel_username = \"u\"\n",
        );
        let err = bad.validate().unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "health.failures",
            "pools.a.replicas",
            "pools.b.master",
            "pools.b.master_name",
            "pools.b.sentinels[0]",
            "pools.c.master_name",
            "pools.c.sentinel_password",
            "pools.d.master_name",
            "pools.d.sentinel_username",
        ] {
            assert!(paths.contains(&want), "{want} missing from {err}");
        }
    }

    #[test]
    fn ketama_names_follow_twemproxy() {
        let mut p = PoolConfig {
            master: "10.0.0.1:6379".into(),
            ..PoolConfig::default()
        };
        assert_eq!(p.ketama_server_name(), "10.0.0.1:6379");
        p.master = "10.0.0.1:11211".into();
        assert_eq!(p.ketama_server_name(), "10.0.0.1");
        p.ketama_name = Some("redis-a".into());
        assert_eq!(p.ketama_server_name(), "redis-a");
    }

    #[test]
    fn passwords_are_not_in_debug_output() {
        let c = pools("[pools.a]\nmaster = \"127.0.0.1:1\"\npassword = \"hunter2\"\n");
        assert_eq!(c.pools["a"].password.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn cluster_credentials_are_validated_and_redacted() {
        let mut c = Config::parse(
            "[cluster]\nseeds = [\"127.0.0.1:7000\"]\nusername = \"app\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster.password.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        c.cluster.password = None;
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].path, "cluster.username", "{err}");

        // Pool mode: the credentials of the cluster a move onto a cluster would go to.
        let c = pools("[cluster]\npassword = \"pw\"\n[pools.a]\nmaster = \"127.0.0.1:1\"\n");
        c.validate().unwrap();
    }

    #[test]
    fn pools_example_parses_and_validates() {
        let text = include_str!("../conf/pools.toml");
        Config::parse(text).unwrap().validate().unwrap();
    }

    #[test]
    fn host_names_are_accepted() {
        assert!(check_host_port("redis-0.redis:6379").is_ok());
        assert!(check_host_port("[::1]:6379").is_ok());
        assert!(check_host_port(":6379").is_err());
        assert!(check_host_port("host:port").is_err());
    }
}
