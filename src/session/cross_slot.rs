//! Commands that write keys of several slots, served in steps when
//! `commands.non_atomic_cross_slot_writes` is on (off, they answer CROSSSLOT as a cluster node
//! does). Each runs as an exclusive request: every earlier reply of the session is in.
//!
//! Steps are ordered so that a failure in the middle duplicates rather than loses:
//! - **Gather** (SUNIONSTORE, SINTERSTORE, SDIFFSTORE, ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE,
//!   ZRANGESTORE, PFMERGE, BITOP, SORT … STORE, GEOSEARCHSTORE, GEORADIUS … STORE, COPY):
//!   each source of another slot is read with `DUMP` and `PTTL` (in one MULTI on its node),
//!   then on the destination's node one MULTI restores them under temporary names in the
//!   destination's slot, runs the command itself on them and deletes them. The node computes
//!   the answer, so replies and errors are exactly Redis'; the destination changes atomically.
//! - **SMOVE**: a gather, then (when the member moved) `SREM` on the source's node.
//! - **RENAME / RENAMENX**: `DUMP`+`PTTL` of the source, `RESTORE` at the destination (with its
//!   TTL), then `DEL` of the source: between the last two steps both names exist.
//! - **LMOVE / RPOPLPUSH**: both keys' types checked, the element popped from the source and
//!   pushed to the destination; if the push fails, the element is pushed back where it came
//!   from.
//! - **MSETNX**: `EXISTS` on every slot's keys, then `MSET` per slot when none exists; a key
//!   created by another client in between is overwritten.
//!
//! Not atomic across slots: another client may see a step's effect before the next one.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use crate::command::{CommandSpec, KeySpecFlags};
use crate::placement::{KeySpace, Unit};
use crate::resp::{encode, parse_frame, Frame, Reply};

use crate::backend::dedicated::Lease;

use super::dispatch::error;
use super::pinned::on_master;
use super::WorkerContext;

/// How a command is served across slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Sources copied next to the key at `dest`; the command runs on its node.
    Gather {
        /// The index of the one key the command writes.
        dest: usize,
    },
    /// SMOVE: a gather to the destination, then the member removed from the source.
    Smove,
    /// RENAME (`nx`: RENAMENX).
    Rename {
        /// RENAMENX: the destination must not exist.
        nx: bool,
    },
    /// LMOVE / RPOPLPUSH, and their blocking forms BLMOVE / BRPOPLPUSH.
    Lmove {
        /// Pop from the head of the source (LEFT).
        pop_left: bool,
        /// Push to the head of the destination (LEFT).
        push_left: bool,
        /// The index of the timeout argument of a blocking form.
        timeout_at: Option<usize>,
    },
    /// MSETNX.
    Msetnx,
    /// WATCH of keys in several slots: one WATCH per slot (served by the session, which holds
    /// the watches; see `cross_slot_tx`).
    Watch,
    /// BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP, BZMPOP over keys of several slots: each key
    /// tried in order with the non-blocking form, again and again, until one answers or the
    /// timeout passes.
    BlockingPop,
    /// SORT / SORT_RO with BY or GET patterns, computed in the proxy ([`crate::command::sort`]);
    /// on by default (the STORE form only with the setting).
    Sort,
}

/// The commands served by a gather: the node runs them once their sources are local.
const GATHERED: &[&str] = &[
    "sunionstore",
    "sinterstore",
    "sdiffstore",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zrangestore",
    "pfmerge",
    "bitop",
    "sort",
    "geosearchstore",
    "georadius",
    "georadiusbymember",
    "copy",
];

/// How `args` (a request for `spec` that passed its arity check) is served across slots, when
/// its keys are in several units and it is one of the commands served so.
pub(super) fn plan(
    spec: &CommandSpec,
    args: &[&[u8]],
    unit_of: impl Fn(&[u8]) -> Unit,
) -> Option<Plan> {
    let mut keys: Vec<(usize, KeySpecFlags)> = Vec::new();
    spec.visit_keys(args, false, true, |i, flags| keys.push((i, flags)))
        .ok()?;
    let first = unit_of(args.get(keys.first()?.0)?);
    if keys
        .iter()
        .all(|&(i, _)| args.get(i).is_some_and(|k| unit_of(k) == first))
    {
        return None;
    }
    let word = |i: usize| args.get(i).map(|a| a.to_ascii_uppercase());
    Some(match spec.name {
        "smove" => Plan::Smove,
        "rename" => Plan::Rename { nx: false },
        "renamenx" => Plan::Rename { nx: true },
        "rpoplpush" | "brpoplpush" => Plan::Lmove {
            pop_left: false,
            push_left: true,
            timeout_at: (spec.name == "brpoplpush").then_some(3),
        },
        "lmove" | "blmove" => Plan::Lmove {
            pop_left: word(3)?.as_slice() == b"LEFT",
            push_left: word(4)?.as_slice() == b"LEFT",
            timeout_at: (spec.name == "blmove").then_some(5),
        },
        "msetnx" => Plan::Msetnx,
        "watch" => Plan::Watch,
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "blmpop" | "bzmpop" | "lmpop" | "zmpop" => {
            Plan::BlockingPop
        }
        name if GATHERED.contains(&name) => {
            let mut written = keys
                .iter()
                .filter(|(_, flags)| !flags.contains(KeySpecFlags::RO))
                .map(|&(i, _)| i);
            let dest = written.next()?;
            if written.next().is_some() {
                return None;
            }
            Plan::Gather { dest }
        }
        _ => return None,
    })
}

/// A command as a RESP multibulk appended to `out`.
fn command(out: &mut BytesMut, args: &[&[u8]]) {
    encode::array_header(out, args.len());
    for arg in args {
        encode::bulk(out, arg);
    }
}

/// Send `payload` (`count` commands) to the master of `unit` on a dedicated connection as
/// `lease` says; every reply, or the error for the client.
pub(super) async fn call(
    worker: &WorkerContext,
    lease: Lease,
    unit: Unit,
    payload: &[u8],
    count: usize,
) -> Result<Vec<Reply>, Bytes> {
    let timeout = Some(worker.settings().request_timeout);
    let (conn, replies) = on_master(worker, Some(unit), payload, count, timeout, lease).await?;
    worker.router().give_back(conn);
    if replies.len() != count {
        return Err(error(
            "ERR slotgate: a master sent fewer replies than asked for",
        ));
    }
    Ok(replies)
}

/// One command to the master of `unit` (RESP2); its reply, an error reply included.
async fn call_one(
    worker: &WorkerContext,
    lease: Lease,
    unit: Unit,
    args: &[&[u8]],
) -> Result<Frame, Bytes> {
    let mut out = BytesMut::new();
    command(&mut out, args);
    let mut replies = call(worker, lease.resp2(), unit, &out, 1).await?;
    let reply = replies
        .pop()
        .ok_or_else(|| error("ERR slotgate: no reply"))?;
    frame(&reply)
}

fn frame(reply: &Reply) -> Result<Frame, Bytes> {
    parse_frame(reply.raw(), &crate::resp::Limits::default())
        .map_err(|_| error("ERR slotgate: unreadable reply from a master"))
}

/// A key's serialized value and remaining time to live in ms (0: none), read in one MULTI;
/// `None` when it does not exist.
async fn dump(
    worker: &WorkerContext,
    lease: Lease,
    unit: Unit,
    key: &[u8],
) -> Result<Option<(Bytes, u64)>, Bytes> {
    let mut out = BytesMut::new();
    command(&mut out, &[b"MULTI"]);
    command(&mut out, &[b"DUMP", key]);
    command(&mut out, &[b"PTTL", key]);
    command(&mut out, &[b"EXEC"]);
    let replies = call(worker, lease.resp2(), unit, &out, 4).await?;
    let exec = replies.last().map(frame).transpose()?;
    match exec {
        Some(Frame::Array(items)) => match items.as_slice() {
            [Frame::Bulk(payload), Frame::Integer(pttl)] => {
                Ok(Some((payload.clone(), u64::try_from(*pttl).unwrap_or(0))))
            }
            [Frame::Null | Frame::Nil, _] => Ok(None),
            _ => Err(error("ERR slotgate: unexpected DUMP reply from a master")),
        },
        Some(Frame::Error(e)) => Err(error(&String::from_utf8_lossy(&e))),
        _ => Err(error("ERR slotgate: unexpected DUMP reply from a master")),
    }
}

/// Temporary names are unique per process: a counter, the process id.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// `count` temporary key names in the slot of `dest` (`{tag}slotgate:tmp:…`), or `None` when
/// no such name can be built. The tag is `dest`'s own hash tag, or `dest` whole; when that
/// cannot be a tag (a name that hashes whole and holds a `}`), a short tag of its hash slot
/// ([`crate::slot::tag_for`]). Either way every name is checked to land where `dest` does.
fn temp_names(dest: &[u8], count: usize, unit_of: &impl Fn(&[u8]) -> Unit) -> Option<Vec<Bytes>> {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let named = |tag: &[u8]| -> Vec<Bytes> {
        (0..count)
            .map(|i| {
                let mut name = Vec::with_capacity(tag.len() + 40);
                name.push(b'{');
                name.extend_from_slice(tag);
                name.extend_from_slice(format!("}}slotgate:tmp:{pid}:{n}:{i}").as_bytes());
                Bytes::from(name)
            })
            .collect()
    };
    let home = unit_of(dest);
    let at_home = |names: &[Bytes]| names.iter().all(|name| unit_of(name) == home);
    let names = named(crate::slot::hash_tag(dest).unwrap_or(dest));
    if at_home(&names) {
        return Some(names);
    }
    let names = named(crate::slot::tag_for(crate::slot::Slot::of(dest)));
    at_home(&names).then_some(names)
}

/// Serve `args` as `plan` says, on dedicated connections as `lease` says (the client's
/// protocol and database), keys named in `space`; the reply for the client (in its protocol), and the
/// units written (for WAIT).
pub(super) async fn run(
    worker: &WorkerContext,
    args: &[&[u8]],
    plan: Plan,
    lease: Lease,
    space: &KeySpace,
) -> (Bytes, Vec<Unit>) {
    let table = worker.router().table();
    let unit_of = |key: &[u8]| table.placement().unit_of(key);
    let unit = |i: usize| args.get(i).map(|k| unit_of(k)).unwrap_or(Unit::ZERO);
    let result = match plan {
        Plan::Gather { dest } => gather(worker, lease, args, dest, &unit_of)
            .await
            .map(|reply| (reply, vec![unit(dest)])),
        Plan::Smove => smove(worker, lease, args, &unit_of)
            .await
            .map(|reply| (reply, vec![unit(1), unit(2)])),
        Plan::Rename { nx } => rename(worker, lease, args, nx, &unit_of)
            .await
            .map(|reply| (reply, vec![unit(1), unit(2)])),
        Plan::Lmove {
            pop_left,
            push_left,
            timeout_at,
        } => {
            let ends = Ends {
                pop_left,
                push_left,
            };
            lmove(worker, lease, args, ends, timeout_at, &unit_of)
                .await
                .map(|reply| (reply, vec![unit(1), unit(2)]))
        }
        Plan::Msetnx => msetnx(worker, lease, args, &unit_of).await,
        Plan::Watch => Err(error("ERR slotgate: WATCH is served by the session")),
        Plan::BlockingPop => blocking_pop(worker, lease, args, &unit_of).await,
        Plan::Sort => sort_patterns(worker, lease, space, args, &unit_of).await,
    };
    result.unwrap_or_else(|reply| (reply, Vec::new()))
}

/// Copy the sources of other slots next to `args[dest]` and run the command there.
async fn gather(
    worker: &WorkerContext,
    lease: Lease,
    args: &[&[u8]],
    dest: usize,
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<Bytes, Bytes> {
    let name = printable_name(args);
    let dest_key = args.get(dest).copied().unwrap_or_default();
    let home = unit_of(dest_key);
    let spec = crate::command::lookup(args).ok_or_else(|| error("ERR unknown command"))?;
    let mut keys = smallvec::SmallVec::<[usize; 8]>::new();
    spec.keys(args, &mut keys)
        .map_err(|e| error(&format!("ERR {e}")))?;
    // The distinct source keys of other slots, in order.
    let mut away: Vec<&[u8]> = Vec::new();
    for &i in &keys {
        let Some(&key) = args.get(i) else { continue };
        if unit_of(key) != home && !away.contains(&key) {
            away.push(key);
        }
    }
    let temps = temp_names(dest_key, away.len(), unit_of).ok_or_else(|| {
        error(&format!(
            "ERR slotgate: cannot serve '{name}' across slots: no temporary key name shares the \
             destination key's slot"
        ))
    })?;
    let mut copies = Vec::with_capacity(away.len());
    for (key, temp) in away.iter().zip(&temps) {
        if let Some(value) = dump(worker, lease, unit_of(key), key).await? {
            copies.push((temp.clone(), value));
        }
    }
    let sent: Vec<&[u8]> = args
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            match keys
                .contains(&i)
                .then(|| away.iter().position(|k| k == arg))
            {
                Some(Some(at)) => temps.get(at).map_or(*arg, |t| &t[..]),
                _ => *arg,
            }
        })
        .collect();
    let mut out = BytesMut::new();
    command(&mut out, &[b"MULTI"]);
    for (temp, (payload, ttl)) in &copies {
        let ttl = ttl.to_string();
        command(
            &mut out,
            &[b"RESTORE", temp, ttl.as_bytes(), payload, b"REPLACE"],
        );
    }
    command(&mut out, &sent);
    let restored: Vec<&[u8]> = copies.iter().map(|(t, _)| &t[..]).collect();
    if !restored.is_empty() {
        let mut del: Vec<&[u8]> = vec![b"DEL"];
        del.extend(restored);
        command(&mut out, &del);
    }
    command(&mut out, &[b"EXEC"]);
    let count = 3 + copies.len() + usize::from(!copies.is_empty());
    let replies = call(worker, lease, home, &out, count).await?;
    // An error while queueing (a restore, or the command's own syntax) is the answer.
    if let Some(bad) = replies
        .iter()
        .take(count - 1)
        .skip(1)
        .find(|r| r.is_error())
    {
        return Err(bad.raw().clone());
    }
    let exec = replies.last().map(frame).transpose()?;
    match exec {
        Some(Frame::Array(mut items)) if items.len() > copies.len() => {
            let reply = items.swap_remove(copies.len());
            if let Some((_, restore_error)) = items
                .iter()
                .take(copies.len())
                .enumerate()
                .find(|(_, f)| matches!(f, Frame::Error(_)))
            {
                let mut out = BytesMut::new();
                restore_error.encode(&mut out);
                return Err(out.freeze());
            }
            let mut out = BytesMut::new();
            reply.encode(&mut out);
            Ok(out.freeze())
        }
        Some(other) => {
            let mut out = BytesMut::new();
            other.encode(&mut out);
            Err(out.freeze())
        }
        None => Err(error("ERR slotgate: no EXEC reply")),
    }
}

/// SMOVE src dst member: a gather to `dst`; when the member moved, removed from `src`.
async fn smove(
    worker: &WorkerContext,
    lease: Lease,
    args: &[&[u8]],
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<Bytes, Bytes> {
    let reply = gather(worker, lease, args, 2, unit_of).await?;
    if reply.as_ref() == b":1\r\n" {
        if let (Some(src), Some(member)) = (args.get(1), args.get(3)) {
            if let Frame::Error(e) =
                call_one(worker, lease, unit_of(src), &[b"SREM", src, member]).await?
            {
                return Err(error(&format!(
                    "ERR slotgate: SMOVE added the member to the destination but could not \
                     remove it from the source: {}",
                    String::from_utf8_lossy(&e)
                )));
            }
        }
    }
    Ok(reply)
}

/// RENAME / RENAMENX src dst.
async fn rename(
    worker: &WorkerContext,
    lease: Lease,
    args: &[&[u8]],
    nx: bool,
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<Bytes, Bytes> {
    let (Some(&src), Some(&dst)) = (args.get(1), args.get(2)) else {
        return Err(error("ERR wrong number of arguments"));
    };
    let Some((payload, ttl)) = dump(worker, lease, unit_of(src), src).await? else {
        return Err(error("ERR no such key"));
    };
    let ttl = ttl.to_string();
    let mut restore: Vec<&[u8]> = vec![b"RESTORE", dst, ttl.as_bytes(), &payload];
    if !nx {
        restore.push(b"REPLACE");
    }
    match call_one(worker, lease, unit_of(dst), &restore).await? {
        Frame::Error(e) if nx && e.starts_with(b"BUSYKEY") => {
            return Ok(Bytes::from_static(b":0\r\n"))
        }
        Frame::Error(e) => return Err(error(&String::from_utf8_lossy(&e))),
        _ => {}
    }
    if let Frame::Error(e) = call_one(worker, lease, unit_of(src), &[b"DEL", src]).await? {
        return Err(error(&format!(
            "ERR slotgate: {} copied the key but could not delete the source: {}",
            printable_name(args),
            String::from_utf8_lossy(&e)
        )));
    }
    Ok(Bytes::from_static(if nx { b":1\r\n" } else { b"+OK\r\n" }))
}

/// Redis' WRONGTYPE error.
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Which ends an LMOVE pops from and pushes to.
#[derive(Clone, Copy)]
struct Ends {
    pop_left: bool,
    push_left: bool,
}

/// The deadline of a blocking command's timeout argument (seconds; 0: none), or the error
/// Redis gives for a bad one.
fn deadline_of(arg: Option<&[u8]>) -> Result<Option<tokio::time::Instant>, Bytes> {
    let timeout = arg
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .ok_or_else(|| error("ERR timeout is not a float or out of range"))?;
    if timeout < 0.0 {
        return Err(error("ERR timeout is negative"));
    }
    Ok((timeout > 0.0)
        .then(|| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(timeout)))
}

/// Sleep before the next round of a blocking command; `false` when its deadline has passed.
async fn next_round(
    deadline: Option<tokio::time::Instant>,
    pause: &mut std::time::Duration,
) -> bool {
    let now = tokio::time::Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return false;
    }
    let wake = deadline.map_or(now + *pause, |d| d.min(now + *pause));
    tokio::time::sleep_until(wake).await;
    *pause = (*pause * 2).min(POLL_MAX);
    true
}

/// LMOVE / RPOPLPUSH src dst; BLMOVE / BRPOPLPUSH (the timeout at `timeout_at`) try again
/// until the source has an element or the timeout passes.
async fn lmove(
    worker: &WorkerContext,
    lease: Lease,
    args: &[&[u8]],
    ends: Ends,
    timeout_at: Option<usize>,
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<Bytes, Bytes> {
    let (Some(&src), Some(&dst)) = (args.get(1), args.get(2)) else {
        return Err(error("ERR wrong number of arguments"));
    };
    let deadline = match timeout_at {
        Some(i) => Some(deadline_of(args.get(i).copied())?),
        None => None,
    };
    let nil = || {
        let blocking_nil: &'static [u8] = if lease.resp3 { b"_\r\n" } else { b"*-1\r\n" };
        let plain_nil: &'static [u8] = if lease.resp3 { b"_\r\n" } else { b"$-1\r\n" };
        Bytes::from_static(if deadline.is_some() {
            blocking_nil
        } else {
            plain_nil
        })
    };
    let mut pause = POLL_FIRST;
    loop {
        // As Redis: the source is checked first; a missing one is nil (or, blocking, a wait)
        // whatever the destination holds.
        match call_one(worker, lease, unit_of(src), &[b"TYPE", src]).await? {
            Frame::Simple(t) if t.as_ref() == b"none" => match deadline {
                Some(deadline) if next_round(deadline, &mut pause).await => continue,
                _ => return Ok(nil()),
            },
            Frame::Simple(t) if t.as_ref() == b"list" => {}
            _ => return Err(error(WRONGTYPE)),
        }
        match call_one(worker, lease, unit_of(dst), &[b"TYPE", dst]).await? {
            Frame::Simple(t) if t.as_ref() == b"none" || t.as_ref() == b"list" => {}
            _ => return Err(error(WRONGTYPE)),
        }
        let pop: &[u8] = if ends.pop_left { b"LPOP" } else { b"RPOP" };
        let value = match call_one(worker, lease, unit_of(src), &[pop, src]).await? {
            Frame::Bulk(value) => value,
            Frame::Error(e) => return Err(error(&String::from_utf8_lossy(&e))),
            _ => match deadline {
                Some(deadline) if next_round(deadline, &mut pause).await => continue,
                _ => return Ok(nil()),
            },
        };
        let push: &[u8] = if ends.push_left { b"LPUSH" } else { b"RPUSH" };
        if let Frame::Error(e) = call_one(worker, lease, unit_of(dst), &[push, dst, &value]).await?
        {
            // Back where it came from, so the element is not lost.
            let back: &[u8] = if ends.pop_left { b"LPUSH" } else { b"RPUSH" };
            let _ = call_one(worker, lease, unit_of(src), &[back, src, &value]).await;
            return Err(error(&String::from_utf8_lossy(&e)));
        }
        let mut out = BytesMut::new();
        encode::bulk(&mut out, &value);
        return Ok(out.freeze());
    }
}

/// A key and its value.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// MSETNX k v …: nothing set when any key exists.
async fn msetnx(
    worker: &WorkerContext,
    lease: Lease,
    args: &[&[u8]],
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<(Bytes, Vec<Unit>), Bytes> {
    let pairs: Vec<Pair> = args
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(2)
        .filter_map(|p| Some((*p.first()?, *p.get(1)?)))
        .collect();
    // Pairs grouped by unit, in first-seen order.
    let mut by_unit: Vec<(Unit, Vec<Pair>)> = Vec::new();
    for &(key, value) in &pairs {
        let unit = unit_of(key);
        match by_unit.iter_mut().find(|(u, _)| *u == unit) {
            Some((_, group)) => group.push((key, value)),
            None => by_unit.push((unit, vec![(key, value)])),
        }
    }
    for (unit, group) in &by_unit {
        let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
        exists.extend(group.iter().map(|(k, _)| *k));
        match call_one(worker, lease, *unit, &exists).await? {
            Frame::Integer(0) => {}
            Frame::Integer(_) => return Ok((Bytes::from_static(b":0\r\n"), Vec::new())),
            Frame::Error(e) => return Err(error(&String::from_utf8_lossy(&e))),
            _ => return Err(error("ERR slotgate: unexpected EXISTS reply from a master")),
        }
    }
    for (unit, group) in &by_unit {
        let mut mset: Vec<&[u8]> = vec![b"MSET"];
        for (k, v) in group {
            mset.push(k);
            mset.push(v);
        }
        if let Frame::Error(e) = call_one(worker, lease, *unit, &mset).await? {
            return Err(error(&format!(
                "ERR slotgate: MSETNX set some keys but not all: {}",
                String::from_utf8_lossy(&e)
            )));
        }
    }
    let units = by_unit.into_iter().map(|(u, _)| u).collect();
    Ok((Bytes::from_static(b":1\r\n"), units))
}

/// First pause between two rounds of a blocking pop across slots; doubled up to [`POLL_MAX`].
const POLL_FIRST: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest pause between two rounds of a blocking pop across slots.
const POLL_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// How one key is tried: the non-blocking command for it, and whether its reply is the
/// blocking command's reply as it is (LMPOP, ZMPOP) or must be prefixed with the key (LPOP,
/// RPOP: `[key, value]`; ZPOPMIN, ZPOPMAX: `[key, member, score]`).
fn try_one<'a>(args: &[&'a [u8]], key: &'a [u8]) -> Option<(Vec<&'a [u8]>, bool)> {
    let name = args.first()?.to_ascii_lowercase();
    Some(match name.as_slice() {
        b"blpop" => (vec![&b"LPOP"[..], key], true),
        b"brpop" => (vec![&b"RPOP"[..], key], true),
        b"bzpopmin" => (vec![&b"ZPOPMIN"[..], key], true),
        b"bzpopmax" => (vec![&b"ZPOPMAX"[..], key], true),
        // BLMPOP timeout numkeys key… LEFT|RIGHT [COUNT n] → LMPOP 1 key LEFT|RIGHT [COUNT n]
        b"blmpop" | b"bzmpop" | b"lmpop" | b"zmpop" => {
            let at = if name.first() == Some(&b'b') { 2 } else { 1 };
            let numkeys: usize = std::str::from_utf8(args.get(at)?).ok()?.parse().ok()?;
            let rest = args.get(at + 1 + numkeys..)?;
            let word: &[u8] = if name.ends_with(b"lmpop") {
                b"LMPOP"
            } else {
                b"ZMPOP"
            };
            let mut one = vec![word, b"1", key];
            one.extend_from_slice(rest);
            (one, false)
        }
        _ => return None,
    })
}

/// A pop's keys and its timeout argument.
type PopKeys<'a> = (Vec<&'a [u8]>, Option<&'a [u8]>);

/// The keys of a (blocking) pop, and its timeout argument (`None`: LMPOP, ZMPOP, which try
/// once).
fn pop_keys<'a>(args: &[&'a [u8]]) -> Option<PopKeys<'a>> {
    let name = args.first()?.to_ascii_lowercase();
    let count =
        |i: usize| -> Option<usize> { std::str::from_utf8(args.get(i)?).ok()?.parse().ok() };
    match name.as_slice() {
        b"blmpop" | b"bzmpop" => {
            let numkeys = count(2)?;
            Some((args.get(3..3 + numkeys)?.to_vec(), Some(args.get(1)?)))
        }
        b"lmpop" | b"zmpop" => {
            let numkeys = count(1)?;
            Some((args.get(2..2 + numkeys)?.to_vec(), None))
        }
        _ => {
            let (timeout, keys) = args.get(1..)?.split_last()?;
            Some((keys.to_vec(), Some(timeout)))
        }
    }
}

/// A (blocking) pop over keys of several slots: each key tried in order, round after round
/// until one has data or the timeout passes (LMPOP, ZMPOP: one round).
async fn blocking_pop(
    worker: &WorkerContext,
    lease: Lease,
    args: &[&[u8]],
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<(Bytes, Vec<Unit>), Bytes> {
    let Some((keys, timeout)) = pop_keys(args) else {
        return Err(error("ERR syntax error"));
    };
    let deadline = match timeout {
        Some(t) => Some(deadline_of(Some(t))?),
        None => None,
    };
    let mut pause = POLL_FIRST;
    loop {
        for &key in &keys {
            let Some((one, prefixed)) = try_one(args, key) else {
                return Err(error("ERR syntax error"));
            };
            let mut out = BytesMut::new();
            command(&mut out, &one);
            let unit = unit_of(key);
            let mut replies = call(worker, lease, unit, &out, 1).await?;
            let Some(reply) = replies.pop() else { continue };
            if reply.is_error() {
                return Err(reply.raw().clone());
            }
            let found = match frame(&reply)? {
                Frame::Null | Frame::Nil | Frame::NullArray => None,
                Frame::Array(items) if items.is_empty() => None,
                Frame::Array(items) if prefixed => Some(Frame::Array(
                    std::iter::once(Frame::Bulk(Bytes::copy_from_slice(key)))
                        .chain(items)
                        .collect(),
                )),
                value @ Frame::Bulk(_) if prefixed => Some(Frame::Array(vec![
                    Frame::Bulk(Bytes::copy_from_slice(key)),
                    value,
                ])),
                other if !prefixed => Some(other),
                _ => None,
            };
            if let Some(found) = found {
                let mut out = BytesMut::new();
                found.encode(&mut out);
                return Ok((out.freeze(), vec![unit]));
            }
        }
        match deadline {
            Some(deadline) if next_round(deadline, &mut pause).await => {}
            _ => {
                let nil: &'static [u8] = if lease.resp3 { b"_\r\n" } else { b"*-1\r\n" };
                return Ok((Bytes::from_static(nil), Vec::new()));
            }
        }
    }
}

/// The values of `lookups` (`GET key`, or `HGET key field`), fetched with one call per
/// node; `None` for a missing key or field, or a key of another type (Redis' rule for SORT's
/// patterns).
async fn fetch_values(
    worker: &WorkerContext,
    lease: Lease,
    space: &KeySpace,
    lookups: &[(Vec<u8>, Option<Vec<u8>>)],
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<Vec<Option<Bytes>>, Bytes> {
    let mut values: Vec<Option<Bytes>> = vec![None; lookups.len()];
    // Pattern keys are client names: with co-location rules or emulated databases in cluster
    // mode, stored tagged and prefixed.
    let tags = worker.settings().key_tags.as_deref();
    let stored: Vec<(Bytes, Option<&[u8]>)> = lookups
        .iter()
        .map(|(key, field)| {
            let name = tags
                .and_then(|t| t.stored_key(space, key))
                .unwrap_or_else(|| Bytes::copy_from_slice(key));
            (name, field.as_deref())
        })
        .collect();
    let mut by_unit: Vec<(Unit, Vec<usize>)> = Vec::new();
    for (i, (key, _)) in stored.iter().enumerate() {
        let unit = unit_of(key);
        match by_unit.iter_mut().find(|(u, _)| *u == unit) {
            Some((_, at)) => at.push(i),
            None => by_unit.push((unit, vec![i])),
        }
    }
    for (unit, at) in by_unit {
        let mut out = BytesMut::new();
        for &i in &at {
            let Some((key, field)) = stored.get(i) else {
                continue;
            };
            match field {
                Some(field) => command(&mut out, &[b"HGET", key, field]),
                None => command(&mut out, &[b"GET", key]),
            }
        }
        let replies = call(worker, lease.resp2(), unit, &out, at.len()).await?;
        for (&i, reply) in at.iter().zip(&replies) {
            if let (Ok(Frame::Bulk(value)), Some(slot)) = (frame(reply), values.get_mut(i)) {
                *slot = Some(value);
            }
        }
    }
    Ok(values)
}

/// The elements of the list, set or sorted set at `key` (empty when it does not exist).
async fn sort_elements(
    worker: &WorkerContext,
    lease: Lease,
    key: &[u8],
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<Vec<Vec<u8>>, Bytes> {
    let unit = unit_of(key);
    let read: Vec<&[u8]> = match call_one(worker, lease, unit, &[b"TYPE", key]).await? {
        Frame::Simple(t) if t.as_ref() == b"none" => return Ok(Vec::new()),
        Frame::Simple(t) if t.as_ref() == b"list" => vec![b"LRANGE", key, b"0", b"-1"],
        Frame::Simple(t) if t.as_ref() == b"set" => vec![b"SMEMBERS", key],
        Frame::Simple(t) if t.as_ref() == b"zset" => vec![b"ZRANGE", key, b"0", b"-1"],
        _ => return Err(error(WRONGTYPE)),
    };
    match call_one(worker, lease, unit, &read).await? {
        Frame::Array(items) | Frame::Set(items) => Ok(items
            .into_iter()
            .filter_map(|f| f.as_bytes().map(|b| b.to_vec()))
            .collect()),
        Frame::Error(e) => Err(error(&String::from_utf8_lossy(&e))),
        _ => Err(error("ERR slotgate: unexpected reply from a master")),
    }
}

/// SORT / SORT_RO with BY or GET patterns: the elements, the BY values and the GET values
/// fetched from wherever their keys live, sorted here; STORE writes the result as a list.
async fn sort_patterns(
    worker: &WorkerContext,
    lease: Lease,
    space: &KeySpace,
    args: &[&[u8]],
    unit_of: &impl Fn(&[u8]) -> Unit,
) -> Result<(Bytes, Vec<Unit>), Bytes> {
    use crate::command::sort::{self, SortRequest};
    let store_allowed = args
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"sort"));
    let request = SortRequest::parse(args, store_allowed).map_err(|e| error(e.message()))?;
    if request.store.is_some() && !worker.settings().cross_slot_writes {
        return Err(error(
            "ERR slotgate: SORT with BY/GET patterns and STORE writes where the patterns' keys \
             are read; it needs commands.non_atomic_cross_slot_writes",
        ));
    }
    let elements = sort_elements(worker, lease, &request.key, unit_of).await?;
    let weights = match request.by.as_deref() {
        Some(by) if !request.dont_sort() => {
            let lookups: Vec<_> = elements
                .iter()
                .filter_map(|e| sort::pattern_key(by, e))
                .collect();
            fetch_values(worker, lease, space, &lookups, unit_of)
                .await?
                .into_iter()
                .map(|v| v.map(|b| b.to_vec()))
                .collect()
        }
        _ => Vec::new(),
    };
    let order = sort::sort(&request, &elements, &weights).map_err(|e| error(e.message()))?;
    // The answer: each element's GET values (or the element itself without GET).
    let mut answer: Vec<Option<Bytes>> = Vec::new();
    if request.get.is_empty() {
        for &i in &order {
            answer.push(elements.get(i).map(|e| Bytes::copy_from_slice(e)));
        }
    } else {
        let mut lookups = Vec::new();
        let mut slots = Vec::new();
        for &i in &order {
            let element = elements.get(i).map(Vec::as_slice).unwrap_or_default();
            for pattern in &request.get {
                if pattern.as_slice() == b"#" {
                    slots.push(Some(Err(Bytes::copy_from_slice(element))));
                } else if let Some(lookup) = sort::pattern_key(pattern, element) {
                    slots.push(Some(Ok(lookups.len())));
                    lookups.push(lookup);
                } else {
                    slots.push(None);
                }
            }
        }
        let values = fetch_values(worker, lease, space, &lookups, unit_of).await?;
        for slot in slots {
            answer.push(match slot {
                Some(Err(element)) => Some(element),
                Some(Ok(at)) => values.get(at).cloned().flatten(),
                None => None,
            });
        }
    }
    let Some(dest) = request.store.as_deref() else {
        let mut out = BytesMut::new();
        encode::array_header(&mut out, answer.len());
        for value in &answer {
            match value {
                Some(v) => encode::bulk(&mut out, v),
                None if lease.resp3 => out.extend_from_slice(b"_\r\n"),
                None => encode::null_bulk(&mut out),
            }
        }
        return Ok((out.freeze(), Vec::new()));
    };
    let unit = unit_of(dest);
    let mut out = BytesMut::new();
    command(&mut out, &[b"MULTI"]);
    command(&mut out, &[b"DEL", dest]);
    if !answer.is_empty() {
        let mut push: Vec<&[u8]> = vec![b"RPUSH", dest];
        push.extend(answer.iter().map(|v| v.as_deref().unwrap_or_default()));
        command(&mut out, &push);
    }
    command(&mut out, &[b"EXEC"]);
    let count = if answer.is_empty() { 3 } else { 4 };
    let replies = call(worker, lease.resp2(), unit, &out, count).await?;
    if let Some(bad) = replies.iter().find(|r| r.is_error()) {
        return Err(bad.raw().clone());
    }
    Ok((format!(":{}\r\n", answer.len()).into(), vec![unit]))
}

/// The command's name, upper case, for error texts.
fn printable_name(args: &[&[u8]]) -> String {
    args.first()
        .map(|n| String::from_utf8_lossy(n).to_uppercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::Placement;

    fn plan_of(words: &[&str]) -> Option<Plan> {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let spec = crate::command::lookup(&args).unwrap();
        plan(spec, &args, |k| Placement::SLOTS.unit_of(k))
    }

    #[test]
    fn plans_by_command() {
        assert_eq!(
            plan_of(&["SUNIONSTORE", "d", "a", "b"]),
            Some(Plan::Gather { dest: 1 })
        );
        assert_eq!(
            plan_of(&["SORT", "a", "LIMIT", "0", "1", "STORE", "d"]),
            Some(Plan::Gather { dest: 6 })
        );
        assert_eq!(
            plan_of(&["PFMERGE", "d", "a", "b"]),
            Some(Plan::Gather { dest: 1 })
        );
        assert_eq!(plan_of(&["COPY", "a", "d"]), Some(Plan::Gather { dest: 2 }));
        assert_eq!(
            plan_of(&["LMOVE", "a", "d", "right", "LEFT"]),
            Some(Plan::Lmove {
                pop_left: false,
                push_left: true,
                timeout_at: None
            })
        );
        assert_eq!(
            plan_of(&["RENAMENX", "a", "d"]),
            Some(Plan::Rename { nx: true })
        );
        assert_eq!(plan_of(&["MSETNX", "a", "1", "d", "2"]), Some(Plan::Msetnx));
        // One slot: routed as usual. Not a write across slots: not planned.
        assert_eq!(plan_of(&["SUNIONSTORE", "{t}d", "{t}a"]), None);
        assert_eq!(plan_of(&["SUNION", "a", "d"]), None);
    }

    #[test]
    fn temporary_names_share_the_destinations_slot() {
        let unit_of = |k: &[u8]| Placement::SLOTS.unit_of(k);
        for dest in [&b"plain"[..], b"{tag}x", b"a{b"] {
            let names = temp_names(dest, 3, &unit_of).unwrap();
            assert_eq!(names.len(), 3);
            assert!(names.iter().all(|n| unit_of(n) == unit_of(dest)));
        }
        // No tag of its own and a `}` in it: its slot's short tag.
        let names = temp_names(b"a}b", 2, &unit_of).unwrap();
        assert!(names.iter().all(|n| unit_of(n) == unit_of(b"a}b")));
        assert!(names[0].starts_with(b"{") && !names[0].starts_with(b"{a}b"));
    }
}
