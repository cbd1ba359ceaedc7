#!/usr/bin/env python3
"""multipart/form-data sink for the mmap-body interop tests, parsed by
python-multipart (the streaming parser of Starlette and FastAPI).

The HTTP/1.1 side is the standard library's http.server; the form is fed to
python_multipart.MultipartParser as it arrives, 1 MiB at a time, and each
part's Content-Disposition is read with python_multipart's own
parse_options_header, so every byte of the form is seen by the package.

Protocol with the Rust tests:
  * Start: `python multipart_server.py --log PATH`. The server binds
    127.0.0.1 on a random port and prints exactly one line,
    `LISTENING <port>`, to stdout. Nothing else is ever written to stdout.
  * Every POST is read whole and answered `200` with the JSON body
      {"peer":"python-multipart","content_length":<int|null>,
       "received":<bytes>,"parts":[{"name":..,"filename":<str|null>,
       "content_type":<str|null>,"len":<int>,"sha256":"<hex>"}..],
       "complete":<bool>}
    (`complete`: the parser reached the closing delimiter). Names and file
    names are the parser's bytes decoded as UTF-8. The same object is
    appended, as one line, to the --log file.
  * `--version` prints `python-multipart <version>` and exits.
"""
import argparse
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import python_multipart
from python_multipart.multipart import MultipartParser, parse_options_header

CHUNK = 1 << 20


def parse(boundary, read, length):
    """Feeds `length` bytes from `read` to a MultipartParser; the parts."""
    parts = []
    state = {"field": b"", "value": b"", "headers": {}, "done": False}

    def on_part_begin():
        state["headers"] = {}
        parts.append({"sha": hashlib.sha256(), "len": 0})

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        headers = state["headers"]
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        part = parts[-1]
        part["name"] = options.get(b"name", b"").decode("utf-8")
        filename = options.get(b"filename")
        part["filename"] = filename.decode("utf-8") if filename is not None else None
        content_type = headers.get(b"content-type")
        part["content_type"] = content_type.decode("latin-1") if content_type else None

    def on_part_data(data, start, end):
        parts[-1]["sha"].update(data[start:end])
        parts[-1]["len"] += end - start

    def on_end():
        state["done"] = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_end": on_end,
    })
    received = 0
    while received < length:
        chunk = read(min(CHUNK, length - received))
        if not chunk:
            break
        received += len(chunk)
        parser.write(chunk)
    parser.finalize()
    for part in parts:
        part["sha256"] = part.pop("sha").hexdigest()
    return received, parts, state["done"]


def make_handler(log):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            cl = self.headers.get("Content-Length")
            _, params = parse_options_header(self.headers.get("Content-Type", ""))
            boundary = params.get(b"boundary", b"")
            length = int(cl) if cl is not None else 0
            received, parts, done = parse(boundary, self.rfile.read, length)
            record = {
                "peer": "python-multipart", "content_length": int(cl) if cl is not None else None,
                "received": received, "parts": parts, "complete": done,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            body = json.dumps(record).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass  # keep stdout and stderr quiet

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="append one JSON line per request here")
    parser.add_argument("--version", action="store_true", help="print the version")
    args = parser.parse_args()
    if args.version:
        print(f"python-multipart {python_multipart.__version__}")
        return
    if not args.log:
        parser.error("--log is required")
    with open(args.log, "a", encoding="utf-8") as log:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(log))
        print(f"LISTENING {server.server_address[1]}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
