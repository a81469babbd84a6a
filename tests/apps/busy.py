"""Many tiny callbacks per loop iteration, to overflow a deliberately small
ring: call_soon chains 20k callbacks while nothing drains in between."""
import asyncio


def tick(n, loop, done):
    if n:
        loop.call_soon(tick, n - 1, loop, done)
    else:
        done.set_result(None)


async def main():
    loop = asyncio.get_running_loop()
    for _ in range(10):
        done = loop.create_future()
        for _ in range(2000):
            loop.call_soon(tick, 10, loop, done)
        await done


asyncio.run(main())
