//! The registry of connected clients, for `CLIENT LIST` and `CLIENT KILL` across workers.
//!
//! Registration (connect) and removal (disconnect) take the registry's lock; nothing else on
//! the request path does. What a session changes while it runs (last command, activity, name,
//! flags) lives in its own [`Client`], behind an `Arc`: relaxed atomics the session writes
//! once per read batch, and mutexes only for the rare changes (CLIENT SETNAME, AUTH).
//! `CLIENT KILL` raises [`Client::kill`]; the session waits on [`Client::killed`], which a
//! kill wakes from any thread, so even an idle client is closed at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use atomic_waker::AtomicWaker;
use bytes::Bytes;

/// Every connected client of the proxy, by id.
#[derive(Debug)]
pub struct Registry {
    /// Activity times are stored as milliseconds since this instant.
    epoch: Instant,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
}

/// What is known about one connected client. Written by its own session, read by CLIENT LIST
/// and INFO from any worker.
#[derive(Debug)]
pub struct Client {
    /// Proxy-wide unique id (CLIENT ID).
    pub id: u64,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The proxy's address the client connected to.
    pub local: Option<SocketAddr>,
    /// The socket's file descriptor (-1 if unknown).
    pub fd: i64,
    /// When the client connected.
    pub since: Instant,
    name: Mutex<Option<Bytes>>,
    user: Mutex<Option<Arc<str>>>,
    /// Milliseconds since the registry's epoch at the last read batch.
    active_ms: AtomicU64,
    /// [`crate::command::id_of`] the last command (0: none yet).
    last_cmd: AtomicU16,
    /// Channel, pattern and shard-channel subscriptions.
    subs: [AtomicU32; 3],
    /// Commands queued in MULTI, or -1 outside a transaction.
    multi: AtomicI64,
    /// 2 or 3.
    resp: AtomicU8,
    /// The database the client selected (set by its session when it changes).
    db: AtomicU32,
    killed: AtomicBool,
    waker: AtomicWaker,
}

/// Activity a session publishes once per read batch.
#[derive(Clone, Copy, Debug)]
pub struct Activity {
    /// [`crate::command::id_of`] the batch's last command (0: keep the previous one).
    pub last_cmd: u16,
    /// Channel, pattern and shard-channel subscriptions.
    pub subs: [u32; 3],
    /// Commands queued in MULTI, or -1.
    pub multi: i64,
    /// The protocol, 2 or 3.
    pub resp: u8,
}

/// A client's place in the registry: removes it when dropped (the session ended).
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    client: Arc<Client>,
}

/// Which clients a `CLIENT KILL` or `CLIENT LIST` names. Every filter set must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// `ID id …`.
    pub ids: Option<Vec<u64>>,
    /// `ADDR ip:port`.
    pub addr: Option<String>,
    /// `LADDR ip:port`.
    pub laddr: Option<String>,
    /// `USER name`.
    pub user: Option<String>,
    /// `TYPE pubsub` (`Some(true)`) or `TYPE normal` (`Some(false)`).
    pub pubsub: Option<bool>,
    /// `MAXAGE seconds`: clients connected at least this long ago.
    pub max_age_secs: Option<u64>,
    /// `SKIPME yes` (the default for the new KILL form): never the client asking.
    pub skip: Option<u64>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            epoch: Instant::now(),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Add a client that just connected; it stays until the registration is dropped.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        fd: i64,
    ) -> Registration {
        let client = Arc::new(Client {
            id,
            peer,
            local,
            fd,
            since: Instant::now(),
            name: Mutex::new(None),
            user: Mutex::new(None),
            active_ms: AtomicU64::new(self.now_ms()),
            last_cmd: AtomicU16::new(0),
            subs: Default::default(),
            multi: AtomicI64::new(-1),
            resp: AtomicU8::new(2),
            db: AtomicU32::new(0),
            killed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        lock(&self.clients).insert(id, Arc::clone(&client));
        Registration {
            registry: Arc::clone(self),
            client,
        }
    }

    /// Every connected client, by id.
    pub fn list(&self) -> Vec<Arc<Client>> {
        let mut all: Vec<Arc<Client>> = lock(&self.clients).values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Clients connected now.
    pub fn len(&self) -> usize {
        lock(&self.clients).len()
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kill every client `filter` matches; returns how many.
    pub fn kill(&self, filter: &Filter) -> usize {
        let mut killed = 0;
        for client in self.list() {
            if filter.matches(&client) {
                client.kill();
                killed += 1;
            }
        }
        killed
    }

    /// Milliseconds since the registry's epoch.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Seconds `client` has been idle (since its last read batch).
    pub fn idle_secs(&self, client: &Client) -> u64 {
        self.now_ms().saturating_sub(client.active_ms.load(Relaxed)) / 1000
    }
}

impl Registration {
    /// The registered client.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Publish a read batch's activity. Relaxed stores to this client's own struct: no lock.
    #[inline]
    pub fn active(&self, at: Instant, activity: Activity) {
        let c = &self.client;
        let ms = at
            .saturating_duration_since(self.registry.epoch)
            .as_millis();
        c.active_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Relaxed);
        if activity.last_cmd != 0 {
            c.last_cmd.store(activity.last_cmd, Relaxed);
        }
        for (count, n) in c.subs.iter().zip(activity.subs) {
            count.store(n, Relaxed);
        }
        c.multi.store(activity.multi, Relaxed);
        c.resp.store(activity.resp, Relaxed);
    }
}

impl std::ops::Deref for Registration {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.clients).remove(&self.client.id);
    }
}

impl Client {
    /// The name set with CLIENT SETNAME or HELLO SETNAME.
    pub fn name(&self) -> Option<Bytes> {
        lock(&self.name).clone()
    }

    /// Set (or with `None` clear) the client's name.
    pub fn set_name(&self, name: Option<Bytes>) {
        *lock(&self.name) = name;
    }

    /// The client selected database `db` (`SELECT`, `RESET`).
    pub fn set_db(&self, db: u32) {
        self.db.store(db, Relaxed);
    }

    /// The user the client authenticated as (`default` when none).
    pub fn user(&self) -> Arc<str> {
        lock(&self.user)
            .clone()
            .unwrap_or_else(|| Arc::from("default"))
    }

    /// The client authenticated as `user` (`None`: the default user).
    pub fn set_user(&self, user: Option<&str>) {
        *lock(&self.user) = user.map(Arc::from);
    }

    /// The full name of the last command (`client|list`), if any.
    pub fn last_command(&self) -> Option<&'static str> {
        crate::command::by_id(self.last_cmd.load(Relaxed)).map(|s| s.name)
    }

    /// Close this client: its session ends at its next turn, even when idle.
    pub fn kill(&self) {
        self.killed.store(true, Release);
        self.waker.wake();
    }

    /// True once [`Client::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Acquire)
    }

    /// Resolves once the client is killed. Polling registers the task's waker without a
    /// lock, so the session may select on it every turn.
    pub fn killed(&self) -> Killed<'_> {
        Killed(self)
    }

    /// One `CLIENT LIST` / `CLIENT INFO` line in Redis' format (without the newline).
    /// `outstanding`: replies owed (`oll`), known only to the client's own session.
    pub fn line(&self, registry: &Registry, outstanding: Option<usize>) -> String {
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let name = self
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        let [sub, psub, ssub] = [0, 1, 2].map(|i| self.subs[i].load(Relaxed));
        let multi = self.multi.load(Relaxed);
        let flags = if sub + psub + ssub > 0 {
            "P"
        } else if multi >= 0 {
            "x"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={} sub={sub} \
             psub={psub} ssub={ssub} multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 \
             rbs=0 rbp=0 obl=0 oll={} omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={}",
            self.id,
            addr(self.peer),
            addr(self.local),
            self.fd,
            name,
            self.since.elapsed().as_secs(),
            registry.idle_secs(self),
            self.db.load(Relaxed),
            outstanding.unwrap_or(0),
            self.last_command().unwrap_or("NULL"),
            self.user(),
            self.resp.load(Relaxed),
        )
    }
}

/// The future of [`Client::killed`].
#[derive(Debug)]
pub struct Killed<'a>(&'a Client);

impl Future for Killed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_killed() {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        // Checked again after registering, so a kill in between is not missed.
        if self.0.is_killed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Filter {
    /// True when `client` matches every filter set.
    pub fn matches(&self, client: &Client) -> bool {
        let addr_is = |want: &Option<String>, have: Option<SocketAddr>| match want {
            None => true,
            Some(w) => have.is_some_and(|a| a.to_string() == *w),
        };
        if self.skip == Some(client.id) {
            return false;
        }
        if let Some(ids) = &self.ids {
            if !ids.contains(&client.id) {
                return false;
            }
        }
        if !addr_is(&self.addr, client.peer) || !addr_is(&self.laddr, client.local) {
            return false;
        }
        if let Some(user) = &self.user {
            if *client.user() != **user {
                return false;
            }
        }
        if let Some(pubsub) = self.pubsub {
            let subscribed = client.subs.iter().any(|s| s.load(Relaxed) > 0);
            if subscribed != pubsub {
                return false;
            }
        }
        if let Some(max_age) = self.max_age_secs {
            if client.since.elapsed().as_secs() < max_age {
                return false;
            }
        }
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn registration_lives_as_long_as_the_session() {
        let registry = Registry::new();
        let a = registry.register(1, addr("127.0.0.1:5000"), addr("127.0.0.1:6380"), 7);
        let b = registry.register(2, addr("127.0.0.1:5001"), addr("127.0.0.1:6380"), 8);
        assert_eq!(registry.len(), 2);
        drop(a);
        let left: Vec<u64> = registry.list().iter().map(|c| c.id).collect();
        assert_eq!(left, [2]);
        drop(b);
        assert!(registry.is_empty());
    }

    #[test]
    fn filters_select_and_skipme_spares_the_caller() {
        let registry = Registry::new();
        let a = registry.register(1, addr("127.0.0.1:5000"), addr("127.0.0.1:6380"), 7);
        let b = registry.register(2, addr("127.0.0.1:5001"), addr("127.0.0.1:6380"), 8);
        b.client().set_user(Some("app"));
        let by_addr = Filter {
            addr: Some("127.0.0.1:5001".into()),
            ..Filter::default()
        };
        assert!(!by_addr.matches(a.client()) && by_addr.matches(b.client()));
        let by_laddr_skip = Filter {
            laddr: Some("127.0.0.1:6380".into()),
            skip: Some(1),
            ..Filter::default()
        };
        assert_eq!(registry.kill(&by_laddr_skip), 1);
        assert!(b.client().is_killed() && !a.client().is_killed());
        let by_user = Filter {
            user: Some("default".into()),
            ..Filter::default()
        };
        assert!(by_user.matches(a.client()) && !by_user.matches(b.client()));
        let old = |secs| Filter {
            max_age_secs: Some(secs),
            ..Filter::default()
        };
        assert!(old(0).matches(a.client()) && !old(1000).matches(a.client()));
        let pubsub = Filter {
            pubsub: Some(true),
            ..Filter::default()
        };
        assert!(!pubsub.matches(a.client()));
        a.active(
            Instant::now(),
            Activity {
                last_cmd: 0,
                subs: [1, 0, 0],
                multi: -1,
                resp: 2,
            },
        );
        assert!(pubsub.matches(a.client()));
        assert!(a.client().line(&registry, None).contains(" flags=P "));
    }

    #[tokio::test]
    async fn a_kill_wakes_the_waiting_session() {
        let registry = Registry::new();
        let reg = registry.register(9, None, None, -1);
        let client = Arc::clone(reg.client());
        let waiter = tokio::spawn(async move {
            reg.client().killed().await;
        });
        tokio::task::yield_now().await;
        client.kill();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the kill woke the waiter")
            .expect("the waiter ran");
    }

    #[test]
    fn lines_follow_redis_format() {
        let registry = Registry::new();
        let reg = registry.register(5, addr("10.0.0.1:4000"), addr("10.0.0.2:6380"), 11);
        reg.client().set_name(Some(Bytes::from_static(b"worker")));
        let get = crate::command::lookup(&[&b"GET"[..], b"k"]).map(crate::command::id_of);
        reg.active(
            Instant::now(),
            Activity {
                last_cmd: get.unwrap_or(0),
                subs: [0; 3],
                multi: -1,
                resp: 2,
            },
        );
        let line = reg.client().line(&registry, Some(0));
        assert!(line.starts_with(
            "id=5 addr=10.0.0.1:4000 laddr=10.0.0.2:6380 fd=11 name=worker age=0 idle=0 flags=N db=0"
        ));
        assert!(line.contains(" cmd=get user=default "), "{line}");
    }
}
