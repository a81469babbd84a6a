"""What a program can see of its own run, printed one fact per line, so that
a run under `astrace record` can be compared line by line with a plain run
(tests/e2e/test_transparency.py). Every line must be the same in both.

Covers: BaseExceptions (KeyboardInterrupt, SystemExit) raised in a task step
and in a plain callback, an exception being handled while hooks run
(sys.exc_info()), reference counts of what the program hands to asyncio,
warnings, signal handlers, file descriptors, threads, a child process's
stderr (where astrace's notes must never appear), fork, and the exit status.
"""
import asyncio
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import traceback
import warnings


def say(*parts):
    print(*parts, flush=True)


def frames_of(exc):
    """The function names of an exception's traceback, innermost last."""
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


# ---- BaseException from a task step, and from a plain callback ------------

async def raises_in_step(exc):
    await asyncio.sleep(0)
    raise exc


def step_raises(exc):
    try:
        asyncio.run(raises_in_step(exc))
    except BaseException as e:
        say("task step raised", type(e).__name__, repr(e.args), "context", repr(e.__context__),
            "frames", frames_of(e)[-1])


def callback_raises(exc):
    loop = asyncio.new_event_loop()

    def cb():
        raise exc

    loop.call_soon(cb)
    try:
        loop.run_forever()
    except BaseException as e:
        say("callback raised", type(e).__name__, repr(e.args), "frames", frames_of(e)[-1])
    finally:
        loop.close()


# ---- an exception being handled while hooks run -------------------------------

async def child():
    return 1


async def handling():
    try:
        raise ValueError("being handled")
    except ValueError as e:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)                   # a step ends and another begins
        task = loop.create_task(child())         # the create_task hook
        loop.call_soon(lambda: None)             # the ready queue's append
        await task
        say("exc_info intact after awaits and hooks:", sys.exc_info()[1] is e,
            repr(sys.exc_info()[1]))
    say("exc_info cleared after the block:", sys.exc_info() == (None, None, None))


def handled_in_callback():
    loop = asyncio.new_event_loop()
    seen = []

    def cb():
        try:
            raise KeyError("in a callback")
        except KeyError as e:
            loop.create_task(child())
            seen.append(sys.exc_info()[1] is e)
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    loop.close()
    say("exc_info intact in a callback:", seen)


# ---- reference counts ------------------------------------------------------------

async def named():
    await asyncio.sleep(0)


async def refcounts():
    name = "".join(["my", "-", "task"])  # a str object only this program holds
    coro = named()
    before_name, before_coro = sys.getrefcount(name), sys.getrefcount(coro)
    task = asyncio.get_running_loop().create_task(coro, name=name)
    await asyncio.sleep(0)  # the task has run a step and is suspended
    say("refcounts while pending: name +%d" % (sys.getrefcount(name) - before_name))
    await task
    del task
    gc.collect()
    say("refcounts after: name +%d coro +%d" % (sys.getrefcount(name) - before_name,
                                               sys.getrefcount(coro) - before_coro))

    def callback():
        pass
    before = sys.getrefcount(callback)
    handle = asyncio.get_running_loop().call_soon(callback)
    await asyncio.sleep(0)
    del handle
    say("callback refcount after it ran: +%d" % (sys.getrefcount(callback) - before))


# ---- warnings ------------------------------------------------------------------------

async def never_awaited():
    pass


def warnings_seen():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        async def main():
            never_awaited()  # "coroutine ... was never awaited"
            gc.collect()
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(RuntimeError("never retrieved"))
            del fut
            gc.collect()
            await asyncio.sleep(0)

        asyncio.run(main())
        gc.collect()
    for w in caught:
        say("warning", w.category.__name__, str(w.message).split(" at 0x")[0])


# ---- process-wide state ----------------------------------------------------------------

def handlers():
    for name in ("SIGINT", "SIGTERM", "SIGCHLD", "SIGUSR1", "SIGSEGV", "SIGBUS", "SIGALRM"):
        h = signal.getsignal(getattr(signal, name))
        say("handler", name, getattr(h, "__name__", h))
    say("signal.signal is named", signal.signal.__name__, signal.signal.__module__)


def descriptors():
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    listing = [fd for fd in fds if not os.path.exists(f"/proc/self/fd/{fd}")]  # the listing's own
    kept = [fd for fd in fds if fd not in listing]
    say("open fds", kept)
    for fd in kept:
        if fd > 2:
            say("fd", fd, os.readlink(f"/proc/self/fd/{fd}"))


def threads():
    result = []

    def in_thread():
        asyncio.run(asyncio.sleep(0))
        result.append(threading.current_thread().name)
        result.append([f.name for f in traceback.extract_stack()])  # no frame of astrace's

    t = threading.Thread(target=in_thread, name="worker-loop")
    t.start()
    t.join()
    say("threads", sorted(th.name for th in threading.enumerate()), "ran", result)


def child_stderr():
    # A child that does what makes astrace note something: it installs its
    # own handler for the sampler's signal, and uses asyncio.
    code = ("import asyncio, signal, sys\n"
            "signal.signal(signal.SIGPROF, lambda *a: None)\n"
            "asyncio.run(asyncio.sleep(0))\n"
            "print('child out'); sys.exit(5)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    say("child", p.returncode, repr(p.stdout), "stderr", repr(p.stderr))


def forked():
    pid = os.fork()
    if pid == 0:
        asyncio.run(asyncio.sleep(0))
        os._exit(9)
    _, status = os.waitpid(pid, 0)
    say("fork child exit", os.waitstatus_to_exitcode(status))


async def quick():
    await asyncio.sleep(0)


def stdlib_started_children():
    # Fork children whose task is created by asyncio itself, with no user
    # code above the interpreter's own frames (3.13+'s __init__ cleanup
    # frame under multiprocessing's Popen.__init__): astrace once crashed
    # reading that frame's code object.
    ctx = multiprocessing.get_context("fork")
    codes = []
    for _ in range(3):
        coro = quick()
        p = ctx.Process(target=asyncio.run, args=(coro,))
        p.start()
        p.join()
        coro.close()  # the parent's copy, never run here
        codes.append(p.exitcode)
    say("children started by the stdlib exit", codes)


def main():
    step_raises(KeyboardInterrupt("from a task"))
    step_raises(SystemExit(4))
    callback_raises(KeyboardInterrupt("from a callback"))
    callback_raises(SystemExit(6))
    asyncio.run(handling())
    handled_in_callback()
    asyncio.run(refcounts())
    warnings_seen()
    handlers()
    descriptors()
    threads()
    child_stderr()
    forked()
    stdlib_started_children()
    print("to stderr", file=sys.stderr, flush=True)
    sys.exit(7)


if __name__ == "__main__":
    main()
