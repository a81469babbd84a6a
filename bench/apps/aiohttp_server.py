#!/usr/bin/env python3
"""A small aiohttp service, the server under test of bench/http_bench.py.

    python3 bench/apps/aiohttp_server.py [PORT]

PORT comes from argv[1], else from $AIOHTTP_BENCH_PORT (0 = any free port).
It listens on 127.0.0.1 only and prints "ready PORT" (the port actually bound)
on stdout once it accepts connections. SIGINT or SIGTERM shuts it down
cleanly (listener closed, connections drained, exit status 0), so that
`astrace record` sees a normal exit and finalizes the trace.

Handlers, meant to look like a service's:
  /       small JSON reply after one `await asyncio.sleep(0)` (a loop round trip)
  /work   a little CPU (json dumps + loads of a ~1 KB object), then
          `await asyncio.sleep(0.001)` (a short timer), then a JSON reply

No access log: writing one line per request would measure logging, not the
loop. Needs aiohttp (Debian: python3-aiohttp, for /usr/bin/python3).
"""

import asyncio
import json
import os
import signal
import sys

from aiohttp import web

HOST = "127.0.0.1"

# ~1 KB once serialized: a typical small API object.
PAYLOAD = {
    "id": 12345,
    "name": "example-item",
    "tags": ["alpha", "beta", "gamma", "delta"],
    "owner": {"id": 42, "login": "someone", "email": "someone@example.invalid"},
    "items": [{"sku": f"SKU-{i:04d}", "qty": i, "price": i * 1.25, "ok": i % 2 == 0}
              for i in range(12)],
    "description": "x" * 120,
}


async def handle_root(request: web.Request) -> web.Response:
    await asyncio.sleep(0)
    return web.json_response({"ok": True, "path": "/"})


async def handle_work(request: web.Request) -> web.Response:
    doc = json.loads(json.dumps(PAYLOAD))
    total = sum(it["qty"] * it["price"] for it in doc["items"])
    await asyncio.sleep(0.001)
    return web.json_response({"ok": True, "path": "/work", "items": len(doc["items"]),
                              "total": total})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", handle_root)
    app.router.add_get("/work", handle_work)
    return app


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=1024, reuse_address=True)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    print(f"ready {bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv) -> int:
    raw = argv[1] if len(argv) > 1 else os.environ.get("AIOHTTP_BENCH_PORT", "")
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        print(f"usage: {argv[0]} PORT (or set AIOHTTP_BENCH_PORT); got {raw!r}", file=sys.stderr)
        return 2
    asyncio.run(serve(port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
