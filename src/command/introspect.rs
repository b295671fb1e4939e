//! Local answers to the `COMMAND` family, built from the static table and encoded as RESP2.
//!
//! The proxy answers COMMAND itself: the backends may run another Redis version, and clients
//! (redis-cli's hints, cluster-aware libraries) only need what the table holds. Replies have
//! the exact shape of Redis 7.0's RESP2 replies, with two deliberate differences: `COMMAND
//! DOCS` entries carry summary, since, group, complexity and subcommands but no argument trees
//! (nor history / deprecation notes), and commands are listed in name order where Redis uses
//! its hash-table order (which changes from one server process to the next anyway).
//!
//! Commands declared in `[commands.custom]` are part of every answer (COMMAND, COUNT, INFO,
//! DOCS with group `module`, LIST, GETKEYS), after the table's own, as the declaration
//! describes them; `LIST FILTERBY MODULE` matches none of them (the proxy does not know
//! which module a command comes from).
//!
//! Pure: writes into a caller's buffer; no I/O. The tiny RESP writer is private on purpose, so
//! this module builds without the `resp` module.

use bytes::{BufMut, BytesMut};

use crate::glob::{self, Case};
use crate::resp::encode;
use smallvec::SmallVec;

use super::custom::CustomCommands;
use super::lookup::lookup_full_name;
use super::{all, lookup, table, BeginSearch, CommandSpec, FindKeys, Flags, KeySpec, KeySpecFlags};

/// The commands a reply covers: the table's, then the declared ones.
#[derive(Clone, Copy)]
struct Known(Option<&'static CustomCommands>);

impl Known {
    /// Every top-level command, the table's first.
    fn every(self) -> impl Iterator<Item = &'static CommandSpec> + Clone {
        let custom = self.0.map(CustomCommands::specs).unwrap_or_default();
        all().iter().chain(custom.iter().copied())
    }

    /// How many top-level commands there are.
    fn count(self) -> usize {
        table::COMMAND_COUNT + self.0.map_or(0, CustomCommands::len)
    }

    /// The command or subcommand with this full name, case-insensitive.
    fn by_name(self, name: &[u8]) -> Option<&'static CommandSpec> {
        lookup_full_name(name).or_else(|| self.0?.get(name))
    }

    /// The spec of a request's command, as [`lookup`] finds it.
    fn of<A: AsRef<[u8]>>(self, args: &[A]) -> Option<&'static CommandSpec> {
        lookup(args).or_else(|| self.0?.lookup(args))
    }
}

/// `COMMAND HELP`, line for line as Redis 7.0 prints it.
const HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
];

/// Shorthand over [`crate::resp::encode`] for the many small writes below.
struct Resp<'a>(&'a mut BytesMut);

impl Resp<'_> {
    fn array(&mut self, n: usize) {
        encode::array_header(self.0, n);
    }

    fn bulk(&mut self, data: &[u8]) {
        encode::bulk(self.0, data);
    }

    fn null_bulk(&mut self) {
        encode::null_bulk(self.0);
    }

    /// A status line; callers only pass table data, which never contains CR or LF.
    fn simple(&mut self, s: &str) {
        encode::simple(self.0, s);
    }

    fn integer(&mut self, v: i64) {
        encode::integer(self.0, v);
    }

    /// `-ERR <parts...>`. Like Redis' `addReplyErrorFormat`, CR and LF inside the message
    /// (which may echo client input) become spaces so the reply stays one protocol line.
    fn error(&mut self, parts: &[&[u8]]) {
        self.0.put_slice(b"-ERR ");
        for part in parts {
            self.0.extend(
                part.iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
        }
        self.0.put_slice(b"\r\n");
    }

    /// An array of status strings, one per set flag.
    fn flag_names<I: Iterator<Item = &'static str> + Clone>(&mut self, names: I) {
        self.array(names.clone().count());
        for name in names {
            self.simple(name);
        }
    }
}

/// Reply to COMMAND, COMMAND COUNT, COMMAND INFO [names…], COMMAND DOCS [names…], COMMAND LIST
/// [FILTERBY …], COMMAND GETKEYS cmd args…, COMMAND GETKEYSANDFLAGS cmd args…, COMMAND HELP.
/// `args` is the full request (`args[0]` = "COMMAND"); `custom`: the declared commands, if
/// any. Errors are Redis' exact texts.
pub fn command_reply<A: AsRef<[u8]>>(
    args: &[A],
    custom: Option<&'static CustomCommands>,
    out: &mut BytesMut,
) {
    let known = Known(custom);
    let mut w = Resp(out);
    if args.len() < 2 {
        // Plain COMMAND: like COMMAND INFO with no names.
        w.array(known.count());
        known.every().for_each(|cmd| info_row(&mut w, cmd));
        return;
    }
    let spec = match lookup(args) {
        Some(spec) if !spec.is_container() => spec,
        // Not a subcommand of COMMAND: Redis echoes the first 128 bytes (up to a NUL) of
        // what was typed, and the container name upper-cased as typed.
        _ => {
            let typed = args.get(1).map_or(&[][..], |a| a.as_ref());
            let typed = typed.split(|&b| b == 0).next().unwrap_or_default();
            let typed = typed.get(..128).unwrap_or(typed);
            let container = args.first().map_or(&[][..], |a| a.as_ref());
            let container = container.to_ascii_uppercase();
            w.error(&[
                b"unknown subcommand '",
                typed,
                b"'. Try ",
                &container,
                b" HELP.",
            ]);
            return;
        }
    };
    if !spec.arity_ok(args.len()) {
        let name = spec.name.as_bytes();
        w.error(&[b"wrong number of arguments for '", name, b"' command"]);
        return;
    }
    let rest = args.get(2..).unwrap_or_default();
    match spec.name {
        "command|count" => w.integer(i64::try_from(known.count()).unwrap_or(i64::MAX)),
        "command|info" => info(&mut w, known, rest),
        "command|docs" => docs(&mut w, known, rest),
        "command|list" => list(&mut w, known, rest),
        "command|getkeys" => getkeys(&mut w, known, rest, false),
        "command|getkeysandflags" => getkeys(&mut w, known, rest, true),
        "command|help" => {
            w.array(HELP.len());
            HELP.iter().for_each(|line| w.simple(line));
        }
        // A COMMAND subcommand this proxy's table knows but this module does not implement:
        // cannot happen with the 7.0 table; answer like an unknown subcommand.
        other => w.error(&[
            b"unknown subcommand '",
            other.as_bytes(),
            b"'. Try COMMAND HELP.",
        ]),
    }
}

/// COMMAND INFO: all commands, or one entry per name (null for unknown names).
fn info<A: AsRef<[u8]>>(w: &mut Resp<'_>, known: Known, names: &[A]) {
    if names.is_empty() {
        w.array(known.count());
        known.every().for_each(|cmd| info_row(w, cmd));
        return;
    }
    w.array(names.len());
    for name in names {
        match known.by_name(name.as_ref()) {
            Some(cmd) => info_row(w, cmd),
            None => w.null_bulk(),
        }
    }
}

/// One command's 10-element COMMAND INFO array, subcommands nested.
fn info_row(w: &mut Resp<'_>, cmd: &CommandSpec) {
    w.array(10);
    w.bulk(cmd.name.as_bytes());
    w.integer(cmd.arity.into());
    // Redis never shows may_replicate.
    w.flag_names(cmd.flags.difference(Flags::MAY_REPLICATE).names());
    w.integer(cmd.first_key.into());
    w.integer(cmd.last_key.into());
    w.integer(cmd.step.into());
    w.array(cmd.acl_categories.len());
    cmd.acl_categories.iter().for_each(|c| w.simple(c));
    w.array(cmd.tips.len());
    cmd.tips.iter().for_each(|t| w.bulk(t.as_bytes()));
    w.array(cmd.key_specs.len());
    cmd.key_specs.iter().for_each(|ks| key_spec(w, ks));
    w.array(cmd.subcommands.len());
    cmd.subcommands.iter().for_each(|sub| info_row(w, sub));
}

/// A key spec as the RESP2 flattening of Redis' map: [notes,] flags, begin_search, find_keys.
fn key_spec(w: &mut Resp<'_>, ks: &KeySpec) {
    w.array(if ks.notes.is_empty() { 6 } else { 8 });
    if !ks.notes.is_empty() {
        w.bulk(b"notes");
        w.bulk(ks.notes.as_bytes());
    }
    w.bulk(b"flags");
    w.flag_names(ks.flags.names());
    w.bulk(b"begin_search");
    w.array(4);
    w.bulk(b"type");
    match ks.begin {
        BeginSearch::Index(pos) => {
            w.bulk(b"index");
            w.bulk(b"spec");
            w.array(2);
            w.bulk(b"index");
            w.integer(pos.into());
        }
        BeginSearch::Keyword {
            keyword,
            start_from,
        } => {
            w.bulk(b"keyword");
            w.bulk(b"spec");
            w.array(4);
            w.bulk(b"keyword");
            w.bulk(keyword.as_bytes());
            w.bulk(b"startfrom");
            w.integer(start_from.into());
        }
        BeginSearch::Unknown => {
            w.bulk(b"unknown");
            w.bulk(b"spec");
            w.array(0);
        }
    }
    w.bulk(b"find_keys");
    w.array(4);
    w.bulk(b"type");
    match ks.find {
        FindKeys::Range {
            last_key,
            key_step,
            limit,
        } => {
            w.bulk(b"range");
            w.bulk(b"spec");
            w.array(6);
            w.bulk(b"lastkey");
            w.integer(last_key.into());
            w.bulk(b"keystep");
            w.integer(key_step.into());
            w.bulk(b"limit");
            w.integer(limit.into());
        }
        FindKeys::KeyNum {
            key_num_idx,
            first_key,
            key_step,
        } => {
            w.bulk(b"keynum");
            w.bulk(b"spec");
            w.array(6);
            w.bulk(b"keynumidx");
            w.integer(key_num_idx.into());
            w.bulk(b"firstkey");
            w.integer(first_key.into());
            w.bulk(b"keystep");
            w.integer(key_step.into());
        }
        FindKeys::Unknown => {
            w.bulk(b"unknown");
            w.bulk(b"spec");
            w.array(0);
        }
    }
}

/// COMMAND DOCS: a map (flat array in RESP2) of name → docs; unknown names are left out.
fn docs<A: AsRef<[u8]>>(w: &mut Resp<'_>, known: Known, names: &[A]) {
    if names.is_empty() {
        w.array(known.count() * 2);
        known.every().for_each(|cmd| docs_entry(w, cmd));
        return;
    }
    let found = || names.iter().filter_map(|n| known.by_name(n.as_ref()));
    w.array(found().count() * 2);
    found().for_each(|cmd| docs_entry(w, cmd));
}

/// `name`, then its docs map. Like Redis, empty fields are omitted but group is always there.
fn docs_entry(w: &mut Resp<'_>, cmd: &CommandSpec) {
    w.bulk(cmd.name.as_bytes());
    let fields = [
        ("summary", cmd.summary),
        ("since", cmd.since),
        ("group", cmd.group),
        ("complexity", cmd.complexity),
    ];
    let present = || {
        fields
            .iter()
            .filter(|(k, v)| !v.is_empty() || *k == "group")
    };
    let subs = usize::from(cmd.is_container());
    w.array((present().count() + subs) * 2);
    for (key, value) in present() {
        w.bulk(key.as_bytes());
        w.bulk(value.as_bytes());
    }
    if cmd.is_container() {
        w.bulk(b"subcommands");
        w.array(cmd.subcommands.len() * 2);
        cmd.subcommands.iter().for_each(|sub| docs_entry(w, sub));
    }
}

/// Which commands `COMMAND LIST FILTERBY` keeps.
enum Filter<'a> {
    All,
    /// The proxy knows no command's module (declared ones included): matches nothing.
    Module,
    AclCat(&'a [u8]),
    Pattern(&'a [u8]),
}

impl Filter<'_> {
    fn keeps(&self, cmd: &CommandSpec) -> bool {
        match self {
            Filter::All => true,
            Filter::Module => false,
            Filter::AclCat(cat) => cmd.acl_categories.iter().any(|c| {
                c.trim_start_matches('@')
                    .as_bytes()
                    .eq_ignore_ascii_case(cat)
            }),
            Filter::Pattern(pat) => glob::matches(pat, cmd.name.as_bytes(), Case::Insensitive),
        }
    }
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT cat | PATTERN pattern]: every matching command
/// and subcommand name, each container followed by its subcommands.
fn list<A: AsRef<[u8]>>(w: &mut Resp<'_>, known: Known, opts: &[A]) {
    // Like Redis, the only option is one FILTERBY with exactly two arguments after it.
    let filter = match opts {
        [] => Filter::All,
        [kw, kind, arg] if kw.as_ref().eq_ignore_ascii_case(b"filterby") => {
            let (kind, arg) = (kind.as_ref(), arg.as_ref());
            if kind.eq_ignore_ascii_case(b"module") {
                Filter::Module
            } else if kind.eq_ignore_ascii_case(b"aclcat") {
                Filter::AclCat(arg)
            } else if kind.eq_ignore_ascii_case(b"pattern") {
                Filter::Pattern(arg)
            } else {
                return w.error(&[b"syntax error"]);
            }
        }
        _ => return w.error(&[b"syntax error"]),
    };
    let matching = || {
        known
            .every()
            .flat_map(|cmd| std::iter::once(cmd).chain(cmd.subcommands))
            .filter(|cmd| filter.keeps(cmd))
    };
    w.array(matching().count());
    matching().for_each(|cmd| w.bulk(cmd.name.as_bytes()));
}

/// COMMAND GETKEYS / GETKEYSANDFLAGS `target...`, with Redis' checks in Redis' order.
fn getkeys<A: AsRef<[u8]>>(w: &mut Resp<'_>, known: Known, target: &[A], with_flags: bool) {
    let cmd = match known.of(target) {
        // Redis resolves `container unknown-sub` to no command at all.
        Some(cmd) if !(cmd.is_container() && target.len() > 1) => cmd,
        _ => return w.error(&[b"Invalid command specified"]),
    };
    if !cmd.has_keys() {
        return w.error(&[b"The command has no key arguments"]);
    }
    if !cmd.arity_ok(target.len()) {
        return w.error(&[b"Invalid number of arguments specified for command"]);
    }
    let mut keys: SmallVec<[(usize, KeySpecFlags); 8]> = SmallVec::new();
    let found = cmd.visit_keys(target, false, with_flags, |i, f| keys.push((i, f)));
    // Redis' GETKEYS has no numkeys error of its own: a malformed request has "no keys".
    if found.is_err() || keys.is_empty() {
        if cmd.flags.contains(Flags::NO_MANDATORY_KEYS) {
            return w.array(0);
        }
        return w.error(&[b"Invalid arguments specified for command"]);
    }
    w.array(keys.len());
    for (i, flags) in keys {
        let key = target.get(i).map_or(&[][..], |k| k.as_ref());
        if with_flags {
            w.array(2);
            w.bulk(key);
            w.flag_names(flags.names());
        } else {
            w.bulk(key);
        }
    }
}

#[cfg(test)]
mod tests;
