//! Every data type through the proxy, against a real 3-master/3-replica Redis Cluster.

use crate::common;

use redis::{cmd, Value};

async fn q<T: redis::FromRedisValue>(
    c: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut command = cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query_async(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_type_round_trips() {
    let setup = common::start();
    let c = &mut setup.client().await;

    // Strings, counters, expiry.
    assert_eq!(
        q::<String>(c, &["SET", "str", "hello"]).await.unwrap(),
        "OK"
    );
    assert_eq!(q::<String>(c, &["GET", "str"]).await.unwrap(), "hello");
    assert_eq!(q::<i64>(c, &["APPEND", "str", " world"]).await.unwrap(), 11);
    assert_eq!(
        q::<String>(c, &["GETRANGE", "str", "0", "4"])
            .await
            .unwrap(),
        "hello"
    );
    assert_eq!(q::<i64>(c, &["INCRBY", "ctr", "5"]).await.unwrap(), 5);
    assert_eq!(
        q::<String>(c, &["INCRBYFLOAT", "fctr", "1.5"])
            .await
            .unwrap(),
        "1.5"
    );
    assert_eq!(
        q::<String>(c, &["SET", "ttl", "v", "EX", "100"])
            .await
            .unwrap(),
        "OK"
    );
    let ttl: i64 = q(c, &["TTL", "ttl"]).await.unwrap();
    assert!((1..=100).contains(&ttl));
    assert_eq!(q::<i64>(c, &["PERSIST", "ttl"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(c, &["TTL", "ttl"]).await.unwrap(), -1);
    assert_eq!(q::<i64>(c, &["PEXPIRE", "ttl", "100000"]).await.unwrap(), 1);
    assert_eq!(q::<String>(c, &["TYPE", "str"]).await.unwrap(), "string");
    assert_eq!(
        q::<Option<String>>(c, &["GET", "missing"]).await.unwrap(),
        None
    );

    // Hashes.
    assert_eq!(
        q::<i64>(c, &["HSET", "h", "a", "1", "b", "2"])
            .await
            .unwrap(),
        2
    );
    let fields: Vec<Option<String>> = q(c, &["HMGET", "h", "a", "b", "c"]).await.unwrap();
    assert_eq!(fields, [Some("1".to_string()), Some("2".to_string()), None]);
    let all: std::collections::HashMap<String, String> = q(c, &["HGETALL", "h"]).await.unwrap();
    assert_eq!(all.get("b").map(String::as_str), Some("2"));
    assert_eq!(q::<i64>(c, &["HINCRBY", "h", "a", "10"]).await.unwrap(), 11);
    assert_eq!(q::<i64>(c, &["HLEN", "h"]).await.unwrap(), 2);

    // Lists.
    assert_eq!(
        q::<i64>(c, &["RPUSH", "l", "a", "b", "c"]).await.unwrap(),
        3
    );
    assert_eq!(
        q::<Vec<String>>(c, &["LRANGE", "l", "0", "-1"])
            .await
            .unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(q::<String>(c, &["LPOP", "l"]).await.unwrap(), "a");
    assert_eq!(q::<i64>(c, &["LLEN", "l"]).await.unwrap(), 2);

    // Sets.
    assert_eq!(q::<i64>(c, &["SADD", "s", "x", "y", "z"]).await.unwrap(), 3);
    assert_eq!(q::<i64>(c, &["SISMEMBER", "s", "y"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SCARD", "s"]).await.unwrap(), 3);

    // Sorted sets.
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "1", "one", "2", "two", "3", "three"])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", "z", "0", "1"])
            .await
            .unwrap(),
        ["one", "two"]
    );
    assert_eq!(q::<i64>(c, &["ZRANK", "z", "three"]).await.unwrap(), 2);
    assert_eq!(q::<String>(c, &["ZSCORE", "z", "two"]).await.unwrap(), "2");

    // Streams.
    let id: String = q(c, &["XADD", "st", "*", "f", "v"]).await.unwrap();
    assert!(id.contains('-'));
    assert_eq!(q::<i64>(c, &["XLEN", "st"]).await.unwrap(), 1);
    let read: Value = q(c, &["XRANGE", "st", "-", "+"]).await.unwrap();
    assert!(matches!(read, Value::Array(ref v) if v.len() == 1));
    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", "st", "g", "0"])
            .await
            .unwrap(),
        "OK"
    );
    let via_xread: Value = q(c, &["XREAD", "COUNT", "5", "STREAMS", "st", "0"])
        .await
        .unwrap();
    assert!(matches!(via_xread, Value::Array(_)));

    // Bitmaps.
    assert_eq!(q::<i64>(c, &["SETBIT", "bits", "7", "1"]).await.unwrap(), 0);
    assert_eq!(q::<i64>(c, &["BITCOUNT", "bits"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(c, &["GETBIT", "bits", "7"]).await.unwrap(), 1);

    // HyperLogLog.
    assert_eq!(
        q::<i64>(c, &["PFADD", "hll", "a", "b", "c"]).await.unwrap(),
        1
    );
    assert_eq!(q::<i64>(c, &["PFCOUNT", "hll"]).await.unwrap(), 3);

    // Geo.
    assert_eq!(
        q::<i64>(
            c,
            &[
                "GEOADD",
                "geo",
                "13.361389",
                "38.115556",
                "Palermo",
                "15.087269",
                "37.502669",
                "Catania"
            ]
        )
        .await
        .unwrap(),
        2
    );
    let dist: String = q(c, &["GEODIST", "geo", "Palermo", "Catania", "km"])
        .await
        .unwrap();
    assert!(dist.starts_with("166.27"), "{dist}");

    // Object inspection, DUMP/RESTORE.
    assert_eq!(
        q::<String>(c, &["OBJECT", "ENCODING", "l"]).await.unwrap(),
        "quicklist"
    );
    let dump: Vec<u8> = q(c, &["DUMP", "str"]).await.unwrap();
    let mut restore = cmd("RESTORE");
    restore.arg("str-copy").arg(0).arg(dump);
    assert_eq!(restore.query_async::<String>(c).await.unwrap(), "OK");
    assert_eq!(
        q::<String>(c, &["GET", "str-copy"]).await.unwrap(),
        "hello world"
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "str-copy"]).await.unwrap(), 1);
    assert_eq!(q::<i64>(c, &["DEL", "str-copy"]).await.unwrap(), 1);

    // Errors from Redis itself pass through unchanged.
    let wrong = q::<String>(c, &["GET", "h"]).await.unwrap_err();
    assert!(wrong.to_string().contains("WRONGTYPE"), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_tags_keep_multi_key_commands_together() {
    let setup = common::start();
    let c = &mut setup.client().await;

    assert_eq!(
        q::<String>(c, &["MSET", "{user:1}:name", "ann", "{user:1}:age", "42"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(
        q::<Vec<String>>(c, &["MGET", "{user:1}:name", "{user:1}:age"])
            .await
            .unwrap(),
        ["ann", "42"]
    );
    assert_eq!(
        q::<String>(c, &["RENAME", "{user:1}:name", "{user:1}:first"])
            .await
            .unwrap(),
        "OK"
    );
    q::<i64>(c, &["SADD", "{t}a", "1", "2", "3"]).await.unwrap();
    q::<i64>(c, &["SADD", "{t}b", "2", "3", "4"]).await.unwrap();
    let mut inter: Vec<String> = q(c, &["SINTER", "{t}a", "{t}b"]).await.unwrap();
    inter.sort();
    assert_eq!(inter, ["2", "3"]);
    assert_eq!(
        q::<i64>(c, &["SINTERSTORE", "{t}c", "{t}a", "{t}b"])
            .await
            .unwrap(),
        2
    );
    q::<i64>(c, &["RPUSH", "{q}src", "x"]).await.unwrap();
    assert_eq!(
        q::<String>(c, &["LMOVE", "{q}src", "{q}dst", "LEFT", "RIGHT"])
            .await
            .unwrap(),
        "x"
    );
    assert_eq!(
        q::<i64>(
            c,
            &[
                "EVAL",
                "return redis.call('EXISTS', KEYS[1], KEYS[2])",
                "2",
                "{q}dst",
                "{q}src"
            ]
        )
        .await
        .unwrap(),
        1
    );
    q::<i64>(c, &["ZADD", "{z}1", "1", "a"]).await.unwrap();
    q::<i64>(c, &["ZADD", "{z}2", "2", "a"]).await.unwrap();
    assert_eq!(
        q::<i64>(c, &["ZUNIONSTORE", "{z}out", "2", "{z}1", "{z}2"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        q::<String>(c, &["ZSCORE", "{z}out", "a"]).await.unwrap(),
        "3"
    );

    // Keys in different slots: split and merged for MGET, and for commands that promise
    // atomicity the same answer a cluster node gives.
    let values: Vec<Option<String>> = q(c, &["MGET", "{user:1}:age", "nokey"]).await.unwrap();
    assert_eq!(values, [Some("42".to_string()), None]);
    let cross = q::<i64>(c, &["MSETNX", "a", "1", "b", "2"])
        .await
        .unwrap_err();
    assert!(
        cross.to_string().contains("don't hash to the same slot"),
        "{cross}"
    );
    let cross = q::<String>(c, &["RENAME", "a", "b"]).await.unwrap_err();
    assert!(
        cross.to_string().contains("don't hash to the same slot"),
        "{cross}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_master() {
    let setup = common::start();
    let c = &mut setup.client().await;
    for port in setup.cluster.master_ports() {
        let key = common::key_on(&setup.cluster, port, "spread");
        let _: String = q(c, &["SET", &key, &port.to_string()]).await.unwrap();
        // Read it straight from the owning master: the proxy really put it there.
        let mut direct = common::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
        assert_eq!(
            q::<String>(&mut direct, &["GET", &key]).await.unwrap(),
            port.to_string()
        );
    }
}
