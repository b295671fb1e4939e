//! Ordering and concurrency: deep pipelines spanning every node, many clients at once.

use crate::common;

use std::collections::HashMap;

use redis::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_of_10000_mixed_commands_keeps_order() {
    let setup = common::start();
    let mut c = setup.client().await;

    let mut pipe = redis::pipe();
    let mut expected: Vec<Value> = Vec::with_capacity(10_000);
    let mut counters: HashMap<String, i64> = HashMap::new();
    for i in 0..2_500 {
        let key = format!("pipe:{i}");
        pipe.cmd("SET").arg(&key).arg(format!("value-{i}"));
        expected.push(Value::Okay);
        pipe.cmd("GET").arg(&key);
        expected.push(Value::BulkString(format!("value-{i}").into_bytes()));
        // A local command in the middle of forwarded ones must keep its place too.
        pipe.cmd("ECHO").arg(format!("echo-{i}"));
        expected.push(Value::BulkString(format!("echo-{i}").into_bytes()));
        let counter = format!("ctr:{}", i % 97);
        let n = counters.entry(counter.clone()).or_default();
        *n += 1;
        pipe.cmd("INCR").arg(&counter);
        expected.push(Value::Int(*n));
    }
    let replies: Vec<Value> = pipe.query_async(&mut c).await.expect("pipeline");
    assert_eq!(replies.len(), 10_000);
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i} out of order or wrong");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_clients() {
    let setup = common::start();
    let addr = setup.addr();
    let mut tasks = Vec::new();
    for client in 0..500 {
        tasks.push(tokio::spawn(async move {
            let mut c = common::client(addr).await;
            for round in 0..10 {
                let key = format!("client:{client}:{round}");
                let value = format!("{client}/{round}");
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let got: String = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!(got, value);
            }
            c
        }));
    }
    let mut connections = Vec::new();
    for t in tasks {
        connections.push(t.await.expect("client task"));
    }
    // All 500 are still connected at once, and the proxy counts them.
    let info = common::redis_cli(addr, &["INFO", "clients"]);
    let clients: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("connected_clients in INFO");
    assert!(clients >= 500, "INFO says {clients} clients");
    drop(connections);
}
