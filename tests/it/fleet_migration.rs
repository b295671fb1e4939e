//! Slot moves with two slotgate instances in front of the same pools (`[fleet] peers`): every
//! phase change is carried out on both together, an instance that cannot be reached stops it,
//! and an instance SIGKILLed mid-move comes back with the move and finishes it with the other.
//! Instance A runs in this process; instance B is the `slotgate` binary.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::binary::KillOnDrop;
use common::load::{Load, LoadOptions};
use common::{eventually, standalone_servers};
use redis::AsyncCommands;
use slotgate::config::Config;
use slotgate::local_redis::free_port;
use slotgate::slot::Slot;
use slotgate::Proxy;

const MAP: &[(&str, &str)] = &[
    ("0-5460", "p0"),
    ("5461-10922", "p1"),
    ("10923-16383", "p2"),
];
const MOVING: (u16, u16) = (0, 2730);

fn moving(key: &str) -> bool {
    (MOVING.0..=MOVING.1).contains(&Slot::of(key.as_bytes()).get())
}

pub(crate) fn loopback() -> String {
    format!("127.0.0.1:{}", free_port(false).unwrap())
}

/// A config file for one instance, removed on drop.
pub(crate) struct ConfigFile(pub(crate) PathBuf);

impl ConfigFile {
    pub(crate) fn write(name: &str, config: &Config) -> ConfigFile {
        let path = std::env::temp_dir().join(format!(
            "slotgate-fleet-{name}-{}-{}.toml",
            std::process::id(),
            free_port(false).unwrap()
        ));
        std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
        ConfigFile(path)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Start the binary on `file`; returns once it answers PING at `addr`.
pub(crate) fn spawn_b(file: &ConfigFile, addr: &str) -> KillOnDrop {
    let child = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(["--config", file.0.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let addr: SocketAddr = addr.parse().unwrap();
    common::eventually_blocking("instance B answers", Duration::from_secs(20), || {
        let out = common::redis_cli(addr, &["PING"]);
        if out == "PONG" {
            Ok(())
        } else {
            Err(out)
        }
    });
    child
}

pub(crate) async fn admin(addr: &str, method: hyper::Method, path: &str) -> Result<String, String> {
    slotgate::admin::client::request(addr, method, path).await
}

pub(crate) async fn status(addr: &str) -> serde_json::Value {
    serde_json::from_str(
        &admin(addr, hyper::Method::GET, "/migrations")
            .await
            .unwrap(),
    )
    .unwrap()
}

/// Two instances in front of the same pools, each in the other's `[fleet] peers`: A in this
/// process, B the binary (so a test can SIGKILL it), both from `base`, with config files
/// `NAME-a` / `NAME-b` they rewrite.
pub(crate) struct Pair {
    pub(crate) a: slotgate::ProxyHandle,
    pub(crate) a_admin: String,
    pub(crate) a_file: ConfigFile,
    /// B's configuration as first written.
    pub(crate) b: Config,
    pub(crate) b_admin: String,
    pub(crate) b_listen: String,
    pub(crate) b_file: ConfigFile,
    pub(crate) instance_b: KillOnDrop,
}

/// Start a [`Pair`] from `base`.
pub(crate) fn start_pair(base: &Config, name: &str) -> Pair {
    let (a_admin, b_admin, b_listen) = (loopback(), loopback(), loopback());
    let mut a = base.clone();
    a.admin.listen = a_admin.clone();
    a.fleet.peers = vec![b_admin.clone()];
    let a_file = ConfigFile::write(&format!("{name}-a"), &a);
    let proxy = Proxy::start(a).expect("start instance A");
    proxy.set_config_file(a_file.0.clone());
    let mut b = base.clone();
    b.proxy.listen = b_listen.clone();
    b.admin.listen = b_admin.clone();
    b.fleet.peers = vec![a_admin.clone()];
    b.log.level = "info".into();
    let b_file = ConfigFile::write(&format!("{name}-b"), &b);
    let instance_b = spawn_b(&b_file, &b_listen);
    Pair {
        a: proxy,
        a_admin,
        a_file,
        b,
        b_admin,
        b_listen,
        b_file,
        instance_b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_move_slots_together_through_a_sigkill_of_one() {
    let servers = standalone_servers(4);
    let mut base = common::pool_config(&servers, MAP);
    base.migration.keys_per_second = 50;
    base.migration.batch_keys = 50;
    let Pair {
        a: proxy,
        a_admin,
        a_file,
        b_admin,
        b_listen,
        b_file,
        instance_b,
        ..
    } = start_pair(&base, "pair");
    let b_addr: SocketAddr = b_listen.parse().unwrap();

    // Keys written through both instances.
    let mut through_a = common::client(proxy.local_addr()).await;
    let mut through_b = common::client(b_addr).await;
    for i in 0..2000 {
        let c = if i % 2 == 0 {
            &mut through_a
        } else {
            &mut through_b
        };
        let _: () = c.set(format!("seed:{i}"), i).await.unwrap();
    }
    let opts = LoadOptions {
        pause: Duration::from_millis(5),
        ..LoadOptions::default()
    };
    let load_a = Load::start_with(
        proxy.local_addr(),
        10,
        (0..200).map(|i| format!("la:{i}")).collect(),
        opts.clone(),
    );
    let load_b = Load::start_with(
        b_addr,
        10,
        (0..200).map(|i| format!("lb:{i}")).collect(),
        opts.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Started through A: B holds and switches with it.
    let path = format!("/migrations/start?slots={}-{}&to=p3", MOVING.0, MOVING.1);
    admin(&a_admin, hyper::Method::POST, &path).await.unwrap();
    let on_b = status(&b_admin).await;
    assert_eq!(
        on_b["moves"][0]["state"], "moving",
        "B switched with A: {on_b}"
    );
    // Some keys moved (at 50 keys/s), far from all of the range's ~330.
    eventually("some keys moved", Duration::from_secs(20), || async {
        let moved = |s: serde_json::Value| s["background_keys_moved"].as_u64().unwrap_or(0);
        let moved = moved(status(&a_admin).await) + moved(status(&b_admin).await);
        if moved >= 30 {
            Ok(moved)
        } else {
            Err(moved)
        }
    })
    .await;
    // One mover for the fleet: the instance whose admin address sorts first.
    let (moved_a, moved_b) = (
        status(&a_admin).await["background_keys_moved"]
            .as_u64()
            .unwrap_or(0),
        status(&b_admin).await["background_keys_moved"]
            .as_u64()
            .unwrap_or(0),
    );
    let leader_moved = if a_admin < b_admin {
        (moved_a, moved_b)
    } else {
        (moved_b, moved_a)
    };
    assert!(
        leader_moved.0 > 0 && leader_moved.1 == 0,
        "A {moved_a}, B {moved_b}"
    );
    let report_b = load_b.stop().await;
    eprintln!("B before the kill: {}", report_b.summary());
    report_b.assert_no_errors();

    // B dies mid-move. A phase change now needs it: pausing is refused, clearly.
    drop(through_b);
    drop(instance_b);
    let refused = admin(&a_admin, hyper::Method::POST, "/migrations/pause")
        .await
        .unwrap_err();
    assert!(
        refused.contains(&format!("peer {b_admin} did not hold the slots")),
        "{refused}"
    );
    assert_eq!(status(&a_admin).await["moves"][0]["state"], "moving");

    // B comes back from its file, with the move, and the two finish it together.
    let saved_b = Config::load(&b_file.0).unwrap();
    assert_eq!(saved_b.migration.moves.len(), 1, "B's file has the move");
    let _instance_b = spawn_b(&b_file, &b_listen);
    eventually(
        "the move finished on both",
        Duration::from_secs(90),
        || async {
            let (a, b) = (status(&a_admin).await, status(&b_admin).await);
            if a["moves"].as_array().is_some_and(Vec::is_empty)
                && b["moves"].as_array().is_some_and(Vec::is_empty)
            {
                Ok(())
            } else {
                Err((a, b))
            }
        },
    )
    .await;
    let report_a = load_a.stop().await;
    eprintln!("A throughout: {}", report_a.summary());
    report_a.assert_no_errors();
    report_a.assert_progress();

    // Both files say the slots are p3's; every key reads back through both instances.
    for file in [&a_file, &b_file] {
        let saved = Config::load(&file.0).unwrap();
        assert!(saved.migration.moves.is_empty());
        assert_eq!(saved.slot_owners()[0], Some("p3"));
        assert_eq!(saved.slot_owners()[MOVING.1 as usize + 1], Some("p0"));
    }
    let mut through_b = common::client(b_addr).await;
    for i in 0..2000 {
        let key = format!("seed:{i}");
        let from_a: Option<i64> = through_a.get(&key).await.unwrap();
        let from_b: Option<i64> = through_b.get(&key).await.unwrap();
        assert_eq!((from_a, from_b), (Some(i), Some(i)), "{key}");
    }
    for (key, acked) in report_a.acked.iter().chain(report_b.acked.iter()) {
        let got: Option<String> = through_b.get(key).await.unwrap();
        let got = got.unwrap_or_default();
        assert!(got == acked.value || acked.unacked.contains(&got), "{key}");
    }
    let left_on_p0 = common::redis_cli(servers[0].addr().parse().unwrap(), &["--scan"]);
    assert!(left_on_p0.lines().all(|k| !moving(k)), "p0 kept moved keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_that_died_mid_change_finishes_it_when_it_restarts() {
    let servers = standalone_servers(4);
    let base = common::pool_config(&servers, MAP);
    let (a_admin, b_admin) = (loopback(), loopback());
    let with = |admin: &str, peer: &str| {
        let mut c = base.clone();
        c.admin.listen = admin.to_string();
        c.fleet.peers = vec![peer.to_string()];
        c
    };
    let a_file = ConfigFile::write("a2", &with(&a_admin, &b_admin));
    let b_file = ConfigFile::write("b2", &with(&b_admin, &a_admin));
    let b = Proxy::start(with(&b_admin, &a_admin)).unwrap();
    b.set_config_file(b_file.0.clone());
    let mut c = common::client(b.local_addr()).await;
    let key = (0..).map(|i| format!("k{i}")).find(|k| moving(k)).unwrap();
    let _: () = c.set(&key, "v").await.unwrap();

    // A held B for phase change 1 (slots 0-2730 to p3) and died before committing.
    let mut held = slotgate::migration::fleet::State::of(&Config::load(&b_file.0).unwrap());
    held.version = 1;
    held.by = Some(a_admin.clone());
    held.moves.push(slotgate::config::SlotMove {
        slots: format!("{}-{}", MOVING.0, MOVING.1),
        from: "p0".into(),
        to: "p3".into(),
        state: slotgate::config::MoveState::Moving,
    });
    slotgate::migration::fleet::hold(&b_admin, &held, Duration::from_secs(5))
        .await
        .unwrap();
    let on_b = slotgate::migration::fleet::state(&b_admin, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((on_b.pending, on_b.version), (Some(1), 0));
    // Its slots are held on B meanwhile: a request for them waits, then fails clearly.
    let err = redis::cmd("GET")
        .arg(&key)
        .query_async::<Option<String>>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("changing migration phase"),
        "{err}"
    );

    // A restarts from its file (it never committed): it cancels B's pending change.
    let a = Proxy::start(Config::load(&a_file.0).unwrap()).unwrap();
    a.set_config_file(a_file.0.clone());
    let on_b = slotgate::migration::fleet::state(&b_admin, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((on_b.pending, on_b.version), (None, 0), "cancelled");
    let got: Option<String> = c.get(&key).await.unwrap();
    assert_eq!(got.as_deref(), Some("v"), "the slot serves again, from p0");
    drop(a);
}
