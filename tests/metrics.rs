//! `/metrics` after known traffic through a real cluster: per-command counters exactly,
//! per-node backend counters summing to the requests routed, histogram counts, bytes and
//! connection gauges.

mod common;

use std::time::Duration;

use common::{http_get, with_admin, Raw};

/// RESP array for `args`.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// The value of sample `key` (`name` or `name{labels}`), if present.
fn sample(metrics: &str, key: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (k, v) = line.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok())?
    })
}

fn must(metrics: &str, key: &str) -> f64 {
    sample(metrics, key).unwrap_or_else(|| panic!("no sample {key} in:\n{metrics}"))
}

/// Sum of `name{node="…"}` over the given node addresses.
fn per_node_sum(metrics: &str, name: &str, nodes: &[String]) -> f64 {
    nodes
        .iter()
        .filter_map(|n| sample(metrics, &format!("{name}{{node=\"{n}\"}}")))
        .sum()
}

#[test]
fn metrics_count_known_traffic_exactly() {
    let setup = common::start_with(Default::default(), with_admin);
    let admin = setup.proxy.admin_addr().expect("admin listener is on");
    let mut raw = Raw::connect(setup.addr());
    // Counted in a Cell: the byte check below runs while `send` is still in use.
    let bytes_sent = std::cell::Cell::new(0usize);
    let send = |raw: &mut Raw, args: &[&str]| {
        let bytes = resp(args);
        bytes_sent.set(bytes_sent.get() + bytes.len());
        raw.send(&bytes);
    };

    // Known traffic, one request at a time: 100 SET, 50 GET, 3 unknown commands, and one
    // error reply from a node (LPUSH on a string key).
    for i in 0..100 {
        send(&mut raw, &["SET", &format!("metrics:{i}"), "v"]);
        assert_eq!(raw.read_line(), "+OK\r\n");
    }
    for i in 0..50 {
        send(&mut raw, &["GET", &format!("metrics:{i}")]);
        assert_eq!(raw.read_line(), "$1\r\n");
        assert_eq!(raw.read_line(), "v\r\n");
    }
    for name in ["NOSUCH1", "nosuch2", "NoSuch3"] {
        send(&mut raw, &[name, "x"]);
        assert!(raw.read_line().starts_with("-ERR unknown command"));
    }
    send(&mut raw, &["LPUSH", "metrics:0", "x"]);
    assert!(raw.read_line().starts_with("-WRONGTYPE"));

    // Replies are counted just after they are written: poll until the histogram caught up.
    let what = "154 requests in the latency histogram";
    let metrics = common::eventually_blocking(what, Duration::from_secs(5), || {
        let (status, metrics) = http_get(admin, "/metrics");
        assert_eq!(status, 200);
        let count = sample(&metrics, "slotgate_request_duration_seconds_count");
        common::check(metrics, |_| count == Some(154.0))
    });

    // By command: exact.
    let requests = |c: &str| {
        must(
            &metrics,
            &format!("slotgate_command_requests_total{{command=\"{c}\"}}"),
        )
    };
    let errors = |c: &str| {
        must(
            &metrics,
            &format!("slotgate_command_errors_total{{command=\"{c}\"}}"),
        )
    };
    assert_eq!(requests("set"), 100.0, "{metrics}");
    assert_eq!(errors("set"), 0.0);
    assert_eq!(requests("get"), 50.0);
    assert_eq!(errors("get"), 0.0);
    assert_eq!(requests("other"), 3.0);
    assert_eq!(errors("other"), 3.0);
    assert_eq!(requests("lpush"), 1.0);
    assert_eq!(errors("lpush"), 1.0);
    assert_eq!(must(&metrics, "slotgate_commands_total"), 154.0);
    assert!(sample(
        &metrics,
        "slotgate_command_requests_total{command=\"hset\"}"
    )
    .is_none());

    // By node: the 151 routed requests and one error reply. A freshly made cluster may still
    // bounce a request (MOVED, TRYAGAIN …) that the proxy then sends again: each resend is
    // one more request written, and a bounce one more error reply from a node.
    let nodes: Vec<String> = setup
        .cluster
        .nodes()
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let redirects: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("slotgate_redirects_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    let retried = must(&metrics, "slotgate_requests_retried_total");
    let sent = per_node_sum(&metrics, "slotgate_backend_requests_total", &nodes);
    let node_errors = per_node_sum(&metrics, "slotgate_backend_errors_total", &nodes);
    if redirects == 0.0 && retried == 0.0 {
        assert_eq!(sent, 151.0, "{metrics}");
        assert_eq!(node_errors, 1.0, "{metrics}");
    } else {
        assert!(
            sent >= 151.0 && sent <= 151.0 + redirects + retried,
            "{metrics}"
        );
        assert!(node_errors >= 1.0, "{metrics}");
    }
    let masters_used = setup
        .cluster
        .master_ports()
        .iter()
        .filter(|p| {
            let key = format!("slotgate_backend_requests_total{{node=\"127.0.0.1:{p}\"}}");
            sample(&metrics, &key).is_some_and(|n| n > 0.0)
        })
        .count();
    assert_eq!(masters_used, 3, "100 keys reach every master");

    // Histograms: one proxy observation per reply, one backend observation per routed reply.
    assert_eq!(
        must(&metrics, "slotgate_request_duration_seconds_count"),
        154.0
    );
    assert_eq!(
        must(
            &metrics,
            "slotgate_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        154.0
    );
    // ASKING (sent before an ASK resend) has a reply, so a round trip, but is no request.
    let asking = sample(&metrics, "slotgate_redirects_total{kind=\"ask\"}").unwrap_or(0.0);
    assert_eq!(
        must(&metrics, "slotgate_backend_round_trip_seconds_count"),
        sent + asking,
        "{metrics}"
    );
    assert!(must(&metrics, "slotgate_backend_round_trip_seconds_sum") > 0.0);
    assert!(metrics.contains("# TYPE slotgate_backend_round_trip_seconds histogram"));
    // Buckets 32 µs … ~1 s, cumulative and never decreasing.
    let buckets: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("slotgate_backend_round_trip_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 17, "{metrics}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    assert!(metrics.contains("slotgate_request_duration_seconds_bucket{le=\"0.000032\"}"));
    assert!(metrics.contains("slotgate_request_duration_seconds_bucket{le=\"1.048576\"}"));

    // Bytes: at least what was sent, and replies went back; the backends saw traffic too.
    assert!(must(&metrics, "slotgate_client_bytes_received_total") >= bytes_sent.get() as f64);
    assert!(must(&metrics, "slotgate_client_bytes_sent_total") >= (100 * 5 + 50 * 11) as f64);
    assert!(must(&metrics, "slotgate_backend_bytes_sent_total") > 0.0);
    assert!(must(&metrics, "slotgate_backend_bytes_received_total") > 0.0);

    // Connections: this client's worker holds one pipelined connection per master.
    assert!(
        must(
            &metrics,
            "slotgate_backend_connections{state=\"connected\"}"
        ) >= 3.0
    );
    assert_eq!(
        must(&metrics, "slotgate_backend_connections{state=\"down\"}"),
        0.0
    );
    assert!(sample(
        &metrics,
        "slotgate_backend_connections{state=\"connecting\"}"
    )
    .is_some());
    assert_eq!(must(&metrics, "slotgate_client_connections"), 1.0);
    assert_eq!(must(&metrics, "slotgate_auth_failures_total"), 0.0);

    // One family per name, every sample under its family's `# TYPE` line: the proxy's own
    // values and the recorder's macro-counted ones (the slot table version is both) are
    // rendered once, the same way.
    let mut family: Option<&str> = None;
    let mut families = Vec::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!families.contains(&name), "two {name} families:\n{metrics}");
            families.push(name);
            family = Some(name);
        } else if !line.is_empty() && !line.starts_with('#') {
            let name = family.unwrap_or_else(|| panic!("{line} before any family"));
            assert!(line.starts_with(name), "{line} is not in family {name}");
        }
    }
    assert!(
        families.contains(&"slotgate_slot_table_version"),
        "{metrics}"
    );

    // A master dies: the worker's connection to it is lost, reconnecting is refused, and the
    // connection shows as down (in back-off) while requests for it are held.
    let mut setup = setup;
    let victim = setup.cluster.master_ports()[0];
    let key = common::key_on(&setup.cluster, victim, "metrics:down");
    let index = common::node_index(&setup.cluster, victim);
    setup.cluster.kill(index).unwrap();
    let what = "a backend connection down in /metrics";
    let metrics = common::eventually_blocking(what, Duration::from_secs(5), || {
        // Each GET (reply not awaited: it is held) makes the worker try the node again.
        send(&mut raw, &["GET", &key]);
        let (_, metrics) = http_get(admin, "/metrics");
        let down = sample(&metrics, "slotgate_backend_connections{state=\"down\"}");
        common::check(metrics, |_| down.is_some_and(|n| n >= 1.0))
    });
    assert!(
        must(&metrics, "slotgate_backend_connections{state=\"down\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("slotgate_backend_failures_total{kind="),
        "{metrics}"
    );
}
