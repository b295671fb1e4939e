//! Emulated databases (cluster mode, `cluster.databases` > 1). A cluster serves database 0
//! only, so database `n` > 0 lives in a key namespace: the client's key `k` is stored as
//! `P(n)k`, and `P(n)` is taken off every key name a reply carries. Pure: no table, no I/O.
//!
//! The prefix keeps every key in the slot the client's name hashes to, hash tags or not:
//! - `P(n)` holds no `{`, so a key with a hash tag keeps it (the first `{` is the client's);
//! - `P(n)` is a marker, the database number and two check bytes chosen so that the CRC16 of
//!   `P(n)` is 0: CRC16-XMODEM starts from 0 and its state after `P(n)` is then 0 again, so
//!   `CRC16(P(n)k) = CRC16(k)` for every `k`, and a key without a tag hashes as before.
//!
//! So keys the client keeps in one slot stay in one slot (MULTI, scripts, multi-key
//! commands), and CLUSTER KEYSLOT's answers hold. Database 0 keeps its names; its key
//! listings (KEYS, SCAN, RANDOMKEY) and DBSIZE / FLUSHDB leave out the namespaced keys, which
//! all begin with [`MARKER`] (not UTF-8, so no text key does).

use bytes::{BufMut, Bytes, BytesMut};

/// The first bytes of every namespaced key.
pub const MARKER: &[u8] = b"\xff\xfedb";

/// Bytes a prefix may not hold: a hash tag's braces, and glob's specials (a prefix is put in
/// front of `KEYS` / `SCAN … MATCH` patterns as a literal).
const UNSAFE: &[u8] = b"{}*?[]\\";

/// The keys of the cluster a client's database holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpace {
    /// Emulation is off (or pool mode): every key is the client's, under its own name.
    Whole,
    /// Database 0 with emulation on: every key but the namespaced ones, under its own name.
    Zero,
    /// An emulated database: the keys under its prefix.
    Db(Bytes),
}

impl KeySpace {
    /// The key space of database `db`, with emulation on (`emulated`) or off.
    pub fn of(db: u32, emulated: bool) -> KeySpace {
        match (db, emulated) {
            (_, false) => KeySpace::Whole,
            (0, true) => KeySpace::Zero,
            (db, true) => KeySpace::Db(prefix(db)),
        }
    }

    /// Whether names are changed in this space (an emulated database other than 0).
    #[inline]
    pub fn renames(&self) -> bool {
        matches!(self, KeySpace::Db(_))
    }

    /// Whether other spaces' keys live beside this one's (emulation is on).
    #[inline]
    pub fn is_shared(&self) -> bool {
        !matches!(self, KeySpace::Whole)
    }

    /// The name `key` is stored under: `Some` only when it differs.
    pub fn stored(&self, key: &[u8]) -> Option<Bytes> {
        let KeySpace::Db(prefix) = self else {
            return None;
        };
        let mut name = BytesMut::with_capacity(prefix.len() + key.len());
        name.put_slice(prefix);
        name.put_slice(key);
        Some(name.freeze())
    }

    /// The client's name for the stored name `stored`, or `None` when that key is not in
    /// this space.
    pub fn client<'s>(&self, stored: &'s [u8]) -> Option<&'s [u8]> {
        match self {
            KeySpace::Whole => Some(stored),
            KeySpace::Zero => (!stored.starts_with(MARKER)).then_some(stored),
            KeySpace::Db(prefix) => stored.strip_prefix(&prefix[..]),
        }
    }

    /// The pattern to send for the client's `KEYS` / `SCAN … MATCH` pattern (`None`: the
    /// client's own; `Some(None)` for SCAN without MATCH means `*`): `P(n)pattern`.
    pub fn pattern(&self, pattern: &[u8]) -> Option<Bytes> {
        self.stored(pattern)
    }
}

/// `P(db)`: [`MARKER`], the number, `:`, and the two check bytes that make its CRC16 0 (a
/// `_` is added before them until neither is a byte of [`UNSAFE`]).
pub fn prefix(db: u32) -> Bytes {
    let mut head = Vec::with_capacity(MARKER.len() + 14);
    head.extend_from_slice(MARKER);
    head.extend_from_slice(db.to_string().as_bytes());
    head.push(b':');
    loop {
        let check = crate::slot::crc16(&head).to_be_bytes();
        if !check.iter().any(|b| UNSAFE.contains(b)) {
            head.extend_from_slice(&check);
            return head.into();
        }
        head.push(b'_');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::Slot;

    #[test]
    fn a_prefix_hashes_to_nothing_and_keeps_every_slot() {
        for db in [1, 2, 3, 9, 15, 16, 255, 1000, u32::MAX] {
            let p = prefix(db);
            assert_eq!(crate::slot::crc16(&p), 0, "db {db}");
            assert!(p.starts_with(MARKER));
            assert!(!p.iter().any(|b| UNSAFE.contains(b)), "db {db}: {p:?}");
            let space = KeySpace::of(db, true);
            for key in [
                &b"user:1"[..],
                b"",
                b"{tag}x",
                b"a{tag}b",
                b"{}x",
                b"a{b",
                b"}x{",
                b"\xff\xfe",
                b"a long key name that goes on for more than forty-eight bytes, easily",
            ] {
                let stored = space.stored(key).unwrap();
                assert_eq!(Slot::of(&stored), Slot::of(key), "db {db}, key {key:?}");
                assert_eq!(space.client(&stored), Some(key));
            }
        }
        // Every database has its own prefix.
        assert_ne!(prefix(1), prefix(11));
        assert!(!prefix(11).starts_with(&prefix(1)));
    }

    #[test]
    fn each_space_sees_its_own_keys() {
        let one = KeySpace::of(1, true);
        let two = KeySpace::of(2, true);
        let stored = one.stored(b"k").unwrap();
        assert_eq!(one.client(&stored), Some(&b"k"[..]));
        assert_eq!(two.client(&stored), None);
        assert_eq!(KeySpace::Zero.client(&stored), None);
        assert_eq!(KeySpace::Zero.client(b"k"), Some(&b"k"[..]));
        assert_eq!(KeySpace::Whole.client(&stored), Some(&stored[..]));
        assert_eq!(one.client(b"k"), None);
        assert_eq!(KeySpace::Zero.stored(b"k"), None);
        assert_eq!(KeySpace::of(0, true), KeySpace::Zero);
        assert_eq!(KeySpace::of(5, false), KeySpace::Whole);
        assert_eq!(
            one.pattern(b"user:*").unwrap(),
            [&prefix(1)[..], b"user:*"].concat()
        );
    }
}
