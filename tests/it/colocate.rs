//! Co-location rules (`[[placement.colocate]]`) against a real cluster and real standalone
//! servers: a transaction over a group's unrelated keys runs atomically through slotgate
//! (it answered CROSSSLOT before), the keys are stored on the nodes under the group's tag, and
//! every reply that names keys (KEYS, SCAN, RANDOMKEY, blocking pops, XREAD, EXEC) gives the
//! client's names back. In pool mode the rule is routing only: the keys keep their names.

use crate::common;

use common::q;
use redis::aio::MultiplexedConnection;
use slotgate::config::{ColocateRule, Config};

/// The rule every test here uses: RQ's keys in one slot.
fn rq_rule(config: &mut Config) {
    config.placement.colocate = vec![ColocateRule {
        name: "rq".into(),
        keys: vec!["rq:*".into()],
    }];
}

/// A connection straight to a node (no proxy).
async fn node(addr: std::net::SocketAddr) -> MultiplexedConnection {
    common::client(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_a_groups_keys_runs_atomically() {
    let setup = common::start_with(Default::default(), rq_rule);
    let c = &mut setup.client().await;
    // Three keys of three different slots on their own.
    let (q1, job, queues) = ("rq:queue:default", "rq:job:1", "rq:queues");
    assert_ne!(setup.node_of(q1), setup.node_of(job));

    let (pushed, set, added): (i64, String, i64) = redis::pipe()
        .atomic()
        .cmd("RPUSH")
        .arg(q1)
        .arg("1")
        .cmd("SET")
        .arg(job)
        .arg("queued")
        .cmd("SADD")
        .arg(queues)
        .arg(q1)
        .query_async(c)
        .await
        .unwrap();
    assert_eq!((pushed, set.as_str(), added), (1, "OK", 1));

    // Stored under the tag, all on the node of slot("rq").
    let home = setup.node_of("{rq}");
    let n = &mut node(home).await;
    let stored: String = q(n, &["GET", "{rq}rq:job:1"]).await.unwrap();
    assert_eq!(stored, "queued");
    let plain: Option<String> = q(n, &["GET", "rq:job:1"]).await.unwrap();
    assert_eq!(plain, None);

    // Through the proxy, the client's names work as ever.
    let got: String = q(c, &["GET", job]).await.unwrap();
    assert_eq!(got, "queued");
    let members: Vec<String> = q(c, &["SMEMBERS", queues]).await.unwrap();
    assert_eq!(members, [q1]);

    // WATCH over the group, and a script over its keys.
    let mut raw = common::Raw::connect(setup.addr());
    let got = common::lines(
        &mut raw,
        &[
            "WATCH rq:job:1 rq:queues",
            "MULTI",
            "INCR rq:counter",
            "LLEN rq:queue:default",
            "EXEC",
        ],
    );
    assert_eq!(
        got,
        ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "*2\r\n"]
    );
    assert_eq!(
        [raw.read_line(), raw.read_line()],
        [":1\r\n", ":1\r\n"],
        "EXEC's two replies"
    );
    let moved: i64 = q(
        c,
        &[
            "EVAL",
            "redis.call('LPOP', KEYS[1]); return redis.call('RPUSH', KEYS[2], 'x')",
            "2",
            q1,
            "rq:queue:failed",
        ],
    )
    .await
    .unwrap();
    assert_eq!(moved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_name_keys_give_the_clients_names() {
    let setup = common::start_with(Default::default(), rq_rule);
    let c = &mut setup.client().await;
    for k in ["rq:a", "rq:b", "other:a"] {
        let _: () = q(c, &["SET", k, "1"]).await.unwrap();
    }
    let mut keys: Vec<String> = q(c, &["KEYS", "*"]).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["other:a", "rq:a", "rq:b"]);
    let mut keys: Vec<String> = q(c, &["KEYS", "rq:*"]).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["rq:a", "rq:b"]);
    // A pattern the rule widens (`*q:?`) must not let other keys through.
    let _: () = q(c, &["SET", "xq:c", "1"]).await.unwrap();
    let keys: Vec<String> = q(c, &["KEYS", "q:?"]).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    let mut scanned: Vec<String> = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, page): (String, Vec<String>) =
            q(c, &["SCAN", &cursor, "MATCH", "rq:*", "COUNT", "100"])
                .await
                .unwrap();
        scanned.extend(page);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    scanned.sort();
    assert_eq!(scanned, ["rq:a", "rq:b"]);
    let exists: i64 = q(c, &["EXISTS", "rq:a", "rq:b", "other:a"]).await.unwrap();
    assert_eq!(exists, 3);

    // Blocking pops and stream reads name the key they served.
    let _: () = q(c, &["RPUSH", "rq:queue:high", "job-1"]).await.unwrap();
    let (key, value): (String, String) = q(c, &["BLPOP", "rq:queue:low", "rq:queue:high", "1"])
        .await
        .unwrap();
    assert_eq!((key.as_str(), value.as_str()), ("rq:queue:high", "job-1"));
    let _: String = q(c, &["XADD", "rq:events", "1-1", "f", "v"]).await.unwrap();
    let mut raw = common::Raw::connect(setup.addr());
    raw.send(b"XREAD COUNT 1 STREAMS rq:events 0\r\n");
    assert_eq!(raw.read_line(), "*1\r\n");
    assert_eq!(raw.read_line(), "*2\r\n");
    assert_eq!(
        [raw.read_line(), raw.read_line()],
        ["$9\r\n", "rq:events\r\n"]
    );

    // Inside a transaction too: EXEC's array gives the key a pop served.
    let _: () = q(c, &["RPUSH", "rq:queue:low", "job-2"]).await.unwrap();
    let mut raw = common::Raw::connect(setup.addr());
    let got = common::lines(
        &mut raw,
        &["MULTI", "LMPOP 2 rq:queue:high rq:queue:low LEFT", "EXEC"],
    );
    assert_eq!(got, ["+OK\r\n", "+QUEUED\r\n", "*1\r\n"]);
    let popped: Vec<String> = (0..6).map(|_| raw.read_line()).collect();
    assert_eq!(
        popped,
        [
            "*2\r\n",
            "$12\r\n",
            "rq:queue:low\r\n",
            "*1\r\n",
            "$5\r\n",
            "job-2\r\n"
        ]
    );

    // SORT's BY / GET patterns name grouped keys by the client's names too.
    for (k, v) in [("rq:w_1", "5"), ("rq:w_2", "1")] {
        let _: () = q(c, &["SET", k, v]).await.unwrap();
    }
    let _: () = q(c, &["RPUSH", "rq:ids", "1", "2"]).await.unwrap();
    let sorted: Vec<String> = q(
        c,
        &[
            "SORT", "rq:ids", "BY", "rq:w_*", "GET", "#", "GET", "rq:w_*",
        ],
    )
    .await
    .unwrap();
    assert_eq!(sorted, ["2", "1", "1", "5"]);
    let _: i64 = q(c, &["DEL", "rq:w_1", "rq:w_2", "rq:ids"]).await.unwrap();

    // RANDOMKEY, when only grouped keys are left.
    let _: i64 = q(c, &["DEL", "other:a", "xq:c", "rq:events"])
        .await
        .unwrap();
    for _ in 0..5 {
        let key: String = q(c, &["RANDOMKEY"]).await.unwrap();
        assert!(["rq:a", "rq:b"].contains(&key.as_str()), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_pool_mode_a_rule_places_keys_without_renaming_them() {
    // Two pools, half the slots each; the group's keys all go where `{rq}` goes.
    let setup = common::start_pools(2, &[], rq_rule);
    let c = &mut setup.client().await;
    let (ok, n): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("rq:job:1")
        .arg("x")
        .cmd("SADD")
        .arg("rq:queues")
        .arg("rq:queue:default")
        .query_async(c)
        .await
        .unwrap();
    assert_eq!((ok.as_str(), n), ("OK", 1));
    let home = usize::from(slotgate::slot::Slot::of(b"{rq}").get() >= 8192);
    let d = &mut setup.direct(home).await;
    let stored: String = q(d, &["GET", "rq:job:1"]).await.unwrap();
    assert_eq!(
        stored, "x",
        "stored under its own name on the pool of {{rq}}"
    );
    let other = &mut setup.direct(1 - home).await;
    let size: i64 = q(other, &["DBSIZE"]).await.unwrap();
    assert_eq!(size, 0);
}
