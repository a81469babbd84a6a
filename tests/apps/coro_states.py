"""Coroutines and generators in every state, for test_tasks.py: prints, per
case, whether what astrace's runtime reads from the frame itself
(_astrace.suspended_at) matches the public cr_code/cr_await (gi_code/
gi_yieldfrom), or that it could not be read that way."""
import asyncio
import types

import _astrace


def check(label, obj):
    is_coro = isinstance(obj, types.CoroutineType)
    code = obj.cr_code if is_coro else obj.gi_code
    public = obj.cr_await if is_coro else obj.gi_yieldfrom
    got = _astrace.suspended_at(obj)
    if got is None:
        print(label, "unread")
        return
    got_code, offset, awaiting = got
    same = got_code is code and awaiting is public and 0 <= offset < len(code.co_code)
    print(label, "same" if same else f"DIFFERENT {got!r} vs {code!r} {public!r}")


def plain_generator():
    yield 1


def delegating_generator():
    yield from plain_generator()


async def awaits_future(fut):
    await fut


async def awaits_sleep():
    await asyncio.sleep(10)


async def nested():
    await awaits_sleep()


async def finishes():
    return 1


async def main():
    loop = asyncio.get_running_loop()
    # Run the coroutine functions enough that CPython quickens their code
    # (3.11 then rewrites RESUME into RESUME_QUICK, which the read must know).
    for _ in range(50):
        ready = loop.create_future()
        ready.set_result(None)
        await awaits_future(ready)
    fut = loop.create_future()
    coros = {"future": awaits_future(fut), "sleep": awaits_sleep(), "nested": nested()}
    tasks = {name: asyncio.create_task(c) for name, c in coros.items()}
    await asyncio.sleep(0.01)  # every task is now suspended in its await
    for name, coro in coros.items():
        check(f"coroutine awaiting {name}", coro)
    check("coroutine inside nested", coros["nested"].cr_await)
    check("sleep inside nested", coros["nested"].cr_await.cr_await)

    gen = plain_generator()
    check("generator not started", gen)
    next(gen)
    check("generator at a plain yield", gen)
    dgen = delegating_generator()
    next(dgen)
    check("generator in yield from", dgen)
    check("generator under yield from", dgen.gi_yieldfrom)

    not_started = finishes()
    check("coroutine not started", not_started)
    not_started.close()
    done = finishes()
    try:
        done.send(None)
    except StopIteration:
        pass
    check("coroutine finished", done)

    for t in tasks.values():
        t.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


asyncio.run(main())
