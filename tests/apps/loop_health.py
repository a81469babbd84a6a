"""Loop-health scenarios, one per argv[1]:
  lag    a timer due at 50 ms and a task's 50 ms sleep, while a callback
         blocks the loop with time.sleep(0.25) from 10 ms: both run ~200 ms late
  tasks  10k tasks alive at once, then all done
  rss    allocate and touch 200 MB
  gc     gc.collect() inside a task step
  ready  100 callbacks scheduled at once
  starve a step sets an Event and has another thread call_soon_threadsafe,
         then holds the loop for 200 ms (time.sleep): the woken task and the
         thread's callback both run ~200 ms after they became ready
  resync the program changes loop._ready behind asyncio's back (a cancelled
         handle, clear(), appendleft(), extend()) around 200 ms blocks:
         callbacks queued before a block waited ~200 ms (early_*), those
         put in after it ~0 (late_*); prints "resync done"
"""
import asyncio
import gc
import sys
import threading
import time
import types

MODE = sys.argv[1]


def timer_cb():
    pass


def threadsafe_cb():
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
    elif MODE == "starve":
        event = asyncio.Event()

        async def waiter():
            await event.wait()

        task = asyncio.create_task(waiter(), name="starved")
        await asyncio.sleep(0.01)
        event.set()  # the waiter's wakeup is ready now
        worker = threading.Thread(target=loop.call_soon_threadsafe, args=(threadsafe_cb,))
        worker.start()
        worker.join()  # ... and so is threadsafe_cb
        time.sleep(0.2)
        await task
        # The ready queue is still a deque to the program.
        import collections
        assert isinstance(loop._ready, collections.deque), type(loop._ready)
        print("ready queue:", type(loop._ready).__name__)
    elif MODE == "resync":
        def make(name):  # a function of its own (callbacks are named by code object)
            code = timer_cb.__code__
            return types.FunctionType(code.replace(co_name=name, co_qualname=name), {})

        def handle(name):
            return asyncio.Handle(make(name), (), loop, None)

        ready = loop._ready
        # A cancelled handle ahead of a queued one: popped, never run.
        loop.call_soon(make("cancelled")).cancel()
        loop.call_soon(make("early_after_cancelled"))
        time.sleep(0.2)
        await asyncio.sleep(0)
        # clear(): what was queued is gone; the next one is timed afresh.
        loop.call_soon(make("never_runs"))
        ready.clear()
        loop.call_soon(make("early_after_clear"))
        time.sleep(0.2)
        await asyncio.sleep(0)
        # appendleft() of an untimed handle, after the block.
        loop.call_soon(make("early_behind_appendleft"))
        time.sleep(0.2)
        ready.appendleft(handle("late_appendleft"))
        await asyncio.sleep(0)
        # extend() with an untimed handle, after the block.
        loop.call_soon(make("early_before_extend"))
        time.sleep(0.2)
        ready.extend([handle("late_extend")])
        await asyncio.sleep(0)
        # ... and the queue is back in step.
        loop.call_soon(make("early_resynced"))
        time.sleep(0.2)
        await asyncio.sleep(0)
        print("resync done")
    elif MODE == "ready":
        for _ in range(100):
            loop.call_soon(timer_cb)
        await asyncio.sleep(0.01)


asyncio.run(main())
