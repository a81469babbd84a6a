"""End to end: event-loop iterations, poll waits, callbacks and metadata in a
recorded trace, for every Python on the machine and every compression."""
import os
import unittest

from astrace_e2e import PYTHONS, AstraceTestCase


class LoopIterationTests(AstraceTestCase):
    def test_known_number_of_iterations(self):
        n = 500
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("loop_iterations.py"), str(n)])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                begin = t.slices_named("begin_mark")
                end = t.slices_named("end_mark")
                self.assertEqual((len(begin), len(end)), (1, 1))
                first = t.enclosing(begin[0], "loop iteration")
                last = t.enclosing(end[0], "loop iteration")
                between = [s for s in t.slices_named("loop iteration")
                           if s["track"] == first["track"] and first["ts"] <= s["ts"] <= last["ts"]]
                self.assertEqual(len(between), n + 1)
                # Every iteration polls once, inside it.
                stop = last["ts"] + last["dur"]
                polls = [s for s in t.slices_named("select") if first["ts"] <= s["ts"] <= stop]
                self.assertEqual(len(polls), n + 1)
                for p in polls:
                    self.assertEqual(p["depth"], 1)
                    self.assertEqual(p["args"]["timeout_ms"], 0)
                # Each iteration after the first ran one task step.
                steps = [s for s in t.task_steps() if first["ts"] <= s["ts"] <= stop]
                self.assertEqual(len(steps), n + 1)

    def test_poll_of_a_200ms_sleep_lasts_200ms(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("sleep_poll.py")])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertWellFormed(rec.trace)
                long_polls = [s for s in rec.trace.slices_named("select") if s["dur"] > 100e6]
                self.assertEqual(len(long_polls), 1, long_polls)
                p = long_polls[0]
                self.assertGreaterEqual(p["dur"], 195e6)
                self.assertLess(p["dur"], 300e6)
                self.assertAlmostEqual(p["args"]["timeout_ms"], 200, delta=10)
                self.assertEqual(p["args"]["ready_events"], 0)
                loop = rec.trace.enclosing(p, "loop iteration")
                self.assertIsNotNone(loop)
                self.assertGreaterEqual(loop["dur"], p["dur"])

    def test_hook_type_is_immutable(self):
        """CPython only specializes a method load (`handle._run()`) whose
        descriptor's type is immutable; a mutable hook type made every hooked
        call take the generic lookup. The hooks must stay specializable."""
        probe = ("import asyncio.events\n"
                 "hook = asyncio.events.Handle.__dict__['_run']\n"
                 "print('hooked', hasattr(hook, '__wrapped__'))\n"
                 "print('immutable flag', bool(type(hook).__flags__ & (1 << 8)))\n"
                 "try:\n"
                 "    type(hook).probe = 1\n"
                 "    print('type attribute set')\n"
                 "except TypeError:\n"
                 "    print('type attribute refused')\n")
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, "-c", probe], options=["--no-sampler"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertEqual(rec.stdout.split("\n")[:3],
                                 ["hooked True", "immutable flag True", "type attribute refused"])

    def test_callbacks_are_named_after_the_callable(self):
        rec = self.record([PYTHONS[0], self.app("sleep_poll.py")])
        names = {s["name"] for s in rec.trace.slices if s["depth"] == 1}
        # Task steps say which task ran; other callbacks are named after the callable.
        self.assertIn("step Task-1 main", names)
        self.assertIn("asyncio.futures._set_result_unless_cancelled", names)
        self.assertIn("asyncio.base_events._run_until_complete_cb", names)

    def test_metadata(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("sleep_poll.py")])
                t = rec.trace
                session = t.session()
                self.assertEqual(session["command"], f"{py} {self.app('sleep_poll.py')}")
                self.assertEqual(session["compression"], "zstd")
                self.assertEqual(session["sampler"], "1000 Hz wall, signal 27")
                self.assertEqual(session["tasks"], "on")
                self.assertGreater(session["start_realtime_ns"], 1.6e18)
                self.assertRegex(session["astrace_version"], r"^\d+\.\d+\.\d+$")
                self.assertEqual(t.summary()["events_dropped"], 0)
                (proc,) = t.processes()
                info = t.instant("astrace: process", pid=proc["pid"])["args"]
                self.assertEqual(os.path.realpath(info["executable"]), os.path.realpath(py))
                self.assertRegex(info["python_version"], r"^3\.\d+\.\d+")
                self.assertEqual(proc["cmdline"][1:], [self.app("sleep_poll.py")])
                self.assertEqual(proc["name"], "sleep_poll.py")
                (thread,) = t.threads()
                self.assertEqual(thread["name"], "MainThread")
                self.assertEqual(thread["tid"], proc["pid"])
                end = t.instant("astrace: process end", pid=proc["pid"])["args"]
                self.assertEqual(end["ended"], "exited with status 0")
                self.assertEqual(end["events_dropped"], 0)

    def test_stats_json(self):
        import json
        stats_path = os.path.join(self.tmp, "stats.json")
        rec = self.record([PYTHONS[0], self.app("loop_iterations.py"), "100"], options=["--stats-json", stats_path])
        with open(stats_path) as f:
            stats = json.load(f)
        self.assertEqual(stats["trace_bytes"], os.path.getsize(rec.path))
        self.assertEqual(stats["processes"], 1)
        self.assertEqual(stats["events_dropped"], 0)
        # 101 iterations with a select and a step each, at least: records and events.
        self.assertGreater(stats["records"], 3 * 101)
        self.assertGreaterEqual(stats["trace_events"], len(rec.trace.slices))
        self.assertGreater(stats["recorder_cpu_s"], 0)
        self.assertGreater(stats["wall_s"], 0)

    def test_each_compression_mode(self):
        for comp, key in (("zstd", "zstd_bundles"), ("deflate", "deflate_bundles"), ("none", None)):
            with self.subTest(compression=comp):
                out = os.path.join(self.tmp, f"{comp}.pftrace")
                rec = self.record([PYTHONS[0], self.app("loop_iterations.py"), "50"],
                                  options=["--compression", comp], out=out)
                self.assertWellFormed(rec.trace)
                self.assertEqual(len(rec.trace.slices_named("begin_mark")), 1)
                self.assertEqual(rec.trace.session()["compression"], comp)
                for k in ("zstd_bundles", "deflate_bundles"):
                    self.assertEqual(rec.trace.data[k] > 0, k == key, k)


if __name__ == "__main__":
    unittest.main()
