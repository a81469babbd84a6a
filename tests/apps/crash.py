"""Runs 200 loop iterations, then ends the way argv[1] says: abort, segv,
exit3 (os._exit(3)), raise, or wait (print 'ready' and keep iterating until
killed from outside)."""
import asyncio
import ctypes
import os
import sys

MODE = sys.argv[1]


def done_iterating():
    pass


async def main():
    for _ in range(200):
        await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(done_iterating)
    await asyncio.sleep(0.05)  # let the recorder drain nothing special: data is in shared memory anyway
    if MODE == "abort":
        os.abort()
    if MODE == "segv":
        ctypes.string_at(0)
    if MODE == "exit3":
        os._exit(3)
    if MODE == "raise":
        raise RuntimeError("boom")
    if MODE == "wait":
        print("ready", flush=True)
        while True:
            await asyncio.sleep(0.01)


asyncio.run(main())
