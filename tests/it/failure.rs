//! Dead, slow and missing backends: clear errors, everyone else keeps being served, and the
//! proxy recovers by itself.

use crate::common;

use std::time::{Duration, Instant};

use slotgate::config::WhenNodeDown;
use slotgate::local_redis::ClusterOptions;
use slotgate::{Proxy, StartError};

/// No automatic failover during these tests: a killed master stays the owner of its slots.
fn no_failover() -> ClusterOptions {
    ClusterOptions {
        node_timeout_ms: 60_000,
        ..ClusterOptions::default()
    }
}

/// `CLIENT PAUSE` the node on `port` for `ms` (it accepts bytes but answers nothing); returns
/// when the pause began.
async fn pause_node(port: u16, ms: u64) -> Instant {
    let mut direct = common::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query_async(&mut direct)
        .await
        .unwrap();
    Instant::now()
}

async fn get(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<Option<String>> {
    redis::cmd("GET").arg(key).query_async(c).await
}

async fn set(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
    v: &str,
) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(key).arg(v).query_async(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_gives_clear_error_then_recovers() {
    let mut setup = common::start_with(no_failover(), |config| {
        config.cluster.when_node_down = WhenNodeDown::FailFast;
    });
    let masters = setup.cluster.master_ports();
    let (victim_port, other_port) = (masters[0], masters[1]);
    let victim = common::node_index(&setup.cluster, victim_port);
    let dead_key = common::key_on(&setup.cluster, victim_port, "dead");
    let live_key = common::key_on(&setup.cluster, other_port, "live");
    let mut c = setup.client().await;
    set(&mut c, &dead_key, "1").await.unwrap();
    set(&mut c, &live_key, "1").await.unwrap();

    setup.cluster.kill(victim).unwrap();
    let started = Instant::now();
    let err = get(&mut c, &dead_key).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "error took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("slotgate") && err.contains(&victim_port.to_string()),
        "{err}"
    );
    // Every other slot is still served, on the same client connection.
    assert_eq!(get(&mut c, &live_key).await.unwrap().as_deref(), Some("1"));
    // A cross-slot MGET with one part on the dead node: one error reply naming the node, as
    // for the part alone, never a short or partly-null array.
    let split: redis::Value = redis::cmd("MGET")
        .arg(&live_key)
        .arg(&dead_key)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| redis::Value::SimpleString(format!("error: {e}")));
    match &split {
        redis::Value::SimpleString(e) => assert!(
            e.starts_with("error:") && e.contains(&victim_port.to_string()),
            "{e}"
        ),
        other => panic!("a split MGET with a dead part answered {other:?}"),
    }
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&live_key)
        .arg(&live_key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(values, [Some("1".to_string()), Some("1".to_string())]);
    // Repeated requests to the dead node keep failing fast.
    for _ in 0..20 {
        let t = Instant::now();
        assert!(get(&mut c, &dead_key).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    setup.cluster.restart(victim).unwrap();
    let what = "recovery after the node came back";
    common::eventually(what, Duration::from_secs(15), async || {
        set(&mut c, &dead_key, "2").await
    })
    .await;
    assert_eq!(get(&mut c, &dead_key).await.unwrap().as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_a_dead_node_are_held_until_their_deadline() {
    let mut setup = common::start_with(no_failover(), |config| {
        // Long enough to cover a restart: a master that rejoins refuses writes (CLUSTERDOWN)
        // for its first 2 s (Redis' CLUSTER_WRITABLE_DELAY); those are retried too.
        config.backend.request_timeout_ms = 4_000;
    });
    let masters = setup.cluster.master_ports();
    let victim = common::node_index(&setup.cluster, masters[0]);
    let key = common::key_on(&setup.cluster, masters[0], "held");
    let mut c = setup.client().await;
    set(&mut c, &key, "before").await.unwrap();

    // Dead for longer than the request timeout: the request waits it out, then fails clearly.
    setup.cluster.kill(victim).unwrap();
    let started = Instant::now();
    let err = get(&mut c, &key).await.unwrap_err().to_string();
    let waited = started.elapsed();
    assert!(
        err.contains("slotgate") && err.contains("unreachable"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_millis(3_700) && waited < Duration::from_millis(5_000),
        "held for {waited:?}"
    );

    // Back within the request timeout: the held request is answered, no error at all.
    let mut c2 = setup.client().await;
    let key2 = key.clone();
    let retried = common::load::counter(setup.addr(), "requests_retried").await;
    let pending = tokio::spawn(async move { set(&mut c2, &key2, "during").await });
    // The SET is held: the proxy has queued it for another try.
    common::eventually(
        "the SET held for a retry",
        Duration::from_secs(5),
        async || {
            let now = common::load::counter(setup.addr(), "requests_retried").await;
            common::check(now, |&n| n > retried)
        },
    )
    .await;
    setup.cluster.restart(victim).unwrap();
    pending
        .await
        .unwrap()
        .expect("a request held across a short outage succeeds");
    assert_eq!(get(&mut c, &key).await.unwrap().as_deref(), Some("during"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_stops_answering_times_out_clearly() {
    let setup = common::start_with(no_failover(), |config| {
        config.backend.request_timeout_ms = 800;
    });
    let masters = setup.cluster.master_ports();
    let slow_key = common::key_on(&setup.cluster, masters[0], "slow");
    let fast_key = common::key_on(&setup.cluster, masters[1], "fast");
    let mut c = setup.client().await;
    set(&mut c, &fast_key, "ok").await.unwrap();

    pause_node(masters[0], 3_000).await;
    let started = Instant::now();
    let err = get(&mut c, &slow_key).await.unwrap_err().to_string();
    let took = started.elapsed();
    assert!(err.contains("did not answer within 800 ms"), "{err}");
    assert!(took < Duration::from_millis(2_000), "timeout took {took:?}");
    assert_eq!(get(&mut c, &fast_key).await.unwrap().as_deref(), Some("ok"));

    // The node answers again once its pause is over (a PING waits for that).
    let mut direct = common::client(common::load::node_addr(masters[0])).await;
    let _: String = common::q(&mut direct, &["PING"]).await.unwrap();
    set(&mut c, &slow_key, "back").await.unwrap();
    assert_eq!(
        get(&mut c, &slow_key).await.unwrap().as_deref(),
        Some("back")
    );
}

/// The replies to one read are written together, but a slow node holds back the replies
/// before its own only for a moment (`proxy.reply_hold_ms`, 1 ms by default): the fast reply
/// comes at once, the slow one when its node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_does_not_hold_back_earlier_replies_of_the_same_read() {
    let (fast_after, slow_after) = fast_then_paused_in_one_read(None).await;
    assert!(
        fast_after < Duration::from_millis(500),
        "the fast reply waited {fast_after:?} for the paused node"
    );
    assert!(
        slow_after >= Duration::from_millis(1_000),
        "the paused node answered after {slow_after:?}"
    );
}

/// `proxy.reply_hold_ms` is the bound: at 1000 ms the fast reply waits that long for the
/// paused node's (paused for 1500 ms), then goes without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_hold_is_bounded_by_its_setting() {
    let (fast_after, slow_after) = fast_then_paused_in_one_read(Some(1_000)).await;
    assert!(
        fast_after >= Duration::from_millis(900) && fast_after < Duration::from_millis(1_400),
        "the fast reply came after {fast_after:?}, not after the 1000 ms hold"
    );
    assert!(
        slow_after >= Duration::from_millis(1_000),
        "the paused node answered after {slow_after:?}"
    );
}

/// Sends, in one write, a GET for a master that answers and one for a master paused for
/// 1500 ms; returns when each reply arrived, counted from the pause.
async fn fast_then_paused_in_one_read(reply_hold_ms: Option<u64>) -> (Duration, Duration) {
    let setup = common::start_with(no_failover(), |config| {
        if let Some(ms) = reply_hold_ms {
            config.proxy.reply_hold_ms = ms;
        }
    });
    let masters = setup.cluster.master_ports();
    let slow_key = common::key_on(&setup.cluster, masters[0], "slow");
    let fast_key = common::key_on(&setup.cluster, masters[1], "fast");
    let mut c = setup.client().await;
    set(&mut c, &fast_key, "quick").await.unwrap();
    set(&mut c, &slow_key, "late").await.unwrap();

    let paused_at = pause_node(masters[0], 1_500).await;
    let get = |key: &str| format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    let fast_reply: &[u8] = b"$5\r\nquick\r\n";
    let slow_reply: &[u8] = b"$4\r\nlate\r\n";
    let mut raw = common::Raw::connect(setup.addr());
    // One write, so one read for the proxy: the fast GET first, then the one the pause holds.
    raw.send((get(&fast_key) + &get(&slow_key)).as_bytes());
    let first = raw.read_exactly(fast_reply.len());
    let fast_after = paused_at.elapsed();
    assert_eq!(first, fast_reply, "the fast reply alone first");
    let second = raw.read_exactly(slow_reply.len());
    let slow_after = paused_at.elapsed();
    assert_eq!(second, slow_reply);
    (fast_after, slow_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_seed_at_startup_is_skipped() {
    let cluster = slotgate::local_redis::LocalCluster::start(ClusterOptions::default()).unwrap();
    let dead = format!(
        "127.0.0.1:{}",
        slotgate::local_redis::free_port(false).unwrap()
    );
    let mut seeds = vec![dead];
    seeds.extend(cluster.seeds().into_iter().take(1));
    let proxy = Proxy::start(common::proxy_config(seeds)).expect("one live seed is enough");
    let mut c = common::client(proxy.local_addr()).await;
    set(&mut c, "after-dead-seed", "x").await.unwrap();
    assert_eq!(
        get(&mut c, "after-dead-seed").await.unwrap().as_deref(),
        Some("x")
    );
}

#[test]
fn no_seed_answering_is_a_clear_startup_error() {
    let dead: Vec<String> = (0..2)
        .map(|_| {
            format!(
                "127.0.0.1:{}",
                slotgate::local_redis::free_port(false).unwrap()
            )
        })
        .collect();
    let err = Proxy::start(common::proxy_config(dead.clone()))
        .err()
        .expect("must fail");
    assert!(matches!(err, StartError::Topology(_)), "{err}");
    let text = err.to_string();
    for seed in &dead {
        assert!(text.contains(seed.as_str()), "{text}");
    }

    // The binary exits non-zero with the same message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            &dead.join(","),
            "--log-level",
            "error",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot discover the cluster"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_slot_coverage_is_refused_unless_allowed() {
    let node = common::lone_cluster_node(0, 99).await;
    let err = Proxy::start(common::proxy_config(vec![node.addr()]))
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("only 100 of 16384 slots"), "{err}");

    let mut config = common::proxy_config(vec![node.addr()]);
    config.cluster.require_full_coverage = false;
    let proxy = Proxy::start(config).expect("partial coverage allowed");
    let mut c = common::client(proxy.local_addr()).await;
    let covered = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| slotgate::slot::Slot::of(k.as_bytes()).get() < 100)
        .unwrap();
    let uncovered = "foo"; // slot 12182
    let _: () = set(&mut c, &covered, "v").await.unwrap();
    let err = get(&mut c, uncovered).await.unwrap_err().to_string();
    assert!(
        err.contains("ClusterDown") && err.contains("slot 12182 is not served"),
        "{err}"
    );
}
