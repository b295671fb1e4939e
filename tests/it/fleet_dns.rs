//! A fleet found through one DNS name (`fleet.peers_dns`), as a Kubernetes headless Service
//! gives it: the name has one A record per instance (127.0.0.5x in `/etc/hosts`, where each
//! instance's admin listener is bound at the same port), is resolved again before every round
//! of checks, and each address is checked as a peer.
//!
//! - instances appear as the name's records do, each instance recognises its own address
//!   among them (it is listed once), and one record removed takes that instance out of the
//!   others' view (its own view still has everyone it finds);
//! - a name that stops resolving keeps the instances it gave last, and is followed again once
//!   it resolves;
//! - a name that never resolves is one log line and a retry: the instance serves, alone.
//!
//! Editing `/etc/hosts` needs root: without it the test that needs it says SKIPPED
//! (`common::hosts`).

use crate::common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::hosts::Hosts;
use slotgate::local_redis::{free_port, RedisServer};
use slotgate::{Proxy, ProxyHandle};

use crate::fleet_view::slots_at;

/// The fleet's name.
const NAME: &str = "slotgate-test-fleet";
/// Where each instance's admin listener is bound (and what the name's records say).
const IPS: [&str; 3] = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];

/// One instance: where clients reach it (its announce address) and its proxy.
struct Instance {
    client: SocketAddr,
    proxy: ProxyHandle,
}

/// A port free on every one of `IPS` (the admin listeners share it, as pods do).
fn port_free_on_every_ip() -> u16 {
    loop {
        let port = free_port(false).expect("a free port");
        if IPS
            .iter()
            .all(|ip| TcpListener::bind(format!("{ip}:{port}")).is_ok())
        {
            return port;
        }
    }
}

/// Three instances in pool mode in front of `server`, each with its admin listener on
/// `IPS[i]:admin_port` and `fleet.peers_dns = NAME:admin_port`, checked every 100 ms.
fn start_fleet(server: &RedisServer, admin_port: u16) -> Vec<Instance> {
    IPS.iter()
        .map(|ip| {
            let client = SocketAddr::from(([127, 0, 0, 1], free_port(false).unwrap()));
            let mut config = common::pool_config(std::slice::from_ref(server), &[]);
            config.proxy.workers = 1;
            config.proxy.listen = client.to_string();
            config.proxy.announce = client.to_string();
            config.admin.listen = format!("{ip}:{admin_port}");
            config.fleet.peers_dns = format!("{NAME}:{admin_port}");
            config.fleet.check_interval_ms = 100;
            config.fleet.check_timeout_ms = 300;
            config.fleet.failures = 2;
            Instance {
                client,
                proxy: Proxy::start(config).expect("start slotgate"),
            }
        })
        .collect()
}

/// The client addresses (sorted) `of`'s CLUSTER SLOTS and `/fleet` list: both must agree,
/// cover every slot, and mark exactly one instance as itself (no address counted twice).
async fn listed(of: &Instance) -> Result<Vec<u16>, String> {
    let slots = slots_at(of.client).await?;
    let mut ports: Vec<u16> = slots.iter().map(|s| s.2).collect();
    ports.sort_unstable();
    let view = common::http_json(of.proxy.admin_addr().unwrap(), "/fleet");
    let instances = view["instances"].as_array().cloned().unwrap_or_default();
    let myself = instances.iter().filter(|i| i["myself"] == true).count();
    let mut shown: Vec<u16> = instances
        .iter()
        .filter_map(|i| i["announce"].as_str()?.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .collect();
    shown.sort_unstable();
    let covered = slots.first().map(|s| s.0) == Some(0)
        && slots.last().map(|s| s.1) == Some(16383)
        && slots.windows(2).all(|w| w[0].1 + 1 == w[1].0);
    if shown != ports || myself != 1 || !covered {
        return Err(format!("CLUSTER SLOTS {slots:?}, /fleet {view}"));
    }
    Ok(ports)
}

/// Wait until `of` lists exactly the instances `want` (indexes into `fleet`).
async fn wait_listed(fleet: &[Instance], of: usize, want: &[usize]) {
    let mut ports: Vec<u16> = want.iter().map(|i| fleet[*i].client.port()).collect();
    ports.sort_unstable();
    let what = format!("instance {of} lists instances {want:?}");
    common::eventually(&what, Duration::from_secs(5), async || {
        common::check(listed(&fleet[of]).await?, |got| *got == ports)
            .map_err(|got| format!("{got:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_found_by_dns_follows_the_names_records() {
    let Some(mut hosts) = Hosts::open("fleet by DNS name") else {
        return;
    };
    let servers = common::standalone_servers(1);
    let admin_port = port_free_on_every_ip();
    // The name has no record yet: each instance is alone, and looks again every round.
    let fleet = start_fleet(&servers[0], admin_port);
    for i in 0..3 {
        wait_listed(&fleet, i, &[i]).await;
    }

    // Three records: every instance finds the other two, and itself once.
    hosts.set_all(NAME, &IPS);
    for i in 0..3 {
        wait_listed(&fleet, i, &[0, 1, 2]).await;
    }
    let mut c = common::client(fleet[0].client).await;
    let nodes: String = common::q(&mut c, &["CLUSTER", "NODES"]).await.unwrap();
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    assert_eq!(nodes.matches("myself").count(), 1, "{nodes}");

    // Instance 2's record goes: it leaves the others' view at their next look; it still
    // finds them, so its own view has all three.
    hosts.set_all(NAME, &IPS[..2]);
    for i in 0..2 {
        wait_listed(&fleet, i, &[0, 1]).await;
    }
    assert_eq!(listed(&fleet[2]).await.unwrap().len(), 3);

    // The name stops resolving: the instances it gave last are still checked, so nobody
    // leaves. (Several rounds pass.)
    hosts.set_all(NAME, &[]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..2 {
        wait_listed(&fleet, i, &[0, 1]).await;
    }

    // It resolves again, to other records: followed.
    hosts.set_all(NAME, &[IPS[0], IPS[2]]);
    wait_listed(&fleet, 0, &[0, 2]).await;
    wait_listed(&fleet, 2, &[0, 2]).await;
    // Instance 1, not among the records, still finds the two that are.
    wait_listed(&fleet, 1, &[0, 1, 2]).await;
    drop(fleet);
}

#[test]
fn a_fleet_name_that_does_not_resolve_is_one_log_line_and_the_instance_serves_alone() {
    let servers = common::standalone_servers(1);
    let listen = format!("127.0.0.1:{}", free_port(false).unwrap());
    let master = servers[0].addr();
    // `.invalid` never resolves (RFC 6761).
    let (child, addr, log) = common::binary::spawn_slotgate_on(
        &listen,
        &["--workers", "1", "--admin-listen", "127.0.0.1:0"],
        &[
            ("SLOTGATE_POOLS__A__MASTER", master.as_str()),
            ("SLOTGATE_PROXY__ANNOUNCE", listen.as_str()),
            (
                "SLOTGATE_FLEET__PEERS_DNS",
                "slotgate-test-fleet.invalid:9180",
            ),
            ("SLOTGATE_FLEET__CHECK_INTERVAL_MS", "50"),
        ],
    );
    let mut child = common::binary::KillOnDrop(child);
    log.wait_for("fleet.peers_dns does not resolve", Duration::from_secs(5));
    // Twelve rounds later: still one line about it, and the instance serves, alone.
    std::thread::sleep(Duration::from_millis(600));
    let lines = log.matching("fleet.peers_dns");
    assert_eq!(lines.len(), 1, "{:#?}", log.snapshot());
    assert!(
        lines[0].contains("slotgate-test-fleet.invalid:9180"),
        "{}",
        lines[0]
    );
    assert_eq!(common::redis_cli(addr, &["SET", "k", "v"]).trim(), "OK");
    let slots = common::redis_cli(addr, &["CLUSTER", "SLOTS"]);
    assert!(slots.contains(&addr.port().to_string()), "{slots}");
    assert_eq!(
        common::redis_cli(addr, &["CLUSTER", "NODES"])
            .lines()
            .count(),
        1
    );
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
}
