//! One client connection: read requests, route each one, write replies back in request order.
//!
//! ```text
//!  socket ──read──► RequestDecoder ──► dispatch ──► local reply ─────────┐
//!                                          └──► backend conn … fill() ──►│ ReplyQueue (in order)
//!  socket ◄──one write per turn── ready replies from the queue front ◄───┘
//! ```
//!
//! A session lives on one worker thread for its whole life and shares nothing with other
//! threads on the request path. All requests decoded from one read are dispatched before the
//! worker's backend writers run, so a pipeline leaves in one write per backend.

mod cluster_view;
mod dispatch;
mod local;
mod merge;
mod pinned;
mod pubsub;
mod queue;
mod scan;
mod wait;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant as StdInstant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::resp::{Request, RequestDecoder};
use crate::slot::Slot;
use crate::worker::Worker;

use pinned::{Exclusive, Transaction, Watched};
use pubsub::PubSub;

pub use dispatch::service;
pub use merge::Merge;
pub use queue::{ReplyQueue, ReplyTarget};

/// Replies at least this large are written straight from their buffer instead of being
/// copied into the session's write buffer.
const LARGE_REPLY: usize = 64 * 1024;
/// Initial size of a session's read and write buffers.
const BUFFER_SIZE: usize = 16 * 1024;
/// While an exclusive request (a blocking command, EXEC …) runs, the client is still read, to
/// notice it hanging up, but only up to this many unprocessed bytes.
const READ_AHEAD_WHILE_PINNED: usize = 1024 * 1024;

/// What the proxy knows about one client, for CLIENT and INFO.
#[derive(Debug)]
pub struct ClientInfo {
    /// Proxy-wide unique client id (CLIENT ID).
    pub id: u64,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The proxy's address this client connected to.
    pub local: Option<SocketAddr>,
    /// Name set with CLIENT SETNAME or HELLO SETNAME.
    pub name: Option<Bytes>,
    /// When the client connected.
    pub since: StdInstant,
}

/// State of one client connection.
pub(crate) struct Session {
    worker: Rc<Worker>,
    queue: Rc<ReplyQueue>,
    decoder: RequestDecoder,
    info: ClientInfo,
    /// Stop reading: QUIT was received or the client broke the protocol. The session ends
    /// once every reply before that point has been written.
    closing: bool,
    /// An exclusive request waiting for every earlier reply; nothing after it is dispatched.
    deferred: Option<(Request, Exclusive)>,
    /// The transaction being queued (after MULTI).
    tx: Option<Transaction>,
    /// The connection WATCH pinned.
    watched: Option<Watched>,
    /// The slot of the client's last write, for WAIT.
    last_write: Option<Slot>,
    /// Subscriptions, once the client subscribed.
    pubsub: Option<PubSub>,
    /// The client switched to RESP3 with `HELLO 3`.
    resp3: bool,
    /// The client may run commands (authenticated, or no authentication is configured).
    authenticated: bool,
    /// The named user the client authenticated as (`None`: the unrestricted default user).
    user: Option<std::sync::Arc<crate::auth::User>>,
    /// Reply latency for the worker's histogram (admin `/metrics`).
    clock: crate::stats::ReplyClock,
}

/// Serve one client until it disconnects, QUITs, or breaks the protocol. `stream` is a
/// `TcpStream` or a TLS stream (the caller sets `TCP_NODELAY` and runs any handshake);
/// `peer` and `local` are the TCP addresses, for CLIENT and INFO.
pub async fn serve<S>(
    mut stream: S,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    worker: Rc<Worker>,
    id: u64,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let info = ClientInfo {
        id,
        peer,
        local,
        name: None,
        since: StdInstant::now(),
    };
    let authenticated = !worker.users.required();
    let mut session = Session {
        decoder: RequestDecoder::new(worker.limits),
        worker,
        queue: ReplyQueue::new(),
        info,
        closing: false,
        deferred: None,
        tx: None,
        watched: None,
        last_write: None,
        pubsub: None,
        resp3: false,
        authenticated,
        user: None,
        clock: Default::default(),
    };
    if let Err(e) = session.run(&mut stream).await {
        tracing::debug!(client = id, "client connection ended: {e}");
    }
    session.queue.close();
}

impl Session {
    /// Generic over the stream, so the plaintext path is compiled for `TcpStream` itself.
    /// Reads and writes never overlap (writes happen between reads), so the stream is used
    /// whole, without splitting it.
    async fn run<S>(&mut self, stream: &mut S) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut rbuf = BytesMut::with_capacity(BUFFER_SIZE);
        let mut wbuf = BytesMut::with_capacity(BUFFER_SIZE);
        let max_outstanding = self.worker.max_pipeline_depth;
        let drain = self.worker.drain.listen();
        loop {
            let mut wrote = false;
            let stats = self.worker.stats();
            while let Some((reply, command)) = self.queue.pop_ready() {
                // RESP2 `-` or RESP3 blob error `!`: one byte compare per reply.
                if matches!(reply.first(), Some(b'-' | b'!')) {
                    stats.commands_by().error(command);
                }
                if reply.len() >= LARGE_REPLY {
                    if !wbuf.is_empty() {
                        stream.write_all(&wbuf).await?;
                        stats.client_wrote(wbuf.len());
                        wbuf.clear();
                    }
                    stream.write_all(&reply).await?;
                    stats.client_wrote(reply.len());
                    wrote = true;
                } else {
                    wbuf.extend_from_slice(&reply);
                }
            }
            if !wbuf.is_empty() {
                stream.write_all(&wbuf).await?;
                stats.client_wrote(wbuf.len());
                wbuf.clear();
                wrote = true;
            }
            if wrote {
                // Free on plain TCP; TLS may hold the tail of a record until it.
                stream.flush().await?;
            }
            self.clock
                .written(self.queue.outstanding(), self.worker.stats());
            if self.deferred.is_some() && self.queue.outstanding() == 0 {
                if !self.run_deferred(stream, &mut rbuf).await? {
                    return Ok(()); // The client hung up meanwhile.
                }
                self.process(&mut rbuf);
                continue;
            }
            if self.closing && self.queue.outstanding() == 0 {
                return Ok(());
            }
            // Backpressure: a client with this many replies owed is not read until it drains.
            let may_read = !self.closing
                && self.deferred.is_none()
                && self.queue.outstanding() < max_outstanding;
            tokio::select! {
                biased;
                () = self.queue.wait_ready() => {}
                read = stream.read_buf(&mut rbuf), if may_read => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.worker.stats().client_read(n);
                    self.process(&mut rbuf);
                }
                // Graceful shutdown: finish what is owed (above), read nothing more.
                () = drain.wait(), if !self.closing => self.closing = true,
            }
        }
    }

    /// Run the deferred exclusive request and queue its reply, reading ahead from the client
    /// meanwhile only to notice a hang-up. `false` if the client is gone (which drops the
    /// dedicated connection and so releases the node).
    async fn run_deferred<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        rbuf: &mut BytesMut,
    ) -> std::io::Result<bool> {
        let Some((request, exclusive)) = self.deferred.take() else {
            return Ok(true);
        };
        let worker = Rc::clone(&self.worker);
        let reply = {
            let run = self.exclusive(request, exclusive);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    reply = &mut run => break reply,
                    read = reader.read_buf(rbuf), if rbuf.len() < READ_AHEAD_WHILE_PINNED => {
                        let n = read?;
                        if n == 0 {
                            return Ok(false);
                        }
                        worker.stats().client_read(n);
                    }
                }
            }
        };
        self.queue.push_ready(reply);
        Ok(true)
    }

    /// Decode and dispatch every complete request in `buf`, up to an exclusive one.
    fn process(&mut self, buf: &mut BytesMut) {
        let now = tokio::time::Instant::now();
        let mut count = 0u64;
        while !self.closing && self.deferred.is_none() {
            match self.decoder.decode(buf) {
                Ok(Some(request)) => {
                    count += 1;
                    self.dispatch(request, now);
                }
                Ok(None) => {
                    if let Some(needed) = self.decoder.needed() {
                        buf.reserve(needed.saturating_sub(buf.len()));
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(client = self.info.id, "protocol error: {e}");
                    self.queue.set_command(crate::command::stat_index::OTHER);
                    self.queue.push_ready(e.to_reply());
                    self.closing = true;
                }
            }
        }
        self.worker.stats().add_commands(count);
        self.clock.read(now, count);
    }
}
