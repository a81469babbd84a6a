"""End to end: the stack sampler. Real programs whose hot spots are known
(tests/apps/sampled.py), recorded on every CPython found; the samples are
read back from the trace and checked against the task timeline."""
import json
import re
import unittest

from astrace_e2e import PYTHONS, AstraceTestCase

MS = 1e6
APP_LINES = {}


def app_line(path, marker):
    """Line number of the line of `path` ending with `# marker`."""
    if (path, marker) not in APP_LINES:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.rstrip().endswith("# " + marker):
                    APP_LINES[(path, marker)] = n
    return APP_LINES[(path, marker)]


def samples_in(trace, tid, start, end):
    return [s for s in trace.data["samples"] if s["tid"] == tid and start <= s["ts"] < end]


def has_frame(sample, pattern):
    return any(re.search(pattern, f) for f in sample["frames"])


class SamplerTests(AstraceTestCase):
    def burn_run(self, py, options=()):
        rec = self.record([py, self.app("sampled.py"), "burn"], options=list(options))
        self.assertEqual(rec.returncode, 0, rec.stderr)
        self.burn_cpu_ms = float(re.search(r"burn cpu ms ([\d.]+)", rec.stdout).group(1))
        self.sleep_cpu_ms = float(re.search(r"sleep cpu ms ([\d.]+)", rec.stdout).group(1))
        t = rec.trace
        self.assertWellFormed(t)
        self.assertTrue(all(s.get("unresolved") is not True for s in t.data["samples"]))
        (main,) = [th for th in t.threads() if th["name"] == "MainThread"]
        life = [s for s in t.slices if s["depth"] == 0 and s["args"].get("task_name") == "burner"]
        runs = sorted((s for s in t.slices if s["track"] == life[0]["track"] and s["name"] == "run"),
                      key=lambda s: s["ts"])
        long_runs = [r for r in runs if r["dur"] > 250 * MS]
        self.assertEqual(len(long_runs), 2, [r["dur"] for r in runs])
        return t, main["tid"], long_runs[0], long_runs[1]

    def test_burn_and_sleep_in_wall_mode(self):
        app = self.app("sampled.py")
        burn_line, sleep_line = app_line(app, "BURN_LINE"), app_line(app, "SLEEP_LINE")
        for py in PYTHONS:
            with self.subTest(python=py):
                t, tid, burn_step, sleep_step = self.burn_run(py)
                self.assertEqual(t.session()["sampler"], "1000 Hz wall, signal 27")
                # The 300 ms burn step: ~300 samples at 1 kHz, nearly all in burn().
                inside = samples_in(t, tid, burn_step["ts"], burn_step["ts"] + burn_step["dur"])
                expected = burn_step["dur"] / MS  # 1 sample per ms
                self.assertGreaterEqual(len(inside), 0.8 * expected)
                self.assertLessEqual(len(inside), 1.2 * expected)
                in_burn = [s for s in inside if has_frame(s, r"^burn \(sampled\.py:\d+\)$")]
                self.assertGreaterEqual(len(in_burn), 0.8 * len(inside))
                # ... called from the task's coroutine at the line that calls it.
                self.assertTrue(all(f"burner (sampled.py:{burn_line})" in s["frames"] for s in in_burn))
                # The time.sleep(0.3) step: the samples name the call.
                inside = samples_in(t, tid, sleep_step["ts"], sleep_step["ts"] + sleep_step["dur"])
                self.assertGreaterEqual(len(inside), 0.8 * sleep_step["dur"] / MS)
                sleeping = [s for s in inside if s["frames"][-1] == "time.sleep"
                            and s["frames"][-2] == f"burner (sampled.py:{sleep_line})"]
                self.assertGreaterEqual(len(sleeping), 0.8 * len(inside))
                # Samples are Python frames on the synthetic mapping, outermost first.
                self.assertEqual(sleeping[0]["frames"][0], "<module> (sampled.py:%d)" % app_line(app, "MAIN_LINE"))
                self.assertEqual(set(sleeping[0]["mappings"]) - {"/[python]"}, {"/[native call]"})
                # The process summary counts them.
                end = t.instant("astrace: process end")["args"]
                self.assertEqual(end["samples"], len([s for s in t.data["samples"]]))
                self.assertEqual(end["samples_dropped"], 0)

    def test_cpu_mode_skips_blocked_time(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                t, tid, burn_step, sleep_step = self.burn_run(py, ["--mode", "cpu"])
                self.assertTrue(t.session()["sampler"].startswith("1000 Hz cpu"))
                burning = samples_in(t, tid, burn_step["ts"], burn_step["ts"] + burn_step["dur"])
                # One sample per ms of CPU time the thread used (burn() measures
                # its own), however much of the step's wall time others took.
                self.assertGreaterEqual(len(burning), 0.8 * self.burn_cpu_ms - 2)
                self.assertLessEqual(len(burning), 1.2 * self.burn_cpu_ms + 2)
                self.assertLessEqual(len(burning), 1.2 * burn_step["dur"] / MS)
                # The sleep used almost no CPU (each tick that interrupts it
                # costs a little, more on a slow machine): as many samples as
                # ms of CPU it used, far fewer than its 300 ms.
                sleeping = samples_in(t, tid, sleep_step["ts"], sleep_step["ts"] + sleep_step["dur"])
                self.assertLessEqual(len(sleeping), 1.2 * self.sleep_cpu_ms + 2)
                self.assertLessEqual(len(sleeping), 0.1 * sleep_step["dur"] / MS)

    def test_program_without_asyncio(self):
        """Sampling does not depend on asyncio or its hooks: a plain script,
        recorded with --no-tasks, has its hot function sampled."""
        code = ("import time\n"
                "def spin():\n"
                "    end = time.perf_counter() + 0.3\n"
                "    while time.perf_counter() < end: pass\n"
                "spin()\n")
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, "-c", code], options=["--no-tasks", "--no-counters"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                samples = rec.trace.data["samples"]
                spin = [s for s in samples if "spin (<string>:4)" in s["frames"]]
                self.assertGreaterEqual(len(spin), 240, rec.stderr)
                self.assertEqual(rec.trace.instant("astrace: process end")["args"]["samples_unreadable"], 0)

    def test_specialized_calls_are_named(self):
        """A call the interpreter has specialized (CALL_BUILTIN_O and kin)
        still gets its `time.sleep` frame: the bitmap of call opcodes covers
        the specialized forms."""
        app = self.app("sampled.py")
        line = app_line(app, "SLEEPLOOP_LINE")
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, app, "sleeploop"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                at_line = [s for s in rec.trace.data["samples"] if f"sleeploop (sampled.py:{line})" in s["frames"]]
                self.assertGreaterEqual(len(at_line), 200)
                named = [s for s in at_line if s["frames"][-1] == "time.sleep"]
                self.assertGreaterEqual(len(named), 0.9 * len(at_line))

    def test_full_sample_ring_drops_and_counts(self):
        """A 4 KiB sample ring at 10 kHz with native stacks overflows between
        two drains: the drops are counted in the trace, on stderr and in
        --stats-json, and what was kept is well formed."""
        stats = f"{self.tmp}/stats.json"
        rec = self.record([PYTHONS[0], self.app("sampled.py"), "burn"],
                          options=["--rate", "10000", "--native", "--stats-json", stats],
                          env={"ASTRACE_SAMPLE_RING_SIZE": "4096"})
        self.assertEqual(rec.returncode, 0, rec.stderr)
        self.assertWellFormed(rec.trace)
        end = rec.trace.instant("astrace: process end")["args"]
        dropped = end["samples_dropped"]
        self.assertGreater(dropped, 0)
        self.assertEqual(rec.trace.summary()["samples_dropped"], dropped)
        self.assertIn(f"{dropped} stack samples were dropped because a sample ring was full", rec.stderr)
        with open(stats) as f:
            numbers = json.load(f)
        self.assertEqual(numbers["samples_dropped"], dropped)
        self.assertEqual(numbers["samples"], len(rec.trace.data["samples"]))
        self.assertGreater(numbers["samples"], 0)

    def test_forked_child_is_sampled(self):
        """A child made by os.fork() that never touches asyncio is sampled
        from the start, as a process of its own."""
        code = ("import os, time\n"
                "def child_spin():\n"
                "    end = time.perf_counter() + 0.3\n"
                "    while time.perf_counter() < end: pass\n"
                "pid = os.fork()\n"
                "if pid == 0:\n"
                "    child_spin(); os._exit(0)\n"
                "os.waitpid(pid, 0)\n")
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, "-c", code])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertEqual(len(rec.trace.processes()), 2)
                samples = rec.trace.data["samples"]
                spin = [s for s in samples if "child_spin (<string>:4)" in s["frames"]]
                # (No source file for -c code, so the parent's innermost frame is the waitpid line itself.)
                waiting = [s for s in samples if s["frames"][-1] == "<module> (<string>:8)"]
                self.assertGreaterEqual(len(spin), 240)
                self.assertGreaterEqual(len(waiting), 240)
                # The child's samples are its own process's, not the waiting parent's.
                self.assertEqual(len({s["pid"] for s in spin}), 1)
                self.assertEqual(len({s["pid"] for s in waiting}), 1)
                self.assertNotEqual(spin[0]["pid"], waiting[0]["pid"])

    def test_rate(self):
        t, tid, burn_step, _ = self.burn_run(PYTHONS[0], ["--rate", "100"])
        inside = samples_in(t, tid, burn_step["ts"], burn_step["ts"] + burn_step["dur"])
        expected = burn_step["dur"] / (10 * MS)
        self.assertGreaterEqual(len(inside), 0.8 * expected)
        self.assertLessEqual(len(inside), 1.2 * expected)

    def test_native_frames_merge_with_python(self):
        app = self.app("sampled.py")
        sleep_line = app_line(app, "SLEEP_LINE")
        for py in PYTHONS:
            with self.subTest(python=py):
                t, tid, burn_step, sleep_step = self.burn_run(py, ["--native"])
                inside = samples_in(t, tid, sleep_step["ts"], sleep_step["ts"] + sleep_step["dur"])
                good = 0
                for s in inside:
                    f = s["frames"]
                    if f"burner (sampled.py:{sleep_line})" not in f:
                        continue
                    at = f.index(f"burner (sampled.py:{sleep_line})")
                    # handler line -> time.sleep -> ... -> the libc sleep call, in that order
                    if f[at + 1:at + 2] != ["time.sleep"]:
                        continue
                    sleeps = [i for i, x in enumerate(f) if re.fullmatch(r"(__)?(clock_)?nanosleep.*", x)]
                    if not sleeps or sleeps[0] <= at + 1:
                        continue
                    # Native frames sit on real mappings (libc), Python ones on [python].
                    self.assertIn("libc", s["mappings"][sleeps[0]], s)
                    good += 1
                self.assertGreaterEqual(good, 0.8 * len(inside))
                # The process's own entry point is native and outermost.
                self.assertNotIn("[python]", inside[0]["mappings"][0])
                self.assertEqual(t.session()["sampler"], "1000 Hz wall native, signal 27")

    def test_executor_thread(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("sampled.py"), "executor"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                main_pid = t.processes()[0]["pid"]
                workers = [th for th in t.threads(main_pid) if th["name"].startswith("asyncio_")]
                self.assertEqual(len(workers), 1, [th["name"] for th in t.threads()])
                job = [s for s in t.data["samples"] if s["tid"] == workers[0]["tid"] and
                       has_frame(s, r"^blocking_job \(sampled\.py:\d+\)$")]
                self.assertGreaterEqual(len(job), 150)  # 200 ms of spinning at 1 kHz
                self.assertFalse(any(has_frame(s, "blocking_job") for s in t.data["samples"]
                                     if s["tid"] != workers[0]["tid"]))

    def test_loops_in_two_threads(self):
        """Two threads started after recording began, each with its own
        event loop: each thread's samples name its own spinning function,
        inside that thread's own task step."""
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("sampled.py"), "two_loops"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                for side, other in (("left", "right"), ("right", "left")):
                    (thread,) = [th for th in t.threads() if th["name"] == f"loop-spin_{side}"]
                    mine = [s for s in t.data["samples"] if s["tid"] == thread["tid"]]
                    spinning = [s for s in mine if has_frame(s, rf"^spin_{side} \(sampled\.py:\d+\)$")]
                    self.assertGreaterEqual(len(spinning), 150)  # 200 ms at 1 kHz
                    self.assertFalse(any(has_frame(s, f"spin_{other}") for s in mine))
                    # They fall inside the step of the spinner task on this thread.
                    steps = [s for s in t.task_steps(tid=thread["tid"]) if s["dur"] > 150 * MS]
                    self.assertEqual(len(steps), 1, [s["name"] for s in t.task_steps(tid=thread["tid"])])
                    inside = samples_in(t, thread["tid"], steps[0]["ts"], steps[0]["ts"] + steps[0]["dur"])
                    self.assertGreaterEqual(len([s for s in inside if s in spinning]), 0.9 * len(spinning))

    def test_programs_using_signals_keep_working(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("sampled.py"), "signals"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertIn("slept>=0.2:True read:xxxxx child:child ok ticks>=10:True", rec.stdout)
                self.assertGreater(len(rec.trace.data["samples"]), 300)

    def test_program_taking_the_signal(self):
        py = PYTHONS[0]
        rec = self.record([py, self.app("sampled.py"), "own_sigprof"])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        self.assertIn("own handler ran:True", rec.stdout)
        self.assertIn("installs a handler for signal 27 (SIGPROF), which the sampler uses; sampling stopped",
                      rec.stderr)
        # With another signal, both work.
        rec = self.record([py, self.app("sampled.py"), "own_sigprof"], options=["--signal", "SIGRTMIN+3"])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        self.assertIn("own handler ran:True", rec.stdout)
        self.assertNotIn("sampling stopped", rec.stderr)
        self.assertGreater(len(rec.trace.data["samples"]), 200)

    def test_no_sampler_and_bad_options(self):
        py = PYTHONS[0]
        rec = self.record([py, self.app("sampled.py"), "executor"], options=["--no-sampler"])
        self.assertEqual(rec.trace.data["samples"], [])
        self.assertEqual(rec.trace.session()["sampler"], "off")
        for bad, message in ((["--rate", "0"], "--rate must be"), (["--rate", "20000"], "--rate must be"),
                             (["--mode", "busy"], "--mode must be wall or cpu"),
                             (["--signal", "SIGKILL"], "--signal must be"), (["--signal", "SIGSEGV"], "--signal must be")):
            rec = self.record([py, "-c", "pass"], options=bad, expect_trace=False)
            self.assertEqual(rec.returncode, 2, bad)
            self.assertIn(message, rec.stderr)


if __name__ == "__main__":
    unittest.main()
