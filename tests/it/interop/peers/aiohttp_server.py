#!/usr/bin/env python3
"""HTTP/1.1 upload sink for the mmap-body interop tests, built on aiohttp.web.

aiohttp parses requests with its own (llhttp-based) parser, so the crate's
HTTP/1.1 uploads, fixed-length and chunked, are checked by a stack other
than hyper.

Protocol with the Rust tests:
  * Start: `python aiohttp_server.py --log PATH`. The server binds 127.0.0.1
    on a random port and prints exactly one line, `LISTENING <port>`, to
    stdout. Nothing else is ever written to stdout.
  * Every request (any method, any path) is answered, once its whole body has
    been read, with `200` and the JSON body
      {"peer":"aiohttp","method":..,"path":..,"content_length":<int|null>,
       "transfer_encoding":<str|null>,"received":<bytes>,"sha256":"<hex>",
       "complete":true}
    The same object is appended, as one line, to the --log file.
  * A body cut short (fewer bytes than Content-Length, or a chunked body
    without its last chunk, when the connection closes) gets a log line with
    "complete":false and what arrived so far; there is no one to answer.
  * SIGTERM / SIGINT stop the server at once (exit code 0).
  * `--version` prints `aiohttp <version>` and exits.
"""
import argparse
import asyncio
import hashlib
import json
import signal

import aiohttp
from aiohttp import web

CHUNK = 1 << 20


def make_app(log):
    def write_log(record):
        log.write(json.dumps(record) + "\n")
        log.flush()

    async def upload(request):
        cl = request.headers.get("Content-Length")
        record = {
            "peer": "aiohttp", "method": request.method, "path": request.path_qs,
            "content_length": int(cl) if cl is not None else None,
            "transfer_encoding": request.headers.get("Transfer-Encoding"),
            "received": 0, "sha256": None, "complete": False,
        }
        sha = hashlib.sha256()
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                sha.update(chunk)
                record["received"] += len(chunk)
        except asyncio.CancelledError:
            # The server is shutting down (or the handler was cancelled).
            record["sha256"] = sha.hexdigest()
            write_log(record)
            raise
        except Exception:
            # The body ended early: aiohttp 3.14 raises
            # ConnectionResetError("Connection lost") when the connection is
            # closed (or half-closed) before the end of a Content-Length or
            # chunked body; other versions may raise ClientPayloadError.
            record["sha256"] = sha.hexdigest()
            write_log(record)
            # Usually nobody is left to read this; returning (not raising)
            # keeps aiohttp from logging a traceback to stderr.
            return web.json_response(record, status=400)
        record["sha256"] = sha.hexdigest()
        record["complete"] = True
        write_log(record)
        return web.json_response(record)

    # The body is streamed, never buffered: client_max_size (which only
    # limits request.read()/post()) is raised anyway so it can never bite.
    app = web.Application(client_max_size=1 << 62)
    app.router.add_route("*", "/{tail:.*}", upload)
    return app


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(args.log, "a", encoding="utf-8") as log:
        # access_log=None: keep stdout/stderr quiet. A short shutdown timeout:
        # on SIGTERM don't wait for uploads in progress.
        runner = web.AppRunner(make_app(log), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]  # from the site's listening socket
        print(f"LISTENING {port}", flush=True)
        await stop.wait()
        await runner.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="append one JSON line per request here")
    parser.add_argument("--version", action="store_true", help="print the aiohttp version")
    args = parser.parse_args()
    if args.version:
        print(f"aiohttp {aiohttp.__version__}")
        return
    if not args.log:
        parser.error("--log is required")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
