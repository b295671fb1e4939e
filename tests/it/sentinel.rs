//! Sentinel: a pool whose master is named by Redis Sentinel. Real processes: a standalone
//! master and its replica, three sentinels (quorum 2) watching them, slotgate with the pool
//! on Sentinel. The master is SIGKILLed; slotgate must follow the promotion (writes succeed
//! again within a bounded time) and the data written before (and replicated: `WAIT`) must
//! be readable on the new master.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{pool_config, redis_cli, replicas_of, standalone_servers};
use redis::AsyncCommands;
use slotgate::config::PoolConfig;
use slotgate::local_redis::{SentinelOptions, SentinelServer};
use slotgate::Proxy;

const NAME: &str = "m";

fn sock(addr: &str) -> SocketAddr {
    addr.parse().expect("address")
}

/// Wait until every sentinel knows the replica and the other sentinels: only then can they
/// agree on a failover.
fn wait_sentinels_ready(sentinels: &[SentinelServer]) {
    let ready = |s: &SentinelServer| {
        let replicas = redis_cli(sock(&s.addr()), &["SENTINEL", "replicas", NAME]);
        let peers = redis_cli(sock(&s.addr()), &["SENTINEL", "sentinels", NAME]);
        let peer_count = peers.lines().filter(|l| *l == "runid").count();
        !replicas.is_empty() && peer_count >= sentinels.len() - 1
    };
    let what = "every sentinel sees its peers and the replica";
    common::eventually_blocking(what, Duration::from_secs(20), || {
        let waiting: Vec<String> = sentinels
            .iter()
            .filter(|s| !ready(s))
            .map(|s| s.addr())
            .collect();
        common::check(waiting, |w| w.is_empty())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_sentinel_failover() {
    let mut servers = standalone_servers(1);
    let replicas = replicas_of(&servers[0], 1);
    let options = SentinelOptions {
        master_name: NAME.into(),
        master: servers[0].addr(),
        quorum: 2,
        down_after_ms: 1000,
        failover_timeout_ms: 3000,
        password: None,
    };
    let sentinels: Vec<SentinelServer> = (0..3)
        .map(|_| SentinelServer::start(&options).expect("start a sentinel"))
        .collect();
    wait_sentinels_ready(&sentinels);

    // The pool names sentinels and a master name, no master.
    let mut config = pool_config(&[], &[]);
    config.pools.insert(
        "p0".into(),
        PoolConfig {
            sentinels: sentinels.iter().map(SentinelServer::addr).collect(),
            master_name: Some(NAME.into()),
            ..PoolConfig::default()
        },
    );
    config.health.interval_ms = 200;
    config.health.failures = 2;
    let proxy = Proxy::start(config).expect("start slotgate on Sentinel");
    let paddr = proxy.local_addr();
    let master_line = || common::info_value(paddr, "proxy", "master0").unwrap_or_default();
    assert_eq!(master_line(), servers[0].addr(), "resolved at start");

    let mut c = common::client(paddr).await;
    for i in 0..100 {
        let _: () = c
            .set(format!("k{i}"), i)
            .await
            .expect("SET before failover");
    }
    // Replication is asynchronous: only writes the replica has are promised to survive.
    let acked = common::wait_replicated(sock(&servers[0].addr()), 1, "sync").await;
    assert_eq!(acked, 1);

    let killed_at = Instant::now();
    servers[0].kill().expect("SIGKILL the master");

    // Writes fail while no master is known, then succeed once slotgate follows the switch.
    let mut c = common::client(paddr).await;
    let what = "writes resumed after the failover";
    common::eventually(what, Duration::from_secs(30), async || {
        c.set::<_, _, ()>("after", "failover").await
    })
    .await;
    let took = killed_at.elapsed();
    eprintln!("writes resumed {took:?} after the master was killed");
    assert_eq!(master_line(), replicas[0].addr(), "the promoted replica");
    for i in 0..100 {
        let v: i64 = c.get(format!("k{i}")).await.expect("GET after failover");
        assert_eq!(v, i);
    }
    let direct: String = common::client(sock(&replicas[0].addr()))
        .await
        .get("after")
        .await
        .expect("GET on the new master");
    assert_eq!(direct, "failover");
}
