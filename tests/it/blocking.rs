//! Blocking commands and WAIT: served on dedicated backend connections, so a client blocked
//! for seconds never stalls anyone else; timeouts honoured; a client that hangs up releases
//! the node.

use crate::common;

use common::q;

use std::time::{Duration, Instant};

use common::Raw;
use redis::aio::MultiplexedConnection;

/// A client of its own (not multiplexed), for commands that block.
async fn own_client(addr: std::net::SocketAddr) -> MultiplexedConnection {
    common::client(addr).await
}

/// A blocking command with a 0.5 s timeout waited it out (and not much longer).
fn assert_half_a_second(waited: Duration) {
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_clients_wake_on_push_and_stall_nobody() {
    let setup = common::start();
    let addr = setup.addr();
    // 20 clients block on 20 lists spread over the masters.
    let waiters: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = own_client(addr).await;
                let got: Option<(String, String)> = q(&mut c, &["BLPOP", &format!("bl:{i}"), "10"])
                    .await
                    .unwrap();
                got
            })
        })
        .collect();
    common::wait_blocked(&setup.masters(), 20).await;

    // Meanwhile everyone else is served at full speed.
    let c = &mut setup.client().await;
    let started = Instant::now();
    for i in 0..200 {
        let _: () = q(c, &["SET", &format!("other:{i}"), "v"]).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "other clients were stalled: {:?}",
        started.elapsed()
    );

    for i in 0..20 {
        let n: i64 = q(c, &["RPUSH", &format!("bl:{i}"), &format!("v{i}")])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    for (i, waiter) in waiters.into_iter().enumerate() {
        let got = waiter.await.unwrap();
        assert_eq!(got, Some((format!("bl:{i}"), format!("v{i}"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_the_other_blocking_commands() {
    let setup = common::start();
    let c = &mut own_client(setup.addr()).await;
    let started = Instant::now();
    let got: Option<(String, String)> = q(c, &["BRPOP", "empty", "0.5"]).await.unwrap();
    assert_eq!(got, None);
    let waited = started.elapsed();
    assert_half_a_second(waited);

    let _: () = q(c, &["RPUSH", "{m}src", "a", "b"]).await.unwrap();
    let moved: String = q(c, &["BLMOVE", "{m}src", "{m}dst", "LEFT", "RIGHT", "1"])
        .await
        .unwrap();
    assert_eq!(moved, "a");
    let moved: String = q(c, &["BRPOPLPUSH", "{m}src", "{m}dst", "1"])
        .await
        .unwrap();
    assert_eq!(moved, "b");
    let popped: (String, Vec<String>) = q(c, &["BLMPOP", "1", "1", "{m}dst", "LEFT", "COUNT", "2"])
        .await
        .unwrap();
    assert_eq!(popped, ("{m}dst".to_string(), vec!["b".into(), "a".into()]));

    let _: () = q(c, &["ZADD", "z", "1", "one", "2", "two"]).await.unwrap();
    let min: (String, String, String) = q(c, &["BZPOPMIN", "z", "1"]).await.unwrap();
    assert_eq!(min, ("z".into(), "one".into(), "1".into()));
    let max: (String, String, String) = q(c, &["BZPOPMAX", "z", "1"]).await.unwrap();
    assert_eq!(max, ("z".into(), "two".into(), "2".into()));

    // XREAD BLOCK wakes on XADD from another client.
    let addr = setup.addr();
    let reader = tokio::spawn(async move {
        let mut c = own_client(addr).await;
        let v: redis::Value = q(&mut c, &["XREAD", "BLOCK", "5000", "STREAMS", "st", "$"])
            .await
            .unwrap();
        v
    });
    common::wait_blocked(&[setup.node_of("st")], 1).await;
    let other = &mut setup.client().await;
    let _: String = q(other, &["XADD", "st", "*", "f", "v"]).await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(3), reader)
        .await
        .expect("XREAD BLOCK woke up")
        .unwrap();
    assert!(format!("{v:?}").contains("st"), "{v:?}");

    // Keys in two slots: CROSSSLOT, as a cluster node says.
    let e = q::<redis::Value>(c, &["BLPOP", "a", "b", "1"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), redis::ErrorKind::CrossSlot, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_order_holds_around_a_blocking_command() {
    let setup = common::start();
    let mut raw = Raw::connect(setup.addr());
    // The push before BLPOP is applied first, so BLPOP finds the value at once; the GET after
    // it runs after it, as on one Redis connection.
    raw.send(b"RPUSH {p}l x\r\nBLPOP {p}l 0\r\nSET {p}k after\r\nGET {p}k\r\n");
    let want = b":1\r\n*2\r\n$4\r\n{p}l\r\n$1\r\nx\r\n+OK\r\n$5\r\nafter\r\n";
    assert_eq!(raw.read_exactly(want.len()), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_releases_the_node() {
    let setup = common::start();
    let key = "gone:list";
    let node = setup.node_of(key);
    {
        let mut raw = Raw::connect(setup.addr());
        raw.send(format!("BLPOP {key} 0\r\n").as_bytes());
        // BLPOP reaches the node.
        common::wait_blocked(&[node], 1).await;
    } // The client hangs up.
      // The node stops blocking for the client that left.
    common::wait_blocked(&[node], 0).await;
    // So a value pushed now stays in the list instead of going to nobody.
    let c = &mut setup.client().await;
    let _: () = q(c, &["RPUSH", key, "kept"]).await.unwrap();
    assert_eq!(q::<i64>(c, &["LLEN", key]).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_replicas_that_have_the_write() {
    let setup = common::start();
    let c = &mut own_client(setup.addr()).await;
    let _: () = q(c, &["SET", "waited", "v"]).await.unwrap();
    // Each master has one replica: WAIT 1 sees it acknowledge the write.
    let started = Instant::now();
    let n: i64 = q(c, &["WAIT", "1", "5000"]).await.unwrap();
    assert_eq!(n, 1);
    assert!(started.elapsed() < Duration::from_secs(4));
    // Asking for more replicas than exist waits out the timeout and says how many there were.
    let started = Instant::now();
    let n: i64 = q(c, &["WAIT", "2", "300"]).await.unwrap();
    assert_eq!(n, 1);
    assert!(started.elapsed() >= Duration::from_millis(290));
    let e = q::<i64>(c, &["WAIT", "1", "-1"]).await.unwrap_err();
    assert!(e.to_string().contains("timeout is negative"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bzmpop_times_out_and_is_served_by_a_later_zadd() {
    let setup = common::start();
    let c = &mut own_client(setup.addr()).await;
    // Nothing to pop: the timeout is honoured and the reply is null.
    let started = Instant::now();
    let got: redis::Value = q(c, &["BZMPOP", "0.5", "2", "{bz}a", "{bz}b", "MIN"])
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(got, redis::Value::Nil);
    assert_half_a_second(waited);

    // Blocked on two keys; another client's ZADD to the second one serves it.
    let addr = setup.addr();
    let waiter = tokio::spawn(async move {
        let mut c = own_client(addr).await;
        let got: (String, Vec<(String, String)>) = q(
            &mut c,
            &["BZMPOP", "5", "2", "{bz}a", "{bz}b", "MAX", "COUNT", "2"],
        )
        .await
        .unwrap();
        got
    });
    common::wait_blocked(&[setup.node_of("{bz}b")], 1).await;
    assert!(!waiter.is_finished(), "BZMPOP returned before any ZADD");
    let other = &mut setup.client().await;
    let added: i64 = q(other, &["ZADD", "{bz}b", "1", "x", "2", "y", "3", "z"])
        .await
        .unwrap();
    assert_eq!(added, 3);
    let got = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("BZMPOP woke up on ZADD")
        .unwrap();
    assert_eq!(
        got,
        (
            "{bz}b".to_string(),
            vec![("z".into(), "3".into()), ("y".into(), "2".into())]
        )
    );
    // It popped exactly what it returned: one member is left.
    let left: Vec<String> = q(other, &["ZRANGE", "{bz}b", "0", "-1"]).await.unwrap();
    assert_eq!(left, ["x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xreadgroup_block_wakes_on_xadd_and_times_out_with_null() {
    let setup = common::start();
    let c = &mut own_client(setup.addr()).await;
    let _: () = q(c, &["XGROUP", "CREATE", "xg", "grp", "$", "MKSTREAM"])
        .await
        .unwrap();

    // A group read of new entries blocks until another client adds one.
    let addr = setup.addr();
    let reader = tokio::spawn(async move {
        let mut c = own_client(addr).await;
        let v: redis::Value = q(
            &mut c,
            &[
                "XREADGROUP",
                "GROUP",
                "grp",
                "alice",
                "COUNT",
                "1",
                "BLOCK",
                "5000",
                "STREAMS",
                "xg",
                ">",
            ],
        )
        .await
        .unwrap();
        v
    });
    common::wait_blocked(&[setup.node_of("xg")], 1).await;
    assert!(!reader.is_finished(), "XREADGROUP returned before any XADD");
    let other = &mut setup.client().await;
    let id: String = q(other, &["XADD", "xg", "*", "f", "v"]).await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(3), reader)
        .await
        .expect("XREADGROUP BLOCK woke up on XADD")
        .unwrap();
    let entry = redis::Value::Array(vec![
        redis::Value::BulkString(id.clone().into_bytes()),
        redis::Value::Array(vec![
            redis::Value::BulkString(b"f".to_vec()),
            redis::Value::BulkString(b"v".to_vec()),
        ]),
    ]);
    assert_eq!(
        v,
        redis::Value::Array(vec![redis::Value::Array(vec![
            redis::Value::BulkString(b"xg".to_vec()),
            redis::Value::Array(vec![entry]),
        ])])
    );
    // The group delivered it to alice: it is pending for her on the stream's node.
    let pending: (i64, String, String, Vec<(String, String)>) =
        q(other, &["XPENDING", "xg", "grp"]).await.unwrap();
    assert_eq!(
        pending,
        (1, id.clone(), id, vec![("alice".into(), "1".into())])
    );

    // Nothing new for the group: BLOCK's timeout is honoured and the reply is null.
    let started = Instant::now();
    let v: redis::Value = q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "grp",
            "bob",
            "BLOCK",
            "500",
            "STREAMS",
            "xg",
            ">",
        ],
    )
    .await
    .unwrap();
    let waited = started.elapsed();
    assert_eq!(v, redis::Value::Nil);
    assert_half_a_second(waited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_names_the_proxys_clients_as_one_redis_does() {
    let setup = common::start();
    let addr = setup.addr();
    let mut blocked = own_client(addr).await;
    let id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut blocked)
        .await
        .unwrap();
    let mut other = common::client(addr).await;
    let unblock = |mode: Option<&'static str>| {
        let mut c = other.clone();
        async move {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("UNBLOCK").arg(id);
            if let Some(mode) = mode {
                cmd.arg(mode);
            }
            cmd.query_async::<i64>(&mut c).await.unwrap()
        }
    };
    // Not blocked: 0, as Redis answers.
    assert_eq!(unblock(None).await, 0);
    let node = setup.node_of("ub:key");
    for (mode, expect_error) in [(None, false), (Some("ERROR"), true)] {
        let waiting = tokio::spawn({
            let mut c = blocked.clone();
            async move {
                redis::cmd("BLPOP")
                    .arg("ub:key")
                    .arg(0)
                    .query_async::<Option<(String, String)>>(&mut c)
                    .await
            }
        });
        common::wait_blocked(&[node], 1).await;
        assert_eq!(unblock(mode).await, 1, "{mode:?}");
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the blocked client returned")
            .unwrap();
        match got {
            Ok(None) if !expect_error => {}
            Err(e) if expect_error => {
                assert!(e.to_string().contains("UNBLOCKED"), "{e}")
            }
            other => panic!("{mode:?}: {other:?}"),
        }
    }
    // A reason other than TIMEOUT or ERROR is Redis' error.
    let err = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(id)
        .arg("SOON")
        .query_async::<i64>(&mut other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TIMEOUT or ERROR"), "{err}");
    drop(blocked);
}
