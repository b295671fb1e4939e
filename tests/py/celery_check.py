"""Celery's "First steps" against redis://ADDR/0 (slotgate, or a plain Redis) as broker and
result backend, with a worker started as the guide shows (`celery -A celery_tasks worker`,
with the solo pool: one process, no forks). Proves that kombu's Redis transport and Celery's
Redis result backend work: 20 `add.delay(i, i)` come back right, a task that raises comes
back as a failure, a chord (the backend joins its header's results in a MULTI over
celery-taskset-meta-* keys) sums its header, the worker is still alive at the end (the known
failure is the worker dying on a CROSSSLOT error from its MULTI over a queue's priority
lists), and its warm shutdown (SIGTERM) puts the 2 ETA tasks it holds back on the queue
(kombu's restore: one MULTI over "unacked", "unacked_index" and "celery").

Usage: celery_check.py HOST:PORT. Exits non-zero with a message (and the worker's log) on
the first wrong result; bounded to about 90 s (the worker is killed by its pid if it hangs).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import celery
import redis
from celery.exceptions import TimeoutError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TASKS = 20
RESULT_LIMIT = 15  # seconds for one result; the worker picks tasks up within one
TOTAL_LIMIT = 75  # seconds for every result together
STOP_LIMIT = 10  # seconds for the warm shutdown before the worker is killed
# Lines of the worker's log that show a broken broker or backend connection even when
# every result arrived (kombu restores unacked messages, Celery retries the connection).
BAD_LINES = ("CROSSSLOT", "CrossSlot", "Unrecoverable error", "consumer: Cannot connect", "Connection to broker lost")


def main():
    addr = sys.argv[1]
    os.environ["SLOTGATE_CELERY_URL"] = f"redis://{addr}/0"
    import celery_tasks  # reads SLOTGATE_CELERY_URL

    log = tempfile.NamedTemporaryFile("w+", prefix="celery-worker-", suffix=".log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
               "--pool=solo", "--concurrency=1", "-l", "info", "-n", f"check-{os.getpid()}@%h"]
    worker = subprocess.Popen(command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    try:
        run(celery_tasks, worker, log)
    except Exception:  # the client's own error (e.g. CROSSSLOT at the first delay), with the log
        time.sleep(1)  # the worker's own fate, for the log
        fail(traceback.format_exc(), log)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def worker_log(log):
    log.flush()
    with open(log.name, encoding="utf-8", errors="replace") as f:
        return f.read()


def fail(what, log):
    print(f"FAILED: {what}\n--- worker log ---\n{worker_log(log)}", file=sys.stderr)
    sys.exit(1)


def result_of(result, worker, log, deadline, **get):
    """`result.get`, a second at a time so a dead worker fails at once, until `deadline`."""
    limit = min(deadline, time.monotonic() + RESULT_LIMIT)
    while True:
        if worker.poll() is not None:
            fail(f"the worker exited ({worker.returncode}) before task {result.id} finished", log)
        try:
            return result.get(timeout=1, **get)
        except TimeoutError:
            if time.monotonic() >= limit:
                fail(f"no result for task {result.id} within {RESULT_LIMIT} s (state {result.state})", log)


def wait_for_log(needle, worker, log, deadline):
    """Wait until the worker logged `needle` (it received a task), at most until `deadline`."""
    while needle not in worker_log(log):
        if worker.poll() is not None:
            fail(f"the worker exited ({worker.returncode}) while waiting for {needle!r}", log)
        if time.monotonic() >= deadline:
            fail(f"the worker never logged {needle!r}", log)
        time.sleep(0.05)


def run(celery_tasks, worker, log):
    deadline = time.monotonic() + TOTAL_LIMIT
    results = [(i, celery_tasks.add.delay(i, i)) for i in range(TASKS)]
    failing = celery_tasks.fail.delay("boom from celery_check")
    chord = celery.chord(celery_tasks.add.s(i, i) for i in range(5))(celery_tasks.xsum.s())
    for i, result in results:
        got = result_of(result, worker, log, deadline)
        if got != 2 * i:
            fail(f"add({i}, {i}) returned {got!r}, not {2 * i}", log)
    result_of(failing, worker, log, deadline, propagate=False)
    if not failing.failed() or "boom from celery_check" not in repr(failing.result):
        fail(f"the raising task is {failing.state} with {failing.result!r}, not a failure", log)
    got = result_of(chord, worker, log, deadline)
    if got != 20:
        fail(f"the chord of add(i, i) for i < 5 summed to {got!r}, not 20", log)

    # Tasks with an ETA wait in the worker, unacknowledged (kombu's "unacked" hash and
    # "unacked_index"); a warm shutdown must put them back on the "celery" list, in one
    # MULTI/EXEC over all three keys, watching "unacked".
    later = [celery_tasks.add.apply_async((i, i), countdown=600) for i in range(2)]
    for result in later:
        wait_for_log(f"celery_tasks.add[{result.id}] received", worker, log, deadline)
    if worker.poll() is not None:
        fail(f"the worker exited ({worker.returncode}) after the tasks finished", log)
    worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown
    try:
        worker.wait(timeout=STOP_LIMIT)
    except subprocess.TimeoutExpired:
        fail(f"the worker did not stop within {STOP_LIMIT} s of SIGTERM", log)
    # Read with a plain client: kombu's prefixing client (global_keyprefix) leaves LRANGE alone.
    prefix = celery_tasks.PREFIX or ""
    client = redis.Redis.from_url(celery_tasks.URL, socket_timeout=10)
    queued = b"".join(client.lrange(prefix + "celery", 0, -1))
    unacked = b"".join(client.hvals(prefix + "unacked"))
    for result in later:
        if result.id.encode() not in queued or result.id.encode() in unacked:
            fail(f"the ETA task {result.id} was not restored to the queue at the warm shutdown", log)
    celery_tasks.app.control.purge()  # so that a later run against the same server starts empty
    text = worker_log(log)
    bad = [line for line in text.splitlines() if any(b in line for b in BAD_LINES)]
    if bad:
        fail("the worker logged broker errors:\n" + "\n".join(bad), log)
    if worker.returncode != 0:
        fail(f"the worker exited {worker.returncode} after SIGTERM", log)
    print(f"celery: {TASKS} tasks, a failing task and a chord as expected; the worker stopped cleanly"
          " and put its 2 ETA tasks back on the queue")


if __name__ == "__main__":
    main()
