//! Co-location rules (`[[placement.colocate]]`): every key that matches one of a group's
//! patterns lives in one hash slot, as if it carried the hash tag `{NAME}`. Frameworks that
//! put unrelated keys in one transaction or script (job queues, rate limiters, session
//! stores) then run unchanged, and atomically, on a sharded Redis. Pure: no table, no I/O.
//!
//! - **Pool mode**: routing only. A grouped key is placed where the key `{NAME}` would be
//!   ([`Colocation::routing_key`]); it keeps its name on the server.
//! - **Cluster mode**: the nodes check each key's slot themselves, so a grouped key is stored
//!   under the name `{NAME}key` ([`Colocation::stored_name`]); the proxy adds the tag to the
//!   keys of every request and removes it from the key names replies carry ([`KeyReply`],
//!   [`Colocation::client_name`]), so clients never see it.
//!
//! A key matching patterns of several groups belongs to the first group listed. A key that
//! already has a hash tag of its own follows the rule: the group's tag comes first.
//!
//! The same rewriting carries emulated databases ([`KeySpace`]): a key of database `n` gets
//! the database's prefix in front of its (tagged) name, and key names in replies lose both;
//! listings leave out the keys of other databases.

use bytes::Bytes;

use crate::config::ColocateRule;
use crate::glob::{self, Case};
use crate::resp::Frame;

use super::KeySpace;

/// Why a set of co-location rules is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColocateError {
    /// A rule without a name.
    #[error("a [[placement.colocate]] rule has an empty name")]
    EmptyName,
    /// A name with a character that would change the tag's meaning.
    #[error(
        "[[placement.colocate]] name {0:?} may not contain '{{', '}}', '*', '?', '[', ']' or '\\'"
    )]
    BadName(String),
    /// Two rules with one name.
    #[error("[[placement.colocate]] name {0:?} is used twice")]
    Duplicate(String),
    /// A rule without patterns.
    #[error("[[placement.colocate]] rule {0:?} has no key patterns (keys = [\"prefix:*\", …])")]
    NoKeys(String),
    /// An empty pattern.
    #[error("[[placement.colocate]] rule {0:?} has an empty key pattern")]
    EmptyPattern(String),
}

/// One key pattern of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `prefix*` with no other special character: a prefix comparison.
    Prefix(Box<[u8]>),
    /// Any other Redis glob pattern (case-sensitive, as `KEYS`).
    Glob(Box<[u8]>),
}

impl Pattern {
    fn new(pattern: &str) -> Pattern {
        match glob::literal_prefix(pattern.as_bytes()) {
            Some(prefix) => Pattern::Prefix(prefix.into()),
            None => Pattern::Glob(pattern.as_bytes().into()),
        }
    }

    #[inline]
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            Pattern::Prefix(prefix) => key.starts_with(prefix),
            Pattern::Glob(pattern) => glob::matches(pattern, key, Case::Sensitive),
        }
    }
}

/// One group: its tag (`{NAME}`) and the patterns of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    tag: Box<[u8]>,
    patterns: Vec<Pattern>,
}

/// The co-location rules of a config; empty when there are none (the usual case, which costs
/// callers one branch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Colocation {
    groups: Vec<Group>,
}

impl Colocation {
    /// No rules.
    pub const NONE: Colocation = Colocation { groups: Vec::new() };

    /// The rules of `[[placement.colocate]]`, checked.
    pub fn new(rules: &[ColocateRule]) -> Result<Colocation, ColocateError> {
        let mut groups = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let name = rule.name.as_str();
            if name.is_empty() {
                return Err(ColocateError::EmptyName);
            }
            if name.contains(['{', '}', '*', '?', '[', ']', '\\']) {
                return Err(ColocateError::BadName(name.into()));
            }
            if rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(ColocateError::Duplicate(name.into()));
            }
            if rule.keys.is_empty() {
                return Err(ColocateError::NoKeys(name.into()));
            }
            if rule.keys.iter().any(String::is_empty) {
                return Err(ColocateError::EmptyPattern(name.into()));
            }
            groups.push(Group {
                tag: format!("{{{name}}}").into_bytes().into(),
                patterns: rule.keys.iter().map(|k| Pattern::new(k)).collect(),
            });
        }
        Ok(Colocation { groups })
    }

    /// Whether there are no rules.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// The group `key` belongs to: the first whose patterns match it.
    #[inline]
    fn group_of(&self, key: &[u8]) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.patterns.iter().any(|p| p.matches(key)))
    }

    /// Pool mode: what to place `key` by — its group's tag `{NAME}`, or the key itself.
    #[inline]
    pub fn routing_key<'k>(&'k self, key: &'k [u8]) -> &'k [u8] {
        if self.groups.is_empty() {
            return key;
        }
        self.group_of(key).map_or(key, |g| &g.tag)
    }

    /// Cluster mode: the name `key` is stored under (`{NAME}key`), when it belongs to a group.
    pub fn stored_name(&self, key: &[u8]) -> Option<Bytes> {
        let group = self.group_of(key)?;
        let mut name = Vec::with_capacity(group.tag.len() + key.len());
        name.extend_from_slice(&group.tag);
        name.extend_from_slice(key);
        Some(name.into())
    }

    /// Cluster mode: the client's name for the stored name `stored` — without the tag when it
    /// is a group's tag followed by a key of that group, else `stored` itself.
    pub fn client_name<'s>(&self, stored: &'s [u8]) -> &'s [u8] {
        if stored.first() != Some(&b'{') {
            return stored;
        }
        for group in &self.groups {
            if let Some(key) = stored.strip_prefix(&group.tag[..]) {
                if self.group_of(key).is_some_and(|g| std::ptr::eq(g, group)) {
                    return key;
                }
            }
        }
        stored
    }

    /// Cluster mode: the client's name for the stored name `stored` in `space`, or `None`
    /// when that key is another database's.
    pub fn client_key<'s>(&self, space: &KeySpace, stored: &'s [u8]) -> Option<&'s [u8]> {
        space.client(stored).map(|key| self.client_name(key))
    }

    /// Cluster mode: the name the client's `key` is stored under in `space`, when it is not
    /// `key` itself: its group's tag, then the database's prefix.
    pub fn stored_key(&self, space: &KeySpace, key: &[u8]) -> Option<Bytes> {
        match self.stored_name(key) {
            Some(tagged) => space.stored(&tagged).or(Some(tagged)),
            None => space.stored(key),
        }
    }

    /// Cluster mode: the arguments to send instead of `args`, or `None` when they go as they
    /// are. `keys` are the indices of the request's keys; `pattern` the index of a `KEYS` or
    /// `SCAN … MATCH` pattern. A grouped key gets its tag; a pattern that could match a
    /// grouped key is widened to `*pattern` (which matches `{NAME}key` too), and the reply is
    /// filtered by the client's own pattern ([`KeyReply`], [`Colocation::keep`]). In an
    /// emulated database (`space`) keys and pattern then get its prefix.
    pub fn tag_request(
        &self,
        space: &KeySpace,
        args: &[&[u8]],
        keys: &[usize],
        pattern: Option<usize>,
    ) -> Option<Vec<Bytes>> {
        let mut out: Option<Vec<Bytes>> = None;
        let mut replace = |i: usize, with: Bytes| {
            let out =
                out.get_or_insert_with(|| args.iter().map(|a| Bytes::copy_from_slice(a)).collect());
            if let Some(slot) = out.get_mut(i) {
                *slot = with;
            }
        };
        for &i in keys {
            if let Some(stored) = args.get(i).and_then(|key| self.stored_key(space, key)) {
                replace(i, stored);
            }
        }
        if let Some((i, pattern)) = pattern.and_then(|i| Some((i, *args.get(i)?))) {
            let widened = self.widened(pattern);
            let sent = widened.as_deref().unwrap_or(pattern);
            if let Some(sent) = space.pattern(sent).or(widened) {
                replace(i, sent);
            }
        }
        out
    }

    /// `*pattern` when `pattern` could match a grouped key and does not begin with `*`.
    fn widened(&self, pattern: &[u8]) -> Option<Bytes> {
        if pattern.first() == Some(&b'*') {
            return None;
        }
        let prefix = literal_head(pattern);
        let overlaps = self.groups.iter().flat_map(|g| &g.patterns).any(|p| {
            let theirs = match p {
                Pattern::Prefix(prefix) => prefix,
                Pattern::Glob(glob) => literal_head(glob),
            };
            theirs.starts_with(prefix) || prefix.starts_with(theirs)
        });
        overlaps.then(|| {
            let mut widened = Vec::with_capacity(pattern.len() + 1);
            widened.push(b'*');
            widened.extend_from_slice(pattern);
            widened.into()
        })
    }

    /// Whether a key the client's `pattern` asked for (`KEYS`, `SCAN … MATCH`) is in the
    /// answer, by its client name; `None`: no pattern, every key is.
    pub fn keep(pattern: Option<&[u8]>, client_name: &[u8]) -> bool {
        pattern.is_none_or(|p| glob::matches(p, client_name, Case::Sensitive))
    }

    /// The client's name for a key name in a reply (in `space`), rewritten in place; whether
    /// it changed, or `None` when the key is another database's (left as it is).
    fn untag(&self, space: &KeySpace, frame: &mut Frame) -> Option<bool> {
        let Frame::Bulk(stored) = frame else {
            return Some(false);
        };
        let name = self.client_key(space, stored)?;
        if name.len() == stored.len() {
            return Some(false);
        }
        let name = stored.slice_ref(name);
        *frame = Frame::Bulk(name);
        Some(true)
    }

    /// Give the key names in `reply`, shaped as `shape` says, back under the client's names
    /// in `space`, keeping of a `KEYS` / `SCAN` answer only the keys of that space the
    /// client's `pattern` matches; whether anything changed. Anything not shaped as expected
    /// (an error, a nil, `+QUEUED`) is left as it is.
    pub fn untag_reply(
        &self,
        space: &KeySpace,
        shape: KeyReply,
        pattern: Option<&[u8]>,
        reply: &mut Frame,
    ) -> bool {
        let mut untag = |frame: &mut Frame| self.untag(space, frame).unwrap_or(false);
        match (shape, reply) {
            (KeyReply::Key, frame) => untag(frame),
            (KeyReply::Keys, Frame::Array(keys) | Frame::Set(keys)) => {
                self.untag_matching(space, keys, pattern)
            }
            (KeyReply::Scan, Frame::Array(page)) => match page.get_mut(1) {
                Some(Frame::Array(keys)) => self.untag_matching(space, keys, pattern),
                _ => false,
            },
            (KeyReply::FirstKey, Frame::Array(items)) => items.first_mut().is_some_and(untag),
            (KeyReply::Streams, Frame::Array(streams)) => {
                let mut changed = false;
                for stream in streams {
                    if let Frame::Array(parts) = stream {
                        changed |= parts.first_mut().is_some_and(&mut untag);
                    }
                }
                changed
            }
            (KeyReply::Streams, Frame::Map(pairs)) => {
                let mut changed = false;
                for key in pairs.iter_mut().step_by(2) {
                    changed |= untag(key);
                }
                changed
            }
            _ => false,
        }
    }

    /// Untag every key of `keys` and keep those of `space` that `pattern` matches.
    fn untag_matching(
        &self,
        space: &KeySpace,
        keys: &mut Vec<Frame>,
        pattern: Option<&[u8]>,
    ) -> bool {
        let before = keys.len();
        let mut changed = false;
        keys.retain_mut(|key| {
            let Some(renamed) = self.untag(space, key) else {
                return false;
            };
            changed |= renamed;
            match key {
                Frame::Bulk(name) => Colocation::keep(pattern, name),
                _ => true,
            }
        });
        changed || keys.len() != before
    }
}

/// The part of a glob pattern before its first special character.
fn literal_head(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    pattern.get(..end).unwrap_or_default()
}

/// Where a command's reply carries key names (cluster mode gives them back untagged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyReply {
    /// RANDOMKEY: one key (or nil).
    Key,
    /// KEYS: an array of keys.
    Keys,
    /// SCAN: `[cursor, [keys]]`.
    Scan,
    /// BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, LMPOP, BLMPOP, ZMPOP, BZMPOP: `[key, …]` (or nil).
    FirstKey,
    /// XREAD, XREADGROUP: `[[key, entries], …]`, a map `key → entries` in RESP3.
    Streams,
}

impl KeyReply {
    /// The shape of `command`'s reply (a command table name), if it carries key names.
    pub fn of(command: &str) -> Option<KeyReply> {
        Some(match command {
            "randomkey" => KeyReply::Key,
            "keys" => KeyReply::Keys,
            "scan" => KeyReply::Scan,
            "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "lmpop" | "blmpop" | "zmpop"
            | "bzmpop" => KeyReply::FirstKey,
            "xread" | "xreadgroup" => KeyReply::Streams,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(groups: &[(&str, &[&str])]) -> Colocation {
        let rules: Vec<ColocateRule> = groups
            .iter()
            .map(|(name, keys)| ColocateRule {
                name: name.to_string(),
                keys: keys.iter().map(|k| k.to_string()).collect(),
            })
            .collect();
        Colocation::new(&rules).unwrap()
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn grouped_keys_are_tagged_and_untagged() {
        let c = rules(&[
            ("rq", &["rq:*"]),
            ("celery", &["celery*", "_kombu.binding.*"]),
        ]);
        assert_eq!(c.stored_name(b"rq:job:1").unwrap(), &b"{rq}rq:job:1"[..]);
        assert_eq!(
            c.stored_name(b"_kombu.binding.celery").unwrap(),
            &b"{celery}_kombu.binding.celery"[..]
        );
        assert_eq!(c.stored_name(b"other"), None);
        assert_eq!(c.client_name(b"{rq}rq:job:1"), b"rq:job:1");
        assert_eq!(c.client_name(b"rq:job:1"), b"rq:job:1");
        // Not a key of the group behind that tag: a client's own name, left alone.
        assert_eq!(c.client_name(b"{rq}other"), b"{rq}other");
        assert_eq!(c.client_name(b"{celery}rq:1"), b"{celery}rq:1");
        assert_eq!(c.routing_key(b"rq:x"), b"{rq}");
        assert_eq!(c.routing_key(b"plain"), b"plain");
        // Same slot as the tag: what makes a transaction over the group legal on a cluster.
        let slot = crate::slot::Slot::of;
        assert_eq!(slot(b"{rq}rq:a"), slot(b"{rq}rq:queues"));
    }

    #[test]
    fn the_first_matching_group_wins() {
        let c = rules(&[("a", &["x:*"]), ("b", &["x:y:*"])]);
        assert_eq!(c.stored_name(b"x:y:1").unwrap(), &b"{a}x:y:1"[..]);
        assert_eq!(c.client_name(b"{a}x:y:1"), b"x:y:1");
        assert_eq!(c.client_name(b"{b}x:y:1"), b"{b}x:y:1");
    }

    #[test]
    fn bad_rules_are_refused() {
        let one = |name: &str, keys: &[&str]| {
            Colocation::new(&[ColocateRule {
                name: name.into(),
                keys: keys.iter().map(|k| k.to_string()).collect(),
            }])
        };
        assert_eq!(one("", &["a*"]), Err(ColocateError::EmptyName));
        assert_eq!(
            one("a{b", &["a*"]),
            Err(ColocateError::BadName("a{b".into()))
        );
        assert_eq!(one("q", &[]), Err(ColocateError::NoKeys("q".into())));
        assert_eq!(
            one("q", &[""]),
            Err(ColocateError::EmptyPattern("q".into()))
        );
        let twice = ColocateRule {
            name: "q".into(),
            keys: vec!["a*".into()],
        };
        assert_eq!(
            Colocation::new(&[twice.clone(), twice]),
            Err(ColocateError::Duplicate("q".into()))
        );
    }

    #[test]
    fn replies_give_back_client_names() {
        let c = rules(&[("rq", &["rq:*"])]);
        let mut keys = Frame::Array(vec![bulk("{rq}rq:1"), bulk("plain"), bulk("{rq}x")]);
        assert!(c.untag_reply(&KeySpace::Whole, KeyReply::Keys, None, &mut keys));
        assert_eq!(
            keys,
            Frame::Array(vec![bulk("rq:1"), bulk("plain"), bulk("{rq}x")])
        );
        let mut page = Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("{rq}rq:2")])]);
        assert!(c.untag_reply(&KeySpace::Whole, KeyReply::Scan, None, &mut page));
        assert_eq!(
            page,
            Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("rq:2")])])
        );
        let mut popped = Frame::Array(vec![bulk("{rq}rq:q"), bulk("{rq}rq:q")]);
        assert!(c.untag_reply(&KeySpace::Whole, KeyReply::FirstKey, None, &mut popped));
        // Only the key: the value is the client's data, whatever it looks like.
        assert_eq!(popped, Frame::Array(vec![bulk("rq:q"), bulk("{rq}rq:q")]));
        let mut streams = Frame::Map(vec![bulk("{rq}rq:s"), Frame::Array(vec![])]);
        assert!(c.untag_reply(&KeySpace::Whole, KeyReply::Streams, None, &mut streams));
        assert_eq!(
            streams,
            Frame::Map(vec![bulk("rq:s"), Frame::Array(vec![])])
        );
        let mut key = bulk("{rq}rq:k");
        assert!(c.untag_reply(&KeySpace::Whole, KeyReply::Key, None, &mut key));
        assert_eq!(key, bulk("rq:k"));
        for mut other in [Frame::Nil, Frame::Simple(Bytes::from_static(b"QUEUED"))] {
            assert!(!c.untag_reply(&KeySpace::Whole, KeyReply::FirstKey, None, &mut other));
        }
    }

    #[test]
    fn patterns_are_widened_and_replies_filtered() {
        let c = rules(&[("rq", &["rq:*"])]);
        let args: Vec<&[u8]> = vec![b"KEYS", b"rq:job:*"];
        let sent = c
            .tag_request(&KeySpace::Whole, &args, &[], Some(1))
            .unwrap();
        assert_eq!(sent[1], &b"*rq:job:*"[..]);
        // A pattern no grouped key can match, or one that begins with `*`, goes as it is.
        assert_eq!(
            c.tag_request(&KeySpace::Whole, &[b"KEYS", b"user:*"], &[], Some(1)),
            None
        );
        assert_eq!(
            c.tag_request(&KeySpace::Whole, &[b"KEYS", b"*"], &[], Some(1)),
            None
        );
        // The widened pattern also matched `xrq:job:1`, which the client's pattern does not.
        let mut keys = Frame::Array(vec![bulk("{rq}rq:job:1"), bulk("xrq:job:2")]);
        assert!(c.untag_reply(
            &KeySpace::Whole,
            KeyReply::Keys,
            Some(b"rq:job:*"),
            &mut keys
        ));
        assert_eq!(keys, Frame::Array(vec![bulk("rq:job:1")]));
        // Keys are tagged; other arguments are not.
        let args: Vec<&[u8]> = vec![b"SET", b"rq:q", b"rq:q"];
        let sent = c.tag_request(&KeySpace::Whole, &args, &[1], None).unwrap();
        assert_eq!(
            sent,
            vec![
                Bytes::from("SET"),
                Bytes::from("{rq}rq:q"),
                Bytes::from("rq:q")
            ]
        );
        assert_eq!(
            c.tag_request(&KeySpace::Whole, &[b"GET", b"plain"], &[1], None),
            None
        );
    }

    #[test]
    fn an_emulated_database_prefixes_tagged_names_and_sees_only_its_keys() {
        let c = rules(&[("rq", &["rq:*"])]);
        let one = KeySpace::of(1, true);
        let p = crate::placement::namespace::prefix(1);
        let with = |tail: &[u8]| Bytes::from([&p[..], tail].concat());
        let sent = c
            .tag_request(&one, &[b"SET", b"rq:q", b"plain"], &[1], None)
            .unwrap();
        assert_eq!(sent[1], with(b"{rq}rq:q"));
        assert_eq!(sent[2], &b"plain"[..], "a value is not a key");
        let sent = c
            .tag_request(&one, &[b"KEYS", b"rq:*"], &[], Some(1))
            .unwrap();
        assert_eq!(sent[1], with(b"*rq:*"));
        let sent = c
            .tag_request(&one, &[b"KEYS", b"user:*"], &[], Some(1))
            .unwrap();
        assert_eq!(sent[1], with(b"user:*"));
        // Database 0 beside emulated ones: names as they are, other databases' keys hidden.
        assert_eq!(
            c.tag_request(&KeySpace::Zero, &[b"GET", b"k"], &[1], None),
            None
        );
        let other = Frame::Bulk(with(b"k"));
        let mut keys = Frame::Array(vec![bulk("k"), other.clone(), bulk("{rq}rq:1")]);
        assert!(c.untag_reply(&KeySpace::Zero, KeyReply::Keys, None, &mut keys));
        assert_eq!(keys, Frame::Array(vec![bulk("k"), bulk("rq:1")]));
        let mut keys = Frame::Array(vec![bulk("k"), other, Frame::Bulk(with(b"{rq}rq:2"))]);
        assert!(c.untag_reply(&one, KeyReply::Keys, None, &mut keys));
        assert_eq!(keys, Frame::Array(vec![bulk("k"), bulk("rq:2")]));
        let mut popped = Frame::Array(vec![Frame::Bulk(with(b"q")), bulk("v")]);
        assert!(c.untag_reply(&one, KeyReply::FirstKey, None, &mut popped));
        assert_eq!(popped, Frame::Array(vec![bulk("q"), bulk("v")]));
    }

    #[test]
    fn shapes_by_command() {
        assert_eq!(KeyReply::of("blpop"), Some(KeyReply::FirstKey));
        assert_eq!(KeyReply::of("xreadgroup"), Some(KeyReply::Streams));
        assert_eq!(KeyReply::of("get"), None);
    }
}
