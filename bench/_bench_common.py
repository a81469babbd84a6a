"""Helpers shared by the bench scripts: the workloads' result line,
medians and ratios that tolerate missing runs, number formatting, output
tails, the aligned result table, killing a run's process group, and the
parts of run_bench.py's and http_bench.py's command lines and reports that
are the same."""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

TAIL_LINES = 15


def workload_names(directory) -> list[str]:
    """The workloads in a directory: its *.py files not starting with '_'."""
    return sorted(f[:-3] for f in os.listdir(directory) if f.endswith(".py") and not f.startswith("_"))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_workload_options(ap) -> None:
    """--python, --astrace and --workloads, as compare_options.py and
    sampler_bench.py take them."""
    ap.add_argument("--python", default="python3")
    ap.add_argument("--astrace", default=os.path.join(REPO, "build", "astrace"))
    ap.add_argument("--workloads", default=os.path.join(REPO, "..", "shared", "workloads"))


def chosen_workloads(directory, only: str) -> list[str]:
    """The workloads named in `only` (comma-separated); all of them for "" or "all"."""
    names = workload_names(directory)
    return names if only in ("", "all") else [n for n in names if n in only.split(",")]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def tail(text: str, n: int = TAIL_LINES) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-n:])


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.3f}x"


def fmt_int(x) -> str:
    return "-" if x is None else f"{int(round(x)):,}"


def fmt_f(x, digits=1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def fmt_spread(xs, f) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"median {f(median(xs))}  (min {f(min(xs))}, max {f(max(xs))}, n={len(xs)})"


def git_rev(path: Path) -> str | None:
    # Read-only query; never touches the index.
    try:
        r = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=10,
                           env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        return (r.stdout.strip() or None) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def parse_result_line(name: str, stdout: str):
    """Finds the last 'NAME: RESULT in X.XXs' line; returns (result, seconds)."""
    pat = re.compile(r"^" + re.escape(name) + r": (.*) in ([0-9]+(?:\.[0-9]+)?)s\s*$")
    found = None
    for line in stdout.splitlines():
        m = pat.match(line)
        if m:
            found = (m.group(1), float(m.group(2)))
    return found if found else (None, None)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def print_table(columns, results) -> None:
    """Aligned table: columns are (header, header line 2, cell(result, summary)) triples."""
    rows = [[c[0] for c in columns], [c[1] for c in columns]]
    for r in results:
        s = r.get("summary") or {}
        rows.append([c[2](r, s) for c in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]

    def line(row):
        cells = []
        for i, cell in enumerate(row):
            left = i == 0 or columns[i][0] == "status"
            cells.append(cell.ljust(widths[i]) if left else cell.rjust(widths[i]))
        return "  ".join(cells).rstrip()

    log(line(rows[0]))
    log(line(rows[1]))
    log("  ".join("-" * w for w in widths))
    for row in rows[2:]:
        log(line(row))


# ------------------------------------------------ run_bench / http_bench ----

def split_extra_args(parser, text: str) -> list[str]:
    """--extra-args, split like a shell would; a parse error is a usage error."""
    try:
        return shlex.split(text)
    except ValueError as e:
        parser.error(f"--extra-args: {e}")


def require_astrace(parser, path: Path, repo_dir: Path) -> Path:
    """The astrace binary to benchmark, resolved; a usage error if it is missing."""
    path = path.resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        parser.error(f"astrace binary not found or not executable: {path} "
                     f"(build it: cmake --build {repo_dir / 'build'} -j2, or pass --astrace)")
    return path


def host_config() -> dict:
    """Where and when the benchmark ran, for its --json config."""
    return {"host": {"machine": platform.machine(), "system": platform.platform(),
                     "cpus": os.cpu_count(), "harness_python": sys.version.split()[0]},
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def log_warnings(results, key: str) -> None:
    warned = [(r[key], w) for r in results for w in r["warnings"]]
    if warned:
        log("")
        for n, w in warned:
            log(f"WARNING {n}: {w}")


def write_json(path: Path | None, config: dict, results, total_s: float) -> int:
    """Writes --json OUT (if asked); 1 if it could not be written, else 0."""
    if not path:
        return 0
    config["total_s"] = total_s
    try:
        path.write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
        log(f"\nwrote {path}")
    except OSError as e:
        log(f"\ncannot write {path}: {e}")
        return 1
    return 0


def unlink_quietly(*paths) -> None:
    for p in paths:
        if p is not None:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def run_main(main) -> None:
    """sys.exit(main()), with Ctrl-C reported as an interruption (status 130)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
