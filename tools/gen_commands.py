#!/usr/bin/env python3
"""Generate src/command/table.rs from a live redis-server.

The command table is data owned by Redis, so we ask Redis for it instead of typing it in:
`COMMAND` (arity, flags, legacy key triple, ACL categories, tips, key specs, subcommands) and
`COMMAND DOCS` (summary, since, group, complexity). The output is committed, so building
slotgate never needs Redis.

One flag is invisible to COMMAND INFO: Redis hides `may_replicate` on purpose. When this script
starts its own server (the default) it finds that flag by behaviour instead: during
`CLIENT PAUSE WRITE` Redis postpones exactly the commands flagged `write` or `may_replicate`,
so every non-write command that gets postponed is `may_replicate`. The probe sends garbage
arguments to nearly every command, which is why it only runs against a throwaway server.

Usage:
    tools/gen_commands.py                  # spawn redis-server on 127.0.0.1:17200, write the table
    tools/gen_commands.py --port 17250     # another port (keep to 17200-17299 on shared machines)
    tools/gen_commands.py --no-spawn --port 6379   # read an existing server, skip the probe

Python 3 standard library only.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "src", "command", "table.rs")

# Command flags in the order Redis prints them in COMMAND INFO, with the Rust constant for each.
# `may_replicate` is never printed; it is found by the pause probe.
COMMAND_FLAGS = {
    "write": "WRITE",
    "readonly": "READONLY",
    "denyoom": "DENYOOM",
    "module": "MODULE",
    "admin": "ADMIN",
    "pubsub": "PUBSUB",
    "noscript": "NOSCRIPT",
    "blocking": "BLOCKING",
    "loading": "LOADING",
    "stale": "STALE",
    "skip_monitor": "SKIP_MONITOR",
    "skip_slowlog": "SKIP_SLOWLOG",
    "asking": "ASKING",
    "fast": "FAST",
    "no_auth": "NO_AUTH",
    "may_replicate": "MAY_REPLICATE",
    "no_mandatory_keys": "NO_MANDATORY_KEYS",
    "no_async_loading": "NO_ASYNC_LOADING",
    "no_multi": "NO_MULTI",
    "movablekeys": "MOVABLE_KEYS",
    "allow_busy": "ALLOW_BUSY",
}

KEY_SPEC_FLAGS = {
    "RO": "RO",
    "RW": "RW",
    "OW": "OW",
    "RM": "RM",
    "access": "ACCESS",
    "update": "UPDATE",
    "insert": "INSERT",
    "delete": "DELETE",
    "not_key": "NOT_KEY",
    "incomplete": "INCOMPLETE",
    "variable_flags": "VARIABLE_FLAGS",
}

# Never sent by the may_replicate probe: they would stop the server, change its role, or take
# over the connection, and none of them is a may_replicate candidate.
PROBE_SKIP = {
    "shutdown",
    "replicaof",
    "slaveof",
    "failover",
    "debug",
    "monitor",
    "sync",
    "psync",
    "client|kill",
    "client|pause",
    "client|unpause",
}


class RespError(Exception):
    """An error reply from the server."""


class Conn:
    """A minimal blocking RESP2 client: enough for COMMAND and the probe."""

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def call(self, *args):
        self.send(*args)
        reply = self.read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("unexpected RESP type byte %r" % kind)


def pairs(flat):
    """RESP2 sends maps as flat [k1, v1, k2, v2, ...] arrays."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def parse_info(row):
    """One COMMAND INFO entry (a 10-element array) as a dict."""
    name, arity, flags, first, last, step, cats, tips, specs, subs = row
    key_specs = []
    for raw in specs:
        spec = pairs(raw)
        begin = pairs(spec["begin_search"])
        find = pairs(spec["find_keys"])
        key_specs.append(
            {
                "notes": spec.get("notes", ""),
                "flags": spec["flags"],
                "begin": (begin["type"], pairs(begin["spec"])),
                "find": (find["type"], pairs(find["spec"])),
            }
        )
    return {
        "name": name,
        "arity": arity,
        "flags": list(flags),
        "first": first,
        "last": last,
        "step": step,
        "acl": cats,
        "tips": tips,
        "key_specs": key_specs,
        "subcommands": sorted((parse_info(s) for s in subs), key=lambda c: c["name"]),
    }


def parse_docs(flat):
    """COMMAND DOCS reply: name -> {summary, since, group, complexity, subcommands}."""
    out = {}
    for name, raw in pairs(flat).items():
        d = pairs(raw)
        out[name] = {
            "summary": d.get("summary", ""),
            "since": d.get("since", ""),
            "group": d.get("group", ""),
            "complexity": d.get("complexity", ""),
            "subcommands": parse_docs(d.get("subcommands", [])),
        }
    return out


def walk(cmds):
    for c in cmds:
        yield c
        yield from walk(c["subcommands"])


def probe_may_replicate(host, port, cmds):
    """Names of the non-write commands Redis postpones during CLIENT PAUSE WRITE."""
    ctl = Conn(host, port)
    found = set()
    for c in walk(cmds):
        if "write" in c["flags"] or c["name"] in PROBE_SKIP:
            continue
        # Re-arm the pause each time: some probed command could have lifted it.
        ctl.call("CLIENT", "PAUSE", "600000", "WRITE")
        parts = c["name"].split("|")
        args = parts + ["0"] * max(0, abs(c["arity"]) - len(parts))
        # Two seconds: long enough that a slow command (PFSELFTEST takes a few hundred ms)
        # is not mistaken for a postponed one.
        conn = Conn(host, port, timeout=2.0)
        try:
            conn.send(*args)
            try:
                conn.read()
                postponed = False
            except socket.timeout:
                postponed = True
            if postponed:
                # Confirm: a postponed command runs as soon as the pause is lifted; one that
                # is still silent is blocked for some other reason and is not counted.
                ctl.call("CLIENT", "UNPAUSE")
                conn.sock.settimeout(5.0)
                try:
                    conn.read()
                    found.add(c["name"])
                except socket.timeout:
                    print("probe: %s stayed blocked after UNPAUSE" % c["name"], file=sys.stderr)
        finally:
            conn.close()
    ctl.call("CLIENT", "UNPAUSE")
    ctl.close()
    return found


def rust_str(s):
    out = ['"']
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    out.append('"')
    return "".join(out)


def str_slice(items):
    return "&[" + ", ".join(rust_str(s) for s in items) + "]"


def flag_expr(ty, table, names):
    unknown = [n for n in names if n not in table]
    if unknown:
        sys.exit("unknown %s flag(s) %s: teach tools/gen_commands.py about them" % (ty, unknown))
    order = list(table)
    consts = ["%s::%s" % (ty, table[n]) for n in sorted(names, key=order.index)]
    if not consts:
        return "%s::EMPTY" % ty
    if len(consts) == 1:
        return consts[0]
    return "%s::union_of(&[%s])" % (ty, ", ".join(consts))


def begin_expr(begin):
    kind, spec = begin
    if kind == "index":
        return "BeginSearch::Index(%d)" % spec["index"]
    if kind == "keyword":
        return "BeginSearch::Keyword { keyword: %s, start_from: %d }" % (
            rust_str(spec["keyword"]),
            spec["startfrom"],
        )
    if kind == "unknown":
        return "BeginSearch::Unknown"
    sys.exit("unknown begin_search type %r" % kind)


def find_expr(find):
    kind, spec = find
    if kind == "range":
        return "FindKeys::Range { last_key: %d, key_step: %d, limit: %d }" % (
            spec["lastkey"],
            spec["keystep"],
            spec["limit"],
        )
    if kind == "keynum":
        return "FindKeys::KeyNum { key_num_idx: %d, first_key: %d, key_step: %d }" % (
            spec["keynumidx"],
            spec["firstkey"],
            spec["keystep"],
        )
    if kind == "unknown":
        return "FindKeys::Unknown"
    sys.exit("unknown find_keys type %r" % kind)


def emit_spec(c, docs, may_replicate, indent, out):
    pad = " " * indent
    doc = docs.get(c["name"])
    if doc is None:
        sys.exit("COMMAND DOCS has no entry for %r" % c["name"])
    flags = list(c["flags"])
    if c["name"] in may_replicate:
        flags.append("may_replicate")
    out.append(pad + "CommandSpec {")
    out.append(pad + "    name: %s," % rust_str(c["name"]))
    out.append(pad + "    arity: %d," % c["arity"])
    out.append(pad + "    flags: %s," % flag_expr("Flags", COMMAND_FLAGS, flags))
    out.append(pad + "    first_key: %d," % c["first"])
    out.append(pad + "    last_key: %d," % c["last"])
    out.append(pad + "    step: %d," % c["step"])
    out.append(pad + "    acl_categories: %s," % str_slice(c["acl"]))
    out.append(pad + "    tips: %s," % str_slice(c["tips"]))
    if c["key_specs"]:
        out.append(pad + "    key_specs: &[")
        for ks in c["key_specs"]:
            out.append(pad + "        KeySpec {")
            out.append(pad + "            notes: %s," % rust_str(ks["notes"]))
            out.append(
                pad
                + "            flags: %s," % flag_expr("KeySpecFlags", KEY_SPEC_FLAGS, ks["flags"])
            )
            out.append(pad + "            begin: %s," % begin_expr(ks["begin"]))
            out.append(pad + "            find: %s," % find_expr(ks["find"]))
            out.append(pad + "        },")
        out.append(pad + "    ],")
    else:
        out.append(pad + "    key_specs: &[],")
    if c["subcommands"]:
        out.append(pad + "    subcommands: &[")
        for s in c["subcommands"]:
            emit_spec(s, doc["subcommands"], may_replicate, indent + 8, out)
        out.append(pad + "    ],")
    else:
        out.append(pad + "    subcommands: &[],")
    for field in ("group", "summary", "since", "complexity"):
        out.append(pad + "    %s: %s," % (field, rust_str(doc[field])))
    out.append(pad + "},")


def render(version, count, cmds, docs, may_replicate, probed):
    total = sum(1 for _ in walk(cmds))
    out = [
        "// @generated by tools/gen_commands.py — do not edit",
        "//! The Redis %s command table, as that server describes itself in `COMMAND` and"
        % version,
        "//! `COMMAND DOCS` (without the argument trees). Regenerate with `tools/gen_commands.py`.",
        "//!",
        "//! Commands and subcommands are sorted by name; `lookup` indexes them, so order only",
        "//! matters for the replies that list every command.",
    ]
    if probed:
        out.append(
            "//! `MAY_REPLICATE` (hidden by COMMAND INFO) was found with the CLIENT PAUSE WRITE probe."
        )
    else:
        out.append("//! `MAY_REPLICATE` was not probed for this table; no command carries it.")
    out += [
        "",
        "use super::{BeginSearch, CommandSpec, FindKeys, Flags, KeySpec, KeySpecFlags};",
        "",
        "/// Version of the redis-server this table was generated from.",
        "pub const REDIS_VERSION: &str = %s;" % rust_str(version),
        "",
        "/// Number of top-level commands: what `COMMAND COUNT` answered at generation time.",
        "pub const COMMAND_COUNT: usize = %d;" % count,
        "",
        "/// Number of commands plus subcommands (what `COMMAND LIST` lists).",
        "pub const SPEC_COUNT: usize = %d;" % total,
        "",
        "/// Every top-level command, sorted by name; subcommands hang off their container.",
        "pub static COMMANDS: &[CommandSpec] = &[",
    ]
    for c in cmds:
        emit_spec(c, docs, may_replicate, 4, out)
    out.append("];")
    return "\n".join(out) + "\n"


def wait_for(host, port, proc):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("redis-server exited early (port %d busy?)" % port)
        try:
            Conn(host, port, timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start on port %d" % port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=17200)
    ap.add_argument("--no-spawn", action="store_true", help="use a running server; no probe")
    ap.add_argument("--redis-server", default="redis-server")
    ap.add_argument("--out", default=DEFAULT_OUT)
    opts = ap.parse_args()

    proc = None
    # The probe runs SAVE, BGSAVE and BGREWRITEAOF too: give the server a scratch directory.
    scratch = tempfile.mkdtemp(prefix="gen_commands.")
    if not opts.no_spawn:
        proc = subprocess.Popen(
            [opts.redis_server, "--port", str(opts.port), "--bind", opts.host, "--dir", scratch,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        if proc is not None:
            wait_for(opts.host, opts.port, proc)
        conn = Conn(opts.host, opts.port)
        version = pairs_from_info(conn.call("INFO", "server")).get("redis_version", "unknown")
        count = conn.call("COMMAND", "COUNT")
        cmds = sorted((parse_info(r) for r in conn.call("COMMAND")), key=lambda c: c["name"])
        docs = parse_docs(conn.call("COMMAND", "DOCS"))
        conn.close()
        if len(cmds) != count:
            sys.exit("COMMAND listed %d commands but COMMAND COUNT said %d" % (len(cmds), count))
        may_replicate = set()
        if proc is not None:
            may_replicate = probe_may_replicate(opts.host, opts.port, cmds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)

    text = render(version, count, cmds, docs, may_replicate, proc is not None)
    with open(opts.out, "w") as f:
        f.write(text)
    # Keep `cargo fmt --check` clean without teaching this script rustfmt's layout rules.
    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2021", opts.out], check=True)
    print(
        "wrote %s: Redis %s, %d commands, %d with subcommands, may_replicate: %s"
        % (opts.out, version, count, sum(1 for _ in walk(cmds)), sorted(may_replicate))
    )


def pairs_from_info(text):
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


if __name__ == "__main__":
    main()
