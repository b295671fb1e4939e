use super::*;
use crate::command::lookup;
use smallvec::SmallVec;

fn decl(arity: i64, flags: &[&str], first: Option<i64>, last: Option<i64>) -> Declaration {
    Declaration {
        arity: Some(arity),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        first_key: first,
        last_key: last,
        ..Declaration::default()
    }
}

fn build(decls: &[(&str, Declaration)]) -> CustomCommands {
    CustomCommands::build(decls.iter().map(|(n, d)| (*n, d))).expect("valid declarations")
}

fn errors(decls: &[(&str, Declaration)]) -> Vec<(Option<&'static str>, String)> {
    check(decls.iter().map(|(n, d)| (*n, d)))
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

fn keys(spec: &CommandSpec, args: &[&str]) -> Result<Vec<usize>, crate::command::KeyError> {
    let mut out: SmallVec<[usize; 8]> = SmallVec::new();
    spec.routing_args(args, &mut out).map(|()| out.to_vec())
}

#[test]
fn a_range_declaration_finds_keys_like_redis_legacy_range() {
    let custom = build(&[
        ("JSON.SET", decl(-4, &["write", "denyoom"], Some(1), None)),
        (
            "json.get",
            decl(-2, &["readonly", "fast"], Some(1), Some(1)),
        ),
        (
            "X.MSET",
            Declaration {
                step: Some(2),
                ..decl(-3, &["write"], Some(1), Some(-1))
            },
        ),
        ("X.PAIR", decl(3, &["readonly"], Some(1), Some(2))),
    ]);
    assert_eq!(custom.len(), 4);
    let set = custom.lookup(&["Json.Set", "k", "$", "1"]).unwrap();
    assert_eq!(set.name, "JSON.SET", "as declared");
    assert!(set.is_write() && !set.is_readonly());
    assert_eq!(set.acl_categories, ["@write", "@slow"]);
    assert_eq!(keys(set, &["json.set", "k", "$", "1"]), Ok(vec![1]));
    assert!(!set.arity_ok(3));
    let get = custom.get(b"JSON.GET").unwrap();
    assert!(get.is_readonly());
    assert_eq!(get.acl_categories, ["@read", "@fast"]);
    assert_eq!((get.first_key, get.last_key, get.step), (1, 1, 1));
    let mset = custom.get(b"x.mset").unwrap();
    assert_eq!((mset.first_key, mset.last_key, mset.step), (1, -1, 2));
    assert_eq!(
        keys(mset, &["x.mset", "a", "1", "b", "2", "c", "3"]),
        Ok(vec![1, 3, 5])
    );
    let pair = custom.get(b"x.pair").unwrap();
    assert_eq!(keys(pair, &["x.pair", "a", "b"]), Ok(vec![1, 2]));
    assert!(custom.get(b"x.nope").is_none());
    assert!(custom.lookup::<&str>(&[]).is_none());
    // Sorted by name for the binary search.
    let names: Vec<_> = custom.specs().iter().map(|s| s.name).collect();
    assert_eq!(names, ["json.get", "JSON.SET", "X.MSET", "X.PAIR"]);
}

#[test]
fn a_numkeys_declaration_counts_its_keys_like_eval() {
    let custom = build(&[(
        "MY.EVAL",
        Declaration {
            arity: Some(-3),
            flags: vec!["write".into()],
            numkeys_index: Some(2),
            ..Declaration::default()
        },
    )]);
    let spec = custom.get(b"my.eval").unwrap();
    assert!(spec.flags.contains(Flags::MOVABLE_KEYS));
    assert_eq!((spec.first_key, spec.last_key, spec.step), (0, 0, 0));
    assert_eq!(
        keys(spec, &["my.eval", "body", "2", "a", "b", "x"]),
        Ok(vec![3, 4])
    );
    assert_eq!(keys(spec, &["my.eval", "body", "0"]), Ok(vec![]));
    assert!(keys(spec, &["my.eval", "body", "3", "a"]).is_err());
    assert!(keys(spec, &["my.eval", "body", "x"]).is_err());
}

#[test]
fn blocking_and_other_flags_are_kept() {
    let custom = build(&[("X.BPOP", decl(3, &["write", "blocking"], Some(1), None))]);
    let spec = custom.get(b"x.bpop").unwrap();
    assert!(spec.is_blocking());
    assert_eq!(spec.acl_categories, ["@write", "@slow", "@blocking"]);
}

#[test]
fn bad_declarations_are_named_precisely() {
    let has = |errs: &[(Option<&'static str>, String)], field: Option<&str>, text: &str| {
        assert!(
            errs.iter().any(|(f, m)| *f == field && m.contains(text)),
            "{field:?} {text:?} not in {errs:?}"
        );
    };
    let e = errors(&[("GET", decl(2, &["readonly"], Some(1), None))]);
    has(&e, None, "built-in");
    let e = errors(&[("client|x", decl(2, &[], Some(1), None))]);
    has(&e, None, "not a command name");
    let e = errors(&[("has space", decl(2, &[], Some(1), None))]);
    has(&e, None, "not a command name");
    let e = errors(&[(
        "x.a",
        Declaration {
            flags: vec!["write".into()],
            first_key: Some(1),
            ..Declaration::default()
        },
    )]);
    has(&e, Some("arity"), "required");
    has(
        &errors(&[("x.a", decl(0, &[], Some(1), None))]),
        Some("arity"),
        "not an arity",
    );
    has(
        &errors(&[("x.a", decl(2, &["writ"], Some(1), None))]),
        Some("flags"),
        "unknown flag \"writ\"",
    );
    has(
        &errors(&[("x.a", decl(2, &["write", "readonly"], Some(1), None))]),
        Some("flags"),
        "exclude each other",
    );
    has(
        &errors(&[("x.a", decl(2, &[], None, None))]),
        None,
        "declares no key",
    );
    has(
        &errors(&[("x.a", decl(2, &[], Some(0), None))]),
        Some("first_key"),
        "at least 1",
    );
    has(
        &errors(&[("x.a", decl(2, &[], Some(2), None))]),
        Some("first_key"),
        "past the fewest",
    );
    has(
        &errors(&[("x.a", decl(-2, &[], Some(2), None))]),
        Some("first_key"),
        "past the fewest",
    );
    has(
        &errors(&[("x.a", decl(4, &[], Some(2), Some(1)))]),
        Some("last_key"),
        "before first_key",
    );
    has(
        &errors(&[("x.a", decl(3, &[], Some(1), Some(3)))]),
        Some("last_key"),
        "past the fewest",
    );
    has(
        &errors(&[("x.a", decl(-2, &[], Some(1), Some(-2)))]),
        Some("last_key"),
        "counts back",
    );
    has(
        &errors(&[("x.a", decl(3, &[], Some(1), Some(0)))]),
        Some("last_key"),
        "command name",
    );
    has(
        &errors(&[(
            "x.a",
            Declaration {
                step: Some(0),
                ..decl(3, &[], Some(1), None)
            },
        )]),
        Some("step"),
        "at least 1",
    );
    has(
        &errors(&[(
            "x.a",
            Declaration {
                numkeys_index: Some(2),
                ..decl(-3, &[], Some(1), None)
            },
        )]),
        Some("numkeys_index"),
        "excludes first_key",
    );
    has(
        &errors(&[(
            "x.a",
            Declaration {
                numkeys_index: Some(2),
                ..decl(-3, &[], None, Some(3))
            },
        )]),
        Some("last_key"),
        "not numkeys_index",
    );
    has(
        &errors(&[(
            "x.a",
            Declaration {
                numkeys_index: Some(3),
                ..decl(-3, &[], None, None)
            },
        )]),
        Some("numkeys_index"),
        "past the fewest",
    );
    let twice = errors(&[
        ("x.a", decl(2, &[], Some(1), None)),
        ("X.A", decl(2, &[], Some(1), None)),
    ]);
    has(&twice, None, "declared twice");
    // Every problem at once, none lost.
    assert_eq!(
        errors(&[("x.a", decl(0, &["nope"], Some(0), None))]).len(),
        3
    );
    assert!(CustomCommands::build([("GET", &decl(2, &[], Some(1), None))]).is_err());
}

#[test]
fn declared_commands_never_shadow_the_table_and_count_as_other() {
    let custom: &'static CustomCommands = Box::leak(Box::new(build(&[(
        "X.GET",
        decl(2, &["readonly"], Some(1), None),
    )])));
    let mut cache = crate::command::LookupCache::with_custom(Some(custom));
    let (spec, index) = cache.lookup_counted(&["x.get", "k"]).unwrap();
    assert_eq!(spec.name, "X.GET");
    assert_eq!(index, crate::command::stat_index::OTHER);
    assert_eq!(
        crate::command::stat_index(Some(spec)),
        crate::command::stat_index::OTHER
    );
    // Again, from the cache, in another spelling.
    assert_eq!(
        cache.lookup_counted(&["X.get", "k"]).unwrap().0.name,
        "X.GET"
    );
    assert_eq!(cache.lookup_counted(&["GET", "k"]).unwrap().0.name, "get");
    assert!(cache.lookup_counted(&["x.nope", "k"]).is_none());
    // The plain lookup and a cache without declarations do not know it.
    assert!(lookup(&["x.get", "k"]).is_none());
    assert!(crate::command::LookupCache::default()
        .lookup_counted(&["x.get", "k"])
        .is_none());
}

#[test]
fn command_replies_include_declared_commands() {
    use crate::command::introspect::command_reply;
    let custom: &'static CustomCommands = Box::leak(Box::new(build(&[(
        "X.GET",
        decl(-2, &["readonly", "fast"], Some(1), None),
    )])));
    let reply = |args: &[&str], custom| {
        let mut out = bytes::BytesMut::new();
        command_reply(args, custom, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    };
    let count = crate::command::table::COMMAND_COUNT;
    assert_eq!(reply(&["command", "count"], None), format!(":{count}\r\n"));
    assert_eq!(
        reply(&["command", "count"], Some(custom)),
        format!(":{}\r\n", count + 1)
    );
    let info = reply(&["command", "info", "X.GET", "nosuch"], Some(custom));
    assert!(
        info.starts_with(
            "*2\r\n*10\r\n$5\r\nX.GET\r\n:-2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
             *2\r\n+@read\r\n+@fast\r\n*0\r\n*1\r\n"
        ),
        "{info:?}"
    );
    assert!(info.ends_with("*0\r\n$-1\r\n"), "{info:?}");
    assert_eq!(reply(&["command", "info", "x.get"], None), "*1\r\n$-1\r\n");
    assert_eq!(
        reply(&["command", "getkeys", "x.get", "k", "more"], Some(custom)),
        "*1\r\n$1\r\nk\r\n"
    );
    let list = reply(
        &["command", "list", "filterby", "pattern", "x.*"],
        Some(custom),
    );
    assert_eq!(list, "*1\r\n$5\r\nX.GET\r\n");
    let docs = reply(&["command", "docs", "x.get"], Some(custom));
    assert!(docs.contains("$5\r\ngroup\r\n$6\r\nmodule\r\n"), "{docs:?}");
    let all = reply(&["command"], Some(custom));
    assert!(
        all.starts_with(&format!("*{}\r\n", count + 1)),
        "{}",
        &all[..20]
    );
}
