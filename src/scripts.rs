//! Lua script bodies the proxy has seen (SCRIPT LOAD, EVAL), by SHA1, so an EVALSHA that meets
//! `NOSCRIPT` on a node — typically a replica promoted by a failover, since Redis does not
//! replicate its script cache — can be answered by loading the script there and running the
//! EVALSHA again, instead of the client seeing an error it never saw on one Redis.
//!
//! Shared by all workers behind a mutex, touched only by SCRIPT LOAD, EVAL and the rare
//! NOSCRIPT: never by ordinary commands.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// Most scripts remembered; past it the cache is cleared (clients re-load on NOSCRIPT anyway).
const CAPACITY: usize = 10_000;

/// Script bodies by lowercase hex SHA1.
#[derive(Debug, Default)]
pub struct ScriptCache {
    bodies: Mutex<HashMap<[u8; 40], Bytes>>,
}

impl ScriptCache {
    /// An empty cache.
    pub fn new() -> ScriptCache {
        ScriptCache::default()
    }

    /// Remember `body` (as loaded by SCRIPT LOAD or run by EVAL).
    pub fn remember(&self, body: &[u8]) {
        let sha = sha1_hex(body);
        let Ok(mut bodies) = self.bodies.lock() else {
            return;
        };
        if bodies.contains_key(&sha) {
            return;
        }
        if bodies.len() >= CAPACITY {
            bodies.clear();
        }
        bodies.insert(sha, Bytes::copy_from_slice(body));
    }

    /// Forget every script (the client flushed the nodes' caches with SCRIPT FLUSH).
    pub fn clear(&self) {
        if let Ok(mut bodies) = self.bodies.lock() {
            bodies.clear();
        }
    }

    /// The body whose SHA1 is `sha` (hex, any case), if it was seen.
    pub fn body(&self, sha: &[u8]) -> Option<Bytes> {
        let key: [u8; 40] = sha.to_ascii_lowercase().try_into().ok()?;
        self.bodies.lock().ok()?.get(&key).cloned()
    }
}

/// Lowercase hex SHA1, as Redis names scripts.
pub fn sha1_hex(data: &[u8]) -> [u8; 40] {
    let digest = sha1_smol::Sha1::from(data).digest().bytes();
    let mut out = [0u8; 40];
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_scripts_like_redis() {
        // SCRIPT LOAD "return 1" answers this SHA on Redis 7.
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        let cache = ScriptCache::new();
        cache.remember(&Bytes::from_static(b"return 1"));
        assert_eq!(
            cache.body(b"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB"),
            Some(Bytes::from_static(b"return 1"))
        );
        assert_eq!(cache.body(b"nope"), None);
    }
}
