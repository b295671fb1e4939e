//! Client authentication and per-user permissions: NOAUTH before AUTH, Redis' WRONGPASS (and a
//! counter), HELLO AUTH, users limited by command rules and key prefixes — with the backends
//! reached over the same shared connections whoever the client is.

use crate::common;

use common::lines;

use common::Raw;
use slotgate::config::{Secret, UserConfig};

fn users_config(config: &mut slotgate::config::Config) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_must_authenticate() {
    let setup = common::start_with(Default::default(), users_config);
    let mut raw = Raw::connect(setup.addr());
    let got = lines(
        &mut raw,
        &[
            "GET k",
            "PING",
            "AUTH wrong",
            "AUTH app nope",
            "AUTH topsecret",
            "SET k 1",
            "GET k",
        ],
    );
    assert_eq!(
        got,
        [
            "-NOAUTH Authentication required.\r\n",
            "-NOAUTH Authentication required.\r\n",
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "$1\r\n",
        ]
    );
    assert_eq!(raw.read_line(), "1\r\n");
    // RESET logs out again.
    assert_eq!(
        lines(&mut raw, &["RESET", "GET k"]),
        ["+RESET\r\n", "-NOAUTH Authentication required.\r\n"]
    );

    // Before login a request is held to Redis' limits for strangers (10 arguments, 16 KiB
    // each), refused from its headers and the client closed; after AUTH they are lifted.
    let mut stranger = Raw::connect(setup.addr());
    stranger.send(b"*1\r\n$100000000\r\n");
    assert_eq!(
        stranger.read_line(),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(stranger.is_closed());
    let mut stranger = Raw::connect(setup.addr());
    stranger.send(b"*100\r\n");
    assert_eq!(
        stranger.read_line(),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(stranger.is_closed());
    let mut member = Raw::connect(setup.addr());
    let big = "v".repeat(20_000);
    let mut pipeline = b"*2\r\n$4\r\nAUTH\r\n$9\r\ntopsecret\r\n".to_vec();
    pipeline.extend_from_slice(
        format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$20000\r\n{big}\r\n").as_bytes(),
    );
    pipeline.extend_from_slice(b"STRLEN big\r\n");
    member.send(&pipeline);
    assert_eq!(member.read_line(), "+OK\r\n");
    assert_eq!(member.read_line(), "+OK\r\n");
    assert_eq!(member.read_line(), ":20000\r\n");

    // HELLO without AUTH is refused before login; with AUTH it logs in and switches protocol.
    let mut hello = Raw::connect(setup.addr());
    let line = lines(&mut hello, &["HELLO 3"]).remove(0);
    assert!(line.starts_with("-NOAUTH HELLO must be called"), "{line}");
    assert_eq!(
        lines(&mut hello, &["HELLO 3 AUTH default wrong"])[0],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        lines(&mut hello, &["HELLO 3 AUTH default topsecret"])[0],
        "%8\r\n"
    );

    // Wrong credentials are counted.
    let c = &mut common::client(setup.addr()).await;
    let _: () = redis::cmd("AUTH")
        .arg("topsecret")
        .query_async(c)
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("proxy")
        .query_async(c)
        .await
        .unwrap();
    assert!(info.contains("auth_failures:3\r\n"), "{info}");

    // The redis crate logs in from the URL, as applications do.
    let url = format!("redis://app:app-pw@{}/", setup.addr());
    let mut app = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("app:x")
        .arg(1)
        .query_async(&mut app)
        .await
        .unwrap();
}

/// Send one command and read its whole reply (a line, plus the data of a bulk string).
fn reply(raw: &mut Raw, command: &str) -> String {
    raw.send(format!("{command}\r\n").as_bytes());
    let mut out = raw.read_line();
    if out.starts_with('$') && !out.starts_with("$-1") {
        out.push_str(&raw.read_line());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_limited_to_their_commands_and_keys() {
    let setup = common::start_with(Default::default(), users_config);
    let mut app = Raw::connect(setup.addr());
    let no_key =
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
    for (command, want) in [
        ("AUTH app app-pw", "+OK\r\n"),
        ("SET app:1 v", "+OK\r\n"),
        ("GET app:1", "$1\r\nv\r\n"),
        ("GET other:1", no_key),
        ("MGET app:1 other:2", no_key),
        // A script could reach any key whatever keys it declares: refused for a user held to
        // key prefixes.
        (
            "EVAL \"return redis.call('GET','other:1')\" 0",
            "-NOPERM this user is limited to key prefixes, and the keys 'eval' touches cannot \
             be checked before it runs\r\n",
        ),
        (
            "EVALSHA 0123456789012345678901234567890123456789 1 app:1",
            "-NOPERM this user is limited to key prefixes, and the keys 'evalsha' touches \
             cannot be checked before it runs\r\n",
        ),
        (
            "FLUSHALL",
            "-NOPERM this user has no permissions to run the 'flushall' command\r\n",
        ),
        (
            "KEYS *",
            "-NOPERM this user has no permissions to run the 'keys' command\r\n",
        ),
        // A refused command inside MULTI aborts it, as in Redis.
        ("MULTI", "+OK\r\n"),
        ("SET app:2 x", "+QUEUED\r\n"),
        ("SET other x", no_key),
        (
            "EXEC",
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
        ),
        ("GET app:2", "$-1\r\n"),
    ] {
        assert_eq!(reply(&mut app, command), want, "{command}");
    }

    let mut reader = Raw::connect(setup.addr());
    for (command, want) in [
        ("AUTH reader read-pw", "+OK\r\n"),
        ("PING", "+PONG\r\n"),
        (
            "SET app:1 w",
            "-NOPERM this user has no permissions to run the 'set' command\r\n",
        ),
        ("EXISTS app:1", ":1\r\n"),
    ] {
        assert_eq!(reply(&mut reader, command), want, "{command}");
    }

    // The default user has no key prefixes: scripts run.
    let mut admin = Raw::connect(setup.addr());
    for (command, want) in [
        ("AUTH topsecret", "+OK\r\n"),
        (
            "EVAL \"return redis.call('GET',KEYS[1])\" 1 app:1",
            "$1\r\nv\r\n",
        ),
    ] {
        assert_eq!(reply(&mut admin, command), want, "{command}");
    }
}

#[test]
fn bad_auth_config_is_reported_with_paths() {
    let text = r#"
[cluster]
seeds = ["127.0.0.1:7000"]
[[auth.users]]
name = "x"
password = ""
commands = ["+@nosuch", "get"]
"#;
    let config = slotgate::config::Config::parse(text).unwrap();
    let errors = config.validate().unwrap_err().to_string();
    assert!(errors.contains("auth.users[0].password"), "{errors}");
    assert!(
        errors.contains("auth.users[0].commands[0]: unknown command category @nosuch"),
        "{errors}"
    );
    assert!(errors.contains("auth.users[0].commands[1]"), "{errors}");
}

/// SORT's BY / GET patterns name keys known only once the elements are read: a user held to
/// key prefixes may sort, but not with patterns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_patterns_are_denied_to_users_held_to_key_prefixes() {
    let setup = common::start_with(Default::default(), |config| {
        config.auth.users = vec![UserConfig {
            name: "app".into(),
            password: Secret::new("app-pw"),
            commands: vec!["+@all".into()],
            key_prefixes: vec!["app:".into()],
        }];
    });
    let mut app = Raw::connect(setup.addr());
    let no_key =
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
    for (command, want) in [
        ("AUTH app app-pw", "+OK\r\n"),
        ("RPUSH app:l 1", ":1\r\n"),
        ("SORT app:l BY app:w_*", no_key),
        ("SORT_RO app:l GET other:*", no_key),
        ("SORT app:l", "*1\r\n"),
    ] {
        assert_eq!(reply(&mut app, command), want, "{command}");
    }
}
