//! The proxy's own operator commands, checked with real clients against real redis-servers
//! (pool mode): SLOWLOG (Redis' reply shape, parsed by the `redis` crate; admin `/slowlog`
//! with the node), CLIENT LIST / INFO / KILL across workers, and hot keys (`INFO hotkeys`,
//! admin `/hotkeys`).

use crate::common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{http_get, q, start_pools, with_admin, PoolSetup, Raw};
use redis::Value;
use slotgate::slot::Slot;

/// Fail the test instead of hanging: every test runs under this bound.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test finished within 60 s");
}

/// A Lua loop long enough (tens of ms on any machine) to be a slow command.
const BUSY: &str = "local i = 0 while i < 8000000 do i = i + 1 end return 1";

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

/// `field=value` of a CLIENT LIST / INFO line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// The master (pool) serving `key` with the default even split over two pools.
fn node_of(setup: &PoolSetup, key: &str) -> String {
    let i = usize::from(Slot::of(key.as_bytes()).get() >= 8192);
    setup.servers[i].addr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_records_a_slow_script_in_redis_shape() {
    let setup = start_pools(2, &[], |c| {
        with_admin(c);
        c.slowlog.log_slower_than_us = 20_000;
    });
    bounded(async {
        let c = &mut setup.client().await;
        let _: () = q(c, &["CLIENT", "SETNAME", "slowpoke"]).await.unwrap();
        let info: String = q(c, &["CLIENT", "INFO"]).await.unwrap();
        let addr = field(&info, "addr").to_string();
        let _: () = q(c, &["SET", "fast", "1"]).await.unwrap();
        let started = Instant::now();
        let _: i64 = q(c, &["EVAL", BUSY, "1", "slow:key"]).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(20),
            "the script was not slow: {took:?}"
        );

        let len: i64 = q(c, &["SLOWLOG", "LEN"]).await.unwrap();
        assert!(len >= 1, "SLOWLOG LEN {len}");
        let got: Value = q(c, &["SLOWLOG", "GET"]).await.unwrap();
        let entries = items(&got);
        let entry = entries
            .iter()
            .map(items)
            .find(|e| e.len() == 6 && items(&e[3]).first().map(text).as_deref() == Some("EVAL"))
            .unwrap_or_else(|| panic!("no EVAL entry in {got:?}"));
        assert!(int(&entry[0]) >= 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (now - int(&entry[1])).abs() <= 5,
            "unix time {:?}",
            entry[1]
        );
        assert!(int(&entry[2]) >= 20_000, "duration {:?} µs", entry[2]);
        assert!(int(&entry[2]) <= took.as_micros() as i64 + 1_000);
        let argv: Vec<String> = items(&entry[3]).iter().map(text).collect();
        assert_eq!(argv, ["EVAL", BUSY, "1", "slow:key"]);
        assert_eq!(text(&entry[4]), addr);
        assert_eq!(text(&entry[5]), "slowpoke");
        assert!(
            !entries
                .iter()
                .map(items)
                .any(|e| text(&items(&e[3])[0]) == "SET"),
            "a fast SET was logged: {got:?}"
        );

        // The admin view carries the node that served it.
        let admin = setup.proxy.admin_addr().unwrap();
        let (status, body) = http_get(admin, "/slowlog");
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["log_slower_than_us"], 20_000);
        let eval = json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["argv"][0] == "EVAL")
            .unwrap_or_else(|| panic!("no EVAL in {body}"));
        assert_eq!(eval["node"], node_of(&setup, "slow:key"));
        assert_eq!(eval["client_name"], "slowpoke");

        let ok: String = q(c, &["SLOWLOG", "RESET"]).await.unwrap();
        assert_eq!(ok, "OK");
        let len: i64 = q(c, &["SLOWLOG", "LEN"]).await.unwrap();
        assert_eq!(len, 0);
        let got: Value = q(c, &["SLOWLOG", "GET", "-1"]).await.unwrap();
        assert!(items(&got).is_empty(), "{got:?}");
        let err = q::<Value>(c, &["SLOWLOG", "GET", "-2"]).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("count should be greater than or equal to -1"),
            "{err}"
        );
        let help: Vec<String> = q(c, &["SLOWLOG", "HELP"]).await.unwrap();
        assert!(help[0].starts_with("SLOWLOG <subcommand>"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_times_each_reply_to_its_arrival_not_to_the_slow_one_before_it() {
    let setup = start_pools(2, &[], |c| c.slowlog.log_slower_than_us = 20_000);
    bounded(async {
        let c = &mut setup.client().await;
        let other = (0..)
            .map(|i| format!("fast:{i}"))
            .find(|k| node_of(&setup, k) != node_of(&setup, "slow:key"))
            .unwrap();
        // One pipeline: the SET is answered by the other pool at once, but its reply leaves
        // after the slow EVAL's, as replies keep request order.
        let started = Instant::now();
        let (_, ()): (i64, ()) = redis::pipe()
            .cmd("EVAL")
            .arg(BUSY)
            .arg(1)
            .arg("slow:key")
            .cmd("SET")
            .arg(&other)
            .arg(1)
            .query_async(c)
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        let got: Value = q(c, &["SLOWLOG", "GET", "-1"]).await.unwrap();
        let names: Vec<String> = items(&got)
            .iter()
            .map(|e| text(&items(&items(e)[3])[0]))
            .collect();
        assert_eq!(names, ["EVAL"], "the SET was not slow: {got:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_at_zero_logs_everything_and_truncates_like_redis() {
    let setup = start_pools(2, &[], |c| {
        c.slowlog.log_slower_than_us = 0;
        c.slowlog.max_len = 5;
    });
    bounded(async {
        let c = &mut setup.client().await;
        let mut push = redis::cmd("RPUSH");
        push.arg("list:trunc").arg("x".repeat(200));
        for i in 0..38 {
            push.arg(i);
        }
        let _: i64 = push.query_async(c).await.unwrap();
        let got: Value = q(c, &["SLOWLOG", "GET", "1"]).await.unwrap();
        let entries = items(&got);
        assert_eq!(entries.len(), 1);
        let argv: Vec<String> = items(&items(&entries[0])[3]).iter().map(text).collect();
        assert_eq!(argv.len(), 32, "{argv:?}");
        assert_eq!(argv[0], "RPUSH");
        assert_eq!(argv[2], format!("{}... (72 more bytes)", "x".repeat(128)));
        assert_eq!(argv[30], "27");
        assert_eq!(argv[31], "... (10 more arguments)");
        for i in 0..10 {
            let _: () = q(c, &["SET", &format!("k{i}"), "v"]).await.unwrap();
        }
        let len: i64 = q(c, &["SLOWLOG", "LEN"]).await.unwrap();
        assert_eq!(len, 5, "bounded by slowlog.max_len");
        let got: Value = q(c, &["SLOWLOG", "GET", "-1"]).await.unwrap();
        let ids: Vec<i64> = items(&got).iter().map(|e| int(&items(e)[0])).collect();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

        // Clients are dealt to the two workers in turn: the next one logs on the other
        // worker's ring, and GET merges both, newest first.
        let other = &mut setup.client().await;
        let _: () = q(other, &["SET", "from:other", "1"]).await.unwrap();
        let _: () = q(c, &["SET", "from:first", "1"]).await.unwrap();
        let got: Value = q(c, &["SLOWLOG", "GET", "2"]).await.unwrap();
        let keys: Vec<String> = items(&got)
            .iter()
            .map(|e| text(&items(&items(e)[3])[1]))
            .collect();
        assert_eq!(keys, ["from:first", "from:other"]);
        let addrs: Vec<String> = items(&got).iter().map(|e| text(&items(e)[4])).collect();
        assert_ne!(addrs[0], addrs[1], "two clients: {addrs:?}");

        // A request split over both pools is logged once, whole, when its last part is in.
        assert_ne!(node_of(&setup, "a"), node_of(&setup, "b"));
        let _: Vec<Option<String>> = q(c, &["MGET", "a", "b", "a"]).await.unwrap();
        let got: Value = q(c, &["SLOWLOG", "GET", "1"]).await.unwrap();
        let argv: Vec<String> = items(&items(&items(&got)[0])[3]).iter().map(text).collect();
        assert_eq!(argv, ["MGET", "a", "b", "a"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_negative_threshold_logs_nothing() {
    let setup = start_pools(1, &[], |c| c.slowlog.log_slower_than_us = -1);
    bounded(async {
        let c = &mut setup.client().await;
        let _: i64 = q(c, &["EVAL", BUSY, "0"]).await.unwrap();
        let len: i64 = q(c, &["SLOWLOG", "LEN"]).await.unwrap();
        assert_eq!(len, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_shows_every_client_with_name_and_last_command() {
    let setup = start_pools(2, &[], |_| {});
    bounded(async {
        // Two workers: the two clients may well live on different ones.
        let a = &mut setup.client().await;
        let b = &mut setup.client().await;
        let _: () = q(a, &["CLIENT", "SETNAME", "alpha"]).await.unwrap();
        let _: () = q(a, &["SET", "list:key", "1"]).await.unwrap();
        let _: () = q(b, &["CLIENT", "SETNAME", "beta"]).await.unwrap();
        let a_id: i64 = q(a, &["CLIENT", "ID"]).await.unwrap();
        let _: Option<String> = q(a, &["GET", "list:key"]).await.unwrap();
        let list: String = q(b, &["CLIENT", "LIST"]).await.unwrap();
        let lines: Vec<&str> = list.lines().collect();
        let alpha = lines
            .iter()
            .find(|l| field(l, "name") == "alpha")
            .unwrap_or_else(|| panic!("no alpha in {list}"));
        let beta = lines
            .iter()
            .find(|l| field(l, "name") == "beta")
            .unwrap_or_else(|| panic!("no beta in {list}"));
        assert!(
            alpha.starts_with(&format!("id={a_id} addr=127.0.0.1:")),
            "{alpha}"
        );
        assert_eq!(field(alpha, "cmd"), "get");
        assert_eq!(field(beta, "cmd"), "client|list");
        assert_eq!(field(alpha, "laddr"), setup.addr().to_string());
        assert_eq!(field(alpha, "flags"), "N");
        assert_eq!(field(alpha, "db"), "0");
        assert_eq!(field(alpha, "user"), "default");
        assert!(field(alpha, "fd").parse::<i64>().unwrap() > 0);

        let only: String = q(b, &["CLIENT", "LIST", "ID", &a_id.to_string()])
            .await
            .unwrap();
        assert_eq!(only.lines().count(), 1, "{only}");
        assert_eq!(field(only.trim_end(), "name"), "alpha");
        let none: String = q(b, &["CLIENT", "LIST", "TYPE", "replica"]).await.unwrap();
        assert_eq!(none, "");
        let info: String = q(a, &["CLIENT", "INFO"]).await.unwrap();
        assert_eq!(field(info.trim_end(), "cmd"), "client|info");
        assert_eq!(field(info.trim_end(), "id"), a_id.to_string());
        // Accepted for client libraries.
        let _: () = q(a, &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"])
            .await
            .unwrap();
        let _: () = q(a, &["CLIENT", "NO-EVICT", "on"]).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_closes_the_target_and_keeps_the_killer() {
    let setup = start_pools(2, &[], |_| {});
    bounded(async {
        let addr = setup.addr();
        let killer = &mut setup.client().await;
        let killer_id: i64 = q(killer, &["CLIENT", "ID"]).await.unwrap();
        // The victims are idle raw connections: the kill must close them without their help.
        let mut victim = Raw::connect(addr);
        let victim_line = common::lines(&mut victim, &["CLIENT ID"]).remove(0);
        let victim_id: i64 = victim_line.trim().trim_start_matches(':').parse().unwrap();

        let killed: i64 = q(killer, &["CLIENT", "KILL", "ID", &victim_id.to_string()])
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let started = Instant::now();
        assert!(victim.is_closed(), "the victim's next read gets EOF");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed promptly"
        );
        let pong: String = q(killer, &["PING"]).await.unwrap();
        assert_eq!(pong, "PONG", "the killer stays");
        let gone: i64 = q(killer, &["CLIENT", "KILL", "ID", &victim_id.to_string()])
            .await
            .unwrap();
        assert_eq!(gone, 0);

        // Old form by address.
        let mut second = Raw::connect(addr);
        let info = common::lines(&mut second, &["CLIENT INFO"]).remove(0);
        assert!(info.starts_with('$'), "{info}");
        let second_addr = second.stream.local_addr().unwrap().to_string();
        let ok: String = q(killer, &["CLIENT", "KILL", &second_addr]).await.unwrap();
        assert_eq!(ok, "OK");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut second.stream, &mut rest);
        assert!(second.is_closed());
        let err = q::<String>(killer, &["CLIENT", "KILL", "10.9.9.9:1"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("No such client"), "{err}");

        // SKIPME yes (the default) spares the caller; SKIPME no closes it after the reply.
        let spared: i64 = q(killer, &["CLIENT", "KILL", "ID", &killer_id.to_string()])
            .await
            .unwrap();
        assert_eq!(spared, 0);
        let mut me = Raw::connect(addr);
        let my_id = common::lines(&mut me, &["CLIENT ID"]).remove(0);
        let my_id = my_id.trim().trim_start_matches(':');
        let reply = common::lines(&mut me, &[&format!("CLIENT KILL ID {my_id} SKIPME no")]);
        assert_eq!(reply, [":1\r\n"]);
        assert!(me.is_closed());
        let err = q::<i64>(killer, &["CLIENT", "KILL", "ID", "abc"])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("client-id should be greater than 0"),
            "{err}"
        );
        let pong: String = q(killer, &["PING"]).await.unwrap();
        assert_eq!(pong, "PONG");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_put_the_hammered_key_first() {
    let setup = start_pools(2, &[], |c| {
        with_admin(c);
        c.hotkeys.enabled = true;
        c.hotkeys.sample_rate = 2;
        c.hotkeys.top = 5;
        c.hotkeys.interval_ms = 300;
    });
    bounded(async {
        let c = &mut setup.client().await;
        let what = "hot:one the hottest key in INFO hotkeys";
        let info = common::eventually(what, Duration::from_secs(20), async || {
            let mut pipe = redis::pipe();
            for i in 0..400 {
                pipe.cmd("GET").arg("hot:one").ignore();
                if i % 4 == 0 {
                    pipe.cmd("GET").arg(format!("cold:{i}")).ignore();
                }
            }
            let _: () = pipe.query_async(c).await.unwrap();
            let info: String = q(c, &["INFO", "hotkeys"]).await.unwrap();
            common::check(info, |info| info.contains("hotkey_0:key=hot:one,"))
        })
        .await;
        assert!(
            info.contains("# Hotkeys\r\nhotkeys_enabled:1\r\n"),
            "{info}"
        );
        let line = info
            .lines()
            .find(|l| l.starts_with("hotkey_0:"))
            .unwrap_or_else(|| panic!("no hot key in {info}"));
        let slot = Slot::of(b"hot:one").get();
        assert!(line.starts_with("hotkey_0:key=hot:one,count="), "{line}");
        assert!(
            line.ends_with(&format!(",slot={slot},node={}", node_of(&setup, "hot:one"))),
            "{line}"
        );
        let default_info: String = q(c, &["INFO"]).await.unwrap();
        assert!(default_info.contains("# Hotkeys"), "on: in plain INFO");

        let admin = setup.proxy.admin_addr().unwrap();
        let (status, body) = http_get(admin, "/hotkeys");
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["enabled"], true);
        assert_eq!(json["keys"][0]["key"], "hot:one", "{body}");
        assert_eq!(json["keys"][0]["slot"], slot);
        assert!(json["keys"][0]["count"].as_u64().unwrap() > 0);
        assert!(json["keys"].as_array().unwrap().len() <= 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_off_by_default_stay_out_of_info() {
    let setup = start_pools(1, &[], with_admin);
    bounded(async {
        let c = &mut setup.client().await;
        let info: String = q(c, &["INFO"]).await.unwrap();
        assert!(!info.contains("# Hotkeys"), "{info}");
        let info: String = q(c, &["INFO", "hotkeys"]).await.unwrap();
        assert_eq!(info.trim_end(), "# Hotkeys\r\nhotkeys_enabled:0");
        let (_, body) = http_get(setup.proxy.admin_addr().unwrap(), "/hotkeys");
        assert!(body.contains("\"enabled\":false"), "{body}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_flags_and_kill_of_blocked_and_subscribed_clients() {
    let setup = start_pools(2, &[], |_| {});
    bounded(async {
        let addr = setup.addr();
        let admin = &mut setup.client().await;
        let id_of = |raw: &mut Raw| -> String {
            let line = common::lines(raw, &["CLIENT ID"]).remove(0);
            line.trim().trim_start_matches(':').to_string()
        };
        let line_of = |list: &str, id: &str| -> String {
            list.lines()
                .find(|l| field(l, "id") == id)
                .unwrap_or_else(|| panic!("no client {id} in {list}"))
                .to_string()
        };
        let list_until = |id: String, want: &'static str| {
            let mut c = admin.clone();
            async move {
                let what = format!("{want} in CLIENT LIST for client {id}");
                common::eventually(&what, Duration::from_secs(5), async || {
                    let list: String = q(&mut c, &["CLIENT", "LIST"]).await.unwrap();
                    common::check(line_of(&list, &id), |line| line.contains(want))
                })
                .await
            }
        };

        let mut subscriber = Raw::connect(addr);
        let sub_id = id_of(&mut subscriber);
        subscriber.send(b"SUBSCRIBE ch1\r\nPSUBSCRIBE p*\r\n");
        let _ = subscriber.read_exactly(10); // the first confirmation started
        let sub_line = list_until(sub_id.clone(), "psub=1").await;
        assert_eq!(field(&sub_line, "flags"), "P", "{sub_line}");
        assert_eq!(field(&sub_line, "sub"), "1", "{sub_line}");
        assert_eq!(field(&sub_line, "psub"), "1", "{sub_line}");

        let mut tx = Raw::connect(addr);
        let tx_id = id_of(&mut tx);
        let queued = common::lines(&mut tx, &["MULTI", "SET tx:a 1"]);
        assert_eq!(queued, ["+OK\r\n", "+QUEUED\r\n"]);
        let tx_line = list_until(tx_id.clone(), "multi=1").await;
        assert_eq!(field(&tx_line, "flags"), "x", "{tx_line}");
        assert_eq!(field(&tx_line, "multi"), "1", "{tx_line}");

        // HELLO names the client and switches its protocol.
        let mut resp3 = Raw::connect(addr);
        let resp3_id = id_of(&mut resp3);
        resp3.send(b"HELLO 3 SETNAME gamma\r\n");
        let hello = resp3.read_line();
        assert!(hello.starts_with('%'), "{hello}");
        let resp3_line = list_until(resp3_id, "resp=3").await;
        assert_eq!(field(&resp3_line, "name"), "gamma", "{resp3_line}");
        assert_eq!(field(&resp3_line, "resp"), "3", "{resp3_line}");
        assert_eq!(field(&resp3_line, "cmd"), "hello", "{resp3_line}");

        let mut blocked = Raw::connect(addr);
        let blocked_id = id_of(&mut blocked);
        blocked.send(b"BLPOP kill:list 0\r\n");
        let blocked_line = list_until(blocked_id.clone(), "cmd=blpop").await;
        assert_eq!(field(&blocked_line, "cmd"), "blpop", "{blocked_line}");

        // A client blocked in BLPOP is closed at once, and so is a subscriber (by TYPE).
        let killed: i64 = q(admin, &["CLIENT", "KILL", "ID", &blocked_id])
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let started = Instant::now();
        assert!(blocked.is_closed(), "the blocked client is closed");
        assert!(started.elapsed() < Duration::from_secs(2));
        let killed: i64 = q(admin, &["CLIENT", "KILL", "TYPE", "pubsub"])
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut subscriber.stream, &mut rest);
        assert!(subscriber.is_closed());
        let list: String = q(admin, &["CLIENT", "LIST"]).await.unwrap();
        assert!(list
            .lines()
            .all(|l| field(l, "id") != sub_id && field(l, "id") != blocked_id));
        assert!(list.lines().any(|l| field(l, "id") == tx_id), "{list}");
        // The node released the blocked connection: a push is not taken by a ghost BLPOP.
        let _: i64 = q(admin, &["RPUSH", "kill:list", "x"]).await.unwrap();
        let len: i64 = q(admin, &["LLEN", "kill:list"]).await.unwrap();
        assert_eq!(len, 1);
    })
    .await;
}
