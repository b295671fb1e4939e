//! Collecting the replies of a split request's parts and handing the merged reply to the
//! client's place in its reply queue once the last part has answered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::command::split::{self, MergeRule, Split};
use crate::command::{info_merge, keyless};
use crate::resp::Limits;

use crate::backend::reply::{ReplyTarget, Waiter};

/// The parts of one split request still owed a reply.
#[derive(Debug)]
pub struct Merge {
    split: Split,
    replies: RefCell<Vec<Bytes>>,
    remaining: Cell<usize>,
    target: RefCell<Option<ReplyTarget>>,
    limits: Limits,
    /// The proxy's own INFO sections, put together with the merged ones
    /// ([`info_merge::put_together`]) and sent as one bulk string, or as a verbatim string
    /// for a RESP3 client (the flag).
    prefix: Option<(String, bool)>,
    /// The client's whole request, kept when the slow log times it.
    request: Option<Bytes>,
    /// The node of each part, when the reply names them ([`MergeRule::EveryNodeOk`]'s
    /// refusals, [`MergeRule::NodeText`]'s labels); empty otherwise.
    nodes: Vec<std::sync::Arc<str>>,
}

impl Merge {
    /// Await the replies of `split`'s parts; the merged reply goes to `target`, timed for the
    /// slow log as the reply to `request` when it is given.
    pub fn new(
        split: Split,
        target: ReplyTarget,
        limits: Limits,
        request: Option<Bytes>,
    ) -> Rc<Merge> {
        Merge::build(split, target, limits, None, request, Vec::new())
    }

    /// Like [`Merge::new`] for a request sent to each of `nodes` (part order), which the reply
    /// names (refusals, or each node's text).
    pub fn naming_nodes(
        split: Split,
        target: ReplyTarget,
        limits: Limits,
        request: Option<Bytes>,
        nodes: Vec<std::sync::Arc<str>>,
    ) -> Rc<Merge> {
        Merge::build(split, target, limits, None, request, nodes)
    }

    /// Like [`Merge::new`] for a rule that merges into text (INFO's node sections): the
    /// client gets the proxy's sections in `prefix` and that text put together in Redis'
    /// section order, as one bulk string (a verbatim string if `resp3`).
    pub fn with_text_prefix(
        split: Split,
        target: ReplyTarget,
        limits: Limits,
        prefix: String,
        resp3: bool,
    ) -> Rc<Merge> {
        Merge::build(
            split,
            target,
            limits,
            Some((prefix, resp3)),
            None,
            Vec::new(),
        )
    }

    fn build(
        split: Split,
        target: ReplyTarget,
        limits: Limits,
        prefix: Option<(String, bool)>,
        request: Option<Bytes>,
        nodes: Vec<std::sync::Arc<str>>,
    ) -> Rc<Merge> {
        let parts = split.parts.len();
        Rc::new(Merge {
            split,
            // Built, not cloned: cloning an empty `Bytes` is a call through its vtable.
            replies: RefCell::new((0..parts).map(|_| Bytes::new()).collect()),
            remaining: Cell::new(parts),
            target: RefCell::new(Some(target)),
            limits,
            prefix,
            request,
            nodes,
        })
    }

    /// Where the backend delivers the reply to part `index`.
    pub fn part(self: &Rc<Self>, index: usize) -> ReplyTarget {
        ReplyTarget::new(Rc::clone(self) as Rc<dyn Waiter>, index as u64)
    }

    /// The split being merged.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// Part `index` answered `reply` (at `now`, when timed); when it was the last, merge and
    /// deliver.
    fn collect(&self, index: usize, reply: Bytes, now: Option<Instant>) {
        if let Some(part) = self.replies.borrow_mut().get_mut(index) {
            *part = reply;
        }
        let remaining = self.remaining.get().saturating_sub(1);
        self.remaining.set(remaining);
        if remaining > 0 {
            return;
        }
        let replies = self.replies.borrow();
        let merged = match self.split.rule {
            MergeRule::EveryNodeOk => split::refusals(&self.nodes, &replies),
            MergeRule::NodeText => Some(keyless::node_text(&self.nodes, &replies, &self.limits)),
            _ => None,
        }
        .unwrap_or_else(|| split::merge_split(&self.split, &replies, &self.limits));
        drop(replies);
        let merged = match &self.prefix {
            Some((prefix, resp3)) if !merged.starts_with(b"-") => {
                let text = info_merge::put_together(prefix, &String::from_utf8_lossy(&merged));
                super::local::text_reply(text.as_bytes(), *resp3)
            }
            _ => merged,
        };
        let Some(target) = self.target.borrow_mut().take() else {
            return;
        };
        match &self.request {
            Some(request) => target.answer(merged, request, now.unwrap_or_else(Instant::now)),
            None => target.fill(merged),
        }
    }
}

impl Waiter for Merge {
    /// A part's reply; the merged reply is timed with the whole request the merge keeps.
    fn deliver(&self, place: u64, reply: Bytes, answered: Option<(&Bytes, Instant)>) {
        let index = usize::try_from(place).unwrap_or(usize::MAX);
        self.collect(index, reply, answered.map(|(_, now)| now));
    }
}
