"""A parent creating 3 children that sleep 50/100/150 ms, then awaiting them."""
import asyncio


async def child(n):
    await asyncio.sleep(0.05 * n)  # line 6: the children's await
    return n


async def parent():
    kids = [asyncio.create_task(child(n), name=f"child-{n}") for n in (1, 2, 3)]  # line 11
    for k in kids:
        await k  # line 13
    return sum(k.result() for k in kids)


asyncio.run(parent())
