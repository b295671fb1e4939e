//! Configuration: the TOML schema, its defaults, and validation.
//!
//! Every key has a default, so an empty file (or no file at all, for a sidecar driven by CLI
//! flags) is a valid configuration once a seed node is given. Unknown keys are errors, and
//! validation reports *every* problem with its key path (`backend.request_timeout_ms: …`) rather
//! than stopping at the first. Pure: parsing and validation do no I/O beyond reading the file.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The whole configuration tree.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// The client-facing side: listener and workers.
    pub proxy: ProxyConfig,
    /// The Redis Cluster behind the proxy.
    pub cluster: ClusterConfig,
    /// Connections to backend nodes.
    pub backend: BackendConfig,
    /// RESP parsing limits for client requests and backend replies.
    pub protocol: ProtocolConfig,
    /// Logging.
    pub log: LogConfig,
    /// The admin HTTP listener: health, topology, metrics, dashboard.
    pub admin: AdminConfig,
}

/// The client-facing side.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// Address clients connect to, `HOST:PORT`. Port 0 picks a free port (tests).
    pub listen: String,
    /// Worker threads, each owning its clients and backend connections. 0 = one per core.
    pub workers: usize,
    /// Replies a single client may have outstanding before slotgate stops reading from it
    /// (backpressure, not an error).
    pub max_pipeline_depth: usize,
    /// On SIGTERM/SIGINT, time in-flight requests have to finish before the remaining clients
    /// are closed anyway.
    pub drain_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:6380".into(),
            workers: 0,
            max_pipeline_depth: 16 * 1024,
            drain_timeout_ms: 10_000,
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
    /// Period of the background topology refresh.
    pub refresh_interval_ms: u64,
    /// Minimum gap between two on-demand refreshes (after MOVED or a backend failure).
    pub refresh_min_gap_ms: u64,
    /// MOVED/ASK redirects one request may follow before it fails (a loop guard).
    pub max_redirects: u8,
    /// What happens to requests for a node that is down: `hold` them until the node (or its
    /// promoted replica) answers, up to `backend.request_timeout_ms`; or `fail-fast`.
    pub when_node_down: WhenNodeDown,
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
            refresh_interval_ms: 10_000,
            refresh_min_gap_ms: 100,
            max_redirects: 5,
            when_node_down: WhenNodeDown::Hold,
        }
    }
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
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            connections_per_node: 1,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            reconnect_backoff_ms: 100,
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
    /// Deepest nesting of arrays in a backend reply.
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
    /// The decoder limits these settings describe.
    pub fn limits(&self) -> crate::resp::Limits {
        crate::resp::Limits {
            max_bulk_len: self.max_bulk_len,
            max_multibulk_len: self.max_multibulk_len,
            max_inline_len: self.max_inline_len,
            max_depth: self.max_nesting_depth,
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
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
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
        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
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

        if let Err(m) = check_host_port(&self.proxy.listen) {
            fail("proxy.listen", m);
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

        if self.cluster.seeds.is_empty() {
            fail(
                "cluster.seeds",
                "at least one seed node is required (or pass --cluster HOST:PORT)".into(),
            );
        }
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

        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
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

    #[test]
    fn host_names_are_accepted() {
        assert!(check_host_port("redis-0.redis:6379").is_ok());
        assert!(check_host_port("[::1]:6379").is_ok());
        assert!(check_host_port(":6379").is_err());
        assert!(check_host_port("host:port").is_err());
    }
}
