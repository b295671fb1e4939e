//! Redis Sentinel: which server is a pool's master right now, and when that changes.
//!
//! - [`resolve`] asks a pool's sentinels, one after the other, `SENTINEL
//!   get-master-addr-by-name NAME`; the first that knows the name answers. The topology calls
//!   it at start, on every refresh request (a backend or health-check failure) and on a timer.
//! - [`watch`] keeps one subscription to `+switch-master` per distinct set of sentinels (one
//!   small task each, on the control thread). A switch, and every (re)subscription, asks the
//!   topology for a refresh, which re-resolves the masters and publishes a new slot table with
//!   the promoted server: the same `ArcSwap` path a reload takes.
//!
//! Sentinel itself is trusted as it is by Redis clients: slotgate does not check the named
//! server's `ROLE`. Writes acknowledged by the old master but not yet replicated when it died
//! are lost by the failover (Redis replication is asynchronous); slotgate cannot bring them
//! back.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::dedicated::DedicatedConn;
use crate::backend::{oneshot, Credentials};
use crate::resp::{parse_frame, Frame, Limits, Request};

use super::Topology;

/// Pause before subscribing again after a sentinel connection failed.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(500);
/// Silence on a subscription after which it is probed with `PING`; twice that closes it.
const QUIET_PROBE: Duration = Duration::from_secs(2);

/// Sentinels a pool follows and the credentials they want (`sentinel_username` /
/// `sentinel_password`): pools with the same of both share one `+switch-master` subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelSet {
    /// The sentinels' `HOST:PORT`.
    pub sentinels: Vec<String>,
    /// `AUTH` on every connection to them, if configured.
    pub auth: Option<Arc<Credentials>>,
}

/// The master Sentinel names for `name`, as `HOST:PORT`, from the first of `sentinels` that
/// knows it (authenticating with `auth`). `Err` gives every sentinel's reason.
pub async fn resolve(
    sentinels: &[String],
    auth: Option<&Arc<Credentials>>,
    name: &str,
    timeout: Duration,
    limits: Limits,
) -> Result<String, String> {
    let mut reasons = Vec::new();
    for sentinel in sentinels {
        let asked = oneshot::commands(
            sentinel,
            auth,
            &[&["SENTINEL", "get-master-addr-by-name", name]],
            timeout,
            limits,
            // Sentinels are asked in plaintext (backend.tls covers the data nodes only).
            None,
        )
        .await;
        let reason = match asked.map(|replies| replies.into_iter().next()) {
            Ok(Some(Frame::Array(parts))) => match parts.as_slice() {
                [Frame::Bulk(host), Frame::Bulk(port)] => {
                    let host = String::from_utf8_lossy(host);
                    let port = String::from_utf8_lossy(port);
                    return Ok(if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    });
                }
                _ => "unexpected reply".to_string(),
            },
            Ok(Some(Frame::Null | Frame::NullArray)) => format!("does not monitor {name:?}"),
            Ok(Some(Frame::Error(message))) if message.starts_with(b"NOAUTH") => format!(
                "{} (set the pool's sentinel_password)",
                String::from_utf8_lossy(&message)
            ),
            Ok(Some(Frame::Error(message))) => String::from_utf8_lossy(&message).into_owned(),
            Ok(_) => "unexpected reply".to_string(),
            Err(e) => e.to_string(),
        };
        reasons.push(format!("sentinel {sentinel}: {reason}"));
    }
    Err(reasons.join("; "))
}

/// Follow `+switch-master` on every set of sentinels the current pools name, forever (until
/// the runtime is dropped). The set of subscriptions is rebuilt when a reload changes the
/// sentinels.
pub async fn watch(topology: Arc<Topology>, limits: Limits, connect_timeout: Duration) {
    loop {
        let mut tasks = tokio::task::JoinSet::new();
        for set in topology.sentinel_sets() {
            let topology = Arc::clone(&topology);
            tasks.spawn(subscribe_forever(topology, set, limits, connect_timeout));
        }
        topology.sentinels_changed().await;
        tasks.abort_all();
    }
}

/// Keep one subscription to `+switch-master` on one of `sentinels`, moving to the next one
/// whenever the current one fails.
async fn subscribe_forever(
    topology: Arc<Topology>,
    set: SentinelSet,
    limits: Limits,
    connect_timeout: Duration,
) {
    let sentinels = &set.sentinels;
    let mut turn = 0usize;
    loop {
        let Some(sentinel) = sentinels.get(turn % sentinels.len().max(1)) else {
            return;
        };
        turn = turn.wrapping_add(1);
        let subscribed = subscribe(&topology, sentinel, &set.auth, limits, connect_timeout);
        if let Err(reason) = subscribed.await {
            // A refused password is a configuration problem the operator must see.
            if reason.contains("refused authentication") {
                tracing::warn!(%sentinel, "sentinel subscription failed: {reason}");
            } else {
                tracing::debug!(%sentinel, "sentinel subscription ended: {reason}");
            }
        }
        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
    }
}

/// One subscription: returns when the connection fails or goes quiet.
async fn subscribe(
    topology: &Topology,
    sentinel: &str,
    auth: &Option<Arc<Credentials>>,
    limits: Limits,
    connect_timeout: Duration,
) -> Result<(), String> {
    let mut conn = DedicatedConn::connect(
        Arc::from(sentinel),
        connect_timeout,
        limits,
        auth.clone(),
        false,
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    let request = Request::from_args(["SUBSCRIBE", "+switch-master"].map(bytes::Bytes::from));
    conn.write(request.raw()).await.map_err(|e| e.to_string())?;
    let ping = Request::from_args([bytes::Bytes::from("PING")]);
    let mut quiet = 0u32;
    loop {
        let reply = match tokio::time::timeout(QUIET_PROBE, conn.read()).await {
            Ok(reply) => reply.map_err(|e| e.to_string())?,
            Err(_) if quiet == 0 => {
                quiet = 1;
                conn.write(ping.raw()).await.map_err(|e| e.to_string())?;
                continue;
            }
            Err(_) => return Err("no answer to PING".into()),
        };
        quiet = 0;
        let frame = parse_frame(reply.raw(), &limits).map_err(|e| e.to_string())?;
        let Frame::Array(parts) = frame else {
            if let Frame::Error(message) = frame {
                return Err(String::from_utf8_lossy(&message).into_owned());
            }
            continue;
        };
        match parts.as_slice() {
            [Frame::Bulk(kind), ..] if kind.eq_ignore_ascii_case(b"subscribe") => {
                // Subscribed: catch up on any switch missed while not subscribed.
                tracing::debug!(%sentinel, "subscribed to +switch-master");
                topology.request_refresh();
            }
            [Frame::Bulk(kind), _, Frame::Bulk(payload)]
                if kind.eq_ignore_ascii_case(b"message") =>
            {
                tracing::info!(
                    %sentinel,
                    "sentinel announced +switch-master {}",
                    String::from_utf8_lossy(payload)
                );
                topology.request_refresh();
            }
            _ => {}
        }
    }
}
