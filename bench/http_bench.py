#!/usr/bin/env python3
"""HTTP benchmark for astrace: requests/s of an aiohttp server, untraced vs traced.

What it measures
----------------
For every path (default "/" and "/work") it starts the server under test,
bench/apps/aiohttp_server.py, ALTERNATING untraced and traced, --runs pairs:

  untraced:  PYTHON aiohttp_server.py PORT
  traced:    astrace record -q -f -o T.pftrace --stats-json S.json
                 [--compression ALG] [EXTRA...] -- PYTHON aiohttp_server.py PORT

Each time it waits for the server's "ready PORT" line, checks one GET of the
path answers 200 with JSON, then loads it with

  wrk -t2 -c50 -dDURATIONs --latency http://127.0.0.1:PORT/PATH

and stops the server with SIGINT (sent to astrace for traced runs, which
forwards it), waiting for the server to exit and astrace to finish the trace.
It reports, per path, the medians over the runs of wrk's Requests/sec and its
p50/p99 latency, untraced and traced, the ratio traced/untraced of the req/s
medians (1.0 = no cost; 0.8 = tracing costs 20% of the throughput) and the
median of each pair's ratio (a traced run against the untraced run before
it, which shares its moment's machine speed), and from
astrace's --stats-json: events (records), events dropped, trace size.

It also reads CPU time from /proc around the load: the server's (the Python
process) and, traced, the recorder's (astrace itself), each per completed
request; and the server's run delay (/proc/PID/schedstat: time its main
thread was runnable but waited for a CPU) as a share of the load. On this
2-core machine the server waits well under 1% of the time, traced or not: it
keeps a core to itself, wrk and the recorder share the other, so its
throughput is set by its own CPU per request. That is what the hooks must
not grow; the recorder's CPU comes out of wrk's share.

The server and wrk share the machine's cores, so absolute req/s depend on the
machine; only the ratio is meant to be compared.

Only loopback traffic (127.0.0.1); every step has a bounded time-out. A
server that is not ready in time, does not exit after SIGINT (killed), exits
non-zero, answers non-2xx, or a traced run without stats or trace file, makes
that run FAILED (its stderr tail is printed) and the exit status 1. If wrk or
aiohttp (for the chosen Python) is missing it prints "skipped: ..." and exits 0.

How to run
----------
  python3 bench/http_bench.py                          # 3+3 runs of 5 s per path
  python3 bench/http_bench.py --runs 1 --duration 2    # quick
  python3 bench/http_bench.py --path /work --json out.json
  python3 bench/http_bench.py --path / --runs 10 --perf-stat   # + server cycles per request

Defaults: server Python /usr/bin/python3 (Debian's python3-aiohttp is only
installed for it), astrace from <repo>/build/astrace, wrk from PATH.
Python 3.11+ standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (fmt_f, fmt_int, fmt_ratio, fmt_spread, git_rev, host_config, kill_group,
                           log, log_warnings, median, print_table, ratio, require_astrace, run_main,
                           split_extra_args, tail, unlink_quietly, write_json)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_ASTRACE = REPO_DIR / "build" / "astrace"
DEFAULT_SERVER = BENCH_DIR / "apps" / "aiohttp_server.py"
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_PATHS = ("/", "/work")
HOST = "127.0.0.1"

STATS_KEYS = (
    "records", "trace_events", "events_dropped", "processes", "trace_bytes",
    "uncompressed_bytes", "recorder_cpu_s", "wall_s",
)


# ----------------------------------------------------------------- helpers --

def fmt_ms(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def free_port() -> int:
    """A currently free loopback port (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def describe_rc(rc) -> str:
    if rc is None:
        return "?"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


# --------------------------------------------------------------- wrk ------

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(out: str) -> dict:
    """Pulls the numbers out of wrk's text report (wrk 4.x, with --latency)."""
    d = {"requests_per_s": None, "requests": None, "latency_avg_ms": None,
         "p50_ms": None, "p75_ms": None, "p90_ms": None, "p99_ms": None,
         "socket_errors": None, "non_2xx_3xx": 0}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)\s*$", out, re.M)
    if m:
        d["requests_per_s"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ", out, re.M)
    if m:
        d["requests"] = int(m.group(1))
    m = re.search(r"^\s*Latency\s+([0-9.]+)(us|ms|s|m|h)\s", out, re.M)
    if m:
        d["latency_avg_ms"] = _to_ms(m.group(1), m.group(2))
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s*" + pct + r"(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$", out, re.M)
        if m:
            d[f"p{pct}_ms"] = _to_ms(m.group(1), m.group(2))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        d["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                      map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        d["non_2xx_3xx"] = int(m.group(1))
    return d


# ------------------------------------------------------------------ a run --

class RunResult:
    def __init__(self, kind: str, path: str):
        self.kind = kind              # "untraced" | "traced" | "warmup"
        self.path = path
        self.ok = False
        self.error: str | None = None
        self.port: int | None = None
        self.ready_s: float | None = None      # start -> "ready" line
        self.stop_s: float | None = None       # SIGINT -> exit (traced: trace written)
        self.returncode: int | None = None
        self.wrk: dict | None = None
        self.wrk_out = ""
        self.stdout_tail = ""
        self.stderr_tail = ""
        self.stats: dict | None = None
        self.trace_file_bytes: int | None = None
        self.server_cpu_us_per_req: float | None = None    # the Python server, during the load
        self.recorder_cpu_us_per_req: float | None = None  # astrace, during the load (traced)
        self.server_wait_share: float | None = None        # server runnable but not running / load time
        self.server_user_per_req: dict = {}                 # --perf-stat: {"cycles:u": per request, ...}

    def to_json(self) -> dict:
        d = {"kind": self.kind, "path": self.path, "ok": self.ok, "error": self.error,
             "port": self.port, "ready_s": self.ready_s, "stop_s": self.stop_s,
             "returncode": self.returncode, "wrk": self.wrk,
             "server_cpu_us_per_req": self.server_cpu_us_per_req, "server_wait_share": self.server_wait_share,
             "server_user_per_req": self.server_user_per_req}
        if self.kind == "traced":
            d["recorder_cpu_us_per_req"] = self.recorder_cpu_us_per_req
            d["stats"] = self.stats
            d["trace_file_bytes"] = self.trace_file_bytes
        if not self.ok:
            d["stdout_tail"] = self.stdout_tail
            d["stderr_tail"] = self.stderr_tail
            d["wrk_output"] = self.wrk_out
        return d


class Server:
    """The server command (maybe under astrace), its stdout read by a thread."""

    def __init__(self, cmd, env, cwd, stderr_file):
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file,
                                     stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                     text=True, errors="replace", start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float) -> tuple[int | None, str | None]:
        """Returns (port, None) on "ready PORT", else (None, why)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, f"no 'ready PORT' line within {timeout:g}s"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                return None, (f"exited before it was ready ({describe_rc(self.proc.returncode)})")
            m = re.match(r"^ready (\d+)\s*$", line)
            if m:
                return int(m.group(1)), None

    def stop(self, timeout: float) -> tuple[float, bool]:
        """SIGINT to the top process only (astrace forwards it); returns (secs, hung)."""
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            self.proc.wait()
            hung = True
        dt = time.perf_counter() - t0
        self._reader.join(timeout=5)
        return dt, hung

    def kill(self):
        if self.proc.poll() is None:
            kill_group(self.proc)
        self.proc.wait()
        self._reader.join(timeout=5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process (not its children), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_delay_seconds(pid: int) -> float | None:
    """Time the process's main thread has spent runnable but waiting for a CPU
    (/proc/PID/schedstat's run delay), or None."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


PERF_EVENTS = ("cycles:u", "instructions:u")


def start_perf_stat(pid: int, out: Path) -> subprocess.Popen | None:
    """`perf stat` counting the server's user-space cycles and instructions."""
    perf = shutil.which("perf")
    if not perf:
        return None
    return subprocess.Popen([perf, "stat", "-x,", "-e", ",".join(PERF_EVENTS), "-p", str(pid), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf_stat(proc: subprocess.Popen, out: Path) -> dict:
    """Stops `perf stat` and reads its counts: {event: count}."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    counts = {}
    try:
        for line in out.read_text().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].isdigit() and f[2] in PERF_EVENTS:
                counts[f[2]] = int(f[0])
    except OSError:
        pass
    return counts


def python_server_pid(top: subprocess.Popen, traced: bool) -> int | None:
    """The server's Python process: the command itself, or astrace's child."""
    if not traced:
        return top.pid
    try:
        with open(f"/proc/{top.pid}/task/{top.pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return None
    for child in children:
        try:
            with open(f"/proc/{child}/comm") as f:
                if f.read().startswith("python"):
                    return child
        except OSError:
            continue
    return None


def check_get(port: int, path: str, timeout: float) -> str | None:
    """One GET before the load: must be 200 with a JSON body. Returns an error or None."""
    url = f"http://{HOST}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
            if resp.status != 200:
                return f"GET {path}: HTTP {resp.status}"
        json.loads(body)
    except urllib.error.HTTPError as e:
        return f"GET {path}: HTTP {e.code}"
    except (OSError, ValueError) as e:
        return f"GET {path}: {e}"
    return None


def one_run(kind, path, args, env, tmp, idx, duration) -> RunResult:
    r = RunResult(kind, path)
    port = r.port = free_port()
    trace = stats_path = None
    server_cmd = [args.python, str(args.server), str(port)]
    if kind != "traced":
        cmd = server_cmd
    else:
        tag = f"{path.strip('/') or 'root'}-{idx}"
        trace = tmp / f"{tag}.pftrace"
        stats_path = tmp / f"{tag}.stats.json"
        cmd = [str(args.astrace), "record", "-q", "-f", "-o", str(trace),
               "--stats-json", str(stats_path)]
        if args.compression:
            cmd += ["--compression", args.compression]
        cmd += args.extra + ["--"] + server_cmd
    err_path = tmp / f"stderr-{kind}-{idx}.txt"
    server = None
    try:
        with open(err_path, "w+") as errf:
            t0 = time.perf_counter()
            try:
                server = Server(cmd, env, tmp, errf)
            except OSError as e:
                r.error = f"cannot start {cmd[0]}: {e}"
                return r
            try:
                got, why = server.wait_ready(args.ready_timeout)
                r.ready_s = time.perf_counter() - t0
                if why is None and got != port:
                    why = f"server says 'ready {got}', expected port {port}"
                if why is None:
                    why = check_get(port, path, args.request_timeout)
                if why is None:
                    url = f"http://{HOST}:{port}{path}"
                    wcmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}",
                            f"-d{duration:g}s", "--latency", url]
                    server_pid = python_server_pid(server.proc, kind == "traced")
                    cpu_before = [cpu_seconds(server_pid) if server_pid else None, cpu_seconds(server.proc.pid)]
                    wait_before = run_delay_seconds(server_pid) if server_pid else None
                    perf_out = tmp / f"perf-{kind}-{idx}.txt"
                    perf = start_perf_stat(server_pid, perf_out) if args.perf_stat and server_pid else None
                    load_start = time.monotonic()
                    try:
                        w = subprocess.run(wcmd, capture_output=True, text=True, errors="replace",
                                           stdin=subprocess.DEVNULL,
                                           timeout=duration + args.wrk_grace)
                    except subprocess.TimeoutExpired:
                        why = f"wrk did not finish within {duration + args.wrk_grace:g}s"
                    else:
                        cpu_after = [cpu_seconds(server_pid) if server_pid else None, cpu_seconds(server.proc.pid)]
                        wait_after = run_delay_seconds(server_pid) if server_pid else None
                        counts = stop_perf_stat(perf, perf_out) if perf else {}
                        unlink_quietly(perf_out)
                        if wait_before is not None and wait_after is not None:
                            r.server_wait_share = (wait_after - wait_before) / (time.monotonic() - load_start)
                        r.wrk_out = w.stdout + w.stderr
                        r.wrk = parse_wrk(w.stdout)
                        done = r.wrk["requests"]
                        if done and cpu_before[0] is not None and cpu_after[0] is not None:
                            r.server_cpu_us_per_req = (cpu_after[0] - cpu_before[0]) / done * 1e6
                        if done and counts:
                            r.server_user_per_req = {k: v / done for k, v in counts.items()}
                        if done and kind == "traced" and None not in (cpu_before[1], cpu_after[1]):
                            r.recorder_cpu_us_per_req = (cpu_after[1] - cpu_before[1]) / done * 1e6
                        if w.returncode != 0:
                            why = f"wrk {describe_rc(w.returncode)}: {tail(w.stderr, 3)}"
                        elif r.wrk["requests_per_s"] is None:
                            why = "no 'Requests/sec:' line in wrk's output"
                        elif not r.wrk["requests"]:
                            why = "wrk completed no request"
                        elif r.wrk["non_2xx_3xx"]:
                            why = f"{r.wrk['non_2xx_3xx']} non-2xx/3xx responses"
                if server.proc.poll() is not None and why is None:
                    why = f"server exited during the load ({describe_rc(server.proc.returncode)})"
            finally:
                if server.proc.poll() is None:
                    r.stop_s, hung = server.stop(args.stop_timeout)
                else:
                    hung = False
                    server.kill()
            r.returncode = server.proc.returncode
            if why is None and hung:
                why = (f"did not exit within {args.stop_timeout:g}s after SIGINT"
                       " (killed with SIGKILL; hang at shutdown)")
            elif why is None and r.returncode != 0:
                why = f"{describe_rc(r.returncode)} after SIGINT (expected 0)"
            elif hung:
                why += f"; also did not exit within {args.stop_timeout:g}s after SIGINT (killed)"
            errf.seek(0)
            r.stderr_tail = tail(errf.read())
            r.stdout_tail = tail("".join(server.stdout))
        if why is None and kind == "traced":
            try:
                with open(stats_path) as f:
                    r.stats = json.load(f)
            except (OSError, ValueError) as e:
                why = f"stats json unreadable: {e}"
            else:
                missing = [k for k in STATS_KEYS if k not in r.stats]
                if missing:
                    why = f"stats json lacks {', '.join(missing)}"
                elif r.stats["processes"] < 1:
                    why = "astrace traced no process (the server ran untraced)"
            if trace.exists():
                r.trace_file_bytes = trace.stat().st_size
            elif why is None:
                why = "trace file was not written"
        r.error = why
        r.ok = why is None
    except BaseException:
        if server is not None:
            server.kill()
        raise
    finally:
        unlink_quietly(trace, stats_path, err_path)
    return r


# ------------------------------------------------------------- one path ----

def bench_path(path, args, env, tmp) -> dict:
    res = {"path": path, "status": "ok", "failure": None, "warnings": [], "runs": []}
    runs: list[RunResult] = []

    def show(r, label):
        w = r.wrk or {}
        extra = ""
        if r.ok and r.kind == "traced":
            s = r.stats
            extra = (f"  events={s['records']:,} dropped={s['events_dropped']:,}"
                     f" bytes={s['trace_bytes']:,}")
        status = "ok" if r.ok else f"FAILED: {r.error}"
        stop = "-" if r.stop_s is None else f"{r.stop_s:.2f}s"
        log(f"  {label} {r.kind:8s} req/s={fmt_f(w.get('requests_per_s'), 0)}"
            f" p50={fmt_ms(w.get('p50_ms'))}ms p99={fmt_ms(w.get('p99_ms'))}ms"
            f" ready={'-' if r.ready_s is None else f'{r.ready_s:.2f}s'} stop={stop}"
            f" {status}{extra}")

    for i in range(args.warmup):
        w = one_run("warmup", path, args, env, tmp, f"warmup{i}", min(args.duration, 2.0))
        show(w, f"warm-up {i + 1}/{args.warmup}")
        if not w.ok:
            runs.append(w)
            break

    if not runs:
        for i in range(args.runs):
            for kind in ("untraced", "traced"):
                r = one_run(kind, path, args, env, tmp, i, args.duration)
                runs.append(r)
                show(r, f"run {i + 1}/{args.runs}")
                if not r.ok:
                    break
            if not runs[-1].ok:
                break

    res["runs"] = [r.to_json() for r in runs]
    bad = next((r for r in runs if not r.ok), None)
    if bad is not None:
        res["status"] = f"FAILED ({bad.kind})"
        res["failure"] = {"kind": bad.kind, "error": bad.error, "returncode": bad.returncode,
                          "stderr_tail": bad.stderr_tail, "stdout_tail": bad.stdout_tail}
        log(f"\n!!! {path}: {bad.kind} run FAILED: {bad.error}")
        log("!!! server stderr tail:")
        log("\n".join("    | " + l for l in (bad.stderr_tail or "(empty)").splitlines()))
        if bad.stdout_tail:
            log("!!! server stdout tail:")
            log("\n".join("    | " + l for l in bad.stdout_tail.splitlines()))
        if bad.wrk_out:
            log("!!! wrk output:")
            log("\n".join("    | " + l for l in bad.wrk_out.rstrip().splitlines()))
        log("")

    unt = [r for r in runs if r.kind == "untraced" and r.ok]
    trc = [r for r in runs if r.kind == "traced" and r.ok]
    s = {}
    for name, group in (("untraced", unt), ("traced", trc)):
        for k in ("requests_per_s", "p50_ms", "p99_ms", "requests"):
            s[f"{name}_{k}"] = median([r.wrk[k] for r in group])
        s[f"{name}_stop_s"] = median([r.stop_s for r in group])
    s["ratio_requests_per_s"] = ratio(s["traced_requests_per_s"], s["untraced_requests_per_s"])
    # Each traced run against the untraced run just before it.
    pairs = [ratio(b.wrk["requests_per_s"], a.wrk["requests_per_s"])
             for a, b in zip(runs, runs[1:]) if a.kind == "untraced" and b.kind == "traced" and a.ok and b.ok]
    s["median_pair_ratio"] = median([x for x in pairs if x is not None])
    for k in STATS_KEYS:
        s[k] = median([r.stats[k] for r in trc])
    s["events_per_request"] = median([ratio(r.stats["records"], r.wrk["requests"]) for r in trc])
    for name, group in (("untraced", unt), ("traced", trc)):
        s[f"{name}_server_cpu_us_per_req"] = median([r.server_cpu_us_per_req for r in group])
        s[f"{name}_server_wait_share"] = median([r.server_wait_share for r in group])
        for ev in PERF_EVENTS:
            s[f"{name}_server_{ev.split(':')[0]}_per_req"] = median([r.server_user_per_req.get(ev) for r in group])
    s["recorder_cpu_us_per_req"] = median([r.recorder_cpu_us_per_req for r in trc])
    s["events_dropped_max"] = max((r.stats["events_dropped"] for r in trc), default=None)
    s["untraced_runs"], s["traced_runs"] = len(unt), len(trc)
    res["summary"] = s

    if s["events_dropped_max"]:
        res["warnings"].append(
            f"events dropped: up to {s['events_dropped_max']:,} in a run (ring full)")
    for r in unt + trc:
        se = r.wrk.get("socket_errors")
        if se and any(se.values()):
            res["warnings"].append(
                f"wrk socket errors in a {r.kind} run: "
                + ", ".join(f"{k} {v}" for k, v in se.items()))
    for r in trc:
        if r.trace_file_bytes is not None and r.trace_file_bytes != r.stats["trace_bytes"]:
            res["warnings"].append(
                f"stats trace_bytes {r.stats['trace_bytes']:,} != file size {r.trace_file_bytes:,}")
            break

    log(f"  -- {path}: {res['status']}")
    if unt or trc:
        f0 = lambda x: fmt_f(x, 0)
        log(f"     req/s      untraced {fmt_spread([r.wrk['requests_per_s'] for r in unt], f0)}")
        log(f"                traced   {fmt_spread([r.wrk['requests_per_s'] for r in trc], f0)}")
        log(f"                ratio of medians {fmt_ratio(s['ratio_requests_per_s'])}"
            f"   median of the pairs' ratios {fmt_ratio(s['median_pair_ratio'])}")
        log(f"     p50/p99 ms untraced {fmt_ms(s['untraced_p50_ms'])} / {fmt_ms(s['untraced_p99_ms'])}"
            f"   traced {fmt_ms(s['traced_p50_ms'])} / {fmt_ms(s['traced_p99_ms'])}")
        us = lambda x: fmt_f(x, 2)
        log(f"     CPU us/req server untraced {us(s['untraced_server_cpu_us_per_req'])}"
            f"   traced {us(s['traced_server_cpu_us_per_req'])}"
            f"   recorder {us(s['recorder_cpu_us_per_req'])}   (during the load)")
        if s["untraced_server_cycles_per_req"] is not None:
            k = lambda x: "-" if x is None else f"{x / 1000:.1f}k"
            log(f"     server user cycles/instructions per request (perf stat) untraced"
                f" {k(s['untraced_server_cycles_per_req'])} / {k(s['untraced_server_instructions_per_req'])}"
                f"   traced {k(s['traced_server_cycles_per_req'])} / {k(s['traced_server_instructions_per_req'])}")
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"
        log(f"     server waiting for a CPU (run delay, share of the load) untraced"
            f" {pct(s['untraced_server_wait_share'])}   traced {pct(s['traced_server_wait_share'])}")
        log(f"     shutdown s untraced {fmt_spread([r.stop_s for r in unt], fmt_ms)}")
        log(f"                traced   {fmt_spread([r.stop_s for r in trc], fmt_ms)}")
    if trc:
        log(f"     events     {fmt_int(s['records'])}"
            f"   ({fmt_f(s['events_per_request'], 1)} per request; dropped max"
            f" {fmt_int(s['events_dropped_max'])})")
        log(f"     trace      {fmt_int(s['trace_bytes'])} bytes"
            f"   (uncompressed {fmt_int(s['uncompressed_bytes'])}; recorder CPU"
            f" {fmt_ms(s['recorder_cpu_s'])} s)")
    for w in res["warnings"]:
        log(f"     WARNING: {w}")
    log("")
    return res


# ------------------------------------------------------------ the table ----

def _mb(x):
    return None if x is None else x / 1e6


COLUMNS = [
    # header, unit line, getter
    ("path", "", lambda r, s: r["path"]),
    ("untr", "req/s", lambda r, s: fmt_f(s.get("untraced_requests_per_s"), 0)),
    ("traced", "req/s", lambda r, s: fmt_f(s.get("traced_requests_per_s"), 0)),
    ("ratio", "tr/untr", lambda r, s: fmt_ratio(s.get("ratio_requests_per_s"))),
    ("untr p50", "ms", lambda r, s: fmt_ms(s.get("untraced_p50_ms"))),
    ("untr p99", "ms", lambda r, s: fmt_ms(s.get("untraced_p99_ms"))),
    ("tr p50", "ms", lambda r, s: fmt_ms(s.get("traced_p50_ms"))),
    ("tr p99", "ms", lambda r, s: fmt_ms(s.get("traced_p99_ms"))),
    ("events", "", lambda r, s: fmt_int(s.get("records"))),
    ("ev/req", "", lambda r, s: fmt_f(s.get("events_per_request"), 1)),
    ("srv cpu", "us/req", lambda r, s: f"{fmt_f(s.get('untraced_server_cpu_us_per_req'), 1)}"
                                       f"/{fmt_f(s.get('traced_server_cpu_us_per_req'), 1)}"),
    ("rec cpu", "us/req", lambda r, s: fmt_f(s.get("recorder_cpu_us_per_req"), 2)),
    ("drop", "", lambda r, s: fmt_int(s.get("events_dropped_max"))),
    ("trace", "MB", lambda r, s: fmt_f(_mb(s.get("trace_bytes")), 2)),
    ("status", "", lambda r, s: r["status"]),
]


# ------------------------------------------------------------------ main ----

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Requests/s of an aiohttp server under wrk, untraced vs traced by astrace.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python3 bench/http_bench.py --runs 1 --duration 2")
    p.add_argument("--python", metavar="PATH", default=DEFAULT_PYTHON,
                   help=f"interpreter for the server, needs aiohttp (default {DEFAULT_PYTHON})")
    p.add_argument("--astrace", metavar="PATH", type=Path, default=DEFAULT_ASTRACE,
                   help=f"astrace binary (default: <repo>/build/astrace = {DEFAULT_ASTRACE})")
    p.add_argument("--server", metavar="PATH", type=Path, default=DEFAULT_SERVER,
                   help="server script, run as PYTHON SCRIPT PORT; must print 'ready PORT'"
                        " (default: bench/apps/aiohttp_server.py)")
    p.add_argument("--wrk", metavar="PATH", default="wrk", help="wrk binary (default: wrk from PATH)")
    p.add_argument("--path", action="append", metavar="PATH", dest="paths",
                   help="URL path to load, repeatable (default: / and /work)")
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="untraced+traced pairs per path, alternating (default 3)")
    p.add_argument("--duration", type=float, default=5.0, metavar="SEC",
                   help="wrk -d per run (default 5)")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="wrk -t (default 2)")
    p.add_argument("--connections", type=int, default=50, metavar="N", help="wrk -c (default 50)")
    p.add_argument("--warmup", type=int, default=1, metavar="N",
                   help="untraced warm-up runs per path (at most 2 s of load each), discarded (default 1)")
    p.add_argument("--json", metavar="OUT", type=Path, help="write all results as JSON to OUT")
    p.add_argument("--perf-stat", action="store_true",
                   help="also count the server's user-space cycles and instructions per request with "
                        "`perf stat` during the load (steadier than CPU time; costs some throughput)")
    p.add_argument("--compression", choices=("zstd", "deflate", "none"),
                   help="passed to astrace record --compression (default: astrace's default)")
    p.add_argument("--extra-args", default="", metavar='"..."',
                   help="extra astrace record options, split with shlex (e.g. \"--buffer-size 4M\")")
    p.add_argument("--ready-timeout", type=float, default=60.0, metavar="SEC",
                   help="time for the server to print 'ready PORT' (default 60)")
    p.add_argument("--stop-timeout", type=float, default=60.0, metavar="SEC",
                   help="time for the server (and astrace) to exit after SIGINT before it is"
                        " killed and the run FAILED (default 60)")
    p.add_argument("--request-timeout", type=float, default=10.0, metavar="SEC",
                   help="time-out of the single check GET before the load (default 10)")
    p.add_argument("--wrk-grace", type=float, default=30.0, metavar="SEC",
                   help="wrk is killed after duration + this (default 30)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if not 0 < args.duration <= 3600:
        p.error("--duration must be in (0, 3600]")
    if args.threads < 1 or args.connections < args.threads:
        p.error("need --threads >= 1 and --connections >= --threads")
    for name in ("ready_timeout", "stop_timeout", "request_timeout", "wrk_grace"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    args.paths = args.paths or list(DEFAULT_PATHS)
    for path in args.paths:
        if not path.startswith("/") or any(c.isspace() for c in path):
            p.error(f"--path must start with '/' and hold no spaces: {path!r}")
    args.extra = split_extra_args(p, args.extra_args)
    return args, p


def main(argv=None) -> int:
    args, parser = parse_args(argv)

    args.astrace = require_astrace(parser, args.astrace, REPO_DIR)
    args.server = args.server.resolve()
    if not args.server.is_file():
        parser.error(f"server script not found: {args.server}")

    wrk = shutil.which(args.wrk)
    if not wrk:
        log(f"skipped: wrk not found ({args.wrk!r}; Debian: apt-get install wrk)")
        return 0
    args.wrk = wrk
    try:
        probe = subprocess.run(
            [args.python, "-c",
             "import sys, aiohttp; print(sys.version.split()[0], aiohttp.__version__)"],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log(f"skipped: cannot run {args.python}: {e}")
        return 0
    if probe.returncode != 0:
        log(f"skipped: aiohttp not importable by {args.python}"
            f" ({tail(probe.stderr, 1) or describe_rc(probe.returncode)});"
            " Debian: apt-get install python3-aiohttp, or pass --python")
        return 0
    py_ver, aiohttp_ver = (probe.stdout.split() + ["?", "?"])[:2]
    wrk_ver = subprocess.run([args.wrk, "--version"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL).stdout.splitlines()
    wrk_ver = wrk_ver[0].strip() if wrk_ver else "?"

    env = dict(os.environ)
    env.pop("AIOHTTP_BENCH_PORT", None)  # the port is always passed as argv[1]

    config = {
        "astrace": str(args.astrace), "astrace_git_rev": git_rev(REPO_DIR),
        "python": args.python, "python_version": py_ver, "aiohttp_version": aiohttp_ver,
        "server": str(args.server), "wrk": args.wrk, "wrk_version": wrk_ver,
        "paths": args.paths, "runs": args.runs, "warmup": args.warmup,
        "duration_s": args.duration, "threads": args.threads, "connections": args.connections,
        "compression": args.compression or "(astrace default)", "extra_args": args.extra,
        **host_config(),
    }
    log("astrace HTTP benchmark (aiohttp under wrk, loopback)")
    for k in ("astrace", "astrace_git_rev", "python", "python_version", "aiohttp_version",
              "server", "wrk_version", "paths", "runs", "warmup", "duration_s", "threads",
              "connections", "compression", "extra_args"):
        log(f"  {k:16s} {config[k]}")
    log(f"  {'host':16s} {config['host']['system']}, {config['host']['cpus']} CPUs"
        " (wrk and the server share them)")
    log("")

    results = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="astrace-http-bench-") as tmpname:
        tmp = Path(tmpname)
        for path in args.paths:
            log(f"== {path}")
            results.append(bench_path(path, args, env, tmp))
    total = time.perf_counter() - t_start

    log("=" * 78)
    log(f"Summary (medians; {args.runs} untraced + {args.runs} traced runs per path, alternating;"
        f" wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s; {total:.0f}s total)")
    log("")
    print_table(COLUMNS, results)
    log("")
    log("ratio = traced/untraced req/s (1.0 = no cost); p50/p99 = wrk latency percentiles;")
    log("events = records read by astrace per run; ev/req = events per completed request;")
    log("drop = max events dropped in a run; trace MB = .pftrace size (10^6 bytes);")
    log("srv cpu = the server's CPU per request during the load, untraced/traced; rec cpu = astrace's.")
    log("Absolute req/s depend on the machine (wrk and the server share its CPUs): compare ratios.")

    failed = [r["path"] for r in results if r["status"].startswith("FAILED")]
    log_warnings(results, "path")
    if failed:
        log("")
        log(f"FAILED: {', '.join(failed)}")

    if write_json(args.json, config, results, total):
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
