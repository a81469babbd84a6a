"""A task that awaits the same two things in turn, 20 times each, for
test_tasks.py: every await slice must keep its name and line (astrace's
runtime works a chain out once, then recognizes it)."""
import asyncio


async def ticker(event):
    for _ in range(20):
        await asyncio.sleep(0.001)
        await event.wait()
        event.clear()


async def main():
    event = asyncio.Event()
    task = asyncio.create_task(ticker(event), name="ticker")
    while not task.done():
        await asyncio.sleep(0.002)
        event.set()


asyncio.run(main())
