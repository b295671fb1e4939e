"""redis-py (the Python client, as a legacy app would use it) against slotgate: pub/sub,
transactions with WATCH, SCAN. Run by tests/it/redis_py.rs with the proxy's address; exits
non-zero with a message on the first failure."""

import sys
import threading
import time

import redis

host, port = sys.argv[1].rsplit(":", 1)
r = redis.Redis(host=host, port=int(port), decode_responses=True)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


# --- pub/sub: channels and patterns on a subscriber connection, counts as one Redis gives
p = r.pubsub()
p.subscribe("py:news", "py:sport")
p.psubscribe("py:*")
confirmations = [p.get_message(timeout=5) for _ in range(3)]
check([m["type"] for m in confirmations] == ["subscribe", "subscribe", "psubscribe"], f"confirmations {confirmations}")
check([m["data"] for m in confirmations] == [1, 2, 3], f"counts {confirmations}")
check(r.publish("py:news", "hello") == 2, "PUBLISH counts the channel and the pattern subscriber")
got = []
deadline = time.time() + 5
while len(got) < 2 and time.time() < deadline:
    m = p.get_message(timeout=1)
    if m:
        got.append((m["type"], m["channel"], m["data"]))
check(sorted(got) == [("message", "py:news", "hello"), ("pmessage", "py:news", "hello")], f"messages {got}")
check(r.pubsub_numsub("py:news") == [("py:news", 1)], "PUBSUB NUMSUB")
p.unsubscribe()
p.punsubscribe()
p.close()

# A message handler thread, as applications run it.
seen = []
p2 = r.pubsub(ignore_subscribe_messages=True)
p2.subscribe(**{"py:events": lambda m: seen.append(m["data"])})
worker = p2.run_in_thread(sleep_time=0.01)
time.sleep(0.2)
for i in range(50):
    r.publish("py:events", str(i))
deadline = time.time() + 5
while len(seen) < 50 and time.time() < deadline:
    time.sleep(0.05)
worker.stop()
check(seen == [str(i) for i in range(50)], f"50 messages in order, got {len(seen)}")

# --- transactions: MULTI/EXEC pipeline, WATCH with a conflicting writer, Redis' errors
with r.pipeline(transaction=True) as pipe:
    pipe.set("{py}a", 1).incr("{py}a").get("{py}a")
    check(pipe.execute() == [True, 2, "2"], "MULTI/EXEC pipeline")

other = redis.Redis(host=host, port=int(port), decode_responses=True)
with r.pipeline() as pipe:
    pipe.watch("{py}a")
    other.set("{py}a", "changed")
    pipe.multi()
    pipe.set("{py}a", "mine")
    try:
        pipe.execute()
        check(False, "EXEC after a watched key changed must fail")
    except redis.WatchError:
        pass
check(r.get("{py}a") == "changed", "the aborted transaction wrote nothing")


def incr(pipe):
    value = int(pipe.get("{py}counter") or 0)
    pipe.multi()
    pipe.set("{py}counter", value + 1)


threads = [threading.Thread(target=lambda: [r.transaction(incr, "{py}counter") for _ in range(20)]) for _ in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check(r.get("{py}counter") == "100", f"optimistic increments add up: {r.get('{py}counter')}")

raised = ""
try:
    with r.pipeline() as pipe:
        pipe.set("{py}x", 1).set("py-other-slot", 2).execute()
except redis.ResponseError as e:
    raised = str(e)
check("CROSSSLOT" in raised, f"a transaction over two slots fails with CROSSSLOT: {raised!r}")
check(r.get("{py}x") is None, "and runs nothing")

# --- SCAN: scan_iter sees every key exactly once across the masters
r.flushall()
keys = {f"py:scan:{i}" for i in range(500)}
r.mset({k: "v" for k in keys})
seen_keys = list(r.scan_iter(match="py:scan:*", count=50))
check(len(seen_keys) == len(set(seen_keys)) == 500 and set(seen_keys) == keys, f"scan_iter saw {len(seen_keys)} keys")
cursor, small = r.scan(0, match="py:scan:1*", count=1000)
check(cursor == 0 and set(small) == {k for k in keys if k.startswith("py:scan:1")}, "one SCAN call returns a small match whole")
check(r.dbsize() == 500, "DBSIZE summed")
print("redis-py checks passed")
