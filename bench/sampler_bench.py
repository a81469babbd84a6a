#!/usr/bin/env python3
"""Cost of the stack sampler, on the shared workloads.

First, the cost of one sample, measured inside one process: pairs of equal
chunks of pure-Python work, the sampler's signal blocked in one chunk of each
pair, sampled at 10 kHz (bench/apps/sample_cost.py); the extra time of the
sampled chunks over the samples they got. Then the same for a timer signal
with an empty handler (build/bench_signal_cost): the kernel's part of it.
Whole runs compared with each other cannot resolve this (their speed differs
by several percent here); neighbouring chunks of one run can.

Then, for each workload, alternating N times, runs:
  untraced        python3 workload.py
  base            astrace record --no-sampler            (the hooks alone)
  py 100 Hz       astrace record --rate 100
  py 1 kHz        astrace record --rate 1000
  native 100 Hz   astrace record --rate 100 --native
  native 1 kHz    astrace record --rate 1000 --native
twice: with the asyncio hooks off (ASTRACE_HOOKS=0: the sampler alone, base
is then tracing with nothing on) and with every hook on (the defaults).
Prints each configuration's median of the workload's own reported time as a
ratio to base, and (roughly: wall-time noise is a few percent here) the extra
time per sample.

    python3 bench/sampler_bench.py --runs 5 --only cpu_mixed
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import add_workload_options, chosen_workloads, parse_result_line  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = [
    ("base", ["--no-sampler"]),
    ("py 100 Hz", ["--rate", "100"]),
    ("py 1 kHz", ["--rate", "1000"]),
    ("native 100 Hz", ["--rate", "100", "--native"]),
    ("native 1 kHz", ["--rate", "1000", "--native"]),
]


def run(name, cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    t = parse_result_line(name, p.stdout)[1]
    if p.returncode != 0 or t is None:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-500:]}")
    return t


COST_PAIRS, COST_DEPTH, COST_ITERATIONS = 200, 20, 1_000_000


def per_sample_cost(args, tmp, runs):
    """One sample's cost: bench/apps/sample_cost.py at 10 kHz, then the bare
    timer signal (build/bench_signal_cost) as the floor under it."""
    script = os.path.join(HERE, "apps", "sample_cost.py")
    configs = [("noise floor", ["--no-sampler"]), ("python", []), ("native", ["--native"])]
    cost = {c: [] for c, _ in configs}
    for _ in range(runs):
        for label, opts in configs:
            out = os.path.join(tmp, "f.pftrace")
            p = subprocess.run([args.astrace, "record", "-q", "-f", "-o", out, "--no-tasks", "--no-counters",
                                "--rate", "10000", *opts, "--", args.python, script, "10000", str(COST_PAIRS),
                                str(COST_DEPTH), str(COST_ITERATIONS)],
                               capture_output=True, text=True, timeout=300)
            m = re.search(r"sample cost: (-?\d+) ns", p.stdout)
            if p.returncode != 0 or not m:
                raise RuntimeError(f"sample_cost.py failed: {p.stderr[-500:]}")
            cost[label].append(int(m.group(1)))
    print(f"\nper-sample cost: {COST_PAIRS} pairs of equal chunks of pure-Python work {COST_DEPTH} frames deep, "
          f"sampler signal blocked in one of each pair, at 10 kHz; median of {runs} runs")
    print(f"  {'config':12s} {'us/sample':>9s} {'at 1 kHz':>9s}")
    for label, _ in configs:
        us = statistics.median(cost[label]) / 1000
        print(f"  {label:12s} {us:9.2f} {us / 1000:9.2%}")
    floor = os.path.join(os.path.dirname(args.astrace), "bench_signal_cost")
    if os.access(floor, os.X_OK):
        p = subprocess.run([floor], capture_output=True, text=True, timeout=120)
        print("  of which the kernel's part, " + (p.stdout.strip() or p.stderr.strip()))
    else:
        print(f"  ({floor} not built: no kernel-only floor)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="cpu_mixed", help="comma-separated workload names, 'all', or 'none'")
    add_workload_options(ap)
    args = ap.parse_args()
    names = chosen_workloads(args.workloads, args.only)
    with tempfile.TemporaryDirectory(prefix="astrace-sbench-") as tmp:
        per_sample_cost(args, tmp, 3)
        for name in names:
            script = os.path.join(args.workloads, name + ".py")
            for hooks in ("0", "1"):
                env = dict(os.environ, ASTRACE_HOOKS=hooks)
                times = {label: [] for label, _ in CONFIGS}
                times["untraced"] = []
                samples = {label: [] for label, _ in CONFIGS}
                for _ in range(args.runs):
                    times["untraced"].append(run(name, [args.python, script], env))
                    for label, opts in CONFIGS:
                        out, stats = os.path.join(tmp, "t.pftrace"), os.path.join(tmp, "s.json")
                        cmd = [args.astrace, "record", "-q", "-f", "-o", out, "--stats-json", stats, *opts, "--",
                               args.python, script]
                        times[label].append(run(name, cmd, env))
                        with open(stats) as f:
                            samples[label].append(json.load(f)["samples"])
                med = {k: statistics.median(v) for k, v in times.items()}
                base = med["base"]
                print(f"\n{name}, hooks {'on (defaults)' if hooks == '1' else 'off (sampler alone)'}; "
                      f"medians of {args.runs} alternating runs")
                print(f"  {'config':14s} {'own s':>7s} {'/base':>7s} {'/untraced':>9s} {'samples':>8s} {'us/sample':>9s}")
                for label in ["untraced"] + [c for c, _ in CONFIGS]:
                    n = statistics.median(samples[label]) if label in samples else 0
                    extra = med[label] - base
                    per = f"{extra / n * 1e6:9.1f}" if n and label != "base" else f"{'-':>9s}"
                    print(f"  {label:14s} {med[label]:7.3f} {med[label] / base:7.3f}x {med[label] / med['untraced']:8.3f}x "
                          f"{int(n):8d} {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
