//! Collecting the replies of a split request's parts and handing the merged reply to the
//! client's place in its reply queue once the last part has answered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;

use crate::command::split::{self, Split};
use crate::resp::Limits;

use super::ReplyTarget;

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
}

impl Merge {
    /// Await the replies of `split`'s parts; the merged reply goes to `target`.
    pub fn new(split: Split, target: ReplyTarget, limits: Limits) -> Rc<Merge> {
        Merge::build(split, target, limits, None)
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
        Merge::build(split, target, limits, Some((prefix, resp3)))
    }

    fn build(
        split: Split,
        target: ReplyTarget,
        limits: Limits,
        prefix: Option<(String, bool)>,
    ) -> Rc<Merge> {
        let parts = split.parts.len();
        Rc::new(Merge {
            split,
            replies: RefCell::new(vec![Bytes::new(); parts]),
            remaining: Cell::new(parts),
            target: RefCell::new(Some(target)),
            limits,
            prefix,
        })
    }

    /// The split being merged.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// Part `index` answered `reply`; when it was the last, merge and deliver.
    pub(super) fn deliver(&self, index: usize, reply: Bytes) {
        if let Some(slot) = self.replies.borrow_mut().get_mut(index) {
            *slot = reply;
        }
        let remaining = self.remaining.get().saturating_sub(1);
        self.remaining.set(remaining);
        if remaining > 0 {
            return;
        }
        let merged = split::merge(
            self.split.rule,
            &self.split.parts,
            &self.replies.borrow(),
            self.split.keys,
            &self.limits,
        );
        let merged = match &self.prefix {
            Some((prefix, resp3)) if !merged.starts_with(b"-") => {
                let mut text = prefix.clone().into_bytes();
                text.extend_from_slice(&merged);
                super::local::text_reply(&text, *resp3)
            }
            _ => merged,
        };
        if let Some(target) = self.target.borrow_mut().take() {
            target.fill(merged);
        }
    }
}
