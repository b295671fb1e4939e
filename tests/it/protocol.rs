//! Raw protocol handling: inline commands, malformed and oversized input, big values,
//! redis-cli. A bad client gets a precise error and is closed; nobody else notices.

use crate::common;

use common::Raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_work_like_telnet() {
    let setup = common::start();
    let mut raw = Raw::connect(setup.addr());
    raw.send(b"PING\r\n");
    assert_eq!(raw.read_line(), "+PONG\r\n");
    raw.send(b"SET inline-key \"two words\"\n");
    assert_eq!(raw.read_line(), "+OK\r\n");
    raw.send(b"GET inline-key\r\n");
    assert_eq!(raw.read_exactly(15), b"$9\r\ntwo words\r\n");
    // Pipelined RESP and inline mixed in one write.
    raw.send(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nECHO there\r\n");
    assert_eq!(raw.read_exactly(8 + 11), b"$2\r\nhi\r\n$5\r\nthere\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_protocol_error_and_only_that_client_is_closed() {
    let setup = common::start();
    let mut bystander = setup.client().await;
    let _: () = redis::cmd("SET")
        .arg("bystander")
        .arg("safe")
        .query_async(&mut bystander)
        .await
        .unwrap();

    let cases: &[(&[u8], &str)] = &[
        (
            b"*2\r\n$3\r\nGET\r\n:1\r\n",
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"SET a \"unterminated\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, want) in cases {
        let mut raw = Raw::connect(setup.addr());
        // A good command first: its reply still comes back before the error.
        raw.send(b"PING\r\n");
        raw.send(input);
        assert_eq!(raw.read_line(), "+PONG\r\n");
        assert_eq!(
            raw.read_line(),
            *want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(
            raw.is_closed(),
            "connection must be closed after a protocol error"
        );
    }

    let still: String = redis::cmd("GET")
        .arg("bystander")
        .query_async(&mut bystander)
        .await
        .unwrap();
    assert_eq!(still, "safe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_before_buffering() {
    let setup = common::start_with(Default::default(), |config| {
        config.protocol.max_bulk_len = 1024 * 1024;
        config.protocol.max_multibulk_len = 1000;
        config.protocol.max_inline_len = 4096;
    });
    let mut raw = Raw::connect(setup.addr());
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n");
    assert_eq!(
        raw.read_line(),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(raw.is_closed());

    let mut raw = Raw::connect(setup.addr());
    raw.send(b"*1001\r\n");
    assert_eq!(
        raw.read_line(),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert!(raw.is_closed());

    let mut raw = Raw::connect(setup.addr());
    raw.send(&vec![b'x'; 5000]);
    assert_eq!(
        raw.read_line(),
        "-ERR Protocol error: too big inline request\r\n"
    );
    assert!(raw.is_closed());

    // Within the limit, a large value goes through intact.
    let mut c = setup.client().await;
    let big = vec![7u8; 1024 * 1024];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query_async(&mut c)
        .await
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(back, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_is_a_plain_client_of_the_proxy() {
    let setup = common::start();
    let addr = setup.addr();
    assert_eq!(common::redis_cli(addr, &["PING"]), "PONG");
    assert_eq!(
        common::redis_cli(addr, &["SET", "cli-key", "cli-value"]),
        "OK"
    );
    assert_eq!(common::redis_cli(addr, &["GET", "cli-key"]), "cli-value");
    assert_eq!(common::redis_cli(addr, &["HSET", "cli-h", "f", "v"]), "1");
    assert_eq!(common::redis_cli(addr, &["HGET", "cli-h", "f"]), "v");
    // Piped commands (redis-cli reads stdin) across all nodes.
    let mut child = std::process::Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        for i in 0..200 {
            writeln!(stdin, "SET cli:{i} {i}").unwrap();
            writeln!(stdin, "GET cli:{i}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 400);
    for i in 0..200 {
        assert_eq!(lines[2 * i], "OK");
        assert_eq!(lines[2 * i + 1], i.to_string());
    }
    // A key-less command the proxy cannot serve says so, naming it.
    let keys = common::redis_cli(addr, &["SAVE"]);
    assert!(keys.contains("'SAVE'"), "{keys}");
}
