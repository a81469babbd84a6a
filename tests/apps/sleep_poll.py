"""Sleeps 200 ms with nothing else to do: the loop's select() waits ~200 ms."""
import asyncio


async def main():
    await asyncio.sleep(0.2)


asyncio.run(main())
