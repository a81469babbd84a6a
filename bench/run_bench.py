#!/usr/bin/env python3
"""Benchmark harness for astrace: tracing overhead and trace cost per workload.

What it measures
----------------
For every workload in <repo>/../shared/workloads/*.py (files starting with
"_" are helpers and are skipped) it runs, ALTERNATING (untraced, traced,
untraced, traced, ...), at least --runs times each:

  untraced:  PYTHON W.py
  traced:    astrace record -q -f -o T.pftrace --stats-json S.json
                 [--compression ALG] [EXTRA...] -- PYTHON W.py

and reports
  * the workload's own time (the "in X.XXs" figure of its result line; it
    excludes interpreter start-up) and the whole-command wall time
    (time.perf_counter around the subprocess): median untraced, median traced
    and the ratio of medians traced/untraced, for both measures;
  * that the result line (text between "NAME:" and " in ") is identical in
    every traced and untraced run, i.e. tracing did not change behaviour
    (a mismatch is reported loudly and makes the exit status non-zero);
  * from astrace's --stats-json (medians over the traced runs): records
    (events read from the traced process), trace bytes, bytes per event
    (trace_bytes / records), events dropped, recorder CPU seconds,
    recorder throughput (records / recorder_cpu_s, events per CPU second)
    and uncompressed bytes per event (uncompressed_bytes / records).

Traces are written into a temporary directory and deleted after each run.
A workload whose command fails (non-zero exit, time-out, no result line, no
stats) is reported as FAILED with the tail of its stderr; the remaining
workloads still run and the script exits 1 at the end.

How to run
----------
  python3 bench/run_bench.py                       # full run, 5+5 runs each
  python3 bench/run_bench.py --runs 3 --scale 0.3  # quick run
  python3 bench/run_bench.py --only tiny_tasks,blocking --json out.json
  python3 bench/run_bench.py --compression none --extra-args "--buffer-size 16M"

Defaults: workloads from <repo>/../shared/workloads, astrace from
<repo>/build/astrace, Python = python3 from PATH resolved to its real
executable (sys.executable), so that a pyenv-style shim script does not add
its own start-up time to the whole-command measure; pass --python to use an
interpreter exactly as given. Python 3.11+ standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (fmt_f, fmt_int, fmt_ratio, fmt_spread, git_rev, host_config, kill_group,
                           log, log_warnings, median, parse_result_line, print_table, ratio,
                           require_astrace, run_main, split_extra_args, tail, unlink_quietly,
                           write_json)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_WORKLOADS = REPO_DIR.parent / "shared" / "workloads"
DEFAULT_ASTRACE = REPO_DIR / "build" / "astrace"

STATS_KEYS = (
    "records", "trace_events", "events_dropped", "processes", "trace_bytes",
    "uncompressed_bytes", "packets", "bundles", "recorder_cpu_s", "wall_s",
)


# ----------------------------------------------------------------- helpers --

def fmt_s(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def fmt_rate(x) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def resolve_python(requested: str | None) -> tuple[str, str]:
    """Returns (executable to run, how it was chosen)."""
    if requested:
        return requested, "as given by --python"
    found = shutil.which("python3")
    if not found:
        sys.exit("run_bench: python3 not found on PATH; pass --python PATH")
    try:
        out = subprocess.run(
            [found, "-c", "import sys; print(sys.executable)"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as e:
        sys.exit(f"run_bench: {found} does not run: {e}")
    if out and os.access(out, os.X_OK):
        return out, f"python3 from PATH ({found}) resolved to sys.executable"
    return found, "python3 from PATH"


# ------------------------------------------------------------------ a run --

class RunResult:
    def __init__(self, kind: str):
        self.kind = kind              # "untraced" | "traced"
        self.ok = False
        self.error: str | None = None
        self.returncode: int | None = None
        self.wall_s: float | None = None
        self.workload_s: float | None = None
        self.result: str | None = None
        self.stdout_tail = ""
        self.stderr_tail = ""
        self.stats: dict | None = None
        self.trace_file_bytes: int | None = None

    def to_json(self) -> dict:
        d = {
            "kind": self.kind, "ok": self.ok, "error": self.error,
            "returncode": self.returncode, "wall_s": self.wall_s,
            "workload_s": self.workload_s, "result": self.result,
        }
        if self.kind == "traced":
            d["stats"] = self.stats
            d["trace_file_bytes"] = self.trace_file_bytes
        if not self.ok:
            d["stdout_tail"] = self.stdout_tail
            d["stderr_tail"] = self.stderr_tail
        return d


def run_cmd(cmd, env, cwd, timeout):
    """Runs cmd in its own session; returns (rc|None, stdout, stderr, wall, timed_out)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                            text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        wall = time.perf_counter() - t0
        return proc.returncode, out, err, wall, False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        return None, out, err, time.perf_counter() - t0, True
    except BaseException:
        kill_group(proc)
        proc.communicate()
        raise


def one_run(kind, name, wl_path, args, env, tmp, idx) -> RunResult:
    r = RunResult(kind)
    trace = stats_path = None
    if kind == "untraced":
        cmd = [args.python, str(wl_path)]
    else:
        trace = tmp / f"{name}-{idx}.pftrace"
        stats_path = tmp / f"{name}-{idx}.stats.json"
        cmd = [str(args.astrace), "record", "-q", "-f", "-o", str(trace),
               "--stats-json", str(stats_path)]
        if args.compression:
            cmd += ["--compression", args.compression]
        cmd += args.extra + ["--", args.python, str(wl_path)]
    try:
        rc, out, err, wall, timed_out = run_cmd(cmd, env, tmp, args.timeout)
    except OSError as e:
        r.error = f"cannot start {cmd[0]}: {e}"
        return r
    r.returncode, r.wall_s = rc, wall
    r.stdout_tail, r.stderr_tail = tail(out), tail(err)
    r.result, r.workload_s = parse_result_line(name, out)
    try:
        if timed_out:
            r.error = f"timed out after {args.timeout:g}s (killed; possible hang)"
        elif rc != 0:
            r.error = f"exit status {rc}" + (f" (signal {-rc})" if rc < 0 else "")
        elif r.result is None:
            r.error = f"no '{name}: ... in X.XXs' result line on stdout"
        elif kind == "traced":
            try:
                with open(stats_path) as f:
                    r.stats = json.load(f)
            except (OSError, ValueError) as e:
                r.error = f"stats json unreadable: {e}"
            else:
                missing = [k for k in STATS_KEYS if k not in r.stats]
                if missing:
                    r.error = f"stats json lacks {', '.join(missing)}"
            if trace is not None and trace.exists():
                r.trace_file_bytes = trace.stat().st_size
            elif r.error is None:
                r.error = "trace file was not written"
        if r.error is None:
            r.ok = True
    finally:
        unlink_quietly(trace, stats_path)
    return r


# --------------------------------------------------------- one workload ----

def bench_workload(name, wl_path, args, env, tmp) -> dict:
    res = {"workload": name, "path": str(wl_path), "status": "ok",
           "failure": None, "mismatch": None, "warnings": [], "notes": [],
           "runs": []}
    runs: list[RunResult] = []

    if args.warmup:
        log(f"  warm-up x{args.warmup} (untraced, discarded)")
        for _ in range(args.warmup):
            w = one_run("untraced", name, wl_path, args, env, tmp, "warmup")
            if not w.ok:
                runs.append(w)
                break

    if not runs:  # warm-up fine (or none)
        for i in range(args.runs):
            for kind in ("untraced", "traced"):
                r = one_run(kind, name, wl_path, args, env, tmp, i)
                runs.append(r)
                extra = ""
                if r.ok and kind == "traced":
                    s = r.stats
                    extra = (f"  records={s['records']:,} bytes={s['trace_bytes']:,}"
                             f" dropped={s['events_dropped']} cpu={s['recorder_cpu_s']:.3f}s")
                status = "ok" if r.ok else f"FAILED: {r.error}"
                log(f"  run {i + 1}/{args.runs} {kind:8s} wall={fmt_s(r.wall_s)}s"
                    f" workload={fmt_s(r.workload_s)}{'s' if r.workload_s is not None else ''} {status}{extra}")
                if not r.ok:
                    break
            if runs and not runs[-1].ok:
                break

    res["runs"] = [r.to_json() for r in runs]
    bad = next((r for r in runs if not r.ok), None)
    if bad is not None:
        res["status"] = f"FAILED ({bad.kind})"
        res["failure"] = {"kind": bad.kind, "error": bad.error,
                          "returncode": bad.returncode,
                          "stderr_tail": bad.stderr_tail,
                          "stdout_tail": bad.stdout_tail}
        log(f"\n!!! {name}: {bad.kind} run FAILED: {bad.error}")
        log("!!! stderr tail:")
        log("\n".join("    | " + l for l in (bad.stderr_tail or "(empty)").splitlines()))
        if bad.stdout_tail:
            log("!!! stdout tail:")
            log("\n".join("    | " + l for l in bad.stdout_tail.splitlines()))
        log("")

    unt = [r for r in runs if r.kind == "untraced" and r.ok]
    trc = [r for r in runs if r.kind == "traced" and r.ok]

    # Behaviour check: every run's result text must be identical.
    u_results = sorted({r.result for r in unt})
    t_results = sorted({r.result for r in trc})
    if len(set(u_results) | set(t_results)) > 1:
        res["mismatch"] = {"untraced": u_results, "traced": t_results}
        if res["status"] == "ok":
            res["status"] = "MISMATCH"
        log("")
        log("!" * 78)
        if len(u_results) > 1:
            log(f"!!! RESULT MISMATCH in {name}: the untraced runs already disagree among"
                " themselves (nondeterministic workload?)")
        else:
            log(f"!!! RESULT MISMATCH in {name}: the traced result line differs from the untraced one")
        for r in u_results:
            log(f"!!!   untraced: {r!r}")
        for r in t_results:
            log(f"!!!   traced:   {r!r}")
        log("!" * 78)
        log("")
    res["result"] = (u_results or t_results or [None])[0]

    s = {}
    s["untraced_workload_s"] = median([r.workload_s for r in unt])
    s["traced_workload_s"] = median([r.workload_s for r in trc])
    s["ratio_workload"] = ratio(s["traced_workload_s"], s["untraced_workload_s"])
    s["untraced_wall_s"] = median([r.wall_s for r in unt])
    s["traced_wall_s"] = median([r.wall_s for r in trc])
    s["ratio_wall"] = ratio(s["traced_wall_s"], s["untraced_wall_s"])
    for k in STATS_KEYS:
        s[k] = median([r.stats[k] for r in trc])
    per_run_bpe = [ratio(r.stats["trace_bytes"], r.stats["records"]) for r in trc]
    per_run_ubpe = [ratio(r.stats["uncompressed_bytes"], r.stats["records"]) for r in trc]
    per_run_tput = [ratio(r.stats["records"], r.stats["recorder_cpu_s"]) for r in trc]
    s["bytes_per_event"] = median(per_run_bpe)
    s["uncompressed_bytes_per_event"] = median(per_run_ubpe)
    s["recorder_events_per_cpu_s"] = median(per_run_tput)
    s["recorder_cpu_fraction_of_wall"] = median(
        [ratio(r.stats["recorder_cpu_s"], r.stats["wall_s"]) for r in trc])
    s["events_dropped_max"] = max((r.stats["events_dropped"] for r in trc), default=None)
    s["untraced_runs"], s["traced_runs"] = len(unt), len(trc)
    res["summary"] = s

    # Warnings about astrace itself (kept out of the exit status unless failing).
    if s["events_dropped_max"]:
        res["warnings"].append(
            f"events dropped: up to {s['events_dropped_max']:,} in a run (ring full)")
    res["notes"] = []
    recs = {r.stats["records"] for r in trc}
    if len(recs) > 1:  # normal for timing-dependent workloads, so only a note
        res["notes"].append(
            f"records vary across traced runs: {min(recs):,}..{max(recs):,}")
    for r in trc:
        if r.trace_file_bytes is not None and r.trace_file_bytes != r.stats["trace_bytes"]:
            res["warnings"].append(
                f"stats trace_bytes {r.stats['trace_bytes']:,} != file size {r.trace_file_bytes:,}")
            break
    # trace_events exceeds records by design: a task step is one record and
    # two events (its callback slice on the thread, its run on the task lane).

    # Per-workload report.
    log(f"  -- {name}: {res['status']}" + (f"  result: {res['result']}" if res["result"] else ""))
    if unt or trc:
        log(f"     workload time  untraced {fmt_spread([r.workload_s for r in unt], fmt_s)}")
        log(f"                    traced   {fmt_spread([r.workload_s for r in trc], fmt_s)}")
        log(f"                    ratio of medians {fmt_ratio(s['ratio_workload'])}")
        log(f"     command wall   untraced {fmt_spread([r.wall_s for r in unt], fmt_s)}")
        log(f"                    traced   {fmt_spread([r.wall_s for r in trc], fmt_s)}")
        log(f"                    ratio of medians {fmt_ratio(s['ratio_wall'])}")
    if trc:
        log(f"     records (events)        {fmt_int(s['records'])}"
            f"   (trace_events {fmt_int(s['trace_events'])}, processes {fmt_int(s['processes'])})")
        log(f"     trace bytes             {fmt_int(s['trace_bytes'])}"
            f"   ({fmt_f(s['bytes_per_event'], 2)} B/event;"
            f" uncompressed {fmt_int(s['uncompressed_bytes'])},"
            f" {fmt_f(s['uncompressed_bytes_per_event'], 2)} B/event)")
        log(f"     events dropped          {fmt_int(s['events_dropped'])} (median),"
            f" max {fmt_int(s['events_dropped_max'])}")
        log(f"     recorder CPU            {fmt_s(s['recorder_cpu_s'])} s"
            f"   ({fmt_rate(s['recorder_events_per_cpu_s'])} events/CPU-s,"
            f" {fmt_f(100 * s['recorder_cpu_fraction_of_wall'] if s['recorder_cpu_fraction_of_wall'] is not None else None, 1)}% of wall)")
    for n in res["notes"]:
        log(f"     note: {n}")
    for w in res["warnings"]:
        log(f"     WARNING: {w}")
    log("")
    return res


# ------------------------------------------------------------ the table ----

COLUMNS = [
    # header, unit line, getter
    ("workload", "", lambda r, s: r["workload"]),
    ("untr", "med s", lambda r, s: fmt_s(s.get("untraced_workload_s"))),
    ("traced", "med s", lambda r, s: fmt_s(s.get("traced_workload_s"))),
    ("ratio", "own", lambda r, s: fmt_ratio(s.get("ratio_workload"))),
    ("untr", "wall s", lambda r, s: fmt_s(s.get("untraced_wall_s"))),
    ("traced", "wall s", lambda r, s: fmt_s(s.get("traced_wall_s"))),
    ("ratio", "wall", lambda r, s: fmt_ratio(s.get("ratio_wall"))),
    ("records", "events", lambda r, s: fmt_int(s.get("records"))),
    ("trace", "bytes", lambda r, s: fmt_int(s.get("trace_bytes"))),
    ("B/ev", "", lambda r, s: fmt_f(s.get("bytes_per_event"), 2)),
    ("drop", "", lambda r, s: fmt_int(s.get("events_dropped_max"))),
    ("rec CPU", "s", lambda r, s: fmt_s(s.get("recorder_cpu_s"))),
    ("rec tput", "ev/CPU-s", lambda r, s: fmt_rate(s.get("recorder_events_per_cpu_s"))),
    ("raw B/ev", "uncomp", lambda r, s: fmt_f(s.get("uncompressed_bytes_per_event"), 1)),
    ("status", "", lambda r, s: r["status"]),
]


# ------------------------------------------------------------------ main ----

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Measure astrace's tracing overhead and trace cost on the benchmark workloads.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python3 bench/run_bench.py --runs 3 --scale 0.3")
    p.add_argument("--python", metavar="PATH",
                   help="interpreter to run the workloads with (default: python3 from PATH, "
                        "resolved to its sys.executable)")
    p.add_argument("--astrace", metavar="PATH", type=Path, default=DEFAULT_ASTRACE,
                   help=f"astrace binary (default: <repo>/build/astrace = {DEFAULT_ASTRACE})")
    p.add_argument("--workloads", metavar="DIR", type=Path, default=DEFAULT_WORKLOADS,
                   help=f"workload directory (default: <repo>/../shared/workloads = {DEFAULT_WORKLOADS})")
    p.add_argument("--scale", type=float, metavar="S",
                   help="sets ASTRACE_BENCH_SCALE for the workloads (default: inherit, i.e. 1.0)")
    p.add_argument("--runs", type=int, default=5, metavar="N",
                   help="runs of each of untraced and traced, alternating (default 5)")
    p.add_argument("--warmup", type=int, default=1, metavar="N",
                   help="untraced warm-up runs per workload, discarded (default 1)")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help="comma-separated workload names (file stems) to run")
    p.add_argument("--json", metavar="OUT", type=Path, help="write all results as JSON to OUT")
    p.add_argument("--compression", choices=("zstd", "deflate", "none"),
                   help="passed to astrace record --compression (default: astrace's default)")
    p.add_argument("--extra-args", default="", metavar='"..."',
                   help="extra astrace record options, split with shlex (e.g. \"--buffer-size 16M\")")
    p.add_argument("--timeout", type=float, default=900.0, metavar="SEC",
                   help="per-command time-out; a run exceeding it is killed and FAILED (default 900)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        p.error("--scale must be a positive number")
    args.extra = split_extra_args(p, args.extra_args)
    return args, p


def main(argv=None) -> int:
    args, parser = parse_args(argv)

    args.astrace = require_astrace(parser, args.astrace, REPO_DIR)
    wl_dir = args.workloads.resolve()
    if not wl_dir.is_dir():
        parser.error(f"workload directory not found: {wl_dir} (pass --workloads DIR)")
    workloads = {p.stem: p for p in sorted(wl_dir.glob("*.py")) if not p.name.startswith("_")}
    if args.only:
        wanted = [n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in workloads]
        if unknown:
            parser.error(f"unknown workload(s): {', '.join(unknown)}; "
                         f"available: {', '.join(workloads)}")
        workloads = {n: workloads[n] for n in wanted}
    if not workloads:
        parser.error(f"no workloads (*.py not starting with '_') in {wl_dir}")

    args.python, py_how = resolve_python(args.python)
    env = dict(os.environ)
    if args.scale is not None:
        env["ASTRACE_BENCH_SCALE"] = repr(args.scale)
    scale_used = env.get("ASTRACE_BENCH_SCALE", "1.0 (default)")
    py_ver = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"],
                            capture_output=True, text=True).stdout.strip() or "?"

    config = {
        "astrace": str(args.astrace), "astrace_git_rev": git_rev(REPO_DIR),
        "python": args.python, "python_how": py_how, "python_version": py_ver,
        "workloads_dir": str(wl_dir), "workloads": list(workloads),
        "scale": scale_used, "runs": args.runs, "warmup": args.warmup,
        "compression": args.compression or "(astrace default)",
        "extra_args": args.extra, "timeout_s": args.timeout,
        **host_config(),
    }
    log("astrace benchmark")
    for k in ("astrace", "astrace_git_rev", "python", "python_version", "workloads_dir",
              "scale", "runs", "warmup", "compression", "extra_args"):
        log(f"  {k:16s} {config[k]}")
    log(f"  {'host':16s} {config['host']['system']}, {config['host']['cpus']} CPUs")
    log("")

    results = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="astrace-bench-") as tmpname:
        tmp = Path(tmpname)
        for name, path in workloads.items():
            log(f"== {name} ({path.name})")
            results.append(bench_workload(name, path, args, env, tmp))
    total = time.perf_counter() - t_start

    log("=" * 78)
    log(f"Summary (medians; {args.runs} untraced + {args.runs} traced runs each, alternating;"
        f" scale {scale_used}; {total:.0f}s total)")
    log("")
    print_table(COLUMNS, results)
    log("")
    log("own = workload's own 'in X.XXs' time; wall = whole command incl. interpreter start-up;"
        " ratio = traced/untraced;")
    log("B/ev = trace bytes per record; drop = max events dropped in a run;"
        " rec CPU = astrace's own CPU time;")
    log("rec tput = records per recorder CPU second; raw B/ev = uncompressed bytes per record.")

    failed = [r["workload"] for r in results if r["status"].startswith("FAILED")]
    mismatched = [r["workload"] for r in results if r["mismatch"]]
    log_warnings(results, "workload")
    if failed or mismatched:
        log("")
        if failed:
            log(f"FAILED: {', '.join(failed)}")
        if mismatched:
            log(f"RESULT MISMATCH (traced vs untraced): {', '.join(mismatched)}")

    if write_json(args.json, config, results, total):
        return 1
    return 1 if (failed or mismatched) else 0


if __name__ == "__main__":
    run_main(main)
