//! A hash tag for every slot: a short string whose CRC16 lands in that slot, so a name
//! `…{tag}…` made for a key lives in the key's slot whatever the key holds (braces
//! included). Used by the staging keys of big keys copied in steps (`migration::stepped`):
//! on a Redis Cluster, `RENAMENX staging key` is refused across slots.
//!
//! The table is found once, on first use, by search: the base-62 numerals `0`, `1`, … `zz`,
//! `100` … in turn, each giving its slot the first time it lands there. Every slot has one
//! of at most 3 characters (about 69 000 numerals are tried, a few milliseconds).

use std::sync::OnceLock;

use super::{Slot, SLOT_COUNT};

/// The digits of the tags: alphanumeric, so never a brace.
const DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// The longest tag.
const MAX_LEN: usize = 3;

/// A tag: its bytes, then its length.
type Tag = [u8; MAX_LEN + 1];

/// The base-62 numeral of `n` (`n < 62³`).
fn numeral(mut n: usize) -> Tag {
    let mut digits = [0u8; MAX_LEN];
    let mut len = 0;
    loop {
        digits[len] = DIGITS[n % DIGITS.len()];
        len += 1;
        n /= DIGITS.len();
        if n == 0 || len == MAX_LEN {
            break;
        }
    }
    let mut tag = [0u8; MAX_LEN + 1];
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        tag[i] = *digit;
    }
    tag[MAX_LEN] = len as u8;
    tag
}

/// Every slot's tag, found by search.
fn table() -> &'static [Tag] {
    static TABLE: OnceLock<Box<[Tag]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![[0u8; MAX_LEN + 1]; SLOT_COUNT];
        let mut left = SLOT_COUNT;
        for n in 0..DIGITS.len().pow(MAX_LEN as u32) {
            let tag = numeral(n);
            let slot = Slot::of(&tag[..tag[MAX_LEN] as usize]).index();
            if table[slot][MAX_LEN] == 0 {
                table[slot] = tag;
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        // Checked by a unit test: every slot is found well before the numerals run out.
        debug_assert_eq!(left, 0);
        table.into_boxed_slice()
    })
}

/// A tag of at most 3 alphanumeric characters that hashes to `slot`: `Slot::of(tag) == slot`,
/// and `Slot::of(b"…{tag}…")` too for any name whose first `{` is the tag's.
pub fn tag_for(slot: Slot) -> &'static [u8] {
    let tag = &table()[slot.index()];
    &tag[..tag[MAX_LEN] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_short_alphanumeric_tag_that_hashes_to_it() {
        for n in 0..SLOT_COUNT as u16 {
            let slot = Slot::new(n).unwrap();
            let tag = tag_for(slot);
            assert!(!tag.is_empty() && tag.len() <= MAX_LEN, "slot {n}: {tag:?}");
            assert!(
                tag.iter().all(u8::is_ascii_alphanumeric),
                "slot {n}: {tag:?}"
            );
            assert_eq!(Slot::of(tag), slot, "slot {n}");
            let mut name = b"prefix:{".to_vec();
            name.extend_from_slice(tag);
            name.extend_from_slice(b"}:a{b}c}");
            assert_eq!(Slot::of(&name), slot, "slot {n} in a name");
        }
    }

    #[test]
    fn numerals_count_in_base_62() {
        let text = |n| {
            let tag = numeral(n);
            String::from_utf8(tag[..tag[MAX_LEN] as usize].to_vec()).unwrap()
        };
        assert_eq!(text(0), "0");
        assert_eq!(text(61), "Z");
        assert_eq!(text(62), "10");
        assert_eq!(text(62 * 62 * 62 - 1), "ZZZ");
    }
}
