//! Deciding how each request is served: answered locally, forwarded by its key's slot, or
//! refused with an error that says why.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::backend::conn::Outbound;
use crate::command::split::{self, MergeRule, SubRequests};
use crate::command::{self, config_get, CommandSpec, Flags};
use crate::placement::Placement;
use crate::placement::Unit;
use crate::resp::Request;

use super::context::Databases;
use super::cross_slot;
use super::databases::{self, Emulated};
use super::key_tags;
use super::local::{self, Local};
use super::pinned::{Exclusive, Pinned};
use super::pubsub::Sub;
use super::{Merge, ReplyTarget, Session};

/// How a request is served.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Answered by the proxy itself.
    Local(Local),
    /// Forwarded, unchanged, to the master of this routing unit; `readonly` if safe to resend.
    Unit { unit: Unit, readonly: bool },
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
    /// Transactions, blocking commands, WAIT: session state and dedicated connections.
    Pinned(Pinned),
    /// SUBSCRIBE and the other subscription commands.
    Sub(Sub),
    /// EVAL and friends: by their keys' slot, or any master (or the configured node) when
    /// they have none; `remember` keeps the body for NOSCRIPT recovery.
    Script {
        unit: Option<Unit>,
        readonly: bool,
        remember: bool,
    },
    /// Refused; the reply says why.
    Refused(Bytes),
}

/// Redis' answer to a command before authentication.
const NOAUTH: &str = "NOAUTH Authentication required.";

impl Session {
    /// Serve one request: its reply takes the next place in the session's reply queue.
    pub(super) fn dispatch(&mut self, request: Request, now: Instant) {
        let mut request = match &self.worker.command_policy() {
            None => request,
            Some(policy) => match policy.check(request) {
                Ok(request) => request,
                Err(text) => {
                    // Denied or renamed away: counted as Redis would see it, unknown. Before
                    // AUTH the client learns nothing of the policy: NOAUTH, as for the rest.
                    self.count(command::stat_index(None));
                    if !self.authenticated {
                        return self.queue.push_ready(error(NOAUTH));
                    }
                    return self.queue.push_ready(error(&text));
                }
            },
        };
        // Borrowed slices of the request's bytes, built once (no reference count per argument).
        let mut args = request.args();
        let counted = self.lookup.lookup_counted(&args[..]);
        let mut spec = counted.map(|(spec, _)| spec);
        self.last_spec = spec;
        self.count(counted.map_or(command::stat_index(None), |(_, index)| index));
        // MONITOR: one relaxed load while nobody monitors.
        if self.worker.ops().monitors.any() {
            self.feed_monitors(spec, &args[..]);
        }
        // Co-location rules and emulated databases in cluster mode: keys are stored under
        // their group's tag and their database's prefix.
        let mut key_names = None;
        let mut database_route = None;
        if let (Some(tags), Some(sent_as)) = (self.worker.settings().key_tags.as_deref(), spec) {
            let settings = self.worker.settings();
            let emulated = match (self.space.is_shared(), settings.databases) {
                (true, Databases::Emulated(count)) => databases::emulated(
                    sent_as,
                    &args[..],
                    &self.space,
                    count,
                    tags,
                    settings.allow_flush,
                ),
                _ => None,
            };
            match emulated {
                Some(Emulated::Instead(sent)) => {
                    drop(args);
                    request = sent;
                    args = request.args();
                    // MOVE runs as a script: permissions and routing are the script's.
                    spec = command::lookup(&args[..]);
                    self.last_spec = spec;
                }
                Some(Emulated::Route(route)) => database_route = Some(route),
                None => {
                    key_names = key_tags::expect(sent_as, &args[..], &self.space);
                    if let Some(tagged) = key_tags::tagged(tags, &self.space, sent_as, &args[..]) {
                        drop(args);
                        request = tagged;
                        args = request.args();
                    }
                }
            }
        }
        // Loaded once: routing by key and sending use the same table.
        let table = self.worker.router().table();
        let mut route = match database_route {
            Some(route) => route,
            None => route_spec(&args[..], spec, table.placement()),
        };
        if let (Route::Refused(_), Some(spec), false) =
            (&route, spec, self.worker.settings().allow_admin.is_empty())
        {
            if admin_allowed(&self.worker.settings().allow_admin, spec) {
                // Explicitly allowed: every master runs it and they must all answer alike;
                // a change of a node's settings reaches the replicas too.
                let rule = if split::reaches_every_node(spec.name) {
                    MergeRule::EveryNodeOk
                } else {
                    MergeRule::Same
                };
                route = Route::FanOut {
                    rule,
                    readonly: false,
                };
            }
        }
        if let (Some(spec), None) = (spec, &self.tx) {
            // SORT with BY / GET patterns: their keys may live anywhere; computed here. The
            // flag test keeps the name comparison off the path of GET, SET and the like.
            if spec.flags.contains(Flags::MOVABLE_KEYS)
                && matches!(spec.name, "sort" | "sort_ro")
                && matches!(route, Route::Unit { .. } | Route::Refused(_))
                && spec.arity_ok(args.len())
                && crate::command::sort::SortRequest::parse(&args[..], spec.name == "sort")
                    .is_ok_and(|r| r.has_patterns())
            {
                route = Route::Pinned(Pinned::Exclusive(Exclusive::CrossSlot(
                    cross_slot::Plan::Sort,
                )));
            }
        }
        if let (Route::Refused(_), Some(spec), true, None) = (
            &route,
            spec,
            self.worker.settings().cross_slot_writes,
            &self.tx,
        ) {
            // Only a command whose keys are in several slots has a plan.
            if spec.arity_ok(args.len()) {
                let placement = table.placement();
                if let Some(plan) = cross_slot::plan(spec, &args[..], |k| placement.unit_of(k)) {
                    route = Route::Pinned(Pinned::Exclusive(Exclusive::CrossSlot(plan)));
                }
            }
        }
        if !self.authenticated || self.user.is_some() {
            if let Some(refusal) = self.refusal(&route, &args[..]) {
                // Inside MULTI a refused command aborts the transaction, as in Redis.
                if let Some(tx) = self.tx.as_mut() {
                    tx.fail();
                }
                return self.queue.push_ready(refusal);
            }
        }
        if self.tx.is_some() {
            drop(args); // ends the borrow of `request`
            return self.in_transaction(request, route);
        }
        if !self.resp3 && self.subscribed() {
            match route {
                Route::Sub(_) | Route::Local(Local::Quit) | Route::Pinned(Pinned::Reset) => {}
                Route::Local(Local::Ping) => {
                    let reply = super::pubsub::subscribed_ping(&args[..]);
                    return self.queue.push_ready(reply);
                }
                _ => {
                    let name = args.first().map(|n| printable(n)).unwrap_or_default();
                    return self.queue.push_ready(error(&format!(
                        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                        name.to_lowercase()
                    )));
                }
            }
        }
        if let Some(expect) = key_names {
            self.queue.expect_key_names(expect);
        }
        match route {
            Route::Unit { unit, readonly } => {
                // Hot keys off: this one branch is all it costs.
                if let (Some(hot), Some(spec)) = (&self.worker.hot(), spec) {
                    if hot.tick() {
                        hot.record(spec, &args[..]);
                    }
                }
                if !readonly {
                    self.wrote_to(unit);
                }
                let reply = self.queue.reserve();
                drop(args);
                let out = self.outbound(request.into_raw(), reply, unit, readonly, now, None);
                self.worker.router().route_in(&table, out, now);
            }
            Route::Split {
                rule,
                per_key,
                keys,
                readonly,
            } => {
                let rule = rule.for_protocol(self.resp3);
                let (split, requests) =
                    split::split(&request, &keys, rule, per_key, table.placement());
                if !readonly {
                    self.wrote_to_all(split.parts.iter().map(|part| part.unit));
                }
                let timed = self.queue.times_requests().then(|| request.raw().clone());
                let merge = Merge::new(
                    split,
                    self.queue.reserve(),
                    self.worker.settings().limits,
                    timed,
                );
                let parts = merge.split().parts.iter().zip(requests);
                let router = self.worker.router();
                for (index, (part, raw)) in parts.enumerate() {
                    let reply = merge.part(index);
                    let out = self.outbound(raw, reply, part.unit, readonly, now, None);
                    // The table the parts were placed by routes them.
                    router.route_in(&table, out, now);
                }
            }
            Route::FanOut { rule, readonly } => {
                let name = args.first().map(|n| n.to_ascii_lowercase());
                let name = name.as_deref().unwrap_or_default();
                if !self.worker.settings().allow_flush
                    && (name == b"flushall" || name == b"flushdb")
                {
                    return self.queue.push_ready(error(&format!(
                        "ERR slotgate: '{}' is disabled by configuration (commands.allow_flush)",
                        printable(name).to_uppercase()
                    )));
                }
                if name == b"script" {
                    match rule {
                        // SCRIPT LOAD: keep the body for NOSCRIPT recovery.
                        MergeRule::Same => {
                            if let Some(body) = args.get(2) {
                                self.worker.router().scripts().remember(body);
                            }
                        }
                        // SCRIPT FLUSH: the client wants scripts gone, NOSCRIPT included.
                        MergeRule::AllOk => self.worker.router().scripts().clear(),
                        _ => {}
                    }
                }
                let slowlog = &self.worker.ops().slowlog;
                let rule = match rule {
                    // Start from a different master each time so every master's keys come up.
                    MergeRule::AnyValue { .. } => MergeRule::AnyValue {
                        start: self.worker.stats().next_pick() as usize,
                    },
                    MergeRule::ConfigGet { .. } => MergeRule::ConfigGet {
                        exact: args[2..].iter().all(|p| config_get::is_exact_name(p)),
                        own: config_get::Own {
                            port: self.info.local.map_or(0, |a| a.port()),
                            slowlog_log_slower_than: slowlog.log_slower_than_us(),
                            slowlog_max_len: slowlog.max_len() as u64,
                        },
                    },
                    other => other,
                };
                let (masters, units) = self.serving_masters();
                if masters.is_empty() {
                    self.queue
                        .push_ready(error("CLUSTERDOWN no master serves any slot"));
                    return;
                }
                if !readonly {
                    self.wrote_to_all(units.iter().copied());
                }
                let every_node = rule == MergeRule::EveryNodeOk;
                let (masters, units) = if every_node {
                    self.with_replicas(masters, units)
                } else {
                    (masters, units)
                };
                let (split, requests) = split::fan_out(&request, &units, rule);
                let timed = self.queue.times_requests().then(|| request.raw().clone());
                let (reply, limits) = (self.queue.reserve(), self.worker.settings().limits);
                let merge = if every_node || rule == MergeRule::NodeText {
                    Merge::naming_nodes(split, reply, limits, timed, masters.clone())
                } else {
                    Merge::new(split, reply, limits, timed)
                };
                self.fan_out(&merge, requests, masters, readonly, true, now);
            }
            Route::Local(Local::Info) if super::info::wants_node_sections(&args[1..]) => {
                let mut text = super::info::render(&args[1..], &self.worker);
                if !text.is_empty() {
                    text.push_str("\r\n");
                }
                let (masters, units) = self.serving_masters();
                if masters.is_empty() {
                    text.push_str("# Keyspace\r\n");
                    return self
                        .queue
                        .push_ready(local::text_reply(text.as_bytes(), self.resp3));
                }
                let sections = super::info::node_sections(&args[1..]);
                let info = Request::from_args(
                    std::iter::once(Bytes::from_static(b"INFO")).chain(
                        sections
                            .into_iter()
                            .map(|s| Bytes::from_static(s.as_bytes())),
                    ),
                );
                let (split, requests) = split::fan_out(&info, &units, MergeRule::Keyspace);
                let target = self.queue.reserve();
                let merge = Merge::with_text_prefix(
                    split,
                    target,
                    self.worker.settings().limits,
                    text,
                    self.resp3,
                );
                // A master that is down is left out at once: INFO does not wait for it.
                self.fan_out(&merge, requests, masters, true, false, now);
            }
            Route::Scan => {
                drop(args);
                self.deferred = Some(Box::new((request, Exclusive::Scan)));
            }
            Route::Local(Local::Select) => match databases::select_route(&args[..], self) {
                Route::Pinned(Pinned::Exclusive(check)) => {
                    drop(args);
                    self.deferred = Some(Box::new((request, check)));
                }
                Route::Refused(reply) => self.queue.push_ready(reply),
                _ => {
                    let reply = local::run(Local::Select, &args[..], self);
                    self.queue.push_answer(reply, request.raw());
                }
            },
            Route::Local(cmd) => {
                let reply = local::run(cmd, &args[..], self);
                self.queue.push_answer(reply, request.raw());
            }
            Route::Script {
                unit,
                readonly,
                remember,
            } => {
                if remember {
                    if let Some(body) = args.get(1) {
                        self.worker.router().scripts().remember(body);
                    }
                }
                if let (false, Some(unit)) = (readonly, unit) {
                    self.wrote_to(unit);
                }
                drop(args);
                self.script(request, unit, readonly, now);
            }
            Route::Pinned(pinned) => {
                drop(args);
                self.pinned(request, pinned);
            }
            Route::Sub(sub) => self.subscription(&args[..], sub),
            Route::Refused(reply) => self.queue.push_ready(reply),
        }
    }

    /// Count a request under command counter `index` ([`command::stat_index`]) and tag its
    /// reply's place with it, so an error reply is counted against it: a relaxed add.
    #[inline]
    fn count(&self, index: usize) {
        self.worker.stats().commands_by().request(index);
        self.queue.set_command(index);
    }

    /// The error for a client that may not run this request: not authenticated yet
    /// (`NOAUTH`), or a user without the permission (`NOPERM`). AUTH, HELLO and QUIT are
    /// always let through (they authenticate or leave).
    fn refusal(&self, route: &Route, args: &[&[u8]]) -> Option<Bytes> {
        if matches!(
            route,
            Route::Local(Local::Auth | Local::Hello | Local::Quit) | Route::Pinned(Pinned::Reset)
        ) {
            return None;
        }
        if !self.authenticated {
            return Some(error(NOAUTH));
        }
        let user = self.user.as_ref()?;
        // The spec `dispatch` found for this request (declared custom commands included).
        let spec = self.last_spec?;
        if !user.may_run(spec) {
            let denied = crate::auth::Denied::Command;
            return Some(error(&denied.message(spec.name)));
        }
        if user.has_key_prefixes() && is_script(spec.name) {
            return Some(error(&crate::auth::Denied::Script.message(spec.name)));
        }
        // SORT's BY / GET patterns name keys only known once the elements are read: a user
        // limited to key prefixes may not use them (Redis denies them to such users too).
        let sort_patterns = Route::Pinned(Pinned::Exclusive(Exclusive::CrossSlot(
            cross_slot::Plan::Sort,
        )));
        if user.has_key_prefixes() && *route == sort_patterns {
            return Some(error(&crate::auth::Denied::Key.message(spec.name)));
        }
        let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
        // The client's own names: co-location tags are the proxy's business.
        let tags = self.worker.settings().key_tags.as_deref();
        if spec.routing_args(args, &mut keys).is_ok()
            && !keys.iter().filter_map(|&i| args.get(i)).all(|k| {
                let name = tags.and_then(|t| t.client_key(&self.space, k));
                user.may_access(name.unwrap_or(k))
            })
        {
            return Some(error(&crate::auth::Denied::Key.message(spec.name)));
        }
        None
    }

    /// Remember `unit` as where the client's last write went (for WAIT).
    pub(super) fn wrote_to(&mut self, unit: Unit) {
        self.last_write = Some(unit);
        if !self.last_write_also.is_empty() {
            self.last_write_also.clear();
        }
    }

    /// Remember a write that went to several slots (split or fan-out), for WAIT.
    pub(super) fn wrote_to_all(&mut self, mut units: impl Iterator<Item = Unit>) {
        self.last_write = units.next();
        self.last_write_also.clear();
        self.last_write_also.extend(units);
    }

    /// `masters` (with the unit each serves) followed by every replica of each, with its
    /// master's unit.
    fn with_replicas(
        &self,
        mut masters: Vec<Arc<str>>,
        mut units: Vec<Unit>,
    ) -> (Vec<Arc<str>>, Vec<Unit>) {
        let table = self.worker.router().table();
        let replicas: Vec<(Arc<str>, Unit)> = masters
            .iter()
            .zip(&units)
            .flat_map(|(master, &unit)| {
                let shard = table.shards().iter().find(|s| s.master == *master);
                shard
                    .into_iter()
                    .flat_map(move |s| s.replicas.iter().map(move |r| (Arc::clone(r), unit)))
            })
            .collect();
        for (replica, unit) in replicas {
            masters.push(replica);
            units.push(unit);
        }
        (masters, units)
    }

    /// Every master that serves slots, in address order, and one slot each serves.
    fn serving_masters(&self) -> (Vec<Arc<str>>, Vec<Unit>) {
        self.worker
            .router()
            .topology()
            .table()
            .serving_masters()
            .into_iter()
            .unzip()
    }

    /// Send each part of `merge` (its bytes in `requests`) to its master; `hold`: held while
    /// a master is down ([`Outbound::hold`]).
    fn fan_out(
        &self,
        merge: &Rc<Merge>,
        requests: SubRequests,
        masters: Vec<Arc<str>>,
        readonly: bool,
        hold: bool,
        now: Instant,
    ) {
        let parts = merge.split().parts.iter().zip(requests).zip(masters);
        for (index, ((part, raw), master)) in parts.enumerate() {
            let reply = merge.part(index);
            let out = self.outbound(raw, reply, part.unit, readonly, now, Some(master));
            self.forward(Outbound { hold, ..out }, now);
        }
    }

    /// Send `out` to the node of its unit through the current table.
    pub(super) fn forward(&self, out: Outbound, now: Instant) {
        self.worker.router().route(out, now);
    }

    /// The backend request for `request`, from this client, received at `now`, on the
    /// client's lane (see `script_lane`).
    pub(super) fn outbound(
        &self,
        request: Bytes,
        reply: ReplyTarget,
        unit: Unit,
        readonly: bool,
        now: Instant,
        node: Option<Arc<str>>,
    ) -> Outbound {
        Outbound {
            request,
            reply,
            unit,
            node,
            client_id: self.info.id,
            deadline: now + self.worker.settings().request_timeout,
            redirects: 0,
            retries: 0,
            readonly,
            asking: false,
            resp3: self.resp3,
            hold: true,
            lane: self.lane,
            db: self.backend_db,
        }
    }
}

/// Whether `spec` is named by `commands.allow_admin` (`allowed`: table names; a command
/// name allows each of its subcommands).
fn admin_allowed(allowed: &[String], spec: &CommandSpec) -> bool {
    allowed.iter().any(|a| {
        spec.name == a
            || spec
                .name
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.starts_with('|'))
    })
}

/// [`route_spec`] with the command looked up here (tests).
#[cfg(test)]
fn route(args: &[&[u8]], placement: &Placement) -> Route {
    route_spec(args, command::lookup(args), placement)
}

/// Classify a request by its command (`spec`, already looked up by the caller, which counts
/// it; `None`: unknown) and keys, placed by `placement`. Pure: no I/O.
fn route_spec(args: &[&[u8]], spec: Option<&'static CommandSpec>, placement: &Placement) -> Route {
    let Some(name) = args.first() else {
        return Route::Refused(error("ERR empty command"));
    };
    let Some(spec) = spec else {
        return Route::Refused(unknown_command(name, &args[1..]));
    };
    if !spec.arity_ok(args.len()) {
        return Route::Refused(error(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        )));
    }
    // Every proxy-local command is key-less: GET, SET and the like skip the name comparisons.
    if spec.key_specs.is_empty() {
        if spec.name == "config|set" {
            if let Some(route) = super::admin::config_set_route(args) {
                return route;
            }
        }
        if let Some(cmd) = Local::of(spec) {
            return Route::Local(cmd);
        }
    }
    // One flag test keeps the name comparisons below off the path of GET, SET and the like.
    let special = spec.flags.intersects(SPECIAL);
    if special {
        if let Some(pinned) = pinned_by_name(spec.name) {
            return Route::Pinned(pinned);
        }
        if let Some(sub) = Sub::of(spec.name) {
            return Route::Sub(sub);
        }
    }
    if special && spec.name == "publish" {
        // A cluster broadcasts PUBLISH to every node. Slotgate subscribes every channel and
        // pattern on the master of slot 0 (see `pubsub`), so PUBLISH goes there and its
        // reply counts every slotgate subscriber that receives the message.
        return Route::Unit {
            unit: Unit::ZERO,
            readonly: false,
        };
    }
    // GET, SET, INCR, HSET …: one key at a fixed index, and none of the special cases
    // below applies to them; routed without collecting the keys first.
    if !special {
        if let Some(key) = spec.single_key_index().and_then(|i| args.get(i)) {
            return Route::Unit {
                unit: placement.unit_of(key),
                readonly: spec.is_readonly(),
            };
        }
    }
    let mut keys: SmallVec<[usize; 8]> = SmallVec::new();
    if let Err(e) = spec.routing_args(args, &mut keys) {
        return Route::Refused(error(&format!("ERR {e}")));
    }
    let mut units = keys
        .iter()
        .filter_map(|&i| args.get(i))
        .map(|k| placement.unit_of(k));
    let Some(unit) = units.next() else {
        if special && is_script(spec.name) {
            return Route::Script {
                unit: None,
                readonly: spec.is_readonly(),
                remember: remembers_body(spec.name),
            };
        }
        if spec.name == "scan" {
            return Route::Scan;
        }
        if let Some(rule) = split::fan_out_rule(spec.name) {
            return Route::FanOut {
                rule,
                readonly: spec.is_readonly(),
            };
        }
        if spec.flags.contains(Flags::ADMIN) {
            return Route::Refused(error(&format!(
                "ERR slotgate: '{}' administers one node and is refused by default; list it in \
                 commands.allow_admin to send it to every master",
                spec.name.replace('|', " ").to_uppercase()
            )));
        }
        return Route::Refused(error(&format!(
            "ERR slotgate: '{}' has no key to route by; key-less commands are not served by this proxy",
            printable(name)
        )));
    };
    let same_slot = !units.any(|s| s != unit);
    if special && same_slot {
        if spec.name == "watch" {
            return Route::Pinned(Pinned::Exclusive(Exclusive::Watch { unit }));
        }
        if blocks(spec, args) {
            return Route::Pinned(Pinned::Exclusive(Exclusive::Blocking { unit }));
        }
        if is_script(spec.name) {
            return Route::Script {
                unit: Some(unit),
                readonly: spec.is_readonly(),
                remember: remembers_body(spec.name),
            };
        }
    }
    if !same_slot {
        return match split::rule_of(spec.name) {
            // MSET with a key and no value: Redis' own check, which a split must not skip.
            Some((_, per_key)) if (args.len() - 1) % per_key != 0 => Route::Refused(error(
                &format!("ERR wrong number of arguments for '{}' command", spec.name),
            )),
            Some((MergeRule::SetInterCard { .. }, per_key)) => {
                let after = keys.last().map_or(args.len(), |&k| k + 1);
                match split::sintercard_limit(args, after) {
                    Ok(limit) => Route::Split {
                        rule: MergeRule::SetInterCard { limit },
                        per_key,
                        keys,
                        readonly: spec.is_readonly(),
                    },
                    Err(text) => Route::Refused(error(text)),
                }
            }
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
    Route::Unit {
        unit,
        readonly: spec.is_readonly(),
    }
}

/// How the proxy serves a command, for `docs/COMMANDS.md`: a category (`local`, `routed`,
/// `split`, `fan-out`, `refused`) and a short reason. Derived from the same rules as [`route`],
/// so the document cannot drift from the behaviour.
pub fn service(spec: &CommandSpec) -> (&'static str, String) {
    if let Some(service) = databases::service(spec.name) {
        return service;
    }
    if spec.name == "info" {
        return (
            "local",
            "the proxy's own sections; memory, persistence, stats, CPU and latencystats merged \
             field by field (sums, maxima, ratios computed again; the proxy's own stats fields \
             kept), keyspace, commandstats and errorstats summed over the masters"
                .into(),
        );
    }
    if spec.name.starts_with("slowlog") {
        return (
            "local",
            "the proxy's slow log (read to reply ready), Redis' shape; the node of each entry \
             is in the admin `/slowlog`"
                .into(),
        );
    }
    if matches!(spec.name, "client|list" | "client|kill") {
        return ("local", "the proxy's own clients, on every worker".into());
    }
    if let Some(why) = admin_service(spec.name) {
        return ("local", why.into());
    }
    if spec.name == "config|set" {
        return (
            "refused",
            "changes a node's settings: refused unless listed in `commands.allow_admin`, which \
             sends it to every master and replica (OK when all accept; an error names each \
             node that refused). Except the proxy's own: `slowlog-log-slower-than` and \
             `slowlog-max-len` set the proxy's slow log (until restart, as in Redis), served \
             by default; both kinds in one CONFIG SET are refused"
                .into(),
        );
    }
    if Local::of(spec).is_some() {
        return ("local", "answered by the proxy itself".into());
    }
    if let Some(pinned) = pinned_by_name(spec.name) {
        let why = match pinned {
            Pinned::Exclusive(Exclusive::Wait) => {
                "on the master the client last wrote to: its replication offset, then ROLE \
                 polled until enough replicas acknowledged it; after a split or fan-out \
                 write on each master it touched, answering the smallest count"
            }
            Pinned::Reset => "ends the transaction, the WATCH and every subscription",
            Pinned::Exclusive(Exclusive::Kill) => {
                "to every master on a connection of its own (a busy node does not read the \
                 script's connection): OK when one killed a script, else UNKILLABLE or NOTBUSY \
                 as Redis answers"
            }
            Pinned::Exclusive(Exclusive::Unblock) => {
                "the proxy's client ids: sent to the node the client is blocked on, for the \
                 node's id of that connection (TIMEOUT or ERROR as asked); 0 when the client \
                 is not blocked"
            }
            _ => {
                "transaction: queued by the proxy, run as MULTI…EXEC in one write on a dedicated \
                 connection to the slot's master; commands must share one slot"
            }
        };
        return ("pinned", why.into());
    }
    if Sub::of(spec.name).is_some() {
        return (
            "pinned",
            "subscription on a dedicated connection to the master of each channel's slot; \
             confirmations counted by the proxy, re-subscribed after a failover"
                .into(),
        );
    }
    if spec.name == "publish" {
        return (
            "routed",
            "to the master of slot 0, where slotgate subscribes channels and patterns (the \
             cluster broadcasts it to every node), so its count covers slotgate's subscribers"
                .into(),
        );
    }
    if spec.name == "watch" {
        return (
            "pinned",
            "a dedicated connection to the keys' master, kept until EXEC/DISCARD/UNWATCH; keys \
             in one slot"
                .into(),
        );
    }
    if spec.is_blocking() {
        let what = if spec.name.starts_with("xread") {
            "with BLOCK: "
        } else {
            ""
        };
        return (
            "pinned",
            format!(
                "{what}alone on a dedicated connection to its keys' master (one slot), released \
                 when it answers or the client leaves"
            ),
        );
    }
    if spec.name == "scan" {
        return (
            "fan-out",
            "one master after the other with one cursor (master, slot-assignment fingerprint, \
             the master's cursor); a key present for the whole scan is returned even when \
             slots move or masters fail over mid-scan: the pass restarts instead of ending \
             (duplicates possible, and a scan during a reshard ends after it)"
                .into(),
        );
    }
    if is_script(spec.name) {
        return (
            "routed",
            "by its keys (one slot); without keys to a random master, or to \
             `commands.keyless_scripts`; NOSCRIPT answered by loading the script the proxy saw"
                .into(),
        );
    }
    // `not_key` specs (SPUBLISH's channel) route by slot just like keys.
    if !spec.key_specs.is_empty() {
        return match split::rule_of(spec.name) {
            Some((rule, _)) if rule.fetches_keys() => (
                "split",
                format!(
                    "keys in several slots: one read per distinct key, the answer computed by \
                     the proxy ({})",
                    rule_text(rule)
                ),
            ),
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
        None if spec.flags.contains(Flags::ADMIN) && split::reaches_every_node(spec.name) => (
            "refused",
            "changes a node's settings: refused unless listed in `commands.allow_admin`, which \
             sends it to every master and replica (OK when all accept; an error names each \
             node that refused)"
                .into(),
        ),
        None if spec.flags.contains(Flags::ADMIN) => (
            "refused",
            "administers one node: refused unless listed in `commands.allow_admin`, which \
             sends it to every master (all must answer alike)"
                .into(),
        ),
        None => ("refused", "key-less: no key to route by".into()),
    }
}

/// How the admin commands the proxy answers about itself are served (`docs/COMMANDS.md`).
fn admin_service(name: &str) -> Option<&'static str> {
    Some(match name {
        "client|pause" => {
            "the proxy holds the commands of every client of every worker (WRITE: those that \
             may write, EVAL/FCALL/PUBLISH/PFCOUNT/WAIT/EXEC too) until the time is up or \
             CLIENT UNPAUSE; no node is paused; CLIENT PAUSE/UNPAUSE themselves are never held"
        }
        "client|unpause" => "ends the proxy's pause and lets every held client go on",
        "client|getredir" => "-1: tracking is never on through the proxy",
        "client|trackinginfo" => "flags `off`, redirect -1: tracking is never on through the proxy",
        "client|tracking" => {
            "OFF answers OK; ON is refused: the proxy shares its node connections between \
             clients, so no node can track one client's keys"
        }
        "client|caching" => {
            "Redis' error for a client not tracking (none tracks through the proxy)"
        }
        "client|reply" => {
            "ON answers OK; OFF and SKIP are refused (the proxy answers every command)"
        }
        "role" => {
            "the standalone master the proxy presents: `master`, offset 0, no replicas (as \
             INFO replication says)"
        }
        "replicaof" | "slaveof" => {
            "NO ONE answers OK (the proxy is a master already); replicating a server is refused"
        }
        "acl|whoami" | "acl|users" | "acl|cat" | "acl|genpass" | "acl|dryrun" | "acl|help" => {
            "about the proxy's own `[auth]` users (its default user and `[[auth.users]]`) and \
             the command table's categories"
        }
        "monitor" => {
            "every command of every client of the proxy, from every worker, in Redis' line \
             format (admin commands not shown, credentials redacted); bounded by the pub/sub \
             output limit"
        }
        _ => return None,
    })
}

fn rule_text(rule: MergeRule) -> &'static str {
    match rule {
        MergeRule::Values => "values in key order",
        MergeRule::AllOk => "OK when all are OK; not atomic across slots",
        MergeRule::Sum => "sum",
        MergeRule::Least => "the smallest (the last time every master saved)",
        MergeRule::Concat => "concatenated",
        MergeRule::Same => "the same answer from all",
        MergeRule::AllOf => "true only where true on every master",
        MergeRule::Union => "concatenated, duplicates removed",
        MergeRule::SetUnion => "each slot's union, then their union (a snapshot per node, not atomic across them)",
        MergeRule::SetInter => "each slot's intersection, then their intersection (a snapshot per node, not atomic across them)",
        MergeRule::SetInterCard { .. } => "each slot's intersection, then the size of theirs, at most LIMIT (a snapshot per node)",
        MergeRule::SetDiff => "the first key's slot answers its difference, the others their union; the first without the rest (a snapshot per node)",
        MergeRule::SortedSets { .. } => "`ZUNION 1 key WITHSCORES`, sets read too; weights, AGGREGATE, WITHSCORES, LIMIT and score order as in Redis 7.0; a snapshot per node",
        MergeRule::Lcs { .. } => "GET of both strings; LEN, IDX, MINMATCHLEN, WITHMATCHLEN as in Redis 7.0",
        MergeRule::HllUnion => "GET of each HyperLogLog, dense or sparse; registers merged and counted with Redis' estimator, the same count",
        MergeRule::PairSum => "counts summed per name",
        MergeRule::Keyspace => "keys and expiries summed per database",
        MergeRule::AnyValue { .. } => "a key from a master picked at random",
        MergeRule::EveryNodeOk => {
            "every master and replica; OK when all are, else the nodes that refused"
        }
        MergeRule::FunctionStats => {
            "the script running on any master, or nil; the engines' counts as the first master \
             has them, FUNCTION LOAD reaching every master"
        }
        MergeRule::FunctionDump => {
            "the payload every master gave, libraries being loaded on all; an error when they differ"
        }
        MergeRule::MemoryStats => {
            "bytes and key counts summed, per database too; bytes per key, percentages and \
             ratios computed from the sums; the peak is the sum of the masters' peaks"
        }
        MergeRule::LatencyLatest => {
            "per event, the latest sample of any master and the highest maximum"
        }
        MergeRule::LatencyHistory => {
            "every master's samples in time order, the highest of one second, the last 160"
        }
        MergeRule::LatencyHistogram => "calls and cumulative bucket counts summed per command",
        MergeRule::NodeText => "each master's text under a line naming it",
        MergeRule::Background => {
            "every master saves its part; the answer they share, else the first refusal, else \
             the least advanced (`scheduled`)"
        }
        MergeRule::ConfigGet { .. } => {
            "one answer where they agree; the proxy's own port, `cluster-enabled no`; per-node \
             settings (files, addresses) from the first master; a disagreement on a setting \
             asked by name is an error naming the values, within a pattern the first master's"
        }
    }
}

/// Flags of every command [`route`] treats by name: transactions, WAIT, WATCH, RESET and
/// scripts (`noscript`), pub/sub, blocking commands.
const SPECIAL: Flags = Flags::NOSCRIPT.union(Flags::PUBSUB).union(Flags::BLOCKING);

/// EVAL / EVALSHA / FCALL and their read-only forms.
fn is_script(name: &str) -> bool {
    matches!(
        name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// Commands that carry a script body the proxy keeps for NOSCRIPT recovery.
fn remembers_body(name: &str) -> bool {
    name == "eval" || name == "eval_ro"
}

/// Transaction and session commands, by table name.
fn pinned_by_name(name: &str) -> Option<Pinned> {
    Some(match name {
        "multi" => Pinned::Multi,
        "exec" => Pinned::Exclusive(Exclusive::Exec),
        "discard" => Pinned::Discard,
        "unwatch" => Pinned::Unwatch,
        "reset" => Pinned::Reset,
        "wait" => Pinned::Exclusive(Exclusive::Wait),
        "script|kill" | "function|kill" => Pinned::Exclusive(Exclusive::Kill),
        "client|unblock" => Pinned::Exclusive(Exclusive::Unblock),
        _ => return None,
    })
}

/// A command that may block its connection: XREAD and XREADGROUP only with BLOCK.
fn blocks(spec: &CommandSpec, args: &[&[u8]]) -> bool {
    match spec.name {
        "xread" | "xreadgroup" => args.iter().any(|a| a.eq_ignore_ascii_case(b"block")),
        _ => spec.is_blocking(),
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
fn unknown_command(name: &[u8], rest: &[&[u8]]) -> Bytes {
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

    /// `route` only asks `Local::of` about key-less commands.
    #[test]
    fn every_local_command_is_keyless() {
        let specs = command::all()
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()));
        for spec in specs {
            if Local::of(spec).is_some() {
                assert!(spec.key_specs.is_empty(), "{} has keys", spec.name);
            }
        }
    }

    /// The category `route` gives `args`, in the words of [`service`].
    fn category(route: &Route) -> &'static str {
        match route {
            Route::Local(_) => "local",
            Route::Unit { .. } | Route::Script { .. } => "routed",
            Route::Split { .. } => "split",
            Route::FanOut { .. } | Route::Scan => "fan-out",
            Route::Pinned(_) | Route::Sub(_) => "pinned",
            Route::Refused(_) => "refused",
        }
    }

    /// Calls of `spec` to route: the fewest arguments its arity allows, each `{t}1`, then
    /// each `1` (where a number is wanted, `numkeys`), then one `1` more (a key after
    /// `numkeys`); commands whose syntax a filler cannot meet get a written example.
    fn sample_calls(spec: &CommandSpec) -> Vec<Vec<String>> {
        let written: &[&str] = match spec.name {
            "xread" => &["XREAD", "BLOCK", "1", "STREAMS", "s", "0"],
            "xreadgroup" => &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "1",
                "STREAMS",
                "s",
                ">",
            ],
            _ => &[],
        };
        if !written.is_empty() {
            return vec![written.iter().map(|w| w.to_string()).collect()];
        }
        let name: Vec<String> = spec.name.split('|').map(str::to_uppercase).collect();
        let wanted = usize::from(spec.arity.unsigned_abs()).max(name.len());
        let filled = |filler: &str, n: usize| {
            let mut words = name.clone();
            words.resize(n.max(name.len()), filler.to_string());
            words
        };
        vec![
            filled("{t}1", wanted),
            filled("1", wanted),
            filled("1", wanted + 1),
        ]
    }

    /// docs/COMMANDS.md is generated from [`service`]; this holds `service` to [`route`], the
    /// decision requests actually take: for every command of the table, a minimal call routes
    /// in the category `service` documents (a split command whose keys share a slot is
    /// forwarded whole, so "routed" is its category too).
    #[test]
    fn the_documented_service_is_the_routing_decision() {
        let specs = command::all()
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()));
        let mut wrong = Vec::new();
        for spec in specs {
            let documented = service(spec).0;
            let routes: Vec<Route> = sample_calls(spec)
                .iter()
                .map(|words| {
                    let words: Vec<&str> = words.iter().map(String::as_str).collect();
                    route(&args(&words))
                })
                .collect();
            let agrees = |route: &Route| {
                let got = category(route);
                got == documented || (documented == "split" && got == "routed")
            };
            if !routes.iter().any(agrees) {
                wrong.push(format!(
                    "{}: documented {documented}, routed {routes:?}",
                    spec.name
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} commands:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    /// `route` with cluster hash slots, the placement these tests are written for.
    fn route(args: &[&[u8]]) -> Route {
        super::route(args, &Placement::SLOTS)
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
            Route::Unit {
                unit: Unit::from(crate::slot::Slot::of(b"foo")),
                readonly: true
            }
        );
        assert_eq!(
            route(&args(&["hset", "h", "f", "v"])),
            Route::Unit {
                unit: Unit::from(crate::slot::Slot::of(b"h")),
                readonly: false
            }
        );
    }

    #[test]
    fn same_slot_multi_key_is_one_route() {
        assert_eq!(
            route(&args(&["MGET", "{u}a", "{u}b", "{u}c"])),
            Route::Unit {
                unit: Unit::from(crate::slot::Slot::of(b"u")),
                readonly: true
            }
        );
        assert_eq!(
            route(&args(&["EVAL", "return 1", "2", "{t}x", "{t}y", "arg"])),
            Route::Script {
                unit: Some(Unit::from(crate::slot::Slot::of(b"t"))),
                readonly: false,
                remember: true
            }
        );
        assert_eq!(
            route(&args(&["EVALSHA_RO", "abc", "0"])),
            Route::Script {
                unit: None,
                readonly: true,
                remember: false
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
    fn keyless_commands_are_refused_and_pinned_ones_pinned() {
        assert!(refused(&["ASKING"]).contains("'ASKING' has no key"));
        assert!(refused(&["CONFIG", "SET", "a", "b"])
            .contains("'CONFIG SET' administers one node and is refused by default"));
        let spec = |words: &[&str]| command::lookup(&args(words)).unwrap();
        let allowed = ["config|set".to_string(), "debug".to_string()];
        assert!(admin_allowed(&allowed, spec(&["CONFIG", "SET", "a", "b"])));
        assert!(!admin_allowed(&allowed, spec(&["CONFIG", "GET", "a"])));
        assert!(admin_allowed(&allowed, spec(&["DEBUG", "SLEEP", "0"])));
        assert!(!admin_allowed(&allowed, spec(&["DBSIZE"])));
        assert!(matches!(
            route(&args(&["KEYS", "*"])),
            Route::FanOut {
                rule: MergeRule::Concat,
                ..
            }
        ));
        let blocking = |unit: &[u8]| {
            Route::Pinned(Pinned::Exclusive(Exclusive::Blocking {
                unit: Unit::from(crate::slot::Slot::of(unit)),
            }))
        };
        assert_eq!(route(&args(&["BLPOP", "l", "0"])), blocking(b"l"));
        assert_eq!(
            route(&args(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"])),
            blocking(b"s")
        );
        assert!(refused(&["BLPOP", "a", "b", "0"]).starts_with("-CROSSSLOT"));
        assert_eq!(
            route(&args(&["WATCH", "{t}a", "{t}b"])),
            Route::Pinned(Pinned::Exclusive(Exclusive::Watch {
                unit: Unit::from(crate::slot::Slot::of(b"t"))
            }))
        );
        assert!(refused(&["WATCH", "a", "b"]).starts_with("-CROSSSLOT"));
        assert_eq!(route(&args(&["MULTI"])), Route::Pinned(Pinned::Multi));
        assert_eq!(
            route(&args(&["PUBLISH", "ch", "m"])),
            Route::Unit {
                unit: Unit::ZERO,
                readonly: false
            }
        );
        assert!(matches!(
            route(&args(&["SUBSCRIBE", "a", "b"])),
            Route::Sub(_)
        ));
        assert_eq!(
            route(&args(&["XREAD", "COUNT", "1", "STREAMS", "s", "0"])),
            Route::Unit {
                unit: Unit::from(crate::slot::Slot::of(b"s")),
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
