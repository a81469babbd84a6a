"""End to end: every Python process under the command lands in one trace,
each as a process of its own; threads are tracks of their own; a bare fork
records into its own buffers."""
import re
import unittest

from astrace_e2e import PYTHONS, AstraceTestCase


class ProcessTests(AstraceTestCase):
    def check_processes(self, py, method):
        rec = self.record([py, self.app("processes.py"), method], timeout=180)
        self.assertEqual(rec.returncode, 0, rec.stderr)
        t = rec.trace
        self.assertWellFormed(t)
        procs = {p["pid"]: p for p in t.processes()}
        main_pid = min(procs, key=lambda pid: t.instant("astrace: process", pid=pid)["ts"])
        # Distinct pids, no process track twice, none without a thread (the
        # `true` child forked with preexec_fn ran no hook and is not there).
        self.assertEqual(len(procs), len(t.processes()))
        ends = [i for i in t.instants if i["name"] == "astrace: process end"]
        self.assertEqual(len(ends), len(procs))
        for pid in procs:
            self.assertGreater(len(t.threads(pid=pid)), 0, procs[pid])
        # ... and none empty: the `true` child, a fork child that only exec'd,
        # had a ring for its sampler but recorded nothing, and is left out.
        busy = {t.tracks[s["track"]].get("pid") for s in t.slices} | {x["pid"] for x in t.data["samples"]}
        self.assertEqual(set(procs) - busy, set(), [procs[pid]["cmdline"] for pid in set(procs) - busy])
        # The thread with its own loop: 30 sleep(0) -> 30 + a few iterations, on its own track.
        threads = {th["name"]: th for th in t.threads(pid=main_pid)}
        self.assertIn("MainThread", threads)
        self.assertIn("loop-thread", threads)
        lt = threads["loop-thread"]
        self.assertGreaterEqual(len(t.slices_named("loop iteration", tid=lt["tid"])), 30)
        # Pool workers ran 10+20+30+40 sleep(0) between them.
        pool_pids = [int(x) for x in re.search(r"pool pids \[([\d, ]+)\]", rec.stdout).group(1).split(",")]
        steps = sum(len(t.task_steps(pid=pid)) for pid in pool_pids)
        self.assertGreaterEqual(steps, 100 + 4)
        for pid in pool_pids:
            self.assertIn(pid, procs)
        # The subprocess and its grandchild: each one's sleep is its own process's poll.
        sub = [p for p in procs.values() if p["cmdline"][1:2] == ["-c"]]
        self.assertEqual(len(sub), 2, [p["cmdline"] for p in procs.values()])
        for p in sub:
            self.assertGreater(len(t.slices_named("loop iteration", pid=p["pid"])), 0)
        # The bare fork: its 77 iterations are in its own process, none in the parent.
        forked = int(re.search(r"forked (\d+)", rec.stdout).group(1))
        self.assertIn(forked, procs)
        # asyncio.run(spin(n)): n + 1 steps of spin, plus one step each for the
        # shutdown_asyncgens and shutdown_default_executor tasks.
        child_steps = t.task_steps(pid=forked)
        self.assertEqual(len(child_steps), 77 + 3)
        (child_thread,) = t.threads(pid=forked)
        self.assertEqual(child_thread["tid"], forked)
        self.assertEqual(child_thread["name"], "MainThread")
        main_steps = t.task_steps(tid=threads["MainThread"]["tid"])
        self.assertEqual(len(main_steps), 5 + 3)
        return t

    def test_fork_pool_subprocess_grandchild_bare_fork(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                self.check_processes(py, "fork")

    def test_spawn_pool(self):
        self.check_processes(PYTHONS[0], "spawn")

    def test_recorder_is_batch_and_the_program_keeps_its_policy(self):
        """The recorder yields to the program when it wakes (SCHED_BATCH); the
        program, forked before that, keeps the policy it was started with."""
        import os
        code = ("import os; print(os.sched_getscheduler(os.getppid()), os.sched_getscheduler(0), "
                "os.sched_getscheduler(os.getppid()) == os.SCHED_BATCH, os.sched_getscheduler(0) == os.SCHED_OTHER)")
        rec = self.record([PYTHONS[0], "-c", code])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        recorder, program, is_batch, is_other = rec.stdout.split()
        self.assertEqual((recorder, program), (str(os.SCHED_BATCH), str(os.SCHED_OTHER)))
        self.assertEqual((is_batch, is_other), ("True", "True"))


if __name__ == "__main__":
    unittest.main()
