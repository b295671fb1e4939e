//! What a cluster-mode client sees through slotgate: a cluster of proxies, each serving every
//! key. Alone (no `proxy.announce`), a one-node cluster that owns all 16384 slots at the
//! address the client connected to; in a fleet, the live instances of the fleet view
//! ([`crate::fleet`]), each owning one contiguous share of the slots, so a cluster-aware client
//! connects to all of them and spreads its load. A client configured for Redis Cluster then
//! sends everything to the proxies, which do the real routing; since each serves every slot,
//! none ever answers MOVED.

use bytes::{Bytes, BytesMut};

use crate::fleet::{FleetView, Member};
use crate::resp::encode;
use crate::slot::Slot;

use super::dispatch::error;

/// The CLUSTER subcommands answered from the view.
pub(super) fn serves(sub: &str) -> bool {
    matches!(
        sub,
        "keyslot" | "info" | "myid" | "slots" | "shards" | "nodes"
    )
}

/// Answer `CLUSTER <sub> …` from `view` (the fleet, or this proxy alone); `resp3` gives
/// SHARDS and the SLOTS metadata their RESP3 shape (maps, as Redis sends them).
pub(super) fn reply(sub: &str, args: &[&[u8]], view: &FleetView, resp3: bool) -> Bytes {
    let mut out = BytesMut::new();
    match sub {
        "keyslot" => match args.get(2) {
            Some(key) => encode::integer(&mut out, i64::from(Slot::of(key).get())),
            None => return error("ERR wrong number of arguments for 'cluster|keyslot' command"),
        },
        "myid" => encode::bulk(&mut out, view.own().id.as_bytes()),
        "info" => encode::bulk(&mut out, info(view).as_bytes()),
        "nodes" => encode::bulk(&mut out, nodes(view).as_bytes()),
        "slots" => {
            encode::array_header(&mut out, view.share_count());
            for (_, member, first, last) in view.shares() {
                encode::array_header(&mut out, 3);
                encode::integer(&mut out, i64::from(first));
                encode::integer(&mut out, i64::from(last));
                encode::array_header(&mut out, 4);
                encode::bulk(&mut out, member.host.as_bytes());
                encode::integer(&mut out, i64::from(member.port));
                encode::bulk(&mut out, member.id.as_bytes());
                // Redis 7's metadata: the hostname, when the endpoint is one.
                if member.is_hostname() {
                    map_header(&mut out, 1, resp3);
                    encode::bulk(&mut out, b"hostname");
                    encode::bulk(&mut out, member.host.as_bytes());
                } else {
                    map_header(&mut out, 0, resp3);
                }
            }
        }
        "shards" => {
            encode::array_header(&mut out, view.share_count());
            for (_, member, first, last) in view.shares() {
                map_header(&mut out, 2, resp3);
                encode::bulk(&mut out, b"slots");
                encode::array_header(&mut out, 2);
                encode::integer(&mut out, i64::from(first));
                encode::integer(&mut out, i64::from(last));
                encode::bulk(&mut out, b"nodes");
                encode::array_header(&mut out, 1);
                shard_node(&mut out, member, resp3);
            }
        }
        _ => return error("ERR slotgate: this CLUSTER subcommand is not served by the proxy"),
    }
    out.freeze()
}

/// `CLUSTER INFO`'s text: every slot served, one node per instance.
fn info(view: &FleetView) -> String {
    let nodes = view.share_count();
    format!(
        "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n\
         cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
         cluster_known_nodes:{nodes}\r\ncluster_size:{nodes}\r\ncluster_current_epoch:{nodes}\r\n\
         cluster_my_epoch:1\r\n"
    )
}

/// `CLUSTER NODES`' text: one master line per instance (`ip:port@cport[,hostname]`), this
/// one flagged `myself`.
fn nodes(view: &FleetView) -> String {
    let mut text = String::new();
    for (i, member, first, last) in view.shares() {
        let flags = if view.is_own(i) {
            "myself,master"
        } else {
            "master"
        };
        let hostname = if member.is_hostname() {
            format!(",{}", member.host)
        } else {
            String::new()
        };
        let (id, host, port) = (&member.id, &member.host, member.port);
        let epoch = i + 1;
        text.push_str(&format!(
            "{id} {host}:{port}@0{hostname} {flags} - 0 0 {epoch} connected {first}-{last}\n"
        ));
    }
    text
}

/// One node of a `CLUSTER SHARDS` shard.
fn shard_node(out: &mut BytesMut, member: &Member, resp3: bool) {
    let hostname = member.is_hostname();
    map_header(out, 7 + usize::from(hostname), resp3);
    let host = member.host.as_str();
    for (key, value) in [("id", member.id.as_str()), ("ip", host), ("endpoint", host)] {
        encode::bulk(out, key.as_bytes());
        encode::bulk(out, value.as_bytes());
    }
    if hostname {
        encode::bulk(out, b"hostname");
        encode::bulk(out, host.as_bytes());
    }
    encode::bulk(out, b"port");
    encode::integer(out, i64::from(member.port));
    for (key, value) in [("role", "master"), ("health", "online")] {
        encode::bulk(out, key.as_bytes());
        encode::bulk(out, value.as_bytes());
    }
    encode::bulk(out, b"replication-offset");
    encode::integer(out, 0);
}

/// The header of `pairs` field/value pairs: a RESP3 map, or a flat RESP2 array.
fn map_header(out: &mut BytesMut, pairs: usize, resp3: bool) {
    if resp3 {
        encode::length_header(out, b'%', pairs);
    } else {
        encode::array_header(out, pairs * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::view::node_id;
    use crate::resp::test_args as args;

    fn alone() -> FleetView {
        FleetView::new("127.0.0.1:6380", []).unwrap()
    }

    fn fleet_of_three(own: &str) -> FleetView {
        let all = ["127.0.0.1:7003", "127.0.0.1:7001", "127.0.0.1:7002"];
        FleetView::new(own, all.into_iter().filter(|a| *a != own)).unwrap()
    }

    #[test]
    fn a_one_node_cluster_owning_every_slot() {
        let view = alone();
        let slots = reply("slots", &args(&["CLUSTER", "SLOTS"]), &view, false);
        assert!(slots
            .starts_with(b"*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n"));
        assert!(slots.ends_with(b"*0\r\n"));
        assert_eq!(
            &reply(
                "keyslot",
                &args(&["CLUSTER", "KEYSLOT", "foo"]),
                &view,
                false
            )[..],
            b":12182\r\n"
        );
        let nodes = reply("nodes", &args(&["CLUSTER", "NODES"]), &view, false);
        assert!(String::from_utf8_lossy(&nodes)
            .contains("127.0.0.1:6380@0 myself,master - 0 0 1 connected 0-16383"));
        let myid = reply("myid", &args(&["CLUSTER", "MYID"]), &view, false);
        assert_eq!(
            &myid[..],
            format!("$40\r\n{}\r\n", node_id("127.0.0.1:6380")).as_bytes()
        );
        let info = reply("info", &args(&["CLUSTER", "INFO"]), &view, false);
        let info = String::from_utf8_lossy(&info);
        assert!(info.contains("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_known_nodes:1\r\n"), "{info}");
    }

    #[test]
    fn a_fleet_splits_the_slots_and_every_instance_says_the_same() {
        let limits = crate::resp::Limits::default();
        let slots_of = |own: &str| {
            let raw = reply(
                "slots",
                &args(&["CLUSTER", "SLOTS"]),
                &fleet_of_three(own),
                false,
            );
            assert!(crate::resp::parse_frame(&raw, &limits).is_ok(), "{raw:?}");
            raw
        };
        let first = slots_of("127.0.0.1:7001");
        assert_eq!(first, slots_of("127.0.0.1:7002"));
        assert_eq!(first, slots_of("127.0.0.1:7003"));
        let text = String::from_utf8_lossy(&first);
        assert!(
            text.starts_with("*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n"),
            "{text}"
        );
        assert!(
            text.contains("*3\r\n:5461\r\n:10921\r\n*4\r\n$9\r\n127.0.0.1\r\n:7002\r\n"),
            "{text}"
        );
        assert!(
            text.contains("*3\r\n:10922\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n"),
            "{text}"
        );

        // NODES: the same lines, `myself` on the instance asked.
        let nodes = reply(
            "nodes",
            &args(&["CLUSTER", "NODES"]),
            &fleet_of_three("127.0.0.1:7002"),
            false,
        );
        let nodes = String::from_utf8_lossy(&nodes);
        let lines: Vec<&str> = nodes.lines().skip(1).filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{nodes}");
        assert!(
            lines[0].ends_with("127.0.0.1:7001@0 master - 0 0 1 connected 0-5460"),
            "{nodes}"
        );
        assert!(
            lines[1].ends_with("127.0.0.1:7002@0 myself,master - 0 0 2 connected 5461-10921"),
            "{nodes}"
        );
        assert!(lines[1].starts_with(&node_id("127.0.0.1:7002")), "{nodes}");
        let myid = reply(
            "myid",
            &args(&["CLUSTER", "MYID"]),
            &fleet_of_three("127.0.0.1:7003"),
            false,
        );
        assert!(String::from_utf8_lossy(&myid).contains(&node_id("127.0.0.1:7003")));
        let info = reply(
            "info",
            &args(&["CLUSTER", "INFO"]),
            &fleet_of_three("127.0.0.1:7003"),
            false,
        );
        assert!(
            String::from_utf8_lossy(&info).contains("cluster_known_nodes:3\r\ncluster_size:3\r\n")
        );

        let shards = reply(
            "shards",
            &args(&["CLUSTER", "SHARDS"]),
            &fleet_of_three("127.0.0.1:7001"),
            true,
        );
        assert!(crate::resp::parse_frame(&shards, &limits).is_ok());
        let text = String::from_utf8_lossy(&shards);
        assert!(
            text.starts_with("*3\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("$4\r\nport\r\n").count(), 3, "{text}");
    }

    #[test]
    fn a_hostname_is_the_endpoint_and_named_in_the_metadata() {
        let view = FleetView::new("slotgate-0.slotgate:6380", []).unwrap();
        let limits = crate::resp::Limits::default();
        for resp3 in [false, true] {
            let slots = reply("slots", &args(&["CLUSTER", "SLOTS"]), &view, resp3);
            assert!(
                crate::resp::parse_frame(&slots, &limits).is_ok(),
                "{slots:?}"
            );
            let text = String::from_utf8_lossy(&slots);
            let meta = if resp3 { "%1\r\n" } else { "*2\r\n" };
            assert!(
                text.ends_with(&format!(
                    "{meta}$8\r\nhostname\r\n$19\r\nslotgate-0.slotgate\r\n"
                )),
                "{text}"
            );
            let shards = reply("shards", &args(&["CLUSTER", "SHARDS"]), &view, resp3);
            assert!(
                crate::resp::parse_frame(&shards, &limits).is_ok(),
                "{shards:?}"
            );
            assert!(String::from_utf8_lossy(&shards).contains("$8\r\nhostname\r\n"));
        }
        let nodes = reply("nodes", &args(&["CLUSTER", "NODES"]), &view, false);
        assert!(String::from_utf8_lossy(&nodes)
            .contains(" slotgate-0.slotgate:6380@0,slotgate-0.slotgate myself,master "));
    }

    #[test]
    fn shards_are_maps_in_resp3_and_flat_arrays_in_resp2() {
        let view = alone();
        let shards = |resp3| reply("shards", &args(&["CLUSTER", "SHARDS"]), &view, resp3);
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
