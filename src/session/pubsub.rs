//! Pub/Sub through the proxy: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs.
//!
//! ```text
//!  client ──SUBSCRIBE a b──► session: a, b → master of slot 0; SSUBSCRIBE s → master of slot(s)
//!                              │ one link per node (a dedicated connection, its own task)
//!  client ◄──confirmations───  │ each sent when that node confirmed, counted by the session
//!  client ◄──messages─────────link: message / pmessage / smessage, passed through
//! ```
//!
//! The session keeps the client's subscriptions itself and writes the confirmations (with the
//! counts one Redis would give); the nodes' own confirmations only say when a subscription is
//! live. Channels and patterns are subscribed on the master of slot 0: a cluster broadcasts
//! PUBLISH to every node, so each message arrives exactly once wherever it was published, and
//! PUBLISH, routed to that same master, counts every slotgate subscriber it reaches (channel
//! and pattern alike), as one Redis would. Sharded channels live on their slot's master
//! (SPUBLISH goes there too). The price: every slotgate subscriber sits on one master.
//!
//! Failover: when a link breaks, its subscriptions are made again, after a short pause and a
//! topology refresh, on whichever node now serves their slots; messages published in between
//! are lost, as with any Redis disconnect. A sharded channel whose slot moves away (the node
//! sends an unasked `sunsubscribe`) is subscribed again at its new home the same way.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::WorkerContext;
use crate::backend::BackendError;
use crate::resp::{encode, parse_frame, Frame, Reply};

use super::dispatch::{error, printable};
use super::{ReplyQueue, ReplyTarget, Session};

/// Pause before subscriptions of a broken link are made again.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(300);

/// The three kinds of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubKind {
    /// SUBSCRIBE: a channel.
    Channel,
    /// PSUBSCRIBE: a glob pattern of channels.
    Pattern,
    /// SSUBSCRIBE: a sharded channel.
    Shard,
}

impl SubKind {
    fn index(self) -> usize {
        self as usize
    }

    fn subscribe_word(self) -> &'static str {
        ["subscribe", "psubscribe", "ssubscribe"][self.index()]
    }

    fn unsubscribe_word(self) -> &'static str {
        ["unsubscribe", "punsubscribe", "sunsubscribe"][self.index()]
    }
}

/// A subscription command: which kind, and subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sub {
    /// What is (un)subscribed.
    pub kind: SubKind,
    /// SUBSCRIBE rather than UNSUBSCRIBE.
    pub subscribe: bool,
}

impl Sub {
    /// The subscription command `name` (lowercase table name) is, if any.
    pub(super) fn of(name: &str) -> Option<Sub> {
        let (kind, subscribe) = match name {
            "subscribe" => (SubKind::Channel, true),
            "unsubscribe" => (SubKind::Channel, false),
            "psubscribe" => (SubKind::Pattern, true),
            "punsubscribe" => (SubKind::Pattern, false),
            "ssubscribe" => (SubKind::Shard, true),
            "sunsubscribe" => (SubKind::Shard, false),
            _ => return None,
        };
        Some(Sub { kind, subscribe })
    }
}

/// Per subscription command sent on a link, in order: what to do when the node confirms it.
type Owed = Rc<RefCell<VecDeque<Confirm>>>;

/// What a node's confirmation of a subscription command releases.
enum Confirm {
    /// The client's confirmation (with Redis' counts).
    Client(ReplyTarget, Bytes),
    /// Nothing: a subscription the proxy makes again on its own.
    Quiet,
    /// One step of a hand-over (upgrade in place): counted, not shown to the client.
    Counted(Rc<Countdown>),
}

impl Confirm {
    /// The node confirmed, or the link broke (the subscription will be made again).
    fn release(self) {
        match self {
            Confirm::Client(target, reply) => target.fill(reply),
            Confirm::Quiet => {}
            Confirm::Counted(countdown) => countdown.one_done(),
        }
    }
}

/// Subscription commands of a hand-over still unconfirmed; raises its signal at zero.
pub(super) struct Countdown {
    left: std::cell::Cell<usize>,
    done: crate::wake::LocalSignal,
}

impl Countdown {
    fn new() -> Rc<Countdown> {
        Rc::new(Countdown {
            left: std::cell::Cell::new(0),
            done: crate::wake::LocalSignal::new(),
        })
    }

    fn one_more(&self) {
        self.left.set(self.left.get() + 1);
    }

    fn one_done(&self) {
        let left = self.left.get().saturating_sub(1);
        self.left.set(left);
        if left == 0 {
            self.done.raise();
        }
    }

    /// Wait until every command counted was confirmed (at once when none was).
    pub(super) async fn wait(&self) {
        if self.left.get() > 0 {
            self.done.wait().await;
        }
    }
}

/// A session's subscriptions, shared with its link tasks.
pub(super) struct PubSub {
    state: Rc<RefCell<State>>,
}

struct State {
    /// Per kind: subscribed name → the node it is subscribed on.
    names: [HashMap<Bytes, Arc<str>>; 3],
    links: HashMap<Arc<str>, Link>,
    queue: Rc<ReplyQueue>,
    worker: Rc<WorkerContext>,
    /// Numbers links, so a broken link's clean-up never removes its successor.
    next_link: u64,
    /// The client speaks RESP3: confirmations and messages are push frames (`>`).
    resp3: bool,
}

/// One node's subscription connection, served by its own task.
struct Link {
    id: u64,
    commands: mpsc::UnboundedSender<Bytes>,
    /// Confirmations owed, in the order the node will confirm.
    expect: Owed,
    /// Aborted when the link is dropped (client gone, RESET); `None` for a link whose task
    /// is itself dropping it.
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl PubSub {
    fn new(queue: Rc<ReplyQueue>, worker: Rc<WorkerContext>) -> PubSub {
        PubSub {
            state: Rc::new(RefCell::new(State {
                names: Default::default(),
                links: HashMap::new(),
                queue,
                worker,
                next_link: 0,
                resp3: false,
            })),
        }
    }

    /// Subscriptions that count for `kind`'s confirmations: channels and patterns together,
    /// sharded channels apart (Redis' rule).
    fn count(&self, kind: SubKind) -> usize {
        self.state.borrow().count(kind)
    }

    /// The subscribed names: channels, patterns, shard channels (for a hand-over).
    pub(super) fn names(&self) -> [Vec<Vec<u8>>; 3] {
        let state = self.state.borrow();
        [SubKind::Channel, SubKind::Pattern, SubKind::Shard].map(|kind| {
            state.names[kind.index()]
                .keys()
                .map(|n| n.to_vec())
                .collect()
        })
    }

    /// A hand-over's new side: subscribe `names` (channels, patterns, shard channels) with
    /// no confirmation to the client; the countdown ends when every node confirmed.
    pub(super) fn restore(
        queue: Rc<ReplyQueue>,
        worker: Rc<WorkerContext>,
        resp3: bool,
        names: [Vec<Vec<u8>>; 3],
    ) -> (PubSub, Rc<Countdown>) {
        let pubsub = PubSub::new(queue, worker);
        let countdown = Countdown::new();
        {
            let weak = Rc::downgrade(&pubsub.state);
            let mut state = pubsub.state.borrow_mut();
            state.resp3 = resp3;
            let kinds = [SubKind::Channel, SubKind::Pattern, SubKind::Shard];
            for (kind, list) in kinds.into_iter().zip(names) {
                for name in list {
                    let name = Bytes::from(name);
                    let Some(node) = master_of(&state.worker, kind, &name) else {
                        tracing::warn!(
                            channel = %printable(&name),
                            "upgrade: no master serves this subscription now; it is dropped"
                        );
                        continue;
                    };
                    state.names[kind.index()].insert(name.clone(), Arc::clone(&node));
                    let command = request(kind.subscribe_word(), &name);
                    state.send_counted(&weak, &node, command, &countdown);
                }
            }
        }
        (pubsub, countdown)
    }

    /// A hand-over's old side: unsubscribe everything on the nodes, names kept, so messages
    /// keep being forwarded until each node confirmed (after which it sends none). The
    /// countdown ends then.
    pub(super) fn leave_quietly(&self) -> Rc<Countdown> {
        let countdown = Countdown::new();
        let weak = Rc::downgrade(&self.state);
        let mut state = self.state.borrow_mut();
        for kind in [SubKind::Channel, SubKind::Pattern, SubKind::Shard] {
            let held: Vec<(Bytes, Arc<str>)> = state.names[kind.index()]
                .iter()
                .map(|(name, node)| (name.clone(), Arc::clone(node)))
                .collect();
            for (name, node) in held {
                if !state.links.contains_key(&node) {
                    continue;
                }
                let command = request(kind.unsubscribe_word(), &name);
                state.send_counted(&weak, &node, command, &countdown);
            }
        }
        countdown
    }
}

impl State {
    fn count(&self, kind: SubKind) -> usize {
        match kind {
            SubKind::Shard => self.names[SubKind::Shard.index()].len(),
            _ => {
                self.names[SubKind::Channel.index()].len()
                    + self.names[SubKind::Pattern.index()].len()
            }
        }
    }

    /// Send `command` on the link to `node` (opened if needed); `confirm` is released when the
    /// node confirms.
    fn send(
        &mut self,
        weak: &Weak<RefCell<State>>,
        node: &Arc<str>,
        command: Bytes,
        confirm: Confirm,
    ) {
        if !self.links.contains_key(node) {
            let link = self.open(weak, node);
            self.links.insert(Arc::clone(node), link);
        }
        let Some(link) = self.links.get(node) else {
            return;
        };
        link.expect.borrow_mut().push_back(confirm);
        let _ = link.commands.send(command);
    }

    /// [`State::send`] a hand-over's command, counted by `countdown`.
    fn send_counted(
        &mut self,
        weak: &Weak<RefCell<State>>,
        node: &Arc<str>,
        command: Bytes,
        countdown: &Rc<Countdown>,
    ) {
        countdown.one_more();
        self.send(weak, node, command, Confirm::Counted(Rc::clone(countdown)));
    }

    fn open(&mut self, weak: &Weak<RefCell<State>>, node: &Arc<str>) -> Link {
        let (commands, receiver) = mpsc::unbounded_channel();
        let expect = Rc::new(RefCell::new(VecDeque::new()));
        self.next_link += 1;
        let id = self.next_link;
        let task = tokio::task::spawn_local(run_link(
            LinkTask {
                id,
                node: Arc::clone(node),
                state: weak.clone(),
                queue: Rc::clone(&self.queue),
                worker: Rc::clone(&self.worker),
                expect: Rc::clone(&expect),
            },
            receiver,
        ));
        Link {
            id,
            commands,
            expect,
            task: Some(task.abort_handle()),
        }
    }
}

impl Session {
    /// True while the client has a subscription: RESP2 then allows only subscription
    /// commands, PING, QUIT and RESET.
    pub(super) fn subscribed(&self) -> bool {
        self.pubsub
            .as_ref()
            .is_some_and(|p| p.count(SubKind::Channel) + p.count(SubKind::Shard) > 0)
    }

    /// Channel, pattern and shard-channel subscriptions, for CLIENT LIST.
    pub(super) fn subscription_counts(&self) -> [u32; 3] {
        let Some(pubsub) = &self.pubsub else {
            return [0; 3];
        };
        let state = pubsub.state.borrow();
        [SubKind::Channel, SubKind::Pattern, SubKind::Shard]
            .map(|k| u32::try_from(state.names[k.index()].len()).unwrap_or(u32::MAX))
    }

    /// Serve a subscription command.
    pub(super) fn subscription(&mut self, args: &[&[u8]], sub: Sub) {
        let pubsub = self
            .pubsub
            .get_or_insert_with(|| PubSub::new(Rc::clone(&self.queue), Rc::clone(&self.worker)));
        let weak = Rc::downgrade(&pubsub.state);
        let mut state = pubsub.state.borrow_mut();
        state.resp3 = self.resp3;
        let resp3 = self.resp3;
        let kind = sub.kind;
        let names: Vec<Bytes> = match args.get(1..) {
            Some(names) if !names.is_empty() => {
                names.iter().map(|n| Bytes::copy_from_slice(n)).collect()
            }
            _ if sub.subscribe => return, // arity forbids it
            _ => state.names[kind.index()].keys().cloned().collect(),
        };
        if names.is_empty() {
            // UNSUBSCRIBE with nothing subscribed: one reply with a nil name.
            let reply = confirmation(kind.unsubscribe_word(), None, state.count(kind), resp3);
            self.queue.push_ready(reply);
            return;
        }
        for name in names {
            if sub.subscribe {
                if state.names[kind.index()].contains_key(&name) {
                    let reply =
                        confirmation(kind.subscribe_word(), Some(&name), state.count(kind), resp3);
                    self.queue.push_ready(reply);
                    continue;
                }
                let Some(node) = master_of(&self.worker, kind, &name) else {
                    self.queue.push_ready(error(&format!(
                        "CLUSTERDOWN Hash slot of '{}' is not served by any node",
                        printable(&name)
                    )));
                    continue;
                };
                state.names[kind.index()].insert(name.clone(), Arc::clone(&node));
                let reply =
                    confirmation(kind.subscribe_word(), Some(&name), state.count(kind), resp3);
                let target = self.queue.reserve();
                let command = request(kind.subscribe_word(), &name);
                state.send(&weak, &node, command, Confirm::Client(target, reply));
            } else {
                let node = state.names[kind.index()].remove(&name);
                let reply = confirmation(
                    kind.unsubscribe_word(),
                    Some(&name),
                    state.count(kind),
                    resp3,
                );
                match node {
                    Some(node) if state.links.contains_key(&node) => {
                        let target = self.queue.reserve();
                        let command = request(kind.unsubscribe_word(), &name);
                        state.send(&weak, &node, command, Confirm::Client(target, reply));
                    }
                    _ => self.queue.push_ready(reply),
                }
            }
        }
    }

    /// Drop every subscription without confirmations (RESET): the links close.
    pub(super) fn unsubscribe_all(&mut self) {
        self.pubsub = None;
    }
}

/// The node a subscription lives on: a sharded channel on its slot's master; channels and
/// patterns all on the master of slot 0, where PUBLISH is routed, so that PUBLISH counts every
/// slotgate subscriber (messages reach every node anyway: the cluster broadcasts PUBLISH).
fn master_of(worker: &WorkerContext, kind: SubKind, name: &[u8]) -> Option<Arc<str>> {
    let table = worker.router().topology().table();
    let unit = match kind {
        SubKind::Shard => table.placement().unit_of(name),
        SubKind::Channel | SubKind::Pattern => crate::placement::Unit::ZERO,
    };
    let shard = table.shard_of(unit)?;
    table.shards().get(shard).map(|s| Arc::clone(&s.master))
}

/// `[word, name-or-nil, count]`, the confirmation reply of a (un)subscription: an array, or
/// in RESP3 a push frame.
fn confirmation(word: &str, name: Option<&[u8]>, count: usize, resp3: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + name.map_or(0, <[u8]>::len));
    encode::length_header(&mut out, if resp3 { b'>' } else { b'*' }, 3);
    encode::bulk(&mut out, word.as_bytes());
    match name {
        Some(name) => encode::bulk(&mut out, name),
        None if resp3 => out.extend_from_slice(b"_\r\n"),
        None => encode::null_bulk(&mut out),
    }
    encode::integer(&mut out, count as i64);
    out.freeze()
}

/// A two-word request `word name`.
fn request(word: &str, name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + name.len());
    encode::array_header(&mut out, 2);
    encode::bulk(&mut out, word.as_bytes());
    encode::bulk(&mut out, name);
    out.freeze()
}

/// What a link task needs.
struct LinkTask {
    id: u64,
    node: Arc<str>,
    state: Weak<RefCell<State>>,
    queue: Rc<ReplyQueue>,
    worker: Rc<WorkerContext>,
    expect: Owed,
}

/// Serve one node's subscription connection; when it breaks, re-home its subscriptions.
async fn run_link(link: LinkTask, commands: mpsc::UnboundedReceiver<Bytes>) {
    let Err(e) = serve_link(&link, commands).await else {
        return;
    };
    tracing::debug!(node = %link.node, "subscription link lost: {e}");
    // Confirmations still owed: the subscriptions will be made again, so release them.
    let owed: Vec<_> = link.expect.borrow_mut().drain(..).collect();
    for confirm in owed {
        confirm.release();
    }
    link.worker.router().topology().request_refresh();
    tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
    let Some(state) = link.state.upgrade() else {
        return;
    };
    let weak = Rc::downgrade(&state);
    let mut state = state.borrow_mut();
    if state.links.get(&link.node).is_some_and(|l| l.id == link.id) {
        // Dropping our own entry must not abort this very task before it re-homes anything.
        if let Some(mut own) = state.links.remove(&link.node) {
            own.task = None;
        }
    }
    for kind in [SubKind::Channel, SubKind::Pattern, SubKind::Shard] {
        let orphans: Vec<Bytes> = state.names[kind.index()]
            .iter()
            .filter(|(_, node)| **node == link.node)
            .map(|(name, _)| name.clone())
            .collect();
        for name in orphans {
            resubscribe(&mut state, &weak, &link.worker, kind, name);
        }
    }
}

/// Subscribe `name` again wherever its slot is served now.
fn resubscribe(
    state: &mut State,
    weak: &Weak<RefCell<State>>,
    worker: &WorkerContext,
    kind: SubKind,
    name: Bytes,
) {
    // Unknown master: keep the old node; the link to it fails and tries again.
    let node = match master_of(worker, kind, &name) {
        Some(node) => node,
        None => match state.names[kind.index()].get(&name) {
            Some(old) => Arc::clone(old),
            None => return,
        },
    };
    state.names[kind.index()].insert(name.clone(), Arc::clone(&node));
    let command = request(kind.subscribe_word(), &name);
    state.send(weak, &node, command, Confirm::Quiet);
}

async fn serve_link(
    link: &LinkTask,
    mut commands: mpsc::UnboundedReceiver<Bytes>,
) -> Result<(), BackendError> {
    let worker = &link.worker;
    let mut conn = worker.router().open_dedicated(&link.node, false).await?;
    let mut tables = worker.router().topology().table_changes();
    tables.borrow_and_update();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => conn.write(&command).await?,
                None => return Ok(()),
            },
            reply = conn.read() => on_push(link, reply?),
            Ok(()) = tables.changed() => follow_table(link),
        }
    }
}

/// A new table: this link's subscriptions whose name is now served by another node (a slot
/// moved to another pool, slot 0 with the channels among them) move there — subscribed on the
/// new node, then unsubscribed here, both confirmations nobody's. Messages are forwarded only
/// from the node a name is held on, so none comes twice; one published through the new
/// routing before the new subscription is made is missed.
fn follow_table(link: &LinkTask) {
    let Some(state) = link.state.upgrade() else {
        return;
    };
    let weak = Rc::downgrade(&state);
    let mut state = state.borrow_mut();
    for kind in [SubKind::Channel, SubKind::Pattern, SubKind::Shard] {
        let moved: Vec<Bytes> = state.names[kind.index()]
            .iter()
            .filter(|(name, node)| {
                **node == link.node
                    && master_of(&link.worker, kind, name).is_some_and(|now| now != link.node)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in moved {
            resubscribe(&mut state, &weak, &link.worker, kind, name.clone());
            let leave = request(kind.unsubscribe_word(), &name);
            state.send(&weak, &link.node, leave, Confirm::Quiet);
        }
    }
}

/// Handle one frame from a subscription connection.
fn on_push(link: &LinkTask, reply: Reply) {
    let Ok(Frame::Array(items)) = parse_frame(reply.raw(), &link.worker.settings().limits) else {
        return;
    };
    let word = items
        .first()
        .and_then(Frame::as_bytes)
        .map(|w| w.to_ascii_lowercase())
        .unwrap_or_default();
    let name = || items.get(1).and_then(Frame::as_bytes).cloned();
    // Links speak RESP2; a RESP3 client gets messages as push frames: same shape, `>` header.
    let forward = || {
        let resp3 = link.state.upgrade().is_some_and(|s| s.borrow().resp3);
        let raw = reply.raw();
        // Bounded by the subscriber output limit: a client that does not read is cut off.
        let limit = &link.worker.settings().client_limits.pubsub_output;
        if resp3 && raw.first() == Some(&b'*') {
            let mut push = BytesMut::from(&raw[..]);
            push[0] = b'>';
            link.queue.push_message(push.freeze(), limit);
        } else {
            link.queue.push_message(raw.clone(), limit);
        }
    };
    let subscribed = |kind: SubKind, name: Option<Bytes>| {
        let (Some(state), Some(name)) = (link.state.upgrade(), name) else {
            return false;
        };
        let state = state.borrow();
        state.names[kind.index()]
            .get(&name)
            .is_some_and(|node| *node == link.node)
    };
    match &word[..] {
        // Messages for what the client still holds here; one just unsubscribed is dropped.
        b"message" if subscribed(SubKind::Channel, name()) => forward(),
        b"pmessage" if subscribed(SubKind::Pattern, name()) => forward(),
        b"smessage" if subscribed(SubKind::Shard, name()) => forward(),
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
        | b"sunsubscribe" => {
            let owed = link.expect.borrow_mut().pop_front();
            match owed {
                Some(confirm) => confirm.release(),
                // Unasked: the node dropped a sharded channel whose slot moved away.
                None if &word[..] == b"sunsubscribe" => {
                    if let (Some(name), Some(state)) = (name(), link.state.upgrade()) {
                        let weak = Rc::downgrade(&state);
                        let mut state = state.borrow_mut();
                        if state.names[SubKind::Shard.index()].contains_key(&name) {
                            link.worker.router().topology().request_refresh();
                            resubscribe(&mut state, &weak, &link.worker, SubKind::Shard, name);
                        }
                    }
                }
                None => {}
            }
        }
        _ => {}
    }
}

/// PING while subscribed (RESP2): `["pong", message]`.
pub(super) fn subscribed_ping(args: &[&[u8]]) -> Bytes {
    if args.len() > 2 {
        return super::local::ping_arity_error();
    }
    let mut out = BytesMut::new();
    encode::array_header(&mut out, 2);
    encode::bulk(&mut out, b"pong");
    encode::bulk(&mut out, args.get(1).map(|a| &a[..]).unwrap_or_default());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_are_redis_shaped() {
        assert_eq!(
            &confirmation("subscribe", Some(b"news"), 1, false)[..],
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
        );
        assert_eq!(
            &confirmation("unsubscribe", None, 0, false)[..],
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert!(confirmation("subscribe", Some(b"x"), 1, true).starts_with(b">3\r\n"));
        assert_eq!(
            &subscribed_ping(&[&b"PING"[..]])[..],
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn subscription_commands_by_name() {
        assert_eq!(
            Sub::of("psubscribe"),
            Some(Sub {
                kind: SubKind::Pattern,
                subscribe: true
            })
        );
        assert_eq!(Sub::of("publish"), None);
    }
}
