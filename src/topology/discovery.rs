//! Reading a cluster's layout from a node's `CLUSTER SHARDS` or `CLUSTER SLOTS` reply.
//!
//! Pure: these functions turn a parsed reply into [`ShardInfo`]s; fetching the reply is
//! [`super::Topology`]'s job. A node whose endpoint is unknown (`?`) or empty is reached at the
//! host of the node that answered, which is what Redis means by those values.

use crate::resp::Frame;

use super::table::{ShardInfo, SlotTable};

/// Why a discovery reply could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {command} reply: {reason}")]
pub struct DiscoveryError {
    /// `CLUSTER SHARDS` or `CLUSTER SLOTS`.
    pub command: &'static str,
    /// What was wrong with it.
    pub reason: String,
}

fn bad(command: &'static str, reason: impl Into<String>) -> DiscoveryError {
    DiscoveryError {
        command,
        reason: reason.into(),
    }
}

/// A numeric `name:value` field of an INFO-style text (e.g. `CLUSTER INFO`).
pub fn info_field(text: &[u8], name: &str) -> Option<u64> {
    info_value(std::str::from_utf8(text).ok()?, name)?
        .parse()
        .ok()
}

/// The value of a `name:value` line of an INFO-style text (`INFO`, `CLUSTER INFO`), trimmed.
pub fn info_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// True when the answering node's own line (`myself`) of a `CLUSTER NODES` reply shows a slot
/// being migrated away (`[slot->-id]`) or imported (`[slot-<-id]`): keys of that slot are
/// moving between nodes right now.
pub fn migration_in_progress(cluster_nodes: &str) -> bool {
    cluster_nodes
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(2)
                .is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
        })
        .any(|line| {
            line.split(' ').skip(8).any(|field| {
                field.starts_with('[') && (field.contains("->-") || field.contains("-<-"))
            })
        })
}

/// A string-ish field (bulk or status) as UTF-8.
fn text(frame: &Frame) -> Option<&str> {
    frame.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

/// `host:port`, substituting the queried host when Redis reports the endpoint as unknown.
fn endpoint(host: &str, port: i64, queried_host: &str) -> Option<String> {
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    let host = match host {
        "" | "?" => queried_host,
        h => h,
    };
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Parse a RESP2 `CLUSTER SHARDS` reply (Redis ≥ 7.0). Shards without slots are skipped;
/// a shard whose master is not `online` is kept (its slots then fail clearly, and a later
/// refresh picks up the promoted replica); replicas that are not `online` are left out.
/// With `tls` (backend TLS), a node's `tls-port` is used when it reports one (a
/// `tls-cluster yes` node; with `--port 0` it reports no `port` at all).
pub fn parse_cluster_shards(
    reply: &Frame,
    queried_host: &str,
    tls: bool,
) -> Result<Vec<ShardInfo>, DiscoveryError> {
    const CMD: &str = "CLUSTER SHARDS";
    let shards = reply.as_array().ok_or_else(|| bad(CMD, "not an array"))?;
    let mut out = Vec::new();
    for shard in shards {
        let fields = shard
            .as_array()
            .ok_or_else(|| bad(CMD, "shard is not an array"))?;
        let mut ranges = Vec::new();
        let mut master = None;
        let mut replicas = Vec::new();
        let mut loading = Vec::new();
        for pair in fields.chunks(2) {
            let [name, value] = pair else { break };
            match text(name) {
                Some("slots") => {
                    let bounds = value
                        .as_array()
                        .ok_or_else(|| bad(CMD, "slots is not an array"))?;
                    for range in bounds.chunks(2) {
                        let (Some(a), Some(b)) = (
                            range.first().and_then(Frame::as_int),
                            range.get(1).and_then(Frame::as_int),
                        ) else {
                            return Err(bad(CMD, "slot range is not two integers"));
                        };
                        let (Ok(a), Ok(b)) = (u16::try_from(a), u16::try_from(b)) else {
                            return Err(bad(CMD, format!("slot range {a}-{b} out of bounds")));
                        };
                        ranges.push((a, b));
                    }
                }
                Some("nodes") => {
                    let nodes = value
                        .as_array()
                        .ok_or_else(|| bad(CMD, "nodes is not an array"))?;
                    for node in nodes {
                        let node = parse_shard_node(node, queried_host, tls)?;
                        match (node.role.as_str(), node.health.as_str()) {
                            ("master", _) => master = Some(node.addr),
                            (_, "online") => replicas.push(node.addr),
                            (_, "loading") => loading.push(node.addr),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if ranges.is_empty() {
            continue;
        }
        let master = master.ok_or_else(|| bad(CMD, "a shard with slots has no master"))?;
        out.push(ShardInfo {
            ranges,
            master,
            replicas,
            loading,
        });
    }
    Ok(out)
}

/// Keep reading from a replica the answering node calls `loading` when `current` already
/// reads from it as a replica of the same master. A node learns a replica's replication
/// offset from gossip, so a node that has not heard from the replica lately reports a synced
/// replica as `loading`; believing it would make the table flap between views. (A replica
/// that really resyncs is taken out of reads by the health checker, which watches its link.)
pub fn keep_known_replicas(shards: &mut [ShardInfo], current: &SlotTable) {
    for shard in shards {
        let Some(known) = current.shards().iter().find(|s| *s.master == *shard.master) else {
            continue;
        };
        for addr in std::mem::take(&mut shard.loading) {
            if known.replicas.iter().any(|r| **r == *addr) {
                shard.replicas.push(addr);
            } else {
                shard.loading.push(addr);
            }
        }
    }
}

struct ShardNode {
    addr: String,
    role: String,
    health: String,
}

fn parse_shard_node(
    node: &Frame,
    queried_host: &str,
    tls: bool,
) -> Result<ShardNode, DiscoveryError> {
    const CMD: &str = "CLUSTER SHARDS";
    let fields = node
        .as_array()
        .ok_or_else(|| bad(CMD, "node is not an array"))?;
    let (mut ip, mut endpoint_field, mut port, mut tls_port) = (None, None, None, None);
    let (mut role, mut health) = (String::new(), String::from("online"));
    for pair in fields.chunks(2) {
        let [name, value] = pair else { break };
        match text(name) {
            Some("ip") => ip = text(value),
            Some("endpoint") => endpoint_field = text(value),
            Some("port") => port = value.as_int(),
            Some("tls-port") => tls_port = value.as_int(),
            Some("role") => role = text(value).unwrap_or_default().to_string(),
            Some("health") => health = text(value).unwrap_or_default().to_string(),
            _ => {}
        }
    }
    let host = endpoint_field.or(ip).unwrap_or("");
    let port = if tls { tls_port.or(port) } else { port };
    let port = port.ok_or_else(|| bad(CMD, "node without a port"))?;
    let addr = endpoint(host, port, queried_host)
        .ok_or_else(|| bad(CMD, format!("node with invalid port {port}")))?;
    Ok(ShardNode { addr, role, health })
}

/// Parse a RESP2 `CLUSTER SLOTS` reply: `[[first, last, [host, port, id, …], replica…], …]`.
pub fn parse_cluster_slots(
    reply: &Frame,
    queried_host: &str,
) -> Result<Vec<ShardInfo>, DiscoveryError> {
    const CMD: &str = "CLUSTER SLOTS";
    let entries = reply.as_array().ok_or_else(|| bad(CMD, "not an array"))?;
    let mut out: Vec<ShardInfo> = Vec::new();
    for entry in entries {
        let items = entry
            .as_array()
            .ok_or_else(|| bad(CMD, "entry is not an array"))?;
        let (Some(first), Some(last)) = (
            items.first().and_then(Frame::as_int),
            items.get(1).and_then(Frame::as_int),
        ) else {
            return Err(bad(CMD, "entry does not start with two integers"));
        };
        let (Ok(first), Ok(last)) = (u16::try_from(first), u16::try_from(last)) else {
            return Err(bad(CMD, format!("slot range {first}-{last} out of bounds")));
        };
        let mut nodes = items.iter().skip(2).map(|n| {
            let fields = n.as_array().unwrap_or_default();
            let host = fields.first().and_then(text).unwrap_or("");
            let port = fields.get(1).and_then(Frame::as_int).unwrap_or(0);
            endpoint(host, port, queried_host)
                .ok_or_else(|| bad(CMD, format!("node with invalid port {port}")))
        });
        let master = nodes
            .next()
            .ok_or_else(|| bad(CMD, "slot range without a master"))??;
        let replicas = nodes.collect::<Result<Vec<_>, _>>()?;
        match out.iter_mut().find(|s| s.master == master) {
            Some(shard) => shard.ranges.push((first, last)),
            None => out.push(ShardInfo {
                ranges: vec![(first, last)],
                master,
                replicas,
                loading: Vec::new(),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_read_from_the_answering_nodes_line() {
        let stable = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191\n\
                      b2 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383 [9000-<-a1]\n";
        assert!(!migration_in_progress(stable));
        let migrating =
            "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191 [42->-b2]\n";
        assert!(migration_in_progress(migrating));
        let importing =
            "b2 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 8192-16383 [42-<-a1]\n";
        assert!(migration_in_progress(importing));
        assert!(!migration_in_progress(""));
    }
    use bytes::Bytes;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn node(ip: &str, port: i64, role: &str, health: &str) -> Frame {
        Frame::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            Frame::Integer(port),
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(ip),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            Frame::Integer(0),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn a_loading_replica_stays_only_when_already_read_from() {
        let shard = |replicas: &[&str], loading: &[&str]| ShardInfo {
            ranges: vec![(0, 16383)],
            master: "m:1".into(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
            loading: loading.iter().map(|r| r.to_string()).collect(),
        };
        let current = SlotTable::from_shards(&[shard(&["r:1"], &[])], 1).unwrap();
        let mut seen = vec![shard(&[], &["r:1", "r:2"])];
        keep_known_replicas(&mut seen, &current);
        assert_eq!(seen, vec![shard(&["r:1"], &["r:2"])]);
        // Under another master the same address is not "known".
        let mut moved = vec![ShardInfo {
            master: "m:2".into(),
            ..shard(&[], &["r:1"])
        }];
        keep_known_replicas(&mut moved, &current);
        assert!(moved[0].replicas.is_empty());
    }

    #[test]
    fn shards_reply() {
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                bulk("slots"),
                Frame::Array(vec![
                    Frame::Integer(0),
                    Frame::Integer(5460),
                    Frame::Integer(6000),
                    Frame::Integer(6001),
                ]),
                bulk("nodes"),
                Frame::Array(vec![
                    node("127.0.0.1", 7000, "master", "online"),
                    node("127.0.0.1", 7003, "replica", "online"),
                    node("127.0.0.1", 7004, "replica", "failed"),
                    node("127.0.0.1", 7005, "replica", "loading"),
                ]),
            ]),
            Frame::Array(vec![
                bulk("slots"),
                Frame::Array(vec![]),
                bulk("nodes"),
                Frame::Array(vec![node("?", 7009, "master", "online")]),
            ]),
        ]);
        let shards = parse_cluster_shards(&reply, "10.0.0.9", false).unwrap();
        assert_eq!(
            shards,
            vec![ShardInfo {
                ranges: vec![(0, 5460), (6000, 6001)],
                master: "127.0.0.1:7000".into(),
                replicas: vec!["127.0.0.1:7003".into()],
                loading: vec!["127.0.0.1:7005".into()],
            }]
        );
    }

    #[test]
    fn slots_reply_with_unknown_endpoint() {
        let n = |h: &str, p| Frame::Array(vec![bulk(h), Frame::Integer(p), bulk("id")]);
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(100),
                n("", 7000),
                n("127.0.0.1", 7003),
            ]),
            Frame::Array(vec![Frame::Integer(101), Frame::Integer(200), n("?", 7000)]),
        ]);
        let shards = parse_cluster_slots(&reply, "10.0.0.9").unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].master, "10.0.0.9:7000");
        assert_eq!(shards[0].ranges, vec![(0, 100), (101, 200)]);
        assert_eq!(shards[0].replicas, vec!["127.0.0.1:7003".to_string()]);
    }

    #[test]
    fn info_fields() {
        let text = b"cluster_state:ok\r\ncluster_current_epoch:7\r\ncluster_my_epoch:2\r\n";
        assert_eq!(info_field(text, "cluster_current_epoch"), Some(7));
        assert_eq!(info_field(text, "cluster_my_epoch"), Some(2));
        assert_eq!(info_field(text, "cluster_state"), None);
        assert_eq!(info_field(text, "missing"), None);
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_known_nodes:6\r\n";
        assert_eq!(info_value(info, "cluster_state"), Some("ok"));
        assert_eq!(info_value(info, "cluster_known_nodes"), Some("6"));
        assert_eq!(info_value(info, "cluster"), None);
    }

    #[test]
    fn tls_port_is_used_with_backend_tls() {
        let node = |fields: Vec<(&str, Frame)>| {
            Frame::Array(fields.into_iter().flat_map(|(k, v)| [bulk(k), v]).collect())
        };
        let shard = |nodes| {
            Frame::Array(vec![Frame::Array(vec![
                bulk("slots"),
                Frame::Array(vec![Frame::Integer(0), Frame::Integer(16383)]),
                bulk("nodes"),
                Frame::Array(nodes),
            ])])
        };
        let both = shard(vec![node(vec![
            ("ip", bulk("127.0.0.1")),
            ("port", Frame::Integer(7000)),
            ("tls-port", Frame::Integer(17000)),
            ("role", bulk("master")),
        ])]);
        let master = |reply: &Frame, tls| {
            parse_cluster_shards(reply, "h", tls).unwrap()[0]
                .master
                .clone()
        };
        assert_eq!(master(&both, false), "127.0.0.1:7000");
        assert_eq!(master(&both, true), "127.0.0.1:17000");
        // `--port 0 --tls-port P --tls-cluster yes`: only a tls-port.
        let tls_only = shard(vec![node(vec![
            ("ip", bulk("127.0.0.1")),
            ("tls-port", Frame::Integer(17000)),
            ("role", bulk("master")),
        ])]);
        assert_eq!(master(&tls_only, true), "127.0.0.1:17000");
        assert!(parse_cluster_shards(&tls_only, "h", false).is_err());
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        assert!(parse_cluster_shards(&Frame::Integer(1), "h", false).is_err());
        assert!(parse_cluster_slots(&Frame::Array(vec![Frame::Integer(1)]), "h").is_err());
        let neg = Frame::Array(vec![Frame::Array(vec![
            Frame::Integer(-1),
            Frame::Integer(5),
            Frame::Array(vec![bulk("h"), Frame::Integer(1)]),
        ])]);
        assert!(parse_cluster_slots(&neg, "h").is_err());
    }
}
