//! Key-less admin commands the proxy answers about itself, with real clients against real
//! redis-servers (pool mode): ROLE and REPLICAOF NO ONE (a standalone master, as INFO says),
//! BGSAVE and MODULE LIST over every master, ACL about the `[auth]` users, CLIENT PAUSE /
//! UNPAUSE held in the proxy across workers, MONITOR of every client's commands (bounded by
//! the pub/sub output limit), CONFIG SET of the proxy's own slow log.

use crate::common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{lines, q, start_pools, Raw};
use redis::Value;
use slotgate::config::{Secret, UserConfig};

/// Fail the test instead of hanging: every test runs under this bound.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test finished within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_is_one_standalone_master() {
    let setup = start_pools(2, &[], |_| {});
    bounded(async {
        let c = &mut setup.client().await;
        let role: Value = q(c, &["ROLE"]).await.unwrap();
        assert_eq!(
            role,
            Value::Array(vec![
                Value::BulkString(b"master".to_vec()),
                Value::Int(0),
                Value::Array(vec![]),
            ])
        );
        let info: String = q(c, &["INFO", "replication"]).await.unwrap();
        assert!(info.contains("role:master\r\n"), "{info}");
        assert!(info.contains("connected_slaves:0\r\n"), "{info}");
        assert!(info.contains("master_repl_offset:0\r\n"), "{info}");
        let ok: String = q(c, &["REPLICAOF", "NO", "ONE"]).await.unwrap();
        assert_eq!(ok, "OK");
        let err = q::<String>(c, &["REPLICAOF", "127.0.0.1", "6379"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot replicate"), "{err}");

        // Every master saves its part; MODULE LIST is the masters' common answer.
        let saved: String = q(c, &["BGSAVE"]).await.unwrap();
        assert_eq!(saved, "Background saving started");
        for i in 0..2 {
            let node = setup.servers[i].addr().parse().unwrap();
            common::eventually(
                "the master's background save ran",
                Duration::from_secs(10),
                || async move {
                    let saves = common::info_value(node, "persistence", "rdb_saves");
                    common::check(saves, |s| s.as_deref().is_some_and(|s| s != "0"))
                },
            )
            .await;
        }
        let modules: Value = q(c, &["MODULE", "LIST"]).await.unwrap();
        assert_eq!(modules, Value::Array(vec![]));

        // Tracking is never on through the proxy, and says so.
        let redir: i64 = q(c, &["CLIENT", "GETREDIR"]).await.unwrap();
        assert_eq!(redir, -1);
        let tracking: Value = q(c, &["CLIENT", "TRACKINGINFO"]).await.unwrap();
        assert_eq!(
            tracking,
            Value::Array(vec![
                Value::BulkString(b"flags".to_vec()),
                Value::Array(vec![Value::BulkString(b"off".to_vec())]),
                Value::BulkString(b"redirect".to_vec()),
                Value::Int(-1),
                Value::BulkString(b"prefixes".to_vec()),
                Value::Array(vec![]),
            ])
        );
        let err = q::<()>(c, &["CLIENT", "TRACKING", "ON"]).await.unwrap_err();
        assert!(err.to_string().contains("CLIENT TRACKING is not supported"));
        let err = q::<()>(c, &["CLIENT", "REPLY", "OFF"]).await.unwrap_err();
        assert!(err
            .to_string()
            .contains("CLIENT REPLY OFF is not supported"));
        let ok: String = q(c, &["CLIENT", "REPLY", "ON"]).await.unwrap();
        assert_eq!(ok, "OK");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_describes_the_proxy_s_users() {
    let setup = start_pools(1, &[], |config| {
        config.auth.password = Some(Secret::new("topsecret"));
        config.auth.users = vec![
            UserConfig {
                name: "app".into(),
                password: Secret::new("app-pw"),
                commands: vec!["+@all".into(), "-@dangerous".into()],
                key_prefixes: vec!["app:".into()],
            },
            UserConfig {
                name: "reader".into(),
                password: Secret::new("read-pw"),
                commands: vec!["+@read".into(), "+@connection".into()],
                key_prefixes: vec![],
            },
        ];
    });
    let mut admin = Raw::connect(setup.addr());
    let mut app = Raw::connect(setup.addr());
    assert_eq!(
        lines(&mut admin, &["AUTH topsecret", "ACL WHOAMI"]),
        ["+OK\r\n", "$7\r\n"]
    );
    assert_eq!(admin.read_line(), "default\r\n");
    assert_eq!(
        lines(&mut app, &["AUTH app app-pw", "ACL WHOAMI"]),
        ["+OK\r\n", "$3\r\n"]
    );
    assert_eq!(app.read_line(), "app\r\n");

    let c = &mut redis::Client::open(format!("redis://:topsecret@{}/", setup.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let users: Vec<String> = q(c, &["ACL", "USERS"]).await.unwrap();
    assert_eq!(users, ["app", "default", "reader"]);
    let categories: Vec<String> = q(c, &["ACL", "CAT"]).await.unwrap();
    assert!(categories.contains(&"read".to_string()) && categories.len() == 21);
    let reads: Vec<String> = q(c, &["ACL", "CAT", "read"]).await.unwrap();
    assert!(reads.contains(&"get".to_string()) && !reads.contains(&"set".to_string()));
    let err = q::<()>(c, &["ACL", "CAT", "nosuch"]).await.unwrap_err();
    assert!(
        err.to_string().contains("Unknown category 'nosuch'"),
        "{err}"
    );
    let password: String = q(c, &["ACL", "GENPASS", "555"]).await.unwrap();
    assert_eq!(password.len(), 139);

    let dry = |args: &'static [&'static str]| {
        let mut words = vec!["ACL", "DRYRUN"];
        words.extend_from_slice(args);
        words
    };
    let run: String = q(c, &dry(&["app", "GET", "app:1"])).await.unwrap();
    assert_eq!(run, "OK");
    let denied: String = q(c, &dry(&["reader", "SET", "k", "v"])).await.unwrap();
    assert_eq!(
        denied,
        "This user has no permissions to run the 'set' command"
    );
    let denied: String = q(c, &dry(&["app", "GET", "other:1"])).await.unwrap();
    assert_eq!(
        denied,
        "This user has no permissions to access the 'other:1' key"
    );
    let err = q::<String>(c, &dry(&["nobody", "GET", "k"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("User 'nobody' not found"), "{err}");

    // The users are the configuration's: changing them at run time is refused.
    let err = q::<()>(c, &["ACL", "SETUSER", "x", "on"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("commands.allow_admin"), "{err}");
}

/// CLIENT PAUSE holds every client's commands in the proxy (no node is paused), on every
/// worker; WRITE holds only writes; UNPAUSE lets the held ones go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_holds_clients_in_the_proxy() {
    let setup = start_pools(2, &[], |_| {});
    bounded(async {
        let pauser = &mut setup.client().await;
        // Two more clients: at least one is on another worker than the pauser.
        let mut others = vec![setup.client().await, setup.client().await];
        let _: () = q(&mut others[0], &["SET", "p:k", "1"]).await.unwrap();

        let ok: String = q(pauser, &["CLIENT", "PAUSE", "400", "WRITE"])
            .await
            .unwrap();
        assert_eq!(ok, "OK");
        let started = Instant::now();
        for other in &mut others {
            let got: String = q(other, &["GET", "p:k"]).await.unwrap();
            assert_eq!(got, "1");
        }
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "reads are not held by a WRITE pause"
        );
        for other in &mut others {
            let _: () = q(other, &["SET", "p:k", "2"]).await.unwrap();
        }
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "writes waited for the pause: {:?}",
            started.elapsed()
        );

        let err = q::<()>(pauser, &["CLIENT", "PAUSE", "soon"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("timeout is not an integer"));
        let _: () = q(pauser, &["CLIENT", "PAUSE", "60000", "ALL"])
            .await
            .unwrap();
        let mut held = others.pop().unwrap();
        let get = tokio::spawn(async move { q::<String>(&mut held, &["GET", "p:k"]).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!get.is_finished(), "an ALL pause holds reads");
        // The pauser's UNPAUSE is not held; the held read goes on at once.
        let unpaused = Instant::now();
        let _: () = q(pauser, &["CLIENT", "UNPAUSE"]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), get)
            .await
            .expect("released by UNPAUSE")
            .unwrap()
            .unwrap();
        assert_eq!(got, "2");
        assert!(unpaused.elapsed() < Duration::from_secs(5));
        // The nodes were never paused.
        let direct = &mut setup.direct(0).await;
        let clients: String = q(direct, &["INFO", "clients"]).await.unwrap();
        assert!(clients.contains("paused_reason:none") || !clients.contains("paused_reason"));
    })
    .await;
}

/// Read monitor lines from `raw` until one contains `want`; the lines read.
fn monitor_until(raw: &mut Raw, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let line = raw.read_line();
        assert!(!line.is_empty(), "monitor closed; saw {seen:?}");
        let done = line.contains(want);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("no monitor line with {want:?} in {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_streams_every_client_s_commands() {
    let setup = start_pools(2, &[], |config| {
        config.proxy.pubsub_output_hard_limit_bytes = 64 * 1024;
        config.proxy.pubsub_output_soft_limit_bytes = 0;
    });
    bounded(async {
        let mut monitor = Raw::connect(setup.addr());
        monitor.send(b"MONITOR\r\n");
        assert_eq!(monitor.read_line(), "+OK\r\n");
        // Clients on both workers.
        let mut clients = [setup.client().await, setup.client().await];
        let mut addrs = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            let info: String = q(c, &["CLIENT", "INFO"]).await.unwrap();
            let addr = info
                .split(' ')
                .find_map(|f| f.strip_prefix("addr="))
                .unwrap()
                .to_string();
            let _: () = q(c, &["CONFIG", "GET", "maxmemory"])
                .await
                .map(|_: Value| ())
                .unwrap();
            let _: () = q(c, &["SET", &format!("mon:{i}"), "a \"b\"\n"])
                .await
                .unwrap();
            addrs.push(addr);
        }
        let seen = monitor_until(&mut monitor, "\"mon:1\"");
        for (i, addr) in addrs.iter().enumerate() {
            let line = seen
                .iter()
                .find(|l| l.contains(&format!("\"mon:{i}\"")))
                .unwrap_or_else(|| panic!("mon:{i} in {seen:?}"));
            let (time, rest) = line[1..].split_once(' ').unwrap();
            assert!(time.parse::<f64>().is_ok() && time.contains('.'), "{line}");
            assert_eq!(
                rest,
                format!("[0 {addr}] \"SET\" \"mon:{i}\" \"a \\\"b\\\"\\n\"\r\n"),
                "Redis' line format"
            );
        }
        assert!(
            !seen.iter().any(|l| l.contains("\"CONFIG\"")),
            "admin commands are not shown: {seen:?}"
        );

        // AUTH is shown with its arguments redacted.
        let mut raw = Raw::connect(setup.addr());
        raw.send(b"AUTH secret\r\n");
        assert!(raw.read_line().starts_with("-ERR"));
        let seen = monitor_until(&mut monitor, "\"AUTH\"");
        assert!(
            seen.last()
                .unwrap()
                .ends_with("\"AUTH\" \"(redacted)\"\r\n"),
            "{seen:?}"
        );

        // RESET ends monitoring.
        monitor.send(b"RESET\r\n");
        let _ = monitor_until(&mut monitor, "+RESET");
        let _: () = q(&mut clients[0], &["SET", "mon:after", "1"])
            .await
            .unwrap();
        monitor.send(b"PING\r\n");
        let seen = monitor_until(&mut monitor, "+PONG");
        assert!(
            !seen.iter().any(|l| l.contains("mon:after")),
            "no line after RESET: {seen:?}"
        );

        // A monitor that does not read is cut off at the pub/sub output limit.
        let mut silent = Raw::connect(setup.addr());
        silent.send(b"MONITOR\r\n");
        assert_eq!(silent.read_line(), "+OK\r\n");
        // More than the sockets' buffers hold, so the proxy's own output grows.
        let value = "x".repeat(1000);
        let mut pipe = redis::pipe();
        for _ in 0..8000 {
            pipe.cmd("SET").arg("mon:big").arg(&value).ignore();
        }
        let _: () = pipe.query_async(&mut clients[1]).await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        let closed = loop {
            use std::io::Read;
            match silent.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => total += n,
                Err(_) => break false,
            }
        };
        assert!(closed, "the monitor was not cut off ({total} bytes read)");
        assert!(
            total < 8000 * 1000,
            "cut off before it had everything: {total}"
        );
    })
    .await;
}

/// The proxy owns its slow log: CONFIG SET of its two settings changes the proxy's (for
/// clients already connected too), CONFIG GET answers them, the nodes keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_of_the_slow_log_is_the_proxy_s() {
    let setup = start_pools(2, &[], |config| {
        config.slowlog.log_slower_than_us = 1_000_000;
    });
    bounded(async {
        let c = &mut setup.client().await;
        let got: Vec<String> = q(c, &["CONFIG", "GET", "slowlog-log-slower-than"])
            .await
            .unwrap();
        assert_eq!(got, ["slowlog-log-slower-than", "1000000"]);
        let ok: String = q(c, &["CONFIG", "SET", "slowlog-log-slower-than", "0"])
            .await
            .unwrap();
        assert_eq!(ok, "OK");
        let _: () = q(c, &["SLOWLOG", "RESET"]).await.unwrap();
        let _: Option<String> = q(c, &["GET", "slow:k"]).await.unwrap();
        let log: Value = q(c, &["SLOWLOG", "GET"]).await.unwrap();
        let Value::Array(entries) = log else {
            panic!("{log:?}")
        };
        let commands: Vec<Value> = entries
            .iter()
            .map(|e| match e {
                Value::Array(fields) => fields[3].clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let get = Value::Array(vec![
            Value::BulkString(b"GET".to_vec()),
            Value::BulkString(b"slow:k".to_vec()),
        ]);
        assert!(commands.contains(&get), "{commands:?}");

        let ok: String = q(c, &["CONFIG", "SET", "slowlog-max-len", "1"])
            .await
            .unwrap();
        assert_eq!(ok, "OK");
        let len: i64 = q(c, &["SLOWLOG", "LEN"]).await.unwrap();
        assert!(len <= 1, "{len}");
        let got: Vec<String> = q(c, &["CONFIG", "GET", "slowlog-*"]).await.unwrap();
        assert!(
            got.windows(2).any(|w| w == ["slowlog-max-len", "1"])
                && got
                    .windows(2)
                    .any(|w| w == ["slowlog-log-slower-than", "0"]),
            "{got:?}"
        );
        // The nodes keep their own.
        let direct = &mut setup.direct(0).await;
        let node: Vec<String> = q(direct, &["CONFIG", "GET", "slowlog-max-len"])
            .await
            .unwrap();
        assert_eq!(node[1], "128");

        let err = q::<()>(c, &["CONFIG", "SET", "slowlog-max-len", "x"])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("possibly related to argument 'slowlog-max-len'"),
            "{err}"
        );
        let err = q::<()>(
            c,
            &["CONFIG", "SET", "slowlog-max-len", "5", "timeout", "1"],
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("CONFIG SET of their own"), "{err}");
        let err = q::<()>(c, &["CONFIG", "SET", "timeout", "1"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("commands.allow_admin"), "{err}");
    })
    .await;
}
