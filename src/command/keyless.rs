//! Key-less introspection commands asked of every master, their answers merged into the one
//! reply a single Redis would give. Pure.
//!
//! What each answer means over several masters:
//! - `FUNCTION STATS`: `running_script` is the one running on any master (nil when none);
//!   `engines` is the first master's, since FUNCTION LOAD / RESTORE reach every master.
//! - `FUNCTION DUMP`: the masters' payloads must be byte for byte equal (libraries are loaded
//!   on all of them); if they differ the reply is an error saying so.
//! - `MEMORY STATS`: byte and key counts summed (also per database); `keys.bytes-per-key`,
//!   the percentages and ratios computed again from the sums, as Redis computes them; the
//!   peak is the sum of each master's peak (an upper bound of the whole's).
//! - `LATENCY LATEST`: per event, the latest sample of any master and the highest maximum.
//! - `LATENCY HISTORY event`: every master's samples in time order, the highest of one
//!   second, the last 160 (Redis keeps 160).
//! - `LATENCY HISTOGRAM`: per command, calls summed and the cumulative bucket counts summed.
//! - `LATENCY DOCTOR` / `GRAPH`, `MEMORY DOCTOR` / `MALLOC-STATS`: each master's text under a
//!   line naming it ([`node_text`]).
//! - `BGSAVE` / `BGREWRITEAOF`: every master saves its part of the keyspace; the answer they
//!   share, else the first refusal, else the least advanced one ([`background`]).

use bytes::{Bytes, BytesMut};

use super::zset::format_double;
use crate::resp::{encode, parse_frame, Frame, Limits};

/// Samples Redis keeps per latency event (`LATENCY_TS_LEN`).
const LATENCY_SAMPLES: usize = 160;

/// A reply made of name/value pairs (a RESP2 flat array or a RESP3 map): its pairs and
/// whether it was a map.
fn pairs(frame: Frame) -> Option<(Vec<(Frame, Frame)>, bool)> {
    let (items, map) = frame.into_pairs()?;
    if items.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        out.push((name, value));
    }
    Some((out, map))
}

/// Encode `pairs` as a map (RESP3) or a flat array (RESP2).
fn encode_pairs(out: &mut BytesMut, pairs: &[(Frame, Frame)], map: bool) {
    if map {
        encode::map_header(out, pairs.len());
    } else {
        encode::array_header(out, pairs.len() * 2);
    }
    for (name, value) in pairs {
        name.encode(out);
        value.encode(out);
    }
}

/// Name/value pairs of one reply.
type Pairs = Vec<(Frame, Frame)>;

/// Each reply parsed as pairs, and whether one was a map; `Err` is the client's reply for the
/// first that is not pairs.
fn parse_pairs(replies: &[Bytes], limits: &Limits) -> Result<(Vec<Pairs>, bool), Bytes> {
    let mut all = Vec::with_capacity(replies.len());
    let mut map = false;
    for reply in replies {
        let Some((parsed, is_map)) = parse_frame(reply, limits).ok().and_then(pairs) else {
            return Err(unexpected(reply));
        };
        map |= is_map;
        all.push(parsed);
    }
    Ok((all, map))
}

fn is_null(frame: &Frame) -> bool {
    matches!(frame, Frame::Null | Frame::Nil | Frame::NullArray)
}

/// FUNCTION STATS over the masters (replies in address order).
pub fn function_stats(replies: &[Bytes], limits: &Limits) -> Bytes {
    let (all, map) = match parse_pairs(replies, limits) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let Some(first) = all.first() else {
        return unexpected(b"");
    };
    let mut merged = first.clone();
    for (name, value) in &mut merged {
        if name.as_bytes().map(|n| &n[..]) == Some(b"running_script") && is_null(value) {
            let running = all.iter().skip(1).find_map(|reply| {
                reply.iter().find_map(|(n, v)| {
                    (n.as_bytes().map(|n| &n[..]) == Some(b"running_script") && !is_null(v))
                        .then(|| v.clone())
                })
            });
            if let Some(running) = running {
                *value = running;
            }
        }
    }
    let mut out = BytesMut::new();
    encode_pairs(&mut out, &merged, map);
    out.freeze()
}

/// FUNCTION DUMP: the masters' payload when they all gave the same one.
pub fn function_dump(replies: &[Bytes]) -> Bytes {
    match replies.split_first() {
        Some((first, rest)) if rest.iter().all(|r| r == first) => first.clone(),
        Some(_) => error(
            "ERR slotgate: the masters hold different function libraries, so there is no one \
             dump (FUNCTION RESTORE … REPLACE through the proxy makes them equal)",
        ),
        None => error("ERR slotgate: no master to ask"),
    }
}

/// BGSAVE / BGREWRITEAOF over the masters: their common answer ("Background saving
/// started"); if they differ, the first error (one master refused: "already in progress"),
/// else the one that is not "started" (a save "scheduled" on one master is not yet a save of
/// the whole keyspace).
pub fn background(replies: &[Bytes]) -> Bytes {
    let Some((first, rest)) = replies.split_first() else {
        return error("ERR slotgate: no master to ask");
    };
    if rest.iter().all(|r| r == first) {
        return first.clone();
    }
    if let Some(refused) = replies.iter().find(|r| r.first() == Some(&b'-')) {
        return refused.clone();
    }
    replies
        .iter()
        .find(|r| !r.ends_with(b"started\r\n"))
        .unwrap_or(first)
        .clone()
}

/// A number of a MEMORY STATS reply: an integer, or a double (a bulk string in RESP2).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Int(i64),
    Double(f64),
}

fn number(frame: &Frame) -> Option<Number> {
    match frame {
        Frame::Integer(n) => Some(Number::Int(*n)),
        Frame::Double(text) | Frame::Bulk(text) => std::str::from_utf8(text)
            .ok()?
            .parse::<f64>()
            .ok()
            .map(Number::Double),
        _ => None,
    }
}

/// A double in the frame type the masters used (`like`): RESP3 double or RESP2 bulk string,
/// printed as Redis 7.0 prints one (`%.17g`).
fn double_like(like: &Frame, value: f64) -> Frame {
    let value = if value.is_finite() { value } else { 0.0 };
    let text = Bytes::from(format_double(value));
    match like {
        Frame::Double(_) => Frame::Double(text),
        _ => Frame::Bulk(text),
    }
}

/// `a / b`, 0 when `b` is 0; computed in `f32` as Redis' `float` fields are.
fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 {
        return 0.0;
    }
    f64::from(a as f32 / b as f32)
}

/// MEMORY STATS over the masters.
pub fn memory_stats(replies: &[Bytes], limits: &Limits) -> Bytes {
    let (all, map) = match parse_pairs(replies, limits) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    // Fields in the first master's order, then any only later masters have; each summed.
    let mut merged: Vec<(Frame, Frame)> = Vec::new();
    for (reply, raw) in all.iter().zip(replies) {
        for (name, value) in reply {
            match merged.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => match add(total, value) {
                    Some(sum) => *total = sum,
                    None => return unexpected(raw),
                },
                None => merged.push((name.clone(), value.clone())),
            }
        }
    }
    let int = |field: &str| {
        merged
            .iter()
            .find(|(n, _)| n.as_bytes().map(|n| &n[..]) == Some(field.as_bytes()))
            .and_then(|(_, v)| v.as_int())
            .unwrap_or(0)
    };
    let net = int("total.allocated").saturating_sub(int("startup.allocated"));
    let rss = int("allocator.resident").saturating_add(int("rss-overhead.bytes"));
    let computed = |field: &[u8]| -> Option<f64> {
        Some(match field {
            b"dataset.percentage" => ratio(int("dataset.bytes"), net) * 100.0,
            b"peak.percentage" => ratio(int("total.allocated"), int("peak.allocated")) * 100.0,
            b"allocator-fragmentation.ratio" => {
                ratio(int("allocator.active"), int("allocator.allocated"))
            }
            b"allocator-rss.ratio" => ratio(int("allocator.resident"), int("allocator.active")),
            b"rss-overhead.ratio" => ratio(rss, int("allocator.resident")),
            b"fragmentation" => ratio(rss, rss.saturating_sub(int("fragmentation.bytes"))),
            _ => return None,
        })
    };
    let bytes_per_key = if int("keys.count") > 0 {
        net / int("keys.count")
    } else {
        0
    };
    let updates: Vec<(usize, Frame)> = merged
        .iter()
        .enumerate()
        .filter_map(|(at, (name, value))| {
            let field = name.as_bytes()?;
            if &field[..] == b"keys.bytes-per-key" {
                return Some((at, Frame::Integer(bytes_per_key)));
            }
            Some((at, double_like(value, computed(field)?)))
        })
        .collect();
    for (at, value) in updates {
        merged[at].1 = value;
    }
    let mut out = BytesMut::new();
    encode_pairs(&mut out, &merged, map);
    out.freeze()
}

/// `total` and `value` added: integers summed, doubles the larger (a double that is not
/// computed again from the sums), nested pairs (`db.N`) field by field.
fn add(total: &Frame, value: &Frame) -> Option<Frame> {
    if let (Some(a), Some(b)) = (number(total), number(value)) {
        return Some(match (a, b) {
            (Number::Int(a), Number::Int(b)) => Frame::Integer(a.saturating_add(b)),
            (Number::Double(a), Number::Double(b)) => double_like(total, a.max(b)),
            _ => return None,
        });
    }
    let (Some(a), Some(b)) = (total.as_array(), value.as_array()) else {
        return None;
    };
    let map = matches!(total, Frame::Map(_));
    let (mut a, _) = pairs(Frame::Array(a.to_vec()))?;
    let (b, _) = pairs(Frame::Array(b.to_vec()))?;
    for (name, v) in b {
        match a.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t = add(t, &v)?,
            None => a.push((name, v)),
        }
    }
    let flat: Vec<Frame> = a.into_iter().flat_map(|(n, v)| [n, v]).collect();
    Some(if map {
        Frame::Map(flat)
    } else {
        Frame::Array(flat)
    })
}

/// LATENCY LATEST over the masters: per event (first seen first), the latest sample of any
/// master (its time and latency) and the highest maximum.
pub fn latency_latest(replies: &[Bytes], limits: &Limits) -> Bytes {
    let mut events: Vec<(Frame, [i64; 3])> = Vec::new();
    for reply in replies {
        let Ok(Frame::Array(items)) = parse_frame(reply, limits) else {
            return unexpected(reply);
        };
        for item in items {
            let fields = match item.as_array() {
                Some([name, time, latest, max]) => {
                    (name, [time.as_int(), latest.as_int(), max.as_int()])
                }
                _ => return unexpected(reply),
            };
            let (name, [Some(time), Some(latest), Some(max)]) = fields else {
                return unexpected(reply);
            };
            match events.iter_mut().find(|(n, _)| n == name) {
                Some((_, e)) => {
                    if time > e[0] || (time == e[0] && latest > e[1]) {
                        e[0] = time;
                        e[1] = latest;
                    }
                    e[2] = e[2].max(max);
                }
                None => events.push((name.clone(), [time, latest, max])),
            }
        }
    }
    let mut out = BytesMut::new();
    encode::array_header(&mut out, events.len());
    for (name, numbers) in events {
        encode::array_header(&mut out, 4);
        name.encode(&mut out);
        for n in numbers {
            encode::integer(&mut out, n);
        }
    }
    out.freeze()
}

/// LATENCY HISTORY over the masters: every sample in time order, one per second (the highest
/// latency of that second, as Redis keeps within one), the last [`LATENCY_SAMPLES`].
pub fn latency_history(replies: &[Bytes], limits: &Limits) -> Bytes {
    let mut samples: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for reply in replies {
        let Ok(Frame::Array(items)) = parse_frame(reply, limits) else {
            return unexpected(reply);
        };
        for item in items {
            let Some([time, latency]) = item.as_array() else {
                return unexpected(reply);
            };
            let (Some(time), Some(latency)) = (time.as_int(), latency.as_int()) else {
                return unexpected(reply);
            };
            let at = samples.entry(time).or_insert(latency);
            *at = (*at).max(latency);
        }
    }
    let skip = samples.len().saturating_sub(LATENCY_SAMPLES);
    let mut out = BytesMut::new();
    encode::array_header(&mut out, samples.len() - skip);
    for (time, latency) in samples.into_iter().skip(skip) {
        encode::array_header(&mut out, 2);
        encode::integer(&mut out, time);
        encode::integer(&mut out, latency);
    }
    out.freeze()
}

/// One command's LATENCY HISTOGRAM entry: its calls and its cumulative counts by bucket.
struct Histogram {
    calls: i64,
    /// Each master's (bucket upper bound in µs, cumulative count) steps, ascending.
    steps: Vec<Vec<(i64, i64)>>,
}

/// A histogram entry (`calls`, n, `histogram_usec`, buckets) of one master.
fn histogram_entry(value: Frame) -> Option<(i64, Vec<(i64, i64)>)> {
    let (fields, _) = pairs(value)?;
    let mut calls = None;
    let mut steps = None;
    for (name, value) in fields {
        match name.as_bytes().map(|n| &n[..]) {
            Some(b"calls") => calls = value.as_int(),
            Some(b"histogram_usec") => {
                let (buckets, _) = pairs(value)?;
                let parsed: Option<Vec<(i64, i64)>> = buckets
                    .iter()
                    .map(|(b, c)| Some((b.as_int()?, c.as_int()?)))
                    .collect();
                steps = Some(parsed?);
            }
            _ => {}
        }
    }
    Some((calls?, steps?))
}

/// LATENCY HISTOGRAM over the masters: per command (first seen first), calls summed and at
/// each bucket any master reported, the masters' cumulative counts at that bucket summed.
pub fn latency_histogram(replies: &[Bytes], limits: &Limits) -> Bytes {
    let mut commands: Vec<(Frame, Histogram)> = Vec::new();
    let mut map = false;
    for reply in replies {
        let Some((entries, is_map)) = parse_frame(reply, limits).ok().and_then(pairs) else {
            return unexpected(reply);
        };
        map |= is_map;
        for (name, value) in entries {
            let Some((calls, steps)) = histogram_entry(value) else {
                return unexpected(reply);
            };
            match commands.iter_mut().find(|(n, _)| *n == name) {
                Some((_, h)) => {
                    h.calls = h.calls.saturating_add(calls);
                    h.steps.push(steps);
                }
                None => commands.push((
                    name,
                    Histogram {
                        calls,
                        steps: vec![steps],
                    },
                )),
            }
        }
    }
    let mut out = BytesMut::new();
    let header = |out: &mut BytesMut, n: usize| {
        if map {
            encode::map_header(out, n);
        } else {
            encode::array_header(out, n * 2);
        }
    };
    header(&mut out, commands.len());
    for (name, histogram) in commands {
        name.encode(&mut out);
        header(&mut out, 2);
        encode::bulk(&mut out, b"calls");
        encode::integer(&mut out, histogram.calls);
        encode::bulk(&mut out, b"histogram_usec");
        let buckets = cumulative_sum(&histogram.steps);
        header(&mut out, buckets.len());
        for (bucket, count) in buckets {
            encode::integer(&mut out, bucket);
            encode::integer(&mut out, count);
        }
    }
    out.freeze()
}

/// Cumulative counts by bucket summed over several step functions: at each bucket any of them
/// lists, the sum of each one's count at its last bucket not above it.
fn cumulative_sum(steps: &[Vec<(i64, i64)>]) -> Vec<(i64, i64)> {
    let mut buckets: Vec<i64> = steps.iter().flatten().map(|&(b, _)| b).collect();
    buckets.sort_unstable();
    buckets.dedup();
    buckets
        .into_iter()
        .map(|bucket| {
            let count = steps
                .iter()
                .map(|s| {
                    s.iter()
                        .take_while(|&&(b, _)| b <= bucket)
                        .last()
                        .map_or(0, |&(_, c)| c)
                })
                .sum();
            (bucket, count)
        })
        .collect()
}

/// Each node's text (LATENCY DOCTOR, MEMORY DOCTOR …) under a line naming it, in node order;
/// a node's error is shown as its text. Every node refusing: the first node's error. A
/// verbatim string when the nodes answered one (RESP3), else a bulk string.
pub fn node_text(nodes: &[std::sync::Arc<str>], replies: &[Bytes], limits: &Limits) -> Bytes {
    if let Some(first) = replies.first() {
        if replies
            .iter()
            .all(|r| matches!(r.first(), Some(b'-' | b'!')))
        {
            return first.clone();
        }
    }
    let mut text = String::new();
    let mut verbatim = false;
    for (node, reply) in nodes.iter().zip(replies) {
        let body = match parse_frame(reply, limits) {
            Ok(Frame::Verbatim(_, body)) => {
                verbatim = true;
                String::from_utf8_lossy(&body).into_owned()
            }
            Ok(Frame::Bulk(body)) => String::from_utf8_lossy(&body).into_owned(),
            Ok(Frame::Error(e) | Frame::BlobError(e)) => {
                format!("(error) {}", String::from_utf8_lossy(&e))
            }
            _ => return unexpected(reply),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("--- {node} ---\n"));
        text.push_str(body.trim_end());
        text.push('\n');
    }
    let mut out = BytesMut::new();
    if verbatim {
        Frame::Verbatim(Bytes::from_static(b"txt"), Bytes::from(text)).encode(&mut out);
    } else {
        encode::bulk(&mut out, text.as_bytes());
    }
    out.freeze()
}

fn error(text: &str) -> Bytes {
    let mut out = BytesMut::new();
    encode::error(&mut out, text);
    out.freeze()
}

fn unexpected(reply: &[u8]) -> Bytes {
    let shown = String::from_utf8_lossy(&reply[..reply.len().min(64)])
        .escape_debug()
        .to_string();
    error(&format!(
        "ERR slotgate: unexpected reply from a master: {shown}"
    ))
}

#[cfg(test)]
mod tests;
