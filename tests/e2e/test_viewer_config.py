"""viewer-config/ against real traces: every JSON file parses and is in the
UI's format, macros run the SQL of queries/*.sql, every slice name a query
filters on exists in a recorded trace, and every query runs.

No trace processor is available here, so the queries run on SQLite tables
shaped like trace processor's (slice, thread_track, process_track, thread,
process, args) and filled from `astrace dump --json` of a real recording.
That catches syntax errors, unknown columns and wrong names, not every
difference from trace processor's engine."""
import fnmatch
import glob
import json
import os
import re
import sqlite3
import unittest

from astrace_e2e import PYTHONS, AstraceTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("ASTRACE_SOURCE_DIR") or os.path.join(HERE, "..", "..")
EXAMPLE = os.path.join(SOURCE, "examples", "hello_asyncio.py")
VIEWER_CONFIG = os.path.join(SOURCE, "viewer-config")
QUERIES = sorted(glob.glob(os.path.join(VIEWER_CONFIG, "queries", "*.sql")))

STABLE_COMMANDS = {
    "dev.perfetto.PinTracksByRegex", "dev.perfetto.ExpandTracksByRegex", "dev.perfetto.CollapseTracksByRegex",
    "dev.perfetto.AddDebugSliceTrack", "dev.perfetto.AddDebugSliceTrackWithPivot",
    "dev.perfetto.AddDebugCounterTrack", "dev.perfetto.AddDebugCounterTrackWithPivot",
    "dev.perfetto.CreateWorkspace", "dev.perfetto.SwitchWorkspace", "dev.perfetto.CopyTracksToWorkspaceByRegex",
    "dev.perfetto.CopyTracksToWorkspaceByRegexWithAncestors", "dev.perfetto.RunQuery",
    "dev.perfetto.RunQueryAndShowTab",
}
QUERY_COMMANDS = {"dev.perfetto.RunQuery", "dev.perfetto.RunQueryAndShowTab", "dev.perfetto.AddDebugSliceTrack",
                  "dev.perfetto.AddDebugSliceTrackWithPivot", "dev.perfetto.AddDebugCounterTrack",
                  "dev.perfetto.AddDebugCounterTrackWithPivot"}


def load_json(name):
    with open(os.path.join(VIEWER_CONFIG, name)) as f:
        return json.load(f)


def read_text(path):
    with open(path) as f:
        return f.read()


def normalize_sql(text):
    """One line, no comments, no trailing ';': the form the JSON files hold."""
    text = "\n".join(re.sub(r"--.*$", "", line) for line in text.splitlines())
    return " ".join(text.split()).rstrip(";").strip()


def json_queries():
    """(where, sql) for every query inside the JSON files."""
    out = []
    for c in load_json("startup_commands.json"):
        if c["id"] in QUERY_COMMANDS:
            out.append(("startup_commands.json", c["args"][0]))
    for m in load_json("macros.json"):
        for c in m["run"]:
            if c["id"] in QUERY_COMMANDS:
                out.append((m["id"], c["args"][0]))
    return out


def all_queries():
    return [(os.path.basename(p), read_text(p)) for p in QUERIES] + json_queries()


LITERAL = r"'((?:[^']|'')*)'"


def filtered_names(sql):
    """Literals a query compares a `name` column with: (kind, literal)."""
    sql = re.sub(r"--.*$", "", sql, flags=re.M)
    found = [("=", m) for m in re.findall(r"\bname\s*==?\s*" + LITERAL, sql, flags=re.I)]
    for group in re.findall(r"\bname\s+in\s*\(([^)]*)\)", sql, flags=re.I):
        found += [("=", m) for m in re.findall(LITERAL, group)]
    found += [("like", m) for m in re.findall(r"\bname\s+(?:not\s+)?like\s+" + LITERAL, sql, flags=re.I)]
    found += [("glob", m) for m in re.findall(r"\bname\s+(?:not\s+)?glob\s+" + LITERAL, sql, flags=re.I)]
    return [(k, v.replace("''", "'")) for k, v in found]


def like_matches(pattern, name):
    rx = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, name, flags=re.I | re.S) is not None


def tp_tables(trace):
    """An in-memory SQLite with trace processor's table shapes, from a dump."""
    db = sqlite3.connect(":memory:")
    db.executescript("""
        create table process (upid integer primary key, pid int, name text, cmdline text);
        create table thread (utid integer primary key, tid int, name text, upid int);
        create table track (id integer primary key, name text, type text);
        create table thread_track (id integer primary key, name text, utid int);
        create table process_track (id integer primary key, name text, upid int);
        create table slice (id integer primary key, ts int, dur int, track_id int, category text, name text,
                            depth int, parent_id int, arg_set_id int);
        create table args (id integer primary key, arg_set_id int, flat_key text, key text, int_value int,
                           string_value text, real_value real, value_type text, display_value text);
        create table counter_track (id integer primary key, name text);
        create table counter (id integer primary key, ts int, track_id int, value real);
        create table perf_sample (id integer primary key, ts int, utid int, cpu int, callsite_id int);
        create table stack_profile_callsite (id integer primary key, depth int, parent_id int, frame_id int);
        create table stack_profile_frame (id integer primary key, name text, mapping int, rel_pc int);
    """)
    upid, utid, track_ids = {}, {}, {}
    for t in trace.data["tracks"]:
        if t["kind"] == "process":
            upid[t["pid"]] = len(upid) + 1
            db.execute("insert into process values (?, ?, ?, ?)",
                       (upid[t["pid"]], t["pid"], t["name"], " ".join(t.get("cmdline", []))))
    for t in trace.data["tracks"]:
        tid = len(track_ids) + 1
        track_ids[t["uuid"]] = tid
        db.execute("insert into track values (?, ?, ?)", (tid, None if t["kind"] == "thread" else t["name"], t["kind"]))
        if t["kind"] == "thread":
            utid[t["tid"]] = len(utid) + 1
            db.execute("insert into thread values (?, ?, ?, ?)", (utid[t["tid"]], t["tid"], t["name"],
                                                                   upid.get(t["pid"])))
            db.execute("insert into thread_track values (?, null, ?)", (tid, utid[t["tid"]]))
        elif t["kind"] == "process":
            db.execute("insert into process_track values (?, null, ?)", (tid, upid[t["pid"]]))
        elif t["kind"] == "counter":
            db.execute("insert into counter_track values (?, ?)", (tid, t["name"]))
    for c in trace.data["counters"]:
        db.execute("insert into counter (ts, track_id, value) values (?, ?, ?)",
                   (c["ts"], track_ids[c["track"]], c["value"]))

    # Samples: trace processor's callsite tree (one node per distinct stack
    # prefix, outermost first) and frames (one per distinct name here).
    frames, callsites = {}, {}
    for smp in trace.data["samples"]:
        parent = None
        for depth, name in enumerate(smp["frames"]):
            if name not in frames:
                frames[name] = len(frames) + 1
                db.execute("insert into stack_profile_frame values (?, ?, 0, 0)", (frames[name], name))
            key = (parent, frames[name])
            if key not in callsites:
                callsites[key] = len(callsites) + 1
                db.execute("insert into stack_profile_callsite values (?, ?, ?, ?)",
                           (callsites[key], depth, parent, frames[name]))
            parent = callsites[key]
        if parent is not None:
            db.execute("insert into perf_sample (ts, utid, cpu, callsite_id) values (?, ?, 0, ?)",
                       (smp["ts"], utid.get(smp["tid"]), parent))

    events = [dict(s, kind="slice") for s in trace.slices] + \
             [dict(i, kind="instant", dur=0, depth=0) for i in trace.instants]
    # Parents first: by time, then depth; a slice's parent is the latest slice
    # one level up on its track.
    events.sort(key=lambda e: (e["ts"], e["depth"]))
    open_at = {}
    arg_set = 0
    for sid, e in enumerate(events, start=1):
        track = track_ids[e["track"]]
        parent = open_at.get((track, e["depth"] - 1)) if e["depth"] > 0 else None
        if e["kind"] == "slice":
            open_at[(track, e["depth"])] = sid
        set_id = None
        if e["args"]:
            arg_set += 1
            set_id = arg_set
            for k, v in e["args"].items():
                kind = "string" if isinstance(v, str) else "bool" if isinstance(v, bool) else \
                    "real" if isinstance(v, float) else "int"
                db.execute("insert into args (arg_set_id, flat_key, key, int_value, string_value, real_value, "
                           "value_type, display_value) values (?, ?, ?, ?, ?, ?, ?, ?)",
                           (set_id, "debug." + k, "debug." + k, int(v) if kind in ("int", "bool") else None,
                            v if kind == "string" else None, v if kind == "real" else None, kind,
                            str(v).lower() if kind == "bool" else str(v)))
        db.execute("insert into slice values (?, ?, ?, ?, null, ?, ?, ?, ?)",
                   (sid, e["ts"], e["dur"], track, e["name"], e["depth"], parent, set_id))
    return db


class ViewerConfigTests(AstraceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.trace = None

    def recorded(self):
        if ViewerConfigTests.trace is None:
            rec = self.record([PYTHONS[0], EXAMPLE])
            self.assertEqual(rec.returncode, 0, rec.stderr)
            self.assertWellFormed(rec.trace)
            ViewerConfigTests.trace = rec.trace
        return ViewerConfigTests.trace

    def test_json_files_parse_and_use_the_ui_format(self):
        files = sorted(glob.glob(os.path.join(VIEWER_CONFIG, "**", "*.json"), recursive=True))
        self.assertIn(os.path.join(VIEWER_CONFIG, "startup_commands.json"), files)
        self.assertIn(os.path.join(VIEWER_CONFIG, "macros.json"), files)
        for path in files:
            with self.subTest(path=path), open(path) as f:
                json.load(f)

        def check_commands(commands, allowed):
            self.assertIsInstance(commands, list)
            self.assertTrue(commands)
            for c in commands:
                self.assertEqual(sorted(c), ["args", "id"])
                self.assertIn(c["id"], allowed)
                self.assertTrue(all(isinstance(a, str) for a in c["args"]), c)
                if c["id"].endswith("ByRegex"):
                    re.compile(c["args"][0])  # JS and Python agree on these regexes
                    self.assertIn(c["args"][1:], ([], ["name"], ["path"]))

        check_commands(load_json("startup_commands.json"), STABLE_COMMANDS)
        macros = load_json("macros.json")
        self.assertIsInstance(macros, list)
        ids = [m["id"] for m in macros]
        self.assertEqual(len(ids), len(set(ids)), "macro ids must be unique")
        for m in macros:
            self.assertEqual(sorted(m), ["id", "name", "run"])
            self.assertRegex(m["id"], r"^dev\.astrace\.[A-Za-z0-9]+$")
            self.assertTrue(m["name"].strip())
            check_commands(m["run"], STABLE_COMMANDS | set(ids))

    def test_macros_run_the_query_files(self):
        shown = {c["args"][0] for m in load_json("macros.json") for c in m["run"]
                 if c["id"] == "dev.perfetto.RunQueryAndShowTab"}
        files = {normalize_sql(read_text(p)): os.path.basename(p) for p in QUERIES}
        self.assertTrue(files)
        for sql in shown:
            self.assertIn(sql, files, "a macro's query differs from every queries/*.sql")
        for sql, name in files.items():
            self.assertIn(sql, shown, f"no macro shows queries/{name}")
        startup = [c["args"][0] for c in load_json("startup_commands.json")
                   if c["id"] == "dev.perfetto.RunQueryAndShowTab"]
        self.assertEqual(startup, [normalize_sql(read_text(os.path.join(VIEWER_CONFIG, "queries",
                                                                         "slowest_loop_iterations.sql")))])

    def test_readme_covers_every_file(self):
        readme = read_text(os.path.join(VIEWER_CONFIG, "README.md"))
        for path in QUERIES + [os.path.join(VIEWER_CONFIG, n) for n in ("startup_commands.json", "macros.json")]:
            self.assertIn(os.path.basename(path), readme)
        for m in load_json("macros.json"):
            self.assertIn(m["id"], readme)

    def test_filtered_names_exist_in_a_recorded_trace(self):
        trace = self.recorded()
        # Slice and instant names, and track names (queries pick counter tracks by name).
        names = {s["name"] for s in trace.slices} | {i["name"] for i in trace.instants} | \
            {t["name"] for t in trace.tracks.values()}
        seen = set()
        for where, sql in all_queries():
            for kind, lit in filtered_names(sql):
                seen.add(lit)
                with self.subTest(query=where, name=lit):
                    if kind == "=":
                        self.assertIn(lit, names)
                    elif kind == "like":
                        self.assertTrue(any(like_matches(lit, n) for n in names))
                    else:
                        self.assertTrue(any(fnmatch.fnmatchcase(n, lit) for n in names))
        # The extraction itself works: these are filtered on somewhere.
        for lit in ("loop iteration", "select", "astrace: session", "astrace: summary", "astrace: process end"):
            self.assertIn(lit, seen)

    def test_hot_functions_in_slow_steps(self):
        """A step that burns CPU in burn() for 300 ms and one that calls
        time.sleep(0.3): the query names both, from real samples."""
        rec = self.record([PYTHONS[0], os.path.join(HERE, "..", "apps", "sampled.py"), "burn"])
        self.assertEqual(rec.returncode, 0, rec.stderr)
        db = tp_tables(rec.trace)
        cur = db.execute(read_text(os.path.join(VIEWER_CONFIG, "queries", "hot_functions_in_slow_steps.sql")))
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        self.assertEqual(rows[0]["function"], "time.sleep")
        self.assertGreaterEqual(rows[0]["self"], 240)
        self.assertEqual(rows[0]["steps"], "burner burner")
        burn = [r for r in rows if r["function"].startswith("burn (sampled.py:")]
        self.assertTrue(burn)
        self.assertGreaterEqual(sum(r["self"] for r in burn), 100)
        coro = [r for r in rows if r["function"].startswith("burner (sampled.py:")]
        self.assertGreaterEqual(sum(r["total"] for r in coro), 480)  # both steps' samples

    def test_every_query_runs_on_tp_shaped_tables(self):
        trace = self.recorded()
        db = tp_tables(trace)
        results = {}
        for where, sql in all_queries():
            with self.subTest(query=where):
                cur = db.execute(sql)
                cols = [d[0] for d in cur.description]
                rows = cur.fetchall()
                results.setdefault(where, (cols, rows))

        cols, rows = results["slowest_loop_iterations.sql"]
        self.assertTrue({"id", "ts", "dur", "track_id"} <= set(cols), "rows must be clickable in the UI")
        iterations = sorted((s["dur"] for s in trace.slices if s["name"] == "loop iteration"), reverse=True)
        self.assertEqual([r[cols.index("dur")] for r in rows], iterations[:20])
        top = dict(zip(cols, rows[0]))
        self.assertEqual(top["thread"], "MainThread")
        self.assertTrue(top["callbacks"], "the slowest iteration ran callbacks")

        cols, rows = results["loop_idle_share.sql"]
        self.assertEqual(len(rows), 1)
        share = dict(zip(cols, rows[0]))
        self.assertEqual(share["iterations"], len(iterations))
        self.assertTrue(0 < share["idle_pct"] < 100, share)
        self.assertAlmostEqual(share["idle_in_select_ms"] + share["busy_ms"], share["loop_ms"], delta=0.01)

        cols, rows = results["callbacks_by_name.sql"]
        by_name = {r[0]: dict(zip(cols, r)) for r in rows}
        callbacks = {}
        for s in trace.slices:
            if s["depth"] == 1 and s["name"] != "select" and trace.enclosing(s, "loop iteration"):
                callbacks.setdefault(s["name"], []).append(s["dur"])
        self.assertTrue(callbacks)
        self.assertEqual(set(by_name), set(callbacks))
        for name, durs in callbacks.items():
            r = by_name[name]
            self.assertEqual(r["calls"], len(durs), name)
            # The *_ms columns are rounded to 3 decimals.
            self.assertAlmostEqual(r["total_ms"], sum(durs) / 1e6, delta=0.00051)
            self.assertAlmostEqual(r["max_ms"], max(durs) / 1e6, delta=0.00051)
            self.assertAlmostEqual(r["p50_ms"], sorted(durs)[(len(durs) + 1) // 2 - 1] / 1e6, delta=0.00051)
            self.assertTrue(r["p50_ms"] <= r["p90_ms"] <= r["max_ms"], r)
        # The callback that blocks for 50 ms (time.sleep) tops the list.
        self.assertGreaterEqual(rows[0][cols.index("max_ms")], 50)

        cols, rows = results["slow_callbacks.sql"]
        self.assertEqual(rows, [], "hello_asyncio blocks for 50 ms, under the 100 ms threshold")

        cols, rows = results["loop_busy_percentiles.sql"]
        self.assertEqual(len(rows), 1)
        r = dict(zip(cols, rows[0]))
        self.assertTrue(r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"], r)
        self.assertGreaterEqual(r["max_ms"], 50)

        # Task queries: the example's 4 tasks (main, 3 fetches) plus asyncio.run's own.
        cols, rows = results["slowest_task_steps.sql"]
        steps = sorted((s["dur"] for s in trace.task_steps()), reverse=True)
        self.assertEqual([r[cols.index("dur")] for r in rows], steps[:20])
        self.assertTrue(all(r[cols.index("task")] for r in rows))
        # The blocking handler's 50 ms step is the slowest, inside a loop iteration.
        top = dict(zip(cols, rows[0]))
        self.assertGreaterEqual(top["dur_ms"], 50)
        self.assertGreaterEqual(top["loop_iteration_ms"], top["dur_ms"])

        cols, rows = results["await_time_by_awaited.sql"]
        by = {(r[0], r[1]): dict(zip(cols, r)) for r in rows}
        sleeps = [k for k in by if k[0] == "await asyncio.sleep()"]
        self.assertEqual(len(sleeps), 1, by)  # one line awaits sleep, three times
        self.assertEqual(by[sleeps[0]]["waits"], 3)
        self.assertTrue(sleeps[0][1].startswith("hello_asyncio.py:"))
        self.assertGreaterEqual(by[sleeps[0]]["max_ms"], 150)

        cols, rows = results["tasks_by_coroutine.sql"]
        tasks = {r[0]: dict(zip(cols, r)) for r in rows}
        self.assertEqual(tasks["main"]["tasks"], 1)
        self.assertEqual(tasks["fetch"]["tasks"], 3)
        self.assertEqual(tasks["fetch"]["exceptions"], 0)

        cols, rows = results["loop_lag_percentiles.sql"]
        self.assertEqual(len(rows), 1)  # one loop
        r = dict(zip(cols, rows[0]))
        self.assertEqual(r["iterations"], len(iterations))
        self.assertTrue(0 <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"], r)
        # The example blocks only after its fetches are done: lags stay small.
        self.assertLess(r["p50_ms"], 50)

        cols, rows = results["tasks_alive.sql"]
        self.assertEqual(len(rows), 1)
        r = dict(zip(cols, rows[0]))
        self.assertEqual(r["peak"], 4)  # main and its three fetches
        self.assertLessEqual(r["last"], 2)

        cols, rows = results["astrace_metadata.sql"]
        meta = {(r[cols.index("event")], r[cols.index("arg")]): r[cols.index("value")] for r in rows}
        self.assertEqual(meta[("astrace: summary", "events_dropped")], "0")
        self.assertIn(("astrace: session", "astrace_version"), meta)
        self.assertIn(("astrace: process end", "ended"), meta)


if __name__ == "__main__":
    unittest.main()
