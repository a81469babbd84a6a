"""End to end: coroutine lifecycle. Task tracks, lifetimes, run/await slices
named after what was awaited and where, creation and completion flows,
outcomes, and lanes at scale, for every Python found."""
import os
import re
import subprocess
import unittest

from astrace_e2e import APPS, PYTHONS, AstraceTestCase

MS = 1e6


def line_of(app, marker):
    """Line number of the first line of tests/apps/<app> containing marker."""
    with open(os.path.join(APPS, app)) as f:
        for n, text in enumerate(f, 1):
            if marker in text:
                return n
    raise AssertionError(f"{marker!r} not in {app}")


class TaskView:
    """The task slices of a trace: lifetimes and what is inside them."""

    def __init__(self, trace):
        self.t = trace
        self.lifetimes = [s for s in trace.slices if s["depth"] == 0 and "coroutine" in s["args"]]

    def named(self, task_name):
        found = [s for s in self.lifetimes if s["args"]["task_name"] == task_name]
        assert len(found) == 1, (task_name, [s["args"]["task_name"] for s in self.lifetimes])
        return found[0]

    def by_coro(self, coro):
        return [s for s in self.lifetimes if s["args"]["coroutine"] == coro]

    def inside(self, life):
        """The slices directly inside a lifetime, in time order."""
        end = life["ts"] + life["dur"]
        return sorted((s for s in self.t.slices if s["track"] == life["track"] and s["depth"] == 1
                       and life["ts"] <= s["ts"] <= end), key=lambda s: s["ts"])

    def awaits(self, life):
        return [s for s in self.inside(life) if s["name"].startswith("await ")]

    def runs(self, life):
        return [s for s in self.inside(life) if s["name"] == "run"]


class TaskTests(AstraceTestCase):
    def assertTiles(self, view, life):
        """Run, await and scheduled slices cover the lifetime: no gaps, no overlaps."""
        parts = view.inside(life)
        self.assertTrue(parts, life)
        self.assertEqual(parts[0]["ts"], life["ts"])
        for a, b in zip(parts, parts[1:]):
            self.assertEqual(a["ts"] + a["dur"], b["ts"], (a, b))
        self.assertEqual(parts[-1]["ts"] + parts[-1]["dur"], life["ts"] + life["dur"])
        self.assertEqual(sum(p["dur"] for p in parts), life["dur"])
        # The totals on the lifetime agree with its slices.
        runs = sum(p["dur"] for p in parts if p["name"] == "run")
        self.assertAlmostEqual(life["args"]["running_ms"] * MS, runs, delta=1000)
        self.assertEqual(life["args"]["steps"], len([p for p in parts if p["name"] == "run"]))

    def test_parent_and_three_children(self):
        app = "tasks_children.py"
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app(app)])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                v = TaskView(t)
                (parent,) = v.by_coro("parent")
                kids = sorted(v.by_coro("child"), key=lambda s: s["args"]["task_name"])
                self.assertEqual([k["args"]["task_name"] for k in kids], ["child-1", "child-2", "child-3"])
                # Each task has a track of its own, named after it.
                for life in [parent] + kids:
                    track = t.tracks[life["track"]]
                    self.assertEqual(track["name"], f'{life["args"]["task_name"]} {life["args"]["coroutine"]}')
                self.assertEqual(len({life["track"] for life in [parent] + kids}), 4)
                created_at = f"{app}:{line_of(app, 'asyncio.create_task(child(n)')}"
                sleep_at = f"{app}:{line_of(app, 'await asyncio.sleep(0.05 * n)')}"
                for n, kid in enumerate(kids, 1):
                    self.assertEqual(kid["args"]["created_at"], created_at)
                    self.assertEqual(kid["args"]["parent"], parent["name"])
                    self.assertEqual(kid["args"]["outcome"], "result")
                    (aw,) = v.awaits(kid)
                    self.assertEqual(aw["name"], "await asyncio.sleep()")
                    self.assertEqual(aw["args"]["awaited_at"], sleep_at)
                    self.assertIn("sleep", aw["args"]["await_chain"])
                    self.assertGreaterEqual(aw["dur"], 50 * n * MS)
                    self.assertLess(aw["dur"], (50 * n + 40) * MS)
                    self.assertTiles(v, kid)
                self.assertTiles(v, parent)
                # The parent awaits each child by name, at its own line.
                parent_awaits = [a["name"] for a in v.awaits(parent)]
                self.assertEqual(parent_awaits, [f"await child-{n} (child)" for n in (1, 2, 3)][:len(parent_awaits)])
                self.assertGreaterEqual(len(parent_awaits), 1)
                for a in v.awaits(parent):
                    self.assertEqual(a["args"]["awaited_at"], f"{app}:{line_of(app, 'await k')}")
                # Creation flows: parent's run -> each child's first run.
                parent_out = {f for r in v.runs(parent) for f in r.get("flow_out", [])}
                for kid in kids:
                    first = v.runs(kid)[0]
                    self.assertEqual(len(first.get("flow_in", [])), 1, first)
                    self.assertIn(first["flow_in"][0], parent_out)
                # Completion flows: a child's last run -> the parent's run it woke.
                parent_in = {f for r in v.runs(parent) for f in r.get("flow_in", [])}
                woke = [k for k in kids if set(v.runs(k)[-1].get("flow_out", [])) & parent_in]
                self.assertGreaterEqual(len(woke), 1)
                # The loop thread's callbacks say which task step ran.
                steps = {s["name"] for s in t.task_steps()}
                self.assertIn("step child-2 child", steps)
                self.assertIn("step Task-1 parent", steps)

    def test_asyncio_constructs(self):
        app = "tasks_sync.py"
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app(app)])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                v = TaskView(t)
                (main,) = v.by_coro("main")
                main_awaits = [a["name"] for a in v.awaits(main)]
                self.assertIn("await gather(3 tasks)", main_awaits)
                self.assertIn("await TaskGroup.__aexit__()", main_awaits)
                self.assertIn("await asyncio.wait_for()", main_awaits)
                self.assertIn("await failing (fails)", main_awaits)
                self.assertIn("await gather(5 tasks)", main_awaits)
                # TaskGroup children finished.
                for name in ("tg-0", "tg-1"):
                    self.assertEqual(v.named(name)["args"]["outcome"], "result")
                # wait_for timed out: its inner task was cancelled after ~20 ms.
                timed = v.named("timed")
                self.assertEqual(timed["args"]["outcome"], "cancelled")
                self.assertGreaterEqual(timed["dur"], 19 * MS)
                self.assertLess(timed["dur"], 200 * MS)
                # An escaping exception, with its type and message.
                failing = v.named("failing")
                self.assertEqual(failing["args"]["outcome"], "exception")
                self.assertEqual(failing["args"]["exception"], "ValueError: bad value 42")
                # Event, Queue, Lock, Semaphore waits name the primitive and the line.
                (ev,) = v.awaits(v.named("event-waiter"))
                self.assertEqual(ev["name"], "await Event.wait()")
                self.assertEqual(ev["args"]["awaited_at"], f"{app}:{line_of(app, 'await ev.wait()')}")
                self.assertGreaterEqual(ev["dur"], 19 * MS)
                gets = [a for a in v.awaits(v.named("consumer")) if a["name"] == "await Queue.get()"]
                self.assertGreaterEqual(len(gets), 2)
                self.assertEqual(gets[0]["args"]["awaited_at"], f"{app}:{line_of(app, 'await q.get()')}")
                lock_waits = [a for n in ("locker-0", "locker-1") for a in v.awaits(v.named(n))
                              if a["name"] == "await Lock.acquire()"]
                self.assertEqual(len(lock_waits), 1)
                self.assertGreaterEqual(lock_waits[0]["dur"], 19 * MS)
                self.assertEqual(lock_waits[0]["args"]["awaited_at"], f"{app}:{line_of(app, 'async with lock:')}")
                sem_waits = [a for i in range(5) for a in v.awaits(v.named(f"sem-{i}"))
                             if a["name"] == "await Semaphore.acquire()"]
                self.assertEqual(len(sem_waits), 3)  # Semaphore(2): 3 of 5 contenders wait
                self.assertEqual({a["args"]["awaited_at"] for a in sem_waits},
                                 {f"{app}:{line_of(app, 'async with sem:')}"})
                # set_name while running.
                renamed = [s for s in v.lifetimes if s["args"].get("renamed_to") == "after"]
                self.assertEqual(len(renamed), 1)
                self.assertEqual(renamed[0]["args"]["task_name"], "before")
                # asyncio.Task() made directly: found, named, and awaited by name.
                direct = [s for s in v.lifetimes if s["args"].get("discovered")]
                self.assertEqual(len(direct), 1)
                self.assertEqual(direct[0]["args"]["outcome"], "result")
                self.assertIn(f'await {direct[0]["args"]["task_name"]} (sleeper)', main_awaits)
                # Still pending when the program ended.
                forever = v.named("forever")
                self.assertEqual(forever["args"]["outcome"], "pending")
                self.assertEqual(forever["args"]["state"], "pending")
                self.assertEqual(v.awaits(forever)[-1]["name"], "await Event.wait()")
                # Every lifetime is tiled by its slices.
                for life in v.lifetimes:
                    self.assertTiles(v, life)

    def test_await_read_from_frames(self):
        """Where CPython's frame layout is known (3.11), the runtime reads
        what a suspended coroutine awaits from its frame instead of cr_await;
        the read must agree with cr_code/cr_await in every state, including
        quickened code, and say so when it cannot tell."""
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("coro_states.py")], options=["--no-sampler"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                lines = dict(line.rsplit(" ", 1) for line in rec.stdout.splitlines())
                self.assertNotIn("DIFFERENT", rec.stdout)
                for never in ("generator not started", "coroutine not started", "coroutine finished"):
                    self.assertEqual(lines[never], "unread")
                version = subprocess.run([py, "-c", "import sys; print(sys.version_info[1])"],
                                         capture_output=True, text=True).stdout.strip()
                if version == "11":  # the layout read directly there
                    self.assertEqual(set(lines.values()), {"same", "unread"}, rec.stdout)
                    self.assertEqual(lines["coroutine awaiting future"], "same")
                    self.assertEqual(lines["generator at a plain yield"], "same")

    def test_repeated_awaits_keep_names_and_lines(self):
        app = "tasks_repeat.py"
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app(app)], options=["--no-sampler"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                v = TaskView(rec.trace)
                ticker = v.named("ticker")
                got = [(a["name"], a["args"]["awaited_at"]) for a in v.awaits(ticker)]
                sleep = ("await asyncio.sleep()", f"{app}:{line_of(app, 'await asyncio.sleep(0.001)')}")
                wait = ("await Event.wait()", f"{app}:{line_of(app, 'await event.wait()')}")
                self.assertEqual(got, [sleep, wait] * 20)
                chains = {a["args"]["await_chain"] for a in v.awaits(ticker)}
                self.assertEqual(len(chains), 2, chains)

    def test_blocking_step(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("tasks_blocking.py")])
                t = rec.trace
                self.assertWellFormed(t)
                v = TaskView(t)
                blocker = v.named("blocker")
                long_runs = [r for r in v.runs(blocker) if r["dur"] >= 295 * MS]
                self.assertEqual(len(long_runs), 1)
                self.assertLess(long_runs[0]["dur"], 450 * MS)
                # The other tasks' 50 ms sleeps overran to ~300 ms.
                for name in ("waiter-1", "waiter-2"):
                    (aw,) = v.awaits(v.named(name))
                    self.assertGreaterEqual(aw["dur"], 290 * MS)
                # ... and the loop iteration and step callback around it are long too.
                step = [s for s in t.task_steps() if s["name"] == "step blocker blocker" and s["dur"] >= 295 * MS]
                self.assertEqual(len(step), 1)
                loop = t.enclosing(step[0], "loop iteration")
                self.assertGreaterEqual(loop["dur"], step[0]["dur"])

    def test_timestamps_from_either_clock(self):
        """Where the kernel keeps time with the TSC the runtime stamps records
        with it and the recorder converts them to BOOTTIME (runtime/clock.h);
        ASTRACE_CLOCK=boottime keeps BOOTTIME all the way. Both tell the same
        story: the 300 ms blocking step, the waiters' overrun sleeps, the lag
        of their wakeups (one converted from the TSC in the runtime, one
        carried over from their timer's lag in ns), all inside the session."""
        try:
            with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
                kernel_tsc = f.read().strip() == "tsc" and os.uname().machine in ("x86_64", "i686")
        except OSError:
            kernel_tsc = False
        py = PYTHONS[0]
        for clock in ("default", "boottime"):
            with self.subTest(clock=clock):
                env = {"ASTRACE_CLOCK": "boottime"} if clock == "boottime" else {}
                rec = self.record([py, self.app("tasks_blocking.py")], env=env)
                self.assertEqual(rec.returncode, 0, rec.stderr)
                t = rec.trace
                self.assertWellFormed(t)
                self.assertEqual(t.session()["record_clock"], "tsc" if kernel_tsc and clock == "default" else "boottime")
                v = TaskView(t)
                blocker = v.named("blocker")
                (long_run,) = [r for r in v.runs(blocker) if r["dur"] >= 295 * MS]
                self.assertLess(long_run["dur"], 450 * MS)
                for name in ("blocker", "waiter-1", "waiter-2"):
                    self.assertTiles(v, v.named(name))
                for name in ("waiter-1", "waiter-2"):
                    (aw,) = v.awaits(v.named(name))
                    self.assertGreaterEqual(aw["dur"], 290 * MS)
                    self.assertLess(aw["dur"], 450 * MS)
                    (wake,) = [s for s in t.task_steps() if s["name"] == f"step {name} waiter"][-1:]
                    # Due at 50 ms, run after the 300 ms block.
                    self.assertGreater(wake["args"]["lag_ms"], 200)
                    self.assertLess(wake["args"]["lag_ms"], 400)
                begin = t.instant("astrace: session")["ts"]
                end = t.instant("astrace: summary")["ts"]
                outside = [s for s in t.slices if s["ts"] < begin or s["ts"] + s["dur"] > end]
                self.assertEqual(outside[:3], [])

    def test_lanes_at_scale(self):
        # 40k tasks intern 80k names (each task's label and step), past the
        # writer's 64k interning reset: names after it must still resolve.
        n = 40000
        rec = self.record([PYTHONS[0], self.app("tasks_scale.py"), str(n)], timeout=300)
        self.assertEqual(rec.returncode, 0, rec.stderr)
        t = rec.trace
        self.assertWellFormed(t)
        self.assertEqual(t.summary()["events_dropped"], 0)
        tiny_tracks = [tr for tr in t.tracks.values() if tr["kind"] == "track" and
                       (re.fullmatch(r"tiny lane \d+", tr["name"]) or re.fullmatch(r"Task-\d+ tiny", tr["name"]))]
        self.assertLessEqual(len(tiny_tracks), 64)
        self.assertGreaterEqual(len(tiny_tracks), 16)
        more = [tr for tr in t.tracks.values() if tr["name"] == "tiny (more tasks)"]
        self.assertEqual(len(more), 1)
        # Every task is accounted for exactly once: a lifetime on a lane, or its
        # totals on its last run on the "(more tasks)" track.
        ended = [s for s in t.slices if s["args"].get("coroutine") == "tiny" or
                 (s["track"] == more[0]["uuid"] and "outcome" in s["args"])]
        self.assertEqual(len(ended), n)
        self.assertTrue(all(s["args"]["outcome"] == "result" for s in ended))
        self.assertEqual(len([s for s in t.task_steps() if s["name"].endswith(" tiny")]), 2 * n)

    def test_no_tasks_option(self):
        rec = self.record([PYTHONS[0], self.app("tasks_children.py")], options=["--no-tasks"])
        t = rec.trace
        self.assertWellFormed(t)
        self.assertEqual(t.session()["tasks"], "off")
        self.assertEqual([tr for tr in t.tracks.values() if tr["name"] == "Tasks"], [])
        self.assertEqual(t.task_steps(), [])
        # The loop is still there, its task steps named after the callable.
        self.assertGreater(len(t.slices_named("loop iteration")), 3)
        self.assertGreater(len(t.slices_named("Task.__step")), 3)

    def test_loops_in_two_threads(self):
        rec = self.record([PYTHONS[0], self.app("tasks_threads.py")])
        t = rec.trace
        self.assertWellFormed(t)
        v = TaskView(t)
        threads = {th["name"]: th for th in t.threads()}
        for tag, thread in (("main", "MainThread"), ("worker", "loop-thread")):
            for i in range(3):
                life = v.named(f"{tag}-{i}")
                group = t.tracks[t.tracks[life["track"]]["parent"]]
                self.assertEqual(group["name"], "Tasks")
                self.assertEqual(group["parent"], threads[thread]["uuid"])
                self.assertEqual(life["args"]["outcome"], "result")


if __name__ == "__main__":
    unittest.main()
