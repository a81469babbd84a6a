#!/usr/bin/env python3
"""Cost of one recording option against another, on the shared workloads.

Runs each workload under `astrace record A...` and `astrace record B...`,
alternating, N times each, and prints the ratio of the medians of the
workload's own reported time (B / A). Use it to price a feature by turning it
off in A:

    python3 bench/compare_options.py --a="--no-counters" --b=""          # counters
    python3 bench/compare_options.py --a="--no-tasks --no-counters" --b="--no-counters"   # tasks

Both sides are traced, so recorder start-up and interpreter start-up cancel
out; the machine's noise does not, so use --runs 7 or more for 1% effects.
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import add_workload_options, chosen_workloads, parse_result_line  # noqa: E402



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="--no-counters", help="astrace record options of the baseline")
    ap.add_argument("--b", default="", help="astrace record options compared with it")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated workload names (default: all)")
    add_workload_options(ap)
    args = ap.parse_args()
    names = chosen_workloads(args.workloads, args.only)
    failed = False
    rows = []
    with tempfile.TemporaryDirectory(prefix="astrace-cmp-") as tmp:
        for name in names:
            times = {"a": [], "b": []}
            for i in range(args.runs):
                for side in ("a", "b"):
                    opts = shlex.split(getattr(args, side))
                    out = os.path.join(tmp, f"{name}-{side}.pftrace")
                    cmd = [args.astrace, "record", "-q", "-f", "-o", out, *opts, "--", args.python,
                           os.path.join(args.workloads, name + ".py")]
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                    t = parse_result_line(name, p.stdout)[1]
                    if p.returncode != 0 or t is None:
                        print(f"{name} ({side}) FAILED: {p.stderr[-500:]}", file=sys.stderr)
                        failed = True
                        break
                    times[side].append(t)
            if len(times["a"]) == len(times["b"]) == args.runs:
                ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
                rows.append((name, ma, mb, mb / ma))
    print(f"\nA = astrace record {args.a or '(defaults)'}\nB = astrace record {args.b or '(defaults)'}\n"
          f"medians of the workloads' own times over {args.runs} alternating runs each\n")
    print(f"{'workload':16s} {'A s':>7s} {'B s':>7s} {'B/A':>7s}")
    for name, ma, mb, r in rows:
        print(f"{name:16s} {ma:7.3f} {mb:7.3f} {r:7.3f}x")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
