//! Transactions through the proxy: MULTI/EXEC/DISCARD queued by slotgate and run on the slot's
//! master, WATCH on a pinned connection, Redis' errors for misuse, and a MOVED inside a
//! transaction absorbed by re-running it where the slot went.

use crate::common;

use common::{lines, q};

use std::time::Duration;

use common::Raw;
use slotgate::slot::Slot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_exec_runs_queued_commands_on_the_slots_master() {
    let setup = common::start();
    let c = &mut setup.client().await;

    let (a, b, n): (String, i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("{tx}a")
        .arg("1")
        .cmd("INCRBY")
        .arg("{tx}a")
        .arg(41)
        .cmd("GET")
        .arg("{tx}a")
        .query_async(c)
        .await
        .unwrap();
    assert_eq!((a.as_str(), b, n.as_str()), ("OK", 42, "42"));

    // The same over raw RESP, byte for byte what Redis answers.
    let mut raw = Raw::connect(setup.addr());
    let got = lines(
        &mut raw,
        &["MULTI", "SET {tx}b x", "PING", "DISCARD", "GET {tx}b"],
    );
    assert_eq!(
        got,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+OK\r\n",
            "$-1\r\n"
        ]
    );
    assert_eq!(
        lines(&mut raw, &["EXEC", "DISCARD"]),
        [
            "-ERR EXEC without MULTI\r\n",
            "-ERR DISCARD without MULTI\r\n"
        ]
    );
    assert_eq!(
        lines(&mut raw, &["MULTI", "MULTI", "WATCH {tx}a"]),
        [
            "+OK\r\n",
            "-ERR MULTI calls can not be nested\r\n",
            "-ERR WATCH inside MULTI is not allowed\r\n"
        ]
    );
    // Neither error aborts the transaction (Redis' rule).
    raw.send(b"SET {tx}c 1\r\nEXEC\r\n");
    assert_eq!(raw.read_line(), "+QUEUED\r\n");
    assert_eq!(raw.read_exactly(10), b"*1\r\n+OK\r\n");

    // UNWATCH inside MULTI is queued like any command: its +OK is in EXEC's array.
    raw.send(b"MULTI\r\nSET {tx}d 1\r\nUNWATCH\r\nGET {tx}d\r\nEXEC\r\n");
    assert_eq!(
        raw.read_exactly(53),
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n+OK\r\n$1\r\n1\r\n"
    );

    // A key-less transaction runs on some master.
    raw.send(b"MULTI\r\nPING\r\nECHO hi\r\nEXEC\r\n");
    assert_eq!(
        raw.read_exactly(38),
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+PONG\r\n$2\r\nhi\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_while_queueing_abort_exec_and_nothing_runs() {
    let setup = common::start();
    let c = &mut setup.client().await;
    let mut raw = Raw::connect(setup.addr());
    // Keys in two slots: the second command fails with CROSSSLOT, EXEC with EXECABORT.
    assert_ne!(Slot::of(b"xa"), Slot::of(b"xb"));
    let got = lines(&mut raw, &["MULTI", "SET xa 1", "SET xb 2", "EXEC"]);
    assert_eq!(
        got,
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        ]
    );
    assert_eq!(q::<Option<String>>(c, &["GET", "xa"]).await.unwrap(), None);

    // Unknown command and wrong arity, as Redis words them.
    let got = lines(
        &mut raw,
        &["MULTI", "SET {e}a 1", "NOSUCH x", "GET", "EXEC"],
    );
    assert_eq!(
        got[2],
        "-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"
    );
    assert_eq!(
        got[3],
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert!(got[4].starts_with("-EXECABORT"));
    assert_eq!(
        q::<Option<String>>(c, &["GET", "{e}a"]).await.unwrap(),
        None
    );

    // A command that needs every master cannot be part of a one-node transaction.
    let got = lines(&mut raw, &["MULTI", "KEYS *", "EXEC"]);
    assert!(
        got[1].starts_with("-ERR slotgate: 'KEYS' inside MULTI"),
        "{got:?}"
    );
    assert!(got[2].starts_with("-EXECABORT"));

    // Runtime errors stay inside EXEC's array, as in Redis.
    let _: () = q(c, &["SET", "{r}s", "text"]).await.unwrap();
    raw.send(b"MULTI\r\nINCR {r}s\r\nSET {r}t 1\r\nEXEC\r\n");
    let reply = raw.read_exactly(100);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.ends_with("*2\r\n-ERR value is not an integer or out of range\r\n+OK\r\n"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_detects_a_change_by_another_client() {
    let setup = common::start();
    let other = &mut setup.client().await;
    let mut raw = Raw::connect(setup.addr());

    // Untouched: EXEC runs.
    let got = lines(
        &mut raw,
        &["WATCH {w}k", "GET {w}k", "MULTI", "SET {w}k mine"],
    );
    assert_eq!(got, ["+OK\r\n", "$-1\r\n", "+OK\r\n", "+QUEUED\r\n"]);
    raw.send(b"EXEC\r\n");
    assert_eq!(raw.read_exactly(10), b"*1\r\n+OK\r\n");

    // Changed by another client between WATCH and EXEC: EXEC answers a null array.
    assert_eq!(lines(&mut raw, &["WATCH {w}k"]), ["+OK\r\n"]);
    let _: () = q(other, &["SET", "{w}k", "theirs"]).await.unwrap();
    let got = lines(&mut raw, &["MULTI", "SET {w}k mine-again", "EXEC"]);
    assert_eq!(got, ["+OK\r\n", "+QUEUED\r\n", "*-1\r\n"]);
    assert_eq!(
        q::<String>(other, &["GET", "{w}k"]).await.unwrap(),
        "theirs"
    );

    // UNWATCH forgets the watch; a key in another slot than the watched one is CROSSSLOT.
    let got = lines(&mut raw, &["WATCH {w}k", "UNWATCH"]);
    assert_eq!(got, ["+OK\r\n", "+OK\r\n"]);
    let _: () = q(other, &["SET", "{w}k", "again"]).await.unwrap();
    let got = lines(&mut raw, &["MULTI", "SET {w}k last", "EXEC"]);
    assert_eq!(got[2], "*1\r\n");
    assert_eq!(raw.read_line(), "+OK\r\n");
    let got = lines(&mut raw, &["WATCH {w}k", "WATCH {v}k"]);
    assert_eq!(
        got[1],
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    let got = lines(&mut raw, &["MULTI", "SET {v}k 1", "EXEC"]);
    assert!(got[1].starts_with("-CROSSSLOT"), "{got:?}");
    assert!(got[2].starts_with("-EXECABORT"), "{got:?}");
}

/// Optimistic locking done right: 10 clients each add 1 to a counter 30 times with
/// WATCH/GET/MULTI/SET/EXEC, retrying when EXEC says the key changed. Any lost update would
/// show as a total below 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_increments_from_many_clients_add_up() {
    let setup = common::start();
    const CLIENTS: usize = 10;
    const EACH: usize = 30;
    let addr = setup.addr();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                // A multiplexed connection cannot hold a WATCH for one caller: use a dedicated one.
                let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                #[allow(deprecated)]
                let mut c = client.get_async_connection().await.unwrap();
                let mut conflicts = 0;
                for _ in 0..EACH {
                    loop {
                        let _: () = redis::cmd("WATCH")
                            .arg("{ctr}n")
                            .query_async(&mut c)
                            .await
                            .unwrap();
                        let n: Option<i64> = redis::cmd("GET")
                            .arg("{ctr}n")
                            .query_async(&mut c)
                            .await
                            .unwrap();
                        let done: Option<(String,)> = redis::pipe()
                            .atomic()
                            .cmd("SET")
                            .arg("{ctr}n")
                            .arg(n.unwrap_or(0) + 1)
                            .query_async(&mut c)
                            .await
                            .unwrap();
                        if done.is_some() {
                            break;
                        }
                        conflicts += 1;
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let c = &mut setup.client().await;
    let total: i64 = q(c, &["GET", "{ctr}n"]).await.unwrap();
    assert_eq!(total, (CLIENTS * EACH) as i64, "{conflicts} conflicts");
    assert!(
        conflicts > 0,
        "the clients never raced: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_hit_by_moved_runs_again_on_the_new_master() {
    let setup = common::start_with(Default::default(), common::with_admin);
    let admin = setup.proxy.admin_addr().unwrap();
    // `/metrics` counts redirects met on dedicated connections (EXEC) too.
    let moved_metric = || {
        let (_, body) = common::http_get(admin, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("slotgate_redirects_total{kind=\"moved\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let c = &mut setup.client().await;
    // Warm the proxy's table, then move the (empty) slot of {mv} behind its back.
    let _: () = q(c, &["SET", "warm", "1"]).await.unwrap();
    let slot = Slot::of(b"mv").get();
    let nodes = setup.cluster.nodes().to_vec();
    let from = setup.cluster.port_of_slot(slot).unwrap();
    let to = nodes
        .iter()
        .find(|n| n.role == slotgate::local_redis::Role::Master && n.port != from)
        .unwrap();
    for node in nodes
        .iter()
        .filter(|n| n.role == slotgate::local_redis::Role::Master)
    {
        let mut direct = common::client(format!("127.0.0.1:{}", node.port).parse().unwrap()).await;
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&to.id)
            .query_async(&mut direct)
            .await
            .unwrap();
    }
    let moved_before = common::load::info_field(setup.addr(), "redirects_moved")
        .await
        .unwrap_or(0);
    let metric_before = moved_metric();

    let (ok, n): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("{mv}a")
        .arg("1")
        .cmd("INCR")
        .arg("{mv}a")
        .query_async(c)
        .await
        .unwrap();
    assert_eq!((ok.as_str(), n), ("OK", 2));

    // It ran on the new owner, once.
    let mut direct = common::client(format!("127.0.0.1:{}", to.port).parse().unwrap()).await;
    assert_eq!(q::<i64>(&mut direct, &["GET", "{mv}a"]).await.unwrap(), 2);
    // Counted by the worker that met it: wait for the counters to show it.
    common::eventually(
        "the transaction's MOVED counted in INFO",
        Duration::from_secs(5),
        async || {
            let moved_after = common::load::info_field(setup.addr(), "redirects_moved")
                .await
                .unwrap_or(0);
            common::check(moved_after, |&n| n > moved_before)
        },
    )
    .await;
    let what = "the MOVED met by EXEC counted in /metrics";
    common::eventually(what, Duration::from_secs(5), async || {
        if moved_metric() > metric_before {
            return Ok(());
        }
        let (_, body) = common::http_get(admin, "/metrics");
        let lines: Vec<String> = body
            .lines()
            .filter(|l| l.contains("redirect"))
            .map(String::from)
            .collect();
        Err(lines.join("\n"))
    })
    .await;
}

/// PUBLISH has no key, so a cluster node runs it in a transaction of any slot (Celery's
/// result backend stores a result and publishes it in one MULTI); the message reaches a
/// subscriber through slotgate like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_queued_in_a_transaction_of_any_slot() {
    let setup = common::start();
    let mut subscriber = Raw::connect(setup.addr());
    subscriber.send(b"SUBSCRIBE results\r\n");
    let confirmed: Vec<String> = (0..6).map(|_| subscriber.read_line()).collect();
    assert_eq!(confirmed[5], ":1\r\n", "{confirmed:?}");
    // A key away from slot 0's master, where slotgate sends a PUBLISH on its own.
    let slot0 = setup.cluster.port_of_slot(0).expect("slot 0 is served");
    let key = (0..1000)
        .map(|i| format!("meta:{i}"))
        .find(|k| setup.node_of(k).port() != slot0)
        .expect("a key on another master");
    let mut raw = Raw::connect(setup.addr());
    let got = lines(
        &mut raw,
        &[
            "MULTI",
            &format!("SET {key} done"),
            "PUBLISH results done",
            "EXEC",
        ],
    );
    assert_eq!(got, ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "*2\r\n"]);
    assert_eq!(raw.read_line(), "+OK\r\n");
    assert!(raw.read_line().starts_with(':'), "PUBLISH's count");
    let message: Vec<String> = (0..7).map(|_| subscriber.read_line()).collect();
    assert_eq!(message[6], "done\r\n", "{message:?}");
}
