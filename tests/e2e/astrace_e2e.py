"""Helpers for astrace's end-to-end tests: run `astrace record` on a real
Python program, read the trace back with `astrace dump --json`, and query it.

Every test records with each CPython found on the machine (Debian's
/usr/bin/python3, pyenv's python3, /opt/pythons/*/bin/python3.*), so the
"one build serves every interpreter" promise is checked, not assumed.
"""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "apps")
ASTRACE = os.environ.get("ASTRACE_BIN") or os.path.join(HERE, "..", "..", "build", "astrace")


def _version_of(python):
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def pythons():
    """Distinct CPython 3.11+ interpreters on this machine, by real path."""
    candidates = ["/usr/bin/python3", shutil.which("python3") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin", "python3")))
    candidates += sorted(glob.glob("/opt/pythons/*/bin/python3.*[0-9]"))
    found, seen = [], set()
    for c in candidates:
        if not c or not os.path.exists(c):
            continue
        # pyenv's shim is a shell script: resolve it to the interpreter.
        real = subprocess.run([c, "-c", "import sys; print(sys.executable)"], capture_output=True,
                              text=True).stdout.strip() or c
        real = os.path.realpath(real)
        if real in seen:
            continue
        v = _version_of(real)
        if v and tuple(map(int, v.split("."))) >= (3, 11):
            seen.add(real)
            found.append(real)
    return found


PYTHONS = pythons()


class Trace:
    """A dumped trace (astrace dump --json) with small query helpers."""

    def __init__(self, data):
        self.data = data
        self.tracks = {t["uuid"]: t for t in data["tracks"]}
        self.slices = data["slices"]
        self.instants = data["instants"]

    def processes(self):
        return [t for t in self.tracks.values() if t["kind"] == "process"]

    def threads(self, pid=None):
        return [t for t in self.tracks.values() if t["kind"] == "thread" and (pid is None or t["pid"] == pid)]

    def slices_named(self, name, pid=None, tid=None):
        out = []
        for s in self.slices:
            if s["name"] != name:
                continue
            t = self.tracks[s["track"]]
            if pid is not None and t.get("pid") != pid:
                continue
            if tid is not None and t.get("tid") != tid:
                continue
            out.append(s)
        return out

    def task_steps(self, pid=None, tid=None):
        """Callback slices on loop threads that ran a task step ("step Task-7 fetch")."""
        out = []
        for s in self.slices:
            t = self.tracks[s["track"]]
            if t["kind"] != "thread" or not s["name"].startswith("step "):
                continue
            if (pid is None or t["pid"] == pid) and (tid is None or t["tid"] == tid):
                out.append(s)
        return out

    def instant(self, name, pid=None):
        for i in self.instants:
            t = self.tracks[i["track"]]
            if i["name"] == name and (pid is None or t.get("pid") == pid):
                return i
        return None

    def summary(self):
        return self.instant("astrace: summary")["args"]

    def session(self):
        return self.instant("astrace: session")["args"]

    def enclosing(self, s, name):
        """The slice named `name` on the same track that contains s."""
        for o in self.slices:
            if o["track"] == s["track"] and o["name"] == name and o["ts"] <= s["ts"] and \
                    o["ts"] + o["dur"] >= s["ts"] + s["dur"] and o is not s:
                return o
        return None


class Recording:
    def __init__(self, proc, trace_path, trace):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.path = trace_path
        self.trace = trace


def dump_json(path):
    out = subprocess.run([ASTRACE, "dump", "--json", path], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"astrace dump failed ({out.returncode}): {out.stderr}")
    return Trace(json.loads(out.stdout))


class AstraceTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="astrace-e2e-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def app(self, name):
        return os.path.join(APPS, name)

    def record(self, cmd, options=(), input=None, env=None, timeout=120, expect_trace=True, out=None):
        if out is None:
            self._n = getattr(self, "_n", 0) + 1
            out = os.path.join(self.tmp, f"out{self._n}.pftrace")
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run([ASTRACE, "record", "-o", out, *options, "--", *cmd], input=input,
                              capture_output=True, text=True, timeout=timeout, env=full_env, cwd=self.tmp)
        trace = dump_json(out) if expect_trace else None
        return Recording(proc, out, trace)

    def assertWellFormed(self, trace):
        """What every astrace trace must satisfy to show right in Perfetto."""
        self.assertEqual(trace.data["clock_snapshots"], 1)
        self.assertEqual(trace.data["unmatched_ends"], 0, "END events with no open slice")
        self.assertEqual(trace.data["unknown_iids"], 0, "names referring to undefined interned ids")
        unresolved = [s for s in trace.data["samples"] if s.get("unresolved")]
        self.assertEqual(unresolved[:3], [], "samples whose callstack, frames or mappings are undefined")
        for s in trace.slices:
            self.assertGreaterEqual(s["dur"], 0, f"unterminated slice {s}")
        self.assertIsNotNone(trace.instant("astrace: session"))
        self.assertIsNotNone(trace.instant("astrace: summary"))
