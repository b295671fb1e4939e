//! The admin HTTP listener against a real cluster: health, readiness, topology, config and
//! metrics checked after known traffic.

mod common;

use std::time::Duration;

use common::{http_get, http_json, with_admin};

/// The value of the unlabelled sample `name` (or `name{labels}` when `name` has them).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

/// The body of `/readyz` once it answers `status`: readiness follows the health checker,
/// which marks a node down after `health.failures` (3) failed checks, one per
/// `health.interval_ms` (1 s).
fn readyz_once(admin: std::net::SocketAddr, status: u16) -> String {
    common::eventually_blocking(
        &format!("/readyz answering {status}"),
        Duration::from_secs(10),
        || match http_get(admin, "/readyz") {
            (now, body) if now == status => Ok(body),
            other => Err(other),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_report_the_live_proxy() {
    let mut setup = common::start_with(Default::default(), with_admin);
    let admin = setup.proxy.admin_addr().expect("admin listener is on");

    assert_eq!(http_get(admin, "/healthz"), (200, "ok\n".into()));
    let (status, body) = http_get(admin, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("ready: 16384 slots covered by 3 masters"),
        "{body}"
    );
    assert_eq!(http_get(admin, "/nope").0, 404);

    // Known traffic: 200 SETs and 1 GET through the proxy on one connection.
    let mut client = setup.client().await;
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("admin:{i}"))
            .arg(i)
            .query_async(&mut client)
            .await
            .unwrap();
    }
    let v: i64 = redis::cmd("GET")
        .arg("admin:7")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(v, 7);

    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        sample(&metrics, "slotgate_commands_total") >= 201.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "slotgate_client_connections") >= 1.0,
        "{metrics}"
    );
    assert!(sample(&metrics, "slotgate_client_connections_total") >= 1.0);
    assert!(
        sample(&metrics, "slotgate_request_duration_seconds_count") >= 201.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "slotgate_request_duration_seconds_bucket{le=\"+Inf\"}"
        ) >= 201.0
    );
    let version = setup.proxy.topology().table().version();
    assert_eq!(
        sample(&metrics, "slotgate_slot_table_version"),
        version as f64
    );
    assert_eq!(sample(&metrics, "slotgate_slots_covered"), 16384.0);
    assert!(sample(&metrics, "slotgate_topology_refreshes_total") >= 1.0);
    assert_eq!(
        sample(&metrics, "slotgate_redirects_total{kind=\"moved\"}"),
        0.0
    );
    assert!(metrics.contains("# TYPE slotgate_request_duration_seconds histogram"));

    // Topology: every master with its role; health arrives within a probe tick.
    let masters = setup.cluster.master_ports();
    let topo = common::eventually(
        "every master healthy in /topology",
        Duration::from_secs(5),
        async || {
            let topo = http_json(admin, "/topology");
            let healthy = |port: &u16| {
                let addr = format!("127.0.0.1:{port}");
                let mut nodes = topo["nodes"].as_array().into_iter().flatten();
                nodes.any(|n| n["address"] == addr.as_str() && n["healthy"] == true)
            };
            let all = masters.iter().all(healthy);
            common::check(topo, |_| all)
        },
    )
    .await;
    assert_eq!(topo["version"], version);
    assert_eq!(topo["covered_slots"], 16384);
    assert_eq!(topo["complete"], true);
    let nodes = topo["nodes"].as_array().unwrap();
    // Replicas appear once a refresh has seen them attached; masters are there from the start.
    assert!(nodes.len() >= 3, "{topo}");
    for port in &masters {
        let addr = format!("127.0.0.1:{port}");
        let node = nodes
            .iter()
            .find(|n| n["address"] == addr.as_str())
            .unwrap_or_else(|| panic!("{addr} missing from {topo}"));
        assert_eq!(node["role"], "master");
        assert_eq!(node["healthy"], true, "{node}");
        // admin:0..199 spread over every master.
        assert!(node["requests_total"].as_u64().unwrap() > 0, "{node}");
        assert!(node["qps"].is_number(), "{node}");
    }
    let written: u64 = nodes
        .iter()
        .map(|n| n["requests_total"].as_u64().unwrap())
        .sum();
    assert!(written >= 201, "requests written to the nodes: {written}");
    assert!(nodes
        .iter()
        .filter(|n| n["role"] == "replica")
        .all(|n| n["master"].is_string()));
    let slots: u64 = topo["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["last"].as_u64().unwrap() - r["first"].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(slots, 16384);
    let owner = setup.cluster.port_of_slot(0).unwrap();
    assert_eq!(topo["slots"][0]["first"], 0);
    assert_eq!(
        topo["slots"][0]["master"],
        format!("127.0.0.1:{owner}").as_str()
    );

    // Config: the effective values, as JSON.
    let config = http_json(admin, "/config");
    assert_eq!(config["admin"]["listen"], "127.0.0.1:0");
    assert_eq!(
        config["cluster"]["seeds"],
        serde_json::json!(setup.cluster.seeds())
    );
    assert_eq!(config["proxy"]["workers"], 2);

    // Stats: the dashboard's feed.
    let stats = http_json(admin, "/stats");
    assert!(stats["commands_total"].as_u64().unwrap() >= 201, "{stats}");
    assert_eq!(stats["table_version"], version);

    // A master that stops answering makes the proxy not ready (before any failover).
    let index = common::node_index(&setup.cluster, masters[0]);
    setup.cluster.kill(index).unwrap();
    let body = readyz_once(admin, 503);
    assert!(
        body.contains(&format!("127.0.0.1:{}", masters[0])),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_every_slot_has_a_master() {
    // A cluster node that serves only half the slots: the proxy starts (full coverage not
    // required) but must not be ready.
    let node = common::lone_cluster_node(0, 8191).await;
    let mut config = common::proxy_config(vec![node.addr().to_string()]);
    config.cluster.require_full_coverage = false;
    with_admin(&mut config);
    let proxy = slotgate::Proxy::start(config).unwrap();
    let admin = proxy.admin_addr().unwrap();
    let (status, body) = http_get(admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("covers 8192 of 16384 slots (first uncovered: 8192)"),
        "{body}"
    );
    assert_eq!(
        http_get(admin, "/healthz").0,
        200,
        "alive even when not ready"
    );
    let topo = http_json(admin, "/topology");
    assert_eq!(topo["complete"], false);
    assert_eq!(topo["covered_slots"], 8192);
}

/// Ketama placement routes by server, not by slot: a table with every server present is
/// complete, so the proxy is ready (and `/topology` says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ketama_pools_are_ready_when_every_server_has_a_pool() {
    let setup = common::start_pools(3, &[], |config| {
        config.placement.distribution = slotgate::config::Distribution::Ketama;
        with_admin(config);
    });
    let admin = setup.proxy.admin_addr().unwrap();
    let (status, body) = http_get(admin, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 ketama servers covered"), "{body}");
    assert_eq!(http_json(admin, "/topology")["complete"], true);
    // A pool master that stops answering makes it not ready, as in slot placement.
    let mut setup = setup;
    setup.servers[1].kill().unwrap();
    let body = readyz_once(admin, 503);
    assert!(body.contains("master(s) unreachable"), "{body}");
}
