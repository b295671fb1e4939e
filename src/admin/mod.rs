//! The admin HTTP listener: health, readiness, topology, effective config, Prometheus metrics,
//! live stats and the dashboard. Off the request path: it runs on its own thread
//! (`slotgate-admin`, a current-thread runtime) and only *reads* what the workers publish
//! (per-worker atomics in [`crate::stats`], the slot table's `ArcSwap`).
//!
//! ```text
//!  GET /healthz   200 "ok" while the process serves
//!  GET /readyz    200 when all 16384 slots have a master and the health checker marks none down, else 503 + why
//!  GET /topology  JSON: table version, slot ranges → master/replicas, every node's role and health
//!  GET /config    JSON: the effective configuration, secrets redacted
//!  GET /metrics   Prometheus text
//!  GET /stats     JSON: totals and a per-second QPS / latency history (the dashboard polls it)
//!  GET /slowlog   JSON: the slow log, newest first, with the node of each entry (?count=N)
//!  GET /hotkeys   JSON: the hot keys of the last window, with slot and node
//!  GET /fleet/self  JSON: this instance's proxy.announce and whether it drains (its fleet peers' check)
//!  GET /fleet     JSON: the fleet view cluster-aware clients are shown (instances and slot ranges)
//!  GET /          the dashboard (one self-contained HTML page)
//! ```
//!
//! It has no authentication: bind it to loopback or a private network.

pub mod client;
mod metrics;
pub mod migrations;
mod readiness;
mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use crate::migration::Migrations;
use crate::reload::{ReloadError, Reloader};
use crate::stats::ProxyStats;
use crate::topology::Topology;

pub use readiness::Readiness;
pub use views::redact;

/// How often the stats history is sampled.
const TICK: Duration = Duration::from_secs(1);
/// Seconds of QPS / latency history kept for the dashboard.
const HISTORY: usize = 120;

/// What the admin endpoints read: shared with the proxy, written only by the admin thread
/// (health, history) or by the proxy handle (draining).
pub struct AdminState {
    topology: Arc<Topology>,
    stats: Arc<ProxyStats>,
    reloader: Arc<Reloader>,
    ops: Arc<crate::ops::Ops>,
    migrations: Arc<Migrations>,
    history: Mutex<views::History>,
    draining: AtomicBool,
}

impl AdminState {
    /// State for a proxy with this topology, these counters, this effective config, these
    /// client / slow log / hot key views and this migration controller.
    pub fn new(
        topology: Arc<Topology>,
        stats: Arc<ProxyStats>,
        reloader: Arc<Reloader>,
        ops: Arc<crate::ops::Ops>,
        migrations: Arc<Migrations>,
    ) -> Arc<Self> {
        let history = views::History::new(&stats);
        Arc::new(AdminState {
            topology,
            stats,
            reloader,
            ops,
            migrations,
            history: Mutex::new(history),
            draining: AtomicBool::new(false),
        })
    }

    /// The proxy began draining: readiness turns false so load balancers stop sending clients.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Lock a mutex of the admin state, shrugging off poisoning (the data is advisory).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Install the `metrics` recorder `/metrics` renders from (once per process; later calls do
/// nothing). Call before anything registers `metrics` handles it should count into.
pub fn install_metrics() {
    metrics::install();
}

/// Bind the admin listener (synchronously, so a bad address fails start-up).
pub fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let resolved = crate::config::resolve(addr)?;
    let listener = std::net::TcpListener::bind(resolved)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serve the admin endpoints on `listener` until `shutdown` flips, on the current thread.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    metrics::install();
    let background = tokio::spawn(tick_loop(Arc::clone(&state)));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                    {
                        tracing::debug!("admin connection ended: {e}");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    background.abort();
    Ok(())
}

/// Once a second: sample QPS / latency.
async fn tick_loop(state: Arc<AdminState>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        lock(&state.history).sample(&state.stats);
    }
}

/// Answer one admin request.
async fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path().starts_with("/migrations/phase/") || req.uri().path() == "/migrations/state"
    {
        return fleet_phase(state, req).await;
    }
    if let Some(path) = req.uri().path().strip_prefix("/migrations/") {
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        let path = format!("/migrations/{path}");
        let outcome = match migrations::action(&path, req.uri().query()) {
            Ok(action) => migrations::run(&state.migrations, action).await,
            Err(e) => Err(e),
        };
        return match outcome {
            Ok(answer) => json(&answer),
            Err(e) => text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        };
    }
    if req.uri().path() == "/reload" {
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload\n");
        }
        return reload(state).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let readiness = readiness::readiness(state);
            let status = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, &format!("{}\n", readiness.reason))
        }
        "/topology" => json(&views::topology(state)),
        "/config" => json(&views::config(&state.reloader.config())),
        "/stats" => json(&views::stats(state)),
        "/slowlog" => json(&views::slowlog(state, req.uri().query())),
        "/hotkeys" => json(&views::hotkeys(state)),
        "/migrations" => json(&state.migrations.status()),
        "/fleet/self" => json(&views::fleet_self(state)),
        "/fleet" => json(&views::fleet(state)),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(state),
        ),
        "/" | "/dashboard" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            include_str!("dashboard.html").to_string(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The fleet's side of a migration phase change (another instance orchestrates it):
/// `GET /migrations/state`, `POST /migrations/phase/hold` (the new state as JSON),
/// `POST /migrations/phase/commit?version=N`, `POST /migrations/phase/cancel?version=N`.
async fn fleet_phase(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let path = req.uri().path().to_string();
    if path == "/migrations/state" {
        return json(&serde_json::to_value(state.migrations.state()).unwrap_or_default());
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    let version = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("version="))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let outcome = match (path.as_str(), version) {
        ("/migrations/phase/hold", _) => {
            // A migration state is a slot map and a few moves: 1 MiB is far above it.
            let limited = http_body_util::Limited::new(req.into_body(), 1 << 20);
            match limited.collect().await {
                Ok(body) => match serde_json::from_slice(&body.to_bytes()) {
                    Ok(next) => state.migrations.peer_hold(next).await,
                    Err(e) => Err(format!("not a migration state: {e}")),
                },
                Err(e) => Err(format!("cannot read the request: {e}")),
            }
        }
        ("/migrations/phase/commit", Some(v)) => state.migrations.peer_commit(v),
        ("/migrations/phase/cancel", Some(v)) => state.migrations.peer_cancel(v),
        (_, None) => Err("needs ?version=N".into()),
        _ => Err(format!("no such phase step: {path}")),
    };
    match outcome {
        Ok(()) => json(&serde_json::json!({ "ok": true })),
        Err(e) => text(StatusCode::CONFLICT, &format!("{e}\n")),
    }
}

/// `POST /reload`: re-read the configuration (file + command line) and apply it, as SIGHUP
/// does. 200 with what was applied, 400 with every problem (nothing changed), 501 when the
/// proxy has no file to read.
async fn reload(state: &AdminState) -> Response<Full<Bytes>> {
    let reloader = Arc::clone(&state.reloader);
    // Reading the file and installing the table may block briefly: off the async thread.
    let result = tokio::task::spawn_blocking(move || reloader.reload_from_source()).await;
    match result {
        Ok(Ok(done)) => json(&serde_json::json!({
            "reloaded": true,
            "table_version": done.table_version,
            "not_reloaded": done.not_reloaded,
        })),
        Ok(Err(ReloadError::NoSource)) => text(
            StatusCode::NOT_IMPLEMENTED,
            &format!("{}\n", ReloadError::NoSource),
        ),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reload failed: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = value.to_string();
    body.push('\n');
    respond(StatusCode::OK, "application/json", body)
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}
