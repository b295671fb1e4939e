//! One slot migrating between two masters under load, done step by step against the nodes the
//! way `redis-cli --cluster reshard` does it (`SETSLOT IMPORTING/MIGRATING`, `GETKEYSINSLOT` +
//! `MIGRATE`, `SETSLOT NODE`), slowed down so clients really hit the ASK window. Through the
//! proxy, clients must see neither ASK nor MOVED nor TRYAGAIN.

use crate::common;

use std::time::{Duration, Instant};

use common::load::{self, Load};
use redis::aio::MultiplexedConnection;
use slotgate::local_redis::{LocalCluster, NodeInfo, Role};
use slotgate::slot::Slot;

/// Keys `{m}:0` … `{m}:199`: all in the slot of `m`.
const KEYS: usize = 200;
const CLIENTS: usize = 20;
/// Keys per MIGRATE, and the pause between two: 200 keys take about a second to move.
const BATCH: usize = 10;
const STEP_PAUSE: Duration = Duration::from_millis(50);
/// Longest a whole test may take.
const BUDGET: Duration = Duration::from_secs(60);

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("{{m}}:{i}")).collect()
}

/// One slot moving from `src` to `dst`; `masters` are every master's port.
struct SlotMove {
    slot: u16,
    src: NodeInfo,
    dst: NodeInfo,
    masters: Vec<u16>,
}

impl SlotMove {
    /// The slot of `{m}`, from its owner to another master.
    fn plan(cluster: &LocalCluster) -> SlotMove {
        let slot = Slot::of(b"{m}").get();
        let owner = cluster.port_of_slot(slot).expect("slot owner");
        let masters: Vec<&NodeInfo> = cluster
            .nodes()
            .iter()
            .filter(|n| n.role == Role::Master)
            .collect();
        let src = masters.iter().find(|n| n.port == owner).expect("src");
        let dst = masters.iter().find(|n| n.port != owner).expect("dst");
        SlotMove {
            slot,
            src: (*src).clone(),
            dst: (*dst).clone(),
            masters: masters.iter().map(|n| n.port).collect(),
        }
    }

    /// `IMPORTING` on the target first, then `MIGRATING` on the source (redis-cli's order).
    async fn begin(&self) {
        let s = self.slot.to_string();
        ok(
            self.dst.port,
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", &self.src.id],
        )
        .await;
        ok(
            self.src.port,
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &self.dst.id],
        )
        .await;
    }

    /// Migrates up to `batch` of the source's keys in the slot; returns how many it found.
    async fn step(&self, batch: usize) -> usize {
        let mut src = load::node(self.src.port).await;
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(self.slot)
            .arg(batch)
            .query_async(&mut src)
            .await
            .expect("GETKEYSINSLOT");
        if keys.is_empty() {
            return 0;
        }
        let reply: String = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.dst.port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut src)
            .await
            .expect("MIGRATE");
        // NOKEY: the keys vanished meanwhile, nothing to move (our load never deletes).
        assert!(reply == "OK" || reply == "NOKEY", "MIGRATE replied {reply}");
        keys.len()
    }

    /// Moves every remaining key, `batch` at a time with `pause` in between; returns the count.
    async fn drain(&self, batch: usize, pause: Duration) -> usize {
        let mut moved = 0;
        // Bounded: 10× the keys the slot can hold in these tests.
        for _ in 0..(10 * KEYS / batch) {
            let n = self.step(batch).await;
            if n == 0 {
                return moved;
            }
            moved += n;
            tokio::time::sleep(pause).await;
        }
        panic!("slot {} still has keys after moving {moved}", self.slot);
    }

    /// `SETSLOT NODE` on the target, then the source, then every other master.
    async fn finish(&self) {
        let s = self.slot.to_string();
        let others = self
            .masters
            .iter()
            .filter(|&&p| p != self.dst.port && p != self.src.port);
        let order: Vec<u16> = [self.dst.port, self.src.port]
            .into_iter()
            .chain(others.copied())
            .collect();
        for port in order {
            ok(port, &["CLUSTER", "SETSLOT", &s, "NODE", &self.dst.id]).await;
        }
    }

    /// `CLUSTER COUNTKEYSINSLOT` on `port`.
    async fn count_on(&self, port: u16) -> u64 {
        redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(self.slot)
            .query_async(&mut load::node(port).await)
            .await
            .expect("COUNTKEYSINSLOT")
    }
}

/// Sends `args` to the node on `port` and panics unless it replies `+OK`.
async fn ok(port: u16, args: &[&str]) {
    let mut c: MultiplexedConnection = load::node(port).await;
    let reply: String = redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"));
    assert_eq!(reply, "OK", "{args:?} on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migration_under_load_is_invisible_to_clients() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let setup = common::start();
    let addr = setup.addr();
    let mv = SlotMove::plan(&setup.cluster);

    let load = Load::start(addr, CLIENTS, keys());
    common::eventually(
        "every key written to the source",
        Duration::from_secs(10),
        async || {
            let n = mv.count_on(mv.src.port).await;
            common::check(n, |&n| n == KEYS as u64)
        },
    )
    .await;
    let t = Instant::now();
    mv.begin().await;
    let moved = mv.drain(BATCH, STEP_PAUSE).await;
    mv.finish().await;
    let migration_took = t.elapsed();
    // Load after the move: a proxy still routing to the source gets MOVED here. A phase
    // of the scenario, not a wait for an event.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = load.stop().await;
    eprintln!(
        "slot_migration_under_load: slot {} {}->{}: {moved} keys in {migration_took:.1?}; {} \
         (test {:.1?})",
        mv.slot,
        mv.src.port,
        mv.dst.port,
        report.summary(),
        started.elapsed()
    );

    // The data really moved: the source has nothing left, the target has every key with its
    // last acknowledged value (read directly, not through the proxy).
    assert_eq!(mv.count_on(mv.src.port).await, 0);
    assert_eq!(mv.count_on(mv.dst.port).await, KEYS as u64);
    let direct = load::check_acked(load::node_addr(mv.dst.port), &report, |_, _| false).await;
    assert!(direct.is_empty(), "on the new owner: {direct:?}");
    report.assert_progress();

    // What the clients saw through the proxy.
    report.assert_no_redirects();
    report.assert_no_errors();
    load::verify_acked(addr, &report).await;
    let ask = load::counter(addr, "redirects_ask").await;
    assert!(
        ask > 0,
        "the proxy followed no ASK: the test missed the window"
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

/// A multi-key command on a slot whose keys are split between source and target gets
/// `-TRYAGAIN` from Redis; the proxy must retry it until the migration is over (within its
/// request timeout) instead of handing TRYAGAIN to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_command_during_migration_is_retried_not_failed() {
    let _serial = load::serial().await;
    let started = Instant::now();
    let setup = common::start_with(Default::default(), |c| {
        c.backend.request_timeout_ms = 5_000;
    });
    let addr = setup.addr();
    let mv = SlotMove::plan(&setup.cluster);
    let mut c = setup.client().await;
    for (k, v) in [("{m}:1", "one"), ("{m}:2", "two")] {
        let () = redis::cmd("SET")
            .arg(k)
            .arg(v)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    // Move {m}:1 only: now the slot's keys are split and MGET of both cannot be served.
    mv.begin().await;
    let reply: String = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(mv.dst.port)
        .arg("{m}:1")
        .arg(0)
        .arg(5000)
        .query_async(&mut load::node(mv.src.port).await)
        .await
        .expect("MIGRATE {m}:1");
    assert_eq!(reply, "OK");
    let direct: redis::RedisResult<Vec<Option<String>>> = redis::cmd("MGET")
        .arg("{m}:1")
        .arg("{m}:2")
        .query_async(&mut load::node(mv.src.port).await)
        .await;
    assert_eq!(
        direct.as_ref().map_err(|e| e.kind()).err(),
        Some(redis::ErrorKind::TryAgain),
        "the source should answer TRYAGAIN: {direct:?}"
    );

    let mget = tokio::spawn(async move {
        let t = Instant::now();
        let reply: redis::RedisResult<Vec<Option<String>>> = tokio::time::timeout(
            Duration::from_secs(10),
            redis::cmd("MGET")
                .arg("{m}:1")
                .arg("{m}:2")
                .query_async(&mut c),
        )
        .await
        .expect("MGET through the proxy: no reply within 10 s");
        (reply, t.elapsed())
    });
    // The split lasts a second (the MGET is held through it: what is tested), then the
    // migration completes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    mv.drain(BATCH, Duration::ZERO).await;
    mv.finish().await;
    let (reply, took) = mget.await.expect("MGET task");
    eprintln!(
        "multi_key_during_migration: MGET -> {reply:?} after {took:.1?} (test {:.1?})",
        started.elapsed()
    );

    let values = reply.unwrap_or_else(|e| {
        panic!(
            "MGET through the proxy failed: {} {}",
            e.code().unwrap_or("?"),
            e.detail().unwrap_or("")
        )
    });
    assert_eq!(values, [Some("one".to_owned()), Some("two".to_owned())]);
    assert!(took < Duration::from_secs(5), "MGET took {took:?}");
    let n = load::counter(addr, "retries_tryagain").await;
    assert!(n > 0, "retries_tryagain not counted");
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
