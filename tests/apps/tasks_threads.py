"""Two event loops: the main thread's and one in a worker thread, each with
its own tasks."""
import asyncio
import threading


async def work(tag):
    await asyncio.sleep(0.01)
    return tag


async def main(tag):
    await asyncio.gather(*(asyncio.create_task(work(tag), name=f"{tag}-{i}") for i in range(3)))


t = threading.Thread(target=lambda: asyncio.run(main("worker")), name="loop-thread")
t.start()
asyncio.run(main("main"))
t.join()
