#!/usr/bin/env python3
"""Print COUNT free TCP ports on 127.0.0.1, one per line.

usage: ports.py COUNT

Ports are taken from 20000-31999 (below the usual ephemeral range, so an outgoing connection
cannot grab one between this check and the server's bind), starting at a random place, and
each one is checked by binding it. Ports listed in $E2E_TAKEN_PORTS (space-separated) are
skipped, so several calls in one run never hand out the same port twice.
"""
import os
import random
import socket
import sys

LO, HI = 20000, 32000


def free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def main():
    count = int(sys.argv[1])
    taken = {int(p) for p in os.environ.get("E2E_TAKEN_PORTS", "").split()}
    start = random.randrange(LO, HI)
    out = []
    for i in range(HI - LO):
        p = LO + (start - LO + i) % (HI - LO)
        if p in taken:
            continue
        if free(p):
            out.append(p)
            if len(out) == count:
                print("\n".join(map(str, out)))
                return 0
    sys.exit("ports.py: not enough free loopback ports")


if __name__ == "__main__":
    sys.exit(main())
