//! What the nodes of a local cluster report about it, and whether that adds up to "ready".
//!
//! Owns: parsing `CLUSTER SLOTS` and the `myself` line of `CLUSTER NODES` into small values
//! (pure, unit-tested below), and one round of probing every live node. Does not own: waiting,
//! process handling, or anything the proxy's own topology code does.
//!
//! A round passes when every live node says `cluster_state:ok`, knows every node, reports the
//! same slot map (16384 slots, each owned by a live master), and every replica has finished its
//! sync (`master_link_status:up`). Anything else is listed as a problem, one line each, so a
//! timeout can say exactly what was still wrong.

use std::io;

use super::process::PROBE_TIMEOUT;
use super::resp_probe::Probe;
use crate::resp::Frame;
use crate::slot::SLOT_COUNT;
use crate::topology::discovery::{info_value, parse_cluster_slots};

/// One contiguous slot range and who serves it, by port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRange {
    /// First slot.
    pub(crate) start: u16,
    /// Last slot (inclusive).
    pub(crate) end: u16,
    /// Port of the master.
    pub(crate) master: u16,
    /// Ports of the replicas, sorted (empty when they are not compared).
    pub(crate) replicas: Vec<u16>,
}

/// A node's view of itself, from the `myself` line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Myself {
    /// Its 40-character node id.
    pub(crate) id: String,
    /// The id of its master when it is a replica.
    pub(crate) master_id: Option<String>,
}

/// Parses a `CLUSTER SLOTS` reply (with the proxy's own parser) into ranges sorted by first
/// slot. With `with_replicas` the replica ports are kept (sorted: nodes may list them in any
/// order).
pub(crate) fn parse_slots(reply: &Frame, with_replicas: bool) -> Result<Vec<SlotRange>, String> {
    let shards = parse_cluster_slots(reply, "127.0.0.1").map_err(|e| e.to_string())?;
    let mut ranges = Vec::new();
    for shard in shards {
        let master = port_of(&shard.master)?;
        let mut replicas = Vec::new();
        if with_replicas {
            for r in &shard.replicas {
                replicas.push(port_of(r)?);
            }
            replicas.sort_unstable();
        }
        for &(start, end) in &shard.ranges {
            ranges.push(SlotRange {
                start,
                end,
                master,
                replicas: replicas.clone(),
            });
        }
    }
    ranges.sort_by_key(|r| r.start);
    Ok(ranges)
}

/// The port of a `host:port` address.
fn port_of(addr: &str) -> Result<u16, String> {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| format!("CLUSTER SLOTS: bad node address {addr}"))
}

/// `None` when `ranges` (sorted) cover slots 0..16384 exactly once; otherwise what is wrong.
pub(crate) fn coverage_problem(ranges: &[SlotRange]) -> Option<String> {
    let mut next: usize = 0;
    for r in ranges {
        let (start, end) = (usize::from(r.start), usize::from(r.end));
        if start != next || end < start {
            return Some(format!(
                "slots {next}..{start} not assigned (or ranges overlap)"
            ));
        }
        next = end + 1;
    }
    (next != SLOT_COUNT).then(|| format!("slots {next}..{SLOT_COUNT} not assigned"))
}

/// The `myself` line of a `CLUSTER NODES` reply.
pub(crate) fn parse_myself(nodes: &str) -> Option<Myself> {
    nodes.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let id = fields.next()?;
        let _addr = fields.next()?;
        let flags = fields.next()?;
        let master = fields.next()?;
        if !flags.split(',').any(|f| f == "myself") {
            return None;
        }
        Some(Myself {
            id: id.to_owned(),
            master_id: (master != "-").then(|| master.to_owned()),
        })
    })
}

/// One probing round over `live` ports. `Ok` carries the agreed slot map; `Err` lists problems.
/// `known_nodes` is the size of the whole cluster (dead nodes stay known to the others).
pub(crate) fn check(
    live: &[u16],
    known_nodes: usize,
    with_replicas: bool,
    password: Option<&str>,
) -> Result<Vec<SlotRange>, Vec<String>> {
    let mut problems = Vec::new();
    let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
    for &port in live {
        match check_node(port, known_nodes, with_replicas, password) {
            Ok((view, mut node_problems)) => {
                problems.append(&mut node_problems);
                match &agreed {
                    None => agreed = Some((port, view)),
                    Some((first, seen)) if *seen != view => problems.push(format!(
                        "127.0.0.1:{port} and 127.0.0.1:{first} disagree on the slot map: \
                         {} vs {}",
                        describe(&view),
                        describe(seen)
                    )),
                    Some(_) => {}
                }
            }
            Err(e) => problems.push(format!("127.0.0.1:{port}: {e}")),
        }
    }
    let Some((_, view)) = agreed else {
        problems.push("no live node answered".to_owned());
        return Err(problems);
    };
    if let Some(p) = coverage_problem(&view) {
        problems.push(p);
    }
    for r in &view {
        if !live.contains(&r.master) {
            problems.push(format!(
                "slots {}-{} owned by 127.0.0.1:{}, which is not running",
                r.start, r.end, r.master
            ));
        }
    }
    if problems.is_empty() {
        Ok(view)
    } else {
        Err(problems)
    }
}

/// Probes one node: its slot map, plus any problems with its state.
fn check_node(
    port: u16,
    known_nodes: usize,
    with_replicas: bool,
    password: Option<&str>,
) -> io::Result<(Vec<SlotRange>, Vec<String>)> {
    let mut probe = Probe::connect(port, PROBE_TIMEOUT, password)?;
    let mut problems = Vec::new();
    let name = format!("127.0.0.1:{port}");

    let info = probe.call_text(&["CLUSTER", "INFO"])?;
    let state = info_value(&info, "cluster_state").unwrap_or("?");
    if state != "ok" {
        problems.push(format!("{name} cluster_state:{state}"));
    }
    let known = info_value(&info, "cluster_known_nodes").unwrap_or("?");
    if known != known_nodes.to_string() {
        problems.push(format!("{name} knows {known} of {known_nodes} nodes"));
    }

    let repl = probe.call_text(&["INFO", "replication"])?;
    if info_value(&repl, "role") == Some("slave") {
        let link = info_value(&repl, "master_link_status").unwrap_or("?");
        if link != "up" {
            problems.push(format!("{name} replica link to its master is {link}"));
        }
    }

    let slots = probe.call(&["CLUSTER", "SLOTS"])?;
    let view = parse_slots(&slots, with_replicas).map_err(io::Error::other)?;
    Ok((view, problems))
}

/// A short human-readable slot map: `0-5460@7000[7004] ...`.
fn describe(view: &[SlotRange]) -> String {
    let parts: Vec<String> = view
        .iter()
        .map(|r| {
            let replicas: Vec<String> = r.replicas.iter().map(u16::to_string).collect();
            format!("{}-{}@{}[{}]", r.start, r.end, r.master, replicas.join(","))
        })
        .collect();
    if parts.is_empty() {
        "(no slots)".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn node(port: i64, id: &str) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"127.0.0.1")),
            Frame::Integer(port),
            Frame::Bulk(Bytes::copy_from_slice(id.as_bytes())),
            Frame::Array(vec![]),
        ])
    }

    fn entry(start: i64, end: i64, nodes: Vec<Frame>) -> Frame {
        let mut fields = vec![Frame::Integer(start), Frame::Integer(end)];
        fields.extend(nodes);
        Frame::Array(fields)
    }

    #[test]
    fn parses_and_sorts_cluster_slots() {
        let reply = Frame::Array(vec![
            entry(
                5461,
                16383,
                vec![node(7001, "b"), node(7005, "y"), node(7003, "x")],
            ),
            entry(0, 5460, vec![node(7000, "a")]),
        ]);
        let with = parse_slots(&reply, true).unwrap();
        assert_eq!(with[0].start, 0);
        assert_eq!(with[0].master, 7000);
        assert_eq!(with[1].replicas, vec![7003, 7005]);
        let without = parse_slots(&reply, false).unwrap();
        assert!(without[1].replicas.is_empty());
        assert_eq!(coverage_problem(&with), None);
    }

    #[test]
    fn reports_gaps_and_overlaps() {
        let r = |start, end| SlotRange {
            start,
            end,
            master: 1,
            replicas: vec![],
        };
        assert!(coverage_problem(&[]).is_some());
        assert!(coverage_problem(&[r(0, 100)]).is_some());
        assert!(coverage_problem(&[r(0, 100), r(102, 16383)]).is_some());
        assert!(coverage_problem(&[r(0, 100), r(100, 16383)]).is_some());
        assert_eq!(coverage_problem(&[r(0, 100), r(101, 16383)]), None);
    }

    #[test]
    fn rejects_malformed_slots() {
        assert!(parse_slots(&Frame::Simple(Bytes::from_static(b"OK")), false).is_err());
        let bad = Frame::Array(vec![Frame::Array(vec![Frame::Integer(0)])]);
        assert!(parse_slots(&bad, false).is_err());
        let bad_port = Frame::Array(vec![entry(0, 1, vec![node(70000, "a")])]);
        assert!(parse_slots(&bad_port, false).is_err());
    }

    #[test]
    fn finds_myself_line() {
        let nodes = "\
aaa 127.0.0.1:7000@17000 master - 0 1 1 connected 0-5460
bbb 127.0.0.1:7003@17003 myself,slave aaa 0 0 1 connected
ccc 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-10922
";
        let me = parse_myself(nodes).unwrap();
        assert_eq!(me.id, "bbb");
        assert_eq!(me.master_id.as_deref(), Some("aaa"));
        let master = parse_myself("aaa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected\n");
        assert_eq!(master.unwrap().master_id, None);
        assert_eq!(parse_myself(""), None);
    }
}
