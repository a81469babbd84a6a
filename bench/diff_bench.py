#!/usr/bin/env python3
"""How fast `astrace diff` is on big traces, and how much memory it takes.

It records a workload (default tiny_tasks from <repo>/../shared/workloads,
at ASTRACE_BENCH_SCALE=2.5: about 50 MB of zstd trace, 500k tasks) twice,
then runs, --runs times each:

  astrace diff A A          (a trace against itself)
  astrace diff A B          (two recordings of the same program)

and prints the median wall seconds, the input rate (MB of trace read per
second, both files together) and the peak RSS of the diff process. The peak
RSS comes from resource.getrusage(RUSAGE_CHILDREN) inside a fresh helper
process that runs only the diff, so the recordings' memory does not count.

  python3 bench/diff_bench.py                    # ~50 MB traces (records ~30 s)
  python3 bench/diff_bench.py --scale 0.5 --runs 1
  python3 bench/diff_bench.py --keep /tmp/traces # keep the traces; reuse them next time
  python3 bench/diff_bench.py --json out.json

Python 3.11+ standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def measure_child(cmd: list[str]) -> None:
    """Helper mode: run cmd (output discarded), print its wall time and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"returncode": proc.returncode, "seconds": dt, "maxrss_kb": ru.ru_maxrss,
                      "cpu_s": ru.ru_utime + ru.ru_stime, "stderr": proc.stderr[-2000:]}))


def measured(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure-child", "--", *cmd],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def record(astrace: str, python: str, workload: str, scale: float, out: str) -> float:
    env = dict(os.environ, ASTRACE_BENCH_SCALE=str(scale))
    t0 = time.perf_counter()
    proc = subprocess.run([astrace, "record", "-q", "-f", "-o", out, "--", python, workload], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"recording {workload} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure-child":
        measure_child(sys.argv[3:] if sys.argv[2] == "--" else sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=2.5, help="ASTRACE_BENCH_SCALE for the recordings (default 2.5)")
    ap.add_argument("--runs", type=int, default=3, help="diff runs per case (default 3)")
    ap.add_argument("--workload", default=os.path.join(os.path.dirname(REPO), "shared", "workloads", "tiny_tasks.py"))
    ap.add_argument("--astrace", default=os.path.join(REPO, "build", "astrace"))
    ap.add_argument("--python", default=shutil.which("python3") or sys.executable)
    ap.add_argument("--keep", metavar="DIR", help="write the traces here and keep them (reused if present)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = ap.parse_args()
    if not os.path.exists(args.astrace):
        sys.exit(f"no astrace at {args.astrace} (build it, or pass --astrace)")
    if not os.path.exists(args.workload):
        sys.exit(f"no workload at {args.workload} (pass --workload)")

    tmp = args.keep or tempfile.mkdtemp(prefix="astrace-diff-bench-")
    os.makedirs(tmp, exist_ok=True)
    name = os.path.splitext(os.path.basename(args.workload))[0]
    traces = [os.path.join(tmp, f"{name}-{args.scale:g}-{i}.pftrace") for i in (1, 2)]
    results = {"workload": args.workload, "scale": args.scale, "astrace": args.astrace, "runs": args.runs,
               "traces": [], "cases": {}}
    try:
        for t in traces:
            if args.keep and os.path.exists(t):
                print(f"reusing {t}")
            else:
                dt = record(args.astrace, args.python, args.workload, args.scale, t)
                print(f"recorded {t} in {dt:.1f} s")
            results["traces"].append({"path": t, "bytes": os.path.getsize(t)})
        sizes = [os.path.getsize(t) for t in traces]
        print(f"traces: {sizes[0] / 1e6:.1f} MB and {sizes[1] / 1e6:.1f} MB")
        cases = {"A vs A": [traces[0], traces[0]], "A vs B": traces}
        print(f"\n{'case':8} {'median s':>9} {'min s':>7} {'max s':>7} {'MB/s':>7} {'peak RSS MB':>12} {'CPU s':>7}")
        for label, (a, b) in cases.items():
            runs = []
            for _ in range(args.runs):
                m = measured([args.astrace, "diff", a, b])
                if m["returncode"] not in (0, 1):
                    sys.exit(f"astrace diff failed ({m['returncode']}): {m['stderr']}")
                runs.append(m)
            secs = [r["seconds"] for r in runs]
            med = statistics.median(secs)
            mb = (os.path.getsize(a) + os.path.getsize(b)) / 1e6
            rss = max(r["maxrss_kb"] for r in runs) / 1024
            cpu = statistics.median(r["cpu_s"] for r in runs)
            print(f"{label:8} {med:9.2f} {min(secs):7.2f} {max(secs):7.2f} {mb / med:7.1f} {rss:12.1f} {cpu:7.2f}")
            results["cases"][label] = {"seconds": secs, "median_s": med, "input_mb": mb, "mb_per_s": mb / med,
                                       "peak_rss_mb": rss, "cpu_s_median": cpu}
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
