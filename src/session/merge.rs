//! Collecting the replies of a split request's parts and handing the merged reply to the
//! client's place in its reply queue once the last part has answered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::command::split::{self, Split};
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
    /// Text placed before the merged text, the whole sent as one bulk string (INFO), or as a
    /// verbatim string for a RESP3 client (the flag).
    prefix: Option<(String, bool)>,
    /// The client's whole request, kept when the slow log times it.
    request: Option<Bytes>,
    /// The node of each part, when an error must name the nodes that refused
    /// ([`MergeRule::EveryNodeOk`](split::MergeRule::EveryNodeOk)); empty otherwise.
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

    /// Like [`Merge::new`] for a request sent to each of `nodes` (part order), whose refusals
    /// the reply names.
    pub fn naming_nodes(
        split: Split,
        target: ReplyTarget,
        limits: Limits,
        request: Option<Bytes>,
        nodes: Vec<std::sync::Arc<str>>,
    ) -> Rc<Merge> {
        Merge::build(split, target, limits, None, request, nodes)
    }

    /// Like [`Merge::new`] for a rule that merges into text (INFO keyspace): the client gets
    /// `prefix` and that text as one bulk string (a verbatim string if `resp3`).
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
            replies: RefCell::new(vec![Bytes::new(); parts]),
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
        let refused = if self.nodes.is_empty() {
            None
        } else {
            split::refusals(&self.nodes, &self.replies.borrow())
        };
        let merged = refused.unwrap_or_else(|| {
            split::merge_split(&self.split, &self.replies.borrow(), &self.limits)
        });
        let merged = match &self.prefix {
            Some((prefix, resp3)) if !merged.starts_with(b"-") => {
                let mut text = prefix.clone().into_bytes();
                text.extend_from_slice(&merged);
                super::local::text_reply(&text, *resp3)
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
