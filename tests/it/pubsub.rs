//! Pub/Sub through the proxy: channels, patterns and sharded channels on several masters,
//! Redis' exact confirmations and subscribed-mode rules, PUBSUB introspection, and
//! subscriptions that survive a failover of the node they live on.

use crate::common;

use common::q;

use std::time::Duration;

use common::Raw;
use redis::aio::MultiplexedConnection;
use slotgate::local_redis::{ClusterOptions, LocalCluster, Role};
use slotgate::{Proxy, ProxyHandle};

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn confirmation(word: &str, name: &str, count: usize) -> String {
    format!("*3\r\n{}{}:{count}\r\n", bulk(word), bulk(name))
}

fn message(channel: &str, payload: &str) -> String {
    format!(
        "*3\r\n{}{}{}",
        bulk("message"),
        bulk(channel),
        bulk(payload)
    )
}

/// A subscriber's raw connection, read byte-exactly (replies may arrive in one read).
struct Subscriber {
    raw: Raw,
    unread: Vec<u8>,
}

impl Subscriber {
    fn connect(addr: std::net::SocketAddr) -> Subscriber {
        Subscriber {
            raw: Raw::connect(addr),
            unread: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes);
    }

    /// The next `n` bytes (fewer if the read timeout passes first).
    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        while self.unread.len() < n {
            match std::io::Read::read(&mut self.raw.stream, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(got) => self.unread.extend_from_slice(&buf[..got]),
            }
        }
        let n = n.min(self.unread.len());
        self.unread.drain(..n).collect()
    }

    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let byte = self.take(1);
            if byte.is_empty() {
                break;
            }
            line.extend(byte);
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

/// The next replies on `sub` are exactly `want`.
fn expect(sub: &mut Subscriber, want: &str) {
    let got = sub.take(want.len());
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_patterns_across_masters() {
    let setup = common::start();
    let ports = setup.cluster.master_ports();
    // One channel on each master.
    let channels: Vec<String> = ports
        .iter()
        .map(|&p| common::key_on(&setup.cluster, p, "ch"))
        .collect();
    let mut sub = Subscriber::connect(setup.addr());
    sub.send(format!("SUBSCRIBE {}\r\n", channels.join(" ")).as_bytes());
    for (i, ch) in channels.iter().enumerate() {
        expect(&mut sub, &confirmation("subscribe", ch, i + 1));
    }
    sub.send(b"PSUBSCRIBE news.*\r\n");
    expect(&mut sub, &confirmation("psubscribe", "news.*", 4));

    let c = &mut setup.client().await;
    for ch in &channels {
        // The proxy subscribed the channel on its slot's master, where PUBLISH goes.
        let receivers: i64 = q(c, &["PUBLISH", ch, "hello"]).await.unwrap();
        assert_eq!(receivers, 1, "PUBLISH {ch}");
        expect(&mut sub, &message(ch, "hello"));
    }
    let _: i64 = q(c, &["PUBLISH", "news.today", "m"]).await.unwrap();
    expect(
        &mut sub,
        &format!(
            "*4\r\n{}{}{}{}",
            bulk("pmessage"),
            bulk("news.*"),
            bulk("news.today"),
            bulk("m")
        ),
    );

    // Exactly once each, in order.
    for i in 0..20 {
        let _: i64 = q(c, &["PUBLISH", &channels[1], &format!("m{i:02}")])
            .await
            .unwrap();
    }
    for i in 0..20 {
        expect(&mut sub, &message(&channels[1], &format!("m{i:02}")));
    }

    // Subscribed mode: only subscription commands, PING, QUIT and RESET.
    sub.send(b"GET x\r\nPING\r\nPING hi\r\n");
    assert_eq!(
        sub.read_line(),
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    expect(&mut sub, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    expect(&mut sub, "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");

    // PUBSUB introspection, merged over the masters.
    let mut listed: Vec<String> = q(c, &["PUBSUB", "CHANNELS", "ch*"]).await.unwrap();
    listed.sort();
    let mut want = channels.clone();
    want.sort();
    assert_eq!(listed, want);
    let numsub: Vec<(String, i64)> = q(c, &["PUBSUB", "NUMSUB", &channels[0], "nobody"])
        .await
        .unwrap();
    assert_eq!(numsub, [(channels[0].clone(), 1), ("nobody".into(), 0)]);
    assert_eq!(q::<i64>(c, &["PUBSUB", "NUMPAT"]).await.unwrap(), 1);

    // Unsubscribing counts down; a message to a dropped channel no longer arrives.
    sub.send(format!("UNSUBSCRIBE {}\r\n", channels[0]).as_bytes());
    expect(&mut sub, &confirmation("unsubscribe", &channels[0], 3));
    assert_eq!(
        q::<i64>(c, &["PUBLISH", &channels[0], "late"])
            .await
            .unwrap(),
        0
    );
    sub.send(b"UNSUBSCRIBE\r\n");
    let rest = String::from_utf8_lossy(&sub.take(
        confirmation("unsubscribe", &channels[1], 2).len()
            + confirmation("unsubscribe", &channels[2], 1).len(),
    ))
    .into_owned();
    assert!(rest.contains(&bulk(&channels[1])) && rest.contains(&bulk(&channels[2])));
    assert!(
        rest.contains(":2\r\n") && rest.ends_with(":1\r\n"),
        "{rest:?}"
    );
    sub.send(b"PUNSUBSCRIBE\r\n");
    expect(&mut sub, &confirmation("punsubscribe", "news.*", 0));
    // Out of subscribed mode: ordinary commands again.
    sub.send(b"SET after-sub 1\r\n");
    assert_eq!(sub.read_line(), "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_channels_and_reset() {
    let setup = common::start();
    let mut sub = Subscriber::connect(setup.addr());
    sub.send(b"SSUBSCRIBE {s}a {s}b\r\n");
    expect(&mut sub, &confirmation("ssubscribe", "{s}a", 1));
    expect(&mut sub, &confirmation("ssubscribe", "{s}b", 2));
    let c = &mut setup.client().await;
    assert_eq!(q::<i64>(c, &["SPUBLISH", "{s}a", "x"]).await.unwrap(), 1);
    expect(
        &mut sub,
        &format!("*3\r\n{}{}{}", bulk("smessage"), bulk("{s}a"), bulk("x")),
    );
    let shard: Vec<String> = q(c, &["PUBSUB", "SHARDCHANNELS"]).await.unwrap();
    assert_eq!(shard.len(), 2, "{shard:?}");

    // A subscriber may also hold channels; RESET drops everything at once.
    sub.send(b"SUBSCRIBE plain\r\n");
    expect(&mut sub, &confirmation("subscribe", "plain", 1));
    sub.send(b"RESET\r\n");
    assert_eq!(sub.read_line(), "+RESET\r\n");
    // The proxy drops the subscriptions on the nodes: wait until none is left.
    common::eventually(
        "no subscription left after RESET",
        Duration::from_secs(5),
        async || {
            let shard: Vec<String> = q(c, &["PUBSUB", "SHARDCHANNELS"]).await.unwrap();
            let plain: Vec<(String, i64)> = q(c, &["PUBSUB", "NUMSUB", "plain"]).await.unwrap();
            common::check((shard, plain), |(shard, plain)| {
                shard.is_empty() && plain == &[("plain".to_string(), 0)]
            })
        },
    )
    .await;
    assert_eq!(q::<i64>(c, &["SPUBLISH", "{s}a", "y"]).await.unwrap(), 0);
    assert_eq!(q::<i64>(c, &["PUBLISH", "plain", "y"]).await.unwrap(), 0);
    sub.send(b"PING\r\n");
    assert_eq!(sub.read_line(), "+PONG\r\n");
}

/// The `redis` crate's own pub/sub client works through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_pubsub_client() {
    use futures_util::StreamExt;
    let setup = common::start();
    let client = redis::Client::open(format!("redis://{}/", setup.addr())).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("crate-a").await.unwrap();
    pubsub.psubscribe("crate-p*").await.unwrap();
    let c = &mut setup.client().await;
    let _: i64 = q(c, &["PUBLISH", "crate-a", "1"]).await.unwrap();
    let _: i64 = q(c, &["PUBLISH", "crate-pz", "2"]).await.unwrap();
    let mut stream = pubsub.on_message();
    let mut got = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("message in time")
            .expect("stream open");
        got.push((
            msg.get_channel_name().to_string(),
            msg.get_payload::<String>().unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("crate-a".into(), "1".into()),
            ("crate-pz".into(), "2".into())
        ]
    );
}

/// A cluster whose replicas take over quickly, and a proxy that refreshes its table often.
fn failover_setup() -> (LocalCluster, ProxyHandle) {
    let cluster = LocalCluster::start(ClusterOptions {
        node_timeout_ms: 2_000,
        extra_args: vec!["--cluster-require-full-coverage".into(), "no".into()],
        ..ClusterOptions::default()
    })
    .unwrap();
    let mut config = common::proxy_config(cluster.seeds());
    config.cluster.refresh_interval_ms = 500;
    let proxy = Proxy::start(config).unwrap();
    (cluster, proxy)
}

/// SIGKILL the master at `port` and wait until its replica reports itself master.
async fn fail_over(cluster: &mut LocalCluster, port: u16) {
    let victim = common::node_index(cluster, port);
    let nodes = cluster.nodes();
    let replica = nodes.iter().position(|n| n.master == Some(victim)).unwrap();
    cluster.kill(victim).unwrap();
    common::eventually(
        "the replica promoted",
        Duration::from_secs(20),
        async || common::check(cluster.role_now(replica).ok(), |r| *r == Some(Role::Master)),
    )
    .await;
}

/// A subscriber whose reads give up quickly, so publishing can be retried while it waits.
fn impatient_subscriber(addr: std::net::SocketAddr) -> Subscriber {
    let sub = Subscriber::connect(addr);
    sub.raw
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sub
}

/// Send `publish` (PUBLISH or SPUBLISH) `channel` `payload` through `c` until `sub` has
/// received `want` (the proxy re-subscribes in the background after a failover).
async fn publish_until_received(
    sub: &mut Subscriber,
    c: &mut MultiplexedConnection,
    publish: &str,
    channel: &str,
    payload: &str,
    want: &str,
) {
    let mut seen = Vec::new();
    let what = format!("a {publish} delivered after the failover");
    common::eventually(&what, Duration::from_secs(10), async || {
        let _ = q::<i64>(c, &[publish, channel, payload]).await;
        seen.extend(sub.take(want.len()));
        let text = String::from_utf8_lossy(&seen);
        if text.contains(want) {
            Ok(())
        } else {
            Err(text.into_owned())
        }
    })
    .await;
}

/// Everything `sub` receives until `want` has arrived (up to 5 s) and one read timeout more,
/// so a duplicate would be seen.
fn read_until(sub: &mut Subscriber, want: &str) -> String {
    let mut seen = String::new();
    common::eventually_blocking(&format!("{want:?} arrives"), Duration::from_secs(5), || {
        seen.push_str(&String::from_utf8_lossy(&sub.take(4096)));
        if seen.contains(want) {
            Ok(())
        } else {
            Err(seen.clone())
        }
    });
    seen.push_str(&String::from_utf8_lossy(&sub.take(4096)));
    seen
}

/// The master holding a subscription dies; its replica takes over; the subscriber, still
/// connected to the proxy, receives messages again without doing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_a_failover() {
    let (mut cluster, proxy) = failover_setup();
    let channel = "fo:news".to_string();
    let mut sub = impatient_subscriber(proxy.local_addr());
    sub.send(format!("SUBSCRIBE {channel}\r\n").as_bytes());
    expect(&mut sub, &confirmation("subscribe", &channel, 1));

    // Slotgate keeps channel subscriptions on the master of slot 0: that one dies.
    let home = cluster.port_of_slot(0).unwrap();
    fail_over(&mut cluster, home).await;
    let c = &mut common::client(proxy.local_addr()).await;
    let want = message(&channel, "back");
    publish_until_received(&mut sub, c, "PUBLISH", &channel, "back", &want).await;
}

/// The same for a pattern subscription (kept, like channels, on slot 0's master) and a
/// sharded channel of that master's slots: after the failover PUBLISH reaches the pattern
/// subscriber and SPUBLISH the shard-channel subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_and_shard_subscriptions_survive_a_failover() {
    let (mut cluster, proxy) = failover_setup();
    let home = cluster.port_of_slot(0).unwrap();
    let shard_channel = common::key_on(&cluster, home, "fo:shard");

    let mut patterns = impatient_subscriber(proxy.local_addr());
    patterns.send(b"PSUBSCRIBE fo:p.*\r\n");
    expect(&mut patterns, &confirmation("psubscribe", "fo:p.*", 1));
    let mut shard = impatient_subscriber(proxy.local_addr());
    shard.send(format!("SSUBSCRIBE {shard_channel}\r\n").as_bytes());
    expect(&mut shard, &confirmation("ssubscribe", &shard_channel, 1));
    // Both are live before the failover.
    let c = &mut common::client(proxy.local_addr()).await;
    let pmessage = |payload: &str| {
        format!(
            "*4\r\n{}{}{}{}",
            bulk("pmessage"),
            bulk("fo:p.*"),
            bulk("fo:p.x"),
            bulk(payload)
        )
    };
    let smessage = |payload: &str| {
        format!(
            "*3\r\n{}{}{}",
            bulk("smessage"),
            bulk(&shard_channel),
            bulk(payload)
        )
    };
    assert_eq!(
        q::<i64>(c, &["PUBLISH", "fo:p.x", "before"]).await.unwrap(),
        1
    );
    expect(&mut patterns, &pmessage("before"));
    assert_eq!(
        q::<i64>(c, &["SPUBLISH", &shard_channel, "before"])
            .await
            .unwrap(),
        1
    );
    expect(&mut shard, &smessage("before"));

    fail_over(&mut cluster, home).await;
    publish_until_received(
        &mut patterns,
        c,
        "PUBLISH",
        "fo:p.x",
        "back",
        &pmessage("back"),
    )
    .await;
    publish_until_received(
        &mut shard,
        c,
        "SPUBLISH",
        &shard_channel,
        "back",
        &smessage("back"),
    )
    .await;
    // Once re-subscribed, each message arrives exactly once.
    assert_eq!(
        q::<i64>(c, &["PUBLISH", "fo:p.x", "once"]).await.unwrap(),
        1
    );
    assert_eq!(
        q::<i64>(c, &["SPUBLISH", &shard_channel, "once"])
            .await
            .unwrap(),
        1
    );
    for (sub, want) in [
        (&mut patterns, pmessage("once")),
        (&mut shard, smessage("once")),
    ] {
        let rest = read_until(sub, &want);
        assert_eq!(rest.matches(&want).count(), 1, "{rest:?}");
    }
}
