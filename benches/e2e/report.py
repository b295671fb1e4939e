#!/usr/bin/env python3
"""Summarize drive.py raw CSV files: medians, ratios, Markdown, CSV, JSON and SVG charts.

usage: report.py --dir OUT [--baseline redis] [--ours slotgate,slotgate-pool]
                 [--title TEXT] [--charts] RAW.csv [RAW.csv ...]

Per (workload, pipeline, target), over the rounds:
  rps           median requests per second (redis-benchmark's figure; one MSET/MGET = 1)
  x<baseline>   median over rounds of rps / rps(baseline) in the same round
  p50/p99       median of the runs' latency percentiles (ms)
  proxy us/req  median proxy CPU microseconds per request (/proc utime+stime delta / n)
  proxy cores   median proxy CPU seconds per wall second (how much of a core it used)
  proxy kernel  median share of the proxy's CPU spent in the kernel (stime / utime+stime:
                the system calls and the TCP/IP work done on its behalf)
  backend, client us/req   the same for the redis-servers and redis-benchmark
  proxy+backend us/req     the proxy's and the servers' CPU per request together: the cost
                that decides throughput when they share CPUs (the benchmark pins both to
                SERVER_CPUS), and the one to compare when a proxy's work may be accounted
                to the servers (as under io_uring, docs/BENCHMARKS.md)
  others        median cores used by other processes on the machine during the run
A second table gives each of --ours against the baseline and against every other proxy
present ("peers"): rps, proxy CPU per request and p99, as medians of same-round ratios.

Writes OUT/summary.md, OUT/summary.csv, OUT/summary.json and, with --charts,
OUT/rps.svg (requests/s per workload per target) and OUT/cpu.svg (proxy CPU µs/request).
"""
import argparse
import csv
import json
import os
import statistics
import sys
from collections import defaultdict

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svg  # noqa: E402


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, spec):
    return "-" if x is None else format(x, spec)


def pct(x):
    return "-" if x is None else f"{100 * x:.0f} %"


def load(paths):
    rows, targets, cells = [], [], []
    for fi, p in enumerate(paths):
        with open(p) as fh:
            for r in csv.DictReader(fh):
                r["round_key"] = (fi, r["round"])
                r["pipeline"] = int(r["pipeline"])
                rows.append(r)
                if r["target"] not in targets:
                    targets.append(r["target"])
                if (r["workload"], r["pipeline"]) not in cells:
                    cells.append((r["workload"], r["pipeline"]))
    return rows, targets, cells


def per_req(r, col):
    v, n = num(r.get(col)), num(r.get("n"))
    return None if v is None or not n else v / n * 1e6


def proxy_and_backend(r):
    """(proxy + servers CPU) per request of one run; the servers' alone for a target without
    a proxy (direct Redis, redis-benchmark --cluster)."""
    proxy, backend = per_req(r, "proxy_cpu_s"), per_req(r, "backend_cpu_s")
    return None if backend is None else backend + (proxy or 0.0)


def kernel_share(r):
    """stime / (utime+stime) of the proxy in one run; None without the column (older CSVs)."""
    total, sys_ = num(r.get("proxy_cpu_s")), num(r.get("proxy_sys_cpu_s"))
    return None if total is None or sys_ is None or not total else sys_ / total


def summarize(rows, targets, cells, baseline):
    by = defaultdict(list)
    for r in rows:
        by[(r["workload"], r["pipeline"], r["target"])].append(r)
    ok_by = {k: [r for r in v if r["rc"] == "0"] for k, v in by.items()}
    index = {(r["workload"], r["pipeline"], r["target"], r["round_key"]): r
             for r in rows if r["rc"] == "0"}
    out = []
    for w, p in cells:
        for t in targets:
            if (w, p, t) not in by:
                continue
            ok = ok_by[(w, p, t)]
            ratio = []
            for r in ok:
                b = index.get((w, p, baseline, r["round_key"]))
                if b and num(b["rps"]):
                    ratio.append(num(r["rps"]) / num(b["rps"]))
            out.append({
                "workload": w, "pipeline": p, "target": t,
                "runs_ok": len(ok), "runs": len(by[(w, p, t)]),
                "rps": med(num(r["rps"]) for r in ok),
                "ratio_vs_baseline": med(ratio),
                "p50_ms": med(num(r["p50_ms"]) for r in ok),
                "p99_ms": med(num(r["p99_ms"]) for r in ok),
                "proxy_us_per_req": med(per_req(r, "proxy_cpu_s") for r in ok),
                "proxy_kernel_share": med(kernel_share(r) for r in ok),
                "proxy_cores": med(None if num(r["proxy_cpu_s"]) is None
                                   else num(r["proxy_cpu_s"]) / num(r["wall_s"]) for r in ok),
                "backend_us_per_req": med(per_req(r, "backend_cpu_s") for r in ok),
                "proxy_backend_us_per_req": med(proxy_and_backend(r) for r in ok),
                "client_us_per_req": med(per_req(r, "client_cpu_s") for r in ok),
                "others_cores": med(num(r["foreign_cpu_s"]) / num(r["wall_s"]) for r in ok
                                    if num(r["wall_s"])),
                "errors": sum(int(num(r["errors"]) or 0) for r in ok),
                "retries": sum(max(0, int(num(r["attempts"]) or 1) - 1) for r in ok),
            })
    return out, index


def versus(rows, index, cells, ours, others):
    """For each of ours and each (w, P): medians of same-round ratios against each other."""
    res = []
    rounds = sorted({r["round_key"] for r in rows})
    for o in ours:
        for w, p in cells:
            mine = [index.get((w, p, o, k)) for k in rounds]
            if not any(mine):
                continue
            e = {"target": o, "workload": w, "pipeline": p,
                 "rps": med(num(r["rps"]) for r in mine if r),
                 "proxy_us_per_req": med(per_req(r, "proxy_cpu_s") for r in mine if r),
                 "p99_ms": med(num(r["p99_ms"]) for r in mine if r), "vs": {}}
            for other in others:
                rr, cr, lr = [], [], []
                for k, r in zip(rounds, mine):
                    b = index.get((w, p, other, k))
                    if not (r and b):
                        continue
                    if num(b["rps"]):
                        rr.append(num(r["rps"]) / num(b["rps"]))
                    pb, pr = per_req(b, "proxy_cpu_s"), per_req(r, "proxy_cpu_s")
                    if pb and pr is not None:
                        cr.append(pr / pb)
                    if num(b["p99_ms"]):
                        lr.append(num(r["p99_ms"]) / num(b["p99_ms"]))
                if rr:
                    e["vs"][other] = {"rps": med(rr), "proxy_us": med(cr), "p99": med(lr)}
            res.append(e)
    return res


def markdown(title, summary, vs, baseline, others):
    L = []
    if title:
        L += [title, ""]
    L += [f"Medians over rounds; x{baseline} = rps / rps({baseline}) in the same round. "
          "One request = one command (an MSET/MGET carries 10 keys). CPU columns: "
          "microseconds of CPU per request; proxy cores = proxy CPU seconds per second; "
          "proxy kernel = the share of the proxy's CPU spent in the kernel (system time).", ""]
    L += [f"| workload | P | target | runs ok | rps | x{baseline} | p50 ms | p99 ms "
          "| proxy µs/req | proxy kernel | proxy cores | backend µs/req | proxy+backend µs/req "
          "| client µs/req | others cores | errors | retries |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        L.append(f"| {s['workload']} | {s['pipeline']} | {s['target']} "
                 f"| {s['runs_ok']}/{s['runs']} | {f(s['rps'], ',.0f')} "
                 f"| {f(s['ratio_vs_baseline'], '.2f')} | {f(s['p50_ms'], '.3f')} "
                 f"| {f(s['p99_ms'], '.3f')} | {f(s['proxy_us_per_req'], '.2f')} "
                 f"| {pct(s['proxy_kernel_share'])} | {f(s['proxy_cores'], '.2f')} "
                 f"| {f(s['backend_us_per_req'], '.2f')} | {f(s['proxy_backend_us_per_req'], '.2f')} "
                 f"| {f(s['client_us_per_req'], '.2f')} | {f(s['others_cores'], '.2f')} "
                 f"| {s['errors']} | {s['retries']} |")
    if vs:
        cols = [o for o in others if any(o in e["vs"] for e in vs)]
        # CPU and p99 ratios only against proxies (direct Redis has no proxy CPU)
        full = {o for o in cols if any(e["vs"].get(o, {}).get("proxy_us") is not None
                                       for e in vs)}
        L += ["", "Same-round ratios (medians over rounds): rps ratio > 1 and CPU or p99 "
              "ratio < 1 favour the left-hand target.", ""]
        head = "| target | workload | P | rps | proxy µs/req | p99 ms |"
        sep = "|---|---|---:|---:|---:|---:|"
        for o in cols:
            head += f" rps x{o} |" + (f" µs/req x{o} | p99 x{o} |" if o in full else "")
            sep += "---:|" + ("---:|---:|" if o in full else "")
        L += [head, sep]
        for e in vs:
            line = (f"| **{e['target']}** | {e['workload']} | {e['pipeline']} "
                    f"| **{f(e['rps'], ',.0f')}** | {f(e['proxy_us_per_req'], '.2f')} "
                    f"| {f(e['p99_ms'], '.3f')} |")
            for o in cols:
                v = e["vs"].get(o, {})
                line += f" {f(v.get('rps'), '.2f')} |"
                if o in full:
                    line += f" {f(v.get('proxy_us'), '.2f')} | {f(v.get('p99'), '.2f')} |"
            L.append(line)
    return "\n".join(L) + "\n"


def charts(d, summary, targets, cells, subtitle):
    pipes = sorted({p for _, p in cells})
    wls = []
    for w, _ in cells:
        if w not in wls:
            wls.append(w)
    get = {(s["workload"], s["pipeline"], s["target"]): s for s in summary}

    def panels(key, tlist):
        return [(f"pipeline {p}", [(w.upper(), {t: (get.get((w, p, t)) or {}).get(key)
                                                for t in tlist}) for w in wls
                                   if any((w, p, t) in get for t in tlist)])
                for p in pipes]

    svg.grouped_bars(os.path.join(d, "rps.svg"), "Requests per second (higher is better)",
                     subtitle, panels("rps", targets), targets, "requests/s")
    proxies = [t for t in targets
               if any(s["target"] == t and s["proxy_us_per_req"] is not None for s in summary)]
    if proxies:
        svg.grouped_bars(os.path.join(d, "cpu.svg"),
                         "Proxy CPU per request (lower is better)", subtitle,
                         panels("proxy_us_per_req", proxies), proxies, "CPU µs / request")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--baseline", default="redis")
    ap.add_argument("--ours", default="slotgate,slotgate-pool")
    ap.add_argument("--title", default="")
    ap.add_argument("--subtitle", default="")
    ap.add_argument("--charts", action="store_true")
    ap.add_argument("raw", nargs="+")
    a = ap.parse_args()
    rows, targets, cells = load(a.raw)
    if not rows:
        sys.exit("report.py: no data")
    summary, index = summarize(rows, targets, cells, a.baseline)
    ours = [o for o in a.ours.split(",") if o in targets]
    proxies = [t for t in targets if any(num(r["proxy_cpu_s"]) is not None
                                         for r in rows if r["target"] == t)]
    others = ([a.baseline] if a.baseline in targets else []) + \
        [t for t in proxies if t not in ours and t != a.baseline]
    vs = versus(rows, index, cells, ours, others)
    md = markdown(a.title, summary, vs, a.baseline, others)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "summary.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(a.dir, "summary.json"), "w") as fh:
        json.dump({"baseline": a.baseline, "title": a.title, "summary": summary, "versus": vs},
                  fh, indent=1)
    with open(os.path.join(a.dir, "summary.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(summary[0].keys()))
        w.writeheader()
        w.writerows(summary)
    if a.charts:
        charts(a.dir, summary, targets, cells, a.subtitle)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
