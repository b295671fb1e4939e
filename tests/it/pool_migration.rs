//! Pool mode: slots moving from one pool to another while clients keep working (issue 20,
//! `[migration]`). Real redis-servers; the moves are driven through the admin API, as
//! `slotgate migrate` drives them; the backends are read directly to check where keys are.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::load::{Load, LoadOptions};
use common::{eventually, standalone_servers, PoolSetup};
use redis::AsyncCommands;
use slotgate::config::Config;
use slotgate::slot::Slot;
use slotgate::Proxy;

/// Pools p0..p2 own the slots; p3 is new and owns none.
const MAP: &[(&str, &str)] = &[
    ("0-5460", "p0"),
    ("5461-10922", "p1"),
    ("10923-16383", "p2"),
];

/// Half of p0's slots.
pub(crate) const MOVING: (u16, u16) = (0, 2730);

pub(crate) fn moving(key: &str) -> bool {
    (MOVING.0..=MOVING.1).contains(&Slot::of(key.as_bytes()).get())
}

/// Four servers, the proxy over them with an admin listener and a config file it rewrites.
pub(crate) fn start(keys_per_second: u64) -> (PoolSetup, tempfile_path::TempPath) {
    start_with(keys_per_second, |_| {})
}

/// [`start`], with `tweak` applied to the config first.
pub(crate) fn start_with(
    keys_per_second: u64,
    tweak: impl FnOnce(&mut Config),
) -> (PoolSetup, tempfile_path::TempPath) {
    let servers = standalone_servers(4);
    let mut config = common::pool_config(&servers, MAP);
    common::with_admin(&mut config);
    config.migration.keys_per_second = keys_per_second;
    config.migration.batch_keys = 50;
    tweak(&mut config);
    let file = tempfile_path::TempPath::new("slotgate-migration", ".toml");
    std::fs::write(&file.0, toml::to_string(&config).unwrap()).unwrap();
    let proxy = Proxy::start(config).expect("start slotgate in pool mode");
    proxy.set_config_file(file.0.clone());
    (PoolSetup { proxy, servers }, file)
}

/// A file path removed on drop.
pub(crate) mod tempfile_path {
    /// The path.
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn new(prefix: &str, suffix: &str) -> TempPath {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            TempPath(
                std::env::temp_dir().join(format!("{prefix}-{}-{n}{suffix}", std::process::id())),
            )
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

pub(crate) async fn admin(
    setup: &PoolSetup,
    method: hyper::Method,
    path: &str,
) -> Result<String, String> {
    let addr = setup.proxy.admin_addr().unwrap().to_string();
    crate::fleet_migration::admin(&addr, method, path).await
}

pub(crate) async fn status(setup: &PoolSetup) -> serde_json::Value {
    crate::fleet_migration::status(&setup.proxy.admin_addr().unwrap().to_string()).await
}

/// Wait until no move is left (the mover finished it), up to `limit`.
pub(crate) async fn until_done(setup: &PoolSetup, limit: Duration) -> serde_json::Value {
    eventually("every move finished", limit, || async {
        let s = status(setup).await;
        if s["moves"].as_array().is_some_and(Vec::is_empty) {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await
}

/// Keys stored on server `i`, read directly.
pub(crate) fn keys_on(setup: &PoolSetup, i: usize) -> Vec<String> {
    let out = common::redis_cli(setup.servers[i].addr().parse().unwrap(), &["--scan"]);
    out.lines().map(str::to_string).collect()
}

/// Start moving [`MOVING`] to p3.
pub(crate) async fn start_move(setup: &PoolSetup) {
    let path = format!("/migrations/start?slots={}-{}&to=p3", MOVING.0, MOVING.1);
    admin(setup, hyper::Method::POST, &path).await.unwrap();
}

/// Start moving [`MOVING`] to p3 and wait until the background mover moved `n` keys.
async fn start_and_move_some(setup: &PoolSetup, n: u64) {
    start_move(setup).await;
    eventually("some keys moved", Duration::from_secs(20), || async {
        let moved = status(setup).await["background_keys_moved"]
            .as_u64()
            .unwrap_or(0);
        if moved >= n {
            Ok(moved)
        } else {
            Err(moved)
        }
    })
    .await;
}

/// Keys written through the proxy, and when the writing began.
pub(crate) struct Seeded {
    values: HashMap<String, String>,
    began: std::time::Instant,
}

/// Write `n` keys `seed:{i}` through the proxy, one in three with a TTL of 100 s.
pub(crate) async fn seed(setup: &PoolSetup, n: usize) -> Seeded {
    let began = std::time::Instant::now();
    let mut c = setup.client().await;
    let mut written = HashMap::new();
    for i in 0..n {
        let (key, value) = (format!("seed:{i}"), format!("v{i}"));
        if i % 3 == 0 {
            let _: () = c.set_ex(&key, &value, 100).await.unwrap();
        } else {
            let _: () = c.set(&key, &value).await.unwrap();
        }
        written.insert(key, value);
    }
    Seeded {
        values: written,
        began,
    }
}

/// Every seeded key reads back its value through the proxy, its TTL kept: what 100 s from
/// its write leaves, within a second (MIGRATE carries the expiry time itself).
async fn check_seeded(setup: &PoolSetup, written: &Seeded) {
    let mut c = setup.client().await;
    for (key, value) in &written.values {
        let got: Option<String> = c.get(key).await.unwrap();
        assert_eq!(got.as_deref(), Some(value.as_str()), "{key}");
        let i: usize = key["seed:".len()..].parse().unwrap();
        let since = written.began.elapsed().as_millis() as i64;
        let pttl: i64 = c.pttl(key).await.unwrap();
        if i % 3 == 0 {
            assert!(
                pttl <= 100_000 && pttl >= 100_000 - since - 1_000,
                "{key} kept its TTL: {pttl} ms left, {since} ms after seeding began"
            );
        } else {
            assert_eq!(pttl, -1, "{key} has no TTL");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_pool_moves_to_a_new_pool_under_load_without_client_errors() {
    // Throttled so the move lasts a few seconds of load: requests move keys on touch too.
    let (setup, file) = start(300);
    let written = seed(&setup, 3000).await;
    let load_keys: Vec<String> = (0..400).map(|i| format!("load:{i}")).collect();
    assert!(load_keys.iter().filter(|k| moving(k)).count() > 30);
    let load = Load::start_with(
        setup.addr(),
        50,
        load_keys.clone(),
        LoadOptions {
            pause: Duration::from_millis(5),
            ..LoadOptions::default()
        },
    );
    // Multi-key commands, counters and transactions over keys of the moving slots.
    let mixed = tokio::spawn({
        let addr = setup.addr();
        async move {
            let mut c = common::client(addr).await;
            let mut rounds = 0u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                rounds += 1;
                let _: () = c
                    .mset(&[("m:a", rounds), ("m:b", rounds), ("m:c", rounds)])
                    .await
                    .unwrap();
                let got: Vec<u64> = c.mget(&["m:a", "m:b", "m:c"]).await.unwrap();
                assert_eq!(got, vec![rounds; 3]);
                let n: u64 = c.incr("m:counter", 1).await.unwrap();
                assert_eq!(n, rounds);
                let (a, b): (u64, u64) = redis::pipe()
                    .get("m:a")
                    .incr("m:pipelined", 1)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!((a, b), (rounds, rounds));
                let (x, y): (u64, u64) = redis::pipe()
                    .atomic()
                    .incr("{m}:x", 1)
                    .incr("{m}:y", 1)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!((x, y), (rounds, rounds));
                if rounds >= 200 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            rounds
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let answer = admin(
        &setup,
        hyper::Method::POST,
        &format!("/migrations/start?slots={}-{}&to=p3", MOVING.0, MOVING.1),
    )
    .await
    .unwrap();
    assert!(answer.contains("start moving"), "{answer}");
    let done = until_done(&setup, Duration::from_secs(60)).await;
    let rounds = mixed.await.unwrap();
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    report.assert_no_errors();
    report.assert_progress();
    assert!(rounds > 10, "the mixed client made progress: {rounds}");
    assert!(
        done["background_keys_moved"].as_u64().unwrap() > 0,
        "{done}"
    );
    assert!(done["on_touch_moves"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(done["on_touch_failures"], 0, "{done}");

    // Where keys are: none of the moved slots left on p0, all of them on p3.
    let on_p0 = keys_on(&setup, 0);
    assert!(on_p0.iter().all(|k| !moving(k)), "p0 kept moved keys");
    let on_p3 = keys_on(&setup, 3);
    assert!(
        !on_p3.is_empty() && on_p3.iter().all(|k| moving(k)),
        "{on_p3:?}"
    );
    let seeded_moving = written.values.keys().filter(|k| moving(k)).count();
    assert!(on_p3.iter().filter(|k| k.starts_with("seed:")).count() == seeded_moving);
    check_seeded(&setup, &written).await;
    let mut c = setup.client().await;
    for (key, acked) in &report.acked {
        let got: Option<String> = c.get(key).await.unwrap();
        let got = got.unwrap_or_default();
        assert!(
            got == acked.value || acked.unacked.contains(&got),
            "{key}: acknowledged {} but read {got}",
            acked.value
        );
    }

    // The slot map was switched for good in the file, and the move is gone from it.
    let text = std::fs::read_to_string(&file.0).unwrap();
    let saved = Config::parse(&text).unwrap();
    saved.validate().unwrap();
    assert!(saved.migration.moves.is_empty(), "{text}");
    let owners = saved.slot_owners();
    assert_eq!(owners[0], Some("p3"));
    assert_eq!(owners[MOVING.1 as usize], Some("p3"));
    assert_eq!(owners[MOVING.1 as usize + 1], Some("p0"));
    assert_eq!(owners[16383], Some("p2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_half_way_leaves_every_key_readable_and_a_new_start_finishes() {
    let (setup, file) = start(100);
    let written = seed(&setup, 3000).await;
    // Some keys moved, not all (about 500 of the range's keys at 100 keys/s).
    start_and_move_some(&setup, 100).await;
    admin(&setup, hyper::Method::POST, "/migrations/abort")
        .await
        .unwrap();
    assert_eq!(status(&setup).await["moves"][0]["state"], "aborting");
    check_seeded(&setup, &written).await;
    until_done(&setup, Duration::from_secs(60)).await;
    assert!(keys_on(&setup, 3).is_empty(), "every key went back to p0");
    check_seeded(&setup, &written).await;
    let saved = Config::parse(&std::fs::read_to_string(&file.0).unwrap()).unwrap();
    assert_eq!(
        saved.slot_owners()[0],
        Some("p0"),
        "the slots stayed with p0"
    );

    // Started again (unthrottled this time by a pause/resume round trip), it finishes.
    start_move(&setup).await;
    admin(&setup, hyper::Method::POST, "/migrations/pause")
        .await
        .unwrap();
    assert_eq!(status(&setup).await["moves"][0]["state"], "paused");
    check_seeded(&setup, &written).await;
    admin(&setup, hyper::Method::POST, "/migrations/resume")
        .await
        .unwrap();
    until_done(&setup, Duration::from_secs(60)).await;
    assert!(keys_on(&setup, 0).iter().all(|k| !moving(k)));
    check_seeded(&setup, &written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_moves_are_refused_and_a_dead_destination_pauses_the_mover_safely() {
    let servers = standalone_servers(4);
    let mut config = common::pool_config(&servers, MAP);
    common::with_admin(&mut config);
    // p4's server is gone (nothing listens on port 1): a move there cannot progress.
    config.pools.insert(
        "p4".into(),
        slotgate::config::PoolConfig {
            master: "127.0.0.1:1".into(),
            ..Default::default()
        },
    );
    let file = tempfile_path::TempPath::new("slotgate-migration", ".toml");
    std::fs::write(&file.0, toml::to_string(&config).unwrap()).unwrap();
    let proxy = Proxy::start(config).expect("start slotgate in pool mode");
    proxy.set_config_file(file.0.clone());
    let setup = PoolSetup { proxy, servers };
    let mut c = setup.client().await;
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| Slot::of(k.as_bytes()).get() < 100)
        .unwrap();
    let _: () = c.set(&key, "kept").await.unwrap();

    let post = |path: &'static str| admin(&setup, hyper::Method::POST, path);
    let unknown = post("/migrations/start?slots=0-99&to=nope")
        .await
        .unwrap_err();
    assert!(
        unknown.contains("names pool \"nope\", which is not declared"),
        "{unknown}"
    );
    let two_pools = post("/migrations/start?slots=5000-6000&to=p3")
        .await
        .unwrap_err();
    assert!(two_pools.contains("more than one pool"), "{two_pools}");
    let same = post("/migrations/start?slots=0-99&to=p0")
        .await
        .unwrap_err();
    assert!(
        same.contains("is the pool the slots are moving from"),
        "{same}"
    );

    post("/migrations/start?slots=0-99&to=p4").await.unwrap();
    let overlap = post("/migrations/start?slots=50-60&to=p3")
        .await
        .unwrap_err();
    assert!(overlap.contains("overlaps migration.moves[0]"), "{overlap}");
    let nothing = post("/migrations/resume?slots=7-8").await.unwrap_err();
    assert!(nothing.contains("no move of slots"), "{nothing}");
    // The mover reports the dead destination and keeps the move; the key stays where it was.
    let s = eventually("the mover's error", Duration::from_secs(20), || async {
        let s = status(&setup).await;
        if s["moves"][0]["last_error"].is_string() {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await;
    assert!(s["background_failures"].as_u64().unwrap() > 0, "{s}");
    let direct: Option<String> = setup.direct(0).await.get(&key).await.unwrap();
    assert_eq!(direct.as_deref(), Some("kept"), "the key stays on p0");
    // A request touching it fails clearly (its key cannot be moved), and loses nothing.
    let err = redis::cmd("GET")
        .arg(&key)
        .query_async::<Option<String>>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is moving between pools and its keys could not be moved"),
        "{err}"
    );
    // A reload that edits the moves by hand is refused; the move goes on.
    let mut edited = setup.proxy.config();
    edited.migration.moves.clear();
    let refused = setup.proxy.reload(edited).unwrap_err().to_string();
    assert!(refused.contains("migration.moves differ"), "{refused}");
    assert_eq!(status(&setup).await["moves"].as_array().unwrap().len(), 1);
    // An abort is accepted, but cannot end while p4 cannot be scanned (it might hold keys).
    post("/migrations/abort").await.unwrap();
    let s = status(&setup).await;
    assert_eq!(s["moves"][0]["state"], "aborting", "{s}");
    let direct: Option<String> = setup.direct(0).await.get(&key).await.unwrap();
    assert_eq!(direct.as_deref(), Some("kept"), "the key is still on p0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_mid_move_reads_the_move_from_its_file_and_finishes_it() {
    let (setup, file) = start(100);
    let written = seed(&setup, 2000).await;
    start_and_move_some(&setup, 50).await;
    // The process goes away mid-move; a new one starts from the same file.
    let PoolSetup { proxy, servers } = setup;
    proxy.shutdown();
    let mut config = Config::load(&file.0).unwrap();
    assert_eq!(config.migration.moves.len(), 1, "the move is in the file");
    config.proxy.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    config.migration.keys_per_second = 0;
    let proxy = Proxy::start(config).expect("restart");
    proxy.set_config_file(file.0.clone());
    let setup = PoolSetup { proxy, servers };
    // Before the mover is done, every key already reads back through the new process.
    check_seeded(&setup, &written).await;
    until_done(&setup, Duration::from_secs(60)).await;
    assert!(keys_on(&setup, 0).iter().all(|k| !moving(k)));
    check_seeded(&setup, &written).await;
}

/// Read reply lines from `raw` until one equals `want` (with its CRLF), or fail after `limit`
/// lines.
fn read_until(raw: &mut common::Raw, want: &str, limit: usize) {
    for _ in 0..limit {
        if raw.read_line().trim_end() == want {
            return;
        }
    }
    panic!("{want:?} never came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_their_slot_to_the_new_pool() {
    let (setup, _file) = start(0);
    let shard_channel = (0..)
        .map(|i| format!("sch{i}"))
        .find(|c| moving(c))
        .unwrap();
    let mut sub = common::Raw::connect(setup.addr());
    sub.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n");
    read_until(&mut sub, ":1", 10);
    let ssub = format!(
        "*2\r\n$10\r\nSSUBSCRIBE\r\n${}\r\n{shard_channel}\r\n",
        shard_channel.len()
    );
    sub.send(ssub.as_bytes());
    read_until(&mut sub, ":1", 10);
    // Slot 0 (where plain channels live) and the sharded channel's slot both move to p3.
    start_move(&setup).await;
    until_done(&setup, Duration::from_secs(30)).await;
    let mut c = setup.client().await;
    let receivers = |command: &'static str, channel: String| {
        let mut c = c.clone();
        async move {
            redis::cmd(command)
                .arg(channel)
                .arg("hello")
                .query_async::<i64>(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
    };
    // The subscriber is now on p3, where publishing goes: it counts, and it hears.
    let plain = eventually(
        "the plain subscription on p3",
        Duration::from_secs(5),
        || {
            let publish = receivers("PUBLISH", "news".into());
            async move {
                match publish.await {
                    Ok(1) => Ok(1),
                    other => Err(other),
                }
            }
        },
    )
    .await;
    assert_eq!(plain, 1);
    read_until(&mut sub, "hello", 20);
    let sharded = receivers("SPUBLISH", shard_channel.clone()).await.unwrap();
    assert_eq!(sharded, 1, "the sharded subscription moved with its slot");
    read_until(&mut sub, "hello", 20);
    let direct: i64 = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("news")
        .query_async::<Vec<redis::Value>>(&mut setup.direct(0).await)
        .await
        .map(|v| match v.get(1) {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        })
        .unwrap();
    assert_eq!(direct, 0, "no subscription left on the old pool");
    let _: () = c.set("after", "1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_every_database_move() {
    let (setup, _file) = start(0);
    let in_db = |db: u32| {
        let url = format!("redis://{}/{db}", setup.addr());
        async move {
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }
    };
    let mut db2 = in_db(2).await;
    let keys: Vec<String> = (0..300).map(|i| format!("d2:{i}")).collect();
    for key in &keys {
        let _: () = db2.set(key, format!("in-2-{key}")).await.unwrap();
    }
    start_move(&setup).await;
    // Touched during the move in its own database, too.
    let touched = keys.iter().find(|k| moving(k)).unwrap();
    let got: Option<String> = db2.get(touched).await.unwrap();
    assert_eq!(got, Some(format!("in-2-{touched}")));
    until_done(&setup, Duration::from_secs(30)).await;
    for key in &keys {
        let got: Option<String> = db2.get(key).await.unwrap();
        assert_eq!(got, Some(format!("in-2-{key}")), "{key}");
    }
    let mut db0 = in_db(0).await;
    let none: Option<String> = db0.get(touched).await.unwrap();
    assert_eq!(none, None, "database 0 never had it");
    let p3: redis::Client =
        redis::Client::open(format!("redis://{}/2", setup.servers[3].addr())).unwrap();
    let on_p3: usize = redis::cmd("DBSIZE")
        .query_async(&mut p3.get_multiplexed_async_connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(on_p3, keys.iter().filter(|k| moving(k)).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_pop_follows_its_key_to_the_new_pool() {
    let (setup, _file) = start(0);
    let key = (0..).map(|i| format!("q{i}")).find(|k| moving(k)).unwrap();
    // Blocked on p0 before the move begins.
    let blocked = tokio::spawn({
        let (addr, key) = (setup.addr(), key.clone());
        async move {
            let mut c = common::client(addr).await;
            let started = std::time::Instant::now();
            // Timeout 0: blocked for ever (a phase change must not wait for it).
            let got: Option<(String, String)> = c.blpop(&key, 0.0).await.unwrap();
            (got, started.elapsed())
        }
    });
    common::wait_blocked(&[setup.servers[0].addr().parse().unwrap()], 1).await;
    start_move(&setup).await;
    // The push goes where the key's slot now runs (p3): the blocked client gets it.
    let mut c = setup.client().await;
    let _: () = c.rpush(&key, "job").await.unwrap();
    let (got, waited) = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the blocked pop returned")
        .unwrap();
    assert_eq!(got, Some((key.clone(), "job".to_string())));
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    until_done(&setup, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_a_password_that_runs_out_of_memory_pauses_then_finishes() {
    use slotgate::local_redis::{RedisServer, ServerOptions};
    let mut servers = standalone_servers(3);
    // p3 needs a password (MIGRATE logs in with the pool's), and has room for about 1 MB
    // of keys (over what it uses empty, which varies by a few hundred KB from run to run).
    servers.push(RedisServer::start(ServerOptions::default()).unwrap());
    let p3: std::net::SocketAddr = servers[3].addr().parse().unwrap();
    let info = common::redis_cli(p3, &["INFO", "memory"]);
    let used: u64 = info_field(&info, "used_memory").unwrap().parse().unwrap();
    let limit = (used + 1_000_000).to_string();
    assert_eq!(
        common::redis_cli(p3, &["CONFIG", "SET", "maxmemory", &limit]),
        "OK"
    );
    assert_eq!(
        common::redis_cli(p3, &["CONFIG", "SET", "requirepass", "s3cret"]),
        "OK"
    );
    let mut config = common::pool_config(&servers, MAP);
    common::with_admin(&mut config);
    config.pools.get_mut("p3").unwrap().password = Some(slotgate::config::Secret::new("s3cret"));
    let file = tempfile_path::TempPath::new("slotgate-migration", ".toml");
    std::fs::write(&file.0, toml::to_string(&config).unwrap()).unwrap();
    let proxy = Proxy::start(config).unwrap();
    proxy.set_config_file(file.0.clone());
    let setup = PoolSetup { proxy, servers };
    let mut c = setup.client().await;
    // About 2 MB in the moving slots: more than p3 may hold.
    let big = "x".repeat(4096);
    let keys: Vec<String> = (0..)
        .map(|i| format!("m{i}"))
        .filter(|k| moving(k))
        .take(500)
        .collect();
    for key in &keys {
        let _: () = c.set(key, &big).await.unwrap();
    }
    start_move(&setup).await;
    let s = eventually(
        "the mover stops on OOM",
        Duration::from_secs(20),
        || async {
            let s = status(&setup).await;
            match s["moves"][0]["last_error"].as_str() {
                Some(e) if e.contains("OOM") => Ok(s),
                _ => Err(s),
            }
        },
    )
    .await;
    assert_eq!(s["moves"][0]["state"], "moving");
    // Nothing is lost meanwhile: each key reads back (from p3 if it moved, else from p0 —
    // or the request says clearly that its key could not be moved, and the key stays).
    let mut moved = 0;
    for key in &keys {
        match c.get::<_, Option<String>>(key).await {
            Ok(v) => {
                assert_eq!(v.as_deref(), Some(big.as_str()), "{key}");
                moved += 1;
            }
            Err(e) => assert!(
                e.to_string().contains("could not be moved") && e.to_string().contains("OOM"),
                "{e}"
            ),
        }
    }
    assert!(moved > 0, "the keys that fit moved");
    // Memory is given to p3: the move goes on and ends, every key on p3 with its value.
    let out = common::redis_cli(
        p3,
        &[
            "-a",
            "s3cret",
            "--no-auth-warning",
            "CONFIG",
            "SET",
            "maxmemory",
            "0",
        ],
    );
    assert_eq!(out, "OK");
    until_done(&setup, Duration::from_secs(30)).await;
    for key in &keys {
        let v: Option<String> = c.get(key).await.unwrap();
        assert_eq!(v.as_deref(), Some(big.as_str()), "{key}");
    }
    assert!(keys_on(&setup, 0).iter().all(|k| !moving(k)));
}

/// The value of `field` in INFO text `info` (`field:value` lines).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
}

/// The value of the sample `line` (name and labels) in `/metrics` text.
fn sample(metrics: &str, line: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_metrics_show_a_move_while_it_runs_and_its_totals_after() {
    let (setup, _file) = start(100);
    let written = seed(&setup, 1500).await;
    let seeded_moving = written.values.keys().filter(|k| moving(k)).count() as u64;
    let metrics_addr = setup.proxy.admin_addr().unwrap();
    let mut c = setup.client().await;
    let info = async |c: &mut redis::aio::MultiplexedConnection, section: Option<&str>| {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        let text: String = cmd.query_async(c).await.unwrap();
        text
    };
    // Nothing moves: plain INFO has no such section; asked for, it has the totals.
    assert!(!info(&mut c, None).await.contains("# Migration"));
    let idle = info(&mut c, Some("migration")).await;
    assert_eq!(info_field(&idle, "migration_moves"), Some("0"), "{idle}");
    assert_eq!(
        info_field(&idle, "migration_keys_per_second_limit"),
        Some("100")
    );

    start_move(&setup).await;
    // Keys of the moving slots read through the proxy move on touch: every seeded one, at
    // once, so the background mover (100 keys/s) cannot have moved them all first.
    let touched: Vec<String> = written
        .values
        .keys()
        .filter(|k| moving(k))
        .cloned()
        .collect();
    for key in &touched {
        let _: Option<String> = c.get(key).await.unwrap();
    }

    // While it moves: a per-move line with progress and a rate; plain INFO shows it too.
    let line = eventually(
        "INFO migration shows progress",
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            async move {
                let text = info(&mut c, None).await;
                let line = info_field(&text, "move0").unwrap_or_default().to_string();
                let field = |name: &str| -> f64 {
                    (line
                        .split(',')
                        .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
                };
                let moving_now = text.contains("# Migration")
                    && field("keys_moved") > 0.0
                    && field("keys_left_estimate") > 0.0
                    && field("rate_keys_per_second") > 0.0
                    && field("bytes_moved") > 0.0
                    && field("eta_seconds") >= 0.0;
                common::check(line, |_| moving_now)
            }
        },
    )
    .await;
    assert!(
        line.starts_with(&format!(
            "slots={}-{},from=p0,to=p3,state=moving,",
            MOVING.0, MOVING.1
        )),
        "{line}"
    );
    assert!(line.ends_with(",last_error="), "{line}");
    let (_, metrics) = common::http_get(metrics_addr, "/metrics");
    let labels = format!(
        "{{slots=\"{}-{}\",from=\"p0\",to=\"p3\"}}",
        MOVING.0, MOVING.1
    );
    for gauge in [
        "slotgate_migration_keys_left_estimate",
        "slotgate_migration_rate_keys_per_second",
        "slotgate_migration_move_keys_moved",
    ] {
        let value = sample(&metrics, &format!("{gauge}{labels}"));
        assert!(value.is_some_and(|v| v > 0.0), "{gauge}: {value:?}");
    }
    assert_eq!(
        sample(&metrics, "slotgate_migration_moves{state=\"moving\"}"),
        Some(1.0)
    );
    assert!(sample(&metrics, "slotgate_migration_on_touch_moves_total") >= Some(1.0));

    until_done(&setup, Duration::from_secs(60)).await;
    // After: the section is the totals; every seeded key of the range was moved, on touch
    // or in the background.
    assert!(!info(&mut c, None).await.contains("# Migration"));
    let after = info(&mut c, Some("migration")).await;
    let total = |field| {
        info_field(&after, field)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field}: {after}"))
    };
    assert_eq!(total("migration_moves"), 0, "{after}");
    let background = total("migration_background_keys_moved");
    let on_touch = total("migration_on_touch_moves");
    // Each GET touched one key: every key of the range moved once, one way or the other.
    assert_eq!(
        background + on_touch,
        seeded_moving,
        "{background} in the background and {on_touch} on touch of {seeded_moving}: {after}"
    );
    assert!(on_touch >= 1 && background >= 1, "{after}");
    let bytes = total("migration_background_bytes_moved");
    // A short string key takes some tens of bytes on a server (MEMORY USAGE).
    assert!(
        (background * 16..=background * 200).contains(&bytes),
        "{bytes} bytes for {background} keys"
    );
    assert_eq!(total("migration_background_failures"), 0);
    let (_, metrics) = common::http_get(metrics_addr, "/metrics");
    assert_eq!(
        sample(&metrics, "slotgate_migration_keys_moved_total"),
        Some(background as f64)
    );
    assert_eq!(
        sample(&metrics, "slotgate_migration_bytes_moved_total"),
        Some(bytes as f64)
    );
    assert!(
        !metrics.contains("slotgate_migration_keys_left_estimate{"),
        "a finished move has no series left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_and_scripts_during_a_move_see_every_key_once_moved_or_not() {
    let (setup, _file) = start(200);
    let written = seed(&setup, 3000).await;
    start_move(&setup).await;
    let mut c = setup.client().await;
    let mut scans = 0;
    loop {
        // A whole SCAN while keys move from p0 to p3 under it: every key present the whole
        // time is returned (p0 is walked before p3).
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut c)
                .await
                .unwrap();
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let missing: Vec<&String> = written
            .values
            .keys()
            .filter(|k| !seen.contains(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "SCAN missed {} keys: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        // A script over two keys of the moving slots, in one slot: its keys move first.
        let a = (0..)
            .map(|i| format!("{{s{i}}}:a"))
            .find(|k| moving(k))
            .unwrap();
        let b = a.replace(":a", ":b");
        let n: i64 = redis::cmd("EVAL")
            .arg("redis.call('INCR', KEYS[1]); return redis.call('INCRBY', KEYS[2], 2)")
            .arg(2)
            .arg(&a)
            .arg(&b)
            .query_async(&mut c)
            .await
            .unwrap();
        scans += 1;
        assert_eq!(n, 2 * scans);
        let moving_now = status(&setup).await["moves"]
            .as_array()
            .is_some_and(|m| !m.is_empty());
        if !moving_now {
            break;
        }
    }
    assert!(
        scans >= 2,
        "at least one scan ran while keys moved: {scans}"
    );
    check_seeded(&setup, &written).await;
}
