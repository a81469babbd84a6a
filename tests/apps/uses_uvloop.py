"""Runs under uvloop when it is installed (Debian's python3-uvloop)."""
import asyncio

import uvloop


async def main():
    await asyncio.sleep(0.01)
    print("uvloop ran")


uvloop.run(main()) if hasattr(uvloop, "run") else uvloop.install() or asyncio.run(main())
