//! A runaway script through slotgate, in front of a 3-master cluster whose nodes answer BUSY
//! after 100 ms of script (`busy-reply-threshold`): clients of other nodes are unaffected,
//! clients of the busy node get Redis' BUSY promptly (scripts run on a lane of their own, so
//! the shared connection to the node is not stuck behind it), SCRIPT KILL through slotgate ends
//! it, and with `backend.kill_slow_scripts` slotgate kills it itself after the request timeout
//! (a script that wrote cannot be killed: its client gets a clear error, the node stays busy
//! until the script ends).

use crate::common;

use common::q;

use std::io::Read;
use std::time::{Duration, Instant};

use slotgate::config::Config;
use slotgate::local_redis::ClusterOptions;

/// 3 masters, no replicas (a busy master must not be failed over meanwhile), BUSY after
/// 100 ms of script; the proxy's config adjusted by `tune`.
fn busy_cluster(tune: impl FnOnce(&mut Config)) -> common::Setup {
    let options = ClusterOptions {
        replicas_per_master: 0,
        extra_args: vec!["--busy-reply-threshold".into(), "100".into()],
        ..Default::default()
    };
    common::start_with(options, tune)
}

/// A connection straight to the node on `port`.
async fn direct(port: u16) -> redis::aio::MultiplexedConnection {
    common::client(format!("127.0.0.1:{port}").parse().unwrap()).await
}

/// Wait until the node on `port` answers BUSY: a script has run past the threshold.
async fn wait_busy(port: u16) {
    let mut node = direct(port).await;
    common::eventually(
        "the node to run the script",
        Duration::from_secs(5),
        async || match q::<String>(&mut node, &["PING"]).await {
            Err(e) if e.to_string().contains("BUSY") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// `args` as a RESP request.
fn resp(args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out
}

/// A script that writes `KEYS[1]`, then spins for `ms` milliseconds.
fn writes_then_spins(ms: u64) -> String {
    format!(
        "redis.call('SET', KEYS[1], 'x') \
         local function now() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end \
         local start = now() while now() - start < {ms} do end return 'done'"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_busy_node_get_busy_at_once_and_other_nodes_are_unaffected() {
    let setup = busy_cluster(|_| {});
    let ports = setup.cluster.master_ports();
    let (busy, other) = (ports[0], ports[1]);
    let runaway_key = common::key_on(&setup.cluster, busy, "runaway");
    let busy_key = common::key_on(&setup.cluster, busy, "busy");
    let other_key = common::key_on(&setup.cluster, other, "other");
    let c = &mut setup.client().await;
    let _: () = q(c, &["SET", &busy_key, "v"]).await.unwrap();
    let _: () = q(c, &["SET", &other_key, "w"]).await.unwrap();
    // The script's client shares its worker (and, before, its backend connection) with
    // every other client of that worker: 2 workers, clients dealt out in turn.
    let mut runaway = setup.client().await;
    let script = tokio::spawn(async move {
        q::<()>(
            &mut runaway,
            &["EVAL", "while true do end", "1", &runaway_key],
        )
        .await
    });
    wait_busy(busy).await;
    for client in 0..4 {
        let c = &mut setup.client().await;
        let asked = Instant::now();
        let e = q::<String>(c, &["GET", &busy_key]).await.unwrap_err();
        assert!(e.to_string().contains("BUSY"), "client {client}: {e}");
        // The request timeout is 2 s: BUSY comes from the node, not from a timeout.
        assert!(
            asked.elapsed() < Duration::from_millis(1000),
            "{:?}",
            asked.elapsed()
        );
        let asked = Instant::now();
        let w: String = q(c, &["GET", &other_key]).await.unwrap();
        assert_eq!(w, "w");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
    }
    let ok: String = q(c, &["SCRIPT", "KILL"]).await.unwrap();
    assert_eq!(ok, "OK");
    let killed = script.await.unwrap().unwrap_err().to_string();
    assert!(killed.contains("Script killed by user"), "{killed}");
    let v: String = q(c, &["GET", &busy_key]).await.unwrap();
    assert_eq!(v, "v");
}

/// A client's commands to one node keep their order around its scripts: a script waits for
/// the client's earlier requests on the shared connection (here one still connecting, while
/// the scripts lane is open already), and the requests after it follow it, in one pipeline.
#[test]
fn a_pipeline_keeps_its_order_around_scripts() {
    let setup = busy_cluster(|_| {});
    let (key, other, fresh) = ("order:{k}", "order:{elsewhere}", "order:{fresh}");
    let incr = "return redis.call('INCR', KEYS[1])";
    let strlen = "return redis.call('STRLEN', KEYS[1])";
    let set = "return redis.call('SET', KEYS[1], ARGV[1])";
    let mut raw = common::Raw::connect(setup.addr());
    // The scripts lane to `fresh`'s node is open; this worker's shared one is not yet.
    raw.send(resp(&["EVAL", "return 1", "1", fresh]).as_bytes());
    assert_eq!(raw.read_line(), ":1\r\n");
    let value = "a".repeat(100_000);
    raw.send((resp(&["SET", fresh, &value]) + &resp(&["EVAL", strlen, "1", fresh])).as_bytes());
    assert_eq!(raw.read_line(), "+OK\r\n");
    assert_eq!(
        raw.read_line(),
        ":100000\r\n",
        "the script ran after the SET"
    );
    let mut pipeline = String::new();
    let mut expected = String::new();
    for round in 0..30 {
        pipeline += &resp(&["INCR", key]);
        pipeline += &resp(&["EVAL", incr, "1", key]);
        pipeline += &resp(&["GET", key]);
        pipeline += &resp(&["INCR", other]);
        let n = 2 * round + 2;
        expected += &format!(":{}\r\n:{n}\r\n${}\r\n{n}\r\n", n - 1, n.to_string().len());
        expected += &format!(":{}\r\n", round + 1);
    }
    for round in 1..=4 {
        let (before, after) = ("a".repeat(round * 100_000), "b".repeat(round * 30_000));
        pipeline += &resp(&["SET", fresh, &before]);
        pipeline += &resp(&["EVAL", strlen, "1", fresh]);
        pipeline += &resp(&["EVAL", set, "1", fresh, &after]);
        pipeline += &resp(&["STRLEN", fresh]);
        expected += &format!("+OK\r\n:{}\r\n+OK\r\n:{}\r\n", before.len(), after.len());
    }
    raw.send(pipeline.as_bytes());
    let got = raw.read_exactly(expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    // Nothing more came.
    raw.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(raw.stream.read(&mut [0u8; 16]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_slow_scripts_kills_a_script_that_outlives_the_request_timeout() {
    let setup = busy_cluster(|config| {
        config.backend.request_timeout_ms = 1000;
        config.backend.kill_slow_scripts = true;
    });
    let c = &mut setup.client().await;
    let asked = Instant::now();
    let killed = q::<()>(c, &["EVAL", "while true do end", "0"])
        .await
        .unwrap_err()
        .to_string();
    let took = asked.elapsed();
    assert!(
        killed.contains("Script killed by user with SCRIPT KILL"),
        "{killed}"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    // A function: FUNCTION KILL.
    let library =
        "#!lua name=spin\nredis.register_function('spin', function() while true do end end)";
    let _: String = q(c, &["FUNCTION", "LOAD", library]).await.unwrap();
    let asked = Instant::now();
    let killed = q::<()>(c, &["FCALL", "spin", "0"])
        .await
        .unwrap_err()
        .to_string();
    assert!(killed.contains("Script killed by user"), "{killed}");
    assert!(asked.elapsed() < Duration::from_millis(2500));
    // The nodes serve again, and the script lane too.
    let one: i64 = q(c, &["EVAL", "return 1", "0"]).await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_wrote_cannot_be_killed_and_its_client_is_told_so() {
    let setup = busy_cluster(|config| {
        config.backend.request_timeout_ms = 1000;
        config.backend.kill_slow_scripts = true;
    });
    let busy = setup.cluster.master_ports()[2];
    let key = common::key_on(&setup.cluster, busy, "wrote");
    let neighbour = common::key_on(&setup.cluster, busy, "neighbour");
    let mut writer = setup.client().await;
    let started = Instant::now();
    let script = writes_then_spins(3000);
    let script =
        tokio::spawn(async move { q::<String>(&mut writer, &["EVAL", &script, "1", &key]).await });
    wait_busy(busy).await;
    // Its node's other clients get BUSY meanwhile.
    let c = &mut setup.client().await;
    let e = q::<String>(c, &["GET", &neighbour]).await.unwrap_err();
    assert!(e.to_string().contains("BUSY"), "{e}");
    let e = script.await.unwrap().unwrap_err().to_string();
    let took = started.elapsed();
    assert!(e.contains("could not be killed"), "{e}");
    assert!(e.contains("UNKILLABLE"), "{e}");
    assert!(
        took < Duration::from_millis(2900),
        "told before the script ended: {took:?}"
    );
    // The script runs to its end; then the node serves again, with the script's write.
    let key = common::key_on(&setup.cluster, busy, "wrote");
    let v = common::eventually("the script to end", Duration::from_secs(5), async || {
        q::<String>(c, &["GET", &key]).await
    })
    .await;
    assert_eq!(v, "x");
}
