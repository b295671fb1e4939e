//! Operator views of the proxy's own clients and traffic, shared by every worker and the
//! admin thread: the client registry (`CLIENT LIST` / `KILL`), the slow log (`SLOWLOG`,
//! `/slowlog`), hot keys (`INFO hotkeys`, `/hotkeys`), the monitors (`MONITOR`), the client
//! pause (`CLIENT PAUSE`), the blocking commands under way (`CLIENT UNBLOCK`), the slot moves
//! between pools (`INFO migration`) and the fleet view (`CLUSTER SLOTS` …, `/fleet/self`). The request
//! path touches them only through per-client relaxed atomics, one comparison per reply (slow
//! log), one branch (hot keys off) or a countdown (on), and one relaxed load each for monitors
//! and pause; locks are taken on connect, disconnect, a slow request, a published window, and
//! by the readers (INFO migration reads the moves' progress under the controller's lock).

pub mod blocked;
pub mod clients;
pub mod hotkeys;
pub mod monitor;
pub mod pause;
pub mod slowlog;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;

/// The registry, slow log and hot keys of one proxy.
#[derive(Debug)]
pub struct Ops {
    /// Connected clients.
    pub clients: Arc<clients::Registry>,
    /// Blocking commands under way, by client (`CLIENT UNBLOCK`).
    pub blocked: Arc<blocked::Blocked>,
    /// The slow log.
    pub slowlog: slowlog::SlowLog,
    /// Hot keys, when `hotkeys.enabled`.
    pub hotkeys: Option<hotkeys::HotKeys>,
    /// Clients in MONITOR mode.
    pub monitors: Arc<monitor::Monitors>,
    /// `CLIENT PAUSE` in force.
    pub pause: pause::Pause,
    /// The slot moves between pools and their progress (read by `INFO migration`).
    pub migrations: Arc<crate::migration::Migrations>,
    /// This instance's announce address and the live fleet view (`CLUSTER SLOTS` …).
    pub fleet: Arc<crate::fleet::Fleet>,
}

impl Ops {
    /// The views of a proxy with `workers` workers configured by `config`, whose slot moves
    /// `migrations` runs and whose fleet view `fleet` keeps.
    pub fn new(
        config: &Config,
        workers: usize,
        migrations: Arc<crate::migration::Migrations>,
        fleet: Arc<crate::fleet::Fleet>,
    ) -> Arc<Ops> {
        let hot = &config.hotkeys;
        Arc::new(Ops {
            clients: clients::Registry::new(),
            blocked: Arc::default(),
            slowlog: slowlog::SlowLog::new(
                workers,
                config.slowlog.log_slower_than_us,
                config.slowlog.max_len,
            ),
            hotkeys: hot.enabled.then(|| {
                hotkeys::HotKeys::new(
                    workers,
                    hot.sample_rate,
                    hot.top,
                    Duration::from_millis(hot.interval_ms),
                )
            }),
            monitors: Arc::default(),
            pause: pause::Pause::default(),
            migrations,
            fleet,
        })
    }
}
