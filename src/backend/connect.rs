//! Opening a connection to a node, the one way every kind of backend connection does it:
//! TCP (and TLS, when backends use it), then the handshake its use needs — `AUTH` with the
//! node's credentials, `HELLO 3` for RESP3 clients, `READONLY` for cluster replicas — sent in
//! one write and checked reply by reply.
//!
//! Errors are typed by what went wrong, not by the step: a refused `AUTH` is
//! [`BackendError::Auth`], a refused `HELLO 3` or `READONLY` is [`BackendError::Refused`],
//! while a connection reset or closed during any step is [`BackendError::Lost`] and a node
//! that does not answer in time is [`BackendError::Timeout`].
//!
//! Used by the pipelined connections (`conn`), the dedicated ones (`dedicated`) and one-shot
//! control requests (`oneshot`, whose commands follow the handshake in the same write).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{Limits, Reply, ReplyDecoder};
use crate::tls::{BackendTls, MaybeTls};

use super::credentials::Credentials;
use super::BackendError;

/// The bytes of an `ASKING` command (sent before a request redirected by ASK).
pub const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// The bytes of `HELLO 3`: the connection speaks RESP3.
pub const HELLO_3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
/// The bytes of a `READONLY` command: a cluster replica then serves reads of its master's
/// slots instead of answering MOVED.
pub const READONLY: &[u8] = b"*1\r\n$8\r\nREADONLY\r\n";

/// Append `SELECT db` to `buf` (the database a request runs in, pool mode).
pub fn select(db: u32, buf: &mut BytesMut) {
    crate::resp::encode::array_header(buf, 2);
    crate::resp::encode::bulk(buf, b"SELECT");
    crate::resp::encode::bulk(buf, db.to_string().as_bytes());
}

/// What a new connection must say before its first request.
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    /// Sent as `AUTH [username] password` first.
    pub auth: Option<Arc<Credentials>>,
    /// `HELLO 3` (after `AUTH`).
    pub resp3: bool,
    /// `READONLY` (last).
    pub readonly: bool,
}

/// One command of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Auth,
    Hello3,
    ReadOnly,
}

impl Handshake {
    /// The commands it sends, in order.
    fn steps(&self) -> impl Iterator<Item = Step> {
        [
            self.auth.is_some().then_some(Step::Auth),
            self.resp3.then_some(Step::Hello3),
            self.readonly.then_some(Step::ReadOnly),
        ]
        .into_iter()
        .flatten()
    }

    /// Append its commands to `out`.
    fn write_to(&self, out: &mut BytesMut) {
        if let Some(auth) = &self.auth {
            out.extend_from_slice(&auth.auth_request());
        }
        if self.resp3 {
            out.extend_from_slice(HELLO_3);
        }
        if self.readonly {
            out.extend_from_slice(READONLY);
        }
    }
}

impl Step {
    /// The error for a node that answered this step with the error line `reason`.
    fn refused(self, addr: &str, reason: String) -> BackendError {
        let addr = addr.to_string();
        match self {
            Step::Auth => BackendError::Auth { addr, reason },
            Step::Hello3 => BackendError::Refused {
                addr,
                command: "HELLO 3",
                reason,
            },
            Step::ReadOnly => BackendError::Refused {
                addr,
                command: "READONLY",
                reason,
            },
        }
    }
}

/// Open a TCP connection to `addr` (`HOST:PORT`; a host name is resolved afresh, every address
/// it gives tried in turn) and, with `tls`, run the TLS handshake on it, verified against the
/// host as written (the name, not the address it resolved to), all within `timeout`.
pub async fn connect(
    addr: &str,
    tls: Option<&BackendTls>,
    timeout: Duration,
) -> Result<MaybeTls, BackendError> {
    let opened = async {
        // Resolved again on every connect: a node known by name is followed to a new address.
        let resolved = super::resolve::lookup(addr).await?;
        let tcp = TcpStream::connect(&resolved[..])
            .await
            .map_err(|e| BackendError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        match tls {
            Some(tls) => tls
                .wrap(addr, tcp)
                .await
                .map_err(|reason| BackendError::Tls {
                    addr: addr.to_string(),
                    reason,
                }),
            None => Ok(MaybeTls::Plain(tcp)),
        }
    };
    tokio::time::timeout(timeout, opened)
        .await
        .unwrap_or_else(|_| {
            Err(BackendError::ConnectTimeout {
                addr: addr.to_string(),
                ms: millis(timeout),
            })
        })
}

/// [`connect`] within `timeout`, then the `handshake`, whose replies must come within
/// `timeout` too: a connection ready for requests.
pub async fn open(
    addr: &str,
    tls: Option<&BackendTls>,
    handshake: &Handshake,
    timeout: Duration,
    limits: Limits,
) -> Result<MaybeTls, BackendError> {
    let mut stream = connect(addr, tls, timeout).await?;
    let exchange = exchange(&mut stream, addr, handshake, &[], 0, limits);
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(no_reply(addr, timeout)))?;
    Ok(stream)
}

/// Write the `handshake` followed by `requests` (which draw `replies` replies) in one write,
/// check the handshake's replies, and return the requests' replies in order. Not bounded in
/// time: callers bound it.
pub async fn exchange(
    stream: &mut MaybeTls,
    addr: &str,
    handshake: &Handshake,
    requests: &[u8],
    replies: usize,
    limits: Limits,
) -> Result<Vec<Reply>, BackendError> {
    let lost = |e: std::io::Error| lost(addr, e.to_string());
    let mut out = BytesMut::with_capacity(requests.len() + 64);
    handshake.write_to(&mut out);
    out.extend_from_slice(requests);
    if out.is_empty() {
        return Ok(Vec::new());
    }
    stream.write_all(&out).await.map_err(lost)?;
    // Free on plain TCP; TLS may hold the tail of a record until it.
    stream.flush().await.map_err(lost)?;

    let mut steps: Vec<Step> = handshake.steps().collect();
    steps.reverse();
    let mut decoder = ReplyDecoder::new(limits);
    let mut buf = BytesMut::with_capacity(1024);
    let mut got = Vec::with_capacity(replies);
    loop {
        while let Some(reply) =
            decoder
                .decode(&mut buf)
                .map_err(|source| BackendError::Protocol {
                    addr: addr.to_string(),
                    source,
                })?
        {
            match steps.pop() {
                Some(step) => {
                    // Redis does not echo a password in its error line.
                    if let Some(message) = reply.error_message() {
                        let reason = String::from_utf8_lossy(message).into_owned();
                        return Err(step.refused(addr, reason));
                    }
                }
                None => got.push(reply),
            }
            if steps.is_empty() && got.len() == replies {
                return Ok(got);
            }
        }
        if stream.read_buf(&mut buf).await.map_err(lost)? == 0 {
            return Err(lost_closed(addr));
        }
    }
}

/// The error for a node that closed the connection before answering.
fn lost_closed(addr: &str) -> BackendError {
    lost(addr, "closed by the node before replying".into())
}

fn lost(addr: &str, reason: String) -> BackendError {
    BackendError::Lost {
        addr: addr.to_string(),
        reason,
    }
}

/// The error for a node that did not answer within `timeout`.
pub fn no_reply(addr: &str, timeout: Duration) -> BackendError {
    BackendError::Timeout {
        addr: addr.to_string(),
        ms: millis(timeout),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::net::TcpListener;

    use crate::backend::testing::node;

    fn with_auth(resp3: bool, readonly: bool) -> Handshake {
        Handshake {
            auth: Some(Arc::new(Credentials::new(None, "secret"))),
            resp3,
            readonly,
        }
    }

    async fn open_at(addr: &str, handshake: &Handshake) -> Result<MaybeTls, BackendError> {
        open(
            addr,
            None,
            handshake,
            Duration::from_millis(300),
            Limits::default(),
        )
        .await
    }

    /// The error `open` gives against a node that answers `handshake`'s commands with
    /// `answer` (then closes, with `close`).
    async fn refusal(handshake: &Handshake, answer: &'static [u8], close: bool) -> BackendError {
        let mut sent = BytesMut::new();
        handshake.write_to(&mut sent);
        let addr = node(sent.len(), answer, close).await;
        open_at(&addr, handshake).await.err().unwrap()
    }

    /// Assert that `open` against a node answering `answer` to `handshake` fails with an
    /// error of `kind` whose text contains `says`.
    async fn assert_refused(handshake: &Handshake, answer: &'static [u8], kind: &str, says: &str) {
        let error = refusal(handshake, answer, false).await;
        assert_eq!(error.kind(), kind, "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }

    fn auth_len() -> usize {
        with_auth(false, false).auth.unwrap().auth_request().len()
    }

    #[tokio::test]
    async fn every_step_in_one_write_and_a_clean_handshake_is_ready() {
        let handshake = with_auth(true, true);
        let all = auth_len() + HELLO_3.len() + READONLY.len();
        let addr = node(all, b"+OK\r\n%1\r\n+proto\r\n:3\r\n+OK\r\n", false).await;
        assert!(open_at(&addr, &handshake).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_password_is_an_auth_error_with_the_node_line() {
        let answer = b"-WRONGPASS invalid password\r\n";
        let says = "refused authentication (WRONGPASS invalid password)";
        assert_refused(&with_auth(false, false), answer, "auth", says).await;
    }

    #[tokio::test]
    async fn a_reset_during_auth_is_a_lost_connection_not_an_auth_failure() {
        let error = refusal(&with_auth(false, false), b"", true).await;
        assert_eq!(error.kind(), "lost", "{error}");
    }

    #[tokio::test]
    async fn refused_hello_and_readonly_are_refusals_naming_the_command() {
        let hello = Handshake {
            resp3: true,
            ..Handshake::default()
        };
        let answer = b"-NOPROTO unsupported protocol\r\n";
        assert_refused(&hello, answer, "refused", "refused HELLO 3 (NOPROTO").await;
        let readonly = Handshake {
            readonly: true,
            ..Handshake::default()
        };
        let answer = b"-ERR This instance has cluster support disabled\r\n";
        assert_refused(&readonly, answer, "refused", "refused READONLY (ERR This").await;
    }

    #[tokio::test]
    async fn a_silent_node_is_a_timeout_and_a_closed_port_a_connect_error() {
        let error = refusal(&with_auth(false, false), b"", false).await;
        assert_eq!(error.kind(), "timeout", "{error}");

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let error = open_at(&addr, &Handshake::default()).await.err().unwrap();
        assert_eq!(error.kind(), "connect", "{error}");
    }

    #[tokio::test]
    async fn requests_follow_the_handshake_and_their_replies_come_back() {
        let handshake = with_auth(false, false);
        let ping = b"*1\r\n$4\r\nPING\r\n";
        let addr = node(auth_len() + ping.len(), b"+OK\r\n+PONG\r\n", false).await;
        let mut stream = connect(&addr, None, Duration::from_millis(300))
            .await
            .unwrap();
        let replies = exchange(&mut stream, &addr, &handshake, ping, 1, Limits::default())
            .await
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(&replies[0].raw()[..], b"+PONG\r\n");
    }
}
