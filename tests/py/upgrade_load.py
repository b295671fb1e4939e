"""Load for tests/it/upgrade.rs: 8 redis-py clients (writes, INCRs, pipelines, MULTI/EXEC) plus
a publisher and a subscriber, all without retries, each on one connection for its whole life.
Prints READY once every client is connected and working, runs until the file argv[2] exists,
then checks every acknowledged write and prints one JSON line with what it saw.

usage: upgrade_load.py HOST:PORT STOP_FILE
"""

import json
import os
import sys
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
stop_file = sys.argv[2]
stop = threading.Event()
CHANNEL = "upgrade:news"


def one_connection(name, protocol=2):
    """A client whose every command and pipeline uses one connection, with no retry: a closed
    connection is an error on the next command, never a silent reconnect."""
    pool = redis.BlockingConnectionPool(
        host=host,
        port=port,
        max_connections=1,
        timeout=10,
        socket_timeout=10,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        client_name=name,
        protocol=protocol,
    )
    return pool, redis.Redis(connection_pool=pool)


class Client(threading.Thread):
    """One load client; `kind` is what it does in a loop."""

    def __init__(self, index, kind):
        super().__init__(daemon=True)
        self.index, self.kind = index, kind
        self.name = f"load-{index}"
        # One of them speaks RESP3: its protocol must survive the moves too.
        self.pool, self.r = one_connection(self.name, protocol=3 if index == 7 else 2)
        self.errors, self.acked, self.ops, self.name_mismatch = [], [], 0, []
        self.ready = threading.Event()
        self.sock = None

    def connection(self):
        return self.pool._connections[0] if self.pool._connections else None

    def run(self):
        n = 0
        while not stop.is_set():
            n += 1
            try:
                self.step(n)
                self.ops += 1
                if n % 50 == 0:
                    name = self.r.client_getname()
                    if name not in (self.name, self.name.encode()):
                        self.name_mismatch.append(f"{self.name}: {name!r}")
            except Exception as e:  # every error counts: none is expected
                self.errors.append(f"{self.name} op {n}: {e!r}")
            if n == 20:
                self.sock = self.connection()._sock
                self.local = self.sock.getsockname()
                self.ready.set()
            time.sleep(0.001)

    def step(self, n):
        i = self.index
        if self.kind == "set":
            key = f"upgrade:set:{i}:{n}"
            if self.r.set(key, n):
                self.acked.append((key, str(n)))
        elif self.kind == "incr":
            value = self.r.incr(f"upgrade:incr:{i}")
            self.acked.append(value)
        elif self.kind == "pipeline":
            pipe = self.r.pipeline(transaction=False)
            keys = [f"upgrade:pipe:{i}:{n}:{j}" for j in range(10)]
            for key in keys:
                pipe.set(key, n)
            if pipe.execute() == [True] * 10:
                self.acked.extend((key, str(n)) for key in keys)
        elif self.kind == "multi":
            tag = f"{{upgrade:tx:{i}}}"
            pipe = self.r.pipeline(transaction=True)
            pipe.incr(f"{tag}:count")
            pipe.set(f"{tag}:last", n)
            count, ok = pipe.execute()
            if ok:
                self.acked.append((count, n))

    def same_connection(self):
        conn = self.connection()
        return (
            len(self.pool._connections) == 1
            and conn is not None
            and conn._sock is self.sock
            and conn._sock.getsockname() == self.local
        )


class Subscriber(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.pool, r = one_connection("subscriber")
        self.p = r.pubsub()
        self.got, self.errors = [], []
        self.ready = threading.Event()

    def run(self):
        try:
            self.p.subscribe(CHANNEL)
            confirmation = self.p.get_message(timeout=5)
            if not confirmation or confirmation["type"] != "subscribe":
                self.errors.append(f"no confirmation: {confirmation!r}")
            self.sock = self.p.connection._sock
            self.local = self.sock.getsockname()
        except Exception as e:
            self.errors.append(f"subscribe: {e!r}")
        self.ready.set()
        while not self.done.is_set():
            try:
                m = self.p.get_message(timeout=0.2)
                if m and m["type"] == "message":
                    self.got.append(int(m["data"]))
                elif m:
                    self.errors.append(f"unexpected {m!r}")
            except Exception as e:
                self.errors.append(f"subscriber: {e!r}")
                time.sleep(0.1)

    def same_connection(self):
        conn = self.p.connection
        return conn is not None and conn._sock is self.sock and conn._sock.getsockname() == self.local


class Publisher(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.pool, self.r = one_connection("publisher")
        self.sent, self.errors, self.receivers = [], [], []

    def run(self):
        n = 0
        while not stop.is_set():
            n += 1
            try:
                receivers = self.r.publish(CHANNEL, n)
                self.sent.append(n)
                self.receivers.append(receivers)
                if n == 1:
                    self.sock = self.pool._connections[0]._sock
                    self.local = self.sock.getsockname()
            except Exception as e:
                self.errors.append(f"publish {n}: {e!r}")
            time.sleep(0.005)

    def same_connection(self):
        conn = self.pool._connections[0] if len(self.pool._connections) == 1 else None
        return conn is not None and conn._sock is self.sock and conn._sock.getsockname() == self.local


kinds = ["set", "set", "incr", "incr", "pipeline", "pipeline", "multi", "multi"]
clients = [Client(i, kind) for i, kind in enumerate(kinds)]
subscriber = Subscriber()
subscriber.done = threading.Event()
publisher = Publisher()
subscriber.start()
subscriber.ready.wait(10)
for c in clients:
    c.start()
for c in clients:
    c.ready.wait(10)
publisher.start()
print("READY", flush=True)

while not os.path.exists(stop_file):
    time.sleep(0.05)
stop.set()
for c in clients:
    c.join(15)
publisher.join(15)
# Every published message had a subscriber when it was published: wait for the last one.
deadline = time.time() + 10
last = publisher.sent[-1] if publisher.sent else 0
while time.time() < deadline and (last not in subscriber.got):
    time.sleep(0.05)
subscriber.done.set()
subscriber.join(5)

# Check every acknowledged write with a fresh client.
check = redis.Redis(host=host, port=port, decode_responses=True)
missing = []
for c in clients:
    if c.kind in ("set", "pipeline"):
        pairs = c.acked
        for start in range(0, len(pairs), 500):
            chunk = pairs[start : start + 500]
            values = check.mget([k for k, _ in chunk])
            missing += [k for (k, v), got in zip(chunk, values) if got != v]
    elif c.kind == "incr":
        value = int(check.get(f"upgrade:incr:{c.index}") or 0)
        if c.acked and value < c.acked[-1]:
            missing.append(f"incr {c.index}: {value} < acknowledged {c.acked[-1]}")
    elif c.kind == "multi":
        tag = f"{{upgrade:tx:{c.index}}}"
        count = int(check.get(f"{tag}:count") or 0)
        if c.acked and (count < c.acked[-1][0] or check.get(f"{tag}:last") != str(c.acked[-1][1])):
            missing.append(f"multi {c.index}: count {count}, acked {c.acked[-1]}")

received = set(subscriber.got)
print(
    json.dumps(
        {
            "ops": sum(c.ops for c in clients),
            "acked": sum(len(c.acked) for c in clients),
            "errors": [e for c in clients for e in c.errors] + publisher.errors + subscriber.errors,
            "reconnected": [c.name for c in clients if not c.same_connection()]
            + ([] if subscriber.same_connection() else ["subscriber"])
            + ([] if publisher.same_connection() else ["publisher"]),
            "name_mismatch": [m for c in clients for m in c.name_mismatch][:10],
            "missing": missing[:20],
            "missing_count": len(missing),
            "published": len(publisher.sent),
            "lost": [n for n in publisher.sent if n not in received][:20],
            "duplicates": len(subscriber.got) - len(received),
            "max_receivers": max(publisher.receivers or [0]),
            "min_receivers": min(publisher.receivers or [0]),
        }
    ),
    flush=True,
)
