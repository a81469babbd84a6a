"""End to end: `astrace dump` on real traces (text and JSON) and on bad input
(missing, empty, truncated, random, not a trace): a clear error and a
non-zero exit, never a crash."""
import json
import os
import random
import subprocess
import unittest

from astrace_e2e import ASTRACE, PYTHONS, AstraceTestCase


class DumpTests(AstraceTestCase):
    def dump(self, *args):
        return subprocess.run([ASTRACE, "dump", *args], capture_output=True, timeout=60)

    def recorded(self):
        rec = self.record([PYTHONS[0], self.app("sleep_poll.py")])
        with open(rec.path, "rb") as f:
            return rec.path, f.read()

    def test_text_summary(self):
        path, _ = self.recorded()
        r = self.dump(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode()
        self.assertIn("zstd bundles", text)
        self.assertIn("session: astrace_version=", text)
        self.assertIn("summary: events=", text)
        self.assertIn("events_dropped=0", text)
        self.assertRegex(text, r"process \d+ sleep_poll\.py:")
        self.assertRegex(text, r"thread \d+ MainThread")
        self.assertRegex(text, r"loop iteration\s+\d+ x")
        self.assertRegex(text, r"select\s+\d+ x")

    def test_json_is_valid(self):
        path, _ = self.recorded()
        r = self.dump("--json", path)
        self.assertEqual(r.returncode, 0)
        d = json.loads(r.stdout)
        self.assertGreater(len(d["slices"]), 0)

    def assertRefused(self, path, text):
        r = self.dump(path)
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))
        self.assertIn(text, r.stderr.decode())
        self.assertTrue(r.stderr.decode().startswith("astrace: "))

    def write(self, name, data):
        p = os.path.join(self.tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def test_missing_empty_directory(self):
        self.assertRefused(os.path.join(self.tmp, "nope.pftrace"), "cannot open")
        self.assertRefused(self.write("empty.pftrace", b""), "empty")
        self.assertRefused(self.tmp, "not a regular file")

    def test_not_a_trace(self):
        self.assertRefused(self.write("app.py", open(self.app("sleep_poll.py"), "rb").read()), "not a Perfetto")
        self.assertRefused(ASTRACE, "not a Perfetto")

    def test_truncated_traces(self):
        _, data = self.recorded()
        # The end of the file is one zstd bundle: every cut inside it is refused.
        for cut in (len(data) - 1, len(data) - 7, len(data) - 100, len(data) // 2 + 3):
            with self.subTest(cut=cut):
                r = self.dump(self.write("cut.pftrace", data[:cut]))
                self.assertEqual(r.returncode, 1, cut)
                self.assertRegex(r.stderr.decode(), r"truncated|corrupt|malformed")

    def test_random_and_corrupted_bytes_never_crash(self):
        _, data = self.recorded()
        rng = random.Random(1234)
        for i in range(60):
            if i % 2:
                blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
            else:
                b = bytearray(data)
                for _ in range(rng.randrange(1, 8)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                blob = bytes(b)
            r = self.dump(self.write("fuzz.pftrace", blob))
            self.assertIn(r.returncode, (0, 1), (i, r.stderr))  # a signal would be negative
            if r.returncode:
                self.assertTrue(r.stderr.startswith(b"astrace: "))

    def test_usage_errors(self):
        r = self.dump()
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"give exactly one trace file", r.stderr)


if __name__ == "__main__":
    unittest.main()
