"""Starts Python processes every way a service does: a thread with its own
loop, a multiprocessing pool (start method from argv[1]), a subprocess, a
grandchild, and a bare os.fork() child that runs its own loop. Each one runs a
known number of sleep(0) iterations so the test can tell them apart."""
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import threading


async def spin(n):
    for _ in range(n):
        await asyncio.sleep(0)


def work(n):
    asyncio.run(spin(n))
    return os.getpid()


def thread_loop():
    asyncio.run(spin(30))


if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "fork"
    t = threading.Thread(target=thread_loop, name="loop-thread")
    t.start()
    t.join()
    with mp.get_context(method).Pool(2) as pool:
        print("pool pids", sorted(set(pool.map(work, [10, 20, 30, 40]))), flush=True)
    # A subprocess whose child starts a grandchild.
    grandchild = "import asyncio, subprocess, sys; asyncio.run(asyncio.sleep(0.01)); " \
                 "subprocess.run([sys.executable, '-c', 'import asyncio; asyncio.run(asyncio.sleep(0.02))'])"
    subprocess.run([sys.executable, "-c", grandchild], check=True)
    # fork()+exec of a non-Python program through a path that runs Python in
    # the child first (preexec_fn): it must not show up as a process.
    subprocess.run(["true"], preexec_fn=lambda: None, check=True)
    pid = os.fork()
    if pid == 0:
        asyncio.run(spin(77))
        os._exit(0)
    os.waitpid(pid, 0)
    print("forked", pid, flush=True)
    asyncio.run(spin(5))
