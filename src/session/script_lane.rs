//! Scripts (EVAL, EVALSHA, FCALL and their `_RO` forms) travel on a lane of their own.
//!
//! A node running a script reads nothing for `busy-reply-threshold`, then answers BUSY on
//! every connection but the script's, which it reads only once the script ends. On the
//! connection every client of the worker shares, a runaway script would hold every request
//! queued behind it until the request timeout; on a connection of its own it holds only its
//! own client's, as one Redis does, and the others get Redis' BUSY.
//!
//! ```text
//!  client on the shared lane ── script, nothing owed ──────────► scripts lane (at once)
//!                            └─ script, replies owed ─► waits for them (deferred), then ─┘
//!  client on the scripts lane: everything it sends (to any node) goes there too,
//!                              until it is owed nothing: then back to the shared lane
//! ```
//!
//! Ordering: a client's commands to one node keep their order because they share one
//! connection. A script must not overtake the client's earlier requests on the shared lane,
//! so it waits until they are answered (the only wait, and only when the client switches);
//! requests after it follow it on the scripts lane; the client goes back once nothing is in
//! flight. Clients that never send a script never leave the shared lane, and their requests
//! cost one copied field.
//!
//! What queues behind a runaway script on the scripts lane (its own client's later requests,
//! other clients' scripts on that connection) waits for it, as on one Redis connection; if the
//! script outlives `backend.request_timeout_ms` the connection is given up (or, with
//! `backend.kill_slow_scripts`, the script killed first): see `backend::conn`.

use tokio::time::Instant;

use crate::backend::conn::Lane;
use crate::placement::Unit;
use crate::resp::Request;

use super::dispatch::error;
use super::pinned::Exclusive;
use super::Session;

impl Session {
    /// Serve a script whose keys are in `unit` (`None`: it has none). A client on the shared
    /// lane with replies owed waits for them first ([`Exclusive::Script`]).
    pub(super) fn script(
        &mut self,
        request: Request,
        unit: Option<Unit>,
        readonly: bool,
        now: Instant,
    ) {
        if self.lane == Lane::Shared && self.queue.outstanding() > 0 {
            self.deferred = Some(Box::new((request, Exclusive::Script { unit, readonly })));
            return;
        }
        self.send_script(request, unit, readonly, now);
    }

    /// Send a script on the scripts lane, moving the client there: by its keys' `unit`, or
    /// without keys to `commands.keyless_scripts` or a master picked in turn.
    pub(super) fn send_script(
        &mut self,
        request: Request,
        unit: Option<Unit>,
        readonly: bool,
        now: Instant,
    ) {
        self.lane = Lane::Scripts;
        let reply = self.queue.reserve();
        let raw = request.into_raw();
        match (unit, self.worker.settings().keyless_scripts.clone()) {
            (Some(unit), _) => {
                self.forward(self.outbound(raw, reply, unit, readonly, now, None), now);
            }
            (None, Some(node)) => self.forward(
                self.outbound(raw, reply, Unit::ZERO, readonly, now, Some(node)),
                now,
            ),
            (None, None) => {
                // A master picked in turn, so key-less scripts spread over them all.
                let masters = self.worker.router().table().serving_masters();
                let pick = self.worker.stats().next_pick() as usize;
                match masters.get(pick % masters.len().max(1)).cloned() {
                    Some((master, unit)) => self.forward(
                        self.outbound(raw, reply, unit, readonly, now, Some(master)),
                        now,
                    ),
                    None => reply.fill(error("CLUSTERDOWN no master serves any slot")),
                }
            }
        }
    }

    /// Back to the shared lane once nothing is owed (so nothing of the client's is in flight
    /// on either lane). One predictable check per read.
    #[inline]
    pub(super) fn settle_lane(&mut self) {
        if self.lane == Lane::Scripts && self.queue.outstanding() == 0 {
            self.lane = Lane::Shared;
        }
    }
}
