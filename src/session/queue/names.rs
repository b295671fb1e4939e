//! Key names in replies given back under the client's names (cluster-mode co-location, see
//! [`crate::placement::colocate`]). The session says which places answer a command whose
//! reply carries key names ([`ReplyQueue::expect_key_names`](super::ReplyQueue::expect_key_names));
//! their replies are rewritten as they come in. Only a session with co-location rules in
//! cluster mode has this part.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::placement::{Colocation, KeyReply, KeySpace};
use crate::resp::{parse_frame, Frame, Limits};

/// What a place's reply holds; the client's key space when the request was sent (a later
/// `SELECT` does not change how its reply is read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// One command's reply, shaped as said, and the client's `KEYS` / `SCAN … MATCH`
    /// pattern, if there is one.
    Reply(KeyReply, Option<Bytes>, KeySpace),
    /// EXEC's array: for each queued command whose reply carries key names, its position in
    /// the array, its shape and the client's key space when it was queued (a SELECT inside the
    /// transaction changes it for the commands after).
    Exec(Vec<(usize, KeyReply, KeySpace)>),
}

/// The rules and the places whose replies carry key names.
#[derive(Debug)]
pub(super) struct KeyNames {
    tags: Arc<Colocation>,
    expected: RefCell<VecDeque<(u64, Expect)>>,
}

impl KeyNames {
    pub(super) fn new(tags: Arc<Colocation>) -> KeyNames {
        KeyNames {
            tags,
            expected: RefCell::default(),
        }
    }

    /// The reply for place `seq` will hold key names as `expect` says.
    pub(super) fn expect(&self, seq: u64, expect: Expect) {
        self.expected.borrow_mut().push_back((seq, expect));
    }

    /// `reply`, for place `seq`, with the key names in it given back under the client's names
    /// (unchanged when the place expects none or nothing in it is tagged).
    pub(super) fn rewrite(&self, seq: u64, reply: Bytes) -> Bytes {
        let mut expected = self.expected.borrow_mut();
        let Some(at) = expected.iter().position(|(s, _)| *s == seq) else {
            return reply;
        };
        let Some((_, expect)) = expected.remove(at) else {
            return reply;
        };
        drop(expected);
        let Ok(mut frame) = parse_frame(&reply, &Limits::default()) else {
            return reply;
        };
        let changed = match &expect {
            Expect::Reply(shape, pattern, space) => {
                self.tags
                    .untag_reply(space, *shape, pattern.as_deref(), &mut frame)
            }
            Expect::Exec(commands) => match &mut frame {
                Frame::Array(replies) => {
                    commands.iter().fold(false, |changed, (i, shape, space)| {
                        let one = replies
                            .get_mut(*i)
                            .is_some_and(|r| self.tags.untag_reply(space, *shape, None, r));
                        changed | one
                    })
                }
                _ => false,
            },
        };
        if !changed {
            return reply;
        }
        let mut out = BytesMut::with_capacity(reply.len());
        frame.encode(&mut out);
        out.freeze()
    }
}
