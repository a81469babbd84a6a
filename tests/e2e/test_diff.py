"""End to end: `astrace diff` on recordings of two versions of real programs
(tests/apps/diff_*.py), asserting the direction and rough size of each change;
a trace against itself (no change); stack samples (synthetic traces, as no
sampler writes them yet); and bad input (a clear error, exit status 2)."""
import json
import os
import subprocess
import unittest

from astrace_e2e import ASTRACE, PYTHONS, AstraceTestCase


def diff(*args, timeout=120):
    return subprocess.run([ASTRACE, "diff", *args], capture_output=True, text=True, timeout=timeout)


def diff_json(before, after, *options):
    r = diff("--format", "json", "--top", "0", "--all", *options, before, after)
    if r.returncode not in (0, 1):
        raise AssertionError(f"astrace diff failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def dim(d, name):
    (out,) = [x for x in d["dimensions"] if x["id"] == name]
    return out


def group(d, dimension, key):
    groups = [g for g in dim(d, dimension)["groups"] if g["key"] == key]
    return groups[0] if groups else None


def metric(d, dimension, key, mid):
    g = group(d, dimension, key)
    assert g is not None, f"no group {key!r} in {dimension}: {[x['key'] for x in dim(d, dimension)['groups']]}"
    (m,) = [x for x in g["metrics"] if x["id"] == mid]
    return m


# ---- a minimal protobuf writer, for traces with stack samples ---------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _int(field, v):
    return _varint(field << 3) + _varint(v)


def _bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return _varint((field << 3) | 2) + _varint(len(b)) + b


def _packet(*fields):
    body = b"".join(fields)
    return b"\x0a" + _varint(len(body)) + body


def sample_trace(path, stacks):
    """A trace with one thread, three loop iterations and PerfSamples; `stacks`
    is a list of (count, [function names outermost first]); None as a stack is
    an undefined callstack iid."""
    names = sorted({f for _, s in stacks if s for f in s})
    fid = {n: i + 1 for i, n in enumerate(names)}
    interned = b"".join(_bytes(5, _int(1, fid[n]) + _bytes(2, n)) for n in names)  # function_names
    interned += b"".join(_bytes(6, _int(1, fid[n]) + _int(2, fid[n])) for n in names)  # frames (iid = name id)
    for i, (_, s) in enumerate(stacks):
        if s:
            interned += _bytes(7, _int(1, i + 1) + b"".join(_int(2, fid[n]) for n in s))  # callstacks
    out = [_packet(_int(10, 1), _int(13, 1), _bytes(12, interned))]
    thread = _int(1, 1) + _int(2, 1) + _bytes(5, "MainThread")
    out.append(_packet(_bytes(60, _int(1, 7) + _bytes(4, thread))))
    ts = 1_000_000
    for _ in range(3):
        out.append(_packet(_int(8, ts), _int(10, 1), _bytes(11, _int(9, 1) + _int(11, 7) + _bytes(23, "loop iteration"))))
        ts += 10 * 1_000_000
        out.append(_packet(_int(8, ts), _int(10, 1), _bytes(11, _int(9, 2) + _int(11, 7))))
    for i, (count, s) in enumerate(stacks):
        for _ in range(count):
            ts += 1000
            iid = i + 1 if s else 999
            out.append(_packet(_int(8, ts), _int(10, 1), _bytes(66, _int(2, 1) + _int(3, 1) + _int(4, iid))))
    with open(path, "wb") as f:
        f.write(b"".join(out))


class DiffTests(AstraceTestCase):
    def rec(self, py, app, *args, options=()):
        r = self.record([py, self.app(app), *args], options=list(options), expect_trace=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.path

    def test_gather_instead_of_a_loop(self):
        """10 sequential awaits of a 50 ms fetch vs gather: wall time ~10x
        lower, 10 more tasks (fetch: 0 -> 10), the await site unchanged."""
        for py in PYTHONS:
            with self.subTest(python=py):
                before = self.rec(py, "diff_fetch.py", "sequential")
                after = self.rec(py, "diff_fetch.py", "gather")
                d = diff_json(before, after)
                wall = metric(d, "loop", "", "loop.wall")
                self.assertTrue(wall["changed"])
                self.assertGreater(wall["before"], 480)
                self.assertLess(wall["after"], 150)
                self.assertGreater(wall["before"] / wall["after"], 4)
                tasks = metric(d, "loop", "", "loop.tasks")
                self.assertEqual(tasks["after"] - tasks["before"], 10)
                fetch = group(d, "coroutines", "fetch")
                self.assertEqual(fetch["status"], "new")
                self.assertEqual(metric(d, "coroutines", "fetch", "coro.tasks")["after"], 10)
                self.assertAlmostEqual(metric(d, "coroutines", "fetch", "coro.wait_per_task")["after"], 50, delta=25)
                main_tasks = metric(d, "coroutines", "main", "coro.tasks")
                self.assertEqual((main_tasks["before"], main_tasks["after"]), (1, 1))
                self.assertFalse(main_tasks["changed"])
                main_wait = metric(d, "coroutines", "main", "coro.wait_per_task")
                self.assertTrue(main_wait["changed"])
                self.assertGreater(main_wait["before"] / main_wait["after"], 4)
                # The await both versions share: same count, same time per await.
                (site,) = [g["key"] for g in dim(d, "awaits")["groups"]
                           if g["key"].startswith("await asyncio.sleep() @ ") and "diff_fetch.py:" in g["key"]]
                count = metric(d, "awaits", site, "await.count")
                self.assertEqual((count["before"], count["after"]), (10, 10))
                mean = metric(d, "awaits", site, "await.mean")
                # Same 50 ms sleeps: the means agree (loosely: CI runs this next to
                # the sanitized build, and a loaded loop wakes timers late).
                self.assertAlmostEqual(mean["after"], mean["before"], delta=0.5 * mean["before"])
                self.assertEqual(group(d, "awaits", site)["status"], "both")
                # "await gather(10 tasks)" is one site whatever the number of tasks.
                gather_site = [g for g in dim(d, "awaits")["groups"] if g["key"].startswith("await gather() @ ")]
                self.assertEqual(len(gather_site), 1)
                self.assertEqual(gather_site[0]["status"], "new")

                # The text form says the same, ranked and folded.
                r = diff(before, after)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("loop wall time", r.stdout)
                self.assertIn("fetch (new)", r.stdout)
                # Stack samples (on by default) give the functions section.
                self.assertIn("functions (share of stack samples", r.stdout)
                self.assertRegex(r.stdout, r"unchanged beyond noise")

    def test_executor_instead_of_blocking(self):
        """time.sleep(0.05) in a handler vs the same in run_in_executor: the
        slowest loop iteration drops from ~50 ms to near 0; the other way
        round is a regression for --fail-on-regression."""
        py = PYTHONS[0]
        inline = self.rec(py, "diff_blocking.py", "inline")
        executor = self.rec(py, "diff_blocking.py", "executor")
        d = diff_json(inline, executor)
        slowest = metric(d, "loop", "", "loop.slowest_iteration")
        self.assertGreater(slowest["before"], 45)
        self.assertLess(slowest["after"], 10)
        self.assertTrue(slowest["changed"])
        idle = metric(d, "loop", "", "loop.idle_share")
        self.assertLess(idle["before"], 0.5)
        self.assertGreater(idle["after"], 0.8)
        step = metric(d, "coroutines", "handler", "coro.step_p99")
        self.assertGreater(step["before"], 45)
        self.assertLess(step["after"], 10)
        run = metric(d, "coroutines", "handler", "coro.run_per_task")
        self.assertGreater(run["before"], 45)
        self.assertLess(run["after"], 10)

        # Better: no regression. Worse: exit 1, and it says which metric.
        r = diff("--fail-on-regression", "50", inline, executor)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 regressions", r.stdout)
        r = diff("--fail-on-regression", "50", executor, inline)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("loop.slowest_iteration", r.stdout)
        self.assertIn("<< regression", r.stdout)
        d = diff_json(executor, inline, "--fail-on-regression", "50")
        ids = {x["id"] for x in d["regression_check"]["regressions"]}
        self.assertIn("loop.slowest_iteration", ids)
        self.assertIn("coro.step_p99", ids)
        # Only the chosen metrics are checked.
        r = diff("--fail-on-regression", "50", "--regression-metrics", "loop.lag_p50", executor, inline)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # --by limits the dimensions (and the check to them).
        r = diff("--by", "awaits", "--fail-on-regression", "50", executor, inline)
        self.assertNotIn("event loop", r.stdout)
        self.assertIn("awaits", r.stdout)
        # Markdown: a table per dimension.
        r = diff("--format", "markdown", inline, executor)
        self.assertEqual(r.returncode, 0)
        self.assertIn("### event loop", r.stdout)
        self.assertIn("| slowest iteration (busy) |", r.stdout)

    def test_a_trace_against_itself(self):
        py = PYTHONS[0]
        path = self.rec(py, "diff_fetch.py", "gather")
        d = diff_json(path, path, "--fail-on-regression", "0")
        self.assertEqual(d["regression_check"]["count"], 0)
        for x in d["dimensions"]:
            self.assertEqual(x["changed"], 0, x)
            for g in x["groups"]:
                self.assertEqual(g["status"], "both")
                for m in g["metrics"]:
                    self.assertFalse(m["changed"], m)
                    if m["delta"] is not None:
                        self.assertEqual(m["delta"], 0, m)
        self.assertGreater(dim(d, "coroutines")["compared"], 1)
        r = diff("--fail-on-regression", "0", path, path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no change beyond noise", r.stdout)
        self.assertNotIn("(new)", r.stdout)
        # The same program in each compression mode reads the same way.
        for comp in ("none", "deflate"):
            other = self.rec(py, "diff_fetch.py", "gather", options=["--compression", comp])
            d = diff_json(path, other)
            tasks = metric(d, "loop", "", "loop.tasks")
            self.assertEqual(tasks["before"], tasks["after"])
            self.assertEqual(group(d, "coroutines", "fetch")["status"], "both")

    def test_functions_from_samples(self):
        before = os.path.join(self.tmp, "s1.pftrace")
        after = os.path.join(self.tmp, "s2.pftrace")
        sample_trace(before, [(60, ["main", "handler", "json_dumps"]), (40, ["main", "handler", "parse"])])
        sample_trace(after, [(20, ["main", "handler", "json_dumps"]), (80, ["main", "handler", "parse"]),
                             (5, None)])
        d = diff_json(before, after, "--by", "functions")
        self.assertEqual(d["before"]["samples"], 100)
        self.assertEqual(d["after"]["samples"], 100)
        self.assertEqual(d["after"]["samples_unresolved"], 5)
        self.assertIn("5 samples without a resolvable callstack", dim(d, "functions")["note"])
        self.assertAlmostEqual(metric(d, "functions", "json_dumps", "fn.self")["before"], 0.6)
        self.assertAlmostEqual(metric(d, "functions", "json_dumps", "fn.self")["after"], 0.2)
        self.assertAlmostEqual(metric(d, "functions", "parse", "fn.total")["after"], 0.8)
        handler = group(d, "functions", "handler")
        self.assertFalse(handler["changed"])
        self.assertEqual(metric(d, "functions", "handler", "fn.total")["after"], 1.0)
        self.assertEqual(metric(d, "functions", "handler", "fn.self")["after"], 0.0)
        # Ranked: the biggest change first.
        self.assertEqual({g["key"] for g in dim(d, "functions")["groups"][:2]}, {"json_dumps", "parse"})
        # Lines of one function are one row: astrace names frames "qualname (file:line)".
        by_line = os.path.join(self.tmp, "s3.pftrace")
        sample_trace(by_line, [(30, ["main (app.py:9)", "work (app.py:3)"]), (70, ["main (app.py:9)", "work (app.py:4)"])])
        d = diff_json(by_line, by_line, "--by", "functions")
        self.assertEqual({g["key"] for g in dim(d, "functions")["groups"]}, {"main (app.py)", "work (app.py)"})
        self.assertAlmostEqual(metric(d, "functions", "work (app.py)", "fn.self")["before"], 1.0)
        r = diff("--by", "functions", before, after)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("json_dumps", r.stdout)
        self.assertIn("-40.0 pp", r.stdout)
        # A recording without samples: said, not invented.
        rec = self.rec(PYTHONS[0], "diff_fetch.py", "gather", options=["--no-sampler"])
        r = diff(rec, rec)
        self.assertIn(f"no samples in {rec}", r.stdout)
        r = diff("--by", "functions", rec, before)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no data for the chosen dimensions", r.stderr)

    def test_bad_input(self):
        py = PYTHONS[0]
        good = self.rec(py, "diff_fetch.py", "gather")
        with open(good, "rb") as f:
            data = f.read()
        truncated = os.path.join(self.tmp, "truncated.pftrace")
        with open(truncated, "wb") as f:
            f.write(data[: len(data) * 2 // 3])
        empty = os.path.join(self.tmp, "empty.pftrace")
        open(empty, "wb").close()
        cases = [
            (os.path.join(self.tmp, "missing.pftrace"), "cannot open"),
            (truncated, "truncated"),
            (empty, "empty"),
            (self.app("diff_fetch.py"), "not a Perfetto protobuf trace"),
            (self.tmp, "not a regular file"),
        ]
        for path, message in cases:
            with self.subTest(path=path):
                for args in ((path, good), (good, path)):
                    r = diff(*args)
                    self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                    self.assertIn(message, r.stderr)
                    self.assertIn(path, r.stderr)
                    self.assertEqual(r.stdout, "")
        # A trace with no asyncio in it (and no samples): an honest "no data", exit 2.
        plain = self.record([py, "-c", "print(1)"], options=["--no-sampler"], expect_trace=False).path
        r = diff(plain, good)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("no data for the chosen dimensions", r.stderr)
        # Usage errors.
        for args in ((good,), (good, good, good), ("--by", "nonsense", good, good), ("--format", "xml", good, good),
                     ("--noise", "-3", good, good), ("--regression-metrics", "loop.nope", good, good),
                     ("--top", "many", good, good)):
            with self.subTest(args=args):
                r = diff(*args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertTrue(r.stderr.strip())
        r = diff("--list-metrics")
        self.assertEqual(r.returncode, 0)
        self.assertIn("loop.slowest_iteration", r.stdout)
        r = diff("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--fail-on-regression", r.stdout)


if __name__ == "__main__":
    unittest.main()
