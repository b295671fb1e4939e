#!/usr/bin/env python3
"""Drive redis-benchmark against several targets, interleaved, with CPU accounting.

usage: drive.py [options] TARGET [TARGET...]      (normally started by benches/e2e.sh)

TARGET is NAME=PORT[@OPT,OPT...] on 127.0.0.1, with OPT among
  pid=PID[:PID]     the proxy process(es): their CPU time (utime+stime of /proc/PID/stat, all
                    threads) is charged per request ("proxy µs/req"); stime alone is kept
                    too, for the share the kernel does on the proxy's behalf
  srv=PID[:PID...]  the backend redis-servers behind the target ("backend µs/req")
  cluster           a Redis Cluster node: redis-benchmark --cluster (client-side routing)
  skip=W/P[:W/P]    leave workload W at pipeline P out for this target

Order: for each round, for each workload, for each pipeline depth, every target in the order
given (A B C A B C ...). The request count -n of each (target, workload, P) is calibrated once
by probe runs so that a run lasts about --duration seconds, and then kept for every round.

A run during which other processes on the machine used more than --foreign-max cores on
average is retried (at most --retries more times) after waiting for a quiet machine; the
waiting is capped in total by --retry-budget seconds, and the whole drive by --max-seconds
(runs left when it is reached are skipped and reported as such).

Writes one CSV row per run to --out (see COLUMNS).
"""
import argparse
import csv
import os
import re
import resource
import signal
import subprocess
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")
COLUMNS = ["round", "workload", "pipeline", "target", "n", "procs", "rc", "errors", "wall_s",
           "rps", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "proxy_cpu_s",
           "proxy_sys_cpu_s", "backend_cpu_s", "client_cpu_s", "foreign_cpu_s", "attempts"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Target:
    def __init__(self, spec):
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)=([0-9]+)(?:@(.*))?", spec)
        if not m:
            sys.exit(f"drive.py: bad target {spec!r}")
        self.name, self.port = m.group(1), int(m.group(2))
        self.pids, self.srv, self.cluster, self.skip = [], [], False, set()
        for o in filter(None, (m.group(3) or "").split(",")):
            if o.startswith("pid="):
                self.pids = [int(p) for p in o[4:].split(":") if p]
            elif o.startswith("srv="):
                self.srv = [int(p) for p in o[4:].split(":") if p]
            elif o.startswith("skip="):
                self.skip = set(o[5:].split(":"))
            elif o == "cluster":
                self.cluster = True
            else:
                sys.exit(f"drive.py: target {self.name}: unknown option {o!r}")

    def runs(self, w, p):
        return f"{w}/{p}" not in self.skip

    def alive(self):
        return all(os.path.exists(f"/proc/{p}") for p in self.pids)


def ticks(pids, user=True):
    """utime+stime (user=False: stime only) of the given processes, in clock ticks (0 for a
    vanished one)."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += (int(fields[11]) if user else 0) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return t


def all_ticks():
    """CPU ticks of every visible user process, with its reaped children (cutime+cstime).
    Kernel threads (kthreadd and its children, e.g. ksoftirqd carrying our own loopback
    traffic) are left out."""
    t = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or d == "2":
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[1] == "2":
                continue
            t += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return t


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def workload_args(w, cluster):
    tag = ":{tag}" if cluster else ""
    if w in ("set", "get", "mset"):
        return ["-t", w]
    if w == "mget":
        return ["MGET"] + [f"key{tag}:__rand_int__"] * 10
    sys.exit(f"drive.py: unknown workload {w}")


class Bench:
    def __init__(self, a):
        self.a = a
        self.logdir = os.path.join(os.path.dirname(os.path.abspath(a.out)), "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.retry_budget = a.retry_budget

    def pin(self):
        return ["taskset", "-c", self.a.client_cpus] if self.a.client_cpus else []

    def run_once(self, t, w, p, n, label, timeout=None):
        """One measurement: --procs redis-benchmark processes together. Returns a dict."""
        a = self.a
        procs = max(1, a.procs)
        clients = max(1, a.clients // procs)
        each = max(clients * p, n // procs)
        cmd = self.pin() + [a.redis_benchmark, "-h", "127.0.0.1", "-p", str(t.port)]
        if t.cluster:
            cmd += ["--cluster", "--threads", "1"]
        cmd += ["-c", str(clients), "-n", str(each), "-r", str(a.keyspace), "-d", str(a.value),
                "-P", str(p), "--csv"] + workload_args(w, t.cluster)
        base = os.path.join(self.logdir, label)
        pa, sa, ua, ca = ticks(t.pids), ticks(t.srv), all_ticks(), children_cpu()
        ka = ticks(t.pids, user=False)
        t0 = time.monotonic()
        running = []
        for k in range(procs):
            out = open(f"{base}.{k}.out", "w+")
            err = open(f"{base}.{k}.err", "w+")
            running.append((subprocess.Popen(cmd, stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL), out, err))
        rc, deadline = 0, t0 + (timeout or a.run_timeout)
        try:
            for proc, _, _ in running:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    rc = 124
                rc = rc or proc.returncode
        finally:  # also when we are terminated: leave no redis-benchmark behind
            for proc, _, _ in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        wall = time.monotonic() - t0
        pb, sb, ub, cb = ticks(t.pids), ticks(t.srv), all_ticks(), children_cpu()
        kb = ticks(t.pids, user=False)
        r = {"n": each * procs, "procs": procs, "wall_s": wall, "rc": rc, "errors": 0}
        rows = []
        for proc, out, err in running:
            out.seek(0)
            err.seek(0)
            lines = [ln for ln in out.read().splitlines()
                     if ln.startswith('"') and not ln.startswith('"test"')]
            r["errors"] += sum(1 for ln in err.read().splitlines() if "rror" in ln)
            out.close()
            err.close()
            if lines:
                rows.append([float(x) for x in re.sub(r'^"[^"]*",', "", lines[-1])
                             .replace('"', "").split(",")])
        if rc == 0 and len(rows) != procs:
            r["rc"] = rc = 99
        if rc == 0:
            # rps add up over processes; p50/avg are averaged, p95/p99/max are the worst one's
            r["rps"] = sum(x[0] for x in rows)
            r["avg_ms"] = sum(x[1] for x in rows) / procs
            r["p50_ms"] = sum(x[3] for x in rows) / procs
            r["p95_ms"], r["p99_ms"], r["max_ms"] = (max(x[i] for x in rows) for i in (4, 5, 6))
            for k in range(procs):  # keep the logs of failed runs only
                for ext in ("out", "err"):
                    os.unlink(f"{base}.{k}.{ext}")
        proxy = (pb - pa) / TCK if t.pids else None
        backend = (sb - sa) / TCK if t.srv else None
        client = cb - ca
        foreign = max(0.0, (ub - ua) / TCK - (proxy or 0) - (backend or 0) - client)
        r.update(proxy_cpu_s=proxy, proxy_sys_cpu_s=(kb - ka) / TCK if t.pids else None,
                 backend_cpu_s=backend, client_cpu_s=client,
                 foreign_cpu_s=foreign)
        return r

    def wait_quiet(self):
        """Wait until other processes use less than --quiet-max cores (2 s windows)."""
        a, t0 = self.a, time.monotonic()
        while self.retry_budget > 0:
            u0 = all_ticks()
            time.sleep(2)
            cores = (all_ticks() - u0) / TCK / 2
            self.retry_budget -= time.monotonic() - t0
            t0 = time.monotonic()
            if cores < a.quiet_max:
                return
            time.sleep(1)
        log("retry budget used up: no more waiting for a quiet machine")

    def measure(self, t, w, p, n, label, timeout=None):
        a, attempts = self.a, 0
        while True:
            attempts += 1
            r = self.run_once(t, w, p, n, label, timeout)
            r["attempts"] = attempts
            busy = r["wall_s"] >= 1 and r["foreign_cpu_s"] / r["wall_s"] > a.foreign_max
            if busy and attempts <= a.retries and self.retry_budget > 0:
                log(f"{t.name} {w} P{p}: other processes used "
                    f"{r['foreign_cpu_s'] / r['wall_s']:.2f} cores, retrying after a quiet period")
                self.wait_quiet()
                continue
            return r

    def calibrate(self, t, w, p):
        a = self.a
        n = a.cal_n * p
        for probe in range(4):
            r = self.run_once(t, w, p, n, f"cal{probe}-{w}-P{p}-{t.name}", a.cal_timeout)
            if r["rc"] != 0:
                log(f"calibration {t.name} {w} P{p} FAILED (rc={r['rc']}), left out; "
                    f"logs in {self.logdir}")
                return 0
            if r["wall_s"] >= a.cal_min_s:
                break
            n = max(2 * n, int(r["rps"] * a.cal_min_s * 1.3))
        q = a.clients * p
        n = int(r["rps"] * a.duration / q + 1) * q
        return max(a.min_n, min(a.max_n, n))


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def main():
    e = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="raw CSV file to write")
    ap.add_argument("--reps", type=int, default=int(e("REPS", 3)))
    ap.add_argument("--duration", type=float, default=float(e("DURATION", 6)))
    ap.add_argument("--clients", type=int, default=int(e("CLIENTS", 50)))
    ap.add_argument("--procs", type=int, default=int(e("BENCH_PROCS", 1)),
                    help="redis-benchmark processes per run (clients and -n are split)")
    ap.add_argument("--keyspace", type=int, default=int(e("KEYSPACE", 100000)))
    ap.add_argument("--value", type=int, default=int(e("VALUE", 32)))
    ap.add_argument("--pipelines", default=e("PIPELINES", "1 16"))
    ap.add_argument("--workloads", default=e("WORKLOADS", "set get mset mget"))
    ap.add_argument("--client-cpus", default=e("CLIENT_CPUS", "0"))
    ap.add_argument("--cal-n", type=int, default=int(e("CAL_N", 10000)))
    ap.add_argument("--cal-min-s", type=float, default=float(e("CAL_MIN_S", 1.5)))
    ap.add_argument("--cal-timeout", type=float, default=30)
    ap.add_argument("--min-n", type=int, default=int(e("MIN_N", 20000)))
    ap.add_argument("--max-n", type=int, default=int(e("MAX_N", 20000000)))
    ap.add_argument("--run-timeout", type=float, default=None)
    ap.add_argument("--foreign-max", type=float, default=float(e("FOREIGN_MAX", 0.15)))
    ap.add_argument("--quiet-max", type=float, default=float(e("QUIET_MAX", 0.10)))
    ap.add_argument("--retries", type=int, default=int(e("RETRIES", 3)))
    ap.add_argument("--retry-budget", type=float, default=float(e("RETRY_BUDGET", 600)))
    ap.add_argument("--max-seconds", type=float, default=float(e("MAX_SECONDS", 5400)))
    ap.add_argument("--redis-benchmark", default=e("REDIS_BENCHMARK", "redis-benchmark"))
    ap.add_argument("targets", nargs="+")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.run_timeout = a.run_timeout or max(60.0, 10 * a.duration)
    targets = [Target(s) for s in a.targets]
    wls, pls = a.workloads.split(), [int(p) for p in a.pipelines.split()]
    b = Bench(a)
    start = time.monotonic()

    cells = [(w, p, t) for w in wls for p in pls for t in targets if t.runs(w, p)]
    est = len(cells) * (a.reps * a.duration + 2 * a.cal_min_s)
    log(f"{len(cells)} (workload, P, target) cells x {a.reps} round(s) of ~{a.duration:g} s "
        f"+ calibration: about {est / 60:.1f} min (more if runs are retried; "
        f"hard limit {a.max_seconds / 60:.0f} min)")

    nreq = {}
    for w, p, t in cells:
        nreq[(w, p, t.name)] = b.calibrate(t, w, p)
        log(f"calibration {t.name} {w} P{p}: n={nreq[(w, p, t.name)]}")

    with open(a.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for rnd in range(1, a.reps + 1):
            for w, p, t in cells:
                n = nreq[(w, p, t.name)]
                if not n:
                    continue
                row = {"round": rnd, "workload": w, "pipeline": p, "target": t.name, "n": n}
                if time.monotonic() - start > a.max_seconds:
                    log(f"round {rnd} {w} P{p} {t.name}: time limit reached, skipped")
                    row.update(rc="timeup")
                elif not t.alive():
                    log(f"round {rnd} {w} P{p} {t.name}: the proxy process is gone, skipped")
                    row.update(rc="dead")
                else:
                    row.update(b.measure(t, w, p, n, f"run{rnd}-{w}-P{p}-{t.name}"))
                    pc = row["proxy_cpu_s"]
                    pus = "-" if pc is None else "%.2f us/req" % (pc / row["n"] * 1e6)
                    log(f"round {rnd} {w} P{p} {t.name}: rc={row['rc']} "
                        f"rps={row.get('rps', 0):,.0f} p99={row.get('p99_ms', '-')} ms "
                        f"proxy={pus} others={row['foreign_cpu_s'] / row['wall_s']:.2f} cores "
                        f"errors={row['errors']}")
                out.writerow([fmt(row.get(c)) for c in COLUMNS])
                f.flush()
    log(f"drive done in {(time.monotonic() - start) / 60:.1f} min: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
