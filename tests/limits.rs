//! Client resource limits against real redis-servers (pool mode): pending bytes (a client
//! pipelining without reading is throttled while others keep their latency), the subscriber
//! output limit, the request size limit and the idle timeout.
//!
//! The tests run one at a time (a lock): the first measures the process's resident memory,
//! which another test's traffic would disturb, and the machine is small.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{info_value, pool_config, start_pools, Raw};
use slotgate::local_redis::{RedisServer, ServerOptions};
use slotgate::slot::Slot;
use slotgate::Proxy;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident memory, in bytes (`VmRSS`); the proxy runs in it.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// A hash tag whose slot is in `slots`.
fn tag_in(slots: std::ops::Range<u16>) -> String {
    (0..10_000)
        .map(|i| format!("{{t{i}}}"))
        .find(|t| slots.contains(&Slot::of(t.as_bytes()).get()))
        .expect("a tag for every range")
}

/// `args` as one RESP multibulk request.
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A stream with a read timeout.
fn connect(addr: SocketAddr, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(read_timeout)).expect("timeout");
    s
}

/// Every request of the pipeline: `SET data <64 KiB>`, with every 64th an `INCR count`
/// (whose replies number the pipeline, so their order shows).
const VALUE: usize = 64 * 1024;
const INCR_EVERY: u64 = 64;

/// What the pipelining client managed to send.
struct Pushed {
    stream: TcpStream,
    /// Requests begun; when `blocked`, the last one is unfinished.
    requests: u64,
    /// Bytes of the unfinished request already sent.
    partial: usize,
    /// Bytes the proxy accepted.
    bytes: u64,
    /// A write stalled for the whole write timeout: the proxy stopped reading.
    blocked: bool,
}

/// Write up to `budget` bytes of pipelined requests without reading a reply; stop when a
/// write stalls for `stall` or at `deadline`.
fn push_pipeline(
    addr: SocketAddr,
    tag: &str,
    budget: u64,
    stall: Duration,
    deadline: Instant,
) -> Pushed {
    let mut stream = connect(addr, Duration::from_secs(20));
    stream.set_write_timeout(Some(stall)).expect("timeout");
    let set = request(&[b"SET", format!("{tag}data").as_bytes(), &vec![b'v'; VALUE]]);
    let incr = request(&[b"INCR", format!("{tag}count").as_bytes()]);
    let mut pushed = Pushed {
        stream: stream.try_clone().expect("clone"),
        requests: 0,
        partial: 0,
        bytes: 0,
        blocked: false,
    };
    loop {
        if pushed.partial == 0 {
            if pushed.bytes >= budget || Instant::now() >= deadline {
                break;
            }
            pushed.requests += 1;
        }
        let current = if pushed.requests % INCR_EVERY == 0 {
            &incr
        } else {
            &set
        };
        match stream.write(&current[pushed.partial..]) {
            Ok(n) => {
                pushed.bytes += n as u64;
                pushed.partial = (pushed.partial + n) % current.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                pushed.blocked = true;
                break;
            }
            Err(e) => panic!("pipelining client: {e}"),
        }
    }
    pushed
}

#[test]
fn a_client_pipelining_a_gigabyte_is_throttled_while_others_keep_their_latency() {
    let _serial = serial();
    let servers: Vec<RedisServer> = (0..2)
        .map(|_| {
            RedisServer::start(ServerOptions {
                extra_args: vec!["--enable-debug-command".into(), "yes".into()],
                ..ServerOptions::default()
            })
            .expect("start redis-server")
        })
        .collect();
    let mut config = pool_config(&servers, &[("0-8191", "p0"), ("8192-16383", "p1")]);
    // Requests held behind the stalled server must wait, not fail.
    config.backend.request_timeout_ms = 30_000;
    let proxy = Proxy::start(config).expect("start slotgate");
    let addr = proxy.local_addr();
    let slow_tag = tag_in(0..8192);
    let fast_key = format!("{}fast", tag_in(8192..16384));

    let mut latency_client = Raw::connect(addr);
    assert_eq!(common::lines(&mut latency_client, &["PING"]), ["+PONG\r\n"]);
    let baseline = rss_bytes();

    // Stall p0: what is sent to it piles up in slotgate unless slotgate stops reading.
    let mut stall = connect(
        servers[0].addr().parse().expect("addr"),
        Duration::from_secs(20),
    );
    stall.write_all(b"DEBUG SLEEP 6\r\n").expect("DEBUG SLEEP");
    let started = Instant::now();
    let writer = {
        let tag = slow_tag.clone();
        let deadline = started + Duration::from_secs(20);
        thread::spawn(move || push_pipeline(addr, &tag, 1 << 30, Duration::from_secs(1), deadline))
    };

    // Meanwhile another client works on p1, timed request by request.
    let mut times = Vec::new();
    let mut peak = baseline;
    let value = "x".repeat(100);
    while !writer.is_finished() || times.len() < 400 {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "the pipelining client never stalled"
        );
        for command in [format!("SET {fast_key} {value}"), format!("GET {fast_key}")] {
            let t = Instant::now();
            let reply = common::lines(&mut latency_client, &[command.as_str()]).remove(0);
            times.push(t.elapsed());
            assert!(reply == "+OK\r\n" || reply == "$100\r\n", "{reply:?}");
            if reply.starts_with('$') {
                latency_client.read_line(); // the value
            }
        }
        if times.len() % 50 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    peak = peak.max(rss_bytes());
    let mut pushed = writer.join().expect("pipelining thread");
    let growth = peak.saturating_sub(baseline);
    times.sort_unstable();
    let p99 = times[times.len() * 99 / 100];
    eprintln!(
        "pipelining client: {} requests, {} MB accepted before throttling (blocked: {}); \
         RSS growth {} MB; other client: {} requests, p99 {p99:?}",
        pushed.requests,
        pushed.bytes >> 20,
        pushed.blocked,
        growth >> 20,
        times.len()
    );
    assert!(
        pushed.blocked,
        "slotgate kept reading the pipelining client"
    );
    // Default proxy.max_pending_bytes (64 MiB) plus what the sockets buffer; without it,
    // max_pipeline_depth alone lets ~1 GB in.
    assert!(
        pushed.bytes < 300 << 20,
        "{} MB accepted",
        pushed.bytes >> 20
    );
    assert!(
        growth < 300 << 20,
        "slotgate's memory grew by {} MB",
        growth >> 20
    );
    assert!(times.len() >= 400);
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");

    // The stall ends; the client finishes its last request and reads every reply, in order.
    let mut ok = [0u8; 5];
    stall.read_exact(&mut ok).expect("DEBUG SLEEP reply");
    assert_eq!(&ok, b"+OK\r\n");
    if pushed.blocked {
        let current = if pushed.requests % INCR_EVERY == 0 {
            request(&[b"INCR", format!("{slow_tag}count").as_bytes()])
        } else {
            request(&[
                b"SET",
                format!("{slow_tag}data").as_bytes(),
                &vec![b'v'; VALUE],
            ])
        };
        pushed.stream.set_write_timeout(None).expect("timeout");
        pushed
            .stream
            .write_all(&current[pushed.partial..])
            .expect("finish the last request");
    }
    let mut replies = BufReader::new(pushed.stream);
    let mut line = String::new();
    for i in 1..=pushed.requests {
        line.clear();
        replies.read_line(&mut line).expect("read a reply");
        let want = if i % INCR_EVERY == 0 {
            format!(":{}\r\n", i / INCR_EVERY)
        } else {
            "+OK\r\n".to_string()
        };
        assert_eq!(line, want, "reply {i} of {}", pushed.requests);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_and_others_get_everything() {
    let _serial = serial();
    let setup = start_pools(1, &[], |c| {
        c.proxy.pubsub_output_hard_limit_bytes = 2 << 20;
        c.proxy.pubsub_output_soft_limit_bytes = 1 << 20;
        common::with_admin(c);
    });
    let addr = setup.addr();
    let subscribe = b"SUBSCRIBE news\r\n";
    let confirmation = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
    let mut slow = Raw::connect(addr);
    slow.send(subscribe);
    assert_eq!(slow.read_exactly(confirmation.len()), confirmation);

    // 400 messages of 64 KiB: 25 MB, several times the slow subscriber's limit plus what
    // the kernel buffers for it.
    const MESSAGES: usize = 400;
    let payload = vec![b'm'; VALUE];
    let mut message = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n".to_vec();
    message.extend_from_slice(&request(&[&payload])[4..]); // `$65536\r\n…\r\n`
    let expected = (MESSAGES * message.len()) as u64;
    // Bytes the reading subscriber has read so far.
    let read = Arc::new(AtomicU64::new(0));
    let reader = {
        let mut normal = connect(addr, Duration::from_secs(20));
        normal.write_all(subscribe).expect("subscribe");
        let mut got = vec![0u8; confirmation.len()];
        normal.read_exact(&mut got).expect("confirmation");
        assert_eq!(got, confirmation);
        let first = message.clone();
        let read = Arc::clone(&read);
        thread::spawn(move || {
            let mut head = vec![0u8; first.len()];
            normal.read_exact(&mut head).expect("first message");
            assert_eq!(head, first, "a message as Redis sends it");
            let mut total = head.len() as u64;
            read.store(total, Ordering::Release);
            let mut buf = vec![0u8; 64 * 1024];
            while total < expected {
                let want = buf.len().min((expected - total) as usize);
                let n = normal.read(&mut buf[..want]).expect("read every message");
                assert!(
                    n > 0,
                    "the reading subscriber was closed after {total} bytes"
                );
                total += n as u64;
                read.store(total, Ordering::Release);
            }
            total
        })
    };

    let mut publisher = Raw::connect(addr);
    let publish = request(&[b"PUBLISH", b"news", &payload]);
    let mut receivers = Vec::new();
    for sent in 0..MESSAGES {
        // The reading subscriber keeps up: publish only while it is less than half its soft
        // limit behind, so a moment's stall of its thread on a busy machine does not make it
        // a slow subscriber too. The one that never reads falls behind all the same.
        let published = (sent * message.len()) as u64;
        let waiting = Instant::now();
        while published.saturating_sub(read.load(Ordering::Acquire)) > 512 << 10 {
            assert!(
                waiting.elapsed() < Duration::from_secs(20),
                "the reading subscriber stopped reading"
            );
            thread::sleep(Duration::from_millis(1));
        }
        publisher.send(&publish);
        receivers.push(publisher.read_line());
    }
    assert_eq!(receivers[0], ":2\r\n");
    assert_eq!(
        receivers.last().map(String::as_str),
        Some(":1\r\n"),
        "the slow subscriber is gone"
    );
    assert_eq!(reader.join().expect("normal subscriber"), expected);

    // The slow one finds what the kernel held for it, then the end of the connection.
    let mut slow_got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match slow.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => slow_got += n as u64,
            Err(e) => panic!("slow subscriber not closed: {e}"),
        }
    }
    assert!(slow_got < expected / 2, "it received {slow_got} bytes");
    assert_eq!(
        info_value(addr, "stats", "client_output_buffer_limit_disconnections").as_deref(),
        Some("1")
    );
    let admin = setup.proxy.admin_addr().expect("admin listener");
    let (_, metrics) = common::http_get(admin, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "slotgate_client_output_buffer_limit_disconnections_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_subscriber_over_the_soft_limit_for_too_long_is_cut_off() {
    let _serial = serial();
    let setup = start_pools(1, &[], |c| {
        c.proxy.pubsub_output_hard_limit_bytes = 0;
        c.proxy.pubsub_output_soft_limit_bytes = 256 << 10;
        c.proxy.pubsub_output_soft_limit_ms = 2_000;
    });
    let addr = setup.addr();
    let mut slow = Raw::connect(addr);
    slow.send(b"SUBSCRIBE news\r\n");
    assert_eq!(slow.read_exactly(33).len(), 33);
    let publish = request(&[b"PUBLISH", b"news", &vec![b'm'; VALUE]]);
    let mut publisher = Raw::connect(addr);
    let mut published = || {
        publisher.send(&publish);
        publisher.read_line()
    };
    // 160 × 64 KiB = 10 MB at once: beyond what the kernel buffers, over the soft limit;
    // but not for two seconds yet, so the subscriber stays.
    let burst = Instant::now();
    for _ in 0..160 {
        assert_eq!(published(), ":1\r\n");
    }
    assert!(
        burst.elapsed() < Duration::from_millis(1_500),
        "burst too slow"
    );
    assert_eq!(
        info_value(addr, "stats", "client_output_buffer_limit_disconnections").as_deref(),
        Some("0"),
        "a soft limit is not a hard one"
    );
    // A trickle keeps it over the limit until its time is up.
    let mut receivers = published();
    while receivers == ":1\r\n" {
        assert!(burst.elapsed() < Duration::from_secs(8), "never cut off");
        // Paces the trickle (what it tests), not a wait for an event.
        thread::sleep(Duration::from_millis(100));
        receivers = published();
    }
    assert_eq!(receivers, ":0\r\n");
    assert!(
        burst.elapsed() >= Duration::from_secs(2),
        "{:?}",
        burst.elapsed()
    );
    assert_eq!(
        info_value(addr, "stats", "client_output_buffer_limit_disconnections").as_deref(),
        Some("1")
    );
}

#[test]
fn an_oversized_request_is_refused_and_its_client_closed() {
    let _serial = serial();
    const LIMIT: usize = 1 << 20;
    let setup = start_pools(1, &[], |c| c.proxy.max_request_bytes = LIMIT);
    let addr = setup.addr();
    let mut other = Raw::connect(addr);
    assert_eq!(common::lines(&mut other, &["SET k before"]), ["+OK\r\n"]);

    // A request of exactly the limit passes.
    let header = |n: usize| request(&[b"SET", b"fits", &[]]).len() + n.to_string().len() - 1;
    let n = (LIMIT - 40..LIMIT)
        .rev()
        .find(|&n| header(n) + n == LIMIT)
        .expect("a fit");
    let fits = request(&[b"SET", b"fits", &vec![b'f'; n]]);
    assert_eq!(fits.len(), LIMIT);
    let mut exact = Raw::connect(addr);
    exact.send(&fits);
    assert_eq!(exact.read_line(), "+OK\r\n");

    // Twice the limit: the error as soon as the header is read, then the connection closes,
    // while the client is still writing the value (2 MiB, written whole by a real client).
    let big = request(&[b"SET", b"big", &vec![b'b'; 2 * LIMIT]]);
    let size = big.len();
    let mut client = connect(addr, Duration::from_secs(10));
    let writer = {
        let mut w = client.try_clone().expect("clone");
        thread::spawn(move || w.write_all(&big))
    };
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).expect("the reply, then EOF");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        format!(
            "-ERR Protocol error: request too large: at least {size} bytes, \
             the limit is {LIMIT} (proxy.max_request_bytes)\r\n"
        )
    );
    let _ = writer.join().expect("writer");

    // Others are unaffected, and nothing of it was stored.
    assert_eq!(
        common::lines(&mut other, &["GET k", "EXISTS big"]),
        ["$6\r\n", "before\r\n"]
    );
    assert_eq!(other.read_line(), ":0\r\n");
    assert_eq!(
        info_value(addr, "stats", "client_query_buffer_limit_disconnections").as_deref(),
        Some("1")
    );
}

#[test]
fn a_client_owed_max_pipeline_depth_replies_is_not_read_until_they_are_answered() {
    let _serial = serial();
    let server = RedisServer::start(ServerOptions {
        extra_args: vec!["--enable-debug-command".into(), "yes".into()],
        ..ServerOptions::default()
    })
    .expect("start redis-server");
    let mut config = pool_config(std::slice::from_ref(&server), &[]);
    config.proxy.max_pipeline_depth = 100;
    config.backend.request_timeout_ms = 30_000;
    let proxy = Proxy::start(config).expect("start slotgate");
    let addr = proxy.local_addr();

    // The server stalls; a client pipelines GETs of a 1 KiB key without reading replies.
    let mut stall = connect(
        server.addr().parse().expect("addr"),
        Duration::from_secs(20),
    );
    stall.write_all(b"DEBUG SLEEP 4\r\n").expect("DEBUG SLEEP");
    let key = "k".repeat(1024);
    let get = request(&[b"GET", key.as_bytes()]);
    let pipeline: Vec<u8> = get
        .iter()
        .copied()
        .cycle()
        .take(get.len() * 20_000)
        .collect();
    let mut stream = connect(addr, Duration::from_secs(20));
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut sent = 0;
    let blocked = loop {
        if sent == pipeline.len() {
            break false;
        }
        match stream.write(&pipeline[sent..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true
            }
            Err(e) => panic!("pipelining client: {e}"),
        }
    };
    // Slotgate dispatched about 100 requests (plus the rest of the read that crossed the
    // bound) and left the rest in the socket buffers.
    let processed: u64 = info_value(addr, "stats", "total_commands_processed")
        .and_then(|v| v.parse().ok())
        .expect("total_commands_processed");
    let whole = (sent / get.len()) as u64;
    eprintln!("client sent {whole} requests, blocked: {blocked}; slotgate read {processed}");
    assert!(blocked, "the client was never throttled");
    assert!(
        (100..=100 + 64).contains(&processed),
        "{processed} requests dispatched with max_pipeline_depth = 100"
    );
    assert!(whole > 10 * processed, "only {whole} requests sent");

    // The stall ends: every request is answered, in order.
    let mut ok = [0u8; 5];
    stall.read_exact(&mut ok).expect("DEBUG SLEEP reply");
    stream.set_write_timeout(None).expect("timeout");
    let rest = get.len() - sent % get.len();
    stream
        .write_all(&pipeline[sent..sent + rest % get.len()])
        .expect("finish the last request");
    let total = sent.div_ceil(get.len());
    let mut replies = BufReader::new(stream);
    let mut line = String::new();
    for i in 0..total {
        line.clear();
        replies.read_line(&mut line).expect("read a reply");
        assert_eq!(line, "$-1\r\n", "reply {i} of {total}");
    }
}

#[test]
fn a_transaction_cannot_queue_more_than_the_pending_bytes() {
    let _serial = serial();
    let setup = start_pools(1, &[], |c| c.proxy.max_pending_bytes = 64 << 10);
    let mut client = Raw::connect(setup.addr());
    let set = request(&[b"SET", b"k", &vec![b'v'; 40 << 10]]);
    assert_eq!(common::lines(&mut client, &["MULTI"]), ["+OK\r\n"]);
    client.send(&set);
    assert_eq!(client.read_line(), "+QUEUED\r\n");
    client.send(&set);
    assert_eq!(
        client.read_line(),
        "-ERR slotgate: transaction too large: its queued commands exceed \
         proxy.max_pending_bytes (65536 bytes)\r\n"
    );
    assert_eq!(
        common::lines(&mut client, &["EXEC", "EXISTS k"]),
        [
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
            ":0\r\n"
        ]
    );
}

#[test]
fn idle_clients_are_closed_but_not_subscribers_or_blocked_clients() {
    let _serial = serial();
    let setup = start_pools(1, &[], |c| c.proxy.client_idle_timeout_ms = 500);
    let addr = setup.addr();
    let mut idle = Raw::connect(addr);
    let mut in_multi = Raw::connect(addr);
    let mut subscriber = Raw::connect(addr);
    let mut blocked = Raw::connect(addr);
    let mut active = Raw::connect(addr);
    let start = Instant::now();
    assert_eq!(common::lines(&mut idle, &["PING"]), ["+PONG\r\n"]);
    assert_eq!(common::lines(&mut in_multi, &["MULTI"]), ["+OK\r\n"]);
    subscriber.send(b"SUBSCRIBE news\r\n");
    assert_eq!(
        subscriber.read_exactly(33),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    // Blocked longer than the idle timeout: it waits for its own timeout, as in Redis.
    blocked.send(b"BLPOP nothing 1.5\r\n");

    while start.elapsed() < Duration::from_millis(1_700) {
        assert_eq!(common::lines(&mut active, &["PING"]), ["+PONG\r\n"]);
        // The others stay idle past the timeout meanwhile: the time is what is tested.
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(blocked.read_line(), "*-1\r\n");
    assert_eq!(common::lines(&mut blocked, &["PING"]), ["+PONG\r\n"]);
    assert_eq!(
        common::lines(&mut subscriber, &["PING"]),
        ["*2\r\n"],
        "a subscriber is never idle"
    );
    assert!(idle.is_closed(), "the idle client is closed");
    assert!(
        in_multi.is_closed(),
        "a client in MULTI times out too, as in Redis"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}
