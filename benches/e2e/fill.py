#!/usr/bin/env python3
"""Pre-fill the keys redis-benchmark -r N reads ("key:%012d", 0..N-1) through one endpoint.

usage: fill.py PORT N VALUE_BYTES

Single-key SETs pipelined 1000 deep on one connection to 127.0.0.1:PORT; every reply must be
+OK, and the last key is read back. Plain sockets, no client library.
"""
import socket
import sys


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def main():
    port, n, vlen = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    val = b"x" * vlen
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    for lo in range(0, n, 1000):
        hi = min(lo + 1000, n)
        s.sendall(b"".join(cmd(b"SET", b"key:%012d" % k, val) for k in range(lo, hi)))
        for _ in range(lo, hi):
            line = f.readline()
            if line != b"+OK\r\n":
                sys.exit(f"fill.py: port {port}: unexpected reply {line!r}")
    s.sendall(cmd(b"GET", b"key:%012d" % (n - 1)))
    f.readline()
    if f.readline().rstrip(b"\r\n") != val:
        sys.exit(f"fill.py: port {port}: read-back of the last key failed")
    print(f"filled {n} keys through 127.0.0.1:{port}")


if __name__ == "__main__":
    main()
