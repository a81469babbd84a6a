"""Loop-health scenarios, one per argv[1]:
  lag    a timer due at 50 ms and a task's 50 ms sleep, while a callback
         blocks the loop with time.sleep(0.25) from 10 ms: both run ~200 ms late
  tasks  10k tasks alive at once, then all done
  rss    allocate and touch 200 MB
  gc     gc.collect() inside a task step
  ready  100 callbacks scheduled at once
"""
import asyncio
import gc
import sys
import time

MODE = sys.argv[1]


def timer_cb():
    pass


def blocker():
    time.sleep(0.25)


async def sleeper():
    await asyncio.sleep(0.05)


async def main():
    loop = asyncio.get_running_loop()
    if MODE == "lag":
        loop.call_later(0.05, timer_cb)
        loop.call_later(0.01, blocker)
        await asyncio.create_task(sleeper(), name="late-sleeper")
    elif MODE == "tasks":
        await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(10000)))
        await asyncio.sleep(0.05)
    elif MODE == "rss":
        await asyncio.sleep(0.1)
        big = bytearray(200 * 1024 * 1024)
        for i in range(0, len(big), 4096):
            big[i] = 1
        await asyncio.sleep(0.3)
    elif MODE == "gc":
        await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0.01)
    elif MODE == "ready":
        for _ in range(100):
            loop.call_soon(timer_cb)
        await asyncio.sleep(0.01)


asyncio.run(main())
