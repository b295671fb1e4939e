//! What a cluster-mode client sees through slotgate: a one-node cluster that owns all 16384
//! slots, at the address the client connected to. A client configured for Redis Cluster then
//! sends everything to the proxy, which does the real routing.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::resp::encode;
use crate::slot::Slot;

use super::dispatch::error;

/// The CLUSTER subcommands answered with the one-node view.
pub(super) fn serves(sub: &str) -> bool {
    matches!(
        sub,
        "keyslot" | "info" | "myid" | "slots" | "shards" | "nodes"
    )
}

/// Answer `CLUSTER <sub> …` for a client connected to the proxy at `local`; `resp3` gives
/// SHARDS its RESP3 shape (maps, as Redis sends them).
pub(super) fn reply(sub: &str, args: &[&[u8]], local: Option<SocketAddr>, resp3: bool) -> Bytes {
    let (ip, port) = match local {
        Some(addr) => (addr.ip().to_string(), addr.port()),
        None => ("127.0.0.1".to_string(), 0),
    };
    let id = node_id(&ip, port);
    let mut out = BytesMut::new();
    match sub {
        "keyslot" => match args.get(2) {
            Some(key) => encode::integer(&mut out, i64::from(Slot::of(key).get())),
            None => return error("ERR wrong number of arguments for 'cluster|keyslot' command"),
        },
        "myid" => encode::bulk(&mut out, id.as_bytes()),
        "info" => {
            let text = "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n\
                        cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
                        cluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\n\
                        cluster_my_epoch:1\r\n";
            encode::bulk(&mut out, text.as_bytes());
        }
        "nodes" => {
            let line = format!("{id} {ip}:{port}@0 myself,master - 0 0 1 connected 0-16383\n");
            encode::bulk(&mut out, line.as_bytes());
        }
        "slots" => {
            encode::array_header(&mut out, 1);
            encode::array_header(&mut out, 3);
            encode::integer(&mut out, 0);
            encode::integer(&mut out, 16383);
            encode::array_header(&mut out, 4);
            encode::bulk(&mut out, ip.as_bytes());
            encode::integer(&mut out, i64::from(port));
            encode::bulk(&mut out, id.as_bytes());
            encode::array_header(&mut out, 0);
        }
        "shards" => {
            encode::array_header(&mut out, 1);
            map_header(&mut out, 2, resp3);
            encode::bulk(&mut out, b"slots");
            encode::array_header(&mut out, 2);
            encode::integer(&mut out, 0);
            encode::integer(&mut out, 16383);
            encode::bulk(&mut out, b"nodes");
            encode::array_header(&mut out, 1);
            map_header(&mut out, 7, resp3);
            for (key, value) in [("id", id.as_str()), ("ip", &ip), ("endpoint", &ip)] {
                encode::bulk(&mut out, key.as_bytes());
                encode::bulk(&mut out, value.as_bytes());
            }
            encode::bulk(&mut out, b"port");
            encode::integer(&mut out, i64::from(port));
            for (key, value) in [("role", "master"), ("health", "online")] {
                encode::bulk(&mut out, key.as_bytes());
                encode::bulk(&mut out, value.as_bytes());
            }
            encode::bulk(&mut out, b"replication-offset");
            encode::integer(&mut out, 0);
        }
        _ => return error("ERR slotgate: this CLUSTER subcommand is not served by the proxy"),
    }
    out.freeze()
}

/// The header of `pairs` field/value pairs: a RESP3 map, or a flat RESP2 array.
fn map_header(out: &mut BytesMut, pairs: usize, resp3: bool) {
    if resp3 {
        encode::length_header(out, b'%', pairs);
    } else {
        encode::array_header(out, pairs * 2);
    }
}

/// A stable 40-hex-digit node id for the proxy at `ip:port`.
fn node_id(ip: &str, port: u16) -> String {
    let part = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, ip, port).hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}{:08x}", part(1), part(2), part(3) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::test_args as args;

    #[test]
    fn a_one_node_cluster_owning_every_slot() {
        let local: Option<SocketAddr> = "127.0.0.1:6380".parse().ok();
        let slots = reply("slots", &args(&["CLUSTER", "SLOTS"]), local, false);
        assert!(slots
            .starts_with(b"*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n"));
        assert_eq!(
            &reply(
                "keyslot",
                &args(&["CLUSTER", "KEYSLOT", "foo"]),
                local,
                false
            )[..],
            b":12182\r\n"
        );
        let nodes = reply("nodes", &args(&["CLUSTER", "NODES"]), local, false);
        assert!(String::from_utf8_lossy(&nodes)
            .contains("127.0.0.1:6380@0 myself,master - 0 0 1 connected 0-16383"));
        assert_eq!(node_id("127.0.0.1", 6380).len(), 40);
        assert_eq!(node_id("127.0.0.1", 6380), node_id("127.0.0.1", 6380));
        assert!(reply("info", &args(&["CLUSTER", "INFO"]), local, false)
            .windows(16)
            .any(|w| w == b"cluster_state:ok"));
    }

    #[test]
    fn shards_are_maps_in_resp3_and_flat_arrays_in_resp2() {
        let local: Option<SocketAddr> = "127.0.0.1:6380".parse().ok();
        let shards = |resp3| reply("shards", &args(&["CLUSTER", "SHARDS"]), local, resp3);
        let limits = crate::resp::Limits::default();
        for (resp3, shard, node) in [(false, "*4\r\n", "*14\r\n"), (true, "%2\r\n", "%7\r\n")] {
            let raw = shards(resp3);
            // One well-formed frame, whatever the protocol.
            assert!(crate::resp::parse_frame(&raw, &limits).is_ok(), "{raw:?}");
            let text = String::from_utf8_lossy(&raw);
            assert!(
                text.starts_with(&format!("*1\r\n{shard}$5\r\nslots\r\n")),
                "{text}"
            );
            assert!(
                text.contains(&format!("$5\r\nnodes\r\n*1\r\n{node}$2\r\nid\r\n")),
                "{text}"
            );
            assert!(text.contains("$4\r\nport\r\n:6380\r\n"), "{text}");
        }
    }
}
