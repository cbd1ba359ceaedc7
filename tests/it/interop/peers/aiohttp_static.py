#!/usr/bin/env python3
"""Static files for the mmap-body interop tests, served by aiohttp.web.

aiohttp's FileResponse answers Range (206 with Content-Range), If-Range and
sends a strong ETag made of the file's modification time and size: a server
no one here wrote, for the resumed downloads of `download::ResumeDownloadLayer`.

Protocol with the Rust tests:
  * Start: `python aiohttp_static.py --root DIR`. The server binds 127.0.0.1
    on a random port, serves the files under DIR at `/`, and prints exactly
    one line, `LISTENING <port>`, to stdout.
  * SIGTERM / SIGINT stop the server at once (exit code 0).
  * `--version` prints `aiohttp <version>` and exits.
"""
import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = web.Application()
    app.router.add_static("/", args.root)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"LISTENING {port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="the directory to serve")
    parser.add_argument("--version", action="store_true", help="print the aiohttp version")
    args = parser.parse_args()
    if args.version:
        print(f"aiohttp {aiohttp.__version__}")
        return
    if not args.root:
        parser.error("--root is required")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
