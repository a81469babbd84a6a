"""Helpers shared by the bench scripts: the workloads' result line,
medians and ratios that tolerate missing runs, number formatting, output
tails, the aligned result table, and killing a run's process group."""
from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
from pathlib import Path

TAIL_LINES = 15


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
