#!/usr/bin/env python3
"""Many idle client connections: memory per connection, and an accept storm under load.

usage: idle.py hold PORT N             (a child: opens the connections, holds them)
       idle.py run --pid PID --port PORT --conns N --out DIR [--rounds R] [--duration S]

`hold` raises its own open-files limit to the hard limit, connects N sockets to
127.0.0.1:PORT one after the other, sends one PING on each and reads every reply (so each
connection has been accepted and served once; a refusal such as "max number of clients
reached" is counted), prints one JSON line {"connected", "pong", "refused", "failed",
"storm_s"} and keeps the connections open, idle, until its stdin is closed.

`run` measures the proxy PID listening on PORT, REPS rounds of:
  A  redis-benchmark alone (SET, pipeline 1, CLIENTS clients): rps and p99
  B  the same run while `hold` opens N connections at the same moment (the accept storm)
  C  the same run again with the N connections held open, idle
and VmRSS of the proxy before B, with the N connections held (after C) and after they are
closed: KiB per connection = (RSS held - RSS before) / connections served, in round 1 (a
fresh process), and in the last round against round 1's starting RSS (memory that freed
connections leave resident and later ones do not reuse shows up there). Writes
DIR/idle.csv, DIR/idle.json and DIR/idle.md and prints the Markdown.
"""
import argparse
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drive  # noqa: E402


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def hold(port, n):
    limit = raise_nofile()
    if n + 50 > limit:
        print(f"idle.py: open-files limit {limit} is too low for {n} connections",
              file=sys.stderr)
    t0 = time.monotonic()
    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        except OSError:
            failed += 1
    ping = b"*1\r\n$4\r\nPING\r\n"
    sel = selectors.DefaultSelector()
    for s in socks:
        try:
            s.sendall(ping)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        except OSError:
            failed += 1
    pong = refused = 0
    pending = len(sel.get_map())
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            try:
                data = key.fileobj.recv(256)
            except OSError:
                data = b""
            if data.startswith(b"+PONG"):
                pong += 1
            else:
                refused += 1
            sel.unregister(key.fileobj)
            pending -= 1
    storm = time.monotonic() - t0
    print(json.dumps({"connected": len(socks), "pong": pong, "refused": refused,
                      "failed": failed + pending, "storm_s": round(storm, 3)}), flush=True)
    sys.stdin.read()  # hold until the parent closes our stdin
    for s in socks:
        s.close()


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def info_clients(port):
    """connected_clients from INFO clients, or None."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$7\r\nclients\r\n")
        data = b""
        while b"connected_clients" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("connected_clients:"):
                return int(line.split(":")[1])
    except OSError:
        pass
    return None


def run(a):
    pin = ["taskset", "-c", a.client_cpus] if a.client_cpus else []
    ns = argparse.Namespace(out=os.path.join(a.out, "idle-raw.csv"), procs=1,
                            clients=a.clients, keyspace=a.keyspace, value=a.value,
                            client_cpus=a.client_cpus, redis_benchmark="redis-benchmark",
                            run_timeout=max(60, 10 * a.duration), retry_budget=0,
                            cal_n=10000, cal_min_s=min(1.5, a.duration), cal_timeout=30,
                            min_n=20000, max_n=20000000, duration=a.duration)
    b = drive.Bench(ns)
    t = drive.Target(f"proxy={a.port}@pid={a.pid}")
    n = b.calibrate(t, "set", 1)
    if not n:
        sys.exit("idle.py: calibration run failed")
    drive.log(f"idle: n={n} per run, {a.rounds} round(s) of 3 runs + {a.conns} connections")
    rows = []
    for rnd in range(1, a.rounds + 1):
        r = {"round": rnd}
        ra = b.run_once(t, "set", 1, n, f"idle{rnd}-A")
        r["rss_before_kib"] = vmrss_kib(a.pid)
        holder = subprocess.Popen(pin + [sys.executable, os.path.abspath(__file__), "hold",
                                         str(a.port), str(a.conns)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            rb = b.run_once(t, "set", 1, n, f"idle{rnd}-B")
            storm = json.loads(holder.stdout.readline() or "{}")
            r["clients_seen"] = info_clients(a.port)
            rc = b.run_once(t, "set", 1, n, f"idle{rnd}-C")
            time.sleep(0.5)
            r["rss_held_kib"] = vmrss_kib(a.pid)
        finally:
            holder.stdin.close()
            try:
                holder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        time.sleep(1.5)
        r["rss_after_close_kib"] = vmrss_kib(a.pid)
        r["clients_after_close"] = info_clients(a.port)
        r.update({f"storm_{k}": v for k, v in storm.items()})
        served = storm.get("pong") or 0
        r["kib_per_conn"] = ((r["rss_held_kib"] - r["rss_before_kib"]) / served
                             if served else None)
        for tag, x in (("alone", ra), ("storm", rb), ("held", rc)):
            r[f"rps_{tag}"] = x.get("rps")
            r[f"p99_{tag}_ms"] = x.get("p99_ms")
            r[f"wall_{tag}_s"] = round(x["wall_s"], 3)
            r[f"errors_{tag}"] = x["errors"]
        drive.log(f"idle round {rnd}: " + " ".join(f"{k}={v}" for k, v in r.items()))
        rows.append(r)

    def med(k):
        xs = [x[k] for x in rows if x.get(k) is not None]
        return statistics.median(xs) if xs else None

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    last = rows[-1]
    churn = ((last["rss_held_kib"] - rows[0]["rss_before_kib"]) / last["storm_pong"]
             if last.get("storm_pong") else None)
    ratio = [x["rps_storm"] / x["rps_alone"] for x in rows
             if x.get("rps_storm") and x.get("rps_alone")]
    ratio_h = [x["rps_held"] / x["rps_alone"] for x in rows
               if x.get("rps_held") and x.get("rps_alone")]
    md = [f"{a.conns} idle connections to slotgate (PING once each, then idle); "
          f"redis-benchmark SET P1, {a.clients} clients, n={n}; medians of {len(rows)} "
          "round(s).", "",
          "| measure | value |", "|---|---:|",
          f"| connections served (PONG) / refused / failed | {f(med('storm_pong'), '.0f')} / "
          f"{f(med('storm_refused'), '.0f')} / {f(med('storm_failed'), '.0f')} |",
          f"| connected_clients seen by INFO during the hold | "
          f"{f(med('clients_seen'), '.0f')} |",
          f"| time to open and PING them all (s) | {f(med('storm_storm_s'), '.2f')} |",
          f"| proxy VmRSS before (MiB, round 1) | "
          f"{f(rows[0]['rss_before_kib'] / 1024, '.1f')} |",
          f"| proxy VmRSS with the connections held (MiB, round 1) | "
          f"{f(rows[0]['rss_held_kib'] / 1024, '.1f')} |",
          f"| proxy VmRSS 1.5 s after they closed (MiB, round 1) | "
          f"{f(rows[0]['rss_after_close_kib'] / 1024, '.1f')} |",
          f"| connected_clients seen by INFO after they closed | "
          f"{f(med('clients_after_close'), '.0f')} |",
          f"| **KiB per idle connection** (round 1: a fresh process) "
          f"| **{f(rows[0].get('kib_per_conn'), '.1f')}** |",
          *([f"| KiB per idle connection in round {len(rows)}, against the fresh process's "
             f"RSS (after {len(rows) - 1} earlier open/close cycles) | {f(churn, '.1f')} |"]
            if len(rows) > 1 else []),
          f"| proxy VmRSS with the connections held, per round (MiB) | "
          f"{' / '.join(f(x['rss_held_kib'] / 1024, '.0f') for x in rows)} |",
          f"| rps alone | {f(med('rps_alone'), ',.0f')} |",
          f"| rps during the accept storm (the run took {f(med('wall_storm_s'), '.1f')} s, "
          f"the storm {f(med('storm_storm_s'), '.1f')} s, both started together) "
          f"| {f(med('rps_storm'), ',.0f')} ({f(statistics.median(ratio) if ratio else None, '.2f')}x) |",
          f"| rps with the connections held idle | {f(med('rps_held'), ',.0f')} "
          f"({f(statistics.median(ratio_h) if ratio_h else None, '.2f')}x) |",
          f"| p99 ms alone / storm / held | {f(med('p99_alone_ms'), '.3f')} / "
          f"{f(med('p99_storm_ms'), '.3f')} / {f(med('p99_held_ms'), '.3f')} |",
          f"| error replies alone / storm / held | {sum(x['errors_alone'] for x in rows)} / "
          f"{sum(x['errors_storm'] for x in rows)} / {sum(x['errors_held'] for x in rows)} |"]
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "idle.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(a.out, "idle.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    with open(os.path.join(a.out, "idle.csv"), "w") as fh:
        keys = list(rows[0].keys())
        fh.write(",".join(keys) + "\n")
        for x in rows:
            fh.write(",".join("" if x.get(k) is None else str(x.get(k)) for k in keys) + "\n")
    sys.stdout.write(text)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "hold":
        hold(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run"])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("REPS", 3)))
    ap.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", 6)))
    ap.add_argument("--clients", type=int, default=int(os.environ.get("CLIENTS", 50)))
    ap.add_argument("--keyspace", type=int, default=int(os.environ.get("KEYSPACE", 100000)))
    ap.add_argument("--value", type=int, default=int(os.environ.get("VALUE", 32)))
    ap.add_argument("--client-cpus", default=os.environ.get("CLIENT_CPUS", "0"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run(ap.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
