"""Which keys a client's atomic units touch, from a MONITOR capture of a plain Redis: the
keys of each MULTI/EXEC (WATCH included) and of each script (EVAL/EVALSHA/FCALL, declared
and undeclared: the commands MONITOR shows from "lua"), and every other command whose keys
hash to more than one cluster slot. Those are the keys that must share one hash slot
behind slotgate ([[placement.colocate]] in conf/frameworks.toml). Also lists every command
name seen, to compare with what slotgate supports.

Usage: redis-cli -p PORT monitor > capture.txt (while the client runs), then
       transaction_keys.py capture.txt HOST:PORT [RULES.toml]
HOST:PORT is the same plain Redis: COMMAND GETKEYS finds the keys of each command. With a
slotgate config, also checks its [[placement.colocate]] groups: every unit above must then
be in one slot (a key in a group counts as the group's slot; the first matching group wins),
else it is listed and the exit status is 1.
"""

import collections
import fnmatch
import re
import sys
import tomllib

from redis import Redis
from redis.exceptions import ResponseError

LINE = re.compile(r'^\d+\.\d+ \[(\d+) ([^\]]+)\] (.*)$')
ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def args_of(text):
    """The arguments of one MONITOR line: quoted strings with Redis' escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        i += 1
        arg = bytearray()
        while text[i] != '"':
            if text[i] == "\\":
                if text[i + 1] == "x":
                    arg.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                else:
                    arg += ESCAPES.get(text[i + 1], text[i + 1].encode())
                    i += 2
            else:
                arg += text[i].encode()
                i += 1
        out.append(bytes(arg))
        i += 1
    return out


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key):
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % 16384


def pattern(key):
    """A key with its run-time parts (ids, numbers, host names) as *."""
    text = key.decode("utf-8", "backslashreplace")
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "*", text)
    text = re.sub(r"[0-9a-f]{16,}", "*", text)
    text = re.sub(r"check-[0-9a-f]{8}", "*", text)
    text = re.sub(r"\d+", "*", text)
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)
    return text


def placed(key, groups):
    """The slot `key` is in under colocation `groups`: its group's name, else its own slot."""
    for group in groups:
        if any(fnmatch.fnmatchcase(key, pattern.encode()) for pattern in group["keys"]):
            return group["name"]
    return slot(key)


def main():
    capture, addr = sys.argv[1], sys.argv[2]
    groups = None
    if len(sys.argv) > 3:
        with open(sys.argv[3], "rb") as f:
            groups = tomllib.load(f).get("placement", {}).get("colocate", [])
    still_cross = set()  # units that cross slots even under the groups
    host, port = addr.rsplit(":", 1)
    redis = Redis(host=host, port=int(port))
    redis.response_callbacks.pop("COMMAND", None)  # its parser expects COMMAND INFO's reply
    getkeys = {}

    def keys_of(args):
        name = args[0].upper()
        if name in (b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"):
            return args[3 : 3 + int(args[2])]
        if name in (b"MULTI", b"EXEC", b"DISCARD", b"UNWATCH"):
            return []
        try:
            return redis.execute_command("COMMAND", "GETKEYS", *args)
        except ResponseError:
            return []

    def record(kind, keys):
        if kind:
            units[kind].add(frozenset(pattern(k) for k in keys))
        if groups is not None and len({placed(k, groups) for k in keys}) > 1:
            still_cross.add(frozenset(pattern(k) for k in keys))

    commands = collections.Counter()
    units = collections.defaultdict(set)  # kind -> frozensets of key patterns
    cross = collections.defaultdict(set)  # command -> key patterns, keys in several slots
    open_multi = {}  # client -> keys of its WATCH + MULTI so far
    script = None  # (client, keys) of the script whose "lua" lines follow
    for raw in open(capture, encoding="utf-8", errors="backslashreplace"):
        m = LINE.match(raw.strip())
        if not m:
            continue
        client, args = m.group(2), args_of(m.group(3))
        if not args:
            continue
        name = args[0].upper()
        full = name.decode()
        if name in (b"CLIENT", b"CONFIG", b"COMMAND", b"SCRIPT", b"CLUSTER", b"OBJECT", b"XINFO", b"MEMORY"):
            full += " " + args[1].upper().decode() if len(args) > 1 else ""
        keys = keys_of(args)
        if client == "lua":
            commands["(lua) " + full] += 1
            if script:
                script[1].update(keys)
            continue
        commands[full] += 1
        if script:
            record("script", script[1])
            script = None
        if name in (b"EVAL", b"EVALSHA", b"FCALL", b"EVAL_RO", b"EVALSHA_RO", b"FCALL_RO"):
            script = (client, set(keys))
        if name == b"WATCH":
            open_multi.setdefault(client, set()).update(keys)
        elif name == b"MULTI":
            open_multi.setdefault(client, set())
        elif name in (b"EXEC", b"DISCARD"):
            record("multi", open_multi.pop(client, set()))
        elif name == b"UNWATCH" and client in open_multi:
            open_multi.pop(client)
        elif client in open_multi:
            open_multi[client].update(keys)
        elif len({slot(k) for k in keys}) > 1:
            cross[full].add(frozenset(pattern(k) for k in keys))
            record(None, keys)
    if script:
        record("script", script[1])

    print("== commands (count)")
    for name, count in sorted(commands.items()):
        print(f"  {name}: {count}")
    for kind, sets in units.items():
        print(f"== keys of one {kind} (as patterns), each line one kind of unit")
        for keys in sorted(sets, key=sorted):
            print("  " + "  ".join(sorted(keys)))
    print("== other commands whose keys are in more than one slot")
    for name, sets in sorted(cross.items()):
        for keys in sorted(sets, key=sorted):
            print(f"  {name}: " + "  ".join(sorted(keys)))
    if groups is not None:
        print(f"== units still in more than one slot under the {len(groups)} colocation groups: {len(still_cross)}")
        for keys in sorted(still_cross, key=sorted):
            print("  " + "  ".join(sorted(keys)))
        sys.exit(1 if still_cross else 0)


if __name__ == "__main__":
    main()
