//! Key extraction against what redis-server 7.0.15 says, plus a no-panic fuzz over every spec.

use super::*;
use crate::command::tests::GETKEYS;
use crate::command::{all, lookup};

fn keys_of(args: &[&str]) -> Result<Vec<String>, KeyError> {
    let spec = lookup(args).unwrap_or_else(|| panic!("no spec for {args:?}"));
    let mut out = SmallVec::new();
    spec.keys(args, &mut out)?;
    Ok(out.iter().map(|&i| args[i].to_string()).collect())
}

#[test]
fn keys_match_redis_command_getkeys() {
    let mut checked = 0;
    for (args, expected) in GETKEYS {
        match expected {
            Ok(names) if !names.is_empty() => {
                let got = keys_of(args);
                let got: Result<Vec<&str>, _> = got
                    .as_ref()
                    .map(|keys| keys.iter().map(String::as_str).collect());
                assert_eq!(got, Ok(names.to_vec()), "{args:?}");
                checked += 1;
            }
            // Redis found no keys (GETKEYS can't report a bad numkeys otherwise): we must not
            // find any either, though we may name the error (EVAL with numkeys -1).
            Ok(_) | Err("ERR Invalid arguments specified for command") => {
                let got = keys_of(args);
                assert!(
                    got.as_ref().map_or(true, Vec::is_empty),
                    "{args:?}: {got:?}"
                );
                checked += 1;
            }
            // Errors about the target command itself; see the introspect tests.
            Err(_) => {}
        }
    }
    assert!(checked > 80);
}

/// What Redis 7.0.15 replies when running each request (with `redis-cli -p 17200 <args>`),
/// minus the "ERR " prefix: the messages `keys()` must reproduce.
const EXEC_ERRORS: &[(&[&str], &str)] = &[
    (&["GET"], "wrong number of arguments for 'get' command"),
    (
        &["OBJECT", "ENCODING"],
        "wrong number of arguments for 'object|encoding' command",
    ),
    (
        &["EVAL", "s", "x", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL", "s", " 1", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL", "s", "+1", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL", "s", "01", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL", "s", "-0", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL", "s", "99999999999999999999", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL", "s", "-1", "a"],
        "Number of keys can't be negative",
    ),
    (
        &["EVAL", "s", "-9223372036854775808", "a"],
        "Number of keys can't be negative",
    ),
    (
        &["EVAL", "s", "5", "a"],
        "Number of keys can't be greater than number of args",
    ),
    (
        &["EVALSHA", "sha", "x", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["EVAL_RO", "s", "2", "a"],
        "Number of keys can't be greater than number of args",
    ),
    (&["FCALL", "f", "x", "a"], "Bad number of keys provided"),
    (&["FCALL_RO", "f", "+1", "a"], "Bad number of keys provided"),
    (
        &["FCALL", "f", "-1", "a"],
        "Number of keys can't be negative",
    ),
    (
        &["FCALL", "f", "9223372036854775807", "a"],
        "Number of keys can't be greater than number of args",
    ),
    (
        &["ZUNIONSTORE", "d", "x", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["ZUNIONSTORE", "d", "0", "a"],
        "at least 1 input key is needed for 'zunionstore' command",
    ),
    (
        &["ZINTERSTORE", "d", "-1", "a"],
        "at least 1 input key is needed for 'zinterstore' command",
    ),
    (
        &["ZDIFFSTORE", "d", "0", "a"],
        "at least 1 input key is needed for 'zdiffstore' command",
    ),
    (&["ZUNIONSTORE", "d", "5", "a"], "syntax error"),
    (
        &["ZUNION", "0", "a"],
        "at least 1 input key is needed for 'zunion' command",
    ),
    (
        &["ZDIFF", "-1", "a"],
        "at least 1 input key is needed for 'zdiff' command",
    ),
    (
        &["ZINTER", "x", "a"],
        "value is not an integer or out of range",
    ),
    (&["ZUNION", "9223372036854775807", "a"], "syntax error"),
    (
        &["ZINTERCARD", "x", "a"],
        "value is not an integer or out of range",
    ),
    (
        &["ZINTERCARD", "0", "a"],
        "at least 1 input key is needed for 'zintercard' command",
    ),
    (&["ZINTERCARD", "5", "a"], "syntax error"),
    (
        &["SINTERCARD", "x", "a"],
        "numkeys should be greater than 0",
    ),
    (
        &["SINTERCARD", "0", "a"],
        "numkeys should be greater than 0",
    ),
    (
        &["SINTERCARD", "99999999999999999999", "a"],
        "numkeys should be greater than 0",
    ),
    (
        &["SINTERCARD", "5", "a"],
        "Number of keys can't be greater than number of args",
    ),
    (
        &["LMPOP", "x", "a", "LEFT"],
        "numkeys should be greater than 0",
    ),
    (
        &["LMPOP", "-1", "a", "LEFT"],
        "numkeys should be greater than 0",
    ),
    (&["LMPOP", "5", "a", "LEFT"], "syntax error"),
    (
        &["LMPOP", "9223372036854775807", "a", "LEFT"],
        "syntax error",
    ),
    (
        &["BLMPOP", "0", "0", "a", "LEFT"],
        "numkeys should be greater than 0",
    ),
    (
        &["ZMPOP", "0", "a", "MIN"],
        "numkeys should be greater than 0",
    ),
    (&["BZMPOP", "0", "5", "a", "MIN"], "syntax error"),
    (
        &["XREAD", "COUNT", "1", "STREAMS", "k1"],
        "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
    ),
    (
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "1",
            "STREAMS",
            "k1",
        ],
        "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
    ),
];

#[test]
fn malformed_numkeys_give_redis_error_texts() {
    for (args, message) in EXEC_ERRORS {
        match keys_of(args) {
            Err(err) => {
                assert_eq!(err.to_string(), *message, "{args:?}");
                assert_eq!(err.to_reply(), format!("-ERR {message}\r\n"));
                assert!(!err.kind().is_empty());
            }
            Ok(keys) => panic!("{args:?}: expected an error, got keys {keys:?}"),
        }
    }
}

#[test]
fn eval_with_no_keys_is_fine() {
    assert_eq!(keys_of(&["EVAL", "return 1", "0"]), Ok(vec![]));
    assert_eq!(keys_of(&["FCALL", "f", "0", "arg"]), Ok(vec![]));
}

#[test]
fn keys_clears_the_output_and_leaves_it_empty_on_error() {
    let spec = lookup(&["mget"]).unwrap();
    let mut out: SmallVec<[usize; 8]> = SmallVec::from_slice(&[7, 7]);
    spec.keys(&["MGET", "a", "b"], &mut out).unwrap();
    assert_eq!(out.as_slice(), [1, 2]);
    let spec = lookup(&["eval"]).unwrap();
    assert!(spec.keys(&["EVAL", "s", "2", "k1"], &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn not_key_channels_only_in_routing_args() {
    let spec = lookup(&["spublish"]).unwrap();
    let mut out = SmallVec::new();
    spec.keys(&["SPUBLISH", "ch", "msg"], &mut out).unwrap();
    assert!(out.is_empty());
    spec.routing_args(&["SPUBLISH", "ch", "msg"], &mut out)
        .unwrap();
    assert_eq!(out.as_slice(), [1]);
    let spec = lookup(&["ssubscribe"]).unwrap();
    spec.routing_args(&["SSUBSCRIBE", "a", "b"], &mut out)
        .unwrap();
    assert_eq!(out.as_slice(), [1, 2]);
    assert!(!spec.has_keys());
}

fn flags_of(args: &[&str]) -> Vec<(usize, Vec<&'static str>)> {
    let spec = lookup(args).unwrap();
    let mut got = Vec::new();
    spec.visit_keys(args, false, true, |i, f| got.push((i, f.names().collect())))
        .unwrap();
    got
}

/// Flags as `COMMAND GETKEYSANDFLAGS <args>` printed them on 7.0.15.
#[test]
fn variable_flags_follow_redis() {
    assert_eq!(flags_of(&["SET", "k", "v"]), [(1, vec!["OW", "update"])]);
    assert_eq!(
        flags_of(&["SET", "k", "v", "GET"]),
        [(1, vec!["RW", "access", "update"])]
    );
    assert_eq!(
        flags_of(&["BITFIELD", "k", "GET", "u8", "0"]),
        [(1, vec!["RO", "access"])]
    );
    assert_eq!(
        flags_of(&["BITFIELD", "k", "SET", "u8", "0", "1"]),
        [(1, vec!["RW", "access", "update"])]
    );
    assert_eq!(
        flags_of(&["SORT", "k", "STORE", "d"]),
        [(1, vec!["RO", "access"]), (3, vec!["OW", "update"])]
    );
    assert_eq!(
        flags_of(&["MIGRATE", "h", "1", "", "0", "5", "KEYS", "a"]),
        [(7, vec!["RW", "access", "delete"])]
    );
}

#[test]
fn strict_integer_parsing() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"42"), Some(42));
    assert_eq!(parse_i64(b"-7"), Some(-7));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"-0",
        b"00",
        b"01",
        b"+1",
        b" 1",
        b"1 ",
        b"1x",
        b"9223372036854775808",
    ] {
        assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

/// xorshift64*: a dependency-free, reproducible source of "random" arguments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Words that steer the specific rules and the key specs into their corners.
const VOCAB: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "-2",
    "100",
    "x",
    "k",
    "STREAMS",
    "streams",
    "STORE",
    "STOREDIST",
    "KEYS",
    "keys",
    "AUTH",
    "AUTH2",
    "LIMIT",
    "BY",
    "GET",
    "get",
    "SET",
    "INCRBY",
    "OVERFLOW",
    "COPY",
    "GROUP",
    "COUNT",
    "BLOCK",
    "NOACK",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    ">",
    "$",
    "*",
];

#[test]
fn random_args_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let specs: Vec<&CommandSpec> = all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
        .collect();
    let mut out = SmallVec::new();
    for spec in specs {
        let prefix: Vec<&str> = spec.name.split('|').collect();
        for _ in 0..300 {
            let extra = rng.below(14);
            let mut args: Vec<&str> = prefix.clone();
            args.extend((0..extra).map(|_| VOCAB[rng.below(VOCAB.len())]));
            // Sometimes truncate below the command name too.
            if rng.below(10) == 0 {
                args.truncate(rng.below(args.len() + 1));
            }
            for include_not_keys in [false, true] {
                let res = if include_not_keys {
                    spec.routing_args(&args, &mut out)
                } else {
                    spec.keys(&args, &mut out)
                };
                match res {
                    Ok(()) => assert!(out.iter().all(|&i| i < args.len()), "{args:?}"),
                    Err(_) => assert!(out.is_empty()),
                }
            }
            let _ = spec.visit_keys(&args, false, true, |i, _| assert!(i < args.len()));
        }
    }
}

/// Every command called with just enough arguments (all "1", so numkeys parse, plus one for
/// variadic commands so "numkeys 1" has its key) has well-defined keys.
#[test]
fn minimal_requests_have_keys() {
    let mut out = SmallVec::new();
    for spec in all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
    {
        let mut args: Vec<&str> = spec.name.split('|').collect();
        while !spec.arity_ok(args.len()) {
            args.push("1");
        }
        // One more where allowed, so "numkeys 1" has its key.
        if spec.arity < 0 {
            args.push("1");
        }
        let res = spec.keys(&args, &mut out);
        assert!(res.is_ok(), "{args:?}: {res:?}");
        assert!(out.iter().all(|&i| i < args.len() && i > 0), "{args:?}");
    }
}

/// The one-key shortcut of `routing_args` (GET, SET …) finds what the general walk finds, for
/// every command it applies to and every argument count around its arity.
#[test]
fn single_key_shortcut_agrees_with_the_key_specs() {
    let mut shortcut = SmallVec::new();
    let mut walked: SmallVec<[usize; 8]> = SmallVec::new();
    let mut covered = 0;
    for spec in all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
    {
        if spec.single_key_index().is_none() {
            continue;
        }
        covered += 1;
        for argc in 0..=spec.arity.unsigned_abs() as usize + 3 {
            let args: Vec<&str> = (0..argc).map(|_| "1").collect();
            let fast = spec.routing_args(&args, &mut shortcut);
            walked.clear();
            let slow = spec.visit_keys(&args, true, false, |i, _| walked.push(i));
            if slow.is_err() {
                walked.clear();
            }
            assert_eq!(fast, slow, "{} with {argc} arguments", spec.name);
            assert_eq!(shortcut, walked, "{} with {argc} arguments", spec.name);
        }
    }
    assert!(covered > 100, "the shortcut covers {covered} commands");
}
