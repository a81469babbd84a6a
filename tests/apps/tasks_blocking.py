"""One task blocks the loop with time.sleep(0.3) in a step while two others
wait on 50 ms sleeps: their awaits overrun to ~300 ms."""
import asyncio
import time


async def blocker():
    await asyncio.sleep(0.01)
    time.sleep(0.3)  # line 9: blocks the event loop


async def waiter():
    await asyncio.sleep(0.05)


async def main():
    await asyncio.gather(asyncio.create_task(blocker(), name="blocker"),
                         asyncio.create_task(waiter(), name="waiter-1"),
                         asyncio.create_task(waiter(), name="waiter-2"))


asyncio.run(main())
