//! Dedicated backend connections: one client's exclusive line to one node, for what cannot
//! share the pipelined connections — blocking commands, transactions with WATCH, pub/sub.
//!
//! A dedicated connection is plain request/reply in order, owned by one session (or one
//! pub/sub link task) at a time. A connection left in a clean state (no WATCH, not subscribed,
//! no reply outstanding) goes back to its worker's [`IdleConns`] for the next client; any other
//! is closed by dropping it, which is also how a disconnecting client releases a node blocked
//! on its behalf.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::resp::{Limits, Reply, ReplyDecoder};
use crate::tls::{BackendTls, MaybeTls};

use super::connect::{self, Handshake};
use super::credentials::Credentials;
use super::BackendError;

/// Idle dedicated connections a worker keeps per node.
const IDLE_PER_NODE: usize = 8;

/// What a client needs of a dedicated connection: its protocol and its database; and whom
/// it is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// Speak RESP3 (the client said `HELLO 3`).
    pub resp3: bool,
    /// The client's database (`SELECT`; always 0 in cluster mode).
    pub db: u32,
    /// The proxy's id of the client (0: the proxy's own request): a blocking command is
    /// registered under it for `CLIENT UNBLOCK`.
    pub client: u64,
}

impl Lease {
    /// The same database in RESP2 (for replies the proxy reads itself).
    pub fn resp2(self) -> Lease {
        Lease {
            resp3: false,
            ..self
        }
    }
}

/// One exclusive connection to a node.
#[derive(Debug)]
pub struct DedicatedConn {
    addr: Arc<str>,
    /// Speaks RESP3 (switched with `HELLO 3`).
    resp3: bool,
    /// The database the connection is in (a new one starts in 0).
    db: u32,
    stream: MaybeTls,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl DedicatedConn {
    /// Connect to `addr` within `timeout` (with TLS when `tls` is given), authenticate with
    /// `auth` if given, and switch to RESP3 if `resp3` (each reply within `timeout` too).
    pub async fn connect(
        addr: Arc<str>,
        timeout: Duration,
        limits: Limits,
        auth: Option<Arc<Credentials>>,
        resp3: bool,
        tls: Option<Arc<BackendTls>>,
    ) -> Result<DedicatedConn, BackendError> {
        let handshake = Handshake {
            auth,
            resp3,
            readonly: false,
        };
        let stream = connect::open(&addr, tls.as_deref(), &handshake, timeout, limits).await?;
        Ok(DedicatedConn {
            addr,
            resp3,
            db: 0,
            stream,
            buf: BytesMut::with_capacity(4096),
            decoder: ReplyDecoder::new(limits),
        })
    }

    /// True when the connection speaks RESP3.
    pub fn is_resp3(&self) -> bool {
        self.resp3
    }

    /// The node this connection goes to.
    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// The IP address its socket goes to.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.stream.tcp().peer_addr().ok().map(|a| a.ip())
    }

    /// The database the connection is in.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// Move the connection to database `db` (`SELECT`, only when it is in another). A node
    /// that refuses it (`DB index is out of range`) leaves the connection where it was, clean:
    /// [`BackendError::Refused`] carries the node's error line.
    pub async fn select(&mut self, db: u32) -> Result<(), BackendError> {
        if db == self.db {
            return Ok(());
        }
        let mut request = BytesMut::new();
        connect::select(db, &mut request);
        let reply = self.call(&request, 1).await?.pop();
        match reply.as_ref().and_then(Reply::error_message) {
            None => {
                self.db = db;
                Ok(())
            }
            Some(refusal) => Err(BackendError::Refused {
                addr: self.addr.to_string(),
                command: "SELECT",
                reason: String::from_utf8_lossy(refusal).into_owned(),
            }),
        }
    }

    /// Write `bytes` (one or more complete requests).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let written = match self.stream.write_all(bytes).await {
            // Free on plain TCP; TLS may hold the tail of a record until it.
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| self.lost(e.to_string()))
    }

    /// The next reply, however long it takes (callers bound the wait where they need to).
    /// Cancel-safe: a reply partly read stays buffered for the next call.
    pub async fn read(&mut self) -> Result<Reply, BackendError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(source) => {
                    return Err(BackendError::Protocol {
                        addr: self.addr.to_string(),
                        source,
                    })
                }
            }
            if let Some(needed) = self.decoder.needed() {
                self.buf.reserve(needed.saturating_sub(self.buf.len()));
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(self.lost("closed by the node".into())),
                Ok(_) => {}
                Err(e) => return Err(self.lost(e.to_string())),
            }
        }
    }

    /// Write `bytes` and read `replies` replies.
    pub async fn call(&mut self, bytes: &[u8], replies: usize) -> Result<Vec<Reply>, BackendError> {
        self.write(bytes).await?;
        let mut out = Vec::with_capacity(replies);
        for _ in 0..replies {
            out.push(self.read().await?);
        }
        Ok(out)
    }

    /// True when nothing unread is buffered (safe to hand to another client).
    pub fn is_quiet(&self) -> bool {
        self.buf.is_empty()
    }

    /// True unless the node has closed the connection (or sent something unasked) while it
    /// sat idle. Checked before an idle connection is reused, so a write is never sent into a
    /// connection that is already gone. The probe reads the TCP socket under any TLS layer:
    /// whatever it finds (a close_notify alert included) means the connection is not reused,
    /// so a byte taken from the TLS stream is never missed.
    pub fn still_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            self.stream.tcp().try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    fn lost(&self, reason: String) -> BackendError {
        BackendError::Lost {
            addr: self.addr.to_string(),
            reason,
        }
    }
}

/// A worker's idle dedicated connections, by node.
#[derive(Debug, Default)]
pub struct IdleConns {
    by_addr: HashMap<Arc<str>, Vec<DedicatedConn>>,
}

impl IdleConns {
    /// An idle connection to `addr` speaking RESP3 or not (`resp3`) that is still open, if
    /// there is one; one already in database `db` if there is one.
    pub fn take(&mut self, addr: &str, resp3: bool, db: u32) -> Option<DedicatedConn> {
        let idle = self.by_addr.get_mut(addr)?;
        let find = |idle: &[DedicatedConn]| {
            let alike = idle.iter().rposition(|c| c.resp3 == resp3 && c.db == db);
            alike.or_else(|| idle.iter().rposition(|c| c.resp3 == resp3))
        };
        while let Some(at) = find(idle) {
            let mut conn = idle.swap_remove(at);
            if conn.still_open() {
                return Some(conn);
            }
        }
        None
    }

    /// Keep `conn` for reuse (it must be in a clean state), or close it if enough are idle.
    pub fn put(&mut self, conn: DedicatedConn) {
        if !conn.is_quiet() {
            return;
        }
        let idle = self.by_addr.entry(Arc::clone(&conn.addr)).or_default();
        if idle.len() < IDLE_PER_NODE {
            idle.push(conn);
        }
    }

    /// Close the idle connections for which `stale(node, peer IP)` is true (a node known by
    /// name that resolves elsewhere now); returns how many.
    pub fn close_stale(&mut self, stale: impl Fn(&str, std::net::IpAddr) -> bool) -> usize {
        let mut closed = 0;
        for (addr, idle) in &mut self.by_addr {
            idle.retain(|conn| {
                let keep = !conn.peer_ip().is_some_and(|ip| stale(addr, ip));
                closed += usize::from(!keep);
                keep
            });
        }
        closed
    }

    /// Idle connections held, over all nodes.
    pub fn len(&self) -> usize {
        self.by_addr.values().map(Vec::len).sum()
    }

    /// True when no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
