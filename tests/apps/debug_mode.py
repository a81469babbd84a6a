"""asyncio debug mode: handles record the stack they were made from. The
printed stack must be the same traced and untraced."""
import asyncio


async def main():
    loop = asyncio.get_running_loop()
    h = loop.call_soon(print, "ran")
    print([f"{fr.name}:{fr.lineno}" for fr in h._source_traceback][-3:])
    await asyncio.sleep(0)


asyncio.run(main(), debug=True)
