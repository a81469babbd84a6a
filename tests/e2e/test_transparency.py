"""End to end: the traced program behaves exactly as without astrace.

Two judges. tests/apps/transparency.py prints what a program can see of its
own run (BaseExceptions from task steps and callbacks, sys.exc_info() across
hooks, reference counts, warnings, signal handlers, file descriptors,
threads, a child's stderr, fork, the exit status): its output, stderr and
exit status must be the same traced and plain. And CPython's own asyncio
test suite, which no one here wrote, must give the same result under
`astrace record` as without it, on every interpreter that ships it.

ASTRACE_SKIP_CPYTHON_SUITE=1 skips the suite (scripts/test.sh sets it for the
sanitizer pass, whose recorder is the only part that differs).
"""
import os
import re
import subprocess
import unittest

from astrace_e2e import ASTRACE, PYTHONS, AstraceTestCase


def has_asyncio_tests(python):
    return subprocess.run([python, "-c", "import test.test_asyncio"], capture_output=True).returncode == 0


class SameProgramTests(AstraceTestCase):
    def run_both(self, cmd):
        plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.tmp)
        out = os.path.join(self.tmp, "same.pftrace")
        traced = subprocess.run([ASTRACE, "record", "-q", "--force", "-o", out, "--", *cmd], capture_output=True,
                                text=True, timeout=120, cwd=self.tmp)
        return plain, traced

    def test_program_sees_what_it_sees_untraced(self):
        for py in PYTHONS:
            with self.subTest(python=py):
                plain, traced = self.run_both([py, self.app("transparency.py")])
                self.assertEqual(plain.returncode, 7, plain.stderr)
                self.assertIn("task step raised KeyboardInterrupt", plain.stdout)
                self.assertEqual(traced.stdout.splitlines(), plain.stdout.splitlines())
                self.assertEqual(traced.stderr, plain.stderr)
                self.assertEqual(traced.returncode, plain.returncode)

    def test_notes_reach_the_recorder_not_the_program(self):
        # The child installs its own SIGPROF handler: the runtime notes that
        # sampling stopped. The note is the recorder's to print, on astrace's
        # own stderr, and is kept in the trace; the child's stderr, which its
        # parent reads, stays empty.
        rec = self.record([PYTHONS[0], self.app("transparency.py")])
        self.assertIn("child 5 'child out\\n' stderr ''", rec.stdout)
        self.assertRegex(rec.stderr, r"astrace: pid \d+: the program installs a handler for signal 27")
        self.assertIn("sampling stopped", rec.trace.summary()["notes"])


class CPythonAsyncioSuiteTests(AstraceTestCase):
    """`python -m test test_asyncio -j2`, plain then under astrace."""

    def regrtest(self, cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=self.tmp)
        out = proc.stdout + proc.stderr
        totals = re.search(r"Total tests: run=([\d,]+)(?: failures=[\d,]+)?(?: skipped=([\d,]+))?", out)
        failed = set()
        for block in re.finditer(r"\d+ tests? failed:\n((?:    .*\n)+)", out):
            failed.update(block.group(1).split())
        crashed = re.findall(r"(test_asyncio\.\S+) (?:crashed|worker non-zero exit code)", out)
        return proc.returncode, totals.groups() if totals else None, failed | set(crashed), out

    def test_cpython_asyncio_suite_passes_as_without_astrace(self):
        if os.environ.get("ASTRACE_SKIP_CPYTHON_SUITE") == "1":
            self.skipTest("ASTRACE_SKIP_CPYTHON_SUITE=1")
        suites = [py for py in PYTHONS if has_asyncio_tests(py)]
        for py in PYTHONS:
            if py not in suites:
                print(f"\n  skipped {py}: no test.test_asyncio (CPython's test suite is not installed)", flush=True)
        if not suites:
            self.skipTest("no interpreter here ships CPython's test suite")
        for py in suites:
            with self.subTest(python=py):
                cmd = [py, "-m", "test", "test_asyncio", "-j2"]
                plain_rc, plain_totals, plain_failed, _ = self.regrtest(cmd)
                out = os.path.join(self.tmp, "suite.pftrace")
                rc, totals, failed, text = self.regrtest([ASTRACE, "record", "-q", "--force", "-o", out, "--", *cmd])
                print(f"\n  {py}: plain rc={plain_rc} {plain_totals} failed={sorted(plain_failed)}; "
                      f"traced rc={rc} {totals} failed={sorted(failed)}", flush=True)
                self.assertIsNotNone(totals, text[-3000:])
                self.assertEqual(failed - plain_failed, set(), text[-6000:])
                self.assertEqual(totals, plain_totals, text[-3000:])
                self.assertEqual(rc, plain_rc, text[-3000:])
                self.assertNotIn("Fatal Python error", text)
                self.assertNotIn("astrace:", text, "astrace wrote into the program's output")


if __name__ == "__main__":
    unittest.main()
