"""Echoes stdin upper-cased to stdout, a line to stderr, and exits with the
status given as argument, from inside an event loop."""
import asyncio
import sys


async def main():
    data = sys.stdin.read()
    await asyncio.sleep(0.01)
    sys.stdout.write(data.upper())
    sys.stderr.write("to stderr\n")


asyncio.run(main())
sys.exit(int(sys.argv[1]))
