//! The `slotgate` command line: run the proxy, check a config file, or run the demo.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use slotgate::config::{Config, EnvOverrides, LogConfig, LogFormat};
use slotgate::local_redis::{ClusterOptions, LocalCluster};
use slotgate::pidfile::{self, PidFile};
use slotgate::{Proxy, ProxyHandle};

/// jemalloc, not glibc malloc: with glibc, RSS grew by tens of MiB with every open/close cycle
/// of 10 000 clients (freed session memory fragmented and not reused); with jemalloc it stays
/// flat (docs/BENCHMARKS.md, "Memory after open/close cycles").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Redis sharding proxy: one address for plain Redis clients in front of a Redis Cluster
/// or standalone Redis pools.
#[derive(Parser)]
#[command(name = "slotgate", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and report every problem with its key path.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Move slots between pools of a running proxy (pool mode), or every key from its pools
    /// onto a Redis Cluster, through its admin listener.
    Migrate {
        /// The running proxy's admin listener (`admin.listen`).
        #[arg(long, value_name = "HOST:PORT", env = "SLOTGATE_ADMIN_ADDR")]
        admin: String,
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Start a local 3-master/3-replica Redis Cluster and the proxy in front of it.
    Demo {
        /// Masters of the demo cluster.
        #[arg(long, default_value_t = 3)]
        masters: usize,
        /// Replicas per master.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// What `slotgate migrate` asks the running proxy.
#[derive(Subcommand)]
enum MigrateAction {
    /// Start moving a slot range (all of one pool's) to another pool, or every key from the
    /// pools onto a Redis Cluster (`--to-cluster`, docs/FROM-TWEMPROXY.md).
    Start {
        /// `FIRST-LAST` or one slot `N`.
        #[arg(long, required_unless_present = "to_cluster")]
        slots: Option<String>,
        /// The destination pool's name.
        #[arg(long, required_unless_present = "to_cluster")]
        to: Option<String>,
        /// Move every key from the pools onto the Redis Cluster of these seeds
        /// (`HOST:PORT,…`; empty: the config's `[cluster] seeds`).
        #[arg(long, value_name = "HOST:PORT,…", conflicts_with_all = ["slots", "to"], num_args = 0..=1, default_missing_value = "")]
        to_cluster: Option<String>,
    },
    /// The moves under way and their progress (JSON).
    Status,
    /// Stop the background mover (keys a request touches still move).
    Pause {
        /// One move's slot range (default: every move).
        #[arg(long)]
        slots: Option<String>,
    },
    /// Resume the background mover.
    Resume {
        /// One move's slot range (default: every move).
        #[arg(long)]
        slots: Option<String>,
    },
    /// Move the keys back; the slots stay with their pool (a move onto a cluster: every key
    /// back onto the pools, which serve alone again).
    Abort {
        /// One move's slot range (default: every move).
        #[arg(long)]
        slots: Option<String>,
    },
}

/// Flags that override the config file. Each can also come from a `SLOTGATE_*` environment
/// variable (a flag wins over its variable), so a sidecar needs no file; every other key comes
/// from `SLOTGATE_<SECTION>__<KEY>` ([`EnvOverrides`]), below the flags.
#[derive(Args, Default, Clone)]
struct RunArgs {
    /// Config file (TOML). Without one, defaults plus these flags are used.
    #[arg(long, value_name = "FILE", env = "SLOTGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Client listen address, HOST:PORT (default 127.0.0.1:6380).
    #[arg(long, value_name = "HOST:PORT", env = "SLOTGATE_LISTEN")]
    listen: Option<String>,
    /// Cluster seed nodes, comma-separated HOST:PORT list.
    #[arg(
        long,
        value_name = "HOST:PORT[,HOST:PORT…]",
        value_delimiter = ',',
        env = "SLOTGATE_CLUSTER"
    )]
    cluster: Option<Vec<String>>,
    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N", env = "SLOTGATE_WORKERS")]
    workers: Option<usize>,
    /// Log level or tracing filter (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL", env = "SLOTGATE_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log line format: text or json.
    #[arg(long, value_name = "FORMAT", env = "SLOTGATE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Admin HTTP listener (health, metrics, topology, dashboard), HOST:PORT; "" disables it.
    #[arg(long, value_name = "HOST:PORT", env = "SLOTGATE_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// On SIGTERM/SIGINT, time in-flight requests have to finish (proxy.drain_timeout_ms).
    #[arg(long, value_name = "MS", env = "SLOTGATE_DRAIN_TIMEOUT_MS")]
    drain_timeout_ms: Option<u64>,
    /// Write the process id to FILE once listening, remove it on exit (proxy.pid_file).
    #[arg(long, value_name = "FILE", env = "SLOTGATE_PID_FILE")]
    pid_file: Option<String>,
    /// Upgrade in place: start up, then take the listeners and the clients of the slotgate
    /// running with the same proxy.upgrade_socket (which exits once it has handed them over).
    #[arg(long)]
    take_over: bool,
}

impl RunArgs {
    /// The config file (if any, else the defaults), then the `SLOTGATE_<SECTION>__<KEY>`
    /// variables in `env`, then the flags: each layer overrides the one before.
    fn config(&self, env: &EnvOverrides) -> Result<Config, String> {
        let mut config =
            Config::load_with_env(self.config.as_deref(), env).map_err(|e| match &self.config {
                Some(path) => format!("{}:\n{e}", path.display()),
                None => e.to_string(),
            })?;
        if let Some(listen) = &self.listen {
            config.proxy.listen = listen.clone();
        }
        if let Some(seeds) = &self.cluster {
            config.cluster.seeds = seeds.clone();
        }
        if let Some(workers) = self.workers {
            config.proxy.workers = workers;
        }
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(admin) = &self.admin_listen {
            config.admin.listen = admin.clone();
        }
        if let Some(ms) = self.drain_timeout_ms {
            config.proxy.drain_timeout_ms = ms;
        }
        if let Some(file) = &self.pid_file {
            config.proxy.pid_file = file.clone();
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(&cli.run),
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Migrate { admin, action }) => migrate(&admin, action),
        Some(Command::Demo {
            masters,
            replicas,
            run,
        }) => demo(masters, replicas, &run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("slotgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The names of the environment variables clap reads for the flags (`SLOTGATE_LISTEN` …),
/// taken from the flag definitions (subcommands' included), so no second list exists.
fn flag_variables() -> Vec<String> {
    fn collect(command: &clap::Command, names: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env().and_then(|n| n.to_str()) {
                if !names.iter().any(|known| known == name) {
                    names.push(name.to_string());
                }
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, names);
        }
    }
    let mut names = Vec::new();
    collect(&Cli::command(), &mut names);
    names
}

/// The `SLOTGATE_<SECTION>__<KEY>` overrides of this process' environment.
fn env_overrides() -> Result<EnvOverrides, String> {
    EnvOverrides::from_process(&flag_variables()).map_err(|e| e.to_string())
}

fn run(args: &RunArgs) -> Result<(), String> {
    // Read once: a reload re-applies the same variables to the re-read file.
    let env = env_overrides()?;
    let config = args.config(&env)?;
    init_logging(&config.log);
    // Before start: a SIGTERM that arrives while the proxy starts (its "ready" line and pid
    // file already out) is then a drain, not the default action, which would leave the pid
    // file behind.
    let mut signals = Signals::new()?;
    let (proxy, pid_file) = start(config, args.take_over)?;
    if let Some(file) = &args.config {
        proxy.set_config_file(file.clone());
    }
    // POST /reload on the admin listener reads the same file, variables and flags as SIGHUP.
    let (source, source_env) = (args.clone(), env.clone());
    proxy.set_reload_source(move || {
        source
            .config(&source_env)
            .map_err(|message| slotgate::config::ConfigErrors::one("", message))
    });
    // SIGHUP: re-read the file (with the same variables and flags on top) and apply what can
    // be reloaded.
    let mut on_hangup = || match args.config(&env) {
        Ok(next) => {
            tracing::info!("SIGHUP: reloading the configuration");
            if let Err(e) = proxy.reload(next) {
                tracing::error!("reload failed: {e}");
            }
        }
        Err(e) => tracing::error!("config reload rejected, running configuration unchanged: {e}"),
    };
    let first = signals.wait(&mut on_hangup, Some(proxy.handed_over()))?;
    if first == HANDED_OVER {
        let successor = (*proxy.handed_over().borrow()).unwrap_or(0);
        tracing::info!(
            successor,
            "upgrade: every client handed over to the successor"
        );
        let pid_path = pid_file.as_ref().map(|f| f.path().to_path_buf());
        stop(proxy);
        // Removed only if it still names this process (the successor rewrote it).
        drop(pid_file);
        if std::process::id() != 1 {
            return Ok(());
        }
        // A container ends with its PID 1: stay, as the successor's init.
        tracing::info!(
            successor,
            "upgrade: this process is PID 1: it stays, waits for the successor and passes \
             it SIGTERM, SIGINT and SIGHUP"
        );
        if pid_path.is_none() {
            tracing::warn!(
                "upgrade: without proxy.pid_file, PID 1 follows only this successor, not \
                 the ones after it"
            );
        }
        return slotgate::upgrade::init::wait_for_successor(
            successor,
            pid_path.as_deref(),
            true,
            |tick| signals.next_within(tick),
        );
    }
    let timeout = proxy.drain_timeout();
    tracing::info!(
        "{first} received: draining for up to {} ms (send another signal to exit at once)",
        timeout.as_millis()
    );
    // The drain blocks this thread; a second signal ends the process from another one.
    std::thread::spawn(move || {
        if let Ok(second) = signals.wait(&mut || {}, None) {
            tracing::warn!("{second} received again: exiting without finishing the drain");
            std::process::exit(1);
        }
    });
    let report = proxy.drain(timeout);
    tracing::info!(
        clients = report.clients_at_start,
        left = report.clients_left,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "drain finished"
    );
    stop(proxy);
    drop(pid_file);
    Ok(())
}

/// `slotgate migrate`: one request to the running proxy's admin listener; its answer on
/// stdout.
fn migrate(admin: &str, action: MigrateAction) -> Result<(), String> {
    let with = |action: &str, slots: Option<String>| match slots {
        Some(slots) => format!("/migrations/{action}?slots={slots}"),
        None => format!("/migrations/{action}"),
    };
    let (method, path) = match action {
        MigrateAction::Start {
            to_cluster: Some(seeds),
            ..
        } => (
            hyper::Method::POST,
            format!("/migrations/start?to_cluster={seeds}"),
        ),
        MigrateAction::Start { slots, to, .. } => (
            hyper::Method::POST,
            format!(
                "/migrations/start?slots={}&to={}",
                slots.unwrap_or_default(),
                to.unwrap_or_default()
            ),
        ),
        MigrateAction::Status => (hyper::Method::GET, "/migrations".to_string()),
        MigrateAction::Pause { slots } => (hyper::Method::POST, with("pause", slots)),
        MigrateAction::Resume { slots } => (hyper::Method::POST, with("resume", slots)),
        MigrateAction::Abort { slots } => (hyper::Method::POST, with("abort", slots)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer = runtime.block_on(slotgate::admin::client::request(admin, method, &path))?;
    print!("{answer}");
    Ok(())
}

/// Check `file` as `slotgate --config FILE` would run it: with the `SLOTGATE_<SECTION>__<KEY>`
/// variables of this environment applied.
fn check_config(file: &std::path::Path) -> Result<(), String> {
    let env = env_overrides()?;
    let config =
        Config::load_with_env(Some(file), &env).map_err(|e| format!("{}:\n{e}", file.display()))?;
    config
        .validate()
        .map_err(|e| format!("{}:\n{e}", file.display()))?;
    // The TLS files it names must be readable and usable too.
    slotgate::tls::TlsContext::build(&config).map_err(|e| format!("{}:\n{e}", file.display()))?;
    for warning in config.exposure_warnings() {
        eprintln!("warning: {warning}");
    }
    println!("{}: OK", file.display());
    Ok(())
}

fn demo(masters: usize, replicas: usize, args: &RunArgs) -> Result<(), String> {
    let env = env_overrides()?;
    let mut config = args.config(&env)?;
    init_logging(&config.log);
    println!("Starting a local Redis Cluster: {masters} masters, {replicas} replica(s) each …");
    let cluster = LocalCluster::start(ClusterOptions {
        masters,
        replicas_per_master: replicas,
        ..ClusterOptions::default()
    })
    .map_err(|e| e.to_string())?;
    println!("Cluster nodes: {}", cluster.seeds().join(" "));
    config.cluster.seeds = cluster.seeds();
    let (proxy, pid_file) = start(config, false)?;
    let addr = proxy.local_addr();
    println!();
    println!("slotgate is serving the cluster on {addr}. Connect with:");
    println!("    redis-cli -h {} -p {}", addr.ip(), addr.port());
    println!("Press Ctrl-C to stop (the demo cluster is removed on exit).");
    Signals::new()?.wait(&mut || tracing::info!("SIGHUP ignored in demo mode"), None)?;
    stop(proxy);
    drop(pid_file);
    drop(cluster);
    Ok(())
}

/// Start the proxy, with its pid file if `proxy.pid_file` names one: refused while the file
/// names a live process, written once the listeners are bound. `take_over`: as the successor
/// of the running process (whose pid the file names: it is rewritten with this one's before
/// the old process is told to hand over its clients).
fn start(config: Config, take_over: bool) -> Result<(ProxyHandle, Option<PidFile>), String> {
    let path = (!config.proxy.pid_file.is_empty()).then(|| PathBuf::from(&config.proxy.pid_file));
    if let (Some(path), false) = (&path, take_over) {
        pidfile::check(path)?;
    }
    let started = if take_over {
        Proxy::take_over(config)
    } else {
        Proxy::start(config)
    };
    let mut proxy = started.map_err(|e| {
        if take_over {
            tracing::error!("{e}; the running slotgate keeps serving");
        }
        e.to_string()
    })?;
    let pid_file = match path.as_deref().map(PidFile::write).transpose() {
        Ok(pid_file) => pid_file,
        Err(e) => {
            stop(proxy);
            return Err(e);
        }
    };
    if let Err(e) = proxy.complete_take_over() {
        stop(proxy);
        return Err(format!("take-over failed: {e}"));
    }
    Ok((proxy, pid_file))
}

/// What [`Signals::wait`] returns when the process handed itself over to a successor.
const HANDED_OVER: &str = "hand-over";

fn stop(proxy: ProxyHandle) {
    tracing::info!("shutting down");
    proxy.shutdown();
}

/// Log to stderr in `log.format`, with ANSI colours only when stderr is a terminal (a file, a
/// pipe or a log collector gets plain text).
fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// SIGINT, SIGTERM and SIGHUP, waited for on a small runtime of their own.
struct Signals {
    runtime: tokio::runtime::Runtime,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Start listening (from now on the default action, exit, no longer applies).
    fn new() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (int, term, hup) = runtime
            .block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ))
            })
            .map_err(|e| e.to_string())?;
        Ok(Signals {
            runtime,
            int,
            term,
            hup,
        })
    }

    /// The next SIGINT, SIGTERM or SIGHUP within `limit`, as its number.
    fn next_within(&mut self, limit: std::time::Duration) -> Option<libc::c_int> {
        match self.next(Some(limit), &mut None) {
            Ok(Seen::Signal(signal)) => Some(signal),
            _ => None,
        }
    }

    /// Block until the next SIGINT or SIGTERM (returns its name), calling `on_hangup` for
    /// each SIGHUP meanwhile, or until `handed_over` flips ([`HANDED_OVER`]).
    fn wait(
        &mut self,
        on_hangup: &mut dyn FnMut(),
        mut handed_over: Option<tokio::sync::watch::Receiver<Option<u32>>>,
    ) -> Result<&'static str, String> {
        loop {
            match self.next(None, &mut handed_over)? {
                Seen::HandedOver => return Ok(HANDED_OVER),
                Seen::Signal(libc::SIGHUP) => on_hangup(),
                Seen::Signal(libc::SIGINT) => return Ok("SIGINT"),
                Seen::Signal(_) => return Ok("SIGTERM"),
                Seen::Nothing => {}
            }
        }
    }

    /// The next signal, the hand-over being done, or nothing within `limit` (`None`: no
    /// limit).
    fn next(
        &mut self,
        limit: Option<std::time::Duration>,
        handed_over: &mut Option<tokio::sync::watch::Receiver<Option<u32>>>,
    ) -> Result<Seen, String> {
        let Signals {
            runtime,
            int,
            term,
            hup,
        } = self;
        runtime.block_on(async {
            let handed = async {
                let done = match handed_over.as_mut() {
                    Some(done) => done.wait_for(Option::is_some).await.is_ok(),
                    None => false,
                };
                if !done {
                    std::future::pending::<()>().await;
                }
            };
            let timeout = async {
                match limit {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            let seen = tokio::select! {
                () = handed => Some(Seen::HandedOver),
                s = int.recv() => s.map(|()| Seen::Signal(libc::SIGINT)),
                s = term.recv() => s.map(|()| Seen::Signal(libc::SIGTERM)),
                s = hup.recv() => s.map(|()| Seen::Signal(libc::SIGHUP)),
                () = timeout => Some(Seen::Nothing),
            };
            seen.ok_or_else(|| "signal handling stopped".to_string())
        })
    }
}

/// What [`Signals::next`] saw.
enum Seen {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(libc::c_int),
    /// The process handed itself over to a successor.
    HandedOver,
    /// Nothing within the limit.
    Nothing,
}

#[cfg(test)]
mod tests {
    use slotgate::config::EnvOverrides;

    #[test]
    fn flag_variables_come_from_clap_and_are_not_config_paths() {
        let names = super::flag_variables();
        assert!(names.iter().any(|n| n == "SLOTGATE_CONFIG"), "{names:?}");
        for name in &names {
            assert!(
                name.starts_with("SLOTGATE_") && !name.contains("__"),
                "{name}"
            );
        }
        // Set, each is skipped as a flag variable rather than rejected as a bad config path.
        let vars = names.iter().map(|n| (n.clone(), "x".to_string()));
        assert_eq!(
            EnvOverrides::from_vars(vars, &names),
            Ok(EnvOverrides::default())
        );
    }
}
