"""End to end: `astrace open` serves a recorded trace once over loopback, the
way ui.perfetto.dev fetches it (checked with real HTTP clients: urllib and raw
sockets), prints a ui.perfetto.dev link whose startup commands are valid, and
refuses missing files, non-traces and busy ports with a clear error.

Servers here listen on --port 0 (a free port), so tests can run while
something else holds 9001; only the default-port test touches 9001."""
import errno
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from astrace_e2e import ASTRACE, PYTHONS, AstraceTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("ASTRACE_SOURCE_DIR") or os.path.join(HERE, "..", "..")
EXAMPLE = os.path.join(SOURCE, "examples", "hello_asyncio.py")
VIEWER_CONFIG = os.path.join(SOURCE, "viewer-config")
UI = "https://ui.perfetto.dev"

# Perfetto's stable automation commands (docs/visualization/
# commands-automation-reference.md; the UI's startup-command allowlist).
STABLE_COMMANDS = {
    "dev.perfetto.PinTracksByRegex",
    "dev.perfetto.ExpandTracksByRegex",
    "dev.perfetto.CollapseTracksByRegex",
    "dev.perfetto.AddDebugSliceTrack",
    "dev.perfetto.AddDebugSliceTrackWithPivot",
    "dev.perfetto.AddDebugCounterTrack",
    "dev.perfetto.AddDebugCounterTrackWithPivot",
    "dev.perfetto.CreateWorkspace",
    "dev.perfetto.SwitchWorkspace",
    "dev.perfetto.CopyTracksToWorkspaceByRegex",
    "dev.perfetto.CopyTracksToWorkspaceByRegexWithAncestors",
    "dev.perfetto.RunQuery",
    "dev.perfetto.RunQueryAndShowTab",
}

# Loopback only, never a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# A program with many loop iterations: with --compression none its trace is
# a few MB, more than socket buffers hold, so sends are partial.
MANY_ITERATIONS = (
    "import asyncio\n"
    "async def main():\n"
    "    for _ in range(40000):\n"
    "        await asyncio.sleep(0)\n"
    "asyncio.run(main())\n"
)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def quiet_env():
    """No browser may start from a test, whatever the machine has."""
    env = dict(os.environ)
    for k in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(k, None)
    return env


class Server:
    """A running `astrace open`, its printed link, and its port."""

    def __init__(self, proc, url):
        self.proc = proc
        self.url = url
        split = urllib.parse.urlsplit(url)
        self.fragment = split.fragment
        query = self.fragment.split("?", 1)[1] if "?" in self.fragment else ""
        # The UI percent-decodes each value once (and reads '+' as a space).
        self.params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True)
        self.file_url = self.params["url"][0]
        self.port = urllib.parse.urlsplit(self.file_url).port

    def wait(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


class OpenTests(AstraceTestCase):
    def setUp(self):
        super().setUp()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        super().tearDown()

    def recorded(self, options=(), cmd=None):
        rec = self.record(cmd or [PYTHONS[0], EXAMPLE], options=options)
        self.assertEqual(rec.returncode, 0, rec.stderr)
        return rec

    def start(self, path, *options, env=None, port="0", timeout="120"):
        proc = subprocess.Popen([ASTRACE, "open", "--no-browser", "--port", port, "--timeout", timeout, *options,
                                 path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or quiet_env())
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + 30
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if sel.select(timeout=deadline - time.monotonic()):
                b = proc.stdout.read1(65536)
                if not b:
                    break
                line += b
        sel.close()
        if not line.endswith(b"\n"):
            proc.kill()
            _, err = proc.communicate()
            self.fail(f"astrace open printed no URL: {line!r} {err!r}")
        server = Server(proc, line.decode().strip())
        self.servers.append(server)
        return server

    def fetch(self, url, method="GET", headers=None, data=None):
        """(status, headers, body) for one request; 4xx/5xx do not raise."""
        req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
        try:
            with OPENER.open(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def base(self, server):
        return f"http://127.0.0.1:{server.port}"

    # ---- serving ------------------------------------------------------------

    def test_serves_the_file_once_with_cors_headers(self):
        rec = self.recorded()
        data = read(rec.path)
        server = self.start(rec.path)
        name = os.path.basename(rec.path)
        self.assertEqual(server.file_url, f"http://127.0.0.1:{server.port}/{name}")

        # The UI probes the port for a trace processor: 404, and the server goes on.
        for method, path in (("GET", "/status"), ("POST", "/status"), ("GET", "/"), ("GET", "/websocket"),
                             ("HEAD", "/status"), ("GET", "/" + name + "x")):
            status, headers, _ = self.fetch(self.base(server) + path, method=method,
                                            data=b"\x00" * 300 if method == "POST" else None)
            self.assertEqual(status, 404, (method, path))
            self.assertEqual(headers["Access-Control-Allow-Origin"], UI)
        self.assertIsNone(server.proc.poll(), "a 404 ended the server")

        # CORS preflight, as a browser sends it.
        status, headers, body = self.fetch(server.file_url, method="OPTIONS", headers={
            "Origin": UI, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range",
            "Access-Control-Request-Private-Network": "true"})
        self.assertIn(status, (200, 204))
        self.assertEqual(headers["Access-Control-Allow-Origin"], UI)
        self.assertIn("GET", headers["Access-Control-Allow-Methods"])
        self.assertEqual(headers["Access-Control-Allow-Headers"], "range")
        self.assertEqual(headers["Access-Control-Allow-Private-Network"], "true")
        self.assertEqual(body, b"")

        # HEAD does not count as the fetch.
        status, headers, body = self.fetch(server.file_url, method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(int(headers["Content-Length"]), len(data))
        time.sleep(0.2)
        self.assertIsNone(server.proc.poll(), "HEAD ended the server")

        status, headers, body = self.fetch(server.file_url, headers={"Origin": UI})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Access-Control-Allow-Origin"], UI)
        self.assertEqual(headers["Cache-Control"], "no-cache")
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        self.assertEqual(int(headers["Content-Length"]), len(data))
        self.assertEqual(body, data)

        rc, err = server.wait()
        self.assertEqual(rc, 0, err)
        self.assertIn("fetched", err)

    def test_big_trace_slow_client_and_probes_meanwhile(self):
        rec = self.recorded(options=["--compression", "none"], cmd=[PYTHONS[0], "-c", MANY_ITERATIONS])
        data = read(rec.path)
        self.assertGreater(len(data), 1 << 20)
        server = self.start(rec.path)
        name = os.path.basename(rec.path)

        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect(("127.0.0.1", server.port))
        # The request head arrives in pieces.
        for piece in (b"GET /", name.encode(), b" HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"Origin: " + UI.encode(),
                      b"\r\n\r\n"):
            s.sendall(piece)
            time.sleep(0.05)
        chunks, probes = [], []
        first = True
        while True:
            b = s.recv(16384)
            if not b:
                break
            chunks.append(b)
            if first:
                # While the file is on its way, other requests still get answers.
                first = False
                for _ in range(3):
                    probes.append(self.fetch(self.base(server) + "/status")[0])
            if len(chunks) < 50:
                time.sleep(0.01)  # slow reader: the server must wait, not drop it
        s.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK")
        self.assertIn(f"Content-Length: {len(data)}", lines)
        self.assertEqual(probes, [404, 404, 404])
        self.assertEqual(len(body), len(data))
        self.assertEqual(body, data)
        rc, err = server.wait()
        self.assertEqual(rc, 0, err)

    def test_client_that_leaves_midway_does_not_count(self):
        rec = self.recorded(options=["--compression", "none"], cmd=[PYTHONS[0], "-c", MANY_ITERATIONS])
        data = read(rec.path)
        server = self.start(rec.path)
        s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        s.sendall(f"GET /{os.path.basename(rec.path)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset mid-transfer
        time.sleep(0.3)
        self.assertIsNone(server.proc.poll(), "a broken download ended the server")
        status, _, body = self.fetch(server.file_url)
        self.assertEqual((status, body == data), (200, True))
        rc, err = server.wait()
        self.assertEqual(rc, 0, err)

    def test_file_name_with_special_characters(self):
        rec = self.recorded()
        path = os.path.join(self.tmp, "my trace #1 100%.pftrace")
        os.rename(rec.path, path)
        server = self.start(path)
        # After the UI's one decoding, url= is a URL whose path names the file.
        split = urllib.parse.urlsplit(server.file_url)
        self.assertEqual(urllib.parse.unquote(split.path), "/my trace #1 100%.pftrace")
        status, _, body = self.fetch(server.file_url)
        self.assertEqual(status, 200)
        self.assertEqual(body, read(path))
        self.assertEqual(server.wait()[0], 0)

    # ---- the link and its startup commands ---------------------------------

    def test_link_and_startup_commands(self):
        rec = self.recorded()
        server = self.start(rec.path)
        self.assertTrue(server.url.startswith(UI + "/#!/?url=http://127.0.0.1:"), server.url)
        self.assertEqual(server.params["referrer"], ["astrace"])
        self.assertEqual(sorted(server.params), ["referrer", "startupCommands", "url"])
        self.assertNotIn("+", server.url, "the UI reads '+' as a space")

        commands = json.loads(server.params["startupCommands"][0])
        self.assertIsInstance(commands, list)
        self.assertGreater(len(commands), 0)
        for c in commands:
            self.assertEqual(sorted(c), ["args", "id"])
            self.assertIn(c["id"], STABLE_COMMANDS)
            self.assertIsInstance(c["args"], list)
            for a in c["args"]:
                self.assertIsInstance(a, str)

        # The binary's commands are viewer-config/startup_commands.json.
        with open(os.path.join(VIEWER_CONFIG, "startup_commands.json")) as f:
            self.assertEqual(commands, json.load(f))

        queries = [c["args"][0] for c in commands if c["id"] == "dev.perfetto.RunQueryAndShowTab"]
        self.assertEqual(len(queries), 1)
        self.assertIn("'loop iteration'", queries[0])
        self.assertIn("order by it.dur desc", queries[0])

        # The track regexes against the track paths the UI builds for this
        # trace: process group "<name> <pid>", thread track "<thread> <tid>".
        trace = rec.trace
        proc_paths, thread_paths, own_paths = [], [], []
        for p in trace.processes():
            group = f"{p['name']} {p['pid']}"
            proc_paths.append(group)
            own_paths.append(f"{group} > {group}")  # the process's own track
            for t in trace.threads(pid=p["pid"]):
                thread_paths.append(f"{group} > {t['name']} {t['tid']}")
        self.assertTrue(thread_paths)
        pin = [re.compile(c["args"][0]) for c in commands if c["id"] == "dev.perfetto.PinTracksByRegex"
               and c["args"][1:] == ["path"]]
        expand = [re.compile(c["args"][0]) for c in commands if c["id"] == "dev.perfetto.ExpandTracksByRegex"
                  and c["args"][1:] == ["path"]]
        self.assertTrue(pin and expand)
        for path in thread_paths:
            self.assertTrue(any(r.search(path) for r in pin), path)
        for path in proc_paths:
            self.assertTrue(any(r.search(path) for r in expand), path)
        for path in own_paths + proc_paths + ["Global Track Events > astrace", f"{proc_paths[0]} > Tasks"]:
            self.assertFalse(any(r.search(path) for r in pin), path)
        named = {(c["id"], tuple(c["args"])) for c in commands}
        self.assertIn(("dev.perfetto.ExpandTracksByRegex", ("^Tasks$", "name")), named)
        self.assertIn(("dev.perfetto.PinTracksByRegex", ("^Tasks$", "name")), named)

    def test_browser_is_started_with_the_link(self):
        rec = self.recorded()
        got = os.path.join(self.tmp, "browser-got")
        browser = os.path.join(self.tmp, "fake-browser")
        with open(browser, "w") as f:
            f.write(f"#!/bin/sh\nprintf '%s' \"$1\" > '{got}.tmp' && mv '{got}.tmp' '{got}'\n")
        os.chmod(browser, 0o755)
        env = quiet_env()
        env["BROWSER"] = "/nonexistent/browser:" + browser
        proc = subprocess.Popen([ASTRACE, "open", "--port", "0", "--timeout", "60", rec.path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        url = proc.stdout.readline().decode().strip()
        self.servers.append(Server(proc, url))
        deadline = time.monotonic() + 20
        while not os.path.exists(got) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(got), "the browser was not started")
        self.assertEqual(read(got).decode(), url)

    # ---- errors -------------------------------------------------------------

    def run_open(self, *args, timeout=30):
        return subprocess.run([ASTRACE, "open", "--no-browser", *args], capture_output=True, text=True,
                              timeout=timeout, env=quiet_env())

    def assertRefused(self, r, text, rc=1):
        self.assertEqual(r.returncode, rc, (r.stdout, r.stderr))
        self.assertEqual(r.stdout, "", "no URL for a refused trace")
        self.assertTrue(r.stderr.startswith("astrace: open: "), r.stderr)
        self.assertIn(text, r.stderr)

    def test_missing_file(self):
        self.assertRefused(self.run_open("--port", "0", os.path.join(self.tmp, "nope.pftrace")), "cannot open")

    def test_not_a_trace(self):
        app = os.path.join(self.tmp, "app.pftrace")
        with open(app, "wb") as f:
            f.write(read(EXAMPLE))
        self.assertRefused(self.run_open("--port", "0", app), "not a Perfetto")
        empty = os.path.join(self.tmp, "empty.pftrace")
        open(empty, "wb").close()
        self.assertRefused(self.run_open("--port", "0", empty), "empty")
        self.assertRefused(self.run_open("--port", "0", self.tmp), "not a regular file")
        data = read(self.recorded().path)
        cut = os.path.join(self.tmp, "cut.pftrace")
        with open(cut, "wb") as f:
            f.write(data[:-5])
        r = self.run_open("--port", "0", cut)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"truncated|corrupt|malformed")

    def test_port_in_use(self):
        rec = self.recorded()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            self.assertRefused(self.run_open("--port", str(port), rec.path), "is in use")
        finally:
            s.close()

    def test_default_port_is_9001_and_in_use_is_clear(self):
        rec = self.recorded()
        s = socket.socket()
        held = False
        try:
            s.bind(("127.0.0.1", 9001))
            s.listen()
            held = True
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                self.skipTest(f"cannot bind 127.0.0.1:9001: {e}")
        try:
            r = self.run_open("--timeout", "2", rec.path)
            if not held and r.returncode != 1:
                self.skipTest("9001 was freed by someone else meanwhile")
            self.assertRefused(r, "port 9001 on 127.0.0.1 is in use")
        finally:
            s.close()

    def test_other_port_warns_about_the_ui(self):
        rec = self.recorded()
        server = self.start(rec.path)
        server.proc.send_signal(signal.SIGTERM)
        rc, err = server.wait()
        self.assertIn("only loads traces from 127.0.0.1:9001", err)

    def test_timeout(self):
        rec = self.recorded()
        t0 = time.monotonic()
        r = self.run_open("--port", "0", "--timeout", "1", rec.path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("nobody fetched", r.stderr)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertTrue(r.stdout.startswith(UI), "the link is printed before waiting")

    def test_ctrl_c_and_sigterm(self):
        rec = self.recorded()
        for sig, rc in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            with self.subTest(sig=sig):
                server = self.start(rec.path)
                server.proc.send_signal(sig)
                got, err = server.wait()
                self.assertEqual(got, rc, err)
                self.assertIn("before the trace was fetched", err)

    def test_bad_arguments(self):
        rec = self.recorded()
        for args in (["--port", "70000", rec.path], ["--port", "x", rec.path], ["--timeout", "-1", rec.path], [],
                     [rec.path, rec.path]):
            with self.subTest(args=args):
                r = self.run_open(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
        r = subprocess.run([ASTRACE, "open", "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--no-browser", r.stdout)


if __name__ == "__main__":
    unittest.main()
