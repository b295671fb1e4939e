//! Big keys moving between pools in bounded steps (issue 20, `migration.big_key_bytes`): the
//! source is never blocked for a whole big value — neither by the mover nor by a request
//! that meets a big key first (it is copied in steps on the request's behalf) — a request for
//! a key being copied waits for the copy and then runs on the destination, and every value,
//! its TTL included, arrives whole. Real redis-servers; the source's own slow log measures how long it was blocked.

use crate::common;
use crate::pool_migration::{keys_on, moving, start_move, start_with, status, until_done};

use std::time::{Duration, Instant};

use common::eventually;
use redis::AsyncCommands;

/// A key name `prefix{n}` (its own hash tag) in the moving slots.
fn moving_name(prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{{{i}}}"))
        .find(|k| moving(k))
        .unwrap()
}

/// The longest command in the slow log of the server at `addr` (microseconds), and its name.
fn longest_logged(addr: std::net::SocketAddr) -> (u64, String) {
    let out = common::redis_cli(addr, &["SLOWLOG", "GET", "1000"]);
    // redis-cli prints each entry's fields one per line: id, time, duration, then the argv.
    let lines: Vec<&str> = out.lines().collect();
    let mut longest = (0, String::new());
    let mut i = 0;
    while i + 3 < lines.len() {
        if let (Ok(_id), Ok(_at), Ok(us)) = (
            lines[i].parse::<u64>(),
            lines[i + 1].parse::<u64>(),
            lines[i + 2].parse::<u64>(),
        ) {
            if us > longest.0 {
                longest = (us, lines[i + 3].to_string());
            }
            i += 4;
        } else {
            i += 1;
        }
    }
    longest
}

/// A script making `KEYS[1]` a list of 100 000 elements.
const LIST_100K: &str = "for i=1,100000,1000 do local t={} for j=0,999 do \
    t[#t+1]='element-'..(i+j) end redis.call('RPUSH',KEYS[1],unpack(t)) end";
/// A script making `KEYS[1]` a hash of 100 000 fields.
const HASH_100K: &str = "for i=1,100000,500 do local t={} for j=0,499 do t[#t+1]='f'..(i+j) \
    t[#t+1]='value-'..(i+j) end redis.call('HSET',KEYS[1],unpack(t)) end";

/// The members of the sorted set `key` with their scores, as the server writes them.
async fn zset_with_scores(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Vec<(String, String)> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(c)
        .await
        .unwrap()
}

/// Run each `(key, script)` through the proxy (one key each: routed to its pool).
async fn build(c: &mut redis::aio::MultiplexedConnection, scripts: &[(&String, &str)]) {
    for (key, body) in scripts {
        let _: redis::Value = redis::cmd("EVAL")
            .arg(*body)
            .arg(1)
            .arg(*key)
            .query_async(c)
            .await
            .unwrap();
    }
}

/// Log every command of the server at `source` from now on, and return how long one `DUMP`
/// of `key` (what a `MIGRATE` of it serialises) blocks it (µs).
fn log_all_after_one_dump(source: std::net::SocketAddr, key: &str) -> u64 {
    common::redis_cli(source, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    common::redis_cli(source, &["CONFIG", "SET", "slowlog-max-len", "100000"]);
    common::redis_cli(source, &["SLOWLOG", "RESET"]);
    common::redis_cli(source, &["DUMP", key]);
    let (whole_us, _) = longest_logged(source);
    common::redis_cli(source, &["SLOWLOG", "RESET"]);
    whole_us
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_move_in_bounded_steps_and_a_request_for_one_waits_for_its_copy() {
    // Heavy (values of 100 000 elements) and timed on the source's slow log: one at a time
    // with the other load tests.
    let _serial = common::load::serial().await;
    let (setup, _file) = start_with(0, |c| {
        c.migration.big_key_bytes = 256 * 1024;
        c.migration.big_key_step = 100;
        // Patience for a request waiting on a copy: half of it (see StepSettings).
        c.backend.request_timeout_ms = 20_000;
    });
    let source: std::net::SocketAddr = setup.servers[0].addr().parse().unwrap();
    let mut c = setup.client().await;
    let (list, hash, set, zset, string, stream) = (
        moving_name("list"),
        moving_name("hash"),
        moving_name("set"),
        moving_name("zset"),
        moving_name("string"),
        moving_name("stream"),
    );
    let small = moving_name("small");
    // Built by scripts through the proxy (routed to p0, the source).
    let scripts: [(&String, &str); 6] = [
        (&list, LIST_100K),
        (&hash, HASH_100K),
        (
            &set,
            "for i=1,50000,1000 do local t={} for j=0,999 do t[#t+1]='m'..(i+j) end \
             redis.call('SADD',KEYS[1],unpack(t)) end",
        ),
        (
            &zset,
            "for i=1,50000,500 do local t={} for j=0,499 do t[#t+1]=(i+j)/3 t[#t+1]='m'..(i+j) \
             end redis.call('ZADD',KEYS[1],unpack(t)) end redis.call('ZADD',KEYS[1],'-inf','low')",
        ),
        (
            &string,
            "redis.call('SET',KEYS[1],'') for i=0,16383 do \
             redis.call('APPEND',KEYS[1],string.format('%063d|',i)) end",
        ),
        (
            &stream,
            "for i=1,20000 do redis.call('XADD',KEYS[1],'*','n',i) end \
             redis.call('XGROUP','CREATE',KEYS[1],'g','0')",
        ),
    ];
    build(&mut c, &scripts).await;
    let _: () = c.pexpire(&list, 100_000).await.unwrap();
    let _: () = c.set(&small, "v").await.unwrap();
    let created = Instant::now();

    // Their values, read through the proxy before the move.
    let list_before: Vec<String> = c.lrange(&list, 0, -1).await.unwrap();
    let hash_before: std::collections::BTreeMap<String, String> = c.hgetall(&hash).await.unwrap();
    let set_before: std::collections::BTreeSet<String> = c.smembers(&set).await.unwrap();
    let zset_before = zset_with_scores(&mut c, &zset).await;
    let string_before: Vec<u8> = c.get(&string).await.unwrap();
    assert_eq!(list_before.len(), 100_000);
    assert_eq!(string_before.len(), 16384 * 64);

    // What one MIGRATE of the hash would block the source for: its DUMP alone.
    let whole_us = log_all_after_one_dump(source, &hash);

    start_move(&setup).await;
    // A request for the list while the mover copies it waits, then runs on the destination.
    eventually(
        "the list being copied in steps",
        Duration::from_secs(30),
        || async {
            let s = status(&setup).await;
            if s["copying_in_steps"][0]["key"] == list.as_str() {
                Ok(())
            } else {
                Err(s["copying_in_steps"].clone())
            }
        },
    )
    .await;
    let asked = Instant::now();
    let len: u64 = c.rpush(&list, "extra").await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(len, 100_001, "the push ran on the whole list");
    let done = until_done(&setup, Duration::from_secs(120)).await;
    let (stepped_us, command) = longest_logged(source);
    eprintln!(
        "source blocked at most {stepped_us} µs ({command}) while moving; one DUMP of the \
         hash {whole_us} µs; the push waited {waited:?} for the list's copy"
    );
    assert_eq!(done["on_touch_failures"], 0, "{done}");

    // Every value arrived whole, the list's TTL kept, nothing left behind.
    let list_after: Vec<String> = c.lrange(&list, 0, -1).await.unwrap();
    assert_eq!(list_after.len(), 100_001);
    assert_eq!(list_after[..100_000], list_before[..]);
    assert_eq!(list_after[100_000], "extra");
    let pttl: i64 = c.pttl(&list).await.unwrap();
    let since = created.elapsed().as_millis() as i64;
    assert!(
        pttl <= 100_000 && pttl >= 100_000 - since - 1_000,
        "the list kept its TTL: {pttl} ms left {since} ms after it was set"
    );
    let hash_after: std::collections::BTreeMap<String, String> = c.hgetall(&hash).await.unwrap();
    assert!(hash_after == hash_before, "the hash arrived whole");
    let set_after: std::collections::BTreeSet<String> = c.smembers(&set).await.unwrap();
    assert!(set_after == set_before, "the set arrived whole");
    let zset_after = zset_with_scores(&mut c, &zset).await;
    assert!(zset_after == zset_before, "the sorted set arrived whole");
    let string_after: Vec<u8> = c.get(&string).await.unwrap();
    assert!(string_after == string_before, "the string arrived whole");
    let pttl: i64 = c.pttl(&hash).await.unwrap();
    assert_eq!(pttl, -1, "no TTL was added");
    let entries: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(entries, 20_000, "the stream moved whole, with MIGRATE");
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&stream)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(format!("{groups:?}").contains('g'), "{groups:?}");
    let got: String = c.get(&small).await.unwrap();
    assert_eq!(got, "v");

    let on_source = keys_on(&setup, 0);
    assert!(on_source.iter().all(|k| !moving(k)), "{on_source:?}");
    let on_dest = keys_on(&setup, 3);
    assert!(
        on_dest.iter().all(|k| !k.starts_with("slotgate:staging:")),
        "{on_dest:?}"
    );
    for key in [&list, &hash, &set, &zset, &string, &stream, &small] {
        assert!(on_dest.contains(key), "{key} on the destination");
    }
    // The bound: no step (nor any MIGRATE of the mover) blocked the source for long; one
    // MIGRATE of the hash would have (its DUMP alone, plus the wait for the destination).
    assert!(
        stepped_us < 50_000 && stepped_us < whole_us,
        "source blocked {stepped_us} µs by {command}; whole hash {whole_us} µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_big_key_the_mover_has_not_reached_copies_it_in_steps_first() {
    // Heavy (values of 100 000 elements) and timed on the source's slow log: one at a time
    // with the other load tests.
    let _serial = common::load::serial().await;
    // A mover that moves one key a second: the requests reach the big keys first.
    let (setup, _file) = start_with(1, |c| {
        c.migration.batch_keys = 1;
        c.migration.big_key_bytes = 256 * 1024;
        c.migration.big_key_step = 100;
        c.backend.request_timeout_ms = 20_000;
    });
    let source: std::net::SocketAddr = setup.servers[0].addr().parse().unwrap();
    let mut c = setup.client().await;
    let (list, hash) = (moving_name("list"), moving_name("hash"));
    let small = moving_name("small");
    build(
        &mut c,
        &[
            (&list, LIST_100K),
            (&hash, HASH_100K),
            // Many small keys of the moving slots: the mover meets the big ones late.
            (
                &small,
                "for i=1,10000 do redis.call('SET',KEYS[1]..':'..i,i) end",
            ),
        ],
    )
    .await;
    let list_before: Vec<String> = c.lrange(&list, 0, -1).await.unwrap();
    let whole_us = log_all_after_one_dump(source, &hash);

    start_move(&setup).await;
    let fields: u64 = c.hlen(&hash).await.unwrap();
    assert_eq!(fields, 100_000);
    let len: u64 = c.rpush(&list, "extra").await.unwrap();
    assert_eq!(len, 100_001);
    let (stepped_us, command) = longest_logged(source);
    let s = status(&setup).await;
    eprintln!(
        "source blocked at most {stepped_us} µs ({command}); one DUMP of the hash {whole_us} µs; \
         {s}"
    );
    // Both were copied in steps on behalf of the requests (counted as on-touch moves).
    assert!(s["on_touch_moves"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["on_touch_failures"], 0, "{s}");
    let list_after: Vec<String> = c.lrange(&list, 0, -1).await.unwrap();
    assert_eq!(list_after[..100_000], list_before[..]);
    assert_eq!(list_after[100_000], "extra");
    let on_dest = keys_on(&setup, 3);
    assert!(
        on_dest.contains(&list) && on_dest.contains(&hash),
        "both on p3"
    );
    assert!(on_dest.iter().all(|k| !k.starts_with("slotgate:staging:")));
    let on_source = keys_on(&setup, 0);
    assert!(!on_source.contains(&list) && !on_source.contains(&hash));
    assert!(
        stepped_us < 50_000 && stepped_us < whole_us,
        "source blocked {stepped_us} µs by {command}; whole hash {whole_us} µs"
    );
}
