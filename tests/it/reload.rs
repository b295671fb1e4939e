//! Hot reload: a new pool set / slot map swapped in while 100 clients keep working (no error,
//! no dropped connection); a bad reload rejected with the running configuration untouched.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, start_pools};
use redis::AsyncCommands;
use slotgate::config::Config;
use slotgate::slot::Slot;
use slotgate::ReloadError;

const START: &[(&str, &str)] = &[
    ("0-5460", "p0"),
    ("5461-10922", "p1"),
    ("10923-16383", "p2"),
];

/// A config like `base` with the slot map `slots`.
fn with_slots(base: &Config, slots: &[(&str, &str)]) -> Config {
    let mut next = base.clone();
    next.slots = slots
        .iter()
        .map(|(r, p)| (r.to_string(), p.to_string()))
        .collect();
    next
}

/// One client: its own connection, SET / GET / MGET on its own keys until `stop`, counting its
/// rounds (over its keys) in `rounds`. Values are
/// not checked (a reload moves keys to pools that do not hold them: slotgate moves no data);
/// every error reply, timeout or broken connection is returned.
async fn client_loop(
    addr: std::net::SocketAddr,
    task: usize,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> (u64, Vec<String>) {
    let mut c = client(addr).await;
    let keys: Vec<String> = (0..6).map(|i| format!("load:{task}:{i}")).collect();
    let (mut ops, mut errors) = (0u64, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        for key in &keys {
            let step = async {
                let _: () = c.set(key, ops).await?;
                let _: Option<String> = c.get(key).await?;
                let _: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
                Ok::<(), redis::RedisError>(())
            };
            match tokio::time::timeout(Duration::from_secs(5), step).await {
                Ok(Ok(())) => ops += 3,
                Ok(Err(e)) => errors.push(format!("task {task} {key}: {e}")),
                Err(_) => errors.push(format!("task {task} {key}: timed out")),
            }
        }
        rounds.fetch_add(1, Ordering::SeqCst);
        // Paces the load (a client, not a wait for an event).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (ops, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_move_slot_ranges_under_load_without_client_errors() {
    let setup = start_pools(3, START, |_| {});
    let base = setup.proxy.config();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds: Vec<Arc<AtomicU64>> = (0..100).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = (0..100)
        .map(|t| {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds[t]));
            tokio::spawn(client_loop(setup.addr(), t, stop, rounds))
        })
        .collect();
    // Every client has worked (a round) since `seen`, a snapshot of the counts.
    let worked_since = async |seen: &[u64]| {
        common::eventually(
            "every client working",
            Duration::from_secs(10),
            async || {
                let idle = (rounds.iter().zip(seen))
                    .filter(|(r, &s)| r.load(Ordering::SeqCst) <= s)
                    .count();
                common::check(idle, |&idle| idle == 0)
                    .map_err(|idle| format!("{idle} clients idle"))
            },
        )
        .await;
    };
    let snapshot = || -> Vec<u64> { rounds.iter().map(|r| r.load(Ordering::SeqCst)).collect() };
    worked_since(&[0; 100]).await;

    let maps: [&[(&str, &str)]; 4] = [
        &[
            ("0-5460", "p1"),
            ("5461-10922", "p1"),
            ("10923-16383", "p2"),
        ],
        &[("0-8191", "p2"), ("8192-16383", "p0")],
        &[("0-100", "p1"), ("101-16383", "p0")],
        START,
    ];
    let mut last_version = 0;
    for (i, map) in maps.iter().enumerate() {
        let done = setup
            .proxy
            .reload(with_slots(&base, map))
            .expect("valid reload");
        let version = done.table_version.expect("routing changed");
        assert!(version > last_version);
        last_version = version;
        assert!(done.not_reloaded.is_empty(), "{:?}", done.not_reloaded);

        if i == 1 {
            // A bad reload in the middle: rejected, running config and table untouched.
            let running = setup.proxy.config();
            let bad = with_slots(&base, &[("0-9000", "p0"), ("9000-16383", "ghost")]);
            match setup.proxy.reload(bad) {
                Err(ReloadError::Config(errors)) => {
                    let text = errors.to_string();
                    assert!(
                        text.contains("slots.9000-16383: names pool \"ghost\""),
                        "{text}"
                    );
                }
                other => panic!("a bad reload was not rejected: {other:?}"),
            }
            assert_eq!(setup.proxy.config(), running);
            assert_eq!(setup.proxy.topology().table().version(), version);
        }
        // The clients work on under this map before the next one.
        worked_since(&snapshot()).await;
    }

    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    let mut errors = Vec::new();
    for task in tasks {
        let (ops, errs) = task.await.expect("client task");
        assert!(ops > 0, "a client made no progress");
        total += ops;
        errors.extend(errs);
    }
    assert!(
        errors.is_empty(),
        "{} client errors, first: {}",
        errors.len(),
        errors[0]
    );
    assert!(total > 1000, "only {total} ops");

    // The last map is the one in force: a fresh key lands where it names.
    let mut c = setup.client().await;
    for i in 0..50 {
        let key = format!("after:{i}");
        let _: () = c.set(&key, "x").await.unwrap();
        let want = match Slot::of(key.as_bytes()).get() {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        let mut d = setup.direct(want).await;
        let v: Option<String> = d.get(&key).await.unwrap();
        assert_eq!(v.as_deref(), Some("x"), "{key} not on p{want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_only_settings_are_reported_and_files_are_checked() {
    let setup = start_pools(2, &[], |_| {});
    let mut next = setup.proxy.config();
    next.proxy.listen = "127.0.0.1:1".into();
    next.proxy.workers = 7;
    let done = setup.proxy.reload(next).unwrap();
    assert_eq!(done.table_version, None);
    assert_eq!(done.not_reloaded, ["proxy.listen", "proxy.workers"]);
    assert_ne!(setup.proxy.config().proxy.listen, "127.0.0.1:1");

    // A file with a typo is rejected with its key path; switching mode is refused.
    let path = std::env::temp_dir().join(format!("slotgate-reload-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[pools.p0]\nmaster = \"127.0.0.1:1\"\nmastr = \"x\"\n",
    )
    .unwrap();
    let err = setup.proxy.reload_from_file(&path).unwrap_err();
    assert!(
        err.to_string().contains("pools.p0.mastr: unknown key"),
        "{err}"
    );
    std::fs::write(&path, "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n").unwrap();
    assert!(matches!(
        setup.proxy.reload_from_file(&path),
        Err(ReloadError::ModeChange)
    ));
    let _ = std::fs::remove_file(&path);

    // Still serving.
    let mut c = setup.client().await;
    let _: () = c.set("still", "here").await.unwrap();
}

/// The real binary: SIGHUP re-reads the file; a valid one moves the slots, a bad one is
/// logged with its key path and changes nothing; the client connection survives both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_of_slotgate_run() {
    let servers = common::standalone_servers(2);
    let port = slotgate::local_redis::free_port(false).unwrap();
    let admin_port = slotgate::local_redis::free_port(false).unwrap();
    let dir = std::env::temp_dir().join(format!("slotgate-hup-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pools.toml");
    let write = |owner: &str, extra: &str| {
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nworkers = 1\n[log]\nlevel = \"info\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             [pools.p0]\nmaster = \"{}\"\n[pools.p1]\nmaster = \"{}\"\n\
             [slots]\n\"0-16383\" = \"{owner}\"\n{extra}",
            servers[0].addr(),
            servers[1].addr()
        );
        std::fs::write(&file, text).unwrap();
    };
    write("p0", "");
    let log = std::fs::File::create(dir.join("slotgate.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .arg("--config")
        .arg(&file)
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = common::binary::KillOnDrop(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    common::eventually("slotgate listening", Duration::from_secs(10), async || {
        std::net::TcpStream::connect(addr)
    })
    .await;
    let mut c = client(addr).await;
    let mut on1 = client(servers[1].addr().parse().unwrap()).await;
    let _: () = c.set("before", 1).await.unwrap();

    let hup = |pid: u32| {
        // SAFETY: kill(2) on the PID of the child this test spawned.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0);
    };
    write("p1", "");
    hup(child.0.id());
    common::eventually(
        "SIGHUP moves the slots to p1",
        Duration::from_secs(5),
        async || {
            let _: () = c.set("after", 2).await.expect("the client stays connected");
            let v: Option<i64> = on1.get("after").await.unwrap();
            common::check(v, |&v| v == Some(2))
        },
    )
    .await;

    write("p0", "[bogus]\nx = 1\n");
    hup(child.0.id());
    // Only once slotgate has handled the signal (it logs the rejection) is "unchanged" news.
    let log_file = dir.join("slotgate.log");
    common::binary::wait_for_in_file(&log_file, "bogus: unknown key", Duration::from_secs(5));
    let _: () = c.set("still-p1", 3).await.unwrap();
    let v: Option<i64> = on1.get("still-p1").await.unwrap();
    assert_eq!(v, Some(3), "a bad file changed the routing");

    // POST /reload on the admin listener does what SIGHUP does, and says what happened.
    write("p0", "");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let (status, body) = http_post(admin, "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"reloaded\":true"), "{body}");
    let mut on0 = client(servers[0].addr().parse().unwrap()).await;
    let _: () = c.set("via-http", 4).await.unwrap();
    let v: Option<i64> = on0.get("via-http").await.unwrap();
    assert_eq!(v, Some(4), "POST /reload did not move the slots back to p0");
    write("p1", "[bogus]\nx = 1\n");
    let (status, body) = http_post(admin, "/reload");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bogus: unknown key"), "{body}");
    let _: () = c.set("still-p0", 5).await.unwrap();
    let v: Option<i64> = on0.get("still-p0").await.unwrap();
    assert_eq!(v, Some(5), "a rejected POST /reload changed the routing");

    drop(child);
    let logged = std::fs::read_to_string(dir.join("slotgate.log")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(logged.contains("config reloaded"), "{logged}");
    assert!(logged.contains("bogus: unknown key"), "{logged}");
}

/// `POST path` to the HTTP server at `addr`: `(status, body)`.
fn http_post(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}
