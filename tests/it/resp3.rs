//! RESP3 through the proxy: HELLO 3 switches the client; replies keep their RESP3 types
//! (maps, sets, doubles, nulls, verbatim text) because slotgate talks RESP3 to the backends on
//! that client's behalf; pub/sub arrives as push frames and a subscribed RESP3 client may run
//! any command; HELLO 2 and RESET switch back.

use crate::common;

use std::io::Read;
use std::time::Duration;

use common::Raw;

/// A raw connection read byte-exactly.
struct Conn {
    raw: Raw,
    unread: Vec<u8>,
}

impl Conn {
    fn new(addr: std::net::SocketAddr) -> Conn {
        Conn {
            raw: Raw::connect(addr),
            unread: Vec::new(),
        }
    }

    /// Send one inline command and expect exactly `want` back.
    fn expect(&mut self, command: &str, want: &str) {
        self.raw.send(format!("{command}\r\n").as_bytes());
        self.next(want, command);
    }

    /// The next bytes are exactly `want`.
    fn next(&mut self, want: &str, context: &str) {
        let mut buf = [0u8; 4096];
        while self.unread.len() < want.len() {
            match self.raw.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
            }
        }
        let n = want.len().min(self.unread.len());
        let got: Vec<u8> = self.unread.drain(..n).collect();
        assert_eq!(String::from_utf8_lossy(&got), want, "after {context}");
    }

    /// Send a command and return one reply line (for replies with variable content).
    fn line(&mut self, command: &str) -> String {
        assert!(self.unread.is_empty());
        self.raw.send(format!("{command}\r\n").as_bytes());
        self.raw.read_line()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_types_pass_through() {
    let setup = common::start();
    let mut c = Conn::new(setup.addr());
    let hello = c.line("HELLO 3");
    assert_eq!(hello, "%8\r\n");
    // Drain the rest of HELLO's map (8 pairs) up to a marker reply.
    c.raw.send(b"ECHO marker\r\n");
    let mut rest = String::new();
    while !rest.ends_with("$6\r\nmarker\r\n") {
        rest.push_str(&c.raw.read_line());
    }
    assert!(rest.contains("$5\r\nproto\r\n:3\r\n"), "{rest}");

    c.expect("HSET {h}h f v", ":1\r\n");
    c.expect("HGETALL {h}h", "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    c.expect("GET {h}missing", "_\r\n");
    c.expect("SADD {h}s m", ":1\r\n");
    c.expect("SMEMBERS {h}s", "~1\r\n$1\r\nm\r\n");
    c.expect("ZADD {h}z 1.5 m", ":1\r\n");
    c.expect("ZSCORE {h}z m", ",1.5\r\n");
    c.expect("SISMEMBER {h}s m", ":1\r\n");
    // Split across slots: RESP3 nulls stay nulls, in key order.
    c.expect("SET a 1", "+OK\r\n");
    c.expect("MGET a nosuch-b", "*2\r\n$1\r\n1\r\n_\r\n");
    // Inside a transaction and after a blocking pop, the node's RESP3 replies pass through.
    c.expect("MULTI", "+OK\r\n");
    c.expect("HGETALL {h}h", "+QUEUED\r\n");
    c.expect("EXEC", "*1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    c.expect("RPUSH {h}l x", ":1\r\n");
    c.expect("BLPOP {h}l 1", "*2\r\n$4\r\n{h}l\r\n$1\r\nx\r\n");
    c.expect("BLPOP {h}l 0.1", "_\r\n");
    // Nulls the proxy writes itself are RESP3 nulls too.
    c.expect("CLIENT GETNAME", "_\r\n");
    assert!(c.line("RANDOMKEY").starts_with('$'));
    c.raw.read_line();
    c.expect("WATCH {h}h", "+OK\r\n");
    c.expect("HSET {h}h f changed", ":0\r\n");
    c.expect("MULTI", "+OK\r\n");
    c.expect("HGET {h}h f", "+QUEUED\r\n");
    c.expect("EXEC", "_\r\n");
    c.expect("HSET {h}h f v", ":0\r\n");
    // The proxy's own text replies are verbatim strings, like Redis' in RESP3.
    assert!(c.line("INFO server").starts_with('='));
    c.raw.send(b"ECHO sync\r\n");
    while !c.raw.read_line().contains("sync") {}
    // Back to RESP2: the same map is a flat array again.
    c.raw.send(b"HELLO 2\r\n");
    assert_eq!(c.raw.read_line(), "*16\r\n");
    for _ in 0..16 {
        let line = c.raw.read_line();
        if line.starts_with('$') {
            c.raw.read_line();
        } else if line == "*0\r\n" {
            continue;
        }
    }
    c.expect("HGETALL {h}h", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    c.expect("GET {h}missing", "$-1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_pubsub_is_push_frames_and_commands_still_work() {
    let setup = common::start();
    let mut sub = Conn::new(setup.addr());
    sub.raw
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    sub.raw.send(b"HELLO 3\r\nECHO ready\r\n");
    while !sub.raw.read_line().contains("ready") {}
    sub.expect(
        "SUBSCRIBE r3",
        ">3\r\n$9\r\nsubscribe\r\n$2\r\nr3\r\n:1\r\n",
    );
    // Subscribed, a RESP3 client may still run ordinary commands.
    sub.expect("SET r3key v", "+OK\r\n");
    sub.expect("PING", "+PONG\r\n");
    let c = &mut setup.client().await;
    let n: i64 = redis::cmd("PUBLISH")
        .arg("r3")
        .arg("hi")
        .query_async(c)
        .await
        .unwrap();
    assert_eq!(n, 1);
    sub.next(">3\r\n$7\r\nmessage\r\n$2\r\nr3\r\n$2\r\nhi\r\n", "PUBLISH");
    sub.expect(
        "UNSUBSCRIBE r3",
        ">3\r\n$11\r\nunsubscribe\r\n$2\r\nr3\r\n:0\r\n",
    );
    // PUBSUB NUMSUB, merged over the masters, keeps the shape Redis 7.0 gives in RESP3.
    sub.expect("PUBSUB NUMSUB r3", "*2\r\n$2\r\nr3\r\n:0\r\n");
    sub.expect("RESET", "+RESET\r\n");
    sub.expect("GET nosuch", "$-1\r\n");
}
