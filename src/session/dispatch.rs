//! Deciding how each request is served: answered locally, forwarded by its key's slot, or
//! refused with an error that says why.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::backend::conn::Outbound;
use crate::command::split::{self, MergeRule};
use crate::command::{self, CommandSpec};
use crate::placement::Placement;
use crate::resp::Request;
use crate::slot::Slot;

use super::local::{self, Local};
use super::{Merge, ReplyTarget, Session};

/// How a request is served.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Answered by the proxy itself.
    Local(Local),
    /// Forwarded, unchanged, to the master of this slot; `readonly` if safe to resend.
    Slot { slot: Slot, readonly: bool },
    /// A key-less command about the whole keyspace: asked of every master, replies merged.
    FanOut { rule: MergeRule, readonly: bool },
    /// SCAN: one master at a time, with a cursor that names the master.
    Scan,
    /// Keys in several slots, of a command that may be split: one sub-request per slot.
    Split {
        rule: MergeRule,
        per_key: usize,
        keys: SmallVec<[usize; 8]>,
        readonly: bool,
    },
    /// Refused; the reply says why.
    Refused(Bytes),
}

impl Session {
    /// Serve one request: its reply takes the next place in the session's reply queue.
    pub(super) fn dispatch(&mut self, request: Request, now: Instant) {
        let table = self.worker.topology.table();
        let placement = table.placement();
        match route(request.args(), placement) {
            Route::Slot { slot, readonly } => {
                let reply = self.queue.reserve();
                self.forward(request.raw().clone(), reply, slot, readonly, now, None);
            }
            Route::Split {
                rule,
                per_key,
                keys,
                readonly,
            } => {
                let split = split::split(request.args(), &keys, rule, per_key, placement);
                let merge = Merge::new(split, self.queue.reserve(), self.worker.limits);
                for (index, part) in merge.split().parts.iter().enumerate() {
                    let reply = ReplyTarget::part(&merge, index);
                    let raw = part.raw.clone();
                    self.forward(raw, reply, part.slot, readonly, now, None);
                }
            }
            Route::FanOut { rule, readonly } => {
                let rule = match rule {
                    // Start from a different master each time so every master's keys come up.
                    MergeRule::AnyValue { .. } => MergeRule::AnyValue {
                        start: self.worker.stats().next_pick() as usize,
                    },
                    other => other,
                };
                let (masters, slots): (Vec<_>, Vec<Slot>) = self
                    .worker
                    .topology
                    .table()
                    .serving_masters()
                    .into_iter()
                    .unzip();
                if masters.is_empty() {
                    self.queue
                        .push_ready(error("CLUSTERDOWN no master serves any slot"));
                    return;
                }
                let split = split::fan_out(&request, &slots, rule);
                let merge = Merge::new(split, self.queue.reserve(), self.worker.limits);
                for (index, (slot, master)) in slots.into_iter().zip(masters).enumerate() {
                    let reply = ReplyTarget::part(&merge, index);
                    let raw = request.raw().clone();
                    self.forward(raw, reply, slot, readonly, now, Some(master));
                }
            }
            Route::Scan => self.scan(&request, now),
            Route::Local(cmd) => {
                let reply = local::run(cmd, request.args(), self);
                self.queue.push_ready(reply);
            }
            Route::Refused(reply) => self.queue.push_ready(reply),
        }
    }

    /// SCAN across all masters, one after the other (in address order), with one cursor.
    ///
    /// Race window: a key that moves (reshard) from a master not yet scanned to one already
    /// scanned during the scan is not returned; a key that stays on its master for the whole scan
    /// is (Redis' own SCAN guarantee, per master). If masters are added or removed mid-scan, the
    /// cursor's master index may point elsewhere: restart the scan after a topology change.
    fn scan(&self, request: &Request, now: Instant) {
        let args = request.args();
        let Some((node, node_cursor)) = args.get(1).and_then(|c| split::decode_scan_cursor(c))
        else {
            return self.queue.push_ready(error("ERR invalid cursor"));
        };
        let masters = self.worker.topology.table().serving_masters();
        let Some((master, slot)) = masters.get(node).cloned() else {
            // Past the last master (or masters went away): the scan is over.
            return self
                .queue
                .push_ready(Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n"));
        };
        let node_cursor = node_cursor.to_string();
        let mut out = bytes::BytesMut::with_capacity(request.raw().len() + 16);
        crate::resp::encode::array_header(&mut out, args.len());
        for (i, arg) in args.iter().enumerate() {
            let arg = if i == 1 {
                node_cursor.as_bytes()
            } else {
                &arg[..]
            };
            crate::resp::encode::bulk(&mut out, arg);
        }
        let split = split::Split {
            rule: MergeRule::Scan {
                node,
                nodes: masters.len(),
            },
            parts: vec![split::Part {
                slot,
                raw: out.freeze(),
                positions: Vec::new(),
            }],
            keys: 0,
        };
        let merge = Merge::new(split, self.queue.reserve(), self.worker.limits);
        let raw = merge.split().parts[0].raw.clone();
        self.forward(
            raw,
            ReplyTarget::part(&merge, 0),
            slot,
            true,
            now,
            Some(master),
        );
    }

    /// Send `request` to the master of `slot` (or to `node`); its reply goes to `reply`.
    fn forward(
        &self,
        request: Bytes,
        reply: ReplyTarget,
        slot: Slot,
        readonly: bool,
        now: Instant,
        node: Option<Arc<str>>,
    ) {
        let out = Outbound {
            request,
            reply,
            slot,
            node,
            client_id: self.info.id,
            deadline: now + self.worker.request_timeout,
            redirects: 0,
            retries: 0,
            readonly,
            asking: false,
        };
        self.worker.route(out, now);
    }
}

/// Classify a request by its command and keys, placed by `placement`. Pure: no I/O.
fn route(args: &[Bytes], placement: &Placement) -> Route {
    let Some(name) = args.first() else {
        return Route::Refused(error("ERR empty command"));
    };
    let Some(spec) = command::lookup(args) else {
        return Route::Refused(unknown_command(name, &args[1..]));
    };
    if !spec.arity_ok(args.len()) {
        return Route::Refused(error(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        )));
    }
    if let Some(cmd) = Local::of(spec) {
        return Route::Local(cmd);
    }
    if let Some(reason) = not_served(spec, args) {
        return Route::Refused(error(&format!(
            "ERR slotgate: '{}' {reason}",
            printable(name)
        )));
    }
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    if let Err(e) = spec.keys(args, &mut keys) {
        return Route::Refused(error(&format!("ERR {e}")));
    }
    let mut slots = keys
        .iter()
        .filter_map(|&i| args.get(i))
        .map(|k| placement.unit_of(k));
    let Some(slot) = slots.next() else {
        if spec.name == "scan" {
            return Route::Scan;
        }
        if let Some(rule) = split::fan_out_rule(spec.name) {
            return Route::FanOut {
                rule,
                readonly: spec.is_readonly(),
            };
        }
        return Route::Refused(error(&format!(
            "ERR slotgate: '{}' has no key to route by; key-less commands are not served by this proxy",
            printable(name)
        )));
    };
    if slots.any(|s| s != slot) {
        return match split::rule_of(spec.name) {
            // MSET with a key and no value: Redis' own check, which a split must not skip.
            Some((_, per_key)) if (args.len() - 1) % per_key != 0 => Route::Refused(error(
                &format!("ERR wrong number of arguments for '{}' command", spec.name),
            )),
            Some((rule, per_key)) => Route::Split {
                rule,
                per_key,
                keys,
                readonly: spec.is_readonly(),
            },
            None => Route::Refused(error(
                "CROSSSLOT Keys in request don't hash to the same slot",
            )),
        };
    }
    Route::Slot {
        slot,
        readonly: spec.is_readonly(),
    }
}

/// How the proxy serves a command, for `docs/COMMANDS.md`: a category (`local`, `routed`,
/// `split`, `fan-out`, `refused`) and a short reason. Derived from the same rules as [`route`],
/// so the document cannot drift from the behaviour.
pub fn service(spec: &CommandSpec) -> (&'static str, String) {
    if Local::of(spec).is_some() {
        return ("local", "answered by the proxy itself".into());
    }
    if spec.name == "xread" || spec.name == "xreadgroup" {
        return (
            "routed",
            "by its stream keys (all in one slot); with BLOCK refused: blocking is not served yet"
                .into(),
        );
    }
    if let Some(reason) = not_served(spec, &[]) {
        return (
            "refused",
            reason.trim_start_matches("is not supported: ").into(),
        );
    }
    if spec.has_keys() {
        return match split::rule_of(spec.name) {
            Some((rule, _)) => (
                "split",
                format!(
                    "one sub-request per slot, replies merged ({})",
                    rule_text(rule)
                ),
            ),
            None => (
                "routed",
                "by its keys; keys in different slots get CROSSSLOT, as on a cluster node".into(),
            ),
        };
    }
    match split::fan_out_rule(spec.name) {
        Some(rule) => (
            "fan-out",
            format!("every master, replies merged ({})", rule_text(rule)),
        ),
        None => ("refused", "key-less: no key to route by".into()),
    }
}

fn rule_text(rule: MergeRule) -> &'static str {
    match rule {
        MergeRule::Values => "values in key order",
        MergeRule::AllOk => "OK when all are OK; not atomic across slots",
        MergeRule::Sum => "sum",
        MergeRule::Concat => "concatenated",
        MergeRule::Same => "the same answer from all",
        MergeRule::AllOf => "true only where true on every master",
        MergeRule::Scan { .. } => "cursor names the master",
        MergeRule::AnyValue { .. } => "a key from a master picked at random",
    }
}

/// Commands that have keys but need a connection of their own (transactions, blocking,
/// pub/sub), which this version does not provide: refused rather than allowed to stall or
/// corrupt a shared backend connection.
fn not_served(spec: &CommandSpec, args: &[Bytes]) -> Option<&'static str> {
    match spec.name {
        "multi" | "exec" | "discard" | "watch" | "unwatch" => Some(
            "is not supported: transactions (MULTI/EXEC/WATCH) are not served by this proxy yet",
        ),
        // XREAD and XREADGROUP only block with a BLOCK option.
        "xread" | "xreadgroup" => args
            .iter()
            .any(|a| a.eq_ignore_ascii_case(b"block"))
            .then_some(
                "with BLOCK is not supported: blocking commands are not served by this proxy yet",
            ),
        _ if spec.is_blocking() => {
            Some("is not supported: blocking commands are not served by this proxy yet")
        }
        _ if spec.is_pubsub() => Some("is not supported: pub/sub is not served by this proxy yet"),
        _ => None,
    }
}

/// An error reply `-{text}\r\n`.
pub(super) fn error(text: &str) -> Bytes {
    let mut out = String::with_capacity(text.len() + 3);
    out.push('-');
    out.extend(
        text.chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
    out.push_str("\r\n");
    Bytes::from(out)
}

/// Redis' own wording: `ERR unknown command 'x', with args beginning with: 'a' 'b' `.
fn unknown_command(name: &[u8], rest: &[Bytes]) -> Bytes {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        printable(name)
    );
    for arg in rest.iter().take(16) {
        text.push('\'');
        text.push_str(&printable(arg));
        text.push_str("' ");
    }
    error(&text)
}

/// A client-supplied name made safe to echo in an error line (bounded, no control bytes).
pub(super) fn printable(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(128)];
    String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::test_args as args;

    /// `route` with cluster hash slots, the placement these tests are written for.
    fn route(args: &[Bytes]) -> Route {
        super::route(args, &Placement::Slots)
    }

    fn refused(words: &[&str]) -> String {
        match route(&args(words)) {
            Route::Refused(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("{words:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn single_key_commands_route_by_key() {
        assert_eq!(
            route(&args(&["GET", "foo"])),
            Route::Slot {
                slot: Slot::of(b"foo"),
                readonly: true
            }
        );
        assert_eq!(
            route(&args(&["hset", "h", "f", "v"])),
            Route::Slot {
                slot: Slot::of(b"h"),
                readonly: false
            }
        );
    }

    #[test]
    fn same_slot_multi_key_is_one_route() {
        assert_eq!(
            route(&args(&["MGET", "{u}a", "{u}b", "{u}c"])),
            Route::Slot {
                slot: Slot::of(b"u"),
                readonly: true
            }
        );
        assert_eq!(
            route(&args(&["EVAL", "return 1", "2", "{t}x", "{t}y", "arg"])),
            Route::Slot {
                slot: Slot::of(b"t"),
                readonly: false
            }
        );
    }

    #[test]
    fn cross_slot_is_split_when_meaningful_else_refused_like_redis() {
        assert!(matches!(
            route(&args(&["MGET", "a", "b"])),
            Route::Split {
                rule: MergeRule::Values,
                readonly: true,
                ..
            }
        ));
        assert!(matches!(
            route(&args(&["MSET", "a", "1", "b", "2"])),
            Route::Split {
                rule: MergeRule::AllOk,
                per_key: 2,
                readonly: false,
                ..
            }
        ));
        assert_eq!(
            refused(&["MSET", "a", "1", "b"]),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert!(refused(&["MSETNX", "a", "1", "b", "2"]).starts_with("-CROSSSLOT"));
        assert!(refused(&["RENAME", "a", "b"]).starts_with("-CROSSSLOT"));
    }

    #[test]
    fn unknown_and_bad_arity() {
        assert_eq!(
            refused(&["FOO", "a", "b"]),
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
        );
        assert_eq!(
            refused(&["GET"]),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
    }

    #[test]
    fn keyless_and_pinned_commands_are_refused_by_name() {
        assert!(refused(&["LASTSAVE"]).contains("'LASTSAVE' has no key"));
        assert!(matches!(
            route(&args(&["KEYS", "*"])),
            Route::FanOut {
                rule: MergeRule::Concat,
                ..
            }
        ));
        assert!(refused(&["BLPOP", "l", "0"]).contains("blocking"));
        assert!(refused(&["WATCH", "k"]).contains("transactions"));
        assert!(refused(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]).contains("BLOCK"));
        assert_eq!(
            route(&args(&["XREAD", "COUNT", "1", "STREAMS", "s", "0"])),
            Route::Slot {
                slot: Slot::of(b"s"),
                readonly: true
            }
        );
    }

    #[test]
    fn local_commands_are_local() {
        assert!(matches!(route(&args(&["ping"])), Route::Local(_)));
        assert!(matches!(
            route(&args(&["CLIENT", "SETNAME", "x"])),
            Route::Local(_)
        ));
    }
}
