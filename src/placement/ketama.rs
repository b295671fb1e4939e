//! Twemproxy's ketama continuum: consistent hashing of keys onto weighted servers.
//!
//! ```text
//!  server "name" weight w ──► floor(w/W · 40 · n) hashes "name-0" … "name-k" (MD5), 4 points each
//!  key ──hash──► h ──► first point ≥ h on the sorted circle (wrapping) ──► that point's server
//! ```
//!
//! Pure, and faithful to nutcracker 0.5's `nc_ketama.c` so that slotgate places every key on
//! the server Twemproxy would: the same point count arithmetic (in `f32`, as C's `float`), the
//! same point names, the same lookup. One difference that cannot matter in practice: when two
//! points of different servers share the same 32-bit value, C's `qsort` may order them either
//! way; ours keeps server order.

use super::Unit;

use super::hash::{md5_word, KeyHash};
use super::PlacementError;

/// Points per server at equal weights (Twemproxy's `KETAMA_POINTS_PER_SERVER`).
const POINTS_PER_SERVER: u32 = 160;
/// Points derived from one MD5 digest.
const POINTS_PER_HASH: u32 = 4;
/// Longest server name whose point names fit Twemproxy's 86-byte buffer untruncated.
pub const MAX_NAME_LEN: usize = 80;

/// One server of the continuum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KetamaServer {
    /// The name hashed into points: Twemproxy's `name`, or `host:port` (just `host` for
    /// port 11211).
    pub name: String,
    /// Relative weight, at least 1.
    pub weight: u32,
}

/// A built continuum with its key hash and hash tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ketama {
    hash: KeyHash,
    tag: Option<[u8; 2]>,
    /// `(point, server)`, sorted by point. Never empty.
    points: Vec<(u32, Unit)>,
    servers: usize,
}

impl Ketama {
    /// The continuum of `servers` (in configuration order: server `i` is routing unit `i`).
    pub fn new(
        servers: &[KetamaServer],
        hash: KeyHash,
        tag: Option<[u8; 2]>,
    ) -> Result<Ketama, PlacementError> {
        if servers.is_empty() {
            return Err(PlacementError::NoServers);
        }
        let total: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
        let live = servers.len() as f32;
        let mut points = Vec::with_capacity(servers.len() * POINTS_PER_SERVER as usize);
        for (index, server) in servers.iter().enumerate() {
            let unit = u16::try_from(index)
                .ok()
                .and_then(Unit::new)
                .ok_or(PlacementError::TooManyServers(servers.len()))?;
            if server.weight == 0 {
                return Err(PlacementError::ZeroWeight(server.name.clone()));
            }
            // C: floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4, with pct a float.
            let pct = server.weight as f32 / total as f32;
            let scaled = pct * POINTS_PER_SERVER as f32 / POINTS_PER_HASH as f32 * live;
            let per_server =
                ((f64::from(scaled) + 0.000_000_000_1) as f32).floor() as u32 * POINTS_PER_HASH;
            for i in 0..per_server / POINTS_PER_HASH {
                let point_name = format!("{}-{i}", server.name);
                for word in 0..POINTS_PER_HASH as usize {
                    points.push((md5_word(point_name.as_bytes(), word), unit));
                }
            }
        }
        if points.is_empty() {
            return Err(PlacementError::NoServers);
        }
        points.sort_by_key(|&(point, _)| point);
        Ok(Ketama {
            hash,
            tag,
            points,
            servers: servers.len(),
        })
    }

    /// The routing unit (server index) of `key`.
    #[inline]
    pub fn unit_of(&self, key: &[u8]) -> Unit {
        let fallback = self.points[0].1;
        if self.servers == 1 {
            return fallback;
        }
        let hashed = match self.tag {
            Some([open, close]) => tagged(key, open, close).unwrap_or(key),
            None => key,
        };
        // Twemproxy hashes an empty key to 0 without calling the hash function.
        let h = if hashed.is_empty() {
            0
        } else {
            self.hash.hash(hashed)
        };
        let at = self.points.partition_point(|&(point, _)| point < h);
        self.points.get(at).map_or(fallback, |&(_, unit)| unit)
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// The key hash in use.
    pub fn hash(&self) -> KeyHash {
        self.hash
    }
}

/// The part of `key` between the first `open` and the next `close` after it, if non-empty
/// (Twemproxy's `hash_tag` rule).
fn tagged(key: &[u8], open: u8, close: u8) -> Option<&[u8]> {
    let start = key.iter().position(|&b| b == open)?;
    let rest = key.get(start + 1..)?;
    let end = rest.iter().position(|&b| b == close)?;
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(names: &[&str]) -> Vec<KetamaServer> {
        names
            .iter()
            .map(|n| KetamaServer {
                name: n.to_string(),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn equal_weights_give_160_points_each() {
        let k = Ketama::new(&servers(&["a:1", "b:1", "c:1"]), KeyHash::Fnv1a64, None).unwrap();
        assert_eq!(k.points.len(), 480);
        assert!(k.points.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn weights_scale_points() {
        let mut s = servers(&["a:1", "b:1"]);
        s[0].weight = 3;
        let k = Ketama::new(&s, KeyHash::Md5, None).unwrap();
        let on_a = k.points.iter().filter(|p| p.1.get() == 0).count();
        assert_eq!(on_a, 240);
        assert_eq!(k.points.len(), 320);
    }

    #[test]
    fn hash_tags_keep_keys_together() {
        let k = Ketama::new(
            &servers(&["a:1", "b:1", "c:1", "d:1"]),
            KeyHash::Fnv1a64,
            Some(*b"{}"),
        )
        .unwrap();
        for i in 0..100 {
            let a = format!("{{user{i}}}.name");
            let b = format!("x{{user{i}}}.mail");
            assert_eq!(k.unit_of(a.as_bytes()), k.unit_of(b.as_bytes()));
        }
        assert_eq!(tagged(b"a{}b", b'{', b'}'), None);
        assert_eq!(tagged(b"a{b}c", b'{', b'}'), Some(&b"b"[..]));
    }

    #[test]
    fn every_server_gets_keys_and_units_are_in_range() {
        let k = Ketama::new(&servers(&["a:1", "b:1", "c:1"]), KeyHash::Murmur, None).unwrap();
        let mut seen = [0usize; 3];
        for i in 0..3000 {
            seen[k.unit_of(format!("key:{i}").as_bytes()).index()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 500), "{seen:?}");
    }

    #[test]
    fn rejects_empty_and_zero_weight() {
        assert_eq!(
            Ketama::new(&[], KeyHash::Md5, None),
            Err(PlacementError::NoServers)
        );
        let mut s = servers(&["a:1"]);
        s[0].weight = 0;
        assert!(Ketama::new(&s, KeyHash::Md5, None).is_err());
    }
}
