"""End to end: one build, every CPython 3.11+ found (3.11, 3.12, 3.13, 3.14,
3.15 where installed), the same picture. And an interpreter whose frame
layout cannot be read degrades to a trace without stack samples, never a
crash or a misread."""
import re
import unittest

from astrace_e2e import PYTHONS, AstraceTestCase, _version_of

MS = 1e6

# What tests/apps/tasks_blocking.py must show on every interpreter.
SLICES = {"loop iteration", "select", "step blocker blocker", "step waiter-1 waiter", "scheduled", "run",
          "await asyncio.sleep()", "await gather(3 tasks)", "blocker blocker", "waiter-1 waiter"}
COUNTERS = {"loop lag", "ready queue", "callbacks per iteration", "live tasks", "tasks created/s", "RSS"}


class SamePictureTests(AstraceTestCase):
    def check(self, py, options):
        rec = self.record([py, self.app("tasks_blocking.py")], options=options)
        self.assertEqual(rec.returncode, 0, rec.stderr)
        t = rec.trace
        self.assertWellFormed(t)
        names = {s["name"] for s in t.slices}
        self.assertEqual(SLICES - names, set())
        counters = {tr["name"] for tr in t.tracks.values() if tr["kind"] == "counter"}
        self.assertEqual(COUNTERS - counters, set())
        self.assertNotIn("notes", t.summary())
        # The step that blocks in time.sleep(0.3): its samples say so.
        (step,) = [s for s in t.slices if s["name"] == "step blocker blocker" and s["dur"] > 250 * MS]
        inside = [s for s in t.data["samples"] if step["ts"] <= s["ts"] < step["ts"] + step["dur"]]
        self.assertGreater(len(inside), 200)
        with_sleep = [s for s in inside if "time.sleep" in s["frames"]]
        self.assertGreaterEqual(len(with_sleep), 0.9 * len(inside))
        at = with_sleep[0]["frames"].index("time.sleep")
        self.assertEqual(with_sleep[0]["frames"][at - 1], "blocker (tasks_blocking.py:9)")
        if "--native" in options:
            natives = [s for s in with_sleep if any(re.fullmatch(r"(__)?(clock_)?nanosleep.*", f)
                                                    for f in s["frames"][at + 1:])]
            self.assertGreaterEqual(len(natives), 0.8 * len(with_sleep))
            self.assertNotIn("[python]", with_sleep[0]["mappings"][0], "the native entry point is outermost")

    def test_tasks_loop_counters_and_samples_on_every_interpreter(self):
        found = {_version_of(p) for p in PYTHONS}
        missing = [v for v in ("3.11", "3.12", "3.13", "3.14", "3.15") if v not in found]
        print(f"\n  interpreters: {', '.join(f'{_version_of(p)} ({p})' for p in PYTHONS)}"
              f"{'; skipped, not installed: ' + ', '.join(missing) if missing else ''}", flush=True)
        for py in PYTHONS:
            # (cpu mode on every interpreter: test_sampler.test_cpu_mode_skips_blocked_time)
            for options in ([], ["--native"]):
                with self.subTest(python=py, options=options):
                    self.check(py, options)


class UnreadableLayoutTests(AstraceTestCase):
    def test_hidden_published_offsets_degrade_to_no_samples(self):
        # ASTRACE_PY_OFFSETS=table-only hides what 3.13+ publishes about its
        # frames, as on an interpreter that publishes nothing: everything but
        # stack samples is still recorded, and a note says why.
        newer = [py for py in PYTHONS if tuple(map(int, _version_of(py).split("."))) >= (3, 13)]
        if not newer:
            self.skipTest("no CPython 3.13+ here")
        for py in newer:
            with self.subTest(python=py):
                rec = self.record([py, self.app("tasks_blocking.py")], env={"ASTRACE_PY_OFFSETS": "table-only"})
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                self.assertEqual(SLICES - {s["name"] for s in t.slices}, set())
                self.assertEqual(t.data["samples"], [])
                self.assertIn("published offsets ignored", t.summary()["notes"])
                self.assertIn("no stack samples from this process", rec.stderr)
                # Await lines are still read, the slower public way.
                awaits = [s for s in t.slices if s["name"] == "await asyncio.sleep()"]
                self.assertTrue(any(s["args"].get("awaited_at", "").startswith("tasks_blocking.py:")
                                    for s in awaits), awaits[:2])


if __name__ == "__main__":
    unittest.main()
