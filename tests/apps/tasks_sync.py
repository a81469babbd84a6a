"""Every asyncio construct the task tracks must get right, one after the other:
gather, TaskGroup, wait_for timing out, an escaping exception, Event, Queue,
Lock, Semaphore(2) with 5 contenders, a renamed task, a task made with
asyncio.Task() directly, and one still pending at exit."""
import asyncio
import sys


async def sleeper(t):
    await asyncio.sleep(t)
    return t


async def fails():
    await asyncio.sleep(0.001)
    raise ValueError("bad value 42")


async def never_ends():
    await asyncio.Event().wait()


async def main():
    # gather
    await asyncio.gather(sleeper(0.01), sleeper(0.02), sleeper(0.03))  # line 25
    # TaskGroup (3.11+)
    async with asyncio.TaskGroup() as tg:
        for i in range(2):
            tg.create_task(sleeper(0.01), name=f"tg-{i}")
    # wait_for timing out: the inner task is cancelled
    try:
        await asyncio.wait_for(asyncio.create_task(sleeper(1.0), name="timed"), timeout=0.02)
    except (asyncio.TimeoutError, TimeoutError):
        pass
    # an exception escaping a task
    t = asyncio.create_task(fails(), name="failing")
    try:
        await t
    except ValueError:
        pass
    # Event
    ev = asyncio.Event()

    async def waiter():
        await ev.wait()  # line 44

    w = asyncio.create_task(waiter(), name="event-waiter")
    await asyncio.sleep(0.02)
    ev.set()
    await w
    # Queue producer / consumer
    q = asyncio.Queue()

    async def consumer():
        got = 0
        while got < 3:
            await q.get()  # line 56
            got += 1

    async def producer():
        for i in range(3):
            await asyncio.sleep(0.01)
            await q.put(i)

    await asyncio.gather(asyncio.create_task(consumer(), name="consumer"),
                         asyncio.create_task(producer(), name="producer"))
    # Lock
    lock = asyncio.Lock()

    async def locked(hold):
        async with lock:  # line 70
            await asyncio.sleep(hold)

    await asyncio.gather(*(asyncio.create_task(locked(0.02), name=f"locker-{i}") for i in range(2)))
    # Semaphore(2) with 5 contenders
    sem = asyncio.Semaphore(2)

    async def limited():
        async with sem:  # line 78
            await asyncio.sleep(0.02)

    await asyncio.gather(*(asyncio.create_task(limited(), name=f"sem-{i}") for i in range(5)))
    # renamed while running
    r = asyncio.create_task(sleeper(0.01), name="before")
    await asyncio.sleep(0)
    r.set_name("after")
    await r
    # made with asyncio.Task() directly: no create_task involved
    direct = asyncio.Task(sleeper(0.01))
    await direct
    # still pending when the program ends
    asyncio.create_task(never_ends(), name="forever")
    await asyncio.sleep(0.01)
    print("done", flush=True)
    sys.stdout.flush()


loop = asyncio.new_event_loop()
loop.run_until_complete(main())
# Exit without cancelling "forever": it is still pending in the trace.
