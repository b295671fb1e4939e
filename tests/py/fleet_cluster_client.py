"""redis-py's cluster client against a fleet of slotgate instances (tests/it/fleet_view.rs).

Usage: fleet_cluster_client.py HOST:PORT KEYS

Round 1: SET then GET of KEYS keys; prints `round1 ERRORS NODE…` (the errors raised to
the application and the nodes the client knows). Then it waits for a line on stdin and runs
round 2 the same way (the test stops an instance in between), printing `round2 ERRORS NODE…`.
The first few errors follow their round's line, indented.
"""

import sys

from redis.cluster import RedisCluster


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    keys = int(sys.argv[2])
    client = RedisCluster(host=host, port=int(port), socket_timeout=5)

    def one_round(tag):
        errors = []
        for i in range(keys):
            key = f"py:{i}"
            value = f"{tag}{i}".encode()
            try:
                client.set(key, value)
                got = client.get(key)
                if got != value:
                    errors.append(f"{key}: read {got!r}, wrote {value!r}")
            except Exception as e:  # every error the application would see
                errors.append(f"{key}: {type(e).__name__}: {e}")
        nodes = sorted(node.name for node in client.get_nodes())
        print(f"{tag} {len(errors)} {' '.join(nodes)}", flush=True)
        for line in errors[:5]:
            print(f"  {line}", flush=True)

    one_round("round1")
    sys.stdin.readline()
    one_round("round2")


if __name__ == "__main__":
    main()
