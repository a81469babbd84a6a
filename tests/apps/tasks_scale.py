"""Many tasks at once: N tiny tasks gathered (argv[1], default 20000), each
awaiting sleep(0) once, like ../../shared/workloads/tiny_tasks.py."""
import asyncio
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


async def tiny(i):
    await asyncio.sleep(0)
    return i & 7


async def main():
    return sum(await asyncio.gather(*(tiny(i) for i in range(N))))


print(asyncio.run(main()))
