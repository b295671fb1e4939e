//! Cross-slot multi-key commands: split into one sub-request per slot, and merge the replies
//! back into the one reply a single Redis would give. Pure: no I/O.
//!
//! Only commands whose meaning survives splitting are split: MGET (values in key order), MSET
//! (OK when every part is OK), DEL / UNLINK / EXISTS / TOUCH (counts summed). Key-less commands
//! about the whole keyspace fan out to every master the same way ([`fan_out_rule`]): DBSIZE
//! (summed), KEYS (concatenated), FLUSHALL / FLUSHDB / SCRIPT FLUSH (all OK), SCRIPT LOAD (the
//! same SHA from all), SCRIPT EXISTS (a script exists only if every master has it); key-less
//! introspection (FUNCTION STATS, MEMORY STATS, LATENCY …) is merged by [`super::keyless`] and
//! INFO's node sections by [`super::info_merge`]. Commands that
//! promise atomicity across their keys (MSETNX, RENAME, SMOVE, …) are not split: they stay
//! `CROSSSLOT`, as on a cluster node. A split MSET is not atomic across slots, exactly like
//! MSET on a Redis Cluster.
//!
//! Read-only commands that combine their keys' values (ZUNION, ZINTER, ZDIFF, ZINTERCARD, LCS,
//! PFCOUNT) are split per distinct key instead ([`MergeRule::fetches_keys`]): each key's value
//! is fetched as it is (`ZUNION 1 key WITHSCORES`, `GET key`) and the proxy computes the answer
//! as one Redis does ([`super::zset`], [`super::lcs`], [`super::hll`]).
//!
//! Keys of the same slot stay together in one sub-request, in the order the client gave them.
//! The code groups by [`Unit`], the routing unit of the table's [`Placement`]: a hash slot, or in ketama
//! mode a pool, so a split MGET in pool mode sends one part per pool.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use smallvec::{smallvec, SmallVec};

use super::zset::{self, ZOp};
use super::{hll, info_merge, keyless, lcs};
use crate::placement::Placement;
use crate::placement::Unit;
use crate::resp::{encode, header_line, parse_frame, Frame, Limits, Request};

/// How the replies of the parts combine into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeRule {
    /// MGET: each part answers an array of values; they are placed back in key order.
    Values,
    /// MSET: `+OK` when every part said `+OK`.
    AllOk,
    /// DEL, UNLINK, EXISTS, TOUCH, DBSIZE: the parts' integers are summed.
    Sum,
    /// LASTSAVE: the smallest of the masters' integers (the last time every master's data was
    /// saved).
    Least,
    /// KEYS: the parts' arrays are concatenated.
    Concat,
    /// SUNION across slots: each part answers its keys' union; the parts' members once each.
    SetUnion,
    /// SINTERCARD across slots: each part answers SINTER of its keys; the size of the
    /// intersection, at most `limit` (0: no limit).
    SetInterCard {
        /// The LIMIT option (0 when not given).
        limit: u64,
    },
    /// SDIFF across slots: the part holding the first key answers SDIFF of its keys (the first
    /// key first), every other part SUNION of its keys; the answer is the first part's members
    /// that no other part has.
    SetDiff,
    /// SINTER across slots: each part answers its keys' intersection; the members in every
    /// part's answer (a missing key is an empty set, so the answer is empty; WRONGTYPE from
    /// any part is the answer, as one Redis checks every key's type first).
    SetInter,
    /// ZUNION / ZINTER / ZDIFF / ZINTERCARD across slots: each distinct key's members and scores
    /// (`ZUNION 1 key WITHSCORES`, which reads a plain set too), combined as one Redis combines
    /// them ([`super::zset`]); the first WRONGTYPE in key order is the answer, then the
    /// options' error.
    SortedSets {
        /// Which operation.
        op: ZOp,
        /// The client speaks RESP3: WITHSCORES pairs are arrays, scores doubles.
        resp3: bool,
    },
    /// LCS of keys in two slots: both strings by GET, compared by the proxy ([`super::lcs`]).
    Lcs {
        /// The client speaks RESP3: IDX answers a map.
        resp3: bool,
    },
    /// PFCOUNT across slots: each HyperLogLog's string by GET, the union's cardinality
    /// counted by the proxy ([`super::hll`]).
    HllUnion,
    /// PUBSUB CHANNELS: the parts' arrays are concatenated, each element once.
    Union,
    /// PUBSUB NUMSUB: arrays of `name, count` pairs, counts summed pair by pair.
    PairSum,
    /// INFO keyspace, commandstats, errorstats: each master's sections summed — per database
    /// (`dbN:keys=…,expires=…,avg_ttl=…`), per command (`cmdstat_…`), per error code
    /// (`errorstat_…`); memory, persistence, stats, CPU, latencystats merged field by field
    /// ([`super::info_merge`]). The merged result is the sections' *text* (`# Keyspace\r\n…`), not
    /// RESP: the caller embeds it in the proxy's own INFO reply.
    Keyspace,
    /// SCRIPT LOAD: every part must give the same reply, which is the reply.
    Same,
    /// SCRIPT EXISTS: arrays of 0/1, combined position by position with AND.
    AllOf,
    /// RANDOMKEY: the first non-nil reply, looking from part `start` on (the caller picks
    /// `start` at random, so every master's keys get their turn).
    AnyValue {
        /// The part looked at first.
        start: usize,
    },
    /// BGSAVE / BGREWRITEAOF: every master saves; the common answer, else an error if one
    /// refused, else the least advanced ("scheduled") ([`keyless::background`]).
    Background,
    /// CONFIG SET / RESETSTAT / REWRITE listed in `commands.allow_admin`: sent to every master
    /// and replica; `+OK` when every node said OK, else an error naming each node that
    /// refused ([`refusals`]).
    EveryNodeOk,
    /// CONFIG GET: the masters' settings merged ([`super::config_get`]).
    ConfigGet {
        /// Every pattern names one setting exactly (a disagreement is then an error).
        exact: bool,
        /// The proxy's own values (its port, its slow log's settings).
        own: super::config_get::Own,
    },
    /// FUNCTION STATS: the script running on any master; the first master's engines
    /// ([`super::keyless`], as are the rules below).
    FunctionStats,
    /// FUNCTION DUMP: the one payload every master gave, else an error saying they differ.
    FunctionDump,
    /// MEMORY STATS: bytes and keys summed, ratios and percentages computed from the sums.
    MemoryStats,
    /// LATENCY LATEST: per event the latest sample of any master and the highest maximum.
    LatencyLatest,
    /// LATENCY HISTORY: every master's samples in time order, one per second.
    LatencyHistory,
    /// LATENCY HISTOGRAM: calls and cumulative bucket counts summed per command.
    LatencyHistogram,
    /// LATENCY DOCTOR / GRAPH, MEMORY DOCTOR / MALLOC-STATS: each master's text under a line
    /// naming it (the merge is given the nodes).
    NodeText,
}

impl MergeRule {
    /// Split per distinct key, each key's value fetched whole, rather than per slot.
    pub fn fetches_keys(self) -> bool {
        matches!(
            self,
            MergeRule::SortedSets { .. } | MergeRule::Lcs { .. } | MergeRule::HllUnion
        )
    }

    /// The rule for a client speaking RESP3 (`resp3`) or RESP2, for the rules whose reply
    /// shape depends on it.
    pub fn for_protocol(self, resp3: bool) -> MergeRule {
        match self {
            MergeRule::SortedSets { op, .. } => MergeRule::SortedSets { op, resp3 },
            MergeRule::Lcs { .. } => MergeRule::Lcs { resp3 },
            other => other,
        }
    }
}

/// What a [`MergeRule::fetches_keys`] merge needs from the client's request besides its keys:
/// the options, or the error Redis answers for them once every key has the right type.
#[derive(Debug)]
pub enum Options {
    /// ZUNION / ZINTER / ZDIFF / ZINTERCARD.
    SortedSets(Result<zset::Query, &'static str>),
    /// LCS.
    Lcs(Result<lcs::Options, &'static str>),
    /// PFCOUNT: none.
    None,
}

/// Low bits of a proxy SCAN cursor that name the master.
pub const SCAN_NODE_BITS: u32 = 10;
/// Bits above the master index that hold the slot-assignment fingerprint of the table the
/// scan started on; the bits above them are that master's own cursor (Redis' cursors index
/// its hash table and stay far below 2^38).
pub const SCAN_FINGERPRINT_BITS: u32 = 16;

/// A proxy SCAN cursor: which master, which slot assignment it was computed against, and that
/// master's own cursor. `0` starts a scan, as in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanCursor {
    /// Index into the table's serving masters (address order).
    pub node: usize,
    /// [`SlotTable::assignment_fingerprint`](crate::topology::SlotTable::assignment_fingerprint)
    /// when the cursor was made; ignored for a new scan.
    pub fingerprint: u16,
    /// The master's own cursor.
    pub inner: u64,
}

impl ScanCursor {
    /// Parse a client's cursor; `None` if it is not a number (Redis says `invalid cursor`).
    pub fn decode(cursor: &[u8]) -> Option<ScanCursor> {
        let value: u64 = std::str::from_utf8(cursor).ok()?.parse().ok()?;
        Some(ScanCursor {
            node: (value & ((1 << SCAN_NODE_BITS) - 1)) as usize,
            fingerprint: (value >> SCAN_NODE_BITS) as u16,
            inner: value >> (SCAN_NODE_BITS + SCAN_FINGERPRINT_BITS),
        })
    }

    /// True for the cursor `0`, which starts a scan.
    pub fn is_start(&self) -> bool {
        self.node == 0 && self.fingerprint == 0 && self.inner == 0
    }

    /// The cursor as the number handed to the client; `None` if a part does not fit.
    pub fn encode(&self) -> Option<u64> {
        let inner_bits = 64 - SCAN_NODE_BITS - SCAN_FINGERPRINT_BITS;
        if self.node >= 1 << SCAN_NODE_BITS || self.inner >= 1 << inner_bits {
            return None;
        }
        Some(
            self.inner << (SCAN_NODE_BITS + SCAN_FINGERPRINT_BITS)
                | u64::from(self.fingerprint) << SCAN_NODE_BITS
                | self.node as u64,
        )
    }
}

/// The merge rule and the arguments per key (1 for a key, 2 for a key and its value) of a
/// command that may be split across slots, by its table name.
pub fn rule_of(name: &str) -> Option<(MergeRule, usize)> {
    Some(match name {
        "mget" => (MergeRule::Values, 1),
        "mset" => (MergeRule::AllOk, 2),
        "del" | "unlink" | "exists" | "touch" => (MergeRule::Sum, 1),
        "sunion" => (MergeRule::SetUnion, 1),
        "sinter" => (MergeRule::SetInter, 1),
        "sdiff" => (MergeRule::SetDiff, 1),
        // The LIMIT is read from the request by `sintercard_limit`.
        "sintercard" => (MergeRule::SetInterCard { limit: 0 }, 1),
        "zunion" | "zinter" | "zdiff" | "zintercard" => {
            let op = match name {
                "zunion" => ZOp::Union,
                "zinter" => ZOp::Inter,
                "zdiff" => ZOp::Diff,
                _ => ZOp::InterCard,
            };
            (MergeRule::SortedSets { op, resp3: false }, 1)
        }
        "lcs" => (MergeRule::Lcs { resp3: false }, 1),
        "pfcount" => (MergeRule::HllUnion, 1),
        _ => return None,
    })
}

/// The merge rule of a key-less command answered by asking every master, by table name.
pub fn fan_out_rule(name: &str) -> Option<MergeRule> {
    Some(match name {
        "dbsize" => MergeRule::Sum,
        "keys" => MergeRule::Concat,
        "flushall" | "flushdb" | "script|flush" | "swapdb" => MergeRule::AllOk,
        "script|load" => MergeRule::Same,
        "script|exists" => MergeRule::AllOf,
        "randomkey" => MergeRule::AnyValue { start: 0 },
        "pubsub|channels" | "pubsub|shardchannels" => MergeRule::Union,
        "pubsub|numsub" | "pubsub|shardnumsub" => MergeRule::PairSum,
        "pubsub|numpat" => MergeRule::Sum,
        "function|load" | "function|list" => MergeRule::Same,
        "function|delete" | "function|flush" | "function|restore" => MergeRule::AllOk,
        "function|stats" => MergeRule::FunctionStats,
        "function|dump" => MergeRule::FunctionDump,
        "function|help" | "memory|help" | "latency|help" => MergeRule::Same,
        "memory|stats" => MergeRule::MemoryStats,
        "memory|purge" => MergeRule::AllOk,
        "memory|doctor" | "memory|malloc-stats" | "latency|doctor" | "latency|graph" => {
            MergeRule::NodeText
        }
        "latency|latest" => MergeRule::LatencyLatest,
        "latency|history" => MergeRule::LatencyHistory,
        "latency|histogram" => MergeRule::LatencyHistogram,
        "latency|reset" => MergeRule::Sum,
        "lastsave" => MergeRule::Least,
        "bgsave" | "bgrewriteaof" => MergeRule::Background,
        "module|list" => MergeRule::Same,
        "lolwut" => MergeRule::AnyValue { start: 0 },
        // The session fills in the pattern kind and its port.
        "config|get" => MergeRule::ConfigGet {
            exact: false,
            own: super::config_get::Own {
                port: 0,
                slowlog_log_slower_than: 0,
                slowlog_max_len: 0,
            },
        },
        _ => return None,
    })
}

/// Key-less admin commands that change a node's own state: listed in `commands.allow_admin`
/// they reach every master *and* replica, so a promoted replica has the same settings.
pub fn reaches_every_node(name: &str) -> bool {
    matches!(name, "config|set" | "config|resetstat" | "config|rewrite")
}

/// SINTERCARD's options after its keys (`args[after..]`): the LIMIT (0 when not given), or
/// the error one Redis answers.
pub fn sintercard_limit(args: &[&[u8]], after: usize) -> Result<u64, &'static str> {
    let mut limit = 0;
    let mut options = args.get(after..).unwrap_or_default();
    while let Some((option, rest)) = options.split_first() {
        match rest.split_first() {
            Some((value, rest)) if option.eq_ignore_ascii_case(b"limit") => {
                limit = crate::resp::parse_int(value)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or("ERR LIMIT can't be negative")?;
                options = rest;
            }
            _ => return Err("ERR syntax error"),
        }
    }
    Ok(limit)
}

/// The error for an [`MergeRule::EveryNodeOk`] request when some of `nodes` (in part order)
/// refused it: each refusing node with its error, and that the others applied it. `None`
/// when every node accepted.
pub fn refusals(nodes: &[std::sync::Arc<str>], replies: &[Bytes]) -> Option<Bytes> {
    let refused: Vec<String> = nodes
        .iter()
        .zip(replies)
        .filter(|(_, reply)| reply.first() == Some(&b'-'))
        .map(|(node, reply)| {
            let text = String::from_utf8_lossy(&reply[1..]);
            format!("{node}: {}", text.trim_end())
        })
        .collect();
    if refused.is_empty() {
        return None;
    }
    let mut out = BytesMut::new();
    encode::error(
        &mut out,
        &format!(
            "ERR slotgate: {} of {} nodes refused ({}); the others applied it",
            refused.len(),
            nodes.len(),
            refused.join("; ")
        ),
    );
    Some(out.freeze())
}

/// The INFO sections in `texts` (one per master) summed or merged, in Redis' order: memory,
/// persistence, stats, CPU ([`info_merge`]), commandstats, errorstats, latencystats, keyspace,
/// each only when the masters answered it, separated by a blank line.
fn sum_info_sections(texts: &[Bytes]) -> String {
    let has = |header: &str| {
        texts.iter().any(|t| {
            String::from_utf8_lossy(t)
                .lines()
                .any(|l| l.trim_end() == header)
        })
    };
    let mut sections: Vec<String> = info_merge::FIELD_SECTIONS
        .iter()
        .filter(|header| has(header))
        .map(|header| info_merge::merge_section(texts, header))
        .collect();
    if has("# Commandstats") {
        sections.push(sum_counters(
            texts,
            "# Commandstats",
            "cmdstat_",
            |name, n| {
                let (calls, usec) = (n[0], n[1]);
                let per_call = if calls == 0 {
                    0.0
                } else {
                    usec as f64 / calls as f64
                };
                format!(
                    "{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                 rejected_calls={},failed_calls={}",
                    n[2], n[3]
                )
            },
        ));
    }
    if has("# Errorstats") {
        sections.push(sum_counters(
            texts,
            "# Errorstats",
            "errorstat_",
            |name, n| format!("{name}:count={}", n[0]),
        ));
    }
    if has("# Latencystats") {
        sections.push(info_merge::merge_section(texts, "# Latencystats"));
    }
    if has("# Keyspace") {
        sections.push(sum_keyspaces(texts));
    }
    sections.join("\r\n")
}

/// INFO's node sections from the masters' `replies`, summed over those that answered: INFO
/// stays available while a master is down. Any that did not answer are counted in a
/// `# Slotgate` section (`info_masters_unanswered:N`), so the sums are not taken for whole.
fn info_sections(replies: &[Bytes], limits: &Limits) -> Bytes {
    let mut texts = Vec::with_capacity(replies.len());
    for reply in replies {
        match parse_frame(reply, limits) {
            Ok(Frame::Bulk(text) | Frame::Verbatim(_, text)) => texts.push(text),
            Ok(Frame::Error(_) | Frame::BlobError(_)) => {}
            _ => return unexpected(reply),
        }
    }
    let mut text = sum_info_sections(&texts);
    let missing = replies.len() - texts.len();
    if missing > 0 {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        text.push_str(&format!(
            "# Slotgate\r\ninfo_masters_unanswered:{missing}\r\n"
        ));
    }
    Bytes::from(text)
}

/// The fields [`sum_counters`] adds up for a line of `prefix`, in the order it hands them on.
fn counter_fields(prefix: &str) -> &'static [&'static str] {
    match prefix {
        "cmdstat_" => &["calls", "usec", "rejected_calls", "failed_calls"],
        _ => &["count"],
    }
}

/// One INFO section of `name: field=n,…` lines starting with `prefix` summed over `texts`,
/// line by line, each line rendered by `line` from its summed [`counter_fields`].
fn sum_counters(
    texts: &[Bytes],
    header: &str,
    prefix: &str,
    line: impl Fn(&str, &[u64]) -> String,
) -> String {
    use std::collections::BTreeMap;
    let fields = counter_fields(prefix);
    let mut sums: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for text in texts {
        for l in String::from_utf8_lossy(text).lines() {
            let Some((name, values)) = l.trim_end().split_once(':') else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let sum = sums
                .entry(name.to_string())
                .or_insert_with(|| vec![0; fields.len()]);
            for pair in values.split(',') {
                let Some((field, value)) = pair.split_once('=') else {
                    continue;
                };
                if let (Some(at), Ok(n)) = (
                    fields.iter().position(|f| *f == field),
                    value.parse::<u64>(),
                ) {
                    sum[at] = sum[at].saturating_add(n);
                }
            }
        }
    }
    let mut out = format!("{header}\r\n");
    for (name, sum) in &sums {
        out.push_str(&line(name, sum));
        out.push_str("\r\n");
    }
    out
}

/// Sum INFO keyspace sections: keys and expires add up; avg_ttl is averaged weighted by the
/// keys with an expiry.
fn sum_keyspaces(texts: &[Bytes]) -> String {
    use std::collections::BTreeMap;
    let mut dbs: BTreeMap<u32, (u64, u64, u128)> = BTreeMap::new();
    for text in texts {
        for line in String::from_utf8_lossy(text).lines() {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            let Some(Ok(index)) = db.strip_prefix("db").map(str::parse::<u32>) else {
                continue;
            };
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let entry = dbs.entry(index).or_default();
            let expires = field("expires");
            entry.0 += field("keys");
            entry.1 += expires;
            entry.2 += u128::from(field("avg_ttl")) * u128::from(expires);
        }
    }
    let mut out = String::from("# Keyspace\r\n");
    for (index, (keys, expires, weighted)) in dbs {
        let avg_ttl = if expires == 0 {
            0
        } else {
            weighted / u128::from(expires)
        };
        out.push_str(&format!(
            "db{index}:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n"
        ));
    }
    out
}

/// The same `request` for each master; `slots` holds one slot each master serves (it names
/// the part in errors and retries). The sub-requests, one per part, are all `request`.
pub fn fan_out(request: &Request, units: &[Unit], rule: MergeRule) -> (Split, SubRequests) {
    let split = Split {
        rule,
        keys: 0,
        options: None,
        parts: units
            .iter()
            .map(|&unit| Part {
                unit,
                positions: Positions::new(),
            })
            .collect(),
    };
    let requests = units.iter().map(|_| request.raw().clone()).collect();
    (split, requests)
}

/// The sub-requests of a split, as RESP, in part order: they go to the backends, while the
/// [`Split`] (which keys each part holds) stays with the merge.
pub type SubRequests = SmallVec<[Bytes; 8]>;

/// The positions of one part's keys among the client's keys: inline for the usual one or
/// two keys per slot, so a split of random keys allocates nothing per part for them.
pub type Positions = SmallVec<[usize; 2]>;

/// One sub-request: the keys of one slot (its bytes are the matching [`SubRequests`] entry:
/// the command name, then this part's keys with their values).
#[derive(Debug)]
pub struct Part {
    /// The routing unit all of this part's keys map to.
    pub unit: Unit,
    /// For each key of this part, its position among the client's keys (0-based).
    pub positions: Positions,
}

/// A request split by slot.
#[derive(Debug)]
pub struct Split {
    /// How the parts' replies merge.
    pub rule: MergeRule,
    /// One part per distinct slot, in order of first appearance.
    pub parts: Vec<Part>,
    /// Number of keys in the client's request.
    pub keys: usize,
    /// A [`MergeRule::fetches_keys`] request's options; `None` for other rules.
    pub options: Option<Box<Options>>,
}

/// Split `request` whose keys are at `key_indices`, each key followed by `per_key - 1` more
/// arguments (MSET's values), grouping keys by `placement`'s unit. Indices past the end are
/// ignored (the command table's arity check ran first). Each sub-request copies its
/// arguments' encoded bytes out of the request: nothing is encoded again but its `*N` line.
pub fn split(
    request: &Request,
    key_indices: &[usize],
    rule: MergeRule,
    per_key: usize,
    placement: &Placement,
) -> (Split, SubRequests) {
    if rule.fetches_keys() {
        return split_by_key(request, key_indices, rule, placement);
    }
    let count = request.arg_count();
    // One part per unit: the positions of its keys among the client's keys, in client order.
    let mut parts: Vec<Part> = Vec::with_capacity(key_indices.len().min(16));
    // A linear search is cheapest for the usual handful of slots; a map bounds the big cases.
    let mut by_unit: Option<HashMap<Unit, usize>> =
        (key_indices.len() > 16).then(|| HashMap::with_capacity(key_indices.len()));
    for (position, &index) in key_indices.iter().enumerate() {
        if count < index.saturating_add(per_key) {
            continue;
        }
        let Some(key) = request.arg(index) else {
            continue;
        };
        let unit = placement.unit_of(key);
        let found = match &by_unit {
            Some(map) => map.get(&unit).copied(),
            None => parts.iter().position(|part| part.unit == unit),
        };
        match found.and_then(|found| parts.get_mut(found)) {
            Some(part) => part.positions.push(position),
            None => {
                if let Some(map) = &mut by_unit {
                    map.insert(unit, parts.len());
                }
                let mut positions = Positions::new();
                positions.push(position);
                parts.push(Part { unit, positions });
            }
        }
    }
    // SDIFF: only the first part (it holds the first key) subtracts; the others unite.
    // SINTERCARD: every part intersects (the count and LIMIT are the proxy's).
    const SUNION: &[u8] = b"$6\r\nSUNION\r\n";
    const SINTER: &[u8] = b"$6\r\nSINTER\r\n";
    // All parts in one buffer, each split off it: one allocation for the lot instead of one
    // per part. The parts share out the request's arguments, so the request's length plus a
    // header and a command name per part bounds them.
    let own_name = request.encoded_args(0..1).unwrap_or_default();
    let per_part = encode::header_len(count) + own_name.len().max(SUNION.len());
    let mut buf = BytesMut::with_capacity(request.raw().len() + parts.len() * per_part);
    let mut requests = SubRequests::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let name = match rule {
            MergeRule::SetDiff if i > 0 => SUNION,
            MergeRule::SetInterCard { .. } => SINTER,
            _ => own_name,
        };
        encode_part(
            &mut buf,
            request,
            name,
            key_indices,
            &part.positions,
            per_key,
        );
        requests.push(buf.split().freeze());
    }
    let split = Split {
        rule,
        keys: key_indices.len(),
        options: None,
        parts,
    };
    (split, requests)
}

/// [`split`] for a [`MergeRule::fetches_keys`] rule: one part per distinct key (its positions
/// every place the client named it), each asking for that key's value; the request's options
/// parsed for the merge.
fn split_by_key(
    request: &Request,
    key_indices: &[usize],
    rule: MergeRule,
    placement: &Placement,
) -> (Split, SubRequests) {
    let mut parts: Vec<Part> = Vec::new();
    let mut requests = SubRequests::new();
    let mut first_index: HashMap<&[u8], usize> = HashMap::new();
    for (position, &index) in key_indices.iter().enumerate() {
        let Some(key) = request.arg(index) else {
            continue;
        };
        if let Some(&part) = first_index.get(key) {
            parts[part].positions.push(position);
            continue;
        }
        let Some(encoded) = request.encoded_args(index..index + 1) else {
            continue;
        };
        first_index.insert(key, parts.len());
        parts.push(Part {
            unit: placement.unit_of(key),
            positions: smallvec![position],
        });
        let (head, tail): (&[u8], &[u8]) = match rule {
            MergeRule::SortedSets { .. } => (
                b"*4\r\n$6\r\nZUNION\r\n$1\r\n1\r\n",
                b"$10\r\nWITHSCORES\r\n",
            ),
            _ => (b"*2\r\n$3\r\nGET\r\n", b""),
        };
        let mut out = BytesMut::with_capacity(head.len() + encoded.len() + tail.len());
        out.extend_from_slice(head);
        out.extend_from_slice(encoded);
        out.extend_from_slice(tail);
        requests.push(out.freeze());
    }
    let args = request.args();
    let after = key_indices.last().map_or(args.len(), |&k| k + 1);
    let rest = args.get(after..).unwrap_or_default();
    let options = match rule {
        MergeRule::SortedSets { op, .. } => {
            Options::SortedSets(zset::parse_options(op, key_indices.len(), rest))
        }
        MergeRule::Lcs { .. } => Options::Lcs(lcs::parse_options(rest)),
        _ => Options::None,
    };
    let split = Split {
        rule,
        keys: key_indices.len(),
        options: Some(Box::new(options)),
        parts,
    };
    (split, requests)
}

/// The client's reply to `split` from its parts' `replies` (in part order).
pub fn merge_split(split: &Split, replies: &[Bytes], limits: &Limits) -> Bytes {
    match split.options.as_deref() {
        Some(options) => merge_values(split, options, replies, limits),
        None => merge(split.rule, &split.parts, replies, split.keys, limits),
    }
}

/// Each key's reply, in the client's key order (a key named twice appears twice).
fn by_position<'a>(split: &Split, replies: &'a [Bytes]) -> Vec<&'a Bytes> {
    let mut out: Vec<Option<&Bytes>> = vec![None; split.keys];
    for (part, reply) in split.parts.iter().zip(replies) {
        for &position in &part.positions {
            if let Some(slot) = out.get_mut(position) {
                *slot = Some(reply);
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// An error reply `-{text}\r\n`.
fn error_reply(text: &str) -> Bytes {
    let mut out = BytesMut::new();
    encode::error(&mut out, text);
    out.freeze()
}

/// The merge of a [`MergeRule::fetches_keys`] split: the keys' values, checked in key order
/// as Redis checks them, combined by the proxy.
fn merge_values(split: &Split, options: &Options, replies: &[Bytes], limits: &Limits) -> Bytes {
    let values = by_position(split, replies);
    match (split.rule, options) {
        (MergeRule::SortedSets { op, resp3 }, Options::SortedSets(query)) => {
            let mut inputs = Vec::with_capacity(values.len());
            for reply in &values {
                if reply.first() == Some(&b'-') {
                    return (*reply).clone();
                }
                match scored_members(reply, limits) {
                    Some(members) => inputs.push(members),
                    None => return unexpected(reply),
                }
            }
            let query = match query {
                Ok(query) => query,
                Err(text) => return error_reply(text),
            };
            if op == ZOp::InterCard {
                let mut out = BytesMut::new();
                let count = zset::inter_card(&inputs, query.limit);
                encode::integer(&mut out, i64::try_from(count).unwrap_or(i64::MAX));
                return out.freeze();
            }
            let result = zset::combine(op, query, &inputs);
            zset::encode_reply(&result, query.withscores, resp3)
        }
        (MergeRule::Lcs { resp3 }, Options::Lcs(parsed)) => {
            let mut strings = Vec::with_capacity(2);
            for reply in &values {
                if reply.starts_with(b"-WRONGTYPE") {
                    return error_reply("ERR The specified keys must contain string values");
                }
                if reply.first() == Some(&b'-') {
                    return (*reply).clone();
                }
                match string_value(reply, limits) {
                    Some(value) => strings.push(value),
                    None => return unexpected(reply),
                }
            }
            match (parsed, &strings[..]) {
                (Err(text), _) => error_reply(text),
                (Ok(parsed), [a, b]) => lcs::reply(a, b, parsed, resp3),
                _ => Bytes::from_static(b"-ERR slotgate: LCS takes two keys\r\n"),
            }
        }
        (MergeRule::HllUnion, _) => {
            let mut union = hll::Union::default();
            for reply in &values {
                if reply.first() == Some(&b'-') {
                    return (*reply).clone();
                }
                let Some(value) = string_value(reply, limits) else {
                    return unexpected(reply);
                };
                // A missing key is an empty HLL.
                let missing = matches!(&reply[..], b"$-1\r\n" | b"_\r\n");
                if !missing {
                    if let Err(e) = union.merge(&value) {
                        return error_reply(e.message());
                    }
                }
            }
            let mut out = BytesMut::new();
            encode::integer(&mut out, i64::try_from(union.count()).unwrap_or(i64::MAX));
            out.freeze()
        }
        _ => Bytes::from_static(b"-ERR slotgate: options do not match the merge\r\n"),
    }
}

/// A `ZUNION 1 key WITHSCORES` reply's members and scores: a flat array (RESP2) or an array
/// of `[member, score]` pairs (RESP3); `None` if malformed.
fn scored_members(reply: &Bytes, limits: &Limits) -> Option<Vec<zset::Scored>> {
    let Ok(Frame::Array(items)) = parse_frame(reply, limits) else {
        return None;
    };
    let score = |frame: &Frame| match frame {
        Frame::Bulk(text) | Frame::Double(text) => zset::parse_score(text),
        _ => None,
    };
    let pair = |member: &Frame, value: &Frame| Some((member.as_bytes()?.clone(), score(value)?));
    if items.iter().all(|item| matches!(item, Frame::Array(_))) {
        items
            .iter()
            .map(|item| match item.as_array()? {
                [member, value] => pair(member, value),
                _ => None,
            })
            .collect()
    } else if items.len() % 2 == 0 {
        items.chunks_exact(2).map(|p| pair(&p[0], &p[1])).collect()
    } else {
        None
    }
}

/// A GET reply's value, empty for a missing key; `None` if malformed.
fn string_value(reply: &Bytes, limits: &Limits) -> Option<Bytes> {
    match parse_frame(reply, limits) {
        Ok(Frame::Bulk(value)) => Some(value),
        Ok(Frame::Null | Frame::Nil) => Some(Bytes::new()),
        _ => None,
    }
}

/// Appends to `out` the command `name` (encoded) followed by the `per_key` arguments at each
/// key of `positions`, as RESP: the request's own encoded bytes, copied.
fn encode_part(
    out: &mut BytesMut,
    request: &Request,
    name: &[u8],
    key_indices: &[usize],
    positions: &[usize],
    per_key: usize,
) {
    let run = |&p: &usize| {
        let index = *key_indices.get(p)?;
        request.encoded_args(index..index.checked_add(per_key)?)
    };
    // `split` placed only keys whose arguments all exist, so every position has its run; the
    // count is taken from the runs all the same, so the header can never disagree with them.
    let runs = positions.iter().filter_map(run);
    encode::array_header(out, 1 + runs.clone().count() * per_key);
    out.extend_from_slice(name);
    for run in runs {
        out.extend_from_slice(run);
    }
}

/// Merge the parts' raw replies (in part order) into the client's reply. The first part that
/// answered an error decides the reply: a partial answer is never returned as a whole one.
pub fn merge(
    rule: MergeRule,
    parts: &[Part],
    replies: &[Bytes],
    keys: usize,
    limits: &Limits,
) -> Bytes {
    if rule == MergeRule::Keyspace {
        return info_sections(replies, limits);
    }
    if let Some(error) = replies
        .iter()
        .find(|r| matches!(r.first(), Some(b'-' | b'!')))
    {
        return error.clone();
    }
    match rule {
        MergeRule::AllOk | MergeRule::EveryNodeOk => Bytes::from_static(b"+OK\r\n"),
        MergeRule::SortedSets { .. } | MergeRule::Lcs { .. } | MergeRule::HllUnion => {
            // Merged by `merge_split`, which has the request's options.
            Bytes::from_static(b"-ERR slotgate: this merge needs the request's options\r\n")
        }
        MergeRule::Sum => {
            let mut total: i64 = 0;
            for reply in replies {
                match parse_frame(reply, limits) {
                    Ok(Frame::Integer(n)) => total = total.saturating_add(n),
                    _ => return unexpected(reply),
                }
            }
            let mut out = BytesMut::with_capacity(24);
            encode::integer(&mut out, total);
            out.freeze()
        }
        MergeRule::Least => {
            let mut least: Option<i64> = None;
            for reply in replies {
                match parse_frame(reply, limits) {
                    Ok(Frame::Integer(n)) => least = Some(least.map_or(n, |l| l.min(n))),
                    _ => return unexpected(reply),
                }
            }
            let mut out = BytesMut::with_capacity(24);
            encode::integer(&mut out, least.unwrap_or(0));
            out.freeze()
        }
        MergeRule::Concat | MergeRule::Union => {
            let mut items = Vec::new();
            for reply in replies {
                match parse_frame(reply, limits) {
                    Ok(Frame::Array(part) | Frame::Set(part)) => items.extend(part),
                    _ => return unexpected(reply),
                }
            }
            if rule == MergeRule::Union {
                let mut seen = std::collections::HashSet::new();
                items.retain(|item| seen.insert(item.clone()));
            }
            let mut out = BytesMut::new();
            encode::array_header(&mut out, items.len());
            for item in items {
                item.encode(&mut out);
            }
            out.freeze()
        }
        MergeRule::SetUnion
        | MergeRule::SetInter
        | MergeRule::SetDiff
        | MergeRule::SetInterCard { .. } => {
            // RESP3 answers a set, RESP2 an array.
            let mut set_reply = false;
            let mut parts: Vec<Vec<Frame>> = Vec::with_capacity(replies.len());
            for reply in replies {
                match parse_frame(reply, limits) {
                    Ok(Frame::Array(members)) => parts.push(members),
                    Ok(Frame::Set(members)) => {
                        set_reply = true;
                        parts.push(members);
                    }
                    _ => return unexpected(reply),
                }
            }
            let members: Vec<Frame> = if rule == MergeRule::SetUnion {
                let mut seen = std::collections::HashSet::new();
                parts
                    .into_iter()
                    .flatten()
                    .filter(|m| seen.insert(m.clone()))
                    .collect()
            } else {
                let others: Vec<std::collections::HashSet<&Frame>> =
                    parts.iter().skip(1).map(|p| p.iter().collect()).collect();
                let first = parts.first().map(Vec::as_slice).unwrap_or_default();
                let wanted = |m: &&Frame| match rule {
                    MergeRule::SetDiff => !others.iter().any(|o| o.contains(m)),
                    _ => others.iter().all(|o| o.contains(m)),
                };
                first.iter().filter(wanted).cloned().collect()
            };
            let mut out = BytesMut::new();
            if let MergeRule::SetInterCard { limit } = rule {
                let count = members.len() as u64;
                let count = if limit > 0 { count.min(limit) } else { count };
                encode::integer(&mut out, i64::try_from(count).unwrap_or(i64::MAX));
                return out.freeze();
            }
            if set_reply {
                encode::set_header(&mut out, members.len());
            } else {
                encode::array_header(&mut out, members.len());
            }
            for member in members {
                member.encode(&mut out);
            }
            out.freeze()
        }
        MergeRule::PairSum => {
            let mut pairs: Vec<(Frame, i64)> = Vec::new();
            // RESP3 answers a map of name → count, RESP2 a flat array of pairs.
            let mut map = false;
            for reply in replies {
                let Some((items, is_map)) =
                    parse_frame(reply, limits).ok().and_then(Frame::into_pairs)
                else {
                    return unexpected(reply);
                };
                map |= is_map;
                if items.len() % 2 != 0 || (!pairs.is_empty() && items.len() != pairs.len() * 2) {
                    return unexpected(reply);
                }
                for (i, pair) in items.chunks_exact(2).enumerate() {
                    let Some(count) = pair[1].as_int() else {
                        return unexpected(reply);
                    };
                    match pairs.get_mut(i) {
                        Some((_, total)) => *total = total.saturating_add(count),
                        None => pairs.push((pair[0].clone(), count)),
                    }
                }
            }
            let mut out = BytesMut::new();
            if map {
                encode::length_header(&mut out, b'%', pairs.len());
            } else {
                encode::array_header(&mut out, pairs.len() * 2);
            }
            for (name, count) in pairs {
                name.encode(&mut out);
                encode::integer(&mut out, count);
            }
            out.freeze()
        }
        MergeRule::Keyspace => info_sections(replies, limits),
        MergeRule::Same => match replies.split_first() {
            Some((first, rest)) if rest.iter().all(|r| r == first) => first.clone(),
            Some(_) => Bytes::from_static(b"-ERR slotgate: the masters answered differently\r\n"),
            None => Bytes::from_static(b"-ERR slotgate: no master to ask\r\n"),
        },
        MergeRule::AllOf => {
            let mut all: Option<Vec<i64>> = None;
            for reply in replies {
                let Ok(Frame::Array(items)) = parse_frame(reply, limits) else {
                    return unexpected(reply);
                };
                let flags: Option<Vec<i64>> = items.iter().map(Frame::as_int).collect();
                let Some(flags) = flags else {
                    return unexpected(reply);
                };
                all = Some(match all {
                    None => flags,
                    Some(acc) if acc.len() == flags.len() => {
                        acc.iter().zip(&flags).map(|(a, b)| *a.min(b)).collect()
                    }
                    Some(_) => return unexpected(reply),
                });
            }
            let all = all.unwrap_or_default();
            let mut out = BytesMut::new();
            encode::array_header(&mut out, all.len());
            for flag in all {
                encode::integer(&mut out, flag);
            }
            out.freeze()
        }
        MergeRule::ConfigGet { exact, own } => {
            super::config_get::merge(replies, exact, own, limits)
        }
        MergeRule::FunctionStats => keyless::function_stats(replies, limits),
        MergeRule::FunctionDump => keyless::function_dump(replies),
        MergeRule::Background => keyless::background(replies),
        MergeRule::MemoryStats => keyless::memory_stats(replies, limits),
        MergeRule::LatencyLatest => keyless::latency_latest(replies, limits),
        MergeRule::LatencyHistory => keyless::latency_history(replies, limits),
        MergeRule::LatencyHistogram => keyless::latency_histogram(replies, limits),
        // Merged by the session's `Merge`, which has the nodes.
        MergeRule::NodeText => {
            Bytes::from_static(b"-ERR slotgate: this merge needs the nodes' names\r\n")
        }
        MergeRule::AnyValue { start } => {
            let n = replies.len().max(1);
            (0..replies.len())
                .map(|i| &replies[(start + i) % n])
                .find(|r| !r.starts_with(b"$-1") && !r.starts_with(b"_"))
                // All null: a null in the protocol the masters answered in.
                .or(replies.first())
                .cloned()
                .unwrap_or_else(|| Bytes::from_static(b"$-1\r\n"))
        }
        MergeRule::Values => {
            // Each part's reply is an array of bulk strings (or nils): copy each element's bytes
            // to its client position without building a tree.
            let mut values: SmallVec<[&[u8]; 16]> = SmallVec::from_elem(&b"$-1\r\n"[..], keys);
            let mut size = 16;
            for (part, reply) in parts.iter().zip(replies) {
                match place_bulk_elements(reply, &part.positions, &mut values) {
                    Some(placed) => size += placed,
                    None => return unexpected(reply),
                }
            }
            let mut out = BytesMut::with_capacity(size);
            encode::array_header(&mut out, keys);
            for value in &values {
                out.extend_from_slice(value);
            }
            out.freeze()
        }
    }
}

/// Places the raw bytes of each element of `reply`, an array whose elements are all bulk
/// strings or nils (an MGET reply), at its client position: element `i` at
/// `values[positions[i]]`, as it is parsed (no list of the elements is built). The bytes
/// placed; `None` if `reply` is anything else, malformed, or not one element per position.
fn place_bulk_elements<'r>(
    reply: &'r [u8],
    positions: &[usize],
    values: &mut [&'r [u8]],
) -> Option<usize> {
    let (count, mut at) = header_line(reply, 0, b'*', usize::MAX)?;
    if usize::try_from(count).ok()? != positions.len() {
        return None;
    }
    let mut placed = 0;
    for &position in positions {
        let start = at;
        // RESP3's null `_` for a missing key.
        if reply.get(at..at + 3) == Some(b"_\r\n") {
            at += 3;
        } else {
            let (len, after_header) = header_line(reply, at, b'$', usize::MAX)?;
            at = after_header;
            if len >= 0 {
                let end = at.checked_add(usize::try_from(len).ok()?)?;
                if reply.get(end..end + 2)? != b"\r\n" {
                    return None;
                }
                at = end + 2;
            }
        }
        let element = reply.get(start..at)?;
        if let Some(value) = values.get_mut(position) {
            *value = element;
            placed += element.len();
        }
    }
    (at == reply.len()).then_some(placed)
}

fn unexpected(reply: &Bytes) -> Bytes {
    let shown = String::from_utf8_lossy(&reply[..reply.len().min(64)])
        .escape_debug()
        .to_string();
    Bytes::from(format!(
        "-ERR slotgate: unexpected reply to a split command: {shown}\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_sections_are_summed_over_the_masters() {
        let a = Bytes::from_static(
            b"# Commandstats\r\ncmdstat_get:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,\
              failed_calls=1\r\n\r\n# Errorstats\r\nerrorstat_WRONGTYPE:count=1\r\n",
        );
        let b = Bytes::from_static(
            b"# Commandstats\r\ncmdstat_get:calls=1,usec=7,usec_per_call=7.00,rejected_calls=2,\
              failed_calls=0\r\ncmdstat_set:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,\
              failed_calls=0\r\n\r\n# Errorstats\r\nerrorstat_WRONGTYPE:count=2\r\n\
              errorstat_ERR:count=1\r\n",
        );
        assert_eq!(
            sum_info_sections(&[a, b]),
            "# Commandstats\r\n\
             cmdstat_get:calls=4,usec=16,usec_per_call=4.00,rejected_calls=2,failed_calls=1\r\n\
             cmdstat_set:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
             \r\n# Errorstats\r\nerrorstat_ERR:count=1\r\nerrorstat_WRONGTYPE:count=3\r\n"
        );
    }

    #[test]
    fn info_sums_the_masters_that_answered_and_counts_the_others() {
        let keyspace = |keys: u32| {
            let text = format!("# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n");
            Bytes::from(format!("${}\r\n{text}\r\n", text.len()))
        };
        let down = Bytes::from_static(b"-ERR slotgate: backend 127.0.0.1:7002 is down\r\n");
        let merge = |replies: &[Bytes]| {
            let merged = merge(MergeRule::Keyspace, &[], replies, 0, &Limits::default());
            String::from_utf8(merged.to_vec()).unwrap()
        };
        assert_eq!(
            merge(&[keyspace(2), down.clone(), keyspace(3)]),
            "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n\r\n\
             # Slotgate\r\ninfo_masters_unanswered:1\r\n"
        );
        assert_eq!(
            merge(&[down.clone(), down]),
            "# Slotgate\r\ninfo_masters_unanswered:2\r\n"
        );
        assert_eq!(
            merge(&[keyspace(1)]),
            "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
        );
    }

    #[test]
    fn sintercard_counts_the_intersection_up_to_its_limit() {
        let parts = [
            Bytes::from_static(b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
            Bytes::from_static(b"*3\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\nd\r\n"),
        ];
        let count = |limit| {
            merge(
                MergeRule::SetInterCard { limit },
                &[],
                &parts,
                0,
                &Limits::default(),
            )
        };
        assert_eq!(&count(0)[..], b":2\r\n");
        assert_eq!(&count(1)[..], b":1\r\n");
        assert_eq!(&count(5)[..], b":2\r\n");
        let words = |w: &[&'static str]| w.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
        let args = words(&["SINTERCARD", "2", "a", "b", "LIMIT", "3"]);
        assert_eq!(sintercard_limit(&args, 4), Ok(3));
        assert_eq!(sintercard_limit(&args, 6), Ok(0));
        let negative = words(&["SINTERCARD", "2", "a", "b", "limit", "-1"]);
        assert_eq!(
            sintercard_limit(&negative, 4),
            Err("ERR LIMIT can't be negative")
        );
        assert_eq!(sintercard_limit(&args[..5], 4), Err("ERR syntax error"));
    }

    #[test]
    fn value_reads_fetch_each_distinct_key_once() {
        let rule = MergeRule::SortedSets {
            op: ZOp::Union,
            resp3: false,
        };
        let a = request(&["ZUNION", "3", "a", "b", "a", "WEIGHTS", "1", "2", "x"]);
        let (s, raws) = split(&a, &[2, 3, 4], rule, 1, &Placement::SLOTS);
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].positions[..], [0, 2]);
        assert_eq!(part_args(&raws[0]), ["ZUNION", "1", "a", "WITHSCORES"]);
        assert_eq!(part_args(&raws[1]), ["ZUNION", "1", "b", "WITHSCORES"]);
        let wrongtype = Bytes::from_static(b"-WRONGTYPE Operation against a key\r\n");
        let empty = Bytes::from_static(b"*0\r\n");
        let limits = Limits::default();
        // A key's type is checked before the options, as one Redis checks them.
        let merged = merge_split(&s, &[empty.clone(), wrongtype.clone()], &limits);
        assert_eq!(merged, wrongtype);
        let merged = merge_split(&s, &[empty.clone(), empty], &limits);
        assert_eq!(&merged[..], b"-ERR weight value is not a float\r\n");

        let a = request(&["ZINTER", "2", "a", "b", "WITHSCORES"]);
        let (s, _) = split(
            &a,
            &[2, 3],
            rule_of("zinter").unwrap().0,
            1,
            &Placement::SLOTS,
        );
        let resp2 = Bytes::from_static(b"*4\r\n$1\r\nx\r\n$1\r\n2\r\n$1\r\ny\r\n$3\r\ninf\r\n");
        let resp3 = Bytes::from_static(b"*1\r\n*2\r\n$1\r\nx\r\n,0.5\r\n");
        assert_eq!(
            &merge_split(&s, &[resp2, resp3], &limits)[..],
            b"*2\r\n$1\r\nx\r\n$3\r\n2.5\r\n"
        );
    }

    #[test]
    fn lcs_and_pfcount_read_strings_in_key_order() {
        let limits = Limits::default();
        let a = request(&["LCS", "a", "b", "LEN"]);
        let (s, raws) = split(
            &a,
            &[1, 2],
            MergeRule::Lcs { resp3: false },
            1,
            &Placement::SLOTS,
        );
        assert_eq!(part_args(&raws[1]), ["GET", "b"]);
        let text = |t: &'static [u8]| Bytes::from_static(t);
        let replies = [text(b"$8\r\nohmytext\r\n"), text(b"$9\r\nmynewtext\r\n")];
        assert_eq!(&merge_split(&s, &replies, &limits)[..], b":6\r\n");
        let replies = [text(b"_\r\n"), text(b"-WRONGTYPE Operation\r\n")];
        assert_eq!(
            &merge_split(&s, &replies, &limits)[..],
            b"-ERR The specified keys must contain string values\r\n"
        );

        let a = request(&["PFCOUNT", "a", "b", "c"]);
        let (s, raws) = split(&a, &[1, 2, 3], MergeRule::HllUnion, 1, &Placement::SLOTS);
        assert_eq!(part_args(&raws[2]), ["GET", "c"]);
        let empty_hll = text(b"$18\r\nHYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x7f\xff\r\n");
        let missing = text(b"$-1\r\n");
        let wrongtype = text(b"-WRONGTYPE Operation against a key\r\n");
        assert_eq!(
            &merge_split(
                &s,
                &[empty_hll.clone(), missing.clone(), empty_hll.clone()],
                &limits
            )[..],
            b":0\r\n"
        );
        // Not an HLL before a WRONGTYPE: the first key in order decides.
        assert_eq!(
            &merge_split(
                &s,
                &[missing, text(b"$2\r\nhi\r\n"), wrongtype.clone()],
                &limits
            )[..],
            b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"
        );
        assert_eq!(
            merge_split(
                &s,
                &[wrongtype.clone(), empty_hll.clone(), empty_hll],
                &limits
            ),
            wrongtype
        );
    }

    #[test]
    fn refusals_name_each_node_that_refused() {
        let nodes: Vec<std::sync::Arc<str>> = vec!["a:1".into(), "b:2".into(), "c:3".into()];
        let ok = Bytes::from_static(b"+OK\r\n");
        assert_eq!(
            refusals(&nodes, &[ok.clone(), ok.clone(), ok.clone()]),
            None
        );
        let no = Bytes::from_static(b"-ERR Invalid argument 'x'\r\n");
        assert_eq!(
            refusals(&nodes, &[ok.clone(), no, ok]).as_deref(),
            Some(
                &b"-ERR slotgate: 1 of 3 nodes refused (b:2: ERR Invalid argument 'x'); \
                   the others applied it\r\n"[..]
            )
        );
        assert!(reaches_every_node("config|set") && !reaches_every_node("config|get"));
    }

    fn request(words: &[&str]) -> Request {
        Request::from_args(words.iter().map(|w| w.as_bytes()))
    }

    fn part_args(raw: &Bytes) -> Vec<String> {
        let mut buf = bytes::BytesMut::from(&raw[..]);
        let request = crate::resp::RequestDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        let args = request.args();
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn keys_of_one_slot_stay_together_in_client_order() {
        let a = request(&["MGET", "{x}1", "foo", "{x}2", "bar", "{x}1"]);
        let (s, raws) = split(
            &a,
            &[1, 2, 3, 4, 5],
            MergeRule::Values,
            1,
            &Placement::SLOTS,
        );
        assert_eq!(s.keys, 5);
        assert_eq!(s.parts.len(), 3);
        assert_eq!(part_args(&raws[0]), ["MGET", "{x}1", "{x}2", "{x}1"]);
        assert_eq!(s.parts[0].positions[..], [0, 2, 4]);
        assert_eq!(s.parts[0].unit, Unit::from(crate::slot::Slot::of(b"x")));
        assert_eq!(part_args(&raws[1]), ["MGET", "foo"]);
        assert_eq!(s.parts[2].positions[..], [3]);
    }

    #[test]
    fn many_keys_group_by_slot_through_the_map_too() {
        let words: Vec<String> = (0..40).map(|i| format!("{{t{}}}k{i}", i % 5)).collect();
        let mut all = vec!["DEL".to_string()];
        all.extend(words.iter().cloned());
        let a = Request::from_args(all.iter().map(|w| w.as_bytes()));
        let indices: Vec<usize> = (1..=40).collect();
        let (s, raws) = split(&a, &indices, MergeRule::Sum, 1, &Placement::SLOTS);
        assert_eq!(s.parts.len(), 5);
        assert_eq!(s.parts[0].positions[..], [0, 5, 10, 15, 20, 25, 30, 35]);
        assert_eq!(part_args(&raws[1])[1], "{t1}k1");
    }

    #[test]
    fn malformed_value_replies_are_rejected() {
        let place = |reply: &[u8], positions: &[usize]| {
            let mut values: Vec<&[u8]> = vec![b"?"; 3];
            let placed = place_bulk_elements(reply, positions, &mut values);
            placed.map(|n| (n, values.concat()))
        };
        assert_eq!(
            place(b"*2\r\n$1\r\na\r\n$-1\r\n", &[2, 0]),
            Some((12, b"$-1\r\n?$1\r\na\r\n".to_vec())),
            "each element at its position"
        );
        assert_eq!(place(b"*1\r\n_\r\n", &[1]), Some((3, b"?_\r\n?".to_vec())));
        assert!(place(b"*2\r\n$1\r\na\r\n", &[0, 1]).is_none());
        assert!(place(b"*1\r\n$5\r\na\r\n", &[0]).is_none());
        assert!(place(b"*1\r\n:1\r\n", &[0]).is_none());
        assert!(place(b"*1\r\n$1\r\nab\r\n", &[0]).is_none());
        assert!(place(b"*-1\r\n", &[0]).is_none());
        assert!(
            place(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", &[0]).is_none(),
            "one too many"
        );
        assert!(
            place(b"*1\r\n$1\r\na\r\n", &[0, 1]).is_none(),
            "one too few"
        );
    }

    #[test]
    fn mset_moves_values_with_their_keys() {
        let a = request(&["MSET", "foo", "1", "bar", "2", "{foo}x", "3"]);
        let (_, raws) = split(&a, &[1, 3, 5], MergeRule::AllOk, 2, &Placement::SLOTS);
        assert_eq!(part_args(&raws[0]), ["MSET", "foo", "1", "{foo}x", "3"]);
        assert_eq!(part_args(&raws[1]), ["MSET", "bar", "2"]);
    }

    #[test]
    fn values_merge_back_in_key_order() {
        let a = request(&["MGET", "{x}1", "foo", "{x}2"]);
        let (s, _) = split(&a, &[1, 2, 3], MergeRule::Values, 1, &Placement::SLOTS);
        let replies = [
            Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n"),
            Bytes::from_static(b"*1\r\n$1\r\nb\r\n"),
        ];
        let merged = merge(s.rule, &s.parts, &replies, s.keys, &Limits::default());
        assert_eq!(&merged[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }

    #[test]
    fn counts_sum_and_errors_win() {
        let a = request(&["DEL", "foo", "bar"]);
        let (s, _) = split(&a, &[1, 2], MergeRule::Sum, 1, &Placement::SLOTS);
        let limits = Limits::default();
        let ok = [Bytes::from_static(b":1\r\n"), Bytes::from_static(b":0\r\n")];
        assert_eq!(&merge(s.rule, &s.parts, &ok, 2, &limits)[..], b":1\r\n");
        let failed = [
            Bytes::from_static(b":1\r\n"),
            Bytes::from_static(b"-ERR down\r\n"),
        ];
        assert_eq!(
            &merge(s.rule, &s.parts, &failed, 2, &limits)[..],
            b"-ERR down\r\n"
        );
        let all_ok = [
            Bytes::from_static(b"+OK\r\n"),
            Bytes::from_static(b"+OK\r\n"),
        ];
        assert_eq!(
            &merge(MergeRule::AllOk, &s.parts, &all_ok, 2, &limits)[..],
            b"+OK\r\n"
        );
    }

    #[test]
    fn a_short_or_wrong_reply_is_an_error_not_a_short_array() {
        let a = request(&["MGET", "foo", "bar"]);
        let (s, _) = split(&a, &[1, 2], MergeRule::Values, 1, &Placement::SLOTS);
        let replies = [
            Bytes::from_static(b"*0\r\n"),
            Bytes::from_static(b"*1\r\n$1\r\nb\r\n"),
        ];
        let merged = merge(s.rule, &s.parts, &replies, 2, &Limits::default());
        assert!(merged.starts_with(b"-ERR slotgate: unexpected reply"));
        let replies = [
            Bytes::from_static(b"+OK\r\n"),
            Bytes::from_static(b":1\r\n"),
        ];
        let merged = merge(MergeRule::Sum, &s.parts, &replies, 2, &Limits::default());
        assert!(merged.starts_with(b"-ERR slotgate: unexpected reply"));
    }

    #[test]
    fn fan_out_merges() {
        let limits = Limits::default();
        let request = request(&["KEYS", "*"]);
        let (s, _) = fan_out(
            &request,
            &[
                Unit::from(crate::slot::Slot::of(b"a")),
                Unit::from(crate::slot::Slot::of(b"b")),
            ],
            MergeRule::Concat,
        );
        assert_eq!(s.parts.len(), 2);
        let keys = [
            Bytes::from_static(b"*1\r\n$1\r\na\r\n"),
            Bytes::from_static(b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n"),
        ];
        assert_eq!(
            &merge(s.rule, &s.parts, &keys, 0, &limits)[..],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        let sha = [
            Bytes::from_static(b"$2\r\nab\r\n"),
            Bytes::from_static(b"$2\r\nab\r\n"),
        ];
        assert_eq!(
            &merge(MergeRule::Same, &s.parts, &sha, 0, &limits)[..],
            b"$2\r\nab\r\n"
        );
        let differ = [
            Bytes::from_static(b"$2\r\nab\r\n"),
            Bytes::from_static(b"$2\r\ncd\r\n"),
        ];
        assert!(merge(MergeRule::Same, &s.parts, &differ, 0, &limits).starts_with(b"-ERR"));
        let exists = [
            Bytes::from_static(b"*2\r\n:1\r\n:1\r\n"),
            Bytes::from_static(b"*2\r\n:0\r\n:1\r\n"),
        ];
        assert_eq!(
            &merge(MergeRule::AllOf, &s.parts, &exists, 0, &limits)[..],
            b"*2\r\n:0\r\n:1\r\n"
        );
        assert_eq!(fan_out_rule("dbsize"), Some(MergeRule::Sum));
        assert_eq!(fan_out_rule("lastsave"), Some(MergeRule::Least));
        assert_eq!(fan_out_rule("script|load"), Some(MergeRule::Same));
        assert_eq!(fan_out_rule("config|set"), None);
    }

    #[test]
    fn random_key_takes_any_non_nil_answer() {
        let replies = [
            Bytes::from_static(b"$-1\r\n"),
            Bytes::from_static(b"$1\r\nb\r\n"),
            Bytes::from_static(b"$1\r\nc\r\n"),
        ];
        let pick = |start| {
            merge(
                MergeRule::AnyValue { start },
                &[],
                &replies,
                0,
                &Limits::default(),
            )
        };
        assert_eq!(&pick(0)[..], b"$1\r\nb\r\n");
        assert_eq!(&pick(2)[..], b"$1\r\nc\r\n");
        let none = [Bytes::from_static(b"$-1\r\n")];
        assert_eq!(
            &merge(
                MergeRule::AnyValue { start: 5 },
                &[],
                &none,
                0,
                &Limits::default()
            )[..],
            b"$-1\r\n"
        );
    }

    #[test]
    fn scan_cursors_walk_every_master() {
        let start = ScanCursor::decode(b"0").unwrap();
        assert!(start.is_start());
        let c = ScanCursor {
            node: 2,
            fingerprint: 0xbeef,
            inner: 17,
        };
        let encoded = c.encode().unwrap();
        assert_eq!(ScanCursor::decode(encoded.to_string().as_bytes()), Some(c));
        assert!(!c.is_start());
        assert_eq!(ScanCursor::decode(b"x"), None);
        let too_far = ScanCursor {
            node: 1 << SCAN_NODE_BITS,
            ..c
        };
        assert_eq!(too_far.encode(), None);
        let too_deep = ScanCursor {
            inner: 1 << 38,
            ..c
        };
        assert_eq!(too_deep.encode(), None);
    }

    #[test]
    fn only_splittable_commands_have_a_rule() {
        assert_eq!(rule_of("mget"), Some((MergeRule::Values, 1)));
        assert_eq!(rule_of("mset"), Some((MergeRule::AllOk, 2)));
        assert_eq!(rule_of("exists"), Some((MergeRule::Sum, 1)));
        assert_eq!(rule_of("msetnx"), None);
        assert_eq!(rule_of("rename"), None);
    }
}
