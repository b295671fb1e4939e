//! The admin dashboard rendered by a real headless Chromium against a live cluster: the page's
//! JavaScript must fetch `/topology` and `/stats` and draw the real nodes, the slot map and
//! the live QPS. Needs `chromium` (scripts/ensure-browser installs it).

use crate::common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http_get, with_admin};

/// `--dump-dom` of `url` after the page's scripts had 3 s of virtual time.
fn render(url: &str) -> String {
    // A profile of its own per render: Chromium locks its profile, and the tests of this
    // process may render side by side.
    static RENDERS: AtomicU64 = AtomicU64::new(0);
    let n = RENDERS.fetch_add(1, Ordering::Relaxed);
    let profile =
        std::env::temp_dir().join(format!("slotgate-chromium-{}-{n}", std::process::id()));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium (install it with scripts/ensure-browser)");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let mut child = common::binary::KillOnDrop(child);
    common::eventually_blocking("chromium finishes", Duration::from_secs(40), || {
        child.0.try_wait().unwrap().ok_or("still running")
    });
    let _ = std::fs::remove_dir_all(&profile);
    reader.join().unwrap()
}

/// The dashboard at `admin` rendered; then the load is stopped (`stop`) and awaited.
async fn render_then_stop(
    admin: std::net::SocketAddr,
    stop: &AtomicBool,
    load: tokio::task::JoinHandle<()>,
) -> String {
    let url = format!("http://{admin}/");
    let dom = tokio::task::spawn_blocking(move || render(&url))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    dom
}

/// The value of attribute `attr` on the element with `id="{id}"` in `dom`.
fn attr(dom: &str, id: &str, attr: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let tag_start = dom[..at].rfind('<').unwrap();
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>').unwrap()];
    let key = format!("{attr}=\"");
    let v = tag
        .find(&key)
        .unwrap_or_else(|| panic!("#{id} has no {attr}: {tag}"));
    tag[v + key.len()..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_the_live_topology_and_traffic() {
    let setup = common::start_with(Default::default(), with_admin);
    let admin = setup.proxy.admin_addr().unwrap();
    let (status, page) = http_get(admin, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<svg id=\"slotmap\""),
        "the page itself is served"
    );

    // Steady traffic while the browser watches, so QPS is live.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, sent, addr) = (Arc::clone(&stop), Arc::clone(&sent), setup.addr());
        tokio::spawn(async move {
            let mut c = common::client(addr).await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: () = redis::cmd("SET")
                    .arg(format!("dash:{}", i % 1000))
                    .arg(i)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                i += 1;
                sent.store(i, Ordering::Relaxed);
            }
        })
    };
    // Two samples of history with traffic, and every master probed healthy and serving.
    let masters: Vec<String> = (setup.cluster.master_ports().iter())
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    common::eventually(
        "the admin views live",
        Duration::from_secs(10),
        async || {
            let stats = common::http_json(admin, "/stats");
            let topology = common::http_json(admin, "/topology");
            let live = stats["history"].as_array().is_some_and(|h| h.len() >= 2)
                && stats["qps"].as_f64() > Some(0.0)
                && masters.iter().all(|m| {
                    let nodes = topology["nodes"].as_array();
                    nodes.into_iter().flatten().any(|n| {
                        n["address"] == m.as_str()
                            && n["healthy"] == true
                            && n["qps"].as_f64() > Some(0.0)
                    })
                });
            common::check((stats, topology), |_| live)
        },
    )
    .await;
    let sent_before = sent.load(Ordering::Relaxed);
    assert!(sent_before > 0);

    let dom = render_then_stop(admin, &stop, load).await;

    assert!(
        attr(&dom, "slotmap", "data-covered") == "16384",
        "slot map not populated:\n{dom}"
    );
    let version = setup.proxy.topology().table().version();
    assert_eq!(attr(&dom, "slotmap", "data-version"), version.to_string());
    let loads: u32 = dom
        .split("data-loaded=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("body data-loaded");
    assert!(loads >= 1, "the page never polled");
    for port in setup.cluster.master_ports() {
        let addr = format!("127.0.0.1:{port}");
        // The node table lists the master, healthy, and the slot map has its colour.
        let row = format!("<tr data-address=\"{addr}\" data-role=\"master\"");
        let at = dom
            .find(&row)
            .unwrap_or_else(|| panic!("no row for {addr}:\n{dom}"));
        let row_html = &dom[at..at + dom[at..].find("</tr>").unwrap()];
        // Its request rate: the load's keys spread over every master.
        let qps: f64 = row_html
            .split("data-qps=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no data-qps on {addr}'s row: {row_html}"));
        assert!(qps > 0.0, "{addr} shows no requests/s: {row_html}");
        assert!(row_html.contains(&format!(">{addr}<")), "{row_html}");
        assert!(
            row_html.contains("class=\"up\""),
            "{addr} not shown healthy: {row_html}"
        );
        assert!(
            dom.contains(&format!("data-master=\"{addr}\"")),
            "no slots of {addr} on the map"
        );
    }
    let qps: f64 = attr(&dom, "qps", "data-value").parse().unwrap();
    assert!(qps > 0.0, "QPS not live: {qps}");
    let commands: u64 = attr(&dom, "commands", "data-value").parse().unwrap();
    assert!(
        commands >= sent_before,
        "{commands} < {sent_before} commands sent"
    );
    let points: u32 = attr(&dom, "qps-chart", "data-points").parse().unwrap();
    assert!(points >= 2, "QPS chart has {points} points");
    assert!(
        tag(&dom, "hotkeys-panel").contains("hidden"),
        "hot keys are off: no panel"
    );
    assert!(
        tag(&dom, "migrations-panel").contains("hidden"),
        "no slot moves: no panel"
    );
}

/// The opening tag of the element with `id="{id}"` in `dom`.
fn tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let start = dom[..at].rfind('<').unwrap();
    &dom[start..at + dom[at..].find('>').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_hot_keys_panel_when_enabled() {
    let setup = common::start_pools(1, &[], |c| {
        with_admin(c);
        c.hotkeys.enabled = true;
        c.hotkeys.sample_rate = 2;
        c.hotkeys.interval_ms = 500;
    });
    let admin = setup.proxy.admin_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, addr) = (Arc::clone(&stop), setup.addr());
        tokio::spawn(async move {
            let mut c = common::client(addr).await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = if i % 3 == 0 {
                    format!("cold:{i}")
                } else {
                    "hot:dash".to_string()
                };
                let _: Option<String> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                i += 1;
            }
        })
    };
    // A window of traffic is published (the hot key first) before the browser looks.
    common::eventually(
        "hot:dash published as the hottest key",
        Duration::from_secs(10),
        async || {
            let hot = common::http_json(admin, "/hotkeys");
            common::check(hot, |hot| hot["keys"][0]["key"] == "hot:dash")
        },
    )
    .await;
    let dom = render_then_stop(admin, &stop, load).await;

    let panel = tag(&dom, "hotkeys-panel");
    assert!(!panel.contains("hidden"), "panel hidden: {panel}");
    let keys: u32 = attr(&dom, "hotkeys-panel", "data-keys").parse().unwrap();
    assert!(keys >= 1, "no hot key rows:\n{dom}");
    let row = dom
        .find("<tr data-key=\"hot:dash\">")
        .unwrap_or_else(|| panic!("no row for hot:dash:\n{dom}"));
    let first = dom.find("<tr data-key=").unwrap();
    assert_eq!(row, first, "the hammered key is the first row");
    let row_html = &dom[row..row + dom[row..].find("</tr>").unwrap()];
    let slot = slotgate::slot::Slot::of(b"hot:dash").get();
    assert!(row_html.contains(&format!("<td>{slot}</td>")), "{row_html}");
    assert!(
        row_html.contains(&format!("<td>{}</td>", setup.servers[0].addr())),
        "{row_html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_slots_moving_between_pools() {
    use crate::pool_migration::{admin, seed, start, status, MOVING};
    // Slow enough that the move lasts while the browser looks (about 500 keys at 40/s).
    let (setup, _file) = start(40);
    seed(&setup, 3000).await;
    let path = format!("/migrations/start?slots={}-{}&to=p3", MOVING.0, MOVING.1);
    admin(&setup, hyper::Method::POST, &path).await.unwrap();
    common::eventually(
        "the mover has a rate",
        Duration::from_secs(10),
        async || {
            let s = status(&setup).await;
            common::check(s, |s| s["moves"][0]["eta_seconds"].as_f64().is_some())
        },
    )
    .await;
    let url = format!("http://{}/", setup.proxy.admin_addr().unwrap());
    let dom = tokio::task::spawn_blocking(move || render(&url))
        .await
        .unwrap();

    let panel = tag(&dom, "migrations-panel");
    assert!(!panel.contains("hidden"), "panel hidden: {panel}");
    assert_eq!(attr(&dom, "migrations-panel", "data-moves"), "1");
    let slots = format!("{}-{}", MOVING.0, MOVING.1);
    let row = dom
        .find(&format!("<tr data-slots=\"{slots}\" data-state=\"moving\""))
        .unwrap_or_else(|| panic!("no row for the move:\n{dom}"));
    let row_html = &dom[row..row + dom[row..].find("</tr>").unwrap()];
    let percent: f64 = row_html
        .split("data-percent=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no data-percent: {row_html}"));
    assert!(percent > 0.0 && percent < 100.0, "{row_html}");
    assert!(row_html.contains("<td>p0 → p3</td>"), "{row_html}");
    assert!(
        row_html.contains("class=\"bar\""),
        "a progress bar: {row_html}"
    );
    assert!(!row_html.contains("data-eta=\"\""), "an ETA: {row_html}");
}
