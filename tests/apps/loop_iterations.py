"""Runs exactly N+1 loop iterations between the iteration that runs
begin_mark() and the one that runs end_mark() (both included): each
`await asyncio.sleep(0)` yields for exactly one iteration."""
import asyncio
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100


def begin_mark():
    pass


def end_mark():
    pass


async def main():
    loop = asyncio.get_running_loop()
    loop.call_soon(begin_mark)
    for _ in range(N):
        await asyncio.sleep(0)
    loop.call_soon(end_mark)
    await asyncio.sleep(0)


asyncio.run(main())
