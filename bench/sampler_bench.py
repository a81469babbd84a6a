#!/usr/bin/env python3
"""Cost of the stack sampler, on the shared workloads.

For each workload, alternating N times, runs:
  untraced        python3 workload.py
  base            astrace record --no-sampler            (the hooks alone)
  py 100 Hz       astrace record --rate 100
  py 1 kHz        astrace record --rate 1000
  native 100 Hz   astrace record --rate 100 --native
  native 1 kHz    astrace record --rate 1000 --native
twice: with the asyncio hooks off (ASTRACE_HOOKS=0: the sampler alone, base
is then tracing with nothing on) and with every hook on (the defaults).

Prints each configuration's median of the workload's own reported time as a
ratio to base, and the cost of one sample in microseconds: the extra time
over base divided by the samples taken on the workload's main thread per
second of its run (so it assumes, as cpu_mixed does, one busy thread).

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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CONFIGS = [
    ("base", ["--no-sampler"]),
    ("py 100 Hz", ["--rate", "100"]),
    ("py 1 kHz", ["--rate", "1000"]),
    ("native 100 Hz", ["--rate", "100", "--native"]),
    ("native 1 kHz", ["--rate", "1000", "--native"]),
]


def own_time(out):
    lines = out.strip().splitlines()
    m = re.search(r": .* in ([\d.]+)s\s*$", lines[-1]) if lines else None
    return float(m.group(1)) if m else None


def run(cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    t = own_time(p.stdout)
    if p.returncode != 0 or t is None:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-500:]}")
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="cpu_mixed", help="comma-separated workload names, or 'all'")
    ap.add_argument("--python", default="python3")
    ap.add_argument("--astrace", default=os.path.join(REPO, "build", "astrace"))
    ap.add_argument("--workloads", default=os.path.join(REPO, "..", "shared", "workloads"))
    args = ap.parse_args()
    names = sorted(f[:-3] for f in os.listdir(args.workloads) if f.endswith(".py") and not f.startswith("_"))
    if args.only != "all":
        names = [n for n in names if n in args.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="astrace-sbench-") as tmp:
        for name in names:
            script = os.path.join(args.workloads, name + ".py")
            for hooks in ("0", "1"):
                env = dict(os.environ, ASTRACE_HOOKS=hooks)
                times = {label: [] for label, _ in CONFIGS}
                times["untraced"] = []
                samples = {label: [] for label, _ in CONFIGS}
                for _ in range(args.runs):
                    times["untraced"].append(run([args.python, script], env))
                    for label, opts in CONFIGS:
                        out, stats = os.path.join(tmp, "t.pftrace"), os.path.join(tmp, "s.json")
                        cmd = [args.astrace, "record", "-q", "-f", "-o", out, "--stats-json", stats, *opts, "--",
                               args.python, script]
                        times[label].append(run(cmd, env))
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
