"""End to end: the command need not be `python3 app.py` itself, the program
runs exactly as without astrace, and interpreters astrace cannot reach say so."""
import os
import stat
import subprocess
import unittest

from astrace_e2e import APPS, ASTRACE, PYTHONS, AstraceTestCase


class CommandFormTests(AstraceTestCase):
    def assertTracedOnce(self, rec, script_name=None):
        self.assertWellFormed(rec.trace)
        procs = rec.trace.processes()
        self.assertEqual(len(procs), 1, procs)
        if script_name:
            self.assertEqual(procs[0]["name"], script_name)
        self.assertGreater(len(rec.trace.slices_named("loop iteration", pid=procs[0]["pid"])), 0)

    def test_through_a_shell(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record(["sh", "-c", f"'{py}' '{self.app('sleep_poll.py')}'"])
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertTracedOnce(rec, "sleep_poll.py")

    def test_module_entry_point(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, "-m", "mypkg"], env={"PYTHONPATH": APPS})
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertIn("mypkg ran", rec.stdout)
                self.assertTracedOnce(rec, "python -m mypkg")

    def test_console_script(self):
        script = os.path.join(self.tmp, "myservice")
        with open(script, "w") as f:
            f.write(f"#!{PYTHONS[0]}\nimport runpy\nrunpy.run_path({self.app('sleep_poll.py')!r})\n")
        os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR)
        rec = self.record([script])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        self.assertTracedOnce(rec, "myservice")

    def test_existing_sitecustomize_still_runs(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                mark = os.path.join(self.tmp, "mark")
                if os.path.exists(mark):
                    os.unlink(mark)
                rec = self.record([py, self.app("sleep_poll.py")],
                                  env={"PYTHONPATH": os.path.join(APPS, "usersite"), "SITECUSTOMIZE_MARK": mark})
                self.assertEqual(rec.returncode, 0, rec.stderr)
                self.assertTrue(os.path.exists(mark), "the program's own sitecustomize did not run")
                self.assertTracedOnce(rec)

    def test_stdin_stdout_stderr_and_exit_status_pass_through(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                rec = self.record([py, self.app("echo_exit.py"), "7"], input="hello astrace\n")
                self.assertEqual(rec.returncode, 7)
                self.assertEqual(rec.stdout, "HELLO ASTRACE\n")
                self.assertTrue(rec.stderr.startswith("to stderr\n"), rec.stderr)
                end = rec.trace.instant("astrace: process end")["args"]
                self.assertEqual(end["ended"], "exited with status 7")

    def test_isolated_python_runs_untraced_with_a_warning(self):
        for flag in ("-I", "-E"):
            with self.subTest(flag=flag):
                rec = self.record([PYTHONS[0], flag, self.app("echo_exit.py"), "4"], input="x")
                self.assertEqual(rec.returncode, 4)
                self.assertEqual(rec.stdout, "X")
                self.assertIn("ignores PYTHONPATH", rec.stderr)
                self.assertIn("no Python process was traced", rec.stderr)
                self.assertWellFormed(rec.trace)
                self.assertEqual(rec.trace.processes(), [])

    def test_non_python_command(self):
        rec = self.record(["sh", "-c", "echo plain; exit 5"])
        self.assertEqual(rec.returncode, 5)
        self.assertEqual(rec.stdout, "plain\n")
        self.assertIn("no Python process was traced", rec.stderr)
        self.assertWellFormed(rec.trace)

    def test_missing_command(self):
        rec = self.record(["/nonexistent/program"])
        self.assertEqual(rec.returncode, 127)
        self.assertIn("cannot run '/nonexistent/program'", rec.stderr)

    def test_uvloop_is_named_as_not_traced(self):
        import subprocess
        if subprocess.run(["/usr/bin/python3", "-c", "import uvloop"], capture_output=True).returncode != 0:
            self.skipTest("uvloop is not installed for /usr/bin/python3")
        rec = self.record(["/usr/bin/python3", self.app("uses_uvloop.py")])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        self.assertIn("uvloop ran", rec.stdout)
        self.assertIn("uvloop's event loop runs in C and is not hooked yet", rec.stderr)
        self.assertIn("uvloop", rec.trace.summary()["notes"])
        self.assertWellFormed(rec.trace)

    def test_unsupported_python_version_says_so(self):
        old = [p for p in ("/root/.pyenv/versions/3.10.13/bin/python3", "/usr/bin/python3.10",
                           "/root/.pyenv/versions/3.9.18/bin/python3") if os.path.exists(p)]
        if not old:
            self.skipTest("no Python older than 3.11 on this machine")
        rec = self.record([old[0], "-c", "print('ran')"])
        self.assertEqual(rec.returncode, 0)
        self.assertEqual(rec.stdout, "ran\n")
        self.assertIn("is not supported", rec.stderr)
        self.assertIn("not supported", rec.trace.summary().get("notes", ""))


class CliErrorTests(AstraceTestCase):
    def run_astrace(self, *args):
        return subprocess.run([ASTRACE, *args], capture_output=True, text=True, timeout=60, cwd=self.tmp)

    def test_unwritable_output_fails_before_the_program_starts(self):
        mark = os.path.join(self.tmp, "started")
        r = self.run_astrace("record", "-o", "/nonexistent-dir/out.pftrace", "--", PYTHONS[0], "-c",
                             f"open({mark!r}, 'w')")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot write /nonexistent-dir/out.pftrace", r.stderr)
        self.assertFalse(os.path.exists(mark))

    def test_existing_output_needs_force(self):
        out = os.path.join(self.tmp, "keep.pftrace")
        with open(out, "w") as f:
            f.write("precious")
        r = self.run_astrace("record", "-o", out, "--", PYTHONS[0], "-c", "pass")
        self.assertEqual(r.returncode, 2)
        self.assertIn("already exists; pass --force", r.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), "precious")
        r = self.run_astrace("record", "--force", "-o", out, "--", PYTHONS[0], self.app("sleep_poll.py"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.dump(out).processes()), 1)

    def dump(self, path):
        from astrace_e2e import dump_json
        return dump_json(path)

    def test_bad_options(self):
        for args, text in ((["record"], "no command given"),
                           (["record", "--compression", "lz4", "--", "true"], "--compression must be"),
                           (["record", "--buffer-size", "3000", "--", "true"], "--buffer-size must be"),
                           (["frobnicate"], "unknown command")):
            with self.subTest(args=args):
                r = self.run_astrace(*args)
                self.assertEqual(r.returncode, 2)
                self.assertIn(text, r.stderr)

    def test_help(self):
        r = self.run_astrace("record", "--help")
        self.assertEqual(r.returncode, 0)
        for word in ("--output", "--force", "--compression", "--buffer-size", "Ctrl-C"):
            self.assertIn(word, r.stdout)
        r = self.run_astrace("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("record", r.stdout)


if __name__ == "__main__":
    unittest.main()
