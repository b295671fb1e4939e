//! Graceful lifecycle: `ProxyHandle::drain` in process; SIGTERM to the real `slotgate`
//! binary during a pipelined load: no acknowledged write is lost and the process exits 0;
//! SIGINT drains too, and a second signal during the drain exits at once (status 1).

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::{exit_within, spawn_slotgate};
use common::{http_get, with_admin, Raw};
use slotgate::local_redis::{ClusterOptions, LocalCluster};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A Lua script that keeps its node busy for ~300 ms, then writes its key: a request that is
/// still in flight when the drain begins.
const SLOW_SCRIPT: &str = "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
    repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > 300000 \
    redis.call('SET', KEYS[1], 'done') return 1";

fn eval(key: &str) -> Vec<u8> {
    format!(
        "*4\r\n$4\r\nEVAL\r\n${}\r\n{SLOW_SCRIPT}\r\n$1\r\n1\r\n${}\r\n{key}\r\n",
        SLOW_SCRIPT.len(),
        key.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests_and_closes_every_client() {
    let setup = common::start_with(ClusterOptions::default(), with_admin);
    let addr = setup.addr();
    let admin = setup.proxy.admin_addr().unwrap();
    let mut idle = Raw::connect(addr);
    idle.send(b"PING\r\n");
    assert_eq!(idle.read_line(), "+PONG\r\n");
    let mut busy = Raw::connect(addr);
    busy.send(&eval("drain:slow"));
    // The EVAL is in flight once the proxy has read it: PING and EVAL, two commands.
    common::eventually("the EVAL dispatched", Duration::from_secs(5), async || {
        let stats = common::http_json(admin, "/stats");
        common::check(stats["commands_total"].clone(), |n| n.as_u64() >= Some(2))
    })
    .await;

    let report = tokio::task::block_in_place(|| setup.proxy.drain(Duration::from_secs(5)));
    assert_eq!(report.clients_at_start, 2, "{report:?}");
    assert_eq!(report.clients_left, 0, "{report:?}");
    assert!(!report.timed_out, "{report:?}");
    assert!(
        report.elapsed >= Duration::from_millis(150),
        "the drain waited for the slow script: {report:?}"
    );
    // The in-flight request was answered before its connection closed; the idle one closed.
    assert_eq!(busy.read_line(), ":1\r\n");
    assert!(busy.is_closed());
    assert!(idle.is_closed());
    // No new clients; readiness says why; liveness stays.
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener still open"
    );
    let (status, body) = http_get(admin, "/readyz");
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: draining (shutting down)\n")
    );
    assert_eq!(http_get(admin, "/healthz").0, 200);
    // The slow write really happened.
    let value = common::redis_cli(
        format!(
            "127.0.0.1:{}",
            setup
                .cluster
                .port_of_slot(slotgate::slot::Slot::of(b"drain:slow").get())
                .unwrap()
        )
        .parse()
        .unwrap(),
        &["GET", "drain:slow"],
    );
    assert_eq!(value, "done");
}

/// Keys acknowledged by the load, with their values.
type Acked = Vec<(String, String)>;

/// One client: pipelines of 32 `SET` with unique keys until the proxy closes the connection.
/// Returns every write acknowledged with `+OK`.
async fn pipelined_writer(addr: SocketAddr, task: usize, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Vec::new();
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return acked;
    };
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut n = 0u64;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<(String, String)> = (0..32)
            .map(|i| {
                (
                    format!("life:{task}:{}", n + i),
                    format!("v{task}-{}", n + i),
                )
            })
            .collect();
        n += 32;
        let mut out = Vec::new();
        for (k, v) in &batch {
            out.extend_from_slice(
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                    k.len(),
                    v.len()
                )
                .as_bytes(),
            );
        }
        if write.write_all(&out).await.is_err() {
            return acked;
        }
        for entry in batch {
            line.clear();
            match read.read_line(&mut line).await {
                Ok(0) | Err(_) => return acked,
                Ok(_) if line == "+OK\r\n" => acked.push(entry),
                Ok(_) => panic!("unexpected reply {line:?}"),
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_and_a_second_signal_exits_at_once() {
    let server = common::standalone_servers(1).remove(0);
    let master = server.addr();
    let (mut child, addr, log_reader) = spawn_slotgate(
        &["--workers", "1", "--drain-timeout-ms", "30000"],
        &[("SLOTGATE_POOLS__A__MASTER", master.as_str())],
    );
    let pid = child.id() as libc::pid_t;
    // A client blocked for good keeps the drain from finishing within its 30 s.
    let mut blocked = Raw::connect(addr);
    blocked.send(b"BLPOP never 0\r\n");
    common::wait_blocked(&[master.parse().unwrap()], 1).await;

    // SAFETY: kill(2) on the PID of the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert_eq!(
        exit_within(&mut child, Duration::from_millis(700)).await,
        None,
        "SIGINT must drain (up to proxy.drain_timeout_ms), not exit at once"
    );
    // New clients are not served while draining.
    assert!(
        std::net::TcpStream::connect(addr).is_err() || {
            let mut late = Raw::connect(addr);
            late.send(b"PING\r\n");
            late.read_line().is_empty()
        },
        "a client connecting during the drain was served"
    );
    let second = Instant::now();
    // SAFETY: as above; the child is still running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = exit_within(&mut child, Duration::from_secs(3)).await;
    let Some(status) = status else {
        let _ = child.kill();
        panic!("a second SIGINT did not end slotgate");
    };
    let log = log_reader.join();
    assert_eq!(status.code(), Some(1), "log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("SIGINT received: draining"))
            && log.iter().any(|l| l.contains("SIGINT received again")),
        "log:\n{}",
        log.join("\n")
    );
    println!(
        "exited {status:?} {:?} after the second SIGINT",
        second.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_pipelined_load_loses_no_acknowledged_write() {
    let cluster = LocalCluster::start(ClusterOptions::default()).unwrap();
    let seeds = cluster.seeds().join(",");
    let (mut child, addr, log_reader) = spawn_slotgate(
        &[
            "--workers",
            "2",
            "--log-format",
            "json",
            "--cluster",
            &seeds,
        ],
        &[],
    );
    let pid = child.id() as libc::pid_t;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|task| tokio::spawn(pipelined_writer(addr, task, Arc::clone(&stop))))
        .collect();
    // The load is under way: the cluster holds as many of its writes as it must make.
    let masters: Vec<SocketAddr> = cluster
        .master_ports()
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    common::eventually(
        "100 writes of the load in the cluster",
        Duration::from_secs(10),
        async || {
            let keys = common::dbsize_sum(&masters);
            common::check(keys, |&n| n >= 100)
        },
    )
    .await;
    // SAFETY: kill(2) on the PID of the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    // The proxy closes every client once its in-flight writes are answered.
    let started = Instant::now();
    let Some(status) = exit_within(&mut child, Duration::from_secs(15)).await else {
        let _ = child.kill();
        panic!("slotgate did not exit within 15 s of SIGTERM");
    };
    stop.store(true, Ordering::Relaxed); // Only matters if a writer never saw its connection close.
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let log = log_reader.join();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("drain finished") && l.starts_with('{')),
        "no JSON drain line in:\n{}",
        log.join("\n")
    );
    assert!(
        acked.len() >= 100,
        "the load made too little progress: {}",
        acked.len()
    );
    println!(
        "{} acknowledged writes; exited {status:?} {:?} after SIGTERM",
        acked.len(),
        started.elapsed()
    );

    // Every acknowledged write is in the cluster.
    let client = redis::cluster::ClusterClient::new(
        cluster
            .seeds()
            .iter()
            .map(|s| format!("redis://{s}/"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let direct = client.get_async_connection().await.unwrap();
    let checks: Vec<_> = acked
        .chunks(acked.len().div_ceil(8))
        .map(|chunk| {
            let (chunk, mut direct) = (chunk.to_vec(), direct.clone());
            tokio::spawn(async move {
                let mut missing = Vec::new();
                for (k, want) in chunk {
                    let got: Option<String> = redis::cmd("GET")
                        .arg(&k)
                        .query_async(&mut direct)
                        .await
                        .unwrap();
                    if got.as_deref() != Some(want.as_str()) {
                        missing.push(format!("{k}: want {want}, got {got:?}"));
                    }
                }
                missing
            })
        })
        .collect();
    let mut missing = Vec::new();
    for check in checks {
        missing.extend(check.await.unwrap());
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}
