"""RQ's quick start against redis://ADDR (slotgate, or a plain Redis): jobs enqueued with
Queue.enqueue, run by `rq worker --with-scheduler --burst` (the quick start's worker, in
burst mode so that it exits once the queue is empty), every job's status and return value
read back. Proves that RQ's transactions (MULTI/EXEC with WATCH over rq:* keys) and Lua
scripts work: 50 jobs finish with the right result, a job that raises is marked failed with
its exception, and a job with depends_on runs after its dependency and finishes.

Usage: rq_check.py HOST:PORT. Exits non-zero with a message on the first wrong result; the
worker gets at most WORKER_LIMIT seconds, so a run is bounded to about a minute.
"""

import os
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import JobStatus  # noqa: E402

import rq_tasks  # noqa: E402

WORKER_LIMIT = 50  # seconds the burst worker may take for every job
JOBS = 50


def fail(what):
    print(f"FAILED: {what}", file=sys.stderr)
    sys.exit(1)


def main():
    addr = sys.argv[1]
    url = f"redis://{addr}"
    redis = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    # A queue of its own per run: reruns against one server do not see older jobs.
    queue = Queue(f"check-{uuid.uuid4().hex[:8]}", connection=redis)

    expected = {}
    for i in range(JOBS):
        text = " ".join(["word"] * (i + 1))
        job = queue.enqueue(rq_tasks.count_words, text)
        expected[job.id] = i + 1
    failing = queue.enqueue(rq_tasks.fail, "boom from rq_check")
    first = queue.enqueue(rq_tasks.add, 40, 1)
    dependent = queue.enqueue(rq_tasks.add, 40, 2, depends_on=first)
    expected[first.id] = 41
    expected[dependent.id] = 42
    if dependent.get_status() != JobStatus.DEFERRED:
        fail(f"a job with depends_on is {dependent.get_status()} before its dependency ran, not deferred")

    # The quick start's worker, from the venv that runs this script, in burst mode.
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    command = [rq] if os.path.exists(rq) else [sys.executable, "-m", "rq.cli"]
    command += ["worker", "--with-scheduler", "--burst", "--url", url, queue.name]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    started = time.monotonic()
    try:
        worker = subprocess.run(
            command, cwd=HERE, env=env, capture_output=True, text=True, timeout=WORKER_LIMIT
        )
    except subprocess.TimeoutExpired as e:  # run() has killed it
        fail(f"the burst worker did not finish within {WORKER_LIMIT} s:\n{e.stdout}\n{e.stderr}")
    log = f"worker exit {worker.returncode} after {time.monotonic() - started:.1f} s:\n{worker.stdout}\n{worker.stderr}"
    if worker.returncode != 0:
        fail(f"the burst worker failed: {log}")

    for job_id, want in expected.items():
        job = queue.fetch_job(job_id)
        if job is None:
            fail(f"job {job_id} is gone; {log}")
        status = job.get_status()
        if status != JobStatus.FINISHED:
            fail(f"job {job_id} ({job.func_name}{job.args}) is {status}, not finished: {job.exc_info}\n{log}")
        got = job.return_value()
        if got != want:
            fail(f"job {job_id} ({job.func_name}{job.args}) returned {got!r}, not {want!r}; {log}")

    failing = queue.fetch_job(failing.id)
    if failing is None or failing.get_status() != JobStatus.FAILED:
        fail(f"the raising job is {failing and failing.get_status()}, not failed; {log}")
    if "boom from rq_check" not in (failing.exc_info or ""):
        fail(f"the failed job's exc_info lacks its exception: {failing.exc_info!r}")
    if failing.id not in queue.failed_job_registry.get_job_ids():
        fail("the failed job is not in the queue's FailedJobRegistry")
    if len(queue) != 0:
        fail(f"{len(queue)} jobs are still queued after the burst worker exited")

    print(f"rq: {JOBS} jobs, a dependent job and a failing job as expected; {log.splitlines()[0]}")


if __name__ == "__main__":
    main()
