"""`astrace diff` scenario: five requests whose handler does 50 ms of
blocking work, inline (argv[1] == "inline": the loop stalls 50 ms each time)
or in the default executor ("executor": the loop sits in select meanwhile)."""
import asyncio
import sys
import time

MODE = sys.argv[1]


def work():
    time.sleep(0.05)


async def handler(i):
    if MODE == "inline":
        work()
    else:
        await asyncio.get_running_loop().run_in_executor(None, work)
    await asyncio.sleep(0.005)
    return i


async def main():
    for i in range(5):
        await asyncio.create_task(handler(i), name=f"request-{i}")


asyncio.run(main())
