"""`python -m mypkg`: a package entry point with a loop."""
import asyncio


async def main():
    await asyncio.sleep(0.01)
    print("mypkg ran")


asyncio.run(main())
