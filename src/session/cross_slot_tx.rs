//! Transactions whose commands or watched keys span slots, under
//! `commands.non_atomic_cross_slot_writes` (off: CROSSSLOT at the command that leaves the
//! transaction's slot, as a cluster node answers).
//!
//! EXEC runs one MULTI/EXEC per slot, each part atomic on its node. With watches: the watches
//! of every watched slot but the first are checked first (an empty MULTI/EXEC on the
//! connection that holds them: null if a key changed); then the first watched slot's part runs
//! on its watch connection (its EXEC checks its own watch atomically), then the other parts.
//! A watched key changed before EXEC makes EXEC answer null with nothing run, as in Redis.
//! What is not guaranteed: a key of a watched slot other than the first that changes after its
//! check (a window of a few round trips), and a node that fails between parts; the first case
//! goes unnoticed, the second leaves the earlier parts applied and EXEC answers an error that
//! says which parts ran.
//! Each command's keys must still be in one slot (a command that spans slots is CROSSSLOT
//! inside MULTI); key-less commands (PING, PUBLISH …) run in the first part.

use bytes::{Bytes, BytesMut};

use crate::placement::Unit;
use crate::resp::{encode, parse_frame, Frame, Limits};

use super::dispatch::error;
use super::pinned::{exec_on, on_master, redirect_of, Transaction, Watched, EXEC, MULTI};
use super::Session;

/// One slot's share of a transaction.
struct Part {
    unit: Unit,
    /// Positions in the transaction of its commands.
    positions: Vec<usize>,
    /// The connection holding this slot's watch (`Some(None)`: the watch is void).
    watch: Option<Option<crate::backend::dedicated::DedicatedConn>>,
}

/// Split the commands of `tx` and the `watches` into parts, watched ones first.
fn parts(tx: &Transaction, watches: Vec<Watched>) -> Vec<Part> {
    let mut parts: Vec<Part> = watches
        .into_iter()
        .map(|w| Part {
            unit: w.unit,
            positions: Vec::new(),
            watch: Some(w.conn),
        })
        .collect();
    let first_unit = tx
        .commands()
        .find_map(|(_, unit)| unit)
        .or(parts.first().map(|p| p.unit));
    for (position, (_, unit)) in tx.commands().enumerate() {
        let Some(unit) = unit.or(first_unit) else {
            continue;
        };
        match parts.iter_mut().find(|p| p.unit == unit) {
            Some(part) => part.positions.push(position),
            None => parts.push(Part {
                unit,
                positions: vec![position],
                watch: None,
            }),
        }
    }
    parts
}

/// How one part's EXEC came out.
enum Outcome {
    /// The replies of its commands, in order.
    Ran(Vec<Frame>),
    /// A watched key changed (or the watch was void): nothing ran.
    Null,
    /// The node refused or could not be reached: the error reply.
    Failed(Bytes),
}

impl Session {
    /// WATCH of keys in several slots: one WATCH per slot, on that slot's watch connection.
    pub(super) async fn watch_across(&mut self, args: &[&[u8]]) -> Bytes {
        let table = self.worker.router().table();
        let mut groups: Vec<(Unit, Vec<&[u8]>)> = Vec::new();
        for &key in args.get(1..).unwrap_or_default() {
            let unit = table.placement().unit_of(key);
            match groups.iter_mut().find(|(u, _)| *u == unit) {
                Some((_, keys)) => keys.push(key),
                None => groups.push((unit, vec![key])),
            }
        }
        let mut reply = error("ERR wrong number of arguments for 'watch' command");
        for (unit, keys) in groups {
            let mut request = BytesMut::new();
            encode::array_header(&mut request, keys.len() + 1);
            encode::bulk(&mut request, b"WATCH");
            for key in keys {
                encode::bulk(&mut request, key);
            }
            reply = self.watch(&request.freeze(), unit).await;
            if reply.first() == Some(&b'-') {
                return reply;
            }
        }
        reply
    }

    /// EXEC of a transaction over several slots (see the module doc).
    pub(super) async fn exec_across(&mut self, tx: Transaction, watches: Vec<Watched>) -> Bytes {
        let queued: Vec<&Bytes> = tx.commands().map(|(c, _)| c).collect();
        let mut parts = parts(&tx, watches);
        if !self.check_watches(&mut parts).await {
            self.release_watches(parts);
            return self.null_array();
        }
        let mut replies: Vec<Option<Frame>> = vec![None; queued.len()];
        let mut ran: Vec<Unit> = Vec::new();
        let mut index = 0;
        while index < parts.len() {
            let outcome = self.run_part(&mut parts[index], &queued).await;
            let unit = parts[index].unit;
            index += 1;
            match outcome {
                Outcome::Ran(frames) => {
                    for (position, frame) in parts[index - 1].positions.iter().zip(frames) {
                        if let Some(slot) = replies.get_mut(*position) {
                            *slot = Some(frame);
                        }
                    }
                    ran.push(unit);
                }
                Outcome::Null | Outcome::Failed(_) if ran.is_empty() => {
                    // Nothing ran: let go of the other watches; the answer is Redis' own.
                    self.release_watches(parts.drain(index..));
                    return match outcome {
                        Outcome::Failed(reply) => reply,
                        _ => self.null_array(),
                    };
                }
                Outcome::Null | Outcome::Failed(_) => {
                    self.release_watches(parts.drain(index..));
                    self.wrote_to_all(ran.iter().copied());
                    let why = match outcome {
                        Outcome::Failed(reply) => {
                            String::from_utf8_lossy(&reply).trim().to_string()
                        }
                        _ => "a watched key changed".to_string(),
                    };
                    return error(&format!(
                        "ERR slotgate: the transaction ran in part: the parts of slots {} ran, \
                         the part of slot {} did not ({why})",
                        ran.iter()
                            .map(|u| u.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        unit
                    ));
                }
            }
        }
        self.wrote_to_all(ran.iter().copied());
        let mut out = BytesMut::new();
        encode::array_header(&mut out, replies.len());
        for reply in replies {
            match reply {
                Some(frame) => frame.encode(&mut out),
                None => encode::error(&mut out, "ERR slotgate: no reply for this command"),
            }
        }
        out.freeze()
    }

    /// Let go of the watch connections `parts` still hold (their parts will not run).
    fn release_watches(&self, parts: impl IntoIterator<Item = Part>) {
        for part in parts {
            if let Some(Some(conn)) = part.watch {
                self.release(Some(Watched {
                    conn: Some(conn),
                    unit: part.unit,
                }));
            }
        }
    }

    /// Check the watches of every part but the first (whose own EXEC checks its watch) with
    /// an empty MULTI/EXEC: whether none of their keys changed. A checked part then runs
    /// unwatched. `false` (something changed, or a watch is void): nothing may run.
    async fn check_watches(&self, parts: &mut [Part]) -> bool {
        let timeout = self.worker.settings().request_timeout;
        let check = [MULTI, EXEC].concat();
        for part in parts.iter_mut().skip(1) {
            match part.watch.take() {
                None => {}
                Some(None) => return false,
                Some(Some(mut conn)) => {
                    let replies = exec_on(&mut conn, &check, 2, timeout).await;
                    let clean = match &replies {
                        Ok(replies) => replies.last().is_some_and(|r| {
                            matches!(
                                parse_frame(r.raw(), &Limits::default()),
                                Ok(Frame::Array(_))
                            )
                        }),
                        Err(_) => false,
                    };
                    if replies.is_ok() {
                        self.worker.router().give_back(conn);
                    }
                    if !clean {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// One part: MULTI, its commands, EXEC on its node (on its watch connection, if any).
    async fn run_part(&self, part: &mut Part, queued: &[&Bytes]) -> Outcome {
        let mut payload = BytesMut::from(MULTI);
        for &position in &part.positions {
            if let Some(command) = queued.get(position) {
                payload.extend_from_slice(command);
            }
        }
        payload.extend_from_slice(EXEC);
        let count = part.positions.len() + 2;
        let timeout = self.worker.settings().request_timeout;
        let replies = match part.watch.take() {
            Some(None) => return Outcome::Null,
            Some(Some(mut conn)) => match exec_on(&mut conn, &payload, count, timeout).await {
                Ok(replies) => {
                    self.worker.router().give_back(conn);
                    if replies.iter().any(|r| redirect_of(r).is_some()) {
                        // The watched slot moved: the watch is void, like a changed key.
                        return Outcome::Null;
                    }
                    replies
                }
                Err(e) => return Outcome::Failed(e.to_reply()),
            },
            None => {
                let unit = Some(part.unit);
                match on_master(
                    &self.worker,
                    unit,
                    &payload,
                    count,
                    Some(timeout),
                    self.lease(),
                )
                .await
                {
                    Ok((conn, replies)) => {
                        self.worker.router().give_back(conn);
                        replies
                    }
                    Err(reply) => return Outcome::Failed(reply),
                }
            }
        };
        let Some(exec) = replies.last() else {
            return Outcome::Failed(error("ERR slotgate: no EXEC reply"));
        };
        match parse_frame(exec.raw(), &Limits::default()) {
            Ok(Frame::Array(frames)) => Outcome::Ran(frames),
            Ok(Frame::Null | Frame::Nil | Frame::NullArray) => Outcome::Null,
            _ => Outcome::Failed(exec.raw().clone()),
        }
    }
}
