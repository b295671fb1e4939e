//! Table-wide tests (completeness, lookup, arity) and the fixtures shared with the key and
//! introspection tests.

use super::*;

/// `COMMAND GETKEYS <args>` on redis-server 7.0.15, one row per request: the key names Redis
/// returned, or its error reply. Captured once with
/// `redis-cli -p 17200 COMMAND GETKEYS <args...>` (redis-server --port 17200 --save '').
#[allow(clippy::type_complexity)]
pub(crate) const GETKEYS: &[(&[&str], Result<&[&str], &str>)] = &[
    (&["GET", "k"], Ok(&["k"])),
    (&["SET", "k", "v"], Ok(&["k"])),
    (&["SET", "k", "v", "GET"], Ok(&["k"])),
    (&["MSET", "k1", "v1", "k2", "v2"], Ok(&["k1", "k2"])),
    (&["MSETNX", "k1", "v1", "k2", "v2"], Ok(&["k1", "k2"])),
    (&["DEL", "k1", "k2", "k3"], Ok(&["k1", "k2", "k3"])),
    (&["MGET", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["EXISTS", "k1"], Ok(&["k1"])),
    (&["UNLINK", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["WATCH", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["EVAL", "s", "2", "k1", "k2", "a1"], Ok(&["k1", "k2"])),
    (&["EVAL", "s", "0", "a1"], Ok(&[])),
    (&["EVALSHA", "sha", "1", "k1"], Ok(&["k1"])),
    (&["EVAL_RO", "s", "1", "k1", "a"], Ok(&["k1"])),
    (&["EVALSHA_RO", "sha", "2", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["FCALL", "f", "2", "k1", "k2", "a"], Ok(&["k1", "k2"])),
    (&["FCALL_RO", "f", "1", "k1"], Ok(&["k1"])),
    (
        &["ZUNIONSTORE", "d", "2", "k1", "k2", "WEIGHTS", "1", "2"],
        Ok(&["d", "k1", "k2"]),
    ),
    (&["ZINTERSTORE", "d", "1", "k1"], Ok(&["d", "k1"])),
    (
        &["ZDIFFSTORE", "d", "2", "k1", "k2"],
        Ok(&["d", "k1", "k2"]),
    ),
    (
        &["ZUNION", "2", "k1", "k2", "WITHSCORES"],
        Ok(&["k1", "k2"]),
    ),
    (&["ZINTER", "1", "k1"], Ok(&["k1"])),
    (&["ZDIFF", "2", "k1", "k2"], Ok(&["k1", "k2"])),
    (
        &["SINTERCARD", "2", "k1", "k2", "LIMIT", "1"],
        Ok(&["k1", "k2"]),
    ),
    (&["ZINTERCARD", "2", "k1", "k2"], Ok(&["k1", "k2"])),
    (
        &["LMPOP", "2", "k1", "k2", "LEFT", "COUNT", "1"],
        Ok(&["k1", "k2"]),
    ),
    (
        &["BLMPOP", "0", "2", "k1", "k2", "RIGHT"],
        Ok(&["k1", "k2"]),
    ),
    (&["ZMPOP", "1", "k1", "MIN"], Ok(&["k1"])),
    (&["BZMPOP", "1", "2", "k1", "k2", "MAX"], Ok(&["k1", "k2"])),
    (
        &["XREAD", "STREAMS", "k1", "k2", "0", "0"],
        Ok(&["k1", "k2"]),
    ),
    (
        &["XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "k1", "0"],
        Ok(&["k1"]),
    ),
    (&["XREAD", "STREAMS", "k1", "k2", "0"], Ok(&["k1"])),
    (
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "STREAMS",
            "k1",
            "k2",
            ">",
            ">",
        ],
        Ok(&["k1", "k2"]),
    ),
    (
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "1",
            "NOACK",
            "STREAMS",
            "k1",
            ">",
        ],
        Ok(&["k1"]),
    ),
    (
        &["XREADGROUP", "GROUP", "streams", "c", "STREAMS", "k1", ">"],
        Ok(&["k1"]),
    ),
    (&["SORT", "k"], Ok(&["k"])),
    (&["SORT", "k", "STORE", "d"], Ok(&["k", "d"])),
    (
        &[
            "SORT", "k", "BY", "p", "GET", "g", "LIMIT", "0", "1", "STORE", "d", "ALPHA",
        ],
        Ok(&["k", "d"]),
    ),
    (
        &["SORT", "k", "GET", "store", "STORE", "d"],
        Ok(&["k", "d"]),
    ),
    (
        &["SORT", "k", "STORE", "d1", "STORE", "d2"],
        Ok(&["k", "d2"]),
    ),
    (
        &["SORT", "k", "LIMIT", "store", "1", "STORE", "d"],
        Ok(&["k", "d"]),
    ),
    (&["SORT", "k", "STORE"], Ok(&["k"])),
    (&["SORT_RO", "k", "BY", "p", "GET", "g"], Ok(&["k"])),
    (&["MIGRATE", "h", "6379", "k", "0", "5000"], Ok(&["k"])),
    (
        &["MIGRATE", "h", "6379", "k", "0", "5000", "COPY", "REPLACE"],
        Ok(&["k"]),
    ),
    (
        &["MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "k1", "k2"],
        Ok(&["k1", "k2"]),
    ),
    (
        &[
            "MIGRATE", "h", "6379", "", "0", "5000", "COPY", "REPLACE", "AUTH", "keys", "KEYS",
            "k1",
        ],
        Ok(&["k1"]),
    ),
    (
        &[
            "MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "keys", "p", "KEYS", "k1", "k2",
        ],
        Ok(&["k1", "k2"]),
    ),
    (
        &["MIGRATE", "h", "6379", "k", "0", "5000", "KEYS", "k1", "k2"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (&["GEORADIUS", "k", "0", "0", "1", "km"], Ok(&["k"])),
    (
        &["GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"],
        Ok(&["k", "d"]),
    ),
    (
        &["GEORADIUS", "k", "0", "0", "1", "km", "STOREDIST", "d"],
        Ok(&["k", "d"]),
    ),
    (
        &[
            "GEORADIUS",
            "k",
            "0",
            "0",
            "1",
            "km",
            "WITHDIST",
            "COUNT",
            "1",
            "STORE",
            "d",
        ],
        Ok(&["k", "d"]),
    ),
    (
        &["GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE", "d"],
        Ok(&["k", "d"]),
    ),
    (
        &[
            "GEORADIUS",
            "k",
            "0",
            "0",
            "1",
            "km",
            "STORE",
            "d1",
            "STOREDIST",
            "d2",
        ],
        Ok(&["k", "d1", "d2"]),
    ),
    (&["GEORADIUS_RO", "k", "0", "0", "1", "km"], Ok(&["k"])),
    (&["OBJECT", "ENCODING", "k"], Ok(&["k"])),
    (&["OBJECT", "FREQ", "k"], Ok(&["k"])),
    (&["MEMORY", "USAGE", "k", "SAMPLES", "5"], Ok(&["k"])),
    (&["XINFO", "STREAM", "k", "FULL"], Ok(&["k"])),
    (&["XINFO", "GROUPS", "k"], Ok(&["k"])),
    (&["XINFO", "CONSUMERS", "k", "g"], Ok(&["k"])),
    (&["BITOP", "AND", "d", "k1", "k2"], Ok(&["d", "k1", "k2"])),
    (&["BITOP", "NOT", "d", "k1"], Ok(&["d", "k1"])),
    (&["LMOVE", "k1", "k2", "LEFT", "RIGHT"], Ok(&["k1", "k2"])),
    (
        &["BLMOVE", "k1", "k2", "LEFT", "RIGHT", "0"],
        Ok(&["k1", "k2"]),
    ),
    (&["RPOPLPUSH", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["BRPOPLPUSH", "k1", "k2", "0"], Ok(&["k1", "k2"])),
    (&["SMOVE", "k1", "k2", "m"], Ok(&["k1", "k2"])),
    (&["RENAME", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["RENAMENX", "k1", "k2"], Ok(&["k1", "k2"])),
    (
        &["COPY", "k1", "k2", "DB", "1", "REPLACE"],
        Ok(&["k1", "k2"]),
    ),
    (&["BITFIELD", "k", "GET", "u8", "0"], Ok(&["k"])),
    (&["BITFIELD_RO", "k", "GET", "u8", "0"], Ok(&["k"])),
    (&["BLPOP", "k1", "k2", "0"], Ok(&["k1", "k2"])),
    (&["BZPOPMIN", "k1", "k2", "0"], Ok(&["k1", "k2"])),
    (&["PFCOUNT", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["PFMERGE", "d", "k1", "k2"], Ok(&["d", "k1", "k2"])),
    (&["SUNIONSTORE", "d", "k1", "k2"], Ok(&["d", "k1", "k2"])),
    (&["GETEX", "k", "PERSIST"], Ok(&["k"])),
    (&["LCS", "k1", "k2"], Ok(&["k1", "k2"])),
    (&["XADD", "k", "*", "f", "v"], Ok(&["k"])),
    (&["XGROUP", "CREATE", "k", "g", "$"], Ok(&["k"])),
    (&["XGROUP", "SETID", "k", "g", "0"], Ok(&["k"])),
    (&["XCLAIM", "k", "g", "c", "0", "1"], Ok(&["k"])),
    (&["XAUTOCLAIM", "k", "g", "c", "0", "0"], Ok(&["k"])),
    (
        &["SPUBLISH", "c", "m"],
        Err("ERR The command has no key arguments"),
    ),
    (
        &["PUBLISH", "c", "m"],
        Err("ERR The command has no key arguments"),
    ),
    (
        &["PING"],
        Err("ERR wrong number of arguments for 'command|getkeys' command"),
    ),
    (
        &["OBJECT", "FOO", "k"],
        Err("ERR Invalid command specified"),
    ),
    (
        &["CLIENT", "KILL", "x"],
        Err("ERR The command has no key arguments"),
    ),
    (
        &["ZUNIONSTORE", "d", "0", "k1"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (
        &["ZUNIONSTORE", "d", "x", "k1"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (
        &["ZUNIONSTORE", "d", "5", "k1"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (&["EVAL", "s", "-1", "k1"], Ok(&[])),
    (&["EVAL", "s", "5", "k1"], Ok(&[])),
    (&["EVAL", "s", "x", "k1"], Ok(&[])),
    (
        &["LMPOP", "0", "k1", "LEFT"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (
        &["LMPOP", "5", "k1", "LEFT"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (
        &["SINTERCARD", "0", "k1"],
        Err("ERR Invalid arguments specified for command"),
    ),
    (
        &["XREAD", "COUNT", "1", "STREAMS", "k1"],
        Err("ERR Invalid arguments specified for command"),
    ),
];

#[test]
fn table_has_every_redis_7_0_15_command() {
    // `redis-cli -p 17200 COMMAND COUNT` on 7.0.15 answers 240; `COMMAND LIST` lists 366.
    assert_eq!(table::REDIS_VERSION, "7.0.15");
    assert_eq!(all().len(), 240);
    assert_eq!(table::COMMAND_COUNT, 240);
    let with_subs: usize = all().iter().map(|c| 1 + c.subcommands.len()).sum();
    assert_eq!(with_subs, 366);
    assert_eq!(table::SPEC_COUNT, 366);
}

#[test]
fn table_is_sorted_and_well_formed() {
    let names: Vec<&str> = all().iter().map(|c| c.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "top-level commands sorted and unique");
    for cmd in all() {
        assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
        assert!(!cmd.name.contains('|'));
        assert!(cmd.arity != 0, "{}", cmd.name);
        assert!(!cmd.group.is_empty(), "{}", cmd.name);
        for sub in cmd.subcommands {
            assert!(
                sub.name.starts_with(&format!("{}|", cmd.name)),
                "{}",
                sub.name
            );
            assert!(sub.subcommands.is_empty(), "one level of subcommands");
            assert!(sub.arity.unsigned_abs() >= 2, "{}", sub.name);
        }
    }
}

#[test]
fn flags_and_docs_come_through() {
    let get = lookup(&["get", "k"]).unwrap();
    assert_eq!(get.arity, 2);
    assert!(get.is_readonly() && !get.is_write());
    assert!(get.flags.contains(Flags::FAST));
    assert_eq!((get.first_key, get.last_key, get.step), (1, 1, 1));
    assert_eq!(get.acl_categories, ["@read", "@string", "@fast"]);
    assert_eq!(get.group, "string");
    assert_eq!(get.summary, "Get the value of a key");
    assert_eq!(get.since, "1.0.0");
    assert_eq!(get.complexity, "O(1)");
    assert!(lookup(&["BLPOP"]).unwrap().is_blocking());
    assert!(lookup(&["subscribe"]).unwrap().is_pubsub());
    assert!(lookup(&["flushall"]).unwrap().is_write());
    assert!(lookup(&["CONFIG", "SET"]).unwrap().is_admin());
    let keys = lookup(&["keys"]).unwrap();
    assert_eq!(
        keys.tips,
        ["request_policy:all_shards", "nondeterministic_output_order"]
    );
    // Hidden by COMMAND INFO; found by the generator's CLIENT PAUSE WRITE probe.
    for name in ["eval", "evalsha", "fcall", "pfcount", "publish", "spublish"] {
        let cmd = lookup(&[name]).unwrap();
        assert!(cmd.flags.contains(Flags::MAY_REPLICATE), "{name}");
    }
    assert!(!lookup(&["eval_ro"])
        .unwrap()
        .flags
        .contains(Flags::MAY_REPLICATE));
    // A few commands have no complexity in Redis' docs either.
    assert_eq!(lookup(&["monitor"]).unwrap().complexity, "");
}

#[test]
fn every_spec_has_an_id_that_names_it_back() {
    for cmd in all() {
        for spec in std::iter::once(cmd).chain(cmd.subcommands.iter()) {
            let id = id_of(spec);
            assert_ne!(id, 0, "{}", spec.name);
            assert_eq!(by_id(id).map(|s| s.name), Some(spec.name));
        }
    }
    assert!(by_id(0).is_none());
    assert!(by_id(u16::MAX).is_none());
}

#[test]
fn lookup_is_case_insensitive_and_resolves_subcommands() {
    for name in ["get", "GET", "gEt"] {
        assert_eq!(lookup(&[name]).unwrap().name, "get");
    }
    assert_eq!(lookup(&[b"GET".to_vec()]).unwrap().name, "get");
    assert_eq!(
        lookup(&["client", "SETNAME", "x"]).unwrap().name,
        "client|setname"
    );
    assert_eq!(
        lookup(&["Config", "get", "maxmemory"]).unwrap().name,
        "config|get"
    );
    assert_eq!(
        lookup(&["OBJECT", "encoding", "k"]).unwrap().name,
        "object|encoding"
    );
    assert_eq!(
        lookup(&["xinfo", "STREAM", "k"]).unwrap().name,
        "xinfo|stream"
    );
    assert_eq!(
        lookup(&["memory", "usage", "k"]).unwrap().name,
        "memory|usage"
    );
    assert_eq!(
        lookup(&["cluster", "count-failure-reports", "id"])
            .unwrap()
            .name,
        "cluster|count-failure-reports"
    );
    // Unknown or missing subcommand: the container, so the caller can answer like Redis.
    assert_eq!(lookup(&["client", "nosuch"]).unwrap().name, "client");
    assert_eq!(lookup(&["client"]).unwrap().name, "client");
    // A plain command ignores its arguments even if one looks like a subcommand name.
    assert_eq!(lookup(&["get", "setname"]).unwrap().name, "get");
    // Not commands.
    let empty: [&str; 0] = [];
    assert!(lookup(&empty).is_none());
    assert!(lookup(&["nosuch"]).is_none());
    assert!(lookup(&[""]).is_none());
    assert!(lookup(&["client|setname", "x"]).is_none());
    assert!(lookup(&["g\u{e9}t"]).is_none());
    assert!(lookup(&["x".repeat(10_000)]).is_none());
    assert_eq!(
        lookup(&["client".to_string(), "x".repeat(10_000)])
            .unwrap()
            .name,
        "client"
    );
}

#[test]
fn every_spec_is_found_by_its_own_name() {
    for cmd in all() {
        let upper = cmd.name.to_ascii_uppercase();
        assert!(std::ptr::eq(lookup(&[upper.as_str()]).unwrap(), cmd));
        for sub in cmd.subcommands {
            let (container, name) = sub.name.split_once('|').unwrap();
            assert!(std::ptr::eq(lookup(&[container, name]).unwrap(), sub));
            let found = lookup::lookup_full_name(sub.name.to_ascii_uppercase().as_bytes());
            assert!(std::ptr::eq(found.unwrap(), sub));
        }
    }
    assert!(lookup::lookup_full_name(b"get|x").is_none());
}

#[test]
fn arity_checks() {
    let get = lookup(&["get"]).unwrap();
    assert!(!get.arity_ok(1) && get.arity_ok(2) && !get.arity_ok(3));
    let del = lookup(&["del"]).unwrap();
    assert!(!del.arity_ok(1) && del.arity_ok(2) && del.arity_ok(100));
    // Subcommand arity counts the container name too.
    let enc = lookup(&["object", "encoding"]).unwrap();
    assert_eq!(enc.arity, 3);
    assert!(enc.arity_ok(3) && !enc.arity_ok(2));
    assert!(lookup(&["command"]).unwrap().arity_ok(1));
}

/// Not run by default: `cargo test --release --lib command::tests::lookup_speed -- --ignored
/// --nocapture`. Prints ns per lookup for a few request shapes.
#[test]
#[ignore]
fn lookup_speed() {
    use std::hint::black_box;
    use std::time::Instant;
    let cases: [&[&[u8]]; 4] = [
        &[b"GET", b"key"],
        &[b"set", b"key", b"value"],
        &[b"ZRANGEBYSCORE", b"k", b"0", b"1"],
        &[b"CLIENT", b"SETNAME", b"x"],
    ];
    const N: u32 = 5_000_000;
    for args in cases {
        lookup(args);
        let start = Instant::now();
        for _ in 0..N {
            black_box(lookup(black_box(args)));
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
        println!("lookup {:?}: {ns:.1} ns", String::from_utf8_lossy(args[0]));
    }
    let mut out = smallvec::SmallVec::new();
    let args: &[&[u8]] = &[b"MSET", b"a", b"1", b"b", b"2"];
    let spec = lookup(args).unwrap();
    let start = Instant::now();
    for _ in 0..N {
        black_box(spec.keys(black_box(args), &mut out)).unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    println!("keys MSET (2 keys): {ns:.1} ns");
}

#[test]
fn the_lookup_cache_answers_as_the_lookup_does() {
    let mut cache = LookupCache::default();
    let requests: &[&[&str]] = &[
        &["GET", "k"],
        &["get", "k"],
        &["gEt", "k"],
        &["GET", "k"],
        &["", "k"],
        &["GETGETGETGETGETGETGETGETGET", "k"],
        &["georadiusbymember_ro", "k", "m", "1", "km"],
        &["GEORADIUSBYMEMBER_RO", "k", "m", "1", "km"],
        &["GETX", "k"],
        &["GE", "k"],
        &["CLIENT", "KILL", "x"],
        &["client|kill", "x"],
        &["CLIENT", "SETNAME", "x"],
        &["CLIENT"],
        &["SET", "k", "v"],
        &["get|x"],
        &["GET", "k"],
        &["config|get", "x"],
        &["CONFIG", "GET", "x"],
        &["NOSUCH"],
        &["GET", "k"],
    ];
    // Every sequence of these, each request after each other one.
    for first in requests {
        for second in requests {
            let mut cache = cache;
            for args in [first, second] {
                let want = lookup_counted(args).map(|(spec, index)| (spec.name, index));
                let got = cache
                    .lookup_counted(args)
                    .map(|(spec, index)| (spec.name, index));
                assert_eq!(got, want, "{args:?} after {first:?}");
            }
        }
    }
    assert!(cache.lookup_counted(&["GET", "k"]).is_some());
}
