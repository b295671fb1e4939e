//! Key → hash slot, exactly as Redis Cluster computes it.
//!
//! `CRC16-XMODEM(key) mod 16384`, where only the hash tag is hashed when the key has one: the
//! bytes between the first `{` and the first `}` after it, provided that span is non-empty.
//! `{}` or an unclosed `{` means the whole key is hashed. [`tag_for`] gives each slot a short
//! hash tag that lands in it (names made for a key, in the key's slot).

mod crc;
mod tags;

pub use tags::tag_for;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// A hash slot. Invariant: the value is always `< SLOT_COUNT` (16384).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(u16);

impl Slot {
    /// Slot 0.
    pub const ZERO: Slot = Slot(0);

    /// The slot `key` hashes to, honouring `{hash tags}`.
    #[inline]
    pub fn of(key: &[u8]) -> Slot {
        let hashed = hash_tag(key).unwrap_or(key);
        Slot(crc::xmodem(hashed) & (SLOT_COUNT as u16 - 1))
    }

    /// `Some(slot)` when `n` is a valid slot number.
    pub fn new(n: u16) -> Option<Slot> {
        ((n as usize) < SLOT_COUNT).then_some(Slot(n))
    }

    /// The slot number, `0..16384`.
    #[inline]
    pub fn get(self) -> u16 {
        self.0
    }

    /// The slot number as an index into a 16384-entry table.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// CRC16-XMODEM of `data`, the checksum hash slots are taken from (the whole 16 bits).
pub fn crc16(data: &[u8]) -> u16 {
    crc::xmodem(data)
}

/// The hash tag of `key`: the bytes between the first `{` and the next `}`, if non-empty.
// Always inlined: every routed key is searched here, and as a call the search cost a GET
// ~15 more instructions (callgrind).
#[inline(always)]
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = find(b'{', key)?;
    let rest = &key[open + 1..];
    let close = find(b'}', rest)?;
    (close > 0).then(|| &rest[..close])
}

/// Keys shorter than this are searched a word (8 bytes) at a time: memchr's set-up costs
/// more than that loop for the short keys most applications use.
const SHORT_KEY: usize = 48;

/// The first index of `byte` in `hay`.
#[inline]
fn find(byte: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() >= SHORT_KEY {
        return memchr::memchr(byte, hay);
    }
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let pattern = u64::from_ne_bytes([byte; 8]);
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        // Always eight bytes; the check is compiled away.
        let Ok(&word) = <&[u8; 8]>::try_from(word) else {
            continue;
        };
        // Zero bytes where `byte` is; the lowest flagged byte is the first one (higher flags
        // may be false, after a borrow, but are never looked at).
        let xored = u64::from_le_bytes(word) ^ pattern;
        let flagged = xored.wrapping_sub(ONES) & !xored & HIGHS;
        if flagged != 0 {
            return Some(at + flagged.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let found = words.remainder().iter().position(|&b| b == byte)?;
    Some(at + found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values read from a real redis-server 7.0 with `CLUSTER KEYSLOT <key>`.
    const FROM_REDIS: &[(&[u8], u16)] = &[
        (b"foo", 12182),
        (b"bar", 5061),
        (b"hello", 866),
        (b"", 0),
        (b"123456789", 12739),
        (b"{user1000}.following", 3443),
        (b"{user1000}.followers", 3443),
        (b"user1000", 3443),
        (b"foo{}{bar}", 8363),
        (b"foo{{bar}}zap", 4015),
        (b"foo{bar}{zap}", 5061),
        (b"{}", 15257),
        (b"{", 4092),
        (b"}{a}", 15495),
        (b"a{b", 13340),
    ];

    #[test]
    fn matches_cluster_keyslot() {
        for (key, want) in FROM_REDIS {
            assert_eq!(
                Slot::of(key).get(),
                *want,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn tag_rules() {
        assert_eq!(hash_tag(b"{a}b"), Some(&b"a"[..]));
        assert_eq!(hash_tag(b"x{}{a}"), None);
        assert_eq!(hash_tag(b"x{a"), None);
        assert_eq!(hash_tag(b"x{{a}}"), Some(&b"{a"[..]));
    }

    #[test]
    fn long_and_short_keys_find_the_same_tag() {
        // Either side of the byte-loop / memchr threshold, with the braces anywhere.
        for len in [0, 1, SHORT_KEY - 1, SHORT_KEY, SHORT_KEY + 1, 200] {
            let mut key = vec![b'k'; len];
            assert_eq!(hash_tag(&key), None, "{len}");
            if len >= 4 {
                key[len - 4] = b'{';
                key[len - 2] = b'}';
                assert_eq!(hash_tag(&key), Some(&b"k"[..]), "{len}");
                key[1] = b'{';
                assert_eq!(hash_tag(&key), Some(&key[2..len - 2]), "{len}");
            }
        }
    }

    #[test]
    fn find_gives_the_first_match_at_every_position() {
        for len in [1, 7, 8, 9, 16, 23, SHORT_KEY - 1, SHORT_KEY, 60] {
            for first in 0..len {
                let mut hay = vec![b'{' ^ 0x80; len];
                hay[first] = b'{';
                // A byte that borrows in the word trick, and a second match, after it.
                if first + 1 < len {
                    hay[first + 1] = b'{' + 1;
                }
                if first + 2 < len {
                    hay[first + 2] = b'{';
                }
                assert_eq!(find(b'{', &hay), Some(first), "len {len}, at {first}");
                hay[first] = b'x';
                let next = (first + 2 < len).then_some(first + 2);
                assert_eq!(find(b'{', &hay), next, "len {len}, after {first}");
            }
        }
        assert_eq!(find(b'{', b""), None);
    }

    proptest::proptest! {
        /// Redis' rule on any key: the CRC of the hash tag when there is one, else of the key.
        #[test]
        fn slot_is_the_crc_of_the_tag_or_the_key(
            key in proptest::collection::vec(proptest::sample::select(b"{}ab".to_vec()), 0..40)
        ) {
            let hashed = hash_tag(&key).unwrap_or(&key);
            proptest::prop_assert_eq!(Slot::of(&key).get(), crc16(hashed) % SLOT_COUNT as u16);
        }
    }

    #[test]
    fn slot_bounds() {
        assert!(Slot::new(16383).is_some());
        assert!(Slot::new(16384).is_none());
    }
}
