//! Big keys moving between pools in bounded steps (issue 20, `migration.big_key_bytes`): the
//! source is never blocked for a whole big value — neither by the mover nor by a request
//! that meets a big key first (it is copied in steps on the request's behalf) — a request for
//! a key being copied waits for the copy and then runs on the destination, and every value,
//! its TTL included, arrives whole — between pools, and from the pools onto a Redis Cluster.
//! Real redis-servers; the source's own slow log measures how long it was blocked.

use crate::common;
use crate::pool_migration::{keys_on, moving, start_move, start_with, status, until_done};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// The longest command in the slow log of the server at `addr` (microseconds), and its name:
/// of all its entries (`log_all_after_one_dump` keeps up to 100 000; busy clients' on-touch
/// moves log thousands).
fn longest_logged(addr: std::net::SocketAddr) -> (u64, String) {
    let out = common::redis_cli(addr, &["SLOWLOG", "GET", "100000"]);
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

/// A client that does not retry, using the big hash `hash` and the big list `list` while they
/// move: each round adds a field to the hash and pushes an element to the list, reads both
/// back, and reads one of the 100 000 fields and elements each was built with. Every error or
/// wrong answer is kept; returns the rounds run.
async fn use_big_keys(
    addr: std::net::SocketAddr,
    (hash, list): (String, String),
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let mut c = common::client(addr).await;
    let (mut n, mut errors) = (0u64, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let i = (n * 7919) % 100_000;
        let added = redis::pipe()
            .hset(&hash, format!("new:{n}"), n)
            .hget(&hash, format!("new:{n}"))
            .hget(&hash, format!("f{}", i + 1))
            .rpush(&list, format!("extra-{n}"))
            .lindex(&list, -1)
            .lindex(&list, i as isize)
            .query_async::<(u64, u64, String, u64, String, String)>(&mut c)
            .await;
        let wanted = (
            1,
            n,
            format!("value-{}", i + 1),
            100_000 + n,
            format!("extra-{n}"),
            format!("element-{}", i + 1),
        );
        match added {
            Ok(got) if got == wanted => {}
            other => errors.push(format!("round {n}: {other:?}, wanted {wanted:?}")),
        }
    }
    (n, errors)
}

/// From the pools onto a Redis Cluster (issue 20, items 1+2), big keys move in bounded steps
/// too, to the node owning each one's slot: a list and a hash of 100 000 elements that a
/// client (which does not retry) reads and writes all through the move — its requests get
/// them copied in steps first, then run on the cluster — beside clients of small keys, and a
/// hash of 100 000 fields nobody touches, which the mover copies in steps. The key names hold braces (the staging key must
/// share the key's slot all the same). No client error; every value arrives whole with its
/// TTL; no staging key is left; the old server's slow log shows no command near one `DUMP` of
/// a big hash (what a `MIGRATE` of it would serialise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_move_onto_a_cluster_in_bounded_steps_while_clients_use_them() {
    use crate::to_cluster::{
        destination_cluster, slot_owners, start_onto, start_pools_proxy, until_cluster_mode,
    };
    // Heavy (values of 100 000 elements) and timed on the source's slow log.
    let _serial = common::load::serial().await;
    let servers = common::standalone_servers(1);
    let source: std::net::SocketAddr = servers[0].addr().parse().unwrap();
    let cluster = destination_cluster(None);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-big-onto-cluster", |c| {
        c.migration.big_key_bytes = 256 * 1024;
        c.migration.big_key_step = 100;
        c.migration.keys_per_second = 500;
        // Patience for a request waiting on a copy: half of it.
        c.backend.request_timeout_ms = 20_000;
    });
    let addr = proxy.local_addr();
    let mut c = common::client(addr).await;
    // Braces: a hash tag in one, an unclosed `{` after a `}` in the other.
    let (list, hash, quiet) = (
        "big:list:}{x".to_string(),
        "big:{h}:hash".to_string(),
        "big:quiet{".to_string(),
    );
    build(
        &mut c,
        &[
            (&list, LIST_100K),
            (&hash, HASH_100K),
            (&quiet, HASH_100K),
            (
                &"small".to_string(),
                "for i=1,2000 do redis.call('SET','small:'..i,i) end",
            ),
        ],
    )
    .await;
    let _: () = c.pexpire(&list, 200_000).await.unwrap();
    let ttl_set = Instant::now();
    let quiet_before: std::collections::BTreeMap<String, String> = c.hgetall(&quiet).await.unwrap();
    assert_eq!(quiet_before.len(), 100_000);
    // What one MIGRATE of a big hash would block the old server for: its DUMP alone.
    let whole_us = log_all_after_one_dump(source, &quiet);

    let stop = Arc::new(AtomicBool::new(false));
    let user = tokio::spawn(use_big_keys(
        addr,
        (hash.clone(), list.clone()),
        stop.clone(),
    ));
    // Beside it, clients (that do not retry either) writing and reading small keys.
    let keys = (0..200).map(|i| format!("load:{i}")).collect();
    let load = common::load::Load::start_with(addr, 4, keys, Default::default());
    let admin = proxy.admin_addr().unwrap().to_string();
    let answer = start_onto(&admin, &cluster, "start the move onto the cluster").await;
    assert!(answer.contains("\"ok\":true"), "{answer}");
    until_cluster_mode(&file.0, Duration::from_secs(120)).await;
    let (stepped_us, command) = longest_logged(source);
    stop.store(true, Ordering::SeqCst);
    let (rounds, errors) = user.await.unwrap();
    let report = load.stop().await;
    report.assert_no_errors();
    report.assert_progress();
    common::load::verify_acked(addr, &report).await;
    let (fields_added, pushed) = (rounds, rounds);
    let s = crate::fleet_migration::status(&admin).await;
    eprintln!(
        "old server blocked at most {stepped_us} µs ({command}) while moving; one DUMP of a \
         big hash {whole_us} µs; {fields_added} fields added, {pushed} elements pushed; {s}"
    );
    assert!(
        errors.is_empty(),
        "the client saw {} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(rounds > 0, "the client ran");
    assert_eq!(s["on_touch_failures"], 0, "{s}");

    // Each value is whole on the node owning its slot, the list's TTL kept; no staging key is
    // left anywhere; the old server is empty.
    assert_eq!(common::dbsize_sum(&[source]), 0, "the old server is empty");
    let owners = slot_owners(cluster.master_ports()[0]).await;
    let node_of = |key: &str| owners[slotgate::slot::Slot::of(key.as_bytes()).index()];
    let mut node = common::load::node(node_of(&list)).await;
    let len: u64 = node.llen(&list).await.unwrap();
    assert_eq!(len, 100_000 + pushed, "the list arrived whole on its node");
    let first: Vec<String> = node.lrange(&list, 0, 2).await.unwrap();
    assert_eq!(first, ["element-1", "element-2", "element-3"]);
    let at: String = node.lindex(&list, 99_999).await.unwrap();
    assert_eq!(at, "element-100000");
    let last: String = node.lindex(&list, -1).await.unwrap();
    assert_eq!(last, format!("extra-{pushed}"));
    let pttl: i64 = node.pttl(&list).await.unwrap();
    let since = ttl_set.elapsed().as_millis() as i64;
    assert!(
        pttl <= 200_000 && pttl >= 200_000 - since - 1_000,
        "the list kept its TTL: {pttl} ms left {since} ms after it was set"
    );
    let mut node = common::load::node(node_of(&hash)).await;
    let fields: u64 = node.hlen(&hash).await.unwrap();
    assert_eq!(fields, 100_000 + fields_added, "the hash arrived whole");
    for (field, want) in [
        ("f1".to_string(), "value-1".to_string()),
        ("f100000".into(), "value-100000".into()),
        ("new:1".into(), "1".into()),
        (format!("new:{fields_added}"), fields_added.to_string()),
    ] {
        let got: String = node.hget(&hash, &field).await.unwrap();
        assert_eq!(got, want, "{hash} {field}");
    }
    let pttl: i64 = node.pttl(&hash).await.unwrap();
    assert_eq!(pttl, -1, "no TTL was added");
    let mut node = common::load::node(node_of(&quiet)).await;
    let quiet_after: std::collections::BTreeMap<String, String> =
        node.hgetall(&quiet).await.unwrap();
    assert!(
        quiet_after == quiet_before,
        "the untouched hash arrived whole"
    );
    for port in cluster.master_ports() {
        let staging = common::redis_cli(common::load::node_addr(port), &["KEYS", "slotgate:*"]);
        assert_eq!(staging.trim(), "", "no staging key left on {port}");
    }
    let v: u64 = c.get("small:7").await.unwrap();
    assert_eq!(v, 7, "served in cluster mode");
    // The bound: no step (nor any MIGRATE) blocked the old server for long; one MIGRATE of a
    // big hash would have (its DUMP alone, plus the wait for the node's RESTORE).
    assert!(
        stepped_us < 50_000 && stepped_us < whole_us,
        "old server blocked {stepped_us} µs by {command}; whole hash {whole_us} µs"
    );
    drop(proxy);
    drop(cluster);
}

/// A reshard inside the cluster in the middle of a big key's copy in steps onto it: the
/// slot's owner starts migrating it and the staging key is taken to the importing node, as
/// `redis-cli --cluster reshard` would. The owner answers the next step `ASK`: the copy ends
/// with nothing put in place, the key whole on its pool, the mover says it waits, and the
/// staging key left on the other node expires by itself (it has its TTL). A request for the
/// key, and a transaction reading it, wait meanwhile (no error). Once the reshard of the slot
/// ends, the key is copied in steps to the slot's new owner and both read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_inside_the_cluster_during_a_copy_in_steps_leaves_the_key_on_its_pool() {
    use crate::to_cluster::{
        destination_cluster, owner_and_other, set_slot, start_onto, start_pools_proxy,
        until_cluster_mode,
    };
    let _serial = common::load::serial().await;
    let servers = common::standalone_servers(1);
    let pool: std::net::SocketAddr = servers[0].addr().parse().unwrap();
    let cluster = destination_cluster(None);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-big-reshard", |c| {
        c.migration.big_key_bytes = 256 * 1024;
        // Small steps: the copy lasts a few seconds, time to reshard in its middle.
        c.migration.big_key_step = 5;
        c.backend.request_timeout_ms = 30_000;
    });
    let mut c = common::client(proxy.local_addr()).await;
    let hash = "resharded:hash".to_string();
    build(&mut c, &[(&hash, HASH_100K)]).await;
    let slot = slotgate::slot::Slot::of(hash.as_bytes()).get();
    let ((owner, owner_id), (other, other_id)) = owner_and_other(&cluster, slot).await;
    let (owner_addr, other_addr) = (
        common::load::node_addr(owner),
        common::load::node_addr(other),
    );

    let admin = proxy.admin_addr().unwrap().to_string();
    start_onto(&admin, &cluster, "start the move onto the cluster").await;
    // Mid-copy: the staging key is on the owner, in the key's slot.
    let staging = eventually(
        "a staging key in the slot on its owner",
        Duration::from_secs(30),
        || async {
            let keys = common::redis_cli(
                owner_addr,
                &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10"],
            );
            let staging = keys.trim().to_string();
            common::check(staging, |k| k.starts_with("slotgate:staging:"))
        },
    )
    .await;
    set_slot(other, slot, &["IMPORTING", &owner_id]);
    set_slot(owner, slot, &["MIGRATING", &other_id]);
    let port = other.to_string();
    let out = common::redis_cli(
        owner_addr,
        &["MIGRATE", "127.0.0.1", &port, &staging, "0", "5000"],
    );
    assert_eq!(
        out.trim(),
        "OK",
        "the staging key taken to the importing node"
    );

    // The copy ends refused; the mover says the key waits; a request for it waits too.
    eventually(
        "the mover says a key waits",
        Duration::from_secs(20),
        || async {
            let s = crate::fleet_migration::status(&admin).await;
            let waits = s["moves"][0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("1 keys wait"));
            if waits && s["copying_in_steps"] == serde_json::json!([]) {
                Ok(())
            } else {
                Err(s)
            }
        },
    )
    .await;
    let on_pool = common::redis_cli(pool, &["HLEN", &hash]);
    assert_eq!(on_pool.trim(), "100000", "the key is whole on its pool");
    // Nothing put in place: in the slot, the owner holds nothing, the importing node only the
    // staging key.
    let in_slot = |node| {
        common::redis_cli(node, &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10"])
            .trim()
            .to_string()
    };
    assert_eq!(in_slot(owner_addr), "", "nothing left on the owner");
    assert_eq!(
        in_slot(other_addr),
        staging,
        "only the staging key was taken"
    );
    let mut importing = common::load::node(other).await;
    let (pttl,): (i64,) = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .cmd("PTTL")
        .arg(&staging)
        .query_async(&mut importing)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 60_000,
        "the staging key left on the importing node expires by itself: {pttl} ms"
    );
    let mut reader_conn = common::client(proxy.local_addr()).await;
    let key = hash.clone();
    let reader = tokio::spawn(async move {
        let fields: redis::RedisResult<u64> = reader_conn.hlen(&key).await;
        fields
    });
    // The same in a transaction (the dedicated-connection path).
    let mut tx_conn = common::client(proxy.local_addr()).await;
    let key = hash.clone();
    let tx_reader = tokio::spawn(async move {
        let fields: redis::RedisResult<(u64,)> = redis::pipe()
            .atomic()
            .hlen(&key)
            .query_async(&mut tx_conn)
            .await;
        fields
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!reader.is_finished(), "the request waits for the reshard");
    assert!(
        !tx_reader.is_finished(),
        "the transaction waits for the reshard"
    );

    // The reshard of the slot ends: the key is copied in steps to its new owner.
    for port in cluster.master_ports() {
        set_slot(port, slot, &["NODE", &other_id]);
    }
    let fields = reader
        .await
        .unwrap()
        .expect("no error for the waiting request");
    assert_eq!(fields, 100_000);
    let (fields,) = tx_reader
        .await
        .unwrap()
        .expect("no error for the waiting transaction");
    assert_eq!(fields, 100_000);
    until_cluster_mode(&file.0, Duration::from_secs(60)).await;
    let on_new_owner = common::redis_cli(other_addr, &["HLEN", &hash]);
    assert_eq!(
        on_new_owner.trim(),
        "100000",
        "whole on the slot's new owner"
    );
    assert_eq!(common::dbsize_sum(&[pool]), 0);
    for port in cluster.master_ports() {
        let left = common::redis_cli(common::load::node_addr(port), &["KEYS", "slotgate:*"]);
        assert_eq!(left.trim(), "", "no staging key left on {port}");
    }
    drop(proxy);
    drop(cluster);
}

/// An abort of a move onto a cluster (issue 20: both features together): a big hash a request
/// met is copied onto the cluster in steps (the move paused, so only the copier moves it);
/// then, the move resumed, the mover's copy in steps of a second one is under way when the
/// move is aborted. The copy is given up (the key whole on its pool, no staging key left), the
/// first hash moves back whole with its TTL, both read whole through the proxy with no error,
/// the abort ends with the cluster empty and the file pool mode again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_moves_big_keys_back_whole_and_gives_up_a_copy_in_steps_under_way() {
    use crate::to_cluster::{destination_cluster, start_onto, start_pools_proxy};
    let _serial = common::load::serial().await;
    let servers = common::standalone_servers(1);
    let pool: std::net::SocketAddr = servers[0].addr().parse().unwrap();
    let cluster = destination_cluster(None);
    let (proxy, file) = start_pools_proxy(&servers, "slotgate-big-abort", |c| {
        c.migration.big_key_bytes = 256 * 1024;
        // Small steps: a copy lasts seconds, time to abort in its middle.
        c.migration.big_key_step = 5;
        c.backend.request_timeout_ms = 30_000;
    });
    let admin = proxy.admin_addr().unwrap().to_string();
    let post = |path: &'static str| {
        let admin = admin.clone();
        async move { slotgate::admin::client::request(&admin, hyper::Method::POST, path).await }
    };
    let mut c = common::client(proxy.local_addr()).await;
    let (copied, midway) = ("abort:copied".to_string(), "abort:midway".to_string());
    build(&mut c, &[(&copied, HASH_100K), (&midway, HASH_100K)]).await;
    let _: bool = c.expire(&copied, 3000).await.unwrap();

    // The move starts, paused at once: a request for `copied` has it copied in steps.
    start_onto(&admin, &cluster, "start the move onto the cluster").await;
    post("/migrations/pause").await.unwrap();
    let fields: u64 = c.hlen(&copied).await.expect("no error while it is copied");
    assert_eq!(fields, 100_000);
    let masters: Vec<std::net::SocketAddr> = cluster
        .master_ports()
        .into_iter()
        .map(common::load::node_addr)
        .collect();
    assert_eq!(
        common::redis_cli(pool, &["EXISTS", &copied]).trim(),
        "0",
        "{copied} left its pool"
    );
    assert_eq!(common::dbsize_sum(&masters), 1, "{copied} on the cluster");

    // Resumed, the mover copies `midway` in steps; aborted in the middle of that copy.
    post("/migrations/resume").await.unwrap();
    let slot = slotgate::slot::Slot::of(midway.as_bytes())
        .get()
        .to_string();
    eventually(
        "a staging key of the mover's copy on the cluster",
        Duration::from_secs(30),
        || async {
            let in_slot: Vec<String> = masters
                .iter()
                .map(|&m| common::redis_cli(m, &["CLUSTER", "GETKEYSINSLOT", &slot, "10"]))
                .collect();
            common::check(in_slot, |keys| {
                keys.iter()
                    .any(|k| k.trim().starts_with("slotgate:staging:"))
            })
        },
    )
    .await;
    let aborted = post("/migrations/abort").await.unwrap();
    assert!(aborted.contains("\"state\":\"aborting\""), "{aborted}");

    // Both read whole through the proxy (`copied` moves back whole on touch).
    let fields: u64 = c.hlen(&copied).await.expect("no error moving back");
    assert_eq!(fields, 100_000);
    let fields: u64 = c
        .hlen(&midway)
        .await
        .expect("no error for the given-up copy");
    assert_eq!(fields, 100_000);
    let path = file.0.clone();
    eventually("the abort ends", Duration::from_secs(60), || {
        let path = path.clone();
        async move {
            let state = slotgate::config::Config::load(&path).map(|c| c.migration.to_cluster);
            common::check(state.ok(), |s| *s == Some(None))
        }
    })
    .await;
    assert_eq!(common::dbsize_sum(&masters), 0, "the cluster is empty");
    for key in [&copied, &midway] {
        let on_pool = common::redis_cli(pool, &["HLEN", key]);
        assert_eq!(on_pool.trim(), "100000", "{key} whole on its pool");
    }
    let pttl: i64 = common::redis_cli(pool, &["PTTL", &copied])
        .trim()
        .parse()
        .unwrap();
    assert!(
        pttl > 2_900_000 && pttl <= 3_000_000,
        "{copied} kept its TTL: {pttl} ms"
    );
    let left = common::redis_cli(pool, &["KEYS", "slotgate:*"]);
    assert_eq!(left.trim(), "", "no staging key on the pool");
    assert_eq!(common::dbsize_sum(&[pool]), 2);
    drop(proxy);
    drop(cluster);
}
