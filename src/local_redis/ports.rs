//! Picking free loopback ports for local servers.
//!
//! A port is "free" when it (and, for cluster nodes, its bus port `p + 10000`) can be bound on
//! 127.0.0.1 right now. Two guards against collisions:
//! - within this process (parallel tests), a shared cursor never hands out the same port twice
//!   until the whole range has been cycled through;
//! - across processes, each process starts its cursor at a different place in the range
//!   (derived from its pid and the clock), and the bind check skips ports already in use.
//!
//! Race window: another process may still take a port between our check and the server's bind.
//! The process launcher detects "Address already in use" and retries on a new port.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::LocalRedisError;

/// First port of the range we hand out.
const RANGE_START: u32 = 20_000;
/// Number of ports in the range (20000..45000); bus ports land in 30000..55000.
const RANGE_LEN: u32 = 25_000;
/// Offset of a cluster node's bus port, as Redis computes it by default.
pub(crate) const BUS_OFFSET: u16 = 10_000;
/// Candidates tried before giving up.
const MAX_ATTEMPTS: u32 = 2_000;

/// Counts ports handed out by this process; added to the per-process start offset.
static CURSOR: AtomicU32 = AtomicU32::new(0);
/// Per-process start offset within the range.
static START: OnceLock<u32> = OnceLock::new();

/// A free loopback TCP port `p`: `p` (and `p + 10000` when `with_bus`, for cluster nodes) can be
/// bound now. Never returns the same port twice within this process (until the range wraps).
pub fn free_port(with_bus: bool) -> Result<u16, LocalRedisError> {
    let start = *START.get_or_init(start_offset);
    for _ in 0..MAX_ATTEMPTS {
        let n = CURSOR.fetch_add(1, Ordering::Relaxed);
        let offset = start.wrapping_add(n) % RANGE_LEN;
        // Both values fit in u16: RANGE_START + RANGE_LEN < 65536.
        let Ok(port) = u16::try_from(RANGE_START + offset) else {
            continue;
        };
        if can_bind(port) && (!with_bus || can_bind(port + BUS_OFFSET)) {
            return Ok(port);
        }
    }
    Err(LocalRedisError::NoFreePort {
        attempts: MAX_ATTEMPTS,
    })
}

/// True when 127.0.0.1:`port` can be bound right now (the listener is closed again at once).
pub(crate) fn can_bind(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A start offset that differs between processes started close together.
fn start_offset() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Spread pids by a large odd multiplier so neighbouring pids land far apart.
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos / 1000)
        % RANGE_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_distinct_and_in_range() {
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let p = free_port(true).unwrap();
            assert!((20_000..45_000).contains(&p));
            assert!(seen.insert(p), "port {p} handed out twice");
        }
    }

    #[test]
    fn a_bound_port_is_not_free() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!can_bind(port));
    }
}
