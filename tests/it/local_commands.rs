//! Commands the proxy answers itself, checked with real clients.

use crate::common;

use common::Raw;
use redis::Value;

async fn q(c: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query_async(c).await
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_introspection_commands() {
    let setup = common::start();
    let c = &mut setup.client().await;

    assert_eq!(text(&q(c, &["PING"]).await.unwrap()), "PONG");
    assert_eq!(text(&q(c, &["PING", "hi"]).await.unwrap()), "hi");
    // More than one argument: Redis' arity error, not the first argument echoed.
    let err = q(c, &["PING", "x", "y", "z"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong number of arguments for 'ping' command"),
        "{err}"
    );
    assert_eq!(text(&q(c, &["ECHO", "x y"]).await.unwrap()), "x y");
    assert_eq!(text(&q(c, &["SELECT", "0"]).await.unwrap()), "OK");
    let err = q(c, &["SELECT", "1"]).await.unwrap_err().to_string();
    assert!(err.contains("DB index is out of range"), "{err}");

    assert_eq!(
        text(&q(c, &["CLIENT", "SETNAME", "tester"]).await.unwrap()),
        "OK"
    );
    assert_eq!(text(&q(c, &["CLIENT", "GETNAME"]).await.unwrap()), "tester");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(c).await.unwrap();
    assert!(id > 0);
    let info = text(&q(c, &["CLIENT", "INFO"]).await.unwrap());
    assert!(
        info.starts_with(&format!("id={id} ")) && info.contains("name=tester"),
        "{info}"
    );
    let err = q(c, &["CLIENT", "SETNAME", "has space"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Client names cannot contain spaces"), "{err}");

    let count: i64 = redis::cmd("COMMAND")
        .arg("COUNT")
        .query_async(c)
        .await
        .unwrap();
    assert!(count > 200, "COMMAND COUNT = {count}");
    let get_info = q(c, &["COMMAND", "INFO", "get"]).await.unwrap();
    assert!(format!("{get_info:?}").contains("get"), "{get_info:?}");
    let docs = q(c, &["COMMAND", "DOCS", "set"]).await.unwrap();
    assert!(format!("{docs:?}").contains("summary"), "{docs:?}");

    let time = q(c, &["TIME"]).await.unwrap();
    let Value::Array(parts) = time else {
        panic!("TIME: {time:?}")
    };
    let secs: u64 = text(&parts[0]).parse().unwrap();
    assert!(secs > 1_700_000_000);

    let info = text(&q(c, &["INFO"]).await.unwrap());
    for field in [
        "# Server",
        "# Clients",
        "# Proxy",
        "proxy_workers:2",
        "backend_masters:3",
        "slots_covered:16384",
        // What client libraries read: one standalone master.
        "redis_mode:standalone",
        "role:master",
        "cluster_enabled:0",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    // Redis' traffic counters in INFO stats count this client's bytes both ways.
    let stats = text(&q(c, &["INFO", "stats"]).await.unwrap());
    let field = |name: &str| -> u64 {
        let prefix = format!("{name}:");
        let line = stats.lines().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("INFO stats lacks {name}:\n{stats}"));
        line[prefix.len()..].trim().parse().unwrap()
    };
    assert!(field("total_net_input_bytes") > 0, "{stats}");
    assert!(field("total_net_output_bytes") > 0, "{stats}");
    assert_eq!(field("rejected_connections"), 0, "{stats}");
    field("instantaneous_ops_per_sec");
    let only_proxy = text(&q(c, &["INFO", "proxy"]).await.unwrap());
    assert!(only_proxy.starts_with("# Proxy") && !only_proxy.contains("# Server"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_quit_and_refusals_over_raw_resp() {
    let setup = common::start();
    let mut raw = Raw::connect(setup.addr());
    raw.send(b"HELLO 4\r\n");
    assert_eq!(raw.read_line(), "-NOPROTO unsupported protocol version\r\n");
    // HELLO's reply is one well-formed frame (8 fields), and the next reply follows it.
    raw.send(b"HELLO 2 SETNAME app\r\nPING\r\n");
    let mut got = Vec::new();
    while !got.ends_with(b"+PONG\r\n") {
        let line = raw.read_line();
        assert!(!line.is_empty(), "connection closed");
        got.extend_from_slice(line.as_bytes());
    }
    let hello = &got[..got.len() - b"+PONG\r\n".len()];
    match redis::parse_redis_value(hello).expect("HELLO reply parses") {
        redis::Value::Array(fields) => {
            assert_eq!(fields.len(), 16);
            assert_eq!(fields[0], redis::Value::BulkString(b"server".to_vec()));
        }
        other => panic!("HELLO 2 answered {other:?}"),
    }
    raw.send(b"ASKING\r\n");
    // Past HELLO's reply, bounded: a line that never comes is an empty read, not a hang.
    let mut line = raw.read_line();
    for _ in 0..100 {
        if line.starts_with('-') || line.is_empty() {
            break;
        }
        line = raw.read_line();
    }
    assert!(
        line.contains("'ASKING'") && line.contains("no key"),
        "{line}"
    );
    raw.send(b"NOSUCHCMD a b\r\n");
    assert_eq!(
        raw.read_line(),
        "-ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' \r\n"
    );
    raw.send(b"GET\r\n");
    assert_eq!(
        raw.read_line(),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    raw.send(b"QUIT\r\nPING\r\n");
    assert_eq!(raw.read_line(), "+OK\r\n");
    assert!(
        raw.is_closed(),
        "QUIT closes the connection; later commands are not run"
    );
}

/// A client in Redis Cluster mode discovers slotgate as a one-node cluster owning every slot
/// and works through it; the proxy does the real routing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_clients_see_a_one_node_cluster() {
    let setup = common::start();
    let addr = setup.addr();
    let c = &mut setup.client().await;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("foo")
        .query_async(c)
        .await
        .unwrap();
    assert_eq!(slot, 12182);
    let nodes = text(&q(c, &["CLUSTER", "NODES"]).await.unwrap());
    assert!(
        nodes.contains(&format!("{addr}@0 myself,master")),
        "{nodes}"
    );

    let info = text(&q(c, &["CLUSTER", "INFO"]).await.unwrap());
    assert!(info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:1"));
    // SHARDS: one shard owning 0-16383 whose one node is the proxy, at the address dialled.
    let shards = q(c, &["CLUSTER", "SHARDS"]).await.unwrap();
    let Value::Array(shards) = shards else {
        panic!("CLUSTER SHARDS: {shards:?}")
    };
    assert_eq!(shards.len(), 1);
    let Value::Array(shard) = &shards[0] else {
        panic!("{shards:?}")
    };
    assert_eq!(text(&shard[0]), "slots");
    assert_eq!(
        shard[1],
        Value::Array(vec![Value::Int(0), Value::Int(16383)])
    );
    let Value::Array(nodes) = &shard[3] else {
        panic!("{shard:?}")
    };
    let Value::Array(node) = &nodes[0] else {
        panic!("{nodes:?}")
    };
    let field = |name: &str| {
        let at = node
            .iter()
            .position(|v| matches!(v, Value::BulkString(b) if b == name.as_bytes()));
        node[at.unwrap_or_else(|| panic!("no {name} in {node:?}")) + 1].clone()
    };
    assert_eq!(text(&field("ip")), addr.ip().to_string());
    assert_eq!(field("port"), Value::Int(i64::from(addr.port())));
    assert_eq!(text(&field("role")), "master");
    // Cluster-aware clients send READONLY/READWRITE: accepted.
    assert_eq!(text(&q(c, &["READONLY"]).await.unwrap()), "OK");
    assert_eq!(text(&q(c, &["READWRITE"]).await.unwrap()), "OK");

    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{addr}/")]).unwrap();
    let mut cluster = client
        .get_async_connection()
        .await
        .expect("cluster-mode connect");
    for i in 0..100 {
        let key = format!("cm:{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut cluster)
            .await
            .unwrap();
        let got: i64 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut cluster)
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    // And redis-cli in cluster mode (-c).
    let out = std::process::Command::new("redis-cli")
        .args([
            "-c",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "GET",
            "cm:7",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
}
