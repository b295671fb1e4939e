//! The key hash functions Twemproxy (nutcracker 0.5) offers, bit for bit.
//!
//! Pure. Each function mirrors Twemproxy's behaviour, quirks included, because placement must
//! match it exactly: `fnv1a_64` is computed in 32 bits (the 64-bit offset basis and prime
//! truncated), and the FNV and one-at-a-time variants read the key as C `char`, which is signed
//! on x86-64, so a byte >= 0x80 enters the hash sign-extended.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A Twemproxy `hash:` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum KeyHash {
    /// `fnv1a_64` (Twemproxy's default).
    #[serde(rename = "fnv1a_64")]
    #[default]
    Fnv1a64,
    /// `fnv1_64`.
    #[serde(rename = "fnv1_64")]
    Fnv164,
    /// `fnv1a_32`.
    #[serde(rename = "fnv1a_32")]
    Fnv1a32,
    /// `fnv1_32`.
    #[serde(rename = "fnv1_32")]
    Fnv132,
    /// `md5`: the first 4 digest bytes, little-endian.
    #[serde(rename = "md5")]
    Md5,
    /// `crc32`: Twemproxy's 15-bit variant of CRC-32.
    #[serde(rename = "crc32")]
    Crc32,
    /// `crc32a`: the standard CRC-32 (IEEE).
    #[serde(rename = "crc32a")]
    Crc32a,
    /// `murmur`: MurmurHash2 with Twemproxy's length-derived seed.
    #[serde(rename = "murmur")]
    Murmur,
    /// `one_at_a_time`: Jenkins' one-at-a-time.
    #[serde(rename = "one_at_a_time")]
    OneAtATime,
}

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

/// A key byte as C's `(uint32_t)(char)b` on x86-64: sign-extended.
#[inline]
fn signed32(b: u8) -> u32 {
    b as i8 as i32 as u32
}

impl KeyHash {
    /// The 32-bit hash of `key`, as Twemproxy computes it.
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::Fnv1a64 => key.iter().fold(FNV_64_INIT as u32, |h, &b| {
                (h ^ signed32(b)).wrapping_mul(FNV_64_PRIME as u32)
            }),
            KeyHash::Fnv164 => key.iter().fold(FNV_64_INIT, |h, &b| {
                h.wrapping_mul(FNV_64_PRIME) ^ (b as i8 as i64 as u64)
            }) as u32,
            KeyHash::Fnv1a32 => key.iter().fold(FNV_32_INIT, |h, &b| {
                (h ^ signed32(b)).wrapping_mul(FNV_32_PRIME)
            }),
            KeyHash::Fnv132 => key.iter().fold(FNV_32_INIT, |h, &b| {
                h.wrapping_mul(FNV_32_PRIME) ^ signed32(b)
            }),
            KeyHash::Md5 => md5_word(key, 0),
            KeyHash::Crc32 => (!crc32_raw(key) >> 16) & 0x7fff,
            KeyHash::Crc32a => !crc32_raw(key),
            KeyHash::Murmur => murmur2(key),
            KeyHash::OneAtATime => {
                let mut v: u32 = 0;
                for &b in key {
                    v = v.wrapping_add(signed32(b));
                    v = v.wrapping_add(v << 10);
                    v ^= v >> 6;
                }
                v = v.wrapping_add(v << 3);
                v ^= v >> 11;
                v.wrapping_add(v << 15)
            }
        }
    }

    /// The name used in configuration files (`fnv1a_64` …).
    pub fn name(self) -> &'static str {
        match self {
            KeyHash::Fnv1a64 => "fnv1a_64",
            KeyHash::Fnv164 => "fnv1_64",
            KeyHash::Fnv1a32 => "fnv1a_32",
            KeyHash::Fnv132 => "fnv1_32",
            KeyHash::Md5 => "md5",
            KeyHash::Crc32 => "crc32",
            KeyHash::Crc32a => "crc32a",
            KeyHash::Murmur => "murmur",
            KeyHash::OneAtATime => "one_at_a_time",
        }
    }
}

/// Word `n` (0..4) of the MD5 digest of `data`, little-endian: Twemproxy's `ketama_hash`
/// (and, with `n = 0`, its `md5` key hash).
pub fn md5_word(data: &[u8], n: usize) -> u32 {
    let digest = Md5::digest(data);
    let at = |i: usize| digest.get(n * 4 + i).copied().unwrap_or(0);
    u32::from_le_bytes([at(0), at(1), at(2), at(3)])
}

/// The CRC-32 (IEEE, reflected) register after `data`, before the final inversion.
fn crc32_raw(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// MurmurHash2, seeded with `0xdeadbeef * len` as Twemproxy does (little-endian reads).
fn murmur2(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let mut h = 0xdead_beef_u32.wrapping_mul(len) ^ len;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_check_values() {
        // CRC-32 of "123456789" is the well-known check value 0xCBF43926.
        assert_eq!(KeyHash::Crc32a.hash(b"123456789"), 0xcbf4_3926);
        // FNV-1a 32 of "a" (reference test vector); fnv1a_64 in Twemproxy is the same
        // computation with the truncated 64-bit constants.
        assert_eq!(KeyHash::Fnv1a32.hash(b"a"), 0xe40c_292c);
        assert_eq!(KeyHash::Fnv1a32.hash(b""), FNV_32_INIT);
        // FNV-1 64 of "a" is 0xaf63bd4c8601b7be; Twemproxy keeps the low 32 bits.
        assert_eq!(KeyHash::Fnv164.hash(b"a"), 0x8601_b7be);
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e; first word little-endian.
        assert_eq!(KeyHash::Md5.hash(b""), 0xd98c_1dd4);
        // One-at-a-time of "a" (reference value).
        assert_eq!(KeyHash::OneAtATime.hash(b"a"), 0xca2e_9442);
    }

    #[test]
    fn high_bytes_are_sign_extended_like_c_char() {
        let unsigned = (FNV_64_INIT as u32 ^ 0xe9).wrapping_mul(FNV_64_PRIME as u32);
        let signed = (FNV_64_INIT as u32 ^ 0xffff_ffe9).wrapping_mul(FNV_64_PRIME as u32);
        assert_ne!(unsigned, signed);
        assert_eq!(KeyHash::Fnv1a64.hash(&[0xe9]), signed);
    }

    #[test]
    fn names_round_trip_through_serde() {
        for h in [
            KeyHash::Fnv1a64,
            KeyHash::Fnv164,
            KeyHash::Fnv1a32,
            KeyHash::Fnv132,
            KeyHash::Md5,
            KeyHash::Crc32,
            KeyHash::Crc32a,
            KeyHash::Murmur,
            KeyHash::OneAtATime,
        ] {
            let text = format!("h = \"{}\"", h.name());
            #[derive(Deserialize)]
            struct T {
                h: KeyHash,
            }
            let t: T = toml::from_str(&text).unwrap();
            assert_eq!(t.h, h);
        }
    }
}
