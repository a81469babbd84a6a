"""Starts the astrace runtime in this process and installs its hooks.

Called from astrace's sitecustomize. Hooks go in when the modules they wrap
are imported (a meta-path finder watches for them), so a program that never
imports asyncio pays nothing for them. Reasons a process cannot be traced are
written next to the session's segments as `<pid>.note`, so `astrace record`
can report them at the end.
"""
import os
import sys

# CPython versions whose asyncio internals the hooks have been checked
# against. A newer one is traced too, with a note: each hook checks that
# the method it wraps exists, and the sampler reads frames only through a
# layout that has read this interpreter's own frames right (py_offsets.h).
TESTED = ((3, 11), (3, 12), (3, 13), (3, 14), (3, 15))
# Free-threaded builds (3.13t, 3.14t) cannot load a stable-ABI extension.
_FREE_THREADED = "t" in getattr(sys, "abiflags", "")

if sys.version_info[:2] >= TESTED[0] and not _FREE_THREADED:
    import _astrace
else:
    _astrace = None

# `astrace record --no-tasks`: loop iterations and callbacks only.
_TASKS = os.environ.get("ASTRACE_TASKS", "1") != "0"
# `astrace record --no-counters`: no loop lag, ready queue or GC.
_COUNTERS = os.environ.get("ASTRACE_COUNTERS", "1") != "0"
# The sampler (`--rate`, `--mode`, `--native`, `--signal`; rate 0 = `--no-sampler`).
_SAMPLE_RATE = int(os.environ.get("ASTRACE_SAMPLE_RATE", "0") or 0)
_SAMPLE_CPU = os.environ.get("ASTRACE_SAMPLE_MODE", "wall") == "cpu"
_SAMPLE_NATIVE = os.environ.get("ASTRACE_SAMPLE_NATIVE", "0") == "1"
_SAMPLE_SIGNAL = int(os.environ.get("ASTRACE_SAMPLE_SIGNAL", "27") or 27)  # SIGPROF on Linux


def _hooks():
    return {
        "asyncio.base_events": [("BaseEventLoop", "_run_once", _astrace.HOOK_RUN_ONCE)] +
                               ([("BaseEventLoop", "create_task", _astrace.HOOK_CREATE_TASK)] if _TASKS else []) +
                               # loop lag: each new loop's ready queue notes when callbacks became ready
                               ([("BaseEventLoop", "__init__", _astrace.HOOK_LOOP_INIT)] if _COUNTERS else []),
        "asyncio.tasks": [],  # see _install: tells the runtime what a task is
        "asyncio.events": [("Handle", "_run", _astrace.HOOK_HANDLE_RUN)],
        "selectors": [
            (cls, "select", _astrace.HOOK_SELECT)
            for cls in ("SelectSelector", "PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector")
        ],
    }


# ASTRACE_HOOKS=0 (benchmarks only: bench/sampler_bench.py prices the
# sampler alone): no hooks, no GC callback; samples still come.
_HOOKS_ON = os.environ.get("ASTRACE_HOOKS", "1") != "0"
_HOOKS = _hooks() if _astrace and _HOOKS_ON else {}
# Imported modules astrace cannot see into yet: a note says so.
_UNSUPPORTED = {
    "uvloop": "uvloop's event loop runs in C and is not hooked yet: its loop iterations, "
              "callbacks and task steps are missing from the trace",
}
_noted = set()  # _UNSUPPORTED modules already reported


def _note(session, text):
    """A note for the user. It goes to the recorder, which prints it on its
    own stderr and keeps it in the trace: never to the program's stderr,
    which the program (or its parent) may be reading."""
    try:
        with open(os.path.join(session, f"{os.getpid()}.note"), "a") as f:
            f.write(text + "\n")
    except OSError:
        pass


def _init_tasks(module):
    types = tuple(t for t in (getattr(module, "Task", None), getattr(module, "_PyTask", None)) if t)
    # Files under the standard library are not "user code" for await and
    # creation locations; site-packages are.
    import types as pytypes
    _astrace.init_tasks(types, [os.path.dirname(os.__file__)], sys.hexversion, pytypes.CodeType)


def _install(modname, module):
    if modname == "asyncio.tasks" and _TASKS:
        _init_tasks(module)
    if modname == "asyncio.events":
        # Loop lag: each loop's ready queue becomes a deque that notes when
        # each callback became ready (runtime/ready_queue.h).
        import collections
        _astrace.init_loop(module, collections.deque if _COUNTERS else None)
    for clsname, attr, kind in _HOOKS.get(modname, ()):
        cls = getattr(module, clsname, None)
        if cls is None:
            continue  # e.g. KqueueSelector on Linux
        # Hook the class that defines the method (PollSelector inherits
        # select from _PollLikeSelector); hooking twice is a no-op.
        owner = next((c for c in cls.__mro__ if attr in c.__dict__), None)
        if owner is None or owner is object:
            _note(os.environ["ASTRACE_SESSION"],
                  f"pid {os.getpid()}: {modname}.{clsname}.{attr} not found; "
                  "this Python's asyncio differs from what astrace knows, that hook is off")
            continue
        _astrace.hook(owner, attr, kind)


class _HookFinder:
    """Meta-path finder that installs hooks right after a watched module loads."""

    def find_spec(self, name, path, target=None):
        if name in _UNSUPPORTED:
            if name not in _noted:
                _noted.add(name)
                _note(os.environ["ASTRACE_SESSION"], f"pid {os.getpid()}: {_UNSUPPORTED[name]}")
            return None
        if name not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        # The module keeps its own loader (__loader__, __spec__.loader: its
        # get_source, resource readers...): only this one load of it runs
        # _install after, and the loader is left as it was.
        original_exec = loader.exec_module

        def exec_module(module):
            if module.__name__ != name:  # a loader shared by several modules (zipimport)
                return original_exec(module)
            try:
                del loader.exec_module
            except AttributeError:
                pass
            original_exec(module)
            _install(name, module)

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):  # a loader that takes no attributes: its module goes unhooked
            return spec
        return spec


def _forked_child():
    if _SAMPLE_RATE:
        import threading
        try:
            _astrace.thread_started(threading.current_thread().name)
        except Exception:
            pass


def _hook_threads():
    """Each threading.Thread gets a ring named after it, and is sampled
    while it runs: a C hook on Thread._bootstrap_inner (no Python frame of
    ours in the thread's stack)."""
    import threading
    _astrace.hook(threading.Thread, "_bootstrap_inner", _astrace.HOOK_THREAD_RUN)


def _call_opcodes():
    """32-byte bitmap of the opcodes, specialized forms included, that call
    something: a sample whose innermost Python frame sits on one is inside
    that call (in native code, since a Python callee has its own frame)."""
    import dis
    import opcode
    # Numbers of specialized opcodes: dis._all_opmap (3.11, 3.12),
    # opcode._specialized_opmap (3.13+); opmap has only the base ones.
    numbers = dict(getattr(dis, "_all_opmap", {}))
    numbers.update(getattr(opcode, "_specialized_opmap", {}))
    numbers.update(opcode.opmap)
    specialized = getattr(opcode, "_specializations", {})
    names = set()
    for base in ("CALL", "PRECALL", "CALL_FUNCTION_EX", "CALL_KW"):
        if base in opcode.opmap:
            names.add(base)
            names.update(specialized.get(base, ()))
            names.add("INSTRUMENTED_" + base)
    bitmap = bytearray(32)
    for name in names:
        op = numbers.get(name)
        if op is not None and 0 <= op < 256:
            bitmap[op >> 3] |= 1 << (op & 7)
    return bytes(bitmap)


def _start_sampler(session):
    # A code object whose first line, name and qualname are known, and one
    # string of each width: the runtime finds their fields by value.
    probe_src = "\n" * 12344 + "class _P:\n def _astrace_probe(self): pass\n"
    module_code = compile(probe_src, "<astrace-probe>", "exec")
    class_code = next(c for c in module_code.co_consts if hasattr(c, "co_code"))
    code = next(c for c in class_code.co_consts if hasattr(c, "co_code"))
    probe_line_code = code.replace(co_firstlineno=12345)
    strings = ("astrace_probe", "ast\xe9race", "ast\u20acrace", "ast\U0001f600race")
    try:
        _astrace.sampler_start(_SAMPLE_RATE, _SAMPLE_CPU, _SAMPLE_NATIVE, _SAMPLE_SIGNAL,
                               probe_line_code, strings, _call_opcodes())
    except (RuntimeError, ValueError) as e:
        reason = str(e).removeprefix("astrace: ")
        _note(session, f"pid {os.getpid()}: {reason}; no stack samples from this process")
        return
    _guard_signal()


def _guard_signal():
    """A program that installs its own handler for the sampler's signal gets
    it: sampling stops first (otherwise its handler would run at every tick)."""
    import signal
    original = signal.signal

    def _signal(signalnum, handler):
        if int(signalnum) == _SAMPLE_SIGNAL and _astrace is not None:
            _astrace.sampler_stop()
            try:
                name = f"{_SAMPLE_SIGNAL} ({signal.Signals(_SAMPLE_SIGNAL).name})"
            except ValueError:
                name = str(_SAMPLE_SIGNAL)
            _note(os.environ["ASTRACE_SESSION"],
                  f"pid {os.getpid()}: the program installs a handler for signal {name}, "
                  "which the sampler uses; sampling stopped (astrace record --signal picks another)")
        return original(signalnum, handler)

    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(_signal, attr, getattr(original, attr))
    signal.signal = _signal


def start():
    session = os.environ["ASTRACE_SESSION"]
    if _FREE_THREADED:
        _note(session, f"pid {os.getpid()}: Python {sys.version.split()[0]} is a free-threaded build, "
                       "which astrace does not support; this process is not traced")
        return
    if _astrace is None:
        _note(session, f"pid {os.getpid()}: Python {sys.version.split()[0]} is not supported "
                       f"(astrace needs CPython 3.11 or newer); this process is not traced")
        return
    if sys.version_info[:2] > TESTED[-1]:
        _note(session, f"pid {os.getpid()}: Python {sys.version.split()[0]} is newer than astrace was tested "
                       f"with ({'.'.join(map(str, TESTED[-1]))}); hooks whose methods are missing stay off")
    argv = list(getattr(sys, "orig_argv", sys.argv))
    _astrace.start(session, sys.version.split("\n")[0], sys.hexversion, sys.executable or "", argv,
                   int(os.environ.get("ASTRACE_RING_SIZE", 16 << 20)),
                   int(os.environ.get("ASTRACE_RING_COUNT", 64)),
                   int(os.environ.get("ASTRACE_STRINGS_SIZE", 4 << 20)),
                   int(os.environ.get("ASTRACE_SAMPLE_RING_SIZE", 1 << 20)) if _SAMPLE_RATE else 0)
    if _SAMPLE_RATE:
        _start_sampler(session)
    _astrace.thread_started("MainThread")
    # A child made by os.fork() (multiprocessing's fork start method) may
    # never reach a hook; giving its thread a ring at once starts its sampler.
    os.register_at_fork(after_in_child=_forked_child)
    import atexit
    atexit.register(_astrace.stop)
    _hook_threads()
    if _COUNTERS and _HOOKS_ON:
        import gc
        gc.callbacks.append(_astrace.gc_callback)
    for name in _HOOKS:
        if name in sys.modules:
            _install(name, sys.modules[name])
    sys.meta_path.insert(0, _HookFinder())
