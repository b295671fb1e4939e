//! `relay_floor`: the kernel floor of a Redis proxy's data path under two system-call
//! interfaces, epoll and io_uring (issue 22: "evaluate an io_uring data path with a measured
//! A/B"). It is a measuring instrument, not part of slotgate.
//!
//! A single-threaded relay doing the least a cluster proxy can: it reads client requests (RESP
//! arrays), routes each by its first key's slot to one connection per cluster node, matches the
//! replies back to their clients in order, and writes each loop turn's output once per socket.
//! The user-space work is the same under every driver; only the way to the kernel differs:
//! - `epoll`: edge-triggered epoll, a `read` per readable socket, a `write` per socket with
//!   output per loop turn (the calls slotgate's tokio data path makes);
//! - `uring`: io_uring (single issuer, deferred task work), one `recv` in flight per socket, a
//!   turn's sends and its wait submitted together in one `io_uring_enter`; `uring-plain` the
//!   same ring without those two setup flags.
//!
//! With `--work slotgate` (target `relay-work`) each request and reply also gets the work
//! slotgate itself does for it — its request decoder (one `Bytes` per request, kept until
//! the reply for a redirect), command lookup and key positions, slot hash, per-client reply
//! order, command counts, the client and backend latency clocks and histograms — still on
//! this loop, without tokio: what an own event loop would cost slotgate, before its other
//! features (the "own event loop" option of issue 22).
//!
//! `benches/e2e.sh` builds it (`cargo build --release --example relay_floor`) and runs it as
//! targets `relay-epoll` and `relay-uring` beside slotgate and predixy, in the same rounds
//! (docs/BENCHMARKS.md, "The floor of any proxy here"). It serves what
//! `redis-benchmark -t get,set` sends; no MULTI, no pub/sub, no redirects, no reconnects. A
//! malformed request closes its client; a backend that goes away ends the relay.

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("relay_floor measures epoll and io_uring; it runs on Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::VecDeque;
    use std::io;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{IntoRawFd, RawFd};

    use slotgate::slot::Slot;

    /// Bytes one read asks for.
    const READ_SIZE: usize = 16 * 1024;

    /// Parses the command line and runs the chosen driver until killed.
    pub fn main() -> io::Result<()> {
        let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
            eprintln!("relay_floor: {e}\nusage: relay_floor --io epoll|uring|uring-plain [--work forward|slotgate] --listen ADDR --route FIRST-LAST=HOST:PORT ...");
            std::process::exit(2);
        });
        let listener = listen(&args.listen)?;
        let mut relay = Relay::new();
        if args.slotgate_work {
            relay.work = Some(Box::default());
        }
        for (first, last, addr) in &args.routes {
            let node = relay.backend_for(addr)?;
            let node = u8::try_from(node).map_err(|_| io::Error::other("more than 256 nodes"))?;
            relay.node_of_slot[*first as usize..=*last as usize].fill(node);
        }
        eprintln!("relay_floor: {} driver on {}", args.io, args.listen);
        match args.io.as_str() {
            "epoll" => epoll::run(listener, relay),
            io => uring::run(listener, relay, io == "uring"),
        }
    }

    /// A listening socket with room for a connection storm (std's backlog is 128).
    fn listen(addr: &str) -> io::Result<TcpListener> {
        use std::net::ToSocketAddrs;
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or(io::ErrorKind::AddrNotAvailable)?;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        Ok(socket.into())
    }

    /// The command line.
    struct Args {
        io: String,
        listen: String,
        routes: Vec<(u16, u16, String)>,
        /// `--work slotgate`: slotgate's per-request work on top of the forwarding.
        slotgate_work: bool,
    }

    impl Args {
        fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
            let (mut io, mut listen, mut routes) = (None, None, Vec::new());
            let mut slotgate_work = false;
            while let Some(flag) = args.next() {
                let value = args.next().ok_or(format!("{flag} needs a value"))?;
                match flag.as_str() {
                    "--io" if ["epoll", "uring", "uring-plain"].contains(&value.as_str()) => {
                        io = Some(value)
                    }
                    "--listen" => listen = Some(value),
                    "--route" => routes.push(Self::route(&value)?),
                    "--work" if ["forward", "slotgate"].contains(&value.as_str()) => {
                        slotgate_work = value == "slotgate"
                    }
                    _ => return Err(format!("unknown argument {flag} {value}")),
                }
            }
            if routes.is_empty() {
                return Err("at least one --route is needed".into());
            }
            Ok(Args {
                io: io.ok_or("--io epoll|uring|uring-plain is needed")?,
                listen: listen.ok_or("--listen is needed")?,
                routes,
                slotgate_work,
            })
        }

        fn route(spec: &str) -> Result<(u16, u16, String), String> {
            let bad = || format!("bad --route {spec:?}: want FIRST-LAST=HOST:PORT");
            let (range, addr) = spec.split_once('=').ok_or_else(bad)?;
            let (first, last) = range.split_once('-').ok_or_else(bad)?;
            let first: u16 = first.parse().map_err(|_| bad())?;
            let last: u16 = last.parse().map_err(|_| bad())?;
            if first > last || last >= 16384 {
                return Err(bad());
            }
            Ok((first, last, addr.to_string()))
        }
    }

    /// The relay's state, independent of the system-call interface.
    struct Relay {
        node_of_slot: Vec<u8>,
        clients: Vec<Peer>,
        backends: Vec<Peer>,
        /// Per backend, the clients owed its next replies, oldest first.
        waiting: Vec<VecDeque<usize>>,
        backend_addrs: Vec<String>,
        dirty_clients: Vec<usize>,
        dirty_backends: Vec<usize>,
        /// `--work slotgate`: slotgate's per-request work, done here instead of the scanners.
        work: Option<Box<work::Work>>,
    }

    /// One socket's buffers.
    struct Peer {
        fd: RawFd,
        /// An incomplete frame's bytes, kept for the next read.
        partial: Vec<u8>,
        /// Bytes to write at the end of this turn.
        out: Vec<u8>,
        open: bool,
        dirty: bool,
    }

    impl Peer {
        fn new(fd: RawFd) -> Peer {
            Peer {
                fd,
                partial: Vec::new(),
                out: Vec::new(),
                open: true,
                dirty: false,
            }
        }

        /// Puts peer `index` on `dirty` (the sockets to write this turn), once a turn.
        fn mark_dirty(&mut self, dirty: &mut Vec<usize>, index: usize) {
            if !self.dirty {
                self.dirty = true;
                dirty.push(index);
            }
        }

        /// Closes the socket and drops its buffers; replies still owed to it are dropped as
        /// they come. Operations in flight on it (io_uring) keep the file until they end.
        fn close(&mut self) {
            if self.open {
                self.open = false;
                self.out = Vec::new();
                self.partial = Vec::new();
                // SAFETY: an fd this relay owns and has not closed.
                unsafe { libc::close(self.fd) };
            }
        }
    }

    /// Where a request frame ends and where its first key lies.
    enum Scan {
        Complete {
            len: usize,
            key: Option<(usize, usize)>,
        },
        Incomplete,
        Malformed,
    }

    impl Relay {
        fn new() -> Relay {
            Relay {
                node_of_slot: vec![0; 16384],
                clients: Vec::new(),
                backends: Vec::new(),
                waiting: Vec::new(),
                backend_addrs: Vec::new(),
                dirty_clients: Vec::new(),
                dirty_backends: Vec::new(),
                work: None,
            }
        }

        /// The index of the connection to `addr`, connecting on first use.
        fn backend_for(&mut self, addr: &str) -> io::Result<usize> {
            if let Some(i) = self.backend_addrs.iter().position(|a| a == addr) {
                return Ok(i);
            }
            let stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            self.backends.push(Peer::new(stream.into_raw_fd()));
            self.waiting.push(VecDeque::new());
            self.backend_addrs.push(addr.to_string());
            if let Some(work) = self.work.as_mut() {
                work.add_backend();
            }
            Ok(self.backends.len() - 1)
        }

        fn add_client(&mut self, fd: RawFd) -> usize {
            if let Some(work) = self.work.as_mut() {
                work.add_client();
            }
            self.clients.push(Peer::new(fd));
            self.clients.len() - 1
        }

        /// Routes every whole request in a client's new bytes; false when one is malformed.
        fn client_input(&mut self, id: usize, data: &[u8]) -> bool {
            if let Some(work) = self.work.as_mut() {
                return work.client_input(
                    id,
                    data,
                    &self.node_of_slot,
                    &mut self.backends,
                    &mut self.dirty_backends,
                );
            }
            let mut partial = std::mem::take(&mut self.clients[id].partial);
            let ok = consume_whole(&mut partial, data, |buf| self.route_requests(id, buf));
            self.clients[id].partial = partial;
            ok
        }

        /// Routes the whole requests at the start of `buf`: the bytes used, `None` when one
        /// is malformed.
        fn route_requests(&mut self, id: usize, buf: &[u8]) -> Option<usize> {
            let mut pos = 0;
            loop {
                match scan_request(&buf[pos..]) {
                    Scan::Complete { len, key } => {
                        let node = key.map_or(0, |(start, end)| {
                            let key = &buf[pos + start..pos + end];
                            self.node_of_slot[Slot::of(key).get() as usize] as usize
                        });
                        let backend = &mut self.backends[node];
                        backend.out.extend_from_slice(&buf[pos..pos + len]);
                        backend.mark_dirty(&mut self.dirty_backends, node);
                        self.waiting[node].push_back(id);
                        pos += len;
                    }
                    Scan::Incomplete => return Some(pos),
                    Scan::Malformed => return None,
                }
            }
        }

        /// Hands every whole reply in a backend's new bytes to the client owed it.
        fn backend_input(&mut self, node: usize, data: &[u8]) {
            if let Some(work) = self.work.as_mut() {
                work.backend_input(node, data, &mut self.clients, &mut self.dirty_clients);
                return;
            }
            let mut partial = std::mem::take(&mut self.backends[node].partial);
            consume_whole(&mut partial, data, |buf| Some(self.hand_back(node, buf)));
            self.backends[node].partial = partial;
        }

        /// Hands back the whole replies at the start of `buf`; the bytes used.
        fn hand_back(&mut self, node: usize, buf: &[u8]) -> usize {
            let mut pos = 0;
            while let Some(len) = reply_len(&buf[pos..]) {
                let id = self.waiting[node]
                    .pop_front()
                    .expect("a reply nobody asked for");
                let client = &mut self.clients[id];
                if client.open {
                    client.out.extend_from_slice(&buf[pos..pos + len]);
                    client.mark_dirty(&mut self.dirty_clients, id);
                }
                pos += len;
            }
            pos
        }
    }

    /// Runs `consume` over an incomplete frame held from earlier reads followed by `data`
    /// (over `data` alone, uncopied, when nothing is held) and holds what it left for the next
    /// read. `consume` returns the bytes it used, or `None` to give up; false then.
    fn consume_whole(
        held: &mut Vec<u8>,
        data: &[u8],
        consume: impl FnOnce(&[u8]) -> Option<usize>,
    ) -> bool {
        let fresh = held.is_empty();
        if !fresh {
            held.extend_from_slice(data);
        }
        let used = if fresh { consume(data) } else { consume(held) };
        let Some(used) = used else { return false };
        if fresh {
            held.extend_from_slice(&data[used..]);
        } else {
            held.drain(..used);
        }
        true
    }

    /// The end of the CRLF-terminated line starting at `pos` (the index after its `\n`).
    fn line_end(buf: &[u8], pos: usize) -> Option<usize> {
        memchr::memchr(b'\n', &buf[pos..]).map(|i| pos + i + 1)
    }

    /// The number in a header line `<type><digits>\r\n` spanning `pos..end`.
    fn header_number(buf: &[u8], pos: usize, end: usize) -> Option<i64> {
        std::str::from_utf8(buf.get(pos + 1..end.checked_sub(2)?)?)
            .ok()?
            .parse()
            .ok()
    }

    fn scan_request(buf: &[u8]) -> Scan {
        if buf.is_empty() {
            return Scan::Incomplete;
        }
        if buf[0] != b'*' {
            return Scan::Malformed;
        }
        let Some(mut pos) = line_end(buf, 0) else {
            return Scan::Incomplete;
        };
        let Some(count) = header_number(buf, 0, pos).filter(|n| *n > 0) else {
            return Scan::Malformed;
        };
        let mut key = None;
        for arg in 0..count {
            if pos >= buf.len() {
                return Scan::Incomplete;
            }
            if buf[pos] != b'$' {
                return Scan::Malformed;
            }
            let Some(data) = line_end(buf, pos) else {
                return Scan::Incomplete;
            };
            let Some(len) = header_number(buf, pos, data).filter(|n| *n >= 0) else {
                return Scan::Malformed;
            };
            let end = data + len as usize;
            if end + 2 > buf.len() {
                return Scan::Incomplete;
            }
            if arg == 1 {
                key = Some((data, end));
            }
            pos = end + 2;
        }
        Scan::Complete { len: pos, key }
    }

    /// The length of the whole reply at the start of `buf`, `None` while incomplete.
    fn reply_len(buf: &[u8]) -> Option<usize> {
        let (mut pos, mut owed) = (0, 1u64);
        while owed > 0 {
            owed -= 1;
            let kind = *buf.get(pos)?;
            let end = line_end(buf, pos)?;
            match kind {
                b'$' | b'!' | b'=' => {
                    let len = header_number(buf, pos, end)?;
                    pos = if len < 0 { end } else { end + len as usize + 2 };
                    if pos > buf.len() {
                        return None;
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = header_number(buf, pos, end)?.max(0) as u64;
                    owed += if matches!(kind, b'%' | b'|') {
                        2 * n
                    } else {
                        n
                    };
                    pos = end;
                }
                _ => pos = end,
            }
        }
        Some(pos)
    }

    /// slotgate's per-request work without its tokio machinery (`--work slotgate`): the calls
    /// its session and backend connection make for a request routed by key, in the same
    /// order, on slotgate's own types.
    mod work {
        use std::collections::VecDeque;
        use std::time::Instant;

        use bytes::{Bytes, BytesMut};
        use slotgate::backend::redirect::Redirect;
        use slotgate::command::LookupCache;
        use slotgate::resp::{Limits, ReplyDecoder, Request, RequestDecoder};
        use slotgate::slot::Slot;
        use slotgate::stats::{ProxyStats, ReplyClock, WorkerStats};
        use smallvec::SmallVec;

        use super::Peer;

        /// One client's side: its read buffer and decoder, its command cache, its replies in
        /// request order and its reply clock.
        struct Client {
            buf: BytesMut,
            decoder: RequestDecoder,
            lookup: LookupCache,
            clock: ReplyClock,
            /// The sequence number of `places`' front.
            base: u64,
            /// The replies owed, in request order; `None` until it arrives.
            places: VecDeque<Option<Bytes>>,
        }

        /// A request sent and not yet answered: kept whole (a redirect resends it).
        struct InFlight {
            client: usize,
            seq: u64,
            command: usize,
            sent_at: Instant,
            _request: Request,
        }

        /// One backend connection's side.
        struct Backend {
            buf: BytesMut,
            decoder: ReplyDecoder,
            in_flight: VecDeque<InFlight>,
        }

        /// The work's state; indices are the relay's client and backend indices.
        pub struct Work {
            stats: ProxyStats,
            clients: Vec<Client>,
            backends: Vec<Backend>,
            keys: SmallVec<[usize; 8]>,
            /// The clients written to by one backend read, each once: their reply clocks
            /// run once per write, as a session's do.
            wrote: Vec<usize>,
        }

        impl Default for Work {
            fn default() -> Work {
                let unspecified = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                Work {
                    stats: ProxyStats::new(1, unspecified),
                    clients: Vec::new(),
                    backends: Vec::new(),
                    keys: SmallVec::new(),
                    wrote: Vec::new(),
                }
            }
        }

        impl Work {
            pub fn add_client(&mut self) {
                self.stats.worker(0).client_connected();
                self.clients.push(Client {
                    buf: BytesMut::new(),
                    decoder: RequestDecoder::new(Limits::default()),
                    lookup: LookupCache::default(),
                    clock: ReplyClock::default(),
                    base: 0,
                    places: VecDeque::new(),
                });
            }

            pub fn add_backend(&mut self) {
                self.backends.push(Backend {
                    buf: BytesMut::new(),
                    decoder: ReplyDecoder::new(Limits::default()),
                    in_flight: VecDeque::new(),
                });
            }

            /// Decodes, looks up, routes and queues every whole request of a client's new
            /// bytes; false when one is malformed or names an unknown command.
            pub fn client_input(
                &mut self,
                id: usize,
                data: &[u8],
                node_of_slot: &[u8],
                backends: &mut [Peer],
                dirty: &mut Vec<usize>,
            ) -> bool {
                let stats = self.stats.worker(0);
                stats.client_read(data.len());
                let client = &mut self.clients[id];
                client.buf.extend_from_slice(data);
                let now = Instant::now();
                let mut count = 0u64;
                loop {
                    let request = match client.decoder.decode(&mut client.buf) {
                        Ok(Some(request)) => request,
                        Ok(None) => break,
                        Err(_) => return false,
                    };
                    let args = request.args();
                    let Some((spec, command)) = client.lookup.lookup_counted(&args[..]) else {
                        return false;
                    };
                    stats.commands_by().request(command);
                    if spec.routing_args(&args[..], &mut self.keys).is_err() {
                        return false;
                    }
                    // A request without a key goes to the first node, as the forwarder's do.
                    let node = self.keys.first().map_or(0, |&key| {
                        usize::from(node_of_slot[Slot::of(args[key]).index()])
                    });
                    drop(args);
                    let backend = &mut backends[node];
                    backend.out.extend_from_slice(request.raw());
                    backend.mark_dirty(dirty, node);
                    let seq = client.base + client.places.len() as u64;
                    client.places.push_back(None);
                    self.backends[node].in_flight.push_back(InFlight {
                        client: id,
                        seq,
                        command,
                        sent_at: now,
                        _request: request,
                    });
                    count += 1;
                }
                stats.add_commands(count);
                client.clock.read(now.into(), count);
                true
            }

            /// Decodes every whole reply of a backend's new bytes, times it, checks it for a
            /// redirect and puts it in its client's order; writes what is ready.
            pub fn backend_input(
                &mut self,
                node: usize,
                data: &[u8],
                clients: &mut [Peer],
                dirty: &mut Vec<usize>,
            ) {
                let stats: &WorkerStats = self.stats.worker(0);
                stats.backend_read(data.len());
                let backend = &mut self.backends[node];
                backend.buf.extend_from_slice(data);
                let now = Instant::now();
                while let Ok(Some(reply)) = backend.decoder.decode(&mut backend.buf) {
                    let sent = backend
                        .in_flight
                        .pop_front()
                        .expect("a reply nobody asked for");
                    stats
                        .backend_latency()
                        .record(now.saturating_duration_since(sent.sent_at), 1);
                    if let Some(message) = reply.error_message() {
                        stats.commands_by().error(sent.command);
                        if Redirect::classify(message).is_some() {
                            stats.moved();
                        }
                    }
                    let client = &mut self.clients[sent.client];
                    let Some(place) = sent
                        .seq
                        .checked_sub(client.base)
                        .and_then(|i| client.places.get_mut(i as usize))
                    else {
                        continue;
                    };
                    *place = Some(reply.into_raw());
                    let peer = &mut clients[sent.client];
                    while let Some(Some(_)) = client.places.front() {
                        let Some(Some(ready)) = client.places.pop_front() else {
                            break;
                        };
                        client.base += 1;
                        if peer.open {
                            peer.out.extend_from_slice(&ready);
                            if !peer.dirty {
                                self.wrote.push(sent.client);
                            }
                            peer.mark_dirty(dirty, sent.client);
                        }
                    }
                }
                for id in self.wrote.drain(..) {
                    let client = &mut self.clients[id];
                    client.clock.written(client.places.len(), stats);
                }
            }
        }
    }

    fn set_nodelay(fd: RawFd) {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    fn backend_gone(node: usize) -> ! {
        eprintln!("relay_floor: backend {node} closed its connection");
        std::process::exit(1);
    }

    /// The epoll driver: edge-triggered readiness, plain `read` and `write`.
    mod epoll {
        use super::*;
        use std::os::fd::AsRawFd;

        const LISTENER: u64 = u64::MAX;
        const BACKEND: u64 = 1 << 40;

        fn check(r: libc::c_int) -> io::Result<libc::c_int> {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r)
            }
        }

        fn add(ep: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
            let flags = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET | libc::EPOLLRDHUP;
            let mut ev = libc::epoll_event {
                events: flags as u32,
                u64: token,
            };
            // SAFETY: `ev` is a valid epoll_event for the call's duration.
            check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
        }

        /// Reads until the socket is drained; `false` when the peer closed or failed.
        fn drain(fd: RawFd, buf: &mut [u8], mut on_data: impl FnMut(&[u8]) -> bool) -> bool {
            loop {
                // SAFETY: `buf` is writable for its length.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    if !on_data(&buf[..n as usize]) {
                        return false;
                    }
                    if (n as usize) < buf.len() {
                        return true;
                    }
                } else if n == 0 {
                    return false;
                } else {
                    let err = io::Error::last_os_error().kind();
                    if err == io::ErrorKind::WouldBlock {
                        return true;
                    }
                    if err != io::ErrorKind::Interrupted {
                        return false;
                    }
                }
            }
        }

        /// Writes what it can of `peer.out`; what is left waits for `EPOLLOUT`.
        fn flush(peer: &mut Peer) -> bool {
            let mut written = 0;
            while written < peer.out.len() {
                let rest = &peer.out[written..];
                // SAFETY: `rest` is readable for its length.
                let n = unsafe { libc::write(peer.fd, rest.as_ptr().cast(), rest.len()) };
                if n >= 0 {
                    written += n as usize;
                    continue;
                }
                match io::Error::last_os_error().kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => {}
                    _ => return false,
                }
            }
            peer.out.drain(..written);
            true
        }

        fn close_client(ep: RawFd, relay: &mut Relay, id: usize) {
            let client = &mut relay.clients[id];
            if client.open {
                // SAFETY: an fd this relay accepted and has not closed.
                unsafe {
                    libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, client.fd, std::ptr::null_mut())
                };
                client.close();
            }
        }

        /// Serves until killed.
        pub fn run(listener: TcpListener, mut relay: Relay) -> io::Result<()> {
            listener.set_nonblocking(true)?;
            // SAFETY: plain system call.
            let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
            add(ep, listener.as_raw_fd(), LISTENER)?;
            for (node, backend) in relay.backends.iter().enumerate() {
                // SAFETY: a socket this relay owns.
                unsafe {
                    let flags = libc::fcntl(backend.fd, libc::F_GETFL);
                    libc::fcntl(backend.fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
                add(ep, backend.fd, BACKEND | node as u64)?;
            }
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                // SAFETY: `events` is writable for its length.
                let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 1024, -1) };
                if n < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(io::Error::last_os_error());
                }
                for ev in &events[..n as usize] {
                    let (token, flags) = (ev.u64, ev.events as i32);
                    if token == LISTENER {
                        loop {
                            // SAFETY: accepting on the listening socket.
                            let fd = unsafe {
                                libc::accept4(
                                    listener.as_raw_fd(),
                                    std::ptr::null_mut(),
                                    std::ptr::null_mut(),
                                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                                )
                            };
                            if fd < 0 {
                                break;
                            }
                            set_nodelay(fd);
                            let id = relay.add_client(fd);
                            add(ep, fd, id as u64)?;
                        }
                    } else if token & BACKEND != 0 {
                        let node = (token & !BACKEND) as usize;
                        if flags & libc::EPOLLIN != 0 {
                            let fd = relay.backends[node].fd;
                            if !drain(fd, &mut buf, |d| {
                                relay.backend_input(node, d);
                                true
                            }) {
                                backend_gone(node);
                            }
                        }
                        let backend = &mut relay.backends[node];
                        if flags & libc::EPOLLOUT != 0 && !backend.out.is_empty() {
                            backend.mark_dirty(&mut relay.dirty_backends, node);
                        }
                    } else {
                        let id = token as usize;
                        if !relay.clients[id].open {
                            continue;
                        }
                        if flags & libc::EPOLLIN != 0 {
                            let fd = relay.clients[id].fd;
                            if !drain(fd, &mut buf, |d| relay.client_input(id, d)) {
                                close_client(ep, &mut relay, id);
                                continue;
                            }
                        }
                        let client = &mut relay.clients[id];
                        if flags & libc::EPOLLOUT != 0 && !client.out.is_empty() {
                            client.mark_dirty(&mut relay.dirty_clients, id);
                        }
                    }
                }
                for node in std::mem::take(&mut relay.dirty_backends) {
                    let backend = &mut relay.backends[node];
                    backend.dirty = false;
                    if !flush(backend) {
                        backend_gone(node);
                    }
                }
                for id in std::mem::take(&mut relay.dirty_clients) {
                    let client = &mut relay.clients[id];
                    client.dirty = false;
                    if client.open && !flush(client) {
                        close_client(ep, &mut relay, id);
                    }
                }
            }
        }
    }

    /// The io_uring driver: a `recv` in flight per socket, sends and the wait in one submission.
    mod uring {
        use super::*;
        use io_uring::{cqueue, opcode, squeue, types, IoUring};
        use std::os::fd::AsRawFd;

        const ACCEPT: u64 = 0;
        const CLIENT_RECV: u64 = 1;
        const CLIENT_SEND: u64 = 2;
        const BACKEND_RECV: u64 = 3;
        const BACKEND_SEND: u64 = 4;

        fn token(kind: u64, index: usize) -> u64 {
            kind << 56 | index as u64
        }

        /// A socket's buffers owned by the kernel while an operation is in flight.
        struct SockIo {
            recv_buf: Box<[u8]>,
            sending: Vec<u8>,
            sent: usize,
            send_in_flight: bool,
        }

        impl SockIo {
            fn new() -> SockIo {
                SockIo {
                    recv_buf: vec![0; READ_SIZE].into_boxed_slice(),
                    sending: Vec::new(),
                    sent: 0,
                    send_in_flight: false,
                }
            }
        }

        /// Queues `entry`, submitting first when the queue is full.
        fn push(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<()> {
            loop {
                // SAFETY: every buffer an entry names lives in a `SockIo` that outlives the
                // operation (sockets' `SockIo`s are never dropped while the relay runs).
                if unsafe { ring.submission().push(&entry) }.is_ok() {
                    return Ok(());
                }
                ring.submit()?;
            }
        }

        fn recv(ring: &mut IoUring, fd: RawFd, io: &mut SockIo, tok: u64) -> io::Result<()> {
            let op = opcode::Recv::new(types::Fd(fd), io.recv_buf.as_mut_ptr(), READ_SIZE as u32);
            push(ring, op.build().user_data(tok))
        }

        fn send(ring: &mut IoUring, fd: RawFd, io: &mut SockIo, tok: u64) -> io::Result<()> {
            let rest = &io.sending[io.sent..];
            let op = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32);
            io.send_in_flight = true;
            push(ring, op.build().user_data(tok))
        }

        /// Moves a peer's output into its `SockIo` and sends it, unless a send is in flight
        /// (then the output waits for that send's completion).
        fn start_send(
            ring: &mut IoUring,
            peer: &mut Peer,
            io: &mut SockIo,
            tok: u64,
        ) -> io::Result<()> {
            peer.dirty = false;
            if io.send_in_flight || peer.out.is_empty() || !peer.open {
                return Ok(());
            }
            std::mem::swap(&mut peer.out, &mut io.sending);
            peer.out.clear();
            io.sent = 0;
            send(ring, peer.fd, io, tok)
        }

        /// Serves until killed; `deferred`: completions' task work runs only when the relay
        /// waits (single issuer, deferred task running), else the kernel's default.
        pub fn run(listener: TcpListener, mut relay: Relay, deferred: bool) -> io::Result<()> {
            let mut builder = IoUring::builder();
            if deferred {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            let mut ring: IoUring = builder.setup_cqsize(32 * 1024).build(4096)?;
            let lfd = listener.as_raw_fd();
            push(
                &mut ring,
                opcode::AcceptMulti::new(types::Fd(lfd))
                    .build()
                    .user_data(token(ACCEPT, 0)),
            )?;
            let mut client_io: Vec<SockIo> = Vec::new();
            let mut backend_io: Vec<SockIo> =
                relay.backends.iter().map(|_| SockIo::new()).collect();
            for (node, io) in backend_io.iter_mut().enumerate() {
                recv(
                    &mut ring,
                    relay.backends[node].fd,
                    io,
                    token(BACKEND_RECV, node),
                )?;
            }
            let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
            loop {
                match ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                done.extend(
                    ring.completion()
                        .map(|c| (c.user_data(), c.result(), c.flags())),
                );
                for (tok, res, flags) in done.drain(..) {
                    let (kind, index) = (tok >> 56, (tok & ((1 << 56) - 1)) as usize);
                    match kind {
                        ACCEPT => {
                            if res >= 0 {
                                set_nodelay(res);
                                let id = relay.add_client(res);
                                client_io.push(SockIo::new());
                                recv(&mut ring, res, &mut client_io[id], token(CLIENT_RECV, id))?;
                            }
                            if !cqueue::more(flags) {
                                let op = opcode::AcceptMulti::new(types::Fd(lfd));
                                push(&mut ring, op.build().user_data(token(ACCEPT, 0)))?;
                            }
                        }
                        CLIENT_RECV => {
                            let io = &mut client_io[index];
                            if res > 0 && relay.client_input(index, &io.recv_buf[..res as usize]) {
                                recv(&mut ring, relay.clients[index].fd, io, tok)?;
                            } else {
                                relay.clients[index].close();
                            }
                        }
                        BACKEND_RECV => {
                            if res <= 0 {
                                backend_gone(index);
                            }
                            let io = &mut backend_io[index];
                            relay.backend_input(index, &io.recv_buf[..res as usize]);
                            recv(&mut ring, relay.backends[index].fd, io, tok)?;
                        }
                        CLIENT_SEND | BACKEND_SEND => {
                            let (peer, io) = if kind == CLIENT_SEND {
                                (&mut relay.clients[index], &mut client_io[index])
                            } else {
                                (&mut relay.backends[index], &mut backend_io[index])
                            };
                            io.send_in_flight = false;
                            if res < 0 {
                                if kind == BACKEND_SEND {
                                    backend_gone(index);
                                }
                                continue;
                            }
                            io.sent += res as usize;
                            if io.sent < io.sending.len() {
                                send(&mut ring, peer.fd, io, tok)?;
                            } else if !peer.out.is_empty() {
                                start_send(&mut ring, peer, io, tok)?;
                            }
                        }
                        _ => unreachable!("unknown token {tok:#x}"),
                    }
                }
                for node in std::mem::take(&mut relay.dirty_backends) {
                    let tok = token(BACKEND_SEND, node);
                    start_send(
                        &mut ring,
                        &mut relay.backends[node],
                        &mut backend_io[node],
                        tok,
                    )?;
                }
                for id in std::mem::take(&mut relay.dirty_clients) {
                    let tok = token(CLIENT_SEND, id);
                    start_send(&mut ring, &mut relay.clients[id], &mut client_io[id], tok)?;
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn requests_are_scanned_whole_with_their_first_key() {
            let req = b"*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n";
            match scan_request(req) {
                Scan::Complete {
                    len,
                    key: Some((s, e)),
                } => {
                    assert_eq!(len, req.len());
                    assert_eq!(&req[s..e], b"foo");
                }
                _ => panic!("not scanned"),
            }
            for cut in 0..req.len() {
                assert!(
                    matches!(scan_request(&req[..cut]), Scan::Incomplete),
                    "cut {cut}"
                );
            }
            assert!(matches!(scan_request(b"GET foo\r\n"), Scan::Malformed));
        }

        #[test]
        fn frames_split_across_reads_are_forwarded_whole_and_in_order() {
            let mut relay = Relay::new();
            relay.backends.push(Peer::new(-1));
            relay.waiting.push(VecDeque::new());
            let (a, b) = (relay.add_client(-1), relay.add_client(-1));
            let get = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
            assert!(relay.client_input(a, &get[..7]));
            assert!(relay.backends[0].out.is_empty());
            assert!(relay.client_input(b, get));
            assert!(relay.client_input(a, &get[7..]));
            assert_eq!(relay.backends[0].out, [&get[..], get].concat());
            assert_eq!(relay.waiting[0], [b, a]);

            relay.backend_input(0, b"$3\r\nbar\r\n$-");
            relay.backend_input(0, b"1\r\n");
            assert_eq!(relay.clients[b].out, b"$3\r\nbar\r\n");
            assert_eq!(relay.clients[a].out, b"$-1\r\n");
            assert!(relay.waiting[0].is_empty());
            assert!(
                !relay.client_input(a, b"GET foo\r\n"),
                "inline requests are refused"
            );
        }

        #[test]
        fn slotgate_work_routes_by_key_and_answers_in_request_order() {
            let mut relay = Relay::new();
            relay.work = Some(Box::default());
            for _ in 0..2 {
                relay.backends.push(Peer::new(-1));
                relay.waiting.push(VecDeque::new());
                relay.work.as_mut().unwrap().add_backend();
            }
            // "b" hashes to slot 3300 (node 0), "a" to 15495 (node 1).
            relay.node_of_slot[8192..].fill(1);
            let c = relay.add_client(-1);
            let (get_a, get_b) = (
                b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
                b"*2\r\n$3\r\nget\r\n$1\r\nb\r\n",
            );
            let both = [&get_a[..], get_b].concat();
            assert!(relay.client_input(c, &both[..9]));
            assert!(relay.backends.iter().all(|b| b.out.is_empty()));
            assert!(relay.client_input(c, &both[9..]));
            assert_eq!(relay.backends[1].out, get_a);
            assert_eq!(relay.backends[0].out, get_b);
            // The second request's reply first: held until the first one's is in.
            relay.backend_input(0, b"$2\r\nvb\r\n");
            assert!(relay.clients[c].out.is_empty());
            relay.backend_input(1, b"$2\r\nva");
            assert!(relay.clients[c].out.is_empty());
            relay.backend_input(1, b"\r\n");
            assert_eq!(relay.clients[c].out, b"$2\r\nva\r\n$2\r\nvb\r\n");
            assert!(relay.client_input(c, b"*1\r\n$4\r\nPING\r\n"));
            assert!(
                relay.backends[0].out.ends_with(b"PING\r\n"),
                "no key: node 0"
            );
            assert!(
                !relay.client_input(c, b"*1\r\n$4\r\nNOPE\r\n"),
                "an unknown command closes the client"
            );
        }

        #[test]
        fn replies_are_measured_whole() {
            for reply in [
                &b"+OK\r\n"[..],
                b"$-1\r\n",
                b"$3\r\nbar\r\n",
                b"*2\r\n$1\r\na\r\n:1\r\n",
                b"%1\r\n+a\r\n*-1\r\n",
            ] {
                assert_eq!(reply_len(reply), Some(reply.len()));
                for cut in 0..reply.len() {
                    assert_eq!(reply_len(&reply[..cut]), None, "{reply:?} cut {cut}");
                }
            }
        }
    }
}
