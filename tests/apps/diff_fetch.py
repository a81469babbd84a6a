"""`astrace diff` scenario: ten 50 ms fetches, awaited one after another
(argv[1] == "sequential", one task) or all at once with gather ("gather",
ten more tasks). Both versions await at the same line, so the await site
compares across the two traces."""
import asyncio
import sys


async def fetch(i):
    await asyncio.sleep(0.05)  # the await both versions share
    return i


async def main(mode):
    if mode == "sequential":
        for i in range(10):
            await fetch(i)
    else:
        await asyncio.gather(*(fetch(i) for i in range(10)))


asyncio.run(main(sys.argv[1]))
