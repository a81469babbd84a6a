"""Programs whose stack samples are known, for tests/e2e/test_sampler.py.

  burn       task "burner": one step spins burn() for 300 ms (and prints the
             CPU time that took), a later step calls time.sleep(0.3)
  executor   a run_in_executor job spins in blocking_job() for 200 ms
  signals    the program uses signals and blocking calls itself: a SIGALRM
             interval timer with a Python handler, time.sleep, os.read on a
             pipe, a subprocess; prints what it saw
  sleeploop  calls time.sleep(0.002) 150 times from one line, so the call
             is specialized by the interpreter while it is sampled
  own_sigprof  installs its own SIGPROF handler and drives it with
             ITIMER_PROF; prints how many times it ran
  two_loops  two threads, started after recording began, each run an event
             loop of its own; a task in one spins in spin_left() for 200 ms,
             one in the other in spin_right()
"""
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time


def burn(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


async def burner():
    await asyncio.sleep(0.02)
    cpu = time.thread_time()
    burn(0.3)  # BURN_LINE
    print(f"burn cpu ms {(time.thread_time() - cpu) * 1000:.1f}", flush=True)
    await asyncio.sleep(0.02)
    cpu = time.thread_time()
    time.sleep(0.3)  # SLEEP_LINE
    print(f"sleep cpu ms {(time.thread_time() - cpu) * 1000:.1f}", flush=True)
    await asyncio.sleep(0.02)


def blocking_job():
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        pass


async def main_burn():
    await asyncio.create_task(burner(), name="burner")


async def main_executor():
    await asyncio.get_running_loop().run_in_executor(None, blocking_job)


def main_signals():
    ticks = []
    signal.signal(signal.SIGALRM, lambda s, f: ticks.append(s))
    signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    t0 = time.monotonic()
    time.sleep(0.2)
    slept = time.monotonic() - t0
    r, w = os.pipe()
    threading.Timer(0.15, lambda: os.write(w, b"x" * 5)).start()
    data = os.read(r, 5)
    out = subprocess.run([sys.executable, "-c", "print('child ok')"], capture_output=True, text=True).stdout
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    print(f"slept>=0.2:{slept >= 0.2} read:{data.decode()} child:{out.strip()} ticks>=10:{len(ticks) >= 10}")


def sleeploop():
    for _ in range(150):
        time.sleep(0.002)  # SLEEPLOOP_LINE


def main_own_sigprof():
    hits = []
    signal.signal(signal.SIGPROF, lambda s, f: hits.append(s))
    signal.setitimer(signal.ITIMER_PROF, 0.005, 0.005)
    burn(0.3)
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    print(f"own handler ran:{len(hits) > 0}")


def spin_left():
    burn(0.2)


def spin_right():
    burn(0.2)


def main_two_loops():
    async def spinner(spin):
        await asyncio.sleep(0.01)
        spin()

    threads = [threading.Thread(target=asyncio.run, args=(spinner(spin),), name=f"loop-{spin.__name__}")
               for spin in (spin_left, spin_right)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "burn":
        asyncio.run(main_burn())  # MAIN_LINE
    elif mode == "executor":
        asyncio.run(main_executor())
    elif mode == "signals":
        main_signals()
    elif mode == "sleeploop":
        sleeploop()
    elif mode == "own_sigprof":
        main_own_sigprof()
    elif mode == "two_loops":
        main_two_loops()
