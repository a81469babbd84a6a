"""A small asyncio program to record: three fetches at once, then one that
blocks the loop with time.sleep, the kind of mistake astrace makes visible.

    astrace record -o hello.pftrace -- python3 examples/hello_asyncio.py
"""
import asyncio
import time


async def fetch(name, delay):
    await asyncio.sleep(delay)
    return f"{name} after {delay * 1000:.0f} ms"


async def blocking_handler():
    time.sleep(0.05)  # blocks the event loop: one long callback in the trace
    return "blocked the loop for 50 ms"


async def main():
    results = await asyncio.gather(fetch("a", 0.05), fetch("b", 0.1), fetch("c", 0.15))
    results.append(await blocking_handler())
    for r in results:
        print(r)


if __name__ == "__main__":
    asyncio.run(main())
