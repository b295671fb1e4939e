//! Big keys moved in bounded steps: a key the source measures at `migration.big_key_bytes` or
//! more is not given to one `MIGRATE` (which serialises the whole value on the source and
//! blocks it meanwhile: a 1-million-element list 76 ms, a 1-million-field hash about 1 s), but
//! copied a slice at a time into a staging key on the destination, then put in place.
//! Pure: the requests of each step and what their replies mean; the mover drives them.
//!
//! ```text
//!  source: WATCH k · TYPE k · PTTL k          (one round trip: the kind and the time to live)
//!  per step:  source  LRANGE / HSCAN / SSCAN / ZSCAN / GETRANGE   (≤ migration.big_key_step
//!             dest    MULTI · RPUSH / HSET / SADD / ZADD / APPEND   elements, 64 B each for
//!                     staging · PEXPIRE staging 60 s · EXEC         strings)
//!  end:       dest    WATCH k
//!             source  MULTI · EXISTS k · EXEC                       (untouched since the WATCH?)
//!             dest    MULTI · PEXPIRE staging ttl | PERSIST · RENAMENX staging k · EXEC
//!             source  UNLINK k                                      (lazy free: O(1))
//! ```
//!
//! Why no read sees a missing or stale value: while a slot moves, a key on the source is never
//! written there (every request for it, on any instance of a fleet, first moves it with
//! `MIGRATE`, which deletes it from the source), so the copy equals the source's value for as
//! long as the source holds the key untouched — which its `EXEC` checks at the end. The key
//! is never absent from both sides: the copy is put in place (`RENAMENX`) while the source
//! still holds the key, and only then is the source's unlinked; in between the key is on both
//! with one value, and a request that touches it moves the source's (equal) value over again.
//! A request that moved the key during the copy is seen by the source's `EXEC` (before the
//! destination's `WATCH`: the copy is dropped) or by the destination's `WATCH` (after it: its
//! `EXEC` does nothing and the copy is dropped); the key on the destination is then the
//! request's, never overwritten nor brought back after a delete. Staging keys expire by
//! themselves a minute after their last step (each step's write and its `PEXPIRE` are one
//! transaction: no staging key is ever without its time to live), so a mover that dies
//! mid-copy leaves nothing behind for long.
//!
//! Onto a Redis Cluster (the destination is the node owning the key's slot) the staging key
//! is in the key's slot: its name carries that slot's hash tag ([`staging_name`]), so
//! `RENAMENX` is not refused with `CROSSSLOT`, and a reshard inside the cluster moves the two
//! together. A node that answers a step `MOVED`, `ASK`, `TRYAGAIN` or `CLUSTERDOWN` (the slot
//! being resharded) ends the copy: nothing was put in place (a refused queued command aborts
//! its `EXEC`; an `EXEC` refused itself discards its transaction), the key stays on the source, the staging key is dropped where it is (or, if
//! the reshard took it elsewhere, expires there); the mover tries again later.

use bytes::{Bytes, BytesMut};

use crate::resp::{Frame, Request};

/// Bytes per element a string is read in: a string's step is `step × STRING_BYTES_PER_STEP`.
pub const STRING_BYTES_PER_STEP: u64 = 64;
/// How long a staging key lives after its last step (milliseconds).
pub const STAGING_TTL_MS: u64 = 60_000;
/// The prefix of staging keys on the destination (reserved).
pub const STAGING_PREFIX: &[u8] = b"slotgate:staging:";

/// The kinds of value copied in steps; the others (streams, module types) move whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `LRANGE` → `RPUSH`.
    List,
    /// `HSCAN` → `HSET`.
    Hash,
    /// `SSCAN` → `SADD`.
    Set,
    /// `ZSCAN` → `ZADD`.
    SortedSet,
    /// `GETRANGE` → `APPEND`.
    String,
}

impl Kind {
    /// The kind a `TYPE` reply names, if it is copied in steps.
    pub fn of(type_name: &[u8]) -> Option<Kind> {
        Some(match type_name {
            b"list" => Kind::List,
            b"hash" => Kind::Hash,
            b"set" => Kind::Set,
            b"zset" => Kind::SortedSet,
            b"string" => Kind::String,
            _ => return None,
        })
    }
}

/// Where the next step reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// A list's next index, or a string's next byte offset.
    At(u64),
    /// A `*SCAN` cursor (never `"0"` here: that ends the copy).
    Scan(Bytes),
}

impl Cursor {
    /// Where the copy of a `kind` starts.
    pub fn start(kind: Kind) -> Cursor {
        match kind {
            Kind::List | Kind::String => Cursor::At(0),
            Kind::Hash | Kind::Set | Kind::SortedSet => Cursor::Scan(Bytes::from_static(b"0")),
        }
    }
}

/// The staging key an instance tagged `tag` copies `key` into on the destination (each
/// instance of a fleet its own: two may copy one key at once; the first put in place wins):
/// `slotgate:staging:{S}:tag:key`, where `S` is the hash tag of `key`'s cluster slot
/// (`slot::tag_for`), so the name is in the key's slot whatever braces the key holds.
pub fn staging_name(tag: &str, key: &[u8]) -> Bytes {
    let slot_tag = crate::slot::tag_for(crate::slot::Slot::of(key));
    let mut name = BytesMut::with_capacity(
        STAGING_PREFIX.len() + slot_tag.len() + 3 + tag.len() + 1 + key.len(),
    );
    name.extend_from_slice(STAGING_PREFIX);
    name.extend_from_slice(b"{");
    name.extend_from_slice(slot_tag);
    name.extend_from_slice(b"}:");
    name.extend_from_slice(tag.as_bytes());
    name.extend_from_slice(b":");
    name.extend_from_slice(key);
    name.freeze()
}

/// The source's `WATCH key`, `TYPE key`, `PTTL key`, pipelined (three replies).
pub fn begin(key: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    for command in [b"WATCH" as &[u8], b"TYPE", b"PTTL"] {
        out.extend_from_slice(Request::from_args([command, key]).raw());
    }
    out
}

/// The source's read of one step of `key` from `at`, at most `step` elements.
pub fn read(kind: Kind, key: &[u8], at: &Cursor, step: u64) -> Request {
    let (index, cursor): (u64, &[u8]) = match at {
        Cursor::At(i) => (*i, b"0"),
        Cursor::Scan(c) => (0, c),
    };
    let scan = |command: &[u8]| {
        let count = step.to_string();
        Request::from_args([command, key, cursor, b"COUNT", count.as_bytes()])
    };
    let range = |command: &[u8], last: u64| {
        let (first, last) = (index.to_string(), last.to_string());
        Request::from_args([command, key, first.as_bytes(), last.as_bytes()])
    };
    match kind {
        Kind::List => range(b"LRANGE", index + step - 1),
        Kind::String => range(b"GETRANGE", index + step * STRING_BYTES_PER_STEP - 1),
        Kind::Hash => scan(b"HSCAN"),
        Kind::Set => scan(b"SSCAN"),
        Kind::SortedSet => scan(b"ZSCAN"),
    }
}

/// One step read: the arguments to append to the staging key, and where the next step
/// starts (`None`: the copy is complete).
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// Elements (list, set), field-value pairs (hash), score-member pairs (sorted set) or
    /// one chunk (string), in the order the write takes them.
    pub items: Vec<Bytes>,
    /// The next step's cursor.
    pub next: Option<Cursor>,
}

/// What the source answered to [`read`]`(kind, _, at, step)`.
pub fn parse_read(kind: Kind, at: &Cursor, step: u64, reply: Frame) -> Result<Step, String> {
    let bulks = |frames: Vec<Frame>| -> Result<Vec<Bytes>, String> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(b) => Ok(b),
                other => Err(format!("unexpected element {other:?}")),
            })
            .collect()
    };
    match (kind, at, reply) {
        (Kind::List, Cursor::At(i), Frame::Array(items)) => {
            let items = bulks(items)?;
            let next = (items.len() as u64 == step).then(|| Cursor::At(i + step));
            Ok(Step { items, next })
        }
        (Kind::String, Cursor::At(i), Frame::Bulk(chunk)) => {
            let full = step * STRING_BYTES_PER_STEP;
            let next = (chunk.len() as u64 == full).then(|| Cursor::At(i + full));
            let items = if chunk.is_empty() {
                Vec::new()
            } else {
                vec![chunk]
            };
            Ok(Step { items, next })
        }
        (Kind::Hash | Kind::Set | Kind::SortedSet, Cursor::Scan(_), Frame::Array(parts)) => {
            let mut parts = parts.into_iter();
            let (Some(Frame::Bulk(cursor)), Some(Frame::Array(found)), None) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err("unexpected scan reply".into());
            };
            let mut items = bulks(found)?;
            if kind == Kind::SortedSet {
                // ZSCAN answers member, score …; ZADD takes score, member ….
                if items.len() % 2 != 0 {
                    return Err("odd ZSCAN reply".into());
                }
                for pair in items.chunks_exact_mut(2) {
                    pair.swap(0, 1);
                }
            }
            let next = (&cursor[..] != b"0").then_some(Cursor::Scan(cursor));
            Ok(Step { items, next })
        }
        (_, _, Frame::Error(e)) => Err(String::from_utf8_lossy(&e).into_owned()),
        (kind, _, other) => Err(format!("unexpected {kind:?} step reply {other:?}")),
    }
}

/// Replies of a step's write ([`write`]).
pub const WRITE_REPLIES: usize = 4;

/// The destination's write of one step into `staging` and the staging key's time to live
/// renewed, as one transaction: [`WRITE_REPLIES`] replies. `None` when the step read nothing.
pub fn write(kind: Kind, staging: &[u8], items: &[Bytes]) -> Option<BytesMut> {
    if items.is_empty() {
        return None;
    }
    let command: &[u8] = match kind {
        Kind::List => b"RPUSH",
        Kind::Hash => b"HSET",
        Kind::Set => b"SADD",
        Kind::SortedSet => b"ZADD",
        Kind::String => b"APPEND",
    };
    let args = [command, staging]
        .into_iter()
        .chain(items.iter().map(|b| &b[..]));
    let mut out = BytesMut::new();
    out.extend_from_slice(Request::from_args([b"MULTI" as &[u8]]).raw());
    out.extend_from_slice(Request::from_args(args).raw());
    let ttl = STAGING_TTL_MS.to_string();
    out.extend_from_slice(Request::from_args([b"PEXPIRE" as &[u8], staging, ttl.as_bytes()]).raw());
    out.extend_from_slice(Request::from_args([b"EXEC" as &[u8]]).raw());
    Some(out)
}

/// The first error among the destination's replies to a transaction ([`write`],
/// [`put_in_place`]): one a command got when queued (a cluster node's `MOVED 3999 …`, `ASK …`,
/// `TRYAGAIN …` come first, before `EXECABORT`), or the `EXEC`'s own (a cluster node checks
/// the slot of every queued command again then: `MOVED`/`ASK` if it moved since, the
/// transaction discarded), else one inside the `EXEC`'s array. Without the leading `-`.
pub fn first_error(replies: &[Frame]) -> Option<&[u8]> {
    fn error(frame: &Frame) -> Option<&[u8]> {
        match frame {
            Frame::Error(e) => Some(e),
            _ => None,
        }
    }
    replies
        .iter()
        .find_map(error)
        .or_else(|| match replies.last() {
            Some(Frame::Array(results)) => results.iter().find_map(error),
            _ => None,
        })
}

/// The destination's last step: the staging copy given `ttl_ms` to live (`None`: no expiry)
/// and renamed to `key` unless `key` is there already. Five replies, the last `EXEC`'s.
pub fn put_in_place(staging: &[u8], key: &[u8], ttl_ms: Option<u64>) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(Request::from_args([b"MULTI" as &[u8]]).raw());
    match ttl_ms {
        Some(ms) => {
            let ms = ms.max(1).to_string();
            out.extend_from_slice(
                Request::from_args([b"PEXPIRE" as &[u8], staging, ms.as_bytes()]).raw(),
            );
        }
        None => out.extend_from_slice(Request::from_args([b"PERSIST" as &[u8], staging]).raw()),
    }
    out.extend_from_slice(Request::from_args([b"RENAMENX" as &[u8], staging, key]).raw());
    out.extend_from_slice(Request::from_args([b"EXEC" as &[u8]]).raw());
    out
}

/// Whether [`put_in_place`]'s `EXEC` reply put the copy in place: `Ok(true)` renamed,
/// `Ok(false)` not: the key is on the destination already, or was touched there since the
/// destination's `WATCH` (a request moved it meanwhile).
pub fn placed(exec: Frame) -> Result<bool, String> {
    match exec {
        Frame::NullArray | Frame::Nil => Ok(false),
        Frame::Array(replies) => match replies.get(1) {
            Some(Frame::Integer(1)) => Ok(true),
            Some(Frame::Integer(0)) => Ok(false),
            other => Err(format!("RENAMENX answered {other:?}")),
        },
        Frame::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
        other => Err(format!("unexpected EXEC reply {other:?}")),
    }
}

/// The source's check that `key` is still there untouched since its `WATCH` (three replies,
/// the last `EXEC`'s).
pub fn check_untouched(key: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(Request::from_args([b"MULTI" as &[u8]]).raw());
    out.extend_from_slice(Request::from_args([b"EXISTS" as &[u8], key]).raw());
    out.extend_from_slice(Request::from_args([b"EXEC" as &[u8]]).raw());
    out
}

/// Whether [`check_untouched`]'s `EXEC` reply says the key is there, untouched.
pub fn untouched(exec: &Frame) -> bool {
    matches!(exec, Frame::Array(replies) if matches!(replies[..], [Frame::Integer(1)]))
}

/// The destination's `WATCH key`, before the source's check.
pub fn watch(key: &[u8]) -> Request {
    Request::from_args([b"WATCH" as &[u8], key])
}

/// The source's last step, once the copy is in place: `UNLINK key` (freed in the background).
pub fn retire(key: &[u8]) -> Request {
    Request::from_args([b"UNLINK" as &[u8], key])
}

/// The destination's removal of the staging copy of a copy given up (two replies).
pub fn drop_staging(staging: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(give_up().raw());
    out.extend_from_slice(Request::from_args([b"UNLINK" as &[u8], staging]).raw());
    out
}

/// The `UNWATCH` that ends a copy given up.
pub fn give_up() -> Request {
    Request::from_args([b"UNWATCH" as &[u8]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn text(request: &[u8]) -> String {
        String::from_utf8_lossy(request).replace("\r\n", " ")
    }

    #[test]
    fn kinds_copied_in_steps_are_the_five_core_aggregates() {
        assert_eq!(Kind::of(b"list"), Some(Kind::List));
        assert_eq!(Kind::of(b"zset"), Some(Kind::SortedSet));
        assert_eq!(Kind::of(b"string"), Some(Kind::String));
        assert_eq!(Kind::of(b"stream"), None);
        assert_eq!(Kind::of(b"none"), None);
    }

    #[test]
    fn a_list_is_read_by_index_until_a_short_slice() {
        let at = Cursor::start(Kind::List);
        let r = read(Kind::List, b"k", &at, 2);
        assert_eq!(text(r.raw()), "*4 $6 LRANGE $1 k $1 0 $1 1 ");
        let full = parse_read(Kind::List, &at, 2, Frame::Array(vec![bulk("a"), bulk("b")]));
        assert_eq!(full.unwrap().next, Some(Cursor::At(2)));
        let short = parse_read(Kind::List, &Cursor::At(2), 2, Frame::Array(vec![bulk("c")]));
        assert_eq!(
            short.unwrap(),
            Step {
                items: vec![Bytes::from_static(b"c")],
                next: None
            }
        );
    }

    #[test]
    fn a_string_is_read_in_chunks_of_64_bytes_per_step_element() {
        let r = read(Kind::String, b"k", &Cursor::At(128), 2);
        assert_eq!(text(r.raw()), "*4 $8 GETRANGE $1 k $3 128 $3 255 ");
        let chunk = Frame::Bulk(Bytes::from(vec![b'x'; 128]));
        let step = parse_read(Kind::String, &Cursor::At(128), 2, chunk).unwrap();
        assert_eq!(step.next, Some(Cursor::At(256)));
        let end = parse_read(Kind::String, &Cursor::At(256), 2, bulk("")).unwrap();
        assert_eq!(
            end,
            Step {
                items: vec![],
                next: None
            }
        );
    }

    #[test]
    fn scans_follow_their_cursor_and_sorted_sets_swap_to_score_member() {
        let at = Cursor::start(Kind::SortedSet);
        let r = read(Kind::SortedSet, b"z", &at, 1000);
        assert_eq!(text(r.raw()), "*5 $5 ZSCAN $1 z $1 0 $5 COUNT $4 1000 ");
        let reply = Frame::Array(vec![
            bulk("17"),
            Frame::Array(vec![bulk("m1"), bulk("1.5"), bulk("m2"), bulk("-inf")]),
        ]);
        let step = parse_read(Kind::SortedSet, &at, 1000, reply).unwrap();
        assert_eq!(step.next, Some(Cursor::Scan(Bytes::from_static(b"17"))));
        let items: Vec<&[u8]> = step.items.iter().map(|b| &b[..]).collect();
        assert_eq!(items, [&b"1.5"[..], b"m1", b"-inf", b"m2"]);
        let last = Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("f"), bulk("v")])]);
        let step = parse_read(Kind::Hash, &Cursor::Scan("17".into()), 1000, last).unwrap();
        assert_eq!(step.next, None);
        assert!(parse_read(Kind::Set, &at, 10, Frame::Error("ERR x".into())).is_err());
        assert!(parse_read(Kind::Set, &at, 10, Frame::Integer(3)).is_err());
    }

    #[test]
    fn writes_append_to_the_staging_key_and_renew_its_ttl_in_one_transaction() {
        assert!(write(Kind::Set, b"s", &[]).is_none());
        let w = write(Kind::Hash, b"s", &["f".into(), "v".into()]).unwrap();
        assert_eq!(
            text(&w),
            "*1 $5 MULTI *4 $4 HSET $1 s $1 f $1 v *3 $7 PEXPIRE $1 s $5 60000 *1 $4 EXEC "
        );
        assert_eq!(text(&w).matches('*').count(), WRITE_REPLIES);
    }

    #[test]
    fn a_transaction_s_first_error_is_the_refusal_of_a_queued_command_or_of_exec() {
        let ok = Frame::Simple("OK".into());
        let queued = Frame::Simple("QUEUED".into());
        let done = Frame::Array(vec![Frame::Integer(3), Frame::Integer(1)]);
        assert_eq!(
            first_error(&[ok.clone(), queued.clone(), queued.clone(), done]),
            None
        );
        let moved = Frame::Error("MOVED 3999 127.0.0.1:7002".into());
        let abort = Frame::Error("EXECABORT Transaction discarded".into());
        let refused = [ok.clone(), moved.clone(), moved, abort];
        assert_eq!(
            first_error(&refused),
            Some(&b"MOVED 3999 127.0.0.1:7002"[..])
        );
        let ask = Frame::Error("ASK 3999 127.0.0.1:7002".into());
        let exec_refused = [ok.clone(), queued.clone(), queued.clone(), ask];
        assert_eq!(
            first_error(&exec_refused),
            Some(&b"ASK 3999 127.0.0.1:7002"[..])
        );
        let failed_inside = Frame::Array(vec![Frame::Error("OOM no".into()), Frame::Integer(1)]);
        assert_eq!(
            first_error(&[ok, queued.clone(), queued, failed_inside]),
            Some(&b"OOM no"[..])
        );
    }

    #[test]
    fn staging_keys_are_in_their_key_s_slot_whatever_braces_it_holds() {
        use crate::slot::Slot;
        for key in [
            &b"k"[..],
            b"{user:1}:profile",
            b"a{b",
            b"a}b{c}",
            b"{}x",
            b"}{",
            b"x{}{y}",
            b"{{a}}",
            b"",
        ] {
            let name = staging_name("1f2e3d4c", key);
            assert!(name.starts_with(STAGING_PREFIX), "{name:?}");
            assert!(name.ends_with(key) && name.ends_with(&[b":" as &[u8], key].concat()));
            assert_eq!(
                Slot::of(&name),
                Slot::of(key),
                "{:?} for {:?}",
                name,
                String::from_utf8_lossy(key)
            );
        }
        let tag = crate::slot::tag_for(Slot::of(b"k"));
        let want = [b"slotgate:staging:{" as &[u8], tag, b"}:1f:k"].concat();
        assert_eq!(&staging_name("1f", b"k")[..], &want[..]);
    }

    #[test]
    fn the_copy_is_put_in_place_only_where_no_request_moved_the_key() {
        let p = put_in_place(b"s", b"k", Some(0));
        assert_eq!(
            text(&p),
            "*1 $5 MULTI *3 $7 PEXPIRE $1 s $1 1 *3 $8 RENAMENX $1 s $1 k *1 $4 EXEC "
        );
        assert!(text(&put_in_place(b"s", b"k", None)).contains("PERSIST"));
        let ok = |n| Frame::Array(vec![Frame::Integer(1), Frame::Integer(n)]);
        assert_eq!(placed(ok(1)), Ok(true));
        assert_eq!(placed(ok(0)), Ok(false));
        assert_eq!(placed(Frame::NullArray), Ok(false));
        assert!(placed(Frame::Integer(1)).is_err());
        assert!(untouched(&Frame::Array(vec![Frame::Integer(1)])));
        assert!(!untouched(&Frame::Array(vec![Frame::Integer(0)])));
        assert!(!untouched(&Frame::NullArray));
    }
}
