"""End to end: a crashing, killed or interrupted program still leaves a valid
trace with everything recorded up to the end, astrace exits the way the
program did, and a full ring drops and counts instead of blocking."""
import os
import pty
import select
import signal
import subprocess
import time
import unittest

from astrace_e2e import ASTRACE, PYTHONS, AstraceTestCase, dump_json


class CrashTests(AstraceTestCase):
    def assertKeptEverything(self, rec, ended):
        t = rec.trace
        self.assertWellFormed(t)
        (proc,) = t.processes()
        self.assertEqual(len(t.slices_named("done_iterating")), 1, "the events before the crash are missing")
        self.assertGreaterEqual(len(t.slices_named("loop iteration")), 200)
        self.assertEqual(t.instant("astrace: process end", pid=proc["pid"])["args"]["ended"], ended)

    def test_abort(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("crash.py"), "abort"])
                self.assertEqual(rec.returncode, -signal.SIGABRT)
                self.assertKeptEverything(rec, "killed by signal 6 (Aborted)")

    def test_segfault(self):
        rec = self.record([PYTHONS[0], self.app("crash.py"), "segv"])
        self.assertEqual(rec.returncode, -signal.SIGSEGV)
        self.assertKeptEverything(rec, "killed by signal 11 (Segmentation fault)")

    def test_os_exit(self):
        rec = self.record([PYTHONS[0], self.app("crash.py"), "exit3"])
        self.assertEqual(rec.returncode, 3)
        self.assertKeptEverything(rec, "exited with status 3")

    def test_uncaught_exception(self):
        rec = self.record([PYTHONS[0], self.app("crash.py"), "raise"])
        self.assertEqual(rec.returncode, 1)
        self.assertIn("RuntimeError: boom", rec.stderr)
        self.assertKeptEverything(rec, "exited with status 1")

    def start(self, mode, out):
        proc = subprocess.Popen([ASTRACE, "record", "-o", out, "--", PYTHONS[0], self.app("crash.py"), mode],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        self.assertEqual(line, "ready\n")
        return proc

    def test_sigkill_from_outside(self):
        out = os.path.join(self.tmp, "killed.pftrace")
        proc = self.start("wait", out)
        time.sleep(0.2)
        app_pid = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])
        os.kill(app_pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        t = dump_json(out)
        self.assertWellFormed(t)
        self.assertEqual(len(t.slices_named("done_iterating")), 1)
        # It kept iterating (every 10 ms) until the kill.
        self.assertGreater(len(t.slices_named("loop iteration")), 210)
        self.assertEqual(t.instant("astrace: process end")["args"]["ended"], "killed by signal 9 (Killed)")

    def test_sigterm_to_astrace_reaches_the_program(self):
        out = os.path.join(self.tmp, "term.pftrace")
        proc = self.start("wait", out)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGTERM)
        t = dump_json(out)
        self.assertWellFormed(t)
        self.assertEqual(t.instant("astrace: process end")["args"]["ended"], "killed by signal 15 (Terminated)")

    def test_sigint_to_astrace_is_forwarded(self):
        out = os.path.join(self.tmp, "int.pftrace")
        proc = self.start("wait", out)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        self.assertIn("KeyboardInterrupt", err)
        self.assertEqual(proc.returncode, -signal.SIGINT)
        t = dump_json(out)
        self.assertWellFormed(t)
        self.assertEqual(len(t.slices_named("done_iterating")), 1)

    def run_in_terminal(self, argv, settle=0.0):
        """Runs argv on a pseudo-terminal, types Ctrl-C once it prints
        'ready' (and `settle` seconds more), and returns (wait status,
        everything it printed)."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(argv[0], argv)
        text = b""
        deadline = time.time() + 60
        while b"ready" not in text and time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                text += os.read(fd, 4096)
        self.assertIn(b"ready", text)
        end = time.time() + settle
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                text += os.read(fd, 4096)
        os.write(fd, b"\x03")  # the terminal's interrupt character
        while time.time() < deadline:
            try:
                r, _, _ = select.select([fd], [], [], 1)
                if r:
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        break
                    text += chunk
            except OSError:
                break
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return status, text.decode(errors="replace")

    def test_ctrl_c_at_a_terminal(self):
        """Ctrl-C typed at a terminal reaches the program once, as it would
        without astrace, and the trace is finalized after the program exits."""
        app = [PYTHONS[0], self.app("crash.py"), "wait"]
        plain_status, plain_text = self.run_in_terminal(app)
        out = os.path.join(self.tmp, "tty.pftrace")
        status, text = self.run_in_terminal([ASTRACE, "record", "-o", out, "--", *app])
        self.assertTrue(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT, (status, text))
        self.assertEqual(status, plain_status)
        # A second, forwarded SIGINT would show as a second interrupted traceback.
        self.assertEqual(text.count("KeyboardInterrupt"), plain_text.count("KeyboardInterrupt"), text)
        t = dump_json(out)
        self.assertWellFormed(t)
        self.assertEqual(t.instant("astrace: process end")["args"]["ended"], "killed by signal 2 (Interrupt)")


class ProgressTests(AstraceTestCase):
    def test_progress_lines_on_a_terminal_only(self):
        app = [PYTHONS[0], self.app("crash.py"), "wait"]
        out = os.path.join(self.tmp, "progress.pftrace")
        os.environ["ASTRACE_PROGRESS_MS"] = "200"  # every 200 ms instead of 10 s, for the test
        try:
            _, text = CrashTests.run_in_terminal(self, [ASTRACE, "record", "-o", out, "--", *app], settle=1.0)
        finally:
            del os.environ["ASTRACE_PROGRESS_MS"]
        self.assertRegex(text, r"astrace: recording \d+ s: \d+ events from 1 process, [\d.]+ MiB written, 0 dropped")
        # Not on a pipe (the other tests' stderr): no progress lines there.
        rec = self.record([PYTHONS[0], self.app("sleep_poll.py")], env={"ASTRACE_PROGRESS_MS": "1"})
        self.assertNotIn("astrace: recording", rec.stderr)


class DropTests(AstraceTestCase):
    def test_full_ring_drops_and_counts(self):
        rec = self.record([PYTHONS[0], self.app("busy.py")], options=["--buffer-size", "4K"])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        t = rec.trace
        self.assertWellFormed(t)  # lost events never leave a mis-nested track
        dropped = t.summary()["events_dropped"]
        self.assertGreater(dropped, 0)
        self.assertEqual(t.instant("astrace: process end")["args"]["events_dropped"], dropped)
        self.assertIn(f"{dropped} events were dropped", rec.stderr)
        # What was not dropped is there: 2000 * 11 tick callbacks were run in all.
        ticks = len(t.slices_named("tick"))
        self.assertGreater(ticks, 0)
        self.assertLess(ticks, 10 * 2000 * 11)

    def test_default_buffer_drops_nothing(self):
        rec = self.record([PYTHONS[0], self.app("busy.py")])
        t = rec.trace
        self.assertEqual(t.summary()["events_dropped"], 0)
        self.assertEqual(len(t.slices_named("tick")), 10 * 2000 * 11)


if __name__ == "__main__":
    unittest.main()
